// Package loader makes the kernel state tcpshift needs: it loads and attaches
// the BPF programs, pins them per network namespace, keeps the maps in step
// with a route config, and removes everything again.
package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/maps"
)

// Pinned link names, next to the maps.
const lookupLinkPin = "lookup_link"

// Target is tcpshift's state in one network namespace.
type Target struct {
	NS    *Namespace
	BPFFS string
	Dir   string // pin directory
	nl    *netlink.Handle
}

// Open prepares to work on the network namespace at netnsPath ("" for the
// current one) with bpffs at bpffsDir ("" for /sys/fs/bpf). It changes nothing.
func Open(netnsPath, bpffsDir string) (*Target, error) {
	if bpffsDir == "" {
		bpffsDir = DefaultBPFFS
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("tcpshift needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run it with sudo")
	}
	ns, err := OpenNamespace(netnsPath)
	if err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in network namespace: %w", err)
	}
	return &Target{NS: ns, BPFFS: bpffsDir, Dir: pinDir(bpffsDir, ns), nl: nl}, nil
}

// Close releases the target's handles; the kernel state stays.
func (t *Target) Close() error {
	t.nl.Close()
	return t.NS.Close()
}

// Maps opens the pinned maps; maps.ErrNotLoaded when nothing was applied.
func (t *Target) Maps() (*maps.Set, error) {
	return maps.Open(t.Dir)
}

// load loads the programs with the maps pinned by name in the target's
// directory (creating and pinning them the first time) and attaches
// sk_lookup to the namespace, or points the pinned link at the new program.
func (t *Target) load() (_ *ebpf.Collection, err error) {
	if err := ensureBPFFS(t.BPFFS); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory: %w", err)
	}
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	delete(spec.Maps, bpf.TcpshiftMapTableLayout) // only there for its BTF
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: t.Dir},
	})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("pinned state in %s comes from another tcpshift build (run tcpshift down first): %w", t.Dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load bpf programs: %w", err)
	}
	defer func() {
		if err != nil {
			coll.Close()
		}
	}()

	prog := coll.Programs[bpf.TcpshiftProgTcpshiftLookup]
	pin := filepath.Join(t.Dir, lookupLinkPin)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		defer l.Close()
		if err := l.Update(prog); err != nil {
			return nil, fmt.Errorf("update sk_lookup link: %w", err)
		}
		return coll, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open pinned sk_lookup link: %w", err)
	}
	l, err := link.AttachNetNs(int(t.NS.Handle), prog)
	if err != nil {
		return nil, fmt.Errorf("attach sk_lookup: %w", err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return nil, fmt.Errorf("pin sk_lookup link: %w", err)
	}
	return coll, nil
}
