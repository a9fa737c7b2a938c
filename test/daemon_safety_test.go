package test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/daemon"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	tsmaps "github.com/tcpshift/tcpshift/maps"
)

// The daemon's side of "safe to operate": it says it manages the namespace,
// other writers are refused unless forced, set-weight is a visible runtime
// override, every change it did not make is logged, it tells systemd when
// it is ready, and it starts before its backends.

// otherService is a second lookup-mode service, on a loopback address of
// its own (no route needed), answered by v1's backend.
const otherService = `- name: other
  listen: 127.0.0.101:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`

// outsideWithin is how soon the daemon must log a change it did not make:
// it looks at every tick (250ms).
const outsideWithin = time.Second

// waitLogWithin is waitLog that also fails when the nth line came later
// than within after since.
func (d daemonLog) waitLogWithin(t *testing.T, s string, n int, since time.Time, within time.Duration) []string {
	t.Helper()
	lines := d.waitLog(t, s, n)
	took := time.Since(since)
	t.Logf("%q logged %s after the change", s, took.Round(time.Millisecond))
	if took > within {
		t.Fatalf("%q logged %s after the change, want within %s", s, took.Round(time.Millisecond), within)
	}
	return lines
}

// wantLines fails unless exactly n log lines contain s.
func (d daemonLog) wantLines(t *testing.T, s string, n int) {
	t.Helper()
	if got := d.log.lines(s); len(got) != n {
		t.Fatalf("%d log lines with %q, want %d:\n%s", len(got), s, n, d.log.b.String())
	}
}

// askOutcomes opens n connections to the frontend one after another and
// counts who answered; a reset counts as "refused", anything else fails.
func askOutcomes(t *testing.T, env *testenv.Env, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		who, err := env.Ask(frontend)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			who = "refused"
		case err != nil:
			t.Fatalf("connection %d: %v", i, err)
		}
		got[who]++
	}
	return got
}

func wantAskOutcomes(t *testing.T, env *testenv.Env, n int, want map[string]int) {
	t.Helper()
	if got := askOutcomes(t, env, n); !maps.Equal(got, want) {
		t.Fatalf("%d connections: %v, want %v", n, got, want)
	}
}

// wantWeights checks tcp-echo's weights in force, the file's, and the
// override flags status reports.
func wantWeights(t *testing.T, tg *loader.Target, v1, v2, file1, file2 uint64) {
	t.Helper()
	s := status(t, tg)
	for i, want := range []struct{ w, f uint64 }{{v1, file1}, {v2, file2}} {
		sub := s.Subsets[i]
		if sub.Weight != want.w || sub.FileWeight != want.f || sub.Override != (want.w != want.f) {
			t.Fatalf("subset %s: weight %d file_weight %d override %v, want %d %d %v",
				sub.Name, sub.Weight, sub.FileWeight, sub.Override, want.w, want.f, want.w != want.f)
		}
	}
}

// wantWeightMetrics checks the weight gauges the metrics endpoint serves.
func wantWeightMetrics(t *testing.T, env *testenv.Env, addr string, v1, v2, file1, file2 uint64) {
	t.Helper()
	fams := scrape(t, env, addr)
	b := func(x bool) float64 {
		if x {
			return 1
		}
		return 0
	}
	for _, c := range []struct {
		name   string
		subset string
		want   float64
	}{
		{"tcpshift_subset_weight", "v1", float64(v1)},
		{"tcpshift_subset_weight", "v2", float64(v2)},
		{"tcpshift_subset_file_weight", "v1", float64(file1)},
		{"tcpshift_subset_file_weight", "v2", float64(file2)},
		{"tcpshift_subset_weight_overridden", "v1", b(v1 != file1)},
		{"tcpshift_subset_weight_overridden", "v2", b(v2 != file2)},
	} {
		labels := map[string]string{"service": "tcp-echo", "subset": c.subset}
		if got := value(t, fams, c.name, labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, labels, got, c.want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// wantReloadMetrics checks the daemon's reload counters.
func wantReloadMetrics(t *testing.T, env *testenv.Env, addr string, reloads, failures, lastOK float64) {
	t.Helper()
	fams := scrape(t, env, addr)
	for _, c := range []struct {
		name string
		want float64
	}{
		{"tcpshift_config_reloads_total", reloads},
		{"tcpshift_config_reload_failures_total", failures},
		{"tcpshift_config_last_reload_successful", lastOK},
	} {
		if got := value(t, fams, c.name, nil); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// startStoppableDaemon is startDaemon with a stop function that ends the
// daemon (as SIGTERM does) and returns how it ended.
func startStoppableDaemon(t *testing.T, env *testenv.Env, path string) (*runningDaemon, func() error) {
	t.Helper()
	tg := env.Target()
	t.Cleanup(func() { tg.Down() }) // after the daemon stopped
	d := &runningDaemon{daemonLog: newDaemonLog(), tg: tg, hup: make(chan os.Signal, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		d.done <- daemon.Run(ctx, daemon.Options{
			Path:        path,
			Target:      tg,
			InNamespace: env.NS.Do,
			Grace:       time.Second,
			Reload:      d.hup,
			Log:         slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
	}()
	stop := func() error {
		cancel()
		return d.wait()
	}
	t.Cleanup(func() { stop() })
	d.waitLog(t, "msg=running", 1)
	return d, stop
}

// daemonRecord reads the daemon record from the pinned owner record.
func daemonRecord(t *testing.T, tg *loader.Target) (pid uint32, file string) {
	t.Helper()
	set, err := tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	o, err := set.Owner()
	if err != nil {
		t.Fatal(err)
	}
	return o.DaemonPid, tsmaps.DaemonFile(&o)
}

// tcpshiftCLI runs the built binary on the env's namespace and returns its
// combined output.
func tcpshiftCLI(env *testenv.Env, bin string, args ...string) (string, error) {
	global := []string{"--netns", env.NS.Path(), "--bpffs", env.BPFFS, "--cgroup", env.Cgroup}
	out, err := exec.Command(bin, append(global, args...)...).CombinedOutput()
	return string(out), err
}

// TestDaemonSetWeightIsVisibleOverride: set-weight while the daemon runs is
// a runtime override that status, metrics and the log show; an edit that
// leaves the service's route alone keeps it; a route change or SIGHUP ends
// it (the file wins).
func TestDaemonSetWeightIsVisibleOverride(t *testing.T) {
	const addr = "127.0.0.1:9090" // inside the test's namespace
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, addr)
	wantWeights(t, d.tg, 80, 20, 80, 20)
	wantWeightMetrics(t, env, addr, 80, 20, 80, 20)
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	const override = "runtime override by set-weight"
	set := time.Now()
	setWeights(t, d.tg, 50, 50)
	lines := d.waitLogWithin(t, override, 1, set, outsideWithin)
	for _, want := range []string{"level=INFO", "service=tcp-echo", `weights="v1=50 v2=50"`, `file_weights="v1=80 v2=20"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("override line lacks %s: %s", want, lines[0])
		}
	}
	wantWeights(t, d.tg, 50, 50, 80, 20)
	wantWeightMetrics(t, env, addr, 50, 50, 80, 20)
	wantSplit(t, env, 10, map[string]int{"one": 5, "two": 5})
	d.wantLines(t, "outside the daemon", 0)

	// Another service added to the file: tcp-echo's route is the same,
	// so the override stays.
	const kept = "set-weight override kept"
	writeConfig(t, path, echoConfig+otherService)
	d.waitLog(t, `msg="route config applied"`, 1)
	if lines := d.waitLog(t, kept, 1); !strings.Contains(lines[0], "service=tcp-echo") {
		t.Errorf("kept line names another service: %s", lines[0])
	}
	wantWeights(t, d.tg, 50, 50, 80, 20)
	wantWeightMetrics(t, env, addr, 50, 50, 80, 20)
	wantSplit(t, env, 10, map[string]int{"one": 5, "two": 5})

	// A comment only: the bytes changed, so the file is applied again,
	// and the override stays.
	writeConfig(t, path, "# shifting tcp-echo by hand\n"+echoConfig+otherService)
	d.waitLog(t, `msg="route config applied"`, 2)
	d.waitLog(t, kept, 2)
	wantWeights(t, d.tg, 50, 50, 80, 20)
	wantWeightMetrics(t, env, addr, 50, 50, 80, 20)
	wantSplit(t, env, 10, map[string]int{"one": 5, "two": 5})

	// tcp-echo's route changes in the file: the file's weights win.
	writeConfig(t, path, weighted(70, 30)+otherService)
	d.waitLog(t, `msg="route config applied"`, 3)
	wantWeights(t, d.tg, 70, 30, 70, 30)
	wantWeightMetrics(t, env, addr, 70, 30, 70, 30)
	wantSplit(t, env, 10, map[string]int{"one": 7, "two": 3})
	d.wantLines(t, kept, 2)

	// A new override, then SIGHUP: the file wins again.
	set = time.Now()
	setWeights(t, d.tg, 0, 100)
	lines = d.waitLogWithin(t, override, 2, set, outsideWithin)
	if !strings.Contains(lines[1], `weights="v1=0 v2=100" file_weights="v1=70 v2=30"`) {
		t.Errorf("second override line: %s", lines[1])
	}
	wantWeights(t, d.tg, 0, 100, 70, 30)
	wantWeightMetrics(t, env, addr, 0, 100, 70, 30)
	wantSplit(t, env, 10, map[string]int{"two": 10})
	d.hup <- syscall.SIGHUP
	d.waitLog(t, `msg="route config applied"`, 4)
	wantWeights(t, d.tg, 70, 30, 70, 30)
	wantWeightMetrics(t, env, addr, 70, 30, 70, 30)
	wantSplit(t, env, 10, map[string]int{"one": 7, "two": 3})

	// Each override was logged once, nothing was taken for a foreign
	// change, and nothing went wrong.
	time.Sleep(2 * outsideWithin)
	d.wantLines(t, override, 2)
	d.wantLines(t, kept, 2)
	d.wantLines(t, "outside the daemon", 0)
	d.wantLines(t, "level=ERROR", 0)
}

// TestDaemonRestoredFileApplies: a file put back to the last good content
// after a refused edit is applied again, and the metric says so.
func TestDaemonRestoredFileApplies(t *testing.T) {
	const addr = "127.0.0.1:9090"
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, addr)
	wantReloadMetrics(t, env, addr, 1, 0, 1)

	// The same bytes written again are not applied again.
	writeConfig(t, path, echoConfig)
	time.Sleep(500 * time.Millisecond) // the watcher settles within 100ms
	d.wantLines(t, `msg="route config applied"`, 0)

	// Does not parse, then the last good content again.
	writeConfig(t, path, "services: [")
	d.waitLog(t, "route config refused", 1)
	wantReloadMetrics(t, env, addr, 1, 1, 0)
	writeConfig(t, path, echoConfig)
	if lines := d.waitLog(t, `msg="route config applied"`, 1); !strings.Contains(lines[0], "services=1") {
		t.Errorf("applied line: %s", lines[0])
	}
	wantReloadMetrics(t, env, addr, 2, 1, 1)
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	// Validates but cannot apply here (IPv6 frontend, IPv4 listeners),
	// then the last good content again.
	writeConfig(t, path, strings.Replace(echoConfig, "127.0.0.100:9000", `"[::1]:9000"`, 1))
	d.waitLog(t, "route config refused", 2)
	wantReloadMetrics(t, env, addr, 2, 2, 0)
	writeConfig(t, path, echoConfig)
	d.waitLog(t, `msg="route config applied"`, 2)
	wantReloadMetrics(t, env, addr, 3, 2, 1)
	wantWeights(t, d.tg, 80, 20, 80, 20)
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	d.wantLines(t, "level=ERROR", 2)
}

// Ports of their own for the backends that start after the daemon: a
// listener on the address in any other network namespace on the host (other
// packages' tests run alongside) must not matter, see
// TestDaemonStartsBeforeBackendsListeningElsewhere.
const lateV1, lateV2 = "127.0.0.1:19301", "127.0.0.1:19302"

var lateConfig = strings.NewReplacer("127.0.0.1:9001", lateV1, "127.0.0.1:9002", lateV2).Replace(echoConfig)

// TestDaemonStartsBeforeBackends: lookup-mode backends not listening yet do
// not stop the daemon; their turns are refused until they listen, and then
// the daemon registers them.
func TestDaemonStartsBeforeBackends(t *testing.T) {
	env := testenv.New(t)
	path := newConfigFile(t, lateConfig)
	d := startDaemon(t, env, path, "")
	waiting := d.waitLog(t, "endpoint not listening yet", 2)
	for i, ep := range []string{lateV1, lateV2} {
		if !strings.Contains(waiting[i], "level=WARN") || !strings.Contains(waiting[i], "service=tcp-echo") ||
			!strings.Contains(waiting[i], "endpoint="+ep) {
			t.Errorf("waiting line %d: %s, want a warning for %s", i, waiting[i], ep)
		}
	}
	if s := status(t, d.tg); s.Mode != "lookup" || s.Subsets[0].Weight != 80 || s.Subsets[1].Weight != 20 {
		t.Fatalf("status %+v, want lookup mode at 80/20", s)
	}

	// Nothing listens: every connection finds no socket and is reset.
	wantAskOutcomes(t, env, 10, map[string]int{"refused": 10})
	if s := status(t, d.tg); s.Refused != 10 || s.NoSocket != 10 {
		t.Fatalf("refused %d no_socket %d, want 10 each", s.Refused, s.NoSocket)
	}

	// v1 listens: the kernel registers it as it starts listening, v1's
	// turns reach it and v2's are still refused.
	env.Echo(lateV1, "one")
	if n := registeredAt(t, d.tg, lateV1); n != 1 {
		t.Fatalf("v1 registered %d times at listen(), want 1", n)
	}
	wantAskOutcomes(t, env, 10, map[string]int{"one": 8, "refused": 2})
	if s := status(t, d.tg); s.Refused != 12 || s.NoSocket != 12 {
		t.Fatalf("refused %d no_socket %d, want 12 each", s.Refused, s.NoSocket)
	}

	// v2 listens too: 80/20 and no more refusals.
	env.Echo(lateV2, "two")
	if n := registeredAt(t, d.tg, lateV2); n != 1 {
		t.Fatalf("v2 registered %d times at listen(), want 1", n)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	if s := status(t, d.tg); s.Refused != 12 || s.NoSocket != 12 ||
		s.Subsets[0].Connections != 16 || s.Subsets[1].Connections != 2 {
		t.Fatalf("status %+v, want 12 refused and 16/2 connections", s)
	}
	d.wantLines(t, "level=ERROR", 0)
}

// TestDaemonStartsBeforeBackendsListeningElsewhere: a backend not listening
// yet in the daemon's namespace still does not stop the daemon when some
// other network namespace on the host (another container, another test)
// happens to listen on the same address.
func TestDaemonStartsBeforeBackendsListeningElsewhere(t *testing.T) {
	env := testenv.New(t)
	env.Remote().Echo(lateV2, "elsewhere") // same address, another namespace
	env.Echo(lateV1, "one")
	d, _ := startStoppableDaemon(t, env, newConfigFile(t, lateConfig))
	if waiting := d.waitLog(t, "endpoint not listening yet", 1); !strings.Contains(waiting[0], "endpoint="+lateV2) {
		t.Errorf("waiting line: %s", waiting[0])
	}
	wantAskOutcomes(t, env, 10, map[string]int{"one": 8, "refused": 2})
	env.Echo(lateV2, "two")
	if n := registeredAt(t, d.tg, lateV2); n != 1 {
		t.Fatalf("v2 registered %d times at listen(), want 1", n)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	d.wantLines(t, `msg="listener re-registered"`, 0)
}

// TestDaemonNotifiesSystemd: with NOTIFY_SOCKET set the daemon says
// READY=1 once the file is applied and STOPPING=1 when it stops; a daemon
// that fails to start says nothing.
func TestDaemonNotifiesSystemd(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	sockPath := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", sockPath) // read by each notification
	next := func(within time.Duration) (string, bool) {
		buf := make([]byte, 4096)
		sock.SetReadDeadline(time.Now().Add(within))
		n, err := sock.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", false
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n]), true
	}

	// A file that validates but does not apply here: Run fails, silently.
	bad := newConfigFile(t, strings.Replace(echoConfig, "127.0.0.100:9000", `"[::1]:9000"`, 1))
	badTg := env.Target()
	t.Cleanup(func() { badTg.Down() })
	err = daemon.Run(context.Background(), daemon.Options{Path: bad, Target: badTg, InNamespace: env.NS.Do})
	if !errors.Is(err, loader.ErrFamily) {
		t.Fatalf("run with a file that cannot apply: %v, want an address family mismatch", err)
	}
	if msg, ok := next(300 * time.Millisecond); ok {
		t.Fatalf("a daemon that failed to start sent %q", msg)
	}

	path := newConfigFile(t, echoConfig)
	d, stop := startStoppableDaemon(t, env, path)
	msg, ok := next(5 * time.Second)
	if !ok || msg != "READY=1" {
		t.Fatalf("first notification %q (received %v), want READY=1", msg, ok)
	}
	// Ready means applied and recorded as the namespace's daemon.
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	if pid, file := daemonRecord(t, d.tg); int(pid) != os.Getpid() || file != path {
		t.Fatalf("daemon record pid %d file %q, want %d %q", pid, file, os.Getpid(), path)
	}
	if msg, ok := next(300 * time.Millisecond); ok {
		t.Fatalf("notification %q while running, want none", msg)
	}

	if err := stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	msg, ok = next(5 * time.Second)
	if !ok || msg != "STOPPING=1" {
		t.Fatalf("notification on stop %q (received %v), want STOPPING=1", msg, ok)
	}
	if msg, ok := next(300 * time.Millisecond); ok {
		t.Fatalf("notification %q after STOPPING=1", msg)
	}
	// It cleared its record and left the state in place.
	if pid, file := daemonRecord(t, d.tg); pid != 0 || file != "" {
		t.Fatalf("daemon record pid %d file %q after stop, want it cleared", pid, file)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	d.wantLines(t, "notify systemd", 0)
}

// TestDaemonRefusesCLIApplyAndDown: while `tcpshift run` (its own process)
// manages the namespace, apply and down from others are refused, naming
// the daemon's pid and file, unless forced; a second daemon is refused;
// once the daemon stops, plain apply works again.
func TestDaemonRefusesCLIApplyAndDown(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	other := newConfigFile(t, weighted(50, 50))
	tg := env.Target()
	t.Cleanup(func() { tg.Down() }) // after the daemons were killed
	bin := buildTcpshift(t)
	p := startDaemonProcess(t, env, bin, "run", "-f", path)
	pid := p.cmd.Process.Pid
	names := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, loader.ErrDaemon) {
			t.Fatalf("%s: %v, want refused with ErrDaemon", what, err)
		}
		for _, want := range []string{fmt.Sprintf("pid %d", pid), path, "--force"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: refusal %q does not say %q", what, err, want)
			}
		}
	}

	st, err := tg.Status("")
	if err != nil {
		t.Fatal(err)
	}
	if st.Daemon == nil || st.Daemon.Pid != pid || st.Daemon.File != path {
		t.Fatalf("status daemon %+v, want pid %d following %s", st.Daemon, pid, path)
	}
	if d, err := tg.RunningDaemon(); err != nil || d == nil || d.Pid != pid {
		t.Fatalf("running daemon %+v, %v, want pid %d", d, err, pid)
	}

	// The loader refuses, and changes nothing.
	_, err = tg.Apply(loader.Fixed(parse(t, weighted(50, 50))), loader.ApplyOptions{})
	names("apply", err)
	removed, err := tg.Down()
	names("down", err)
	if removed {
		t.Error("refused down says it removed the state")
	}
	wantWeights(t, tg, 80, 20, 80, 20)
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	// So does the CLI, naming the daemon too.
	for _, args := range [][]string{{"apply", "-f", other}, {"down"}} {
		out, err := tcpshiftCLI(env, bin, args...)
		if err == nil {
			t.Fatalf("tcpshift %v while the daemon runs: succeeded: %s", args, out)
		}
		for _, want := range []string{"managed by tcpshift run", fmt.Sprintf("pid %d", pid), path} {
			if !strings.Contains(out, want) {
				t.Errorf("tcpshift %v: %q does not say %q", args, out, want)
			}
		}
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	// A second daemon is refused and leaves the first one's record.
	out, err := tcpshiftCLI(env, bin, "run", "-f", other)
	if err == nil || !strings.Contains(out, "already manages") || !strings.Contains(out, fmt.Sprintf("pid %d", pid)) {
		t.Fatalf("second daemon: %v: %s, want refused naming pid %d", err, out, pid)
	}
	if st, err := tg.Status(""); err != nil || st.Daemon == nil || st.Daemon.Pid != pid {
		t.Fatalf("after the second daemon's refusal, status daemon %+v, %v", st.Daemon, err)
	}

	// Forced, from the loader and from the CLI: the change is made and
	// the daemon logs it as someone else's.
	forced := time.Now()
	if _, err := tg.Apply(loader.Fixed(parse(t, weighted(50, 50))), loader.ApplyOptions{Force: true}); err != nil {
		t.Fatalf("forced apply: %v", err)
	}
	p.waitLogWithin(t, "service changed outside the daemon", 1, forced, outsideWithin)
	wantWeights(t, tg, 50, 50, 50, 50)
	wantSplit(t, env, 10, map[string]int{"one": 5, "two": 5})
	forced = time.Now()
	if out, err := tcpshiftCLI(env, bin, "apply", "--force", "-f", newConfigFile(t, weighted(30, 70))); err != nil {
		t.Fatalf("apply --force: %v: %s", err, out)
	}
	p.waitLogWithin(t, "service changed outside the daemon", 2, forced, outsideWithin)
	wantWeights(t, tg, 30, 70, 30, 70)
	wantSplit(t, env, 10, map[string]int{"one": 3, "two": 7})

	// set-weight is not refused: it is a runtime override.
	set := time.Now()
	if out, err := tcpshiftCLI(env, bin, "set-weight", "tcp-echo", "v1=100", "v2=0"); err != nil {
		t.Fatalf("set-weight while the daemon runs: %v: %s", err, out)
	}
	lines := p.waitLogWithin(t, "runtime override by set-weight", 1, set, outsideWithin)
	if !strings.Contains(lines[0], `weights="v1=100 v2=0" file_weights="v1=30 v2=70"`) {
		t.Errorf("override line: %s", lines[0])
	}
	wantWeights(t, tg, 100, 0, 30, 70)
	wantSplit(t, env, 10, map[string]int{"one": 10})

	// SIGTERM: the daemon stops, clears its record, leaves the state.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(); err != nil {
		t.Fatalf("daemon after SIGTERM: %v\n%s", err, p.log.b.String())
	}
	p.wantLines(t, `msg="stopping`, 1)
	if pid, file := daemonRecord(t, tg); pid != 0 || file != "" {
		t.Fatalf("daemon record pid %d file %q after SIGTERM, want it cleared", pid, file)
	}
	if st, err := tg.Status(""); err != nil || st.Daemon != nil {
		t.Fatalf("status daemon %+v, %v after SIGTERM, want none", st.Daemon, err)
	}
	wantSplit(t, env, 10, map[string]int{"one": 10})
	if _, err := tg.Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{}); err != nil {
		t.Fatalf("apply after the daemon stopped: %v", err)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	if out, err := tcpshiftCLI(env, bin, "apply", "-f", other); err != nil {
		t.Fatalf("tcpshift apply after the daemon stopped: %v: %s", err, out)
	}
	wantSplit(t, env, 10, map[string]int{"one": 5, "two": 5})

	// A killed daemon leaves its record, but a dead process manages
	// nothing: apply is not refused.
	killed := startDaemonProcess(t, env, bin, "run", "-f", path)
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.wait()
	if pid, _ := daemonRecord(t, tg); int(pid) != killed.cmd.Process.Pid {
		t.Fatalf("daemon record pid %d after SIGKILL, want the killed daemon's %d left", pid, killed.cmd.Process.Pid)
	}
	if st, err := tg.Status(""); err != nil || st.Daemon != nil {
		t.Fatalf("status daemon %+v, %v after SIGKILL, want none", st.Daemon, err)
	}
	if _, err := tg.Apply(loader.Fixed(parse(t, weighted(60, 40))), loader.ApplyOptions{}); err != nil {
		t.Fatalf("apply after the daemon was killed: %v", err)
	}
	wantSplit(t, env, 10, map[string]int{"one": 6, "two": 4})

	// down --force under a running daemon removes the state; the daemon
	// sees its state gone and stops with an error.
	p2 := startDaemonProcess(t, env, bin, "run", "-f", path)
	_, err = tg.Down()
	if !errors.Is(err, loader.ErrDaemon) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", p2.cmd.Process.Pid)) {
		t.Fatalf("down under the second daemon: %v, want refused naming pid %d", err, p2.cmd.Process.Pid)
	}
	if removed, err := tg.DownWith(loader.DownOptions{Force: true}); !removed || err != nil {
		t.Fatalf("forced down: removed %v, %v", removed, err)
	}
	done := make(chan error, 1)
	go func() { done <- p2.wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("daemon ended cleanly after its state was removed, want an error:\n%s", p2.log.b.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("daemon still runs 5s after forced down:\n%s", p2.log.b.String())
	}
	p2.wantLines(t, "is gone", 1)
	if d, err := tg.RunningDaemon(); err != nil || d != nil {
		t.Fatalf("running daemon %+v, %v after forced down, want none", d, err)
	}
	refused(t, env)
}

// TestDaemonLogsOutsideChanges: changes the daemon did not make (a forced
// apply) are logged within a second, each once; the next file the daemon
// applies wins over them.
func TestDaemonLogsOutsideChanges(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, "")
	outsider := env.Target()
	force := func(text string) time.Time {
		t.Helper()
		at := time.Now()
		if _, err := outsider.Apply(loader.Fixed(parse(t, text)), loader.ApplyOptions{Force: true}); err != nil {
			t.Fatalf("forced apply: %v", err)
		}
		return at
	}
	ask := func(addr, want string) {
		t.Helper()
		if who, err := env.Ask(addr); err != nil || who != want {
			t.Fatalf("%s answered by %q (%v), want %q", addr, who, err, want)
		}
	}

	// Added.
	at := force(echoConfig + otherService)
	lines := d.waitLogWithin(t, "service added outside the daemon", 1, at, outsideWithin)
	if !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "service=other") {
		t.Errorf("added line: %s", lines[0])
	}
	ask("127.0.0.101:9000", "one")

	// Changed: the other service moves to v2's backend.
	at = force(echoConfig + strings.Replace(otherService, "127.0.0.1:9001", "127.0.0.1:9002", 1))
	lines = d.waitLogWithin(t, "service changed outside the daemon", 1, at, outsideWithin)
	if !strings.Contains(lines[0], "service=other") {
		t.Errorf("changed line: %s", lines[0])
	}
	ask("127.0.0.101:9000", "two")

	// Removed.
	at = force(echoConfig)
	lines = d.waitLogWithin(t, "service removed outside the daemon", 1, at, outsideWithin)
	if !strings.Contains(lines[0], "service=other") {
		t.Errorf("removed line: %s", lines[0])
	}

	// The same state forced again is no change.
	force(echoConfig)
	time.Sleep(2 * outsideWithin)
	d.wantLines(t, "outside the daemon", 3)
	for _, line := range d.log.lines("outside the daemon") {
		if strings.Contains(line, "tcp-echo") {
			t.Errorf("tcp-echo was never touched: %s", line)
		}
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})

	// The next file applied wins: the outsider's service goes, and that
	// removal is the daemon's own (not logged as an outside change).
	at = force(echoConfig + otherService)
	d.waitLogWithin(t, "service added outside the daemon", 2, at, outsideWithin)
	writeConfig(t, path, "# edited\n"+echoConfig)
	d.waitLog(t, `msg="route config applied"`, 1)
	d.waitLog(t, "name=other action=removed", 1)
	st, err := d.tg.Status("")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || st.Services[0].Name != "tcp-echo" {
		t.Fatalf("services after the file was applied: %+v, want tcp-echo only", st.Services)
	}
	time.Sleep(2 * outsideWithin)
	d.wantLines(t, "outside the daemon", 4)
	d.wantLines(t, "level=ERROR", 0)
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
}

// TestDaemonLogsOverrideEnd: when a service's weights go back to the
// file's while the daemon runs (set-weight to the file's weights, or a
// forced apply), the override is over: the daemon logs the change within a
// second, and does not say a set-weight override is in force.
func TestDaemonLogsOverrideEnd(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, "")
	const override = "runtime override by set-weight"
	// newLines waits for a log line about tcp-echo after the first n and
	// returns those lines.
	newLines := func(n int, since time.Time) []string {
		t.Helper()
		d.waitLogWithin(t, "service=tcp-echo", n+1, since, outsideWithin)
		time.Sleep(2 * daemon.DefaultTick) // any line logged with it
		return d.log.lines("service=tcp-echo")[n:]
	}
	wantNoOverrideClaim := func(how string, lines []string) {
		t.Helper()
		for _, line := range lines {
			if strings.Contains(line, override) {
				t.Errorf("%s ended the override (status: override false), but the daemon logs one in force: %s", how, line)
			}
		}
	}

	at := time.Now()
	setWeights(t, d.tg, 50, 50)
	d.waitLogWithin(t, override, 1, at, outsideWithin)
	n := len(d.log.lines("service=tcp-echo"))
	at = time.Now()
	setWeights(t, d.tg, 80, 20)
	wantWeights(t, d.tg, 80, 20, 80, 20)
	wantNoOverrideClaim("set-weight to the file's weights", newLines(n, at))

	at = time.Now()
	o := len(d.log.lines(override))
	setWeights(t, d.tg, 50, 50)
	d.waitLogWithin(t, override, o+1, at, outsideWithin)
	n = len(d.log.lines("service=tcp-echo"))
	at = time.Now()
	if _, err := env.Target().Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	wantWeights(t, d.tg, 80, 20, 80, 20)
	wantNoOverrideClaim("a forced apply of the file", newLines(n, at))
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
}
