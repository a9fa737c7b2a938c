package main

// Istio's files applied one at a time, as kubectl users apply them (issue 26
// finding 2): every apply and delete is checked with the objects applied
// before it, as istiod sees them together.

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/internal/testenv"
)

// The report: workloads.yaml, then tcp-echo-all-v1.yaml, as two
// applies. The second failed with "host tcp-echo is not declared": an
// apply read the objects applied before only when they made a service.
func TestIstioWorkloadsThenAllV1(t *testing.T) {
	c := newCLI(t)
	out := c.must("apply", "-f", example("workloads.yaml"))
	if want := "ServiceEntry default/tcp-echo configured\nWorkloadEntry default/tcp-echo-v1 configured\nWorkloadEntry default/tcp-echo-v2 configured\n"; out != want {
		t.Fatalf("apply -f workloads.yaml printed %q, want %q", out, want)
	}
	if got := c.must("get", "se"); !regexp.MustCompile(`(?m)^default +tcp-echo +-$`).MatchString(got) {
		t.Fatalf("get se after workloads.yaml:\n%s", got)
	}
	out, err := c.run("apply", "-f", example("tcp-echo-all-v1.yaml"))
	if err != nil {
		t.Fatalf("apply -f tcp-echo-all-v1.yaml after workloads.yaml: %v", err)
	}
	if want := "Gateway default/tcp-echo-gateway configured\nDestinationRule default/tcp-echo-destination configured\nVirtualService default/tcp-echo configured\nservice tcp-echo added\n"; out != want {
		t.Fatalf("apply -f tcp-echo-all-v1.yaml printed %q, want %q", out, want)
	}
	if got := c.env.Count("127.0.0.1:31400", 20); !maps.Equal(got, map[string]int{"one": 20}) {
		t.Fatalf("20 connections to the gateway port went %v, want all 20 to v1 (one)", got)
	}
}

// istioTableCommands returns the commands of the tcpshift column of the
// README's table in "## Istio's YAML", in order, as a user types them
// (sudo left out, the table's \| a pipe again).
func istioTableCommands(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Istio's YAML\n")
	if !ok {
		t.Fatal(`README.md has no section "## Istio's YAML"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var cmds []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		line = strings.ReplaceAll(line, `\|`, "\x00")
		cols := strings.Split(line, "|")
		if len(cols) != 4 || strings.HasPrefix(cols[1], "---") || strings.TrimSpace(cols[2]) == "tcpshift, on one host" {
			continue
		}
		for _, m := range regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(cols[2], -1) {
			cmd := strings.TrimPrefix(strings.ReplaceAll(m[1], "\x00", "|"), "sudo ")
			if first, _, _ := strings.Cut(cmd, " "); slices.Contains([]string{"tcpshift", "tcp-echo", "for"}, first) {
				cmds = append(cmds, cmd) // not a word in code, such as status:
			}
		}
	}
	return cmds
}

// The README's Istio table, command by command, in a fresh namespace: each
// apply and delete is its own command, as with kubectl, and each step is
// checked by what answers on the gateway port and by get. The 100% v2
// step of Istio's task (tcp-echo-100-v2.yaml, as the demo runs it) comes
// after get.
func TestIstioREADMETable(t *testing.T) {
	env := testenv.New(t)
	c := shell{t, env}
	t.Cleanup(func() { c.run("down") })
	before := env.KernelState()

	const loop = "for i in $(seq 1 20); do (date; sleep 1) | nc -N 127.0.0.1 31400; done"
	var sent map[string]int // what the last loop's connections reached
	type step struct {
		cmd   string
		table bool // the README's table has it (the first loop only: it is run again after each shift)
		check func(out string)
	}
	getTable := func(kind string) string { return c.must("get", kind) }
	rows := func(kind string, want ...string) {
		t.Helper()
		got := strings.Split(strings.TrimSuffix(getTable(kind), "\n"), "\n")
		for i := range got {
			got[i] = strings.Join(strings.Fields(got[i]), " ")
		}
		if want = append([]string{"NAMESPACE NAME SERVICES"}, want...); !slices.Equal(got, want) {
			t.Fatalf("get %s:\n%s\nwant\n%s", kind, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	sentWas := func(want map[string]int) {
		t.Helper()
		if !maps.Equal(sent, want) {
			t.Fatalf("the loop's 20 connections went %v, want %v", sent, want)
		}
	}
	steps := []step{
		{"tcp-echo 9001 one &", true, nil},
		{"tcp-echo 9002 two &", true, nil},
		{"tcpshift apply -f workloads.yaml", true, func(out string) {
			if want := "ServiceEntry default/tcp-echo configured\nWorkloadEntry default/tcp-echo-v1 configured\nWorkloadEntry default/tcp-echo-v2 configured\n"; out != want {
				t.Fatalf("printed %q, want %q", out, want)
			}
			rows("se", "default tcp-echo -")
			rows("we", "default tcp-echo-v1 -", "default tcp-echo-v2 -")
			rows("vs")
			if _, err := env.Ask("127.0.0.1:31400"); err == nil {
				t.Fatal("the gateway port answers before any VirtualService")
			}
		}},
		{"tcpshift apply -f tcp-echo-all-v1.yaml", true, func(out string) {
			if want := "Gateway default/tcp-echo-gateway configured\nDestinationRule default/tcp-echo-destination configured\nVirtualService default/tcp-echo configured\nservice tcp-echo added\n"; out != want {
				t.Fatalf("printed %q, want %q", out, want)
			}
			rows("vs", "default tcp-echo tcp-echo ([::]:31400 lookup: v1 100%, v2 0%)")
			rows("gw", "default tcp-echo-gateway tcp-echo ([::]:31400 lookup: v1 100%, v2 0%)")
			rows("dr", "default tcp-echo-destination tcp-echo ([::]:31400 lookup: v1 100%, v2 0%)")
			rows("se", "default tcp-echo tcp-echo ([::]:31400 lookup: v1 100%, v2 0%)")
		}},
		{loop, true, func(string) { sentWas(map[string]int{"one": 20}) }},
		{"tcpshift apply -f tcp-echo-20-v2.yaml", true, func(out string) {
			if want := "VirtualService default/tcp-echo configured\nservice tcp-echo updated\n"; out != want {
				t.Fatalf("printed %q, want %q", out, want)
			}
			rows("vs", "default tcp-echo tcp-echo ([::]:31400 lookup: v1 80%, v2 20%)")
		}},
		{loop, false, func(string) { sentWas(map[string]int{"one": 16, "two": 4}) }},
		{"tcpshift get virtualservice tcp-echo -o yaml", true, func(out string) {
			checkVS(t, out, "v1 80, v2 20", "v1 80%, v2 20%")
		}},
		{"tcpshift apply -f tcp-echo-100-v2.yaml", false, func(out string) {
			if want := "VirtualService default/tcp-echo configured\nservice tcp-echo updated\n"; out != want {
				t.Fatalf("printed %q, want %q", out, want)
			}
			checkVS(t, c.must("get", "virtualservice", "tcp-echo", "-o", "yaml"), "v2", "v1 0%, v2 100%")
		}},
		{loop, false, func(string) { sentWas(map[string]int{"two": 20}) }},
		{"tcpshift delete -f tcp-echo-all-v1.yaml", true, func(out string) {
			if want := "Gateway default/tcp-echo-gateway deleted\nDestinationRule default/tcp-echo-destination deleted\nVirtualService default/tcp-echo deleted\nservice tcp-echo removed\n"; out != want {
				t.Fatalf("printed %q, want %q", out, want)
			}
			if _, err := env.Ask("127.0.0.1:31400"); err == nil {
				t.Fatal("the gateway port still answers after delete")
			}
			rows("vs")
			rows("gw")
			rows("dr")
			rows("se", "default tcp-echo -")
			rows("we", "default tcp-echo-v1 -", "default tcp-echo-v2 -")
		}},
	}
	var fromTable []string
	for _, s := range steps {
		if s.table {
			fromTable = append(fromTable, s.cmd)
		}
	}
	if readme := istioTableCommands(t); !slices.Equal(readme, fromTable) {
		t.Fatalf("the README's Istio table has the commands\n%s\nthis test runs\n%s", strings.Join(readme, "\n"), strings.Join(fromTable, "\n"))
	}

	nc := regexp.MustCompile(`^for i in \$\(seq 1 ([0-9]+)\); do \(date; sleep 1\) \| nc -N (\S+) ([0-9]+); done$`)
	echo := regexp.MustCompile(`^tcp-echo ([0-9]+) (\S+) &$`)
	for i, s := range steps {
		var out string
		switch fields := strings.Fields(s.cmd); {
		case echo.MatchString(s.cmd):
			m := echo.FindStringSubmatch(s.cmd)
			env.Echo("127.0.0.1:"+m[1], m[2])
		case nc.MatchString(s.cmd):
			m := nc.FindStringSubmatch(s.cmd)
			n, _ := strconv.Atoi(m[1])
			sent = env.Count(m[2]+":"+m[3], n)
		case fields[0] == "tcpshift":
			args := slices.Clone(fields[1:])
			for j := range args {
				if j > 0 && args[j-1] == "-f" {
					args[j] = example(args[j])
				}
			}
			var err error
			if out, err = c.run(args...); err != nil {
				t.Fatalf("step %d, %s: %v", i+1, s.cmd, err)
			}
		default:
			t.Fatalf("step %d: no way to run %q", i+1, s.cmd)
		}
		t.Logf("step %d: %s", i+1, s.cmd)
		if s.check != nil {
			s.check(out)
		}
	}

	// What is left is workloads.yaml's, which deletes as it applied.
	c.must("delete", "-f", example("workloads.yaml"))
	rows("se")
	rows("we")
	c.must("down")
	env.RequireUnchanged(before)
}

// checkVS reads get virtualservice tcp-echo -o yaml: the routes as applied
// ("v1 80, v2 20"; a lone destination has no weight: "v2") and the shares in force under status.
func checkVS(t *testing.T, text, routes, shares string) {
	t.Helper()
	var vs struct {
		Spec struct {
			TCP []struct {
				Route []struct {
					Destination struct{ Subset string }
					Weight      *int
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
	if err := yaml.Unmarshal([]byte(text), &vs); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	var gotRoutes, gotShares []string
	for _, r := range vs.Spec.TCP[0].Route {
		w := "" // one destination: no weight, all of it
		if r.Weight != nil {
			w = " " + strconv.Itoa(*r.Weight)
		}
		gotRoutes = append(gotRoutes, r.Destination.Subset+w)
	}
	s := vs.Status.Tcpshift.Services
	if len(s) != 1 || s[0].Name != "tcp-echo" || s[0].Listen != "[::]:31400" || s[0].Mode != "lookup" {
		t.Fatalf("get vs: status %+v, want service tcp-echo on [::]:31400, lookup\n%s", vs.Status, text)
	}
	for _, sub := range s[0].Subsets {
		gotShares = append(gotShares, fmt.Sprintf("%s %g%%", sub.Name, sub.Percent))
	}
	if strings.Join(gotRoutes, ", ") != routes || strings.Join(gotShares, ", ") != shares {
		t.Fatalf("get vs: routes %q and shares %q, want %q and %q\n%s", gotRoutes, gotShares, routes, shares, text)
	}
}

// delete -f of one file leaves the objects applied before it consistent,
// or refuses naming what depends on what it deletes, and an apply that
// breaks an object applied before is refused naming it: in Istio's words,
// with the line of the object as get prints it. Nothing changes.
func TestIstioFilesDependOnEachOther(t *testing.T) {
	c := newCLI(t)
	c.must("apply", "-f", example("workloads.yaml"))
	c.must("apply", "-f", example("tcp-echo-all-v1.yaml"))
	vs := c.must("get", "virtualservice", "tcp-echo", "-o", "yaml")
	lineOf := func(text string) int {
		return slices.IndexFunc(strings.Split(vs, "\n"), func(l string) bool { return strings.TrimSpace(l) == text }) + 1
	}
	// Route errors are at the line of the route's destination, as in a file.
	hostLine := lineOf("- destination:")
	if hostLine == 0 {
		t.Fatalf("get vs tcp-echo -o yaml has no destination:\n%s", vs)
	}
	subsetLine := hostLine
	unchanged := func(what string) {
		t.Helper()
		if got := c.env.Count("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"one": 10}) {
			t.Fatalf("after %s: 10 connections went %v, want all to one", what, got)
		}
		if got := c.must("get", "virtualservice", "tcp-echo", "-o", "yaml"); got != vs {
			t.Fatalf("after %s: get vs tcp-echo -o yaml\n%s\nwas\n%s", what, got, vs)
		}
		if got := c.must("get", "se"); !strings.Contains(got, "default    tcp-echo  tcp-echo ([::]:31400 lookup: v1 100%, v2 0%)") {
			t.Fatalf("after %s: get se\n%s", what, got)
		}
	}

	for _, dry := range []bool{true, false} {
		args := []string{"delete", "-f", example("workloads.yaml")}
		if dry {
			args = append(args, "--dry-run")
		}
		_, err := c.run(args...)
		want := fmt.Sprintf("delete -f %s: nothing deleted: VirtualService default/tcp-echo, applied and not deleted, depends on what it deletes: "+
			"spec.tcp[0].route[0].destination.host: host tcp-echo is not declared: add a ServiceEntry with hosts: [tcp-echo] (tcpshift knows no other registry) "+
			"[line %d of tcpshift get virtualservice tcp-echo -o yaml]; delete VirtualService default/tcp-echo first, or in the same delete", example("workloads.yaml"), hostLine)
		if err == nil || err.Error() != want {
			t.Fatalf("tcpshift %s with the VirtualService applied: %v, want\n%s", strings.Join(args, " "), err, want)
		}
		unchanged(strings.Join(args, " "))
	}

	// The DestinationRule again without v1, which the VirtualService routes to.
	onlyV2 := writeFile(t, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: tcp-echo-destination
spec:
  host: tcp-echo
  subsets:
  - name: v2
    labels:
      version: v2
`)
	_, err := c.run("apply", "-f", onlyV2)
	want := fmt.Sprintf("apply -f %s: nothing applied: VirtualService default/tcp-echo, applied before, does not fit it: "+
		"spec.tcp[0].route[0].destination.subset: subset v1 is not defined for host tcp-echo (DestinationRule default/tcp-echo-destination defines v2) "+
		"[line %d of tcpshift get virtualservice tcp-echo -o yaml]; apply its change in the same apply, or delete it first", onlyV2, subsetLine)
	if err == nil || err.Error() != want {
		t.Fatalf("apply of a DestinationRule without the VirtualService's subset: %v, want\n%s", err, want)
	}
	unchanged("apply -f " + onlyV2)
	// With the VirtualService's change in the same apply, it goes through.
	c.must("apply", "-f", onlyV2, "-f", example("tcp-echo-100-v2.yaml"))
	if got := c.env.Count("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"two": 10}) {
		t.Fatalf("after the DestinationRule and the VirtualService together: %v, want all to two", got)
	}

	// An error in a file given still names the file and line (its route's
	// destination, line 15; line 14 as stored, without the comment).
	_, err = c.run("apply", "-f", example("tcp-echo-20-v2.yaml"))
	if want := example("tcp-echo-20-v2.yaml") + ":15: VirtualService default/tcp-echo: spec.tcp[0].route[0].destination.subset: subset v1 is not defined for host tcp-echo (DestinationRule default/tcp-echo-destination defines v2)"; err == nil || err.Error() != want {
		t.Fatalf("20-v2 without v1 defined: %v, want\n%s", err, want)
	}

	// In the order the dependencies allow, each file deletes on its own.
	c.must("delete", "-f", example("tcp-echo-all-v1.yaml"))
	c.must("delete", "-f", example("workloads.yaml"))
	if got := c.must("get", "se"); got != "NAMESPACE  NAME  SERVICES\n" {
		t.Fatalf("get se after both deletes:\n%q", got)
	}
}
