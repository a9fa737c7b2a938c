package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/tcpshift/tcpshift/config/istio"
)

var (
	tcpRoutes = schema.GroupVersionResource{Group: gatewayGroup, Version: "v1", Resource: "tcproutes"}
	gateways  = schema.GroupVersionResource{Group: gatewayGroup, Version: "v1", Resource: "gateways"}
	vservices = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
)

func obj(apiVersion, kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"name": name, "generation": int64(3)}, "spec": spec}}
	if ns != "" {
		u.SetNamespace(ns)
	}
	return u
}

// fixture is a cluster with tcpshift's class, a Gateway of it, a route
// attached with one bad backend, and a VirtualService left out.
type fixture struct {
	dyn    *dynfake.FakeDynamicClient
	rec    *record.FakeRecorder
	w      *Writer
	in     Input
	routeK istio.Key
}

func newFixture(t *testing.T) *fixture {
	scheme := runtime.NewScheme()
	kinds := map[schema.GroupVersionResource]string{GatewayClasses: "GatewayClassList", tcpRoutes: "TCPRouteList", gateways: "GatewayList", vservices: "VirtualServiceList"}
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme, kinds)
	for _, x := range []struct {
		gvr schema.GroupVersionResource
		u   *unstructured.Unstructured
	}{
		{GatewayClasses, obj("gateway.networking.k8s.io/v1", "GatewayClass", "", "tcpshift", map[string]any{"controllerName": ControllerName})},
		{GatewayClasses, obj("gateway.networking.k8s.io/v1", "GatewayClass", "", "other", map[string]any{"controllerName": "example.com/other"})},
		{gateways, obj("gateway.networking.k8s.io/v1", "Gateway", "shop", "gw", map[string]any{"gatewayClassName": "tcpshift"})},
		{tcpRoutes, obj("gateway.networking.k8s.io/v1", "TCPRoute", "shop", "echo", map[string]any{})},
		{vservices, obj("networking.istio.io/v1", "VirtualService", "shop", "bad", map[string]any{})},
	} {
		ri := dyn.Resource(x.gvr)
		var err error
		if x.u.GetNamespace() == "" {
			_, err = ri.Create(context.Background(), x.u, metav1.CreateOptions{})
		} else {
			_, err = ri.Namespace(x.u.GetNamespace()).Create(context.Background(), x.u, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	dyn.ClearActions()
	f := &fixture{dyn: dyn, rec: record.NewFakeRecorder(10)}
	gwKey := istio.Key{Kind: istio.KindAPIGateway, Namespace: "shop", Name: "gw"}
	f.routeK = istio.Key{Kind: istio.KindTCPRoute, Namespace: "shop", Name: "echo"}
	vsKey := istio.Key{Kind: istio.KindVirtualService, Namespace: "shop", Name: "bad"}
	f.in = Input{
		Routes: []istio.RouteStatus{{Route: f.routeK, Parents: []istio.ParentStatus{{Parent: gwKey, Section: "tcp", Conditions: []istio.Condition{
			{Type: istio.CondAccepted, Status: true, Reason: istio.ReasonAccepted, Message: "accepted"},
			{Type: istio.CondResolvedRefs, Status: false, Reason: istio.ReasonBackendNotFound, Message: "Service shop/gone is not found"},
		}}}}},
		Listeners: []istio.ListenerStatus{{Gateway: gwKey, Name: "tcp", Port: 31400, AttachedRoutes: 1, Serves: f.routeK}},
		Rejected:  []istio.Rejection{{Key: vsKey, Err: errors.New("spec.tcp[0].route: weights total 0")}},
		Listening: map[uint16]bool{31400: true},
	}
	// The informers' view: read back from the fake API server each time.
	objects := func() []*Object {
		var out []*Object
		for _, x := range []struct {
			gvr schema.GroupVersionResource
			key istio.Key
		}{{gateways, gwKey}, {tcpRoutes, f.routeK}, {vservices, vsKey}} {
			u, err := dyn.Resource(x.gvr).Namespace("shop").Get(context.Background(), x.key.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st, _ := u.Object["status"].(map[string]any)
			o := &Object{Key: x.key, APIVersion: u.GetAPIVersion(), UID: "uid-" + x.key.Name, Generation: u.GetGeneration(), Status: st}
			if x.gvr == gateways {
				o.Class, o.Listeners = "tcpshift", []Listener{{Name: "tcp", Protocol: "TCP"}, {Name: "web", Protocol: "HTTP"}}
			}
			out = append(out, o)
		}
		return out
	}
	now := time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)
	f.w = New(Options{Dynamic: dyn, Kube: kubefake.NewSimpleClientset(nodes()...), Recorder: f.rec, Objects: objects, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Resources: map[string]schema.GroupVersionResource{istio.KindTCPRoute: tcpRoutes, istio.KindAPIGateway: gateways, istio.KindVirtualService: vservices},
		now:       func() time.Time { return now }})
	return f
}

func (f *fixture) status(t *testing.T, gvr schema.GroupVersionResource, ns, name string) map[string]any {
	t.Helper()
	ri := f.dyn.Resource(gvr)
	var u *unstructured.Unstructured
	var err error
	if ns == "" {
		u, err = ri.Get(context.Background(), name, metav1.GetOptions{})
	} else {
		u, err = ri.Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	st, _ := u.Object["status"].(map[string]any)
	return st
}

func patches(f *fixture) int {
	n := 0
	for _, a := range f.dyn.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && p.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

func cond(typ, st, reason, msg string) map[string]any {
	return map[string]any{"type": typ, "status": st, "reason": reason, "message": msg, "observedGeneration": int64(3), "lastTransitionTime": "2026-12-06T11:00:00Z"}
}

// The statuses written are exactly the Gateway API's and Istio's, through
// the status subresource; the same input again writes nothing; the Event
// on the object left out is sent once.
func TestPassWritesExactStatusOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if n := f.w.Pass(ctx, f.in); n != 4 {
		t.Fatalf("first pass wrote %d statuses, want 4 (class, gateway, route, virtualservice)", n)
	}
	route := normal(f.status(t, tcpRoutes, "shop", "echo"))
	wantRoute := normal(map[string]any{"parents": []any{map[string]any{
		"controllerName": ControllerName,
		"parentRef":      map[string]any{"group": gatewayGroup, "kind": "Gateway", "namespace": "shop", "name": "gw", "sectionName": "tcp"},
		"conditions": []any{cond("Accepted", "True", "Accepted", "accepted"),
			cond("ResolvedRefs", "False", "BackendNotFound", "Service shop/gone is not found")},
	}}})
	if !reflect.DeepEqual(route, wantRoute) {
		t.Fatalf("tcproute status\n got %v\nwant %v", route, wantRoute)
	}
	gw := f.status(t, gateways, "shop", "gw")
	conds := list(gw, "conditions")
	if len(conds) != 2 || asMap(conds[0])["type"] != "Accepted" || asMap(conds[0])["status"] != "True" ||
		!reflect.DeepEqual(normal(conds[1]), normal(cond("Programmed", "True", "Programmed", messageServed))) {
		t.Fatalf("gateway conditions %v", conds)
	}
	wantAddrs := []any{map[string]any{"type": "IPAddress", "value": "10.0.0.1"}, map[string]any{"type": "IPAddress", "value": "10.0.0.2"},
		map[string]any{"type": "IPAddress", "value": "203.0.113.2"}}
	if !reflect.DeepEqual(gw["addresses"], wantAddrs) {
		t.Fatalf("gateway addresses %v, want the nodes' InternalIP and ExternalIP addresses %v", gw["addresses"], wantAddrs)
	}
	ls := list(gw, "listeners")
	if len(ls) != 2 || normal(asMap(ls[0])["attachedRoutes"]) != int64(1) || normal(asMap(ls[1])["attachedRoutes"]) != int64(0) ||
		asMap(list(asMap(ls[1]), "conditions")[0])["reason"] != reasonUnsuppor ||
		!reflect.DeepEqual(normal(list(asMap(ls[0]), "conditions")[1]), normal(cond("Programmed", "True", "Programmed", "port 31400 "+messageServed))) {
		t.Fatalf("gateway listeners %v", ls)
	}
	class := list(f.status(t, GatewayClasses, "", "tcpshift"), "conditions")
	if len(class) != 1 || asMap(class[0])["status"] != "True" || normal(asMap(class[0])["observedGeneration"]) != int64(3) {
		t.Fatalf("gatewayclass conditions %v", class)
	}
	if st := f.status(t, GatewayClasses, "", "other"); st != nil {
		t.Fatalf("another controller's class got a status: %v", st)
	}
	vs := f.status(t, vservices, "shop", "bad")
	vsConds := list(vs, "conditions")
	if normal(vs["observedGeneration"]) != int64(3) || len(vsConds) != 1 || asMap(vsConds[0])["status"] != "False" ||
		asMap(vsConds[0])["message"] != "spec.tcp[0].route: weights total 0" || len(list(vs, "validationMessages")) != 1 {
		t.Fatalf("virtualservice status %v", vs)
	}
	for _, a := range f.dyn.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && p.GetVerb() == "patch" && p.GetSubresource() != "status" {
			t.Fatalf("a patch outside the status subresource: %v", a)
		}
	}
	if got := len(f.rec.Events); got != 1 {
		t.Fatalf("%d events after the first pass, want 1", got)
	}
	if e := <-f.rec.Events; e != "Warning NotApplied tcpshift left it out: spec.tcp[0].route: weights total 0" {
		t.Fatalf("event %q", e)
	}
	before := patches(f)
	if n := f.w.Pass(ctx, f.in); n != 0 || patches(f) != before {
		t.Fatalf("the same input again wrote %d statuses (%d patches)", n, patches(f)-before)
	}
	// A new writer (another agent taking the Lease) writes nothing either.
	f.w = New(f.w.o)
	f.w.o.now = func() time.Time { return time.Date(2026, 12, 6, 11, 5, 0, 0, time.UTC) }
	if n := f.w.Pass(ctx, f.in); n != 0 || patches(f) != before {
		t.Fatalf("a second writer rewrote %d statuses", n)
	}
	if got := len(f.rec.Events); got != 1 { // its own first Event on the object left out
		t.Fatalf("%d events from the second writer, want 1", got)
	}
	<-f.rec.Events
	if n := f.w.Pass(ctx, f.in); n != 0 || len(f.rec.Events) != 0 {
		t.Fatalf("a third pass wrote %d statuses, %d events", n, len(f.rec.Events))
	}
}

// A change is written: the backend found again flips ResolvedRefs, and
// only the route's status is written; the unchanged Accepted keeps its
// lastTransitionTime.
func TestPassWritesOnlyWhatChanged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.w.Pass(ctx, f.in)
	f.w.o.now = func() time.Time { return time.Date(2026, 12, 6, 11, 1, 0, 0, time.UTC) }
	f.in.Routes[0].Parents[0].Conditions[1] = istio.Condition{Type: istio.CondResolvedRefs, Status: true, Reason: istio.ReasonResolvedRefs, Message: "resolved"}
	if n := f.w.Pass(ctx, f.in); n != 1 {
		t.Fatalf("wrote %d statuses, want 1 (the route)", n)
	}
	conds := list(asMap(list(f.status(t, tcpRoutes, "shop", "echo"), "parents")[0]), "conditions")
	if asMap(conds[0])["lastTransitionTime"] != "2026-12-06T11:00:00Z" || asMap(conds[1])["lastTransitionTime"] != "2026-12-06T11:01:00Z" ||
		asMap(conds[1])["status"] != "True" || asMap(conds[1])["reason"] != "ResolvedRefs" {
		t.Fatalf("route conditions after the change %v", conds)
	}
}

// A route tcpshift left out (here: it makes a service a VirtualService
// makes too) is not served, so no parent reports it Accepted, whatever the
// listener says; its other conditions stay as they are.
func TestLeftOutRouteNotAccepted(t *testing.T) {
	f := newFixture(t)
	f.in.Rejected = append(f.in.Rejected, istio.Rejection{Key: f.routeK, Err: errors.New("makes service echo, which VirtualService shop/echo makes too: rename one")})
	f.w.Pass(context.Background(), f.in)
	conds := list(asMap(list(f.status(t, tcpRoutes, "shop", "echo"), "parents")[0]), "conditions")
	want := []any{cond("Accepted", "False", "Rejected", "tcpshift left it out: makes service echo, which VirtualService shop/echo makes too: rename one"),
		cond("ResolvedRefs", "False", "BackendNotFound", "Service shop/gone is not found")}
	if !reflect.DeepEqual(normal(conds), normal(want)) {
		t.Fatalf("left-out route's conditions\n got %v\nwant %v", conds, want)
	}
	if f.in.Routes[0].Parents[0].Conditions[0].Status != true {
		t.Fatal("the input's conditions were changed in place")
	}
	// A parent that does not accept it keeps the Gateway API's reason.
	f.in.Routes[0].Parents[0].Conditions[0] = istio.Condition{Type: istio.CondAccepted, Reason: istio.ReasonNotAllowedByListeners, Message: "its protocol is HTTP"}
	f.w.Pass(context.Background(), f.in)
	conds = list(asMap(list(f.status(t, tcpRoutes, "shop", "echo"), "parents")[0]), "conditions")
	if c := asMap(conds[0]); c["status"] != "False" || c["reason"] != "NotAllowedByListeners" || c["message"] != "its protocol is HTTP" {
		t.Fatalf("a parent that does not accept the route: %v, want the Gateway API's reason kept", c)
	}
}

// nodes are the fixture's: one with an internal and an external address,
// one with an internal address and a hostname (not an IP: left out).
func nodes() []runtime.Object {
	node := func(name string, addrs ...corev1.NodeAddress) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
	}
	return []runtime.Object{
		node("node-b", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.2"}),
		node("node-a", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-a"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}),
	}
}

// A Gateway is Programmed only when it has addresses and the writer's
// node listens on the ports of its routed listeners; otherwise its
// condition says which.
func TestGatewayProgrammed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.in.Listening = nil // the port is taken on this node
	f.w.Pass(ctx, f.in)
	gw := f.status(t, gateways, "shop", "gw")
	msg := "nothing listens on port 31400: its route's service was left out, or the port is taken (see the agents' logs)"
	if got := normal(list(gw, "conditions")[1]); !reflect.DeepEqual(got, normal(cond("Programmed", "False", "Pending", "listener tcp: "+msg))) {
		t.Fatalf("gateway Programmed %v", got)
	}
	if got := normal(list(asMap(list(gw, "listeners")[0]), "conditions")[1]); !reflect.DeepEqual(got, normal(cond("Programmed", "False", "Pending", msg))) {
		t.Fatalf("listener Programmed %v", got)
	}

	f = newFixture(t)
	f.w.o.Kube = kubefake.NewSimpleClientset() // no node yet
	f.w.Pass(ctx, f.in)
	gw = f.status(t, gateways, "shop", "gw")
	if got := normal(list(gw, "conditions")[1]); !reflect.DeepEqual(got, normal(cond("Programmed", "False", "AddressNotAssigned", messageNoAddress))) {
		t.Fatalf("gateway Programmed with no node %v", got)
	}
	if _, ok := gw["addresses"]; ok {
		t.Fatalf("addresses %v with no node", gw["addresses"])
	}
}

func TestNodeAddressesBounded(t *testing.T) {
	var many []corev1.Node
	for i := range 20 {
		many = append(many, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%02d", i)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.0.0.%d", i)}}}})
	}
	got := nodeAddresses(many)
	if len(got) != maxAddresses || got[0] != "10.0.0.0" || got[15] != "10.0.0.15" {
		t.Fatalf("addresses of 20 nodes: %v, want the first %d by name", got, maxAddresses)
	}
}
