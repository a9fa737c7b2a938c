/* Endpoint selection shared by every hook: one routine, whatever the mode. */
#pragma once

#include "tcpshift.h"

/* Never used at run time (the loader drops it): it gives struct table a full
 * BTF definition, which clang writes only as a forward declaration when the
 * type is nested as deep as an inner map's value. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct table);
} table_layout SEC(".maps");

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

/* A chosen subset: the endpoints to try, starting at turn. */
struct choice {
	struct subset_slots *subset;
	__u32 turn;
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

/* choose picks the subset for a new connection and the endpoint turn within
 * it. Round-robin takes the next position of the precomputed smooth weighted
 * sequence, so every window of len connections splits exactly by weight. */
static __always_inline int choose(__u32 service, struct choice *c)
{
	struct table *t;
	__u32 zero = 0, pos, idx;
	void *inner = bpf_map_lookup_elem(&tables, &service);
	if (!inner)
		return -1;
	t = bpf_map_lookup_elem(inner, &zero);
	if (!t || t->len == 0)
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

	c->subset = &t->subsets[idx];
	if (c->subset->count == 0)
		return -1;
	if (t->policy == POLICY_RANDOM)
		c->turn = bpf_get_prandom_u32();
	else
		c->turn = __sync_fetch_and_add(&c->subset->turn, 1);
	return 0;
}

/* endpoint_at returns the endpoint id for the i-th try after the chosen turn. */
static __always_inline int endpoint_at(struct choice *c, __u32 i, __u32 *id)
{
	__u32 count = c->subset->count;
	if (count == 0 || count > MAX_SUBSET_ENDPOINTS || i >= count)
		return -1;
	__u32 slot = (c->turn + i) % count;
	/* clang knows slot < count <= MAX and would drop the check below, but
	 * the verifier does not follow the modulo: hide slot's origin. */
	asm volatile("" : "+r"(slot));
	if (slot >= MAX_SUBSET_ENDPOINTS)
		return -1;
	*id = c->subset->endpoints[slot];
	return 0;
}

static __always_inline void count_assigned(__u32 endpoint)
{
	struct endpoint_stats *s = bpf_map_lookup_elem(&endpoint_counts, &endpoint);
	if (s)
		__sync_fetch_and_add(&s->connections, 1);
}

static __always_inline void count_refused(__u32 service)
{
	struct service_stats *s = bpf_map_lookup_elem(&service_counts, &service);
	if (s)
		__sync_fetch_and_add(&s->refused, 1);
}
