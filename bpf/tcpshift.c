//go:build ignore

/* tcpshift's BPF programs: each new TCP connection to a service frontend gets
 * its backend from the service's weight table. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "tcpshift.h"
#include "select.h"

#define AF_INET 2
#define AF_INET6 10

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
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct service_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

SEC("sk_lookup")
int tcpshift_lookup(struct bpf_sk_lookup *ctx)
{
	struct frontend_key key = {.port = ctx->local_port};
	struct frontend *fe;
	struct choice c;
	__u32 service;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	/* Read every address field up front: loads chosen inside the branches
	 * get merged by clang into one load through a computed ctx pointer,
	 * which the verifier refuses. */
	__u32 ip4 = ctx->local_ip4;
	__u32 ip6[4] = {ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2], ctx->local_ip6[3]};
	if (ctx->family == AF_INET) {
		key.addr[2] = bpf_htonl(0xffff);
		key.addr[3] = ip4;
	} else {
		key.addr[0] = ip6[0];
		key.addr[1] = ip6[1];
		key.addr[2] = ip6[2];
		key.addr[3] = ip6[3];
	}
	fe = find_frontend(&key);
	if (!fe || fe->mode != MODE_LOOKUP)
		return SK_PASS;
	service = fe->service;

	if (choose(service, &c) < 0)
		goto refuse;
	/* Closed listeners leave the sockmap by themselves: try the subset's
	 * other endpoints before refusing. */
	for (__u32 i = 0; i < MAX_SUBSET_ENDPOINTS; i++) {
		__u32 id;
		if (endpoint_at(&c, i, &id) < 0)
			break;
		struct bpf_sock *sk = bpf_map_lookup_elem(&sockets, &id);
		if (!sk)
			continue;
		long err = bpf_sk_assign(ctx, sk, 0);
		bpf_sk_release(sk);
		if (err == 0) {
			count_assigned(id);
			return SK_PASS;
		}
	}
refuse:
	/* Dropping in sk_lookup makes TCP answer the SYN with a reset. */
	count_refused(service);
	return SK_DROP;
}
