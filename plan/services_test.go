package plan_test

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
	"github.com/tcpshift/tcpshift/plan/fakehost"
)

func mustHost(t *testing.T, text string) *fakehost.Host {
	t.Helper()
	h, err := fakehost.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustParse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("route.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const twoServices = `services:
- name: a
  listen: 10.96.0.1:80
  subsets:
    v1: {endpoints: [127.0.0.1:9001, 127.0.0.1:9002]}
  route: [{subset: v1, weight: 1}]
- name: b
  listen: 10.96.0.2:80
  subsets:
    v1: {endpoints: [127.0.0.1:9003, 10.0.0.9:80]}
  route: [{subset: v1, weight: 1}]
`

// The sockets a plan keeps are those of lookup-mode services, by the
// handles the host gave them; an auto service that chose another mode
// keeps none, though the host found some.
func TestServicesKeepSocketsByHandle(t *testing.T) {
	h := mustHost(t, "listen 127.0.0.1:9001\nlisten 127.0.0.1:9002\nlisten 127.0.0.1:9003\n")
	svcs, err := plan.Services(mustParse(t, twoServices), h, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := svcs[0], svcs[1]
	if a.Svc.Mode != maps.ModeLookup || b.Svc.Mode != maps.ModeConnect || !a.Svc.Auto || !b.Svc.Auto {
		t.Fatalf("modes %v %v, want lookup and connect, both auto", a.Svc.Mode, b.Svc.Mode)
	}
	if len(a.Sockets) != 1 || a.Sockets[0][0].Handle != 0 || a.Sockets[0][1].Handle != 1 || b.Sockets != nil {
		t.Errorf("sockets %v and %v, want handles 0 and 1 for a, none for b", a.Sockets, b.Sockets)
	}
	// The host found three: 9003 is b's, which it may close.
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9001"), netip.MustParseAddrPort("127.0.0.1:9002"), netip.MustParseAddrPort("127.0.0.1:9003")}
	if !slices.Equal(h.Opened, want) {
		t.Errorf("opened %v, want %v", h.Opened, want)
	}
	if a.ListenField != "route.yaml:2: services[0].listen" || b.ListenField != "route.yaml:7: services[1].listen" {
		t.Errorf("listen fields %q %q", a.ListenField, b.ListenField)
	}
}

// An auto service that does not choose lookup waits for no endpoint, even
// one applied before that is down now.
func TestAutoNotLookupWaitsForNothing(t *testing.T) {
	applied := map[string][]netip.AddrPort{"b": {netip.MustParseAddrPort("127.0.0.1:9003")}}
	svcs, err := plan.Services(mustParse(t, twoServices), mustHost(t, "listen 127.0.0.1:9001\nlisten 127.0.0.1:9002\n"), plan.Options{Applied: applied})
	if err != nil {
		t.Fatal(err)
	}
	if b := svcs[1]; b.Svc.Mode != maps.ModeConnect || b.Waiting != nil {
		t.Errorf("b: mode %v waiting %v, want connect waiting for nothing", b.Svc.Mode, b.Waiting)
	}
}

// Applied lists the endpoints of lookup-mode services only.
func TestApplied(t *testing.T) {
	ep := func(s string) maps.Endpoint { return maps.Endpoint{Addr: netip.MustParseAddrPort(s)} }
	old := []*maps.Service{
		{Name: "l", Mode: maps.ModeLookup, Subsets: []maps.Subset{{Endpoints: []maps.Endpoint{ep("127.0.0.1:1")}}, {Endpoints: []maps.Endpoint{ep("127.0.0.1:2")}}}},
		{Name: "c", Mode: maps.ModeConnect, Subsets: []maps.Subset{{Endpoints: []maps.Endpoint{ep("127.0.0.1:3")}}}},
	}
	got := plan.Applied(old)
	if len(got) != 1 || !slices.Equal(got["l"], []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")}) {
		t.Errorf("applied %v, want l's two endpoints", got)
	}
}

// Refusals wrap the plan's sentinels and name the field.
func TestServicesRefusals(t *testing.T) {
	lookup := func(listen, ep string) string {
		return "services:\n- name: a\n  listen: " + listen + "\n  mode: lookup\n  subsets:\n    v1: {endpoints: [" + ep + "]}\n  route: [{subset: v1, weight: 1}]\n"
	}
	for _, c := range []struct {
		name, host, cfg string
		is              error
		field           string
	}{
		{"not listening", "", lookup("10.96.0.1:80", "127.0.0.1:1"), plan.ErrNotListening, "route.yaml:6: services[0].subsets.v1.endpoints[0]: "},
		{"elsewhere", "elsewhere 127.0.0.1:1", lookup("10.96.0.1:80", "127.0.0.1:1"), plan.ErrOtherNetns, "route.yaml:6: services[0].subsets.v1.endpoints[0]: "},
		{"v6 frontend, v4 socket", "listen 127.0.0.1:1", lookup(`"[fd00::1]:80"`, "127.0.0.1:1"), plan.ErrFamily, "route.yaml:6: services[0].subsets.v1.endpoints[0]: "},
		{"v4 frontend, v6only socket", "listen 127.0.0.1:1 on [::ffff:127.0.0.1]:1 v6only", lookup("10.96.0.1:80", "127.0.0.1:1"), plan.ErrFamily, "route.yaml:6: services[0].subsets.v1.endpoints[0]: "},
	} {
		_, err := plan.Services(mustParse(t, c.cfg), mustHost(t, c.host), plan.Options{})
		if !errors.Is(err, c.is) || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("%s: %v, want %v at %s", c.name, err, c.is, c.field)
		}
	}
}

// NewService carries every setting of the config over.
func TestNewService(t *testing.T) {
	c := &config.Service{
		Name: "a", Listen: netip.MustParseAddrPort("10.0.0.1:80"), Policy: config.PolicyRandom, Claim: true,
		Affinity: &config.Affinity{Key: config.AffinityKeyClient, TTL: time.Minute},
		Health:   &config.Health{Interval: time.Second, Timeout: 2 * time.Second, Rise: 3, Fall: 4, Passive: true},
		Subsets:  []config.Subset{{Name: "v1", Weight: 7, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:80")}}},
	}
	svc := plan.NewService(c)
	want := &maps.Service{
		Name: "a", Frontend: c.Listen, Policy: maps.PolicyRandom, Claim: true, AffinityTTL: time.Minute,
		Checks:     &maps.Checks{Interval: time.Second, Timeout: 2 * time.Second, Rise: 3, Fall: 4, Passive: true},
		NoFailover: true, NoAccounting: true,
		Subsets: []maps.Subset{{Name: "v1", Weight: 7, FileWeight: 7, Endpoints: []maps.Endpoint{{Addr: c.Subsets[0].Endpoints[0]}}}},
	}
	if !reflect.DeepEqual(svc, want) {
		t.Errorf("service %+v, want %+v", svc, want)
	}
}

// Only plans the services it names and leaves the others out, unasked.
func TestServicesOnly(t *testing.T) {
	h := mustHost(t, "listen 127.0.0.1:9001\nlisten 127.0.0.1:9002\nlisten 127.0.0.1:9003\n")
	svcs, err := plan.Services(mustParse(t, twoServices), h, plan.Options{Only: map[string]bool{"b": true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || svcs[0].Svc.Name != "b" || svcs[0].ListenField != "route.yaml:7: services[1].listen" {
		t.Fatalf("planned %v, want b alone, named by its place in the file", svcs)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9003")}; !slices.Equal(h.Opened, want) {
		t.Errorf("opened %v, want only b's %v", h.Opened, want)
	}
}
