package daemon

import (
	"testing"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
)

func TestCheckStateThresholds(t *testing.T) {
	h := &config.Health{Rise: 2, Fall: 3}
	s := &checkState{health: maps.HealthUnchecked}
	steps := []struct {
		ok      bool
		changed bool
		want    maps.Health
	}{
		{true, true, maps.HealthUp}, // unchecked: one success is enough
		{false, false, maps.HealthUp},
		{false, false, maps.HealthUp},
		{true, false, maps.HealthUp}, // a success breaks the run of failures
		{false, false, maps.HealthUp},
		{false, false, maps.HealthUp},
		{false, true, maps.HealthDown}, // fall = 3 in a row
		{false, false, maps.HealthDown},
		{true, false, maps.HealthDown},
		{false, false, maps.HealthDown}, // breaks the run of successes
		{true, false, maps.HealthDown},
		{true, true, maps.HealthUp}, // rise = 2 in a row
	}
	for i, st := range steps {
		if changed := s.observe(st.ok, h); changed != st.changed || s.health != st.want {
			t.Fatalf("step %d (ok=%v): changed %v health %s, want %v %s", i, st.ok, changed, maps.HealthName(s.health), st.changed, maps.HealthName(st.want))
		}
	}
}

func TestCheckStateUncheckedFallsDown(t *testing.T) {
	h := &config.Health{Rise: 1, Fall: 2}
	s := &checkState{health: maps.HealthUnchecked}
	if s.observe(false, h) || !s.observe(false, h) || s.health != maps.HealthDown {
		t.Fatalf("unchecked endpoint after 2 failures: %s, want down", maps.HealthName(s.health))
	}
}
