package kube

import (
	"reflect"
	"testing"
)

// Slices with the same ports share one map; other ports, or a name that
// only quoting tells apart, get their own; a nil cache shares nothing.
func TestPortMapsShareEqualPorts(t *testing.T) {
	p := portMaps{}
	a := p.intern(map[string]uint16{"http": 8080, "": 9090})
	b := p.intern(map[string]uint16{"": 9090, "http": 8080})
	c := p.intern(map[string]uint16{"http": 8081, "": 9090})
	d := p.intern(map[string]uint16{"http8080": 9090})
	if reflect.ValueOf(a).Pointer() != reflect.ValueOf(b).Pointer() {
		t.Fatal("equal ports: two maps")
	}
	if reflect.ValueOf(a).Pointer() == reflect.ValueOf(c).Pointer() || reflect.ValueOf(a).Pointer() == reflect.ValueOf(d).Pointer() {
		t.Fatal("different ports share a map")
	}
	if len(p) != 3 || len(d) != 1 || d["http8080"] != 9090 {
		t.Fatalf("%d maps kept, %v, want 3 and http8080:9090", len(p), d)
	}
	var none portMaps
	m := map[string]uint16{"http": 1}
	if got := none.intern(m); reflect.ValueOf(got).Pointer() != reflect.ValueOf(m).Pointer() {
		t.Fatal("a nil cache returned another map")
	}
}
