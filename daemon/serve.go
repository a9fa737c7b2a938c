package daemon

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcpshift/tcpshift/daemon/reconcile"
	"github.com/tcpshift/tcpshift/features"
	"github.com/tcpshift/tcpshift/loader"
)

// ServeMetrics serves /metrics on addr, made by inNS, until stop is called:
// reg's collectors, the services' figures as status reads them from the
// pinned maps at every scrape, the kernel facilities as probed (once per
// process), and the Go runtime's and the process's.
// tcpshift run and tcpshift agent share it.
func ServeMetrics(addr string, reg *prometheus.Registry, status func() (*loader.Status, error), inNS func(func() error) error, log *slog.Logger) (stop func(), err error) {
	reg.MustRegister(kernelCollector{status: status}, featureCollector{features.Probe()}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return reconcile.Serve("--metrics-addr", addr, "metrics", "/metrics", mux, inNS, log)
}
