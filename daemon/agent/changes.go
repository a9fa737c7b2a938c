package agent

import (
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/config/kube"
)

// changes records, between two syncs, which objects the informers saw
// change, so a sync re-derives only what they shape (kube.Deriver).
type changes struct {
	mu       sync.Mutex
	services map[istio.Key]bool
	pods     map[string]bool
	objects  bool
}

// take returns what changed since the last take and starts over.
func (c *changes) take() kube.Changes {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := kube.Changes{Services: slices.Collect(maps.Keys(c.services)), Pods: slices.Collect(maps.Keys(c.pods)), Objects: c.objects}
	c.services, c.pods, c.objects = nil, nil, false
	return ch
}

func (c *changes) service(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.services == nil {
		c.services = map[istio.Key]bool{}
	}
	c.services[kube.ServiceKey(ns, name)] = true
}

func (c *changes) pod(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pods == nil {
		c.pods = map[string]bool{}
	}
	c.pods[ns+"/"+name] = true
}

func (c *changes) route() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.objects = true
}

// seen records one informer event's object: a Service, the Service an
// EndpointSlice belongs to, or a pod.
func (c *changes) seen(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	switch o := obj.(type) {
	case *slimService:
		c.service(o.namespace, o.name)
	case *slimSlice:
		if o.service != "" {
			c.service(o.namespace, o.service)
		}
	case *corev1.Pod:
		c.pod(o.Namespace, o.Name)
	}
}
