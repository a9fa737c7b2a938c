package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	var ln net.Listener
	if err := inNS(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String(), "path", "/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
