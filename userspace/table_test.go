package userspace

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/maps"
)

func testService() *maps.Service {
	ep := func(id uint32, addr string) maps.Endpoint {
		return maps.Endpoint{ID: id, Addr: netip.MustParseAddrPort(addr)}
	}
	return &maps.Service{Name: "tcp-echo", Subsets: []maps.Subset{
		{Name: "v1", Weight: 80, Endpoints: []maps.Endpoint{ep(0, "127.0.0.1:9001")}},
		{Name: "v2", Weight: 20, Endpoints: []maps.Endpoint{ep(1, "127.0.0.1:9002"), ep(2, "127.0.0.1:9012")}},
	}}
}

func table(t *testing.T, svc *maps.Service) *Table {
	t.Helper()
	src, err := NewStaticSource([]*maps.Service{svc})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := src.Table(svc.ID)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// Pick walks the smooth sequence (one one two one one) and, inside a
// subset, gives the endpoints turns with the others as fallbacks.
func TestPickFollowsTheSequence(t *testing.T) {
	tb := table(t, testService())
	var got []string
	for range 10 {
		_, order, ok := tb.Pick()
		if !ok {
			t.Fatal("table refused")
		}
		var addrs []string
		for _, ep := range order {
			addrs = append(addrs, ep.Addr.String())
		}
		got = append(got, addrs[0])
		if len(order) == 2 && order[0] == order[1] {
			t.Fatalf("fallback repeats the first endpoint: %v", addrs)
		}
	}
	want := []string{"127.0.0.1:9001", "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9001", "127.0.0.1:9001",
		"127.0.0.1:9001", "127.0.0.1:9001", "127.0.0.1:9012", "127.0.0.1:9001", "127.0.0.1:9001"}
	if !slices.Equal(got, want) {
		t.Fatalf("picks %v\nwant  %v", got, want)
	}
}

func TestPickRefusesWithoutWeight(t *testing.T) {
	svc := testService()
	svc.Subsets[0].Weight, svc.Subsets[1].Weight = 0, 0
	if _, _, ok := table(t, svc).Pick(); ok {
		t.Fatal("a table with every weight 0 picked an endpoint")
	}
}

// Affinity keeps a client on its endpoint within the TTL, and drops it
// when the endpoint's subset loses its weight.
func TestAffinity(t *testing.T) {
	svc := testService()
	svc.AffinityTTL = time.Minute
	tb := table(t, svc)
	var a affinities
	k := affinityKey{client: netip.MustParseAddr("10.0.0.2")}
	now := time.Now()
	a.set(tb, k, 1, 2, now)
	if ep, ok := a.get(tb, k, now.Add(30*time.Second)); !ok || ep.ID != 2 {
		t.Fatalf("within the TTL: %v %v, want endpoint 2", ep, ok)
	}
	if _, ok := a.get(tb, k, now.Add(2*time.Minute)); ok {
		t.Fatal("expired affinity used")
	}
	a.set(tb, k, 1, 2, now)
	svc.Subsets[1].Weight = 0
	if _, ok := a.get(table(t, svc), k, now); ok {
		t.Fatal("affinity to a subset with weight 0 used")
	}
}
