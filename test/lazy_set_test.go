package test

import (
	"testing"

	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/maps"
)

// A Set opened lazily (maps.OpenLazy, what Target.Update gives writers)
// serves the methods that use a map directly, opening it then: they used
// to reach a placeholder instead of the pinned map.
func TestLazySetDirectMaps(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)

	set, err := maps.OpenLazy(tg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	svc, ok, err := set.Service("tcp-echo")
	if err != nil || !ok {
		t.Fatalf("service tcp-echo: %v, %v", ok, err)
	}
	if err := set.AddRefused(svc.ID, 3); err != nil {
		t.Fatalf("AddRefused on a lazy set: %v", err)
	}
	st, err := tg.Status("")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Services[0].Refused; got != 3 {
		t.Fatalf("refused after AddRefused(3): %d", got)
	}
	v, err := set.MapVersions()
	if err != nil {
		t.Fatalf("MapVersions on a lazy set: %v", err)
	}
	defer v.Unmap()
	if v.Len() == 0 {
		t.Fatal("MapVersions on a lazy set mapped no counter")
	}
	if _, ok := v.Load(svc.ID); !ok {
		t.Fatalf("no version counter for service %d", svc.ID)
	}
}
