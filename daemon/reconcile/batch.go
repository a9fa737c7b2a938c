package reconcile

import (
	"errors"
	"time"
)

// Event is a source's note that its input changed.
type Event struct {
	// Busy: the input is still being written (a file its writer has not
	// closed): the batch waits past the debounce, up to the max delay.
	Busy bool
	// Now: sync at once, without the debounce (SIGHUP, a held file's
	// time is up, the first sync).
	Now bool
	// Force: apply the input even if it looks unchanged or suspect
	// (SIGHUP). A failed forced sync is retried forced.
	Force bool
}

// Batch is what one sync is asked to bring into force.
type Batch struct {
	Since time.Time // the first event whose change is not in force yet
	Force bool      // an event of the batch said Force
	Retry bool      // no new event: a failed sync tried again
	Start bool      // the first sync, made by Loop.Start
}

// Result is what a sync reports besides its error.
type Result struct {
	// Skipped: nothing was applied (the input is unchanged, held back, or
	// still being written): the sync is counted neither way.
	Skipped bool
	// Refused are objects left out of the sync (the rest was applied):
	// each is logged with its key and error.
	Refused []Refused
	// Notes are things of the input not applied, logged one a line.
	Notes []string
}

// Refused is an object left out of a sync.
type Refused struct {
	Key string // as the user names it: "VirtualService shop/tcp-echo"
	Err error
}

// StepError is a failed sync: the step it failed in (derive, apply…) and
// whether trying the same input again can help.
type StepError struct {
	Step string
	Err  error
	// Invalid: the input itself is refused; it is tried again when a
	// source says it changed, not on a timer.
	Invalid bool
}

func (e *StepError) Error() string { return e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Failed is a sync that failed in step, retried with backoff: the tables
// in force stay. nil stays nil.
func Failed(step string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: step, Err: err}
}

// Invalid is a sync whose input was refused in step: the same input would
// be refused again, so it waits for the next change. nil stays nil.
func Invalid(step string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: step, Err: err, Invalid: true}
}

// stepOf names the step an error failed in ("sync" when it says none).
func stepOf(err error) (step string, invalid bool, cause error) {
	var se *StepError
	if errors.As(err, &se) {
		return se.Step, se.Invalid, se.Err
	}
	return "sync", false, err
}
