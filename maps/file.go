package maps

import (
	"errors"
	"fmt"
	"time"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/state"
)

// putFile records what the route config said about a service beyond what
// selection needs (service_files), for status, export and the daemon.
func (s *Set) putFile(svc *Service) error {
	if s.ServiceFiles == nil { // state pinned by an older build, read-only
		return nil
	}
	var f bpf.TcpshiftServiceFile
	for i, sub := range svc.Subsets {
		f.Weights[i] = sub.FileWeight
	}
	if svc.Claim {
		f.Flags |= bpf.TcpshiftServiceFileFlagsFILE_CLAIM
	}
	if c := svc.Checks; c != nil {
		f.Flags |= bpf.TcpshiftServiceFileFlagsFILE_HEALTH
		if c.Passive {
			f.Flags |= bpf.TcpshiftServiceFileFlagsFILE_HEALTH_PASSIVE
		}
		f.HealthInterval, f.HealthTimeout = uint64(c.Interval), uint64(c.Timeout)
		f.HealthRise, f.HealthFall = c.Rise, c.Fall
	}
	putString(f.Origin[:], svc.Origin)
	if err := s.put(s.ServiceFiles, svc.ID, &f); err != nil {
		return fmt.Errorf("service %s: write file settings: %w", svc.Name, err)
	}
	return nil
}

// readFile fills in what putFile recorded. Without a record (state of an
// older build) the file's weights are the weights in force.
func (s *Set) readFile(svc *Service) error {
	if s.ServiceFiles == nil {
		return nil
	}
	var f bpf.TcpshiftServiceFile
	err := s.lookup(s.ServiceFiles, svc.ID, &f)
	if errors.Is(err, state.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("service %s: read file settings: %w", svc.Name, err)
	}
	for i := range svc.Subsets {
		svc.Subsets[i].FileWeight = f.Weights[i]
	}
	svc.Claim = f.Flags&bpf.TcpshiftServiceFileFlagsFILE_CLAIM != 0
	svc.Origin = getString(f.Origin[:])
	if f.Flags&bpf.TcpshiftServiceFileFlagsFILE_HEALTH != 0 {
		svc.Checks = &Checks{
			Interval: time.Duration(f.HealthInterval), Timeout: time.Duration(f.HealthTimeout),
			Rise: f.HealthRise, Fall: f.HealthFall,
			Passive: f.Flags&bpf.TcpshiftServiceFileFlagsFILE_HEALTH_PASSIVE != 0,
		}
	}
	return nil
}
