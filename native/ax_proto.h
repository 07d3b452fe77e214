/*
 * ax hook <-> daemon wire protocol.  Defined once here, mirrored once in
 * src/hookserver/proto.ts (its Layout table, which its encoder and decoder
 * use).  Keep the two in step: test/proto-layout.test.ts runs
 * native/build/proto-layout (native/proto_layout.c), which prints the size and
 * offset of every field below and the value of every constant, and compares
 * them with the TypeScript side.
 *
 * Transport: a unix stream socket (path in $AX_HOOK_SOCK).  Every message in
 * either direction is exactly AX_MSG_SIZE bytes, little endian (host order on
 * every Linux ax supports).  A reply that carries a socket carries exactly one
 * file descriptor as SCM_RIGHTS ancillary data on the same sendmsg().
 *
 * Requests are answered in order, one reply per request, except for ops
 * marked "one-way", which never get a reply.  The daemon never blocks on a
 * request: anything that has to wait (a connect to a service that is not
 * listening yet) is answered AX_ST_PENDING and the hook retries.
 *
 * A peer that sends a message with a bad magic, an unknown op or an invalid
 * field is logged and dropped; the daemon keeps serving every other peer.
 */
#ifndef AX_PROTO_H
#define AX_PROTO_H

#include <stdint.h>

#define AX_MAGIC    0x31305841u /* "AX01" read as little endian bytes */
#define AX_MSG_SIZE 384
#define AX_NAME_MAX 256          /* includes the terminating NUL */

/* ops (request.op) */
enum ax_op {
    AX_OP_HELLO = 1,   /* name = "<app id>:<token>", arg = flags AX_HF_* (what the hook
                          supports).  reply: status OK, sock = session id, a = the app's
                          virtual address (port 0), arg = flags AX_HF_* granted for this
                          session (AX_HF_DIRECT: CONNECT may answer AX_ST_DIRECT), b = the
                          app's own source address (AF_INET, port 0; family 0: none), name =
                          path of the daemon's identity map ("" if none; struct ax_map_hdr) */
    AX_OP_BIND = 2,    /* a = requested address (family AF_INET/AF_INET6, port may be 0),
                          arg = flags AX_BF_*.  reply: OK + fd (real socket, bound in the
                          host network, O_NONBLOCK|O_CLOEXEC set), sock = socket id,
                          a = virtual address as the app must see it (port filled in);
                          or NATIVE (bind natively, address not virtual);
                          or ERR with err = EADDRINUSE / EADDRNOTAVAIL / EACCES / ... */
    AX_OP_LISTEN = 3,  /* sock = id from BIND (or LOOKUP), arg = backlog (already applied
                          with the real listen()).  reply: OK once the service is in the
                          table. */
    AX_OP_CONNECT = 4, /* a = destination as the app gave it, arg = flags AX_CF_*,
                          b.family = the app socket's family.  reply:
                          OK + fd: a socket of family b.family, O_NONBLOCK, bound to the
                             app's source address when the backend is on this host, on
                             which the daemon has already called connect(); err = 0
                             (connected) or EINPROGRESS or the connect errno; a = virtual
                             peer address to report; b = the real address it connects to
                          NATIVE: not virtual, connect natively (unchanged)
                          PENDING: the name/VIP is registered but has not listened on that
                             port since it started, and AX_CF_WAIT was set; sleep a little
                             and ask again
                          DIRECT (only in sessions granted AX_HF_DIRECT, i.e. processes in
                             the daemon's own network namespace): no fd; the hook calls the
                             real connect() on the app's own socket to b (family b.family of
                             the request, IPv4 v4-mapped for AF_INET6), after binding the
                             app's source address (IP_BIND_ADDRESS_NO_PORT) when flags has
                             AX_RF_LOCAL; a = virtual peer address to report.  Nothing is
                             reported back: the server side learns the client from the
                             source address (struct ax_map_ent).  A refused connect is a
                             DIRECT toward a closed port.
                             With flags AX_RF_CACHE the answer may be reused, without asking
                             or telling, for later connects to the same a (and socket
                             family) while the identity map's generation still holds
                             cache.generation: cache.backends[0 .. cache.n_backends)
                             (1..AX_CACHE_MAX) is every backend the client may use (b among
                             them), to be taken round robin; bit i of cache.local_mask says
                             backends[i] is on this host.
                          ERR: err = ENETUNREACH / EACCES (policy) / ECONNREFUSED ...  */
    AX_OP_CLOSE = 5,   /* one-way.  sock = socket id whose last reference in this process
                          was closed: a hint; the daemon asks the kernel (sock_diag) whether
                          the socket is gone. */
    AX_OP_RESOLVE = 6, /* name = host name to look up (e.g. "web" or "web.ax"), a.family
                          = AF_INET/AF_INET6/AF_UNSPEC wanted.  reply: OK with a = the
                          virtual address (IPv4; the hook maps it for AF_INET6), or
                          NATIVE (not an ax name: resolve normally).  Both answers may be
                          kept while the identity map's generation equals reply.arg. */
    AX_OP_REVERSE = 8, /* a = address.  reply OK with name = service name, or NATIVE. */
    AX_OP_LOOKUP = 11, /* the virtual view of a socket this process has no record of
                          (inherited across exec, received over SCM_RIGHTS): lookup.cookie =
                          its SO_COOKIE, a = its real local address, b = its real peer
                          address (family 0: not connected).  reply: OK with arg = AX_LK_*,
                          sock = daemon socket id (0 for connected sockets), a = virtual
                          local address, b = virtual peer address (family 0: none); or
                          NATIVE (nothing virtual about it). */
    AX_OP_ACCEPT = 12, /* only while the identity map's flags have AX_MAP_F_ACCEPT: a
                          connection accepted on listening socket sock (daemon socket id)
                          from a = the real peer address, which is no local ax app (not in
                          the identity map).  reply: OK (the app may have it) or ERR with
                          err = EACCES (policy: the hook resets it and accepts the next);
                          arg = the generation the verdict holds for, for this (sock, peer
                          IP), as for RESOLVE (0: do not keep it). */
    /* 7, 9 and 10 (PEER, CONNECTED, CONNECTING) are retired: identities travel in
       source addresses now, and are never reused for another meaning. */
};

/* reply flags (reply.flags) */
#define AX_RF_CACHE     0x1  /* a DIRECT answer that may be reused (see AX_OP_CONNECT) */
#define AX_RF_LOCAL     0x2  /* DIRECT: b is on this host: bind the app's source address */
#define AX_CACHE_MAX    10   /* backends in one cacheable answer (struct ax_cache_answer) */

/* reply statuses (reply.status) */
enum ax_status {
    AX_ST_OK = 0,
    AX_ST_NATIVE = 1,
    AX_ST_PENDING = 2,
    AX_ST_ERR = 3,
    AX_ST_DIRECT = 4,  /* CONNECT: connect the app's own socket to b (see AX_OP_CONNECT) */
};

/* HELLO flags (request.arg: supported by the hook; reply.arg: granted) */
#define AX_HF_DIRECT    0x1  /* CONNECT may be answered AX_ST_DIRECT */
#define AX_HF_FOREIGN   0x2  /* reply only: the session is in another network namespace than
                                the daemon (ax run --isolate): the responder's address is out of
                                reach there, so DNS traffic is not redirected to it (the
                                namespace's own resolv.conf names its relay, ax-dnsrelay) */

/* BIND flags (request.arg) */
#define AX_BF_V6ONLY    0x1  /* the app set IPV6_V6ONLY=1 before bind */
#define AX_BF_REUSEPORT 0x2  /* the app set SO_REUSEPORT=1 before bind */
#define AX_BF_AUTOBIND  0x4  /* implicit bind from listen() on an unbound socket */
#define AX_BF_REUSEADDR 0x10 /* the app set SO_REUSEADDR=1 before bind (UDP: sockets that
                                both set it share a port, as in the kernel) */
#define AX_BF_DGRAM     0x8  /* a UDP socket: the daemon binds a UDP socket and registers a
                                udp service at once (datagram sockets have no listen()) */

/* CONNECT flags (request.arg) */
#define AX_CF_NONBLOCK  0x1  /* the app socket is non-blocking */
#define AX_CF_WAIT      0x2  /* answer PENDING instead of refusing when a registered
                                service has no listener yet */
#define AX_CF_DGRAM     0x4  /* a UDP destination (connect() or sendto() of a datagram
                                socket): answered DIRECT toward a udp backend, the source
                                address of a local app owning the VIP (a reply to a client),
                                or a closed port (nothing serves it: the kernel's own
                                ICMP port-unreachable follows); never PENDING.  A real
                                destination (asked only under AX_MAP_F_EGRESS): NATIVE
                                (send natively) or ERR with err = EPERM (egress policy),
                                arg = the generation the verdict holds for */
#define AX_CF_SENDTO    0x8  /* with AX_CF_DGRAM, foreign sessions (ax run --isolate): an
                                unconnected sender's datagram to a virtual address.  The
                                daemon judges policy and lets the app's mark send to every
                                allowed backend of the destination (udpegress.ts), then
                                answers OK + fd: an UNconnected host UDP socket bound to the
                                app's source address (port b.port when the app's socket is
                                bound there already, else any), marked; b = the backend this
                                datagram goes to; flags AX_RF_CACHE with the backends, cached
                                under key | CACHE_HOST.  With AX_CF_HOST too: no fd (the
                                app's socket is such a host socket already), answer DIRECT
                                with the same b and cache. */
#define AX_CF_HOST      0x10 /* with AX_CF_SENDTO: the sending socket is a host socket the
                                daemon handed in (a UDP service's, or an earlier AX_CF_SENDTO's) */

/* LOOKUP reply.arg: what the socket is to ax */
#define AX_LK_BOUND     1    /* bound by the daemon (sock = its id), not listening */
#define AX_LK_LISTEN    2    /* a listening service (sock = its id) */
#define AX_LK_CONN      3    /* a client connected to a service */
#define AX_LK_ACCEPTED  4    /* a server's end of a connection accepted by a service */

/* An address.  port in host byte order; ip in network byte order (4 bytes used
 * for AF_INET).  family uses the kernel's AF_* numbers; 0 = none. */
struct ax_addr {
    uint16_t family;
    uint16_t port;
    uint32_t scope_id;
    uint8_t  ip[16];
};                                         /* 24 bytes */

/* The payload of a cacheable CONNECT reply (status AX_ST_DIRECT, flags AX_RF_CACHE). */
struct ax_cache_answer {
    uint32_t generation;   /*   0: valid while the generation file holds this value */
    uint32_t n_backends;   /*   4: 1..AX_CACHE_MAX entries of backends are used */
    uint32_t local_mask;   /*   8: bit i: backends[i] is on this host (bind the source address) */
    uint32_t reserved;     /*  12: 0 */
    struct ax_addr backends[AX_CACHE_MAX]; /* 16: every backend the client may use */
};                                         /* 16 + 24 * AX_CACHE_MAX bytes */

/* The payload of a LOOKUP request. */
struct ax_lookup {
    uint64_t cookie;       /*   0: SO_COOKIE of the socket */
};

#define AX_PAYLOAD_OFF  80
#define AX_PAYLOAD_SIZE (AX_MSG_SIZE - AX_PAYLOAD_OFF)

struct ax_msg {
    uint32_t magic;        /*   0: AX_MAGIC */
    uint16_t op;           /*   4: enum ax_op (a reply echoes the request's op) */
    uint16_t flags;        /*   6: reply: AX_RF_*; request: 0 */
    uint32_t seq;          /*   8: request sequence number, echoed in the reply */
    int32_t  status;       /*  12: reply: enum ax_status; request: 0 */
    int32_t  err;          /*  16: reply: errno value (positive) or 0 */
    uint32_t sock;         /*  20: daemon socket id / session id / ticket */
    int32_t  arg;          /*  24: op specific (flags, backlog, errno) */
    uint32_t pid;          /*  28: request: getpid() of the caller; reply: 0 */
    struct ax_addr a;      /*  32 */
    struct ax_addr b;      /*  56 */
    union {                /*  80: one payload per message, by op and flags; rest zero */
        char name[AX_NAME_MAX];        /* HELLO, RESOLVE, REVERSE, HELLO reply: NUL terminated */
        struct ax_cache_answer cache;  /* CONNECT reply with AX_RF_CACHE */
        struct ax_lookup lookup;       /* LOOKUP request */
        uint8_t payload[AX_PAYLOAD_SIZE];
    };
};

#ifdef __cplusplus
static_assert(sizeof(struct ax_msg) == AX_MSG_SIZE, "ax_msg size");
static_assert(sizeof(struct ax_cache_answer) <= AX_PAYLOAD_SIZE, "cache answer fits");
#else
_Static_assert(sizeof(struct ax_msg) == AX_MSG_SIZE, "ax_msg size");
_Static_assert(__builtin_offsetof(struct ax_msg, payload) == AX_PAYLOAD_OFF, "payload offset");
_Static_assert(sizeof(struct ax_cache_answer) <= AX_PAYLOAD_SIZE, "cache answer fits");
_Static_assert(AX_MSG_SIZE % 8 == 0 && AX_MSG_SIZE <= 512, "message size");
#endif

/* The identity map: a file the daemon writes through a shared mapping and every
 * hook maps read-only (its path comes with the HELLO reply).  Words are written
 * whole (4-byte aligned), in host byte order.  Entry i belongs to source address
 * src_base + i (IPv4, host order): the loopback address the app with that index
 * binds before its connects, so a server's hook turns an accepted peer address
 * into the client's virtual IP with one read and no message. */
#define AX_MAP_MAGIC    0x504d5841u /* "AXMP" read as little endian bytes */
#define AX_MAP_VERSION  2
struct ax_map_hdr {
    uint32_t generation;   /*   0: the table generation; 0 = trust no cached answer */
    uint32_t magic;        /*   4: AX_MAP_MAGIC */
    uint32_t version;      /*   8: AX_MAP_VERSION */
    uint32_t src_base;     /*  12: first source address (IPv4, host byte order) */
    uint32_t src_count;    /*  16: entries that follow the header */
    uint32_t dns_ip;       /*  20: the daemon's DNS responder (IPv4, host order); 0 = none */
    uint32_t dns_port;     /*  24: its UDP and TCP port */
    uint32_t n_ranges;     /*  28: virtual ranges that follow (0..AX_MAP_RANGES) */
    uint32_t ranges[2 * 4];/*  32: (base, mask) pairs, IPv4 host order: a datagram to an
                                   address inside one is virtual (the hook routes it) */
    uint32_t flags;        /*  64: AX_MAP_F_*: which checks the hook makes (read per call) */
    uint32_t reserved;     /*  68: 0 */
};                         /* 72 bytes; entries follow */
#define AX_MAP_RANGES   4
#define AX_MAP_F_ACCEPT 0x1 /* accepts are filtered: a peer that is no local ax app is judged by
                               the daemon (AX_OP_ACCEPT, once per listening socket and peer IP
                               and generation); clear: accept() asks nothing */
#define AX_MAP_F_EGRESS 0x2 /* egress rules exist: a datagram to a real (not virtual, not
                               redirected DNS) IPv4 destination is judged by the daemon
                               (AX_OP_CONNECT with AX_CF_DGRAM, once per destination and
                               generation); clear: such datagrams ask nothing */
struct ax_map_ent {
    uint32_t vip;          /*   0: the app's virtual IP (IPv4, host order); 0 = unused */
    uint32_t reserved;     /*   4: 0 */
};
#ifndef __cplusplus
_Static_assert(sizeof(struct ax_map_hdr) == 72 && sizeof(struct ax_map_ent) == 8, "map layout");
#endif

/* Environment passed from `ax run` to the hooked program (and kept across exec). */
#define AX_ENV_SOCK  "AX_HOOK_SOCK"   /* path of the daemon's hook socket */
#define AX_ENV_APP   "AX_APP"         /* "<app id>:<token>" */
#define AX_ENV_WAIT  "AX_CONNECT_WAIT_MS" /* bound for a blocking connect to a service
                                            that is registered but not listening yet */
#define AX_ENV_FAIL  "AX_FAIL_MODE"   /* "closed" (default): daemon unreachable or not
                                         answering in time -> calls that need it fail
                                         with ECONNREFUSED (connect) / EADDRNOTAVAIL
                                         (bind) / EADDRINUSE (listen); "open": they pass
                                         through natively.  Either way a bind to a
                                         specific address other than the app's VIP
                                         (a real address) is done natively. */
#define AX_ENV_DEBUG "AX_HOOK_DEBUG"  /* path of a log file for the hook (never stderr) */
#define AX_ENV_DAEMON_WAIT "AX_DAEMON_WAIT_MS" /* bound, in ms (1..3600000), on every wait of
                                         one hook call for the daemon (its turn on the
                                         channel, connect, reply); then the fail mode
                                         applies.  Default AX_DAEMON_WAIT_DEFAULT_MS. */
#define AX_DAEMON_WAIT_DEFAULT_MS 1000

#endif
