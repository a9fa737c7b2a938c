//go:build k8s

package k8s

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/tcpshift/tcpshift/daemon/agent/status"
)

// conformanceDir holds the suite's manifests (conformance/README.md).
const conformanceDir = "conformance"

// className is the class every applied Gateway gets, as the suite's
// applier sets spec.gatewayClassName to the class it is given.
const className = "tcpshift"

const gatewayClass = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ` + className + `}
spec: {controllerName: ` + status.ControllerName + `}
`

// suite is the cluster the conformance tests share, as one run of the
// suite shares one: three nodes, their agents, the base namespaces.
type suite struct {
	w      *world
	mapper meta.RESTMapper
	next   int // the node the next pod goes to
}

// readDocs reads a manifest of the suite's, one object per document.
func readDocs(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(conformanceDir, file))
	if err != nil {
		t.Fatal(err)
	}
	return decodeDocs(t, b)
}

func decodeDocs(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode manifest: %v", err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// resourceOf is where objects of u's kind are created (discovery's
// mapping; cluster-scoped kinds get no namespace).
func (s *suite) resourceOf(t *testing.T, u *unstructured.Unstructured) dynamic.ResourceInterface {
	t.Helper()
	gvk := u.GroupVersionKind()
	m, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return s.w.c.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	return s.w.c.Dynamic.Resource(m.Resource)
}

// create creates the objects in order and returns them as created.
func (s *suite) create(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "Gateway" {
			if err := unstructured.SetNestedField(u.Object, className, "spec", "gatewayClassName"); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.resourceOf(t, u).Create(context.Background(), u, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		out = append(out, got)
	}
	return out
}

// apply applies one test's manifest as the suite does, then plays the
// controllers and kubelets for its Deployments and Services; everything
// goes when the test ends, as the suite cleans up after each test (two
// tests' Gateways share ports).
func (s *suite) apply(t *testing.T, file string) {
	t.Helper()
	objs := s.create(t, readDocs(t, file))
	t.Cleanup(func() { s.remove(t, objs) })
	var pods []*backend
	for _, u := range objs {
		if u.GetKind() == "Deployment" {
			pods = append(pods, s.runDeployment(t, u)...)
		}
	}
	for _, u := range objs {
		if u.GetKind() == "Service" {
			s.addSlice(t, u, pods)
		}
	}
}

// remove deletes objects, the last first; one deleted already (the
// ReferenceGrant test deletes its grant) is no error.
func (s *suite) remove(t *testing.T, objs []*unstructured.Unstructured) {
	for _, u := range slices.Backward(objs) {
		err := s.resourceOf(t, u).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

func newMapper(t *testing.T, w *world) meta.RESTMapper {
	t.Helper()
	groups, err := restmapper.GetAPIGroupResources(w.c.Clientset.Discovery())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return restmapper.NewDiscoveryRESTMapper(groups)
}
