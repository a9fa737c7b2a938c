package loader

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	tsmaps "github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/state"
)

// failAt fails the first write of kind to map m whose key starts with key.
func failAt(kind, m, key string) func(state.Op) error {
	done := false
	return func(op state.Op) error {
		if !done && op.Kind == kind && op.Map == m && strings.HasPrefix(op.Key, key) {
			done = true
			return errInjected
		}
		return nil
	}
}

// requireAsBefore fails unless f's maps and routes are base's, its write
// sequence moved on by two and every table count is even.
func requireAsBefore(t *testing.T, base, f *fake, what string) {
	t.Helper()
	if d := diffLines(base.dump(), f.dump()); len(d) > 0 {
		t.Fatalf("%s: the state differs:\n%s", what, strings.Join(d, "\n"))
	}
	if f.seq() != base.seq()+2 {
		t.Fatalf("%s: write sequence %d, want %d", what, f.seq(), base.seq()+2)
	}
	f.requireEvenVersions()
	if n := f.mem.OpenInners(); n != 0 {
		t.Fatalf("%s: %d tables still held", what, n)
	}
}

// A first apply that fails at any write leaves nothing: every map as
// empty as before, no route (test/safety_test.go's rollback from empty).
func TestWriteFromEmptyRollsBackToNothing(t *testing.T) {
	empty := newFake(t)
	change := []svc{lookup("fresh", "192.0.2.10:9000", "127.0.0.1:9004"), lookup("doomed", "127.0.0.100:9100", "127.0.0.1:9003"),
		routed("routed", "192.0.2.11:80")}
	probe := empty.clone()
	if _, err := probe.apply(change, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= probe.mem.Writes(); n++ {
		f := empty.clone()
		f.mem.Fault = failWrite(n)
		if _, err := f.apply(change, ApplyOptions{}); !errors.Is(err, errInjected) {
			t.Fatalf("write %d: %v, want the injected fault", n, err)
		}
		if d := diffLines(empty.dump(), f.dump()); len(d) > 0 {
			t.Fatalf("first apply failed at write %d left:\n%s", n, strings.Join(d, "\n"))
		}
	}
}

// A socket that cannot be registered after tables were swapped and a
// route added (a listener that closed between planning and writing): the
// old tables come back, the same ones, the route goes, and the sockets
// registered before it are dropped again (test/safety_test.go's rollback).
func TestWriteSocketRefusedMidway(t *testing.T) {
	base := newFake(t)
	base.mustApply(connect("tcp-echo", "127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"))
	echo := svc{name: "tcp-echo", front: "127.0.0.1:9000", mode: tsmaps.ModeConnect, subsets: []sub{{"v1", 50, []string{"127.0.0.1:9001"}}, {"v2", 50, []string{"127.0.0.1:9002"}}}}
	fresh := lookup("fresh", "192.0.2.10:9000", "127.0.0.1:9004")
	fresh.route = true // a lookup service whose frontend needs a route
	doomed := lookup("doomed", "127.0.0.100:9100", "127.0.0.1:9003")
	f := base.clone()
	d, err := f.delta([]svc{echo, fresh, doomed}, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	doomedID := d.plans[2].svc.Subsets[0].Endpoints[0].ID
	f.mem.Fault = failAt("put", "sockets", fmt.Sprintf("%02x", doomedID))
	err = f.tg.execute(f.set, d, ApplyOptions{})
	if !errors.Is(err, errInjected) {
		t.Fatalf("apply: %v, want doomed's socket refused", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "service doomed: register 127.0.0.1:9003 (pid 1 ") || !strings.Contains(msg, "fd 3; did it stop listening?)") {
		t.Fatalf("error %q does not name doomed's endpoint and its owner", err)
	}
	requireAsBefore(t, base, f, "after doomed's socket was refused")
	if !slices.Equal(f.routes.log, []string{"add 192.0.2.10", "del 192.0.2.10"}) {
		t.Fatalf("routes %v, want fresh's added and removed", f.routes.log)
	}
	// fresh's socket was registered, then dropped by the rollback.
	if !slices.ContainsFunc(f.mem.Log, func(op state.Op) bool { return op.Kind == "delete" && op.Map == "sockets" }) {
		t.Fatal("fresh's socket was not dropped again")
	}
}

// A change of more tables than one swap holds fails in its last group:
// every group before is put back, the tables held are all released
// (test/scale_test.go's rollback at scale, smaller).
func TestWriteRollsBackGroupsOfTables(t *testing.T) {
	n := tsmaps.TablesPerSwap + 10
	var svcs, changed []svc
	for i := range n {
		front := fmt.Sprintf("10.%d.%d.1:80", 1+i/250, i%250)
		svcs = append(svcs, connect(fmt.Sprintf("s%04d", i), front, fmt.Sprintf("10.200.%d.%d:80", i/250, i%250)))
		changed = append(changed, connect(fmt.Sprintf("s%04d", i), front, fmt.Sprintf("10.201.%d.%d:80", i/250, i%250)))
	}
	base := newFake(t)
	if _, err := base.apply(svcs, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	f := base.clone()
	swaps := 0
	f.mem.Fault = func(op state.Op) error {
		if op.Kind == "swap" {
			if swaps++; swaps == 2 {
				return errInjected // the second group
			}
		}
		return nil
	}
	if _, err := f.apply(changed, ApplyOptions{}); !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "swap 10 tables (services s1024...)") {
		t.Fatalf("apply: %v, want the second group's swap refused", err)
	}
	requireAsBefore(t, base, f, "after the second group failed")
	put := 0
	for _, op := range f.mem.Log {
		if op.Kind == "swap" {
			put++
		}
	}
	// The first group swapped in; the second refused; then the second's
	// undo (recorded even for a failed update: putting back tables that
	// were not replaced changes nothing) and the first's.
	if put != 3 {
		t.Fatalf("%d swaps made, want the first group's and two undoings", put)
	}
}

// manyServices is n connect-mode services, each its own frontend.
func manyServices(n int) []svc {
	var svcs []svc
	for i := range n {
		svcs = append(svcs, connect(fmt.Sprintf("s%05d", i), fmt.Sprintf("10.%d.%d.%d:80", i>>16, (i>>8)&255, i&255), "10.0.0.1:80"))
	}
	return svcs
}

// A change refused by a limit writes nothing at all.
func TestWriteLimitsRefuseBeforeWriting(t *testing.T) {
	limits, err := tsmaps.Capacities()
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(t)
	f.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80"))
	writes := f.mem.Writes()
	many := manyServices(limits.Services + 1)
	if _, err := f.apply(many, ApplyOptions{}); err == nil || !strings.Contains(err.Error(), fmt.Sprint(limits.Services)) {
		t.Fatalf("%d services: %v, want refused naming the limit %d", len(many), err, limits.Services)
	}
	if f.mem.Writes() != writes {
		t.Fatalf("a refused change made %d writes", f.mem.Writes()-writes)
	}
}

// Sockets of released endpoints go last, as a socket map cannot give a
// socket back: a failure dropping the second leaves the first dropped and
// everything else as before.
func TestWriteDropsSocketsLast(t *testing.T) {
	base := newFake(t)
	base.mustApply(lookup("gone", "192.0.2.1:80", "127.0.0.1:9001", "127.0.0.1:9002"), connect("stays", "192.0.2.2:80", "10.0.0.1:80"))
	probe := base.clone()
	if _, err := probe.apply([]svc{connect("stays", "192.0.2.2:80", "10.0.0.1:80")}, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	var drops []int
	for i, op := range probe.mem.Log {
		if op.Kind == "delete" && op.Map == "sockets" {
			drops = append(drops, i)
		}
	}
	// The two drops come last but for the sequence turning even.
	if len(drops) != 2 || drops[1] != len(probe.mem.Log)-2 || drops[0] != len(probe.mem.Log)-3 {
		t.Fatalf("socket drops at %v of %d writes, want the last two before the commit", drops, len(probe.mem.Log))
	}
	f := base.clone()
	deletes := 0
	f.mem.Fault = func(op state.Op) error {
		if op.Kind == "delete" && op.Map == "sockets" {
			if deletes++; deletes == 2 {
				return errInjected
			}
		}
		return nil
	}
	if _, err := f.apply([]svc{connect("stays", "192.0.2.2:80", "10.0.0.1:80")}, ApplyOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("apply: %v, want the second drop refused", err)
	}
	d := diffLines(base.dump(), f.dump())
	if len(d) != 1 || !strings.HasPrefix(d[0], "-sockets[") {
		t.Fatalf("after the second drop failed the state differs in\n%s\nwant the first socket dropped only", strings.Join(d, "\n"))
	}
}

// The stored objects' change is part of the transaction: a later failure
// puts the objects back as they were.
func TestWriteObjectsRolledBack(t *testing.T) {
	base := newFake(t)
	base.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80"))
	keep := tsmaps.StoredObject{Key: tsmaps.ObjectKey{Kind: "VirtualService", Namespace: "default", Name: "keep"}, Text: []byte("kind: VirtualService\n")}
	if err := base.set.PutObject(keep); err != nil {
		t.Fatal(err)
	}
	f := base.clone()
	d, err := f.delta([]svc{connect("a", "192.0.2.1:80", "10.0.0.2:80")}, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.objects = &ObjectChange{
		Put:    []tsmaps.StoredObject{{Key: tsmaps.ObjectKey{Kind: "Gateway", Namespace: "default", Name: "new"}, Text: []byte("kind: Gateway\n")}},
		Delete: []tsmaps.ObjectKey{keep.Key},
	}
	f.mem.Fault = failAt("put", "frontends", "")
	if err := f.tg.execute(f.set, d, ApplyOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("apply: %v, want the frontend's fault", err)
	}
	requireAsBefore(t, base, f, "after a change with objects failed")
	objs, err := f.set.Objects()
	if err != nil || len(objs) != 1 || objs[0].Key != keep.Key {
		t.Fatalf("stored objects %+v (%v), want %s only", objs, err, keep.Key.Name)
	}
}

// A forced apply that changes a shifting service's weights ends the shift
// in the same change; when the change fails, the shift runs on untouched.
func TestWriteEndedShiftRolledBack(t *testing.T) {
	base := newFake(t)
	two := func(w1, w2 uint64) svc {
		return svc{name: "echo", front: "192.0.2.1:80", mode: tsmaps.ModeConnect, subsets: []sub{{"v1", w1, []string{"10.0.0.1:80"}}, {"v2", w2, []string{"10.0.0.2:80"}}}}
	}
	base.mustApply(two(100, 0))
	start, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	running := tsmaps.Shift{State: tsmaps.ShiftRunning, To: 1, From: []int{0}, Percent: []uint32{50, 100}, Pid: uint32(os.Getpid()), PidStart: start, Before: []uint64{100, 0}}
	if err := base.set.PutShift(0, running); err != nil {
		t.Fatal(err)
	}
	// Unforced, the change is refused before any write.
	f := base.clone()
	if _, err := f.apply([]svc{two(30, 70)}, ApplyOptions{}); !errors.Is(err, ErrShifting) {
		t.Fatalf("apply during a shift: %v, want ErrShifting", err)
	}
	if f.mem.Writes() != 0 {
		t.Fatalf("a refused change made %d writes", f.mem.Writes())
	}
	// Forced and failing late, the shift record is as it was.
	f = base.clone()
	f.mem.Fault = failAt("put", "frontends", "")
	if _, err := f.apply([]svc{two(30, 70)}, ApplyOptions{Force: true}); !errors.Is(err, errInjected) {
		t.Fatalf("forced apply: %v, want the injected fault", err)
	}
	requireAsBefore(t, base, f, "after a forced change failed")
	// Forced and made, the shift is rolled back and says by whom.
	f = base.clone()
	var told []string
	f.tg.Notice = func(msg string) { told = append(told, msg) }
	if _, err := f.apply([]svc{two(30, 70)}, ApplyOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	sh, ok, err := f.set.Shift(0)
	if err != nil || !ok || sh.State != tsmaps.ShiftRolledBack || sh.Note != "aborted by apply --force: the route config changes the service's weights" {
		t.Fatalf("shift after a forced change: %+v %v %v", sh, ok, err)
	}
	if len(told) != 1 || !strings.HasPrefix(told[0], "aborted the shift of echo ") {
		t.Fatalf("notices %q, want the aborted shift told once", told)
	}
}

// A writer killed mid-write left the sequence odd: the next write evens
// it out first, so readers stop waiting, and ends even.
func TestWriteEvensOutAKilledWriter(t *testing.T) {
	f := newFake(t)
	f.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80"))
	o, err := f.set.Owner()
	if err != nil {
		t.Fatal(err)
	}
	o.WriteSeq = 7
	if err := f.mem.Put("owners", uint32(0), &o); err != nil {
		t.Fatal(err)
	}
	f.mustApply(connect("a", "192.0.2.1:80", "10.0.0.2:80"))
	if got := f.seq(); got != 10 {
		t.Fatalf("sequence %d after a write over a killed writer's 7, want 10 (8, then 9 and 10)", got)
	}
}

// Applying the same services twice writes nothing the second time but
// the records: tables, lists and counters stay exactly as they are.
func TestWriteSameTwiceWritesNothing(t *testing.T) {
	f := newFake(t)
	svcs := []svc{connect("a", "192.0.2.1:80", "10.0.0.1:80", "10.0.0.2:80"), lookup("b", "192.0.2.2:80", "127.0.0.1:9001")}
	if _, err := f.apply(svcs, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	before := f.dump()
	f.mem.Log = nil
	changes, err := f.apply(svcs, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range changes {
		if ch.Action != "unchanged" {
			t.Fatalf("second apply: %+v, want every service unchanged", changes)
		}
	}
	for _, op := range f.mem.Log {
		if op.Map != "owners" && op.Map != "conns" {
			t.Fatalf("second apply wrote %v", op)
		}
	}
	if d := diffLines(before, f.dump()); len(d) > 0 {
		t.Fatalf("second apply changed:\n%s", strings.Join(d, "\n"))
	}
}
