package loader

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/loader/listener"
	tsmaps "github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
	"github.com/tcpshift/tcpshift/state"
)

// fakeRoutes are local routes in memory: the addresses that have one,
// every change made in order, and a failure to inject by change.
type fakeRoutes struct {
	have map[netip.Addr]bool
	log  []string // "add 192.0.2.1", "del 192.0.2.1"
	fail func(op string) error
}

func (r *fakeRoutes) change(op string, addr netip.Addr, want bool) error {
	op += " " + addr.String()
	if r.fail != nil {
		if err := r.fail(op); err != nil {
			return err
		}
	}
	if r.have[addr] == want {
		return fmt.Errorf("%s: already so", op)
	}
	r.have[addr] = want
	if !want {
		delete(r.have, addr)
	}
	r.log = append(r.log, op)
	return nil
}

func (r *fakeRoutes) add(addr netip.Addr) error { return r.change("add", addr, true) }
func (r *fakeRoutes) del(addr netip.Addr) error { return r.change("del", addr, false) }

// fake is a Target whose executor writes maps in memory and routes in a
// fakeRoutes: the same code as over the kernel, without root.
type fake struct {
	t      *testing.T
	tg     *Target
	set    *tsmaps.Set
	mem    *state.Memory
	routes *fakeRoutes
	files  []*os.File // stand-ins for listening sockets
}

func newFake(t *testing.T) *fake {
	t.Helper()
	set, mem, err := tsmaps.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	return fakeOver(t, set, mem, &fakeRoutes{have: map[netip.Addr]bool{}})
}

func fakeOver(t *testing.T, set *tsmaps.Set, mem *state.Memory, r *fakeRoutes) *fake {
	tg := &Target{NS: &Namespace{Ino: 4026531840}, netns: 0x5eed, routes: r}
	return &fake{t: t, tg: tg, set: set, mem: mem, routes: r}
}

// clone is a fake over a copy of f's maps and routes, with empty logs.
func (f *fake) clone() *fake {
	mem := f.mem.Clone()
	return fakeOver(f.t, tsmaps.OnMaps(mem), mem, &fakeRoutes{have: maps.Clone(f.routes.have)})
}

// svc is a service to apply: name, frontend, mode and, per subset, its
// weight and endpoints ("10.0.0.1:80").
type svc struct {
	name, front string
	mode        tsmaps.Mode
	route       bool // its frontend needs a local route
	subsets     []sub
}

type sub struct {
	name      string
	weight    uint64
	endpoints []string
}

func (s svc) service() *tsmaps.Service {
	out := &tsmaps.Service{Name: s.name, Frontend: netip.MustParseAddrPort(s.front), Mode: s.mode}
	for _, sb := range s.subsets {
		ms := tsmaps.Subset{Name: sb.name, Weight: sb.weight, FileWeight: sb.weight}
		for _, ep := range sb.endpoints {
			ms.Endpoints = append(ms.Endpoints, tsmaps.Endpoint{Addr: netip.MustParseAddrPort(ep)})
		}
		out.Subsets = append(out.Subsets, ms)
	}
	return out
}

// connect is a connect-mode service of one subset.
func connect(name, front string, endpoints ...string) svc {
	return svc{name: name, front: front, mode: tsmaps.ModeConnect, subsets: []sub{{"v1", 1, endpoints}}}
}

// routed is a connect-mode service whose frontend needs a local route.
func routed(name, front string) svc {
	s := connect(name, front, "10.0.0.1:80")
	s.route = true
	return s
}

// lookup is a lookup-mode service of one subset; the fake gives each
// endpoint a socket.
func lookup(name, front string, endpoints ...string) svc {
	return svc{name: name, front: front, mode: tsmaps.ModeLookup, subsets: []sub{{"v1", 1, endpoints}}}
}

// planned makes the plans of svcs, lookup-mode endpoints with a socket
// each (a file of this process stands in for it).
func (f *fake) planned(svcs []svc) []*planned {
	var out []*planned
	for _, s := range svcs {
		ms := s.service()
		p := &planned{svc: ms, plan: &plan.Service{Svc: ms, Route: s.route}}
		if s.mode == tsmaps.ModeLookup {
			for _, sb := range ms.Subsets {
				var socks []*listener.Socket
				for _, ep := range sb.Endpoints {
					file, err := os.Open(os.DevNull)
					if err != nil {
						f.t.Fatal(err)
					}
					f.t.Cleanup(func() { file.Close() })
					f.files = append(f.files, file)
					socks = append(socks, &listener.Socket{File: file, Addr: ep.Addr, PID: 1, Comm: "echo", FD: 3})
				}
				p.sockets = append(p.sockets, socks)
			}
		}
		out = append(out, p)
	}
	return out
}

// delta plans svcs over the services in force, as an apply does.
func (f *fake) delta(svcs []svc, opts ApplyOptions) (*delta, error) {
	f.t.Helper()
	old, err := f.set.ServiceList()
	if err != nil {
		f.t.Fatal(err)
	}
	return diff(f.planned(svcs), old, opts)
}

// apply plans svcs and carries the change out through the executor.
func (f *fake) apply(svcs []svc, opts ApplyOptions) ([]Change, error) {
	f.t.Helper()
	d, err := f.delta(svcs, opts)
	if err != nil {
		return nil, err
	}
	if err := f.tg.execute(f.set, d, opts); err != nil {
		return nil, err
	}
	return d.changes, nil
}

// mustApply applies svcs, failing the test on an error.
func (f *fake) mustApply(svcs ...svc) []Change {
	f.t.Helper()
	ch, err := f.apply(svcs, ApplyOptions{})
	if err != nil {
		f.t.Fatalf("apply: %v", err)
	}
	return ch
}

// seq is the namespace's write sequence.
func (f *fake) seq() uint64 {
	f.t.Helper()
	o, err := f.set.Owner()
	if err != nil {
		f.t.Fatal(err)
	}
	return o.WriteSeq
}

// dump is every map entry but the write sequence's and the tables'
// version counters (which a rolled back write moves on) and the tags of
// listening sockets (not journaled: see maps.Set.TagListener), and the
// routes.
func (f *fake) dump() []string {
	var out []string
	for _, l := range f.mem.Dump() {
		if !strings.HasPrefix(l, "owners[") && !strings.HasPrefix(l, "table_versions[") && !strings.HasPrefix(l, "conns[") {
			out = append(out, l)
		}
	}
	o, err := f.set.Owner()
	if err != nil {
		f.t.Fatal(err)
	}
	o.WriteSeq = 0
	out = append(out, fmt.Sprintf("owner %+v", o))
	for _, a := range slices.SortedFunc(maps.Keys(f.routes.have), netip.Addr.Compare) {
		out = append(out, "route "+a.String())
	}
	return out
}

// requireEvenVersions fails unless every table's version counter is even
// (no table write left in progress).
func (f *fake) requireEvenVersions() {
	f.t.Helper()
	for _, l := range f.mem.Dump() {
		if !strings.HasPrefix(l, "table_versions[") {
			continue
		}
		var key, val string
		fmt.Sscanf(l, "table_versions[%8s] = %2s", &key, &val)
		var low uint8
		fmt.Sscanf(val, "%02x", &low)
		if low%2 != 0 {
			f.t.Fatalf("table version left odd: %s", l)
		}
	}
}

// diffLines lists the lines only in a (-) or only in b (+).
var diffLines = state.DiffDumps

// failWrite is a state.Memory fault that fails write n.
func failWrite(n int) func(state.Op) error {
	return func(op state.Op) error {
		if op.N == n {
			return errInjected
		}
		return nil
	}
}

var errInjected = fmt.Errorf("injected fault")
