package maps

import (
	"math/rand/v2"
	"slices"
	"testing"
)

const testCapacity = 4096

func counts(seq []uint8, n int) []uint64 {
	c := make([]uint64, n)
	for _, s := range seq {
		c[s]++
	}
	return c
}

func TestSequenceExamples(t *testing.T) {
	for _, tc := range []struct {
		weights []uint64
		seq     []uint8
	}{
		{[]uint64{80, 20}, []uint8{0, 0, 1, 0, 0}},
		{[]uint64{800, 200}, []uint8{0, 0, 1, 0, 0}},
		{[]uint64{4, 1}, []uint8{0, 0, 1, 0, 0}},
		{[]uint64{5, 1, 1}, []uint8{0, 0, 1, 0, 2, 0, 0}},
		{[]uint64{100, 0}, []uint8{0}},
		{[]uint64{0, 100}, []uint8{1}},
		{[]uint64{50, 50}, []uint8{0, 1}},
		{[]uint64{0, 0}, []uint8{}},
		{[]uint64{}, []uint8{}},
		{[]uint64{1<<64 - 1, 1<<64 - 1}, []uint8{0, 1}},
	} {
		seq, _ := Sequence(tc.weights, testCapacity)
		if !slices.Equal(seq, tc.seq) {
			t.Errorf("Sequence(%v) = %v, want %v", tc.weights, seq, tc.seq)
		}
	}
}

// Every window of sum/gcd consecutive positions, taken cyclically, holds each
// subset exactly weight/gcd times, for many random weight sets.
func TestSequenceExactInEveryWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		n := 1 + rng.IntN(16)
		weights := make([]uint64, n)
		var sum uint64
		for i := range weights {
			weights[i] = uint64(rng.IntN(300))
			sum += weights[i]
		}
		if sum > testCapacity {
			continue
		}
		seq, inForce := Sequence(weights, testCapacity)
		g := uint64(0)
		for _, w := range weights {
			g = gcd64(g, w)
		}
		if g == 0 {
			if len(seq) != 0 {
				t.Fatalf("weights %v: want an empty sequence, got %d positions", weights, len(seq))
			}
			continue
		}
		if uint64(len(seq)) != sum/g {
			t.Fatalf("weights %v: sequence length %d, want %d", weights, len(seq), sum/g)
		}
		for start := range seq {
			window := append(slices.Clone(seq[start:]), seq[:start]...)
			got := counts(window, n)
			for i, w := range weights {
				if got[i] != w/g || inForce[i] != w/g {
					t.Fatalf("weights %v window at %d: subset %d got %d (in force %d), want %d", weights, start, i, got[i], inForce[i], w/g)
				}
			}
		}
	}
}

// Smooth: in every prefix, each subset's count stays within one of its exact
// share, so 80/20 gives 0,0,1,0,0 and never 0,0,0,0,1.
func TestSequenceInterleaves(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		n := 2 + rng.IntN(6)
		weights := make([]uint64, n)
		var sum uint64
		for i := range weights {
			weights[i] = uint64(1 + rng.IntN(100))
			sum += weights[i]
		}
		seq, inForce := Sequence(weights, testCapacity)
		var total uint64
		for _, w := range inForce {
			total += w
		}
		got := make([]uint64, n)
		for k, s := range seq {
			got[s]++
			for i, w := range inForce {
				exact := float64(w) * float64(k+1) / float64(total)
				if d := float64(got[i]) - exact; d <= -1.5 || d >= 1.5 {
					t.Fatalf("weights %v: after %d positions subset %d has %d, exact share %.2f", weights, k+1, i, got[i], exact)
				}
			}
		}
	}
}

func TestSequenceScalesToCapacity(t *testing.T) {
	for _, tc := range []struct {
		weights, inForce []uint64
	}{
		// 1000001 positions do not fit: 4096 positions split as closely as possible.
		{[]uint64{1000000, 1}, []uint64{4095, 1}},
		{[]uint64{1, 1000000}, []uint64{1, 4095}},
		{[]uint64{2000, 2001, 1}, []uint64{2000, 2001, 1}},
		{[]uint64{3000, 3000, 2000}, []uint64{3, 3, 2}},
		{[]uint64{3001, 3000, 2000}, []uint64{3, 3, 2}}, // 1536/1536/1024, reduced
		{[]uint64{1<<64 - 1, 1<<63 - 1}, []uint64{2731, 1365}},
		{[]uint64{3, 0, 4093}, []uint64{3, 0, 4093}},
	} {
		seq, inForce := Sequence(tc.weights, testCapacity)
		if !slices.Equal(inForce, tc.inForce) {
			t.Errorf("Sequence(%v) in force %v, want %v", tc.weights, inForce, tc.inForce)
		}
		if len(seq) > testCapacity {
			t.Errorf("Sequence(%v) has %d positions, capacity %d", tc.weights, len(seq), testCapacity)
		}
		if !slices.Equal(counts(seq, len(tc.weights)), tc.inForce) {
			t.Errorf("Sequence(%v) counts %v, want %v", tc.weights, counts(seq, len(tc.weights)), tc.inForce)
		}
	}
}

// Scaled weights stay within one position of the exact proportion (when
// every share is at least one position).
func TestSequenceScalingIsClose(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 300 {
		n := 2 + rng.IntN(15)
		weights := make([]uint64, n)
		var sum float64
		for i := range weights {
			weights[i] = rng.Uint64() >> (1 + rng.IntN(8)) // shares of at least one position
			sum += float64(weights[i])
		}
		if slices.ContainsFunc(weights, func(w uint64) bool { return float64(w)/sum*testCapacity < 1 }) {
			continue // bumped to one position: TestSequenceScalesToCapacity
		}
		_, inForce := Sequence(weights, testCapacity)
		var total uint64
		for _, w := range inForce {
			total += w
		}
		for i, w := range weights {
			exact := float64(w) / sum * float64(total)
			if d := float64(inForce[i]) - exact; d <= -1 || d >= 1 {
				t.Fatalf("weights %v: subset %d in force %d of %d, exact %.3f", weights, i, inForce[i], total, exact)
			}
		}
	}
}
