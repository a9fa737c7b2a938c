package agent

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/config/kube"
)

// routeKinds are the Istio and Gateway API resources the agent follows,
// each in the version the API server prefers.
var routeKinds = []schema.GroupResource{
	{Group: "networking.istio.io", Resource: "virtualservices"},
	{Group: "networking.istio.io", Resource: "destinationrules"},
	{Group: "networking.istio.io", Resource: "serviceentries"},
	{Group: "networking.istio.io", Resource: "workloadentries"},
	{Group: "networking.istio.io", Resource: "gateways"},
	{Group: "gateway.networking.k8s.io", Resource: "tcproutes"},
	{Group: "gateway.networking.k8s.io", Resource: "gateways"},
	// A TCPRoute's backendRef to another namespace holds only while a
	// grant there lets it.
	{Group: "gateway.networking.k8s.io", Resource: "referencegrants"},
}

// watch holds the informers whose caches make a snapshot.
type watch struct {
	services  cache.SharedIndexInformer
	slices    cache.SharedIndexInformer
	pods      cache.SharedIndexInformer
	routes    []cache.Indexer // their objects are *decoded (decodeOnce), which their Listers cannot list
	routeGVRs []schema.GroupVersionResource
	synced    []cache.InformerSynced
	names     []string    // of synced's informers, for messages
	changes   changes     // what the informers saw change since the last sync
	classes   cache.Store // GatewayClasses (nil: not served)
}

// byService indexes EndpointSlices by their Service (namespace/name).
const byService = "service"

// unsynced names the informers whose first list has not completed.
func (w *watch) unsynced() []string {
	var out []string
	for i, ok := range w.synced {
		if !ok() {
			out = append(out, w.names[i])
		}
	}
	return out
}

// newWatch sets up the informers; every change signals changed.
func newWatch(cs kubernetes.Interface, dc dynamic.Interface, disc discovery.DiscoveryInterface, changed chan<- struct{}, log *slog.Logger) (*watch, informers.SharedInformerFactory, dynamicinformer.DynamicSharedInformerFactory, error) {
	w := &watch{}
	typed := informers.NewSharedInformerFactory(cs, 0)
	dyn := dynamicinformer.NewDynamicSharedInformerFactory(dc, 0)
	// Every event records what changed (an EndpointSlice: the Services it
	// belonged to before and after) and signals a sync.
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.changes.seen(o); signal(changed) },
		UpdateFunc: func(old, cur any) { w.changes.seen(old); w.changes.seen(cur); signal(changed) },
		DeleteFunc: func(o any) { w.changes.seen(o); signal(changed) },
	}
	routeHandler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { w.changes.route(); signal(changed) },
		UpdateFunc: func(old, cur any) {
			if sameInput(old, cur) {
				return // status only: the status writer reads the store itself
			}
			w.changes.route()
			signal(changed)
		},
		DeleteFunc: func(any) { w.changes.route(); signal(changed) },
	}
	w.services = typed.Core().V1().Services().Informer()
	w.slices = typed.Discovery().V1().EndpointSlices().Informer()
	w.pods = typed.Core().V1().Pods().Informer()
	// A pod matters only for its labels: keep nothing else, which is
	// most of the agent's memory in a big cluster.
	if err := w.pods.SetTransform(podLabelsOnly); err != nil {
		return nil, nil, nil, fmt.Errorf("pod informer: %w", err)
	}
	if err := w.services.SetTransform(trimService); err != nil {
		return nil, nil, nil, fmt.Errorf("services informer: %w", err)
	}
	if err := w.slices.SetTransform(trimSlice); err != nil {
		return nil, nil, nil, fmt.Errorf("endpointslices informer: %w", err)
	}
	// A pod matters only for its labels: its status changes (most of a
	// cluster's events) make no sync.
	podHandler := handler
	podHandler.UpdateFunc = func(old, cur any) {
		o, ok1 := old.(*corev1.Pod)
		c, ok2 := cur.(*corev1.Pod)
		if !ok1 || !ok2 || !maps.Equal(o.Labels, c.Labels) {
			w.changes.seen(cur)
			signal(changed)
		}
	}
	if err := w.slices.AddIndexers(cache.Indexers{byService: sliceService}); err != nil {
		return nil, nil, nil, fmt.Errorf("endpointslices informer: %w", err)
	}
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandlerFuncs{w.services: handler, w.slices: handler, w.pods: podHandler} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, nil, nil, err
		}
	}
	w.synced = append(w.synced, w.services.HasSynced, w.slices.HasSynced, w.pods.HasSynced)
	w.names = append(w.names, "services", "endpointslices", "pods")
	gvrs, missing, err := preferred(disc, routeKinds)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, gr := range missing {
		log.Warn("resource not served by the API server: not followed (install its CRD and restart the agent)", "resource", gr.String())
	}
	for _, gvr := range gvrs {
		inf := dyn.ForResource(gvr)
		if err := inf.Informer().SetTransform(decodeOnce); err != nil {
			return nil, nil, nil, fmt.Errorf("%s informer: %w", gvr.GroupResource(), err)
		}
		if _, err := inf.Informer().AddEventHandler(routeHandler); err != nil {
			return nil, nil, nil, err
		}
		w.routes = append(w.routes, inf.Informer().GetIndexer())
		w.routeGVRs = append(w.routeGVRs, gvr)
		w.synced = append(w.synced, inf.Informer().HasSynced)
		w.names = append(w.names, gvr.GroupResource().String())
	}
	if err := w.followClasses(disc, dyn, changed, log); err != nil {
		return nil, nil, nil, err
	}
	return w, typed, dyn, nil
}

// preferred finds the version the API server prefers for each resource;
// missing are those it does not serve (a CRD not installed).
func preferred(disc discovery.DiscoveryInterface, want []schema.GroupResource) (found []schema.GroupVersionResource, missing []schema.GroupResource, err error) {
	groups, err := disc.ServerGroups()
	if err != nil {
		return nil, nil, fmt.Errorf("discover API groups: %w", err)
	}
	for _, gr := range want {
		i := slices.IndexFunc(groups.Groups, func(g metav1.APIGroup) bool { return g.Name == gr.Group })
		if i < 0 {
			missing = append(missing, gr)
			continue
		}
		// The preferred version first; a kind may be served only in an
		// older one (TCPRoute is v1alpha2 beside Gateway's v1).
		g := groups.Groups[i]
		versions := append([]metav1.GroupVersionForDiscovery{g.PreferredVersion}, g.Versions...)
		served := false
		for _, v := range versions {
			list, err := disc.ServerResourcesForGroupVersion(v.GroupVersion)
			if err != nil {
				return nil, nil, fmt.Errorf("discover %s: %w", v.GroupVersion, err)
			}
			if slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == gr.Resource }) {
				found = append(found, schema.GroupVersionResource{Group: gr.Group, Version: v.Version, Resource: gr.Resource})
				served = true
				break
			}
		}
		if !served {
			missing = append(missing, gr)
		}
	}
	return found, missing, nil
}

func podLabelsOnly(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, ResourceVersion: p.ResourceVersion}}, nil
}

// snapshot reads the caches; objects that do not decode are rejected.
func (w *watch) snapshot() (*kube.Snapshot, []istio.Rejection) {
	s := &kube.Snapshot{}
	for _, o := range w.services.GetStore().List() {
		s.Services = append(s.Services, o.(*slimService).service())
	}
	for _, o := range w.slices.GetStore().List() {
		s.Slices = append(s.Slices, o.(*slimSlice).slice())
	}
	s.Pod = w.pod
	s.Classes = w.ourClasses()
	var rejected []istio.Rejection
	s.Objects, rejected = w.objects()
	return s, rejected
}

// objects lists the route objects, decoded when they arrived; those that
// did not decode are rejected.
func (w *watch) objects() (objs []*istio.Object, rejected []istio.Rejection) {
	for _, idx := range w.routes {
		for _, o := range idx.List() {
			d, ok := o.(*decoded)
			if !ok {
				continue
			}
			if d.err != nil {
				key := istio.Key{Kind: d.GroupVersionKind().Group + "/" + d.Kind, Namespace: d.Namespace, Name: d.Name}
				rejected = append(rejected, istio.Rejection{Key: key, Err: d.err})
				continue
			}
			objs = append(objs, d.obj)
		}
	}
	return objs, rejected
}

// lookup answers the Deriver's questions from the informers' stores.
func (w *watch) lookup(objs []*istio.Object) kube.Lookup {
	return kube.Lookup{
		Service: func(ns, name string) *corev1.Service {
			o, ok, err := w.services.GetIndexer().GetByKey(ns + "/" + name)
			if err != nil || !ok {
				return nil
			}
			return o.(*slimService).service()
		},
		Slices: func(ns, svc string) []*discoveryv1.EndpointSlice {
			list, err := w.slices.GetIndexer().ByIndex(byService, ns+"/"+svc)
			if err != nil {
				return nil
			}
			out := make([]*discoveryv1.EndpointSlice, 0, len(list))
			for _, o := range list {
				out = append(out, o.(*slimSlice).slice())
			}
			return out
		},
		Pod:     w.pod,
		Objects: func() []*istio.Object { return objs },
		Classes: w.ourClasses,
	}
}

func (w *watch) pod(ns, name string) *corev1.Pod {
	o, ok, err := w.pods.GetIndexer().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return o.(*corev1.Pod)
}

// sliceService is the byService index: an EndpointSlice's Service.
func sliceService(obj any) ([]string, error) {
	sl, ok := obj.(*slimSlice)
	if !ok || sl.service == "" {
		return nil, nil
	}
	return []string{sl.namespace + "/" + sl.service}, nil
}
