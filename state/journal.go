package state

import (
	"errors"
	"fmt"
)

// A Journal writes through Maps and, between Begin and Commit or Rollback,
// records how to undo each write, so a write that fails midway can put every
// map back exactly as it was: entries get their old values back, and a map
// of maps' slots get the very inner maps they held (kept open until the
// end). Without a transaction writes are simply made.
type Journal struct {
	Maps  Maps
	Hooks Hooks

	open   bool
	wrote  bool // the first write was made: Hooks.Writing ran
	undo   []func() error
	held   []Inner
	ending []func() // run when the transaction ends, either way
}

// Hooks are what the state adds around a transaction's writes.
type Hooks struct {
	// Writing runs before the transaction's first write (the namespace's
	// write sequence turns odd), so a change refused before it writes
	// leaves every map exactly as it was.
	Writing func() error
	// Ended runs once a transaction that wrote is committed or rolled
	// back (the sequence turns even).
	Ended func() error
	// Guard wraps every write of a map of maps' slots (the tables'
	// version counters, a seqlock per slot).
	Guard func(keys []uint32, write func() error) error
}

// Begin starts a transaction.
func (j *Journal) Begin() error {
	if j.open {
		return errors.New("transaction already in progress")
	}
	j.open = true
	return nil
}

// Active reports whether a transaction is in progress.
func (j *Journal) Active() bool { return j.open }

// OnEnd runs fn when the transaction ends, committed or rolled back.
func (j *Journal) OnEnd(fn func()) { j.ending = append(j.ending, fn) }

// Writing marks the transaction as writing before its first write; writes
// that cannot be journaled (sockets) call it too.
func (j *Journal) Writing() error {
	if !j.open || j.wrote {
		return nil
	}
	if j.Hooks.Writing != nil {
		if err := j.Hooks.Writing(); err != nil {
			return err
		}
	}
	j.wrote = true
	return nil
}

// Record adds an undo step to the transaction (none without one).
func (j *Journal) Record(undo func() error) {
	if j.open {
		j.undo = append(j.undo, undo)
	}
}

// before reads what a write replaces, if a transaction must undo it.
func (j *Journal) before(m string, key any) ([]byte, error) {
	if !j.open {
		return nil, nil
	}
	return j.Maps.LookupBytes(m, key)
}

// Put writes one entry, journaling what was there before.
func (j *Journal) Put(m string, key, value any) error {
	old, err := j.before(m, key)
	if err != nil {
		return err
	}
	if err := j.Writing(); err != nil {
		return err
	}
	if err := j.Maps.Put(m, key, value); err != nil {
		return err
	}
	j.Record(func() error { return j.restore(m, key, old) })
	return nil
}

// Delete deletes one entry, journaling it. A missing entry is not an error.
func (j *Journal) Delete(m string, key any) error {
	old, err := j.before(m, key)
	if err != nil {
		return err
	}
	if err := j.Writing(); err != nil {
		return err
	}
	if err := j.Maps.Delete(m, key); err != nil {
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		return err
	}
	j.Record(func() error { return j.restore(m, key, old) })
	return nil
}

// restore puts back an entry's old value, or deletes it if it had none.
func (j *Journal) restore(m string, key any, old []byte) error {
	var err error
	if old == nil {
		if err = j.Maps.Delete(m, key); errors.Is(err, ErrNotExist) {
			err = nil
		}
	} else {
		err = j.Maps.Put(m, key, old)
	}
	if err != nil {
		return fmt.Errorf("map %s: %w", m, err)
	}
	return nil
}

// PutBatch writes keys[i] = values[i] in one update; old holds what was
// there (read by the caller, who knows the value type), for the undo.
func (j *Journal) PutBatch(m string, keys, values, old any) error {
	if err := j.Writing(); err != nil {
		return err
	}
	if err := j.Maps.PutBatch(m, keys, values); err != nil {
		return err
	}
	j.Record(func() error {
		if err := j.Maps.PutBatch(m, keys, old); err != nil {
			return fmt.Errorf("map %s: %w", m, err)
		}
		return nil
	})
	return nil
}

// Swap puts a new inner map holding values[i] (nil: none, the slot is
// emptied) in each slot keys[i] of the map of maps m, in one update. In a
// transaction the inner maps swapped out are held open until it ends, so a
// rollback puts the very same ones back.
func (j *Journal) Swap(m string, keys []uint32, values []any) error {
	inners := make([]Inner, len(keys))
	// Swapped in, a new inner map lives on in its slot: these handles go.
	defer closeInners(inners)
	prevs, err := j.hold(m, keys)
	if err != nil {
		return err
	}
	for i, v := range values {
		if v == nil {
			continue
		}
		if inners[i], err = j.Maps.NewInner(m, v); err != nil {
			return fmt.Errorf("slot %d of %s: %w", keys[i], m, err)
		}
	}
	if err := j.Writing(); err != nil {
		return err
	}
	err = j.guard(keys, func() error { return j.Maps.SwapInner(m, keys, inners) })
	// Recorded even when the update failed partway: putting back an inner
	// map that was not replaced changes nothing.
	j.Record(func() error { return j.guard(keys, func() error { return j.Maps.SwapInner(m, keys, prevs) }) })
	return err
}

// hold opens, in a transaction, the inner maps in m's slots keys (nil for
// an empty slot) and keeps them until the transaction ends.
func (j *Journal) hold(m string, keys []uint32) ([]Inner, error) {
	prevs := make([]Inner, len(keys))
	if !j.open {
		return prevs, nil
	}
	for i, k := range keys {
		var id uint32
		err := j.Maps.Lookup(m, k, &id)
		if errors.Is(err, ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("slot %d of %s: %w", k, m, err)
		}
		if prevs[i], err = j.Maps.OpenInner(id); err != nil {
			return nil, fmt.Errorf("hold inner map %d of %s: %w", id, m, err)
		}
		j.held = append(j.held, prevs[i])
	}
	return prevs, nil
}

func (j *Journal) guard(keys []uint32, write func() error) error {
	if j.Hooks.Guard == nil {
		return write()
	}
	return j.Hooks.Guard(keys, write)
}

// Commit ends the transaction, keeping its writes. If even that fails, the
// writes are rolled back.
func (j *Journal) Commit() error {
	if j.open && j.wrote && j.Hooks.Ended != nil {
		if err := j.Hooks.Ended(); err != nil {
			return errors.Join(fmt.Errorf("commit: %w", err), j.Rollback())
		}
	}
	j.end()
	return nil
}

// Rollback undoes the transaction's writes, newest first. Every step runs
// even after one failed; the failures are returned together.
func (j *Journal) Rollback() error {
	if !j.open {
		return nil
	}
	wrote := j.wrote
	var errs []error
	for i := len(j.undo) - 1; i >= 0; i-- {
		if err := j.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	j.end()
	if wrote && j.Hooks.Ended != nil {
		errs = append(errs, j.Hooks.Ended())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	return nil
}

// Abandon ends a transaction keeping its writes and undoing nothing (its
// maps are being closed midway).
func (j *Journal) Abandon() {
	if j.open {
		j.end()
	}
}

// Held returns how many inner maps the transaction holds for a rollback.
func (j *Journal) Held() int { return len(j.held) }

// end closes what the transaction held and forgets it.
func (j *Journal) end() {
	closeInners(j.held)
	for _, fn := range j.ending {
		fn()
	}
	j.open, j.wrote, j.undo, j.held, j.ending = false, false, nil, nil, nil
}

func closeInners(inners []Inner) {
	for _, in := range inners {
		if in != nil {
			in.Close()
		}
	}
}
