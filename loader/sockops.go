package loader

// Where sockops runs. sockops registers a lookup-mode backend's listener in
// the socket map the moment it listens (BPF_SOCK_OPS_TCP_LISTEN_CB) and
// counts connections. A cgroup program runs only for sockets of processes
// in the cgroup it is attached to and below, so attached to --cgroup (where
// the connect hooks go) it never saw a backend outside that cgroup re-create
// its listener (iperf3 -s does after every test), and connections to that
// backend were refused until a daemon rescanned the namespace. Lookup mode
// is the namespace's (sk_lookup runs for every local delivery) and has no
// cgroup, so its registration must not have one either: sockops is attached
// to the cgroup v2 root, whatever --cgroup says.
//
// Only there, and once per namespace's state: its link is the one pinned as
// tcpshift_sockops_link, so no path of the hierarchy runs it twice (a second
// attachment on --cgroup would count every connection of that cgroup
// twice). Connections of processes in --cgroup are still counted: programs
// attached with bpf_link (BPF_F_ALLOW_MULTI) run for every descendant.
// sockops filters by the namespace's cookie where it registers, and counts
// only sockets tagged in this state's own conns map, so the sockets of
// other namespaces and of other tcpshift states cost it a pointer test; the
// price of the root is that test for every TCP socket of the host (about
// 50 ns per callback, once per namespace with tcpshift state), as it always
// was without --cgroup.
//
// State pinned by a build that attached sockops to --cgroup is moved on the
// next apply that loads programs (a new build always does): moveToRoot.

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// cgroupID returns the id of the cgroup v2 directory dir: its inode number
// (a kernfs node's id, as link info reports it).
func cgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return st.Ino, nil
}

// onOtherCgroup reports whether a cgroup link is attached elsewhere than
// dir, or to no cgroup any more (its cgroup was removed).
func onOtherCgroup(info *link.Info, dir string) (bool, error) {
	cg := info.Cgroup()
	if cg == nil {
		return false, fmt.Errorf("pinned link %d is not a cgroup link", info.ID)
	}
	id, err := cgroupID(dir)
	if err != nil {
		return false, err
	}
	return cg.CgroupId != id, nil
}

// moveToRoot attaches prog to the cgroup root and replaces the link pinned
// at pin, old (on another cgroup), with the new one. old is pointed at prog
// first, then the new link is attached and pinned aside, then old is
// detached and the new pin renamed over the old one: sockops never stops
// watching the sockets it watched, and for the instant two links run, both
// run prog, which counts a connection once all the same (established,
// closed and connect_failed look at the connection's tag first); only a
// listener that starts listening in that instant is counted twice in
// registered. undo points the new link at old's program: the state's old
// programs again, at the root.
func moveToRoot(h hook, pin, root string, old link.Link, info *link.Info, prog *ebpf.Program) (undo func() error, err error) {
	oldProg, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return nil, fmt.Errorf("hold %s's program: %w", h.prog, err)
	}
	defer func() {
		if err != nil {
			oldProg.Close()
		}
	}()
	// A move interrupted before its rename left its link here: drop it.
	moving := pin + "_moving" // bpffs refuses dots in names
	if err := detachPinned(moving); err != nil {
		return nil, fmt.Errorf("detach %s: %w", moving, err)
	}
	if err := os.Remove(moving); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("unpin %s: %w", moving, err)
	}
	// A link whose cgroup is gone is detached already: nothing to update.
	live := info.Cgroup() != nil && info.Cgroup().CgroupId != 0
	if live {
		if err := old.Update(prog); err != nil {
			return nil, fmt.Errorf("update %s link: %w", h.prog, err)
		}
	}
	restore := func() error {
		if !live {
			return nil
		}
		return old.Update(oldProg)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: h.attach, Program: prog})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("attach %s to cgroup %s: %w", h.prog, root, err), restore())
	}
	defer l.Close()
	if err := l.Pin(moving); err != nil {
		return nil, errors.Join(fmt.Errorf("pin %s link: %w", h.prog, err), l.Detach(), restore())
	}
	if err := old.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) {
		return nil, errors.Join(fmt.Errorf("detach %s from its old cgroup: %w", h.prog, err), l.Detach(), os.Remove(moving), restore())
	}
	// Renaming over the old pin drops it: the pin never goes missing. Should
	// it fail, the new link stays pinned aside, attached, and the next
	// apply finishes the move.
	if err := os.Rename(moving, pin); err != nil {
		return nil, fmt.Errorf("pin %s link (it runs, pinned as %s): %w", h.prog, moving, err)
	}
	return func() error {
		defer oldProg.Close()
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			return err
		}
		defer l.Close()
		return l.Update(oldProg)
	}, nil
}
