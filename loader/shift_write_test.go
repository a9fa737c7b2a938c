package loader

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	tsmaps "github.com/tcpshift/tcpshift/maps"
)

// shifting is a fake holding echo (v1 100, v2 0, v3 0) and the start time
// of this process, which shift records name.
func shifting(t *testing.T) (*fake, uint64) {
	t.Helper()
	f := newFake(t)
	f.mustApply(svc{name: "echo", front: "192.0.2.1:80", mode: tsmaps.ModeConnect, subsets: []sub{
		{"v1", 100, []string{"10.0.0.1:80"}}, {"v2", 0, []string{"10.0.0.2:80"}}, {"v3", 0, []string{"10.0.0.3:80"}}}})
	start, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return f, start
}

// Starting a shift records it (this process, the weights before, the
// subsets that give) in one change; a shift of this process that runs is
// refused, and so are subsets the service does not have.
func TestStartShiftRecords(t *testing.T) {
	f, start := shifting(t)
	plan := ShiftPlan{Service: "echo", To: "v2", Percent: []uint32{10, 50, 100}, Interval: time.Minute}
	var sh tsmaps.Shift
	if err := transact(f.set, func(set *tsmaps.Set) (err error) {
		_, sh, err = putShiftOn(set, "echo", startRecord(plan))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stored, ok, err := f.set.Shift(0)
	if err != nil || !ok {
		t.Fatalf("no shift recorded: %v", err)
	}
	if stored.State != tsmaps.ShiftRunning || stored.To != 1 || !slices.Equal(stored.From, []int{0, 2}) || stored.Pid != uint32(os.Getpid()) ||
		stored.PidStart != start || !slices.Equal(stored.Before[:3], []uint64{100, 0, 0}) || stored.Interval != time.Minute || !slices.Equal(stored.Percent, plan.Percent) {
		t.Fatalf("recorded %+v", stored)
	}
	if !slices.Equal(sh.Percent, stored.Percent) {
		t.Fatalf("returned %+v, recorded %+v", sh, stored)
	}
	before := f.clone()
	for _, c := range []struct {
		plan ShiftPlan
		want string
	}{
		{plan, "a shift is running for service echo (pid "},
		{ShiftPlan{Service: "echo", To: "v9", Percent: []uint32{100}}, "v9"},
		{ShiftPlan{Service: "echo", To: "v2", From: []string{"v2"}, Percent: []uint32{100}}, "--from v2 is the subset the shift moves to"},
		{ShiftPlan{Service: "nope", To: "v2", Percent: []uint32{100}}, "nope"},
	} {
		g := before.clone()
		// Every refusal but the running one replaces an ended shift.
		if c.plan.To != "v2" || len(c.plan.From) > 0 || c.plan.Service != "echo" {
			if err := g.set.PutShift(0, tsmaps.Shift{State: tsmaps.ShiftDone}); err != nil {
				t.Fatal(err)
			}
		}
		g.mem.Log = nil
		err := transact(g.set, func(set *tsmaps.Set) error {
			_, _, err := putShiftOn(set, c.plan.Service, startRecord(c.plan))
			return err
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("start %+v: %v, want %q", c.plan, err, c.want)
		}
		if len(g.mem.Log) != 0 {
			t.Errorf("start %+v: refused, yet wrote %v", c.plan, g.mem.Log)
		}
	}
}

// A shift step puts its weights in force with its record in one change;
// weights that do not fit the service's subsets write nothing.
func TestShiftUpdateWeights(t *testing.T) {
	f, start := shifting(t)
	running := tsmaps.Shift{State: tsmaps.ShiftRunning, To: 1, From: []int{0}, Percent: []uint32{50, 100}, Pid: uint32(os.Getpid()), PidStart: start, Before: []uint64{100, 0, 0}}
	if err := f.set.PutShift(0, running); err != nil {
		t.Fatal(err)
	}
	step := func(weights []uint64) shiftChange {
		return func(svc *tsmaps.Service, sh *tsmaps.Shift) ([]uint64, error) {
			sh.Done++
			return weights, nil
		}
	}
	for _, bad := range [][]uint64{{500, 500}, {500, 400, 0, 100}} {
		g := f.clone()
		err := transact(g.set, func(set *tsmaps.Set) error {
			_, err := updateShift(set, "echo", step(bad))
			return err
		})
		if err == nil || err.Error() != "service echo changed its subsets during the shift" {
			t.Fatalf("weights %v: %v, want refused", bad, err)
		}
		if g.mem.Writes() != 0 {
			t.Fatalf("weights %v: refused, yet %d writes", bad, g.mem.Writes())
		}
	}
	var out tsmaps.Shift
	if err := transact(f.set, func(set *tsmaps.Set) (err error) {
		out, err = updateShift(set, "echo", step([]uint64{500, 500, 0, 0}))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	svc, _, err := f.set.Service("echo")
	if err != nil || !slices.Equal(svc.Weights(), []uint64{500, 500, 0}) || out.Done != 1 {
		t.Fatalf("after the step: weights %v (%v), done %d; want 500/500/0, 1", svc.Weights(), err, out.Done)
	}
	// A step whose record cannot be written leaves the weights as they were.
	g := f.clone()
	g.mem.Fault = failAt("put", "shifts", "")
	err = transact(g.set, func(set *tsmaps.Set) error {
		_, err := updateShift(set, "echo", step([]uint64{0, 1000, 0}))
		return err
	})
	if !errors.Is(err, errInjected) {
		t.Fatalf("step with its record refused: %v", err)
	}
	requireAsBefore(t, f, g, "after a step whose record failed")
	// No shift: nothing to update.
	h := newFake(t)
	h.mustApply(connect("plain", "192.0.2.9:80", "10.0.0.9:80"))
	if err := transact(h.set, func(set *tsmaps.Set) error {
		_, err := updateShift(set, "plain", step(nil))
		return err
	}); err == nil || err.Error() != "service plain has no shift" {
		t.Fatalf("update without a shift: %v", err)
	}
}

// An interrupted shift (its process gone) is rolled back to its weights
// before, or resumed by this process with the same target and steps;
// a live one is neither, an ended one is not rolled back.
func TestRollBackAndResumeInterrupted(t *testing.T) {
	f, start := shifting(t)
	gone := tsmaps.Shift{State: tsmaps.ShiftRunning, To: 1, From: []int{0}, Percent: []uint32{50, 100}, Done: 1, Pid: 1, PidStart: 1, Before: []uint64{100, 0, 0}}
	if err := f.set.PutShift(0, gone); err != nil {
		t.Fatal(err)
	}
	if name := ShiftStateName(gone); name != "interrupted" {
		t.Fatalf("a shift of a gone process is %q", name)
	}
	resume := ShiftPlan{Service: "echo", To: "v2", Percent: []uint32{50, 100}, Interval: time.Second}
	for _, wrong := range []ShiftPlan{{Service: "echo", To: "v3", Percent: resume.Percent}, {Service: "echo", To: "v2", Percent: []uint32{100}}} {
		g := f.clone()
		err := transact(g.set, func(set *tsmaps.Set) error {
			_, _, err := putShiftOn(set, "echo", resumeRecord(wrong))
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "has no interrupted shift to "+wrong.To) {
			t.Fatalf("resume %+v: %v", wrong, err)
		}
	}
	g := f.clone()
	if err := transact(g.set, func(set *tsmaps.Set) error {
		_, _, err := putShiftOn(set, "echo", resumeRecord(resume))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sh, _, _ := g.set.Shift(0)
	if sh.Pid != uint32(os.Getpid()) || sh.PidStart != start || sh.State != tsmaps.ShiftRunning || sh.Note != "resumed at step 1 of 2" || sh.Done != 1 {
		t.Fatalf("resumed %+v", sh)
	}
	// This process runs it now: it cannot be rolled back from outside.
	if err := transact(g.set, func(set *tsmaps.Set) error {
		_, err := updateShift(set, "echo", rollBackRecord("operator"))
		return err
	}); !errors.Is(err, ErrShiftRunning) {
		t.Fatalf("roll back a live shift: %v, want ErrShiftRunning", err)
	}
	// Interrupted, it rolls back to the weights before.
	if err := transact(f.set, func(set *tsmaps.Set) error {
		_, err := updateShift(set, "echo", rollBackRecord("operator"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	svc, _, _ := f.set.Service("echo")
	sh, _, _ = f.set.Shift(0)
	if !slices.Equal(svc.Weights(), []uint64{100, 0, 0}) || sh.State != tsmaps.ShiftRolledBack || sh.Note != "operator" {
		t.Fatalf("rolled back: weights %v, shift %+v", svc.Weights(), sh)
	}
	if err := transact(f.set, func(set *tsmaps.Set) error {
		_, err := updateShift(set, "echo", rollBackRecord("again"))
		return err
	}); err == nil || err.Error() != "the shift of service echo has ended (rolled back): nothing to roll back" {
		t.Fatalf("roll back an ended shift: %v", err)
	}
}
