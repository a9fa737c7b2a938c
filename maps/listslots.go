package maps

import "slices"

// ListSlots is one writer's view of the lists map's slots, kept past its
// transaction so that its next one need not read every table in force to
// find free slots (markInForce opens and reads each of ten thousand
// tables). It marks every slot a table in force used when it was taken,
// and every slot a transaction wrote since; slots that tables gave back
// since then stay marked (a leak, never a slot handed out twice) until a
// transaction finds no room and reads the tables again. It is valid only
// while no other writer wrote: the caller keeps it with the write sequence
// it committed at.
type ListSlots struct {
	used []bool
	next int
}

// UseListSlots makes the transaction in progress start from a view of the
// lists map kept from an earlier one of the same writer, instead of reading
// every table in force when it first needs free slots. It must come before
// the transaction's first table write; outside a transaction, or with nil,
// it does nothing.
func (s *Set) UseListSlots(v *ListSlots) {
	if s.j == nil || s.j.lists != nil || v == nil {
		return
	}
	// Half full (with what it leaked): read the tables once more instead.
	if n := countTrue(v.used); n > len(v.used)/2 {
		return
	}
	// A copy: a rollback must leave v as it was.
	s.j.lists = &listSpace{used: slices.Clone(v.used), next: v.next}
	s.j.seeded = v
}

// ListSlots is the transaction's view of the lists map so far, to keep
// once it committed; nil outside a transaction or when it never needed
// free slots and was not seeded.
func (s *Set) ListSlots() *ListSlots {
	if s.j == nil || s.j.lists == nil || s.j.lists.used == nil {
		return nil
	}
	return &ListSlots{used: s.j.lists.used, next: s.j.lists.next}
}

// allocOrRemark is allocList, reading the tables in force again when a
// kept view finds no room, as long as this transaction replaced no table
// yet (slots it freed must not be reused before it ends).
func (s *Set) allocOrRemark(sp *listSpace, n int) (int, error) {
	first, err := s.allocList(sp, n)
	if err == nil || s.j == nil || s.j.seeded == nil || s.tx().Held() > 0 {
		return first, err
	}
	seed := s.j.seeded
	s.j.seeded = nil
	fresh := &listSpace{}
	if err := s.markInForce(fresh); err != nil {
		return 0, err
	}
	// Slots this transaction wrote are not in force yet: keep them.
	for k, u := range sp.used {
		if u && !seed.used[k] {
			fresh.used[k] = true
		}
	}
	*sp = *fresh
	return s.allocList(sp, n)
}

func countTrue(b []bool) (n int) {
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// ReadListSlots reads the slots the tables in force use, outside a
// transaction: a view for a writer's next one when its last needed none
// (a daemon's first apply over state already in force), so that its first
// change does not read every table then.
func (s *Set) ReadListSlots() (*ListSlots, error) {
	sp := &listSpace{}
	if err := s.markInForce(sp); err != nil {
		return nil, err
	}
	return &ListSlots{used: sp.used, next: sp.next}, nil
}

// InUse counts the slots the view marks used.
func (v *ListSlots) InUse() int { return countTrue(v.used) }

// Same reports whether two views mark the same slots.
func (v *ListSlots) Same(o *ListSlots) bool { return slices.Equal(v.used, o.used) }
