package main

import (
	"strings"
	"testing"
)

// TestCPUTable checks the breakdown's rows: medians of each part, the rest
// taken per repetition (all minus the parts), a dash for a path without a
// proxy process.
func TestCPUTable(t *testing.T) {
	res := &results{CPUs: 2, Paths: []*pathResult{
		{Name: "direct", Rate: []float64{1000, 1200, 1100}, Busy: []float64{0.85, 0.87, 0.86},
			CPUPerConn: []float64{100, 110, 120}, ClientCPU: []float64{50, 55, 60}, BackendCPU: []float64{49, 54, 59}},
		{Name: "haproxy", Rate: []float64{500}, Busy: []float64{0.9},
			CPUPerConn: []float64{200}, ServerCPU: []float64{80}, ClientCPU: []float64{60}, BackendCPU: []float64{58}},
		{Name: "skipped", Skipped: "not installed"},
	}}
	var b strings.Builder
	cpuTable(&b, res)
	out := b.String()
	for _, row := range []string{
		"| direct | 1100 | 86% | 110.0 | – | 55.0 | 54.0 | 1.0 |",
		"| haproxy | 500 | 90% | 200.0 | 80.0 | 60.0 | 58.0 | 2.0 |",
	} {
		if !strings.Contains(out, row) {
			t.Errorf("no row %q in:\n%s", row, out)
		}
	}
	if strings.Contains(out, "skipped") {
		t.Errorf("a path that was not measured has a row:\n%s", out)
	}
}
