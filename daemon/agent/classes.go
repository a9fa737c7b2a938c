package agent

import (
	"fmt"
	"log/slog"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/tcpshift/tcpshift/daemon/agent/status"
)

// classKind is the GatewayClass resource: a class's controllerName says
// whether its Gateways are tcpshift's to serve.
var classKind = schema.GroupResource{Group: "gateway.networking.k8s.io", Resource: "gatewayclasses"}

// followClasses adds an informer of GatewayClasses, when the API server
// serves them; a class that comes, goes or changes its controllerName
// re-derives the routes. Its status changes nothing.
func (w *watch) followClasses(disc discovery.DiscoveryInterface, dyn dynamicinformer.DynamicSharedInformerFactory, changed chan<- struct{}, log *slog.Logger) error {
	gvrs, missing, err := preferred(disc, []schema.GroupResource{classKind})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		log.Warn("resource not served by the API server: no Gateway API Gateway is served (install its CRD and restart the agent)", "resource", classKind.String())
		return nil
	}
	inf := dyn.ForResource(gvrs[0]).Informer()
	if err := inf.SetTransform(controllerOnly); err != nil {
		return fmt.Errorf("%s informer: %w", classKind, err)
	}
	touched := func() { w.changes.route(); signal(changed) }
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { touched() },
		DeleteFunc: func(any) { touched() },
		UpdateFunc: func(old, cur any) {
			if controllerOf(old) != controllerOf(cur) {
				touched()
			}
		},
	})
	if err != nil {
		return err
	}
	w.classes = inf.GetStore()
	w.synced = append(w.synced, inf.HasSynced)
	w.names = append(w.names, classKind.String())
	return nil
}

// controllerOnly keeps of a GatewayClass what the derivation and the
// status writer read: its name, generation, controllerName and status.
func controllerOnly(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // a tombstone
	}
	ctl, _, _ := unstructured.NestedString(u.Object, "spec", "controllerName")
	slim := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"controllerName": ctl}}}
	if st, ok := u.Object["status"]; ok {
		slim.Object["status"] = st
	}
	slim.SetAPIVersion(u.GetAPIVersion())
	slim.SetKind(u.GetKind())
	slim.SetName(u.GetName())
	slim.SetGeneration(u.GetGeneration())
	slim.SetResourceVersion(u.GetResourceVersion())
	return slim, nil
}

func controllerOf(obj any) string {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return ""
	}
	ctl, _, _ := unstructured.NestedString(u.Object, "spec", "controllerName")
	return ctl
}

// ourClasses names the GatewayClasses whose controllerName is tcpshift's.
func (w *watch) ourClasses() []string {
	if w.classes == nil {
		return nil
	}
	var out []string
	for _, o := range w.classes.List() {
		if u, ok := o.(*unstructured.Unstructured); ok && controllerOf(u) == status.ControllerName {
			out = append(out, u.GetName())
		}
	}
	slices.Sort(out)
	return out
}

// statusClasses lists the GatewayClasses for the status writer.
func (w *watch) statusClasses() []*status.GatewayClass {
	if w.classes == nil {
		return nil
	}
	var out []*status.GatewayClass
	for _, o := range w.classes.List() {
		if u, ok := o.(*unstructured.Unstructured); ok {
			st, _ := u.Object["status"].(map[string]any)
			out = append(out, &status.GatewayClass{Name: u.GetName(), Controller: controllerOf(u), Generation: u.GetGeneration(), Status: st})
		}
	}
	return out
}
