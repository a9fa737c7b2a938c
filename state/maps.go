// Package state is what an apply writes, as an interface: the named maps of
// one network namespace (the kernel's pinned maps, or memory for tests) and
// the journal that makes a series of writes one transaction, rolled back
// newest first. It imports nothing of the kernel: the maps package backs it
// with BPF maps, and Memory backs it without root, with fault injection.
package state

import "errors"

// ErrNotExist is what a lookup or delete of a missing key returns (the
// kernel's backing wraps its own error with it).
var ErrNotExist = errors.New("key does not exist")

// Maps is raw access to a namespace's maps by their pinned names. Keys and
// values are fixed-size values or pointers to them, as the BPF maps take
// them; raw []byte values are taken as already encoded.
type Maps interface {
	// Has reports whether the map exists (state pinned by an older build
	// lacks the newest maps).
	Has(m string) bool
	Lookup(m string, key, value any) error
	// LookupBytes returns a value as stored, nil when the key is missing.
	LookupBytes(m string, key any) ([]byte, error)
	Put(m string, key, value any) error
	Delete(m string, key any) error
	// PutBatch writes keys[i] = values[i] (two slices) in one update.
	PutBatch(m string, keys, values any) error
	// ReadBatch reads the next entries after cursor into the slices keys
	// and values, returning how many; ErrNotExist once the map ends.
	ReadBatch(m string, cursor *Cursor, keys, values any) (int, error)
	Iterate(m string) Iterator
	MaxEntries(m string) uint32

	// A map of maps (a service's table is an inner map) holds inner maps'
	// ids. NewInner makes an inner map for m holding value at key 0,
	// OpenInner opens one by id, and SwapInner sets the slots keys[i] to
	// inners[i] (nil: empty) in one update where it can.
	NewInner(m string, value any) (Inner, error)
	OpenInner(id uint32) (Inner, error)
	SwapInner(m string, keys []uint32, inners []Inner) error
}

// Iterator walks a map's entries.
type Iterator interface {
	Next(key, value any) bool
	Err() error
}

// Inner is an open inner map.
type Inner interface {
	Lookup(key, value any) error
	Close() error
}

// Cursor is where a ReadBatch goes on from; the zero Cursor starts at the
// beginning. Its fields belong to the Maps that reads with it.
type Cursor struct {
	Pos  int
	Impl any
}
