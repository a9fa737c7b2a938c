package kube

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tcpshift/tcpshift/config/istio"
)

// world is a snapshot a test edits, with the Lookup an agent's informers
// would answer from it.
type world struct {
	s      *Snapshot
	labels map[string]string // pod name to its version label
}

func newWorld(t *testing.T, objs string) *world {
	w := &world{s: snapshot(t, objs), labels: map[string]string{"v1-a": "v1", "v2-a": "v2", "v2-b": "v2", "v2-c": "v2", "o": "v1"}}
	w.s.Pod = func(ns, name string) *corev1.Pod { return pods(w.labels)(ns, name) }
	return w
}

func (w *world) lookup() Lookup {
	return Lookup{
		Service: func(ns, name string) *corev1.Service {
			for _, s := range w.s.Services {
				if s.Namespace == ns && s.Name == name {
					return s
				}
			}
			return nil
		},
		Slices: func(ns, svc string) []*discoveryv1.EndpointSlice {
			var out []*discoveryv1.EndpointSlice
			for _, sl := range w.s.Slices {
				if sl.Namespace == ns && sl.Labels[discoveryv1.LabelServiceName] == svc {
					out = append(out, sl)
				}
			}
			return out
		},
		Pod:     w.s.Pod,
		Objects: func() []*istio.Object { return w.s.Objects },
	}
}

// update runs one incremental derivation, checks it against a full one of
// the same snapshot, and returns the names it re-derived, sorted.
func (w *world) update(t *testing.T, d *Deriver, ch Changes) []string {
	t.Helper()
	got, err := d.Update(w.lookup(), ch)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Derive(w.s, d.opts)
	if err != nil {
		t.Fatal(err)
	}
	if describe(got.Config) != describe(want.Config) || !maps.Equal(got.Origins, want.Origins) ||
		got.Terminating != want.Terminating || !reflect.DeepEqual(got.Rejected, want.Rejected) {
		t.Fatalf("incremental:\n%s%v %d %v\nfull:\n%s%v %d %v", describe(got.Config), got.Origins, got.Terminating, got.Rejected,
			describe(want.Config), want.Origins, want.Terminating, want.Rejected)
	}
	return slices.Sorted(maps.Keys(got.Changed))
}

func start(t *testing.T, w *world, opts Options) *Deriver {
	t.Helper()
	d := NewDeriver(opts)
	res, err := d.Full(w.s)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed != nil {
		t.Fatalf("a full derivation names %v as changed, want nil (all)", res.Changed)
	}
	return d
}

func wantChanged(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s re-derived %q, want %q", what, got, want)
	}
}

// Each kind of change re-derives exactly the services it shapes, and the
// result is the full derivation's.
func TestUpdateRederivesWhatChanged(t *testing.T) {
	w := newWorld(t, routes)
	d := start(t, w, Options{})

	// Nothing changed (an informer's resync): nothing re-derived.
	wantChanged(t, "a resync of other", w.update(t, d, Changes{Services: []istio.Key{ServiceKey("default", "other")}}))

	// other's EndpointSlice changes: only its plain service.
	w.s.Slices[1] = slice("other", 8081, ep{"o", "10.244.1.9", true, false}, ep{"o2", "10.244.1.10", true, false})
	wantChanged(t, "other's EndpointSlice", w.update(t, d, Changes{Services: []istio.Key{ServiceKey("default", "other")}}),
		"other.default-8080")

	// A pod behind other changes labels: other only (no route uses it).
	w.labels["o"] = "v2"
	wantChanged(t, "pod o's labels", w.update(t, d, Changes{Pods: []string{"default/o"}}), "other.default-8080")

	// A pod nothing serves: nothing.
	wantChanged(t, "pod nobody's labels", w.update(t, d, Changes{Pods: []string{"default/nobody"}}))

	// A pod behind tcp-echo, which the VirtualService routes: the routed
	// service (v1-a moves to subset v2).
	w.labels["v1-a"] = "v2"
	wantChanged(t, "pod v1-a's labels", w.update(t, d, Changes{Pods: []string{"default/v1-a"}}), "tcp-echo")

	// The route objects change (the VirtualService goes): the routed
	// service goes and tcp-echo's port is plain again.
	w.s.Objects = objects(t, strings.Split(routes, "---\n")[0])
	wantChanged(t, "the VirtualService deleted", w.update(t, d, Changes{Objects: true}), "tcp-echo", "tcp-echo.default-9000")

	// A Service comes, with its EndpointSlice: its plain service.
	w.s.Services = append(w.s.Services, service("third", "10.96.0.40", 7000))
	w.s.Slices = append(w.s.Slices, slice("third", 7000, ep{"t", "10.244.4.1", true, false}))
	wantChanged(t, "Service third created", w.update(t, d, Changes{Services: []istio.Key{ServiceKey("default", "third")}}),
		"third.default-7000")

	// A Service goes: its plain service.
	w.s.Services = slices.DeleteFunc(w.s.Services, func(s *corev1.Service) bool { return s.Name == "other" })
	wantChanged(t, "Service other deleted", w.update(t, d, Changes{Services: []istio.Key{ServiceKey("default", "other")}}),
		"other.default-8080")

	// The VirtualService is back: the routed service, and tcp-echo's
	// plain service gives way.
	w.s.Objects = objects(t, routes)
	wantChanged(t, "the VirtualService created", w.update(t, d, Changes{Objects: true}), "tcp-echo", "tcp-echo.default-9000")

	// An EndpointSlice of a Service not seen yet: nothing.
	wantChanged(t, "a slice of an unknown Service", w.update(t, d, Changes{Services: []istio.Key{ServiceKey("default", "later")}}))
}

// A route refused for a host that does not exist yet is derived again
// when the Service comes.
func TestUpdateRetriesRefusedRoutes(t *testing.T) {
	w := newWorld(t, routes)
	w.s.Services = w.s.Services[1:] // no tcp-echo Service
	d := start(t, w, Options{})
	first, _ := Derive(w.s, Options{})
	if len(first.Rejected) == 0 {
		t.Fatal("the VirtualService of a host with no Service is not refused")
	}
	w.s.Services = append(w.s.Services, service("tcp-echo", "10.96.0.20", 9000))
	wantChanged(t, "Service tcp-echo created", w.update(t, d, Changes{Services: []istio.Key{ServiceKey("default", "tcp-echo")}}), "tcp-echo")
}

// OnlyRouted: a plain Service's change re-derives nothing.
func TestUpdateOnlyRouted(t *testing.T) {
	w := newWorld(t, routes)
	d := start(t, w, Options{OnlyRouted: true})
	w.s.Slices[1] = slice("other", 8081)
	wantChanged(t, "other's EndpointSlice emptied", w.update(t, d, Changes{Services: []istio.Key{ServiceKey("default", "other")}}))
}
