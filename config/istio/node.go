package istio

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/config"
)

// reader walks one object's spec and keeps the first error, located at
// its file and line and named by the field path Istio's docs use.
type reader struct {
	o   *Object
	err error
}

func (r *reader) failf(n *yaml.Node, field, format string, args ...any) {
	if r.err != nil {
		return
	}
	line := r.o.Line
	if n != nil {
		line = n.Line
	}
	r.err = &config.Error{Path: r.o.Path, Line: line, Field: r.o.Key.String() + ": " + field, Msg: fmt.Sprintf(format, args...)}
}

// mapping checks that n is a mapping of known fields and calls fn for each.
// unsupported names fields Istio has that tcpshift does not implement, with
// why; ignored names fields that mean nothing on one host.
func (r *reader) mapping(n *yaml.Node, field string, known []string, unsupported map[string]string, fn func(key string, v *yaml.Node)) {
	if n == nil || r.err != nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		r.failf(n, field, "must be a mapping, not %s", describe(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f := join(field, k.Value)
		if why, ok := unsupported[k.Value]; ok {
			r.failf(k, f, "tcpshift does not implement this: %s", why)
			return
		}
		if !slices.Contains(known, k.Value) {
			r.failf(k, f, "unknown field (fields: %s)", strings.Join(known, ", "))
			return
		}
		fn(k.Value, v)
		if r.err != nil {
			return
		}
	}
}

// list checks that n is a sequence and calls fn for each item.
func (r *reader) list(n *yaml.Node, field string, fn func(i int, v *yaml.Node)) {
	if n == nil || r.err != nil || isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		r.failf(n, field, "must be a list, not %s", describe(n))
		return
	}
	for i, v := range n.Content {
		fn(i, v)
		if r.err != nil {
			return
		}
	}
}

func (r *reader) str(n *yaml.Node, field string) string {
	if n == nil || r.err != nil || isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		r.failf(n, field, "must be a string, not %s", describe(n))
		return ""
	}
	return n.Value
}

func (r *reader) strings(n *yaml.Node, field string) []string {
	var out []string
	r.list(n, field, func(i int, v *yaml.Node) {
		out = append(out, r.str(v, fmt.Sprintf("%s[%d]", field, i)))
	})
	return out
}

func (r *reader) port(n *yaml.Node, field string) uint16 {
	s := r.str(n, field)
	if r.err != nil || s == "" {
		return 0
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		r.failf(n, field, "%q is not a port number 1-65535", s)
		return 0
	}
	return uint16(p)
}

func (r *reader) uint(n *yaml.Node, field string) (uint64, bool) {
	s := r.str(n, field)
	if r.err != nil || s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		r.failf(n, field, "%q is not a whole number 0 or more", s)
		return 0, false
	}
	return v, true
}

// integer reads a whole number of bits bits, or fails with notInt (a
// format for the text given); ok is false when there is none.
func (r *reader) integer(n *yaml.Node, field string, bits int, notInt string) (v int64, ok bool) {
	s := r.str(n, field)
	if r.err != nil || s == "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		r.failf(n, field, notInt, s)
		return 0, false
	}
	return v, true
}

func (r *reader) labels(n *yaml.Node, field string) Labels {
	l := Labels{}
	if n == nil || r.err != nil || isNull(n) {
		return l
	}
	if n.Kind != yaml.MappingNode {
		r.failf(n, field, "must be a mapping of labels, not %s", describe(n))
		return l
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		l[n.Content[i].Value] = r.str(n.Content[i+1], join(field, n.Content[i].Value))
	}
	return l
}

// portMap reads WorkloadEntry-style ports: port name → number.
func (r *reader) portMap(n *yaml.Node, field string) map[string]uint16 {
	m := map[string]uint16{}
	if n == nil || r.err != nil || isNull(n) {
		return m
	}
	if n.Kind != yaml.MappingNode {
		r.failf(n, field, "must map port names to numbers, not %s", describe(n))
		return m
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = r.port(n.Content[i+1], join(field, n.Content[i].Value))
	}
	return m
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}
