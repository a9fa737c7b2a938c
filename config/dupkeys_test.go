package config

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// A key given twice in one mapping is refused wherever it is, at the
// second one, naming the first: YAML leaves it to the reader which one
// counts, and kubectl refuses them.
func TestDuplicateKeys(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"weight of a route entry", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
			"  route:",
			"  - subset: v1",
			"    weight: 20",
			"    weight: 99",
		), `routes.yaml:8: services[0].route[0].weight: duplicate key "weight" (first at line 7)`},
		{"in flow style", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
			"  route: [{subset: v1, weight: 20, weight: 99}]",
		), `routes.yaml:5: services[0].route[0].weight: duplicate key "weight" (first at line 5)`},
		{"under status, which is otherwise ignored", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
			"  status:",
			"    mode: lookup",
			"    subsets:",
			"      v1: {weight: 1, weight: 2}",
		), `routes.yaml:8: services[0].status.subsets.v1.weight: duplicate key "weight" (first at line 8)`},
		{"a subset keeps its own words", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  subsets:",
			"    v1: {endpoints: [10.0.0.1:1]}",
			"    v1: {endpoints: [10.0.0.2:1]}",
		), `routes.yaml:6: services[0].subsets.v1: duplicate subset "v1" (first at line 5)`},
		{"the first problem in the file wins", lines(
			"services:",
			"- name: a",
			"  listen: 127.0.0.1:9000",
			"  mode: nope",
			"  subsets: {v1: {endpoints: [10.0.0.1:1]}}",
			"  status: {a: 1, a: 2}",
		), `routes.yaml:4: services[0].mode: invalid mode "nope" (allowed: auto, lookup, connect, proxy)`},
	} {
		t.Run(c.name, func(t *testing.T) { parseError(t, c.text, c.want) })
	}
}

func TestFirstDuplicate(t *testing.T) {
	for text, want := range map[string]*Duplicate{
		"a: 1\nb: 2\n":                   nil,
		"a: 1\na: 2\n":                   {Key: "a", Field: "a", Line: 2, Col: 1, First: 1},
		"a: {b: 1}\nc: [{d: 1, d: 2}]\n": {Key: "d", Field: "c[0].d", Line: 2, Col: 12, First: 2},
		// The earlier of two in file order, whatever the depth.
		"a:\n  b: 1\n  b: 2\na: 3\n": {Key: "b", Field: "a.b", Line: 3, Col: 3, First: 2},
		"x: &r {k: 1}\ny: *r\n":      nil, // an alias is the anchor's node, checked once
		"? [1]\n: a\n? [1]\n: b\n":   nil, // complex keys are not compared
		"\"a b\": 1\n'a b': 2\n":     {Key: "a b", Field: `["a b"]`, Line: 2, Col: 1, First: 1},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(text), &n); err != nil {
			t.Fatal(err)
		}
		got := FirstDuplicate(&n)
		if (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Errorf("%q: got %+v, want %+v", text, got, want)
		}
	}
}
