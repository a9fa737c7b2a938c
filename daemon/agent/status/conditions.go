package status

import (
	"reflect"
	"time"
)

// condition is one metav1.Condition as unstructured JSON. Its
// lastTransitionTime is the previous one's while the status stays, so
// computing the same status twice writes nothing.
func condition(typ string, ok bool, reason, msg string, gen int64, prev []any, now time.Time) map[string]any {
	st := "False"
	if ok {
		st = "True"
	}
	c := map[string]any{"type": typ, "status": st, "reason": reason, "message": msg, "observedGeneration": gen,
		"lastTransitionTime": now.UTC().Format(time.RFC3339)}
	for _, p := range prev {
		pm, _ := p.(map[string]any)
		if pm["type"] == typ && pm["status"] == st {
			if t, ok := pm["lastTransitionTime"].(string); ok {
				c["lastTransitionTime"] = t
			}
		}
	}
	return c
}

// sameStatus compares two statuses as JSON, numbers of any Go type alike.
func sameStatus(a, b map[string]any) bool {
	return reflect.DeepEqual(normal(a), normal(b))
}

// normal makes the numbers of unstructured JSON one type (the API server
// gives int64, a fake client may keep int or float64).
func normal(v any) any {
	return walkJSON(v, func(string) bool { return true }, func(x any) any {
		switch n := x.(type) {
		case int:
			return int64(n)
		case int32:
			return int64(n)
		case float64:
			return int64(n)
		}
		return x
	})
}

// walkJSON copies unstructured JSON, keeping the map keys keep takes and
// passing every other value through leaf.
func walkJSON(v any, keep func(key string) bool, leaf func(any) any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			if keep(k) {
				m[k] = walkJSON(x, keep, leaf)
			}
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = walkJSON(x, keep, leaf)
		}
		return s
	}
	return leaf(v)
}

// list reads a list of a status, nil when absent.
func list(m map[string]any, key string) []any {
	l, _ := m[key].([]any)
	return l
}
