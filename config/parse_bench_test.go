package config

import (
	"net/netip"
	"strconv"
	"testing"
)

// scaleText is a route config of n connect-mode services of ten endpoints
// each, as Marshal writes it (the size of the tcpshift run scale test's).
func scaleText(b *testing.B, n int) []byte {
	cfg := &Config{Path: "scale.yaml"}
	for i := range n {
		sub := Subset{Name: "v1", Weight: 1}
		for j := range 10 {
			sub.Endpoints = append(sub.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(i%250 + 1)}), uint16(40000+j)))
		}
		cfg.Services = append(cfg.Services, Service{Name: "s" + strconv.Itoa(i), Mode: ModeConnect, Subsets: []Subset{sub},
			Listen: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, 0, 10}), uint16(10000+i))})
	}
	text, err := Marshal(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	return text
}

func BenchmarkParseTenThousand(b *testing.B) {
	text := scaleText(b, 10000)
	b.ResetTimer()
	for range b.N {
		cfg, err := Parse("scale.yaml", text)
		if err != nil {
			b.Fatal(err)
		}
		if len(cfg.Services) != 10000 {
			b.Fatalf("%d services", len(cfg.Services))
		}
	}
}
