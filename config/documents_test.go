package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A route config in several documents (---) is one route config: the
// services of every document, in file order.
func TestDocuments(t *testing.T) {
	text := lines(
		"# tcp-echo",
		"services:",
		"- name: a",
		"  listen: 127.0.0.1:9000",
		"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
		"---",
		"---", // an empty document is nothing
		"services:",
		"- name: b",
		"  listen: 127.0.0.1:9001",
		"  subsets: {v1: {endpoints: [10.0.0.2:1]}}",
		"- name: c",
		"  listen: 127.0.0.1:9002",
		"  subsets: {v1: {endpoints: [10.0.0.3:1]}}",
		"---",
	)
	path := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range cfg.Services {
		got = append(got, fmt.Sprintf("%s@%d", s.Name, s.Line))
	}
	if strings.Join(got, " ") != "a@3 b@9 c@12" || cfg.Path != path {
		t.Fatalf("services %v of %s", got, cfg.Path)
	}

	two := func(second ...string) string {
		return lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
			"---",
			"services:",
		) + lines(second...)
	}
	// What one list refuses, two documents refuse, at the second.
	parseError(t, two("- name: a", "  listen: 127.0.0.1:9001", svcRest),
		`routes.yaml:7: services[0].name: duplicate service "a" (first at line 2)`)
	parseError(t, two("- name: b", "  listen: 127.0.0.1:9000", svcRest),
		`routes.yaml:8: services[0].listen: listen address 127.0.0.1:9000 is already used by service "a" (line 3)`)
	parseError(t, two("- name: b", "  listen: 127.0.0.1:9001", "  subsets: {v1: {endpoints: [10.0.0.1:1]}, v1: {endpoints: [10.0.0.1:2]}}"),
		`routes.yaml:9: services[0].subsets.v1: duplicate subset "v1" (first at line 9)`)
	// A document with no services is refused as a file with none is.
	parseError(t, two("  []"), "routes.yaml:7: "+noServices)
	// Only empty documents: no services.
	parseError(t, "---\n---\n", "routes.yaml:2: "+noServices)
}

// The limits count the services and endpoints of every document.
func TestDocumentsLimits(t *testing.T) {
	var b strings.Builder
	line := 0
	for i := range MaxServices + 1 {
		if i%1000 == 0 {
			b.WriteString("---\nservices:\n")
			line += 2
		}
		fmt.Fprintf(&b, "- {name: s%d, listen: '127.0.%d.%d:1', subsets: {v1: {endpoints: [10.0.0.1:1]}}}\n", i, i/250, i%250+1)
		line++
	}
	parseError(t, b.String(), fmt.Sprintf("routes.yaml:%d: services[384]: too many services (max %d)", line, MaxServices))

	counts := make([][]int, 8)
	for i := range counts {
		counts[i] = full()
	}
	text, _ := endpointsYAML(counts)
	more := lines(
		"---",
		"services:",
		"- name: more",
		"  listen: 127.0.0.1:2000",
		"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
	)
	n := strings.Count(text, "\n")
	parseError(t, text+more, fmt.Sprintf("routes.yaml:%d: services[0].subsets.v1.endpoints[0]: endpoint 131073 of the file: at most 131072 endpoints per network namespace (all services together)", n+5))
}
