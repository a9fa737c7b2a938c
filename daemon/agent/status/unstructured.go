package status

import (
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	return unstructured.NestedString(obj, fields...)
}

func cutKind(groupKind string) (group, kind string, ok bool) {
	return strings.Cut(groupKind, "/")
}

// withoutTimes is a status without its conditions' lastTransitionTime,
// which a write made from a stale view may move though nothing changed.
func withoutTimes(v any) any {
	return walkJSON(v, func(k string) bool { return k != "lastTransitionTime" }, func(x any) any { return x })
}
