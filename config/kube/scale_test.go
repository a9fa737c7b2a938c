package kube

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tcpshift/tcpshift/config/istio"
)

// scaleSnapshot is n Services of ten ready endpoints each, no routes.
func scaleSnapshot(n int) *Snapshot {
	s := &Snapshot{Pod: func(string, string) *corev1.Pod { return nil }}
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		s.Services = append(s.Services, service(name, fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250), 80))
		var eps []ep
		for j := range 10 {
			eps = append(eps, ep{pod: fmt.Sprintf("%s-%d", name, j), ip: fmt.Sprintf("10.%d.%d.%d", 100+i/25000, (i/100)%250, (i%100)*2+j), ready: true})
		}
		s.Slices = append(s.Slices, slice(name, 8080, eps...))
	}
	return s
}

func BenchmarkDeriveTenThousand(b *testing.B) {
	s := scaleSnapshot(10000)
	b.ResetTimer()
	for range b.N {
		if _, err := Derive(s, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// One EndpointSlice changes among ten thousand Services: the update
// re-derives its Service's one service.
func BenchmarkUpdateOneSliceAmongTenThousand(b *testing.B) {
	s := scaleSnapshot(10000)
	d := NewDeriver(Options{})
	if _, err := d.Full(s); err != nil {
		b.Fatal(err)
	}
	svc, sl := s.Services[42], s.Slices[42]
	l := Lookup{
		Service: func(string, string) *corev1.Service { return svc },
		Slices:  func(string, string) []*discoveryv1.EndpointSlice { return []*discoveryv1.EndpointSlice{sl} },
		Pod:     s.Pod,
	}
	ch := Changes{Services: []istio.Key{ServiceKey("default", svc.Name)}}
	b.ResetTimer()
	for i := range b.N {
		sl.Endpoints[0].Addresses = []string{fmt.Sprintf("10.200.%d.%d", i/250%250, i%250)}
		res, err := d.Update(l, ch)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Changed) != 1 || len(res.Config.Services) != 10000 {
			b.Fatalf("%d changed, %d services", len(res.Changed), len(res.Config.Services))
		}
	}
}
