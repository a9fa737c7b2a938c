package test

import (
	"errors"
	"os"
	"testing"

	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// A weight change opens only the maps it uses (maps.OpenLazy) and reads
// only its service: a refused one leaves the kernel exactly as it was, a
// service not loaded is named with the ones that are, 50 changes leave no
// descriptor open, and the last one is the one in force.
func TestSetWeightLazyRefusalsAndDescriptors(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)

	before := env.KernelState()
	_, err := tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: 5}, {Subset: "v9", Weight: 5}})
	wantErr(t, "unknown subset", err, "v9")
	_, err = tg.SetWeights("nope", []loader.Weight{{Subset: "v1", Weight: 1}})
	if !errors.Is(err, loader.ErrNoService) {
		t.Fatalf("unknown service: %v, want ErrNoService", err)
	}
	wantErr(t, "unknown service", err, `"nope"`, "loaded: tcp-echo")
	env.RequireUnchanged(before)

	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	setWeights(t, tg, 1, 1) // anything opened once for good is open now
	open := fds()
	for i := range 50 {
		setWeights(t, tg, uint64(i%2), uint64(1-i%2))
	}
	if got := fds(); got != open {
		t.Fatalf("%d descriptors open after 50 weight changes, %d before", got, open)
	}
	if got := env.Count(frontend, 20); got["one"] != 20 {
		t.Fatalf("after v1=1 v2=0: %v, want all 20 to one", got)
	}
}
