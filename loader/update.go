package loader

import (
	"errors"
	"fmt"

	"github.com/tcpshift/tcpshift/maps"
)

// Update runs fn on the pinned maps as one change: under the namespace's
// writer lock, on state that is this namespace's, in a transaction that is
// rolled back when fn fails. Every writer but Apply and Down goes through it
// (set-weight, the daemon's health, reconcile and re-registration writes).
// fn gets maps opened as it first uses them (maps.OpenLazy): a weight
// change opens the 11 it touches, not all 21; fn must go through the Set's
// methods, not its map fields.
func (t *Target) Update(fn func(set *maps.Set) error) (err error) {
	unlock, err := t.lock(false)
	if errors.Is(err, errNoPinDir) {
		return maps.ErrNotLoaded
	}
	if err != nil {
		return err
	}
	defer unlock()
	return t.withMaps(t.lazyMaps, t.claimState, func(set *maps.Set) error { return transact(set, fn) })
}

// transact runs fn on set as one transaction, rolled back when fn fails.
func transact(set *maps.Set, fn func(set *maps.Set) error) error {
	if err := set.Begin(); err != nil {
		return err
	}
	if err := fn(set); err != nil {
		if rerr := set.Rollback(); rerr != nil {
			return fmt.Errorf("%w (and %v)", err, rerr)
		}
		return err
	}
	return set.Commit()
}

// withMaps opens the pinned maps, checks them and runs fn on them.
func (t *Target) withMaps(open func() (*maps.Set, error), check, fn func(set *maps.Set) error) error {
	set, err := open()
	if err != nil {
		return err
	}
	defer set.Close()
	if err := check(set); err != nil {
		return err
	}
	return fn(set)
}

// lazyMaps opens the pinned maps as they are first used, for writers
// holding the lock.
func (t *Target) lazyMaps() (*maps.Set, error) { return maps.OpenLazy(t.Dir) }

// loadedMaps opens the pinned maps: nil and no error when nothing is
// loaded (maps.ErrNotLoaded), nil and the error when they cannot be opened.
// Its callers (an apply's reads of the owner, the services in force and the
// stored objects, under the lock; RunningDaemon's of the owner) use only
// the Set's methods, so the maps open as first used: an apply served from
// what it left opens the owners map, not all of them (issue 28).
func (t *Target) loadedMaps() (*maps.Set, error) {
	set, err := t.lazyMaps()
	if errors.Is(err, maps.ErrNotLoaded) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return set, nil
}

// Read runs fn on the pinned maps so that what it reads is one state, never
// half of a change (see maps.Set.ReadConsistent). Readers take no lock. A
// writer killed mid-write leaves the sequence odd: when no writer holds the
// lock, the state is read as it is.
func (t *Target) Read(fn func(set *maps.Set) error) error {
	return t.withMaps(t.Maps, t.checkOwner, func(set *maps.Set) error {
		return set.ReadConsistent(func() error { return fn(set) }, func() bool { return !t.lockHeld() })
	})
}
