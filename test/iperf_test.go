package test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// iperf3 opens a control and a data connection; through a splitter both must
// reach the same server or the run hangs (esnet/iperf#823). With client
// affinity they do, and the runs themselves still split by weight.

func iperf3(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("iperf3")
	if err != nil {
		t.Fatal("iperf3 is not installed: run make deps (scripts/install-deps.sh test)")
	}
	return path
}

// iperfServer runs `iperf3 -s` on addr:port inside env's namespace.
func iperfServer(t *testing.T, env *testenv.Env, addr string, port int) {
	t.Helper()
	cmd := exec.Command(iperf3(t), "-s", "-B", addr, "-p", fmt.Sprint(port))
	if err := env.NS.Do(cmd.Start); err != nil { // the child inherits the thread's namespace
		t.Fatalf("start iperf3 server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	env.WaitListening(fmt.Sprintf("%s:%d", addr, port))
}

// iperfRun runs one bounded iperf3 client; it must complete.
func iperfRun(t *testing.T, env *testenv.Env, args ...string) {
	t.Helper()
	cmd := exec.Command(iperf3(t), append([]string{"-n", "20M", "--connect-timeout", "3000"}, args...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := env.NS.Do(cmd.Start); err != nil {
		t.Fatalf("start iperf3 client: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("iperf3 %v: %v\n%s", args, err, out.String())
		}
	case <-t.Context().Done():
	}
}

func endpointConnections(t *testing.T, tg *loader.Target) (v1, v2 uint64) {
	t.Helper()
	s := status(t, tg)
	return s.Subsets[0].Connections, s.Subsets[1].Connections
}

const iperfRoute = `  affinity: {key: client, ttl: 30s}
  subsets:
    v1: {endpoints: [%s:5201]}
    v2: {endpoints: [%s:5202]}
  route:
  - {subset: v1, weight: 3}
  - {subset: v2, weight: 1}
`

// Lookup mode: the client is its source address, so each run binds its own.
// iperf3's server closes its listening socket after every test and opens a
// new one: sockops registers each new one as it listens, so 20 back-to-back
// runs complete after one apply, with no daemon.
func TestIperf3ThroughLookup(t *testing.T) {
	env := testenv.New(t)
	env.Join() // the iperf3 servers listen inside the cgroup sockops watches
	iperfServer(t, env, "127.0.0.1", 5201)
	iperfServer(t, env, "127.0.0.1", 5202)
	tg := env.Target()
	apply(t, tg, "services:\n- name: tcp-echo\n  listen: 127.0.0.100:5200\n  mode: lookup\n"+fmt.Sprintf(iperfRoute, "127.0.0.1", "127.0.0.1"))

	for i := range 20 {
		iperfRun(t, env, "-c", "127.0.0.100", "-p", "5200", "-B", fmt.Sprintf("127.0.0.%d", 11+i))
	}
	// 3:1 over 20 runs of two connections each: 15 runs on v1, 5 on v2.
	if v1, v2 := endpointConnections(t, tg); v1 != 30 || v2 != 10 {
		t.Fatalf("connections v1 %d, v2 %d; want 30 and 10 (15 runs and 5)", v1, v2)
	}
}

// Connect mode: the client is the process, so each iperf3 run is one.
func TestIperf3ThroughConnect(t *testing.T) {
	env := testenv.New(t)
	remote := env.Remote()
	iperfServer(t, remote, "10.0.0.2", 5201)
	iperfServer(t, remote, "10.0.0.2", 5202)
	env.Join() // iperf3 clients inherit the test's cgroup
	tg := env.Target()
	apply(t, tg, "services:\n- name: tcp-echo\n  listen: 10.96.0.10:5200\n  mode: connect\n"+fmt.Sprintf(iperfRoute, "10.0.0.2", "10.0.0.2"))

	for range 4 {
		iperfRun(t, env, "-c", "10.96.0.10", "-p", "5200")
	}
	if v1, v2 := endpointConnections(t, tg); v1 != 6 || v2 != 2 {
		t.Fatalf("connections v1 %d, v2 %d; want 6 and 2 (3 runs and 1 run)", v1, v2)
	}
}
