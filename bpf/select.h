/* Endpoint selection shared by every hook: one routine, whatever the mode. */
#pragma once

#include "tcpshift.h"

/* Types BTF must describe in full although no map holds them directly:
 * clang writes struct table only as a forward declaration when it is nested
 * as deep as an inner map's value, conn_bytes is only ever written to a
 * seq_file, and enum filter_part only names connect_filter's parts. */
struct layouts {
	struct table table;
	struct conn_bytes conn_bytes;
	struct listen_ids listen_ids;
	enum filter_part filter_part;
};

/* MAX_SUBSET_ENDPOINTS, which no map size carries, for userspace to check
 * its own copy against (maps.MaxSubsetEndpoints). */
volatile const __u32 max_subset_endpoints = MAX_SUBSET_ENDPOINTS;

/* Never used at run time (the loader drops it): it carries struct layouts. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct layouts);
} layouts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__uint(max_entries, 1);
		__type(key, __u32);
		__type(value, struct table);
	});
} tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES * 2);
	__type(key, struct frontend_key);
	__type(value, struct frontend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} frontends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct endpoint_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoint_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct service_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} service_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_AFFINITIES);
	__type(key, struct affinity_key);
	__type(value, struct affinity);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} affinities SEC(".maps");

/* The endpoint ids of every table, a subset's in count slots from its first
 * (see struct subset_slots). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LIST_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lists SEC(".maps");

/* Each endpoint id's place in its subset's ids (from first) in the newest
 * table written for a service with affinity: a client's endpoint is found
 * in a table whose ids moved, in one lookup. Written only for such
 * services; a stale place is harmless, as the slot it names is checked. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoint_index SEC(".maps");

/* Ports that some frontend uses, a bit each: the hooks run for every
 * connection of the namespace or cgroup, and most are not a service's, so
 * they first test one bit instead of looking up a hash map. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536 / 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} frontend_ports SEC(".maps");

/* frontend_port reports whether a port (host byte order) has a frontend. */
static __always_inline int frontend_port(__u16 port)
{
	__u32 word = port >> 6;
	__u64 *bits = bpf_map_lookup_elem(&frontend_ports, &word);
	return bits && (*bits & (1ULL << (port & 63)));
}

/* The connect filter (see FILTER_WORDS), tested once a port has a
 * frontend. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 + FILTER_PARTS * FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} connect_filter SEC(".maps");

/* filter_hash is a frontend's bit in the filter's address part: the high
 * bits of a multiplicative hash of its address words (as in frontend_key)
 * folded together and its port. maps/filter.go computes the same. */
static __always_inline __u32 filter_hash(const __u32 addr[4], __u16 port)
{
	__u64 h = ((__u64)(addr[0] ^ addr[1] ^ addr[2] ^ addr[3]) << 16 | port) * FILTER_HASH_MUL;
	return h >> (64 - FILTER_BITS);
}

static __always_inline int filter_bit(__u32 part, __u32 bit)
{
	bit &= (1 << FILTER_BITS) - 1;
	__u32 word = 1 + part * FILTER_WORDS + (bit >> 6);
	__u64 *bits = bpf_map_lookup_elem(&connect_filter, &word);
	return bits && (*bits & (1ULL << (bit & 63)));
}

/* maybe_connect_frontend reports whether addr:port (like frontend_key's),
 * on a port frontend_port passed, may be a connect-mode frontend: 0 is
 * sure, 1 asks for the frontends hash. Three words read. */
static __always_inline int maybe_connect_frontend(const __u32 addr[4], __u16 port)
{
	__u32 ready = FILTER_READY;
	__u64 *written = bpf_map_lookup_elem(&connect_filter, &ready);
	if (!written || !*written)
		return 1;
	return filter_bit(FILTER_PORTS, port) || filter_bit(FILTER_ADDRS, filter_hash(addr, port));
}

/* A chosen subset: the endpoints to try, starting at turn. */
struct choice {
	struct subset_slots *subset;
	__u32 index; /* of the subset */
	__u32 turn;
	__u32 slot; /* of lists, of the endpoint endpoint_at returned last */
};

/* find_frontend returns the service for a destination: the exact address,
 * then the wildcard of its family, then the dual-stack wildcard ::. */
static __always_inline struct frontend *find_frontend(struct frontend_key *key)
{
	struct frontend *fe = bpf_map_lookup_elem(&frontends, key);
	if (fe)
		return fe;

	int mapped = key->addr[0] == 0 && key->addr[1] == 0 &&
		     key->addr[2] == bpf_htonl(0xffff);
	key->addr[3] = 0;
	if (!mapped) {
		key->addr[0] = key->addr[1] = key->addr[2] = 0;
		return bpf_map_lookup_elem(&frontends, key);
	}
	fe = bpf_map_lookup_elem(&frontends, key);
	if (fe)
		return fe;
	key->addr[2] = 0;
	return bpf_map_lookup_elem(&frontends, key);
}

/* service_table returns the table in force for a service, or NULL. */
static __always_inline struct table *service_table(__u32 service)
{
	__u32 zero = 0;
	void *inner = bpf_map_lookup_elem(&tables, &service);
	if (!inner)
		return NULL;
	return bpf_map_lookup_elem(inner, &zero);
}

/* choose picks the subset for a new connection and the endpoint turn within
 * it. Round-robin takes the next position of the precomputed smooth weighted
 * sequence, so every window of len connections splits exactly by weight. */
static __always_inline int choose(struct table *t, struct choice *c)
{
	__u32 pos, idx;
	if (t->len == 0)
		return -1;
	if (t->policy == POLICY_RANDOM)
		pos = bpf_get_prandom_u32() % t->len;
	else
		pos = __sync_fetch_and_add(&t->next, 1) % t->len;
	if (pos >= TABLE_SLOTS)
		return -1;
	idx = t->seq[pos];
	if (idx >= MAX_SUBSETS)
		return -1;

	c->index = idx;
	c->subset = &t->subsets[idx];
	if (c->subset->count == 0)
		return -1;
	if (c->subset->count == 1)
		c->turn = 0; /* no turns to take: spare the shared counter */
	else if (t->policy == POLICY_RANDOM)
		c->turn = bpf_get_prandom_u32();
	else
		c->turn = __sync_fetch_and_add(&c->subset->turn, 1);
	return 0;
}

/* endpoint_at returns the endpoint id for the i-th try after the chosen
 * turn: one array lookup, whatever the subset's size. */
static __always_inline int endpoint_at(struct choice *c, __u32 i, __u32 *id)
{
	__u32 count = c->subset->count;
	if (count == 0 || count > MAX_SUBSET_ENDPOINTS || i >= count)
		return -1;
	__u32 slot = c->subset->first + (c->turn + i) % count;
	__u32 *e = bpf_map_lookup_elem(&lists, &slot);
	if (!e)
		return -1;
	c->slot = slot;
	*id = *e;
	return 0;
}

/* listed reports whether a subset's ids hold id at slot. */
static __always_inline int listed(struct subset_slots *sub, __u32 slot, __u32 id)
{
	if (slot - sub->first >= sub->count) /* unsigned: below first too */
		return 0;
	__u32 *e = bpf_map_lookup_elem(&lists, &slot);
	return e && *e == id;
}

/* sticky returns the endpoint a client is pinned to, if it is still fresh
 * and still in the table with a weight above 0; stale entries are dropped.
 * The endpoint is looked for where it was last chosen, then at its place in
 * the newest table written (its subset's ids may have moved): two lookups at
 * most, whatever the subset's size. */
static __always_inline int sticky(struct table *t, struct affinity_key *k, __u32 *id)
{
	if (t->affinity_ttl == 0)
		return -1;
	struct affinity *a = bpf_map_lookup_elem(&affinities, k);
	if (!a)
		return -1;
	__u64 now = bpf_ktime_get_ns();
	__u32 idx = a->subset, ep = a->endpoint;
	if (a->expires < now || idx >= MAX_SUBSETS)
		goto drop;
	struct subset_slots *sub = &t->subsets[idx];
	if (sub->positions == 0)
		goto drop;
	if (!listed(sub, a->slot, ep)) {
		__u32 *place = bpf_map_lookup_elem(&endpoint_index, &ep);
		if (!place || *place >= sub->count)
			goto drop;
		__u32 slot = sub->first + *place;
		if (!listed(sub, slot, ep))
			goto drop;
		a->slot = slot;
	}
	*id = ep;
	a->expires = now + t->affinity_ttl;
	return 0;
drop:
	bpf_map_delete_elem(&affinities, k);
	return -1;
}

static __always_inline void stick(struct table *t, struct affinity_key *k, struct choice *c, __u32 id)
{
	if (t->affinity_ttl == 0)
		return;
	struct affinity a = {
		.endpoint = id,
		.subset = c->index,
		.slot = c->slot,
		.expires = bpf_ktime_get_ns() + t->affinity_ttl,
	};
	bpf_map_update_elem(&affinities, k, &a, BPF_ANY);
}

/* count_assigned counts a connection given to an endpoint and returns the
 * endpoint's generation, for the connection's accounting tag. */
static __always_inline __u32 count_assigned(__u32 endpoint)
{
	struct endpoint_stats *s = bpf_map_lookup_elem(&endpoint_counts, &endpoint);
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->connections, 1);
	return s->generation;
}

static __always_inline void count_refused(__u32 service)
{
	struct service_stats *s = bpf_map_lookup_elem(&service_counts, &service);
	if (s)
		__sync_fetch_and_add(&s->refused, 1);
}

/* count_repicked counts a client moved off an endpoint with no listener. */
static __always_inline void count_repicked(__u32 endpoint)
{
	struct endpoint_stats *s = bpf_map_lookup_elem(&endpoint_counts, &endpoint);
	if (s)
		__sync_fetch_and_add(&s->repicked, 1);
}

static __always_inline void count_no_socket(__u32 service)
{
	struct service_stats *s = bpf_map_lookup_elem(&service_counts, &service);
	if (s)
		__sync_fetch_and_add(&s->no_socket, 1);
}
