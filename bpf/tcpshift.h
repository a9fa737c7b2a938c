/* Shared layout of every tcpshift BPF map. This header is the single source
 * of truth: bpf2go generates the Go types in tcpshift_bpfel.go from it. */
#pragma once

#include <linux/types.h>

#define MAX_SERVICES 16384
#define MAX_SUBSETS 16
#define MAX_SUBSET_ENDPOINTS 1024
#define MAX_ENDPOINTS 131072
/* Slots of the lists map, where tables keep their endpoint ids: room for
 * every table in force (at most MAX_ENDPOINTS ids, an id belongs to one
 * subset of one service) and for as many again written by a change before
 * the tables it replaces are gone, with room to spare against gaps. */
#define LIST_SLOTS (4 * MAX_ENDPOINTS)
/* Endpoints of a subset sk_lookup tries, from the chosen one on, before it
 * refuses a connection: a bound, so that selection costs the same whatever
 * a subset's size. */
#define LOOKUP_TRIES 16
/* Positions in a weight table; a power of two so the verifier can bound indexes. */
#define TABLE_SLOTS 4096
#define NAME_LEN 64
#define REASON_LEN 256
#define MAX_AFFINITIES 65536
/* Handshakes answered with SYN cookies that sk_lookup remembers, FLOW_WAYS
 * to a bucket, so that the handshake's last ACK (or a SYN sent again), which
 * comes back to sk_lookup as no socket holds the handshake, goes to the same
 * endpoint. */
#ifndef FLOW_BUCKETS
#define FLOW_BUCKETS 16384 /* a power of two */
#endif
#define FLOW_WAYS 4
#define FLOW_TTL_NS 5000000000ULL /* how long a handshake is remembered */
/* Endpoint ids that one listening address serves (the same address can be an
 * endpoint of several services, and a wildcard listener serves them all). */
#define MAX_LISTEN_IDS 16

enum mode {
	MODE_LOOKUP = 1,  /* sk_lookup steers to a local listening socket */
	MODE_CONNECT = 2, /* cgroup connect4/6 rewrites the destination */
	MODE_PROXY = 3,   /* the userspace proxy forwards */
};

enum policy {
	POLICY_ROUNDROBIN = 0, /* exact smooth weighted round-robin */
	POLICY_RANDOM = 1,
};

enum service_flags {
	SERVICE_LOCAL_ROUTE = 1, /* tcpshift added a local route for the frontend */
	SERVICE_AUTO = 2,        /* mode was chosen automatically */
	SERVICE_NO_FAILOVER = 4, /* a subset with no healthy endpoint keeps its share */
	SERVICE_NO_ACCOUNTING = 8, /* accounting: false */
};

enum table_flags {
	TABLE_ACCOUNTING = 1, /* sockops counts the service's connections */
};

/* The connect filter (map connect_filter) tells the connect hooks, on a
 * port some frontend uses, that an address cannot be a connect-mode
 * frontend, without a lookup in the frontends hash: a client's connect()
 * to a lookup-mode frontend (sk_lookup steers it) costs what a miss costs.
 * Two parts of 2^FILTER_BITS bits: the ports of wildcard connect-mode
 * frontends (port modulo the bits), and the other connect-mode frontends by
 * filter_hash of address and port; a set bit may be another frontend's,
 * and the hash then answers. Word 0 says the parts were written (a map
 * created by an upgrade is empty until the next write, and a hook that
 * finds it unwritten looks every frontend port up); part p starts at word
 * 1 + p * FILTER_WORDS. The map stays under 32 KiB, which the kernel
 * allocates contiguous (larger array maps are vmalloc'd). */
#define FILTER_BITS 15
#define FILTER_WORDS ((1 << FILTER_BITS) / 64)
enum filter_part {
	FILTER_PORTS = 0,
	FILTER_ADDRS = 1,
	FILTER_PARTS = 2,
};
#define FILTER_READY 0 /* the word that says the parts are written */
#define FILTER_HASH_MUL 0x9e3779b97f4a7c15ULL

/* Health of an endpoint as the daemon's checks see it. Only userspace reads
 * and writes it: the tables it builds leave down endpoints out. */
enum health {
	HEALTH_UNCHECKED = 0, /* no checks configured or none finished yet */
	HEALTH_UP = 1,
	HEALTH_DOWN = 2,
};

/* A frontend address: IPv6, or IPv4-mapped (::ffff:a.b.c.d) for IPv4, in
 * network byte order. The wildcards are ::ffff:0.0.0.0 (IPv4) and :: (any). */
struct frontend_key {
	__u32 addr[4];
	__u16 port; /* host byte order */
	__u16 pad;
};

struct frontend {
	__u32 service; /* index into tables, services, service_counts */
	enum mode mode;
};

/* A subset's endpoint ids are not in the table: they are the count slots
 * of the lists map from first on. A writer never changes slots that a table
 * in force points at; it writes a new table's ids into free slots first, and
 * slots become free once no table in force points at them (see maps/lists.go).
 * So a table still reads as one state, and stays small whatever the
 * endpoints: selection reads one more array slot. */
struct subset_slots {
	__u32 turn;      /* next endpoint's turn, advanced atomically */
	__u32 count;     /* endpoints in use */
	__u32 positions; /* positions in seq: 0 means no new connections */
	__u32 first;     /* slot of lists holding its first endpoint id */
};

/* A service's complete selection state. It lives alone in an inner map that
 * is replaced whole on every change, so a reader never sees half of it (the
 * endpoint ids it points at in lists do not change while it is in force). */
struct table {
	__u64 next;   /* next position in seq, advanced atomically */
	__u32 len;    /* positions in use; 0 refuses every connection */
	enum policy policy;
	__u64 affinity_ttl; /* ns a client sticks to its endpoint; 0 = off */
	enum table_flags flags; /* a bit set */
	__u32 pad;
	struct subset_slots subsets[MAX_SUBSETS];
	__u8 seq[TABLE_SLOTS]; /* subset index for each position */
};

struct endpoint {
	__u32 addr[4]; /* like frontend_key.addr */
	__u16 port;    /* host byte order */
	__u16 pad;
};

/* Counters of one endpoint id. sockops keeps active, closed and bytes for
 * the connections the selection (or the proxy) tagged with this id. */
struct endpoint_stats {
	__u64 connections; /* connections assigned */
	__u64 active;      /* established and not closed yet */
	__u64 closed;      /* established, then closed */
	__u64 bytes_in;    /* towards the endpoint, of closed connections */
	__u64 bytes_out;   /* from the endpoint, of closed connections */
	__u64 failed;      /* connects that never got established (passive health) */
	__u64 resets;      /* established, then closed by a reset (either side) */
	__u64 rebalanced;  /* closed by a socket destroy: tcpshift rebalance (ss -K too) */
	__u64 registered;  /* listeners sockops put in the socket map at listen() */
	__u64 register_failed; /* ... and listeners it could not (MPTCP, ...) */
	__u32 generation;  /* bumped whenever the id is released */
	/* Clients with affinity to this endpoint that sk_lookup handed to
	 * another because it had no listening socket (their affinity now
	 * names the other). 32 bits: it takes the place of what was padding,
	 * so state pinned by an earlier build keeps its layout. */
	__u32 repicked;
};

enum conn_flags {
	CONN_SERVER = 1,  /* the endpoint's own accepted socket (lookup mode) */
	CONN_COUNTED = 2, /* counted in active */
	CONN_PROXY = 4,   /* tagged by the userspace proxy: assigned once established */
	CONN_ACCOUNT = 8, /* sockops counts it (the service's accounting is on) */
	CONN_ORIGINAL = 16, /* connect mode: getpeername shows original */
	/* A backend's listener (lookup mode): original is its listening
	 * address. The tag is cloned into every socket it accepts, which is
	 * how sockops learns which endpoint took a connection. */
	CONN_LISTENER = 32,
	/* Counted in failed: a connect ending before it was established is
	 * counted once, whatever runs sockops' state callback for it. */
	CONN_FAILED = 64,
};

/* Where a connect-mode connection was dialled, for getpeername. */
struct original_dest {
	__u32 addr[4]; /* like frontend_key.addr */
	__u16 port;    /* host byte order */
	__u16 pad;
};

/* A connection of ours, kept with its socket (sk_storage) from selection to
 * close: the endpoint it belongs to and, in connect mode, what the client
 * dialled. It dies with the socket, so nothing needs cleaning. */
struct conn {
	__u32 endpoint;
	__u32 generation; /* endpoint_stats.generation at selection */
	enum conn_flags flags; /* a bit set */
	__u32 pad;
	struct original_dest original;
};

/* A handshake sk_lookup handed to an endpoint while its listener may answer
 * with a SYN cookie. tag is a keyed hash of the 4-tuple (0: free). */
struct flow {
	__u64 tag;
	__u32 stamp;    /* bpf_ktime_get_coarse_ns >> 20 (about ms) at the choice */
	__u32 endpoint;
};

/* When a listener last may have sent a SYN cookie (flow stamp units, 0:
 * never): until FLOW_TTL after it, sk_lookup looks for handshakes in flows. */
struct flow_state {
	__u32 last_cookie;
};

struct flow_bucket {
	struct flow ways[FLOW_WAYS];
};

/* The endpoint ids a listening address serves, for sockops to register a
 * listener the moment it listens. Keys are struct endpoint; a wildcard
 * address (::ffff:0.0.0.0 or ::) lists the ids a wildcard listener on that
 * port serves. */
struct listen_ids {
	__u32 count;
	__u32 account; /* some service of these ids counts connections */
	__u32 ids[MAX_LISTEN_IDS];
	__u32 services[MAX_LISTEN_IDS]; /* the service of each id */
};

/* Live byte counts of one connection, written by the bytes iterator. */
struct conn_bytes {
	__u32 endpoint;
	__u32 generation;
	__u64 in;  /* towards the endpoint */
	__u64 out; /* from the endpoint */
};

struct service_stats {
	__u64 refused;   /* connections refused: no weight, or no live endpoint */
	__u64 no_socket; /* lookups whose chosen endpoints had no listening socket */
};

/* A client of a service: lookup mode, the source address; connect mode,
 * the process (tgid) and its network namespace cookie. */
struct affinity_key {
	__u32 service;
	__u32 pad;
	__u32 client[4];
};

struct affinity {
	__u32 endpoint;
	__u32 subset;
	__u32 slot;    /* of lists, where endpoint was when last chosen */
	__u32 pad;
	__u64 expires; /* bpf_ktime_get_ns */
};

/* What the user asked for, kept for the stateless CLI. The data path never
 * reads it. A subset's endpoints are the ids whose endpoint_place names it:
 * up to 16 × 1024 ids would make every description 64 KiB. */
struct subset_meta {
	char name[NAME_LEN];
	__u64 weight;
	__u32 count;
	__u32 pad;
};

/* Where an endpoint id sits in the descriptions, for the CLI only. */
struct endpoint_place {
	__u32 used; /* 1: the id belongs to the service below */
	__u32 service;
	__u32 subset; /* index in service_meta.subsets */
	__u32 index;  /* in the subset's endpoints as the user listed them */
};

struct service_meta {
	char name[NAME_LEN];
	struct frontend_key frontend;
	enum mode mode;
	enum policy policy;
	enum service_flags flags; /* a bit set */
	__u32 subset_count;
	__u64 affinity_ttl;    /* ns, 0 = off */
	char reason[REASON_LEN]; /* why mode auto chose this mode */
	struct subset_meta subsets[MAX_SUBSETS];
};

enum owner_flags {
	/* The connect hooks serve every network namespace under the cgroup
	 * (tcpshift agent: pods have one each), not only this one. */
	OWNER_EVERY_NETNS = 1,
};

/* Who the pinned state belongs to, for the CLI; the data path never reads
 * it. The network namespace is named by its cookie, which the kernel never
 * reuses (its inode, which names the pin directory, is reused). */
struct owner {
	__u64 netns_cookie;
	__u64 netns_ino;
	/* Bumped by every writer before and after it writes (a seqlock): odd
	 * while a write is in progress, so readers can retry a mixed read. */
	__u64 write_seq;
	__u32 daemon_pid;   /* tcpshift run managing the namespace, 0: none */
	enum owner_flags flags; /* a bit set */
	__u64 daemon_start; /* its start time (/proc/PID/stat), against pid reuse */
	/* The key of the flows hash, kept so that every program loaded into
	 * the namespace finds the handshakes its predecessor remembered. */
	__u64 flow_seed;
	/* Which programs are attached: a hash of the BPF object and of the
	 * constants they were loaded with. An apply that would load the same
	 * again keeps them (the verifier costs tens of ms per apply). */
	__u64 prog_tag;
	char daemon_file[REASON_LEN]; /* the route config it follows */
};

enum service_file_flags {
	FILE_HEALTH = 1,         /* the file asks for health checks */
	FILE_HEALTH_PASSIVE = 2, /* ... passive ones too */
	FILE_CLAIM = 4,          /* claim: the frontend address may shadow a route */
};

/* Input objects kept with the namespace's state (Istio's VirtualService,
 * DestinationRule, ...), by kind, namespace and name, as the user applied
 * them: services are derived from all of them together. Only userspace
 * reads them; the loader stores them as opaque text. */
#define MAX_OBJECTS 1024
#define OBJECT_KIND_LEN 48
#define OBJECT_NAMESPACE_LEN 64
#define OBJECT_NAME_LEN 256
#define OBJECT_TEXT_LEN 65528

struct object_key {
	char kind[OBJECT_KIND_LEN]; /* group/Kind, e.g. networking.istio.io/VirtualService */
	char namespace[OBJECT_NAMESPACE_LEN];
	char name[OBJECT_NAME_LEN];
};

struct object {
	__u32 len; /* bytes of text in use */
	__u32 pad;
	char text[OBJECT_TEXT_LEN]; /* the object's YAML document */
};

/* A progressive shift of a service's weight to one subset (tcpshift
 * shift), kept with the state so that it outlives the process running it:
 * status shows it, another shell can abort or pause it, and a shift whose
 * process died is seen as interrupted. Only userspace reads it. */
#define MAX_SHIFT_STEPS 16

enum shift_state {
	SHIFT_RUNNING = 1,
	SHIFT_PAUSED = 2,      /* held at its step by --pause */
	SHIFT_ABORTING = 3,    /* --abort asked the running process to roll back */
	SHIFT_DONE = 4,        /* reached its last step */
	SHIFT_ROLLED_BACK = 5, /* a gate failed, or aborted: weights as before */
};

struct shift {
	enum shift_state state;
	__u32 to;         /* the subset index traffic moves to */
	__u32 from_mask;  /* the subsets that give up their share (bits) */
	__u32 steps;      /* steps in percent[] */
	__u32 done;       /* steps completed */
	__u32 pid;        /* the process running it */
	__u64 pid_start;  /* its start time, against pid reuse */
	__u64 interval;   /* ns per step */
	__u64 step_at;    /* unix ns the current step began */
	__u32 percent[MAX_SHIFT_STEPS];
	__u64 before[MAX_SUBSETS]; /* weights before the shift, for a rollback */
	char note[REASON_LEN];     /* the last gate figures, or why it rolled back */
};

/* One run of the rebalance iterator: how many connections it may close and
 * how many it did. */
struct rebalance_run {
	__u32 budget;
	__u32 closed;
};

/* What the route config file said about a service beyond what selection
 * needs: set-weight overrides the weights in force (service_meta), never
 * these, so status can show both and the daemon knows what to keep. */
struct service_file {
	__u64 weights[MAX_SUBSETS];
	__u64 health_interval; /* ns */
	__u64 health_timeout;  /* ns */
	__u32 health_rise;
	__u32 health_fall;
	enum service_file_flags flags; /* a bit set */
	__u32 pad;
	char origin[REASON_LEN]; /* the input objects behind a derived service */
};
