//go:build k8s

package k8s

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/tcpshift/tcpshift/daemon/agent/status"
)

var referenceGrantsV1 = schema.GroupVersionResource{Group: apiGroup, Version: "v1", Resource: "referencegrants"}

// TestConformance runs the Gateway API's eight TCPRoute conformance tests
// (v1.6.1, test/k8s/conformance) against the real API server, three nodes
// and their agents: each test's manifests applied, its Deployments run as
// echo-basic pods, its assertions checked as the suite states them, and
// its objects deleted after it, as the suite runs them.
func TestConformance(t *testing.T) {
	s := newSuite(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *suite)
	}{
		{"TCPRouteWeightedRouting", weightedRouting},
		{"TCPRouteMultipleRoutesAttachment", multipleRoutesAttachment},
		{"TCPRouteParentRefAttachAll", parentRefAttachAll},
		{"TCPRouteParentRefPortAndSectionName", parentRefPortAndSectionName},
		{"TCPRouteReferenceGrant", referenceGrant},
		{"TCPRouteInvalidBackendRefNonexistent", invalidBackendRefNonexistent},
		{"TCPRouteInvalidCrossNamespaceBackendRef", invalidCrossNamespaceBackendRef},
		{"TCPRouteInvalidNonTCPListener", invalidNonTCPListener},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, s) })
	}
}

// newSuite is the suite's setup: tcpshift's GatewayClass (the class the
// implementation names) Accepted, the base namespaces, the agents.
func newSuite(t *testing.T) *suite {
	w := newWorld(t)
	s := &suite{w: w, mapper: newMapper(t, w)}
	s.create(t, decodeDocs(t, []byte(gatewayClass)))
	s.create(t, readDocs(t, "base.yaml"))
	for i := range w.nodes {
		w.startStatusAgent(t, i)
	}
	waitStatus(t, w, status.GatewayClasses, "", className, statusWait, func(st map[string]any) bool {
		return conditionOf(st, "Accepted") == "True/Accepted"
	})
	return s
}

func weightedRouting(t *testing.T, s *suite) {
	s.apply(t, "tcproute-weighted-routing.yaml")
	s.namespacesReady(t, infra)
	addr := s.gatewayAndRoutesAccepted(t, "tcp-weighted-gateway", "tcp", "tcp-weighted-route")
	eventually(t, "a connection to "+addr, func() error { return dialOnly(addr) })
	weightedSplit(t, addr, 500,
		map[string]float64{"tcp-backend-v1": 0.7, "tcp-backend-v2": 0.3, "tcp-backend-v3": 0},
		map[string]int{"tcp-backend-v1": 350, "tcp-backend-v2": 150})
}

func multipleRoutesAttachment(t *testing.T, s *suite) {
	const gw = "tcp-multi-route-attach-gateway"
	s.apply(t, "tcproute-multiple-routes-attachment.yaml")
	s.namespacesReady(t, infra)
	addr := s.gatewayAndRoutesAccepted(t, gw, "tcp", "tcproute-attach-older")
	// creationTimestamp has seconds: the newer route must be a second newer.
	time.Sleep(time.Second)
	s.apply(t, "tcproute-multiple-routes-attachment-newer.yaml")
	s.routeCondition(t, "tcproute-attach-older", gw, "Accepted", "True/Accepted")
	s.routeCondition(t, "tcproute-attach-newer", gw, "Accepted", "True/Accepted")
	s.oneListener(t, gw, "tcp", 2)
	// Only the older route is served: every connection reaches its backend.
	expectBackend(t, addr, "tcp-attach-backend-1", infra)
	onlyBackend(t, addr, "tcp-attach-backend-1", 100)
}

func parentRefAttachAll(t *testing.T, s *suite) {
	s.apply(t, "tcproute-parentref-attach-all.yaml")
	s.namespacesReady(t, infra)
	s.routeAccepted(t, "tcp-route-attach-all", "tcp-attach-all-gateway")
	for _, l := range []string{"one", "two", "three", "four"} {
		expectBackend(t, s.gatewayAddr(t, "tcp-attach-all-gateway", l), "tcp-echo-attach-all", infra)
	}
}

func parentRefPortAndSectionName(t *testing.T, s *suite) {
	const gw = "tcp-multi-listener-gateway"
	s.apply(t, "tcproute-parentref-port-and-section-name.yaml")
	s.namespacesReady(t, infra)
	for _, x := range []struct{ route, listener, backend string }{
		{"tcp-route-by-port", "one", "tcp-echo-one"},
		{"tcp-route-by-section", "two", "tcp-echo-two"},
		{"tcp-route-by-section-and-port", "three", "tcp-echo-three"},
	} {
		s.routeAccepted(t, x.route, gw)
		expectBackend(t, s.gatewayAddr(t, gw, x.listener), x.backend, infra)
	}
}

func referenceGrant(t *testing.T, s *suite) {
	const gw, route = "tcp-reference-grant-gateway", "tcp-reference-grant"
	s.apply(t, "tcproute-reference-grant.yaml")
	s.namespacesReady(t, infra, webBackend)
	addr := s.gatewayAndRoutesAccepted(t, gw, "tcp", route)
	expectBackend(t, addr, "tcp-reference-grant-backend", webBackend)
	// Not the suite's: the grant is in force before it goes.
	s.routeCondition(t, route, gw, "ResolvedRefs", "True/ResolvedRefs")
	err := s.w.c.Dynamic.Resource(referenceGrantsV1).Namespace(webBackend).Delete(context.Background(), "tcp-reference-grant", metav1.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.routeCondition(t, route, gw, "ResolvedRefs", "False/RefNotPermitted")
}

func invalidBackendRefNonexistent(t *testing.T, s *suite) {
	s.apply(t, "tcproute-invalid-backendref-nonexistent.yaml")
	s.namespacesReady(t, infra)
	s.routeCondition(t, "tcp-route-invalid-backend-ref-nonexistent", "tcp-gateway-invalid-backend", "ResolvedRefs", "False/BackendNotFound")
}

func invalidCrossNamespaceBackendRef(t *testing.T, s *suite) {
	const gw, route = "tcp-invalid-cross-namespace-backend-ref-gateway", "tcp-invalid-cross-namespace-backend-ref"
	s.apply(t, "tcproute-invalid-cross-namespace-backend-ref.yaml")
	s.namespacesReady(t, infra, webBackend)
	s.gatewayAndRoutesAccepted(t, gw, "tcp", route)
	s.routeCondition(t, route, gw, "ResolvedRefs", "False/RefNotPermitted")
}

func invalidNonTCPListener(t *testing.T, s *suite) {
	const gw = "tcp-mixed-protocol-gateway"
	s.apply(t, "tcproute-invalid-non-tcp-listener.yaml")
	s.namespacesReady(t, infra)
	s.routeCondition(t, "tcp-route", gw, "Accepted", "False/NotAllowedByListeners")
	s.zeroRoutes(t, gw)
}
