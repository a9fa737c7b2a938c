package loader

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/config"
	tsmaps "github.com/tcpshift/tcpshift/maps"
)

// configOf is the route config of svcs.
func configOf(svcs ...svc) *config.Config {
	cfg := &config.Config{Path: "routes.yaml"}
	for _, sv := range svcs {
		c := config.Service{Name: sv.name, Listen: netip.MustParseAddrPort(sv.front), Mode: config.Mode(ModeName(sv.mode)), Failover: true, Accounting: true}
		for _, sb := range sv.subsets {
			cs := config.Subset{Name: sb.name, Weight: sb.weight}
			for _, ep := range sb.endpoints {
				cs.Endpoints = append(cs.Endpoints, netip.MustParseAddrPort(ep))
			}
			c.Subsets = append(c.Subsets, cs)
		}
		cfg.Services = append(cfg.Services, c)
	}
	return cfg
}

// twoConnect is a route config of two connect-mode services.
func twoConnect() *config.Config {
	return configOf(connect("a", "192.0.2.1:80", "10.0.0.1:80"), connect("b", "192.0.2.2:80", "10.0.0.2:80", "10.0.0.3:80"))
}

// buildOver plans what b makes of f's state in force, as Apply does under
// the lock, and carries it out through the executor.
func (f *fake) buildOver(b Build, opts ApplyOptions) ([]Change, error) {
	f.t.Helper()
	old, err := f.set.ServiceList()
	if err != nil {
		f.t.Fatal(err)
	}
	stored, err := f.set.Objects()
	if err != nil {
		f.t.Fatal(err)
	}
	plans, objects, err := f.tg.planBuilt(b, stored, old, &opts)
	defer closeAll(plans)
	if err != nil {
		return nil, err
	}
	d, err := diff(plans, old, opts)
	if err != nil {
		return nil, err
	}
	d.objects = objects
	if err := f.tg.execute(f.set, d, opts); err != nil {
		return nil, err
	}
	return d.changes, nil
}

// A Build sees the stored objects and the services in force, and what it
// makes is applied with the objects behind each service and its change to
// the stored objects, in one transaction.
func TestBuildOverTheStateInForce(t *testing.T) {
	f := newFake(t)
	vs := tsmaps.StoredObject{Key: tsmaps.ObjectKey{Kind: "VirtualService", Namespace: "default", Name: "a"}, Text: []byte("kind: VirtualService\n")}
	first := BuildFunc(func(stored []tsmaps.StoredObject, current []*tsmaps.Service) (*Built, error) {
		if len(stored) != 0 || len(current) != 0 {
			t.Errorf("first build saw %d objects and %d services, want none", len(stored), len(current))
		}
		return &Built{Config: twoConnect(), Origins: map[string]string{"a": "VirtualService default/a"},
			Objects: &ObjectChange{Put: []tsmaps.StoredObject{vs}}}, nil
	})
	if _, err := f.buildOver(first, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	var saw []string
	again := BuildFunc(func(stored []tsmaps.StoredObject, current []*tsmaps.Service) (*Built, error) {
		for _, o := range stored {
			saw = append(saw, o.Key.Name)
		}
		for _, s := range current {
			saw = append(saw, s.Name+"<"+s.Origin+">")
		}
		// tcpshift's own services, rebuilt from the state: nothing changes.
		return &Built{Config: Natives(current), Origins: map[string]string{"a": "VirtualService default/a"}}, nil
	})
	changes, err := f.buildOver(again, ApplyOptions{KeepOverrides: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "a<VirtualService default/a>", "b<>"}; !slices.Equal(saw, want) {
		t.Fatalf("the build saw %v, want %v", saw, want)
	}
	// Natives leaves derived services out: a goes, b stays as it was.
	if len(changes) != 2 || changes[0].Service != "b" || changes[0].Action != "unchanged" || changes[1].Service != "a" || changes[1].Action != "removed" {
		t.Fatalf("changes %+v, want b unchanged, a removed", changes)
	}
}

// A build that fails, or makes an object too large to keep, or a config
// the plan refuses, changes nothing.
func TestBuildRefusalsWriteNothing(t *testing.T) {
	f := newFake(t)
	f.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80"))
	writes := f.mem.Writes()
	boom := errors.New("derive failed")
	big := tsmaps.StoredObject{Key: tsmaps.ObjectKey{Kind: "Gateway", Namespace: "default", Name: "big"}, Text: make([]byte, tsmaps.MaxObjectText+1)}
	for _, c := range []struct {
		name  string
		build Build
		want  string
	}{
		{"build fails", BuildFunc(func([]tsmaps.StoredObject, []*tsmaps.Service) (*Built, error) { return nil, boom }), "derive failed"},
		{"object too large", BuildFunc(func([]tsmaps.StoredObject, []*tsmaps.Service) (*Built, error) {
			return &Built{Config: twoConnect(), Objects: &ObjectChange{Put: []tsmaps.StoredObject{big}}}, nil
		}), "Gateway default/big: "},
		{"more services than the maps hold", Fixed(tooMany(t)), "services would be loaded at once (the file's and the 1 in force it removes), at most"},
	} {
		_, err := f.buildOver(c.build, ApplyOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
		if f.mem.Writes() != writes {
			t.Errorf("%s: refused, yet %d writes", c.name, f.mem.Writes()-writes)
		}
	}
}

// tooMany is a config of one service more than the maps hold.
func tooMany(t *testing.T) *config.Config {
	t.Helper()
	limits, err := tsmaps.Capacities()
	if err != nil {
		t.Fatal(err)
	}
	return configOf(manyServices(limits.Services + 1)...)
}

// A Build learns which lookup-mode endpoints were applied before: one of
// them that does not listen now is waited for, not refused.
func TestBuildKnowsTheEndpointsApplied(t *testing.T) {
	f := newFake(t)
	f.mustApply(lookup("l", "192.0.2.1:80", "127.0.0.1:9001"))
	old, err := f.set.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	opts := ApplyOptions{}
	plans, _, err := f.tg.planBuilt(Fixed(twoConnect()), nil, old, &opts)
	closeAll(plans)
	if err != nil {
		t.Fatal(err)
	}
	if got := opts.applied["l"]; len(got) != 1 || got[0].String() != "127.0.0.1:9001" {
		t.Fatalf("applied %v, want l's endpoint", opts.applied)
	}
	if len(plans) != 2 || plans[0].svc.Origin != "" {
		t.Fatalf("plans %d, origin %q; want 2 services of the route config", len(plans), plans[0].svc.Origin)
	}
}
