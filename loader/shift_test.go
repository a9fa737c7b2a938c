package loader

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	tsmaps "github.com/tcpshift/tcpshift/maps"
)

// echo3 is a service of three subsets, v1 100, v2 0, v3 0.
func echo3() *tsmaps.Service {
	return &tsmaps.Service{Name: "echo", Subsets: []tsmaps.Subset{{Name: "v1", Weight: 100}, {Name: "v2"}, {Name: "v3"}}}
}

// live is a shift record of this process in state st, at step done.
func live(t *testing.T, st tsmaps.ShiftState, done int) tsmaps.Shift {
	t.Helper()
	start, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return tsmaps.Shift{State: st, To: 1, From: []int{0}, Percent: []uint32{25, 50, 100}, Done: done,
		Pid: uint32(os.Getpid()), PidStart: start, Before: []uint64{100, 0, 0}, Interval: time.Minute}
}

// A state's name, and whether the shift holds the service's weights: a
// shift whose process is gone is interrupted and still holds them.
func TestShiftStateNames(t *testing.T) {
	for _, c := range []struct {
		st    tsmaps.ShiftState
		alive bool
		name  string
		holds bool
	}{
		{tsmaps.ShiftRunning, true, "running", true},
		{tsmaps.ShiftPaused, true, "paused", true},
		{tsmaps.ShiftAborting, true, "aborting", true},
		{tsmaps.ShiftRunning, false, "interrupted", true},
		{tsmaps.ShiftPaused, false, "interrupted", true},
		{tsmaps.ShiftDone, true, "done", false},
		{tsmaps.ShiftRolledBack, false, "rolled back", false},
		{tsmaps.ShiftState(99), true, "unknown", false},
	} {
		sh := live(t, c.st, 1)
		if !c.alive {
			sh.PidStart++ // another process with this pid
		}
		if got := ShiftStateName(sh); got != c.name {
			t.Errorf("state %d alive %v: %q, want %q", c.st, c.alive, got, c.name)
		}
		if got := ShiftHolds(sh); got != c.holds {
			t.Errorf("state %d: holds %v, want %v", c.st, got, c.holds)
		}
	}
}

// The weights a shift set are its own (not an override) only where they
// are those of the step it took; before its first step it owns none.
func TestShiftOwnsWeights(t *testing.T) {
	svc := echo3()
	sh := live(t, tsmaps.ShiftRunning, 2) // 50%: v1 500, v2 500
	svc.Subsets[0].Weight, svc.Subsets[1].Weight = 500, 500
	if !ShiftOwnsWeights(svc, sh) {
		t.Fatal("the weights of the step taken are not the shift's")
	}
	svc.Subsets[0].Weight, svc.Subsets[1].Weight = 400, 600
	if ShiftOwnsWeights(svc, sh) {
		t.Fatal("weights set-weight moved are the shift's")
	}
	for name, bad := range map[string]func(*tsmaps.Shift){
		"before its first step": func(s *tsmaps.Shift) { s.Done = 0 },
		"a step beyond its own": func(s *tsmaps.Shift) { s.Done = 4 },
		"a target it lacks":     func(s *tsmaps.Shift) { s.To = 3 },
		"a donor it lacks":      func(s *tsmaps.Shift) { s.From = []int{5} },
		"weights before cut":    func(s *tsmaps.Shift) { s.Before = s.Before[:2] },
		"ended, rolled back":    func(s *tsmaps.Shift) { s.State = tsmaps.ShiftRolledBack },
	} {
		s := live(t, tsmaps.ShiftRunning, 2)
		s.Before = slices.Clone(s.Before)
		bad(&s)
		if w, ok := shiftStepWeights(echo3(), s); ok && name != "ended, rolled back" {
			t.Errorf("%s: step weights %v", name, w)
		}
		svc := echo3()
		svc.Subsets[0].Weight, svc.Subsets[1].Weight = 500, 500
		if ShiftOwnsWeights(svc, s) {
			t.Errorf("%s: the shift owns the weights", name)
		}
	}
	done := live(t, tsmaps.ShiftDone, 3)
	svc = echo3()
	svc.Subsets[0].Weight, svc.Subsets[1].Weight = 0, 1000
	if !ShiftOwnsWeights(svc, done) {
		t.Fatal("a done shift does not own the weights it ended at")
	}
}

// Where a shift is, said in one phrase, and as status shows it.
func TestDescribeAndStatus(t *testing.T) {
	sh := live(t, tsmaps.ShiftRunning, 2)
	sh.StepAt = time.Unix(1700000000, 0).UTC()
	if got, want := DescribeShift(echo3(), sh), "to v2 by pid "+strconv.Itoa(os.Getpid())+" (step 2/3, 50%)"; got != want {
		t.Fatalf("describe: %q, want %q", got, want)
	}
	sh0 := sh
	sh0.Done, sh0.To = 0, 7
	if got, want := DescribeShift(echo3(), sh0), "to subset 7 by pid "+strconv.Itoa(os.Getpid())+" (before its first step)"; got != want {
		t.Fatalf("describe: %q, want %q", got, want)
	}
	st := shiftStatus(echo3(), sh)
	if st.To != "v2" || !slices.Equal(st.From, []string{"v1"}) || st.State != "running" || st.Percent != 50 || st.Done != 2 ||
		st.NextAt != sh.StepAt.Add(time.Minute).Format(time.RFC3339) {
		t.Fatalf("status %+v", st)
	}
	if st := shiftStatus(echo3(), sh0); st.To != "" || st.Percent != 0 || st.NextAt != "" {
		t.Fatalf("status before the first step, of a subset gone: %+v", st)
	}
}

// A change of weights a shift holds is refused naming the shift and the
// ways out, per state, and is ErrShifting.
func TestShiftingErrors(t *testing.T) {
	for _, c := range []struct {
		state, writer, want string
	}{
		{"running", "set-weight", "set-weight refused: echo is being shifted to v2 by pid 7 (step 1/2, 50%): tcpshift shift echo --abort rolls it back, --pause holds it; or pass --force to abort the shift and set these weights"},
		{"paused", "apply", "apply refused: echo is being shifted to v2 by pid 7 (step 1/2, 50%), paused: tcpshift shift echo --abort rolls it back, --resume lets it go on; or pass --force to abort the shift and apply"},
		{"aborting", "apply", "apply refused: echo is being rolled back by its shift to v2 by pid 7 (step 1/2, 50%): wait for it (tcpshift status echo); or pass --force to abort the shift and apply"},
		{"interrupted", "apply", "apply refused: echo has an interrupted shift to v2 left by pid 7 (step 1/2, 50%): tcpshift run resumes it if its route config declares it; tcpshift shift echo --abort rolls it back; or pass --force to abort the shift and apply"},
	} {
		err := error(&ShiftingError{Service: "echo", Writer: c.writer, State: c.state, Shift: "to v2 by pid 7 (step 1/2, 50%)"})
		if err.Error() != c.want {
			t.Errorf("%s:\n%s\nwant\n%s", c.state, err, c.want)
		}
		if !errors.Is(err, ErrShifting) {
			t.Errorf("%s: not ErrShifting", c.state)
		}
	}
	ended := abortedBy(live(t, tsmaps.ShiftRunning, 1), "aborted by set-weight --force")
	if ended.State != tsmaps.ShiftRolledBack || ended.Note != "aborted by set-weight --force" {
		t.Fatalf("aborted %+v", ended)
	}
}
