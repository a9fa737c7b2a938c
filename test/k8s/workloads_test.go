//go:build k8s

package k8s

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/tcpshift/tcpshift/test/k8s/cluster"
	"github.com/tcpshift/tcpshift/test/k8s/nodes"
)

// There is no controller manager or kubelet: the conformance tests'
// Deployments and Services are run here as those would run them.

// backend is a pod run for a Deployment, with its Pod object's labels.
type backend struct {
	pod    *nodes.Pod
	ns     string
	labels map[string]string
}

// runDeployment plays the Deployment and ReplicaSet controllers, the
// scheduler and the kubelet for a Deployment: each replica is a pod on the
// next node, named as the controllers name them (DEPLOYMENT-HASH-SUFFIX,
// from which the suite reads the backend), running echo-basic with its
// container's env, its Pod object Running and Ready. The pods go when the
// test ends.
func (s *suite) runDeployment(t *testing.T, u *unstructured.Unstructured) []*backend {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		t.Fatalf("deployment %s: %v", u.GetName(), err)
	}
	tmpl := d.Spec.Template
	if len(tmpl.Spec.Containers) != 1 {
		t.Fatalf("deployment %s: %d containers, want echo-basic alone", d.Name, len(tmpl.Spec.Containers))
	}
	// The controller hashes the whole pod template; the Deployment's
	// name is as stable for one run.
	h := fnv.New32a()
	h.Write([]byte(d.Namespace + "/" + d.Name))
	hash := rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
	lbls := maps.Clone(tmpl.Labels)
	lbls["pod-template-hash"] = hash
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	var out []*backend
	for range replicas {
		name := d.Name + "-" + hash + "-" + rand.String(5)
		node := s.w.nodes[s.next%len(s.w.nodes)]
		s.next++
		p := node.NewPod(name)
		env := containerEnv(t, tmpl.Spec.Containers[0], d.Namespace, name)
		proc := p.StartEchoBasic(env)
		addr := net.JoinHostPort(p.IP.String(), envPort(env))
		p.WaitListening(addr)
		// Straight to the pod, the suite's handshake names it.
		if a, err := echoSend(addr, true); err != nil || a.Pod != name || a.Namespace != d.Namespace {
			t.Fatalf("pod %s/%s answered %+v, %v", d.Namespace, name, a, err)
		}
		s.w.c.AddPod(t, d.Namespace, name, node.Name, lbls, p.IP.String())
		t.Cleanup(func() {
			proc.Stop()
			// At once, as the kubelet's final delete once the container is gone.
			now := int64(0)
			if err := s.w.c.Clientset.CoreV1().Pods(d.Namespace).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &now}); err != nil {
				t.Errorf("delete pod %s/%s: %v", d.Namespace, name, err)
			}
		})
		out = append(out, &backend{pod: p, ns: d.Namespace, labels: lbls})
	}
	return out
}

// containerEnv is a container's env as the kubelet gives it to pod name
// of namespace ns: values, and the downward API's metadata.name and
// metadata.namespace (all the suite's manifests use).
func containerEnv(t *testing.T, c corev1.Container, ns, name string) []string {
	t.Helper()
	var env []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			ref := e.ValueFrom.FieldRef
			switch {
			case ref != nil && ref.FieldPath == "metadata.name":
				v = name
			case ref != nil && ref.FieldPath == "metadata.namespace":
				v = ns
			default:
				t.Fatalf("env %s of pod %s: only metadata.name and metadata.namespace are resolved here", e.Name, name)
			}
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// envPort is the port echo-basic listens on with env: TCP_PORT, or 3000.
func envPort(env []string) string {
	port := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "TCP_PORT="); ok {
			port = v
		}
	}
	return cmp.Or(port, "3000")
}

// addSlice plays the EndpointSlice controller for a Service of one port:
// a slice of the ready pods among pods its selector picks, at its target
// port. It goes when the test ends.
func (s *suite) addSlice(t *testing.T, u *unstructured.Unstructured, pods []*backend) {
	t.Helper()
	var svc corev1.Service
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &svc); err != nil {
		t.Fatalf("service %s: %v", u.GetName(), err)
	}
	if len(svc.Spec.Selector) == 0 {
		return // the controller leaves Services without a selector alone
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.Type == intstr.String {
		t.Fatalf("service %s: want one port with a numeric targetPort, have %+v", svc.Name, svc.Spec.Ports)
	}
	sp := svc.Spec.Ports[0]
	port := cmp.Or(sp.TargetPort.IntVal, sp.Port)
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var eps []cluster.Endpoint
	for _, b := range pods {
		if b.ns == svc.Namespace && sel.Matches(labels.Set(b.labels)) {
			eps = append(eps, cluster.Endpoint{IP: b.pod.IP.String(), Node: b.pod.Node.Name, Pod: b.pod.Name, Ready: true})
		}
	}
	name := svc.Name + "-" + rand.String(5)
	s.w.c.AddEndpointSlice(t, svc.Namespace, name, svc.Name, sp.Name, port, eps...)
	t.Cleanup(func() {
		if err := s.w.c.Clientset.DiscoveryV1().EndpointSlices(svc.Namespace).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete EndpointSlice %s/%s: %v", svc.Namespace, name, err)
		}
	})
}
