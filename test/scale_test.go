package test

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// subsetConfig is one lookup-mode service whose subset v1 lists n
// endpoints, 127.0.0.2:20000 on.
func subsetConfig(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "services:\n- name: big\n  listen: %s\n  mode: lookup\n  subsets:\n    v1:\n      endpoints:\n", frontend)
	for i := range n {
		fmt.Fprintf(&b, "      - 127.0.0.2:%d\n", 20000+i)
	}
	b.WriteString("  route: [{subset: v1, weight: 1}]\n")
	return b.String()
}

// A subset of 1024 endpoints takes turns exactly: every endpoint answers
// the same number of connections; one that stops listening passes its turn
// to the next.
func TestLookupSubsetOf1024(t *testing.T) {
	env := testenv.New(t)
	const n = 1024
	lns := make([]interface{ Close() error }, n)
	for i := range n {
		lns[i] = env.Echo(fmt.Sprintf("127.0.0.2:%d", 20000+i), fmt.Sprintf("e%d", i))
	}
	tg := env.Target()
	start := time.Now()
	apply(t, tg, subsetConfig(n))
	t.Logf("applied one subset of %d endpoints in %v", n, time.Since(start).Round(time.Millisecond))

	got := env.Count(frontend, 3*n)
	want := map[string]int{}
	for i := range n {
		want[fmt.Sprintf("e%d", i)] = 3
	}
	if !maps.Equal(got, want) {
		t.Fatalf("%d connections over %d endpoints: %d answered, want each 3 (e0: %d, e1023: %d)", 3*n, n, len(got), got["e0"], got["e1023"])
	}

	// The turn is back at e0; e7 stops listening: its turn goes to e8.
	lns[7].Close()
	got = env.Count(frontend, n)
	for i := range n {
		want[fmt.Sprintf("e%d", i)] = 1
	}
	delete(want, "e7")
	want["e8"] = 2
	if !maps.Equal(got, want) {
		t.Fatalf("with e7 closed, %d connections: e7 %d, e8 %d, e9 %d; want 0, 2, 1 and 1 each for the others", n, got["e7"], got["e8"], got["e9"])
	}
	all, err := tg.Status("big")
	if err != nil {
		t.Fatal(err)
	}
	if st := all.Services[0]; st.NoSocket != 0 || st.Refused != 0 || len(st.Subsets[0].Endpoints) != n {
		t.Fatalf("status: %d endpoints, no socket %d, refused %d", len(st.Subsets[0].Endpoints), st.NoSocket, st.Refused)
	}
}

// scaleConfig is services connect-mode services of 10 endpoints each:
// service i listens on 10.96.0.10, port 10000+i, and its endpoints are
// 127.1.(i/250).(i%250+1), ports 40000-40009 (nothing needs to listen but
// the few a test checks). gen changes every endpoint's port.
func scaleConfig(services, gen int) string {
	return scaleConfigGen(services, func(int) int { return gen })
}

// scaleConfigGen is scaleConfig with a generation per service.
func scaleConfigGen(services int, gen func(service int) int) string {
	var b strings.Builder
	b.WriteString("services:\n")
	for i := range services {
		fmt.Fprintf(&b, "- name: s%d\n  listen: 10.96.0.10:%d\n  mode: connect\n  subsets:\n    v1: {endpoints: [", i, 10000+i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(scaleEndpoint(i, j, gen(i)))
		}
		b.WriteString("]}\n  route: [{subset: v1, weight: 1}]\n")
	}
	return b.String()
}

func scaleEndpoint(service, j, gen int) string {
	return fmt.Sprintf("127.1.%d.%d:%d", service/250, service%250+1, 40000+10*gen+j)
}

// scaleChecked are the services whose endpoints listen.
var scaleChecked = []int{0, 1, 4321, 7777, 9999}

func scaleEnv(t *testing.T) *testenv.Env {
	env := testenv.New(t)
	env.Join() // the connect hooks see this process
	for _, i := range scaleChecked {
		for j := range 10 {
			env.Echo(scaleEndpoint(i, j, 0), fmt.Sprintf("s%d-e%d", i, j))
		}
	}
	return env
}

// checkScaleRoutes checks that each checked service spreads 20 connections
// over its own 10 endpoints, 2 each.
func checkScaleRoutes(t *testing.T, env *testenv.Env) {
	t.Helper()
	for _, i := range scaleChecked {
		got := env.Count(fmt.Sprintf("10.96.0.10:%d", 10000+i), 20)
		want := map[string]int{}
		for j := range 10 {
			want[fmt.Sprintf("s%d-e%d", i, j)] = 2
		}
		if !maps.Equal(got, want) {
			t.Fatalf("service s%d: 20 connections went %v, want 2 to each of its endpoints", i, got)
		}
	}
}

// Ten thousand services of ten endpoints each: each routes to its own.
func TestConnectTenThousandServices(t *testing.T) {
	env := scaleEnv(t)
	tg := env.Target()
	start := time.Now()
	apply(t, tg, scaleConfig(10000, 0))
	t.Logf("first apply of 10000 services, 100000 endpoints: %v", time.Since(start).Round(time.Millisecond))
	checkScaleRoutes(t, env)

	start = time.Now()
	if _, err := tg.SetWeights("s4321", []loader.Weight{{Subset: "v1", Weight: 3}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("one service's weight changed among 10000: %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	st, err := tg.Status("s4321")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || st.Services[0].Subsets[0].Weight != 3 || st.Services[0].Subsets[0].Connections != 20 {
		t.Fatalf("status of s4321: %+v", st.Services)
	}
	t.Logf("status of one service among 10000: %v", time.Since(start).Round(time.Millisecond))
	checkScaleRoutes(t, env)
}

// A change at scale that fails at its very end (after 10000 tables were
// swapped, with new endpoint lists) leaves the kernel as it was.
func TestRollbackAtScale(t *testing.T) {
	env := scaleEnv(t)
	doomed := env.Listen("127.0.0.1:9003")
	tg := env.Target()
	apply(t, tg, scaleConfig(10000, 0))
	checkScaleRoutes(t, env)
	before := env.KernelState()

	// Every service gets new endpoints (new ids, new lists), then the
	// last service's listener is gone when it is registered.
	cfg := parse(t, scaleConfig(10000, 1)+`- name: doomed
  listen: 127.0.0.100:9100
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9003]}
`)
	// 100000 endpoints in force and 100000 new ones are more than the
	// namespace's ids: the change is refused before anything is written.
	_, err := tg.Apply(loader.Fixed(cfg), loader.ApplyOptions{})
	wantErr(t, "200000 endpoints at once", err, "at most 131072")
	env.RequireUnchanged(before)

	// Every fourth service gets new endpoints (25000 new ids): that fits,
	// and fails at its end, after 2500 tables were swapped in groups (the
	// last group, with doomed, fails at doomed's socket).
	cfg = parse(t, scaleConfigGen(10000, func(i int) int { return min(i%4, 1) ^ 1 })+`- name: doomed
  listen: 127.0.0.100:9100
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9003]}
`)
	start := time.Now()
	err = applyAfterShutdown(t, tg, env, doomed, cfg)
	wantErr(t, "apply whose last socket closed before it was written", err, "doomed", "127.0.0.1:9003")
	t.Logf("rolled back 2500 rewritten services in %v", time.Since(start).Round(time.Millisecond))
	requireUnchangedButWriteSeq(t, env, before, 2)
	checkScaleRoutes(t, env)
}
