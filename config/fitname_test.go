package config

import (
	"strings"
	"testing"
)

func TestFitName(t *testing.T) {
	short := strings.Repeat("a", MaxNameLen)
	if got := FitName(short); got != short {
		t.Errorf("a name of %d bytes became %q", MaxNameLen, got)
	}
	long1, long2 := short+".one", short+".two"
	f1, f2 := FitName(long1), FitName(long2)
	if len(f1) != MaxNameLen || len(f2) != MaxNameLen || f1 == f2 || FitName(long1) != f1 || !strings.HasPrefix(f1, "aaaa") {
		t.Errorf("long names became %q and %q", f1, f2)
	}
}
