package loader

import (
	"errors"
	"slices"
	"strings"
	"testing"

	tsmaps "github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/state"
)

// stepLog is the writes a write made in each of its steps, as "kind map".
type stepLog struct {
	order []string            // the steps, as they began
	ops   map[string][]string // per step
}

// traced applies svcs, recording which maps each step of the write wrote.
func (f *fake) traced(opts ApplyOptions, svcs ...svc) (*stepLog, error) {
	f.t.Helper()
	log := &stepLog{ops: map[string][]string{}}
	step := "plan"
	f.mem.Log = nil
	mark := 0
	flush := func() {
		for _, op := range f.mem.Log[mark:] {
			log.ops[step] = append(log.ops[step], op.Kind+" "+op.Map)
		}
		mark = len(f.mem.Log)
	}
	f.tg.traceWrite = func(s string) {
		flush()
		step = s
		log.order = append(log.order, s)
	}
	defer func() { f.tg.traceWrite = nil }()
	_, err := f.apply(svcs, opts)
	flush()
	step = "end"
	return log, err
}

// maps returns the maps a step wrote, each once, in the order first written.
func (l *stepLog) maps(step string) []string {
	var out []string
	for _, op := range l.ops[step] {
		m := op[strings.IndexByte(op, ' ')+1:]
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// count is how many writes of one kind ("put endpoints") a step made.
func (l *stepLog) count(step, op string) int {
	n := 0
	for _, o := range l.ops[step] {
		if o == op {
			n++
		}
	}
	return n
}

// A write's steps come in one order: records, widen, services, narrow,
// release; each writes only its own maps, and the write sequence turns
// odd at the first write and even at the last.
func TestWriteStepsInOrder(t *testing.T) {
	f := newFake(t)
	f.mustApply(connect("gone", "192.0.2.1:80", "10.0.0.1:80", "10.0.0.2:80"), connect("kept", "192.0.2.3:80", "10.0.0.5:80"))
	fresh := connect("fresh", "192.0.2.2:81", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.6:80")
	fresh.route = true
	log, err := f.traced(ApplyOptions{}, fresh, connect("kept", "192.0.2.3:80", "10.0.0.5:80"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"records", "widen", "services", "narrow", "release"}; !slices.Equal(log.order, want) {
		t.Fatalf("steps %v, want %v", log.order, want)
	}
	// records: the owner is already this namespace's, nothing to write;
	// the sequence turns odd at widen's first write.
	if got := log.ops["records"]; len(got) != 0 {
		t.Errorf("records wrote %v, want nothing", got)
	}
	// widen lets frontend ports through (whatever maps filter them) and
	// prunes listeners: nothing of a service is written yet.
	serviceMaps := []string{"owners", "endpoints", "endpoint_health", "lists", "tables", "table_versions", "table_swaps",
		"services", "endpoint_places", "service_files", "frontends", "sockets", "shifts", "objects"}
	if got := log.maps("widen"); got[0] != "owners" || slices.ContainsFunc(got[1:], func(m string) bool { return slices.Contains(serviceMaps, m) }) {
		t.Errorf("widen wrote %v, want the sequence, then frontend ports or listeners only", got)
	}
	if !slices.Equal(f.routes.log, []string{"add 192.0.2.2"}) {
		t.Errorf("routes %v, want fresh's added", f.routes.log)
	}
	// services: fresh only (kept is unchanged), its three endpoints, one
	// table swapped between two bumps of its version, frontend last.
	svcOps := log.ops["services"]
	want := []string{"put endpoints", "put endpoint_health", "put endpoints", "put endpoint_health", "put endpoints", "put endpoint_health",
		"batch lists", "put table_versions", "swap tables", "put table_versions", "put table_swaps",
		"put services", "put endpoint_places", "put endpoint_places", "put endpoint_places", "put service_files", "put frontends"}
	if !slices.Equal(svcOps, want) {
		t.Errorf("services wrote\n%v\nwant\n%v", svcOps, want)
	}
	// narrow: gone's frontend is deleted; release: its table, description
	// and two endpoint ids, and the sequence turns even last.
	if log.count("narrow", "delete frontends") != 1 {
		t.Errorf("narrow wrote %v, want gone's frontend deleted once", log.ops["narrow"])
	}
	rel := log.ops["release"]
	for op, n := range map[string]int{"swap tables": 1, "delete services": 1, "delete service_files": 1, "put service_counts": 1,
		"put endpoint_counts": 2, "put endpoints": 2, "put endpoint_places": 2, "put endpoint_health": 2} {
		if got := log.count("release", op); got != n {
			t.Errorf("release: %d × %q, want %d (%v)", got, op, n, rel)
		}
	}
	if last := rel[len(rel)-1]; last != "put owners" {
		t.Errorf("the last write is %q, want the write sequence", last)
	}
	if f.seq() != 4 {
		t.Errorf("write sequence %d after two writes, want 4", f.seq())
	}
	f.requireEvenVersions()
}

// A write's faults, injected at each of its writes in turn, leave every map
// exactly as it was (the very same tables too), the routes as they were,
// the write sequence moved on by two and even, and no table held open.
func TestWriteRollsBackAtEveryWrite(t *testing.T) {
	base := newFake(t)
	base.mustApply(connect("gone", "192.0.2.1:80", "10.0.0.1:80", "10.0.0.2:80"), connect("moved", "192.0.2.3:80", "10.0.0.5:80"),
		svc{name: "routed", front: "192.0.2.9:80", mode: tsmaps.ModeConnect, route: true, subsets: []sub{{"v1", 1, []string{"10.0.0.9:80"}}}})
	change := []svc{
		{name: "fresh", front: "192.0.2.2:81", mode: tsmaps.ModeConnect, route: true, subsets: []sub{{"v1", 3, []string{"10.0.0.3:80"}}, {"v2", 1, []string{"10.0.0.4:80"}}}},
		connect("moved", "192.0.2.3:80", "10.0.0.7:80", "10.0.0.8:80"),
		lookup("sock", "192.0.2.4:80", "127.0.0.1:9001"),
	}
	probe := base.clone()
	if _, err := probe.apply(change, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	writes := probe.mem.Writes()
	if writes < 40 {
		t.Fatalf("the change makes %d writes; a change this size makes more", writes)
	}
	before := base.dump()
	for n := 1; n <= writes; n++ {
		f := base.clone()
		seq := f.seq()
		f.mem.Fault = failWrite(n)
		_, err := f.apply(change, ApplyOptions{})
		if !errors.Is(err, errInjected) {
			t.Fatalf("write %d failed: %v, want the injected fault", n, err)
		}
		if strings.Contains(err.Error(), "rolling back") {
			t.Fatalf("write %d: the rollback failed: %v", n, err)
		}
		if d := diffLines(before, f.dump()); len(d) > 0 {
			t.Fatalf("after write %d failed the state differs:\n%s", n, strings.Join(d, "\n"))
		}
		// The first write is the sequence turning odd: failed, nothing
		// was written and the sequence stays.
		wantSeq := seq + 2
		if n == 1 {
			wantSeq = seq
		}
		if got := f.seq(); got != wantSeq {
			t.Fatalf("after write %d failed the sequence is %d, want %d", n, got, wantSeq)
		}
		f.requireEvenVersions()
		if f.mem.OpenInners() != 0 {
			t.Fatalf("after write %d failed %d tables are held open", n, f.mem.OpenInners())
		}
	}
	t.Logf("%d writes, each failed once, each rolled back", writes)
}

// Local routes a failed write changed are undone in reverse: the routes it
// deleted come back after the ones it added are gone.
func TestWriteUndoesRoutesInReverse(t *testing.T) {
	base := newFake(t)
	base.mustApply(routed("old1", "192.0.2.1:80"), routed("old2", "192.0.2.2:80"))
	f := base.clone()
	f.mem.Fault = func(op state.Op) error {
		if op.Kind == "swap" && op.Map == "tables" && strings.HasPrefix(op.Key, "00000000") {
			return errInjected // old1's table deleted, in release
		}
		return nil
	}
	_, err := f.apply([]svc{routed("new1", "192.0.2.3:80"), routed("new2", "192.0.2.4:80")}, ApplyOptions{})
	if !errors.Is(err, errInjected) {
		t.Fatalf("apply: %v, want the injected fault", err)
	}
	want := []string{"add 192.0.2.3", "add 192.0.2.4", "del 192.0.2.1", "del 192.0.2.2", // the write
		"add 192.0.2.2", "add 192.0.2.1", "del 192.0.2.4", "del 192.0.2.3"} // its undoing
	if !slices.Equal(f.routes.log, want) {
		t.Fatalf("routes changed\n%v\nwant\n%v", f.routes.log, want)
	}
	requireAsBefore(t, base, f, "after the routes were undone")
}

// A route that cannot be added after another was: the first is deleted
// again, the maps are as before (test/safety_test.go's rollback route).
func TestWriteSecondRouteFails(t *testing.T) {
	base := newFake(t)
	base.mustApply(connect("echo", "192.0.2.1:80", "10.0.0.1:80"))
	f := base.clone()
	f.routes.fail = func(op string) error {
		if op == "add 2001:db8::10" {
			return errors.New("no IPv6 on lo")
		}
		return nil
	}
	four, six := routed("four", "192.0.2.20:9000"), routed("six", "[2001:db8::10]:9000")
	_, err := f.apply([]svc{connect("echo", "192.0.2.1:80", "10.0.0.1:80"), four, six}, ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "frontend address of service six: no IPv6 on lo") {
		t.Fatalf("apply: %v, want six's route refused", err)
	}
	if !slices.Equal(f.routes.log, []string{"add 192.0.2.20", "del 192.0.2.20"}) {
		t.Fatalf("routes %v, want four's added and deleted again", f.routes.log)
	}
	requireAsBefore(t, base, f, "after six's route was refused")
}

// A commit that fails (the write sequence cannot turn even) rolls the
// whole write back.
func TestWriteCommitFails(t *testing.T) {
	base := newFake(t)
	base.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80"))
	probe := base.clone()
	if _, err := probe.apply([]svc{connect("a", "192.0.2.1:80", "10.0.0.2:80")}, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	last := probe.mem.Log[len(probe.mem.Log)-1]
	if last.Map != "owners" {
		t.Fatalf("the last write is %v, want the write sequence's", last)
	}
	f := base.clone()
	f.mem.Fault = failWrite(probe.mem.Writes())
	_, err := f.apply([]svc{connect("a", "192.0.2.1:80", "10.0.0.2:80")}, ApplyOptions{})
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "commit: ") {
		t.Fatalf("apply: %v, want the commit's fault", err)
	}
	requireAsBefore(t, base, f, "after a failed commit")
}

// A rollback step that fails is reported with the write's error, and
// every other step still runs: only that entry differs after.
func TestWriteFailedRollbackStepReported(t *testing.T) {
	base := newFake(t)
	base.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80"))
	f := base.clone()
	var putDesc int
	f.mem.Fault = func(op state.Op) error {
		switch {
		case op.Map == "frontends" && op.Kind == "put":
			return errInjected // the write fails at a's frontend
		case op.Map == "services" && op.Kind == "put":
			if putDesc++; putDesc == 2 { // the description put back
				return errors.New("rollback step refused")
			}
		}
		return nil
	}
	_, err := f.apply([]svc{{name: "a", front: "192.0.2.1:80", mode: tsmaps.ModeConnect, subsets: []sub{{"v1", 5, []string{"10.0.0.1:80"}}}}}, ApplyOptions{})
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "and rolling back: roll back: map services: ") || !strings.Contains(err.Error(), "rollback step refused") {
		t.Fatalf("apply: %v, want the fault and the failed rollback step", err)
	}
	d := diffLines(base.dump(), f.dump())
	if len(d) != 2 || !strings.HasPrefix(d[0], "-services[") || !strings.HasPrefix(d[1], "+services[") {
		t.Fatalf("after a failed rollback step the state differs in\n%s\nwant a's description only", strings.Join(d, "\n"))
	}
}
