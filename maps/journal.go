package maps

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// A journal records how to undo each write of one transaction (Begin to
// Commit or Rollback), so a write that fails midway can put every map back
// exactly as it was. Without a journal writes are simply made.
type journal struct {
	// writing is set by the first write: only then the write sequence
	// turns odd, so a change refused before it writes leaves every map
	// exactly as it was, the sequence included.
	writing bool
	undo    []func() error
	// Tables swapped out stay open until the end, so a rollback can put the
	// very same inner map (and its round-robin position) back.
	held []*ebpf.Map
	// lists is the lists map as this transaction sees it (see lists.go).
	lists *listSpace
}

// Begin starts a transaction: every write until Commit or Rollback is
// journaled, and readers see an odd write sequence (see ReadConsistent).
// The caller holds the namespace's writer lock.
func (s *Set) Begin() error {
	if s.j != nil {
		return errors.New("transaction already in progress")
	}
	// The caller holds the lock: an odd sequence was left by a writer
	// killed mid-write. Even it out so readers stop waiting for it.
	if o, err := s.Owner(); err == nil && o.WriteSeq%2 == 1 {
		if err := s.bumpSeq(false); err != nil {
			return err
		}
	}
	s.j = &journal{}
	return nil
}

// writing marks the transaction as writing before its first write.
func (s *Set) writing() error {
	if s.j == nil || s.j.writing {
		return nil
	}
	if err := s.bumpSeq(true); err != nil {
		return err
	}
	s.j.writing = true
	return nil
}

// Commit ends the transaction, keeping its writes. If even that fails, the
// writes are rolled back.
func (s *Set) Commit() error {
	if s.j != nil && s.j.writing {
		if err := s.bumpSeq(false); err != nil {
			return errors.Join(fmt.Errorf("commit: %w", err), s.Rollback())
		}
	}
	s.release()
	return nil
}

// Rollback undoes the transaction's writes, newest first.
func (s *Set) Rollback() error {
	if s.j == nil {
		return nil
	}
	wrote := s.j.writing
	var errs []error
	for i := len(s.j.undo) - 1; i >= 0; i-- {
		if err := s.j.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.release()
	if wrote {
		errs = append(errs, s.bumpSeq(false))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	return nil
}

func (s *Set) release() {
	if s.j == nil {
		return
	}
	for _, m := range s.j.held {
		m.Close()
	}
	s.j = nil
}

func (s *Set) record(undo func() error) {
	if s.j != nil {
		s.j.undo = append(s.j.undo, undo)
	}
}

// put writes one entry, journaling what was there before.
func (s *Set) put(m *ebpf.Map, key, value any) error {
	var old []byte
	if s.j != nil {
		var err error
		if old, err = m.LookupBytes(key); err != nil {
			return err
		}
	}
	if err := s.writing(); err != nil {
		return err
	}
	if err := m.Put(key, value); err != nil {
		return err
	}
	s.record(func() error { return restore(m, key, old) })
	return nil
}

// del deletes one entry, journaling it. A missing entry is not an error.
func (s *Set) del(m *ebpf.Map, key any) error {
	var old []byte
	if s.j != nil {
		var err error
		if old, err = m.LookupBytes(key); err != nil {
			return err
		}
	}
	if err := s.writing(); err != nil {
		return err
	}
	if err := m.Delete(key); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return err
	}
	s.record(func() error { return restore(m, key, old) })
	return nil
}

// restore puts back an entry's old value, or deletes it if it had none.
func restore(m *ebpf.Map, key any, old []byte) error {
	if old == nil {
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("map %s: %w", m, err)
		}
		return nil
	}
	if err := m.Put(key, old); err != nil {
		return fmt.Errorf("map %s: %w", m, err)
	}
	return nil
}

// bumpSeq moves the write sequence on to its next odd value (a write
// begins) or even value (it ended). A writer that was killed mid-write left
// it odd; the next one goes on from there. State pinned by a build without
// an owner map has no sequence.
func (s *Set) bumpSeq(odd bool) error {
	if s.Owners == nil {
		return nil
	}
	o, err := s.Owner()
	if err != nil {
		return err
	}
	o.WriteSeq++
	if (o.WriteSeq%2 == 1) != odd {
		o.WriteSeq++
	}
	if err := s.Owners.Put(uint32(0), &o); err != nil {
		return fmt.Errorf("write sequence: %w", err)
	}
	return nil
}

// ErrWriteInProgress is returned by ReadConsistent when writers kept the
// state changing for longer than it waits.
var ErrWriteInProgress = errors.New("the state kept changing while it was read (a write is in progress or was interrupted)")

// ReadConsistent runs read until it ran while no writer wrote, so what it
// read is one state, never a mix of two. Readers need no lock: a writer
// makes the write sequence odd while it writes (a seqlock). writerGone
// tells an odd sequence left by a writer killed mid-write (no writer holds
// the lock) from a write in progress; then the state is read as it is.
func (s *Set) ReadConsistent(read func() error, writerGone func() bool) error {
	if s.Owners == nil {
		return read()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		before, err := s.Owner()
		if err != nil {
			return err
		}
		// A killed writer's odd sequence: read, and keep what was read
		// only if no writer started meanwhile.
		if before.WriteSeq%2 == 1 && writerGone() {
			if err := read(); err != nil {
				return err
			}
			after, err := s.Owner()
			if err != nil {
				return err
			}
			if after.WriteSeq == before.WriteSeq && writerGone() {
				return nil
			}
		}
		if before.WriteSeq%2 == 0 {
			if err := read(); err != nil {
				return err
			}
			after, err := s.Owner()
			if err != nil {
				return err
			}
			if after.WriteSeq == before.WriteSeq {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return ErrWriteInProgress
		}
		time.Sleep(2 * time.Millisecond)
	}
}
