package state

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func testMemory() *Memory {
	return NewMemory([]Spec{
		{Name: "hash", Kind: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 4},
		{Name: "array", Kind: Array, KeySize: 4, ValueSize: 4, MaxEntries: 8},
		{Name: "tables", Kind: OfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 8, InnerValueSize: 8},
		{Name: "seq", Kind: Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
	})
}

// journaled is a Journal over m whose hooks move a sequence in map "seq"
// (odd while writing, as the maps package does) and log what they did.
func journaled(m *Memory, log *[]string) *Journal {
	bump := func(odd bool) func() error {
		return func() error {
			var n uint64
			if err := m.Lookup("seq", uint32(0), &n); err != nil {
				return err
			}
			if n++; (n%2 == 1) != odd {
				n++
			}
			*log = append(*log, map[bool]string{true: "odd", false: "even"}[odd])
			return m.Put("seq", uint32(0), n)
		}
	}
	return &Journal{Maps: m, Hooks: Hooks{Writing: bump(true), Ended: bump(false),
		Guard: func(keys []uint32, write func() error) error {
			*log = append(*log, "guard")
			return write()
		}}}
}

// begun is a journaled Memory with a transaction begun.
func begun(t *testing.T) (*Memory, *Journal, *[]string) {
	t.Helper()
	m := testMemory()
	hooks := &[]string{}
	j := journaled(m, hooks)
	if err := j.Begin(); err != nil {
		t.Fatal(err)
	}
	return m, j, hooks
}

func seqOf(t *testing.T, m *Memory) uint64 {
	t.Helper()
	var n uint64
	if err := m.Lookup("seq", uint32(0), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Undo steps run newest first: an entry written twice gets its first
// value back, one deleted comes back, one added goes.
func TestJournalUndoesNewestFirst(t *testing.T) {
	m := testMemory()
	var hooks []string
	j := journaled(m, &hooks)
	if err := j.Put("hash", uint32(1), uint64(10)); err != nil { // before the transaction
		t.Fatal(err)
	}
	before := m.Dump()
	if err := j.Begin(); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return j.Put("hash", uint32(1), uint64(11)) },
		func() error { return j.Put("hash", uint32(1), uint64(12)) },
		func() error { return j.Put("hash", uint32(2), uint64(20)) },
		func() error { return j.Delete("hash", uint32(1)) },
		func() error { return j.Put("array", uint32(3), uint32(7)) },
		func() error { return j.Delete("hash", uint32(3)) }, // missing: no error, nothing to undo
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	m.Log = nil
	if err := j.Rollback(); err != nil {
		t.Fatal(err)
	}
	var undone []string
	for _, op := range m.Log {
		undone = append(undone, op.String())
	}
	want := []string{"put array[03000000]", "put hash[01000000]", "delete hash[02000000]", "put hash[01000000]", "put hash[01000000]", "put seq[00000000]"}
	if !slices.Equal(undone, want) {
		t.Fatalf("undo\n%v\nwant\n%v", undone, want)
	}
	if d := slices.DeleteFunc(m.Dump(), func(l string) bool { return strings.HasPrefix(l, "seq[") }); !slices.Equal(d, slices.DeleteFunc(before, func(l string) bool { return strings.HasPrefix(l, "seq[") })) {
		t.Fatalf("after the rollback\n%v\nwant\n%v", d, before)
	}
	if !slices.Equal(hooks, []string{"odd", "even"}) || seqOf(t, m) != 2 {
		t.Fatalf("hooks %v, sequence %d; want odd then even, 2", hooks, seqOf(t, m))
	}
	if j.Active() {
		t.Fatal("the transaction is still active after its rollback")
	}
}

// A transaction refused before it writes leaves even the sequence.
func TestJournalNoWriteNoSequence(t *testing.T) {
	m := testMemory()
	var hooks []string
	j := journaled(m, &hooks)
	for _, end := range []func() error{j.Commit, j.Rollback} {
		if err := j.Begin(); err != nil {
			t.Fatal(err)
		}
		if err := end(); err != nil {
			t.Fatal(err)
		}
	}
	if len(hooks) != 0 || m.Writes() != 0 {
		t.Fatalf("hooks %v and %d writes for transactions that wrote nothing", hooks, m.Writes())
	}
}

// Begin twice is refused; writes without a transaction are made and not
// journaled (a rollback after has nothing to undo).
func TestJournalOutsideTransaction(t *testing.T) {
	m := testMemory()
	j := &Journal{Maps: m}
	if err := j.Put("hash", uint32(1), uint64(1)); err != nil {
		t.Fatal(err)
	}
	if err := j.Rollback(); err != nil {
		t.Fatal(err)
	}
	var v uint64
	if err := m.Lookup("hash", uint32(1), &v); err != nil || v != 1 {
		t.Fatalf("a write outside a transaction: %d %v, want it kept", v, err)
	}
	if err := j.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := j.Begin(); err == nil {
		t.Fatal("a second Begin was accepted")
	}
}

// A rollback step that fails does not stop the others; the failures are
// reported together.
func TestJournalRollbackGoesOnAfterAFailedStep(t *testing.T) {
	m, j, _ := begun(t)
	for k := range uint32(3) {
		if err := j.Put("hash", k, uint64(k+1)); err != nil {
			t.Fatal(err)
		}
	}
	m.Fault = func(op Op) error {
		if op.Kind == "delete" && op.Key == "01000000" {
			return errors.New("refused")
		}
		return nil
	}
	err := j.Rollback()
	if err == nil || !strings.Contains(err.Error(), "roll back: map hash: delete hash[01000000]: refused") {
		t.Fatalf("rollback: %v, want the failed step named", err)
	}
	for k, want := range map[uint32]bool{0: false, 1: true, 2: false} {
		b, _ := m.LookupBytes("hash", k)
		if (b != nil) != want {
			t.Fatalf("key %d present %v after the rollback, want %v", k, b != nil, want)
		}
	}
	if seqOf(t, m) != 2 {
		t.Fatalf("sequence %d, want even (2) after a rollback with a failed step", seqOf(t, m))
	}
}

// A commit whose end fails rolls the transaction back.
func TestJournalCommitFailureRollsBack(t *testing.T) {
	m, j, _ := begun(t)
	if err := j.Put("hash", uint32(1), uint64(5)); err != nil {
		t.Fatal(err)
	}
	ends := 0
	j.Hooks.Ended = func() error {
		if ends++; ends == 1 {
			return errors.New("no sequence")
		}
		return nil
	}
	err := j.Commit()
	if err == nil || !strings.Contains(err.Error(), "commit: no sequence") {
		t.Fatalf("commit: %v, want its failure", err)
	}
	if b, _ := m.LookupBytes("hash", uint32(1)); b != nil || ends != 2 || j.Active() {
		t.Fatalf("after a failed commit: entry %x, %d ends, active %v; want none, 2, false", b, ends, j.Active())
	}
}

// Swap holds the inner maps it replaces until the transaction ends: a
// rollback puts the very same ones back, an emptied slot included, and
// every handle is closed after, committed or not.
func TestJournalSwapHoldsTheOldTables(t *testing.T) {
	for _, commit := range []bool{true, false} {
		m := testMemory()
		var hooks []string
		j := journaled(m, &hooks)
		if err := j.Swap("tables", []uint32{1, 2}, []any{uint64(100), uint64(200)}); err != nil {
			t.Fatal(err)
		}
		before := m.Dump()
		if m.OpenInners() != 0 {
			t.Fatalf("%d handles open after a swap outside a transaction", m.OpenInners())
		}
		if err := j.Begin(); err != nil {
			t.Fatal(err)
		}
		if err := j.Swap("tables", []uint32{1, 2, 3}, []any{uint64(101), nil, uint64(300)}); err != nil {
			t.Fatal(err)
		}
		if j.Held() != 2 || m.OpenInners() != 2 {
			t.Fatalf("%d held, %d open; want the two replaced", j.Held(), m.OpenInners())
		}
		var v uint64
		var id uint32
		if err := m.Lookup("tables", uint32(2), &id); !errors.Is(err, ErrNotExist) {
			t.Fatalf("slot 2 after it was emptied: %v", err)
		}
		end := j.Rollback
		if commit {
			end = j.Commit
		}
		if err := end(); err != nil {
			t.Fatal(err)
		}
		if m.OpenInners() != 0 || j.Held() != 0 {
			t.Fatalf("commit=%v: %d handles open after the end", commit, m.OpenInners())
		}
		if !commit {
			after := slices.DeleteFunc(m.Dump(), func(l string) bool { return strings.HasPrefix(l, "seq[") })
			if !slices.Equal(after, slices.DeleteFunc(before, func(l string) bool { return strings.HasPrefix(l, "seq[") })) {
				t.Fatalf("after the rollback\n%v\nwant the very same tables\n%v", after, before)
			}
			continue
		}
		if err := m.Lookup("tables", uint32(3), &id); err != nil {
			t.Fatal(err)
		}
		in, err := m.OpenInner(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Lookup(uint32(0), &v); err != nil || v != 300 {
			t.Fatalf("table 3 holds %d (%v), want 300", v, err)
		}
		in.Close()
		if !slices.Contains(hooks, "guard") {
			t.Fatal("the swap was not guarded")
		}
	}
}

// A batch write is undone with the values the caller read before it.
func TestJournalPutBatchUndone(t *testing.T) {
	m := testMemory()
	var hooks []string
	j := journaled(m, &hooks)
	if err := m.PutBatch("array", []uint32{0, 1}, []uint32{5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := j.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := j.PutBatch("array", []uint32{0, 1}, []uint32{7, 8}, []uint32{5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := j.Rollback(); err != nil {
		t.Fatal(err)
	}
	for k, want := range []uint32{5, 6} {
		var v uint32
		if err := m.Lookup("array", uint32(k), &v); err != nil || v != want {
			t.Fatalf("array[%d] = %d (%v), want %d", k, v, err, want)
		}
	}
}

// Abandon ends a transaction keeping its writes; OnEnd runs either way.
func TestJournalAbandonKeepsWrites(t *testing.T) {
	m := testMemory()
	j := &Journal{Maps: m}
	ended := 0
	if err := j.Begin(); err != nil {
		t.Fatal(err)
	}
	j.OnEnd(func() { ended++ })
	if err := j.Swap("tables", []uint32{1}, []any{uint64(1)}); err != nil {
		t.Fatal(err)
	}
	if err := j.Swap("tables", []uint32{1}, []any{uint64(2)}); err != nil {
		t.Fatal(err)
	}
	j.Abandon()
	if j.Active() || ended != 1 || m.OpenInners() != 0 {
		t.Fatalf("after Abandon: active %v, ended %d, %d open", j.Active(), ended, m.OpenInners())
	}
	j.Abandon() // no transaction: nothing
	if ended != 1 {
		t.Fatal("OnEnd ran twice")
	}
}
