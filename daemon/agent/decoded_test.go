package agent

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// An object from the API server keeps its creationTimestamp through the
// decoding, so routes on one listener are served oldest first, not by name.
func TestDecodeKeepsCreationTimestamp(t *testing.T) {
	created := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	route := func(name string, ts time.Time) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "gateway.networking.k8s.io/v1",
			"kind":       "TCPRoute",
			"metadata":   map[string]any{"name": name, "namespace": "shop"},
			"spec": map[string]any{
				"parentRefs": []any{map[string]any{"name": "gw"}},
				"rules":      []any{map[string]any{"backendRefs": []any{map[string]any{"name": "echo", "port": int64(9000)}}}},
			},
		}}
		if !ts.IsZero() {
			u.Object["metadata"].(map[string]any)["creationTimestamp"] = ts.Format(time.RFC3339)
		}
		return u
	}
	obj, err := decode(route("b", created))
	if err != nil {
		t.Fatal(err)
	}
	if !obj.Created.Equal(created) {
		t.Fatalf("Created = %v, want %v", obj.Created, created)
	}
	obj, err = decode(route("a", time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	if !obj.Created.IsZero() {
		t.Fatalf("Created = %v for an object without a creationTimestamp, want zero", obj.Created)
	}
}

// An update that changes only an object's status (what the status writer
// writes) is not a change of the input: no node re-derives its routes for
// it; one that changes the spec or the creation time is.
func TestStatusOnlyUpdateIsSameInput(t *testing.T) {
	obj := func(weight int64, status string, created string) any {
		meta := map[string]any{"namespace": "shop", "name": "r", "resourceVersion": status}
		if created != "" {
			meta["creationTimestamp"] = created
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TCPRoute", "metadata": meta,
			"spec": map[string]any{
				"parentRefs": []any{map[string]any{"name": "gw"}},
				"rules":      []any{map[string]any{"backendRefs": []any{map[string]any{"name": "echo", "port": int64(9000), "weight": weight}}}},
			},
			"status": map[string]any{"parents": []any{map[string]any{"controllerName": "tcpshift.io/gateway-controller", "note": status}}},
		}}
		d, err := decodeOnce(u)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if !sameInput(obj(1, "a", ""), obj(1, "b", "")) {
		t.Fatal("a status-only update counted as a change of the input")
	}
	if sameInput(obj(1, "a", ""), obj(2, "a", "")) {
		t.Fatal("a weight change counted as no change")
	}
	if sameInput(obj(1, "a", ""), obj(1, "a", "2026-12-06T10:00:00Z")) {
		t.Fatal("a new creation time counted as no change")
	}
	if sameInput(obj(1, "a", ""), "tombstone") {
		t.Fatal("an object that is not decoded counted as no change")
	}
}
