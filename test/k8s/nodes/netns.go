//go:build k8s

package nodes

import (
	"fmt"
	"net"
	"os"
	"testing"

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
// peerName) in the namespace peerNS, with an address on each side
// (CIDR notation; empty for none), and brings both up.
func addVeth(h *netlink.Handle, name, addr string, peerNS *loader.Namespace, peerName, peerAddr string) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peerName, PeerNamespace: netlink.NsFd(peerNS.Handle)}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", name, err)
	}
	ph, err := netlink.NewHandleAt(peerNS.Handle)
	if err != nil {
		return err
	}
	defer ph.Close()
	for _, side := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{h, name, addr}, {ph, peerName, peerAddr}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			return err
		}
		if side.addr != "" {
			a, err := netlink.ParseAddr(side.addr)
			if err != nil {
				return err
			}
			if err := side.h.AddrAdd(l, a); err != nil {
				return fmt.Errorf("address %s on %s: %w", side.addr, side.name, err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up: %w", side.name, err)
		}
	}
	return nil
}

// mustCIDR parses a CIDR the code itself writes.
func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}
