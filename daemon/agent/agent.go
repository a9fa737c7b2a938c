// Package agent runs tcpshift on a Kubernetes node: client-go informers
// follow Services, EndpointSlices, Pods and the Istio and Gateway API
// routes, config/kube derives the node's services from them, and each
// burst of changes is applied through the loader in one transaction.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tcpshift/tcpshift/config/kube"
	"github.com/tcpshift/tcpshift/daemon"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

// Options are the agent's settings (tcpshift agent's flags).
type Options struct {
	Node          string
	Kubeconfig    string // "" : in-cluster
	OnlyRouted    bool
	ClusterDomain string
	Debounce      time.Duration
	MaxDelay      time.Duration
	MetricsAddr   string // "" : off
	HealthAddr    string // "" : off
	Target        *loader.Target
	Log           *slog.Logger
}

// Defaults of the flags.
const (
	DefaultDebounce = 50 * time.Millisecond
	DefaultMaxDelay = 250 * time.Millisecond
)

// RestConfig is the API server client configuration: the kubeconfig at
// path, or the pod's in-cluster one when path is empty.
func RestConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (give --kubeconfig outside a pod): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

type agent struct {
	o       Options
	watch   *watch
	ready   atomic.Bool
	metrics *metrics
	changed chan struct{}
	// retry is how long after a failed sync the agent tries again without
	// waiting for a change (doubling to a minute, reset by a success).
	retry time.Duration
	// derived is the incremental derivation between syncs.
	derived derivation
}

// Run follows the cluster until ctx ends. The kernel state stays when it
// returns: connections keep flowing, and the next agent adopts it.
func Run(ctx context.Context, o Options) error {
	if o.Node == "" {
		return errors.New("--node: required (the node's name, e.g. from the downward API's spec.nodeName)")
	}
	cfg, err := RestConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "tcpshift-agent/" + o.Node
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	o.Target.EveryNetns = true
	reg := prometheus.NewRegistry()
	changed := make(chan struct{}, 1)
	a := &agent{o: o, metrics: newMetrics(reg), changed: changed}
	// Discovery may fail while the API server is away: retry, bounded.
	var typedF interface{ Start(<-chan struct{}) }
	var dynF interface{ Start(<-chan struct{}) }
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		w, tf, df, err := newWatch(cs, dc, disc, changed, o.Log)
		if err == nil {
			a.watch, typedF, dynF = w, tf, df
			break
		}
		o.Log.Warn("API server not answering; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	daemon.LogKernelFeatures(o.Log)
	stop, err := a.serve(reg)
	if err != nil {
		return err
	}
	defer stop()
	typedF.Start(ctx.Done())
	dynF.Start(ctx.Done())
	o.Log.Info("waiting for the caches", "node", o.Node, "routes", fmt.Sprint(a.watch.routeGVRs))
	// Nothing is applied before every cache is full: a partial view
	// would remove services that are only not listed yet.
	// Say what is holding the first sync back (a kind the role may not
	// list, an API server that does not answer) rather than wait silently.
	synced := make(chan struct{})
	go func() {
		waiting := time.NewTicker(30 * time.Second)
		defer waiting.Stop()
		for {
			select {
			case <-synced:
				return
			case <-waiting.C:
			}
			if names := a.watch.unsynced(); len(names) > 0 {
				o.Log.Warn("still waiting for the first list of these resources; nothing is applied until every one is in (check the ClusterRole and the API server)", "resources", strings.Join(names, ", "))
			}
		}
	}()
	ok := cache.WaitForCacheSync(ctx.Done(), a.watch.synced...)
	close(synced)
	if !ok {
		return nil
	}
	signal(changed)
	batches(ctx, changed, o.Debounce, o.MaxDelay, a.sync)
	o.Log.Info("stopping; the kernel state stays in place")
	return nil
}

// sync derives the node's services from the caches and applies them.
func (a *agent) sync(first time.Time) {
	start := time.Now()
	res, rejected, err := a.derived.derive(a.watch, kube.Options{ClusterDomain: a.o.ClusterDomain, OnlyRouted: a.o.OnlyRouted, Node: a.o.Node}, a.o.Log)
	if err != nil {
		a.derived.again = true
		a.failed("derive", err)
		return
	}
	rejected = append(rejected, res.Rejected...)
	for _, r := range rejected {
		a.o.Log.Warn("object left out", "object", r.Key.String(), "err", r.Err)
	}
	for _, n := range res.Notes {
		a.o.Log.Warn("not applied", "note", n) // as tcpshift run logs them
	}
	a.metrics.rejected.Set(float64(len(rejected)))
	built := &loader.Built{Config: res.Config, Origins: res.Origins}
	changes, err := a.o.Target.Apply(loader.BuildFunc(func(_ []maps.StoredObject, _ []*maps.Service) (*loader.Built, error) {
		return built, nil
	}), loader.ApplyOptions{Daemon: true, DaemonFile: loader.AgentFile + a.o.Node, KeepOverrides: true})
	if err != nil {
		a.derived.again = true
		a.failed("apply", err)
		return
	}
	a.retry = 0
	a.metrics.syncs.Inc()
	a.metrics.services.Set(float64(len(res.Config.Services)))
	a.metrics.terminating.Set(float64(res.Terminating))
	a.metrics.lag.Observe(time.Since(first).Seconds())
	a.metrics.applySeconds.Observe(time.Since(start).Seconds())
	if !a.ready.Swap(true) {
		a.o.Log.Info("first sync applied", "services", len(res.Config.Services), "in", time.Since(start).Round(time.Millisecond))
	}
	var changed []string
	for _, ch := range changes {
		if ch.Action != "unchanged" {
			changed = append(changed, ch.Service+" "+ch.Action)
		}
	}
	if len(changed) > 0 {
		a.o.Log.Info("applied", "changes", strings.Join(changed, ", "), "services", len(res.Config.Services), "since_event", time.Since(first).Round(time.Millisecond))
	}
}

func (a *agent) failed(what string, err error) {
	a.metrics.failures.WithLabelValues(what).Inc()
	a.retry = min(max(2*a.retry, time.Second), time.Minute)
	a.o.Log.Error("sync failed; the tables in force stay", "step", what, "err", err, "retry_in", a.retry)
	time.AfterFunc(a.retry, func() { signal(a.changed) })
}

// serve starts the metrics and health endpoints the flags ask for.
func (a *agent) serve(reg *prometheus.Registry) (stop func(), err error) {
	stopMetrics := func() {}
	if a.o.MetricsAddr != "" {
		status := func() (*loader.Status, error) { return a.o.Target.Status("") }
		inPlace := func(fn func() error) error { return fn() }
		if stopMetrics, err = daemon.ServeMetrics(a.o.MetricsAddr, reg, status, inPlace, a.o.Log); err != nil {
			return nil, err
		}
	}
	if a.o.HealthAddr == "" {
		return stopMetrics, nil
	}
	ln, err := net.Listen("tcp", a.o.HealthAddr)
	if err != nil {
		stopMetrics()
		return nil, fmt.Errorf("--health-addr %s: %w", a.o.HealthAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "first sync not applied yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	a.o.Log.Info("health listening", "addr", ln.Addr().String(), "paths", "/healthz /readyz")
	return func() {
		stopMetrics()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
