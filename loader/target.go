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

// The programs and where each is attached; their links are pinned next to
// the maps under "<program>_link".
var hooks = []struct {
	prog   string
	attach ebpf.AttachType // 0: sk_lookup, attached to the namespace
}{
	{bpf.TcpshiftProgTcpshiftLookup, 0},
	{bpf.TcpshiftProgTcpshiftConnect4, ebpf.AttachCGroupInet4Connect},
	{bpf.TcpshiftProgTcpshiftConnect6, ebpf.AttachCGroupInet6Connect},
	{bpf.TcpshiftProgTcpshiftGetpeername4, ebpf.AttachCgroupInet4GetPeername},
	{bpf.TcpshiftProgTcpshiftGetpeername6, ebpf.AttachCgroupInet6GetPeername},
	{bpf.TcpshiftProgTcpshiftSockops, ebpf.AttachCGroupSockOps},
}

func linkPin(prog string) string { return prog + "_link" }

func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("tcpshift needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run it with sudo")
	}
	return nil
}

// Target is tcpshift's state in one network namespace.
type Target struct {
	NS    *Namespace
	BPFFS string
	Dir   string // pin directory
	// Cgroup is where the connect-time hooks attach: the cgroup v2 root
	// unless --cgroup names another.
	Cgroup string
	nl     *netlink.Handle
}

// Open prepares to work on the network namespace at netnsPath ("" for the
// current one) with bpffs at bpffsDir ("" for /sys/fs/bpf) and the
// connect-time hooks on cgroupDir ("" for the cgroup v2 root). It changes
// nothing.
func Open(netnsPath, bpffsDir, cgroupDir string) (*Target, error) {
	if bpffsDir == "" {
		bpffsDir = DefaultBPFFS
	}
	if cgroupDir == "" {
		root, err := CgroupRoot()
		if err != nil {
			return nil, err
		}
		cgroupDir = root
	}
	if err := requireRoot(); err != nil {
		return nil, err
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
	return &Target{NS: ns, BPFFS: bpffsDir, Dir: pinDir(bpffsDir, ns), Cgroup: cgroupDir, nl: nl}, nil
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
// directory (creating and pinning them the first time) and attaches them:
// sk_lookup to the namespace, the connect-time hooks to the cgroup. Where a
// pinned link exists it is pointed at the new program instead.
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
	delete(spec.Maps, bpf.TcpshiftMapLayouts)            // only there for its BTF
	delete(spec.Programs, bpf.TcpshiftProgTcpshiftBytes) // loaded by status when it runs
	cookie, err := t.NS.Cookie()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["netns_cookie"].Set(cookie); err != nil {
		return nil, fmt.Errorf("set netns cookie: %w", err)
	}
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
	for _, h := range hooks {
		if err := t.attach(h.prog, h.attach, coll.Programs[h.prog]); err != nil {
			return nil, err
		}
	}
	return coll, nil
}

func (t *Target) attach(name string, at ebpf.AttachType, prog *ebpf.Program) error {
	pin := filepath.Join(t.Dir, linkPin(name))
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		defer l.Close()
		if err := l.Update(prog); err != nil {
			return fmt.Errorf("update %s link: %w", name, err)
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open pinned %s link: %w", name, err)
	}
	var (
		l   link.Link
		err error
	)
	if at == 0 {
		l, err = link.AttachNetNs(int(t.NS.Handle), prog)
	} else {
		l, err = link.AttachCgroup(link.CgroupOptions{Path: t.Cgroup, Attach: at, Program: prog})
	}
	if err != nil {
		return fmt.Errorf("attach %s: %w", name, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin %s link: %w", name, err)
	}
	return nil
}
