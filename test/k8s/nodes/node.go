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
// Addresses for index i, dual-stack: the node is 10.250.i.2 and
// fd00:250:i::2 on its eth0, the test's namespace 10.250.i.1 and
// fd00:250:i::1 on nodeI; pods are 10.244.i.2, .3, ... and fd00:244:i::2,
// ::3, ... (PodCIDR 10.244.i.0/24 and fd00:244:i::/64, routed to the node
// from the test's namespace).
type Node struct {
	Name     string
	Index    int
	IP       net.IP     // the node's address, 10.250.i.2
	IP6      net.IP     // fd00:250:i::2
	Gateway  net.IP     // the test namespace's side, 10.250.i.1
	Gateway6 net.IP     // fd00:250:i::1
	PodCIDR  *net.IPNet // 10.244.i.0/24
	PodCIDR6 *net.IPNet // fd00:244:i::/64
	Netns    string     // a bind-mounted network namespace file
	BPFFS    string     // a bpffs of the node's own
	Cgroup   string     // the node's cgroup v2 directory

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
		Name:     name,
		Index:    index,
		IP:       net.IPv4(10, 250, byte(index), 2).To4(),
		IP6:      net.ParseIP(fmt.Sprintf("fd00:250:%x::2", index)),
		Gateway:  net.IPv4(10, 250, byte(index), 1).To4(),
		Gateway6: net.ParseIP(fmt.Sprintf("fd00:250:%x::1", index)),
		PodCIDR:  mustCIDR(fmt.Sprintf("10.244.%d.0/24", index)),
		PodCIDR6: mustCIDR(fmt.Sprintf("fd00:244:%x::/64", index)),
		t:        t,
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
	here := []string{n.Gateway.String() + "/24", n.Gateway6.String() + "/64"}
	there := []string{n.IP.String() + "/24", n.IP6.String() + "/64"}
	if err := addVeth(h, n.hostLink(), 100+n.Index, here, n.ns, "eth0", there); err != nil {
		return err
	}
	for _, r := range []netlink.Route{{Dst: n.PodCIDR, Gw: n.IP}, {Dst: n.PodCIDR6, Gw: n.IP6}} {
		if err := h.RouteAdd(&r); err != nil {
			return fmt.Errorf("route %s via %s: %w", r.Dst, r.Gw, err)
		}
	}
	nh, err := netlink.NewHandleAt(n.ns.Handle)
	if err != nil {
		return err
	}
	defer nh.Close()
	for _, r := range []netlink.Route{{Gw: n.Gateway}, {Dst: mustCIDR("::/0"), Gw: n.Gateway6}} {
		if err := nh.RouteAdd(&r); err != nil {
			return fmt.Errorf("default route via %s: %w", r.Gw, err)
		}
	}
	return n.ns.Do(enableForwarding)
}

// Flags are tcpshift's global flags that make it act on the node:
// --netns, --bpffs and --cgroup.
func (n *Node) Flags() []string {
	return []string{"--netns", n.Netns, "--bpffs", n.BPFFS, "--cgroup", n.Cgroup}
}

// Do runs fn on a thread inside the node's network namespace.
func (n *Node) Do(fn func() error) error { return n.ns.Do(fn) }
