package agent

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informers keep only what config/kube reads of a Service or an
// EndpointSlice: managed fields, annotations, status and the endpoints'
// hints and zones are most of each object, and ten thousand Services with
// their EndpointSlices were most of the agent's memory.

// meta keeps what names an object and what the index and the derivation
// read of its metadata.
func meta(m metav1.ObjectMeta, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name, ResourceVersion: m.ResourceVersion, Labels: labels}
}

// trimService is the Services informer's transform.
func trimService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil // a tombstone
	}
	spec := corev1.ServiceSpec{Type: s.Spec.Type, ClusterIP: s.Spec.ClusterIP, ClusterIPs: s.Spec.ClusterIPs,
		InternalTrafficPolicy: s.Spec.InternalTrafficPolicy, SessionAffinity: s.Spec.SessionAffinity,
		SessionAffinityConfig: s.Spec.SessionAffinityConfig}
	for _, p := range s.Spec.Ports {
		spec.Ports = append(spec.Ports, corev1.ServicePort{Name: p.Name, Port: p.Port, Protocol: p.Protocol})
	}
	return &corev1.Service{ObjectMeta: meta(s.ObjectMeta, nil), Spec: spec}, nil
}

// trimSlice is the EndpointSlices informer's transform.
func trimSlice(obj any) (any, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil // a tombstone
	}
	var labels map[string]string
	if name, ok := sl.Labels[discoveryv1.LabelServiceName]; ok {
		labels = map[string]string{discoveryv1.LabelServiceName: name}
	}
	out := &discoveryv1.EndpointSlice{ObjectMeta: meta(sl.ObjectMeta, labels), AddressType: sl.AddressType, Ports: sl.Ports,
		Endpoints: make([]discoveryv1.Endpoint, len(sl.Endpoints))}
	for i, ep := range sl.Endpoints {
		out.Endpoints[i] = discoveryv1.Endpoint{Addresses: ep.Addresses, Conditions: ep.Conditions, NodeName: ep.NodeName, TargetRef: ep.TargetRef}
	}
	return out, nil
}
