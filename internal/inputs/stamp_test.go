package inputs

import (
	"strings"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/maps"
)

// An object keeps the creationTimestamp of its first apply through later
// applies and through tcpshift run's whole-file (Exact) applies, which
// replace every stored object: the oldest of routes on one listener is
// served, so a re-read file must not make a route newer.
func TestCreationKeptAcrossApplies(t *testing.T) {
	const entry = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: r}\nspec: {hosts: [r]}\n"
	docs, err := istio.Decode("r.yaml", []byte(entry))
	if err != nil {
		t.Fatal(err)
	}
	o := docs[0].Object
	before := time.Now()
	first := &Change{Put: []*istio.Object{o}}
	built, err := first.Build(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept := built.Objects.Put[0]
	created, err := istio.DecodeStored(o.Key, kept.Text)
	if err != nil {
		t.Fatal(err)
	}
	if created.Created.Before(before) || created.Created.After(time.Now()) {
		t.Fatalf("first apply stamped %v, want the time of the apply", created.Created)
	}
	stored := []maps.StoredObject{{Key: maps.ObjectKey(o.Key), Text: kept.Text}}
	for _, exact := range []bool{false, true} {
		again := &Change{Put: []*istio.Object{o}, Exact: exact}
		built, err := again.Build(stored, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(built.Objects.Put[0].Text); got != string(kept.Text) || !strings.Contains(got, "creationTimestamp") {
			t.Fatalf("apply again (exact %v) keeps\n%s\nwant the first apply's\n%s", exact, got, kept.Text)
		}
	}
}
