package test

import (
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// BenchmarkSetWeightsInForce flips the echo service's weights over real
// pinned maps in a private namespace and reports, besides the whole call
// (ns/op, which includes the RCU wait after the swap that no connection
// waits for), how long after the call started the new table was in force:
// a goroutine polls the service's tables slot until its inner map changes.
func BenchmarkSetWeightsInForce(b *testing.B) {
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
	slices.Sort(inForce)
	b.ReportMetric(float64(inForce[len(inForce)/2].Microseconds()), "µs-in-force-p50")
	b.ReportMetric(float64(inForce[len(inForce)-1].Microseconds()), "µs-in-force-max")
	got, ok, err := set.Service("tcp-echo")
	if err != nil || !ok || got.Subsets[0].Weight+got.Subsets[1].Weight != 3 {
		b.Fatalf("service after %d flips: %+v, %v", b.N, got, err)
	}
}
