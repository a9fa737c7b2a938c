package test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// healthConfig is tcp-echo with a second v1 endpoint on 9003 and probes
// every 100ms: 3 failures take an endpoint down, 2 successes bring it up.
const healthConfig = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: lookup
  health: {interval: 100ms, timeout: 50ms, rise: 2, fall: 3}
  subsets:
    v1: {endpoints: [127.0.0.1:9001, 127.0.0.1:9003]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

const (
	probeInterval = 100 * time.Millisecond
	probeTimeout  = 50 * time.Millisecond
	rise, fall    = 2, 3
	// slack is scheduling on a loaded 2-core machine, not part of the rule.
	slack = 500 * time.Millisecond
)

func endpointHealth(t *testing.T, tg *loader.Target, addr string) string {
	t.Helper()
	for _, sub := range status(t, tg).Subsets {
		for _, ep := range sub.Endpoints {
			if ep.Address == addr {
				return ep.Health
			}
		}
	}
	t.Fatalf("no endpoint %s", addr)
	return ""
}

// within checks that a health change came as the thresholds say: not before
// the probes needed could run, not much after.
func within(t *testing.T, what string, took time.Duration, probes int) {
	t.Helper()
	t.Logf("%s after %s", what, took.Round(time.Millisecond))
	earliest := time.Duration(probes-1) * probeInterval
	latest := time.Duration(probes)*probeInterval + probeTimeout + slack
	if took < earliest || took > latest {
		t.Errorf("%s after %s, want %s to %s (%d probes every %s)", what, took, earliest, latest, probes, probeInterval)
	}
}

func TestDaemonHealthChecks(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	second := env.Echo("127.0.0.1:9003", "one")
	v2 := env.Echo("127.0.0.1:9002", "two")
	d := startDaemon(t, env, newConfigFile(t, healthConfig), "")
	d.waitLog(t, `msg="endpoint up"`, 3)
	for _, addr := range []string{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"} {
		if h := endpointHealth(t, d.tg, addr); h != "up" {
			t.Fatalf("%s is %s, want up", addr, h)
		}
	}

	// One of v1's two endpoints dies: v1 keeps its 80%, on the other one.
	second.Close()
	start := time.Now()
	down := d.waitLog(t, `msg="endpoint down"`, 1)
	within(t, "127.0.0.1:9003 down", time.Since(start), fall)
	if !strings.Contains(down[0], "endpoint=127.0.0.1:9003") || !strings.Contains(down[0], fmt.Sprintf("failed_checks=%d", fall)) {
		t.Errorf("down line: %s", down[0])
	}
	if h := endpointHealth(t, d.tg, "127.0.0.1:9003"); h != "down" {
		t.Fatalf("127.0.0.1:9003 is %s, want down", h)
	}
	before := status(t, d.tg).Subsets[0].Endpoints[0].Connections
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	if got := status(t, d.tg).Subsets[0].Endpoints[0].Connections - before; got != 8 {
		t.Errorf("127.0.0.1:9001 got %d of v1's 8 connections, want all", got)
	}

	// It comes back: rise successes in a row bring it up again.
	env.Echo("127.0.0.1:9003", "one")
	start = time.Now()
	up := d.waitLog(t, `msg="endpoint up"`, 4)
	within(t, "127.0.0.1:9003 up", time.Since(start), rise)
	if !strings.Contains(up[3], "endpoint=127.0.0.1:9003") || !strings.Contains(up[3], fmt.Sprintf("passed_checks=%d", rise)) {
		t.Errorf("up line: %s", up[3])
	}

	// All of v2 dies: its share goes to v1 (failover).
	v2.Close()
	d.waitLog(t, `msg="endpoint down"`, 2)
	s := status(t, d.tg)
	if s.Subsets[0].Percent != 100 || s.Subsets[1].Percent != 0 || s.Subsets[1].Weight != 20 {
		t.Fatalf("after v2 went down: v1 %.0f%% v2 %.0f%% (weight %d), want 100/0 with the weight kept", s.Subsets[0].Percent, s.Subsets[1].Percent, s.Subsets[1].Weight)
	}
	wantSplit(t, env, 10, map[string]int{"one": 10})
}

// TestDaemonNoFailover: with failover: false a subset that is all down
// keeps its share, and its connections are refused.
func TestDaemonNoFailover(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9003", "one")
	v2 := env.Echo("127.0.0.1:9002", "two")
	d := startDaemon(t, env, newConfigFile(t, strings.Replace(healthConfig, "  subsets:", "  failover: false\n  subsets:", 1)), "")
	d.waitLog(t, `msg="endpoint up"`, 3)

	v2.Close()
	d.waitLog(t, `msg="endpoint down"`, 1)
	got := map[string]int{}
	for range 10 {
		who, err := env.Ask(frontend)
		if errors.Is(err, syscall.ECONNREFUSED) {
			who = "refused"
		} else if err != nil {
			t.Fatal(err)
		}
		got[who]++
	}
	if got["one"] != 8 || got["refused"] != 2 {
		t.Fatalf("10 connections: %v, want 8 to v1 and 2 refused", got)
	}
}

// connectHealthConfig checks rarely: only connect failures seen in the
// kernel can take an endpoint down within the test.
const connectHealthConfig = `services:
- name: tcp-echo
  listen: 10.96.0.10:9000
  mode: connect
  health: {interval: 1h, timeout: 1s, fall: 2}
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
    v2: {endpoints: [10.0.0.2:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

func TestDaemonPassiveChecks(t *testing.T) {
	env := testenv.New(t)
	remote := env.Remote()
	remote.Echo("10.0.0.2:9001", "one")
	v2 := remote.Echo("10.0.0.2:9002", "two")
	env.Join()
	d := startDaemon(t, env, newConfigFile(t, connectHealthConfig), "")
	d.waitLog(t, `msg="endpoint up"`, 2) // the first probes

	v2.Close()
	got := map[string]int{}
	for range 10 {
		who, err := env.Ask("10.96.0.10:9000")
		if errors.Is(err, syscall.ECONNREFUSED) {
			who = "refused"
		} else if err != nil {
			t.Fatal(err)
		}
		got[who]++
	}
	if got["one"] != 8 || got["refused"] != 2 {
		t.Fatalf("10 connections: %v, want 8 to v1 and 2 refused", got)
	}
	down := d.waitLog(t, `msg="endpoint down"`, 1)
	if !strings.Contains(down[0], "endpoint=10.0.0.2:9002") || !strings.Contains(down[0], "failed_checks=2") || !strings.Contains(down[0], "seen in the kernel") {
		t.Errorf("down line: %s", down[0])
	}
	s := status(t, d.tg)
	if f := s.Subsets[1].Endpoints[0].Failed; f != 2 {
		t.Errorf("v2 failed connects %d, want 2", f)
	}
	got = env.Count("10.96.0.10:9000", 10)
	if got["one"] != 10 {
		t.Fatalf("after v2 went down: %v, want all 10 to v1", got)
	}
}
