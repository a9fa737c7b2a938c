package test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/daemon"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/loader/listener"
	tsmaps "github.com/tcpshift/tcpshift/maps"
)

const staleConfig = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`

// nsEcho serves tcp-echo with prefix on addr inside ns; stop closes the
// listener and waits for the server.
func nsEcho(t *testing.T, ns *loader.Namespace, addr, prefix string) (stop func()) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = listener.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		echo.Serve(ln, prefix)
	}()
	stop = func() {
		ln.Close()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// nsAsk asks addr from inside ns and returns who answered.
func nsAsk(ns *loader.Namespace, addr string) (string, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err = d.Dial("tcp", addr)
		return err
	}); err != nil {
		return "", err
	}
	return testenv.AskOn(c)
}

// doomedState applies staleConfig in a namespace of its own (bpffs and
// cgroup of env), then lets that namespace die without tcpshift down. It
// returns the pin directory and the dead namespace's inode once the state
// is listed as stale.
func doomedState(t *testing.T, env *testenv.Env) (dir string, ino uint64) {
	t.Helper()
	ns, err := loader.NewNamespace()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := loader.Open(ns.Path(), env.BPFFS, env.Cgroup)
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	stop := nsEcho(t, ns, "127.0.0.1:9001", "doomed")
	// Everything that keeps the namespace alive: the echo server's
	// sockets, the Target's handles, ours.
	kill := sync.OnceFunc(func() {
		stop()
		tg.Close()
		ns.Close()
	})
	t.Cleanup(kill)
	if _, err := tg.Apply(loader.Fixed(parse(t, staleConfig)), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if who, err := nsAsk(ns, "127.0.0.100:9000"); err != nil || who != "doomed" {
		t.Fatalf("doomed namespace: answered by %q, %v", who, err)
	}
	dir, ino = tg.Dir, ns.Ino
	// Whatever the test leaves behind is removed with the bpffs: the
	// cgroup links go with their pins.
	kill()
	t.Logf("namespace net:[%d] closed, its state in %s", ino, dir)

	// The namespace dies asynchronously; its sk_lookup link is severed then.
	start := time.Now()
	for {
		stale, err := loader.StaleStates(env.BPFFS)
		if err != nil {
			t.Fatal(err)
		}
		if len(stale) == 1 && stale[0].Dir == dir {
			if !strings.Contains(stale[0].Reason, "severed") {
				t.Fatalf("stale state %s: reason %q does not say the link was severed", dir, stale[0].Reason)
			}
			t.Logf("listed as stale after %v: %s", time.Since(start).Round(time.Millisecond), stale[0].Reason)
			return dir, ino
		}
		if len(stale) > 1 || len(stale) == 1 && stale[0].Dir != dir {
			t.Fatalf("stale states %+v, want exactly %s", stale, dir)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("state of the deleted namespace net:[%d] not listed as stale after 10s (is something holding the namespace?)", ino)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reuseInode makes a network namespace with inode ino, once the dead
// namespace's number is free again. The kernel gives every new namespace
// and every /proc entry the lowest free number: a network namespace takes
// one, then its /proc/net entries take about 68 more, so one made while a
// smaller gap lies below ino would give ino to one of its entries. Every
// free number below ino is taken first by a UTS namespace (one number
// each, held until the end); then ino is the lowest free number, and the
// next namespace gets it.
func reuseInode(t *testing.T, ino uint64) *loader.Namespace {
	t.Helper()
	var fillers []int
	defer func() {
		for _, fd := range fillers {
			unix.Close(fd)
		}
	}()
	start := time.Now()
	for {
		fd, got, err := newUTSNamespace()
		if err != nil {
			t.Fatal(err)
		}
		if got < ino {
			fillers = append(fillers, fd)
			continue
		}
		unix.Close(fd) // frees got, the lowest free number
		if got == ino {
			ns, err := loader.NewNamespace()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ns.Close() })
			if ns.Ino != ino {
				t.Fatalf("new network namespace got inode %d, want %d, the lowest free number", ns.Ino, ino)
			}
			t.Logf("new namespace reuses inode %d after %v and %d numbers below it taken", ino, time.Since(start).Round(time.Millisecond), len(fillers))
			return ns
		}
		// got > ino: the dead namespace's number is not free yet.
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the dead namespace's inode %d not free within 10s (lowest free number %d): the kernel did not free it", ino, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newUTSNamespace makes a UTS namespace, which takes one inode number, and
// returns a handle that keeps it alive and its inode.
func newUTSNamespace() (fd int, ino uint64, err error) {
	type made struct {
		fd  int
		ino uint64
		err error
	}
	ch := make(chan made, 1)
	go func() {
		// The thread goes back to its namespace, so that the handle alone
		// keeps the new one: closing it frees the number at once. A
		// thread that cannot go back stays locked, and ends with this
		// goroutine.
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- made{err: fmt.Errorf("open UTS namespace: %w", err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			ch <- made{err: fmt.Errorf("unshare UTS namespace: %w", err)}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(orig, unix.CLONE_NEWUTS)
		}
		if err != nil {
			ch <- made{err: fmt.Errorf("make UTS namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			ch <- made{err: fmt.Errorf("stat UTS namespace: %w", err)}
			return
		}
		ch <- made{fd: fd, ino: st.Ino}
	}()
	m := <-ch
	return m.fd, m.ino, m.err
}

// nsLookupPrograms counts the sk_lookup programs attached to ns.
func nsLookupPrograms(t *testing.T, ns *loader.Namespace) int {
	t.Helper()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(ns.Handle), Attach: ebpf.AttachSkLookup})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Programs)
}

// cgroupProgramIDs lists the programs attached to the cgroup at every
// attach type tcpshift uses there (sockops too).
func cgroupProgramIDs(t *testing.T, cgroup string) []ebpf.ProgramID {
	t.Helper()
	cg, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	var ids []ebpf.ProgramID
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect,
		ebpf.AttachCgroupInet4GetPeername, ebpf.AttachCgroupInet6GetPeername, ebpf.AttachCGroupSockOps} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
		if err != nil {
			t.Fatalf("query %s programs: %v", at, err)
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// linkedPrograms lists the programs of the cgroup links pinned in dir.
func linkedPrograms(t *testing.T, dir string) []ebpf.ProgramID {
	t.Helper()
	pins, err := filepath.Glob(filepath.Join(dir, "*_link"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []ebpf.ProgramID
	for _, pin := range pins {
		if filepath.Base(pin) == bpf.TcpshiftProgTcpshiftLookup+"_link" {
			continue
		}
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.Program)
	}
	return ids
}

// pinnedOwnerRecord reads the owner record pinned in dir.
func pinnedOwnerRecord(t *testing.T, dir string) tsmaps.Owner {
	t.Helper()
	set, err := tsmaps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	o, err := set.Owner()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// pinnedService reads a service as the maps pinned in dir hold it.
func pinnedService(t *testing.T, dir, name string) *tsmaps.Service {
	t.Helper()
	set, err := tsmaps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	svc, ok, err := set.Service(name)
	if err != nil || !ok {
		t.Fatalf("service %s in %s: %v, %v", name, dir, ok, err)
	}
	return svc
}

// notices collects what a Target's Notice is told.
type notices struct {
	mu    sync.Mutex
	lines []string
}

func (n *notices) add(msg string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, msg)
}

func (n *notices) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.lines)
}

// reused is the state a deleted namespace left, in the pin directory of a
// new namespace that got the dead one's inode, and a Target on the new one.
type reused struct {
	env        *testenv.Env
	ns         *loader.Namespace
	tg         *loader.Target
	dir        string
	ino        uint64
	deadCookie uint64           // the dead namespace's, from its owner record
	deadProgs  []ebpf.ProgramID // the programs of its cgroup links
	notices    *notices         // what tg.Notice was told
}

// reusedState makes stale state (staleConfig's tcp-echo) and a namespace
// reusing its directory, with a Target on it (closed and downed at the end).
func reusedState(t *testing.T) *reused {
	t.Helper()
	r := &reused{env: testenv.New(t), notices: &notices{}}
	r.dir, r.ino = doomedState(t, r.env)
	r.deadCookie = pinnedOwnerRecord(t, r.dir).NetnsCookie
	if r.deadCookie == 0 {
		t.Fatalf("the dead namespace's owner record in %s names no cookie", r.dir)
	}
	r.deadProgs = linkedPrograms(t, r.dir)
	if len(r.deadProgs) != 5 {
		t.Fatalf("%d cgroup links pinned by the dead namespace's state, want 5", len(r.deadProgs))
	}
	if n := r.env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d connect-time programs attached after the namespace died, want its 4", n)
	}
	r.ns = reuseInode(t, r.ino)
	tg, err := loader.Open(r.ns.Path(), r.env.BPFFS, r.env.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	t.Cleanup(func() { tg.Down() })
	if tg.Dir != r.dir {
		t.Fatalf("new namespace's pin directory %s, the dead one's %s", tg.Dir, r.dir)
	}
	tg.Notice = r.notices.add
	r.tg = tg
	return r
}

// wantRemovalLine checks the one line that says the stale state was
// removed: the directory, why (whose it was), and what went with it.
func (r *reused) wantRemovalLine(t *testing.T, line string) {
	t.Helper()
	want := fmt.Sprintf("removed stale state in %s: it belonged to network namespace cookie %d, deleted without tcpshift down (inode %d reused); detached its 5 cgroup programs, unpinned its ",
		r.dir, r.deadCookie, r.ino)
	if !strings.HasPrefix(line, want) || !strings.HasSuffix(line, " maps and links (1 service: tcp-echo)") || strings.Contains(line, "\n") {
		t.Fatalf("removal line:\n%s\nwant one line:\n%s<n> maps and links (1 service: tcp-echo)", line, want)
	}
}

// wantOneNotice wants exactly one notice, the removal line.
func (r *reused) wantOneNotice(t *testing.T) {
	t.Helper()
	got := r.notices.all()
	if len(got) != 1 {
		t.Fatalf("notices %q, want exactly the one removal line", got)
	}
	r.wantRemovalLine(t, got[0])
}

// wantDeadGone checks that nothing of the dead namespace's state is left:
// its cgroup programs detached (and freed), nothing listed as stale.
func (r *reused) wantDeadGone(t *testing.T) {
	t.Helper()
	for _, id := range cgroupProgramIDs(t, r.env.Cgroup) {
		if slices.Contains(r.deadProgs, id) {
			t.Fatalf("cgroup program %d of the dead namespace's state still attached", id)
		}
	}
	// Programs are freed once the last link and pin are gone, after an
	// RCU grace period: one attached anywhere is never freed.
	for _, id := range r.deadProgs {
		deadline := time.Now().Add(5 * time.Second)
		for r.env.ProgramExists(id) {
			if time.Now().After(deadline) {
				t.Fatalf("cgroup program %d of the dead namespace's state still loaded after 5s", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if stale, err := loader.StaleStates(r.env.BPFFS); err != nil || len(stale) != 0 {
		t.Fatalf("stale states after the removal: %+v, %v", stale, err)
	}
}

// wantOwned checks that the pinned state is the new namespace's.
func (r *reused) wantOwned(t *testing.T) {
	t.Helper()
	cookie, err := r.ns.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	if o := pinnedOwnerRecord(t, r.dir); o.NetnsCookie != cookie || o.NetnsIno != r.ino {
		t.Fatalf("owner record names cookie %d inode %d, want this namespace's: cookie %d inode %d", o.NetnsCookie, o.NetnsIno, cookie, r.ino)
	}
	if n := nsLookupPrograms(t, r.ns); n != 1 {
		t.Fatalf("%d sk_lookup programs attached to the new namespace, want 1", n)
	}
	if n := r.env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d connect-time programs attached, want the new state's 4", n)
	}
}

// wantAnswers asks the frontend n times inside the new namespace and wants
// every answer from who.
func (r *reused) wantAnswers(t *testing.T, n int, who string) {
	t.Helper()
	for range n {
		if got, err := nsAsk(r.ns, "127.0.0.100:9000"); err != nil || got != who {
			t.Fatalf("127.0.0.100:9000 in the new namespace: answered by %q, %v; want %q", got, err, who)
		}
	}
}

// Readers never remove stale state: status and a dry run refuse it and
// leave it exactly as it is.
func (r *reused) wantReadersRefuse(t *testing.T) {
	t.Helper()
	before := r.env.KernelState()
	_, err := r.tg.Status("")
	wantErr(t, "status over stale state", err, "stale state in "+r.dir, "severed", "tcpshift apply replaces it", "tcpshift down removes it")
	if !errors.Is(err, loader.ErrStale) {
		t.Fatalf("status: %v is not ErrStale", err)
	}
	_, err = r.tg.Apply(loader.Fixed(parse(t, staleConfig)), loader.ApplyOptions{DryRun: true})
	if !errors.Is(err, loader.ErrStale) {
		t.Fatalf("dry run: %v is not ErrStale", err)
	}
	r.env.RequireUnchanged(before)
	if got := r.notices.all(); len(got) != 0 {
		t.Fatalf("readers told %q", got)
	}
	if stale, err := loader.StaleStates(r.env.BPFFS); err != nil || len(stale) != 1 || stale[0].Dir != r.dir {
		t.Fatalf("stale states after the readers: %+v, %v; want %s still", stale, err, r.dir)
	}
}

// State left by a deleted namespace is never adopted by the namespace that
// reuses its inode (and so its pin directory). Readers refuse it; apply
// removes it, says so in one line and applies as over nothing.
func TestStaleStateRemovedByApply(t *testing.T) {
	r := reusedState(t)
	nsEcho(t, r.ns, "127.0.0.1:9001", "fresh")
	r.wantReadersRefuse(t)
	// The stale state steers nothing here, but its cgroup hooks stay.
	if n := nsLookupPrograms(t, r.ns); n != 0 {
		t.Fatalf("%d sk_lookup programs attached to the new namespace", n)
	}
	if _, err := nsAsk(r.ns, "127.0.0.100:9000"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("127.0.0.100:9000 in the new namespace: %v, want refused", err)
	}

	changes, err := r.tg.Apply(loader.Fixed(parse(t, staleConfig)), loader.ApplyOptions{})
	if err != nil {
		t.Fatalf("apply over stale state: %v", err)
	}
	if got := changeList(changes); got != "tcp-echo added" {
		t.Fatalf("apply over stale state changed %q, want tcp-echo added (the stale service is not this namespace's)", got)
	}
	r.wantOneNotice(t)
	r.wantDeadGone(t)
	r.wantOwned(t)
	r.wantAnswers(t, 3, "fresh")
	st, err := r.tg.Status("")
	if err != nil || len(st.Services) != 1 || st.Services[0].Subsets[0].Connections != 3 {
		t.Fatalf("status after apply: %+v, %v; want tcp-echo alone, with the 3 connections", st, err)
	}

	// Now it is this namespace's: applied again, nothing is removed.
	changes, err = r.tg.Apply(loader.Fixed(parse(t, staleConfig)), loader.ApplyOptions{})
	if err != nil || changeList(changes) != "tcp-echo unchanged" {
		t.Fatalf("second apply: %q, %v; want tcp-echo unchanged", changeList(changes), err)
	}
	if got := r.notices.all(); len(got) != 1 {
		t.Fatalf("notices after the second apply: %q, want still the one", got)
	}
	r.wantAnswers(t, 1, "fresh")
}

// Writers that change state in place (set-weight, shift) remove stale state
// too, say so, and then find nothing applied; the next apply is as in any
// new namespace.
func TestStaleStateRemovedByInPlaceWriters(t *testing.T) {
	for _, w := range []struct {
		name  string
		write func(tg *loader.Target) error
	}{
		{"set-weight", func(tg *loader.Target) error {
			_, err := tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: 2}})
			return err
		}},
		{"shift", func(tg *loader.Target) error {
			_, _, err := tg.StartShift(loader.ShiftPlan{Service: "tcp-echo", To: "v1", Percent: []uint32{100}, Interval: time.Second})
			return err
		}},
	} {
		t.Run(w.name, func(t *testing.T) {
			r := reusedState(t)
			nsEcho(t, r.ns, "127.0.0.1:9001", "fresh")
			err := w.write(r.tg)
			if !errors.Is(err, tsmaps.ErrNotLoaded) {
				t.Fatalf("%s over stale state: %v, want %v", w.name, err, tsmaps.ErrNotLoaded)
			}
			r.wantOneNotice(t)
			r.wantDeadGone(t)
			if n := r.env.CgroupPrograms(); n != 0 {
				t.Fatalf("%d connect-time programs attached after the removal, want none", n)
			}
			if n := nsLookupPrograms(t, r.ns); n != 0 {
				t.Fatalf("%d sk_lookup programs attached to the new namespace", n)
			}
			// Nothing is left, not even the directory.
			if _, err := os.Stat(r.dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("pin directory after the removal: %v", err)
			}
			if _, err := nsAsk(r.ns, "127.0.0.100:9000"); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("127.0.0.100:9000 in the new namespace: %v, want refused", err)
			}

			changes, err := r.tg.Apply(loader.Fixed(parse(t, staleConfig)), loader.ApplyOptions{})
			if err != nil || changeList(changes) != "tcp-echo added" {
				t.Fatalf("apply after the removal: %q, %v; want tcp-echo added", changeList(changes), err)
			}
			r.wantOwned(t)
			if err := w.write(r.tg); err != nil {
				t.Fatalf("%s after apply: %v", w.name, err)
			}
			r.wantAnswers(t, 2, "fresh")
			if got := r.notices.all(); len(got) != 1 {
				t.Fatalf("notices %q, want still the one", got)
			}
		})
	}
}

// tcpshift run starting in a namespace that reuses a dead one's inode
// removes the stale state, logs it in one line, and runs.
func TestStaleStateRemovedByDaemon(t *testing.T) {
	r := reusedState(t)
	nsEcho(t, r.ns, "127.0.0.1:9001", "fresh")
	path := newConfigFile(t, staleConfig)
	d := newDaemonLog()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		d.done <- daemon.Run(ctx, daemon.Options{
			Path:        path,
			Target:      r.tg,
			InNamespace: r.ns.Do,
			Grace:       time.Second,
			Log:         slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := d.wait(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	d.waitLog(t, "msg=running", 1)
	lines := d.log.lines(r.dir)
	var removal []string
	for _, l := range lines {
		if strings.Contains(l, "removed stale state") {
			removal = append(removal, l)
		}
	}
	if len(removal) != 1 || !strings.Contains(removal[0], "level=WARN") {
		t.Fatalf("log lines saying the stale state was removed: %q, want one warning\n%s", removal, d.log.b.String())
	}
	// The text handler quotes the message: its text is the removal line.
	msg, ok := strings.CutPrefix(removal[0][strings.Index(removal[0], "msg=")+len("msg="):], `"`)
	if !ok {
		t.Fatalf("log line %q: message not quoted", removal[0])
	}
	r.wantRemovalLine(t, strings.TrimSuffix(msg, `"`))
	if got := r.notices.all(); len(got) != 0 {
		t.Fatalf("the daemon's own notice hook was replaced by the test's: told %q", got)
	}
	r.wantDeadGone(t)
	r.wantOwned(t)
	r.wantAnswers(t, 3, "fresh")
	if pid, _ := daemonRecord(t, r.tg); int(pid) != os.Getpid() {
		t.Fatalf("daemon record names pid %d, want this process %d", pid, os.Getpid())
	}
}

// Two writers that find the stale state at once: the first removes it and
// applies; the second, once it has the lock, finds this namespace's state
// and leaves it. One line in all.
func TestStaleStateRemovedOnceByConcurrentWriters(t *testing.T) {
	r := reusedState(t)
	nsEcho(t, r.ns, "127.0.0.1:9001", "fresh")
	second, err := loader.Open(r.ns.Path(), r.env.BPFFS, r.env.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	second.Notice = r.notices.add
	type result struct {
		changes []loader.Change
		err     error
	}
	results := make(chan result, 2)
	start := make(chan struct{})
	for _, tg := range []*loader.Target{r.tg, second} {
		go func() {
			<-start
			changes, err := tg.Apply(loader.Fixed(parse(t, staleConfig)), loader.ApplyOptions{})
			results <- result{changes, err}
		}()
	}
	close(start)
	var got []string
	for range 2 {
		res := <-results
		if res.err != nil {
			t.Fatalf("concurrent apply: %v", res.err)
		}
		got = append(got, changeList(res.changes))
	}
	slices.Sort(got)
	if want := []string{"tcp-echo added", "tcp-echo unchanged"}; !slices.Equal(got, want) {
		t.Fatalf("concurrent applies changed %q, want %q", got, want)
	}
	r.wantOneNotice(t)
	r.wantDeadGone(t)
	r.wantOwned(t)
	r.wantAnswers(t, 2, "fresh")
}

// State whose owner record names this namespace is never removed as
// stale, whatever its sk_lookup link says (here detached by hand): writers
// refuse it and change nothing; tcpshift down removes it.
func TestStaleCheckKeepsThisNamespaceState(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	tg := env.Target()
	said := &notices{}
	tg.Notice = said.add
	apply(t, tg, staleConfig)
	l, err := link.LoadPinnedLink(filepath.Join(tg.Dir, bpf.TcpshiftProgTcpshiftLookup+"_link"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	before := env.KernelState()
	_, err = tg.Apply(loader.Fixed(parse(t, staleConfig)), loader.ApplyOptions{})
	wantErr(t, "apply over its own state with the link detached", err, "stale state in "+tg.Dir, "severed", "names this namespace", "not removing it")
	if !errors.Is(err, loader.ErrStale) {
		t.Fatalf("apply: %v is not ErrStale", err)
	}
	_, err = tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: 2}})
	wantErr(t, "set-weight over its own state with the link detached", err, "names this namespace", "not removing it")
	env.RequireUnchanged(before)
	if got := said.all(); len(got) != 0 {
		t.Fatalf("told %q, want nothing removed", got)
	}
	if removed, err := tg.Down(); err != nil || !removed {
		t.Fatalf("down: %v, %v; want it removed", removed, err)
	}
	if n := env.CgroupPrograms(); n != 0 {
		t.Fatalf("%d cgroup programs attached after down", n)
	}
}

// The command line: status refuses the stale state and keeps it; apply
// removes it and prints one line about it (no note besides), set-weight
// then works.
func TestStaleStateRemovedByCLI(t *testing.T) {
	bin := buildTcpshift(t)
	r := reusedState(t)
	nsEcho(t, r.ns, "127.0.0.1:9001", "fresh")
	path := newConfigFile(t, staleConfig)
	cli := func(args ...string) (string, error) {
		global := []string{"--netns", r.ns.Path(), "--bpffs", r.env.BPFFS, "--cgroup", r.env.Cgroup}
		out, err := exec.Command(bin, append(global, args...)...).CombinedOutput()
		return string(out), err
	}
	before := r.env.KernelState()
	out, err := cli("status")
	if err == nil || !strings.Contains(out, "stale state in "+r.dir) {
		t.Fatalf("status over stale state: %v\n%s", err, out)
	}
	r.env.RequireUnchanged(before)

	out, err = cli("apply", "-f", path)
	if err != nil {
		t.Fatalf("apply over stale state: %v\n%s", err, out)
	}
	var naming []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, r.dir) {
			naming = append(naming, line)
		}
	}
	if len(naming) != 1 {
		t.Fatalf("apply printed %d lines naming %s, want the one removal line:\n%s", len(naming), r.dir, out)
	}
	t.Logf("apply printed: %s", naming[0])
	line, ok := strings.CutPrefix(naming[0], "tcpshift: ")
	if !ok {
		t.Fatalf("removal line %q lacks the tcpshift: prefix", naming[0])
	}
	r.wantRemovalLine(t, line)
	if !strings.Contains(out, "service tcp-echo added\n") {
		t.Fatalf("apply output lacks service tcp-echo added:\n%s", out)
	}
	r.wantDeadGone(t)
	r.wantOwned(t)
	r.wantAnswers(t, 2, "fresh")

	out, err = cli("set-weight", "tcp-echo", "v1=3")
	if err != nil || strings.Contains(out, "stale") {
		t.Fatalf("set-weight after apply: %v\n%s", err, out)
	}
	if w := pinnedService(t, r.dir, "tcp-echo").Subsets[0].Weight; w != 3 {
		t.Fatalf("v1's weight after set-weight: %d, want 3", w)
	}
}

// Stale state is listed and removed without waiting for its inode to be
// reused; live state next to it is left alone.
func TestStaleStateRemovedWithoutInodeReuse(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	live := env.Target()
	apply(t, live, echoConfig)
	if n := env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d cgroup programs attached by the live state, want 4", n)
	}

	dir, _ := doomedState(t, env)
	if n := env.CgroupPrograms(); n != 8 {
		t.Fatalf("%d cgroup programs attached, want 4 live and 4 stale", n)
	}
	stale, err := loader.StaleStates(env.BPFFS)
	if err != nil || len(stale) != 1 || stale[0].Dir != dir {
		t.Fatalf("stale states %+v, %v; want only %s", stale, err, dir)
	}
	// Live state is never removed as stale, whatever the caller says.
	before := env.KernelState()
	err = loader.RemoveStale(env.BPFFS, loader.Stale{Dir: live.Dir, Reason: "made up"})
	wantErr(t, "removing live state as stale", err, live.Dir, "alive")
	env.RequireUnchanged(before)
	if err := loader.RemoveStale(env.BPFFS, stale[0]); err != nil {
		t.Fatalf("remove stale state: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin directory after removing it: %v", err)
	}
	if n := env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d cgroup programs attached after removing the stale state, want the live 4", n)
	}
	if stale, err := loader.StaleStates(env.BPFFS); err != nil || len(stale) != 0 {
		t.Fatalf("stale states after removal: %+v, %v", stale, err)
	}
	if err := loader.RemoveStale(env.BPFFS, stale[0]); err != nil {
		t.Fatalf("removing it again: %v, want nothing to do", err)
	}
	// The live state is whole.
	if _, err := os.Stat(filepath.Join(live.Dir, "frontends")); err != nil {
		t.Fatalf("live state: %v", err)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	if st, err := live.Status(""); err != nil || len(st.Services) != 1 || st.Services[0].Subsets[0].Connections != 8 {
		t.Fatalf("live status: %+v, %v", st, err)
	}
}
