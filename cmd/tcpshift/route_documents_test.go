package main

import (
	"maps"
	"strings"
	"testing"
)

// A route config in two documents is applied as one: both services, and
// an apply of the first document alone removes the second's.
func TestApplyRouteConfigDocuments(t *testing.T) {
	c := newCLI(t)
	two := strings.NewReplacer("name: tcp-echo", "name: echo-2", "127.0.0.100", "127.0.0.101").Replace(routes)
	if out := c.must("apply", "-f", writeFile(t, routes+"---\n"+two)); out != "service tcp-echo added\nservice echo-2 added\n" {
		t.Fatalf("apply printed %q", out)
	}
	if got := c.env.Count("127.0.0.101:9000", 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("the second document's service: %v", got)
	}
	if out := c.must("apply", "-f", writeFile(t, routes)); out != "service tcp-echo unchanged\nservice echo-2 removed\n" {
		t.Fatalf("apply of the first document alone printed %q", out)
	}
}
