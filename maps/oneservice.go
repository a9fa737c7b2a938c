package maps

import (
	"fmt"

	"github.com/tcpshift/tcpshift/bpf"
)

// oneService reads the service named name as ServiceList reads it, but
// only that one: the descriptions until its own, the endpoint places until
// all of its endpoints were found, then its endpoints' addresses and
// health one lookup each. A weight change reads its service this way.
func (s *Set) oneService(name string) (*Service, bool, error) {
	var (
		seen  int
		found = -1
	)
	ids, metas, err := readUntil[uint32](s, s.Services, func(read []bpf.TcpshiftServiceMeta) bool {
		for ; seen < len(read); seen++ {
			if getName(read[seen].Name) == name {
				found = seen
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, false, fmt.Errorf("read services: %w", err)
	}
	for ; found < 0 && seen < len(metas); seen++ { // the map ended first
		if getName(metas[seen].Name) == name {
			found = seen
		}
	}
	if found < 0 {
		return nil, false, nil
	}
	svc := fromMeta(ids[found], &metas[found])
	total := 0
	for _, sub := range svc.Subsets {
		total += len(sub.Endpoints)
	}
	// The places are read in batches up to the last of its endpoints.
	mine, scanned := 0, 0
	places, err := readArrayUntil(s, s.EndpointPlaces, func(read []bpf.TcpshiftEndpointPlace) bool {
		for ; scanned < len(read); scanned++ {
			if read[scanned].Used != 0 && read[scanned].Service == svc.ID {
				mine++
			}
		}
		return mine >= total
	})
	if err != nil {
		return nil, false, fmt.Errorf("read endpoint places: %w", err)
	}
	for epID, pl := range places {
		if pl.Used == 0 || pl.Service != svc.ID || int(pl.Subset) >= len(svc.Subsets) {
			continue
		}
		sub := &svc.Subsets[pl.Subset]
		if int(pl.Index) >= len(sub.Endpoints) || sub.Endpoints[pl.Index].ID != noID {
			return nil, false, fmt.Errorf("service %s subset %s: endpoint id %d claims place %d, which is out of range or taken", svc.Name, sub.Name, epID, pl.Index)
		}
		var e bpf.TcpshiftEndpoint
		if err := s.lookup(s.Endpoints, uint32(epID), &e); err != nil {
			return nil, false, fmt.Errorf("read endpoint %d: %w", epID, err)
		}
		ep := Endpoint{ID: uint32(epID), Addr: endpointAddr(e)}
		if s.EndpointHealth != nil { // state pinned by a build without health
			if err := s.lookup(s.EndpointHealth, uint32(epID), &ep.Health); err != nil {
				return nil, false, fmt.Errorf("read health of endpoint %d: %w", epID, err)
			}
		}
		sub.Endpoints[pl.Index] = ep
	}
	for _, sub := range svc.Subsets {
		for j, ep := range sub.Endpoints {
			if ep.ID == noID {
				return nil, false, fmt.Errorf("service %s subset %s: no endpoint id holds place %d of %d", svc.Name, sub.Name, j, len(sub.Endpoints))
			}
		}
	}
	if err := s.readFile(svc); err != nil {
		return nil, false, err
	}
	return svc, true, nil
}
