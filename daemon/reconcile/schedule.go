package reconcile

import "time"

// schedule decides when the loop syncs, from the times it is given (so its
// tests need no clock). A batch of events is due debounce after its last
// event, unless that event said its input is still being written, and never
// later than maxDelay after its first, so a source that never goes quiet
// cannot hold changes back. A failed sync is tried again after a wait that
// doubles from retryMin up to retryMax; a success resets the wait.
type schedule struct {
	debounce, maxDelay, retryMin, retryMax time.Duration

	// The batch gathering events.
	open        bool
	first, last time.Time
	busy        bool // the last event's input is still being written
	now         bool // an event asked for a sync at once
	force       bool

	// What a failed sync left to bring into force, retried at retryAt
	// (zero: no retry set).
	pending bool
	since   time.Time
	forced  bool
	retryAt time.Time
	wait    time.Duration // the last retry's wait; 0 after a success
}

// outcome is how a sync ended, for the schedule.
type outcome int

const (
	synced  outcome = iota // applied
	skipped                // nothing to apply
	failed                 // retried after the backoff
	refused                // the input is invalid: wait for a change
)

func (s *schedule) add(at time.Time, ev Event) {
	if !s.open {
		s.open, s.first = true, at
	}
	s.last, s.busy = at, ev.Busy
	s.now = s.now || ev.Now
	s.force = s.force || ev.Force
}

// batchDue is when the open batch is to be synced.
func (s *schedule) batchDue() time.Time {
	if s.now {
		return s.last
	}
	due := s.first.Add(s.maxDelay)
	if quiet := s.last.Add(s.debounce); !s.busy && quiet.Before(due) {
		return quiet
	}
	return due
}

// next is when the next sync is due, if one is.
func (s *schedule) next() (time.Time, bool) {
	switch {
	case s.open && !s.retryAt.IsZero():
		if due := s.batchDue(); due.Before(s.retryAt) {
			return due, true
		}
		return s.retryAt, true
	case s.open:
		return s.batchDue(), true
	case !s.retryAt.IsZero():
		return s.retryAt, true
	}
	return time.Time{}, false
}

// take returns the sync due at now, if any: the open batch (with whatever a
// failed sync left), or else the retry.
func (s *schedule) take(now time.Time) (Batch, bool) {
	switch {
	case s.open && !s.batchDue().After(now):
		b := Batch{Since: s.first, Force: s.force}
		if s.pending {
			b.Since, b.Force = minTime(b.Since, s.since), b.Force || s.forced
		}
		s.open, s.now, s.force, s.busy = false, false, false, false
		s.retryAt = time.Time{}
		return b, true
	case s.pending && !s.retryAt.IsZero() && !s.retryAt.After(now):
		s.retryAt = time.Time{}
		return Batch{Since: s.since, Force: s.forced, Retry: true}, true
	}
	return Batch{}, false
}

// done records how the sync of b ended at now; after a failure it returns
// the wait before the retry.
func (s *schedule) done(now time.Time, b Batch, o outcome) time.Duration {
	switch o {
	case synced:
		s.pending, s.wait, s.retryAt = false, 0, time.Time{}
	case refused:
		s.pending, s.retryAt = false, time.Time{}
	case failed:
		s.pending, s.since, s.forced = true, b.Since, b.Force
		s.wait = min(max(2*s.wait, s.retryMin), s.retryMax)
		s.retryAt = now.Add(s.wait)
		return s.wait
	case skipped:
		if s.pending { // what failed before is still to be retried
			s.retryAt = now.Add(s.wait)
		}
	}
	return 0
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
