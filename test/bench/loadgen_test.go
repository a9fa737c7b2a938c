package main

import (
	"slices"
	"testing"
)

func TestInterleave(t *testing.T) {
	for _, c := range []struct {
		weights []int
		want    []int
	}{
		{[]int{4, 1}, []int{0, 0, 1, 0, 0}}, // the direct path's 80/20
		{[]int{1}, []int{0}},
		{[]int{1, 1}, []int{0, 1}},
		{[]int{2, 3}, []int{1, 0, 1, 0, 1}},
	} {
		if got := interleave(c.weights); !slices.Equal(got, c.want) {
			t.Errorf("interleave(%v) = %v, want %v", c.weights, got, c.want)
		}
	}
}
