package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/shift"
)

// One owner for a service's weights at a time (issue 26, findings 3 and 7):
// while a shift holds them (running, paused, interrupted), set-weight and an
// apply that changes them are refused with where the shift is and the ways
// out; --force aborts the shift first and says so, and the shift does not
// roll back over the weights set; an apply that leaves the route alone keeps
// the shift's weights. The daemon logs its own steps as shift steps, and
// status does not show a step's weights as an override.

// ownedShift is a shift run in the test process, as `tcpshift shift` runs
// it, until the test ends.
type ownedShift struct {
	stepped chan int
	done    chan error
	err     error
	ended   bool
}

func startOwnedShift(t *testing.T, tg *loader.Target, steps []uint32) *ownedShift {
	t.Helper()
	s := &ownedShift{stepped: make(chan int, len(steps)), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		s.done <- shift.Run(ctx, tg, shift.Options{
			Service: "tcp-echo", To: "v2", Steps: steps, Interval: time.Minute, NoDrain: true,
			Gates: shift.Gates{MaxFailureRate: 0.01, MaxResetRate: 0.01}, Poll: 20 * time.Millisecond,
			AfterStep: func(i int) { s.stepped <- i },
		})
	}()
	t.Cleanup(func() {
		cancel()
		s.wait(t)
	})
	select {
	case <-s.stepped:
	case s.err = <-s.done:
		s.ended = true
		t.Fatalf("shift ended before its first step: %v", s.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the shift never took its first step")
	}
	return s
}

// wait returns how the shift ended, waiting up to 5 s.
func (s *ownedShift) wait(t *testing.T) error {
	t.Helper()
	if !s.ended {
		select {
		case s.err = <-s.done:
			s.ended = true
		case <-time.After(5 * time.Second):
			t.Fatal("the shift did not end")
		}
	}
	return s.err
}

// wantExit fails unless the command exited with code and printed exactly
// want.
func wantExit(t *testing.T, what string, out string, err error, code int, want string) {
	t.Helper()
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != code || out != want {
		t.Fatalf("%s: exit %d, printed\n%q\nwant exit %d and\n%q", what, got, out, code, want)
	}
}

// wantInForce checks tcp-echo's weights in force, the file's, and that
// status flags an override exactly where override says.
func wantInForce(t *testing.T, tg *loader.Target, v1, v2, file1, file2 uint64, override bool) {
	t.Helper()
	s := status(t, tg)
	for i, want := range []struct{ w, f uint64 }{{v1, file1}, {v2, file2}} {
		sub := s.Subsets[i]
		if sub.Weight != want.w || sub.FileWeight != want.f || sub.Override != (override && want.w != want.f) {
			t.Fatalf("subset %s: weight %d file_weight %d override %v, want %d %d %v (shift %+v)",
				sub.Name, sub.Weight, sub.FileWeight, sub.Override, want.w, want.f, override && want.w != want.f, s.Shift)
		}
	}
}

// A set-weight while a shift runs or is paused is refused (exit 1) with
// where the shift is and how to abort or hold it; the step's weights stay in
// force and are not an override in status. One that changes nothing goes
// through. Once --abort rolled the shift back, set-weight works again.
func TestShiftOwnerSetWeightRefused(t *testing.T) {
	env, tg := shiftEnv(t) // file 80/20, 100/0 in force
	c := shellAt(t, env)
	sh := startOwnedShift(t, tg, []uint32{10, 50, 100})
	pid := os.Getpid()

	out, err := c.run("set-weight", "tcp-echo", "v1=1", "v2=1")
	wantExit(t, "set-weight during step 1", out, err, 1, fmt.Sprintf("tcpshift: set-weight refused: tcp-echo is being shifted to v2 by pid %d (step 1/3, 10%%): "+
		"tcpshift shift tcp-echo --abort rolls it back, --pause holds it; or pass --force to abort the shift and set these weights\n", pid))
	wantInForce(t, tg, 900, 100, 80, 20, false)
	wantSplit(t, env, 20, map[string]int{"one": 18, "two": 2})
	if st := c.must(t, "status"); strings.Contains(st, "(file ") || !strings.Contains(st, "running at step 1/3 (10%)") {
		t.Fatalf("status during step 1 shows an override or not the step:\n%s", st)
	}

	out, err = c.run("set-weight", "tcp-echo", "v2=100")
	wantExit(t, "set-weight of the weight in force", out, err, 0, "service tcp-echo weights v1=900 v2=100\n")

	c.must(t, "shift", "tcp-echo", "--pause")
	out, err = c.run("set-weight", "tcp-echo", "v1=1", "v2=1")
	wantExit(t, "set-weight while paused", out, err, 1, fmt.Sprintf("tcpshift: set-weight refused: tcp-echo is being shifted to v2 by pid %d (step 1/3, 10%%), paused: "+
		"tcpshift shift tcp-echo --abort rolls it back, --resume lets it go on; or pass --force to abort the shift and set these weights\n", pid))
	wantInForce(t, tg, 900, 100, 80, 20, false)

	c.must(t, "shift", "tcp-echo", "--abort")
	if err := sh.wait(t); !errors.Is(err, shift.ErrAborted) {
		t.Fatalf("shift after --abort: %v, want aborted", err)
	}
	wantInForce(t, tg, 100, 0, 80, 20, true) // the override from before the shift
	out, err = c.run("set-weight", "tcp-echo", "v1=1", "v2=1")
	wantExit(t, "set-weight after the rollback", out, err, 0, "service tcp-echo weights v1=1 v2=1\n")
	wantSplit(t, env, 10, map[string]int{"one": 5, "two": 5})
}

// set-weight --force aborts the running shift (back to its weights before,
// 100/0), sets the weights given over those and says so; the shift exits
// with ErrTakenOver and does not roll back over them.
func TestShiftOwnerSetWeightForce(t *testing.T) {
	env, tg := shiftEnv(t)
	c := shellAt(t, env)
	sh := startOwnedShift(t, tg, []uint32{10, 50, 100})

	out, err := c.run("set-weight", "--force", "tcp-echo", "v2=25")
	wantExit(t, "set-weight --force", out, err, 0, fmt.Sprintf("aborted the shift of tcp-echo to v2 by pid %d (step 1/3, 10%%): "+
		"its process stops without rolling back over these weights\nservice tcp-echo weights v1=100 v2=25\n", os.Getpid()))
	err = sh.wait(t)
	if !errors.Is(err, shift.ErrTakenOver) || !strings.Contains(err.Error(), "aborted by set-weight --force: v1=100 v2=25") {
		t.Fatalf("shift after set-weight --force: %v, want ErrTakenOver naming set-weight --force", err)
	}
	wantInForce(t, tg, 100, 25, 80, 20, true)
	if s := status(t, tg); s.Shift.State != "rolled back" || s.Shift.Note != "aborted by set-weight --force: v1=100 v2=25" {
		t.Fatalf("shift after set-weight --force: %+v", s.Shift)
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
}

// An apply while a shift runs: the same route config again keeps the
// step's weights (unchanged); a route config that changes tcp-echo's
// weights is refused (exit 1); one that adds another service and leaves
// tcp-echo's route alone goes through; with --force a changed route aborts
// the shift first and says so, and its weights stay.
func TestShiftOwnerApply(t *testing.T) {
	env, tg := shiftEnv(t)
	c := shellAt(t, env)
	dir := t.TempDir()
	file := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	same, changed := file("same.yaml", echoConfig), file("changed.yaml", weighted(1, 1))
	added, addedChanged := file("added.yaml", echoConfig+otherService), file("added-changed.yaml", weighted(1, 1)+otherService)
	sh := startOwnedShift(t, tg, []uint32{10, 50, 100})
	pid := os.Getpid()

	out, err := c.run("apply", "-f", same)
	wantExit(t, "apply of the same route config", out, err, 0, "service tcp-echo unchanged\n")
	wantInForce(t, tg, 900, 100, 80, 20, false)

	out, err = c.run("apply", "-f", changed)
	wantExit(t, "apply that changes tcp-echo's weights", out, err, 1, fmt.Sprintf("tcpshift: apply refused: tcp-echo is being shifted to v2 by pid %d (step 1/3, 10%%): "+
		"tcpshift shift tcp-echo --abort rolls it back, --pause holds it; or pass --force to abort the shift and apply\n", pid))
	wantInForce(t, tg, 900, 100, 80, 20, false)

	out, err = c.run("apply", "-f", added)
	wantExit(t, "apply that adds another service", out, err, 0, "service tcp-echo unchanged\nservice other added\n")
	wantInForce(t, tg, 900, 100, 80, 20, false)
	wantSplit(t, env, 20, map[string]int{"one": 18, "two": 2})
	if s := status(t, tg); s.Shift.State != "running" || s.Shift.Done != 1 {
		t.Fatalf("shift after the applies: %+v, want running at step 1", s.Shift)
	}

	out, err = c.run("apply", "--force", "-f", addedChanged)
	wantExit(t, "apply --force", out, err, 0, fmt.Sprintf("tcpshift: aborted the shift of tcp-echo to v2 by pid %d (step 1/3, 10%%): "+
		"the route config changes its weights, which the shift held\nservice tcp-echo updated\nservice other unchanged\n", pid))
	if err := sh.wait(t); !errors.Is(err, shift.ErrTakenOver) {
		t.Fatalf("shift after apply --force: %v, want ErrTakenOver", err)
	}
	wantInForce(t, tg, 1, 1, 1, 1, true)
	if s := status(t, tg); s.Shift.State != "rolled back" || s.Shift.Note != "aborted by apply --force: the route config changes the service's weights" {
		t.Fatalf("shift after apply --force: %+v", s.Shift)
	}
	wantSplit(t, env, 10, map[string]int{"one": 5, "two": 5})
}

// A shift the daemon carries: its step is logged as a shift step, never as
// a set-weight override, and status shows no override; set-weight is refused
// while it runs, once the daemon is killed (interrupted) and once the next
// daemon resumed it; set-weight --force aborts it, the daemon's shift ends
// without rolling back, and the weights set are then an override, logged as
// one.
func TestShiftOwnerDaemon(t *testing.T) {
	env, tg := shiftEnv(t)
	bin := buildTcpshift(t)
	c := shellAt(t, env)
	path := filepath.Join(t.TempDir(), "routes.yaml")
	text := strings.Replace(strings.Replace(carriedShift, "weight: 20}", "weight: 0}", 1), "interval: 2s", "interval: 1m", 1)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	const (
		step     = `msg="shift step" service=tcp-echo step=1/2 percent=20 weights="v1=800 v2=200"`
		override = "runtime override by set-weight"
	)
	refused := func(what, state string, pid int) {
		t.Helper()
		out, err := c.run("set-weight", "tcp-echo", "v1=1", "v2=1")
		var want string
		switch state {
		case "interrupted":
			want = fmt.Sprintf("tcpshift: set-weight refused: tcp-echo has an interrupted shift to v2 left by pid %d (step 1/2, 20%%): "+
				"tcpshift run resumes it if its route config declares it; tcpshift shift tcp-echo --abort rolls it back; "+
				"or pass --force to abort the shift and set these weights\n", pid)
		default:
			want = fmt.Sprintf("tcpshift: set-weight refused: tcp-echo is being shifted to v2 by pid %d (step 1/2, 20%%): "+
				"tcpshift shift tcp-echo --abort rolls it back, --pause holds it; or pass --force to abort the shift and set these weights\n", pid)
		}
		wantExit(t, what, out, err, 1, want)
		wantInForce(t, tg, 800, 200, 80, 0, false)
		wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	}

	first := startDaemonProcess(t, env, bin, "run", "-f", path)
	waitShift(t, tg, func(done int, state string) bool { return done == 1 && state == "running" })
	refused("set-weight during the daemon's shift", "running", first.cmd.Process.Pid)
	first.waitLog(t, step, 1)
	time.Sleep(4 * 250 * time.Millisecond) // the daemon looks for outside changes every tick
	first.wantLines(t, step, 1)
	first.wantLines(t, `msg="shift step"`, 1)
	first.wantLines(t, override, 0)
	first.wantLines(t, "outside the daemon", 0)

	first.cmd.Process.Signal(syscall.SIGKILL)
	first.wait()
	refused("set-weight after the daemon was killed", "interrupted", first.cmd.Process.Pid)

	second := startDaemonProcess(t, env, bin, "run", "-f", path)
	second.waitLog(t, `msg="shift carried from the route config" service=tcp-echo to=v2 resume=true`, 1)
	second.waitLog(t, step, 1)
	refused("set-weight during the resumed shift", "running", second.cmd.Process.Pid)

	out, err := c.run("set-weight", "--force", "tcp-echo", "v1=1", "v2=1")
	wantExit(t, "set-weight --force", out, err, 0, fmt.Sprintf("aborted the shift of tcp-echo to v2 by pid %d (step 1/2, 20%%): "+
		"its process stops without rolling back over these weights\nservice tcp-echo weights v1=1 v2=1\n"+
		"runtime override: %s keeps these weights until the service's route in %s changes, or SIGHUP\n",
		second.cmd.Process.Pid, daemonName(t, tg), path))
	second.waitLog(t, "shift ended by another writer: aborted by set-weight --force: v1=1 v2=1", 1)
	second.waitLog(t, override, 1)
	time.Sleep(4 * 250 * time.Millisecond)
	second.wantLines(t, override, 1)
	second.wantLines(t, `msg="shift step"`, 1)
	second.wantLines(t, "rolled back to", 0)
	wantInForce(t, tg, 1, 1, 80, 0, true)
	wantSplit(t, env, 10, map[string]int{"one": 5, "two": 5})
}

// daemonName is how set-weight names the running daemon.
func daemonName(t *testing.T, tg *loader.Target) string {
	t.Helper()
	d, err := tg.RunningDaemon()
	if err != nil || d == nil {
		t.Fatalf("no daemon record: %v", err)
	}
	return d.String()
}

// The daemon's own shift steps are shift steps: one "shift step" record
// per step with its weights, no "runtime override by set-weight", nothing
// "outside the daemon"; status, its text and the override metric show no
// override while the step is in force (weights 800/200, the file's 80/0).
func TestShiftOwnerDaemonStepIsNoOverride(t *testing.T) {
	const addr = "127.0.0.1:9090" // inside the test's namespace
	env, tg := shiftEnv(t)
	bin := buildTcpshift(t)
	c := shellAt(t, env)
	path := filepath.Join(t.TempDir(), "routes.yaml")
	text := strings.Replace(strings.Replace(carriedShift, "weight: 20}", "weight: 0}", 1), "interval: 2s", "interval: 1m", 1)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemonProcess(t, env, bin, "run", "-f", path, "--metrics-addr", addr)
	waitShift(t, tg, func(done int, state string) bool { return done == 1 && state == "running" })
	d.waitLog(t, `msg="shift step" service=tcp-echo step=1/2 percent=20 weights="v1=800 v2=200"`, 1)
	time.Sleep(4 * 250 * time.Millisecond) // the daemon looks for outside changes every tick
	d.wantLines(t, `msg="shift step"`, 1)
	d.wantLines(t, "override", 0)
	d.wantLines(t, "outside the daemon", 0)
	wantInForce(t, tg, 800, 200, 80, 0, false)
	if st := c.must(t, "status"); strings.Contains(st, "(file ") || !strings.Contains(st, "running at step 1/2 (20%)") {
		t.Fatalf("status during the daemon's step 1 shows an override or not the step:\n%s", st)
	}
	fams := scrape(t, env, addr)
	for _, sub := range []string{"v1", "v2"} {
		if got := value(t, fams, "tcpshift_subset_weight_overridden", map[string]string{"service": "tcp-echo", "subset": sub}); got != 0 {
			t.Fatalf("tcpshift_subset_weight_overridden{subset=%q} = %v during the daemon's step, want 0", sub, got)
		}
	}
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
}

// Another process's shift while the daemon runs: the daemon logs its step
// and its rollback as such (naming its pid), never as a set-weight
// override or its end.
func TestShiftOwnerDaemonLogsOtherShift(t *testing.T) {
	env, tg := shiftEnv(t) // file 80/20, 100/0 in force
	bin := buildTcpshift(t)
	c := shellAt(t, env)
	path := newConfigFile(t, echoConfig)
	d := startDaemonProcess(t, env, bin, "run", "-f", path)
	sh := startOwnedShift(t, tg, []uint32{10, 50, 100})
	pid := os.Getpid()
	d.waitLog(t, fmt.Sprintf(`msg="shift step" service=tcp-echo step=1/3 weights="v1=900 v2=100" pid=%d state=running`, pid), 1)
	wantInForce(t, tg, 900, 100, 80, 20, false)
	c.must(t, "shift", "tcp-echo", "--abort")
	if err := sh.wait(t); !errors.Is(err, shift.ErrAborted) {
		t.Fatalf("shift after --abort: %v, want aborted", err)
	}
	d.waitLog(t, fmt.Sprintf(`msg="shift rolled back" service=tcp-echo step=1/3 weights="v1=100 v2=0" pid=%d state="rolled back"`, pid), 1)
	time.Sleep(4 * 250 * time.Millisecond)
	d.wantLines(t, `msg="shift step"`, 1)
	d.wantLines(t, `msg="shift rolled back"`, 1)
	d.wantLines(t, "runtime override by set-weight", 0)
	d.wantLines(t, "set-weight override ended", 0)
	d.wantLines(t, "outside the daemon", 0)
	wantInForce(t, tg, 100, 0, 80, 20, true) // the override from before the shift, again
}
