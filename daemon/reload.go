package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/daemon/reconcile"
	"github.com/tcpshift/tcpshift/internal/inputs"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

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
			return &loaded{change: &inputs.Change{Native: in.Native, Put: in.Objects, Exact: true, Previous: d.applied}, in: in, data: data, files: files}, nil
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

// reload is the loop's sync: it applies the files again; Force (SIGHUP)
// applies them even when unchanged, and even when suspect. Anything wrong
// leaves the last good state in force, and the loop logs and counts it: a
// file that does not read, derive or apply is refused until the files
// change (the same bytes would be refused again); failing to serve what
// was applied is retried. A file that would drop a service, a subset or a
// route in force is held: logged, counted, and applied once it stayed
// unchanged for suspectHold. The first reload (Start) applies the files
// as they are and serves nothing yet: Run sets the serving up after it.
func (d *daemon) reload(_ context.Context, b reconcile.Batch) (reconcile.Result, error) {
	l, err := d.read()
	switch {
	case errors.Is(err, errChanging) && b.Start:
		return reconcile.Result{}, err
	case errors.Is(err, errChanging) && b.Force:
		d.log.Warn("SIGHUP ignored: the route config kept changing while it was read; send it again once it is written", "config", d.o.Path)
		return reconcile.Result{Skipped: true}, nil
	case errors.Is(err, errChanging):
		d.log.Debug("route config still being written: read again at its next change", "config", d.o.Path)
		return reconcile.Result{Skipped: true}, nil
	case err != nil:
		d.refused()
		return reconcile.Result{}, reconcile.Invalid("read", err)
	case !b.Force && d.lastOK && bytes.Equal(l.data, d.data):
		if d.held != nil {
			d.log.Info("held route config dropped: the files are back to what is in force", "config", d.o.Path)
			d.held = nil
		}
		return reconcile.Result{Skipped: true}, nil
	}
	var (
		now      *shape
		drops    []dropped
		heldFor  time.Duration
		buildErr error
	)
	build := func(stored []maps.StoredObject, current []*maps.Service) (*loader.Built, error) {
		built, err := l.change.Build(stored, current)
		if err != nil {
			buildErr = err
			return nil, err
		}
		now = shapeOf(l, built.Config)
		if d.shape == nil { // the first apply: nothing in force is the daemon's yet
			return built, nil
		}
		if drops = d.shape.drops(now); len(drops) == 0 || b.Force {
			return built, nil
		}
		if h := d.held; h != nil && bytes.Equal(h.data, l.data) && time.Since(h.since) >= suspectHold {
			heldFor = time.Since(h.since)
			return built, nil
		}
		return nil, errHeld
	}
	// SIGHUP makes the file win over set-weight overrides; an edit keeps
	// those of services whose route it did not change.
	changes, err := d.o.Target.Apply(loader.BuildFunc(build), loader.ApplyOptions{Daemon: true, DaemonFile: d.o.Path, KeepOverrides: !b.Force})
	if errors.Is(err, errHeld) {
		d.hold(l, drops)
		return reconcile.Result{Skipped: true}, nil
	}
	d.logChanges(changes)
	res := reconcile.Result{Notes: l.change.Notes}
	if err != nil {
		d.refused()
		if buildErr != nil && errors.Is(err, buildErr) {
			return res, reconcile.Invalid("derive", err)
		}
		return res, reconcile.Invalid("apply", err)
	}
	wasHeld := d.held != nil && bytes.Equal(d.held.data, l.data)
	d.held = nil
	d.cfg, d.data, d.shape, d.applied = l.change.Config, l.data, now, l.change
	if d.proxy != nil {
		err = d.sync()
		d.remember()
		d.carryShifts(d.shiftCtx)
		if err != nil {
			d.lastOK = false
			return res, reconcile.Failed("serve", err)
		}
	}
	d.lastOK = true
	if b.Start {
		return res, nil
	}
	switch {
	case heldFor > 0:
		d.log.Info("held route config applied: it stayed unchanged for "+heldFor.Round(100*time.Millisecond).String(), "config", d.o.Path)
	case wasHeld && len(drops) > 0:
		d.log.Info("held route config applied on SIGHUP", "config", d.o.Path)
	}
	d.log.Info("route config applied", "config", d.o.Path, "services", len(d.cfg.Services))
	return res, nil
}

// refused notes that the files were refused: the content held, if any, is
// dropped, and the last good content applies again when put back.
func (d *daemon) refused() {
	d.lastOK = false
	d.held = nil
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
	d.holdTimer.Reset(time.Until(d.held.since.Add(suspectHold))) // then a sync at once
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
