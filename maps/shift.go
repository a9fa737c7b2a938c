package maps

import (
	"errors"
	"fmt"
	"time"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/state"
)

// ShiftState is where a shift is.
type ShiftState = bpf.TcpshiftShiftState

const (
	ShiftRunning    = bpf.TcpshiftShiftStateSHIFT_RUNNING
	ShiftPaused     = bpf.TcpshiftShiftStateSHIFT_PAUSED
	ShiftAborting   = bpf.TcpshiftShiftStateSHIFT_ABORTING
	ShiftDone       = bpf.TcpshiftShiftStateSHIFT_DONE
	ShiftRolledBack = bpf.TcpshiftShiftStateSHIFT_ROLLED_BACK
)

// MaxShiftSteps is how many steps a shift may have.
var MaxShiftSteps = len(bpf.TcpshiftShift{}.Percent)

// Shift is a progressive shift as the state keeps it.
type Shift struct {
	State    ShiftState
	To       int   // subset index
	From     []int // subsets that give up their share
	Percent  []uint32
	Done     int // steps completed
	Pid      uint32
	PidStart uint64
	Interval time.Duration
	StepAt   time.Time
	Before   []uint64 // weights before, per subset
	Note     string
}

// Shift reads a service's shift; ok is false when it has none.
func (s *Set) Shift(service uint32) (sh Shift, ok bool, err error) {
	if s.Shifts == nil {
		return sh, false, nil
	}
	var v bpf.TcpshiftShift
	err = s.lookup(s.Shifts, service, &v)
	if errors.Is(err, state.ErrNotExist) {
		return sh, false, nil
	}
	if err != nil {
		return sh, false, fmt.Errorf("read shift of service %d: %w", service, err)
	}
	sh = Shift{
		State: v.State, To: int(v.To), Done: int(v.Done), Pid: v.Pid, PidStart: v.PidStart,
		Interval: time.Duration(v.Interval), Note: getString(v.Note[:]),
		Percent: append([]uint32(nil), v.Percent[:min(int(v.Steps), len(v.Percent))]...),
		Before:  append([]uint64(nil), v.Before[:]...), // every subset slot: callers cut it
	}
	if v.StepAt != 0 {
		sh.StepAt = time.Unix(0, int64(v.StepAt))
	}
	for i := range MaxSubsets {
		if v.FromMask&(1<<i) != 0 {
			sh.From = append(sh.From, i)
		}
	}
	return sh, true, nil
}

// PutShift records a service's shift, journaled.
func (s *Set) PutShift(service uint32, sh Shift) error {
	if s.Shifts == nil {
		return errors.New("record shift: the pinned state predates shifts (run tcpshift down, then apply)")
	}
	if len(sh.Percent) > MaxShiftSteps {
		return fmt.Errorf("%d steps, at most %d", len(sh.Percent), MaxShiftSteps)
	}
	v := bpf.TcpshiftShift{
		State: sh.State, To: uint32(sh.To), Steps: uint32(len(sh.Percent)), Done: uint32(sh.Done),
		Pid: sh.Pid, PidStart: sh.PidStart, Interval: uint64(sh.Interval),
	}
	if !sh.StepAt.IsZero() {
		v.StepAt = uint64(sh.StepAt.UnixNano())
	}
	copy(v.Percent[:], sh.Percent)
	copy(v.Before[:], sh.Before)
	for _, i := range sh.From {
		v.FromMask |= 1 << i
	}
	putString(v.Note[:], sh.Note)
	if err := s.put(s.Shifts, service, &v); err != nil {
		return fmt.Errorf("record shift of service %d: %w", service, err)
	}
	return nil
}
