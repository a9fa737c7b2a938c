package agent

import (
	"bytes"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/daemon/agent/status"
)

// decoded is what the informers keep of an Istio or Gateway API object:
// the object as the Istio front end reads it, decoded once when it
// arrives (an informer transform), not at every sync; or why it cannot
// be. Its metadata keeps it keyed in the informer's store.
type decoded struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	obj *istio.Object
	err error
	// st is what the status writer compares and names in Events.
	st *status.Object
}

func (d *decoded) DeepCopyObject() runtime.Object {
	c := *d
	c.ObjectMeta = *d.ObjectMeta.DeepCopy()
	return &c
}

// decodeOnce is the route informers' transform: each object is decoded
// as it arrives and only the decoded object is kept.
func decodeOnce(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // a tombstone, or decoded already
	}
	d := &decoded{
		TypeMeta:   metav1.TypeMeta{APIVersion: u.GetAPIVersion(), Kind: u.GetKind()},
		ObjectMeta: metav1.ObjectMeta{Namespace: u.GetNamespace(), Name: u.GetName(), ResourceVersion: u.GetResourceVersion()},
	}
	d.obj, d.err = decode(u)
	d.st = statusView(u)
	return d, nil
}

// statusView keeps of an object what the status writer needs.
func statusView(u *unstructured.Unstructured) *status.Object {
	st, _ := u.Object["status"].(map[string]any)
	o := &status.Object{Key: keyOf(u), APIVersion: u.GetAPIVersion(), UID: string(u.GetUID()), Generation: u.GetGeneration(), Status: st}
	if o.Key.Kind == istio.KindAPIGateway {
		o.Class, _, _ = unstructured.NestedString(u.Object, "spec", "gatewayClassName")
		ls, _, _ := unstructured.NestedSlice(u.Object, "spec", "listeners")
		for _, l := range ls {
			m, _ := l.(map[string]any)
			name, _ := m["name"].(string)
			proto, _ := m["protocol"].(string)
			o.Listeners = append(o.Listeners, status.Listener{Name: name, Protocol: proto})
		}
	}
	return o
}

// statusObjects lists the route objects as the status writer sees them.
func (w *watch) statusObjects() []*status.Object {
	var out []*status.Object
	for _, idx := range w.routes {
		for _, o := range idx.List() {
			if d, ok := o.(*decoded); ok && d.st != nil {
				out = append(out, d.st)
			}
		}
	}
	return out
}

// keyOf names an object from the API server as the Istio front end names
// the objects it decodes (group/kind, namespace, name).
func keyOf(u *unstructured.Unstructured) istio.Key {
	return istio.Key{Kind: u.GroupVersionKind().Group + "/" + u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
}

// decode hands an object from the API server to the Istio front end as the
// YAML document kubectl would print, without status and managed fields.
// It runs once per object version (decodeOnce).
func decode(u *unstructured.Unstructured) (*istio.Object, error) {
	meta := map[string]any{"name": u.GetName(), "namespace": u.GetNamespace()}
	// Routes on one listener are served oldest first: keep the time the
	// API server gave the object, or the order falls back to names.
	if ts := u.GetCreationTimestamp(); !ts.IsZero() {
		meta["creationTimestamp"] = ts.UTC().Format(time.RFC3339)
	}
	doc := map[string]any{
		"apiVersion": u.GetAPIVersion(),
		"kind":       u.GetKind(),
		"metadata":   meta,
	}
	if spec, ok := u.Object["spec"]; ok {
		doc["spec"] = spec
	}
	data, err := istio.Marshal(doc)
	if err != nil {
		return nil, err
	}
	name := keyOf(u).String()
	docs, err := istio.Decode(name, data)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 || docs[0].Object == nil {
		return nil, fmt.Errorf("%s: not an object tcpshift reads", name)
	}
	return docs[0].Object, nil
}

// sameInput reports whether an update leaves what the front end reads of
// a route object as it was: a status write (the status writer's own, or
// another controller's) changes only status, and re-deriving every route
// on every node for it would be work for nothing.
func sameInput(old, cur any) bool {
	o, ok1 := old.(*decoded)
	c, ok2 := cur.(*decoded)
	if !ok1 || !ok2 || o.obj == nil || c.obj == nil || o.err != nil || c.err != nil {
		return false
	}
	return bytes.Equal(o.obj.Text, c.obj.Text)
}
