package main

import (
	"fmt"
	"slices"
)

// printWeightChanges prints what a -weight-only run measured: per path, the
// time from the start of each weight write to the first connection the new
// weights answered (median, 90th percentile, worst, in µs) and the flips.
func printWeightChanges(res *results) {
	for _, r := range res.Paths {
		if len(r.WeightUs) == 0 {
			continue
		}
		us := slices.Sorted(slices.Values(r.WeightUs))
		line := fmt.Sprintf("%s (%s): %d changes, visible after median %.0f µs, p90 %.0f µs, worst %.0f µs",
			r.Name, r.WeightMethod, len(us), median(us), us[len(us)*9/10], us[len(us)-1])
		if r.FlipFailed != nil {
			line += fmt.Sprintf("; %d flips, %d of %d connections failed", r.FlipCount, *r.FlipFailed, r.FlipConns)
		}
		for _, p := range r.Problems {
			line += "; problem: " + p
		}
		fmt.Println(line)
	}
}
