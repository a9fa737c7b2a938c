/* Accounting: which endpoint every connection belongs to, how many are
 * active, and the bytes they moved. The selection tags a connection with
 * its endpoint; sockops counts it when it is established and when it
 * closes. A service with accounting off is never tagged for counting. */
#pragma once

#include "tcpshift.h"
#include "select.h"
#include "kernel.h"

/* Connections of ours (struct conn), with their sockets: set by the connect
 * hooks, by sockops for lookup mode (cloned from the backend's listener), or
 * by userspace (a socket fd as the key): the proxy before it connects, the
 * loader on listeners it registers. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conns SEC(".maps");

/* counted reports whether sockops counts a tagged connection. */
static __always_inline int counted(struct conn *c)
{
	return c->flags & (CONN_ACCOUNT | CONN_PROXY);
}

/* current returns the endpoint's counters if the tag is not stale: an id
 * released and given to another endpoint starts a new generation. */
static __always_inline struct endpoint_stats *current(struct conn *c)
{
	__u32 id = c->endpoint;
	struct endpoint_stats *s = bpf_map_lookup_elem(&endpoint_counts, &id);
	if (!s || s->generation != c->generation)
		return NULL;
	return s;
}

/* watch_state asks for a socket's state changes, to see it close, unless
 * it asked already (a counted client's since its SYN). */
static __always_inline void watch_state(struct bpf_sock_ops *ctx)
{
	__u32 cb_flags = ctx->bpf_sock_ops_cb_flags;
	if (!(cb_flags & BPF_SOCK_OPS_STATE_CB_FLAG))
		bpf_sock_ops_cb_flags_set(ctx, cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* established counts a tagged connection as active and asks for its state
 * changes, to see it close. The proxy's connections are counted as assigned
 * here; the selection counted the others when it chose. */
static __always_inline void established(struct bpf_sock_ops *ctx, struct conn *c)
{
	struct endpoint_stats *s = current(c);
	if (!s || !counted(c) || c->flags & CONN_COUNTED)
		return;
	c->flags |= CONN_COUNTED;
	if (c->flags & CONN_PROXY)
		__sync_fetch_and_add(&s->connections, 1);
	__sync_fetch_and_add(&s->active, 1);
	watch_state(ctx);
}

/* closed moves a counted connection from active to closed and adds its
 * bytes, once: from is the state it closed from. Straight from established
 * to closed is a reset, sent or received (an orderly close passes through
 * the FIN states); one closed by a socket destroy (tcpshift rebalance,
 * through its BPF iterator or through sock_diag) is counted in rebalanced
 * too: sockops sees both, so both are counted once, here. On the endpoint's
 * own socket (lookup mode) received bytes went towards the endpoint; on a
 * client's or the proxy's socket, sent bytes did. One read of the socket
 * and of the endpoint's counters serves all of it. */
static __always_inline void closed(struct bpf_sock *sk, struct conn *c, __u32 from)
{
	if (!(c->flags & CONN_COUNTED))
		return;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	c->flags &= ~CONN_COUNTED;
	struct endpoint_stats *s = current(c);
	if (!s)
		return;
	__u64 sent, received;
	payload(tp, &sent, &received);
	if (from == BPF_TCP_ESTABLISHED)
		__sync_fetch_and_add(&s->resets, 1);
	if (destroyed(tp))
		__sync_fetch_and_add(&s->rebalanced, 1);
	__sync_fetch_and_add(&s->active, -1);
	__sync_fetch_and_add(&s->closed, 1);
	if (c->flags & CONN_SERVER) {
		__sync_fetch_and_add(&s->bytes_in, received);
		__sync_fetch_and_add(&s->bytes_out, sent);
	} else {
		__sync_fetch_and_add(&s->bytes_in, sent);
		__sync_fetch_and_add(&s->bytes_out, received);
	}
}

/* connect_failed counts a tagged connect that ended before it was
 * established: refused, timed out or reset during the handshake. Once: the
 * tag remembers it (a connect again retags the socket), so two programs
 * seeing the same close, as while apply moves sockops to the cgroup root,
 * count it once. */
static __always_inline void connect_failed(struct conn *c)
{
	struct endpoint_stats *s = current(c);
	if (s && counted(c) && !(c->flags & (CONN_COUNTED | CONN_FAILED))) {
		c->flags |= CONN_FAILED;
		__sync_fetch_and_add(&s->failed, 1);
	}
}
