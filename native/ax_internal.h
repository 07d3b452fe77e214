/*
 * ax_internal.h -- declarations shared by the files of libaxhook.so.
 *
 * The library is split along its seams (see docs/architecture.md):
 *   hooks.c    the exported interposers: each a few lines calling into the logic below
 *   core.c     real symbols (dlsym RTLD_NEXT), configuration, lazy init, debug log,
 *              cached pid, raw system calls and the syscall() dispatcher
 *   addr.c     sockaddr <-> struct ax_addr conversions and predicates
 *   fdtable.c  per-socket metadata shared across dups; close/close_range/closefrom,
 *              dup/dup2/dup3 and F_DUPFD
 *   ctl.c      the control channel to the daemon: session, request/reply, one-way
 *              notes, the generation page, fork handling
 *   cache.c    cached DIRECT connect answers (valid while the generation is unchanged)
 *   sock.c     socket logic: socket, bind, listen, connect, accept, name translation,
 *              fd swap, socket option and epoll bookkeeping
 *   udp.c      datagram sockets: connect, send and receive translation, the flow
 *              table, the DNS redirect to the daemon's responder
 *   names.c    getaddrinfo, getnameinfo, gethostbyname*, gethostbyaddr*
 *   execenv.c  exec family and posix_spawn: LD_PRELOAD and AX_* kept in the child's env
 *
 * Everything declared here is hidden (-fvisibility=hidden and the pragma below);
 * only the interposers in hooks.c are exported.
 *
 * Rules followed throughout:
 *  - real symbols are resolved once (dlsym RTLD_NEXT) in a lazy, idempotent init;
 *  - nothing is ever printed to stdout/stderr (optional log: $AX_HOOK_DEBUG);
 *  - errno is preserved on success, only API-legal values on failure;
 *  - a thread-local guard sends re-entrant calls (signal handlers that run
 *    while the thread is inside the hook) straight to libc, so no lock is ever
 *    taken twice by one thread;
 *  - close() never mallocs, frees, or takes the control-channel mutex; the
 *    one-way CLOSE message is a single non-blocking send().
 */
#ifndef AX_INTERNAL_H
#define AX_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ax_proto.h"

#define EXPORT __attribute__((visibility("default")))
#define TLS    __thread __attribute__((tls_model("initial-exec")))

/* glibc declares the sockaddr arguments as transparent unions under _GNU_SOURCE. */
#if defined(__USE_GNU) && !defined(__cplusplus)
#define SA(x)  ((x).__sockaddr__)
#define CSA(x) ((x).__sockaddr__)
#else
#define SA(x)  (x)
#define CSA(x) (x)
#endif

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

#pragma GCC visibility push(hidden)

/* ------------------------------------------------------------------------ */
/* core.c: real symbols, configuration, init                                 */

struct real_syms {
    int (*socket)(int, int, int);
    int (*socketpair)(int, int, int, int[2]);
    int (*bind)(int, const struct sockaddr *, socklen_t);
    int (*listen)(int, int);
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*getsockname)(int, struct sockaddr *, socklen_t *);
    int (*getpeername)(int, struct sockaddr *, socklen_t *);
    int (*getsockopt)(int, int, int, void *, socklen_t *);
    int (*setsockopt)(int, int, int, const void *, socklen_t);
    int (*close)(int);
    int (*close_range)(unsigned int, unsigned int, int);
    void (*closefrom)(int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*fcntl64)(int, int, ...);
    int (*ioctl)(int, unsigned long, ...);
    int (*epoll_ctl)(int, int, int, struct epoll_event *);
    long (*syscall)(long, ...);
    int (*getaddrinfo)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    void (*freeaddrinfo)(struct addrinfo *);
    int (*getnameinfo)(const struct sockaddr *, socklen_t, char *, socklen_t, char *, socklen_t, int);
    struct hostent *(*gethostbyname)(const char *);
    struct hostent *(*gethostbyname2)(const char *, int);
    int (*gethostbyname_r)(const char *, struct hostent *, char *, size_t, struct hostent **, int *);
    int (*gethostbyname2_r)(const char *, int, struct hostent *, char *, size_t, struct hostent **, int *);
    struct hostent *(*gethostbyaddr)(const void *, socklen_t, int);
    int (*gethostbyaddr_r)(const void *, socklen_t, int, struct hostent *, char *, size_t, struct hostent **, int *);
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                       char *const[], char *const[]);
    int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                        char *const[], char *const[]);
    ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
};
extern struct real_syms R;

/* configuration (read once at init) */
#define N_SAVED_ENV 6
struct ax_cfg {
    int enabled;                 /* AX_HOOK_SOCK set: the hook is active */
    int fail_open;               /* AX_FAIL_MODE=open */
    long wait_ms;                /* AX_CONNECT_WAIT_MS */
    long daemon_wait_ms;         /* AX_DAEMON_WAIT_MS: bound on every wait for the daemon */
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char app[AX_NAME_MAX];
    char *debug_path;
    char *self_path;             /* path of this library */
    char *preload_entry;         /* "LD_PRELOAD=..." as we want it in children */
    char *saved_env[N_SAVED_ENV];/* "AX_...=value" strings present at init */
};
extern struct ax_cfg cfg;
extern const char *const saved_env_names[N_SAVED_ENV];

extern atomic_int inited;
extern TLS int tl_in_hook;
extern TLS int tl_initializing;
void ax_init_slow(void);

/* Lazy, idempotent init. A hooked call made by something do_init itself calls
 * (malloc's own initialization, say) must not wait on the pthread_once it is
 * inside of: it goes on with whatever is resolved so far. */
static inline void ax_init(void)
{
    if (__builtin_expect(!atomic_load_explicit(&inited, memory_order_acquire), 0) && !tl_initializing)
        ax_init_slow();
}

/* The hook is "on" for this call: configured and not re-entered. */
static inline int hook_on(void) { return cfg.enabled && !tl_in_hook; }

#define NEED(f)                      \
    do {                             \
        ax_init();                   \
        if (!R.f) {                  \
            errno = ENOSYS;          \
            return -1;               \
        }                            \
    } while (0)

#define GUARD_ENTER (tl_in_hook++)
#define GUARD_LEAVE (tl_in_hook--)

/* getpid() cached in a MADV_WIPEONFORK page (see core.c) */
extern atomic_int *pid_cache;
static inline pid_t ax_getpid(void)
{
    atomic_int *c = pid_cache;
    if (__builtin_expect(c != NULL, 1)) {
        int v = atomic_load_explicit(c, memory_order_relaxed);
        if (__builtin_expect(v != 0, 1))
            return v;
        v = (int)getpid();
        atomic_store_explicit(c, v, memory_order_relaxed);
        return v;
    }
    return getpid();
}

void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long raw_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5);
long h_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5);

/* ------------------------------------------------------------------------ */
/* addr.c                                                                    */

extern const uint8_t v4mapped_prefix[12];
int sa_to_ax(const struct sockaddr *sa, socklen_t len, struct ax_addr *a);
void ax_unmap(struct ax_addr *a);
socklen_t ax_to_sa(const struct ax_addr *a, int family, struct sockaddr_storage *ss);
int is_loopback(const struct sockaddr *sa);
int is_wildcard(const struct sockaddr_storage *ss);
int same_addr(const struct ax_addr *x, const struct ax_addr *y);
void copy_out(const void *src, socklen_t srclen, struct sockaddr *dst, socklen_t *dstlen);

/* ------------------------------------------------------------------------ */
/* fdtable.c: per-socket metadata, shared across dups                        */

enum { ST_FRESH, ST_BOUND, ST_LISTEN, ST_CONN, ST_ACCEPTED, ST_NATIVE };

#define MAX_OPTS 16
#define MAX_EPS  8
#define OPT_MAX  64

struct opt {
    int level, name;
    socklen_t len;
    unsigned char val[OPT_MAX];
};
struct epreg {
    int epfd;
    uint32_t events;
    uint64_t data;
};

/* A datagram socket's last translation each way: the send side (the app's
 * sockaddr bytes for a virtual destination -> the real one, used for sends
 * under its table generation only, and for replies from that real
 * destination, shown as vout, under any) and the receive side (a real source
 * -> its virtual one, under its generation).  A repeated flow then costs one
 * read of the fd table, without its lock (udp.c: memo_send, memo_recv),
 * instead of the flow table, the answer cache and their locks. */
struct udp_memo {
    uint32_t gen;           /* table generation of the send pair; 0 = none */
    uint32_t rgen;          /* same, receive pair */
    int local;              /* the real destination is on this host */
    /* the receive pair parsed, for a reply to the client last heard from
     * (translate_dest): the real source and the client's VIP:port */
    struct ax_addr rsrc, vsrc;
    /* the send pair in raw form: the sockaddr bytes the app passed (rawlen of
     * them) and the real destination ready to pass on, so a repeated sendto to
     * the same virtual address costs one compare and one copy (no parsing) */
    socklen_t rawlen, outlen;
    struct sockaddr_in6 raw, out;
    /* the receive side in the socket's own sockaddr form: vout (voutlen) is
     * what a datagram from `out` shows as its source; a datagram from rsrc_sa
     * shows vsrc_sa (vsrclen; 0 = none) */
    socklen_t voutlen, vsrclen;
    struct sockaddr_in6 vout, rsrc_sa, vsrc_sa;
};

struct meta {
    struct meta *next;      /* free list */
    uint64_t gen;           /* 0 while on the free list */
    int refs;               /* fd numbers pointing here */
    int family;
    int state;
    int bound_native;       /* bound to a real (loopback) address */
    int dgram;              /* SOCK_DGRAM (UDP); else SOCK_STREAM */
    int src_free;           /* datagram socket whose local address is the wildcard: the
                               source address may be chosen per datagram (udp.c) */
    int src_bound;          /* datagram socket ax bound to the app's source address on its
                               first datagram to a virtual address; getsockname shows the
                               wildcard, as natively (udp.c) */
    int host;               /* datagram socket of a foreign session that is a host socket the
                               daemon handed in unconnected (AX_CF_SENDTO) or bound (a
                               UDP service): its datagrams to virtual addresses are
                               authorized, not handed over (udp.c) */
    uint32_t move_seq;      /* udp_moves when ax last moved this socket back to the wildcard */
    uint32_t sock_id;       /* daemon socket id */
    pid_t owner;            /* process that got sock_id (for the debug log) */
    ino_t ino;              /* socket inode, to detect stale entries */
    int v6only, reuseport, reuseaddr;
    int has_vlocal, has_vpeer, has_rdest;
    socklen_t vlocal_len, vpeer_len, rdest_len;
    struct sockaddr_storage vlocal, vpeer, rdest;
    struct udp_memo memo;   /* datagram sockets: the last flow each way (udp.c) */
    int nopts, neps;
    struct opt opts[MAX_OPTS];
    struct epreg eps[MAX_EPS];
};

struct closeinfo {
    int send;
    uint32_t sock;
};

/* The fd table is guarded by tbl_mu, and is also a sequence lock (the
 * seqlock of Linux's include/linux/seqlock.h, Lameter 2005): tbl_seq is odd
 * while a holder of tbl_mu may be changing it, and moves on at each unlock.
 * The hot paths of datagram sockets (memo_send, memo_recv) read the
 * table without the mutex and keep what they read only when tbl_seq was even
 * and unchanged across the read (else they read again under it).  Reading
 * without the lock is memory-safe:
 * table chunks and meta records are never freed (records go back to a pool),
 * so a racing reader sees stale or torn values, which the sequence check
 * rejects, never unmapped memory; lengths read that way are bounded before
 * use.  Every change to a meta record or a slot is made under tbl_lock. */
extern pthread_mutex_t tbl_mu;
extern atomic_uint tbl_seq;
static inline void tbl_lock(void)
{
    pthread_mutex_lock(&tbl_mu);
    atomic_store_explicit(&tbl_seq, atomic_load_explicit(&tbl_seq, memory_order_relaxed) + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* odd before any change is seen */
}
static inline void tbl_unlock(void)
{
    atomic_store_explicit(&tbl_seq, atomic_load_explicit(&tbl_seq, memory_order_relaxed) + 1, memory_order_release);
    pthread_mutex_unlock(&tbl_mu);
}
/* A lock-free read of the table: s = tbl_read_begin(); if s is odd, take the
 * lock instead; read; the values read are good when !tbl_read_retry(s). */
static inline unsigned tbl_read_begin(void) { return atomic_load_explicit(&tbl_seq, memory_order_acquire); }
static inline int tbl_read_retry(unsigned s)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&tbl_seq, memory_order_relaxed) != s;
}

#define TBL_CH_BITS  12
#define TBL_CH_SIZE  (1u << TBL_CH_BITS)
#define TBL_TOP_SIZE (1u << 18) /* fds up to 2^30: more than fs.nr_open allows */
extern struct meta **tbl_top[TBL_TOP_SIZE];
/* fd's record without the lock (inside a tbl_read_begin section), or NULL */
static inline struct meta *slot_peek(int fd)
{
    if ((unsigned)fd >= TBL_TOP_SIZE * TBL_CH_SIZE)
        return NULL;
    struct meta **c = __atomic_load_n(&tbl_top[(unsigned)fd >> TBL_CH_BITS], __ATOMIC_ACQUIRE);
    return c ? __atomic_load_n(&c[(unsigned)fd & (TBL_CH_SIZE - 1)], __ATOMIC_RELAXED) : NULL;
}
struct meta **slot_locked(int fd, int create);
struct meta *meta_alloc_locked(void);
void tbl_drop_locked(int fd, struct closeinfo *ci);
struct meta *tbl_get_gen_locked(int fd, uint64_t gen);
struct meta *tbl_own_locked(int fd, uint64_t gen);
int tbl_snapshot(int fd, struct meta *out, int verify);
int tbl_peek(int fd, struct meta *out);
void tbl_track(int fd, int family, int state, int dgram);
void tbl_forget(int fd);
void tbl_share(int oldfd, int newfd);
void tbl_preallocate(void);
ino_t fd_ino(int fd);

int h_close(int fd);
int h_close_range(unsigned first, unsigned last, int flags);
void h_closefrom(int lowfd);
int h_dup(int fd);
int h_dup3(int old, int nw, int flags, int three);
int h_fcntl(int (*real)(int, int, ...), int fd, int cmd, void *arg);

/* ------------------------------------------------------------------------ */
/* ctl.c: control channel                                                    */

extern pthread_mutex_t ctl_mu;
extern atomic_int ctl_fd;
extern atomic_int ctl_ok;
extern struct ax_addr app_vip;
extern int have_vip;

int ax_request(struct ax_msg *req, struct ax_msg *rep, int *rfd);
int ctl_session(void);
void send_close(uint32_t sock);
int is_ctl(int fd);
void ctl_relocate(int fd);
void atfork_prepare(void);
void atfork_parent(void);
void atfork_child(void);

/* ------------------------------------------------------------------------ */
/* identity.c: the identity map (generation + source address -> VIP)          */

extern const volatile uint32_t *gen_page; /* NULL until mapped */
extern struct ax_addr app_src;            /* this app's source address */
extern int have_src;
extern int session_direct; /* the session was granted AX_HF_DIRECT (the daemon's own netns) */
extern int session_foreign; /* the daemon said AX_HF_FOREIGN (another netns: no DNS redirect) */
void map_identity(const char *path);
/* the client VIP (port kept) for a real peer address in the source range; 1 if found */
int ident_peer(const struct ax_addr *real, struct ax_addr *virt);
/* a (unmapped IPv4) lies in one of the daemon's virtual ranges (map header) */
int map_virtual(const struct ax_addr *a);
/* the daemon's DNS responder (AF_INET, host port), 1 if it has one */
int map_dns(struct ax_addr *out);
/* the map header's AX_MAP_F_* flags (0 without a map) */
uint32_t map_flags(void);

/* ------------------------------------------------------------------------ */
/* cache.c: cached DIRECT answers                                            */

/* The hook's small hash tables (answers, verdicts, UDP flows) are open-addressed
 * arrays whose entries start with this header: gen 0 is an empty slot. */
struct slot_hdr {
    uint32_t gen;   /* table generation the entry was learned under; 0 = empty */
    uint32_t stamp; /* insertion order, for eviction */
};
/* Inline, so each table's hash and comparison compile into its own lookup (they run
 * on every cached connect and datagram). */
/* FNV-1a (32-bit) over an address and one more word (a family, a tag) */
static inline uint32_t addr_hash(const struct ax_addr *a, uint32_t extra)
{
    uint32_t h = 2166136261u; /* FNV-1a (Fowler, Noll, Vo), 32-bit */
    for (int i = 0; i < 16; i++)
        h = (h ^ a->ip[i]) * 16777619u;
    h = (h ^ a->port) * 16777619u;
    h = (h ^ extra) * 16777619u;
    h = (h ^ a->family) * 16777619u;
    return h;
}

/* The slot for (key, tag) among the probe slots from h (an array of entries of
 * `size` bytes, mask = slots - 1): its own, else the first empty, else the
 * oldest (evicted).  same(e, key, tag): whether entry e holds the key.  The
 * caller holds the table's lock and fills the entry. */
static inline void *slot_claim(void *tab, size_t size, unsigned mask, unsigned h, unsigned probe,
                               int (*same)(const void *e, const void *key, uint32_t tag), const void *key, uint32_t tag)
{
    char *base = tab;
    struct slot_hdr *hit = NULL, *empty = NULL, *oldest = NULL;
    for (unsigned k = 0; k < probe && !hit; k++) {
        struct slot_hdr *c = (struct slot_hdr *)(base + ((h + k) & mask) * size);
        if (same(c, key, tag))
            hit = c;
        else if (c->gen == 0 && !empty)
            empty = c;
        else if (!oldest || (int32_t)(c->stamp - oldest->stamp) < 0)
            oldest = c;
    }
    return hit ? hit : empty ? empty : oldest;
}

/* The entry holding (key, tag) learned under generation gen, or NULL (an entry of
 * an older generation is emptied on the way). */
static inline void *slot_find(void *tab, size_t size, unsigned mask, unsigned h, unsigned probe, uint32_t gen,
                              int (*same)(const void *e, const void *key, uint32_t tag), const void *key, uint32_t tag)
{
    char *base = tab;
    for (unsigned k = 0; k < probe; k++) {
        struct slot_hdr *c = (struct slot_hdr *)(base + ((h + k) & mask) * size);
        if (!same(c, key, tag))
            continue;
        if (c->gen == gen)
            return c;
        c->gen = 0; /* learned under an older generation: ask again */
        return NULL;
    }
    return NULL;
}

/* key: the socket family, | CACHE_DGRAM for datagram destinations */
#define CACHE_DGRAM 0x100
/* | CACHE_HOST: destinations an isolated app's host UDP sockets may send to (AX_CF_SENDTO) */
#define CACHE_HOST 0x200
void cache_store(const struct ax_addr *dest, int key, const struct ax_msg *p);
/* pick < 0: the next backend round robin; else backend pick % n (a flow's own) */
int cache_lookup(const struct ax_addr *dest, int key, struct ax_msg *p, long pick);
/* cached verdicts for (a, tag) under the current generation: 1 allow, 0 deny, -1 unknown */
int verdict_lookup(const struct ax_addr *a, uint32_t tag);
void verdict_store(const struct ax_addr *a, uint32_t tag, uint32_t gen, int allow);
/* the verdict tag of UDP egress (real destinations); accept verdicts use the listener's id */
#define VC_TAG_UDP_EGRESS 0xffffffffu

/* ------------------------------------------------------------------------ */
/* sock.c: socket logic                                                      */

int h_socket(int domain, int type, int protocol);
int h_socketpair(int domain, int type, int protocol, int sv[2]);
int h_bind(int fd, const struct sockaddr *addr, socklen_t len);
int h_listen(int fd, int backlog);
int h_connect(int fd, const struct sockaddr *addr, socklen_t len);
int h_accept(int lfd, struct sockaddr *addr, socklen_t *alen, int flags, int four);
int h_name_query(int fd, struct sockaddr *addr, socklen_t *len, int peer);
int h_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int h_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
ssize_t h_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t alen);
ssize_t h_sendmsg(int fd, const struct msghdr *msg, int flags);
int h_sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags);
ssize_t h_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen);
ssize_t h_recvmsg(int fd, struct msghdr *msg, int flags);
int h_recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *tmo);
/* shared with udp.c */
int swap_fd(int fd, int nfd, const struct meta *snap, ino_t *ino, int *app_fl);
int snapshot_or_learn(int fd, struct meta *out, int verify);
/* egress policy for a datagram to real IPv4 destination d (AX_MAP_F_EGRESS set): 1 = send */
int egress_dgram_allowed(const struct ax_addr *d, int family);

/* ------------------------------------------------------------------------ */
/* udp.c: datagram sockets                                                   */

/* connect() of a datagram socket (snapshot snap, destination addr) */
int udp_connect(int fd, struct meta *snap, const struct sockaddr *addr, socklen_t len);
/* a datagram to a destination: 1 handled (*r set), 0 pass through unchanged */
int udp_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t alen,
               ssize_t *r);
int udp_sendmsg(int fd, const struct msghdr *msg, int flags, ssize_t *r);
/* the virtual view of a datagram's source address, translated in place
 * (sa: the kernel's complete answer of length *len, room: the buffer's size) */
void udp_fix_source(int fd, struct sockaddr *sa, socklen_t *len, socklen_t room);
/* count of moves back to the wildcard (0 until one happened): a receive that
 * returned 0 while its socket was moved is retried on the new one */
extern atomic_uint udp_moves;
int udp_moved_since(int fd, unsigned seq);
ssize_t h_recv(int fd, void *buf, size_t n, int flags);
/* learn_socket: a datagram socket bound to the app's source address by ax */
int udp_is_src_bound(const struct sockaddr_storage *local);
/* the real destination for a DNS server address of resolv.conf (port 53), 1 if redirected */
int dns_redirect(const struct ax_addr *dest, struct ax_addr *real);

/* ------------------------------------------------------------------------ */
/* names.c: name lookups                                                     */

int h_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res);
void h_freeaddrinfo(struct addrinfo *ai);
int h_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                  socklen_t servlen, int flags);
struct hostent *h_gethostbyname2(const char *name, int af, int two);
int h_gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                       struct hostent **result, int *h_errnop, int two);
struct hostent *h_gethostbyaddr(const void *addr, socklen_t len, int type);
int h_gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf, size_t buflen,
                      struct hostent **result, int *h_errnop);

/* ------------------------------------------------------------------------ */
/* execenv.c: exec family and posix_spawn                                    */

int h_execve(const char *path, char *const argv[], char *const envp[]);
int h_execvpe(const char *file, char *const argv[], char *const envp[]);
int h_posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                  const posix_spawnattr_t *attr, char *const argv[], char *const envp[], int p);

#pragma GCC visibility pop

#endif
