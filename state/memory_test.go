package state

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// Memory keeps maps as the kernel does: an array's entries exist, zero,
// and cannot be deleted; a hash's are missing until written, and it holds
// at most MaxEntries; sizes are checked against the spec.
func TestMemoryBehavesAsKernelMaps(t *testing.T) {
	m := testMemory()
	var v32 uint32
	if err := m.Lookup("array", uint32(5), &v32); err != nil || v32 != 0 {
		t.Fatalf("an array entry never written: %d %v, want 0", v32, err)
	}
	if err := m.Delete("array", uint32(5)); err == nil {
		t.Fatal("an array entry was deleted")
	}
	if err := m.Lookup("array", uint32(8), &v32); err == nil {
		t.Fatal("an index beyond the array was read")
	}
	var v64 uint64
	if err := m.Lookup("hash", uint32(1), &v64); !errors.Is(err, ErrNotExist) {
		t.Fatalf("a missing hash key: %v, want ErrNotExist", err)
	}
	if err := m.Delete("hash", uint32(1)); !errors.Is(err, ErrNotExist) {
		t.Fatalf("deleting a missing key: %v, want ErrNotExist", err)
	}
	for k := range uint32(4) {
		if err := m.Put("hash", k, uint64(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Put("hash", uint32(9), uint64(9)); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("a fifth key in a map of four: %v, want full", err)
	}
	if err := m.Put("hash", uint32(3), uint64(33)); err != nil {
		t.Fatalf("replacing a key of a full map: %v", err)
	}
	if err := m.Put("hash", uint32(1), uint32(1)); err == nil || !strings.Contains(err.Error(), "4 bytes, the map's are 8") {
		t.Fatalf("a value of the wrong size: %v", err)
	}
	if err := m.Put("nomap", uint32(1), uint32(1)); err == nil || m.Has("nomap") {
		t.Fatal("a map that does not exist was written")
	}
	if err := m.Put("tables", uint32(1), uint32(1)); err == nil {
		t.Fatal("a map of maps was written with Put")
	}
}

// A write whose zero value is an array's is no entry at all, as the
// kernel's arrays read.
func TestMemoryArrayZeroIsNoEntry(t *testing.T) {
	m := testMemory()
	if err := m.Put("array", uint32(2), uint32(9)); err != nil {
		t.Fatal(err)
	}
	if err := m.Put("array", uint32(2), uint32(0)); err != nil {
		t.Fatal(err)
	}
	if d := m.Dump(); len(d) != 0 {
		t.Fatalf("dump %v, want nothing", d)
	}
}

// A fault fails the write it names and nothing is written; every write is
// counted, the failed ones too, and the made ones logged.
func TestMemoryFaults(t *testing.T) {
	m := testMemory()
	m.Fault = func(op Op) error {
		if op.N == 2 {
			return errors.New("boom")
		}
		return nil
	}
	if err := m.Put("hash", uint32(1), uint64(1)); err != nil {
		t.Fatal(err)
	}
	err := m.Put("hash", uint32(2), uint64(2))
	if err == nil || err.Error() != "put hash[02000000]: boom" {
		t.Fatalf("second write: %v, want the fault naming it", err)
	}
	if b, _ := m.LookupBytes("hash", uint32(2)); b != nil {
		t.Fatal("a failed write was made")
	}
	if err := m.Delete("hash", uint32(1)); err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, op := range m.Log {
		log = append(log, op.String())
	}
	if m.Writes() != 3 || !slices.Equal(log, []string{"put hash[01000000]", "delete hash[01000000]"}) {
		t.Fatalf("%d writes, log %v", m.Writes(), log)
	}
}

// SwapInner and PutBatch write all or nothing.
func TestMemoryAllOrNothing(t *testing.T) {
	m := testMemory()
	in, err := m.NewInner("tables", uint64(1))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := m.SwapInner("tables", []uint32{1, 99}, []Inner{in, in}); err == nil {
		t.Fatal("a swap into a slot beyond the map was accepted")
	}
	if err := m.PutBatch("array", []uint32{1, 99}, []uint32{1, 2}); err == nil {
		t.Fatal("a batch beyond the array was accepted")
	}
	if d := m.Dump(); len(d) != 0 || m.Writes() != 0 {
		t.Fatalf("after refused writes: %v, %d writes", d, m.Writes())
	}
	if _, err := m.NewInner("tables", uint32(1)); err == nil {
		t.Fatal("an inner value of the wrong size was accepted")
	}
	closed, _ := m.NewInner("tables", uint64(2))
	closed.Close()
	if err := m.SwapInner("tables", []uint32{1}, []Inner{closed}); err == nil {
		t.Fatal("a closed inner map was swapped in")
	}
	if err := closed.Close(); err == nil {
		t.Fatal("an inner map closed twice")
	}
}

// Reads in batches and by iteration see every entry once, in key order;
// a batch read ends with ErrNotExist.
func TestMemoryReads(t *testing.T) {
	m := testMemory()
	for _, k := range []uint32{3, 1, 2} {
		if err := m.Put("hash", k, uint64(10*k)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		c          Cursor
		keys, all  []uint32
		vals, vall []uint64
	)
	for {
		keys, vals = make([]uint32, 2), make([]uint64, 2)
		n, err := m.ReadBatch("hash", &c, keys, vals)
		all, vall = append(all, keys[:n]...), append(vall, vals[:n]...)
		if errors.Is(err, ErrNotExist) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(all, []uint32{1, 2, 3}) || !slices.Equal(vall, []uint64{10, 20, 30}) {
		t.Fatalf("batches read %v %v", all, vall)
	}
	it := m.Iterate("array")
	var k, v uint32
	n := 0
	for it.Next(&k, &v) {
		if k != uint32(n) || v != 0 {
			t.Fatalf("array entry %d read as %d = %d", n, k, v)
		}
		n++
	}
	if it.Err() != nil || n != 8 {
		t.Fatalf("iterated %d array entries (%v), want 8", n, it.Err())
	}
	if it := m.Iterate("nomap"); it.Next(&k, &v) || it.Err() == nil {
		t.Fatal("iterating a map that does not exist")
	}
}

// A clone is a copy: writes to one do not show in the other, and inner
// maps keep their ids.
func TestMemoryClone(t *testing.T) {
	m := testMemory()
	if err := m.Put("hash", uint32(1), uint64(1)); err != nil {
		t.Fatal(err)
	}
	in, _ := m.NewInner("tables", uint64(7))
	if err := m.SwapInner("tables", []uint32{0}, []Inner{in}); err != nil {
		t.Fatal(err)
	}
	in.Close()
	c := m.Clone()
	if !slices.Equal(c.Dump(), m.Dump()) || c.Writes() != 0 || len(c.Log) != 0 {
		t.Fatal("a clone differs from its original or kept its log")
	}
	if err := c.Put("hash", uint32(1), uint64(2)); err != nil {
		t.Fatal(err)
	}
	var v uint64
	if err := m.Lookup("hash", uint32(1), &v); err != nil || v != 1 {
		t.Fatalf("the original changed with its clone: %d %v", v, err)
	}
}
