package loader

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
)

// ShiftPlan is a progressive shift to start: steps in percent of the
// service's total for the target subset.
type ShiftPlan struct {
	Service  string
	To       string
	From     []string // subsets that give up their share; empty: all others
	Percent  []uint32
	Interval time.Duration
}

// ErrShiftRunning refuses a second shift of a service.
var ErrShiftRunning = errors.New("a shift is running")

// ShiftWeights returns the weights of a step: the target subset gets p% of
// the total, the donors share what is left in proportion to their weights
// before, and the other subsets keep the share they had. Weights are per
// mille of the total, so 1% steps stay exact.
func ShiftWeights(before []uint64, to int, from []int, p uint32) []uint64 {
	var total, donors uint64
	for i, w := range before {
		total += w
		if slices.Contains(from, i) {
			donors += w
		}
	}
	out := make([]uint64, len(before))
	const scale = 1000
	target := uint64(p) * scale / 100
	fixed := uint64(0)
	for i, w := range before {
		if i != to && !slices.Contains(from, i) && total > 0 {
			out[i] = w * scale / total
			fixed += out[i]
		}
	}
	if target+fixed > scale {
		target = scale - fixed
	}
	out[to] = target
	left := scale - target - fixed
	var given uint64
	last := -1
	for i, w := range before {
		if slices.Contains(from, i) && donors > 0 {
			out[i] = left * w / donors
			given += out[i]
			last = i
		}
	}
	if last >= 0 {
		out[last] += left - given // rounding goes to the last donor
	}
	return out
}

// StartShift records a shift run by this process and returns the service
// as it is (its weights before). A shift of the service that is running
// (its process alive) is refused; an ended or interrupted one is replaced.
func (t *Target) StartShift(plan ShiftPlan) (*maps.Service, maps.Shift, error) {
	return t.putShift(plan.Service, startRecord(plan))
}

// nextRecord makes a service's new shift record of the one in force (ok:
// it has one).
type nextRecord func(svc *maps.Service, old maps.Shift, ok bool) (maps.Shift, error)

// startRecord is the record of a shift this process starts.
func startRecord(plan ShiftPlan) nextRecord {
	return func(svc *maps.Service, old maps.Shift, ok bool) (maps.Shift, error) {
		if ok && shiftAlive(old) {
			return maps.Shift{}, fmt.Errorf("%w for service %s (pid %d, step %d of %d): abort it first (tcpshift shift %s --abort)", ErrShiftRunning, svc.Name, old.Pid, old.Done, len(old.Percent), svc.Name)
		}
		return newShift(svc, plan)
	}
}

// putShift writes, in one change, the shift record next makes of a
// service's record in force, and returns the service and the record
// written. An error of next writes nothing.
func (t *Target) putShift(service string, next nextRecord) (svc *maps.Service, sh maps.Shift, err error) {
	err = t.Update(func(set *maps.Set) (err error) {
		svc, sh, err = putShiftOn(set, service, next)
		return err
	})
	return svc, sh, err
}

// putShiftOn is putShift's write, over set.
func putShiftOn(set *maps.Set, service string, next nextRecord) (*maps.Service, maps.Shift, error) {
	svc, err := lookupService(set, service)
	if err != nil {
		return nil, maps.Shift{}, err
	}
	old, ok, err := set.Shift(svc.ID)
	if err != nil {
		return nil, maps.Shift{}, err
	}
	sh, err := next(svc, old, ok)
	if err != nil {
		return nil, maps.Shift{}, err
	}
	return svc, sh, set.PutShift(svc.ID, sh)
}

func newShift(svc *maps.Service, plan ShiftPlan) (maps.Shift, error) {
	to := svc.Subset(plan.To)
	if to < 0 {
		return maps.Shift{}, noSubset(svc, plan.To)
	}
	sh := maps.Shift{State: maps.ShiftRunning, To: to, Percent: plan.Percent, Interval: plan.Interval,
		Pid: uint32(os.Getpid()), StepAt: time.Now()}
	start, err := processStart(os.Getpid())
	if err != nil {
		return sh, err
	}
	sh.PidStart = start
	for _, name := range plan.From {
		i := svc.Subset(name)
		if i < 0 {
			return sh, noSubset(svc, name)
		}
		if i == to {
			return sh, fmt.Errorf("--from %s is the subset the shift moves to", name)
		}
		sh.From = append(sh.From, i)
	}
	if len(sh.From) == 0 {
		for i := range svc.Subsets {
			if i != to {
				sh.From = append(sh.From, i)
			}
		}
	}
	for _, sub := range svc.Subsets {
		sh.Before = append(sh.Before, sub.Weight)
	}
	return sh, nil
}

// shiftAlive reports whether a shift's process still runs it.
func shiftAlive(sh maps.Shift) bool {
	switch sh.State {
	case maps.ShiftRunning, maps.ShiftPaused, maps.ShiftAborting:
	default:
		return false
	}
	start, err := processStart(int(sh.Pid))
	return err == nil && start == sh.PidStart
}

// ShiftUpdate changes a service's shift record and, with weights, its
// weights, in one change. fn sees the record as it is now (another shell
// may have paused or aborted it).
func (t *Target) ShiftUpdate(service string, fn func(svc *maps.Service, sh *maps.Shift) (weights []uint64, err error)) (out maps.Shift, err error) {
	err = t.Update(func(set *maps.Set) (err error) {
		out, err = updateShift(set, service, fn)
		return err
	})
	return out, err
}

// shiftChange changes a shift record in place and returns the weights to
// put in force with it, if any.
type shiftChange func(svc *maps.Service, sh *maps.Shift) (weights []uint64, err error)

// updateShift is ShiftUpdate's write, over set.
func updateShift(set *maps.Set, service string, fn shiftChange) (maps.Shift, error) {
	svc, err := lookupService(set, service)
	if err != nil {
		return maps.Shift{}, err
	}
	sh, ok, err := set.Shift(svc.ID)
	if err != nil {
		return maps.Shift{}, err
	}
	if !ok {
		return maps.Shift{}, fmt.Errorf("service %s has no shift", service)
	}
	weights, err := fn(svc, &sh)
	if err != nil {
		return maps.Shift{}, err
	}
	if weights != nil {
		if err := putWeights(set, svc, weights); err != nil {
			return maps.Shift{}, err
		}
	}
	return sh, set.PutShift(svc.ID, sh)
}

// putWeights puts a shift's weights in force: a record keeps a weight for
// every possible subset, the service's must all be there and no other
// may be set.
func putWeights(set *maps.Set, svc *maps.Service, weights []uint64) error {
	extra := weights[min(len(weights), len(svc.Subsets)):]
	if len(weights) < len(svc.Subsets) || slices.ContainsFunc(extra, func(w uint64) bool { return w != 0 }) {
		return fmt.Errorf("service %s changed its subsets during the shift", svc.Name)
	}
	for i := range svc.Subsets {
		svc.Subsets[i].Weight = weights[i]
	}
	if err := set.SwapTable(svc); err != nil {
		return err
	}
	return set.PutMeta(svc)
}

// ShiftOf reads a service's shift.
func (t *Target) ShiftOf(service string) (sh maps.Shift, ok bool, err error) {
	err = t.Read(func(set *maps.Set) error {
		svc, err := lookupService(set, service)
		if err != nil {
			return err
		}
		sh, ok, err = set.Shift(svc.ID)
		return err
	})
	return sh, ok, err
}

// RollBackShift puts the weights back as they were before a shift that no
// process runs any more (interrupted), as an abort does.
func (t *Target) RollBackShift(service, why string) (maps.Shift, error) {
	return t.ShiftUpdate(service, rollBackRecord(why))
}

// rollBackRecord rolls back a shift no process runs, saying why.
func rollBackRecord(why string) shiftChange {
	return func(svc *maps.Service, sh *maps.Shift) ([]uint64, error) {
		if shiftAlive(*sh) {
			return nil, fmt.Errorf("%w for service %s (pid %d): ask it to abort", ErrShiftRunning, svc.Name, sh.Pid)
		}
		if sh.State == maps.ShiftRolledBack || sh.State == maps.ShiftDone {
			return nil, fmt.Errorf("the shift of service %s has ended (%s): nothing to roll back", svc.Name, ShiftStateName(*sh))
		}
		sh.State, sh.Note = maps.ShiftRolledBack, why
		return sh.Before, nil
	}
}

// ShiftStateName is how status names a shift's state; a shift whose process
// is gone is interrupted.
func ShiftStateName(sh maps.Shift) string {
	switch sh.State {
	case maps.ShiftRunning, maps.ShiftPaused, maps.ShiftAborting:
		if !shiftAlive(sh) {
			return "interrupted"
		}
	}
	switch sh.State {
	case maps.ShiftRunning:
		return "running"
	case maps.ShiftPaused:
		return "paused"
	case maps.ShiftAborting:
		return "aborting"
	case maps.ShiftDone:
		return "done"
	case maps.ShiftRolledBack:
		return "rolled back"
	}
	return "unknown"
}

// ShiftStatus is a service's shift as status shows it.
type ShiftStatus struct {
	To      string   `json:"to" yaml:"to"`
	From    []string `json:"from" yaml:"from"`
	State   string   `json:"state" yaml:"state"`
	Steps   []uint32 `json:"steps" yaml:"steps"`
	Done    int      `json:"done" yaml:"done"`       // steps completed
	Percent uint32   `json:"percent" yaml:"percent"` // the target's share at the last completed step
	NextAt  string   `json:"next_at,omitempty" yaml:"next_at,omitempty"`
	Pid     uint32   `json:"pid" yaml:"pid"`
	Note    string   `json:"note,omitempty" yaml:"note,omitempty"`
}

func shiftStatus(svc *maps.Service, sh maps.Shift) *ShiftStatus {
	st := &ShiftStatus{State: ShiftStateName(sh), Steps: sh.Percent, Done: sh.Done, Pid: sh.Pid, Note: sh.Note, From: []string{}}
	if sh.To < len(svc.Subsets) {
		st.To = svc.Subsets[sh.To].Name
	}
	for _, i := range sh.From {
		if i < len(svc.Subsets) {
			st.From = append(st.From, svc.Subsets[i].Name)
		}
	}
	if sh.Done > 0 && sh.Done <= len(sh.Percent) {
		st.Percent = sh.Percent[sh.Done-1]
	}
	if st.State == "running" && sh.Done < len(sh.Percent) && !sh.StepAt.IsZero() && sh.Done > 0 {
		st.NextAt = sh.StepAt.Add(sh.Interval).Format(time.RFC3339)
	}
	return st
}

// ResumeShift takes over an interrupted shift with the same target and
// steps as plan, for this process; the weights before the shift and the
// steps done are the record's.
func (t *Target) ResumeShift(plan ShiftPlan) (*maps.Service, maps.Shift, error) {
	return t.putShift(plan.Service, resumeRecord(plan))
}

// resumeRecord takes an interrupted shift over for this process.
func resumeRecord(plan ShiftPlan) nextRecord {
	return func(svc *maps.Service, old maps.Shift, ok bool) (maps.Shift, error) {
		if !ok || ShiftStateName(old) != "interrupted" || old.To != svc.Subset(plan.To) || !slices.Equal(old.Percent, plan.Percent) {
			return maps.Shift{}, fmt.Errorf("service %s has no interrupted shift to %s with steps %v to resume", svc.Name, plan.To, plan.Percent)
		}
		start, err := processStart(os.Getpid())
		if err != nil {
			return maps.Shift{}, err
		}
		sh := old
		sh.State, sh.Pid, sh.PidStart, sh.Interval = maps.ShiftRunning, uint32(os.Getpid()), start, plan.Interval
		sh.Note = fmt.Sprintf("resumed at step %d of %d", max(old.Done, 1), len(old.Percent))
		return sh, nil
	}
}

// One owner for a service's weights at a time. A shift holds them from its
// start until it ends (done or rolled back): while it runs, is paused, is
// being aborted, and also once interrupted (its process gone), for then
// tcpshift run resumes it or --abort rolls it back to its weights before,
// either of which would put weights set meanwhile aside without a word.
// While it holds them, set-weight and apply refuse to change them (a
// ShiftingError names the shift and the ways out); with --force they
// abort the shift first, in the same change, and say so. The shift's
// process sees that its record was taken from it and stops without
// touching the weights.

// ErrShifting is what a change of weights a shift holds is refused with.
var ErrShifting = errors.New("a shift holds the service's weights")

// ShiftHolds reports whether a shift holds its service's weights: running,
// paused or aborting, in its process or interrupted.
func ShiftHolds(sh maps.Shift) bool {
	switch sh.State {
	case maps.ShiftRunning, maps.ShiftPaused, maps.ShiftAborting:
		return true
	}
	return false
}

// ShiftOwnsWeights reports whether the weights svc has in force are those
// of the step its shift is at (running, paused, aborting, interrupted) or
// ended at (done): a shift's, not a set-weight override.
func ShiftOwnsWeights(svc *maps.Service, sh maps.Shift) bool {
	if !ShiftHolds(sh) && sh.State != maps.ShiftDone {
		return false
	}
	w, ok := shiftStepWeights(svc, sh)
	return ok && slices.Equal(w, svc.Weights())
}

// shiftStepWeights returns the weights of the step a shift last took, per
// subset of svc; ok is false before its first step.
func shiftStepWeights(svc *maps.Service, sh maps.Shift) ([]uint64, bool) {
	n := len(svc.Subsets)
	if sh.Done < 1 || sh.Done > len(sh.Percent) || sh.To >= n || len(sh.Before) < n {
		return nil, false
	}
	for _, i := range sh.From {
		if i >= n {
			return nil, false
		}
	}
	return ShiftWeights(sh.Before[:n], sh.To, sh.From, sh.Percent[sh.Done-1]), true
}

// DescribeShift says where a shift is, for messages: "to v2 by pid 1234
// (step 2/3, 50%)".
func DescribeShift(svc *maps.Service, sh maps.Shift) string {
	to := fmt.Sprintf("subset %d", sh.To)
	if sh.To < len(svc.Subsets) {
		to = svc.Subsets[sh.To].Name
	}
	at := "before its first step"
	if sh.Done > 0 && sh.Done <= len(sh.Percent) {
		at = fmt.Sprintf("step %d/%d, %d%%", sh.Done, len(sh.Percent), sh.Percent[sh.Done-1])
	}
	return fmt.Sprintf("to %s by pid %d (%s)", to, sh.Pid, at)
}

// ShiftingError refuses a change of weights a shift holds.
type ShiftingError struct {
	Service string
	Writer  string // "set-weight", "apply"
	State   string // ShiftStateName
	Shift   string // DescribeShift
}

func (e *ShiftingError) Error() string {
	force := map[string]string{"set-weight": "set these weights", "apply": "apply"}[e.Writer]
	abort := fmt.Sprintf("tcpshift shift %s --abort rolls it back", e.Service)
	var what, ways string
	switch e.State {
	case "paused":
		what, ways = "is being shifted "+e.Shift+", paused", abort+", --resume lets it go on"
	case "aborting":
		what, ways = "is being rolled back by its shift "+e.Shift, "wait for it (tcpshift status "+e.Service+")"
	case "interrupted":
		what = "has an interrupted shift " + strings.Replace(e.Shift, "by pid", "left by pid", 1)
		ways = "tcpshift run resumes it if its route config declares it; " + abort
	default:
		what, ways = "is being shifted "+e.Shift, abort+", --pause holds it"
	}
	return fmt.Sprintf("%s refused: %s %s: %s; or pass --force to abort the shift and %s", e.Writer, e.Service, what, ways, force)
}

func (e *ShiftingError) Is(target error) bool { return target == ErrShifting }

// heldShift returns the shift that holds svc's weights, if one does.
func heldShift(set *maps.Set, svc *maps.Service) (maps.Shift, bool, error) {
	sh, ok, err := set.Shift(svc.ID)
	if err != nil || !ok || !ShiftHolds(sh) {
		return maps.Shift{}, false, err
	}
	return sh, true, nil
}

// refuseShifting is the ShiftingError for writer's change of svc.
func refuseShifting(svc *maps.Service, sh maps.Shift, writer string) error {
	return &ShiftingError{Service: svc.Name, Writer: writer, State: ShiftStateName(sh), Shift: DescribeShift(svc, sh)}
}

// abortedBy ends a shift that holds a service's weights for a forced
// writer: the record is rolled back and says by whom, so its process stops
// without touching the weights.
func abortedBy(sh maps.Shift, why string) maps.Shift {
	sh.State, sh.Note = maps.ShiftRolledBack, why
	return sh
}

// shiftOwners applies the rule to an apply: a service a shift holds keeps
// the shift's weights where the file leaves its route as it was; a route
// change that changes them is refused, or with Force (and for the daemon,
// whose file is the truth) ends the shift in the same change. It returns
// what to say once the change is made.
func (t *Target) shiftOwners(set *maps.Set, d *delta, opts ApplyOptions) (notices []string, err error) {
	for i, p := range d.plans {
		o := d.old[p.svc.Name]
		if o == nil {
			continue
		}
		sh, ok, err := heldShift(set, o)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		ch := &d.changes[i]
		if plan.SameFileRoute(o, p.svc) {
			for j := range p.svc.Subsets {
				p.svc.Subsets[j].Weight = o.Subsets[j].Weight
			}
			ch.KeptOverride = false // the shift's weights, not an override
			ch.Action = "updated"
			if reflect.DeepEqual(o, p.svc) {
				ch.Action = "unchanged"
			}
			d.write[p.svc.Name] = ch.Action != "unchanged"
			continue
		}
		if sameSubsets(o, p.svc) && slices.Equal(o.Weights(), p.svc.Weights()) {
			continue
		}
		if !opts.Force && !opts.Daemon {
			return nil, refuseShifting(o, sh, "apply")
		}
		who := "apply --force"
		if opts.Daemon {
			who = "tcpshift run"
		}
		if d.endShifts == nil {
			d.endShifts = map[uint32]maps.Shift{}
		}
		d.endShifts[o.ID] = abortedBy(sh, fmt.Sprintf("aborted by %s: the route config changes the service's weights", who))
		notices = append(notices, fmt.Sprintf("aborted the shift of %s %s: the route config changes its weights, which the shift held", o.Name, DescribeShift(o, sh)))
	}
	return notices, nil
}

func sameSubsets(a, b *maps.Service) bool {
	if len(a.Subsets) != len(b.Subsets) {
		return false
	}
	for i := range a.Subsets {
		if a.Subsets[i].Name != b.Subsets[i].Name {
			return false
		}
	}
	return true
}
