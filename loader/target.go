// Package loader makes the kernel state tcpshift needs: it loads and attaches
// the BPF programs, pins them per network namespace, keeps the maps in step
// with a route config, and removes everything again.
package loader

import (
	"crypto/rand"
	"encoding/binary"
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

// hook is one program and where it is attached.
type hook struct {
	prog   string
	attach ebpf.AttachType // 0: sk_lookup, attached to the namespace
	// root: attached to the cgroup v2 root whatever Target.Cgroup says
	// (sockops: see sockops.go); otherwise to Target.Cgroup.
	root bool
}

// The programs and where each is attached; their links are pinned next to
// the maps under "<program>_link".
var hooks = []hook{
	{bpf.TcpshiftProgTcpshiftLookup, 0, false},
	{bpf.TcpshiftProgTcpshiftConnect4, ebpf.AttachCGroupInet4Connect, false},
	{bpf.TcpshiftProgTcpshiftConnect6, ebpf.AttachCGroupInet6Connect, false},
	{bpf.TcpshiftProgTcpshiftGetpeername4, ebpf.AttachCgroupInet4GetPeername, false},
	{bpf.TcpshiftProgTcpshiftGetpeername6, ebpf.AttachCgroupInet6GetPeername, false},
	{bpf.TcpshiftProgTcpshiftSockops, ebpf.AttachCGroupSockOps, true},
}

func linkPin(prog string) string { return prog + "_link" }

func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("tcpshift needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN at least): run it with sudo")
	}
	return nil
}

// Target is tcpshift's state in one network namespace.
type Target struct {
	NS    *Namespace
	BPFFS string
	Dir   string // pin directory
	// Cgroup is where the connect-time hooks attach: the cgroup v2 root
	// unless --cgroup names another. sockops is attached to the root
	// whatever Cgroup is (see sockops.go).
	Cgroup string
	// EveryNetns makes the connect hooks serve every network namespace
	// under Cgroup, not only NS (tcpshift agent: each pod has its own).
	// Once recorded in the owner record it stays until tcpshift down.
	EveryNetns bool
	// loadedTag is the progTag of the programs this apply attached or
	// found attached, for the owner record.
	loadedTag uint64
	// Notice is told, in one line, what a writer did on its own besides
	// the change asked for (removing state a deleted namespace left in
	// this one's directory); nil says nothing.
	Notice func(msg string)
	// Waiting is told, after LockWaitNotice, that another writer holds
	// the namespace's lock and who it is; nil says nothing.
	Waiting func(msg string)
	nl      *netlink.Handle
	routes  frontendRoutes // nil: netlink's (see localRoutes)
	// traceWrite, in tests, is told each step of a write as it begins.
	traceWrite func(step string)
	netns      uint64 // the namespace's cookie, once read
	// flowSeed keys the programs' flows hash: the pinned one, or a new one
	// for state made now (see load).
	flowSeed uint64
	// left is what this Target's last apply left in force (inforce.go).
	left leftInForce
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

// cookie returns the namespace's cookie, read once.
func (t *Target) cookie() (uint64, error) {
	if t.netns == 0 {
		c, err := t.NS.Cookie()
		if err != nil {
			return 0, err
		}
		t.netns = c
	}
	return t.netns, nil
}

// load loads the programs with the maps pinned by name in the target's
// directory (creating and pinning them the first time) and attaches them:
// sk_lookup to the namespace, the connect-time hooks to the cgroup. Where a
// pinned link exists it is pointed at the new program instead. undo puts
// everything back as it was before: state made from nothing is removed
// whole; otherwise links get their old programs back and maps pinned now
// are unpinned. The caller holds the lock.
func (t *Target) load() (_ *ebpf.Collection, undo func() error, err error) {
	before, err := os.ReadDir(t.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read pin directory: %w", err)
	}
	pinned := map[string]bool{}
	for _, e := range before {
		pinned[e.Name()] = true
	}
	var undoLinks []func() error
	revert := func() error {
		if len(before) == 0 {
			return removeState(t.Dir)
		}
		var errs []error
		for i := len(undoLinks) - 1; i >= 0; i-- {
			errs = append(errs, undoLinks[i]())
		}
		after, err := os.ReadDir(t.Dir)
		errs = append(errs, err)
		for _, e := range after {
			if !pinned[e.Name()] {
				errs = append(errs, os.Remove(filepath.Join(t.Dir, e.Name())))
			}
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			if uerr := revert(); uerr != nil {
				err = fmt.Errorf("%w (and undoing it: %v)", err, uerr)
			}
		}
	}()

	spec, err := t.hookSpec()
	if err != nil {
		return nil, nil, err
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: t.Dir},
	})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, nil, fmt.Errorf("pinned state in %s comes from another tcpshift build (run tcpshift down first): %w", t.Dir, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load bpf programs: %w", err)
	}
	defer func() {
		if err != nil {
			coll.Close()
		}
	}()
	for _, h := range hooks {
		u, err := t.attach(h, coll.Programs[h.prog])
		if err != nil {
			return nil, nil, err
		}
		undoLinks = append(undoLinks, u)
	}
	return coll, revert, nil
}

// hookSpec is the hooks' collection, without what other commands load
// when they run, with this namespace's constants set: its cookie, whether
// the connect hooks serve every namespace, and the flows hash key (the
// pinned one, so handshakes in flight survive the swap). It records the
// programs' tag and the seed for the owner record.
func (t *Target) hookSpec() (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	delete(spec.Maps, bpf.TcpshiftMapLayouts)            // only there for its BTF
	delete(spec.Programs, bpf.TcpshiftProgTcpshiftBytes) // loaded by status when it runs
	// Loaded by rebalance when it runs, with maps of its own.
	delete(spec.Programs, bpf.TcpshiftProgTcpshiftRebalance)
	delete(spec.Maps, bpf.TcpshiftMapRebalanceIds)
	delete(spec.Maps, bpf.TcpshiftMapRebalanceRuns)
	cookie, err := t.cookie()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["netns_cookie"].Set(cookie); err != nil {
		return nil, fmt.Errorf("set netns cookie: %w", err)
	}
	var recorded bpf.TcpshiftOwner
	if t.flowSeed, recorded, err = flowSeed(t.Dir); err != nil {
		return nil, err
	}
	var every uint32
	if t.everyNetns(recorded) {
		every = 1
	}
	if err := spec.Variables["every_netns"].Set(every); err != nil {
		return nil, fmt.Errorf("set every_netns: %w", err)
	}
	if t.loadedTag, err = t.progTag(t.flowSeed, every == 1); err != nil {
		return nil, err
	}
	if err := spec.Variables["flow_seed"].Set(t.flowSeed); err != nil {
		return nil, fmt.Errorf("set flow seed: %w", err)
	}
	return spec, nil
}

// attach points the pinned link of a hook at prog, or attaches prog and
// pins its link; undo reverts that. A root hook's link pinned on another
// cgroup (by a build that attached sockops to --cgroup) is moved to the
// root (see moveToRoot).
func (t *Target) attach(h hook, prog *ebpf.Program) (undo func() error, err error) {
	name, at := h.prog, h.attach
	pin := filepath.Join(t.Dir, linkPin(name))
	cgroup := t.Cgroup
	if h.root {
		if cgroup, err = CgroupRoot(); err != nil {
			return nil, err
		}
	}
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			return nil, fmt.Errorf("read %s link: %w", name, err)
		}
		if h.root {
			elsewhere, err := onOtherCgroup(info, cgroup)
			if err != nil {
				return nil, fmt.Errorf("%s link: %w", name, err)
			}
			if elsewhere {
				return moveToRoot(h, pin, cgroup, l, info, prog)
			}
		}
		old, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			return nil, fmt.Errorf("hold %s's program: %w", name, err)
		}
		if err := l.Update(prog); err != nil {
			old.Close()
			return nil, fmt.Errorf("update %s link: %w", name, err)
		}
		return func() error {
			defer old.Close()
			l, err := link.LoadPinnedLink(pin, nil)
			if err != nil {
				return err
			}
			defer l.Close()
			return l.Update(old)
		}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open pinned %s link: %w", name, err)
	}
	var l link.Link
	if at == 0 {
		l, err = link.AttachNetNs(int(t.NS.Handle), prog)
	} else {
		l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: at, Program: prog})
	}
	if err != nil {
		if at != 0 {
			return nil, fmt.Errorf("attach %s to cgroup %s: %w", name, cgroup, err)
		}
		return nil, fmt.Errorf("attach %s: %w", name, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		l.Detach()
		return nil, fmt.Errorf("pin %s link: %w", name, err)
	}
	return func() error {
		if err := detachPinned(pin); err != nil {
			return err
		}
		return os.Remove(pin)
	}, nil
}

// flowSeed returns the flows hash key the pinned owner record holds, or a
// random one when there is none yet, and the record (zero when none). A
// program loaded with another key than its predecessor's would lose the
// handshakes in flight at the swap.
func flowSeed(dir string) (uint64, bpf.TcpshiftOwner, error) {
	o, _, _ := pinnedOwner(dir) // none readable: a new seed
	if o.FlowSeed != 0 {
		return o.FlowSeed, o, nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, o, fmt.Errorf("flow seed: %w", err)
	}
	return binary.NativeEndian.Uint64(b[:]) | 1, o, nil
}
