package agent

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/config/kube"
)

// Events record exactly the Services, pods and routes they touch, and a
// take starts over.
func TestChangesRecordWhatEventsTouch(t *testing.T) {
	var c changes
	// As the informers keep them (trimService, trimSlice).
	sl := func(svc string) any {
		o, _ := trimSlice(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}}})
		return o
	}
	svc, _ := trimService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "c"}})
	c.seen(sl("a"))
	c.seen(sl("b")) // a slice relabelled: both Services
	c.seen(cache.DeletedFinalStateUnknown{Obj: svc})
	c.seen(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}})
	c.seen(sl("")) // no Service: nothing
	ch := c.take()
	slices.SortFunc(ch.Services, func(a, b istio.Key) int { return strings.Compare(a.Name, b.Name) })
	want := []istio.Key{kube.ServiceKey("shop", "a"), kube.ServiceKey("shop", "b"), kube.ServiceKey("shop", "c")}
	if !slices.Equal(ch.Services, want) || !slices.Equal(ch.Pods, []string{"shop/p"}) || ch.Objects {
		t.Fatalf("changes %+v, want Services a, b, c, pod shop/p, no route", ch)
	}
	c.route()
	if ch := c.take(); len(ch.Services) != 0 || len(ch.Pods) != 0 || !ch.Objects {
		t.Fatalf("after a take and a route event: %+v, want the route only", ch)
	}
}

// A route object is decoded once, as it arrives, into what the Istio front
// end reads; one that does not decode keeps why, and its key.
func TestDecodeOnce(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
		"metadata": map[string]any{"namespace": "shop", "name": "echo", "resourceVersion": "7"},
		"spec":     map[string]any{"host": "echo"},
	}}
	o, err := decodeOnce(u)
	if err != nil {
		t.Fatal(err)
	}
	d := o.(*decoded)
	if d.err != nil || d.obj == nil || d.obj.Key != (istio.Key{Kind: "networking.istio.io/DestinationRule", Namespace: "shop", Name: "echo"}) {
		t.Fatalf("decoded %+v, err %v", d.obj, d.err)
	}
	if key, err := cache.MetaNamespaceKeyFunc(d); err != nil || key != "shop/echo" || d.ResourceVersion != "7" {
		t.Fatalf("store key %q (%v), resource version %q", key, err, d.ResourceVersion)
	}
	u.Object["kind"] = "Nonsense"
	o, _ = decodeOnce(u)
	if d := o.(*decoded); d.err == nil || d.obj != nil {
		t.Fatalf("an unknown kind decoded: %+v", d.obj)
	}
	if o, _ := decodeOnce(d); o != d {
		t.Fatal("an object decoded already was decoded again")
	}
}
