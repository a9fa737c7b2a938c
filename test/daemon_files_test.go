package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// How the daemon reads the files it follows: only whole files are applied
// (issue 26): it waits for writers to finish, holds a file that would drop
// what is in force until it stayed unchanged for the hold (SIGHUP applies
// it at once), follows the paths it was given whatever they name now, and
// is not starved by a writer that never pauses.

// suspectHold is the daemon's hold of a suspect file (daemon.suspectHold).
const suspectHold = 3 * time.Second

const appliedLine = `msg="route config applied"`

// writeInPlace writes text over path as `cat > path` does: truncated, then
// written, no rename.
func writeInPlace(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// appendTo writes text at the end of path, in place.
func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// clientLoop connects to the frontend one connection after another until
// stopped, and counts who answered; "refused" counts resets.
type clientLoop struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	got   map[string]int
	errs  []error
}

func startClients(env *testenv.Env) *clientLoop {
	c := &clientLoop{stopc: make(chan struct{}), done: make(chan struct{}), got: map[string]int{}}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stopc:
				return
			default:
			}
			who, err := env.Ask(frontend)
			c.mu.Lock()
			switch {
			case errors.Is(err, syscall.ECONNREFUSED):
				c.got["refused"]++
			case err != nil:
				c.errs = append(c.errs, err)
			default:
				c.got[who]++
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// stop ends the loop and fails the test unless every connection was
// answered, by both backends.
func (c *clientLoop) stop(t *testing.T, what string) map[string]int {
	t.Helper()
	close(c.stopc)
	<-c.done
	if len(c.errs) > 0 || c.got["refused"] != 0 || c.got["one"] == 0 || c.got["two"] == 0 || len(c.got) != 2 {
		t.Fatalf("%s: connections %v, errors %v; want every one answered, by one and two", what, c.got, c.errs)
	}
	return c.got
}

// inForce returns tcp-echo's subsets and weights in force, with the file's.
func inForce(t *testing.T, tg *loader.Target) string {
	t.Helper()
	var s []string
	for _, sub := range status(t, tg).Subsets {
		s = append(s, fmt.Sprintf("%s=%d(file %d)", sub.Name, sub.Weight, sub.FileWeight))
	}
	return strings.Join(s, " ")
}

func forceText(v1, v2 int) string {
	return fmt.Sprintf("v1=%d(file %d) v2=%d(file %d)", v1, v1, v2, v2)
}

// waitInForce waits up to within for tcp-echo's weights to be want.
func waitInForce(t *testing.T, tg *loader.Target, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := inForce(t, tg)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("in force %s, want %s within %s", got, want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantSuspectMetric(t *testing.T, env *testenv.Env, addr string, want float64) {
	t.Helper()
	if got := value(t, scrape(t, env, addr), "tcpshift_config_suspect_total", nil); got != want {
		t.Fatalf("tcpshift_config_suspect_total = %v, want %v", got, want)
	}
}

// TestDaemonHoldsHalfWrittenFile: under run -f DIR, a file written in place
// and cut just before route: parses, but would take every route in force
// away. It is held (one line naming file, service and what it would drop,
// the metric) with nothing changed in force and no connection refused,
// then applied once it stayed unchanged for the hold. A weight 0 written
// out drops nothing; SIGHUP applies a held file at once.
func TestDaemonHoldsHalfWrittenFile(t *testing.T) {
	const addr = "127.0.0.1:9090"
	env := testenv.New(t)
	echoPair(env)
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	writeConfig(t, path, echoConfig)
	d := startDaemon(t, env, dir, addr)
	wantWeights(t, d.tg, 80, 20, 80, 20)

	next := weighted(50, 50)
	cut := next[:strings.Index(next, "  route:")]
	c := startClients(env)
	written := time.Now()
	writeInPlace(t, path, cut)
	time.Sleep(time.Second)
	if got := inForce(t, d.tg); got != forceText(80, 20) {
		t.Fatalf("1s after the file was cut before route: in force %s, want %s unchanged", got, forceText(80, 20))
	}
	lines := d.waitLog(t, "route config held", 1)
	for _, want := range []string{"level=WARN", "file=" + path, "service=tcp-echo",
		`drops="the route to v1 (weight 80), the route to v2 (weight 20)"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("held line lacks %s: %s", want, lines[0])
		}
	}
	wantSuspectMetric(t, env, addr, 1)
	time.Sleep(time.Until(written.Add(suspectHold - 500*time.Millisecond)))
	wantWeights(t, d.tg, 80, 20, 80, 20)
	got := c.stop(t, "while the cut file was held")
	t.Logf("%v while the cut file was held", got)
	d.wantLines(t, appliedLine, 0)

	// Unchanged for the hold: the file is what its writer meant.
	lines = d.waitLog(t, "held route config applied", 1)
	took := time.Since(written)
	t.Logf("held file applied %s after it was written", took.Round(time.Millisecond))
	if took < suspectHold || took > suspectHold+1500*time.Millisecond {
		t.Errorf("held file applied %s after it was written, want after %s, within 1.5s", took.Round(time.Millisecond), suspectHold)
	}
	if !strings.Contains(lines[0], "it stayed unchanged for 3s") {
		t.Errorf("held-applied line: %s", lines[0])
	}
	d.waitLog(t, appliedLine, 1)
	wantWeights(t, d.tg, 0, 0, 0, 0)
	d.wantLines(t, "route config held", 1)

	// Routes added back drop nothing: applied at once.
	writeConfig(t, path, echoConfig)
	d.waitLog(t, appliedLine, 2)
	wantWeights(t, d.tg, 80, 20, 80, 20)

	// A weight 0 written out is a route, not a cut.
	writeConfig(t, path, weighted(0, 100))
	d.waitLog(t, appliedLine, 3)
	wantWeights(t, d.tg, 0, 100, 0, 100)
	d.wantLines(t, "route config held", 1)

	// Cut in its subsets: v2 would go. SIGHUP says that is meant.
	writeInPlace(t, path, echoConfig[:strings.Index(echoConfig, "    v2:")])
	lines = d.waitLog(t, "route config held", 2)
	if !strings.Contains(lines[1], `drops="subset v2 (weight 100)"`) {
		t.Errorf("second held line: %s", lines[1])
	}
	wantSuspectMetric(t, env, addr, 2)
	wantWeights(t, d.tg, 0, 100, 0, 100)
	d.hup <- syscall.SIGHUP
	d.waitLog(t, "held route config applied on SIGHUP", 1)
	d.waitLog(t, appliedLine, 4)
	if s := status(t, d.tg); len(s.Subsets) != 1 || s.Subsets[0].Name != "v1" {
		t.Fatalf("after SIGHUP subsets %+v, want v1 only", s.Subsets)
	}
	time.Sleep(suspectHold) // the hold's timer finds nothing more to do
	d.wantLines(t, appliedLine, 4)
	d.wantLines(t, "held route config applied", 2)
	d.wantLines(t, "level=ERROR", 0)
}

// TestDaemonNeverAppliesFirstOfTwoWrites is issue 26's check: the tcp-echo
// route file written in place in two writes 1s apart, cut at each line
// boundary, never changes what is in force before the second write, and no
// connection made meanwhile is refused; the second write is applied.
func TestDaemonNeverAppliesFirstOfTwoWrites(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, "")
	in := [2]int{80, 20}
	n := strings.Count(echoConfig, "\n")
	for k := range n {
		next := [2]int{50, 50}
		if in == next {
			next = [2]int{80, 20}
		}
		text := weighted(next[0], next[1])
		cut := 0
		for range k {
			cut += strings.Index(text[cut:], "\n") + 1
		}
		before := len(d.log.lines(appliedLine))
		c := startClients(env)
		writeInPlace(t, path, text[:cut])
		time.Sleep(time.Second)
		if got := inForce(t, d.tg); got != forceText(in[0], in[1]) {
			t.Fatalf("cut after line %d (%q): in force %s, want %s unchanged", k, text[:cut], got, forceText(in[0], in[1]))
		}
		got := c.stop(t, fmt.Sprintf("cut after line %d", k))
		d.wantLines(t, appliedLine, before)

		appendTo(t, path, text[cut:])
		waitInForce(t, d.tg, forceText(next[0], next[1]), 5*time.Second)
		d.waitLog(t, appliedLine, before+1)
		t.Logf("cut after line %d: %d refused, %d held so far; %v while the first part was there",
			k, len(d.log.lines("route config refused")), len(d.log.lines("route config held")), got)
		in = next
	}
	d.wantLines(t, appliedLine, n)
	d.wantLines(t, "held route config applied", 0)
}

// TestDaemonWaitsForWriterToClose: a file written in place in two writes
// 500ms apart through one open file is read once its writer closed it:
// the first part is never read (it would be refused).
func TestDaemonWaitsForWriterToClose(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, "")
	text := weighted(50, 50)
	cut := strings.Index(text, "  subsets:")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text[:cut]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := f.WriteString(text[cut:]); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, appliedLine, 1)
	t.Logf("applied %s after the writer closed the file", time.Since(closed).Round(time.Millisecond))
	wantWeights(t, d.tg, 50, 50, 50, 50)
	d.wantLines(t, "route config refused", 0)
	d.wantLines(t, "route config held", 0)
	d.wantLines(t, appliedLine, 1)
}

// TestDaemonReloadsUnderSteadyEdits: 100 edits 60ms apart, closer than the
// quiet time the daemon waits for: reloads still happen while they come,
// at least one a second, and the last edit is applied.
func TestDaemonReloadsUnderSteadyEdits(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, "")
	// A ticker keeps the edits 60ms apart whatever each write takes.
	tick := time.NewTicker(60 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var first time.Duration
	for i := range 100 {
		writeConfig(t, path, weighted(i, 100-i))
		if first == 0 && len(d.log.lines(appliedLine)) > 0 {
			first = time.Since(start)
		}
		if i < 99 {
			<-tick.C
		}
	}
	took := time.Since(start)
	during := len(d.log.lines(appliedLine))
	t.Logf("100 edits in %s: %d applied meanwhile, the first %s after the edits began", took.Round(time.Millisecond), during, first.Round(time.Millisecond))
	if first == 0 || first > 1500*time.Millisecond {
		t.Errorf("first reload applied %s after the edits began (0: not while they came), want within 1.5s", first.Round(time.Millisecond))
	}
	if want := int(took/time.Second) - 2; during < want {
		t.Errorf("%d reloads applied during %s of edits, want at least %d", during, took.Round(time.Millisecond), want)
	}
	waitInForce(t, d.tg, forceText(99, 1), 2*time.Second)
	d.wantLines(t, "level=ERROR", 0)
}

// TestDaemonFollowsReplacedDirectory: run -f DIR, then DIR moved away and
// a symlink to another directory put in its place: the daemon says so,
// applies what DIR holds now, and follows edits, new files and removals
// there, not in the directory it first watched.
func TestDaemonFollowsReplacedDirectory(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	base := t.TempDir()
	dir := filepath.Join(base, "routes.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, filepath.Join(dir, "routes.yaml"), echoConfig)
	d := startDaemon(t, env, dir, "")
	wantWeights(t, d.tg, 80, 20, 80, 20)

	fresh := filepath.Join(base, "routes.d.new")
	if err := os.Mkdir(fresh, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, filepath.Join(fresh, "routes.yaml"), weighted(50, 50))
	// Istio's task under another name, for a service of its own.
	istioText := func(name string) string { return strings.ReplaceAll(readExample(t, name), "tcp-echo", "gw-echo") }
	writeConfig(t, filepath.Join(fresh, "workloads.yaml"), istioText("workloads.yaml"))
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fresh, dir); err != nil {
		t.Fatal(err)
	}
	waitInForce(t, d.tg, forceText(50, 50), 5*time.Second)
	lines := d.waitLog(t, "followed path replaced", 1)
	if !strings.Contains(lines[0], "path="+dir) || !strings.Contains(lines[0], "now="+fresh) {
		t.Errorf("replaced line: %s", lines[0])
	}
	d.waitLog(t, appliedLine, 1)

	// An edit through the path.
	writeConfig(t, filepath.Join(dir, "routes.yaml"), weighted(70, 30))
	d.waitLog(t, appliedLine, 2)
	wantWeights(t, d.tg, 70, 30, 70, 30)

	// The directory it first watched is someone else's now.
	writeConfig(t, filepath.Join(dir+".old", "routes.yaml"), weighted(10, 90))
	time.Sleep(time.Second)
	d.wantLines(t, appliedLine, 2)
	wantWeights(t, d.tg, 70, 30, 70, 30)

	// A new file: the task's gateway, routed to v1.
	task := filepath.Join(dir, "task.yaml")
	writeConfig(t, task, istioText("tcp-echo-all-v1.yaml"))
	d.waitLog(t, appliedLine, 3)
	wantGateway(t, env, map[string]int{"one": 10})

	// The file removed: its service goes at once (a removed file is no
	// file cut short).
	if err := os.Remove(task); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, appliedLine, 4)
	if _, err := env.Ask("127.0.0.1:31400"); err == nil {
		t.Fatal("the gateway port answers with its file removed")
	}
	wantWeights(t, d.tg, 70, 30, 70, 30)
	d.wantLines(t, "route config held", 0)
	d.wantLines(t, "followed path replaced", 1)
	d.wantLines(t, "level=ERROR", 0)
}

// configMapWrite updates a ConfigMap volume at mount as the kubelet does:
// the files in a new timestamped directory, a ..data_tmp symlink to it
// renamed over ..data, the files' symlinks through ..data made the first
// time, the old directory removed.
func configMapWrite(t *testing.T, mount string, n int, files map[string]string) {
	t.Helper()
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.000000001", n)
	if err := os.Mkdir(filepath.Join(mount, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(mount, ts, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(mount, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(mount, name)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(mount)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..2026") && e.Name() != ts {
			if err := os.RemoveAll(filepath.Join(mount, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestDaemonFollowsConfigMapSwap: a Kubernetes ConfigMap volume, followed
// as a directory and as its file: every ..data swap is applied, with a
// line saying what the path names now.
func TestDaemonFollowsConfigMapSwap(t *testing.T) {
	for _, tc := range []struct{ name, follow string }{{"directory", ""}, {"file", "routes.yaml"}} {
		t.Run(tc.name, func(t *testing.T) {
			env := testenv.New(t)
			echoPair(env)
			mount := t.TempDir()
			configMapWrite(t, mount, 1, map[string]string{"routes.yaml": echoConfig})
			d := startDaemon(t, env, filepath.Join(mount, tc.follow), "")
			wantWeights(t, d.tg, 80, 20, 80, 20)
			for i, w := range [][2]int{{50, 50}, {70, 30}} {
				configMapWrite(t, mount, i+2, map[string]string{"routes.yaml": weighted(w[0], w[1])})
				lines := d.waitLog(t, "followed path replaced", i+1)
				want := fmt.Sprintf("path=%s now=%s", filepath.Join(mount, "routes.yaml"),
					filepath.Join(mount, fmt.Sprintf("..2026_01_01_00_00_%02d.000000001", i+2), "routes.yaml"))
				if !strings.Contains(lines[i], want) {
					t.Errorf("replaced line %s, want %s", lines[i], want)
				}
				d.waitLog(t, appliedLine, i+1)
				wantWeights(t, d.tg, uint64(w[0]), uint64(w[1]), uint64(w[0]), uint64(w[1]))
			}
			d.wantLines(t, "level=ERROR", 0)
		})
	}
}
