package config

import (
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const exportSource = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  policy: random
  affinity: {key: client}
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002, 127.0.0.1:9012]}
  route:
  - {subset: v2, weight: 20}
  - {subset: v1, weight: 80}
  health: {interval: 1m30s}
  failover: false
  accounting: false
  claim: true
- name: v6
  listen: '[::]:9100'
  mode: connect
  subsets:
    blue: {endpoints: ['[fd00::1]:80', 10.0.0.1:80]}
    green: {endpoints: ['[fd00::2]:80']}
`

const exportWant = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: auto
  policy: random
  affinity: {key: client, ttl: 30s}
  health: {interval: 1m30s, timeout: 1s, rise: 2, fall: 3, passive: true}
  failover: false
  accounting: false
  claim: true
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002, 127.0.0.1:9012]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
- name: v6
  listen: '[::]:9100'
  mode: connect
  policy: roundrobin
  subsets:
    blue: {endpoints: ['[fd00::1]:80', 10.0.0.1:80]}
    green: {endpoints: ['[fd00::2]:80']}
  route:
  - {subset: blue, weight: 0}
  - {subset: green, weight: 0}
`

func TestMarshalFormat(t *testing.T) {
	cfg, err := Parse("routes.yaml", []byte(exportSource))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != exportWant {
		t.Fatalf("got\n%s\nwant\n%s", out, exportWant)
	}
	// A status func that has nothing to say changes nothing.
	out, err = Marshal(cfg, func(string) any { return nil })
	if err != nil || string(out) != exportWant {
		t.Fatalf("with a nil status: %v\n%s", err, out)
	}

	status := func(name string) any {
		if name != "tcp-echo" {
			return nil
		}
		return map[string]any{"mode": "lookup", "refused": 0}
	}
	out, err = Marshal(cfg, status)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(exportWant, "  - {subset: v2, weight: 20}\n",
		"  - {subset: v2, weight: 20}\n  status:\n    mode: lookup\n    refused: 0\n", 1)
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

// roundTrip checks that Parse reads back what Marshal wrote of cfg.
func roundTrip(t *testing.T, cfg *Config, status func(string) any) []byte {
	t.Helper()
	out, err := Marshal(cfg, status)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("out.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := *cfg
	want.Services = append([]Service(nil), cfg.Services...)
	stripLines(&want)
	stripLines(got)
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("round trip changed the config:\n%s\ngot  %+v\nwant %+v", out, got, &want)
	}
	return out
}

func TestMarshalRoundTrip(t *testing.T) {
	sources := []string{
		example,
		exportSource,
		limitsYAML(MaxServices, 1, MaxTotalEndpoints/MaxServices),
		limitsYAML(1, MaxSubsets, MaxEndpoints),
		lines(
			"services:",
			"- name: a",
			"  listen: 0.0.0.0:1",
			"  mode: proxy",
			"  affinity: {key: client, ttl: 1h2m3.5s}",
			"  health: {interval: 500ms, timeout: 250ms, rise: 1, fall: 100, passive: false}",
			"  subsets:",
			"    zeta: {endpoints: [10.0.0.1:65535]}",
			"    alpha: {endpoints: ['[2001:db8::1]:1', '[fe80::1]:2']}",
			"    Mid_1.x: {endpoints: ['[::ffff:10.0.0.3]:3']}",
			"  route:",
			"  - {subset: alpha, weight: 18446744073709551615}",
			"  - {subset: Mid_1.x, weight: 0x10}",
			"- name: b",
			"  listen: '[::1]:9000'",
			"  mode: lookup",
			"  claim: false",
			"  failover: true",
			"  health: {}",
			"  subsets: {v1: {endpoints: ['[::1]:9001']}}",
			"  route: [{subset: v1, weight: 1}]",
			"  status: {ignored: true}",
		),
	}
	for _, src := range sources {
		cfg, err := Parse("routes.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, cfg, nil)
		roundTrip(t, cfg, func(name string) any { return map[string]string{"name": name} })
	}

	// Names and durations that YAML would not read back as strings if
	// written plain.
	eps := []netip.AddrPort{ap("10.0.0.1:80")}
	var svcs []Service
	for i, name := range []string{"true", "null", "1e3", "0x10", "1.0", "no", "Yes", "0", "inf", "nan", "1_000", "0o7", "a.b-c_d"} {
		svcs = append(svcs, Service{
			Name:     name,
			Listen:   netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i)),
			Mode:     ModeLookup,
			Policy:   PolicyRoundRobin,
			Failover: true, Accounting: i%2 == 0,
			Affinity: &Affinity{Key: AffinityKeyClient, TTL: 1500 * time.Nanosecond},
			Health:   &Health{Interval: time.Hour, Timeout: time.Millisecond, Rise: 3, Fall: 4},
			Subsets:  []Subset{{Name: name, Endpoints: eps, Weight: math.MaxUint64}, {Name: "x" + name, Endpoints: eps}},
		})
	}
	roundTrip(t, &Config{Services: svcs}, nil)
}

func TestMarshalStatus(t *testing.T) {
	cfg, err := Parse("routes.yaml", []byte(exportSource))
	if err != nil {
		t.Fatal(err)
	}
	type endpoint struct {
		Address string `yaml:"address"`
		Health  string `yaml:"health"`
		Active  uint64 `yaml:"active"`
	}
	type subset struct {
		Name      string     `yaml:"name"`
		Percent   float64    `yaml:"percent"`
		Endpoints []endpoint `yaml:"endpoints"`
	}
	type live struct {
		Mode    string   `yaml:"mode"`
		Reason  string   `yaml:"reason"`
		Refused uint64   `yaml:"refused"`
		Subsets []subset `yaml:"subsets"`
	}
	node := &yaml.Node{}
	if err := node.Encode([]string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	values := []any{
		live{
			Mode: "lookup", Reason: "every endpoint is a local listener: mode auto; #1 [x]",
			Subsets: []subset{{Name: "v1", Percent: 80, Endpoints: []endpoint{{Address: "[::1]:9001", Health: "up", Active: 3}}}},
		},
		&live{Mode: "connect"},
		map[string]any{},
		[]any{},
		[]int{1, 2, 3},
		"a plain string",
		"multi\nline\n  indented\n\nwith a blank line\n",
		"   leading spaces\nand more",
		"trailing spaces   \n   \n\tand a tab\n",
		map[string]any{"text": "   indented\nblock\n", "list": []string{"x\ny", "z"}},
		strings.Repeat("long words ", 30),
		42,
		true,
		node,
		map[string]any{"nested": map[string]any{"deeper": []any{map[string]any{"x": "y"}, "- not a list", "key: value"}}},
	}
	for _, v := range values {
		out := roundTrip(t, cfg, func(name string) any {
			if name == "v6" {
				return v
			}
			return nil
		})
		// The status is the last key of the service and reads back as
		// what was given.
		var doc struct {
			Services []yaml.Node `yaml:"services"`
		}
		if err := yaml.Unmarshal(out, &doc); err != nil {
			t.Fatal(err)
		}
		if n := doc.Services[0].Content; n[len(n)-2].Value == "status" {
			t.Fatalf("status on the wrong service:\n%s", out)
		}
		svc := doc.Services[1].Content
		if svc[len(svc)-2].Value != "status" {
			t.Fatalf("status is not last:\n%s", out)
		}
		want, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := yaml.Marshal(svc[len(svc)-1])
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("status reads back as\n%s\nwant\n%s\nin\n%s", got, want, out)
		}
	}
}

func TestMarshalErrors(t *testing.T) {
	if _, err := Marshal(nil, nil); err == nil || err.Error() != "marshal route config: no config" {
		t.Errorf("Marshal(nil) = %v", err)
	}
	out, err := Marshal(&Config{}, nil)
	if err != nil || string(out) != "services: []\n" {
		t.Errorf("Marshal of no services = %q, %v", out, err)
	}
	bad := &Config{Services: []Service{{Name: "a", Subsets: []Subset{{Name: "v1", Endpoints: []netip.AddrPort{ap("10.0.0.1:1")}}}}}}
	if _, err := Marshal(bad, nil); err == nil || err.Error() != "marshal route config: services[0] (a): listen: address is not set" {
		t.Errorf("Marshal without listen = %v", err)
	}
	bad.Services[0].Listen = ap("127.0.0.1:1")
	bad.Services[0].Subsets[0].Endpoints = append(bad.Services[0].Subsets[0].Endpoints, netip.AddrPort{})
	if _, err := Marshal(bad, nil); err == nil || err.Error() != "marshal route config: services[0] (a): subset v1: endpoint 1: address is not set" {
		t.Errorf("Marshal with an unset endpoint = %v", err)
	}
	cfg, err := Parse("routes.yaml", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	// yaml.v3 writes a list item with leading spaces in a way it cannot
	// read back: an error, not a file that cannot be applied.
	_, err = Marshal(cfg, func(string) any { return []string{"  x\ny"} })
	if err == nil || !strings.HasPrefix(err.Error(), "marshal route config: services[0] (tcp-echo): status: ") {
		t.Errorf("Marshal of a status yaml cannot read back = %v", err)
	}
	_, err = Marshal(cfg, func(string) any { return make(chan int) })
	if err == nil || !strings.HasPrefix(err.Error(), "marshal route config: services[0] (tcp-echo): status: ") {
		t.Errorf("Marshal of a status yaml cannot write = %v", err)
	}
}

func FuzzMarshal(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte(exportSource))
	f.Add([]byte("services: [{name: 'true', listen: '[::]:1', health: {interval: 1h}, subsets: {'1e3': {endpoints: ['[::1]:2']}}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err != nil {
			return
		}
		roundTrip(t, cfg, func(name string) any { return name })
	})
}
