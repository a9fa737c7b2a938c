package config

import (
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Duplicate is a key that one YAML mapping gives twice.
type Duplicate struct {
	Key   string
	Field string // path of the second one, e.g. services[0].route[1].weight
	Line  int    // line of the second one
	Col   int
	First int // line of the first one
}

// Msg words the problem: duplicate key "weight" (first at line 6).
func (d *Duplicate) Msg() string {
	return fmt.Sprintf("duplicate key %s (first at line %d)", quote(d.Key), d.First)
}

// FirstDuplicate returns the first key, in file order, that a mapping in
// the tree under n gives twice, or nil. YAML leaves it to the reader which
// one counts (yaml.v3 keeps the last in a Go map, a lookup in the node
// tree finds the first); kubectl refuses them, and so does every front end
// of tcpshift. Aliases are not followed: the anchored node is checked
// where it stands. Only scalar keys are compared.
func FirstDuplicate(n *yaml.Node) *Duplicate {
	return firstDuplicate(n, nil)
}

// fieldPath is where a node stands, made into text (see String) only for
// the duplicate found: most files have none, and a file of ten thousand
// services has a hundred thousand nodes.
type fieldPath struct {
	up    *fieldPath
	key   string // a mapping's key, or
	index int    // a sequence's index, when key is ""
	isKey bool
}

func (f *fieldPath) String() string {
	if f == nil {
		return ""
	}
	if !f.isKey {
		return f.up.String() + "[" + strconv.Itoa(f.index) + "]"
	}
	return fieldKey(f.up.String(), f.key)
}

func firstDuplicate(n *yaml.Node, field *fieldPath) *Duplicate {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if d := firstDuplicate(c, field); d != nil {
				return d
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if d := firstDuplicate(c, &fieldPath{up: field, index: i}); d != nil {
				return d
			}
		}
	case yaml.MappingNode:
		var seen keyLines
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				continue
			}
			kf := &fieldPath{up: field, key: k.Value, isKey: true}
			if first, dup := seen.first(n.Content[:i], k.Value); dup {
				return &Duplicate{Key: k.Value, Field: kf.String(), Line: k.Line, Col: k.Column, First: first}
			}
			if d := firstDuplicate(v, kf); d != nil {
				return d
			}
		}
	}
	return nil
}

// keyLines finds a key given before in a mapping. Mappings of a few dozen
// keys (nearly all) are scanned; a longer one is indexed as it goes.
type keyLines struct {
	follow bool // follow aliases (the parser does; FirstDuplicate does not)
	lines  map[string]int
	upto   int // content indexed so far
}

// first returns the line of the first scalar key called key in before, a
// mapping's content (keys and values alternating) up to that key.
func (s *keyLines) first(before []*yaml.Node, key string) (line int, found bool) {
	const scanned = 32 // keys
	if len(before) < 2*scanned {
		for i := 0; i+1 < len(before); i += 2 {
			if k := s.key(before[i]); k.Kind == yaml.ScalarNode && k.Value == key {
				return k.Line, true
			}
		}
		return 0, false
	}
	if s.lines == nil {
		s.lines = map[string]int{}
	}
	for ; s.upto+1 < len(before); s.upto += 2 {
		if k := s.key(before[s.upto]); k.Kind == yaml.ScalarNode {
			if _, ok := s.lines[k.Value]; !ok {
				s.lines[k.Value] = k.Line
			}
		}
	}
	line, found = s.lines[key]
	return line, found
}

func (s *keyLines) key(n *yaml.Node) *yaml.Node {
	if s.follow {
		return resolve(n)
	}
	return n
}

// fieldKey appends a mapping key to a field path.
func fieldKey(field, key string) string {
	if field == "" && isPathKey(key) {
		return key
	}
	return field + pathKey(key)
}
