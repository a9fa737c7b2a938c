//go:build k8s

package nodes

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/loader"
)

// newNamedNetns makes a network namespace with lo up and bind-mounts it on
// the file path, so other processes (tcpshift --netns PATH) can open it by
// name; the test's cleanup unmounts it and closes it.
func newNamedNetns(t testing.TB, path string) *loader.Namespace {
	t.Helper()
	ns, err := loader.NewNamespace()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	if err := ns.Do(skipDAD); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := unix.Mount(ns.Path(), path, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount network namespace on %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", path, err)
		}
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// mountBPFFS mounts a fresh bpffs on dir until the test ends.
func mountBPFFS(t testing.TB, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
}

// addVeth makes a veth pair, name in the namespace of h and peer (renamed
// peerName) in the namespace peerNS, with addresses on each side (CIDR
// notation, no duplicate address detection), brings both up and waits until
// both carry packets.
//
// index is name's interface index, 100 or more: the kernel activates a new
// link's queue at once only when its index differs from its peer's
// (linkwatch's urgent case); when they match, as the small indexes of fresh
// namespaces often do, packets sent in the next second are dropped.
func addVeth(h *netlink.Handle, name string, index int, addrs []string, peerNS *loader.Namespace, peerName string, peerAddrs []string) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, Index: index}, PeerName: peerName, PeerNamespace: netlink.NsFd(peerNS.Handle)}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", name, err)
	}
	ph, err := netlink.NewHandleAt(peerNS.Handle)
	if err != nil {
		return err
	}
	defer ph.Close()
	for _, side := range []struct {
		h     *netlink.Handle
		name  string
		addrs []string
	}{{h, name, addrs}, {ph, peerName, peerAddrs}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			return err
		}
		for _, addr := range side.addrs {
			a, err := netlink.ParseAddr(addr)
			if err != nil {
				return err
			}
			a.Flags = unix.IFA_F_NODAD // usable at once
			if err := side.h.AddrAdd(l, a); err != nil {
				return fmt.Errorf("address %s on %s: %w", addr, side.name, err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up: %w", side.name, err)
		}
	}
	for _, side := range []struct {
		h    *netlink.Handle
		name string
	}{{h, name}, {ph, peerName}} {
		if err := waitOperUp(side.h, side.name); err != nil {
			return err
		}
	}
	return nil
}

// waitOperUp waits until the kernel reports the link operationally up, which
// it does once the link's queue is active.
func waitOperUp(h *netlink.Handle, name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not up after 5s (%s)", name, l.Attrs().OperState)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// skipDAD turns off IPv6 duplicate address detection for the links the
// calling thread's namespace gets from now on. Until detection ends (a
// second or two) a link has no usable link-local address, and without one
// a router sends no neighbor solicitation for the packets it forwards: the
// first connections through a fresh node would fail.
func skipDAD() error {
	for _, conf := range []string{"all", "default"} {
		if err := writeSysctl("net/ipv6/conf/"+conf+"/accept_dad", "0"); err != nil {
			return err
		}
	}
	return nil
}

// enableForwarding makes the calling thread's network namespace a router,
// for IPv4 and IPv6.
func enableForwarding() error {
	if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	return writeSysctl("net/ipv6/conf/all/forwarding", "1")
}

// mustCIDR parses a CIDR the code itself writes.
func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}
