// Package istio is the front end for Istio's and the Gateway API's own
// objects: it reads VirtualService, DestinationRule, Gateway, ServiceEntry,
// WorkloadEntry and TCPRoute documents and derives tcpshift's services
// (config.Service) from all of them together. The loader never sees these
// kinds: it stores them as opaque text and applies the derived services.
package istio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/config"
)

// Key identifies an object the way kubectl does: kind (with its API group),
// namespace and name.
type Key struct {
	Kind      string // Group/Kind, e.g. networking.istio.io/VirtualService
	Namespace string
	Name      string
}

// String is how messages name an object: VirtualService default/tcp-echo.
func (k Key) String() string {
	return fmt.Sprintf("%s %s/%s", kindName(k.Kind), k.Namespace, k.Name)
}

func kindName(groupKind string) string {
	_, kind, _ := strings.Cut(groupKind, "/")
	return kind
}

// Object is one Istio or Gateway API object.
type Object struct {
	Key
	APIVersion string
	Path       string     // where it was read, for errors
	Line       int        // line of its document
	Spec       *yaml.Node // the spec mapping (nil: none)
	Created    time.Time  // metadata.creationTimestamp (zero: none)
	Text       []byte     // the document as YAML, as stored and printed by get
}

// Document is one YAML document of an input: a tcpshift route config
// (services:) or an object.
type Document struct {
	Path   string
	Native *yaml.Node // a tcpshift route config document, or nil
	Object *Object
}

// DefaultNamespace is the namespace of objects that name none, as kubectl's.
const DefaultNamespace = "default"

// Decode splits data into its YAML documents and reads each: a document
// with `services:` is tcpshift's own route config, one with apiVersion and
// kind an object. Empty documents are skipped. A key given twice in one
// mapping is refused, as kubectl refuses it.
func Decode(path string, data []byte) ([]Document, error) {
	var docs []Document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := decodeOne(dec, &n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, syntaxError(path, err)
		}
		if len(n.Content) == 0 {
			continue
		}
		root := n.Content[0]
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			continue
		}
		if root.Kind != yaml.MappingNode {
			return nil, &config.Error{Path: path, Line: root.Line, Msg: "a document must be a mapping: tcpshift's services: or an object with apiVersion and kind"}
		}
		if get(root, "kind") == nil && get(root, "apiVersion") == nil {
			// tcpshift's own route config: its parser names what is wrong.
			docs = append(docs, Document{Path: path, Native: &n})
			continue
		}
		dup := config.FirstDuplicate(root)
		if dup != nil && namesObject(dup.Field) {
			// The object cannot be named by a key it gives twice.
			return nil, &config.Error{Path: path, Line: dup.Line, Field: dup.Field, Msg: dup.Msg()}
		}
		obj, err := object(path, root)
		if err != nil {
			return nil, err
		}
		if dup != nil {
			return nil, &config.Error{Path: path, Line: dup.Line, Field: obj.Key.String() + ": " + dup.Field, Msg: dup.Msg()}
		}
		if err := checkStorable(obj); err != nil {
			return nil, err
		}
		docs = append(docs, Document{Path: path, Object: obj})
	}
}

// namesObject reports whether field is one an object is named by.
func namesObject(field string) bool {
	switch field {
	case "apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace":
		return true
	}
	return false
}

// decodeOne decodes the next document; yaml.v3 panics on some inputs.
func decodeOne(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

// syntaxError words a YAML error as the route config parser does.
func syntaxError(path string, err error) error {
	msg := strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "yaml: ")), " ")
	line := 1 // yaml.v3 leaves the line out when the problem is on the first line
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if l, err := strconv.Atoi(m[1]); err == nil {
			line, msg = l, m[2]
		}
	}
	return &config.Error{Path: path, Line: line, Msg: "invalid yaml: " + msg}
}

var yamlLineRE = regexp.MustCompile(`^line ([0-9]+): (.*)$`)

// object reads an object's header: apiVersion, kind, metadata.
func object(path string, root *yaml.Node) (*Object, error) {
	fail := func(n *yaml.Node, field, format string, args ...any) error {
		return &config.Error{Path: path, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	apiVersion, kind := scalar(get(root, "apiVersion")), scalar(get(root, "kind"))
	if kind == "" {
		if apiVersion == "" {
			return nil, fail(root, "", "neither tcpshift's route config (services:) nor an object (apiVersion and kind)")
		}
		return nil, fail(root, "kind", "missing: every object needs apiVersion and kind")
	}
	if apiVersion == "" {
		return nil, fail(root, "apiVersion", "missing for %s", kind)
	}
	o := &Object{APIVersion: apiVersion, Path: path, Line: root.Line, Spec: get(root, "spec")}
	meta := get(root, "metadata")
	o.Name = scalar(get(meta, "name"))
	o.Namespace = scalar(get(meta, "namespace"))
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	group, _, _ := strings.Cut(apiVersion, "/")
	if !strings.Contains(apiVersion, "/") {
		group = "" // the core API: v1
	}
	o.Kind = group + "/" + kind
	if err := known(o, root); err != nil {
		return nil, err
	}
	if o.Name == "" {
		return nil, fail(root, kind+".metadata.name", "missing: every %s needs a name", kind)
	}
	if msg := dnsName(o.Name); msg != "" {
		return nil, fail(get(meta, "name"), kind+".metadata.name", "%q %s", o.Name, msg)
	}
	if n := get(meta, "creationTimestamp"); scalar(n) != "" {
		t, err := time.Parse(time.RFC3339, scalar(n))
		if err != nil {
			return nil, fail(n, kind+".metadata.creationTimestamp", "%q is not a time as Kubernetes writes it (RFC 3339, 2026-06-01T10:00:00Z)", scalar(n))
		}
		o.Created = t
	}
	text, err := marshal(root)
	if err != nil {
		return nil, fail(root, "", "cannot write %s back: %v", kind, err)
	}
	o.Text = text
	return o, nil
}

// get returns the value of key in a mapping node, or nil.
func get(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

// marshal writes YAML as kubectl does, indented by two.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Marshal writes v as YAML the way stored objects are written.
func Marshal(v any) ([]byte, error) { return marshal(v) }
