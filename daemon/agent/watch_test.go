package agent

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// An object the agent leaves out is named with its kind, as the Istio front
// end names it: the key once had no group, and its kind printed empty.
func TestKeyOf(t *testing.T) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("networking.istio.io/v1")
	u.SetKind("VirtualService")
	u.SetNamespace("shop")
	u.SetName("tcp-echo")
	k := keyOf(u)
	if k.Kind != "networking.istio.io/VirtualService" || k.String() != "VirtualService shop/tcp-echo" {
		t.Errorf("key %q, named %q; want networking.istio.io/VirtualService, VirtualService shop/tcp-echo", k.Kind, k.String())
	}
}
