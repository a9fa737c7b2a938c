package istio

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// Stamped returns o as it is to be kept, with its metadata.creationTimestamp
// set the way the API server sets it: the time of its first apply, kept by
// every later apply. stored is the text of the object kept under o's key
// (nil: none, o is new); now is the time of this apply. Routes on one
// listener are served oldest first (the Gateway API's rule), so the time
// a user may have copied into the file means nothing, as on Kubernetes.
func Stamped(o *Object, stored []byte, now time.Time) (*Object, error) {
	created := now.UTC()
	if stored != nil {
		// Kept by a tcpshift that did not stamp objects: it stays
		// without a time, the oldest, as the others kept then, so
		// applying it again does not make it the newest.
		created, _ = storedCreation(stored)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(o.Text, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: cannot read its own text back: %v", o.Key, err)
	}
	root := doc.Content[0]
	meta := get(root, "metadata")
	if meta == nil {
		meta = &yaml.Node{Kind: yaml.MappingNode}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "metadata"}, meta)
	}
	value := created.Format(time.RFC3339Nano)
	switch ts := get(meta, "creationTimestamp"); {
	case created.IsZero():
		if i := slices.Index(meta.Content, ts); ts != nil && i > 0 {
			meta.Content = slices.Delete(meta.Content, i-1, i+1) // key and value
		}
	case ts != nil:
		*ts = yaml.Node{Kind: yaml.ScalarNode, Style: yaml.DoubleQuotedStyle, Value: value}
	default:
		meta.Content = append(meta.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: "creationTimestamp"},
			&yaml.Node{Kind: yaml.ScalarNode, Style: yaml.DoubleQuotedStyle, Value: value})
	}
	text, err := marshal(root)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot write it back: %w", o.Key, err)
	}
	out := *o
	out.Text, out.Created = text, created
	if err := checkStorable(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// storedCreation reads the creationTimestamp of a stored object's text.
func storedCreation(text []byte) (time.Time, bool) {
	if text == nil {
		return time.Time{}, false
	}
	var v struct {
		Metadata struct {
			CreationTimestamp string `yaml:"creationTimestamp"`
		}
	}
	if yaml.Unmarshal(text, &v) != nil || v.Metadata.CreationTimestamp == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v.Metadata.CreationTimestamp)
	return t, err == nil
}

// olderFirst orders objects as the Gateway API orders conflicting routes:
// by creationTimestamp, then alphabetically by "{namespace}/{name}" (the
// text: "a-b/x" comes before "a/y"). Objects without one (kept by a
// tcpshift that did not stamp them) are the oldest.
func olderFirst(a, b *Object) int {
	return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name))
}
