package features

import (
	"errors"
	"strings"
	"testing"
)

// Every core facility is on CI's machines; the probes say so, and say it
// again from the cache.
func TestCoreFacilitiesHere(t *testing.T) {
	t.Setenv(DisableEnv, "")
	for _, f := range All {
		if f.Core {
			if err := Check(f.Name); err != nil {
				t.Errorf("%s: %v", f.Name, err)
			}
		}
		if f.What == "" || f.Enables == "" || f.Without == "" || f.probe == nil {
			t.Errorf("%s is not fully described: %+v", f.Name, f)
		}
	}
	if m := Probe().Missing(); len(m) != 0 {
		t.Fatalf("missing %v", m)
	}
}

// DisableEnv turns named facilities off, as if refused, and only those; it
// is read at every check, past the probe's cache.
func TestDisableEnv(t *testing.T) {
	t.Setenv(DisableEnv, "")
	before := Check(SkLookup)
	t.Setenv(DisableEnv, " sk_lookup ,iter_sk_storage")
	for _, n := range []Name{SkLookup, IterSkStorage} {
		if err := Check(n); !errors.Is(err, ErrDisabled) || !strings.HasPrefix(err.Error(), string(n)+": ") {
			t.Errorf("%s: %v, want ErrDisabled naming it", n, err)
		}
	}
	if err := Check(BTF); err != nil {
		t.Errorf("btf, not named: %v", err)
	}
	r := Probe()
	if m := r.Missing(); len(m) != 1 || m[0] != SkLookup {
		t.Errorf("missing %v, want [sk_lookup] (iter_sk_storage is optional)", m)
	}
	t.Setenv(DisableEnv, "")
	if err := Check(SkLookup); (err == nil) != (before == nil) {
		t.Errorf("sk_lookup after the switch is off: %v, before %v", err, before)
	}
}

func TestUnknownFacility(t *testing.T) {
	if err := Check("teleport"); err == nil || !strings.Contains(err.Error(), `unknown kernel facility "teleport"`) {
		t.Fatalf("Check(teleport): %v", err)
	}
}

// A refused program is reported with the kernel's error, not as a crash:
// a name that is no program of ours fails to load, cleanly.
func TestLoadProgramError(t *testing.T) {
	if err := loadProgram("no_such_program"); err == nil || !strings.Contains(err.Error(), "load no_such_program") {
		t.Fatalf("loadProgram(no_such_program): %v", err)
	}
}
