package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/state"
)

// ErrNotLoaded is returned by Open when no tcpshift state is pinned in the
// directory: nothing was applied in this network namespace yet.
var ErrNotLoaded = errors.New("tcpshift is not loaded in this network namespace (run tcpshift apply first)")

// Set holds tcpshift's maps of one network namespace.
type Set struct {
	Frontends      *ebpf.Map
	Tables         *ebpf.Map
	Sockets        *ebpf.Map
	Endpoints      *ebpf.Map
	EndpointCounts *ebpf.Map
	ServiceCounts  *ebpf.Map
	Services       *ebpf.Map
	Conns          *ebpf.Map // sk_storage: a connection's endpoint tag
	EndpointHealth *ebpf.Map
	TableSwaps     *ebpf.Map
	Owners         *ebpf.Map // who the state belongs to (one entry)
	ServiceFiles   *ebpf.Map // what each service's file said
	Listeners      *ebpf.Map // endpoint ids by listening address, for sockops
	FrontendPorts  *ebpf.Map // a bit per port some frontend uses
	ConnectFilter  *ebpf.Map // which of those may be connect-mode frontends (filter.go)
	Stored         *ebpf.Map // input objects (Istio's...), as text
	Shifts         *ebpf.Map // progressive shifts, by service id
	TableVersions  *ebpf.Map // bumped with every table write (mmapable)
	Lists          *ebpf.Map // the tables' endpoint ids (see lists.go)
	EndpointIndex  *ebpf.Map // an id's place in its subset's ids, for affinity
	EndpointPlaces *ebpf.Map // an id's place in the descriptions

	j     *journal             // the transaction in progress, if any
	log   *state.Journal       // every write goes through it (see tx)
	names map[*ebpf.Map]string // the fields' pinned names (see name)
	lazy  *lazyMaps            // maps opened as first used (OpenLazy)
}

// FromCollection wraps the maps of a loaded collection. The Set shares them:
// close the collection, not the Set.
func FromCollection(c *ebpf.Collection) (*Set, error) {
	s := &Set{}
	for name, dst := range s.fields() {
		if *dst = c.Maps[name]; *dst == nil {
			return nil, fmt.Errorf("collection has no map %s", name)
		}
	}
	return s, nil
}

// Open opens the maps pinned in dir.
func Open(dir string) (*Set, error) {
	return open(dir, false)
}

// OpenPresent opens the maps pinned in dir that exist, leaving the others
// nil: for removing state that another tcpshift build pinned.
func OpenPresent(dir string) (*Set, error) {
	return open(dir, true)
}

func open(dir string, onlyPresent bool) (_ *Set, err error) {
	if _, err := os.Stat(filepath.Join(dir, bpf.TcpshiftMapServices)); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotLoaded
	}
	s := &Set{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for name, dst := range s.fields() {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		// State pinned by an older build lacks the newest maps: it can
		// still be read, and the next apply adds them.
		if (onlyPresent || optionalMaps[name]) && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		*dst = m
	}
	return s, nil
}

func (s *Set) fields() map[string]**ebpf.Map {
	return map[string]**ebpf.Map{
		bpf.TcpshiftMapFrontends: &s.Frontends, bpf.TcpshiftMapTables: &s.Tables,
		bpf.TcpshiftMapSockets: &s.Sockets, bpf.TcpshiftMapEndpoints: &s.Endpoints,
		bpf.TcpshiftMapEndpointCounts: &s.EndpointCounts,
		bpf.TcpshiftMapServiceCounts:  &s.ServiceCounts, bpf.TcpshiftMapServices: &s.Services,
		bpf.TcpshiftMapConns: &s.Conns, bpf.TcpshiftMapEndpointHealth: &s.EndpointHealth,
		bpf.TcpshiftMapTableSwaps: &s.TableSwaps,
		bpf.TcpshiftMapOwners:     &s.Owners, bpf.TcpshiftMapServiceFiles: &s.ServiceFiles,
		bpf.TcpshiftMapListeners: &s.Listeners, bpf.TcpshiftMapFrontendPorts: &s.FrontendPorts,
		bpf.TcpshiftMapConnectFilter: &s.ConnectFilter,
		bpf.TcpshiftMapObjects:       &s.Stored, bpf.TcpshiftMapShifts: &s.Shifts,
		bpf.TcpshiftMapTableVersions: &s.TableVersions,
		bpf.TcpshiftMapLists:         &s.Lists, bpf.TcpshiftMapEndpointIndex: &s.EndpointIndex,
		bpf.TcpshiftMapEndpointPlaces: &s.EndpointPlaces,
	}
}

// optionalMaps came after the first release of the pinned layout.
var optionalMaps = map[string]bool{
	bpf.TcpshiftMapOwners: true, bpf.TcpshiftMapServiceFiles: true,
	bpf.TcpshiftMapListeners: true, bpf.TcpshiftMapFrontendPorts: true,
	bpf.TcpshiftMapConnectFilter: true,
	bpf.TcpshiftMapObjects:       true, bpf.TcpshiftMapShifts: true,
	bpf.TcpshiftMapTableVersions: true,
}

// Close closes every map the Set opened.
func (s *Set) Close() error {
	s.release()
	if s.lazy != nil { // the fields are placeholders
		var err error
		if k, ok := s.raw().(*kernelMaps); ok {
			err = k.closeLast()
		}
		return errors.Join(err, s.lazy.close())
	}
	if _, ok := s.raw().(*kernelMaps); !ok {
		return nil // placeholders over other maps (OnMaps)
	}
	var errs []error
	for _, m := range s.fields() {
		if *m != nil {
			errs = append(errs, (*m).Close())
		}
	}
	return errors.Join(errs...)
}

var innerSpec = sync.OnceValues(func() (*ebpf.MapSpec, error) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	// Without the key's and value's BTF: the library would load it into
	// the kernel for every table (BPF_BTF_LOAD: ~54 of a new table's 73 µs
	// here), and a table has no field that needs it (no lock, timer or
	// kptr), so the kernel takes it in the slots of an outer map whose
	// template has BTF alike (bpf_map_meta_equal compares no BTF).
	inner := spec.Maps[bpf.TcpshiftMapTables].InnerMap.Copy()
	inner.Key, inner.Value = nil, nil
	return inner, nil
})

// SwapTable replaces a service's weight table: see SwapTables.
func (s *Set) SwapTable(svc *Service) error {
	return s.SwapTables([]*Service{svc})
}

// SwapTables replaces services' weight tables: each table's endpoint ids
// are placed in the lists map and a new inner map is filled first, so no
// connection ever sees a half-written table; then one update of the tables
// map swaps them all in. The kernel waits for running programs once per
// update of a map of maps (about 9 ms here), so ten thousand tables cost
// that once, not ten thousand times. A new table starts at the first
// position of its sequence.
func (s *Set) SwapTables(svcs []*Service) error {
	return inGroups(svcs, s.swapTables)
}

// TablesPerSwap is how many services' tables one update of the tables map
// swaps at most: each new table is an open map until it is swapped in, and
// a transaction holds every table it replaced as well.
const TablesPerSwap = 1024

// inGroups calls fn on svcs TablesPerSwap at a time, in order, until one fails.
func inGroups(svcs []*Service, fn func([]*Service) error) error {
	for len(svcs) > 0 {
		n := min(TablesPerSwap, len(svcs))
		if err := fn(svcs[:n]); err != nil {
			return err
		}
		svcs = svcs[n:]
	}
	return nil
}

// swapTables swaps one group of at most TablesPerSwap tables, never empty.
func (s *Set) swapTables(svcs []*Service) error {
	keys := make([]uint32, len(svcs))
	tables := make([]any, len(svcs))
	for i, svc := range svcs {
		t, err := svc.Table()
		if err != nil {
			return err
		}
		var head *bpf.TcpshiftTable
		version, err := s.TableVersion(svc.ID)
		switch {
		case err == nil:
			if head, err = s.tableHead(version); err != nil {
				return fmt.Errorf("service %s: %w", svc.Name, err)
			}
		case !errors.Is(err, state.ErrNotExist):
			return err
		}
		if err := s.placeLists(svc, t, head); err != nil {
			return err
		}
		if err := s.writeIndex(t); err != nil {
			return fmt.Errorf("service %s: %w", svc.Name, err)
		}
		keys[i], tables[i] = svc.ID, &t.TcpshiftTable
	}
	// Each table is filled in a new inner map first, so no connection
	// ever sees a half-written one; the journal holds the tables swapped
	// out, so a rollback puts the very same ones back.
	if err := s.tx().Swap(tablesName, keys, tables); err != nil {
		return fmt.Errorf("swap %d tables (services %s...): %w", len(svcs), svcs[0].Name, err)
	}
	for _, svc := range svcs {
		swaps, err := s.Swaps(svc.ID)
		if err != nil {
			return err
		}
		if err := s.put(s.TableSwaps, svc.ID, swaps+1); err != nil {
			return fmt.Errorf("service %s: count table swap: %w", svc.Name, err)
		}
	}
	return nil
}

// tablesName is the map of maps that holds each service's table.
const tablesName = bpf.TcpshiftMapTables

// Swaps returns how many times a service's table was replaced.
func (s *Set) Swaps(id uint32) (uint64, error) {
	var n uint64
	if err := s.lookup(s.TableSwaps, id, &n); err != nil {
		return 0, fmt.Errorf("read table swaps of service %d: %w", id, err)
	}
	return n, nil
}

// SetHealth records an endpoint's health. It changes no table: the caller
// swaps the tables of the services concerned.
func (s *Set) SetHealth(id uint32, h Health) error {
	if err := s.put(s.EndpointHealth, id, h); err != nil {
		return fmt.Errorf("write health of endpoint %d: %w", id, err)
	}
	return nil
}

// Health reads an endpoint's health.
func (s *Set) Health(id uint32) (Health, error) {
	var h Health
	if s.EndpointHealth == nil { // state pinned by a build without health
		return HealthUnchecked, nil
	}
	if err := s.lookup(s.EndpointHealth, id, &h); err != nil {
		return 0, fmt.Errorf("read health of endpoint %d: %w", id, err)
	}
	return h, nil
}

// Table reads a service's table in force with its endpoint ids. The ids of
// a table no longer in force may be reused: the table is read again until
// it stayed in force while its ids were read.
func (s *Set) Table(id uint32) (*Table, error) {
	version, err := s.TableVersion(id)
	if err != nil {
		return nil, err
	}
	for {
		t, err := s.TableAt(version)
		if err != nil {
			return nil, err
		}
		now, err := s.TableVersion(id)
		if err != nil {
			return nil, err
		}
		if now == version {
			return t, nil
		}
		version = now
	}
}

// TableVersion returns the id of the inner map holding a service's table in
// force: it changes with every swap.
func (s *Set) TableVersion(id uint32) (ebpf.MapID, error) {
	var innerID ebpf.MapID
	if err := s.lookup(s.Tables, id, &innerID); err != nil {
		return 0, fmt.Errorf("look up table %d: %w", id, err)
	}
	return innerID, nil
}

// TableAt reads the table held by one version with its endpoint ids:
// swapped tables are never rewritten, and their ids do not change while
// they are in force (see Table for one that may not be any more).
func (s *Set) TableAt(version ebpf.MapID) (*Table, error) {
	head, err := s.tableHead(version)
	if err != nil {
		return nil, err
	}
	t := &Table{TcpshiftTable: *head, Endpoints: make([][]uint32, MaxSubsets)}
	for i, sub := range t.Subsets {
		if t.Endpoints[i], err = s.readIDs(sub.First, min(sub.Count, MaxSubsetEndpoints)); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Endpoint reads an endpoint id's address and generation.
func (s *Set) Endpoint(id uint32) (netip.AddrPort, uint32, error) {
	var e bpf.TcpshiftEndpoint
	if err := s.lookup(s.Endpoints, id, &e); err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("read endpoint %d: %w", id, err)
	}
	st, err := s.EndpointStats(id)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	return endpointAddr(e), st.Generation, nil
}

// TagProxyConn marks a socket the userspace proxy is about to connect to an
// endpoint, so sockops counts it like the kernel's own connections.
func (s *Set) TagProxyConn(fd int, endpoint, generation uint32) error {
	c := bpf.TcpshiftConn{Endpoint: endpoint, Generation: generation, Flags: bpf.TcpshiftConnFlagsCONN_PROXY}
	conns, err := s.kernelMap(s.Conns)
	if err != nil {
		return err
	}
	if err := conns.Put(int32(fd), &c); err != nil {
		return fmt.Errorf("tag connection to endpoint %d: %w", endpoint, err)
	}
	return nil
}

// AddRefused counts connections to a service that the userspace proxy
// refused. The kernel never writes a proxy service's counter, so a read and
// a write suffice; the caller serializes its own calls.
func (s *Set) AddRefused(id uint32, n uint64) error {
	var st bpf.TcpshiftServiceStats
	counts, err := s.kernelMap(s.ServiceCounts)
	if err != nil {
		return err
	}
	if err := counts.Lookup(id, &st); err != nil {
		return fmt.Errorf("read service %d counters: %w", id, err)
	}
	st.Refused += n
	if err := counts.Put(id, &st); err != nil {
		return fmt.Errorf("write service %d counters: %w", id, err)
	}
	return nil
}

// WriteServices makes the kernel hold svcs: endpoint addresses and health
// first, then the tables (swapped in together), the descriptions, and the
// frontends last, so the data path only finds a service once everything it
// points at is in place. Sockets are registered separately (RegisterSocket)
// before this.
func (s *Set) WriteServices(svcs []*Service) error {
	for _, svc := range svcs {
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				if err := s.put(s.Endpoints, ep.ID, endpointValue(ep.Addr)); err != nil {
					return fmt.Errorf("service %s: write endpoint %s: %w", svc.Name, ep.Addr, err)
				}
				if err := s.SetHealth(ep.ID, ep.Health); err != nil {
					return fmt.Errorf("service %s: %w", svc.Name, err)
				}
			}
		}
	}
	if err := s.SwapTables(svcs); err != nil {
		return err
	}
	for _, svc := range svcs {
		if err := s.PutMeta(svc); err != nil {
			return err
		}
		fe := bpf.TcpshiftFrontend{Service: svc.ID, Mode: svc.Mode}
		if err := s.put(s.Frontends, FrontendKey(svc.Frontend), fe); err != nil {
			return fmt.Errorf("service %s: write frontend %s: %w", svc.Name, svc.Frontend, err)
		}
	}
	return nil
}

// PutMeta records what the user asked for, for the CLI: the description,
// and each endpoint id's place in it. Places already right are not
// rewritten, so a weight change costs one read per endpoint.
func (s *Set) PutMeta(svc *Service) error {
	m := svc.meta()
	if err := s.put(s.Services, svc.ID, &m); err != nil {
		return fmt.Errorf("service %s: write description: %w", svc.Name, err)
	}
	for i, sub := range svc.Subsets {
		for j, ep := range sub.Endpoints {
			want := bpf.TcpshiftEndpointPlace{Used: 1, Service: svc.ID, Subset: uint32(i), Index: uint32(j)}
			var have bpf.TcpshiftEndpointPlace
			if err := s.lookup(s.EndpointPlaces, ep.ID, &have); err != nil {
				return fmt.Errorf("service %s: read place of endpoint %d: %w", svc.Name, ep.ID, err)
			}
			if have == want {
				continue
			}
			if err := s.put(s.EndpointPlaces, ep.ID, &want); err != nil {
				return fmt.Errorf("service %s: write place of endpoint %d: %w", svc.Name, ep.ID, err)
			}
		}
	}
	return s.putFile(svc)
}

// DeleteFrontend stops steering connections for a frontend address.
func (s *Set) DeleteFrontend(svc *Service) error {
	if err := s.del(s.Frontends, FrontendKey(svc.Frontend)); err != nil {
		return fmt.Errorf("service %s: delete frontend: %w", svc.Name, err)
	}
	return nil
}

// DeleteServices removes services and their endpoints' addresses, counters
// and health. Their frontends are the caller's (DeleteFrontend), who knows
// whether another service takes an address over in the same change, and
// so are their endpoints' sockets (DropSocket, last).
func (s *Set) DeleteServices(svcs []*Service) error {
	if err := inGroups(svcs, s.deleteTables); err != nil {
		return err
	}
	for _, svc := range svcs {
		for _, m := range []*ebpf.Map{s.Services, s.ServiceFiles, s.Shifts} {
			if m == nil { // state pinned by an older build
				continue
			}
			if err := s.del(m, svc.ID); err != nil {
				return fmt.Errorf("service %s: delete: %w", svc.Name, err)
			}
		}
		if err := s.put(s.ServiceCounts, svc.ID, bpf.TcpshiftServiceStats{}); err != nil {
			return fmt.Errorf("service %s: reset counters: %w", svc.Name, err)
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				if err := s.ReleaseEndpoint(ep.ID); err != nil {
					return fmt.Errorf("service %s: %w", svc.Name, err)
				}
			}
		}
	}
	return nil
}

// deleteTables empties services' slots in the tables array; a rollback puts
// the very same tables back.
func (s *Set) deleteTables(svcs []*Service) error {
	var keys []uint32
	for _, svc := range svcs {
		_, err := s.TableVersion(svc.ID)
		if errors.Is(err, state.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		keys = append(keys, svc.ID)
	}
	if len(keys) == 0 {
		return nil
	}
	if err := s.tx().Swap(tablesName, keys, make([]any, len(keys))); err != nil {
		return fmt.Errorf("delete %d tables: %w", len(keys), err)
	}
	return nil
}

// RegisterSocket puts a listening socket (lookup mode) at an endpoint id.
// A slot that already holds a live socket keeps it unless replace is set
// (an id given to a new endpoint): the kernel drops closed listeners by
// itself, so a socket still there is the endpoint's own listener. In a
// transaction a filled slot is emptied again on rollback.
func (s *Set) RegisterSocket(id uint32, fd int, replace bool) error {
	var cookie uint64
	err := s.lookup(s.Sockets, id, &cookie)
	switch {
	case err == nil && !replace:
		return nil
	case err == nil:
		// A socket map cannot give a socket back, so a rollback
		// cannot restore what this replaces: drop it first, which a
		// rollback leaves dropped (the id belonged to no table).
		if err := s.DropSocket(id); err != nil {
			return err
		}
	case !errors.Is(err, state.ErrNotExist):
		return fmt.Errorf("read socket of endpoint %d: %w", id, err)
	}
	if err := s.writing(); err != nil {
		return err
	}
	if err := s.raw().Put(bpf.TcpshiftMapSockets, id, uint64(fd)); err != nil {
		return err
	}
	s.record(func() error { return s.DropSocket(id) })
	return nil
}

// DropSocket empties an endpoint id's socket slot. It cannot be undone (a
// socket map gives no socket back), so transactions drop sockets of
// released endpoints only after every other write succeeded.
func (s *Set) DropSocket(id uint32) error {
	if err := s.writing(); err != nil {
		return err
	}
	// A socket map answers EINVAL for an empty slot: connect-mode endpoints
	// never had a socket, and closed listeners leave by themselves.
	if err := s.raw().Delete(bpf.TcpshiftMapSockets, id); err != nil && !errors.Is(err, state.ErrNotExist) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("drop socket of endpoint %d: %w", id, err)
	}
	return nil
}

// ReleaseEndpoint forgets an endpoint id's address, counters and health so
// it can be given to another endpoint; its socket goes with DropSocket. The
// id starts a new generation: connections of the old endpoint still open
// stop counting against it.
func (s *Set) ReleaseEndpoint(id uint32) error {
	old, err := s.EndpointStats(id)
	if err != nil {
		return fmt.Errorf("release endpoint %d: %w", id, err)
	}
	if err := s.put(s.EndpointCounts, id, bpf.TcpshiftEndpointStats{Generation: old.Generation + 1}); err != nil {
		return fmt.Errorf("release endpoint %d: %w", id, err)
	}
	if err := s.SetHealth(id, HealthUnchecked); err != nil {
		return fmt.Errorf("release endpoint %d: %w", id, err)
	}
	if err := s.put(s.Endpoints, id, bpf.TcpshiftEndpoint{}); err != nil {
		return fmt.Errorf("release endpoint %d: %w", id, err)
	}
	if err := s.put(s.EndpointPlaces, id, bpf.TcpshiftEndpointPlace{}); err != nil {
		return fmt.Errorf("release endpoint %d: %w", id, err)
	}
	return nil
}

// ServiceList reads every service's description, sorted by name. It reads
// each map whole, in batches: a few calls for ten thousand services.
func (s *Set) ServiceList() ([]*Service, error) {
	ids, metas, err := readAll[uint32, bpf.TcpshiftServiceMeta](s, s.Services)
	if err != nil {
		return nil, fmt.Errorf("read services: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	// Ids are handed out lowest first: the places of every endpoint are
	// usually found long before the map's end, and the addresses and
	// health are read only up to the highest id found.
	total, found, last := 0, 0, 0
	for i := range metas {
		for _, sm := range metas[i].Subsets[:min(int(metas[i].SubsetCount), len(metas[i].Subsets))] {
			total += int(sm.Count)
		}
	}
	places, err := readArrayUntil(s, s.EndpointPlaces, func(read []bpf.TcpshiftEndpointPlace) bool {
		for id := found; id < len(read); id++ {
			if read[id].Used != 0 {
				last = id
			}
		}
		found = len(read)
		n := 0
		for _, pl := range read {
			if pl.Used != 0 {
				n++
			}
		}
		return n >= total
	})
	if err != nil {
		return nil, fmt.Errorf("read endpoint places: %w", err)
	}
	addrs, err := readArrayUntil(s, s.Endpoints, func(read []bpf.TcpshiftEndpoint) bool { return len(read) > last })
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	var health []Health
	if s.EndpointHealth != nil { // state pinned by a build without health
		if health, err = readArrayUntil(s, s.EndpointHealth, func(read []Health) bool { return len(read) > last }); err != nil {
			return nil, fmt.Errorf("read endpoint health: %w", err)
		}
	}
	byID := make(map[uint32]*Service, len(ids))
	out := make([]*Service, 0, len(ids))
	for i, id := range ids {
		svc := fromMeta(id, &metas[i])
		byID[id] = svc
		out = append(out, svc)
	}
	for epID, pl := range places {
		svc := byID[pl.Service]
		if pl.Used == 0 || svc == nil || int(pl.Subset) >= len(svc.Subsets) || epID >= len(addrs) {
			continue
		}
		sub := &svc.Subsets[pl.Subset]
		if int(pl.Index) >= len(sub.Endpoints) || sub.Endpoints[pl.Index].ID != noID {
			return nil, fmt.Errorf("service %s subset %s: endpoint id %d claims place %d, which is out of range or taken", svc.Name, sub.Name, epID, pl.Index)
		}
		ep := Endpoint{ID: uint32(epID), Addr: endpointAddr(addrs[epID])}
		if epID < len(health) {
			ep.Health = health[epID]
		}
		sub.Endpoints[pl.Index] = ep
	}
	for _, svc := range out {
		for _, sub := range svc.Subsets {
			for j, ep := range sub.Endpoints {
				if ep.ID == noID {
					return nil, fmt.Errorf("service %s subset %s: no endpoint id holds place %d of %d", svc.Name, sub.Name, j, len(sub.Endpoints))
				}
			}
		}
		if err := s.readFile(svc); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b *Service) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Service finds a service by name; ok is false when there is none. It
// reads that service only (see oneService).
func (s *Set) Service(name string) (svc *Service, ok bool, err error) {
	return s.oneService(name)
}

// noID marks an endpoint place no id filled yet.
const noID = ^uint32(0)

// fromMeta is a service as its description gives it; its endpoints are left
// to fill from the endpoint places.
func fromMeta(id uint32, m *bpf.TcpshiftServiceMeta) *Service {
	svc := &Service{
		ID:           id,
		Name:         getName(m.Name),
		Frontend:     frontendAddr(m.Frontend),
		Mode:         m.Mode,
		Policy:       m.Policy,
		LocalRoute:   m.Flags&bpf.TcpshiftServiceFlagsSERVICE_LOCAL_ROUTE != 0,
		Auto:         m.Flags&bpf.TcpshiftServiceFlagsSERVICE_AUTO != 0,
		NoFailover:   m.Flags&bpf.TcpshiftServiceFlagsSERVICE_NO_FAILOVER != 0,
		NoAccounting: m.Flags&bpf.TcpshiftServiceFlagsSERVICE_NO_ACCOUNTING != 0,
		Reason:       getString(m.Reason[:]),

		AffinityTTL: time.Duration(m.AffinityTtl),
	}
	for _, sm := range m.Subsets[:min(int(m.SubsetCount), len(m.Subsets))] {
		sub := Subset{Name: getName(sm.Name), Weight: sm.Weight, FileWeight: sm.Weight}
		for range min(int(sm.Count), MaxSubsetEndpoints) {
			sub.Endpoints = append(sub.Endpoints, Endpoint{ID: noID})
		}
		svc.Subsets = append(svc.Subsets, sub)
	}
	return svc
}

// EndpointStats returns an endpoint's counters: connections assigned, and
// from sockops the active ones and the bytes of the closed ones.
func (s *Set) EndpointStats(id uint32) (bpf.TcpshiftEndpointStats, error) {
	var st bpf.TcpshiftEndpointStats
	if err := s.lookup(s.EndpointCounts, id, &st); err != nil {
		return st, fmt.Errorf("read endpoint %d counters: %w", id, err)
	}
	return st, nil
}

// ServiceStats returns a service's counters: connections refused, and
// lookups that found no listening socket.
func (s *Set) ServiceStats(id uint32) (bpf.TcpshiftServiceStats, error) {
	var st bpf.TcpshiftServiceStats
	if err := s.lookup(s.ServiceCounts, id, &st); err != nil {
		return st, fmt.Errorf("read service %d counters: %w", id, err)
	}
	return st, nil
}
