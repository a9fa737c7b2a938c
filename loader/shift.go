package loader

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/tcpshift/tcpshift/maps"
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
	var (
		svc *maps.Service
		sh  maps.Shift
	)
	err := t.Update(func(set *maps.Set) error {
		var err error
		if svc, err = lookupService(set, plan.Service); err != nil {
			return err
		}
		old, ok, err := set.Shift(svc.ID)
		if err != nil {
			return err
		}
		if ok && shiftAlive(old) {
			return fmt.Errorf("%w for service %s (pid %d, step %d of %d): abort it first (tcpshift shift %s --abort)", ErrShiftRunning, svc.Name, old.Pid, old.Done, len(old.Percent), svc.Name)
		}
		if sh, err = newShift(svc, plan); err != nil {
			return err
		}
		return set.PutShift(svc.ID, sh)
	})
	return svc, sh, err
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
func (t *Target) ShiftUpdate(service string, fn func(svc *maps.Service, sh *maps.Shift) (weights []uint64, err error)) (maps.Shift, error) {
	var out maps.Shift
	err := t.Update(func(set *maps.Set) error {
		svc, err := lookupService(set, service)
		if err != nil {
			return err
		}
		sh, ok, err := set.Shift(svc.ID)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("service %s has no shift", service)
		}
		weights, err := fn(svc, &sh)
		if err != nil {
			return err
		}
		if weights != nil {
			// A record keeps a weight for every possible subset.
			for _, w := range weights[min(len(weights), len(svc.Subsets)):] {
				if w != 0 {
					return fmt.Errorf("service %s changed its subsets during the shift", service)
				}
			}
			if len(weights) < len(svc.Subsets) {
				return fmt.Errorf("service %s changed its subsets during the shift", service)
			}
			for i := range svc.Subsets {
				svc.Subsets[i].Weight = weights[i]
			}
			if err := set.SwapTable(svc); err != nil {
				return err
			}
			if err := set.PutMeta(svc); err != nil {
				return err
			}
		}
		out = sh
		return set.PutShift(svc.ID, sh)
	})
	return out, err
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
	return t.ShiftUpdate(service, func(svc *maps.Service, sh *maps.Shift) ([]uint64, error) {
		if shiftAlive(*sh) {
			return nil, fmt.Errorf("%w for service %s (pid %d): ask it to abort", ErrShiftRunning, svc.Name, sh.Pid)
		}
		if sh.State == maps.ShiftRolledBack || sh.State == maps.ShiftDone {
			return nil, fmt.Errorf("the shift of service %s has ended (%s): nothing to roll back", svc.Name, ShiftStateName(*sh))
		}
		sh.State, sh.Note = maps.ShiftRolledBack, why
		return sh.Before, nil
	})
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
	var (
		svc *maps.Service
		sh  maps.Shift
	)
	err := t.Update(func(set *maps.Set) error {
		var err error
		if svc, err = lookupService(set, plan.Service); err != nil {
			return err
		}
		old, ok, err := set.Shift(svc.ID)
		if err != nil {
			return err
		}
		if !ok || ShiftStateName(old) != "interrupted" || old.To != svc.Subset(plan.To) || !slices.Equal(old.Percent, plan.Percent) {
			return fmt.Errorf("service %s has no interrupted shift to %s with steps %v to resume", svc.Name, plan.To, plan.Percent)
		}
		start, err := processStart(os.Getpid())
		if err != nil {
			return err
		}
		sh = old
		sh.State, sh.Pid, sh.PidStart, sh.Interval = maps.ShiftRunning, uint32(os.Getpid()), start, plan.Interval
		sh.Note = fmt.Sprintf("resumed at step %d of %d", max(old.Done, 1), len(old.Percent))
		return set.PutShift(svc.ID, sh)
	})
	return svc, sh, err
}
