package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

const routes = testenv.EchoConfig

// cli runs tcpshift in-process against the test's namespace and bpffs.
type shell struct {
	t   *testing.T
	env *testenv.Env
}

func (c shell) run(args ...string) (stdout string, err error) {
	var out, errb bytes.Buffer
	full := append([]string{"tcpshift", "--netns", c.env.NS.Path(), "--bpffs", c.env.BPFFS, "--cgroup", c.env.Cgroup}, args...)
	err = run(full, &out, &errb)
	return out.String(), err
}

func (c shell) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("tcpshift %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func writeFile(t *testing.T, text string) string {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newCLI(t *testing.T) shell {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")
	c := shell{t, env}
	t.Cleanup(func() { c.run("down") })
	return c
}

// The "done when", through the CLI.
func TestCLIEndToEnd(t *testing.T) {
	c := newCLI(t)
	if out := c.must("apply", "-f", writeFile(t, routes)); out != "service tcp-echo added\n" {
		t.Fatalf("apply printed %q", out)
	}
	if got := c.env.Count("127.0.0.100:9000", 1000); !maps.Equal(got, map[string]int{"one": 800, "two": 200}) {
		t.Fatalf("1000 connections: %v, want 800/200", got)
	}

	long, err := c.env.Dial("127.0.0.100:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if reply, err := echo.Ask(long, "before"); reply != "one before" || err != nil {
		t.Fatalf("long-lived connection: %q %v", reply, err)
	}
	if out := c.must("set-weight", "tcp-echo", "v1=0", "v2=100"); out != "service tcp-echo weights v1=0 v2=100\n" {
		t.Fatalf("set-weight printed %q", out)
	}
	if got := c.env.Count("127.0.0.100:9000", 100); !maps.Equal(got, map[string]int{"two": 100}) {
		t.Fatalf("after set-weight: %v, want all 100 to two", got)
	}
	if reply, err := echo.Ask(long, "after"); reply != "one after" || err != nil {
		t.Fatalf("long-lived connection after set-weight: %q %v", reply, err)
	}

	var st loader.Status
	if err := json.Unmarshal([]byte(c.must("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	s := st.Services[0]
	if s.Name != "tcp-echo" || s.Listen != "127.0.0.100:9000" || s.Mode != "lookup" || s.Policy != "roundrobin" ||
		s.Subsets[0].Name != "v1" || s.Subsets[0].Weight != 0 || s.Subsets[0].Percent != 0 || s.Subsets[0].Connections != 801 ||
		s.Subsets[1].Name != "v2" || s.Subsets[1].Weight != 100 || s.Subsets[1].Percent != 100 || s.Subsets[1].Connections != 300 ||
		s.Subsets[0].Endpoints[0].Address != "127.0.0.1:9001" || s.Subsets[0].Endpoints[0].Connections != 801 ||
		s.Subsets[1].Endpoints[0].Address != "127.0.0.1:9002" || s.Subsets[1].Endpoints[0].Connections != 300 {
		t.Fatalf("status -o json: %+v", st)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(c.must("status", "-o", "json", "tcp-echo")), &raw); err != nil {
		t.Fatal(err)
	}
	sub := raw["services"].([]any)[0].(map[string]any)["subsets"].([]any)[1].(map[string]any)
	for _, k := range []string{"name", "weight", "percent", "connections", "endpoints"} {
		if _, ok := sub[k]; !ok {
			t.Errorf("status -o json: subset has no key %q: %v", k, sub)
		}
	}
	// status -o yaml is a route config with the live weights, figures under
	// status:, and applies back.
	exported := c.must("status", "-o", "yaml")
	var fromYAML struct {
		Services []struct {
			Status loader.ServiceStatus `yaml:"status"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(exported), &fromYAML); err != nil || fromYAML.Services[0].Status.Subsets[1].Connections != 300 {
		t.Fatalf("status -o yaml figures: %+v %v\n%s", fromYAML, err, exported)
	}
	cfg, err := config.Parse("export.yaml", []byte(exported))
	if err != nil || cfg.Services[0].Subsets[0].Weight != 0 || cfg.Services[0].Subsets[1].Weight != 100 {
		t.Fatalf("status -o yaml as a route config: %+v %v\n%s", cfg, err, exported)
	}
	if out := c.must("apply", "-f", writeFile(t, exported), "--dry-run"); out != "service tcp-echo updated (dry run)\n" {
		t.Fatalf("dry run of the export printed %q (its file weights become the weights in force)", out)
	}
	table := c.must("status")
	for _, want := range []string{"service tcp-echo  listen 127.0.0.100:9000  mode lookup  policy roundrobin", "v1      0", "127.0.0.1:9002  unchecked  300"} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}

	if out := c.must("down"); out != "tcpshift removed\n" {
		t.Fatalf("down printed %q", out)
	}
	if out := c.must("down"); out != "tcpshift was not loaded\n" {
		t.Fatalf("second down printed %q", out)
	}
	if _, err := os.Stat(filepath.Join(c.env.BPFFS, "tcpshift")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pins left after down: %v", err)
	}
}

func TestCLIErrors(t *testing.T) {
	c := newCLI(t)
	bad := writeFile(t, strings.Replace(routes, "weight: 20", "weight: 2.5", 1))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "not loaded in this network namespace"},
		{[]string{"apply", "-f", bad}, "routes.yaml:11: services[0].route[1].weight"},
		{[]string{"apply"}, "apply needs -f FILE"},
		{[]string{"apply", "-f", "/nonexistent.yaml"}, "no such file"},
		{[]string{"set-weight", "tcp-echo"}, "want SERVICE and at least one SUBSET=WEIGHT"},
		{[]string{"set-weight", "tcp-echo", "v1"}, `argument "v1": want SUBSET=WEIGHT`},
		{[]string{"set-weight", "tcp-echo", "v1=-1"}, `argument "v1=-1": weight must be an integer`},
		{[]string{"set-weight", "tcp-echo", "v1=1", "v1=2"}, "subset v1 given twice"},
		{[]string{"status", "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{[]string{"status", "tcp-echo", "-o", "json"}, "not loaded in this network namespace"},
		{[]string{"--bogus", "status"}, "unknown flag --bogus; see tcpshift --help"},
	} {
		_, err := c.run(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("tcpshift %v: error %v, want one line containing %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.env.BPFFS, "tcpshift")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed commands left state: %v", err)
	}

	c.must("apply", "-f", writeFile(t, routes))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"set-weight", "nope", "v1=1"}, `no such service "nope" (loaded: tcp-echo)`},
		{[]string{"set-weight", "tcp-echo", "v3=1"}, `service tcp-echo has no subset "v3" (subsets: v1, v2)`},
		{[]string{"status", "nope"}, `no such service "nope"`},
	} {
		_, err := c.run(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tcpshift %v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	// The failed set-weight changed nothing.
	if got := c.env.Count("127.0.0.100:9000", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("after failed commands: %v", got)
	}
}

func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"apply", "--help"}, {"set-weight", "--help"}, {"status", "--help"}, {"down", "--help"}, {"demo", "--help"},
	} {
		var out bytes.Buffer
		if err := run(append([]string{"tcpshift"}, args...), &out, &out); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "USAGE:") {
			t.Errorf("%v printed no usage:\n%s", args, out.String())
		}
	}
}

func TestDemo(t *testing.T) {
	for _, mode := range []string{"lookup", "connect", "proxy", "istio"} {
		t.Run(mode, func(t *testing.T) { testDemo(t, mode) })
	}
}

func testDemo(t *testing.T, mode string) {
	var out bytes.Buffer
	useIstio := mode == "istio"
	if useIstio {
		mode = "lookup"
	}
	if err := runDemo(&out, mode, useIstio); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	wants := []string{"mode " + mode}
	if useIstio {
		wants = []string{"VirtualService default/tcp-echo configured", "weight: 80", "percent: 80", "VirtualService default/tcp-echo deleted"}
	}
	for _, want := range append(wants,
		"=> one (v1): 10, two (v2): 0",
		"=> one (v1): 8, two (v2): 2",
		"=> one (v1): 0, two (v2): 10",
		"tcp-echo v1: 1 active connections\ntcp-echo v1: drained\n",
		"tcpshift removed",
	) {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
}

// The migration's last step: wait-drained returns when the last v1
// connection closes, not before; it refuses while v1 still has weight and
// fails on timeout.
func TestWaitDrained(t *testing.T) {
	env := testenv.New(t)
	env.Join() // the backends' sockets must be in the cgroup sockops watches
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")
	c := shell{t, env}
	t.Cleanup(func() { c.run("down") })
	c.must("apply", "-f", writeFile(t, routes))

	var v1 []net.Conn
	for range 5 {
		conn, err := env.Dial("127.0.0.100:9000")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if reply, err := echo.Ask(conn, "hi"); err != nil {
			t.Fatal(err)
		} else if reply == "one hi" {
			v1 = append(v1, conn)
		}
	}
	if len(v1) != 4 {
		t.Fatalf("%d of 5 connections to v1, want 4", len(v1))
	}

	if _, err := c.run("wait-drained", "tcp-echo", "v1"); err == nil || !strings.Contains(err.Error(), "subset v1 of tcp-echo has weight 80") {
		t.Fatalf("wait-drained before the weight went to 0: %v", err)
	}
	c.must("set-weight", "tcp-echo", "v1=0", "v2=100")
	if _, err := c.run("wait-drained", "--timeout", "300ms", "tcp-echo", "v1"); err == nil || !strings.Contains(err.Error(), "still holds 4 active connections") {
		t.Fatalf("wait-drained with 4 connections open: %v, want a timeout", err)
	}

	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.run("wait-drained", "--timeout", "30s", "tcp-echo", "v1")
		done <- result{out, err}
	}()
	for _, conn := range v1[:3] {
		conn.Close()
	}
	tg := env.Target()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		load, err := tg.Load("tcp-echo", "v1")
		if err != nil {
			t.Fatal(err)
		}
		if load.Active == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v1 holds %d active connections after 3 of 4 closed", load.Active)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("wait-drained returned with a v1 connection open: %q %v", r.out, r.err)
	default:
	}
	v1[3].Close()
	select {
	case r := <-done:
		if r.err != nil || !strings.HasSuffix(r.out, "tcp-echo v1: drained\n") {
			t.Fatalf("wait-drained: %q %v", r.out, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait-drained did not return after the last v1 connection closed")
	}
}

// tcpshift proxy: the tcp-echo task in mode proxy, with the same CLI.
func TestCLIProxy(t *testing.T) {
	env := testenv.New(t)
	env.Join()
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")
	c := shell{t, env}
	t.Cleanup(func() { c.run("down") })
	file := writeFile(t, strings.Replace(routes, "mode: lookup", "mode: proxy", 1))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runContext(ctx, []string{"tcpshift", "--netns", env.NS.Path(), "--bpffs", env.BPFFS, "--cgroup", env.Cgroup, "proxy", "-f", file}, &out, &logs)
	}()
	env.WaitListening("127.0.0.100:9000") // one connection, to v1

	if got := env.Count("127.0.0.100:9000", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("10 connections: %v, want 8/2", got)
	}
	c.must("set-weight", "tcp-echo", "v1=0", "v2=100")
	if got := env.Count("127.0.0.100:9000", 5); !maps.Equal(got, map[string]int{"two": 5}) {
		t.Fatalf("after set-weight: %v, want all 5 to two", got)
	}
	var st loader.Status
	if err := json.Unmarshal([]byte(c.must("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if s := st.Services[0]; s.Mode != "proxy" || s.Reason != "configured" {
		t.Fatalf("status: mode %s (%s)", s.Mode, s.Reason)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proxy: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("proxy did not stop when its context ended")
	}
	if got := out.String(); got != "service tcp-echo added (mode proxy: tcpshift run -f FILE or tcpshift proxy -f FILE serves it)\n" {
		t.Fatalf("proxy printed %q", got)
	}
	for _, want := range []string{"msg=service name=tcp-echo listen=127.0.0.100:9000 mode=proxy reason=configured", "msg=\"proxy listening\"", "msg=\"shutting down\""} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	if _, err := env.Dial("127.0.0.100:9000"); err == nil {
		t.Fatal("the frontend still accepts connections after the proxy stopped")
	}

	// Bad flags and a file with nothing to proxy.
	if _, err := c.run("proxy", "-f", file, "--attempts", "0"); err == nil || !strings.Contains(err.Error(), "--attempts 0") {
		t.Fatalf("--attempts 0: %v", err)
	}
	if _, err := c.run("proxy", "-f", writeFile(t, routes)); err == nil || !strings.Contains(err.Error(), "has no service in proxy mode") {
		t.Fatalf("nothing to proxy: %v", err)
	}
}

// tcpshift run: serves a proxy-mode service, follows the file when the
// service moves to lookup mode, logs JSON, and leaves the state when stopped.
func TestCLIRun(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "run needs -f FILE"},
		{[]string{"run", "-f", "x.yaml", "extra"}, "run takes no arguments"},
		{[]string{"run", "-f", "x.yaml", "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"run", "-f", writeFile(t, strings.Replace(routes, "weight: 20", "weight: x", 1))}, "services[0].route[1].weight"},
		{[]string{"run", "-f", writeFile(t, "services: []\n")}, "no services"},
	} {
		_, err := c.run(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("tcpshift %v: error %v, want one line containing %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.env.BPFFS, "tcpshift")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed run left state: %v", err)
	}

	file := writeFile(t, strings.Replace(routes, "mode: lookup", "mode: proxy", 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runContext(ctx, []string{"tcpshift", "--netns", c.env.NS.Path(), "--bpffs", c.env.BPFFS, "--cgroup", c.env.Cgroup,
			"run", "-f", file, "--log-format", "json"}, &out, &logs)
	}()
	c.env.WaitListening("127.0.0.100:9000") // one connection, to v1
	if got := c.env.Count("127.0.0.100:9000", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("proxy mode, 10 connections: %v, want 8/2", got)
	}

	// The same service in lookup mode: the proxy lets the frontend go and
	// sk_lookup takes over.
	if err := os.WriteFile(file+".new", []byte(routes), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".new", file); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), `"msg":"proxy stopped listening"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy kept the frontend:\n%s", logs.String())
		}
	}
	if got := c.env.Count("127.0.0.100:9000", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("lookup mode, 10 connections: %v, want 8/2", got)
	}
	if s := c.must("status"); !strings.Contains(s, "mode lookup") {
		t.Fatalf("status after the reload:\n%s", s)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	for _, want := range []string{`"msg":"running"`, `"msg":"route config applied"`, `"msg":"stopping: the kernel state stays in place (tcpshift down removes it)"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	if got := c.env.Count("127.0.0.100:9000", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("after run stopped: %v, want 8/2 (the state stays)", got)
	}
}

// syncBuffer is a bytes.Buffer a running command may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
