package test

import (
	"maps"
	"testing"
)

// Frontends of both hook modes on one port, and a wildcard connect one:
// each hook steers only its own mode's (a connect() to the lookup frontend
// is left to sk_lookup, past the connect filter), exactly by weight.
const filterConfig = `services:
- name: near
  listen: 127.0.0.100:9000
  subsets:
    v1: {endpoints: [127.0.0.1:9101]}
    v2: {endpoints: [127.0.0.1:9102]}
  route:
  - {subset: v1, weight: 3}
  - {subset: v2, weight: 1}
- name: far
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
    v2: {endpoints: [10.0.0.2:9002]}
  route:
  - {subset: v1, weight: 3}
  - {subset: v2, weight: 1}
- name: anywhere
  listen: 0.0.0.0:9300
  mode: connect
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
    v2: {endpoints: [10.0.0.2:9002]}
  route:
  - {subset: v1, weight: 1}
  - {subset: v2, weight: 1}
`

func TestConnectFilterModesShareAPort(t *testing.T) {
	env := remotePair(t)
	env.Echo("127.0.0.1:9101", "near-one")
	env.Echo("127.0.0.1:9102", "near-two")
	tg := env.Target()
	apply(t, tg, filterConfig)

	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			addr string
			want map[string]int
		}{
			{"127.0.0.100:9000", map[string]int{"near-one": 30, "near-two": 10}},
			{"10.96.0.10:9000", map[string]int{"one": 30, "two": 10}},
			{"10.96.0.77:9300", map[string]int{"one": 20, "two": 20}},
			{"127.0.0.1:9102", map[string]int{"near-two": 40}}, // not a frontend
		} {
			if got := env.Count(c.addr, 40); !maps.Equal(got, c.want) {
				t.Fatalf("%s: %s: %v, want %v", when, c.addr, got, c.want)
			}
		}
	}
	check("filter written")

	// A filter map an upgrade has just created is empty until the apply
	// writes it: with its ready word clear, the connect hooks look every
	// frontend port up in the frontends hash, and steer as before.
	set, err := tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var ready uint64 // word 0
	if err := set.ConnectFilter.Lookup(uint32(0), &ready); err != nil || ready != 1 {
		t.Fatalf("ready word %d (%v), want 1", ready, err)
	}
	n := set.ConnectFilter.MaxEntries()
	zero := make([]uint64, n)
	keys := make([]uint32, n)
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := set.ConnectFilter.BatchUpdate(keys, zero, nil); err != nil {
		t.Fatal(err)
	}
	check("filter empty and not ready")
}
