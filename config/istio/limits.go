package istio

import (
	"fmt"

	"github.com/tcpshift/tcpshift/config"
)

// The limits of one object as the objects map keeps it (struct object_key
// and struct object in bpf/tcpshift.h): its namespace and its YAML.
const (
	MaxNamespaceLen = 63
	MaxObjectText   = 65528
)

// checkStorable refuses an object the objects map cannot keep, at its
// file and line.
func checkStorable(o *Object) error {
	kind := kindName(o.Kind)
	switch {
	case len(o.Namespace) > MaxNamespaceLen:
		return &config.Error{Path: o.Path, Line: o.Line, Field: kind + ".metadata.namespace", Msg: fmt.Sprintf("%q is %d bytes long: at most %d", o.Namespace, len(o.Namespace), MaxNamespaceLen)}
	case len(o.Text) > MaxObjectText:
		return &config.Error{Path: o.Path, Line: o.Line, Field: o.Key.String(), Msg: fmt.Sprintf("%d bytes as YAML: at most %d per object can be kept", len(o.Text), MaxObjectText)}
	}
	return nil
}

// MaxObjects is how many objects (Istio's and the Gateway API's, every
// kind together) a network namespace keeps: the size of the objects map
// (MAX_OBJECTS in bpf/tcpshift.h).
const MaxObjects = 1024

// tooManyObjects refuses o, the object past MaxObjects; kept says that
// the objects applied before count with those given.
func tooManyObjects(o *Object, kept bool) error {
	which := "of the input"
	if kept {
		which = "with those applied before"
	}
	msg := fmt.Sprintf("object %d %s: at most %d Istio and Gateway API objects are kept per network namespace", MaxObjects+1, which, MaxObjects)
	if kept {
		msg += ": delete some first"
	}
	return &config.Error{Path: o.Path, Line: o.Line, Field: o.Key.String(), Msg: msg}
}

// CheckObjects refuses a set of objects to keep (those applied before and
// those an apply adds, later ones with an earlier one's key replacing it)
// that is larger than MaxObjects, naming the first object past the limit
// with its file and line. Stored objects come first, so the object named
// is one the apply adds.
func CheckObjects(objs []*Object) error {
	seen := make(map[Key]bool, len(objs))
	for _, o := range objs {
		if seen[o.Key] {
			continue
		}
		seen[o.Key] = true
		if len(seen) > MaxObjects {
			return tooManyObjects(o, true)
		}
	}
	return nil
}
