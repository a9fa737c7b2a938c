// Package daemon is `tcpshift run`: it keeps the kernel in step with a route
// config file as the file changes, re-registers restarted lookup-mode
// backends, checks endpoint health, serves proxy-mode services and exports
// metrics. Its state lives in the pinned maps, so it can be killed and
// started again without touching a connection.
package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
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
	// InNamespace runs fn where sockets must be made (probes, the proxy,
	// the metrics listener); nil runs it in place.
	InNamespace func(fn func() error) error
	DialTimeout time.Duration // the proxy's, per endpoint
	Attempts    int           // the proxy's, per client connection
	Grace       time.Duration // open proxy connections may finish within it on stop
	// Reload asks for the file to be applied again, changed or not (SIGHUP).
	Reload <-chan os.Signal
	Tick   time.Duration // DefaultTick when 0
	Log    *slog.Logger
}

type daemon struct {
	o       Options
	log     *slog.Logger
	set     *maps.Set
	proxy   *userspace.Proxy
	metrics *metrics

	cfg    *config.Config // last good config
	data   []byte         // and its content
	lastOK bool           // the last reload applied (a file restored after a refusal applies again)
	// written is the state as the daemon last wrote or saw it: anything
	// else that changes it is someone else's change, logged within a tick.
	written []*maps.Service
	resync  bool       // outside changes: restart probes on what is in force
	stateID ebpf.MapID // the pinned services map it started with

	checks     map[endpointKey]*checkState
	failedSeen map[endpointKey]uint64 // kernel connect failures already counted
	stopProbes context.CancelFunc
	results    chan result
	shifts     map[string]*carried // shifts the route config declares, running
	shiftCtx   context.Context
}

// Run applies the file and keeps the kernel in step with it until ctx ends.
// It leaves the kernel state in place when it returns. A file that does not
// apply at start is an error; later it is refused and the last good one
// stays in force.
func Run(ctx context.Context, o Options) error {
	if o.InNamespace == nil {
		o.InNamespace = func(fn func() error) error { return fn() }
	}
	if o.Tick <= 0 {
		o.Tick = DefaultTick
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Paths) == 0 {
		o.Paths = []string{o.Path}
	}
	for i, p := range o.Paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("route config %s: %w", p, err)
		}
		o.Paths[i] = abs
	}
	o.Path = strings.Join(o.Paths, ", ")
	d := &daemon{o: o, log: o.Log, checks: map[endpointKey]*checkState{},
		failedSeen: map[endpointKey]uint64{}, results: make(chan result, 64)}
	o.Target.Waiting = func(msg string) { o.Log.Warn(msg) }
	o.Target.Notice = o.Target.Waiting
	LogKernelFeatures(o.Log)

	ch, data, err := d.read()
	if err != nil {
		return err
	}
	// Backends not listening yet do not stop the start: their endpoints
	// are applied without a socket and registered once they listen.
	changes, err := o.Target.ApplyBuilt(ch.Build, loader.ApplyOptions{Daemon: true, DaemonFile: o.Path, KeepOverrides: true})
	d.logChanges(changes)
	d.logNotes(ch)
	if err != nil {
		return err
	}
	cfg := ch.Config
	defer func() {
		if err := o.Target.ReleaseDaemon(); err != nil {
			d.log.Warn("clear the daemon record", "err", err)
		}
	}()
	if d.set, err = o.Target.Maps(); err != nil {
		return err
	}
	defer d.set.Close()
	if d.stateID, err = pinnedID(o.Target.Dir); err != nil {
		return err
	}
	d.cfg, d.data, d.lastOK = cfg, data, true
	d.remember()

	reg := prometheus.NewRegistry()
	d.metrics = newMetrics(reg)
	d.metrics.reloads.Inc()
	d.metrics.lastReloadOK.Set(1)

	d.proxy = userspace.New(userspace.Options{
		Source:      userspace.NewKernelSource(d.set),
		DialTimeout: o.DialTimeout,
		Attempts:    o.Attempts,
		InNamespace: o.InNamespace,
		Log:         o.Log,
	})
	defer d.stopProxy()
	probes, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	if err := d.sync(probes); err != nil {
		return err
	}
	d.shifts, d.shiftCtx = map[string]*carried{}, ctx
	defer d.stopShifts()
	d.carryShifts(ctx)

	if o.MetricsAddr != "" {
		stop, err := ServeMetrics(o.MetricsAddr, reg, func() (*loader.Status, error) {
			return o.Target.Status("")
		}, o.InNamespace, o.Log)
		if err != nil {
			return err
		}
		defer stop()
	}
	changed := make(chan struct{}, 1)
	stopWatch, err := watchFiles(o.Paths, changed, o.Log)
	if err != nil {
		return err
	}
	defer stopWatch()

	d.log.Info("running", "config", o.Path, "services", len(cfg.Services), "metrics", o.MetricsAddr, "pins", o.Target.Dir)
	notify(d.log, sdReady)
	defer notify(d.log, sdStopping)
	tick := time.NewTicker(o.Tick)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			d.log.Info("stopping: the kernel state stays in place (tcpshift down removes it)")
			return nil
		case <-changed:
			d.reload(probes, false)
		case <-o.Reload:
			d.reload(probes, true)
		case r := <-d.results:
			d.observe(r.key, r.err == nil, r.err)
		case <-tick.C:
			if err := d.tick(n%reconcileEvery == 0); err != nil {
				return err
			}
			if d.resync {
				d.resync = false
				if err := d.sync(probes); err != nil {
					d.log.Error("follow outside changes", "err", err)
				}
			}
		}
	}
}

// read loads the files as the whole truth: the route config in them (or
// none) and exactly their objects. Input with no service and no object is
// refused, which a half-written file would otherwise do: remove every
// service. data is everything read, to see whether anything changed.
func (d *daemon) read() (*inputs.Change, []byte, error) {
	var data []byte
	for _, p := range d.o.Paths {
		b, err := readPath(p)
		if err != nil {
			return nil, nil, fmt.Errorf("read route config: %w", err)
		}
		data = append(append(data, b...), 0)
	}
	in, err := istio.Load(d.o.Paths, nil)
	if err != nil {
		return nil, nil, err
	}
	return &inputs.Change{Native: in.Native, Put: in.Objects, Exact: true}, data, nil
}

// readPath reads a file, or a directory's files in order.
func readPath(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return os.ReadFile(p)
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var data []byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(p, e.Name()))
		if err != nil && !e.IsDir() {
			return nil, err
		}
		data = append(append(append(data, e.Name()...), 0), b...)
	}
	return data, nil
}

func (d *daemon) logNotes(ch *inputs.Change) {
	for _, n := range ch.Notes {
		d.log.Warn("not applied", "note", n)
	}
}

// reload applies the file again; force applies it even when unchanged.
// Anything wrong leaves the last good state in force: one log line and
// the failure metric say so.
func (d *daemon) reload(probes context.Context, force bool) {
	ch, data, err := d.read()
	if err == nil && !force && d.lastOK && bytes.Equal(data, d.data) {
		return
	}
	if err == nil {
		// SIGHUP makes the file win over set-weight overrides; an edit
		// keeps those of services whose route it did not change.
		var changes []loader.Change
		changes, err = d.o.Target.ApplyBuilt(ch.Build, loader.ApplyOptions{Daemon: true, DaemonFile: d.o.Path, KeepOverrides: !force})
		d.logChanges(changes)
		d.logNotes(ch)
	}
	var cfg *config.Config
	if err == nil {
		cfg = ch.Config
		d.cfg, d.data = cfg, data
		err = d.sync(probes)
		d.remember()
		d.carryShifts(d.shiftCtx)
	}
	if err != nil {
		d.lastOK = false
		d.metrics.reloadFailures.Inc()
		d.metrics.lastReloadOK.Set(0)
		d.log.Error("route config refused, the last good one stays in force", "config", d.o.Path, "err", err)
		return
	}
	d.lastOK = true
	d.metrics.reloads.Inc()
	d.metrics.lastReloadOK.Set(1)
	d.log.Info("route config applied", "config", d.o.Path, "services", len(cfg.Services))
}

func (d *daemon) logChanges(changes []loader.Change) {
	for _, c := range changes {
		for _, w := range c.Waiting {
			attrs := []any{"service", c.Service, "endpoint", w.Endpoint}
			if w.Note != "" {
				attrs = append(attrs, "note", w.Note)
			}
			d.log.Warn("endpoint not listening yet: it gets connections once it listens", attrs...)
		}
		if c.KeptOverride {
			d.log.Info("set-weight override kept: the file's route for the service did not change (SIGHUP applies the file's weights)", "service", c.Service)
		}
		if c.Action == "unchanged" {
			d.log.Debug("service", "name", c.Service, "action", c.Action)
			continue
		}
		d.log.Info("service", "name", c.Service, "action", c.Action, "mode", loader.ModeName(c.Mode))
	}
}

// sync makes the proxy and the health checks follow the services in force.
func (d *daemon) sync(probes context.Context) error {
	svcs, err := d.set.ServiceList()
	if err != nil {
		return err
	}
	var proxied []userspace.Service
	for _, svc := range svcs {
		if svc.Mode == maps.ModeProxy {
			proxied = append(proxied, userspace.Service{ID: svc.ID, Name: svc.Name, Frontend: svc.Frontend})
		}
	}
	if err := d.proxy.Sync(proxied); err != nil {
		return err
	}
	d.restartProbes(probes, svcs)
	return nil
}

// restartProbes starts one probe loop per checked endpoint. Endpoints kept
// across a reload keep their counts; new ones start from the health the
// kernel holds, so a restarted daemon goes on where the last one stopped.
func (d *daemon) restartProbes(parent context.Context, svcs []*maps.Service) {
	if d.stopProbes != nil {
		d.stopProbes()
	}
	ctx, cancel := context.WithCancel(parent)
	d.stopProbes = cancel
	checks := map[endpointKey]*checkState{}
	for _, svc := range svcs {
		c, ok := d.cfg.Service(svc.Name)
		if !ok || c.Health == nil {
			continue
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				key := endpointKey{svc.Name, ep.ID, ep.Addr}
				st := d.checks[key]
				if st == nil {
					st = &checkState{subset: sub.Name, health: ep.Health}
					// Connect failures from before count for nothing.
					if n, err := d.set.EndpointStats(ep.ID); err == nil {
						d.failedSeen[key] = n.Failed
					}
				}
				checks[key] = st
				go probeLoop(ctx, key, c.Health, d.o.InNamespace, d.results)
			}
		}
	}
	d.checks = checks
	for key := range d.failedSeen {
		if checks[key] == nil {
			delete(d.failedSeen, key)
		}
	}
}

// observe counts one check of an endpoint and writes a health change to the
// kernel, which swaps the service's table.
func (d *daemon) observe(key endpointKey, success bool, why error) {
	st := d.checks[key]
	c, ok := d.cfg.Service(key.service)
	if st == nil || !ok || c.Health == nil || !st.observe(success, c.Health) {
		return
	}
	err := d.o.Target.SetHealth(key.service, key.id, key.addr, st.health)
	d.remember()
	if errors.Is(err, loader.ErrEndpointGone) {
		d.resync = true // someone else changed the services: probe what is in force
		return
	}
	if err != nil {
		d.log.Error("write endpoint health", "service", key.service, "endpoint", key.addr.String(), "err", err)
		return
	}
	state := maps.HealthName(st.health)
	d.metrics.healthChanges.WithLabelValues(key.service, st.subset, key.addr.String(), state).Inc()
	if st.health == maps.HealthDown {
		d.log.Warn("endpoint down", "service", key.service, "subset", st.subset, "endpoint", key.addr.String(),
			"failed_checks", st.fail, "err", why)
		return
	}
	d.log.Info("endpoint up", "service", key.service, "subset", st.subset, "endpoint", key.addr.String(),
		"passed_checks", st.ok)
}

// tick re-registers restarted listeners, counts connect failures the kernel
// saw as failed checks (passive checks) and, when asked, reconciles tables.
func (d *daemon) tick(reconcile bool) error {
	if id, err := pinnedID(d.o.Target.Dir); err != nil || id != d.stateID {
		return fmt.Errorf("the pinned state in %s is gone or was made anew (tcpshift down?): stopping", d.o.Target.Dir)
	}
	svcs, err := d.set.ServiceList()
	if err != nil {
		d.log.Error("read services", "err", err)
		return nil
	}
	d.noticeOutsideChanges(svcs)
	rereg, err := d.o.Target.Reregister(d.set, svcs)
	for _, r := range rereg {
		d.metrics.reregistered.WithLabelValues(r.Service, r.Addr).Inc()
		d.log.Info("listener re-registered", "service", r.Service, "endpoint", r.Addr, "owner", r.Owner)
	}
	if err != nil {
		d.log.Error("re-register listeners", "err", err)
	}
	d.passive(svcs)
	if reconcile {
		swapped, err := d.o.Target.Reconcile(d.set)
		if len(swapped) > 0 {
			d.remember()
		}
		for _, name := range swapped {
			d.log.Warn("table rebuilt: it did not match weights and health", "service", name)
		}
		if err != nil {
			d.log.Error("reconcile tables", "err", err)
		}
	}
	return nil
}

func (d *daemon) passive(svcs []*maps.Service) {
	for _, svc := range svcs {
		c, ok := d.cfg.Service(svc.Name)
		if !ok || c.Health == nil || !c.Health.Passive {
			continue
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				key := endpointKey{svc.Name, ep.ID, ep.Addr}
				st, err := d.set.EndpointStats(ep.ID)
				if err != nil || d.checks[key] == nil {
					continue
				}
				seen, known := d.failedSeen[key]
				d.failedSeen[key] = st.Failed
				if !known {
					continue
				}
				for range st.Failed - seen {
					d.observe(key, false, errors.New("connect failed (seen in the kernel)"))
				}
			}
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

// pinnedID identifies the pinned state: the id of its services map, which
// a down and a new apply replace.
func pinnedID(dir string) (ebpf.MapID, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.TcpshiftMapServices), nil)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}
