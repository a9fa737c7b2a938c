package config

import (
	"fmt"

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
	return firstDuplicate(n, "")
}

func firstDuplicate(n *yaml.Node, field string) *Duplicate {
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
			if d := firstDuplicate(c, fmt.Sprintf("%s[%d]", field, i)); d != nil {
				return d
			}
		}
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				continue
			}
			kf := fieldKey(field, k.Value)
			if first, dup := seen[k.Value]; dup {
				return &Duplicate{Key: k.Value, Field: kf, Line: k.Line, Col: k.Column, First: first}
			}
			seen[k.Value] = k.Line
			if d := firstDuplicate(v, kf); d != nil {
				return d
			}
		}
	}
	return nil
}

// fieldKey appends a mapping key to a field path.
func fieldKey(field, key string) string {
	if field == "" && pathKeyRE.MatchString(key) {
		return key
	}
	return field + pathKey(key)
}
