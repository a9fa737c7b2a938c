package test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/loader/listener"
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
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	reply, err := echo.Ask(c, "hello")
	if err != nil {
		return "", err
	}
	who, _, _ := strings.Cut(reply, " ")
	return who, nil
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
	if _, err := tg.Apply(parse(t, staleConfig)); err != nil {
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

// State left by a deleted namespace is never adopted by the namespace that
// reuses its inode (and so its pin directory): it is refused until
// tcpshift down removes it.
func TestStaleNamespaceStateRefused(t *testing.T) {
	env := testenv.New(t)
	dir, ino := doomedState(t, env)
	if n := env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d cgroup programs attached after the namespace died, want its 4", n)
	}

	ns := reuseInode(t, ino)
	tg, err := loader.Open(ns.Path(), env.BPFFS, env.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	t.Cleanup(func() { tg.Down() })
	if tg.Dir != dir {
		t.Fatalf("new namespace's pin directory %s, the dead one's %s", tg.Dir, dir)
	}
	nsEcho(t, ns, "127.0.0.1:9001", "fresh")
	before := env.KernelState() // the bpffs and cgroup, with the stale state

	_, err = tg.Status("")
	wantErr(t, "status over stale state", err, "stale state", dir, "severed", "tcpshift down")
	if !errors.Is(err, loader.ErrStale) {
		t.Fatalf("status: %v is not ErrStale", err)
	}
	_, err = tg.Apply(parse(t, staleConfig))
	wantErr(t, "apply over stale state", err, "stale state", dir, "tcpshift down")
	if !errors.Is(err, loader.ErrStale) {
		t.Fatalf("apply: %v is not ErrStale", err)
	}
	_, err = tg.ApplyWith(parse(t, staleConfig), loader.ApplyOptions{DryRun: true})
	if !errors.Is(err, loader.ErrStale) {
		t.Fatalf("dry run: %v is not ErrStale", err)
	}
	_, err = tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: 2}})
	if !errors.Is(err, loader.ErrStale) {
		t.Fatalf("set-weight: %v is not ErrStale", err)
	}
	env.RequireUnchanged(before)
	// The stale state steers nothing here, but its cgroup hooks stay.
	if n := nsLookupPrograms(t, ns); n != 0 {
		t.Fatalf("%d sk_lookup programs attached to the new namespace", n)
	}
	if _, err := nsAsk(ns, "127.0.0.100:9000"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("127.0.0.100:9000 in the new namespace: %v, want refused", err)
	}
	if n := env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d cgroup programs attached, want the stale state's 4", n)
	}

	removed, err := tg.Down()
	if err != nil || !removed {
		t.Fatalf("down over stale state: %v, %v; want it removed", removed, err)
	}
	if n := env.CgroupPrograms(); n != 0 {
		t.Fatalf("%d cgroup programs attached after down, want 0", n)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin directory after down: %v", err)
	}
	if stale, err := loader.StaleStates(env.BPFFS); err != nil || len(stale) != 0 {
		t.Fatalf("stale states after down: %+v, %v", stale, err)
	}

	// Now the new namespace works as any other.
	changes, err := tg.Apply(parse(t, staleConfig))
	if err != nil {
		t.Fatalf("apply after down: %v", err)
	}
	if got := changeList(changes); got != "tcp-echo added" {
		t.Fatalf("apply after down changed %q, want tcp-echo added", got)
	}
	for range 3 {
		if who, err := nsAsk(ns, "127.0.0.100:9000"); err != nil || who != "fresh" {
			t.Fatalf("new namespace after apply: answered by %q, %v", who, err)
		}
	}
	st, err := tg.Status("")
	if err != nil || len(st.Services) != 1 || st.Services[0].Subsets[0].Connections != 3 {
		t.Fatalf("status after apply: %+v, %v", st, err)
	}
	if n := env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d cgroup programs attached after the new apply, want 4", n)
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
