package maps

import (
	"math/big"
	"sort"
)

// Sequence returns the order in which subsets take new connections, for the
// relative weights given, and the weights actually in force.
//
// The sequence is exact smooth weighted round-robin (nginx's algorithm):
// weights are divided by their greatest common divisor, and each subset i
// appears exactly weights[i]/gcd times in a sequence of sum/gcd positions,
// spread out rather than grouped. Where sum/gcd exceeds capacity, the
// weights are first scaled to sum to capacity by the largest-remainder
// method, so the split is as close as a table of that size allows; a
// non-zero weight always keeps at least one position. All weights zero gives
// an empty sequence: every new connection is refused.
func Sequence(weights []uint64, capacity int) (seq []uint8, inForce []uint64) {
	inForce = fit(weights, capacity)
	var total uint64
	for _, w := range inForce {
		total += w
	}
	// Each step credits every subset with its weight and picks the one with
	// the most credit, which then pays the total back.
	credit := make([]int64, len(inForce))
	seq = make([]uint8, 0, total)
	for range total {
		best := -1
		for i, w := range inForce {
			if w == 0 {
				continue
			}
			credit[i] += int64(w)
			if best < 0 || credit[i] > credit[best] {
				best = i
			}
		}
		credit[best] -= int64(total)
		seq = append(seq, uint8(best))
	}
	return seq, inForce
}

// fit reduces weights by their gcd and, where the sum still exceeds
// capacity, apportions capacity among them.
func fit(weights []uint64, capacity int) []uint64 {
	ws := make([]*big.Int, len(weights))
	sum, gcd := new(big.Int), new(big.Int)
	for i, w := range weights {
		ws[i] = new(big.Int).SetUint64(w)
		sum.Add(sum, ws[i])
		gcd.GCD(nil, nil, gcd, ws[i])
	}
	out := make([]uint64, len(weights))
	if sum.Sign() == 0 {
		return out
	}
	sum.Quo(sum, gcd)
	for _, w := range ws {
		w.Quo(w, gcd)
	}
	if sum.Cmp(big.NewInt(int64(capacity))) <= 0 {
		for i, w := range ws {
			out[i] = w.Uint64()
		}
		return out
	}

	// Largest remainder: floor(w*capacity/sum) each, then one more to the
	// largest remainders until capacity is used.
	rem := make([]*big.Int, len(ws))
	used := 0
	for i, w := range ws {
		q, r := new(big.Int).QuoRem(new(big.Int).Mul(w, big.NewInt(int64(capacity))), sum, new(big.Int))
		out[i], rem[i] = q.Uint64(), r
		used += int(out[i])
	}
	order := make([]int, len(ws))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]].Cmp(rem[order[b]]) > 0 })
	for k := 0; used < capacity; k++ {
		out[order[k%len(order)]]++
		used++
	}
	// A weight the user set above zero must not silently stop taking
	// connections: give it one position, taken from the largest share.
	for i, w := range ws {
		if w.Sign() > 0 && out[i] == 0 {
			out[i] = 1
			out[largest(out)]--
		}
	}
	return reduce(out)
}

func largest(ws []uint64) int {
	best := 0
	for i, w := range ws {
		if w > ws[best] {
			best = i
		}
	}
	return best
}

func reduce(ws []uint64) []uint64 {
	var g uint64
	for _, w := range ws {
		g = gcd64(g, w)
	}
	if g > 1 {
		for i := range ws {
			ws[i] /= g
		}
	}
	return ws
}

func gcd64(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
