// Package daemon is `tcpshift run`: it keeps the kernel in step with a route
// config file as the file changes, re-registers restarted lookup-mode
// backends, checks endpoint health, serves proxy-mode services and exports
// metrics. Its state lives in the pinned maps, so it can be killed and
// started again without touching a connection. The file watcher, SIGHUP
// and the held file's timer are sources of the reconcile loop
// (daemon/reconcile) it shares with tcpshift agent; the loop also runs
// its periodic work and its health checks' results, between syncs.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/daemon/reconcile"
	"github.com/tcpshift/tcpshift/internal/inputs"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/userspace"
)

// DefaultTick is how often the daemon looks for restarted listeners and
// connect failures seen in the kernel; it bounds re-registration time.
const DefaultTick = 250 * time.Millisecond

// reconcileEvery ticks the tables in force are compared with weights and
// health.
const reconcileEvery = 4

// Options configure Run.
type Options struct {
	// Paths are the files and directories to follow (as apply -f takes
	// them): tcpshift's route config and Istio or Gateway API objects.
	// Together they are the whole truth: objects applied with the CLI that
	// they lack are removed. Path is the one path of older callers.
	Paths  []string
	Path   string
	Target *loader.Target
	// MetricsAddr is where /metrics is served, "" for nowhere.
	MetricsAddr string
	// HealthAddr is where /healthz and /readyz are served, "" for nowhere.
	HealthAddr string
	// InNamespace runs fn where sockets must be made (probes, the proxy,
	// the metrics and health listeners); nil runs it in place.
	InNamespace func(fn func() error) error
	DialTimeout time.Duration // the proxy's, per endpoint
	Attempts    int           // the proxy's, per client connection
	Grace       time.Duration // open proxy connections may finish within it on stop
	// Reload asks for the file to be applied again, changed or not, and
	// held as suspect or not (SIGHUP).
	Reload <-chan os.Signal
	Tick   time.Duration // DefaultTick when 0
	Log    *slog.Logger
}

// fileAliases are the names tcpshift run's loop metrics had before the
// loop was shared; they stay, with the same values.
var fileAliases = reconcile.Aliases{
	Syncs: reconcile.Alias{Name: "tcpshift_config_reloads_total",
		Help: "Route config files applied by the daemon, the first one included."},
	Failures: reconcile.Alias{Name: "tcpshift_config_reload_failures_total",
		Help: "Route config files refused (invalid, or not applicable on this host); the last good one stayed in force."},
	LastOK: reconcile.Alias{Name: "tcpshift_config_last_reload_successful",
		Help: "1 if the last route config file read was applied, 0 if it was refused."},
	FailuresSummed: true,
}

type daemon struct {
	o       Options
	log     *slog.Logger
	loop    *reconcile.Loop
	set     *maps.Set
	proxy   *userspace.Proxy
	metrics *metrics

	cfg    *config.Config // last good config
	data   []byte         // and its content
	lastOK bool           // the last reload applied (a file restored after a refusal applies again)
	shape  *shape         // of the last good config: what a suspect file would drop
	// held is a suspect content kept back until it stays unchanged for
	// suspectHold (holdTimer asks the loop for a sync then) or SIGHUP
	// applies it.
	held      *held
	holdTimer *time.Timer
	// applied is the change that made the last good config: the next one
	// names only the services it changes (inputs.Change.Previous).
	applied *inputs.Change
	// written is the state as the daemon last wrote or saw it: anything
	// else that changes it is someone else's change, logged within a tick.
	written []*maps.Service
	resync  bool       // outside changes: restart probes on what is in force
	stateID ebpf.MapID // the pinned services map it started with
	ticks   int

	checks     map[endpointKey]*checkState
	failedSeen map[endpointKey]uint64 // kernel connect failures already counted
	probes     context.Context        // the health checks run within it
	stopProbes context.CancelFunc
	shifts     map[string]*carried // shifts the route config declares, running
	shiftCtx   context.Context
}

// Run applies the file and keeps the kernel in step with it until ctx ends.
// It leaves the kernel state in place when it returns. A file that does not
// apply at start is an error; later it is refused and the last good one
// stays in force.
func Run(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &daemon{o: o, log: o.Log, checks: map[endpointKey]*checkState{}, failedSeen: map[endpointKey]uint64{}}
	o.Target.Waiting = func(msg string) { o.Log.Warn(msg) }
	o.Target.Notice = o.Target.Waiting
	LogKernelFeatures(o.Log)

	reg := prometheus.NewRegistry()
	d.metrics = newMetrics(reg)
	d.loop = reconcile.New(reconcile.Options{
		Sync: d.reload, Debounce: settle, MaxDelay: maxSettle, Registry: reg, Aliases: fileAliases,
		FailMsg: "route config refused, the last good one stays in force", FailAttrs: []any{"config", o.Path}, Log: o.Log,
	})
	d.holdTimer = time.AfterFunc(time.Hour, func() { d.loop.Changed(reconcile.Event{Now: true}) })
	d.holdTimer.Stop()
	defer d.holdTimer.Stop()
	// Backends not listening yet do not stop the start: their endpoints
	// are applied without a socket and registered once they listen.
	if err := d.loop.Start(ctx); err != nil {
		return err
	}
	defer func() {
		if err := o.Target.ReleaseDaemon(); err != nil {
			d.log.Warn("clear the daemon record", "err", err)
		}
	}()
	stopServing, err := d.serve(ctx, reg)
	if err != nil {
		return err
	}
	defer stopServing()
	stopWatch, err := watchFiles(o.Paths, d.loop.Changed, o.Log)
	if err != nil {
		return err
	}
	defer stopWatch()
	go d.followReload(ctx)
	d.loop.Every(o.Tick, d.periodic)

	d.log.Info("running", "config", o.Path, "services", len(d.cfg.Services), "metrics", o.MetricsAddr, "health", o.HealthAddr, "pins", o.Target.Dir)
	notify(d.log, sdReady)
	defer notify(d.log, sdStopping)
	if err := d.loop.Run(ctx); err != nil {
		return err
	}
	d.log.Info("stopping: the kernel state stays in place (tcpshift down removes it)")
	return nil
}

func (o Options) withDefaults() (Options, error) {
	if o.InNamespace == nil {
		o.InNamespace = func(fn func() error) error { return fn() }
	}
	if o.Tick <= 0 {
		o.Tick = DefaultTick
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	paths := o.Paths
	if len(paths) == 0 {
		paths = []string{o.Path}
	}
	o.Paths = make([]string, len(paths))
	for i, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return o, fmt.Errorf("route config %s: %w", p, err)
		}
		o.Paths[i] = abs
	}
	o.Path = strings.Join(o.Paths, ", ")
	return o, nil
}

// serve opens the pinned maps the first apply made and starts what follows
// the services in force: the proxy, the health checks, the route config's
// shifts, and the metrics and health endpoints. stop ends them, last
// started first.
func (d *daemon) serve(ctx context.Context, reg *prometheus.Registry) (stop func(), err error) {
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	if d.set, err = d.o.Target.Maps(); err != nil {
		return nil, err
	}
	undo = append(undo, func() { d.set.Close() })
	if d.stateID, err = pinnedID(d.o.Target.Dir); err != nil {
		return nil, err
	}
	d.remember()
	d.proxy = userspace.New(userspace.Options{
		Source:      userspace.NewKernelSource(d.set),
		DialTimeout: d.o.DialTimeout,
		Attempts:    d.o.Attempts,
		InNamespace: d.o.InNamespace,
		Log:         d.o.Log,
	})
	undo = append(undo, d.stopProxy)
	var stopProbes context.CancelFunc
	d.probes, stopProbes = context.WithCancel(ctx)
	undo = append(undo, stopProbes)
	if err = d.sync(); err != nil {
		return nil, err
	}
	d.shifts, d.shiftCtx = map[string]*carried{}, ctx
	undo = append(undo, d.stopShifts)
	d.carryShifts(ctx)
	if d.o.MetricsAddr != "" {
		status := func() (*loader.Status, error) { return d.o.Target.Status("") }
		stopMetrics, err := ServeMetrics(d.o.MetricsAddr, reg, status, d.o.InNamespace, d.o.Log)
		if err != nil {
			return nil, err
		}
		undo = append(undo, stopMetrics)
	}
	if d.o.HealthAddr != "" {
		stopHealth, err := d.loop.ServeHealth(d.o.HealthAddr, d.o.InNamespace)
		if err != nil {
			return nil, err
		}
		undo = append(undo, stopHealth)
	}
	return stop, nil
}

// followReload makes each SIGHUP a forced sync, at once.
func (d *daemon) followReload(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.o.Reload:
			d.loop.Changed(reconcile.Event{Force: true, Now: true})
		}
	}
}

func (d *daemon) stopProxy() {
	ctx, cancel := context.WithTimeout(context.Background(), d.o.Grace)
	defer cancel()
	if err := d.proxy.Shutdown(ctx); err != nil {
		d.log.Warn("closed proxy connections that outlived the grace period", "err", err)
	}
}
