package agent

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The informers keep only what config/kube reads of a Service or an
// EndpointSlice, in structs of their own: ten thousand Services with their
// EndpointSlices were most of the agent's memory, and a Kubernetes struct
// costs its every field even when cleared (an endpoint 96 bytes, a
// Service's metadata and spec most of a kilobyte). What the Deriver reads
// is made back into Kubernetes objects when it reads it (service, slice):
// all of them at a full derivation, one Service's at a change.

// slimMeta names an object in the informer's store.
type slimMeta struct {
	namespace, name, resourceVersion string
}

// GetObjectMeta makes the metadata client-go's key functions read
// (meta.Accessor): a store keys its objects by namespace/name.
func (m *slimMeta) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: m.namespace, Name: m.name, ResourceVersion: m.resourceVersion}
}

func (m *slimMeta) objectMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: m.namespace, Name: m.name, ResourceVersion: m.resourceVersion}
}

func (*slimMeta) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// slimService is what the Services informer keeps of a Service.
type slimService struct {
	slimMeta
	clusterIPs []string // its ClusterIPs, or its ClusterIP alone when those are empty
	ports      []slimPort
	// affinityTimeout is sessionAffinityConfig.clientIP.timeoutSeconds.
	affinityTimeout *int32
	externalName    bool // type: ExternalName
	local           bool // internalTrafficPolicy: Local
	clientIP        bool // sessionAffinity: ClientIP
}

// slimPort is a TCP port of a Service (config/kube skips the others).
type slimPort struct {
	name string
	port int32
}

// slimSlice is what the EndpointSlices informer keeps of an EndpointSlice.
type slimSlice struct {
	slimMeta
	service     string // its kubernetes.io/service-name label
	addressType discoveryv1.AddressType
	ports       []discoveryv1.EndpointPort
	endpoints   []slimEndpoint
}

// slimEndpoint is one endpoint: its first address (the one config/kube
// reads), its conditions, its node and the pod behind it.
type slimEndpoint struct {
	addr              string // "" for none
	ready, terminated condition
	nodeName          *string
	pod               *podRef // a targetRef of kind Pod; nil for none or another kind
}

type podRef struct{ namespace, name string }

// condition is an endpoint condition: unset, true or false.
type condition uint8

const (
	unset condition = iota
	isTrue
	isFalse
)

func conditionOf(b *bool) condition {
	switch {
	case b == nil:
		return unset
	case *b:
		return isTrue
	}
	return isFalse
}

var yes, no = true, false

func (c condition) ptr() *bool {
	switch c {
	case isTrue:
		return &yes
	case isFalse:
		return &no
	}
	return nil
}

func (s *slimService) DeepCopyObject() runtime.Object { c := *s; return &c }
func (s *slimSlice) DeepCopyObject() runtime.Object   { c := *s; return &c }

// trimService is the Services informer's transform.
func trimService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil // a tombstone, or trimmed already
	}
	out := &slimService{slimMeta: slimMeta{s.Namespace, s.Name, s.ResourceVersion}, clusterIPs: s.Spec.ClusterIPs,
		externalName: s.Spec.Type == corev1.ServiceTypeExternalName, clientIP: s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP,
		local: s.Spec.InternalTrafficPolicy != nil && *s.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal}
	if len(out.clusterIPs) == 0 && s.Spec.ClusterIP != "" {
		out.clusterIPs = []string{s.Spec.ClusterIP}
	}
	if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil {
		out.affinityTimeout = c.ClientIP.TimeoutSeconds
	}
	for _, p := range s.Spec.Ports {
		if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
			out.ports = append(out.ports, slimPort{name: p.Name, port: p.Port})
		}
	}
	return out, nil
}

// service makes the Service config/kube reads.
func (s *slimService) service() *corev1.Service {
	out := &corev1.Service{ObjectMeta: s.objectMeta(), Spec: corev1.ServiceSpec{ClusterIPs: s.clusterIPs}}
	if s.externalName {
		out.Spec.Type = corev1.ServiceTypeExternalName
	}
	if s.local {
		local := corev1.ServiceInternalTrafficPolicyLocal
		out.Spec.InternalTrafficPolicy = &local
	}
	if s.clientIP {
		out.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}
	if s.affinityTimeout != nil {
		out.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: s.affinityTimeout}}
	}
	out.Spec.Ports = make([]corev1.ServicePort, len(s.ports))
	for i, p := range s.ports {
		out.Spec.Ports[i] = corev1.ServicePort{Name: p.name, Port: p.port, Protocol: corev1.ProtocolTCP}
	}
	return out
}

// trimSlice is the EndpointSlices informer's transform.
func trimSlice(obj any) (any, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil // a tombstone, or trimmed already
	}
	out := &slimSlice{slimMeta: slimMeta{sl.Namespace, sl.Name, sl.ResourceVersion}, service: sl.Labels[discoveryv1.LabelServiceName],
		addressType: sl.AddressType, ports: sl.Ports, endpoints: make([]slimEndpoint, len(sl.Endpoints))}
	for i, ep := range sl.Endpoints {
		e := slimEndpoint{ready: conditionOf(ep.Conditions.Ready), terminated: conditionOf(ep.Conditions.Terminating), nodeName: ep.NodeName}
		if len(ep.Addresses) > 0 {
			e.addr = ep.Addresses[0]
		}
		if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
			e.pod = &podRef{ref.Namespace, ref.Name}
		}
		out.endpoints[i] = e
	}
	return out, nil
}

// slice makes the EndpointSlice config/kube reads.
func (s *slimSlice) slice() *discoveryv1.EndpointSlice {
	out := &discoveryv1.EndpointSlice{ObjectMeta: s.objectMeta(), AddressType: s.addressType, Ports: s.ports,
		Endpoints: make([]discoveryv1.Endpoint, len(s.endpoints))}
	if s.service != "" {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: s.service}
	}
	for i, e := range s.endpoints {
		ep := discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: e.ready.ptr(), Terminating: e.terminated.ptr()}, NodeName: e.nodeName}
		if e.addr != "" {
			ep.Addresses = []string{e.addr}
		}
		if e.pod != nil {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: e.pod.namespace, Name: e.pod.name}
		}
		out.Endpoints[i] = ep
	}
	return out
}
