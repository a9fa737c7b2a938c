package reconcile

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metrics are the loop's, the same names for tcpshift run and agent.
type metrics struct {
	syncs    prometheus.Counter
	failures *prometheus.CounterVec
	lastOK   prometheus.Gauge
	lag      prometheus.Histogram
	seconds  prometheus.Histogram
	refused  prometheus.Gauge
}

func newMetrics() *metrics {
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	return &metrics{
		syncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "tcpshift_syncs_total",
			Help: "Syncs that brought a change of the input into force, the first one included."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcpshift_sync_failures_total",
			Help: "Syncs that failed, by the step they failed in; the tables in force stayed."}, []string{"step"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcpshift_last_sync_successful",
			Help: "1 if the last sync applied its input, 0 if it failed."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tcpshift_event_to_applied_seconds",
			Help: "From the first event of a change to its tables in force (a failed sync's wait included).", Buckets: buckets}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tcpshift_sync_seconds",
			Help: "Time to read, derive and apply one sync.", Buckets: buckets}),
		refused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcpshift_refused_objects",
			Help: "Objects left out of the last sync because they could not be derived (see the log)."}),
	}
}

// Alias is an older name of one of the loop's metrics, and its help.
type Alias struct{ Name, Help string }

// Aliases are the names a reconciler's metrics had before the loop was
// shared: each is served too, with the same value. Empty ones are not.
type Aliases struct {
	Syncs, Failures, LastOK, Lag, SyncSeconds, Refused Alias
	// FailuresSummed serves Failures without the step label, as one sum.
	FailuresSummed bool
}

func (m *metrics) register(reg prometheus.Registerer, a Aliases) {
	reg.MustRegister(m.syncs, m.failures, m.lastOK, m.lag, m.seconds, m.refused)
	failures := &alias{of: m.failures, sum: a.FailuresSummed}
	failures.desc = prometheus.NewDesc(a.Failures.Name, a.Failures.Help, []string{"step"}, nil)
	if a.FailuresSummed {
		failures.desc = prometheus.NewDesc(a.Failures.Name, a.Failures.Help, nil, nil)
	}
	for _, al := range []struct {
		name Alias
		*alias
	}{
		{a.Syncs, &alias{of: m.syncs}}, {a.Failures, failures}, {a.LastOK, &alias{of: m.lastOK}},
		{a.Lag, &alias{of: m.lag}}, {a.SyncSeconds, &alias{of: m.seconds}}, {a.Refused, &alias{of: m.refused}},
	} {
		if al.name.Name == "" {
			continue
		}
		if al.desc == nil {
			al.desc = prometheus.NewDesc(al.name.Name, al.name.Help, nil, nil)
		}
		reg.MustRegister(al.alias)
	}
}

// alias serves a collector's counters, gauges or histograms under another
// name; sum adds its counters up into one series without labels.
type alias struct {
	desc *prometheus.Desc
	of   prometheus.Collector
	sum  bool
}

func (a *alias) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

func (a *alias) Collect(ch chan<- prometheus.Metric) {
	in := make(chan prometheus.Metric)
	go func() {
		a.of.Collect(in)
		close(in)
	}()
	var total float64
	for m := range in {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			ch <- prometheus.NewInvalidMetric(a.desc, err)
			continue
		}
		var labels []string
		if !a.sum {
			for _, l := range pb.Label {
				labels = append(labels, l.GetValue())
			}
		}
		switch {
		case pb.Counter != nil && a.sum:
			total += pb.Counter.GetValue()
		case pb.Counter != nil:
			ch <- prometheus.MustNewConstMetric(a.desc, prometheus.CounterValue, pb.Counter.GetValue(), labels...)
		case pb.Gauge != nil:
			ch <- prometheus.MustNewConstMetric(a.desc, prometheus.GaugeValue, pb.Gauge.GetValue(), labels...)
		case pb.Histogram != nil:
			buckets := map[float64]uint64{}
			for _, b := range pb.Histogram.Bucket {
				buckets[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			ch <- prometheus.MustNewConstHistogram(a.desc, pb.Histogram.GetSampleCount(), pb.Histogram.GetSampleSum(), buckets, labels...)
		}
	}
	if a.sum { // served from the start, 0 before any failure
		ch <- prometheus.MustNewConstMetric(a.desc, prometheus.CounterValue, total)
	}
}
