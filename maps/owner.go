package maps

import (
	"fmt"

	"github.com/tcpshift/tcpshift/bpf"
)

// Owner is who the pinned state belongs to: the network namespace (by
// cookie) and the daemon managing it, if any.
type Owner = bpf.TcpshiftOwner

// Owner reads the owner record; a zero Owner when the state predates it.
func (s *Set) Owner() (Owner, error) {
	var o Owner
	if s.Owners == nil {
		return o, nil
	}
	if err := s.lookup(s.Owners, uint32(0), &o); err != nil {
		return o, fmt.Errorf("read owner: %w", err)
	}
	return o, nil
}

// PutOwner writes the owner record, keeping the write sequence as the
// transaction has it: the sequence turns odd first, and a rollback puts the
// old record back with the sequence it has then, so readers never see it go
// back to a value they read before.
func (s *Set) PutOwner(o Owner) error {
	if s.Owners == nil {
		return fmt.Errorf("write owner: the pinned state predates the owner map (run tcpshift apply first)")
	}
	if err := s.writing(); err != nil {
		return err
	}
	old, err := s.Owner()
	if err != nil {
		return err
	}
	o.WriteSeq = old.WriteSeq
	if err := s.raw().Put(bpf.TcpshiftMapOwners, uint32(0), &o); err != nil {
		return fmt.Errorf("write owner: %w", err)
	}
	s.record(func() error {
		cur, err := s.Owner()
		if err != nil {
			return err
		}
		old.WriteSeq = cur.WriteSeq
		return s.raw().Put(bpf.TcpshiftMapOwners, uint32(0), &old)
	})
	return nil
}

// DaemonFile is the route config the daemon in the record follows.
func DaemonFile(o *Owner) string { return getString(o.DaemonFile[:]) }

// SetDaemonFile records the daemon's route config path (cut to fit).
func SetDaemonFile(o *Owner, path string) { putString(o.DaemonFile[:], path) }
