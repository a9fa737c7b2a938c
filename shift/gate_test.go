package shift

import (
	"slices"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/loader"
)

func TestShiftWeights(t *testing.T) {
	for _, c := range []struct {
		before []uint64
		to     int
		from   []int
		p      uint32
		want   []uint64
	}{
		{[]uint64{100, 0}, 1, []int{0}, 10, []uint64{900, 100}},
		{[]uint64{80, 20}, 1, []int{0}, 50, []uint64{500, 500}},
		{[]uint64{80, 20}, 1, []int{0}, 100, []uint64{0, 1000}},
		// Two donors share what is left in proportion; 1/3 rounds to the last.
		{[]uint64{1, 2, 0}, 2, []int{0, 1}, 10, []uint64{300, 600, 100}},
		// A subset not in --from keeps its share.
		{[]uint64{50, 25, 25}, 2, []int{0}, 100, []uint64{0, 250, 750}},
	} {
		if got := loader.ShiftWeights(c.before, c.to, c.from, c.p); !slices.Equal(got, c.want) {
			t.Errorf("ShiftWeights(%v, to %d, from %v, %d%%) = %v, want %v", c.before, c.to, c.from, c.p, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		steps []uint32
		want  string
	}{
		{nil, "--steps: none given"},
		{[]uint32{10, 10, 100}, "--steps: 10 after 10: steps must rise"},
		{[]uint32{10, 50}, "--steps: the last step is 50%; a shift ends at 100"},
		{[]uint32{0, 100}, "--steps: 0 is not a percent 1-100"},
	} {
		o := Options{To: "v2", Steps: c.steps, Interval: time.Second}
		if err := o.Validate(); err == nil || err.Error() != c.want {
			t.Errorf("steps %v: %v, want %s", c.steps, err, c.want)
		}
	}
}

func TestJudge(t *testing.T) {
	g := Gates{MaxFailureRate: 0.01, MaxResetRate: 0.01}
	if f := g.judge("v2", Figures{Connections: 200, Failed: 1}, Figures{Connections: 800}); f != nil {
		t.Fatalf("0.5%% failures: %v", f)
	}
	f := g.judge("v2", Figures{Connections: 40, Failed: 12}, Figures{Connections: 360, Failed: 1})
	if f == nil || f.Gate != "failure-rate" || f.Msg != "v2: 12 of 40 connects failed (30% > 1%; the other subsets: 1 of 360)" {
		t.Fatalf("30%% failures: %v", f)
	}
	f = g.judge("v2", Figures{Connections: 10, Resets: 10}, Figures{Connections: 90})
	if f == nil || f.Gate != "reset-rate" {
		t.Fatalf("all reset: %v", f)
	}
}
