package plan_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
	"github.com/tcpshift/tcpshift/plan/fakehost"
)

// world is what a case's steps leave behind, as an apply would: the
// services in force, the route config and stored objects they came from,
// and the host's description. A refused step leaves it as it was.
type world struct {
	t      *testing.T
	dir    string // where a step's input files are written, the working directory
	host   string
	native *config.Config
	stored []storedObject
	old    []*maps.Service
}

func newWorld(t *testing.T) *world {
	dir := t.TempDir()
	t.Chdir(dir) // input files are named as given: errors say "route.yaml:3"
	return &world{t: t, dir: dir}
}

// play plans one step over the world and renders the plan, or the error
// that refused it.
func (w *world) play(s *step) string {
	w.t.Helper()
	if h, ok := s.files["host"]; ok {
		w.host = h
	}
	opts, err := readOptions(s)
	if err != nil {
		w.t.Fatalf("step %s: %v", s.name, err)
	}
	// What set-weight and health checks did before this step.
	if err := w.overrideState(s); err != nil {
		w.t.Fatalf("step %s: %v", s.name, err)
	}
	for _, name := range s.order {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(s.files[name]), 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	host, err := fakehost.Parse(w.host)
	if err != nil {
		w.t.Fatalf("step %s: %v", s.name, err)
	}
	for _, o := range w.old {
		if o.LocalRoute {
			host.Ours[o.Frontend.Addr()] = true
		}
	}
	b, err := w.inputs(s, &opts)
	if err != nil {
		return renderError(err)
	}
	svcs, d, err := w.plan(b, host, opts)
	if err != nil {
		return renderError(err)
	}
	w.commit(b, svcs)
	return render(b, svcs, d)
}

// plan is an apply's planning as the loader calls it, over the world's
// state in force: services, routes, then the diff.
func (w *world) plan(b *built, host *fakehost.Host, opts options) ([]*plan.Service, *plan.Delta, error) {
	svcs, err := plan.Services(b.cfg, host, plan.Options{Wait: opts.wait, Applied: plan.Applied(w.old)})
	if err != nil {
		return nil, nil, err
	}
	if err := plan.Routes(svcs, w.old, host); err != nil {
		return nil, nil, err
	}
	for _, s := range svcs {
		s.Svc.Origin = b.origins[s.Svc.Name]
	}
	d, err := plan.Diff(svcs, w.old, opts.limits, opts.keepOverrides)
	return svcs, d, err
}

// commit makes the plan the state in force, as the kernel would hold it
// once written: copies, so later plans cannot change it.
func (w *world) commit(b *built, svcs []*plan.Service) {
	w.native, w.stored = b.native, b.stored
	w.old = w.old[:0:0]
	for _, s := range svcs {
		w.old = append(w.old, cloneService(s.Svc))
	}
}

func cloneService(s *maps.Service) *maps.Service {
	c := *s
	if s.Checks != nil {
		checks := *s.Checks
		c.Checks = &checks
	}
	c.Subsets = slices.Clone(s.Subsets)
	for i := range c.Subsets {
		c.Subsets[i].Endpoints = slices.Clone(s.Subsets[i].Endpoints)
	}
	return &c
}

// inForce finds a service in force and an endpoint of it, for what a step
// says set-weight or health checks did.
func (w *world) inForce(name string, addr string) (*maps.Service, *maps.Endpoint) {
	i := slices.IndexFunc(w.old, func(s *maps.Service) bool { return s.Name == name })
	if i < 0 {
		return nil, nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return w.old[i], nil
	}
	for si := range w.old[i].Subsets {
		eps := w.old[i].Subsets[si].Endpoints
		for ei := range eps {
			if eps[ei].Addr == ap {
				return w.old[i], &eps[ei]
			}
		}
	}
	return w.old[i], nil
}
