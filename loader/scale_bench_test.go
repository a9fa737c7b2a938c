package loader

import (
	"context"
	"fmt"
	"net/netip"
	"runtime/pprof"
	"testing"

	"github.com/tcpshift/tcpshift/config"
	tsmaps "github.com/tcpshift/tcpshift/maps"
)

// scaleConfig is n connect-mode services of ten endpoints each, the shape
// of make k8s-bench; endpoint 0 of service changed is at port.
func scaleConfig(n, changed int, port uint16) *config.Config {
	cfg := &config.Config{Path: "<bench>"}
	for i := range n {
		s := config.Service{Name: fmt.Sprintf("default/svc-%05d", i), Mode: config.ModeConnect,
			Listen: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, byte(i / 250), byte(1 + i%250)}), 80)}
		sub := config.Subset{Name: "v1", Weight: 1}
		for j := range 10 {
			p := uint16(8080)
			if i == changed && j == 0 {
				p = port
			}
			sub.Endpoints = append(sub.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/25000), byte(i / 100 % 250), byte(i%100*2 + j)}), p))
		}
		s.Subsets = []config.Subset{sub}
		cfg.Services = append(cfg.Services, s)
	}
	return cfg
}

// applyOver runs an apply of b over set as Apply does once it holds the
// lock and the programs are attached: what the agent's sync costs the
// loader, without a kernel.
func (t *Target) applyOver(set *tsmaps.Set, b Build, opts ApplyOptions) ([]Change, error) {
	old, err := t.servicesInForce(set)
	if err != nil {
		return nil, err
	}
	plans, _, err := t.planBuilt(b, nil, old, &opts)
	defer func() { closeAll(plans) }()
	if err != nil {
		return nil, err
	}
	if err := t.decideRoutes(plans, old); err != nil {
		return nil, err
	}
	d, err := diff(plans, old, opts)
	if err != nil {
		return nil, err
	}
	if opts.Daemon {
		d.daemonFile = opts.DaemonFile
	}
	if err := t.execute(set, d, opts); err != nil {
		return nil, err
	}
	t.remember(set, d)
	return d.changes, nil
}

// One endpoint of one service changes among ten thousand, as the agent
// applies it: a Built naming the one service, over the state the Target
// left.
func BenchmarkApplyOneChangeAmongTenThousand(b *testing.B) {
	set, _, err := tsmaps.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	tg := &Target{NS: &Namespace{Ino: 4026531840}, netns: 0x5eed, routes: &fakeRoutes{have: map[netip.Addr]bool{}}}
	opts := ApplyOptions{Daemon: true, KeepOverrides: true}
	if _, err := tg.applyOver(set, Fixed(scaleConfig(10000, -1, 0)), opts); err != nil {
		b.Fatal(err)
	}
	cfgs := []*config.Config{scaleConfig(10000, 42, 9000), scaleConfig(10000, 42, 9001)}
	b.ResetTimer()
	for i := range b.N {
		built := &Built{Config: cfgs[i%2], Changed: map[string]bool{"default/svc-00042": true}}
		var changes []Change
		var err error
		// Labelled for CPU profiles: go tool pprof -tagfocus 'apply=one change'.
		pprof.Do(context.Background(), pprof.Labels("apply", "one change"), func(context.Context) {
			changes, err = tg.applyOver(set, BuildFunc(func([]tsmaps.StoredObject, []*tsmaps.Service) (*Built, error) { return built, nil }), opts)
		})
		if err != nil {
			b.Fatal(err)
		}
		if changes[0].Service != "default/svc-00042" || changes[0].Action != "updated" || len(changes) != 10000 {
			b.Fatalf("changes %d, first %+v", len(changes), changes[0])
		}
	}
}
