//go:build k8s

package k8s

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/tcpshift/tcpshift/daemon/agent/status"
	"github.com/tcpshift/tcpshift/test/k8s/cluster"
	"github.com/tcpshift/tcpshift/test/k8s/repo"
)

// gatewayPort is the port of Istio's tcp-echo Gateway.
const gatewayPort = "31400"

// The Gateway API variant of the task: tcpshift's class, a Gateway with a
// TCP listener on 31400, a TCPRoute to the versions' Services.
var gatewayAPIObjects = classAndGateway("tcp-echo-gateway")

// classAndGateway is tcpshift's GatewayClass and a Gateway of it, named
// gw, with a TCP listener tcp on 31400.
func classAndGateway(gw string) string {
	return `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: tcpshift}
spec: {controllerName: ` + status.ControllerName + `}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ` + gw + `, namespace: default}
spec:
  gatewayClassName: tcpshift
  listeners:
  - {name: tcp, port: 31400, protocol: TCP}
`
}

// tcpRoute is the TCPRoute with the versions' weights.
func tcpRoute(v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: tcp-echo, namespace: default}
spec:
  parentRefs:
  - {name: tcp-echo-gateway, sectionName: tcp}
  rules:
  - backendRefs:
    - {name: tcp-echo-v1, port: 9000, weight: %d}
    - {name: tcp-echo-v2, port: 9000, weight: %d}
`, v1, v2)
}

// TestGateways is Istio's TCP traffic-shifting task as its users run it,
// through the ingress Gateway: Istio's own files, the Gateway's port on
// every node's address, split by the weights to pods on other nodes.
// Then the same through the Gateway API, whose Gateway's status names
// the nodes' addresses and says it is Programmed.
func TestGateways(t *testing.T) {
	w := newWorld(t)
	// tcp-echo-services.yaml: the Service and v1 ("one") and v2 ("two"),
	// on nodes 2 and 3; clients dial node 1 too.
	v1 := w.addEcho(t, 1, "tcp-echo-v1-a", "v1", "one")
	v2 := w.addEcho(t, 2, "tcp-echo-v2-a", "v2", "two")
	w.addService(t, "tcp-echo", clusterIP, map[string]string{"app": "tcp-echo"})
	w.c.AddEndpointSlice(t, "default", "tcp-echo-abc", "tcp-echo", "tcp", 9000, v1.endpoint(true, false), v2.endpoint(true, false))
	w.applyFile(t, "tcp-echo-all-v1.yaml")
	for i := range w.nodes {
		w.startStatusAgent(t, i)
	}
	e1, e2 := w.eps("tcp-echo-v1-a"), w.eps("tcp-echo-v2-a")
	w.waitTables(t, time.Now(), fmt.Sprintf("v1=100[%s] v2=0[%s]", e1, e2))
	for i := range w.nodes {
		w.countVia(t, i, 20, map[string]int{"one": 20})
	}

	w.applyFile(t, "tcp-echo-20-v2.yaml")
	w.waitTables(t, time.Now(), fmt.Sprintf("v1=80[%s] v2=20[%s]", e1, e2))
	w.countVia(t, 0, 100, map[string]int{"one": 80, "two": 20})
	// The proxy's connections are counted as the kernel's are: node 1
	// gave v1 its 20 and 80, v2 its 20.
	if got, want := w.connections(t, 0, "tcp-echo"), map[string]uint64{"v1": 100, "v2": 20}; !maps.Equal(got, want) {
		t.Fatalf("node1's counters of tcp-echo by subset: %v, want %v", got, want)
	}

	// What kubectl get virtualservice tcp-echo -o yaml shows: the weights
	// and Istio's status for this generation.
	vs, err := resource(w, vservicesV1, "default").Get(context.Background(), "tcp-echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, w, vservicesV1, "default", "tcp-echo", 5*time.Second, func(st map[string]any) bool {
		return conditionOf(st, "Reconciled") == "True/" && fmt.Sprint(st["observedGeneration"]) == fmt.Sprint(vs.GetGeneration())
	})
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "tcp")
	var weights []string
	for _, r := range routes {
		dests, _, _ := unstructured.NestedSlice(r.(map[string]any), "route")
		for _, d := range dests {
			subset, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "subset")
			weights = append(weights, fmt.Sprintf("%s=%v", subset, d.(map[string]any)["weight"]))
		}
	}
	if fmt.Sprint(weights) != "[v1=80 v2=20]" {
		t.Fatalf("virtualservice tcp-echo routes %v, want [v1=80 v2=20]", weights)
	}
	t.Logf("virtualservice tcp-echo: %v, status:\n%s", weights, toYAML(st))

	// The Gateway API: the Istio Gateway and its VirtualService go, the
	// versions get a Service each, the route starts all on v1.
	w.deleteObject(t, cluster.VirtualServices, "tcp-echo")
	w.deleteObject(t, cluster.IstioGateways, "tcp-echo-gateway")
	w.addService(t, "tcp-echo-v1", "10.96.0.51", map[string]string{"app": "tcp-echo", "version": "v1"})
	w.addService(t, "tcp-echo-v2", "10.96.0.52", map[string]string{"app": "tcp-echo", "version": "v2"})
	w.c.AddEndpointSlice(t, "default", "tcp-echo-v1-abc", "tcp-echo-v1", "tcp", 9000, v1.endpoint(true, false))
	w.c.AddEndpointSlice(t, "default", "tcp-echo-v2-abc", "tcp-echo-v2", "tcp", 9000, v2.endpoint(true, false))
	for _, doc := range append(splitDocs(gatewayAPIObjects), tcpRoute(100, 0)) {
		w.applyDoc(t, doc)
	}
	w.waitTables(t, time.Now(), fmt.Sprintf("tcp-echo-v1=100[%s] tcp-echo-v2=0[%s]", e1, e2))
	for i := range w.nodes {
		w.countVia(t, i, 20, map[string]int{"one": 20})
	}
	w.applyDoc(t, tcpRoute(80, 20))
	w.waitTables(t, time.Now(), fmt.Sprintf("tcp-echo-v1=80[%s] tcp-echo-v2=20[%s]", e1, e2))
	w.countVia(t, 0, 100, map[string]int{"one": 80, "two": 20})

	// What kubectl get gateway -o yaml shows: the nodes' addresses, and
	// Programmed.
	var want []any
	for _, n := range w.nodes {
		want = append(want, map[string]any{"type": "IPAddress", "value": n.IP.String()})
	}
	gw := waitStatus(t, w, gatewaysV1, "default", "tcp-echo-gateway", 10*time.Second, func(st map[string]any) bool {
		return conditionOf(st, "Programmed") == "True/Programmed" && reflect.DeepEqual(st["addresses"], want)
	})
	t.Logf("gateway status:\n%s", toYAML(gw))
	route := waitStatus(t, w, tcpRoutesV1, "default", "tcp-echo", 5*time.Second, func(st map[string]any) bool {
		return parentCondition(st, "Accepted") == "True/Accepted" && parentCondition(st, "ResolvedRefs") == "True/ResolvedRefs"
	})
	t.Logf("tcproute status:\n%s", toYAML(route))
}

// addService creates a Service with a cluster IP and tcp-echo's ports, as
// tcp-echo-services.yaml declares them.
func (w *world) addService(t *testing.T, name, ip string, selector map[string]string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "tcp-echo"}},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Selector: selector, Ports: []corev1.ServicePort{
			{Name: "tcp", Port: 9000, Protocol: corev1.ProtocolTCP}, {Name: "tcp-other", Port: 9001, Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := w.c.Clientset.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// applyFile applies a file of examples/istio (Istio's samples/tcp-echo
// files, comments added) in default, as kubectl apply -f does.
func (w *world) applyFile(t *testing.T, name string) {
	t.Helper()
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "examples", "istio", name))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range splitDocs(string(data)) {
		w.applyDoc(t, doc)
	}
}

// applyDoc creates an object, or replaces the one of its name.
func (w *world) applyDoc(t *testing.T, doc string) {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	gv := u.GroupVersionKind().GroupVersion()
	plural := strings.ToLower(u.GetKind()) + "s"
	if u.GetKind() == "GatewayClass" {
		plural = "gatewayclasses"
	}
	gvr := schema.GroupVersionResource{Group: gv.Group, Version: gv.Version, Resource: plural}
	ns := u.GetNamespace()
	if ns == "" && u.GetKind() != "GatewayClass" {
		ns = "default"
		u.SetNamespace(ns)
	}
	ri := resource(w, gvr, ns)
	ctx := context.Background()
	old, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = ri.Create(ctx, u, metav1.CreateOptions{})
	case err == nil:
		u.SetResourceVersion(old.GetResourceVersion())
		_, err = ri.Update(ctx, u, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func (w *world) deleteObject(t *testing.T, gvr schema.GroupVersionResource, name string) {
	t.Helper()
	if err := w.c.Dynamic.Resource(gvr).Namespace("default").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete %s %s: %v", gvr.Resource, name, err)
	}
}

// countVia makes n connections from the test's namespace (a host outside
// the cluster) to node i's address at the gateway's port, one exchange
// each, and checks the split is exactly want. The proxy listens just
// after the tables are in force: connections wait for it, briefly.
func (w *world) countVia(t *testing.T, i, n int, want map[string]int) {
	t.Helper()
	addr := net.JoinHostPort(w.nodes[i].IP.String(), gatewayPort)
	got := map[string]int{}
	for k := range n {
		prefix, err := askGateway(addr, k == 0)
		if err != nil {
			t.Fatalf("%s: connection %d of %d to %s: %v (so far %v)", w.nodes[i].Name, k+1, n, addr, err, got)
		}
		got[prefix]++
	}
	if !maps.Equal(got, want) {
		t.Fatalf("%s: %d connections to %s split %v, want %v", w.nodes[i].Name, n, addr, got, want)
	}
	t.Logf("%s: %d connections to %s: %v", w.nodes[i].Name, n, addr, got)
}

// askGateway sends one line and returns the prefix the backend answered
// with; first retries a refused connect for up to 5 s.
func askGateway(addr string, first bool) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			if first && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "hello\n"); err != nil {
			return "", err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("read: %w (got %q)", err, line)
		}
		prefix, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		return prefix, nil
	}
}

// connections sums a service's endpoints' connection counters on node i,
// by subset.
func (w *world) connections(t *testing.T, i int, service string) map[string]uint64 {
	t.Helper()
	st, err := w.targets[i].Status(service)
	if err != nil {
		t.Fatalf("%s: status: %v", w.nodes[i].Name, err)
	}
	out := map[string]uint64{}
	for _, sub := range st.Services[0].Subsets {
		for _, ep := range sub.Endpoints {
			out[sub.Name] += ep.Connections
		}
	}
	return out
}
