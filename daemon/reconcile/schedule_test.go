package reconcile

import (
	"slices"
	"testing"
	"time"
)

func agentTiming() Options { return Options{Debounce: 50 * ms, MaxDelay: 250 * ms} }

func wantAt(t *testing.T, s *sim, want ...time.Duration) {
	t.Helper()
	if got := s.at(); !slices.Equal(got, want) {
		t.Fatalf("syncs at %v, want %v", got, want)
	}
}

// A burst of events is one sync, debounce after its last event; the next
// burst is another.
func TestDebounceBurst(t *testing.T) {
	s := newSim(t, agentTiming())
	for _, at := range []time.Duration{0, 10 * ms, 20 * ms, 30 * ms, 40 * ms} {
		s.event(at, Event{})
	}
	s.event(500*ms, Event{})
	s.until(2 * time.Second)
	wantAt(t, s, 90*ms, 550*ms)
	if s.syncs[0].b.Since != s.start || s.syncs[1].b.Since != s.start.Add(500*ms) {
		t.Errorf("batches since %v and %v, want their first events", s.syncs[0].b.Since, s.syncs[1].b.Since)
	}
}

// Events every 10ms for a second never go quiet for the 50ms debounce: a
// batch is synced maxDelay after its first event, 4 in all.
func TestMaxDelayStream(t *testing.T) {
	s := newSim(t, agentTiming())
	for at := time.Duration(0); at < time.Second; at += 10 * ms {
		s.event(at, Event{})
	}
	s.until(3 * time.Second)
	wantAt(t, s, 250*ms, 500*ms, 750*ms, time.Second)
}

// Busy events (a file not closed yet) hold the batch past the debounce, up
// to maxDelay; the event that says the writing ended lets the debounce run.
func TestBusyHoldsDebounce(t *testing.T) {
	s := newSim(t, Options{Debounce: 100 * ms, MaxDelay: time.Second})
	s.event(0, Event{Busy: true})
	s.event(300*ms, Event{Busy: true})
	s.event(2*time.Second, Event{Busy: true})
	s.event(2300*ms, Event{})
	s.until(5 * time.Second)
	wantAt(t, s, time.Second, 2400*ms)
}

// A Now event syncs at once with what the batch gathered; Force stays with
// its batch only.
func TestNowAndForce(t *testing.T) {
	s := newSim(t, agentTiming())
	s.event(0, Event{})
	s.event(20*ms, Event{Now: true})
	s.event(100*ms, Event{Force: true})
	s.event(120*ms, Event{})
	s.event(400*ms, Event{})
	s.until(time.Second)
	wantAt(t, s, 20*ms, 170*ms, 450*ms)
	for i, force := range []bool{false, true, false} {
		if s.syncs[i].b.Force != force || s.syncs[i].b.Retry {
			t.Errorf("sync %d: %+v, want force %v, no retry", i, s.syncs[i].b, force)
		}
	}
}

// A failed sync is tried again after 1s, then 2s, 4s… up to the cap of a
// minute, each time with what failed (its first event, forced); a success
// resets the wait.
func TestRetryBackoff(t *testing.T) {
	s := newSim(t, agentTiming())
	s.reply = func(n int, b Batch) (Result, error) {
		if n < 9 || n == 10 {
			return Result{}, Failed("apply", errTest)
		}
		return Result{}, nil
	}
	s.event(0, Event{Now: true, Force: true})
	s.until(250 * time.Second)
	sec := time.Second
	wantAt(t, s, 0, 1*sec, 3*sec, 7*sec, 15*sec, 31*sec, 63*sec, 123*sec, 183*sec, 243*sec)
	for i, c := range s.syncs {
		if c.b.Since != s.start || !c.b.Force || c.b.Retry != (i > 0) {
			t.Errorf("sync %d: %+v, want since the start, forced, retry %v", i, c.b, i > 0)
		}
	}
	s.event(300*sec, Event{})
	s.until(400 * time.Second)
	wantAt(t, s, 0, 1*sec, 3*sec, 7*sec, 15*sec, 31*sec, 63*sec, 123*sec, 183*sec, 243*sec, 300*sec+50*ms, 301*sec+50*ms)
	if got := testCounter(t, s.loop.metrics.failures.WithLabelValues("apply")); got != 10 {
		t.Errorf("%v failures counted, want 10", got)
	}
	if got := testCounter(t, s.loop.metrics.syncs); got != 2 {
		t.Errorf("%v syncs counted, want 2", got)
	}
	if got := countLines(s.log.String(), "retry_in=1m0s"); got != 3 {
		t.Errorf("%d failures logged with retry_in=1m0s, want 3:\n%s", got, s.log)
	}
}

// An event during the wait makes the sync at once (debounced), with what
// failed before; the retry waits on from there.
func TestRetryMergedWithEvent(t *testing.T) {
	s := newSim(t, agentTiming())
	s.reply = func(n int, b Batch) (Result, error) {
		if n < 2 {
			return Result{}, Failed("derive", errTest)
		}
		return Result{}, nil
	}
	s.event(0, Event{Now: true})
	s.event(500*ms, Event{})
	s.until(10 * time.Second)
	wantAt(t, s, 0, 550*ms, 2550*ms)
	if b := s.syncs[1].b; b.Since != s.start || b.Retry {
		t.Errorf("the event's sync: %+v, want since the start (what failed), no retry", b)
	}
	if b := s.syncs[2].b; b.Since != s.start || !b.Retry {
		t.Errorf("the retry: %+v, want since the start", b)
	}
}

// Input refused as invalid is not retried: the next change is synced.
func TestInvalidWaitsForChange(t *testing.T) {
	s := newSim(t, agentTiming())
	s.reply = func(n int, b Batch) (Result, error) {
		if n == 0 {
			return Result{}, Invalid("read", errTest)
		}
		return Result{}, nil
	}
	s.event(0, Event{})
	s.event(10*time.Second, Event{})
	s.until(20 * time.Second)
	wantAt(t, s, 50*ms, 10*time.Second+50*ms)
	if b := s.syncs[1].b; b.Since != s.start.Add(10*time.Second) {
		t.Errorf("after a refusal: since %v, want the new event", b.Since)
	}
}

// A skipped sync (nothing to apply) is counted neither way and keeps a
// retry that was due.
func TestSkippedCountsNothing(t *testing.T) {
	s := newSim(t, agentTiming())
	s.reply = func(n int, b Batch) (Result, error) {
		switch n {
		case 0:
			return Result{}, Failed("apply", errTest)
		case 1:
			return Result{Skipped: true}, nil
		}
		return Result{}, nil
	}
	s.event(0, Event{Now: true})
	s.event(200*ms, Event{})
	s.until(5 * time.Second)
	wantAt(t, s, 0, 250*ms, 1250*ms)
	if got := testCounter(t, s.loop.metrics.syncs); got != 1 {
		t.Errorf("%v syncs counted, want 1", got)
	}
	if got := testHistogramCount(t, s.loop.metrics.lag); got != 1 {
		t.Errorf("%v lags observed, want 1", got)
	}
}
