package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var errTest = errors.New("test failure")

func countLines(log, s string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// value reads a metric as a scrape would.
func value(t *testing.T, m prometheus.Metric) *dto.Metric {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	return &pb
}

func testCounter(t *testing.T, c prometheus.Counter) float64 {
	return value(t, c).GetCounter().GetValue()
}
func testGauge(t *testing.T, g prometheus.Gauge) float64 { return value(t, g).GetGauge().GetValue() }
func testHistogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	return value(t, h).GetHistogram().GetSampleCount()
}

// /readyz answers 503 until a sync applied the input, then 200 for good,
// failures after it included; /healthz answers 200 throughout.
func TestReadiness(t *testing.T) {
	s := newSim(t, agentTiming())
	s.reply = func(n int, b Batch) (Result, error) {
		if n == 0 || n == 2 {
			return Result{}, Failed("apply", errTest)
		}
		return Result{}, nil
	}
	h := s.loop.HealthHandler()
	status := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	want := func(when string, ready int) {
		t.Helper()
		if got := status("/readyz"); got != ready {
			t.Errorf("%s: /readyz %d, want %d", when, got, ready)
		}
		if got := status("/healthz"); got != http.StatusOK {
			t.Errorf("%s: /healthz %d, want 200", when, got)
		}
	}
	want("before any sync", http.StatusServiceUnavailable)
	s.event(0, Event{Now: true})
	want("after a failed first sync", http.StatusServiceUnavailable)
	s.until(time.Second)
	want("after the retry applied", http.StatusOK)
	s.event(2*time.Second, Event{Now: true})
	want("after a later failure", http.StatusOK)
	if got := testGauge(t, s.loop.metrics.lastOK); got != 0 {
		t.Errorf("last sync successful %v after a failure, want 0", got)
	}
}

// Each refused object is one warning with its key and error, at every sync
// that refuses it; the gauge counts those of the last sync. Notes are one
// line each.
func TestRefusedObjectsLogged(t *testing.T) {
	s := newSim(t, agentTiming())
	s.reply = func(n int, b Batch) (Result, error) {
		switch n {
		case 0:
			return Result{Notes: []string{"a subset with no endpoints"}, Refused: []Refused{
				{Key: "VirtualService shop/tcp-echo", Err: errors.New("host tcp-echo: no such service")},
				{Key: "TCPRoute default/r", Err: errors.New("parentRefs[0]: no such Gateway")},
			}}, nil
		case 1:
			return Result{Refused: []Refused{{Key: "TCPRoute default/r", Err: errors.New("parentRefs[0]: no such Gateway")}}}, Failed("apply", errTest)
		}
		return Result{}, nil
	}
	s.event(0, Event{Now: true})
	log := s.log.String()
	for _, want := range []string{
		`level=WARN msg="object left out" object="VirtualService shop/tcp-echo" err="host tcp-echo: no such service"`,
		`level=WARN msg="object left out" object="TCPRoute default/r" err="parentRefs[0]: no such Gateway"`,
		`level=WARN msg="not applied" note="a subset with no endpoints"`,
	} {
		if countLines(log, want) != 1 {
			t.Errorf("want one line %s:\n%s", want, log)
		}
	}
	if got := testGauge(t, s.loop.metrics.refused); got != 2 {
		t.Errorf("refused objects %v, want 2", got)
	}
	s.event(time.Second, Event{Now: true})
	if got, lines := testGauge(t, s.loop.metrics.refused), countLines(s.log.String(), "object left out"); got != 1 || lines != 3 {
		t.Errorf("a failed sync that refused one: gauge %v, %d lines in all; want 1, 3", got, lines)
	}
	s.until(5 * time.Second) // the retry applies, refusing none
	if got, lines := testGauge(t, s.loop.metrics.refused), countLines(s.log.String(), "object left out"); got != 0 || lines != 3 {
		t.Errorf("a sync that refused none: gauge %v, %d lines in all; want 0, 3", got, lines)
	}
	if n := len(s.syncs); n != 3 {
		t.Errorf("%d syncs, want 3", n)
	}
}

// A source whose read fails: each failure is logged once with its step,
// error and the wait, counted by step; the loop keeps going and applies
// once the source reads again.
func TestSourceThatErrors(t *testing.T) {
	s := newSim(t, Options{Debounce: 50 * ms, MaxDelay: 250 * ms, FailMsg: "route config refused", FailAttrs: []any{"config", "/etc/r.yaml"}})
	s.reply = func(n int, b Batch) (Result, error) {
		if n < 2 {
			return Result{}, Failed("read", fmt.Errorf("read route config: %w", errTest))
		}
		return Result{}, nil
	}
	s.event(0, Event{})
	s.until(10 * time.Second)
	wantAt(t, s, 50*ms, 1050*ms, 3050*ms)
	log := s.log.String()
	for _, want := range []string{
		`level=ERROR msg="route config refused" config=/etc/r.yaml step=read err="read route config: test failure" retry_in=1s`,
		`level=ERROR msg="route config refused" config=/etc/r.yaml step=read err="read route config: test failure" retry_in=2s`,
	} {
		if countLines(log, want) != 1 {
			t.Errorf("want one line %s:\n%s", want, log)
		}
	}
	if n := countLines(log, "level=ERROR"); n != 2 {
		t.Errorf("%d error lines, want 2", n)
	}
	if got := testCounter(t, s.loop.metrics.failures.WithLabelValues("read")); got != 2 {
		t.Errorf("%v read failures counted, want 2", got)
	}
	if !s.loop.Ready() || testGauge(t, s.loop.metrics.lastOK) != 1 {
		t.Error("not ready after the source read again")
	}
}

// Start's failure is returned, neither logged nor retried nor ready.
func TestStartFailure(t *testing.T) {
	s := newSim(t, agentTiming())
	s.reply = func(int, Batch) (Result, error) { return Result{}, Invalid("read", errTest) }
	if err := s.loop.Start(context.Background()); !errors.Is(err, errTest) || err.Error() != errTest.Error() {
		t.Fatalf("Start: %v, want the sync's error as it is", err)
	}
	s.until(time.Hour)
	if len(s.syncs) != 1 || !s.syncs[0].b.Start || s.loop.Ready() || s.log.String() != "" {
		t.Fatalf("%d syncs %+v, ready %v, log %q; want the one Start made, not ready, nothing logged", len(s.syncs), s.syncs, s.loop.Ready(), s.log)
	}
}

// The aliases serve the loop's metrics under older names: the same
// counters, gauges and histograms, failures by step or summed.
func TestAliases(t *testing.T) {
	for _, summed := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		s := newSim(t, Options{Debounce: 50 * ms, MaxDelay: 250 * ms, Registry: reg, Aliases: Aliases{
			Syncs: Alias{"old_syncs_total", "h"}, Failures: Alias{"old_failures_total", "h"}, LastOK: Alias{"old_last_ok", "h"},
			Lag: Alias{"old_lag_seconds", "h"}, SyncSeconds: Alias{"old_sync_seconds", "h"}, Refused: Alias{"old_refused", "h"},
			FailuresSummed: summed,
		}})
		fams := gather(t, reg)
		if _, ok := fams["old_failures_total"]; ok != summed {
			t.Errorf("summed %v: failures served before any failure: %v", summed, ok)
		}
		s.reply = func(n int, b Batch) (Result, error) {
			switch n {
			case 0:
				return Result{}, Failed("derive", errTest)
			case 1:
				return Result{}, Failed("apply", errTest)
			}
			return Result{Refused: []Refused{{Key: "k", Err: errTest}}}, nil
		}
		s.event(0, Event{Now: true})
		s.until(10 * time.Second)
		fams = gather(t, reg)
		for _, c := range []struct {
			old, now string
		}{{"old_syncs_total", "tcpshift_syncs_total"}, {"old_last_ok", "tcpshift_last_sync_successful"},
			{"old_lag_seconds", "tcpshift_event_to_applied_seconds"}, {"old_sync_seconds", "tcpshift_sync_seconds"},
			{"old_refused", "tcpshift_refused_objects"}} {
			if a, b := fams[c.old], fams[c.now]; a == nil || b == nil || a.GetType() != b.GetType() || a.Metric[0].String() != b.Metric[0].String() {
				t.Errorf("%s = %v, want %s's %v", c.old, a, c.now, b)
			}
		}
		old := fams["old_failures_total"].Metric
		switch {
		case summed && (len(old) != 1 || old[0].GetCounter().GetValue() != 2 || len(old[0].Label) != 0):
			t.Errorf("summed failures: %v, want one series of 2", old)
		case !summed && (len(old) != 2 || old[0].String() != fams["tcpshift_sync_failures_total"].Metric[0].String()):
			t.Errorf("failures by step: %v, want %v", old, fams["tcpshift_sync_failures_total"].Metric)
		}
		if got := fams["old_syncs_total"].Metric[0].GetCounter().GetValue(); got != 1 {
			t.Errorf("old_syncs_total %v, want 1", got)
		}
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
		for _, m := range f.Metric { // the aliases have none
			if m.Counter != nil {
				m.Counter.CreatedTimestamp = nil
			}
			if m.Histogram != nil {
				m.Histogram.CreatedTimestamp = nil
			}
		}
	}
	return out
}

// Run on the real clock: a burst is one sync, periodic work runs between
// syncs, and an error of that work ends Run with it.
func TestRun(t *testing.T) {
	syncs := make(chan Batch, 10)
	l := New(Options{Debounce: 20 * ms, MaxDelay: time.Second, Sync: func(_ context.Context, b Batch) (Result, error) {
		syncs <- b
		return Result{}, nil
	}})
	ticks := 0
	stop := errors.New("enough ticks")
	l.Every(10*ms, func(context.Context) error {
		if ticks++; ticks == 30 {
			return stop
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	for range 5 {
		l.Changed(Event{})
	}
	select {
	case <-syncs:
	case <-time.After(5 * time.Second):
		t.Fatal("a burst was not synced")
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end on the periodic work's error")
	}
	if !errors.Is(err, stop) || ticks != 30 {
		t.Fatalf("Run: %v after %d ticks, want %v after 30", err, ticks, stop)
	}
	if n := len(syncs); n != 0 {
		t.Fatalf("one burst synced %d more times", n)
	}
	ok := l.Do(context.Background(), func(context.Context) error { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for ok { // the queue fills: a canceled Do gives up
		ok = l.Do(ctx, func(context.Context) error { return nil })
	}
}
