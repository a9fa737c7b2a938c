package agent

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	syncs        prometheus.Counter
	failures     *prometheus.CounterVec
	services     prometheus.Gauge
	terminating  prometheus.Gauge
	rejected     prometheus.Gauge
	lag          prometheus.Histogram
	applySeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &metrics{
		syncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "tcpshift_agent_syncs_total",
			Help: "Bursts of cluster changes applied to the node's tables."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcpshift_agent_sync_failures_total",
			Help: "Syncs that failed (step derive or apply); the tables in force stayed."}, []string{"step"}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcpshift_agent_services",
			Help: "Services in force on the node, from the last sync."}),
		terminating: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcpshift_agent_terminating_endpoints",
			Help: "Terminating endpoints held at weight 0 while their connections drain."}),
		rejected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcpshift_agent_rejected_objects",
			Help: "Istio or Gateway API objects left out of the last sync because they could not be derived (see the log)."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tcpshift_agent_event_to_applied_seconds",
			Help: "From the first cluster event of a burst to its tables in force.", Buckets: buckets}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tcpshift_agent_sync_seconds",
			Help: "Time to derive and apply one sync.", Buckets: buckets}),
	}
	reg.MustRegister(m.syncs, m.failures, m.services, m.terminating, m.rejected, m.lag, m.applySeconds)
	return m
}
