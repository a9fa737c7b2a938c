package maps

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/state"
)

// ObjectKey names a stored input object: kind (Group/Kind), namespace, name.
type ObjectKey struct {
	Kind, Namespace, Name string
}

// StoredObject is an input object kept with the namespace's state, as text:
// the maps know nothing of what it says.
type StoredObject struct {
	Key  ObjectKey
	Text []byte
}

// Limits of the objects map.
var (
	MaxObjectText = len(bpf.TcpshiftObject{}.Text)
	maxKind       = len(bpf.TcpshiftObjectKey{}.Kind) - 1
	maxNamespace  = len(bpf.TcpshiftObjectKey{}.Namespace) - 1
	maxObjectName = len(bpf.TcpshiftObjectKey{}.Name) - 1
)

// CheckObject says why an object cannot be stored, or nil.
func CheckObject(o StoredObject) error {
	switch {
	case len(o.Key.Kind) > maxKind:
		return fmt.Errorf("kind %q is longer than %d bytes", o.Key.Kind, maxKind)
	case len(o.Key.Namespace) > maxNamespace:
		return fmt.Errorf("namespace %q is longer than %d bytes", o.Key.Namespace, maxNamespace)
	case len(o.Key.Name) > maxObjectName:
		return fmt.Errorf("name %q is longer than %d bytes", o.Key.Name, maxObjectName)
	case len(o.Text) > MaxObjectText:
		return fmt.Errorf("%d bytes of YAML, at most %d can be kept", len(o.Text), MaxObjectText)
	}
	return nil
}

func objectKey(k ObjectKey) bpf.TcpshiftObjectKey {
	var v bpf.TcpshiftObjectKey
	putString(v.Kind[:], k.Kind)
	putString(v.Namespace[:], k.Namespace)
	putString(v.Name[:], k.Name)
	return v
}

// Objects returns every stored object, sorted by kind, namespace and name.
func (s *Set) Objects() ([]StoredObject, error) {
	if s.Stored == nil {
		return nil, nil
	}
	var (
		k   bpf.TcpshiftObjectKey
		v   bpf.TcpshiftObject
		out []StoredObject
	)
	it := s.raw().Iterate(bpf.TcpshiftMapObjects)
	for it.Next(&k, &v) {
		text := make([]byte, min(int(v.Len), len(v.Text)))
		for i := range text {
			text[i] = byte(v.Text[i])
		}
		out = append(out, StoredObject{
			Key:  ObjectKey{Kind: getString(k.Kind[:]), Namespace: getString(k.Namespace[:]), Name: getString(k.Name[:])},
			Text: text,
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read stored objects: %w", err)
	}
	slices.SortFunc(out, func(a, b StoredObject) int {
		return cmp.Or(cmp.Compare(a.Key.Kind, b.Key.Kind), cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
	return out, nil
}

// PutObject stores (or replaces) an object, journaled.
func (s *Set) PutObject(o StoredObject) error {
	if err := CheckObject(o); err != nil {
		return err
	}
	var v bpf.TcpshiftObject
	v.Len = uint32(len(o.Text))
	for i, b := range o.Text {
		v.Text[i] = int8(b)
	}
	if err := s.put(s.Stored, objectKey(o.Key), &v); err != nil {
		return fmt.Errorf("store %s %s/%s: %w", o.Key.Kind, o.Key.Namespace, o.Key.Name, err)
	}
	return nil
}

// DeleteObject removes a stored object, journaled; a missing one is no error.
func (s *Set) DeleteObject(k ObjectKey) error {
	if err := s.del(s.Stored, objectKey(k)); err != nil && !errors.Is(err, state.ErrNotExist) {
		return fmt.Errorf("delete %s %s/%s: %w", k.Kind, k.Namespace, k.Name, err)
	}
	return nil
}
