package main

import (
	"context"
	"maps"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tcpshift run re-applies whole files on every change, so every object
// is put again: a route keeps the creationTimestamp of its first apply,
// and the older route stays served on its listener when a newer one is
// added before it in the file or the older one changes.
func TestGatewayAPIRunKeepsOldestRoute(t *testing.T) {
	c := newCLI(t)
	base := writeFile(t, gatewayBase+`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo-v2}
spec:
  hosts: [tcp-echo-v2]
  ports: [{number: 3000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9002}}]
`)
	// Named so that name order would pick the newer one.
	older := tcpRoute("z-older", "[{name: tcp-echo-v1, port: 3000}]")
	newer := tcpRoute("a-newer", "[{name: tcp-echo-v2, port: 3000}]")
	routes := writeFile(t, older)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runContext(ctx, []string{"tcpshift", "--netns", c.env.NS.Path(), "--bpffs", c.env.BPFFS, "--cgroup", c.env.Cgroup,
			"run", "-f", base, "-f", routes, "--log-format", "json"}, &out, &logs)
	}()
	applied := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), `"msg":"route config applied"`) < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("run did not apply the files %d times:\n%s", n, logs.String())
			}
		}
	}
	rewrite := func(text string) {
		t.Helper()
		if err := os.WriteFile(routes+".new", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(routes+".new", routes); err != nil {
			t.Fatal(err)
		}
	}
	c.env.WaitListening("127.0.0.1:31400")
	first := creationOf(t, c, "z-older")

	rewrite(newer + "---\n" + older)
	applied(1)
	if got := creationOf(t, c, "z-older"); !got.Equal(first) {
		t.Fatalf("z-older was created %s, and %s after run re-read its file", first, got)
	}
	if got := creationOf(t, c, "a-newer"); !got.After(first) {
		t.Fatalf("a-newer, added later, was created %s, not after z-older (%s)", got, first)
	}
	if got := c.share("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"one": 10}) {
		t.Fatalf("a newer route added before the older in the file: 10 connections went %v, want all to one", got)
	}

	rewrite(newer + "---\n" + strings.Replace(older, "port: 3000}", "port: 3000, weight: 2}", 1))
	applied(2)
	if got := creationOf(t, c, "z-older"); !got.Equal(first) {
		t.Fatalf("z-older changed: created %s, then %s", first, got)
	}
	if got := c.share("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"one": 10}) {
		t.Fatalf("the older route changed: 10 connections went %v, want all to one", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
}

// creationOf is a TCPRoute's creationTimestamp as get -o yaml prints it.
func creationOf(t *testing.T, c shell, name string) time.Time {
	t.Helper()
	out := c.must("get", "tcproute", name, "-o", "yaml")
	m := regexp.MustCompile(`creationTimestamp: "([^"]+)"`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("get tcproute %s -o yaml has no creationTimestamp:\n%s", name, out)
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatalf("get tcproute %s -o yaml: %v", name, err)
	}
	return at
}
