package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpshift/tcpshift/loader"
)

// metrics are the daemon's own counters; those of its syncs are the
// reconcile loop's, and the kernel's are read at each scrape by
// kernelCollector.
type metrics struct {
	suspect       prometheus.Counter
	reregistered  *prometheus.CounterVec
	healthChanges *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		suspect: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcpshift_config_suspect_total",
			Help: "Route config contents held back because they would drop a service, subset or route in force (a file caught half-written?); each content once. Applied once unchanged for " + suspectHold.String() + ", or on SIGHUP.",
		}),
		reregistered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpshift_socket_reregistrations_total",
			Help: "Lookup-mode endpoints given the new listening socket of a restarted backend.",
		}, []string{"service", "endpoint"}),
		healthChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpshift_endpoint_health_changes_total",
			Help: "Endpoint health changes decided by the checks, by the state reached.",
		}, []string{"service", "subset", "endpoint", "state"}),
	}
	reg.MustRegister(m.suspect, m.reregistered, m.healthChanges)
	return m
}

// kernelCollector reads the pinned maps at every scrape, so the figures are
// those `tcpshift status` shows, whoever changed them.
type kernelCollector struct {
	status func() (*loader.Status, error)
}

var (
	labelsService  = []string{"service"}
	labelsSubset   = []string{"service", "subset"}
	labelsEndpoint = []string{"service", "subset", "endpoint"}

	descInfo = prometheus.NewDesc("tcpshift_service_info",
		"A service tcpshift steers, with its frontend and the mode in force.", []string{"service", "listen", "mode"}, nil)
	descRefused = prometheus.NewDesc("tcpshift_refused_connections_total",
		"Connections refused: no weight, or no live endpoint.", labelsService, nil)
	descNoSocket = prometheus.NewDesc("tcpshift_lookups_no_socket_total",
		"Lookup-mode connections whose chosen endpoints had no listening socket.", labelsService, nil)
	descSwaps = prometheus.NewDesc("tcpshift_table_swaps_total",
		"Weight tables replaced: applies, weight changes and health changes.", labelsService, nil)
	descWeight = prometheus.NewDesc("tcpshift_subset_weight",
		"A subset's weight in force (a set-weight override included).", labelsSubset, nil)
	descFileWeight = prometheus.NewDesc("tcpshift_subset_file_weight",
		"A subset's weight in the route config file.", labelsSubset, nil)
	descOverride = prometheus.NewDesc("tcpshift_subset_weight_overridden",
		"1 while set-weight overrides the file's weight of the subset.", labelsSubset, nil)
	descShare = prometheus.NewDesc("tcpshift_subset_share_ratio",
		"The share of new connections a subset gets from the table in force (health included), 0 to 1.", labelsSubset, nil)
	descConns = prometheus.NewDesc("tcpshift_connections_total",
		"Connections given to an endpoint.", labelsEndpoint, nil)
	descActive = prometheus.NewDesc("tcpshift_connections_active",
		"Established connections to an endpoint not closed yet.", labelsEndpoint, nil)
	descBytes = prometheus.NewDesc("tcpshift_bytes_total",
		"Payload bytes to (direction=in) and from (direction=out) an endpoint, open connections included.",
		append(labelsEndpoint, "direction"), nil)
	descFailed = prometheus.NewDesc("tcpshift_connect_failures_total",
		"Connects to an endpoint that never got established (connect and proxy mode).", labelsEndpoint, nil)
	descResets = prometheus.NewDesc("tcpshift_connection_resets_total",
		"Established connections to an endpoint that ended with a reset, sent or received.", labelsEndpoint, nil)
	descRebalanced = prometheus.NewDesc("tcpshift_rebalanced_total",
		"Established connections to an endpoint that tcpshift rebalance closed.", labelsEndpoint, nil)
	descShiftStep = prometheus.NewDesc("tcpshift_shift_percent",
		"The share of a shift's target subset at its last completed step (percent), by state.", []string{"service", "subset", "state"}, nil)
	descHealthy = prometheus.NewDesc("tcpshift_endpoint_healthy",
		"1 if an endpoint may be chosen (up, or not checked), 0 if its checks took it out.", labelsEndpoint, nil)
)

func (kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descRefused, descNoSocket, descSwaps, descWeight, descFileWeight, descOverride,
		descShare, descConns, descActive, descBytes, descFailed, descResets, descRebalanced, descShiftStep, descHealthy} {
		ch <- d
	}
}

func (k kernelCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := k.status()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descInfo, err)
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range st.Services {
		gauge(descInfo, 1, s.Name, s.Listen, s.Mode)
		counter(descRefused, s.Refused, s.Name)
		counter(descNoSocket, s.NoSocket, s.Name)
		counter(descSwaps, s.Swaps, s.Name)
		if sh := s.Shift; sh != nil {
			gauge(descShiftStep, float64(sh.Percent), s.Name, sh.To, sh.State)
		}
		for _, sub := range s.Subsets {
			gauge(descWeight, float64(sub.Weight), s.Name, sub.Name)
			gauge(descFileWeight, float64(sub.FileWeight), s.Name, sub.Name)
			gauge(descOverride, b2f(sub.Override), s.Name, sub.Name)
			gauge(descShare, sub.Percent/100, s.Name, sub.Name)
			for _, ep := range sub.Endpoints {
				l := []string{s.Name, sub.Name, ep.Address}
				counter(descConns, ep.Connections, l...)
				gauge(descActive, float64(ep.Active), l...)
				counter(descBytes, ep.BytesIn, append(l, "in")...)
				counter(descBytes, ep.BytesOut, append(l, "out")...)
				counter(descFailed, ep.Failed, l...)
				counter(descResets, ep.Resets, l...)
				counter(descRebalanced, ep.Rebalanced, l...)
				healthy := 1.0
				if ep.Health == "down" {
					healthy = 0
				}
				gauge(descHealthy, healthy, l...)
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
