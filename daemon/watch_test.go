package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/daemon/reconcile"
)

func TestResolvePath(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(base, "real")
	if err := os.MkdirAll(filepath.Join(real, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{
		"rel":   "real",
		"abs":   real,
		"chain": "rel",
		"up":    "real/sub/../sub",
		"loop1": "loop2",
		"loop2": "loop1",
	} {
		if err := os.Symlink(to, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../../rel", filepath.Join(real, "sub", "back")); err != nil {
		t.Fatal(err)
	}
	at := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, filepath.Join(base, n))
		}
		return out
	}
	for _, tc := range []struct {
		path   string
		target string
		links  []string
	}{
		{"real", real, nil},
		{"rel", real, at("rel")},
		{"abs/sub", filepath.Join(real, "sub"), at("abs")},
		{"chain", real, at("chain", "rel")},
		{"up", filepath.Join(real, "sub"), at("up")},
		{"rel/sub/back/sub", filepath.Join(real, "sub"), at("rel", "real/sub/back", "rel")},
	} {
		target, links, err := resolvePath(filepath.Join(base, tc.path))
		if err != nil || target != tc.target || !reflect.DeepEqual(links, tc.links) {
			t.Errorf("%s: %s %q %v, want %s %q", tc.path, target, links, err, tc.target, tc.links)
		}
	}
	if _, _, err := resolvePath(filepath.Join(base, "loop1")); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("a symlink loop: %v, want ELOOP", err)
	}
	if _, _, err := resolvePath(filepath.Join(base, "missing", "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing path: %v, want not found", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watch follows paths until the test ends, through a reconcile loop timed
// as the daemon's, and returns its syncs and the watcher's log.
func watch(t *testing.T, paths ...string) (<-chan struct{}, *syncBuffer) {
	t.Helper()
	changed := make(chan struct{}, 1)
	loop := reconcile.New(reconcile.Options{Debounce: settle, MaxDelay: maxSettle, Sync: func(context.Context, reconcile.Batch) (reconcile.Result, error) {
		select {
		case changed <- struct{}{}:
		default: // a reload is already pending
		}
		return reconcile.Result{}, nil
	}})
	log := &syncBuffer{}
	stop, err := watchFiles(paths, loop.Changed, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- loop.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		cancel()
		<-done
	})
	return changed, log
}

// quiet drains signals until none came for d.
func quiet(changed <-chan struct{}, d time.Duration) {
	for {
		select {
		case <-changed:
		case <-time.After(d):
			return
		}
	}
}

// signalled waits up to within for a signal and returns when it came.
func signalled(t *testing.T, changed <-chan struct{}, within time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-changed:
		return time.Since(start)
	case <-time.After(within):
		t.Fatalf("%s: no reload asked for within %s", what, within)
		return 0
	}
}

func none(t *testing.T, changed <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-changed:
		t.Fatalf("%s: a reload asked for", what)
	case <-time.After(d):
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWatchFollowsReplacedDirectory: the directory moved away and a
// symlink to another put in its place: one line, a reload, and from then
// on the new directory's changes count and the old one's do not.
func TestWatchFollowsReplacedDirectory(t *testing.T) {
	base := t.TempDir()
	dir, fresh := filepath.Join(base, "d"), filepath.Join(base, "d.new")
	for _, d := range []string{dir, fresh} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(d, "r.yaml"), "a")
	}
	changed, log := watch(t, dir)
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fresh, dir); err != nil {
		t.Fatal(err)
	}
	signalled(t, changed, 2*time.Second, "directory replaced")
	if n := strings.Count(log.String(), "followed path replaced"); n != 1 || !strings.Contains(log.String(), "now="+fresh) {
		t.Fatalf("%d replaced lines:\n%s", n, log)
	}
	quiet(changed, 300*time.Millisecond)
	write(t, filepath.Join(dir+".old", "r.yaml"), "b")
	none(t, changed, 1500*time.Millisecond, "the old directory written")
	write(t, filepath.Join(dir, "r.yaml"), "c")
	signalled(t, changed, time.Second, "the new directory written")
	write(t, filepath.Join(dir, "new.yaml"), "d")
	signalled(t, changed, time.Second, "a file added")
	if err := os.Remove(filepath.Join(dir, "new.yaml")); err != nil {
		t.Fatal(err)
	}
	signalled(t, changed, time.Second, "a file removed")
}

// TestWatchWaitsForClose: a file written in place is read once its writer
// closed it, or maxSettle after it began if the writer keeps it open.
func TestWatchWaitsForClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.yaml")
	write(t, path, "a")
	changed, _ := watch(t, path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("b")
	none(t, changed, 500*time.Millisecond, "written, not closed")
	f.WriteString("c")
	f.Close()
	if took := signalled(t, changed, time.Second, "closed"); took > 500*time.Millisecond {
		t.Errorf("reload asked for %s after the close, want within %s", took, settle)
	}

	f, err = os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	f.WriteString("d")
	signalled(t, changed, 2*time.Second, "kept open")
	if took := time.Since(start); took < maxSettle-100*time.Millisecond {
		t.Errorf("reload asked for %s after a write not closed, want about %s", took, maxSettle)
	}
}

// TestWatchSteadyWriter: changes 30ms apart, closer than settle, still ask
// for a reload at least every maxSettle.
func TestWatchSteadyWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.yaml")
	write(t, path, "a")
	changed, _ := watch(t, path)
	tick := time.NewTicker(30 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if err := os.WriteFile(path+".new", []byte(time.Now().String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
		select {
		case <-changed:
			n++
		case <-tick.C:
		}
	}
	if n < 2 {
		t.Fatalf("%d reloads asked for in 3s of changes 30ms apart, want at least 2", n)
	}
}
