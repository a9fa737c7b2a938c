// Package reconcile is the reconcile loop tcpshift run and tcpshift agent
// share. Sources (a file watcher, informers, signals, timers) say that
// their input changed; the loop gathers their events into batches (a
// debounce and a max delay), calls the reconciler's sync for each, retries
// a failed sync with backoff while the tables in force stay, logs what the
// sync refused, and keeps the metrics and readiness of all of it. Periodic
// work and anything else that must not run beside a sync is run by the
// loop too, between syncs. It knows nothing of the kernel or of the
// inputs: the sync does.
package reconcile

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the retry after a failed sync.
const (
	DefaultRetryMin = time.Second
	DefaultRetryMax = time.Minute
)

// Options configure a Loop.
type Options struct {
	// Sync brings the sources' input into force. It runs on the loop's
	// goroutine, never beside another sync or periodic work.
	Sync func(context.Context, Batch) (Result, error)
	// Debounce is the quiet time after the last event of a batch; MaxDelay
	// bounds how long after its first event a batch is synced.
	Debounce, MaxDelay time.Duration
	// RetryMin and RetryMax bound the wait before a failed sync is tried
	// again (DefaultRetryMin, DefaultRetryMax when 0).
	RetryMin, RetryMax time.Duration
	// Registry gets the loop's metrics and Aliases, if not nil.
	Registry prometheus.Registerer
	Aliases  Aliases
	// FailMsg is the log message of a failed sync, FailAttrs attributes
	// it carries besides the step and the error.
	FailMsg   string
	FailAttrs []any
	Log       *slog.Logger
	Now       func() time.Time // time.Now when nil; tests give their own
}

// Loop is one reconcile loop; see the package comment.
type Loop struct {
	o       Options
	log     *slog.Logger
	metrics *metrics
	ready   atomic.Bool

	mu    sync.Mutex // guards sched: sources add to it from any goroutine
	sched schedule
	wake  chan struct{}
	work  chan func(context.Context) error
	every []periodic
}

type periodic struct {
	interval time.Duration
	fn       func(context.Context) error
}

// New makes a loop; nothing runs before Start or Run.
func New(o Options) *Loop {
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FailMsg == "" {
		o.FailMsg = "sync failed; the tables in force stay"
	}
	l := &Loop{o: o, log: o.Log, metrics: newMetrics(),
		sched: schedule{debounce: o.Debounce, maxDelay: o.MaxDelay, retryMin: o.RetryMin, retryMax: o.RetryMax},
		wake:  make(chan struct{}, 1), work: make(chan func(context.Context) error, 64)}
	if o.Registry != nil {
		l.metrics.register(o.Registry, o.Aliases)
	}
	return l
}

// Changed notes a source's event; it never blocks, from any goroutine.
func (l *Loop) Changed(ev Event) {
	l.mu.Lock()
	l.sched.add(l.o.Now(), ev)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // the loop wakes anyway
	}
}

// Do runs fn on the loop's goroutine, between syncs; an error from fn ends
// Run with it. It waits while the loop's queue is full, and reports false
// if ctx ended first.
func (l *Loop) Do(ctx context.Context, fn func(context.Context) error) bool {
	select {
	case l.work <- fn:
		return true
	case <-ctx.Done():
		return false
	}
}

// Every runs fn on the loop's goroutine every interval while Run runs; an
// error from fn ends Run with it. Call it before Run.
func (l *Loop) Every(interval time.Duration, fn func(context.Context) error) {
	l.every = append(l.every, periodic{interval, fn})
}

// Ready reports whether a sync has applied the input since the start.
func (l *Loop) Ready() bool { return l.ready.Load() }

// Start makes the first sync at once and returns its error, neither logged
// nor retried: for a reconciler that must not start on input it cannot
// apply (tcpshift run).
func (l *Loop) Start(ctx context.Context) error {
	return l.sync(ctx, Batch{Since: l.o.Now(), Start: true})
}

// Run syncs the batches the sources' events make, and runs the work given
// to Do and Every, until ctx ends (nil) or that work fails (its error).
func (l *Loop) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, p := range l.every {
		go l.tick(ctx, p)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		l.syncDue(ctx)
		timer.Stop()
		if due, ok := l.next(); ok {
			timer.Reset(due.Sub(l.o.Now()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.wake:
		case <-timer.C:
		case fn := <-l.work:
			if err := fn(ctx); err != nil {
				return err
			}
		}
	}
}

// tick hands p to the loop every interval until ctx ends.
func (l *Loop) tick(ctx context.Context, p periodic) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !l.Do(ctx, p.fn) {
				return
			}
		}
	}
}

func (l *Loop) next() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sched.next()
}

// syncDue makes every sync due by now.
func (l *Loop) syncDue(ctx context.Context) {
	for ctx.Err() == nil {
		l.mu.Lock()
		b, ok := l.sched.take(l.o.Now())
		l.mu.Unlock()
		if !ok {
			return
		}
		l.sync(ctx, b)
	}
}

// sync calls the reconciler's sync for b and keeps the books: the log of
// refused objects and notes, the metrics, readiness and the retry.
func (l *Loop) sync(ctx context.Context, b Batch) error {
	start := l.o.Now()
	res, err := l.o.Sync(ctx, b)
	end := l.o.Now()
	for _, r := range res.Refused {
		l.log.Warn("object left out", "object", r.Key, "err", r.Err)
	}
	for _, n := range res.Notes {
		l.log.Warn("not applied", "note", n)
	}
	if len(res.Refused) > 0 || (err == nil && !res.Skipped) {
		l.metrics.refused.Set(float64(len(res.Refused)))
	}
	if err != nil && b.Start {
		return err
	}
	outcome := synced
	switch step, invalid, cause := stepOf(err); {
	case err != nil:
		l.metrics.failures.WithLabelValues(step).Inc()
		l.metrics.lastOK.Set(0)
		outcome = failed
		if invalid {
			outcome = refused
		}
		l.mu.Lock()
		wait := l.sched.done(end, b, outcome)
		l.mu.Unlock()
		attrs := append(append([]any(nil), l.o.FailAttrs...), "step", step, "err", cause)
		if wait > 0 {
			attrs = append(attrs, "retry_in", wait)
		}
		l.log.Error(l.o.FailMsg, attrs...)
		return err
	case res.Skipped:
		outcome = skipped
	default:
		l.metrics.syncs.Inc()
		l.metrics.lastOK.Set(1)
		l.metrics.lag.Observe(end.Sub(b.Since).Seconds())
		l.metrics.seconds.Observe(end.Sub(start).Seconds())
		l.ready.Store(true)
	}
	l.mu.Lock()
	l.sched.done(end, b, outcome)
	l.mu.Unlock()
	return nil
}
