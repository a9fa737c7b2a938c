package test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/daemon"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// logBuffer collects a daemon's log lines for the test to search.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines that contain s.
func (l *logBuffer) lines(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// daemonLog is a running daemon's log and how it ended, for daemons in the
// test process and in their own.
type daemonLog struct {
	log  *logBuffer
	done chan error // gets the daemon's end once; wait puts it back
}

func newDaemonLog() daemonLog {
	return daemonLog{log: &logBuffer{}, done: make(chan error, 1)}
}

// wait waits for the daemon to end and returns how it did; ask again at will.
func (d daemonLog) wait() error {
	err := <-d.done
	d.done <- err
	return err
}

// waitLog waits until n log lines contain s and returns them; a daemon that
// ends meanwhile fails the test.
func (d daemonLog) waitLog(t *testing.T, s string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := d.log.lines(s); len(got) >= n {
			return got
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("daemon ended while waiting for %q: %v\n%s", s, err, d.log.b.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d log lines with %q:\n%s", n, s, d.log.b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runningDaemon is `tcpshift run` in the test process.
type runningDaemon struct {
	daemonLog
	tg  *loader.Target
	hup chan os.Signal
}

// startDaemon runs the daemon on the env's namespace with the config at
// path until the test ends, then removes the kernel state.
func startDaemon(t *testing.T, env *testenv.Env, path, metricsAddr string) *runningDaemon {
	t.Helper()
	tg := env.Target()
	t.Cleanup(func() { tg.Down() }) // after the daemon stopped (cleanups run last first)
	d := &runningDaemon{daemonLog: newDaemonLog(), tg: tg, hup: make(chan os.Signal, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		d.done <- daemon.Run(ctx, daemon.Options{
			Path:        path,
			Target:      tg,
			MetricsAddr: metricsAddr,
			InNamespace: env.NS.Do,
			Grace:       time.Second,
			Reload:      d.hup,
			Log:         slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := d.wait(); err != nil {
			t.Errorf("daemon: %v", err)
		}
		if len(d.log.lines(`msg="stopping`)) != 1 {
			t.Errorf("daemon did not log its stop:\n%s", d.log.b.String())
		}
	})
	d.waitLog(t, "msg=running", 1)
	return d
}

// writeConfig replaces the file as editors do: a new file renamed over it.
func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

func newConfigFile(t *testing.T, text string) string {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	writeConfig(t, path, text)
	return path
}

func weighted(v1, v2 int) string {
	return strings.NewReplacer("weight: 80", fmt.Sprintf("weight: %d", v1), "weight: 20", fmt.Sprintf("weight: %d", v2)).Replace(echoConfig)
}

func wantSplit(t *testing.T, env *testenv.Env, n int, want map[string]int) {
	t.Helper()
	if got := env.Count(frontend, n); !maps.Equal(got, want) {
		t.Fatalf("%d connections: %v, want %v", n, got, want)
	}
}

func TestDaemonReloadsOnFileChange(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, "")
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	writeConfig(t, path, weighted(0, 100))
	d.waitLog(t, "msg=\"route config applied\"", 1)
	wantSplit(t, env, 10, map[string]int{"two": 10})

	// SIGHUP applies the file again even when it did not change: a weight
	// set by hand goes back to the file's.
	setWeights(t, d.tg, 50, 50)
	d.hup <- syscall.SIGHUP
	d.waitLog(t, "msg=\"route config applied\"", 2)
	if s := status(t, d.tg); s.Subsets[0].Weight != 0 || s.Subsets[1].Weight != 100 {
		t.Fatalf("after SIGHUP weights %d/%d, want the file's 0/100", s.Subsets[0].Weight, s.Subsets[1].Weight)
	}
	wantSplit(t, env, 10, map[string]int{"two": 10})
}

func TestDaemonRefusesBadFile(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, "")

	// Does not validate.
	writeConfig(t, path, strings.Replace(echoConfig, "weight: 20", "weight: -20", 1))
	refused := d.waitLog(t, "route config refused", 1)
	if !strings.Contains(refused[0], "services[0].route[1].weight") {
		t.Errorf("refusal does not name the bad field: %s", refused[0])
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	// Validates, but cannot apply here: sk_lookup cannot hand connections
	// for an IPv6 frontend to the IPv4 listeners.
	writeConfig(t, path, strings.Replace(weighted(50, 50), "127.0.0.100:9000", `"[::1]:9000"`, 1))
	refused = d.waitLog(t, "route config refused", 2)
	if !strings.Contains(refused[1], "address family mismatch") {
		t.Errorf("refusal does not name the cause: %s", refused[1])
	}
	if s := status(t, d.tg); s.Subsets[0].Weight != 80 || s.Listen != "127.0.0.100:9000" {
		t.Fatalf("state changed by a refused file: %+v", s)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	// No services at all: most likely a file caught half-written.
	writeConfig(t, path, "")
	d.waitLog(t, "route config refused", 3)
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	writeConfig(t, path, weighted(90, 10))
	d.waitLog(t, "msg=\"route config applied\"", 1)
	wantSplit(t, env, 10, map[string]int{"one": 9, "two": 1})
	if n := len(d.log.lines("level=ERROR")); n != 3 {
		t.Errorf("%d error lines for 3 refused files, want one each", n)
	}
}

// registeredAt is how many listeners the kernel put in the socket map at
// listen() for tcp-echo's endpoint addr.
func registeredAt(t *testing.T, tg *loader.Target, addr string) uint64 {
	t.Helper()
	for _, sub := range status(t, tg).Subsets {
		for _, ep := range sub.Endpoints {
			if ep.Address == addr {
				return ep.Registered
			}
		}
	}
	t.Fatalf("tcp-echo has no endpoint %s", addr)
	return 0
}

// TestDaemonReregistersRestartedBackend restarts v2: the kernel registers
// its new listener as it starts listening (sockops, wherever the backend
// runs), so v2's connections reach it at once, without another apply and
// with nothing left for the daemon's rescan to do.
func TestDaemonReregistersRestartedBackend(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	v2 := env.Echo("127.0.0.1:9002", "two")
	d := startDaemon(t, env, newConfigFile(t, echoConfig), "")
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	// While v2 is away its turns find no socket and are refused.
	v2.Close()
	refused := 0
	for range 10 {
		if _, err := env.Ask(frontend); err != nil {
			refused++
		}
	}
	if s := status(t, d.tg); refused != 2 || s.Refused != 2 || s.NoSocket != 2 {
		t.Fatalf("v2 away: %d of 10 refused, counted refused %d no_socket %d, want 2 each", refused, s.Refused, s.NoSocket)
	}

	env.Echo("127.0.0.1:9002", "two")
	if n := registeredAt(t, d.tg, "127.0.0.1:9002"); n != 1 {
		t.Fatalf("v2's new listener registered %d times at listen(), want 1", n)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	d.wantLines(t, `msg="listener re-registered"`, 0)
	if refused := status(t, d.tg).Refused; refused != 2 {
		t.Errorf("%d connections refused, want only the 2 while v2 was away", refused)
	}
}
