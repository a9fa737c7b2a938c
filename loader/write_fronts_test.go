package loader

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/config"
	tsmaps "github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/state"
)

// frontLines is what a state holds of the frontends: the frontends map's
// keys (its values are service ids, which differ from a whole apply's once
// a service is removed), the frontend ports, the connect filter and the
// listeners.
func frontLines(mem *state.Memory) []string {
	var out []string
	for _, l := range mem.Dump() {
		switch {
		case strings.HasPrefix(l, "frontends["):
			out = append(out, strings.SplitN(l, " = ", 2)[0])
		case strings.HasPrefix(l, "frontend_ports["), strings.HasPrefix(l, "connect_filter["), strings.HasPrefix(l, "listeners["):
			out = append(out, l)
		}
	}
	return out
}

// memoryTarget is a Target over no kernel, as the scale benchmark's.
func memoryTarget() *Target {
	return &Target{NS: &Namespace{Ino: 4026531840}, netns: 0x5eed, routes: &fakeRoutes{have: map[netip.Addr]bool{}}}
}

// A scoped change leaves the frontends, their ports, the connect filter
// and the listeners exactly as a whole apply of the same config to empty
// maps makes them: when it keeps every frontend (and skips reading them),
// when it moves one, when it keeps the moved one, and when it removes it.
func TestScopedChangeFrontendsAsWholeApply(t *testing.T) {
	set, mem, err := tsmaps.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	tg := memoryTarget()
	opts := ApplyOptions{Daemon: true, KeepOverrides: true}
	if _, err := tg.applyOver(set, Fixed(scaleConfig(30, -1, 0)), opts); err != nil {
		t.Fatal(err)
	}
	moved := scaleConfig(30, 7, 9000)
	moved.Services[7].Listen = netip.MustParseAddrPort("10.96.0.8:81")
	movedKept := scaleConfig(30, 3, 9001)
	movedKept.Services[7].Listen = moved.Services[7].Listen
	removed := scaleConfig(30, 3, 9001)
	removed.Services = slices.Delete(removed.Services, 7, 8)
	steps := []struct {
		name    string
		cfg     *config.Config
		changed string
	}{
		{"endpoint changed", scaleConfig(30, 5, 9000), "default/svc-00005"},
		{"frontend moved", moved, "default/svc-00007"},
		{"another service's endpoint, the moved one kept", movedKept, "default/svc-00003"},
		{"moved one removed", removed, "default/svc-00007"},
	}
	for _, st := range steps {
		built := &Built{Config: st.cfg, Changed: map[string]bool{st.changed: true}}
		if _, err := tg.applyOver(set, BuildFunc(func([]tsmaps.StoredObject, []*tsmaps.Service) (*Built, error) { return built, nil }), opts); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		wholeSet, wholeMem, err := tsmaps.NewMemory()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := memoryTarget().applyOver(wholeSet, Fixed(st.cfg), opts); err != nil {
			t.Fatal(err)
		}
		got, want := frontLines(mem), frontLines(wholeMem)
		if !slices.Equal(got, want) {
			t.Errorf("%s: frontends after the scoped change differ from a whole apply's:\n got %d lines %v\nwant %d lines %v", st.name, len(got), got, len(want), want)
		}
	}
}

// A write leaves frontend ports, filter and listeners unread only over the
// state this Target left (kept services), when nothing is removed and every
// planned service keeps its frontend and mode, none lookup mode.
func TestFrontendsAsInForce(t *testing.T) {
	a, b := inForceSvc("a", "192.0.2.1:1", false), inForceSvc("b", "192.0.2.1:2", false)
	lookup := inForceSvc("l", "192.0.2.1:3", false)
	lookup.Mode = tsmaps.ModeLookup
	with := func(o *tsmaps.Service, edit func(*tsmaps.Service)) *planned {
		n := *o
		n.Subsets = []tsmaps.Subset{{Name: "v2", Weight: 1, FileWeight: 1}}
		if edit != nil {
			edit(&n)
		}
		return &planned{svc: &n}
	}
	old := map[string]*tsmaps.Service{"a": a, "b": b, "l": lookup}
	cases := []struct {
		name string
		d    *delta
		want bool
	}{
		{"endpoints changed", &delta{plans: []*planned{with(a, nil)}, old: old, kept: []*tsmaps.Service{b}}, true},
		{"no kept services (not this Target's state)", &delta{plans: []*planned{with(a, nil)}, old: old}, false},
		{"a service removed", &delta{plans: []*planned{with(a, nil)}, old: old, kept: []*tsmaps.Service{b}, removed: []*tsmaps.Service{lookup}}, false},
		{"a service added", &delta{plans: []*planned{with(inForceSvc("n", "192.0.2.1:9", false), nil)}, old: old, kept: []*tsmaps.Service{b}}, false},
		{"frontend moved", &delta{plans: []*planned{with(a, func(s *tsmaps.Service) { s.Frontend = netip.MustParseAddrPort("192.0.2.1:7") })}, old: old, kept: []*tsmaps.Service{b}}, false},
		{"mode changed", &delta{plans: []*planned{with(a, func(s *tsmaps.Service) { s.Mode = tsmaps.ModeProxy })}, old: old, kept: []*tsmaps.Service{b}}, false},
		{"lookup mode", &delta{plans: []*planned{with(lookup, nil)}, old: old, kept: []*tsmaps.Service{b}}, false},
	}
	for _, c := range cases {
		if got := c.d.frontendsAsInForce(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
