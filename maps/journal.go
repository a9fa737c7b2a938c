package maps

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/state"
)

// A transaction's undo steps, and the inner maps it swapped out, are kept
// by its state.Journal (see state/journal.go), the same over the kernel's
// maps and over memory. journal holds what the maps package adds to a
// transaction in progress.
type journal struct {
	// lists is the lists map as this transaction sees it (see lists.go);
	// seeded, the view of an earlier transaction it started from.
	lists  *listSpace
	seeded *ListSlots
}

// tx is the journal every write of the Set goes through: over the BPF
// maps in its fields unless the Set was made over other maps (OnMaps).
func (s *Set) tx() *state.Journal {
	if s.log == nil {
		s.log = &state.Journal{Maps: &kernelMaps{s: s}}
	}
	if s.log.Hooks.Writing == nil {
		s.log.Hooks = state.Hooks{
			Writing: func() error { return s.bumpSeq(true) },
			Ended:   func() error { return s.bumpSeq(false) },
			Guard:   s.writeTables,
		}
	}
	return s.log
}

// raw is the Set's maps, unjournaled.
func (s *Set) raw() state.Maps { return s.tx().Maps }

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
	if err := s.tx().Begin(); err != nil {
		return err
	}
	s.j = &journal{}
	return nil
}

// writing marks the transaction as writing before its first write.
func (s *Set) writing() error { return s.tx().Writing() }

// Commit ends the transaction, keeping its writes. If even that fails, the
// writes are rolled back.
func (s *Set) Commit() error {
	err := s.tx().Commit()
	s.j = nil
	return err
}

// Rollback undoes the transaction's writes, newest first.
func (s *Set) Rollback() error {
	err := s.tx().Rollback()
	s.j = nil
	return err
}

// release ends a transaction without undoing anything (the Set is closed).
func (s *Set) release() {
	if s.log != nil {
		s.log.Abandon()
	}
	s.j = nil
}

func (s *Set) record(undo func() error) { s.tx().Record(undo) }

// put writes one entry of one of the Set's maps, journaled.
func (s *Set) put(m *ebpf.Map, key, value any) error {
	return s.tx().Put(s.name(m), key, value)
}

// del deletes one entry, journaled. A missing entry is not an error.
func (s *Set) del(m *ebpf.Map, key any) error {
	return s.tx().Delete(s.name(m), key)
}

// lookup reads one entry of one of the Set's maps.
func (s *Set) lookup(m *ebpf.Map, key, value any) error {
	return s.raw().Lookup(s.name(m), key, value)
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
	if err := s.raw().Put(bpf.TcpshiftMapOwners, uint32(0), &o); err != nil {
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
