package istio

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/config"
)

// MaxObjects is the objects map's size.
func TestMaxObjectsIsTheMapSize(t *testing.T) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		t.Fatal(err)
	}
	m := spec.Maps[bpf.TcpshiftMapObjects]
	if m == nil || m.MaxEntries != MaxObjects {
		t.Fatalf("objects map %+v, MaxObjects %d", m, MaxObjects)
	}
	if n := len(bpf.TcpshiftObject{}.Text); n != MaxObjectText {
		t.Fatalf("an object holds %d bytes, MaxObjectText %d", n, MaxObjectText)
	}
	if n := len(bpf.TcpshiftObjectKey{}.Namespace) - 1; n != MaxNamespaceLen {
		t.Fatalf("a namespace holds %d bytes, MaxNamespaceLen %d", n, MaxNamespaceLen)
	}
}

// An object the map cannot keep is refused when it is read, at its file
// and line, naming the limit: not when it is stored.
func TestObjectSize(t *testing.T) {
	ns := strings.Repeat("n", MaxNamespaceLen+1)
	text := "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x}\nspec: {address: 127.0.0.1}\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x, namespace: " + ns + "}\nspec: {address: 127.0.0.1}\n"
	want := "x.yaml:6: WorkloadEntry.metadata.namespace: \"" + ns + "\" is 64 bytes long: at most 63"
	if _, err := Decode("x.yaml", []byte(text)); err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	text = "# big\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: x\n  annotations: {note: " + strings.Repeat("a", MaxObjectText) + "}\nspec: {address: 127.0.0.1}\n"
	_, err := Decode("x.yaml", []byte(text))
	if err == nil || !strings.HasPrefix(err.Error(), "x.yaml:2: WorkloadEntry default/x: ") || !strings.HasSuffix(err.Error(), fmt.Sprintf(" bytes as YAML: at most %d per object can be kept", MaxObjectText)) {
		t.Fatalf("got %v", err)
	}
}

// workloadEntries writes n WorkloadEntries named we-FIRST... as one file,
// and returns the line of each document.
func workloadEntries(first, n int) (string, []int) {
	var b strings.Builder
	var at []int
	line := 1
	for i := first; i < first+n; i++ {
		at = append(at, line)
		fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: we-%d}\nspec: {address: 127.0.0.1}\n---\n", i)
		line += 5
	}
	return b.String(), at
}

// More objects than the map holds are refused before anything is stored,
// at the first one past the limit, with its file and line: the input
// alone, or with the objects applied before.
func TestMaxObjects(t *testing.T) {
	text, _ := workloadEntries(0, MaxObjects)
	full := writeFile(t, "full.yaml", text)
	in, err := Load([]string{full}, nil)
	if err != nil || len(in.Objects) != MaxObjects {
		t.Fatalf("%d objects: %v", MaxObjects, err)
	}
	if _, err := Derive(in.Objects); err != nil {
		t.Fatalf("%d objects: %v", MaxObjects, err)
	}

	text, at := workloadEntries(0, MaxObjects+1)
	over := writeFile(t, "over.yaml", text)
	want := fmt.Sprintf("%s:%d: WorkloadEntry default/we-1024: object 1025 of the input: at most 1024 Istio and Gateway API objects are kept per network namespace", over, at[MaxObjects])
	if _, err := Load([]string{over}, nil); err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}

	// 1000 applied before (as they are read back), 30 more in one apply:
	// the 25th of those is refused; replacing applied ones is no growth.
	text, _ = workloadEntries(0, 1000)
	stored := decodeAll(t, "stored", text)
	text, at = workloadEntries(1000, 30)
	more := decodeAll(t, "more.yaml", text)
	want = fmt.Sprintf("more.yaml:%d: WorkloadEntry default/we-1024: object 1025 with those applied before: at most 1024 Istio and Gateway API objects are kept per network namespace: delete some first", at[24])
	if _, err := Derive(append(stored, more...)); err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if _, err := Derive(append(stored, append(more[:24], stored[:500]...)...)); err != nil {
		t.Fatalf("1024 objects, some given again: %v", err)
	}
}

func decodeAll(t *testing.T, path, text string) []*Object {
	t.Helper()
	docs, err := Decode(path, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var objs []*Object
	for _, d := range docs {
		objs = append(objs, d.Object)
	}
	return objs
}

// meshService is a ServiceEntry with the given inline endpoints (one
// version label each), a DestinationRule with a subset per version, and a
// VirtualService routing to the subsets named.
func meshService(endpoints []string, subsets int, routed []string) string {
	var b strings.Builder
	b.WriteString("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: echo}\nspec:\n  hosts: [echo]\n  addresses: [10.96.0.10]\n  ports: [{number: 9000, name: tcp}]\n  endpoints:\n")
	for _, e := range endpoints {
		b.WriteString("  - " + e + "\n")
	}
	b.WriteString("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo}\nspec:\n  host: echo\n  subsets:\n")
	for i := range subsets {
		fmt.Fprintf(&b, "  - {name: v%d, labels: {version: v%d}}\n", i, i)
	}
	b.WriteString("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo}\nspec:\n  hosts: [echo]\n  tcp:\n  - route:\n")
	for _, s := range routed {
		fmt.Fprintf(&b, "    - {destination: {host: echo, subset: %s}, weight: 1}\n", s)
	}
	return b.String()
}

// A derived service that would pass the limits of a service is refused at
// the route's line, naming the limit: not by the maps, with no line.
func TestDerivedLimits(t *testing.T) {
	var eps []string
	for i := range config.MaxEndpoints + 1 {
		eps = append(eps, fmt.Sprintf("{address: 10.1.%d.%d, labels: {version: v0}}", i/250, i%250+1))
	}
	eps = append(eps, "{address: 10.2.0.1, labels: {version: v1}}")
	text := meshService(eps, 2, []string{"v0", "v1"})
	n := strings.Count(text, "\n")
	want := fmt.Sprintf("x.yaml:%d: VirtualService default/echo: spec.tcp[0].route[0].destination: subset v0 of host echo has 1025 endpoints: at most 1024 per subset", n-1)
	if _, err := derive(text); err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}

	eps = nil
	var routed []string
	for i := range config.MaxSubsets + 1 {
		eps = append(eps, fmt.Sprintf("{address: 10.1.0.%d, labels: {version: v%d}}", i+1, i))
		routed = append(routed, fmt.Sprintf("v%d", i))
	}
	text = meshService(eps, len(eps), routed)
	n = strings.Count(text, "\n")
	want = fmt.Sprintf("x.yaml:%d: VirtualService default/echo: spec.tcp[0].route[16]: destination 17 of the route: at most 16, as a service has at most 16 subsets", n)
	if _, err := derive(text); err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}

	// The subsets a route leaves out come at weight 0 while there is room.
	res, err := derive(meshService(eps, len(eps), []string{"v16", "v3"}))
	if err != nil {
		t.Fatal(err)
	}
	subs := res.Services[0].Subsets
	if len(subs) != config.MaxSubsets || !containsSubset(subs, "v16", 1) || !containsSubset(subs, "v3", 1) {
		t.Fatalf("%d subsets: %+v", len(subs), subs)
	}
}

func containsSubset(subs []config.Subset, name string, weight uint64) bool {
	for _, s := range subs {
		if s.Name == name && s.Weight == weight {
			return true
		}
	}
	return false
}
