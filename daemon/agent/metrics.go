package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpshift/tcpshift/daemon/reconcile"
)

// metrics are the agent's own; those of its syncs are the reconcile loop's.
type metrics struct {
	services    prometheus.Gauge
	terminating prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		services: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcpshift_agent_services",
			Help: "Services in force on the node, from the last sync."}),
		terminating: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcpshift_agent_terminating_endpoints",
			Help: "Terminating endpoints held at weight 0 while their connections drain."}),
	}
	reg.MustRegister(m.services, m.terminating)
	return m
}

// clusterAliases are the names tcpshift agent's loop metrics had before
// the loop was shared; they stay, with the same values.
var clusterAliases = reconcile.Aliases{
	Syncs: reconcile.Alias{Name: "tcpshift_agent_syncs_total",
		Help: "Bursts of cluster changes applied to the node's tables."},
	Failures: reconcile.Alias{Name: "tcpshift_agent_sync_failures_total",
		Help: "Syncs that failed (step derive or apply); the tables in force stayed."},
	Refused: reconcile.Alias{Name: "tcpshift_agent_rejected_objects",
		Help: "Istio or Gateway API objects left out of the last sync because they could not be derived (see the log)."},
	Lag: reconcile.Alias{Name: "tcpshift_agent_event_to_applied_seconds",
		Help: "From the first cluster event of a burst to its tables in force."},
	SyncSeconds: reconcile.Alias{Name: "tcpshift_agent_sync_seconds",
		Help: "Time to derive and apply one sync."},
}
