package istio

import (
	"os"
	"strings"
	"testing"
)

// A key given twice is refused as kubectl refuses it, in Istio's words for
// an object (its kind, namespace and name, the field path of its docs),
// at the second key, naming the line of the first.
func TestDuplicateKeys(t *testing.T) {
	v2, err := os.ReadFile("../../examples/istio/tcp-echo-20-v2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, text, want string }{
		{"a destination's weight", strings.Replace(string(v2), "      weight: 80\n", "      weight: 20\n      weight: 99\n", 1),
			`x.yaml:21: VirtualService default/tcp-echo: spec.tcp[0].route[0].weight: duplicate key "weight" (first at line 20)`},
		{"kind", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x}\nkind: VirtualService\nspec: {address: 127.0.0.1}\n",
			`x.yaml:4: kind: duplicate key "kind" (first at line 2)`},
		{"the name", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: x\n  name: y\nspec: {address: 127.0.0.1}\n",
			`x.yaml:5: metadata.name: duplicate key "name" (first at line 4)`},
		{"a label", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x, labels: {a: b}}\nspec:\n  address: 127.0.0.1\n  labels: {version: v1, version: v2}\n",
			`x.yaml:6: WorkloadEntry default/x: spec.labels.version: duplicate key "version" (first at line 6)`},
		{"in the second document", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x}\nspec: {address: 127.0.0.1}\n---\n" +
			"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: y, namespace: a}\nspec:\n  address: 127.0.0.1\n  address: 127.0.0.2\n",
			`x.yaml:11: WorkloadEntry a/y: spec.address: duplicate key "address" (first at line 10)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			docs, err := Decode("x.yaml", []byte(c.text))
			if err == nil || err.Error() != c.want {
				t.Fatalf("got  %v (%d documents)\nwant %s", err, len(docs), c.want)
			}
		})
	}

	// tcpshift's own document among objects keeps its own words.
	path := writeFile(t, "mixed.yaml", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x}\nspec: {address: 127.0.0.1}\n---\n"+
		"services:\n- name: a\n  listen: 127.0.0.1:9000\n  subsets: {v1: {endpoints: [10.0.0.1:1]}}\n  route: [{subset: v1, weight: 20, weight: 99}]\n")
	_, err = Load([]string{path}, nil)
	if want := path + `:10: services[0].route[0].weight: duplicate key "weight" (first at line 10)`; err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}
