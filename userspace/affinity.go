package userspace

import (
	"net/netip"
	"sync"
	"time"
)

// maxAffinities bounds the clients remembered per proxy, like the kernel's
// LRU map; beyond it expired entries are dropped, then the oldest.
const maxAffinities = 65536

type affinityKey struct {
	service uint32
	client  netip.Addr
}

type affinity struct {
	endpoint uint32
	subset   int
	expires  time.Time
}

// affinities keeps a client (its source address) on its endpoint while it
// reconnects within the service's TTL, as the sk_lookup program does.
type affinities struct {
	mu sync.Mutex
	m  map[affinityKey]affinity
}

// get returns the client's endpoint if fresh and still reachable in t, and
// refreshes it; a stale entry is dropped.
func (a *affinities) get(t *Table, k affinityKey, now time.Time) (Endpoint, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[k]
	if !ok {
		return Endpoint{}, false
	}
	if ep, found := t.Endpoint(e.endpoint); found && now.Before(e.expires) && t.Has(e.subset, e.endpoint) {
		e.expires = now.Add(time.Duration(t.AffinityTTL()))
		a.m[k] = e
		return ep, true
	}
	delete(a.m, k)
	return Endpoint{}, false
}

func (a *affinities) set(t *Table, k affinityKey, subset int, id uint32, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[affinityKey]affinity{}
	}
	if len(a.m) >= maxAffinities {
		a.prune(now)
	}
	a.m[k] = affinity{endpoint: id, subset: subset, expires: now.Add(time.Duration(t.AffinityTTL()))}
}

func (a *affinities) prune(now time.Time) {
	var oldest affinityKey
	var oldestAt time.Time
	for k, e := range a.m {
		if now.After(e.expires) {
			delete(a.m, k)
		} else if oldestAt.IsZero() || e.expires.Before(oldestAt) {
			oldest, oldestAt = k, e.expires
		}
	}
	if len(a.m) >= maxAffinities {
		delete(a.m, oldest)
	}
}
