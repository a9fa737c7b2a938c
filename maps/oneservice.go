package maps

import (
	"fmt"

	"github.com/tcpshift/tcpshift/bpf"
)

// oneService reads the service named name as ServiceList reads it, but
// only that one: the descriptions until its own, the endpoint places until
// all of its endpoints were found, then its endpoints' addresses and
// health. A weight change reads its service this way.
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
	var mine []uint32
	scanned := 0
	places, err := readArrayUntil(s, s.EndpointPlaces, func(read []bpf.TcpshiftEndpointPlace) bool {
		for ; scanned < len(read); scanned++ {
			if read[scanned].Used != 0 && read[scanned].Service == svc.ID {
				mine = append(mine, uint32(scanned))
			}
		}
		return len(mine) >= total
	})
	if err != nil {
		return nil, false, fmt.Errorf("read endpoint places: %w", err)
	}
	for ; scanned < len(places); scanned++ { // the map ended first
		if places[scanned].Used != 0 && places[scanned].Service == svc.ID {
			mine = append(mine, uint32(scanned))
		}
	}
	eps, err := s.readEndpoints(mine)
	if err != nil {
		return nil, false, fmt.Errorf("service %s: %w", svc.Name, err)
	}
	for i, id := range mine {
		pl := places[id]
		if int(pl.Subset) >= len(svc.Subsets) {
			continue
		}
		sub := &svc.Subsets[pl.Subset]
		if int(pl.Index) >= len(sub.Endpoints) || sub.Endpoints[pl.Index].ID != noID {
			return nil, false, fmt.Errorf("service %s subset %s: endpoint id %d claims place %d, which is out of range or taken", svc.Name, sub.Name, id, pl.Index)
		}
		sub.Endpoints[pl.Index] = eps[i]
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

// fewEndpoints is up to how many endpoints are read one lookup each; more
// are read in batches of the arrays up to the highest id (a lookup costs
// about what a batch call does).
const fewEndpoints = 8

// readEndpoints reads the addresses and health of ids (ascending).
func (s *Set) readEndpoints(ids []uint32) ([]Endpoint, error) {
	eps := make([]Endpoint, len(ids))
	if len(ids) == 0 {
		return eps, nil
	}
	if len(ids) <= fewEndpoints {
		for i, id := range ids {
			var e bpf.TcpshiftEndpoint
			if err := s.lookup(s.Endpoints, id, &e); err != nil {
				return nil, fmt.Errorf("read endpoint %d: %w", id, err)
			}
			eps[i] = Endpoint{ID: id, Addr: endpointAddr(e)}
			if s.EndpointHealth != nil { // state pinned by a build without health
				if err := s.lookup(s.EndpointHealth, id, &eps[i].Health); err != nil {
					return nil, fmt.Errorf("read health of endpoint %d: %w", id, err)
				}
			}
		}
		return eps, nil
	}
	last := int(ids[len(ids)-1])
	addrs, err := readArrayUntil(s, s.Endpoints, func(read []bpf.TcpshiftEndpoint) bool { return len(read) > last })
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	var health []Health
	if s.EndpointHealth != nil {
		if health, err = readArrayUntil(s, s.EndpointHealth, func(read []Health) bool { return len(read) > last }); err != nil {
			return nil, fmt.Errorf("read endpoint health: %w", err)
		}
	}
	for i, id := range ids {
		if int(id) >= len(addrs) {
			return nil, fmt.Errorf("endpoint %d beyond the endpoints map (%d)", id, len(addrs))
		}
		eps[i] = Endpoint{ID: id, Addr: endpointAddr(addrs[id])}
		if int(id) < len(health) {
			eps[i].Health = health[id]
		}
	}
	return eps, nil
}
