/* Flow consistency for sk_lookup: a handshake answered with a SYN cookie has
 * no socket until its last ACK, which runs sk_lookup again and must reach
 * the endpoint chosen for the SYN (another listener refuses the cookie)
 * without being counted again. Those choices are kept in a fixed array of
 * small buckets: no allocation and bounded state. Handshakes that get a
 * request socket (every one while no SYN queue overflows) need none of it:
 * their later packets find that socket before sk_lookup runs. */
#pragma once

#include "tcpshift.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FLOW_BUCKETS);
	__type(key, __u32);
	__type(value, struct flow_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flow_states SEC(".maps");

/* Keys the 4-tuple hash so that nobody outside can aim tuples at one
 * bucket; set by the loader. */
volatile const __u64 flow_seed = 0;

/* flow_now is the clock of flow entries, in units of 2^20 ns (about a ms). */
static __always_inline __u32 flow_now(void)
{
	return bpf_ktime_get_coarse_ns() >> 20;
}

#define FLOW_TTL ((__u32)(FLOW_TTL_NS >> 20))

/* A way being written: readers skip it, writers do not take it. */
#define FLOW_BUSY (~0ULL)

/* A connection's addresses as sk_lookup and sockops both see them: local is
 * the frontend the client dialled, addresses like frontend_key.addr. */
struct tuple {
	__u32 local[4];
	__u32 remote[4];
	__u32 ports; /* local << 16 | remote, host byte order */
};

static __always_inline __u64 mix(__u64 h, __u32 w)
{
	h ^= w;
	h *= 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

/* flow_tag hashes a tuple; never 0 (free) nor FLOW_BUSY. */
static __always_inline __u64 flow_tag(const struct tuple *t)
{
	__u64 h = flow_seed;
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = mix(h, t->local[i]);
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = mix(h, t->remote[i]);
	h = mix(h, t->ports);
	h ^= h >> 32;
	if (h == 0 || h == FLOW_BUSY)
		h = 1;
	return h;
}

static __always_inline struct flow_bucket *flow_bucket(__u64 tag)
{
	__u32 i = (__u32)tag & (FLOW_BUCKETS - 1);
	return bpf_map_lookup_elem(&flows, &i);
}

/* flow_find returns the handshake's entry if it is fresh, or NULL. */
static __always_inline struct flow *flow_find(struct flow_bucket *b, __u64 tag, __u32 now)
{
#pragma unroll
	for (int i = 0; i < FLOW_WAYS; i++) {
		struct flow *f = &b->ways[i];
		if (f->tag == tag && (__u32)(now - f->stamp) < FLOW_TTL)
			return f;
	}
	return NULL;
}

/* flow_remember keeps a choice in the bucket's free, stale or oldest way.
 * A way is claimed by compare-and-swap (marked busy while it is written),
 * so two CPUs never mix their entries; if every try loses a race the choice
 * is not kept, which costs that one handshake its consistency, nothing more. */
static __always_inline void flow_remember(struct flow_bucket *b, __u64 tag, __u32 now, __u32 endpoint)
{
	struct flow *pick = NULL;
	__u32 oldest_age = 0;
#pragma unroll
	for (int i = 0; i < FLOW_WAYS; i++) {
		struct flow *f = &b->ways[i];
		__u64 seen = f->tag;
		if (seen == FLOW_BUSY)
			continue;
		if (seen == 0 || seen == tag || (__u32)(now - f->stamp) >= FLOW_TTL) {
			pick = f;
			break;
		}
		if ((__u32)(now - f->stamp) >= oldest_age) {
			oldest_age = now - f->stamp;
			pick = f;
		}
	}
	if (!pick)
		return;
	__u64 seen = pick->tag;
	if (seen == FLOW_BUSY || __sync_val_compare_and_swap(&pick->tag, seen, FLOW_BUSY) != seen)
		return;
	pick->stamp = now;
	pick->endpoint = endpoint;
	__sync_lock_test_and_set(&pick->tag, tag);
}

static __always_inline struct flow_state *flow_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&flow_states, &zero);
}

/* cookies_recent reports whether a listener may have sent a SYN cookie in
 * the last FLOW_TTL: only then can a lookup be a handshake's last ACK. The
 * common case reads one shared, rarely written word. */
static __always_inline int cookies_recent(struct flow_state *st, __u32 *now)
{
	if (!st || st->last_cookie == 0)
		return 0;
	*now = flow_now();
	return (__u32)(*now - st->last_cookie) < FLOW_TTL;
}

static __always_inline void note_cookie(struct flow_state *st, __u32 now)
{
	if (st && st->last_cookie != now)
		st->last_cookie = now ? now : 1;
}
