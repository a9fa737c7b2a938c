package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const example = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000        # frontend: host:port; 0.0.0.0:PORT or [::]:PORT = any local address
  mode: lookup                    # auto (default) | lookup | connect | proxy
  policy: roundrobin              # roundrobin (default) | random
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// lines joins its arguments into a YAML document, one argument per line, so
// that test cases can be read with their line numbers in mind.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

func TestParseExample(t *testing.T) {
	cfg, err := Parse("routes.yaml", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path: "routes.yaml",
		Services: []Service{{
			Name:     "tcp-echo",
			Listen:   ap("127.0.0.100:9000"),
			Mode:     ModeLookup,
			Policy:   PolicyRoundRobin,
			Failover: true, Accounting: true,
			Subsets: []Subset{
				{Name: "v1", Endpoints: []netip.AddrPort{ap("127.0.0.1:9001")}, Weight: 80, Line: 7},
				{Name: "v2", Endpoints: []netip.AddrPort{ap("127.0.0.1:9002")}, Weight: 20, Line: 8},
			},
			Line: 2,
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
	s := cfg.Services[0]
	if !s.Listen.Addr().Is4() || s.Wildcard() {
		t.Errorf("listen %v: Is4=%v Wildcard=%v", s.Listen, s.Listen.Addr().Is4(), s.Wildcard())
	}
	if got, ok := cfg.Service("tcp-echo"); !ok || got != &cfg.Services[0] {
		t.Errorf("Service(tcp-echo) = %p, %v", got, ok)
	}
	if _, ok := cfg.Service("nope"); ok {
		t.Errorf("Service(nope) found")
	}
	if sub, ok := s.Subset("v2"); !ok || sub.Weight != 20 || sub != &s.Subsets[1] {
		t.Errorf("Subset(v2) = %+v, %v", sub, ok)
	}
	if _, ok := s.Subset("v3"); ok {
		t.Errorf("Subset(v3) found")
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(path, []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path || len(cfg.Services) != 1 {
		t.Errorf("Load = %+v", cfg)
	}
	if err := os.WriteFile(path, []byte("services: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":1: services: ") {
		t.Errorf("Load error = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"defaults", lines(
			"services:",
			"- name: a",
			"  listen: 0.0.0.0:9000",
			"  subsets:",
			"    v1: {endpoints: [10.0.0.1:1, 10.0.0.2:1]}",
		), func(t *testing.T, c *Config) {
			s := c.Services[0]
			if s.Mode != ModeAuto || s.Policy != PolicyRoundRobin || s.Affinity != nil {
				t.Errorf("mode %q policy %q affinity %v", s.Mode, s.Policy, s.Affinity)
			}
			if !s.Wildcard() || s.Listen != ap("0.0.0.0:9000") {
				t.Errorf("listen %v wildcard %v", s.Listen, s.Wildcard())
			}
			want := []Subset{{Name: "v1", Endpoints: []netip.AddrPort{ap("10.0.0.1:1"), ap("10.0.0.2:1")}, Line: 5}}
			if !reflect.DeepEqual(s.Subsets, want) {
				t.Errorf("subsets = %+v", s.Subsets)
			}
		}},
		{"null mode and policy are defaults", lines(
			"services:",
			"- name: a",
			"  listen: 0.0.0.0:9000",
			"  mode:",
			"  policy: ~",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
		), func(t *testing.T, c *Config) {
			if s := c.Services[0]; s.Mode != ModeAuto || s.Policy != PolicyRoundRobin {
				t.Errorf("mode %q policy %q", s.Mode, s.Policy)
			}
		}},
		{"all modes and policies", lines(
			"services:",
			"- {name: a, listen: 127.0.0.1:1, mode: auto, policy: random, subsets: {v: {endpoints: [10.0.0.1:1]}}}",
			"- {name: b, listen: 127.0.0.1:2, mode: lookup, subsets: {v: {endpoints: [10.0.0.1:1]}}}",
			"- {name: c, listen: 127.0.0.1:3, mode: connect, subsets: {v: {endpoints: [10.0.0.1:1]}}}",
			"- {name: d, listen: 127.0.0.1:4, mode: proxy, policy: roundrobin, subsets: {v: {endpoints: [10.0.0.1:1]}}}",
		), func(t *testing.T, c *Config) {
			var got []string
			for _, s := range c.Services {
				got = append(got, fmt.Sprintf("%s/%s/%s/%d", s.Name, s.Mode, s.Policy, s.Line))
			}
			want := []string{"a/auto/random/2", "b/lookup/roundrobin/3", "c/connect/roundrobin/4", "d/proxy/roundrobin/5"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		}},
		{"subset without route entry gets weight 0", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {endpoints: [10.0.0.1:1]}",
			"    v2: {endpoints: [10.0.0.2:1]}",
			"    v3: {endpoints: [10.0.0.3:1]}",
			"  route:",
			"  - {subset: v2, weight: 100}",
		), func(t *testing.T, c *Config) {
			var got []string
			for _, s := range c.Services[0].Subsets {
				got = append(got, fmt.Sprintf("%s=%d@%d", s.Name, s.Weight, s.Line))
			}
			if want := []string{"v1=0@5", "v2=100@6", "v3=0@7"}; !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		}},
		{"subsets keep file order", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    zeta: {endpoints: [10.0.0.1:1]}",
			"    alpha: {endpoints: [10.0.0.2:1]}",
			"    Mid_1.x: {endpoints: [10.0.0.3:1]}",
			"  route:",
			"  - {subset: alpha, weight: 1}",
			"  - {subset: zeta, weight: 2}",
		), func(t *testing.T, c *Config) {
			var got []string
			for _, s := range c.Services[0].Subsets {
				got = append(got, fmt.Sprintf("%s=%d", s.Name, s.Weight))
			}
			if want := []string{"zeta=2", "alpha=1", "Mid_1.x=0"}; !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		}},
		{"max weight", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}, v2: {endpoints: [10.0.0.2:1]}}",
			"  route:",
			"  - {subset: v1, weight: 18446744073709551615}",
			"  - {subset: v2, weight: 0}",
		), func(t *testing.T, c *Config) {
			s := c.Services[0]
			if s.Subsets[0].Weight != 18446744073709551615 || s.Subsets[1].Weight != 0 {
				t.Errorf("subsets = %+v", s.Subsets)
			}
		}},
		{"ipv6 loopback listen", lines(
			"services:",
			"- name: a",
			"  listen: '[::1]:9000'",
			"  subsets: {v1: {endpoints: ['[::1]:9001', '[2001:db8::1]:80']}}",
		), func(t *testing.T, c *Config) {
			s := c.Services[0]
			if s.Listen != ap("[::1]:9000") || s.Wildcard() {
				t.Errorf("listen %v wildcard %v", s.Listen, s.Wildcard())
			}
			if want := []netip.AddrPort{ap("[::1]:9001"), ap("[2001:db8::1]:80")}; !reflect.DeepEqual(s.Subsets[0].Endpoints, want) {
				t.Errorf("endpoints %v", s.Subsets[0].Endpoints)
			}
		}},
		{"ipv6 wildcard listen", lines(
			"services:",
			"- name: a",
			"  listen: '[::]:9000'",
			"  subsets: {v1: {endpoints: ['[::1]:9001']}}",
			"- name: b",
			"  listen: 0.0.0.0:9000",
			"  subsets: {v1: {endpoints: ['[::1]:9001']}}",
			"- name: c",
			"  listen: 127.0.0.100:9000",
			"  subsets: {v1: {endpoints: ['[::1]:9001']}}",
		), func(t *testing.T, c *Config) {
			want := []netip.AddrPort{ap("[::]:9000"), ap("0.0.0.0:9000"), ap("127.0.0.100:9000")}
			for i, s := range c.Services {
				if s.Listen != want[i] || s.Wildcard() != (i < 2) {
					t.Errorf("%s: listen %v wildcard %v", s.Name, s.Listen, s.Wildcard())
				}
			}
		}},
		{"ipv4-mapped addresses are unmapped", lines(
			"services:",
			"- name: a",
			"  listen: '[::ffff:127.0.0.1]:9000'",
			"  subsets: {v1: {endpoints: ['[::ffff:10.0.0.1]:9001']}}",
		), func(t *testing.T, c *Config) {
			s := c.Services[0]
			if s.Listen != ap("127.0.0.1:9000") || !s.Listen.Addr().Is4() {
				t.Errorf("listen %v", s.Listen)
			}
			if e := s.Subsets[0].Endpoints[0]; e != ap("10.0.0.1:9001") || !e.Addr().Is4() {
				t.Errorf("endpoint %v", e)
			}
		}},
		{"affinity", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  affinity: {key: client, ttl: 1m30s}",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
			"- name: b",
			"  listen: 127.0.0.1:9001",
			"  affinity:",
			"    key: client",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
		), func(t *testing.T, c *Config) {
			if a := c.Services[0].Affinity; a == nil || *a != (Affinity{Key: "client", TTL: 90 * time.Second}) {
				t.Errorf("a: affinity %+v", a)
			}
			if a := c.Services[1].Affinity; a == nil || *a != (Affinity{Key: "client", TTL: 30 * time.Second}) {
				t.Errorf("b: affinity %+v", a)
			}
		}},
		{"weight spellings", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    a: {endpoints: [10.0.0.1:1]}",
			"    b: {endpoints: [10.0.0.1:1]}",
			"    c: {endpoints: [10.0.0.1:1]}",
			"    d: {endpoints: [10.0.0.1:1]}",
			"  route:",
			"  - {subset: a, weight: 1_000}",
			"  - {subset: b, weight: +7}",
			"  - {subset: c, weight: 0x10}",
			"  - {subset: d, weight: 080}",
		), func(t *testing.T, c *Config) {
			var got []uint64
			for _, s := range c.Services[0].Subsets {
				got = append(got, s.Weight)
			}
			if want := []uint64{1000, 7, 16, 80}; !reflect.DeepEqual(got, want) {
				t.Errorf("weights %v, want %v", got, want)
			}
		}},
		{"aliases", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: &eps {endpoints: [10.0.0.1:1]}",
			"    v2: *eps",
		), func(t *testing.T, c *Config) {
			if s := c.Services[0]; len(s.Subsets) != 2 || s.Subsets[1].Endpoints[0] != ap("10.0.0.1:1") {
				t.Errorf("subsets %+v", s.Subsets)
			}
		}},
		// MaxServices services of 8 endpoints each are also
		// MaxTotalEndpoints endpoints in all.
		{"limits", limitsYAML(MaxServices, 1, MaxTotalEndpoints/MaxServices), func(t *testing.T, c *Config) {
			if len(c.Services) != MaxServices {
				t.Fatalf("%d services", len(c.Services))
			}
			for _, s := range c.Services {
				if len(s.Subsets) != 1 || len(s.Subsets[0].Endpoints) != MaxTotalEndpoints/MaxServices {
					t.Fatalf("service %s: %d subsets", s.Name, len(s.Subsets))
				}
			}
		}},
		{"subset limits", limitsYAML(1, MaxSubsets, MaxEndpoints), func(t *testing.T, c *Config) {
			if s := c.Services[0]; len(s.Subsets) != MaxSubsets || len(s.Subsets[MaxSubsets-1].Endpoints) != MaxEndpoints {
				t.Fatalf("service %s: %d subsets", s.Name, len(s.Subsets))
			}
		}},
		{"name lengths", lines(
			"services:",
			"- name: "+strings.Repeat("x", MaxNameLen),
			"  listen: 127.0.0.1:9000",
			"  subsets: {"+strings.Repeat("y", MaxNameLen)+": {endpoints: [10.0.0.1:1]}}",
		), func(t *testing.T, c *Config) {
			if len(c.Services[0].Name) != MaxNameLen {
				t.Errorf("name %q", c.Services[0].Name)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("routes.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

// limitsYAML returns a config with the given numbers of services, subsets per
// service and endpoints in the last subset of each service.
func limitsYAML(services, subsets, endpoints int) string {
	var b strings.Builder
	b.WriteString("services:\n")
	for i := range services {
		fmt.Fprintf(&b, "- name: s%d\n  listen: 127.0.0.1:%d\n  subsets:\n", i, 1000+i)
		for j := range subsets {
			fmt.Fprintf(&b, "    v%d: {endpoints: [", j)
			n := 1
			if j == subsets-1 {
				n = endpoints
			}
			for k := range n {
				if k > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "10.%d.%d.%d:80", j, k/250, k%250+1)
			}
			b.WriteString("]}\n")
		}
	}
	return b.String()
}

// svcRest is a minimal valid service body, used after the lines under test.
const svcRest = "  subsets: {v1: {endpoints: [10.0.0.1:1]}}"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		line  int
		field string
		msg   string // substring of the message
	}{
		// YAML syntax and types.
		{"syntax error", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  mode: a: b",
		), 4, "", "invalid yaml: mapping values are not allowed"},
		{"tab indentation", lines(
			"services:",
			"\t- name: a",
		), 2, "", "invalid yaml: found character that cannot start any token"},
		{"a document of several with no services", lines(
			"services: [{name: a, listen: 127.0.0.1:1, subsets: {v1: {endpoints: [10.0.0.1:1]}}}]",
			"---",
			"services: []",
		), 3, "services", "no services"},
		{"top level is a list", lines(
			"- name: a",
		), 1, "", "expected a mapping, got a sequence"},
		{"services is a mapping", lines(
			"services:",
			"  name: a",
		), 2, "services", "expected a sequence, got a mapping"},
		{"service is a string", lines(
			"services:",
			"- tcp-echo",
		), 2, "services[0]", `expected a mapping, got string "tcp-echo"`},
		{"subsets is a list", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"  - v1: {endpoints: [10.0.0.1:1]}",
		), 5, "services[0].subsets", "expected a mapping of subset names, got a sequence"},
		{"subset is a list", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: [10.0.0.1:1]",
		), 5, "services[0].subsets.v1", "expected a mapping, got a sequence"},
		{"endpoints is a string", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {endpoints: 10.0.0.1:1}",
		), 5, "services[0].subsets.v1.endpoints", `expected a sequence of addresses, got string "10.0.0.1:1"`},
		{"endpoint is a mapping", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1:",
			"      endpoints:",
			"      - {ip: 10.0.0.1}",
		), 7, "services[0].subsets.v1.endpoints[0]", "expected an IP:PORT address, got a mapping"},
		{"route is a mapping", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route: {v1: 100}",
		), 5, "services[0].route", "expected a sequence, got a mapping"},
		{"route entry is a string", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - v1",
		), 6, "services[0].route[0]", `expected a mapping, got string "v1"`},
		{"name is a list", lines(
			"services:",
			"- name: [a]",
			"  listen: 127.0.0.1:9000",
			svcRest,
		), 2, "services[0].name", "expected a name, got a sequence"},
		{"affinity is a string", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  affinity: client",
			svcRest,
		), 4, "services[0].affinity", `expected a mapping, got string "client"`},

		// Unknown and duplicate fields.
		{"unknown top-level field", lines(
			"services: [{name: a, listen: 127.0.0.1:9000, subsets: {v1: {endpoints: [10.0.0.1:1]}}}]",
			"colour: red",
		), 2, "colour", `unknown field "colour"`},
		{"unknown service field", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"",
			"",
			"  colour: red",
		), 7, "services[0].colour", `unknown field "colour"`},
		{"unknown subset field", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {endpoints: [10.0.0.1:1], labels: {version: v1}}",
		), 5, "services[0].subsets.v1.labels", `unknown field "labels"`},
		{"unknown route field", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - subset: v1",
			"    weight: 1",
			"    destination: x",
		), 8, "services[0].route[0].destination", `unknown field "destination"`},
		{"unknown affinity field", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  affinity: {key: client, cookie: x}",
			svcRest,
		), 4, "services[0].affinity.cookie", `unknown field "cookie"`},
		{"duplicate service field", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  name: b",
			svcRest,
		), 4, "services[0].name", `duplicate key "name" (first at line 2)`},
		{"duplicate top-level field", lines(
			"services: [{name: a, listen: 127.0.0.1:9000, subsets: {v1: {endpoints: [10.0.0.1:1]}}}]",
			"services: []",
		), 2, "services", `duplicate key "services" (first at line 1)`},

		// Duplicates across the file.
		{"duplicate service", lines(
			"services:",
			"- name: tcp-echo",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"- name: tcp-echo",
			"  listen: 127.0.0.1:9001",
			svcRest,
		), 5, "services[1].name", `duplicate service "tcp-echo" (first at line 2)`},
		{"duplicate subset", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {endpoints: [10.0.0.1:1]}",
			"    v2: {endpoints: [10.0.0.2:1]}",
			"    v1: {endpoints: [10.0.0.3:1]}",
		), 7, "services[0].subsets.v1", `duplicate subset "v1" (first at line 5)`},
		{"subset routed twice", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}, v2: {endpoints: [10.0.0.2:1]}}",
			"  route:",
			"  - {subset: v1, weight: 50}",
			"  - {subset: v2, weight: 25}",
			"  - {subset: v1, weight: 25}",
		), 8, "services[0].route[2].subset", `subset "v1" is routed more than once (first at line 6)`},
		{"same frontend twice", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.100:9000",
			svcRest,
			"- name: b",
			"  listen: 0.0.0.0:9000",
			svcRest,
			"- name: c",
			"  listen: 127.0.0.100:9000",
			svcRest,
		), 9, "services[2].listen", `listen address 127.0.0.100:9000 is already used by service "a" (line 3)`},
		{"same frontend, name after listen", lines(
			"services:",
			"- listen: '[::]:9000'",
			"  name: a",
			svcRest,
			"- listen: '[::]:9000'",
			"  name: b",
			svcRest,
		), 5, "services[1].listen", `listen address [::]:9000 is already used by service "a" (line 2)`},
		{"same frontend via mapped address", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"- name: b",
			"  listen: '[::ffff:127.0.0.1]:9000'",
			svcRest,
		), 6, "services[1].listen", `listen address 127.0.0.1:9000 is already used by service "a" (line 3)`},
		{"duplicate endpoint", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1:",
			"      endpoints:",
			"      - 10.0.0.1:1",
			"      - 10.0.0.2:1",
			"      - 10.0.0.1:1",
		), 9, "services[0].subsets.v1.endpoints[2]", "duplicate endpoint 10.0.0.1:1 (first at line 7)"},

		// Routes.
		{"route to undefined subset", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: v1, weight: 50}",
			"  - {subset: v3, weight: 50}",
		), 7, "services[0].route[1].subset", `subset "v3" is not defined in subsets`},
		{"route before subsets", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  route:",
			"  - {subset: v2, weight: 50}",
			"  subsets:",
			"    v1: {endpoints: [10.0.0.1:1]}",
			"    v1: {endpoints: [10.0.0.1:1]}",
		), 5, "services[0].route[0].subset", `subset "v2" is not defined in subsets`},
		{"route subset missing", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {weight: 50}",
		), 6, "services[0].route[0].subset", "required field is missing"},
		{"route subset empty", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: '', weight: 50}",
		), 6, "services[0].route[0].subset", "must not be empty"},
		{"weight missing", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - subset: v1",
		), 6, "services[0].route[0].weight", "required field is missing"},
		{"weight negative", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: v1, weight: -1}",
		), 6, "services[0].route[0].weight", "weight -1 is out of range 0-18446744073709551615"},
		{"weight too large", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: v1, weight: 18446744073709551616}",
		), 6, "services[0].route[0].weight", "weight 18446744073709551616 is out of range 0-18446744073709551615"},
		{"weight far too large", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: v1, weight: 99999999999999999999999999}",
		), 6, "services[0].route[0].weight", "is out of range 0-18446744073709551615"},
		{"weight fraction", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: v1, weight: 2.5}",
		), 6, "services[0].route[0].weight", "weight must be an integer, got number 2.5"},
		{"weight string", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			`  - {subset: v1, weight: "abc"}`,
		), 6, "services[0].route[0].weight", `weight must be an integer, got string "abc"`},
		{"weight quoted number", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			`  - {subset: v1, weight: "80"}`,
		), 6, "services[0].route[0].weight", `weight must be an integer, got string "80"`},
		{"weight bool", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: v1, weight: true}",
		), 6, "services[0].route[0].weight", "weight must be an integer, got boolean true"},
		{"weight null", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: v1, weight: }",
		), 6, "services[0].route[0].weight", "weight must be an integer, got null"},
		{"weight list", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			svcRest,
			"  route:",
			"  - {subset: v1, weight: [1]}",
		), 6, "services[0].route[0].weight", "weight must be an integer, got a sequence"},
		// Addresses.
		{"listen without port", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1",
			svcRest,
		), 3, "services[0].listen", `invalid address "127.0.0.1": missing port`},
		{"listen port only", lines(
			"services:",
			"- name: a",
			"  listen: 9000",
			svcRest,
		), 3, "services[0].listen", `invalid address "9000": missing ip address (use 0.0.0.0:9000 or [::]:9000`},
		{"listen hostname", lines(
			"services:",
			"- name: a",
			"  listen: localhost:9000",
			svcRest,
		), 3, "services[0].listen", `invalid address "localhost:9000": "localhost" is not an ip address (hostnames are not allowed)`},
		{"endpoint hostname", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {endpoints: [10.0.0.1:1, tcp-echo-v2.default.svc:9002]}",
		), 5, "services[0].subsets.v1.endpoints[1]", `"tcp-echo-v2.default.svc" is not an ip address (hostnames are not allowed)`},
		{"listen port 0", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:0",
			svcRest,
		), 3, "services[0].listen", "port 0 is out of range 1-65535"},
		{"endpoint port too large", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {endpoints: [10.0.0.1:65536]}",
		), 5, "services[0].subsets.v1.endpoints[0]", "port 65536 is out of range 1-65535"},
		{"port not a number", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:http",
			svcRest,
		), 3, "services[0].listen", `port "http" is not a number`},
		{"ipv6 without brackets", lines(
			"services:",
			"- name: a",
			"  listen: ::1:9000",
			svcRest,
		), 3, "services[0].listen", `invalid address "::1:9000": ipv6 addresses must be in brackets`},
		{"ipv6 zone", lines(
			"services:",
			"- name: a",
			"  listen: '[fe80::1%eth0]:9000'",
			svcRest,
		), 3, "services[0].listen", "ipv6 zones are not allowed"},
		{"ipv4 in brackets", lines(
			"services:",
			"- name: a",
			"  listen: '[127.0.0.1]:9000'",
			svcRest,
		), 3, "services[0].listen", "ipv4 addresses must not be in brackets"},
		{"unspecified ipv4 endpoint", lines(
			"services:",
			"- name: a",
			"  listen: 0.0.0.0:9000",
			"  subsets:",
			"    v1: {endpoints: [0.0.0.0:9001]}",
		), 5, "services[0].subsets.v1.endpoints[0]", "the unspecified address 0.0.0.0 is only allowed for listen"},
		{"unspecified ipv6 endpoint", lines(
			"services:",
			"- name: a",
			"  listen: 0.0.0.0:9000",
			"  subsets:",
			"    v1:",
			"      endpoints:",
			"      - '[::]:9001'",
		), 7, "services[0].subsets.v1.endpoints[0]", "the unspecified address :: is only allowed for listen"},
		{"empty listen", lines(
			"services:",
			"- name: a",
			"  listen: ''",
			svcRest,
		), 3, "services[0].listen", "address must not be empty"},

		// Mode, policy, affinity.
		{"bad mode", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  mode: fast",
			svcRest,
		), 4, "services[0].mode", `invalid mode "fast" (allowed: auto, lookup, connect, proxy)`},
		{"bad policy", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  policy: least_conn",
			svcRest,
		), 4, "services[0].policy", `invalid policy "least_conn" (allowed: roundrobin, random)`},
		{"affinity bad key", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  affinity:",
			"    key: cookie",
			svcRest,
		), 5, "services[0].affinity.key", `invalid affinity key "cookie" (allowed: client)`},
		{"affinity key missing", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  affinity:",
			"    ttl: 10s",
			svcRest,
		), 5, "services[0].affinity.key", "required field is missing"},
		{"affinity zero ttl", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  affinity: {key: client, ttl: 0s}",
			svcRest,
		), 4, "services[0].affinity.ttl", "ttl must be greater than 0, got 0s"},
		{"affinity negative ttl", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  affinity: {key: client, ttl: -5s}",
			svcRest,
		), 4, "services[0].affinity.ttl", "ttl must be greater than 0"},
		{"affinity ttl without unit", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  affinity: {key: client, ttl: 30}",
			svcRest,
		), 4, "services[0].affinity.ttl", `invalid duration "30"`},

		// Health checks and failover.
		{"health timeout above interval", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  health: {interval: 1s, timeout: 2s}",
			svcRest,
		), 4, "services[0].health.timeout", "timeout 2s is longer than the interval 1s"},
		{"health default timeout above interval", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  health:",
			"    interval: 200ms",
			svcRest,
		), 5, "services[0].health.timeout", "timeout 1s is longer than the interval 200ms"},
		{"health zero rise", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  health: {rise: 0}",
			svcRest,
		), 4, "services[0].health.rise", `invalid count "0" (a whole number from 1 to 100)`},
		{"health fall not a number", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  health: {fall: many}",
			svcRest,
		), 4, "services[0].health.fall", `invalid count "many"`},
		{"health bad interval", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  health: {interval: 5}",
			svcRest,
		), 4, "services[0].health.interval", `invalid duration "5"`},
		{"health unknown field", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  health: {port: 80}",
			svcRest,
		), 4, "services[0].health.port", "unknown field"},
		{"health passive not a bool", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  health: {passive: yes}",
			svcRest,
		), 4, "services[0].health.passive", `invalid value "yes" (allowed: true, false)`},
		{"failover not a bool", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  failover: no",
			svcRest,
		), 4, "services[0].failover", `invalid value "no" (allowed: true, false)`},

		// Missing and empty fields.
		{"missing name", lines(
			"services:",
			"- listen: 127.0.0.1:9000",
			svcRest,
		), 2, "services[0].name", "required field is missing"},
		{"empty name", lines(
			"services:",
			"- name:",
			"  listen: 127.0.0.1:9000",
			svcRest,
		), 2, "services[0].name", "name must not be empty"},
		{"missing listen", lines(
			"services:",
			"- name: a",
			svcRest,
		), 2, "services[0].listen", "required field is missing"},
		{"missing subsets", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  route: [{subset: v1, weight: 1}]",
		), 2, "services[0].subsets", "required field is missing"},
		{"empty subsets", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets: {}",
		), 4, "services[0].subsets", "service has no subsets"},
		{"null subsets", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
		), 4, "services[0].subsets", "service has no subsets"},
		{"subset without endpoints field", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {}",
		), 5, "services[0].subsets.v1.endpoints", "required field is missing"},
		{"subset with empty endpoints", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {endpoints: []}",
		), 5, "services[0].subsets.v1.endpoints", "subset has no endpoints"},
		{"null subset", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1:",
		), 5, "services[0].subsets.v1", "subset has no endpoints"},

		// Names.
		{"bad service name", lines(
			"services:",
			"- name: tcp echo",
			"  listen: 127.0.0.1:9000",
			svcRest,
		), 2, "services[0].name", `invalid name "tcp echo"`},
		{"service name starts with dash", lines(
			"services:",
			"- name: -echo",
			"  listen: 127.0.0.1:9000",
			svcRest,
		), 2, "services[0].name", `invalid name "-echo"`},
		{"service name ends with dot", lines(
			"services:",
			"- name: echo.",
			"  listen: 127.0.0.1:9000",
			svcRest,
		), 2, "services[0].name", `invalid name "echo."`},
		{"service name too long", lines(
			"services:",
			"- name: "+strings.Repeat("x", MaxNameLen+1),
			"  listen: 127.0.0.1:9000",
			svcRest,
		), 2, "services[0].name", "is too long (64 bytes, max 63)"},
		{"bad subset name", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v/1: {endpoints: [10.0.0.1:1]}",
		), 5, `services[0].subsets["v/1"]`, `invalid name "v/1"`},
		{"subset name too long", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    "+strings.Repeat("v", MaxNameLen+1)+": {endpoints: [10.0.0.1:1]}",
		), 5, "services[0].subsets." + strings.Repeat("v", MaxNameLen+1), "is too long (64 bytes, max 63)"},

		// Limits.
		{"too many services", limitsYAML(MaxServices+1, 1, 1), 1 + 4*MaxServices + 1, "services[16384]", "too many services (max 16384)"},
		{"too many subsets", limitsYAML(1, MaxSubsets+1, 1), 5 + MaxSubsets, "services[0].subsets.v16", "too many subsets (max 16)"},
		{"too many endpoints", limitsYAML(1, 1, MaxEndpoints+1), 5, "services[0].subsets.v0.endpoints[1024]", "too many endpoints (max 1024)"},

		// The first problem in file order wins.
		{"first error in file order", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  route:",
			"  - {subset: v1, weight: abc}",
			"  subsets:",
			"    v1: {endpoints: [bad]}",
			"- name: b",
			"  colour: red",
		), 5, "services[0].route[0].weight", "weight must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("routes.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error, got %+v", cfg)
			}
			prefix := fmt.Sprintf("routes.yaml:%d: ", tt.line)
			if tt.field != "" {
				prefix += tt.field + ": "
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(strings.TrimPrefix(msg, prefix), tt.msg) {
				t.Fatalf("error %q\nwant   %q + ...%q...", msg, prefix, tt.msg)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error has several lines: %q", msg)
			}
			var e *Error
			if !errors.As(err, &e) || e.Path != "routes.yaml" || e.Line != tt.line || e.Field != tt.field {
				t.Errorf("error = %#v", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("services: [{name: a, listen: '[::]:1', subsets: {v: {endpoints: ['[::1]:2']}}, route: [{subset: v, weight: 1}]}]"))
	f.Add([]byte("a: &x [*x]\nb: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") || strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("bad error %q", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not an *Error: %v", err)
			}
			return
		}
		if len(cfg.Services) == 0 || len(cfg.Services) > MaxServices {
			t.Fatalf("%d services", len(cfg.Services))
		}
		total := 0
		for _, s := range cfg.Services {
			if s.Name == "" || !s.Listen.IsValid() || len(s.Subsets) == 0 || len(s.Subsets) > MaxSubsets {
				t.Fatalf("bad service %+v", s)
			}
			for _, sub := range s.Subsets {
				if len(sub.Endpoints) == 0 || len(sub.Endpoints) > MaxEndpoints {
					t.Fatalf("bad subset %+v", sub)
				}
				total += len(sub.Endpoints)
			}
		}
		if total > MaxTotalEndpoints {
			t.Fatalf("%d endpoints", total)
		}
	})
}

func TestParseHealth(t *testing.T) {
	cfg, err := Parse("h.yaml", []byte(lines(
		"services:",
		"- name: a",
		"  listen: 127.0.0.1:9000",
		"  health: {interval: 500ms, timeout: 200ms, rise: 1, fall: 2, passive: false}",
		"  failover: false",
		"  subsets: {v1: {endpoints: [127.0.0.1:9001]}}",
		"- name: b",
		"  listen: 127.0.0.1:9100",
		"  health: {}",
		"  subsets: {v1: {endpoints: [127.0.0.1:9101]}}",
	)))
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Services[0], cfg.Services[1]
	want := Health{Interval: 500 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 2}
	if a.Health == nil || *a.Health != want || a.Failover {
		t.Errorf("a: health %+v failover %v, want %+v and false", a.Health, a.Failover, want)
	}
	def := Health{Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Rise: DefaultHealthRise, Fall: DefaultHealthFall, Passive: true}
	if b.Health == nil || *b.Health != def || !b.Failover {
		t.Errorf("b: health %+v failover %v, want defaults %+v and true", b.Health, b.Failover, def)
	}
}
