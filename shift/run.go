package shift

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

// Options configure a shift.
type Options struct {
	Service  string
	To       string
	From     []string // subsets that give up their share; empty: all others
	Steps    []uint32 // percent of the total for To, rising, ending at 100
	Interval time.Duration
	Gates    Gates
	// MaxWait bounds how long a step waits for MinConnections before the
	// gate fails (0: three intervals).
	MaxWait time.Duration
	Check   string // shell command run before each step; exit 0 to go on
	NoDrain bool   // end at the last step, without waiting for the old subsets to drain
	// Rebalance closes the old subsets' connections gradually over
	// RebalanceOver once the last step is in force, instead of waiting
	// for them to end by themselves.
	Rebalance     bool
	RebalanceOver time.Duration
	MaxPerSecond  int
	// DrainTimeout bounds the wait for the old subsets to drain.
	DrainTimeout time.Duration
	Out          io.Writer
	// AfterStep runs once a step's weights are in force (tests make
	// their connections there).
	AfterStep func(step int)
	// Poll is how often the state is read for --abort and --pause
	// (100 ms when 0).
	Poll time.Duration
	// Resume takes over the service's interrupted shift with the same
	// target and steps (the daemon, after a restart): it starts again
	// from the step in force, with the weights before the shift it kept.
	Resume bool
	// Detach leaves the shift where it is, interrupted, when ctx ends
	// (the daemon stopping), instead of rolling it back.
	Detach bool
	// Live rewrites a progress line on Out every second (a terminal).
	Live bool
	// Stepped, when set, is told each step once its weights are in force
	// (step from 1, the weights by subset, "v1=900 v2=100"), and Out is
	// not (the daemon logs it as a record of its own).
	Stepped func(step, steps int, weights string)
}

// Validate checks the steps and thresholds.
func (o *Options) Validate() error {
	if len(o.Steps) == 0 {
		return errors.New("--steps: none given")
	}
	if len(o.Steps) > maps.MaxShiftSteps {
		return fmt.Errorf("--steps: %d steps, at most %d", len(o.Steps), maps.MaxShiftSteps)
	}
	for i, p := range o.Steps {
		if p == 0 || p > 100 {
			return fmt.Errorf("--steps: %d is not a percent 1-100", p)
		}
		if i > 0 && p <= o.Steps[i-1] {
			return fmt.Errorf("--steps: %d after %d: steps must rise", p, o.Steps[i-1])
		}
	}
	if o.Steps[len(o.Steps)-1] != 100 {
		return fmt.Errorf("--steps: the last step is %d%%; a shift ends at 100", o.Steps[len(o.Steps)-1])
	}
	if o.Interval <= 0 {
		return fmt.Errorf("--interval %s: must be above 0", o.Interval)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"--max-failure-rate", o.Gates.MaxFailureRate}, {"--max-reset-rate", o.Gates.MaxResetRate}} {
		if r.v > 1 {
			return fmt.Errorf("%s %s: a rate is at most 100%%", r.name, pct(r.v))
		}
	}
	if slices.Contains(o.From, o.To) {
		return fmt.Errorf("--from %s is the subset the shift moves to", o.To)
	}
	return nil
}

// ErrAborted is a shift rolled back by --abort or by its context (SIGINT).
var ErrAborted = errors.New("shift aborted")

// ErrTakenOver is a shift another writer ended: set-weight or apply with
// --force aborted it and set weights of its own, which the shift leaves
// alone (it does not roll back over them).
var ErrTakenOver = errors.New("shift ended by another writer")

// Run shifts the service step by step. On a gate failure, an abort or the
// context's end it rolls the weights back to where they were before and
// returns an error saying why (a *Failure for a gate).
func Run(ctx context.Context, tg *loader.Target, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 3 * o.Interval
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	plan := loader.ShiftPlan{Service: o.Service, To: o.To, From: o.From, Percent: o.Steps, Interval: o.Interval}
	var (
		svc   *maps.Service
		sh    maps.Shift
		err   error
		first int
	)
	if o.Resume {
		svc, sh, err = tg.ResumeShift(plan)
		first = max(sh.Done-1, 0)
	} else {
		svc, sh, err = tg.StartShift(plan)
	}
	if err != nil {
		return err
	}
	r := &runner{tg: tg, o: o, svc: svc, sh: sh}
	fmt.Fprintf(o.Out, "shift %s to %s: steps %s, every %s; rollback to %s\n", svc.Name, o.To, stepsText(o.Steps), o.Interval, r.weightsText(sh.Before))
	for i := first; i < len(o.Steps); i++ {
		if err := r.step(ctx, i); err != nil {
			if errors.Is(err, ErrTakenOver) {
				fmt.Fprintf(o.Out, "shift %s to %s: %v\n", svc.Name, o.To, err)
				return err
			}
			if o.Detach && ctx.Err() != nil {
				return fmt.Errorf("shift %s left at step %d of %d: %w", svc.Name, i+1, len(o.Steps), context.Cause(ctx))
			}
			return r.rollBack(err)
		}
	}
	if _, err := tg.ShiftUpdate(o.Service, func(_ *maps.Service, s *maps.Shift) ([]uint64, error) {
		if err := r.mine(s); err != nil {
			return nil, err
		}
		s.State, s.Note = maps.ShiftDone, "all steps passed"
		return nil, nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "shift %s to %s: done\n", svc.Name, o.To)
	if o.Rebalance {
		var old []string
		for _, i := range r.sh.From {
			old = append(old, svc.Subsets[i].Name)
		}
		over := o.RebalanceOver
		if over <= 0 {
			over = o.Interval
		}
		if err := Rebalance(ctx, tg, RebalanceOptions{Service: o.Service, Subsets: old, Over: over, MaxPerSecond: o.MaxPerSecond, Out: o.Out}); err != nil {
			return err
		}
	}
	if o.NoDrain {
		return nil
	}
	return r.drain(ctx)
}

type runner struct {
	tg  *loader.Target
	o   Options
	svc *maps.Service
	sh  maps.Shift
}

// step applies step i's weights, then holds them for an interval (longer
// while paused, or until the new subset has MinConnections) and judges it.
func (r *runner) step(ctx context.Context, i int) error {
	if r.o.Check != "" {
		if err := r.check(ctx, i); err != nil {
			return err
		}
	}
	weights := loader.ShiftWeights(r.sh.Before, r.sh.To, r.sh.From, r.o.Steps[i])
	sh, err := r.tg.ShiftUpdate(r.o.Service, func(_ *maps.Service, s *maps.Shift) ([]uint64, error) {
		if err := r.mine(s); err != nil {
			return nil, err
		}
		if s.State == maps.ShiftAborting {
			return nil, ErrAborted
		}
		s.Done, s.StepAt = i+1, time.Now()
		return weights, nil
	})
	if err != nil {
		return err
	}
	r.sh = sh
	before, err := r.figures()
	if err != nil {
		return err
	}
	if r.o.Stepped != nil {
		r.o.Stepped(i+1, len(r.o.Steps), r.weightsOf(weights))
	} else {
		fmt.Fprintf(r.o.Out, "step %d/%d: %s\n", i+1, len(r.o.Steps), r.weightsText(weights))
	}
	if r.o.AfterStep != nil {
		r.o.AfterStep(i)
	}
	start := time.Now()
	due := start.Add(r.o.Interval)
	lastLive := start
	defer func() {
		if r.o.Live {
			fmt.Fprint(r.o.Out, "\r\033[K")
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrAborted, context.Cause(ctx))
		case <-time.After(r.o.Poll):
		}
		cur, ok, err := r.tg.ShiftOf(r.o.Service)
		if err != nil {
			return err
		}
		if ok {
			if err := r.mine(&cur); err != nil {
				return err
			}
		}
		if !ok || cur.State == maps.ShiftAborting {
			return fmt.Errorf("%w by tcpshift shift %s --abort", ErrAborted, r.o.Service)
		}
		if cur.State == maps.ShiftPaused {
			due = time.Now().Add(r.o.Interval) // held: the step's interval starts again on resume
			continue
		}
		now, err := r.figures()
		if err != nil {
			return err
		}
		target, others := r.split(now, before)
		if r.o.Live && time.Since(lastLive) >= time.Second {
			lastLive = time.Now()
			fmt.Fprintf(r.o.Out, "\r\033[K  step %d/%d %s | %s: %s | others: %s | next in %s",
				i+1, len(r.o.Steps), r.weightsText(weights), r.o.To, target, others, time.Until(due).Round(time.Second))
		}
		// A failing new subset rolls back at once, not at the interval's end.
		if f := r.o.Gates.judge(r.o.To, target, others); f != nil {
			return f
		}
		if time.Now().Before(due) {
			continue
		}
		if target.Connections < r.o.Gates.MinConnections {
			if time.Since(start) < r.o.MaxWait {
				continue
			}
			return &Failure{"min-connections", fmt.Sprintf("%s got %d connections in %s, fewer than %d: not promoted blind",
				r.o.To, target.Connections, time.Since(start).Round(time.Millisecond), r.o.Gates.MinConnections)}
		}
		note := fmt.Sprintf("step %d/%d passed: %s %s; others %s", i+1, len(r.o.Steps), r.o.To, target, others)
		fmt.Fprintf(r.o.Out, "  %s\n", note)
		_, err = r.tg.ShiftUpdate(r.o.Service, func(_ *maps.Service, s *maps.Shift) ([]uint64, error) {
			if err := r.mine(s); err != nil {
				return nil, err
			}
			s.Note = note
			return nil, nil
		})
		return err
	}
}

// figures reads every subset's counters, by subset index: never the live
// bytes, which no gate needs.
func (r *runner) figures() ([]Figures, error) {
	st, err := r.tg.Counters(r.o.Service)
	if err != nil {
		return nil, err
	}
	out := make([]Figures, len(r.svc.Subsets))
	for i, sub := range st.Services[0].Subsets {
		if i < len(out) {
			out[i].add(sub.Counters)
		}
	}
	return out, nil
}

// split returns the new subset's figures and the old ones' over an interval.
func (r *runner) split(now, before []Figures) (target, others Figures) {
	for i := range now {
		d := now[i].minus(before[i])
		if i == r.sh.To {
			target = d
			continue
		}
		others.Connections += d.Connections
		others.Failed += d.Failed
		others.Resets += d.Resets
	}
	return target, others
}

func (r *runner) check(ctx context.Context, i int) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", r.o.Check)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &Failure{"check", fmt.Sprintf("before step %d, %q: %v: %s", i+1, r.o.Check, err, strings.TrimSpace(lastLine(out)))}
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// rollBack puts the weights back as they were before the shift and records
// why; the error it returns says so.
func (r *runner) rollBack(cause error) error {
	why := cause.Error()
	_, err := r.tg.ShiftUpdate(r.o.Service, func(_ *maps.Service, s *maps.Shift) ([]uint64, error) {
		if err := r.mine(s); err != nil {
			return nil, err // another writer's weights are in force: not rolled back over them
		}
		s.State, s.Note = maps.ShiftRolledBack, "rolled back: "+why
		return s.Before, nil
	})
	if err != nil {
		return fmt.Errorf("%w; and rolling back failed: %v", cause, err)
	}
	fmt.Fprintf(r.o.Out, "shift %s to %s: rolled back to %s: %s\n", r.o.Service, r.o.To, r.weightsText(r.sh.Before), why)
	return fmt.Errorf("rolled back: %w", cause)
}

// drain waits until the subsets that gave up their share hold no
// connection.
func (r *runner) drain(ctx context.Context) error {
	timeout := r.o.DrainTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	for _, i := range r.sh.From {
		name := r.svc.Subsets[i].Name
		for {
			load, err := r.tg.Load(r.o.Service, name)
			if err != nil {
				return err
			}
			if load.Active == 0 {
				fmt.Fprintf(r.o.Out, "%s %s: drained\n", r.o.Service, name)
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s %s: %d connections still open after %s", r.o.Service, name, load.Active, timeout)
			}
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(r.o.Poll):
			}
		}
	}
	return nil
}

func (r *runner) weightsText(w []uint64) string {
	var total uint64
	for _, x := range w {
		total += x
	}
	var s []string
	for i, sub := range r.svc.Subsets {
		if i < len(w) {
			s = append(s, fmt.Sprintf("%s=%s", sub.Name, pct(rate(w[i], total))))
		}
	}
	return strings.Join(s, " ")
}

// weightsOf spells weights by subset: "v1=900 v2=100".
func (r *runner) weightsOf(w []uint64) string {
	var s []string
	for i, sub := range r.svc.Subsets {
		if i < len(w) {
			s = append(s, fmt.Sprintf("%s=%d", sub.Name, w[i]))
		}
	}
	return strings.Join(s, " ")
}

// mine checks that the shift's record is still this run's: a forced
// set-weight or apply ends it (rolled back, with a note saying by whom)
// and its weights are then that writer's.
func (r *runner) mine(s *maps.Shift) error {
	if s.Pid == r.sh.Pid && s.PidStart == r.sh.PidStart && loader.ShiftHolds(*s) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrTakenOver, s.Note)
}

func stepsText(steps []uint32) string {
	var s []string
	for _, p := range steps {
		s = append(s, fmt.Sprintf("%d%%", p))
	}
	return strings.Join(s, ",")
}
