package test

import (
	"maps"
	"testing"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

const echoConfig = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: lookup
  policy: roundrobin
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

func parse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("routes.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func apply(t *testing.T, tg *loader.Target, text string) {
	t.Helper()
	if _, err := tg.Apply(parse(t, text)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Down() })
}

func TestLookupSplitsExactly(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")
	tg := env.Target()
	apply(t, tg, echoConfig)

	got := env.Count("127.0.0.100:9000", 1000)
	if want := map[string]int{"one": 800, "two": 200}; !maps.Equal(got, want) {
		t.Fatalf("1000 connections went %v, want %v", got, want)
	}
}
