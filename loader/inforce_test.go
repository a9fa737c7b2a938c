package loader

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/tcpshift/tcpshift/config"
	tsmaps "github.com/tcpshift/tcpshift/maps"
)

func inForceSvc(name, front string, localRoute bool) *tsmaps.Service {
	return &tsmaps.Service{Name: name, Frontend: netip.MustParseAddrPort(front), Mode: tsmaps.ModeConnect, LocalRoute: localRoute,
		Subsets: []tsmaps.Subset{{Name: "v1", Weight: 1, FileWeight: 1}}}
}

func cfgSvc(name string, mode config.Mode) config.Service {
	return config.Service{Name: name, Listen: netip.MustParseAddrPort("192.0.2.1:80"), Mode: mode}
}

// A scoped change plans the services it names, those not in force yet and
// those of other modes; it keeps the other connect-mode services in force
// as they are, and only over the state this Target itself left.
func TestScopePlansWhatChanged(t *testing.T) {
	old := []*tsmaps.Service{inForceSvc("a", "192.0.2.1:1", false), inForceSvc("b", "192.0.2.1:2", false),
		inForceSvc("c", "192.0.2.1:3", false), inForceSvc("e", "192.0.2.1:5", false)}
	b := &Built{Config: &config.Config{Services: []config.Service{cfgSvc("a", config.ModeConnect), cfgSvc("b", config.ModeConnect),
		cfgSvc("c", config.ModeLookup), cfgSvc("d", config.ModeConnect)}}, Changed: map[string]bool{"b": true, "e": true}}
	tg := &Target{}
	if only, kept := tg.scope(b, old, ApplyOptions{KeepOverrides: true}); only != nil || kept != nil {
		t.Fatalf("state not served from this Target's own: only %v, kept %d; want everything planned", only, len(kept))
	}
	tg.left.served = old
	only, kept := tg.scope(b, old, ApplyOptions{KeepOverrides: true})
	if got := slices.Sorted(maps.Keys(only)); !slices.Equal(got, []string{"b", "c", "d"}) || len(kept) != 1 || kept[0].Name != "a" {
		t.Fatalf("planned %v, kept %d; want b (changed), c (lookup), d (new) planned and a kept", got, len(kept))
	}
	// Without KeepOverrides a service set-weight changed gets its file's
	// weights back: planned.
	old[0].Subsets[0].Weight = 5
	only, kept = tg.scope(b, old, ApplyOptions{})
	if got := slices.Sorted(maps.Keys(only)); !slices.Equal(got, []string{"a", "b", "c", "d"}) || len(kept) != 0 {
		t.Fatalf("planned %v, kept %d; want a (overridden) planned too", got, len(kept))
	}
	// A Built that names nothing plans everything.
	b.Changed = nil
	if only, kept := tg.scope(b, old, ApplyOptions{KeepOverrides: true}); only != nil || kept != nil {
		t.Fatalf("a Built without Changed: only %v, kept %d; want everything planned", only, len(kept))
	}
}

// The kept services are neither removed nor lose their local routes, and
// each is reported unchanged after the planned ones.
func TestDeltaKeep(t *testing.T) {
	a, e := inForceSvc("a", "192.0.2.7:1", true), inForceSvc("e", "192.0.2.8:5", true)
	d := &delta{
		changes:   []Change{{Service: "b", Action: "updated"}, {Service: "a", Action: "removed"}, {Service: "e", Action: "removed"}},
		removed:   []*tsmaps.Service{a, e},
		delRoutes: []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.0.2.8")},
	}
	d.keep([]*tsmaps.Service{a}, 1)
	var got []string
	for _, ch := range d.changes {
		got = append(got, ch.Service+" "+ch.Action)
	}
	if want := []string{"b updated", "a unchanged", "e removed"}; !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	if len(d.removed) != 1 || d.removed[0] != e || len(d.kept) != 1 {
		t.Fatalf("removed %d (want e only), kept %d", len(d.removed), len(d.kept))
	}
	if !slices.Equal(d.delRoutes, []netip.Addr{netip.MustParseAddr("192.0.2.8")}) {
		t.Fatalf("routes removed %v, want e's only", d.delRoutes)
	}
}

// A daemon's first apply over services already in force changes nothing
// and needs no free slot; it still leaves a view of the lists map's slots
// (read once then), so that its first change does not read every table.
func TestDaemonFirstApplyKeepsListSlots(t *testing.T) {
	set, _, err := tsmaps.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	newTarget := func() *Target {
		return &Target{NS: &Namespace{Ino: 4026531840}, netns: 0x5eed, routes: &fakeRoutes{have: map[netip.Addr]bool{}}}
	}
	opts := ApplyOptions{Daemon: true, DaemonFile: "routes.yaml", KeepOverrides: true}
	if _, err := newTarget().applyOver(set, Fixed(scaleConfig(50, -1, 0)), opts); err != nil {
		t.Fatal(err)
	}
	// A new daemon over the same state: everything unchanged.
	tg := newTarget()
	changes, err := tg.applyOver(set, Fixed(scaleConfig(50, -1, 0)), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range changes {
		if ch.Action != "unchanged" {
			t.Fatalf("%s %s, want every service unchanged", ch.Service, ch.Action)
		}
	}
	fresh, err := set.ReadListSlots()
	if err != nil {
		t.Fatal(err)
	}
	kept := tg.listSlots(set)
	if kept == nil || !kept.Same(fresh) || kept.InUse() != 50*10 {
		t.Fatalf("view kept %v; want the %d slots of the tables in force", kept != nil, 50*10)
	}
	// Its first change starts from that view and leaves what it remembers
	// equal to the maps.
	built := &Built{Config: scaleConfig(50, 7, 9000), Changed: map[string]bool{"default/svc-00007": true}}
	changes, err = tg.applyOver(set, BuildFunc(func([]tsmaps.StoredObject, []*tsmaps.Service) (*Built, error) { return built, nil }), opts)
	if err != nil {
		t.Fatal(err)
	}
	if changes[0].Service != "default/svc-00007" || changes[0].Action != "updated" {
		t.Fatalf("first change %+v, want default/svc-00007 updated", changes[0])
	}
	read, err := set.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	if differ := tg.left.differsFrom(read); len(read) != 50 || len(differ) != 0 {
		t.Fatalf("remembered differs from the maps: %v", differ)
	}
}
