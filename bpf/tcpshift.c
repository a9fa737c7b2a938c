//go:build ignore

/* tcpshift's BPF programs: each new TCP connection to a service frontend gets
 * its backend from the service's weight table. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "tcpshift.h"
#include "select.h"
#include "account.h"
#include "flow.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define ECONNREFUSED 111
#define EEXIST 17

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Local listening sockets, indexed by endpoint id (lookup mode). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sockets SEC(".maps");

/* Endpoint addresses, indexed by endpoint id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

/* The configuration behind each service, for the CLI only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory as used, not for MAX */
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct service_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

/* Where each endpoint id sits in the descriptions (struct endpoint_place),
 * for the CLI only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct endpoint_place);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoint_places SEC(".maps");

/* Endpoint health (enum health), indexed by endpoint id: written by the
 * daemon's checks, read by whoever builds a table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, enum health);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoint_health SEC(".maps");

/* Table swaps per service id, counted by userspace for metrics. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} table_swaps SEC(".maps");

/* A counter per service id, bumped by userspace after every write of the
 * service's slot in tables. The userspace proxy maps it into its memory and
 * learns that a table changed without a syscall per connection. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} table_versions SEC(".maps");

/* Who owns the state (a single entry): see struct owner. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} owners SEC(".maps");

/* Shifts in progress or ended, by service id (see struct shift). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory as used, not for MAX */
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct shift);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shifts SEC(".maps");

/* Input objects (see struct object), for the CLI only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_OBJECTS);
	__type(key, struct object_key);
	__type(value, struct object);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} objects SEC(".maps");

/* What each service's route config said, by service id, for the CLI. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory as used, not for MAX */
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct service_file);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} service_files SEC(".maps");

/* Lookup-mode endpoints by listening address, for sockops to register a
 * backend's listener the moment it listens (see struct listen_ids). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory as used, not for MAX */
	__uint(max_entries, MAX_ENDPOINTS * 3);
	__type(key, struct endpoint);
	__type(value, struct listen_ids);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listeners SEC(".maps");

/* The network namespace whose connections the connect hooks rewrite: they
 * are attached to a cgroup that processes of every namespace share. */
volatile const __u64 netns_cookie = 0;
/* Set (OWNER_EVERY_NETNS): the connect hooks rewrite connections of every
 * namespace under the cgroup, as pods of a node each have their own. */
volatile const __u32 every_netns = 0;

/* assign hands the connection to an endpoint's listening socket, if it
 * still has one, and tells whether that listener may answer with a SYN
 * cookie. */
static __always_inline long assign(struct bpf_sk_lookup *ctx, __u32 id, int *cookie)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(&sockets, &id);
	if (!sk)
		return -1;
	long err = bpf_sk_assign(ctx, sk, 0);
	if (err == 0)
		*cookie = may_send_cookie(sk);
	bpf_sk_release(sk);
	return err;
}

/* listening reports whether endpoint id has a listening socket that can
 * take a connection of family (an IPv6 one takes IPv4 too, unless it is
 * v6only, which bpf_sk_assign then refuses). */
static __always_inline int listening(__u32 id, __u32 family)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(&sockets, &id);
	if (!sk)
		return 0;
	int ok = sk->family == family || sk->family == AF_INET6;
	bpf_sk_release(sk);
	return ok;
}

/* A listener subset_listener found: the subset, its slot of lists, the
 * endpoint. */
struct found {
	__u32 index;
	__u32 slot;
	__u32 id;
};

/* subset_listener finds the first endpoint of subset i (sub), from turn, with a
 * listener that can take family, among those a try would reach. A global
 * function, as repick is (see there). */
__noinline int subset_listener(struct subset_slots *sub, __u32 i, __u32 turn, __u32 family, struct found *f)
{
	if (!sub || !f)
		return -1;
	struct choice probe = {.subset = sub, .index = i, .turn = turn};
	__u32 cand;
	for (__u32 k = 0; k < LOOKUP_TRIES; k++) {
		if (endpoint_at(&probe, k, &cand) < 0)
			return -1;
		if (listening(cand, family)) {
			f->index = i;
			f->slot = probe.slot;
			f->id = cand;
			return 0;
		}
	}
	return -1;
}

/* What repick did: the endpoint it handed the connection to and whether
 * its listener may answer with a SYN cookie, or, when it found none,
 * whether that was for want of sockets (no_socket). */
struct repick {
	__u32 id;
	int cookie;
	int no_socket;
};

/* repick chooses again for a client whose endpoint has no listening socket,
 * as for a new client: the table's next position, the subset's endpoints
 * from its turn. When that subset has no listener either, the client is not
 * turned away while another subset has one: repick goes through the other
 * subsets once and draws among those with a listener (among the endpoints
 * a try would reach) by their positions in the table, that is by the
 * weights of the subsets that can take the client (each replaces the one
 * drawn so far with probability positions / positions seen so far). That
 * draw uses prandom and reads no turn, so it moves nothing that other
 * connections follow. The client's affinity is set to the endpoint chosen.
 *
 * A global function: the verifier checks it once, not once for every path
 * of tcpshift_lookup that reaches it. */
__noinline int repick(struct bpf_sk_lookup *ctx, struct table *t, struct affinity_key *ak, __u32 family, struct repick *out)
{
	struct choice c;
	struct found other = {};
	__u32 id, seen = 0, turn;
	int cookie = 0;

	if (!ctx || !t || !ak || !out)
		return -1;
	if (choose(t, &c) < 0)
		return -1;
	for (__u32 i = 0; i < LOOKUP_TRIES; i++) {
		if (endpoint_at(&c, i, &id) < 0)
			break;
		if (assign(ctx, id, &cookie) == 0)
			goto picked;
	}
	turn = bpf_get_prandom_u32();
	for (__u32 i = 0; i < MAX_SUBSETS; i++) {
		struct found f;
		__u32 p = t->subsets[i].positions;
		if (i == c.index || p == 0 || subset_listener(&t->subsets[i], i, turn, family, &f) < 0)
			continue;
		seen += p;
		if (bpf_get_prandom_u32() % seen < p)
			other = f;
	}
	if (seen > 0 && assign(ctx, other.id, &cookie) == 0) {
		c.index = other.index;
		c.slot = other.slot;
		id = other.id;
		goto picked;
	}
	out->no_socket = 1;
	return -1;
picked:
	stick(t, ak, &c, id);
	out->id = id;
	out->cookie = cookie;
	return 0;
}

SEC("sk_lookup")
int tcpshift_lookup(struct bpf_sk_lookup *ctx)
{
	struct frontend_key key = {};
	struct affinity_key ak = {};
	struct frontend *fe;
	struct choice c;
	struct table *t;
	__u32 id;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	__u16 port = ctx->local_port;
	if (!frontend_port(port))
		return SK_PASS;
	/* Read every address field up front: loads chosen inside the branches
	 * get merged by clang into one load through a computed ctx pointer,
	 * which the verifier refuses. */
	__u32 ip4 = ctx->local_ip4, rip4 = ctx->remote_ip4;
	__u32 ip6[4] = {ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2], ctx->local_ip6[3]};
	__u32 rip6[4] = {ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2], ctx->remote_ip6[3]};
	__u32 family = ctx->family;
	struct tuple tu = {.ports = (__u32)port << 16 | bpf_ntohs(ctx->remote_port)};
	key.port = port;
	if (family == AF_INET) {
		key.addr[2] = bpf_htonl(0xffff);
		key.addr[3] = ip4;
		ak.client[3] = rip4;
		tu.remote[2] = bpf_htonl(0xffff);
		tu.remote[3] = rip4;
	} else {
		__builtin_memcpy(key.addr, ip6, sizeof(ip6));
		__builtin_memcpy(ak.client, rip6, sizeof(rip6));
		__builtin_memcpy(tu.remote, rip6, sizeof(rip6));
	}
	__builtin_memcpy(tu.local, key.addr, sizeof(tu.local));
	fe = find_frontend(&key);
	if (!fe || fe->mode != MODE_LOOKUP)
		return SK_PASS;
	ak.service = fe->service;

	/* A handshake already handed to an endpoint, answered with a cookie,
	 * goes there again and is not counted again. */
	struct flow_state *st = flow_state();
	struct flow_bucket *b = NULL;
	__u64 tag = 0;
	__u32 now = 0;
	int cookie = 0;
	if (cookies_recent(st, &now)) {
		tag = flow_tag(&tu);
		b = flow_bucket(tag);
		struct flow *f = b ? flow_find(b, tag, now) : NULL;
		if (f && assign(ctx, f->endpoint, &cookie) == 0)
			return SK_PASS;
	}

	t = service_table(fe->service);
	if (!t)
		goto refuse;
	if (sticky(t, &ak, &id) == 0) {
		if (assign(ctx, id, &cookie) == 0)
			goto chosen;
		/* Affinity never keeps a client on an endpoint with no
		 * listener, nor turns it away for one. */
		struct repick rp = {};
		if (repick(ctx, t, &ak, family, &rp) == 0) {
			if (rp.id != id)
				count_repicked(id);
			id = rp.id;
			cookie = rp.cookie;
			goto chosen;
		}
		if (rp.no_socket)
			count_no_socket(fe->service);
		goto refuse;
	}
	if (choose(t, &c) < 0)
		goto refuse;
	/* Closed listeners leave the sockmap by themselves: try the subset's
	 * next endpoints before refusing, LOOKUP_TRIES at most. */
	for (__u32 i = 0; i < LOOKUP_TRIES; i++) {
		if (endpoint_at(&c, i, &id) < 0)
			break;
		if (assign(ctx, id, &cookie) == 0) {
			stick(t, &ak, &c, id);
			goto chosen;
		}
	}
	if (c.subset->count > 0)
		count_no_socket(fe->service);
refuse:
	/* Dropping in sk_lookup makes TCP answer the SYN with a reset. */
	count_refused(fe->service);
	return SK_DROP;
chosen:
	/* Counted here, once per handshake: sk_lookup is where a lookup-mode
	 * connection is decided, whoever's listener takes it. */
	if (t->flags & TABLE_ACCOUNTING)
		count_assigned(id);
	if (cookie) {
		if (!b) {
			now = flow_now();
			tag = flow_tag(&tu);
			b = flow_bucket(tag);
		}
		note_cookie(st, now);
		if (b)
			flow_remember(b, tag, now, id);
	}
	return SK_PASS;
}

static __always_inline int is_mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* connect_dest picks the endpoint for a connect() to key from this
 * namespace and tags the socket with it and with what the client dialled:
 * 1 and *ep set when rewritten, 0 when not a service of ours, -1 to refuse. */
static __always_inline int connect_dest(struct bpf_sock_addr *ctx, struct frontend_key *key, struct endpoint *ep)
{
	struct affinity_key ak = {};
	struct frontend_key orig = *key;
	struct frontend *fe;
	struct endpoint *e;
	struct choice c;
	struct table *t;
	struct conn *conn;
	__u32 id;

	/* The connect filter: a connect() to a lookup-mode frontend, which
	 * sk_lookup steers, is no more than a miss here. */
	if (!frontend_port(key->port) || !maybe_connect_frontend(key->addr, key->port))
		goto theirs;
	/* Helpers only where their answer is needed: the namespace when the
	 * hooks serve one, the client (pid and namespace) when the service
	 * has affinity. */
	__u64 netns = every_netns ? 0 : bpf_get_netns_cookie(ctx);
	if (!every_netns && netns != netns_cookie)
		goto theirs;
	fe = find_frontend(key);
	if (!fe || fe->mode != MODE_CONNECT)
		goto theirs;

	t = service_table(fe->service);
	if (!t)
		goto refuse;
	if (t->affinity_ttl) {
		if (every_netns)
			netns = bpf_get_netns_cookie(ctx);
		ak.service = fe->service;
		ak.client[0] = bpf_get_current_pid_tgid() >> 32;
		ak.client[2] = (__u32)netns;
		ak.client[3] = (__u32)(netns >> 32);
	}
	if (sticky(t, &ak, &id) < 0) {
		if (choose(t, &c) < 0 || endpoint_at(&c, 0, &id) < 0)
			goto refuse;
		stick(t, &ak, &c, id);
	}
	e = bpf_map_lookup_elem(&endpoints, &id);
	if (!e || e->port == 0)
		goto refuse;
	*ep = *e;
	/* One allocation per connection, for getpeername and accounting both;
	 * it is freed with the socket. */
	conn = bpf_sk_storage_get(&conns, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (conn) {
		conn->endpoint = id;
		conn->flags = CONN_ORIGINAL;
		conn->generation = 0;
		if (t->flags & TABLE_ACCOUNTING) {
			conn->flags |= CONN_ACCOUNT;
			conn->generation = count_assigned(id);
		}
		__builtin_memcpy(conn->original.addr, orig.addr, sizeof(orig.addr));
		conn->original.port = orig.port;
	}
	return 1;
refuse:
	count_refused(fe->service);
	return -1;
theirs:
	/* A connect-mode socket connecting again (after AF_UNSPEC) somewhere
	 * else is ours no more; the proxy tags its sockets before it connects.
	 * Sockets never tagged pay one pointer test. */
	conn = bpf_sk_storage_get(&conns, ctx->sk, 0, 0);
	if (conn && conn->flags & CONN_ORIGINAL)
		bpf_sk_storage_delete(&conns, ctx->sk);
	return 0;
}

static __always_inline int refuse_connect(void)
{
	bpf_set_retval(-ECONNREFUSED);
	return 0;
}

SEC("cgroup/connect4")
int tcpshift_connect4(struct bpf_sock_addr *ctx)
{
	struct frontend_key key = {};
	struct endpoint ep;

	if (ctx->type != SOCK_STREAM)
		return 1;
	key.addr[2] = bpf_htonl(0xffff);
	key.addr[3] = ctx->user_ip4;
	key.port = bpf_ntohs(ctx->user_port);
	int r = connect_dest(ctx, &key, &ep);
	if (r == 0)
		return 1;
	/* An IPv4 socket cannot reach an IPv6 endpoint. */
	if (r < 0 || !is_mapped(ep.addr))
		return refuse_connect();
	ctx->user_ip4 = ep.addr[3];
	ctx->user_port = bpf_htons(ep.port);
	return 1;
}

SEC("cgroup/connect6")
int tcpshift_connect6(struct bpf_sock_addr *ctx)
{
	struct frontend_key key = {};
	struct endpoint ep;

	if (ctx->type != SOCK_STREAM)
		return 1;
	/* Dual-stack sockets dialling ::ffff:a.b.c.d come here, not to
	 * connect4: the key is the same IPv4-mapped form. */
	key.addr[0] = ctx->user_ip6[0];
	key.addr[1] = ctx->user_ip6[1];
	key.addr[2] = ctx->user_ip6[2];
	key.addr[3] = ctx->user_ip6[3];
	key.port = bpf_ntohs(ctx->user_port);
	int r = connect_dest(ctx, &key, &ep);
	if (r == 0)
		return 1;
	if (r < 0)
		return refuse_connect();
	ctx->user_ip6[0] = ep.addr[0];
	ctx->user_ip6[1] = ep.addr[1];
	ctx->user_ip6[2] = ep.addr[2];
	ctx->user_ip6[3] = ep.addr[3];
	ctx->user_port = bpf_htons(ep.port);
	return 1;
}

/* The getpeername hooks run for every socket of the cgroup: one that is
 * not ours has no storage, which costs a pointer test. */
SEC("cgroup/getpeername4")
int tcpshift_getpeername4(struct bpf_sock_addr *ctx)
{
	struct conn *c = bpf_sk_storage_get(&conns, ctx->sk, 0, 0);
	if (c && c->flags & CONN_ORIGINAL && is_mapped(c->original.addr)) {
		ctx->user_ip4 = c->original.addr[3];
		ctx->user_port = bpf_htons(c->original.port);
	}
	return 1;
}

SEC("cgroup/getpeername6")
int tcpshift_getpeername6(struct bpf_sock_addr *ctx)
{
	struct conn *c = bpf_sk_storage_get(&conns, ctx->sk, 0, 0);
	if (c && c->flags & CONN_ORIGINAL) {
		ctx->user_ip6[0] = c->original.addr[0];
		ctx->user_ip6[1] = c->original.addr[1];
		ctx->user_ip6[2] = c->original.addr[2];
		ctx->user_ip6[3] = c->original.addr[3];
		ctx->user_port = bpf_htons(c->original.port);
	}
	return 1;
}

/* tag_listener marks a registered listener with its address: the sockets it
 * accepts inherit the tag (conns is BPF_F_CLONE), so sockops can tell which
 * endpoint took a connection without sk_lookup leaving a note per
 * connection. Only listeners of services with accounting on are tagged. */
static __always_inline void tag_listener(struct bpf_sock *sk, struct endpoint *key)
{
	struct conn *c = bpf_sk_storage_get(&conns, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!c)
		return;
	c->endpoint = 0;
	c->generation = 0;
	c->flags = CONN_LISTENER;
	__builtin_memcpy(c->original.addr, key->addr, sizeof(c->original.addr));
	c->original.port = key->port;
}

/* accepted_endpoint returns the endpoint a listener's new socket belongs
 * to, from the tag it inherited and the frontend it was dialled at: the
 * same listener may serve endpoints of several services. -1: not ours, or
 * its service does not count connections. */
static __always_inline int accepted_endpoint(struct conn *c, struct frontend_key *local, __u32 *id)
{
	struct frontend *fe = find_frontend(local);
	if (!fe || fe->mode != MODE_LOOKUP)
		return -1;
	struct table *t = service_table(fe->service);
	if (!t || !(t->flags & TABLE_ACCOUNTING))
		return -1;
	struct endpoint lkey = {.port = c->original.port};
	__builtin_memcpy(lkey.addr, c->original.addr, sizeof(lkey.addr));
	struct listen_ids *l = bpf_map_lookup_elem(&listeners, &lkey);
	if (!l)
		return -1;
	for (__u32 i = 0; i < MAX_LISTEN_IDS; i++) {
		if (i >= l->count)
			break;
		if (l->services[i] == fe->service) {
			*id = l->ids[i];
			return 0;
		}
	}
	return -1;
}

/* register_listener puts a listener that just started listening into the
 * socket map at the endpoint ids its address serves: a backend that
 * (re)starts gets the very next connection, with no userspace involved. A
 * wildcard listener does not take a slot an exact one holds. */
static __always_inline void register_listener(struct bpf_sock_ops *ctx, struct endpoint *key, int wildcard)
{
	struct listen_ids *l = bpf_map_lookup_elem(&listeners, key);
	int registered = 0;
	if (!l)
		return;
	for (__u32 i = 0; i < MAX_LISTEN_IDS; i++) {
		if (i >= l->count)
			break;
		__u32 id = l->ids[i];
		long err = bpf_sock_map_update(ctx, &sockets, &id, wildcard ? BPF_NOEXIST : BPF_ANY);
		struct endpoint_stats *s = bpf_map_lookup_elem(&endpoint_counts, &id);
		if (!s)
			continue;
		if (err == 0) {
			registered = 1;
			__sync_fetch_and_add(&s->registered, 1);
		} else if (err != -EEXIST) {
			__sync_fetch_and_add(&s->register_failed, 1);
		}
	}
	if (registered && l->account && ctx->sk)
		tag_listener(ctx->sk, key);
}

/* local_addr reads a socket's local address in the maps' form (IPv4
 * mapped into IPv6), and its port. Only the callbacks that need it read it:
 * sockops runs for every TCP socket of the host, most often for callbacks
 * (timeouts, window, ECN) that return at once. */
static __always_inline __u32 local_addr(struct bpf_sock_ops *ctx, __u32 addr[4], int *wildcard)
{
	/* Every field read before the branch (see tcpshift_lookup), each
	 * with a load of its own: clang would otherwise merge two into one
	 * 8-byte load, which the verifier refuses on a context. */
	volatile struct bpf_sock_ops *v = ctx;
	__u32 family = v->family, ip4 = v->local_ip4;
	__u32 ip6[4] = {v->local_ip6[0], v->local_ip6[1], v->local_ip6[2], v->local_ip6[3]};
	__u32 lport = v->local_port;
	if (family == AF_INET) {
		addr[0] = addr[1] = 0;
		addr[2] = bpf_htonl(0xffff);
		addr[3] = ip4;
		*wildcard = ip4 == 0;
	} else {
		__builtin_memcpy(addr, ip6, sizeof(ip6));
		*wildcard = (ip6[0] | ip6[1] | ip6[2] | ip6[3]) == 0;
	}
	return lport;
}

/* sockops is attached to the cgroup v2 root, whatever cgroup the connect
 * hooks serve (loader/sockops.go), and sees every TCP socket of the host: it
 * registers this namespace's listeners and counts the connections tagged in
 * this state's conns; any other socket costs it a test or two. */
SEC("sockops")
int tcpshift_sockops(struct bpf_sock_ops *ctx)
{
	__u32 op = ctx->op;
	struct bpf_sock *sk;
	struct conn *c;

	switch (op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB: {
		if (bpf_get_netns_cookie(ctx) != netns_cookie)
			return 1;
		struct endpoint key = {};
		int wildcard;
		key.port = local_addr(ctx, key.addr, &wildcard);
		register_listener(ctx, &key, wildcard);
		return 1;
	}
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: {
		/* A tagged listener's new socket: did sk_lookup hand it over,
		 * for which service? Sockets of untagged listeners pay one
		 * pointer test. */
		sk = ctx->sk;
		if (!sk)
			return 1;
		c = bpf_sk_storage_get(&conns, sk, 0, 0);
		if (!c || !(c->flags & CONN_LISTENER))
			return 1;
		struct frontend_key local = {};
		int wildcard;
		__u32 lport = local_addr(ctx, local.addr, &wildcard);
		local.port = lport;
		__u32 id;
		struct endpoint_stats *s;
		if (!frontend_port(lport) || bpf_get_netns_cookie(ctx) != netns_cookie ||
		    accepted_endpoint(c, &local, &id) < 0 ||
		    !(s = bpf_map_lookup_elem(&endpoint_counts, &id))) {
			/* A direct connection to the backend: not ours. */
			bpf_sk_storage_delete(&conns, sk);
			return 1;
		}
		c->endpoint = id;
		c->generation = s->generation;
		c->flags = CONN_SERVER | CONN_ACCOUNT;
		__builtin_memset(&c->original, 0, sizeof(c->original));
		established(ctx, c);
		return 1;
	}
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* A counted client's or proxy's SYN: watch its state to see a
		 * connect that fails (passive health checks). */
		sk = ctx->sk;
		if (sk && (c = bpf_sk_storage_get(&conns, sk, 0, 0)) && counted(c))
			watch_state(ctx);
		return 1;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		/* A client's or the proxy's socket, tagged before connect. */
		sk = ctx->sk;
		if (!sk)
			return 1;
		c = bpf_sk_storage_get(&conns, sk, 0, 0);
		if (c)
			established(ctx, c);
		return 1;
	case BPF_SOCK_OPS_STATE_CB: {
		/* Only sockets of ours ask for state changes, and only the
		 * last one matters. */
		__u32 from = ctx->args[0], to = ctx->args[1];
		if (to != BPF_TCP_CLOSE)
			return 1;
		sk = ctx->sk;
		if (!sk)
			return 1;
		c = bpf_sk_storage_get(&conns, sk, 0, 0);
		if (!c)
			return 1;
		if (from == BPF_TCP_SYN_SENT) {
			connect_failed(c);
			return 1;
		}
		closed(sk, c, from);
		return 1;
	}
	}
	return 1;
}

/* tcpshift_bytes reports the bytes of every open connection of ours, for
 * status: sockops adds a connection's bytes to its endpoint only at close. */
SEC("iter/bpf_sk_storage_map")
int tcpshift_bytes(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sock *sk = ctx->sk;
	struct conn *c = ctx->value;
	__u64 sent, received;
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : NULL;
	if (!tp || !c || !(c->flags & CONN_COUNTED))
		return 0;
	payload(tp, &sent, &received);
	struct conn_bytes b = {.endpoint = c->endpoint, .generation = c->generation};
	if (c->flags & CONN_SERVER) {
		b.in = received;
		b.out = sent;
	} else {
		b.in = sent;
		b.out = received;
	}
	bpf_seq_write(seq, &b, sizeof(b));
	return 0;
}

/* Rebalance: the endpoints whose connections tcpshift_rebalance closes, a
 * bit per id, and the run's budget. Made afresh for every run, never
 * pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS / 64);
	__type(key, __u32);
	__type(value, __u64);
} rebalance_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rebalance_run);
} rebalance_runs SEC(".maps");

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* tcpshift_rebalance closes, within the run's budget, established
 * connections of the chosen endpoints, with the kernel's own socket destroy
 * (the peer sees a reset and reconnects by the weights in force). Only
 * connections tcpshift counts are seen: a socket without our tag, or of
 * another service's endpoint, is never touched. Run from the namespace whose
 * sockets it walks. */
SEC("iter/tcp")
int tcpshift_rebalance(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	struct conn *c = bpf_sk_storage_get(&conns, (struct sock *)tp, 0, 0);
	if (!c || !(c->flags & CONN_COUNTED))
		return 0;
	__u32 id = c->endpoint, word = id >> 6, zero = 0;
	__u64 *bits = bpf_map_lookup_elem(&rebalance_ids, &word);
	if (!bits || !(*bits & (1ULL << (id & 63))))
		return 0;
	struct endpoint_stats *s = current(c);
	struct rebalance_run *run = bpf_map_lookup_elem(&rebalance_runs, &zero);
	if (!s || !run || run->closed >= run->budget)
		return 0;
	/* sockops counts it in rebalanced as it sees the socket close. */
	if (bpf_sock_destroy(skc) == 0)
		run->closed++;
	return 0;
}
