package loader_test

import (
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

const vipConfig = `services:
- name: s
  listen: 10.77.0.1:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`

const otherConfig = `services:
- name: t
  listen: 127.0.0.100:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`

func parse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("routes.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A writer that removes a service's frontend route between another apply's
// planning and its lock must not leave that apply committing the service
// without its route: routes are decided under the lock.
func TestRouteDecidedUnderLock(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	x, y := env.Target(), env.Target()
	t.Cleanup(func() { x.Down() })
	if _, err := x.Apply(loader.Fixed(parse(t, vipConfig)), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if !env.HasLocalRoute("10.77.0.1") {
		t.Fatal("no local route for the frontend after the first apply")
	}
	ran := false
	loader.SetAfterPlan(func() {
		if ran {
			return // y's own apply
		}
		ran = true
		changes, err := y.Apply(loader.Fixed(parse(t, otherConfig)), loader.ApplyOptions{})
		if err != nil || len(changes) != 2 {
			t.Errorf("the writer in between: %+v %v", changes, err)
		}
		if env.HasLocalRoute("10.77.0.1") {
			t.Error("the writer in between left the route of the service it removed")
		}
	})
	defer loader.SetAfterPlan(nil)
	if _, err := x.Apply(loader.Fixed(parse(t, vipConfig)), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Fatal("the hook did not run")
	}
	if !env.HasLocalRoute("10.77.0.1") {
		t.Fatal("service s applied without the local route its frontend needs")
	}
	if got := env.Count("10.77.0.1:9000", 3); !maps.Equal(got, map[string]int{"one": 3}) {
		t.Fatalf("connections to s: %v", got)
	}
}

// An address tcpshift's own local route makes local is still checked for the
// route it shadows: dropping claim is refused, and nothing changes.
func TestClaimCheckedThroughOwnRoute(t *testing.T) {
	env := testenv.New(t)
	env.Remote()
	env.Echo("127.0.0.1:9001", "one")
	if err := env.AddDefaultRoute("10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	tg := env.Target()
	t.Cleanup(func() { tg.Down() })
	claimed := strings.Replace(vipConfig, "10.77.0.1", "10.88.0.5", 1)
	claimed = strings.Replace(claimed, "mode: lookup", "mode: lookup\n  claim: true", 1)
	if _, err := tg.Apply(loader.Fixed(parse(t, claimed)), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	before := env.KernelState()
	_, err := tg.Apply(loader.Fixed(parse(t, strings.Replace(claimed, "\n  claim: true", "", 1))), loader.ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "services[0].listen") || !strings.Contains(err.Error(), "routed to another host") ||
		!strings.Contains(err.Error(), "via 10.0.0.2") {
		t.Fatalf("dropping claim: %v, want a refusal naming the route it shadows", err)
	}
	env.RequireUnchanged(before)
}

// A health result for an endpoint id that a change meanwhile gave to another
// address is refused, and changes nothing.
func TestSetHealthChecksEndpoint(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	tg := env.Target()
	t.Cleanup(func() { tg.Down() })
	if _, err := tg.Apply(loader.Fixed(parse(t, otherConfig)), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := tg.Status("t")
	if err != nil {
		t.Fatal(err)
	}
	before := env.KernelState()
	set, err := tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	svc, _, err := set.Service("t")
	if err != nil {
		t.Fatal(err)
	}
	id := svc.Subsets[0].Endpoints[0].ID
	err = tg.SetHealth("t", id, netip.MustParseAddrPort("127.0.0.1:9999"), 2)
	if !errors.Is(err, loader.ErrEndpointGone) {
		t.Fatalf("health of a recycled id: %v, want ErrEndpointGone", err)
	}
	env.RequireUnchanged(before)
	if st.Services[0].Subsets[0].Endpoints[0].Health != "unchecked" {
		t.Fatalf("health %s", st.Services[0].Subsets[0].Endpoints[0].Health)
	}
}
