package plan_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/config/kube"
	"github.com/tcpshift/tcpshift/maps"
)

// options are how a step applies: as `tcpshift apply` by default, as the
// agent for a kube.yaml, as `tcpshift run` with "run".
type options struct {
	wait          bool
	keepOverrides bool
	keepSet       bool // keep-overrides or no-keep-overrides was given
	exact         bool // the inputs are the whole state (tcpshift run's files)
	limits        maps.Capacity
	kube          kube.Options
}

// readOptions reads a step's options file: one setting a line.
func readOptions(s *step) (options, error) {
	limits, err := maps.Capacities()
	o := options{limits: limits}
	for _, line := range strings.Split(s.files["options"], "\n") {
		f := strings.Fields(line)
		switch {
		case err != nil || len(f) == 0:
		case f[0] == "run":
			o.exact, o.wait, o.keepOverrides, o.keepSet = true, true, true, true
		case f[0] == "wait":
			o.wait = true
		case f[0] == "keep-overrides", f[0] == "no-keep-overrides":
			o.keepOverrides, o.keepSet = f[0] == "keep-overrides", true
		case f[0] == "limits" && len(f) == 3:
			o.limits.Services, err = strconv.Atoi(f[1])
			if err == nil {
				o.limits.Endpoints, err = strconv.Atoi(f[2])
			}
		case f[0] == "node" && len(f) == 2:
			o.kube.Node = f[1]
		case f[0] == "only-routed":
			o.kube.OnlyRouted = true
		default:
			err = fmt.Errorf("options: unknown setting %q (run, wait, keep-overrides, no-keep-overrides, limits SERVICES ENDPOINTS, node NAME, only-routed)", line)
		}
	}
	return o, err
}

// overrideState makes what set-weight and health checks did to the state
// in force before the step: "SERVICE SUBSET=WEIGHT..." lines in
// set-weight, "SERVICE ENDPOINT up|down|unchecked" lines in health.
func (w *world) overrideState(s *step) error {
	for _, line := range strings.Split(s.files["set-weight"], "\n") {
		f := strings.Fields(line)
		for _, sw := range f[min(1, len(f)):] {
			svc, _ := w.inForce(f[0], "")
			sub, weight, _ := strings.Cut(sw, "=")
			n, err := strconv.ParseUint(weight, 10, 64)
			if svc == nil || svc.Subset(sub) < 0 || err != nil {
				return fmt.Errorf("set-weight %q: no such service and subset in force, or a bad weight", line)
			}
			svc.Subsets[svc.Subset(sub)].Weight = n
		}
	}
	states := map[string]maps.Health{"up": maps.HealthUp, "down": maps.HealthDown, "unchecked": maps.HealthUnchecked}
	for _, line := range strings.Split(s.files["health"], "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		_, ep := w.inForce(f[0], f[min(1, len(f)-1)])
		h, ok := states[f[len(f)-1]]
		if len(f) != 3 || ep == nil || !ok {
			return fmt.Errorf("health %q: want SERVICE ENDPOINT up|down|unchecked of a service in force", line)
		}
		ep.Health = h
	}
	return nil
}

// storedObject is an object kept with the state, as text (maps.StoredObject).
type storedObject struct {
	key  istio.Key
	text []byte
}

// built is what a step's inputs make, as inputs.Change.Build or the
// agent's derivation make it: the config, the objects behind each
// service, and the route config and stored objects in force after it.
type built struct {
	cfg      *config.Config
	origins  map[string]string
	notes    []string
	rejected []istio.Rejection
	native   *config.Config
	stored   []storedObject
}

// inputs reads a step's inputs: a kube.yaml (the agent's snapshot), a
// delete file (keys, as tcpshift delete), or route configs and objects
// (any other .yaml, as tcpshift apply -f each).
func (w *world) inputs(s *step, o *options) (*built, error) {
	var files []string
	for _, name := range s.order {
		switch {
		case name == "kube.yaml":
			o.wait, o.keepOverrides = true, o.keepOverrides || !o.keepSet
			return w.kube(name, o)
		case name == "delete":
			o.keepOverrides = o.keepOverrides || !o.keepSet
			return w.delete(s.files[name])
		case filepath.Ext(name) == ".yaml":
			files = append(files, name)
		}
	}
	if len(files) == 0 {
		w.t.Fatalf("step %s: no input (kube.yaml, delete or a .yaml to apply)", s.name)
	}
	in, err := istio.Load(files, nil)
	if err != nil {
		return nil, err
	}
	if !o.keepSet {
		// Objects alone keep set-weight's overrides; a route config wins.
		o.keepOverrides = in.Native == nil
	}
	native := w.native
	if in.Native != nil || o.exact {
		native = in.Native
	}
	return w.derive(native, in.Objects, nil, o.exact)
}

// delete removes stored objects: "KIND NAMESPACE/NAME" lines, KIND as
// tcpshift get names it.
func (w *world) delete(text string) (*built, error) {
	var keys []istio.Key
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		kind, name, _ := strings.Cut(strings.TrimSpace(line), " ")
		ns, name, _ := strings.Cut(name, "/")
		k, err := istio.KindByName(kind)
		if err != nil {
			w.t.Fatalf("delete %q: %v", line, err)
		}
		keys = append(keys, istio.Key{Kind: k, Namespace: ns, Name: name})
	}
	return w.derive(w.native, nil, keys, false)
}

// derive joins the stored objects (read back as the loader keeps them),
// the change and the route config, as inputs.Change.Build does.
func (w *world) derive(native *config.Config, put []*istio.Object, del []istio.Key, exact bool) (*built, error) {
	var objs []*istio.Object
	if !exact {
		for _, s := range w.stored {
			o, err := istio.DecodeStored(s.key, s.text)
			if err != nil {
				return nil, err
			}
			objs = append(objs, o)
		}
	}
	for _, k := range del {
		n := len(objs)
		objs = deleteKey(objs, k)
		if len(objs) == n {
			return nil, fmt.Errorf("%s is not applied: nothing deleted", k)
		}
	}
	for _, o := range put {
		// As kubectl apply: an object given again is replaced in place.
		if i := slices.IndexFunc(objs, func(x *istio.Object) bool { return x.Key == o.Key }); i >= 0 {
			objs[i] = o
		} else {
			objs = append(objs, o)
		}
	}
	res, err := istio.Derive(objs)
	if err != nil {
		return nil, err
	}
	cfg, err := istio.Combine(native, res)
	if err != nil {
		return nil, err
	}
	b := &built{cfg: cfg, origins: map[string]string{}, notes: res.Notes, native: native}
	for name := range res.Origins {
		b.origins[name] = res.OriginText(name)
	}
	for _, o := range objs {
		b.stored = append(b.stored, storedObject{o.Key, o.Text})
	}
	return b, nil
}

// deleteKey drops the object of key k, keeping the others' order.
func deleteKey(objs []*istio.Object, k istio.Key) []*istio.Object {
	out := objs[:0:0]
	for _, o := range objs {
		if o.Key != k {
			out = append(out, o)
		}
	}
	return out
}
