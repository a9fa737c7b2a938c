//go:build k8s

package nodes

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tcpshift/tcpshift/loader"
)

// Node is a simulated Kubernetes node: what `tcpshift --netns NETNS --bpffs
// BPFFS --cgroup CGROUP agent` acts on. Its pods' cgroups are below its
// cgroup, so connect hooks attached there serve every pod on the node.
//
// Addresses for index i: the node is 10.250.i.2 on its eth0, the test's
// namespace 10.250.i.1 on nodeI; pods are 10.244.i.2, .3, ... (PodCIDR
// 10.244.i.0/24, routed to the node from the test's namespace).
type Node struct {
	Name    string
	Index   int
	IP      net.IP     // the node's address, 10.250.i.2
	Gateway net.IP     // the test namespace's side, 10.250.i.1
	PodCIDR *net.IPNet // 10.244.i.0/24
	Netns   string     // a bind-mounted network namespace file
	BPFFS   string     // a bpffs of the node's own
	Cgroup  string     // the node's cgroup v2 directory

	t    testing.TB
	ns   *loader.Namespace
	dir  string
	pods int
}

// NewNode makes node name with index 1..250 (which picks its addresses);
// all of it is removed when the test ends.
func NewNode(t testing.TB, name string, index int) *Node {
	t.Helper()
	requireIsolated(t)
	if index < 1 || index > 250 {
		t.Fatalf("node %s: index %d is not in 1..250", name, index)
	}
	n := &Node{
		Name:    name,
		Index:   index,
		IP:      net.IPv4(10, 250, byte(index), 2).To4(),
		Gateway: net.IPv4(10, 250, byte(index), 1).To4(),
		PodCIDR: mustCIDR(fmt.Sprintf("10.244.%d.0/24", index)),
		t:       t,
	}
	n.dir = filepath.Join(t.TempDir(), "node-"+name)
	if err := os.Mkdir(n.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	n.Netns = filepath.Join(n.dir, "netns")
	n.ns = newNamedNetns(t, n.Netns)
	n.BPFFS = filepath.Join(n.dir, "bpffs")
	mountBPFFS(t, n.BPFFS)
	n.Cgroup = filepath.Join(parentCgroup, "node-"+name)
	if err := os.Mkdir(n.Cgroup, 0o755); err != nil {
		t.Fatalf("node %s cgroup: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := removeCgroup(n.Cgroup); err != nil {
			t.Error(err)
		}
	})
	if err := n.connect(); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	return n
}

// hostLink is the test namespace's side of the node's veth pair.
func (n *Node) hostLink() string { return fmt.Sprintf("node%d", n.Index) }

// connect joins the node to the test's namespace: a veth pair, the pod
// CIDR routed to the node there, a default route back here, forwarding on.
func (n *Node) connect() error {
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	n.t.Cleanup(func() {
		// The node's side goes with its namespace; this removes both now.
		if l, err := netlink.LinkByName(n.hostLink()); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				n.t.Errorf("remove %s: %v", n.hostLink(), err)
			}
		}
	})
	if err := addVeth(h, n.hostLink(), n.Gateway.String()+"/24", n.ns, "eth0", n.IP.String()+"/24"); err != nil {
		return err
	}
	if err := h.RouteAdd(&netlink.Route{Dst: n.PodCIDR, Gw: n.IP}); err != nil {
		return fmt.Errorf("route %s via %s: %w", n.PodCIDR, n.IP, err)
	}
	nh, err := netlink.NewHandleAt(n.ns.Handle)
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := nh.RouteAdd(&netlink.Route{Gw: n.Gateway}); err != nil {
		return fmt.Errorf("default route via %s: %w", n.Gateway, err)
	}
	return n.ns.Do(func() error { return writeSysctl("net/ipv4/ip_forward", "1") })
}

// Flags are tcpshift's global flags that make it act on the node:
// --netns, --bpffs and --cgroup.
func (n *Node) Flags() []string {
	return []string{"--netns", n.Netns, "--bpffs", n.BPFFS, "--cgroup", n.Cgroup}
}

// Do runs fn on a thread inside the node's network namespace.
func (n *Node) Do(fn func() error) error { return n.ns.Do(fn) }
