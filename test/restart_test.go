package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// restartConfig has a lookup-mode service (local backends) and a
// connect-mode one (backends on the remote host).
const restartConfig = echoConfig + `- name: tcp-echo-remote
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
    v2: {endpoints: [10.0.0.2:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

// buildTcpshift builds the tcpshift binary into the test's directory.
func buildTcpshift(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tcpshift")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tcpshift/tcpshift/cmd/tcpshift").CombinedOutput()
	if err != nil {
		t.Fatalf("build tcpshift: %v\n%s", err, out)
	}
	return bin
}

// daemonProcess is `tcpshift run` as its own process.
type daemonProcess struct {
	daemonLog
	cmd *exec.Cmd
}

// startDaemonProcess runs bin with the env's namespace, bpffs and cgroup
// and then args (run -f FILE …), and waits until it runs.
func startDaemonProcess(t *testing.T, env *testenv.Env, bin string, args ...string) *daemonProcess {
	t.Helper()
	p := &daemonProcess{daemonLog: newDaemonLog()}
	global := []string{"--netns", env.NS.Path(), "--bpffs", env.BPFFS, "--cgroup", env.Cgroup}
	p.cmd = exec.Command(bin, append(global, args...)...)
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.wait()
	})
	p.waitLog(t, "msg=running", 1)
	return p
}

// load opens connections to each frontend, one after another per frontend,
// until stopped; every connection must be answered.
type load struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []error
}

func startLoad(env *testenv.Env, frontends ...string) *load {
	l := &load{stop: make(chan struct{})}
	for _, fe := range frontends {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if _, err := env.Ask(fe); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

// during lets the load run for d and returns how many connections it made.
func (l *load) during(d time.Duration) int64 {
	before := l.ok.Load()
	time.Sleep(d)
	return l.ok.Load() - before
}

func TestDaemonKill9AndRestartUnderLoad(t *testing.T) {
	env := testenv.New(t)
	remote := env.Remote()
	remote.Echo("10.0.0.2:9001", "one")
	remote.Echo("10.0.0.2:9002", "two")
	env.Join()
	echoPair(env)
	path := newConfigFile(t, restartConfig)
	tg := env.Target()
	t.Cleanup(func() { tg.Down() })

	bin := buildTcpshift(t)
	first := startDaemonProcess(t, env, bin, "run", "-f", path)
	before, err := tg.Links()
	if err != nil {
		t.Fatal(err)
	}
	swaps := status(t, tg).Swaps
	l := startLoad(env, frontend, "10.96.0.10:9000")
	running := l.during(300 * time.Millisecond)

	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.wait()
	orphaned := l.during(300 * time.Millisecond)

	second := startDaemonProcess(t, env, bin, "run", "-f", path)
	restarted := l.during(300 * time.Millisecond)
	l.end()

	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d of %d connections failed: %v", n, n+l.ok.Load(), l.errs[0])
	}
	t.Logf("connections: %d with the first daemon, %d with none, %d with the second", running, orphaned, restarted)
	if running == 0 || orphaned == 0 || restarted == 0 {
		t.Fatalf("load stalled: %d, %d, %d connections", running, orphaned, restarted)
	}

	// The second daemon adopted the state: same weights, no table swapped,
	// and, being the same build, the programs attached as they were.
	for _, name := range []string{"tcp-echo", "tcp-echo-remote"} {
		st, err := tg.Status(name)
		if err != nil {
			t.Fatal(err)
		}
		s := st.Services[0]
		if s.Subsets[0].Weight != 80 || s.Subsets[1].Weight != 20 {
			t.Errorf("%s: weights %d/%d after restart, want 80/20", name, s.Subsets[0].Weight, s.Subsets[1].Weight)
		}
	}
	if got := status(t, tg).Swaps; got != swaps {
		t.Errorf("table swaps %d after restart, want %d (adopted, not rewritten)", got, swaps)
	}
	after, err := tg.Links()
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if after[i].Link != before[i].Link {
			t.Errorf("%s: link %d replaced by %d, want it updated in place", before[i].Program, before[i].Link, after[i].Link)
		}
		if after[i].ProgramID != before[i].ProgramID {
			t.Errorf("%s: program %d replaced by %d, want the same build's kept", before[i].Program, before[i].ProgramID, after[i].ProgramID)
		}
	}

	// SIGTERM stops the daemon cleanly and leaves the kernel state.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.wait(); err != nil {
		t.Fatalf("daemon after SIGTERM: %v\n%s", err, second.log.b.String())
	}
	if len(second.log.lines(`msg="stopping`)) != 1 {
		t.Errorf("no stop line:\n%s", second.log.b.String())
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
}

// TestIncompatiblePinnedState: maps pinned by a build with other layouts
// are refused with a message that says what to do, and down clears them.
func TestIncompatiblePinnedState(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	t.Cleanup(func() { tg.Down() })
	// An endpoint_counts map as the build before passive checks pinned it.
	if err := os.MkdirAll(tg.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "endpoint_counts", Type: ebpf.Array, KeySize: 4, ValueSize: 48, MaxEntries: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(filepath.Join(tg.Dir, "endpoint_counts")); err != nil {
		t.Fatal(err)
	}

	_, err = tg.Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "another tcpshift build") || !strings.Contains(err.Error(), "tcpshift down") {
		t.Fatalf("apply over an incompatible pinned state: %v, want a refusal that says to run tcpshift down", err)
	}
	if progs := env.LookupPrograms(); len(progs) != 0 {
		t.Fatalf("programs attached despite the refusal: %v", progs)
	}
	if removed, err := tg.Down(); !removed || err != nil {
		t.Fatalf("down: removed %v, %v", removed, err)
	}
	if _, err := tg.Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{}); err != nil {
		t.Fatalf("apply after down: %v", err)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
}
