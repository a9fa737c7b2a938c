package test

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

const frontend = "127.0.0.100:9000"

const echoConfig = testenv.EchoConfig

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
	if _, err := tg.Apply(loader.Fixed(parse(t, text)), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Down() })
}

// echoPair starts v1 ("one") and v2 ("two") as in Istio's task.
func echoPair(env *testenv.Env) {
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")
}

func setWeights(t *testing.T, tg *loader.Target, v1, v2 uint64) {
	t.Helper()
	if _, err := tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: v1}, {Subset: "v2", Weight: v2}}); err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, tg *loader.Target) loader.ServiceStatus {
	t.Helper()
	st, err := tg.Status("tcp-echo")
	if err != nil {
		t.Fatal(err)
	}
	return st.Services[0]
}

func TestLookupSplitsExactly(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)

	got := env.Count(frontend, 1000)
	if want := map[string]int{"one": 800, "two": 200}; !maps.Equal(got, want) {
		t.Fatalf("1000 connections went %v, want %v", got, want)
	}
	s := status(t, tg)
	if s.Subsets[0].Connections != 800 || s.Subsets[1].Connections != 200 ||
		s.Subsets[0].Endpoints[0].Connections != 800 || s.Subsets[1].Endpoints[0].Connections != 200 {
		t.Fatalf("status counts %+v, want 800/200", s.Subsets)
	}
	if s.Subsets[0].Percent != 80 || s.Subsets[1].Percent != 20 || s.Mode != "lookup" || s.Listen != frontend {
		t.Fatalf("status %+v", s)
	}
}

// 80/20 is interleaved: one one two one one, not four ones then a two.
func TestLookupInterleaves(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)

	var order []string
	for range 10 {
		who, err := env.Ask(frontend)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, who)
	}
	want := strings.Fields("one one two one one one one two one one")
	if !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

// Endpoints of a subset take turns; growing a subset does not change its share.
func TestLookupEndpointsTakeTurns(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one-a")
	env.Echo("127.0.0.1:9011", "one-b")
	env.Echo("127.0.0.1:9021", "one-c")
	env.Echo("127.0.0.1:9002", "two")
	tg := env.Target()
	apply(t, tg, strings.Replace(echoConfig, "[127.0.0.1:9001]", "[127.0.0.1:9001, 127.0.0.1:9011, 127.0.0.1:9021]", 1))

	got := env.Count(frontend, 600)
	want := map[string]int{"one-a": 160, "one-b": 160, "one-c": 160, "two": 120}
	if !maps.Equal(got, want) {
		t.Fatalf("600 connections went %v, want %v", got, want)
	}
	s := status(t, tg)
	for i, ep := range s.Subsets[0].Endpoints {
		if ep.Connections != 160 {
			t.Errorf("status endpoint %d %s: %d connections, want 160", i, ep.Address, ep.Connections)
		}
	}
}

// A live weight change steers the next connections by the new weights while
// a connection established before keeps working.
func TestLookupLiveWeightChange(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)

	long, err := env.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if reply, err := echo.Ask(long, "before"); err != nil || reply != "one before" {
		t.Fatalf("long-lived connection: %q, %v", reply, err)
	}

	setWeights(t, tg, 0, 100)
	if got := env.Count(frontend, 100); !maps.Equal(got, map[string]int{"two": 100}) {
		t.Fatalf("after v1=0 v2=100: %v, want all 100 to two", got)
	}
	setWeights(t, tg, 1, 1)
	if got := env.Count(frontend, 100); !maps.Equal(got, map[string]int{"one": 50, "two": 50}) {
		t.Fatalf("after v1=1 v2=1: %v, want 50/50", got)
	}
	for i := range 3 {
		line := fmt.Sprintf("after-%d", i)
		if reply, err := echo.Ask(long, line); err != nil || reply != "one "+line {
			t.Fatalf("long-lived connection after weight changes: %q, %v", reply, err)
		}
	}
	s := status(t, tg)
	if s.Subsets[0].Weight != 1 || s.Subsets[1].Weight != 1 || s.Subsets[0].Connections != 51 || s.Subsets[1].Connections != 150 {
		t.Fatalf("status %+v, want weights 1/1 and 51/150 connections", s.Subsets)
	}
}

func refused(t *testing.T, env *testenv.Env) {
	t.Helper()
	start := time.Now()
	_, err := env.Dial(frontend)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want connection refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v: the SYN was dropped instead of reset", d)
	}
}

func TestLookupAllWeightsZeroRefuses(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)

	setWeights(t, tg, 0, 0)
	for range 5 {
		refused(t, env)
	}
	if s := status(t, tg); s.Refused != 5 || s.Subsets[0].Percent != 0 || s.Subsets[1].Percent != 0 {
		t.Fatalf("status %+v, want 5 refused and 0%% each", s)
	}
	setWeights(t, tg, 0, 1)
	if got := env.Count(frontend, 3); !maps.Equal(got, map[string]int{"two": 3}) {
		t.Fatalf("after v2=1: %v", got)
	}
}

// When the endpoints' listeners close, connections are refused at once;
// when one of several closes, its subset's others take over.
func TestLookupEndpointsGone(t *testing.T) {
	env := testenv.New(t)
	a := env.Echo("127.0.0.1:9001", "one-a")
	b := env.Echo("127.0.0.1:9011", "one-b")
	tg := env.Target()
	apply(t, tg, `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  subsets:
    v1: {endpoints: [127.0.0.1:9001, 127.0.0.1:9011]}
  route:
  - {subset: v1, weight: 1}
`)
	a.Close()
	if got := env.Count(frontend, 4); !maps.Equal(got, map[string]int{"one-b": 4}) {
		t.Fatalf("with one-a closed: %v, want all to one-b", got)
	}
	b.Close()
	refused(t, env)
}

// Every connection made while tables are swapped goes where one of the two
// complete tables sends it. The tables move endpoint "mixed" between
// subsets, so a reader that saw half of each table would reach it.
func TestLookupTableSwapIsAtomic(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "first")
	env.Echo("127.0.0.1:9002", "second")
	env.Echo("127.0.0.1:9003", "mixed")
	tg := env.Target()
	tableA := parse(t, `services:
- name: swap
  listen: 127.0.0.100:9000
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9003]}
  route:
  - {subset: v1, weight: 1}
`)
	tableB := parse(t, `services:
- name: swap
  listen: 127.0.0.100:9000
  subsets:
    v1: {endpoints: [127.0.0.1:9003]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v2, weight: 1}
`)
	if _, err := tg.Apply(loader.Fixed(tableA), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Down() })

	// Swap back and forth in the background; connect until both at least
	// 20 swaps and 1500 connections are done.
	var swaps atomic.Int64
	stop := make(chan struct{})
	swapErr := make(chan error, 1)
	go func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				swapErr <- nil
				return
			default:
			}
			cfg := tableA
			if n%2 == 0 {
				cfg = tableB
			}
			if _, err := tg.Apply(loader.Fixed(cfg), loader.ApplyOptions{}); err != nil {
				swapErr <- err
				return
			}
			swaps.Add(1)
		}
	}()
	got := map[string]int{}
	total := 0
	for ; total < 1500 || swaps.Load() < 20; total++ {
		who, err := env.Ask(frontend)
		if err != nil {
			t.Fatalf("connection %d: %v", total, err)
		}
		got[who]++
	}
	close(stop)
	if err := <-swapErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections across %d table swaps: %v", total, swaps.Load(), got)
	if got["mixed"] != 0 || got["first"]+got["second"] != total || got["first"] == 0 || got["second"] == 0 {
		t.Fatalf("connections went %v: want only first and second, both used", got)
	}
}

func TestLookupIPv6AndWildcard(t *testing.T) {
	env := testenv.New(t)
	env.Echo("[::1]:9001", "one")
	env.Echo("[::1]:9002", "two")
	env.Echo("127.0.0.1:9101", "four-one")
	env.Echo("127.0.0.1:9102", "four-two")
	tg := env.Target()
	apply(t, tg, `services:
- name: six
  listen: "[::1]:9000"
  subsets:
    v1: {endpoints: ["[::1]:9001"]}
    v2: {endpoints: ["[::1]:9002"]}
  route:
  - {subset: v1, weight: 3}
  - {subset: v2, weight: 1}
- name: any
  listen: 0.0.0.0:9100
  subsets:
    v1: {endpoints: [127.0.0.1:9101]}
    v2: {endpoints: [127.0.0.1:9102]}
  route:
  - {subset: v1, weight: 1}
  - {subset: v2, weight: 1}
`)
	if got := env.Count("[::1]:9000", 40); !maps.Equal(got, map[string]int{"one": 30, "two": 10}) {
		t.Fatalf("IPv6 frontend: %v, want 30/10", got)
	}
	got := env.Count("127.0.0.1:9100", 10)
	for k, v := range env.Count("127.0.0.53:9100", 10) {
		got[k] += v
	}
	if !maps.Equal(got, map[string]int{"four-one": 10, "four-two": 10}) {
		t.Fatalf("wildcard frontend: %v, want 10/10", got)
	}
}

// Applying the same file again changes nothing, round-robin position included.
func TestApplyIsIdempotent(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)
	env.Count(frontend, 3) // one one two
	changes, err := tg.Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Action != "unchanged" {
		t.Fatalf("second apply: %+v, want tcp-echo unchanged", changes)
	}
	if got := env.Count(frontend, 7); !maps.Equal(got, map[string]int{"one": 6, "two": 1}) {
		t.Fatalf("after re-apply: %v, want the sequence to continue (6 one, 1 two)", got)
	}
}

// A bad file fails with its line number and leaves the kernel as it was.
func TestBadConfigChangesNothing(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)
	env.Count(frontend, 2)
	before := env.KernelState()

	// Valid YAML whose endpoint has no listener: found only when planning.
	_, err := tg.Apply(loader.Fixed(parse(t, strings.Replace(echoConfig, "127.0.0.1:9002", "127.0.0.1:9999", 1))), loader.ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "routes.yaml:8: services[0].subsets.v2.endpoints[0]") || !strings.Contains(err.Error(), "127.0.0.1:9999") {
		t.Fatalf("apply with a dead endpoint: %v", err)
	}
	// A good new service before a bad one: neither is applied.
	_, err = tg.Apply(loader.Fixed(parse(t, `services:
- name: other
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
  route:
  - {subset: v1, weight: 1}
`+strings.TrimPrefix(strings.Replace(echoConfig, "127.0.0.1:9001", "127.0.0.1:9998", 1), "services:\n"))), loader.ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "services[1].subsets.v1.endpoints[0]") || !strings.Contains(err.Error(), "127.0.0.1:9998") {
		t.Fatalf("apply with a good and a bad service: %v", err)
	}
	env.RequireUnchanged(before)
	if got := env.Count(frontend, 3); !maps.Equal(got, map[string]int{"one": 2, "two": 1}) {
		t.Fatalf("after failed applies: %v, want the old table to go on (two, one, one)", got)
	}
}

// A non-local frontend gets a local route; down removes it with everything else.
func TestDownLeavesNothing(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, strings.Replace(echoConfig, "127.0.0.100:9000", "192.0.2.10:9000", 1))
	if got := env.Count("192.0.2.10:9000", 5); !maps.Equal(got, map[string]int{"one": 4, "two": 1}) {
		t.Fatalf("non-local frontend: %v", got)
	}
	if !env.HasLocalRoute("192.0.2.10") {
		t.Fatal("no local route for 192.0.2.10 after apply")
	}
	progs := env.LookupPrograms()
	if len(progs) != 1 {
		t.Fatalf("sk_lookup programs attached after apply: %v, want 1", progs)
	}

	removed, err := tg.Down()
	if err != nil || !removed {
		t.Fatalf("down: %v, %v", removed, err)
	}
	if env.HasLocalRoute("192.0.2.10") {
		t.Fatal("local route left after down")
	}
	if progs := env.LookupPrograms(); len(progs) != 0 {
		t.Fatalf("sk_lookup programs left after down: %v", progs)
	}
	if _, err := os.Stat(filepath.Join(env.BPFFS, "tcpshift")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pins left after down: %v", err)
	}
	// The kernel frees a detached program after an RCU grace period.
	for _, id := range progs {
		for deadline := time.Now().Add(5 * time.Second); env.ProgramExists(id); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("program %d still loaded 5s after down", id)
			}
		}
	}
	if _, err := env.Dial("192.0.2.10:9000"); err == nil {
		t.Fatal("192.0.2.10:9000 still answers after down")
	}
	if removed, err := tg.Down(); err != nil || removed {
		t.Fatalf("second down: %v, %v; want nothing to do", removed, err)
	}
}

func TestApplyRemovesServices(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	env.Echo("127.0.0.1:9201", "other")
	tg := env.Target()
	apply(t, tg, echoConfig+`- name: other
  listen: 127.0.0.100:9200
  subsets:
    v1: {endpoints: [127.0.0.1:9201]}
  route:
  - {subset: v1, weight: 1}
`)
	if got := env.Count("127.0.0.100:9200", 2); !maps.Equal(got, map[string]int{"other": 2}) {
		t.Fatalf("other: %v", got)
	}
	changes, err := tg.Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(changes, func(c loader.Change) bool { return c.Service == "other" && c.Action == "removed" }) {
		t.Fatalf("changes %+v, want other removed", changes)
	}
	if _, err := env.Dial("127.0.0.100:9200"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("removed service still steered: %v", err)
	}
	if got := env.Count(frontend, 5); !maps.Equal(got, map[string]int{"one": 4, "two": 1}) {
		t.Fatalf("tcp-echo after removing other: %v", got)
	}
}

// policy: random never picks a subset of weight 0 and does use every subset
// with weight (a miss in 200 tries at 1/2 has probability 2^-199).
func TestLookupRandomPolicy(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, strings.Replace(echoConfig, "roundrobin", "random", 1))
	if s := status(t, tg); s.Policy != "random" {
		t.Fatalf("policy %q", s.Policy)
	}
	setWeights(t, tg, 0, 1)
	if got := env.Count(frontend, 50); !maps.Equal(got, map[string]int{"two": 50}) {
		t.Fatalf("random with v1=0: %v", got)
	}
	setWeights(t, tg, 1, 1)
	got := env.Count(frontend, 200)
	if got["one"] == 0 || got["two"] == 0 || got["one"]+got["two"] != 200 {
		t.Fatalf("random 1/1: %v", got)
	}
}

func TestApplyRefusesUnusableEndpoints(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	tg := env.Target()
	// An IPv6 frontend cannot be steered to an IPv4 socket.
	_, err := tg.Apply(loader.Fixed(parse(t, `services:
- name: six
  listen: "[::1]:9000"
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
`)), loader.ApplyOptions{})
	if !errors.Is(err, loader.ErrFamily) {
		t.Fatalf("IPv6 frontend to IPv4 socket: %v", err)
	}
	var mptcp net.Listener
	if err := env.NS.Do(func() (err error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		mptcp, err = lc.Listen(t.Context(), "tcp", "127.0.0.1:9005")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer mptcp.Close()
	_, err = tg.Apply(loader.Fixed(parse(t, `services:
- name: m
  listen: 127.0.0.100:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9005]}
`)), loader.ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "GODEBUG=multipathtcp=0") || !strings.Contains(err.Error(), "services[0].subsets.v1.endpoints[0]") {
		t.Fatalf("MPTCP endpoint: %v", err)
	}
	if _, err := os.Stat(filepath.Join(env.BPFFS, "tcpshift")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed applies left pins: %v", err)
	}
}
