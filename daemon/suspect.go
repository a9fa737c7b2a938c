package daemon

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
)

// suspectHold is how long a suspect file (one that would drop a service,
// a subset or a route in force) must stay unchanged before it is applied;
// SIGHUP applies it at once. It is longer than a stalled writer's pause the
// daemon is meant to ride out (a file written in two writes 1s apart).
const suspectHold = 3 * time.Second

// errHeld stops an apply whose file is suspect, before anything changes.
var errHeld = errors.New("held: the file would drop what is in force")

// shape is what a file cut short loses: per service, its subsets with their
// weights and the subsets its route names.
type shape struct {
	services map[string]*serviceShape
	files    map[string]bool // every file read
}

type serviceShape struct {
	files   []string          // where it comes from
	subsets map[string]uint64 // name → weight
	routed  map[string]bool   // subsets with a route entry
}

// shapeOf is cfg's shape, read from l: a tcpshift service's route entries
// are read from its file (a weight 0 written out is a route; one cut off
// is not), a derived service's are its subsets with weight.
func shapeOf(l *loaded, cfg *config.Config) *shape {
	s := &shape{services: map[string]*serviceShape{}, files: map[string]bool{}}
	for _, f := range l.in.Files {
		s.files[f] = true
	}
	var routes map[string]map[string]bool
	native := map[string]bool{}
	if n := l.in.Native; n != nil {
		routes = routeEntries(n.Path, l.files[n.Path])
		for _, svc := range n.Services {
			native[svc.Name] = true
		}
	}
	origins := objectFiles(l.in.Objects)
	for _, svc := range cfg.Services {
		ss := &serviceShape{subsets: map[string]uint64{}, routed: map[string]bool{}}
		for _, sub := range svc.Subsets {
			ss.subsets[sub.Name] = sub.Weight
			if sub.Weight > 0 {
				ss.routed[sub.Name] = true
			}
		}
		if native[svc.Name] {
			ss.files = []string{l.in.Native.Path}
			if r, ok := routes[svc.Name]; ok {
				ss.routed = r
			}
		} else {
			ss.files = origins[svc.Name]
		}
		s.services[svc.Name] = ss
	}
	return s
}

// objectFiles names, per derived service, the files of the objects that
// make it.
func objectFiles(objs []*istio.Object) map[string][]string {
	if len(objs) == 0 {
		return nil
	}
	res, err := istio.Derive(objs)
	if err != nil {
		return nil // the apply says what is wrong
	}
	path := map[istio.Key]string{}
	for _, o := range objs {
		path[o.Key] = o.Path
	}
	out := map[string][]string{}
	for name, keys := range res.Origins {
		for _, k := range keys {
			if p := path[k]; p != "" && !slices.Contains(out[name], p) {
				out[name] = append(out[name], p)
			}
		}
	}
	return out
}

// routeEntries reads, per service of the route config in data, the subsets
// its route entries name.
func routeEntries(path string, data []byte) map[string]map[string]bool {
	docs, err := istio.Decode(path, data)
	if err != nil {
		return nil
	}
	out := map[string]map[string]bool{}
	for _, d := range docs {
		if d.Native == nil || len(d.Native.Content) == 0 {
			continue
		}
		svcs := field(d.Native.Content[0], "services")
		if svcs == nil || svcs.Kind != yaml.SequenceNode {
			continue
		}
		for _, svc := range svcs.Content {
			name := field(svc, "name")
			if name == nil || name.Kind != yaml.ScalarNode {
				continue
			}
			routed := map[string]bool{}
			if route := field(svc, "route"); route != nil && route.Kind == yaml.SequenceNode {
				for _, e := range route.Content {
					if sub := field(e, "subset"); sub != nil && sub.Kind == yaml.ScalarNode {
						routed[sub.Value] = true
					}
				}
			}
			out[name.Value] = routed
		}
	}
	return out
}

// field is the value of key in mapping n, aliases followed; nil if none.
func field(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); k != nil && k.Value == key {
			return deref(n.Content[i+1])
		}
	}
	return nil
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// dropped is what a suspect file would take from one service.
type dropped struct {
	service string
	file    string
	what    []string
}

// drops lists what now would drop of old, service by service: a service
// gone, a subset gone, a route with weight gone from a subset still there.
// What a service loses when a file it came from is gone (removed, or
// renamed) was removed, not cut off.
func (old *shape) drops(now *shape) []dropped {
	var out []dropped
	for _, name := range slices.Sorted(maps.Keys(old.services)) {
		o := old.services[name]
		if slices.ContainsFunc(o.files, func(f string) bool { return !now.files[f] }) {
			continue
		}
		n, ok := now.services[name]
		if !ok {
			out = append(out, dropped{name, strings.Join(o.files, ", "), []string{"the service (" + o.describe() + ")"}})
			continue
		}
		var what []string
		for _, sub := range slices.Sorted(maps.Keys(o.subsets)) {
			w := o.subsets[sub]
			switch _, kept := n.subsets[sub]; {
			case !kept && w > 0:
				what = append(what, fmt.Sprintf("subset %s (weight %d)", sub, w))
			case !kept:
				what = append(what, "subset "+sub)
			case w > 0 && o.routed[sub] && !n.routed[sub]:
				what = append(what, fmt.Sprintf("the route to %s (weight %d)", sub, w))
			}
		}
		if len(what) > 0 {
			out = append(out, dropped{name, strings.Join(n.files, ", "), what})
		}
	}
	return out
}

func (s *serviceShape) describe() string {
	var subs []string
	for _, sub := range slices.Sorted(maps.Keys(s.subsets)) {
		subs = append(subs, fmt.Sprintf("%s=%d", sub, s.subsets[sub]))
	}
	return "subsets " + strings.Join(subs, " ")
}

// held is a suspect content kept back, and since when it is the files'.
type held struct {
	data  []byte
	since time.Time
}
