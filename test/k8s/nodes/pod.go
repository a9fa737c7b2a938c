//go:build k8s

package nodes

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/loader"
)

// podGateway is the pods' IPv4 next hop, as Calico does it: an address
// nobody has, answered by the node's side of each pod's veth with proxy ARP.
// For IPv6 that side has the link-local address podGateway6.
var (
	podGateway  = net.IPv4(169, 254, 1, 1).To4()
	podGateway6 = net.ParseIP("fe80::1")
)

// Pod is a simulated pod on a node: its own network namespace with eth0 at
// IP/32 and IP6/128 and default routes to the node, and a cgroup below the
// node's.
// Processes run in both (Start), and so do its connections (Dial, Ask).
type Pod struct {
	Name   string
	Node   *Node
	IP     net.IP // 10.244.i.n
	IP6    net.IP // fd00:244:i::n
	Netns  string // a bind-mounted network namespace file
	Cgroup string // below Node.Cgroup

	t   testing.TB
	ns  *loader.Namespace
	dir string
}

// NewPod makes a pod on the node; pods get 10.244.i.2, .3, ... and
// fd00:244:i::2, ::3, ... in the order made. It is removed, with every process in it, when the test ends.
func (n *Node) NewPod(name string) *Pod {
	t := n.t
	t.Helper()
	if n.pods >= 250 {
		t.Fatalf("node %s: too many pods", n.Name)
	}
	n.pods++
	num := n.pods + 1
	p := &Pod{
		Name:   name,
		Node:   n,
		IP:     net.IPv4(10, 244, byte(n.Index), byte(num)).To4(),
		IP6:    net.ParseIP(fmt.Sprintf("fd00:244:%x::%x", n.Index, num)),
		Cgroup: filepath.Join(n.Cgroup, "pod-"+name),
		t:      t,
		dir:    filepath.Join(n.dir, "pod-"+name),
	}
	if err := os.Mkdir(p.dir, 0o700); err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
	p.Netns = filepath.Join(p.dir, "netns")
	p.ns = newNamedNetns(t, p.Netns)
	if err := os.Mkdir(p.Cgroup, 0o755); err != nil {
		t.Fatalf("pod %s cgroup: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := removeCgroup(p.Cgroup); err != nil {
			t.Error(err)
		}
	})
	if err := p.connect(fmt.Sprintf("pod%d", num), 100+num); err != nil {
		t.Fatalf("pod %s on node %s: %v", name, n.Name, err)
	}
	return p
}

// connect joins the pod to its node with the veth pair link (node side) /
// eth0 (pod side).
func (p *Pod) connect(link string, index int) error {
	nh, err := netlink.NewHandleAt(p.Node.ns.Handle)
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := addVeth(nh, link, index, []string{podGateway6.String() + "/64"}, p.ns, "eth0", []string{p.IP.String() + "/32", p.IP6.String() + "/128"}); err != nil {
		return err
	}
	l, err := nh.LinkByName(link)
	if err != nil {
		return err
	}
	for _, ip := range []net.IP{p.IP, p.IP6} {
		host := &net.IPNet{IP: ip, Mask: net.CIDRMask(len(ip)*8, len(ip)*8)}
		if err := nh.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: host, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route %s on the node: %w", host, err)
		}
	}
	err = p.Node.ns.Do(func() error {
		if err := writeSysctl("net/ipv4/conf/"+link+"/proxy_arp", "1"); err != nil {
			return err
		}
		// Proxy ARP answers after a random delay of up to 0.8 s by default.
		return writeSysctl("net/ipv4/neigh/"+link+"/proxy_delay", "0")
	})
	if err != nil {
		return err
	}
	ph, err := netlink.NewHandleAt(p.ns.Handle)
	if err != nil {
		return err
	}
	defer ph.Close()
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		return err
	}
	idx := eth0.Attrs().Index
	gw := &net.IPNet{IP: podGateway, Mask: net.CIDRMask(32, 32)}
	for _, r := range []netlink.Route{
		{LinkIndex: idx, Dst: gw, Scope: netlink.SCOPE_LINK},
		{LinkIndex: idx, Gw: podGateway},
		{LinkIndex: idx, Dst: mustCIDR("::/0"), Gw: podGateway6},
	} {
		if err := ph.RouteAdd(&r); err != nil {
			return fmt.Errorf("route %v in the pod: %w", r, err)
		}
	}
	return nil
}

// Do runs fn on a thread inside the pod's network namespace. The thread is
// not in the pod's cgroup: connect hooks on the node do not see its
// sockets (Dial's do).
func (p *Pod) Do(fn func() error) error { return p.ns.Do(fn) }

// WaitListening waits until something in the pod accepts connections on
// addr (dialled from inside the pod's namespace, outside its cgroup).
func (p *Pod) WaitListening(addr string) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := p.ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pod %s: nothing listens on %s: %v", p.Name, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cgroupFD opens the pod's cgroup for clone3's CLONE_INTO_CGROUP: a process
// started with it is in the cgroup from its first instruction.
func (p *Pod) cgroupFD() (*os.File, error) {
	return os.OpenFile(p.Cgroup, unix.O_DIRECTORY|unix.O_RDONLY, 0)
}
