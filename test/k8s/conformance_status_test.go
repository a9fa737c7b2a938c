//go:build k8s

package k8s

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tcpshift/tcpshift/daemon/agent/status"
)

// The suite's status assertions (its conformance/utils/kubernetes
// helpers, v1.6.1), read from the objects as the API server has them.

const (
	infra      = "gateway-conformance-infra"
	webBackend = "gateway-conformance-web-backend"
	apiGroup   = "gateway.networking.k8s.io"
	// statusWait bounds each check; the suite allows 60 s, the status
	// writer follows a change within about 0.1 s.
	statusWait = 30 * time.Second
)

// eventually polls check until it passes; after statusWait the test
// fails with what the last try found.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(statusWait)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %s: %v", what, statusWait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func items(m map[string]any, key string) []any {
	l, _ := m[key].([]any)
	return l
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// fresh is the suite's ConditionsHaveLatestObservedGeneration: every
// condition written for the object's generation gen.
func fresh(conds []any, gen int64) error {
	for _, c := range conds {
		m := asMap(c)
		if g, _ := m["observedGeneration"].(int64); g != gen {
			return fmt.Errorf("condition %v has observedGeneration %v, the object is at generation %d", m["type"], m["observedGeneration"], gen)
		}
	}
	return nil
}

// gateway is a Gateway of infra and its status, its conditions fresh.
func (s *suite) gateway(gw string) (*unstructured.Unstructured, map[string]any, error) {
	u, err := s.w.c.Dynamic.Resource(gatewaysV1).Namespace(infra).Get(context.Background(), gw, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	st := asMap(u.Object["status"])
	if err := fresh(items(st, "conditions"), u.GetGeneration()); err != nil {
		return nil, nil, fmt.Errorf("gateway %s: %w", gw, err)
	}
	return u, st, nil
}

// namespacesReady is the suite's NamespacesMustBeReady: every Gateway in
// the namespaces Accepted and Programmed, its conditions fresh, and every
// pod Ready.
// (The suite also wants a pod in each, which its base's Deployments
// supply; the reduced base has none.)
func (s *suite) namespacesReady(t *testing.T, namespaces ...string) {
	t.Helper()
	ctx := context.Background()
	eventually(t, "gateways and pods of "+strings.Join(namespaces, ", ")+" ready", func() error {
		for _, ns := range namespaces {
			gws, err := s.w.c.Dynamic.Resource(gatewaysV1).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, gw := range gws.Items {
				st := asMap(gw.Object["status"])
				if err := fresh(items(st, "conditions"), gw.GetGeneration()); err != nil {
					return fmt.Errorf("gateway %s: %w", gw.GetName(), err)
				}
				for _, typ := range []string{"Accepted", "Programmed"} {
					if c := conditionOf(st, typ); !strings.HasPrefix(c, "True/") {
						return fmt.Errorf("gateway %s: %s %q", gw.GetName(), typ, c)
					}
				}
			}
			pods, err := s.w.c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, p := range pods.Items {
				if !podReady(&p) && p.Status.Phase != corev1.PodSucceeded && p.DeletionTimestamp == nil {
					return fmt.Errorf("pod %s/%s not ready", ns, p.Name)
				}
			}
		}
		return nil
	})
}

// routeParents is a TCPRoute's status.parents in infra, every parent's
// conditions fresh.
func (s *suite) routeParents(route string) ([]map[string]any, error) {
	u, err := s.w.c.Dynamic.Resource(tcpRoutesV1).Namespace(infra).Get(context.Background(), route, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, p := range items(asMap(u.Object["status"]), "parents") {
		pm := asMap(p)
		if err := fresh(items(pm, "conditions"), u.GetGeneration()); err != nil {
			return nil, fmt.Errorf("tcproute %s, parent %v: %w", route, pm["parentRef"], err)
		}
		out = append(out, pm)
	}
	return out, nil
}

// names is whether a parentRef names Gateway gw of infra (a namespace
// left unset is the route's, infra), as the suite matches them.
func names(ref map[string]any, gw string) bool {
	ns := ref["namespace"]
	return ref["name"] == gw && (ns == nil || ns == infra)
}

// routeCondition is the suite's TCPRouteMustHaveCondition: a parent of
// the route naming Gateway gw has condition typ as want ("Status/Reason").
func (s *suite) routeCondition(t *testing.T, route, gw, typ, want string) {
	t.Helper()
	eventually(t, fmt.Sprintf("tcproute %s: %s %s on Gateway %s", route, typ, want, gw), func() error {
		parents, err := s.routeParents(route)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(parents, func(p map[string]any) bool { return names(asMap(p["parentRef"]), gw) && conditionOf(p, typ) == want }) {
			return fmt.Errorf("parents:\n%s", toYAML(parents))
		}
		return nil
	})
}

// routeAccepted is the suite's TCPRouteMustHaveParents with the parent
// its tests expect: Gateway gw by group, kind, name and namespace,
// tcpshift's controllerName, Accepted True with reason Accepted.
func (s *suite) routeAccepted(t *testing.T, route, gw string) {
	t.Helper()
	eventually(t, fmt.Sprintf("tcproute %s accepted by Gateway %s", route, gw), func() error {
		parents, err := s.routeParents(route)
		if err != nil {
			return err
		}
		ok := slices.ContainsFunc(parents, func(p map[string]any) bool {
			ref := asMap(p["parentRef"])
			return p["controllerName"] == status.ControllerName && ref["group"] == apiGroup && ref["kind"] == "Gateway" &&
				names(ref, gw) && conditionOf(p, "Accepted") == "True/Accepted"
		})
		if !ok {
			return fmt.Errorf("parents:\n%s", toYAML(parents))
		}
		return nil
	})
}

// gatewayAndRoutesAccepted is the suite's GatewayAndTCPRoutesMustBeAccepted:
// gw has an address, each route is accepted by it, every listener of gw is
// ResolvedRefs, Accepted and Programmed. It returns the address at the
// port of listener.
func (s *suite) gatewayAndRoutesAccepted(t *testing.T, gw, listener string, routes ...string) string {
	t.Helper()
	addr := s.gatewayAddr(t, gw, listener)
	for _, r := range routes {
		s.routeAccepted(t, r, gw)
	}
	eventually(t, "listeners of Gateway "+gw+" ready", func() error {
		_, st, err := s.gateway(gw)
		if err != nil {
			return err
		}
		for _, l := range items(st, "listeners") {
			lm := asMap(l)
			for _, typ := range []string{"ResolvedRefs", "Accepted", "Programmed"} {
				if c := conditionOf(lm, typ); !strings.HasPrefix(c, "True/") {
					return fmt.Errorf("listener %v: %s %q", lm["name"], typ, c)
				}
			}
		}
		return nil
	})
	return addr
}

// oneListener is the suite's GatewayStatusMustHaveListeners for a Gateway
// of one listener: gw's status lists exactly it, with TCPRoute among its
// supportedKinds, Accepted True with reason Accepted, attached routes.
func (s *suite) oneListener(t *testing.T, gw, listener string, attached int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("Gateway %s: listener %s with %d routes", gw, listener, attached), func() error {
		_, st, err := s.gateway(gw)
		if err != nil {
			return err
		}
		ls := items(st, "listeners")
		if len(ls) != 1 {
			return fmt.Errorf("%d listeners in status", len(ls))
		}
		l := asMap(ls[0])
		tcp := slices.ContainsFunc(items(l, "supportedKinds"), func(k any) bool {
			km := asMap(k)
			return km["kind"] == "TCPRoute" && (km["group"] == nil || km["group"] == apiGroup)
		})
		if l["name"] != listener || !tcp || conditionOf(l, "Accepted") != "True/Accepted" || l["attachedRoutes"] != attached {
			return fmt.Errorf("listener:\n%s", toYAML(l))
		}
		return nil
	})
}

// zeroRoutes is the suite's GatewayMustHaveZeroRoutes: no listener in
// gw's status, or one with no attached route.
func (s *suite) zeroRoutes(t *testing.T, gw string) {
	t.Helper()
	eventually(t, "Gateway "+gw+" with no route attached", func() error {
		_, st, err := s.gateway(gw)
		if err != nil {
			return err
		}
		ls := items(st, "listeners")
		if len(ls) == 0 || len(ls) == 1 && asMap(ls[0])["attachedRoutes"] == int64(0) {
			return nil
		}
		return fmt.Errorf("listeners:\n%s", toYAML(ls))
	})
}
