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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/config/kube"
	"github.com/tcpshift/tcpshift/daemon"
	"github.com/tcpshift/tcpshift/daemon/agent/status"
	"github.com/tcpshift/tcpshift/daemon/reconcile"
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
	// Status writes status and Events back (the Lease holder does).
	Status         bool
	LeaseNamespace string
	LeaseDuration  time.Duration // 0: status.DefaultLeaseDuration
	// GatewayLabels are tcpshift's gateway's labels: an Istio Gateway
	// whose selector picks them is served on the node (DefaultGatewayLabels).
	GatewayLabels map[string]string
	// The gateways' proxy: where its sockets are made (the node's network
	// namespace; nil: in place), its dial timeout and attempts per
	// connection, and how long open connections may finish on stop.
	InNamespace func(fn func() error) error
	DialTimeout time.Duration
	Attempts    int
	Grace       time.Duration
}

// Defaults of the flags.
const (
	DefaultDebounce = 50 * time.Millisecond
	DefaultMaxDelay = 250 * time.Millisecond
)

// DefaultGatewayLabels are the labels of Istio's ingress gateway, which
// Istio's samples' Gateways select: tcpshift serves those as they are.
var DefaultGatewayLabels = map[string]string{"istio": "ingressgateway"}

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
	loop    *reconcile.Loop // batches the informers' events, retries, health
	metrics *metrics
	// derived is the incremental derivation between syncs.
	derived derivation
	// gateways serves the gateways' listeners on the node.
	gateways gatewayProxy
	status   *status.Writer // nil: --status=false
	// statusDone closes when the writer has given the Lease up.
	statusDone chan struct{}
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
	servePprof(ctx, o.Log)
	reg := prometheus.NewRegistry()
	changed := make(chan struct{}, 1)
	a := &agent{o: o, metrics: newMetrics(reg), gateways: gatewayProxy{o: o}}
	a.loop = reconcile.New(reconcile.Options{Sync: a.sync, Debounce: o.Debounce, MaxDelay: o.MaxDelay,
		Registry: reg, Aliases: clusterAliases, Log: o.Log})
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
	a.startStatus(ctx, cfg, cs)
	defer a.waitStatus()
	defer a.gateways.stop()
	// The informers' events feed the loop; the first sync comes at once.
	go follow(ctx, changed, a.loop)
	a.loop.Changed(reconcile.Event{Now: true})
	if err := a.loop.Run(ctx); err != nil {
		return err
	}
	o.Log.Info("stopping; the kernel state stays in place")
	return nil
}

// sync derives the node's services from the caches and applies them: the
// reconcile loop's sync, which logs the objects it refuses and its notes.
func (a *agent) sync(_ context.Context, b reconcile.Batch) (reconcile.Result, error) {
	start := time.Now()
	res, rejected, err := a.derived.derive(a.watch, a.kubeOptions(), a.o.Log)
	if err != nil {
		a.derived.again = true
		return reconcile.Result{}, reconcile.Failed("derive", err)
	}
	out := reconcile.Result{Notes: res.Notes}
	for _, r := range append(rejected, res.Rejected...) {
		out.Refused = append(out.Refused, reconcile.Refused{Key: r.Key.String(), Err: r.Err})
	}
	built := &loader.Built{Config: res.Config, Origins: res.Origins, Changed: res.Changed}
	changes, err := a.o.Target.Apply(loader.BuildFunc(func(_ []maps.StoredObject, _ []*maps.Service) (*loader.Built, error) {
		return built, nil
	}), loader.ApplyOptions{Daemon: true, DaemonFile: loader.AgentFile + a.o.Node, KeepOverrides: true})
	if err != nil {
		a.derived.again = true
		return out, reconcile.Failed("apply", err)
	}
	listening := a.gateways.follow(changes)
	a.offerStatus(res, rejected, listening) // written asynchronously, by the Lease holder
	a.metrics.services.Set(float64(len(res.Config.Services)))
	a.metrics.terminating.Set(float64(res.Terminating))
	if !a.loop.Ready() {
		releaseFirstSync()
		a.o.Log.Info("first sync applied", "services", len(res.Config.Services), "in", time.Since(start).Round(time.Millisecond))
	}
	var changed []string
	for _, ch := range changes {
		if ch.Action != "unchanged" {
			changed = append(changed, ch.Service+" "+ch.Action)
		}
	}
	if len(changed) > 0 {
		a.o.Log.Info("applied", "changes", strings.Join(changed, ", "), "services", len(res.Config.Services), "since_event", time.Since(b.Since).Round(time.Millisecond))
	}
	return out, nil
}

// kubeOptions are the derivation's options: the node's gateways are
// tcpshift's (by Istio selector or Gateway API class), served by the
// proxy (their clients come from other hosts, their backends are pods).
func (a *agent) kubeOptions() kube.Options {
	scope := &istio.GatewayScope{Labels: istio.Labels(a.o.GatewayLabels), Mode: config.ModeProxy}
	return kube.Options{ClusterDomain: a.o.ClusterDomain, OnlyRouted: a.o.OnlyRouted, Node: a.o.Node, Gateways: scope}
}

// serve starts the metrics and health endpoints the flags ask for.
func (a *agent) serve(reg *prometheus.Registry) (stop func(), err error) {
	inPlace := func(fn func() error) error { return fn() }
	stopMetrics := func() {}
	if a.o.MetricsAddr != "" {
		status := func() (*loader.Status, error) { return a.o.Target.Status("") }
		if stopMetrics, err = daemon.ServeMetrics(a.o.MetricsAddr, reg, status, inPlace, a.o.Log); err != nil {
			return nil, err
		}
	}
	if a.o.HealthAddr == "" {
		return stopMetrics, nil
	}
	stopHealth, err := a.loop.ServeHealth(a.o.HealthAddr, inPlace)
	if err != nil {
		stopMetrics()
		return nil, err
	}
	return func() {
		stopMetrics()
		stopHealth()
	}, nil
}
