package config

import (
	"fmt"
	"strings"
	"testing"
)

// scaleText is a route config of n connect-mode services of ten endpoints
// each, the file of the tcpshift run scale test.
func scaleText(n int) []byte {
	var b strings.Builder
	b.WriteString("services:\n")
	for i := range n {
		fmt.Fprintf(&b, "- name: s%d\n  listen: 10.96.0.10:%d\n  mode: connect\n  subsets:\n    v1: {endpoints: [", i, 10000+i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "127.1.%d.%d:%d", i/250, i%250+1, 40000+j)
		}
		b.WriteString("]}\n  route: [{subset: v1, weight: 1}]\n")
	}
	return []byte(b.String())
}

func BenchmarkParseTenThousand(b *testing.B) {
	text := scaleText(10000)
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
