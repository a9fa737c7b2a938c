package inputs

import (
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/config"
)

// sameService compares every field of config.Service and config.Subset but
// the lines: a field added to either must be added to it (and here).
func TestSameServiceCoversEveryField(t *testing.T) {
	svc := reflect.TypeOf(config.Service{})
	sub := reflect.TypeOf(config.Subset{})
	if svc.NumField() != 12 || sub.NumField() != 4 {
		t.Fatalf("config.Service has %d fields, config.Subset %d (sameService knows 12 and 4): compare the new ones", svc.NumField(), sub.NumField())
	}
	base := func() *config.Service {
		return &config.Service{Name: "a", Listen: netip.MustParseAddrPort("10.0.0.1:80"), Mode: config.ModeConnect, Failover: true, Accounting: true,
			Affinity: &config.Affinity{Key: config.AffinityKeyClient, TTL: time.Second},
			Subsets:  []config.Subset{{Name: "v1", Weight: 1, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("10.1.0.1:8080")}, Line: 3}}, Line: 2}
	}
	moved := base()
	moved.Line, moved.Subsets[0].Line = 20, 30
	if !sameService(base(), moved) {
		t.Fatal("a service moved in its file differs")
	}
	edits := map[string]func(s *config.Service){
		"listen":    func(s *config.Service) { s.Listen = netip.MustParseAddrPort("10.0.0.1:81") },
		"mode":      func(s *config.Service) { s.Mode = config.ModeLookup },
		"policy":    func(s *config.Service) { s.Policy = config.PolicyRandom },
		"affinity":  func(s *config.Service) { s.Affinity.TTL = 2 * time.Second },
		"health":    func(s *config.Service) { s.Health = &config.Health{} },
		"shift":     func(s *config.Service) { s.Shift = &config.Shift{} },
		"failover":  func(s *config.Service) { s.Failover = false },
		"accounted": func(s *config.Service) { s.Accounting = false },
		"claim":     func(s *config.Service) { s.Claim = true },
		"weight":    func(s *config.Service) { s.Subsets[0].Weight = 2 },
		"subset":    func(s *config.Service) { s.Subsets[0].Name = "v2" },
		"endpoint":  func(s *config.Service) { s.Subsets[0].Endpoints[0] = netip.MustParseAddrPort("10.1.0.2:8080") },
		"subsets":   func(s *config.Service) { s.Subsets = append(s.Subsets, config.Subset{Name: "v2"}) },
	}
	for what, edit := range edits {
		s := base()
		edit(s)
		if sameService(base(), s) {
			t.Errorf("a service whose %s changed is the same", what)
		}
	}
}

// A build names exactly the services whose config or origin changed, and
// those gone.
func TestChangedNamesWhatDiffers(t *testing.T) {
	svc := func(name string, port uint16) config.Service {
		return config.Service{Name: name, Listen: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Mode: config.ModeConnect}
	}
	prev := &Change{Config: &config.Config{Services: []config.Service{svc("a", 1), svc("b", 2), svc("c", 3), svc("d", 4)}},
		origins: map[string]string{"c": "VirtualService default/c"}}
	cfg := &config.Config{Services: []config.Service{svc("a", 1), svc("b", 20), svc("c", 3), svc("e", 5)}}
	got := slices.Sorted(maps.Keys(changed(prev, cfg, map[string]string{"c": "VirtualService default/c2"})))
	if want := []string{"b", "c", "d", "e"}; !slices.Equal(got, want) {
		t.Fatalf("changed %v, want %v (b's port, c's origin, d gone, e new)", got, want)
	}
}

// Services in the same order are compared in place; moved ones by name;
// those past the new end are gone.
func TestChangedInPlaceAndMoved(t *testing.T) {
	svc := func(name string, port uint16) config.Service {
		return config.Service{Name: name, Listen: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Mode: config.ModeConnect}
	}
	prev := &Change{Config: &config.Config{Services: []config.Service{svc("a", 1), svc("b", 2), svc("c", 3)}}}
	for _, c := range []struct {
		now  []config.Service
		want []string
	}{
		{[]config.Service{svc("a", 1), svc("b", 2), svc("c", 3)}, nil},
		{[]config.Service{svc("a", 1), svc("b", 2)}, []string{"c"}},
		{[]config.Service{svc("c", 3), svc("a", 1), svc("b", 2)}, nil},
		{[]config.Service{svc("c", 30), svc("b", 2)}, []string{"a", "c"}},
	} {
		got := slices.Sorted(maps.Keys(changed(prev, &config.Config{Services: c.now}, nil)))
		if !slices.Equal(got, c.want) {
			t.Errorf("from a, b, c to %v: changed %v, want %v", c.now, got, c.want)
		}
	}
}
