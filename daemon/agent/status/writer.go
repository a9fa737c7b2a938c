package status

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/tcpshift/tcpshift/config/istio"
)

// GatewayClasses is the resource the writer lists classes from when the
// agent's informer does not hold them (Options.Classes).
var GatewayClasses = schema.GroupVersionResource{Group: gatewayGroup, Version: "v1", Resource: "gatewayclasses"}

// Options are the writer's clients and settings.
type Options struct {
	Dynamic  dynamic.Interface
	Kube     kubernetes.Interface // for the Lease
	Recorder record.EventRecorder
	// Objects lists the objects as the agent's informers hold them.
	Objects func() []*Object
	// Classes lists the GatewayClasses as the agent's informer holds
	// them, so a class created later counts at once; nil: the writer
	// lists them at a term's start and every Resync.
	Classes func() []*GatewayClass
	// Resources maps an object's group/kind to the resource it is served at.
	Resources map[string]schema.GroupVersionResource
	Identity  string // this agent (its node)
	// The Lease: namespace, and how long a leader holds it unrenewed.
	LeaseNamespace string
	LeaseDuration  time.Duration
	RenewDeadline  time.Duration
	RetryPeriod    time.Duration
	// Resync writes again this often with the last input (a GatewayClass
	// created later, a status someone else overwrote).
	Resync time.Duration
	Log    *slog.Logger
	now    func() time.Time
}

// Writer writes status while it holds the Lease; it only takes the
// agent's results otherwise.
type Writer struct {
	o      Options
	mu     sync.Mutex
	passMu sync.Mutex // one pass at a time, across terms
	latest *Input
	kick   chan struct{}
	// written is what this term wrote, by object, without times: the
	// informers may show an object before our write for a moment, and
	// the same status is not written twice for it.
	written map[string]string
	// evented is the message of the last Event on each object left out.
	evented map[string]string
	// classes is the last list of GatewayClasses (nil: none yet); relist
	// asks for a new one.
	classes []*GatewayClass
	relist  bool
	// nodes are the nodes' addresses, listed with the classes.
	nodes []string
}

// New makes a writer; Run makes it contend for the Lease and write.
func New(o Options) *Writer {
	if o.now == nil {
		o.now = time.Now
	}
	return &Writer{o: o, kick: make(chan struct{}, 1), written: map[string]string{}, evented: map[string]string{}}
}

// Offer hands the writer an applied derivation's outcome. It never blocks:
// a newer one replaces one not written yet.
func (w *Writer) Offer(in Input) {
	w.mu.Lock()
	w.latest = &in
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Writer) pending() *Input {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest
}

// Pass writes the status in differs from what the objects show and the
// Events not sent yet; it returns how many statuses it wrote.
func (w *Writer) Pass(ctx context.Context, in Input) int {
	w.passMu.Lock()
	defer w.passMu.Unlock()
	if w.classes == nil || w.relist {
		w.listNodes(ctx)
	}
	w.readClasses(ctx)
	classes := w.classes
	objs := w.o.Objects()
	n := 0
	start := time.Now()
	for _, wt := range compute(in, objs, classes, w.nodes, w.o.now()) {
		if w.write(ctx, wt) {
			n++
		}
	}
	w.events(in, objs)
	if n > 0 {
		w.o.Log.Debug("status written", "objects", n, "in", time.Since(start).Round(time.Millisecond))
	}
	return n
}

// readClasses takes the GatewayClasses from the agent's informer, or
// lists them at a term's start and every Resync, not at every pass.
func (w *Writer) readClasses(ctx context.Context) {
	if w.o.Classes != nil {
		w.classes, w.relist = append([]*GatewayClass{}, w.o.Classes()...), false
		return
	}
	if w.classes == nil || w.relist {
		w.listClasses(ctx)
	}
}

// listClasses lists the GatewayClasses from the API server.
func (w *Writer) listClasses(ctx context.Context) {
	list, err := w.o.Dynamic.Resource(GatewayClasses).List(ctx, metav1.ListOptions{})
	if err != nil {
		w.o.Log.Debug("gatewayclasses not listed; no Gateway status until the next resync", "err", err)
		if w.classes == nil {
			w.classes = []*GatewayClass{}
		}
		w.relist = false
		return
	}
	w.classes, w.relist = []*GatewayClass{}, false
	for _, u := range list.Items {
		ctl, _, _ := unstructuredString(u.Object, "spec", "controllerName")
		st, _ := u.Object["status"].(map[string]any)
		w.classes = append(w.classes, &GatewayClass{Name: u.GetName(), Controller: ctl, Generation: u.GetGeneration(), Status: st})
	}
}

// write patches one object's status subresource when it differs.
func (w *Writer) write(ctx context.Context, wt want) bool {
	var current map[string]any
	var gvr schema.GroupVersionResource
	var ns, name, id string
	if wt.class != nil {
		current, gvr, name = wt.class.Status, GatewayClasses, wt.class.Name
		id = "GatewayClass " + name
	} else {
		var ok bool
		if gvr, ok = w.o.Resources[wt.obj.Key.Kind]; !ok {
			return false
		}
		current, ns, name, id = wt.obj.Status, wt.obj.Key.Namespace, wt.obj.Key.Name, wt.obj.Key.String()
	}
	if sameStatus(current, wt.status) {
		return false
	}
	digest := fmt.Sprint(normal(withoutTimes(wt.status)))
	if w.written[id] == digest {
		return false
	}
	patch, err := json.Marshal(map[string]any{"status": wt.status})
	if err != nil {
		w.o.Log.Warn("status not written", "object", id, "err", err)
		return false
	}
	var ri dynamic.ResourceInterface = w.o.Dynamic.Resource(gvr)
	if ns != "" {
		ri = w.o.Dynamic.Resource(gvr).Namespace(ns)
	}
	if _, err := ri.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}, "status"); err != nil {
		w.o.Log.Warn("status not written", "object", id, "err", err)
		return false
	}
	w.written[id] = digest
	return true
}

// events sends an Event on each object left out, once per reason.
func (w *Writer) events(in Input, objs []*Object) {
	byKey := map[istio.Key]*Object{}
	for _, o := range objs {
		byKey[o.Key] = o
	}
	out := map[string]bool{}
	for _, r := range in.Rejected {
		o := byKey[r.Key]
		if o == nil || w.o.Recorder == nil {
			continue
		}
		id, msg := r.Key.String(), r.Err.Error()
		out[id] = true
		if w.evented[id] == msg {
			continue
		}
		w.evented[id] = msg
		_, kind, _ := cutKind(r.Key.Kind)
		ref := &corev1.ObjectReference{APIVersion: o.APIVersion, Kind: kind, Namespace: r.Key.Namespace, Name: r.Key.Name, UID: types.UID(o.UID)}
		w.o.Recorder.Event(ref, corev1.EventTypeWarning, messageNotApply, "tcpshift left it out: "+msg)
	}
	for id := range w.evented {
		if !out[id] {
			delete(w.evented, id) // taken now: a later refusal says so again
		}
	}
}
