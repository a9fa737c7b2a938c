package reconcile

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"
)

// sim drives a loop on a fake clock, with no goroutine: events come at
// given times, and every sync due before them runs at its due time.
type sim struct {
	t     *testing.T
	start time.Time
	now   time.Time
	loop  *Loop
	log   *bytes.Buffer // the sim runs on one goroutine
	// reply is the sync's answer to its n-th call (from 0); nil: applied.
	reply func(n int, b Batch) (Result, error)
	syncs []synced_
}

// synced_ is one call of the sync, at an offset from the start.
type synced_ struct {
	at time.Duration
	b  Batch
}

func newSim(t *testing.T, o Options) *sim {
	s := &sim{t: t, start: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), log: &bytes.Buffer{}}
	s.now = s.start
	o.Now = func() time.Time { return s.now }
	o.Log = slog.New(slog.NewTextHandler(s.log, nil))
	o.Sync = func(_ context.Context, b Batch) (Result, error) {
		n := len(s.syncs)
		s.syncs = append(s.syncs, synced_{s.now.Sub(s.start), b})
		if s.reply == nil {
			return Result{}, nil
		}
		return s.reply(n, b)
	}
	s.loop = New(o)
	return s
}

// until runs, in time order, every sync due up to the offset at.
func (s *sim) until(at time.Duration) {
	end := s.start.Add(at)
	for {
		due, ok := s.loop.next()
		if !ok || due.After(end) {
			break
		}
		s.now = maxTime(s.now, due)
		s.loop.syncDue(context.Background())
	}
	s.now = end
}

// event happens at the offset at, after the syncs due before it; a sync
// it makes due at once runs.
func (s *sim) event(at time.Duration, ev Event) {
	s.until(at)
	s.loop.Changed(ev)
	s.until(at)
}

// at lists when the syncs ran.
func (s *sim) at() []time.Duration {
	var out []time.Duration
	for _, c := range s.syncs {
		out = append(out, c.at)
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

const ms = time.Millisecond
