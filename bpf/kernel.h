/* The few kernel types tcpshift reads through BTF, relocated by CO-RE to the
 * running kernel's layout. */
#pragma once

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef struct {
	int counter;
} atomic_t;

struct netns_ipv4 {
	__u8 sysctl_tcp_syncookies;
} __attribute__((preserve_access_index));

struct net {
	struct netns_ipv4 ipv4;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned long skc_flags; /* since 6.10 */
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u32 sk_max_ack_backlog;
	int sk_err; /* ECONNABORTED once a socket destroy (tcp_abort) closed it */
} __attribute__((preserve_access_index));

struct request_sock_queue {
	atomic_t qlen; /* handshakes in SYN_RECV */
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct request_sock_queue icsk_accept_queue;
} __attribute__((preserve_access_index));

struct sock___before_6_10 {
	unsigned long sk_flags;
} __attribute__((preserve_access_index));

enum sock_flags {
	SOCK_DEAD,
	SOCK_DONE, /* a FIN was received */
};

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u64 bytes_received; /* sequence space: counts a received FIN too */
	__u64 bytes_sent;     /* payload sent, retransmissions included */
	__u64 bytes_retrans;  /* payload retransmitted */
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_sk_storage_map {
	struct bpf_iter_meta *meta;
	struct sock *sk;
	void *value;
} __attribute__((preserve_access_index));

/* payload returns the data bytes a TCP socket (tp, from
 * bpf_skc_to_tcp_sock) sent and received, without the SYN and FIN that the
 * kernel's sequence-space counters include. */
static __always_inline void payload(struct tcp_sock *tp, __u64 *sent, __u64 *received)
{
	*sent = tp->bytes_sent - tp->bytes_retrans;
	*received = tp->bytes_received;
	struct sock *s = (struct sock *)tp;
	struct sock___before_6_10 *old = (void *)tp;
	unsigned long flags = bpf_core_field_exists(old->sk_flags) ? old->sk_flags : s->__sk_common.skc_flags;
	if (flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE)))
		*received -= 1;
}

#define ECONNABORTED 103

/* destroyed reports whether a TCP socket (tp, from bpf_skc_to_tcp_sock) is
 * being closed by a socket destroy: bpf_sock_destroy or sock_diag's
 * SOCK_DESTROY (`ss -K`), which both end in tcp_abort, the only close that
 * sets ECONNABORTED, before the state changes to CLOSE. */
static __always_inline int destroyed(struct tcp_sock *tp)
{
	struct sock *s = (struct sock *)tp;
	return s->sk_err == ECONNABORTED;
}

/* may_send_cookie reports whether a listener may answer a SYN with a SYN
 * cookie instead of a request socket: always with tcp_syncookies=2, and with
 * 1 once its SYN queue is full (tcp_conn_request); half full already counts,
 * for the queue can fill between the lookup and the SYN's processing. */
static __always_inline int may_send_cookie(void *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	struct sock *s = (struct sock *)tp;
	struct net *net = s->__sk_common.skc_net.net;
	__u8 mode = net ? net->ipv4.sysctl_tcp_syncookies : 1;
	if (mode == 2)
		return 1;
	if (mode == 0)
		return 0;
	__u32 qlen = tp->inet_conn.icsk_accept_queue.qlen.counter;
	return qlen * 2 >= s->sk_max_ack_backlog;
}
