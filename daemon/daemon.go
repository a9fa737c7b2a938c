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
	// Reload asks for the file to be applied again, changed or not, and
	// held as suspect or not (SIGHUP).
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
	shape  *shape         // of the last good config: what a suspect file would drop
	// held is a suspect content kept back until it stays unchanged for
	// suspectHold (holdTimer) or SIGHUP applies it.
	held      *held
	holdTimer *time.Timer
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

	l, err := d.read()
	if err != nil {
		return err
	}
	ch := l.change
	// Backends not listening yet do not stop the start: their endpoints
	// are applied without a socket and registered once they listen.
	changes, err := o.Target.Apply(ch, loader.ApplyOptions{Daemon: true, DaemonFile: o.Path, KeepOverrides: true})
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
	d.cfg, d.data, d.lastOK, d.shape = cfg, l.data, true, shapeOf(l, cfg)
	d.holdTimer = time.NewTimer(time.Hour)
	d.holdTimer.Stop()
	defer d.holdTimer.Stop()
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
		case <-d.holdTimer.C:
			d.reload(probes, false)
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

// loaded is one read of the followed files.
type loaded struct {
	change *inputs.Change
	in     *istio.Input
	data   []byte            // everything read, names included: to see whether anything changed
	files  map[string][]byte // each file's content, by the name Load gives it
}

// errChanging says the files changed while they were read: the next
// event reads them again.
var errChanging = errors.New("the files changed while they were read")

// read loads the files as the whole truth: the route config in them (or
// none) and exactly their objects. Input with no service and no object is
// refused, which a half-written file would otherwise do: remove every
// service. The files are read before and after they are loaded; what was
// loaded is what data holds only if both reads agree.
func (d *daemon) read() (*loaded, error) {
	for try := 0; ; try++ {
		data, files, err := readPaths(d.o.Paths)
		if err != nil {
			return nil, fmt.Errorf("read route config: %w", err)
		}
		in, lerr := istio.Load(d.o.Paths, nil)
		if again, _, err := readPaths(d.o.Paths); err == nil && bytes.Equal(again, data) {
			if lerr != nil {
				return nil, lerr
			}
			return &loaded{change: &inputs.Change{Native: in.Native, Put: in.Objects, Exact: true}, in: in, data: data, files: files}, nil
		}
		if try == 10 {
			return nil, errChanging
		}
		time.Sleep(settle / 4)
	}
}

// readPaths reads the files Load reads: each file given, each directory's
// .yaml, .yml and .json files in order.
func readPaths(paths []string) (data []byte, files map[string][]byte, err error) {
	files = map[string][]byte{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		names := []string{p}
		if fi.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, nil, err
			}
			names = names[:0]
			for _, e := range entries {
				if !e.IsDir() && loadable(e.Name()) {
					names = append(names, filepath.Join(p, e.Name()))
				}
			}
		}
		for _, name := range names {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, nil, err
			}
			files[name] = b
			data = append(append(append(data, name...), 0), b...)
			data = append(data, 0)
		}
	}
	return data, files, nil
}

func (d *daemon) logNotes(ch *inputs.Change) {
	for _, n := range ch.Notes {
		d.log.Warn("not applied", "note", n)
	}
}

// reload applies the files again; force (SIGHUP) applies them even when
// unchanged, and even when suspect. Anything wrong leaves the last good
// state in force: one log line and the failure metric say so. A file that
// would drop a service, a subset or a route in force is held: logged,
// counted, and applied once it stayed unchanged for suspectHold.
func (d *daemon) reload(probes context.Context, force bool) {
	l, err := d.read()
	if errors.Is(err, errChanging) {
		if force {
			d.log.Warn("SIGHUP ignored: the route config kept changing while it was read; send it again once it is written", "config", d.o.Path)
		} else {
			d.log.Debug("route config still being written: read again at its next change", "config", d.o.Path)
		}
		return
	}
	if err == nil && !force && d.lastOK && bytes.Equal(l.data, d.data) {
		if d.held != nil {
			d.log.Info("held route config dropped: the files are back to what is in force", "config", d.o.Path)
			d.held = nil
		}
		return
	}
	var (
		cfg     *config.Config
		now     *shape
		drops   []dropped
		heldFor time.Duration
	)
	if err == nil {
		build := func(stored []maps.StoredObject, current []*maps.Service) (*loader.Built, error) {
			b, err := l.change.Build(stored, current)
			if err != nil {
				return nil, err
			}
			now = shapeOf(l, b.Config)
			if drops = d.shape.drops(now); len(drops) == 0 || force {
				return b, nil
			}
			if h := d.held; h != nil && bytes.Equal(h.data, l.data) && time.Since(h.since) >= suspectHold {
				heldFor = time.Since(h.since)
				return b, nil
			}
			return nil, errHeld
		}
		// SIGHUP makes the file win over set-weight overrides; an edit
		// keeps those of services whose route it did not change.
		var changes []loader.Change
		changes, err = d.o.Target.Apply(loader.BuildFunc(build), loader.ApplyOptions{Daemon: true, DaemonFile: d.o.Path, KeepOverrides: !force})
		if errors.Is(err, errHeld) {
			d.hold(l, drops)
			return
		}
		d.logChanges(changes)
		d.logNotes(l.change)
	}
	wasHeld := d.held != nil && l != nil && bytes.Equal(d.held.data, l.data)
	d.held = nil
	if err == nil {
		cfg = l.change.Config
		d.cfg, d.data, d.shape = cfg, l.data, now
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
	switch {
	case heldFor > 0:
		d.log.Info("held route config applied: it stayed unchanged for "+heldFor.Round(100*time.Millisecond).String(), "config", d.o.Path)
	case wasHeld && len(drops) > 0:
		d.log.Info("held route config applied on SIGHUP", "config", d.o.Path)
	}
	d.lastOK = true
	d.metrics.reloads.Inc()
	d.metrics.lastReloadOK.Set(1)
	d.log.Info("route config applied", "config", d.o.Path, "services", len(cfg.Services))
}

// hold keeps a suspect content back: logged and counted once, applied by
// the hold timer once it stayed the files' content for suspectHold.
func (d *daemon) hold(l *loaded, drops []dropped) {
	if d.held == nil || !bytes.Equal(d.held.data, l.data) {
		d.held = &held{data: l.data, since: time.Now()}
		d.metrics.suspect.Inc()
		for _, dr := range drops {
			d.log.Warn("route config held: it would drop what is in force (a file caught half-written?); applied once unchanged for "+
				suspectHold.String()+", or at once on SIGHUP", "file", dr.file, "service", dr.service, "drops", strings.Join(dr.what, ", "))
		}
	}
	d.holdTimer.Reset(time.Until(d.held.since.Add(suspectHold)))
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
