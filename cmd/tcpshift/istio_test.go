package main

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/internal/testenv"
)

// example is a file of examples/istio, written for tcpshift in Istio's
// shape (the task's files, the workloads outside Kubernetes).
func example(name string) string {
	return filepath.Join("..", "..", "examples", "istio", name)
}

// Istio's TCP traffic-shifting task with the task's own file shapes: the
// gateway port answers, the 80/20 VirtualService applied alone shifts, get
// gives the rule back, delete removes what the file holds, down leaves
// nothing.
func TestIstioTask(t *testing.T) {
	c := newCLI(t) // tcp-echo "one" on 127.0.0.1:9001, "two" on :9002
	before := c.env.KernelState()
	out := c.must("apply", "-f", example("workloads.yaml"), "-f", example("tcp-echo-all-v1.yaml"))
	for _, want := range []string{"VirtualService default/tcp-echo configured", "Gateway default/tcp-echo-gateway configured", "service tcp-echo added"} {
		if !strings.Contains(out, want) {
			t.Fatalf("apply printed %q, want %q in it", out, want)
		}
	}
	if got := c.env.Count("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"one": 10}) {
		t.Fatalf("all-v1: 10 connections to the gateway port went %v, want 10 to one", got)
	}
	c.must("apply", "-f", example("tcp-echo-20-v2.yaml"))
	if got := c.env.Count("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("20-v2: 10 connections went %v, want 8/2", got)
	}

	var vs struct {
		Spec struct {
			TCP []struct {
				Route []struct {
					Destination struct{ Subset string }
					Weight      int
				}
			}
		}
		Status struct {
			Tcpshift struct {
				Services []struct {
					Name, Listen, Mode string
					Subsets            []struct {
						Name    string
						Percent float64
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal([]byte(c.must("get", "virtualservice", "tcp-echo", "-o", "yaml")), &vs); err != nil {
		t.Fatal(err)
	}
	r := vs.Spec.TCP[0].Route
	if len(r) != 2 || r[0].Destination.Subset != "v1" || r[0].Weight != 80 || r[1].Destination.Subset != "v2" || r[1].Weight != 20 {
		t.Fatalf("get vs: routes %+v, want v1 80 and v2 20", r)
	}
	s := vs.Status.Tcpshift.Services
	if len(s) != 1 || s[0].Listen != "[::]:31400" || s[0].Mode != "lookup" || s[0].Subsets[0].Percent != 80 || s[0].Subsets[1].Percent != 20 {
		t.Fatalf("get vs: status %+v", vs.Status)
	}
	if st := c.must("status"); !strings.Contains(st, "from VirtualService default/tcp-echo, Gateway default/tcp-echo-gateway") {
		t.Fatalf("status does not name the objects behind tcp-echo:\n%s", st)
	}

	out = c.must("delete", "-f", example("tcp-echo-all-v1.yaml"))
	for _, want := range []string{"Gateway default/tcp-echo-gateway deleted", "DestinationRule default/tcp-echo-destination deleted", "VirtualService default/tcp-echo deleted", "service tcp-echo removed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("delete printed %q, want %q in it", out, want)
		}
	}
	if _, err := c.env.Ask("127.0.0.1:31400"); err == nil {
		t.Fatal("the gateway port still answers after delete")
	}
	if got := c.must("get", "se"); !strings.Contains(got, "tcp-echo") {
		t.Fatalf("delete removed the ServiceEntry it was not given:\n%s", got)
	}
	c.must("down")
	c.env.RequireUnchanged(before)
}

// A mesh VirtualService (no gateway) is served at its host's VIP in connect
// mode, for this host's clients; getpeername shows the VIP.
func TestIstioMeshConnect(t *testing.T) {
	env := testenv.New(t)
	remote := env.Remote()
	remote.Echo("10.0.0.2:9001", "one")
	remote.Echo("10.0.0.2:9002", "two")
	env.Join()
	c := shell{t, env}
	t.Cleanup(func() { c.run("down") })
	c.must("apply", "-f", writeFile(t, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  addresses: [10.96.0.10]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.2, ports: {tcp: 9001}, labels: {version: v1}}
  - {address: 10.0.0.2, ports: {tcp: 9002}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo}
spec:
  host: tcp-echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  tcp:
  - route:
    - {destination: {host: tcp-echo, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, subset: v2}, weight: 20}
`))
	if got := env.Count("10.96.0.10:9000", 100); !maps.Equal(got, map[string]int{"one": 80, "two": 20}) {
		t.Fatalf("mesh: 100 connections went %v, want 80/20", got)
	}
	conn, err := env.Dial("10.96.0.10:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != "10.96.0.10:9000" {
		t.Fatalf("getpeername %s, want the VIP", got)
	}
	if st := c.must("status"); !strings.Contains(st, "mode connect") {
		t.Fatalf("status:\n%s", st)
	}
}

// A Gateway API TCPRoute splits a Gateway listener 80/20 between two
// Services that ServiceEntries resolve.
func TestGatewayAPITCPRoute(t *testing.T) {
	c := newCLI(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "gateway-api", "tcp-echo-tcproute.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.must("apply", "-f", writeFile(t, string(data)))
	if got := c.env.Count("127.0.0.1:31400", 100); !maps.Equal(got, map[string]int{"one": 80, "two": 20}) {
		t.Fatalf("tcproute: 100 connections went %v, want 80/20", got)
	}
	if got := c.must("get", "tcproute"); !strings.Contains(got, "tcp-echo-v1 80%, tcp-echo-v2 20%") {
		t.Fatalf("get tcproute:\n%s", got)
	}
}

// tcpshift's own route config and objects live side by side: an apply of
// objects keeps the route config's services, an apply of a route config
// keeps the objects' services, and a name both claim is refused.
func TestRouteConfigAndObjects(t *testing.T) {
	c := newCLI(t)
	c.must("apply", "-f", writeFile(t, routes)) // service tcp-echo at 127.0.0.100:9000
	if _, err := c.run("apply", "-f", example("workloads.yaml"), "-f", example("tcp-echo-all-v1.yaml")); err == nil ||
		!strings.Contains(err.Error(), "service tcp-echo from VirtualService default/tcp-echo") {
		t.Fatalf("a derived service named like the route config's: %v, want a refusal naming both", err)
	}
	renamed := strings.Replace(routes, "name: tcp-echo", "name: echo-native", 1)
	c.must("apply", "-f", writeFile(t, renamed))
	c.must("apply", "-f", example("workloads.yaml"), "-f", example("tcp-echo-all-v1.yaml"))
	st := c.must("status")
	for _, want := range []string{"service echo-native", "service tcp-echo"} {
		if !strings.Contains(st, want) {
			t.Fatalf("status lacks %q:\n%s", want, st)
		}
	}
	if got := c.env.Count("127.0.0.100:9000", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("the route config's service after an apply of objects: %v", got)
	}
	c.must("apply", "-f", writeFile(t, renamed)) // whole-file for the route config, objects stay
	if got := c.env.Count("127.0.0.1:31400", 5); !maps.Equal(got, map[string]int{"one": 5}) {
		t.Fatalf("the objects' service after an apply of the route config: %v", got)
	}
}

// apply -f takes a directory (its YAML files, in name order) and - (stdin).
func TestApplyDirectoryAndStdin(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	for _, f := range []string{"workloads.yaml", "tcp-echo-all-v1.yaml"} {
		data, err := os.ReadFile(example(f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not YAML, not read"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("apply", "-f", dir)
	if got := c.env.Count("127.0.0.1:31400", 5); !maps.Equal(got, map[string]int{"one": 5}) {
		t.Fatalf("from a directory: %v", got)
	}
	data, err := os.ReadFile(example("tcp-echo-20-v2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	full := []string{"tcpshift", "--netns", c.env.NS.Path(), "--bpffs", c.env.BPFFS, "--cgroup", c.env.Cgroup, "apply", "-f", "-"}
	if err := runWithInput(full, strings.NewReader(string(data)), &out, &errb); err != nil {
		t.Fatalf("apply -f -: %v (%s)", err, errb.String())
	}
	if got := c.env.Count("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("from stdin: %v", got)
	}
}

// runWithInput runs tcpshift in-process with in as its standard input.
func runWithInput(args []string, in io.Reader, stdout, stderr io.Writer) error {
	f, err := os.CreateTemp("", "stdin-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, in); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	saved := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = saved }()
	return run(args, stdout, stderr)
}
