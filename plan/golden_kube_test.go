package plan_test

import (
	"cmp"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/config/kube"
)

// kube derives the node's services as the agent does, from a snapshot of
// the cluster: the Services, EndpointSlices and Pods of the file (in the
// default namespace unless they name one) and its Istio and Gateway API
// objects.
func (w *world) kube(name string, o *options) (*built, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	snap := &kube.Snapshot{}
	pods := map[string]*corev1.Pod{}
	for _, d := range documents(string(data)) {
		if err := addObject(snap, pods, name, d); err != nil {
			return nil, err
		}
	}
	snap.Pod = func(ns, name string) *corev1.Pod { return pods[ns+"/"+name] }
	res, err := kube.Derive(snap, o.kube)
	if err != nil {
		return nil, err
	}
	return &built{cfg: res.Config, origins: res.Origins, notes: res.Notes, rejected: res.Rejected, native: w.native, stored: w.stored}, nil
}

// document is one YAML document of a file and the line it starts on.
type document struct {
	line int
	text string
}

// documents splits a file at its "---" lines.
func documents(data string) []document {
	var out []document
	cur := document{line: 1}
	for i, line := range strings.SplitAfter(data, "\n") {
		if strings.TrimSpace(line) == "---" {
			out = append(out, cur)
			cur = document{line: i + 2}
			continue
		}
		cur.text += line
	}
	return append(out, cur)
}

// addObject adds one document to the snapshot: a Kubernetes object by its
// kind, or an Istio or Gateway API object as the agent's watch reads it.
func addObject(snap *kube.Snapshot, pods map[string]*corev1.Pod, name string, d document) error {
	var head struct{ APIVersion, Kind string }
	if err := yaml.Unmarshal([]byte(d.text), &head); err != nil {
		return fmt.Errorf("%s:%d: %w", name, d.line, err)
	}
	var err error
	switch head.APIVersion + " " + head.Kind {
	case " ":
		return nil // empty
	case "v1 Service":
		svc := &corev1.Service{}
		if err = yaml.UnmarshalStrict([]byte(d.text), svc); err == nil {
			svc.Namespace = cmp.Or(svc.Namespace, "default")
			snap.Services = append(snap.Services, svc)
		}
	case "discovery.k8s.io/v1 EndpointSlice":
		sl := &discoveryv1.EndpointSlice{}
		if err = yaml.UnmarshalStrict([]byte(d.text), sl); err == nil {
			sl.Namespace = cmp.Or(sl.Namespace, "default")
			snap.Slices = append(snap.Slices, sl)
		}
	case "v1 Pod":
		p := &corev1.Pod{}
		if err = yaml.UnmarshalStrict([]byte(d.text), p); err == nil {
			p.Namespace = cmp.Or(p.Namespace, "default")
			pods[p.Namespace+"/"+p.Name] = p
		}
	default:
		// Padded to its line, so errors name the file's lines.
		docs, err := istio.Decode(name, []byte(strings.Repeat("\n", d.line-1)+d.text))
		if err != nil {
			return err // it names the file and line
		}
		for _, doc := range docs {
			if doc.Object != nil {
				snap.Objects = append(snap.Objects, doc.Object)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s:%d: %w", name, d.line, err)
	}
	return nil
}
