package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// workloadEntries writes n WorkloadEntries, we-FIRST on, to a file.
func workloadEntries(t *testing.T, name string, first, n int) string {
	var b strings.Builder
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: we-%d}\nspec: {address: 127.0.0.1}\n---\n", i)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Objects past the objects map's 1024 are refused before the kernel is
// asked, naming the limit and the object, at its file and line.
func TestObjectLimitThroughCLI(t *testing.T) {
	c := newCLI(t)
	c.must("apply", "-f", workloadEntries(t, "full.yaml", 0, 1024))
	more := workloadEntries(t, "more.yaml", 1024, 1)
	_, err := c.run("apply", "-f", more)
	want := more + ":1: WorkloadEntry default/we-1024: object 1025 with those applied before: at most 1024 Istio and Gateway API objects are kept per network namespace: delete some first"
	if err == nil || err.Error() != want {
		t.Fatalf("the 1025th object:\ngot  %v\nwant %s", err, want)
	}
	if got := strings.Count(c.must("get", "we"), "we-"); got != 1024 {
		t.Fatalf("%d WorkloadEntries kept after the refusal", got)
	}
	c.must("apply", "-f", workloadEntries(t, "again.yaml", 0, 1024)) // the same ones again: no growth

	c.must("down")
	over := workloadEntries(t, "over.yaml", 0, 1025)
	_, err = c.run("apply", "-f", over)
	want = over + ":5121: WorkloadEntry default/we-1024: object 1025 of the input: at most 1024 Istio and Gateway API objects are kept per network namespace"
	if err == nil || err.Error() != want {
		t.Fatalf("1025 objects in one file:\ngot  %v\nwant %s", err, want)
	}
}
