package maps

import (
	"net/netip"
	"slices"
	"testing"
)

func healthService(noFailover bool, v1, v2 []Health) *Service {
	svc := &Service{Name: "s", NoFailover: noFailover}
	for i, hs := range [][]Health{v1, v2} {
		sub := Subset{Name: []string{"v1", "v2"}[i], Weight: []uint64{80, 20}[i]}
		for j, h := range hs {
			sub.Endpoints = append(sub.Endpoints, Endpoint{ID: uint32(10*i + j), Addr: netip.MustParseAddrPort("127.0.0.1:9000"), Health: h})
		}
		svc.Subsets = append(svc.Subsets, sub)
	}
	return svc
}

func TestTableLeavesDownEndpointsOut(t *testing.T) {
	for _, tc := range []struct {
		name     string
		svc      *Service
		percents []float64
		v1, v2   []uint32 // endpoint ids in the table
	}{
		{"all up or unchecked", healthService(false, []Health{HealthUp, HealthUnchecked}, []Health{HealthUp}), []float64{80, 20}, []uint32{0, 1}, []uint32{10}},
		{"one v1 endpoint down: v1 keeps its share", healthService(false, []Health{HealthDown, HealthUp}, []Health{HealthUp}), []float64{80, 20}, []uint32{1}, []uint32{10}},
		{"v2 all down: failover to v1", healthService(false, []Health{HealthUp, HealthUp}, []Health{HealthDown}), []float64{100, 0}, []uint32{0, 1}, nil},
		{"v2 all down, no failover: v2 keeps its share, empty", healthService(true, []Health{HealthUp, HealthUp}, []Health{HealthDown}), []float64{80, 20}, []uint32{0, 1}, nil},
		{"everything down", healthService(false, []Health{HealthDown, HealthDown}, []Health{HealthDown}), []float64{0, 0}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := tc.svc.Table()
			if err != nil {
				t.Fatal(err)
			}
			if got := Percents(tb, 2); !slices.Equal(got, tc.percents) {
				t.Errorf("percents %v, want %v", got, tc.percents)
			}
			for i, want := range [][]uint32{tc.v1, tc.v2} {
				if got := tb.Endpoints[i]; int(tb.Subsets[i].Count) != len(got) || !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Errorf("subset %d endpoints %v, want %v", i, got, want)
				}
			}
			if tc.svc.Subsets[1].Weight != 20 {
				t.Error("Table changed the configured weight")
			}
		})
	}
}
