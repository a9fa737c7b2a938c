package test

import (
	"maps"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/internal/testenv"
)

// An apply keeps the programs attached when they are this build's, loaded
// with the same constants; programs another build attached (another tag in
// the owner record) are replaced through the same links, and serve.
func TestProgramsKeptOrReplaced(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)
	before, err := tg.Links()
	if err != nil {
		t.Fatal(err)
	}

	setWeights(t, tg, 50, 50)
	apply(t, tg, echoConfig)
	same, err := tg.Links()
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if same[i] != before[i] {
			t.Fatalf("%s: %+v after applies of the same build, want %+v kept", before[i].Program, same[i], before[i])
		}
	}

	// Another build's programs: the owner record names another tag.
	owners, err := ebpf.LoadPinnedMap(filepath.Join(tg.Dir, bpf.TcpshiftMapOwners), nil)
	if err != nil {
		t.Fatal(err)
	}
	var o bpf.TcpshiftOwner
	if err := owners.Lookup(uint32(0), &o); err != nil {
		t.Fatal(err)
	}
	o.ProgTag ^= 0x100
	if err := owners.Put(uint32(0), &o); err != nil {
		t.Fatal(err)
	}
	owners.Close()
	setWeights(t, tg, 80, 20)
	apply(t, tg, echoConfig)
	after, err := tg.Links()
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if after[i].Link != before[i].Link || after[i].ProgramID == before[i].ProgramID {
			t.Fatalf("%s: link %d program %d, want link %d with a new program", before[i].Program, after[i].Link, after[i].ProgramID, before[i].Link)
		}
	}
	if got := env.Count(frontend, 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("through the new programs: %v, want 8/2", got)
	}
}
