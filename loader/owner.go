package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/maps"
)

// ErrStale is returned when the pinned state in a namespace's directory was
// left by a network namespace that no longer exists: its inode, which names
// the directory, was given to a new namespace. Such state is never adopted:
// readers (status, get, dry runs) refuse it, writers remove it first (see
// dropStale), and so does `tcpshift down`.
var ErrStale = errors.New("stale state")

// ErrDaemon is returned when apply or down would change a namespace that a
// running `tcpshift run` manages (without --force).
var ErrDaemon = errors.New("managed by tcpshift run")

// staleReason says why the state pinned in dir belongs to no living
// namespace, or "" when it belongs to the one with cookie (0: any living
// one). The sk_lookup link is severed when its namespace dies; the owner
// record names the namespace by cookie, which is never reused.
func staleReason(dir string, cookie uint64, set *maps.Set) string {
	l, err := link.LoadPinnedLink(filepath.Join(dir, linkPin(bpf.TcpshiftProgTcpshiftLookup)), nil)
	if err == nil {
		info, err := l.Info()
		l.Close()
		if err == nil && info.NetNs() != nil && info.NetNs().NetnsInode == 0 {
			return "its sk_lookup link was severed: the namespace was deleted without tcpshift down"
		}
	}
	if set == nil || cookie == 0 {
		return ""
	}
	o, err := set.Owner()
	if err == nil && o.NetnsCookie != 0 && o.NetnsCookie != cookie {
		return fmt.Sprintf("it belongs to network namespace cookie %d, which no longer exists (this namespace reuses its inode %d)", o.NetnsCookie, o.NetnsIno)
	}
	return ""
}

// checkOwner refuses state that is not this namespace's, and adopts state
// pinned before owners were recorded. Readers call it; writers call
// dropStale, which removes such state instead.
func (t *Target) checkOwner(set *maps.Set) error {
	cookie, err := t.cookie()
	if err != nil {
		return err
	}
	if why := staleReason(t.Dir, cookie, set); why != "" {
		return fmt.Errorf("%w in %s: %s; tcpshift apply replaces it, tcpshift down removes it", ErrStale, t.Dir, why)
	}
	return nil
}

// pinnedOwner reads the owner record pinned in dir; ok is false when there
// is none (no state yet, or a record that cannot be read).
func pinnedOwner(dir string) (o bpf.TcpshiftOwner, ok bool, err error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.TcpshiftMapOwners), nil)
	if errors.Is(err, os.ErrNotExist) {
		return o, false, nil
	}
	if err != nil {
		return o, false, err
	}
	defer m.Close()
	if err := m.Lookup(uint32(0), &o); err != nil {
		return bpf.TcpshiftOwner{}, false, nil
	}
	return o, true, nil
}

// everyNetns tells whether the connect hooks serve every network namespace
// under the cgroup: asked now, or recorded by an earlier writer (kept until
// down).
func (t *Target) everyNetns(o bpf.TcpshiftOwner) bool {
	return t.EveryNetns || o.Flags&bpf.TcpshiftOwnerFlagsOWNER_EVERY_NETNS != 0
}

// recordOwner writes this namespace into the owner record if it is not
// there yet (new state, or state pinned by an older build).
func (t *Target) recordOwner(set *maps.Set) error {
	o, err := set.Owner()
	if err != nil {
		return err
	}
	everyKept := o.Flags&bpf.TcpshiftOwnerFlagsOWNER_EVERY_NETNS != 0 || !t.EveryNetns
	if o.NetnsCookie != 0 && (t.flowSeed == 0 || o.FlowSeed == t.flowSeed) && everyKept && (t.loadedTag == 0 || o.ProgTag == t.loadedTag) {
		return nil
	}
	cookie, err := t.cookie()
	if err != nil {
		return err
	}
	o.NetnsCookie, o.NetnsIno = cookie, t.NS.Ino
	if t.flowSeed != 0 {
		o.FlowSeed = t.flowSeed
	}
	if t.EveryNetns {
		o.Flags |= bpf.TcpshiftOwnerFlagsOWNER_EVERY_NETNS
	}
	if t.loadedTag != 0 {
		o.ProgTag = t.loadedTag
	}
	return set.PutOwner(o)
}

// Daemon is the `tcpshift run` managing a namespace.
type Daemon struct {
	Pid  int
	File string // the route config it follows
}

// AgentFile is what tcpshift agent records as the file it follows: the
// cluster, as seen by one node.
const AgentFile = "kubernetes node "

// Node is the node a tcpshift agent runs for; ok is false for tcpshift run.
func (d Daemon) Node() (node string, ok bool) {
	return strings.CutPrefix(d.File, AgentFile)
}

func (d Daemon) String() string {
	if node, ok := d.Node(); ok {
		return fmt.Sprintf("tcpshift agent (pid %d, node %s)", d.Pid, node)
	}
	return fmt.Sprintf("tcpshift run (pid %d, following %s)", d.Pid, d.File)
}

// runningDaemon returns the daemon in the owner record if that process
// still runs (same pid and start time); nil otherwise.
func runningDaemon(o *maps.Owner) *Daemon {
	if o.DaemonPid == 0 {
		return nil
	}
	start, err := processStart(int(o.DaemonPid))
	if err != nil || start != o.DaemonStart {
		return nil
	}
	return &Daemon{Pid: int(o.DaemonPid), File: maps.DaemonFile(o)}
}

// RunningDaemon returns the daemon managing the namespace, nil for none.
func (t *Target) RunningDaemon() (*Daemon, error) {
	set, err := t.loadedMaps()
	if set == nil {
		return nil, err
	}
	defer set.Close()
	o, err := set.Owner()
	if err != nil {
		return nil, err
	}
	return runningDaemon(&o), nil
}

// refuseIfManaged refuses a change a running daemon would not know about.
func refuseIfManaged(set *maps.Set, what string) error {
	o, err := set.Owner()
	if err != nil {
		return err
	}
	d := runningDaemon(&o)
	if d == nil || d.Pid == os.Getpid() {
		return nil
	}
	return fmt.Errorf("%w: %s manages this network namespace; edit %s instead (the daemon applies it), or pass --force to %s anyway", ErrDaemon, d, d.File, what)
}

// claimDaemon records the calling process as the namespace's daemon,
// following file, unless it is recorded already. Another daemon still
// running is an error.
func claimDaemon(set *maps.Set, file string) error {
	o, err := set.Owner()
	if err != nil {
		return err
	}
	if d := runningDaemon(&o); d != nil {
		if d.Pid != os.Getpid() {
			return fmt.Errorf("%w: %s already manages this network namespace", ErrDaemon, d)
		}
		if d.File == file {
			return nil
		}
	}
	start, err := processStart(os.Getpid())
	if err != nil {
		return err
	}
	o.DaemonPid, o.DaemonStart = uint32(os.Getpid()), start
	maps.SetDaemonFile(&o, file)
	return set.PutOwner(o)
}

// ReleaseDaemon clears the daemon record if it is the calling process's.
func (t *Target) ReleaseDaemon() error {
	err := t.Update(func(set *maps.Set) error {
		o, err := set.Owner()
		if err != nil || int(o.DaemonPid) != os.Getpid() {
			return err
		}
		o.DaemonPid, o.DaemonStart = 0, 0
		maps.SetDaemonFile(&o, "")
		return set.PutOwner(o)
	})
	if errors.Is(err, maps.ErrNotLoaded) {
		return nil // down removed everything
	}
	return err
}

// processStart reads a process's start time (clock ticks after boot), which
// together with its pid names it even after the pid is reused.
func processStart(pid int) (uint64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: count fields
	// after the last ')'. starttime is field 22; state is field 3.
	end := strings.LastIndexByte(string(stat), ')')
	if end < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
