package test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

// BenchmarkSetWeightsInForce flips the echo service's weights over real
// pinned maps in a private namespace and reports, besides the whole call
// (ns/op, which includes the RCU wait after the swap that no connection
// waits for), how long after the call started the new table was in force:
// a goroutine polls the service's tables slot until its inner map changes.
func BenchmarkSetWeightsInForce(b *testing.B) {
	tg := echoTarget(b)
	set, err := tg.Maps()
	if err != nil {
		b.Fatal(err)
	}
	defer set.Close()
	svc, ok, err := set.Service("tcp-echo")
	if err != nil || !ok {
		b.Fatalf("service tcp-echo: %v, %v", ok, err)
	}
	slot := func() ebpf.MapID {
		v, err := set.TableVersion(svc.ID)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	var inForce []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := slot()
		seen := make(chan time.Time, 1)
		go func() {
			for {
				var now ebpf.MapID
				if set.Tables.Lookup(svc.ID, &now) == nil && now != before {
					seen <- time.Now()
					return
				}
			}
		}()
		v1 := uint64(1 + i%2)
		start := time.Now()
		if _, err := tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: v1}, {Subset: "v2", Weight: 3 - v1}}); err != nil {
			b.Fatal(err)
		}
		inForce = append(inForce, (<-seen).Sub(start))
	}
	b.StopTimer()
	// The process's CPU per change, without the poller: what is left of
	// the time to in force is waiting for a CPU.
	var r0, r1 unix.Rusage
	const n = 100
	unix.Getrusage(unix.RUSAGE_SELF, &r0)
	for i := range n {
		v1 := uint64(1 + i%2)
		if _, err := tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: v1}, {Subset: "v2", Weight: 3 - v1}}); err != nil {
			b.Fatal(err)
		}
	}
	unix.Getrusage(unix.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano() - r0.Utime.Nano() + r1.Stime.Nano() - r0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/change")
	slices.Sort(inForce)
	b.ReportMetric(float64(inForce[len(inForce)/2].Microseconds()), "µs-in-force-p50")
	b.ReportMetric(float64(inForce[len(inForce)-1].Microseconds()), "µs-in-force-max")
	got, ok, err := set.Service("tcp-echo")
	if err != nil || !ok || got.Subsets[0].Weight+got.Subsets[1].Weight != 3 {
		b.Fatalf("service after %d flips: %+v, %v", b.N, got, err)
	}
}

// BenchmarkWeightChangeSteps times, over the same pinned maps, the steps a
// weight change took before its swap and what replaced them: opening all
// 21 pinned maps (maps.Open) or only the 10 it uses before the swap
// (maps.OpenLazy opens them as used), and reading the whole service list
// or one service (Set.Service now).
func BenchmarkWeightChangeSteps(b *testing.B) {
	tg := echoTarget(b)
	b.Run("open-21-maps", func(b *testing.B) {
		for b.Loop() {
			set, err := maps.Open(tg.Dir)
			if err != nil {
				b.Fatal(err)
			}
			set.Close()
		}
	})
	used := []string{bpf.TcpshiftMapOwners, bpf.TcpshiftMapServices, bpf.TcpshiftMapEndpointPlaces,
		bpf.TcpshiftMapEndpoints, bpf.TcpshiftMapEndpointHealth, bpf.TcpshiftMapServiceFiles,
		bpf.TcpshiftMapShifts, bpf.TcpshiftMapTables, bpf.TcpshiftMapLists, bpf.TcpshiftMapTableVersions}
	b.Run("open-10-maps", func(b *testing.B) {
		for b.Loop() {
			for _, name := range used {
				m, err := ebpf.LoadPinnedMap(filepath.Join(tg.Dir, name), nil)
				if err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		}
	})
	set, err := tg.Maps()
	if err != nil {
		b.Fatal(err)
	}
	defer set.Close()
	b.Run("read-service-list", func(b *testing.B) {
		for b.Loop() {
			if all, err := set.ServiceList(); err != nil || len(all) != 1 {
				b.Fatalf("%d services, %v", len(all), err)
			}
		}
	})
	b.Run("read-one-service", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := set.Service("tcp-echo"); err != nil || !ok {
				b.Fatalf("tcp-echo: %v, %v", ok, err)
			}
		}
	})
}

// echoTarget applies echoConfig over two echo backends in a private
// namespace, for the weight-change benchmarks.
func echoTarget(b *testing.B) *loader.Target {
	env := testenv.New(b)
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")
	tg := env.Target()
	cfg, err := config.Parse("routes.yaml", []byte(echoConfig))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tg.Apply(loader.Fixed(cfg), loader.ApplyOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tg.Down() })
	return tg
}
