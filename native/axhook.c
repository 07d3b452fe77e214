/*
 * libaxhook.so -- the ax LD_PRELOAD socket hook.
 *
 * Interposes the libc socket API.  Calls that involve a virtual address are
 * forwarded to the ax daemon over a unix stream socket ($AX_HOOK_SOCK) using
 * the fixed-size messages of ax_proto.h; the daemon answers with a real socket
 * (SCM_RIGHTS) that is installed on the application's fd number with dup3().
 * No application data ever passes through the daemon.  See
 * docs/architecture.md for what is sent when.
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
#define _GNU_SOURCE
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

/* ------------------------------------------------------------------------ */
/* real symbols                                                              */

static struct {
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
} R;

/* ------------------------------------------------------------------------ */
/* configuration (read once at init)                                         */

#define N_SAVED_ENV 5
static struct {
    int enabled;                 /* AX_HOOK_SOCK set: the hook is active */
    int fail_open;               /* AX_FAIL_MODE=open */
    long wait_ms;                /* AX_CONNECT_WAIT_MS */
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char app[AX_NAME_MAX];
    char *debug_path;
    char *self_path;             /* path of this library */
    char *preload_entry;         /* "LD_PRELOAD=..." as we want it in children */
    char *saved_env[N_SAVED_ENV];/* "AX_...=value" strings present at init */
} cfg;

static const char *const saved_env_names[N_SAVED_ENV] = {
    AX_ENV_SOCK, AX_ENV_APP, AX_ENV_WAIT, AX_ENV_FAIL, AX_ENV_DEBUG,
};

/* The daemon answers a request in some tens of microseconds, while waking a
 * thread blocked in recvmsg() costs about as much again (more in VMs).  So the
 * reply is first polled for a short while (non-blocking recvmsg) before
 * blocking.  The poll yields the CPU between tries, so a daemon (or another
 * client) sharing this CPU runs instead of waiting for the poll to end. */
static long spin_budget_ns = 150000;
static const int spin_yield = 1;

static atomic_int inited;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static TLS int tl_in_hook;

/* getpid() is a real system call since glibc 2.25 and the hook needs the pid on
 * every request and close.  It is cached in a page marked MADV_WIPEONFORK: the
 * kernel hands any child made by fork(), _Fork() or a raw clone() without
 * CLONE_VM a zeroed page, so a 0 means "fork detected, ask the kernel again".
 * The atfork child handler refreshes it too.  Without MADV_WIPEONFORK (Linux
 * < 4.14) every call asks the kernel, as before.  vfork children share the
 * parent's memory and see the parent's pid; they may only exec or _exit. */
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
static atomic_int *pid_cache;

static void pid_cache_init(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    if (madvise(p, 4096, MADV_WIPEONFORK) != 0) {
        munmap(p, 4096);
        return;
    }
    pid_cache = p;
}

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

static void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void dbg(const char *fmt, ...)
{
    if (!cfg.debug_path || !R.close)
        return;
    int e = errno;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "[axhook %d] ", (int)ax_getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    int fd = open(cfg.debug_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        (void)w;
        R.close(fd);
    }
    errno = e;
}

static void atfork_prepare(void);
static void atfork_parent(void);
static void atfork_child(void);

static void *load_sym(const char *name, void *self)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (p && p == self)
        p = NULL; /* would call ourselves forever */
    return p;
}

#define LOAD(f) (*(void **)&R.f = load_sym(#f, (void *)f))

EXPORT int socket(int, int, int);
static void do_init(void)
{
    int e = errno;
    LOAD(socket); LOAD(socketpair); LOAD(bind); LOAD(listen); LOAD(connect);
    LOAD(accept); LOAD(accept4); LOAD(getsockname); LOAD(getpeername);
    LOAD(getsockopt); LOAD(setsockopt); LOAD(close); LOAD(close_range);
    LOAD(closefrom); LOAD(dup); LOAD(dup2); LOAD(dup3); LOAD(fcntl);
    LOAD(fcntl64); LOAD(ioctl); LOAD(epoll_ctl); LOAD(syscall);
    LOAD(getaddrinfo); LOAD(freeaddrinfo); LOAD(getnameinfo);
    LOAD(gethostbyname); LOAD(gethostbyname2); LOAD(gethostbyname_r);
    LOAD(gethostbyname2_r); LOAD(gethostbyaddr); LOAD(gethostbyaddr_r);
    LOAD(execve); LOAD(execvpe); LOAD(posix_spawn); LOAD(posix_spawnp);
    if (!R.fcntl64)
        R.fcntl64 = R.fcntl;
    pid_cache_init();

    const char *s = getenv(AX_ENV_SOCK);
    if (s && *s && strlen(s) < sizeof cfg.sock_path) {
        strcpy(cfg.sock_path, s);
        cfg.enabled = 1;
    }
    s = getenv(AX_ENV_APP);
    if (s)
        snprintf(cfg.app, sizeof cfg.app, "%s", s);
    s = getenv(AX_ENV_FAIL);
    cfg.fail_open = s && strcmp(s, "open") == 0;
    s = getenv(AX_ENV_WAIT);
    cfg.wait_ms = 5000;
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end == 0 && v >= 0)
            cfg.wait_ms = v;
    }
    s = getenv(AX_ENV_DEBUG);
    if (s && *s)
        cfg.debug_path = strdup(s);
    for (int i = 0; i < N_SAVED_ENV; i++) {
        s = getenv(saved_env_names[i]);
        if (s) {
            size_t n = strlen(saved_env_names[i]) + strlen(s) + 2;
            cfg.saved_env[i] = malloc(n);
            if (cfg.saved_env[i])
                snprintf(cfg.saved_env[i], n, "%s=%s", saved_env_names[i], s);
        }
    }
    Dl_info info;
    if (dladdr((void *)do_init, &info) && info.dli_fname)
        cfg.self_path = strdup(info.dli_fname);
    s = getenv("LD_PRELOAD");
    if (s && cfg.self_path) {
        const char *base = strrchr(cfg.self_path, '/');
        base = base ? base + 1 : cfg.self_path;
        if (strstr(s, base)) {
            size_t n = strlen(s) + 12;
            cfg.preload_entry = malloc(n);
            if (cfg.preload_entry)
                snprintf(cfg.preload_entry, n, "LD_PRELOAD=%s", s);
        }
    }
    if (!cfg.preload_entry && cfg.self_path) {
        size_t n = strlen(cfg.self_path) + 12;
        cfg.preload_entry = malloc(n);
        if (cfg.preload_entry)
            snprintf(cfg.preload_entry, n, "LD_PRELOAD=%s", cfg.self_path);
    }
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    atomic_store(&inited, 1);
    if (cfg.enabled)
        dbg("init sock=%s app=%s fail_open=%d wait_ms=%ld self=%s", cfg.sock_path, cfg.app,
            cfg.fail_open, cfg.wait_ms, cfg.self_path ? cfg.self_path : "?");
    errno = e;
}

static TLS int tl_initializing;

static void do_init_guarded(void)
{
    tl_initializing = 1;
    do_init();
    tl_initializing = 0;
}

/* Lazy, idempotent init. A hooked call made by something do_init itself calls
 * (malloc's own initialization, say) must not wait on the pthread_once it is
 * inside of: it goes on with whatever is resolved so far. */
static inline void ax_init(void)
{
    if (__builtin_expect(!atomic_load_explicit(&inited, memory_order_acquire), 0) && !tl_initializing)
        pthread_once(&init_once, do_init_guarded);
}

__attribute__((constructor)) static void ax_ctor(void) { ax_init(); }

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

/* ------------------------------------------------------------------------ */
/* addresses                                                                 */

static int sa_to_ax(const struct sockaddr *sa, socklen_t len, struct ax_addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s = (const void *)sa;
        a->family = AF_INET;
        a->port = ntohs(s->sin_port);
        memcpy(a->ip, &s->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s = (const void *)sa;
        a->family = AF_INET6;
        a->port = ntohs(s->sin6_port);
        a->scope_id = s->sin6_scope_id;
        memcpy(a->ip, &s->sin6_addr, 16);
        return 0;
    }
    return -1;
}

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* v4-mapped IPv6 -> plain IPv4 (for messages where the daemon expects IPv4) */
static void ax_unmap(struct ax_addr *a)
{
    if (a->family == AF_INET6 && memcmp(a->ip, v4mapped_prefix, 12) == 0) {
        memmove(a->ip, a->ip + 12, 4);
        memset(a->ip + 4, 0, 12);
        a->family = AF_INET;
        a->scope_id = 0;
    }
}

/* ax_addr -> sockaddr of the socket's family (maps IPv4 into ::ffff:0:0/96). */
static socklen_t ax_to_sa(const struct ax_addr *a, int family, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *s = (void *)ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(a->port);
        if (a->family == AF_INET) {
            memcpy(&s->sin6_addr, v4mapped_prefix, 12);
            memcpy((uint8_t *)&s->sin6_addr + 12, a->ip, 4);
        } else {
            memcpy(&s->sin6_addr, a->ip, 16);
            s->sin6_scope_id = a->scope_id;
        }
        return sizeof *s;
    }
    struct sockaddr_in *s = (void *)ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(a->port);
    if (a->family == AF_INET6 && memcmp(a->ip, v4mapped_prefix, 12) == 0)
        memcpy(&s->sin_addr, a->ip + 12, 4);
    else
        memcpy(&s->sin_addr, a->ip, 4);
    return sizeof *s;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr)[0] == 127;
    if (sa->sa_family == AF_INET6) {
        const uint8_t *ip = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        if (memcmp(ip, one, 16) == 0)
            return 1;
        if (memcmp(ip, v4mapped_prefix, 12) == 0 && ip[12] == 127)
            return 1;
    }
    return 0;
}

static void copy_out(const void *src, socklen_t srclen, struct sockaddr *dst, socklen_t *dstlen)
{
    socklen_t n = *dstlen < srclen ? *dstlen : srclen;
    memcpy(dst, src, n);
    *dstlen = srclen;
}

/* ------------------------------------------------------------------------ */
/* per-socket metadata, shared across dups                                   */

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

struct meta {
    struct meta *next;      /* free list */
    uint64_t gen;           /* 0 while on the free list */
    int refs;               /* fd numbers pointing here */
    int family;
    int state;
    int bound_native;       /* bound to a real (loopback) address */
    uint32_t sock_id;       /* daemon socket id */
    pid_t owner;            /* process that got sock_id (CLOSE only from it) */
    ino_t ino;              /* socket inode, to detect stale entries */
    int v6only, reuseport;
    int has_vlocal, has_vpeer, has_rdest;
    socklen_t vlocal_len, vpeer_len, rdest_len;
    struct sockaddr_storage vlocal, vpeer, rdest;
    int nopts, neps;
    struct opt opts[MAX_OPTS];
    struct epreg eps[MAX_EPS];
};

#define CH_BITS  12
#define CH_SIZE  (1u << CH_BITS)
#define TOP_SIZE (1u << 18) /* fds up to 2^30: more than fs.nr_open allows */

static struct meta **tbl_top[TOP_SIZE];
static pthread_mutex_t tbl_mu = PTHREAD_MUTEX_INITIALIZER;
static struct meta *meta_pool;
static uint64_t gen_ctr;

static void tbl_lock(void) { pthread_mutex_lock(&tbl_mu); }
static void tbl_unlock(void) { pthread_mutex_unlock(&tbl_mu); }

static struct meta **slot_locked(int fd, int create)
{
    if (fd < 0 || (unsigned)fd >= TOP_SIZE * CH_SIZE)
        return NULL;
    unsigned t = (unsigned)fd >> CH_BITS;
    if (!tbl_top[t]) {
        if (!create)
            return NULL;
        tbl_top[t] = calloc(CH_SIZE, sizeof(struct meta *));
        if (!tbl_top[t])
            return NULL;
    }
    return &tbl_top[t][(unsigned)fd & (CH_SIZE - 1)];
}

static struct meta *meta_alloc_locked(void)
{
    struct meta *m = meta_pool;
    if (m)
        meta_pool = m->next;
    else if (!(m = malloc(sizeof *m)))
        return NULL;
    memset(m, 0, sizeof *m);
    m->gen = ++gen_ctr;
    m->refs = 1;
    return m;
}

struct closeinfo {
    int send;
    uint32_t sock;
};

/* drop one reference; never frees memory (the object goes back to the pool) */
static void meta_unref_locked(struct meta *m, struct closeinfo *ci)
{
    if (--m->refs > 0)
        return;
    if (ci && m->sock_id && (m->state == ST_LISTEN || m->state == ST_BOUND) && m->owner == ax_getpid()) {
        ci->send = 1;
        ci->sock = m->sock_id;
    }
    m->gen = 0;
    m->next = meta_pool;
    meta_pool = m;
}

static void tbl_drop_locked(int fd, struct closeinfo *ci)
{
    struct meta **s = slot_locked(fd, 0);
    if (s && *s) {
        struct meta *m = *s;
        *s = NULL;
        meta_unref_locked(m, ci);
    }
}

static ino_t fd_ino(int fd)
{
    struct stat st;
    int e = errno;
    ino_t r = 0;
    if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
        r = st.st_ino;
    errno = e;
    return r;
}

static void send_close(uint32_t sock);

/* Copy the metadata of fd into *out.  verify: check the socket inode first and
 * drop the entry if the fd now refers to something else (one fstat; an entry
 * made by our own socket() has ino 0 until this first verified lookup, which
 * records it).  Returns 1 if tracked. */
static int tbl_snapshot(int fd, struct meta *out, int verify)
{
    struct closeinfo ci = {0};
    int found = 0;
    tbl_lock();
    struct meta **s = slot_locked(fd, 0);
    if (!s || !*s) { /* untracked: no system call */
        tbl_unlock();
        return 0;
    }
    if (verify) { /* fstat outside the lock */
        tbl_unlock();
        ino_t ino = fd_ino(fd);
        tbl_lock();
        s = slot_locked(fd, 0);
        if (s && *s) {
            if ((*s)->ino == 0 && ino != 0)
                (*s)->ino = ino; /* first lookup after our own socket() */
            if (ino == 0 || (*s)->ino != ino)
                tbl_drop_locked(fd, &ci);
        }
    }
    if (s && *s) {
        *out = **s;
        found = 1;
    }
    tbl_unlock();
    if (ci.send)
        send_close(ci.sock);
    return found;
}

/* fd's metadata if it is still the object snapshotted (same generation). */
static struct meta *tbl_get_gen_locked(int fd, uint64_t gen)
{
    struct meta **s = slot_locked(fd, 0);
    if (s && *s && (*s)->gen == gen)
        return *s;
    return NULL;
}

/* Make fd's metadata private to fd (dups keep the old socket after a swap). */
static struct meta *tbl_own_locked(int fd, uint64_t gen)
{
    struct meta *m = tbl_get_gen_locked(fd, gen);
    if (!m || m->refs == 1)
        return m;
    struct meta *n = meta_alloc_locked();
    if (!n)
        return NULL;
    uint64_t g = n->gen;
    *n = *m;
    n->gen = g;
    n->refs = 1;
    n->next = NULL;
    m->refs--;
    *slot_locked(fd, 0) = n;
    return n;
}

/* A socket the hook just saw created.  Its inode is read lazily by the first
 * verified lookup (tbl_snapshot), so socket() costs no extra system call. */
static void tbl_track(int fd, int family, int state)
{
    ino_t ino = 0;
    struct closeinfo ci = {0};
    int e = errno;
    tbl_lock();
    tbl_drop_locked(fd, &ci);
    struct meta **s = slot_locked(fd, 1);
    if (s) {
        struct meta *m = meta_alloc_locked();
        if (m) {
            m->family = family;
            m->state = state;
            m->ino = ino;
            *s = m;
        }
    }
    tbl_unlock();
    if (ci.send)
        send_close(ci.sock);
    errno = e;
}

static void tbl_forget(int fd)
{
    struct closeinfo ci = {0};
    int e = errno;
    tbl_lock();
    tbl_drop_locked(fd, &ci);
    tbl_unlock();
    if (ci.send)
        send_close(ci.sock);
    errno = e;
}

/* newfd now refers to oldfd's open file description */
static void tbl_share(int oldfd, int newfd)
{
    if (oldfd == newfd)
        return;
    struct closeinfo ci = {0};
    int e = errno;
    tbl_lock();
    tbl_drop_locked(newfd, &ci);
    struct meta **o = slot_locked(oldfd, 0);
    if (o && *o) {
        struct meta **n = slot_locked(newfd, 1);
        if (n) {
            (*o)->refs++;
            *n = *o;
        }
    }
    tbl_unlock();
    if (ci.send)
        send_close(ci.sock);
    errno = e;
}

/* ------------------------------------------------------------------------ */
/* control channel                                                           */

static pthread_mutex_t ctl_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int ctl_fd = -1;   /* fd number of the channel (ours while ctl_pid == getpid()) */
static atomic_int ctl_ok;        /* connection is live and HELLO done */
static atomic_int ctl_pid;
static ino_t ctl_ino;
static uint32_t ctl_seq;
static struct ax_addr app_vip;   /* from HELLO */
static int have_vip;

/* The daemon's table generation (u32 at offset 0 of a file it names in HELLO),
 * mapped read-only: cached connect answers are used while it is unchanged. */
static const volatile uint32_t *gen_page;

static void map_generation(const char *path)
{
    if (gen_page || !path[0])
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    R.close(fd);
    if (p != MAP_FAILED)
        gen_page = p;
}
static TLS int tl_atfork_locked;

static int ctl_base(void)
{
    struct rlimit rl;
    long lim = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        lim = (long)rl.rlim_cur;
    if (lim > 1000)
        return 900;
    if (lim > 64)
        return (int)lim - 32;
    return lim > 8 ? (int)lim - 4 : 3;
}

static inline long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}


/* Send one request, read its reply (and maybe one fd).  0 ok, -1 broken. */
static int ctl_xfer(int fd, struct ax_msg *req, struct ax_msg *rep, int *rfd)
{
    *rfd = -1;
    long long spin_until = spin_budget_ns > 0 ? mono_ns() + spin_budget_ns : 0;
    size_t off = 0;
    while (off < sizeof *req) {
        ssize_t n = send(fd, (char *)req + off, sizeof *req - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)n;
    }
    for (;;) {
        int got = -1;
        off = 0;
        while (off < sizeof *rep) {
            struct iovec iov = {(char *)rep + off, sizeof *rep - off};
            union {
                char buf[CMSG_SPACE(sizeof(int) * 8)];
                struct cmsghdr align;
            } cb;
            struct msghdr mh;
            memset(&mh, 0, sizeof mh);
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cb.buf;
            mh.msg_controllen = sizeof cb.buf;
            ssize_t n;
            if (spin_until) { /* see spin_budget_ns */
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    if (mono_ns() < spin_until) {
                        if (spin_yield)
                            sched_yield();
                        continue;
                    }
                    spin_until = 0; /* the daemon is busy: block */
                    continue;
                }
            } else {
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (got >= 0)
                    R.close(got);
                return -1;
            }
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                    continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int fds[8];
                if (k > 8)
                    k = 8;
                memcpy(fds, CMSG_DATA(c), k * sizeof(int));
                for (size_t i = 0; i < k; i++) {
                    if (got < 0)
                        got = fds[i];
                    else
                        R.close(fds[i]);
                }
            }
            off += (size_t)n;
        }
        if (rep->magic != AX_MAGIC) {
            if (got >= 0)
                R.close(got);
            return -1;
        }
        if (rep->seq != req->seq) { /* stale reply to an abandoned request */
            if (got >= 0)
                R.close(got);
            continue;
        }
        *rfd = got;
        return 0;
    }
}

/* with ctl_mu held */
static int ctl_ensure_locked(void)
{
    pid_t pid = ax_getpid();
    int fd = atomic_load(&ctl_fd);
    if (fd >= 0 && atomic_load(&ctl_pid) != pid) {
        /* inherited through a fork that bypassed pthread_atfork (raw clone) */
        if (fd_ino(fd) == ctl_ino)
            R.close(fd);
        atomic_store(&ctl_ok, 0);
        atomic_store(&ctl_fd, -1);
        fd = -1;
    }
    if (fd >= 0 && fd_ino(fd) != ctl_ino) { /* the app closed or replaced it */
        dbg("control fd %d was taken over, reopening", fd);
        atomic_store(&ctl_ok, 0);
        atomic_store(&ctl_fd, -1);
        fd = -1;
    }
    if (atomic_load(&ctl_ok))
        return 0;

    int s = R.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, cfg.sock_path);
    if (R.connect(s, (struct sockaddr *)&sun, sizeof sun) < 0) {
        dbg("cannot reach daemon at %s: %s", cfg.sock_path, strerror(errno));
        R.close(s);
        return -1;
    }
    struct timeval tv = {10, 0};
    R.setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    R.setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int nfd;
    if (fd >= 0) { /* keep the number: replace the dead connection atomically */
        nfd = R.dup3(s, fd, O_CLOEXEC);
    } else {
        nfd = R.fcntl(s, F_DUPFD_CLOEXEC, ctl_base());
        if (nfd < 0)
            nfd = R.fcntl(s, F_DUPFD_CLOEXEC, 3);
    }
    R.close(s);
    if (nfd < 0)
        return -1;
    ctl_ino = fd_ino(nfd);
    atomic_store(&ctl_pid, pid);
    atomic_store(&ctl_fd, nfd);

    struct ax_msg h, r;
    memset(&h, 0, sizeof h);
    h.magic = AX_MAGIC;
    h.op = AX_OP_HELLO;
    h.seq = ++ctl_seq;
    h.pid = (uint32_t)pid;
    h.arg = AX_HF_DIRECT; /* this hook can connect its own sockets (AX_ST_DIRECT) */
    snprintf(h.name, sizeof h.name, "%s", cfg.app);
    int rfd;
    if (ctl_xfer(nfd, &h, &r, &rfd) < 0)
        return -1;
    if (rfd >= 0)
        R.close(rfd);
    if (r.status != AX_ST_OK) {
        dbg("HELLO refused: status %d err %d", r.status, r.err);
        return -1;
    }
    app_vip = r.a;
    have_vip = r.a.family == AF_INET || r.a.family == AF_INET6;
    if (r.arg & AX_HF_DIRECT) {
        r.name[AX_NAME_MAX - 1] = 0;
        map_generation(r.name);
    }
    atomic_store(&ctl_ok, 1);
    dbg("session %u on fd %d, handoff %s", r.sock, nfd, (r.arg & AX_HF_DIRECT) ? "direct" : "fd");
    return 0;
}

/* One request/reply.  0: *rep valid (and *rfd maybe a socket); -1: daemon unreachable. */
static int ax_request(struct ax_msg *req, struct ax_msg *rep, int *rfd)
{
    *rfd = -1;
    int rc = -1;
    pthread_mutex_lock(&ctl_mu);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ctl_ensure_locked() < 0)
            break;
        req->magic = AX_MAGIC;
        req->seq = ++ctl_seq;
        req->pid = (uint32_t)ax_getpid();
        if (ctl_xfer(atomic_load(&ctl_fd), req, rep, rfd) == 0) {
            rc = 0;
            break;
        }
        dbg("control connection broken (%s), reconnecting", strerror(errno));
        atomic_store(&ctl_ok, 0);
    }
    pthread_mutex_unlock(&ctl_mu);
    if (rc == 0 && *rfd >= 0 && rep->status != AX_ST_OK) {
        R.close(*rfd);
        *rfd = -1;
    }
    return rc;
}

/* One-way note (CLOSE, CONNECTING, CONNECTED), async-signal-safe: no lock, no
 * allocation, one send of one whole message.  When the daemon's receive buffer
 * is full the sender waits for room (bounded by the channel's SO_SNDTIMEO): that
 * is the back-pressure that keeps connects made from cached answers from
 * outrunning the daemon; a note is never dropped while the daemon lives. */
static void send_note(struct ax_msg *m)
{
    int e = errno;
    int fd = atomic_load(&ctl_fd);
    if (fd >= 0 && atomic_load(&ctl_ok) && atomic_load(&ctl_pid) == ax_getpid()) {
        m->magic = AX_MAGIC;
        m->pid = (uint32_t)ax_getpid();
        ssize_t n = send(fd, m, sizeof *m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            n = send(fd, m, sizeof *m, MSG_NOSIGNAL); /* blocking: wait for the daemon */
        (void)n;
    }
    errno = e;
}

static void send_close(uint32_t sock)
{
    struct ax_msg m;
    memset(&m, 0, sizeof m);
    m.op = AX_OP_CLOSE;
    m.sock = sock;
    send_note(&m);
}

/* after a DIRECT connect: the connection's real local address (or the errno) */
static void send_connected(uint32_t ticket, const struct ax_addr *local, const struct ax_addr *dest, int err)
{
    struct ax_msg m;
    memset(&m, 0, sizeof m);
    m.op = AX_OP_CONNECTED;
    m.sock = ticket;
    m.arg = err;
    m.a = *local;
    m.b = *dest;
    send_note(&m);
}

/* is fd our control channel in this process? */
static int is_ctl(int fd)
{
    return fd >= 0 && fd == atomic_load(&ctl_fd) && atomic_load(&ctl_pid) == ax_getpid();
}

/* the app is about to dup onto our control fd number: move the channel away */
static void ctl_relocate(int fd)
{
    pthread_mutex_lock(&ctl_mu);
    if (is_ctl(fd)) {
        int n = R.fcntl(fd, F_DUPFD_CLOEXEC, ctl_base());
        if (n < 0)
            n = R.fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (n >= 0)
            atomic_store(&ctl_fd, n);
        else
            atomic_store(&ctl_ok, 0);
    }
    pthread_mutex_unlock(&ctl_mu);
}

static void atfork_prepare(void)
{
    tl_atfork_locked = 0;
    if (tl_in_hook)
        return;
    pthread_mutex_lock(&ctl_mu);
    pthread_mutex_lock(&tbl_mu);
    tl_atfork_locked = 1;
}

static void atfork_parent(void)
{
    if (tl_atfork_locked) {
        pthread_mutex_unlock(&tbl_mu);
        pthread_mutex_unlock(&ctl_mu);
    }
    tl_atfork_locked = 0;
}

static void atfork_child(void)
{
    if (pid_cache)
        atomic_store_explicit(pid_cache, (int)getpid(), memory_order_relaxed);
    pthread_mutex_init(&tbl_mu, NULL);
    pthread_mutex_init(&ctl_mu, NULL);
    tl_atfork_locked = 0;
    int fd = atomic_load(&ctl_fd);
    if (fd >= 0 && R.close && fd_ino(fd) == ctl_ino)
        R.close(fd); /* the parent's session is not ours */
    atomic_store(&ctl_ok, 0);
    atomic_store(&ctl_fd, -1);
    atomic_store(&ctl_pid, 0);
}

/* ------------------------------------------------------------------------ */
/* fd swap                                                                   */

/* Install the daemon's socket nfd on the app's fd number, restoring the fd
 * flag, file status flags, owner, socket options and epoll registrations.
 * *app_fl: the app socket's file status flags.  Returns 0, or -1 with errno. */
static int swap_fd(int fd, int nfd, const struct meta *snap, ino_t *ino, int *app_fl)
{
    int fl = R.fcntl(fd, F_GETFL);
    int fdfl = R.fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0) {
        R.close(nfd);
        errno = EBADF;
        return -1;
    }
    struct f_owner_ex own;
    int have_own = 0, sig = 0;
    if (fl & O_ASYNC) {
        have_own = R.fcntl(fd, F_GETOWN_EX, &own) == 0;
        sig = R.fcntl(fd, F_GETSIG);
    }
    if (R.dup3(nfd, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
        int e = errno;
        R.close(nfd);
        errno = e;
        return -1;
    }
    R.close(nfd);
    if (have_own)
        R.fcntl(fd, F_SETOWN_EX, &own);
    if (sig > 0)
        R.fcntl(fd, F_SETSIG, sig);
    /* the daemon's socket has exactly O_RDWR|O_NONBLOCK: only a blocking or
     * O_ASYNC app socket needs F_SETFL */
    if ((fl & (O_NONBLOCK | O_ASYNC)) != O_NONBLOCK)
        R.fcntl(fd, F_SETFL, fl & (O_NONBLOCK | O_ASYNC));
    if (app_fl)
        *app_fl = fl;
    for (int i = 0; i < snap->nopts; i++)
        R.setsockopt(fd, snap->opts[i].level, snap->opts[i].name, snap->opts[i].val, snap->opts[i].len);
    for (int i = 0; i < snap->neps; i++) {
        struct epoll_event ev;
        ev.events = snap->eps[i].events;
        ev.data.u64 = snap->eps[i].data;
        if (R.epoll_ctl(snap->eps[i].epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno == EEXIST)
            R.epoll_ctl(snap->eps[i].epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    *ino = fd_ino(fd);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* socket calls                                                              */

#define GUARD_ENTER (tl_in_hook++)
#define GUARD_LEAVE (tl_in_hook--)

static int tracked_type(int domain, int type, int protocol)
{
    return (domain == AF_INET || domain == AF_INET6) && (type & 0xff) == SOCK_STREAM &&
           (protocol == 0 || protocol == IPPROTO_TCP);
}

static int h_socket(int domain, int type, int protocol)
{
    NEED(socket);
    int fd = R.socket(domain, type, protocol);
    if (fd >= 0 && hook_on()) {
        GUARD_ENTER;
        if (tracked_type(domain, type, protocol))
            tbl_track(fd, domain, ST_FRESH);
        else
            tbl_forget(fd);
        GUARD_LEAVE;
    }
    return fd;
}
EXPORT int socket(int domain, int type, int protocol) { return h_socket(domain, type, protocol); }

EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
    NEED(socketpair);
    int r = R.socketpair(domain, type, protocol, sv);
    if (r == 0 && hook_on()) {
        GUARD_ENTER;
        tbl_forget(sv[0]);
        tbl_forget(sv[1]);
        GUARD_LEAVE;
    }
    return r;
}

static void bind_flags(const struct meta *m, struct ax_msg *q)
{
    q->arg |= (m->v6only ? AX_BF_V6ONLY : 0) | (m->reuseport ? AX_BF_REUSEPORT : 0);
}

/* BIND round trip + swap.  Returns 0, -1 (errno), or 1 = "do it natively". */
static int virtual_bind(int fd, const struct meta *snap, const struct ax_addr *a, int flags, int fail_errno)
{
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_BIND;
    q.a = *a;
    q.arg = flags;
    bind_flags(snap, &q);
    int nfd;
    if (ax_request(&q, &p, &nfd) < 0) {
        if (cfg.fail_open)
            return 1;
        errno = fail_errno;
        return -1;
    }
    if (p.status == AX_ST_NATIVE)
        return 1;
    if (p.status != AX_ST_OK) {
        errno = p.err > 0 ? p.err : fail_errno;
        return -1;
    }
    if (nfd < 0) {
        errno = fail_errno;
        return -1;
    }
    ino_t ino;
    if (swap_fd(fd, nfd, snap, &ino, NULL) < 0)
        return -1;
    tbl_lock();
    struct meta *m = tbl_own_locked(fd, snap->gen);
    if (m) {
        m->state = ST_BOUND;
        m->sock_id = p.sock;
        m->owner = ax_getpid();
        m->ino = ino;
        m->vlocal_len = ax_to_sa(&p.a, m->family, &m->vlocal);
        m->has_vlocal = 1;
    }
    tbl_unlock();
    dbg("bind fd %d -> sock %u vport %u", fd, p.sock, p.a.port);
    return 0;
}

static int h_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    NEED(bind);
    if (!hook_on() || !addr || len < sizeof(sa_family_t))
        return R.bind(fd, addr, len);
    GUARD_ENTER;
    int e = errno, r;
    struct meta snap;
    struct ax_addr a;
    if (!tbl_snapshot(fd, &snap, 1) || snap.state != ST_FRESH || snap.bound_native ||
        addr->sa_family != snap.family || sa_to_ax(addr, len, &a) < 0 || is_loopback(addr)) {
        r = R.bind(fd, addr, len);
        goto native_done;
    }
    r = virtual_bind(fd, &snap, &a, 0, EADDRNOTAVAIL);
    if (r == 1) {
        r = R.bind(fd, addr, len);
        goto native_done;
    }
    if (r == 0)
        errno = e;
    GUARD_LEAVE;
    return r;
native_done:
    if (r == 0) {
        tbl_lock();
        struct meta **s = slot_locked(fd, 0);
        if (s && *s)
            (*s)->bound_native = 1;
        tbl_unlock();
        errno = e;
    }
    GUARD_LEAVE;
    return r;
}
EXPORT int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len) { return h_bind(fd, CSA(addr), len); }

static int h_listen(int fd, int backlog)
{
    NEED(listen);
    if (!hook_on())
        return R.listen(fd, backlog);
    GUARD_ENTER;
    int e = errno, r;
    struct meta snap;
    if (!tbl_snapshot(fd, &snap, 1) || snap.bound_native ||
        (snap.state != ST_FRESH && snap.state != ST_BOUND)) {
        r = R.listen(fd, backlog);
        goto out;
    }
    if (snap.state == ST_FRESH) {
        struct ax_addr a;
        memset(&a, 0, sizeof a);
        a.family = (uint16_t)snap.family;
        r = virtual_bind(fd, &snap, &a, AX_BF_AUTOBIND, EADDRINUSE);
        if (r == 1) {
            r = R.listen(fd, backlog);
            goto out;
        }
        if (r < 0)
            goto out;
        if (!tbl_snapshot(fd, &snap, 0) || snap.state != ST_BOUND) {
            r = R.listen(fd, backlog);
            goto out;
        }
    }
    r = R.listen(fd, backlog);
    if (r < 0)
        goto out;
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_LISTEN;
    q.sock = snap.sock_id;
    q.arg = backlog;
    int nfd;
    if (ax_request(&q, &p, &nfd) < 0) {
        if (!cfg.fail_open) {
            errno = EADDRINUSE;
            r = -1;
            goto out;
        }
    } else if (p.status == AX_ST_ERR) {
        errno = p.err > 0 ? p.err : EADDRINUSE;
        r = -1;
        goto out;
    }
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap.gen);
    if (m)
        m->state = ST_LISTEN;
    tbl_unlock();
    dbg("listen fd %d sock %u", fd, snap.sock_id);
out:
    if (r == 0)
        errno = e;
    GUARD_LEAVE;
    return r;
}
EXPORT int listen(int fd, int backlog) { return h_listen(fd, backlog); }

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* wait for a blocking connect started by the daemon to finish (kernel semantics) */
static int connect_wait(int fd)
{
    struct timeval tv = {0, 0};
    socklen_t tl = sizeof tv;
    int timeout = -1;
    if (R.getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &tl) == 0 && (tv.tv_sec || tv.tv_usec))
        timeout = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
    struct pollfd pfd = {fd, POLLOUT, 0};
    int saved = tl_in_hook;
    tl_in_hook = 0; /* the app's signal handlers may use sockets while we wait */
    int n = poll(&pfd, 1, timeout);
    int e = errno;
    tl_in_hook = saved;
    if (n < 0) {
        errno = e == EINTR ? EINTR : e;
        return -1;
    }
    if (n == 0) {
        errno = EINPROGRESS;
        return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (R.getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        return -1;
    if (soerr) {
        errno = soerr;
        return -1;
    }
    return 0;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    int saved = tl_in_hook;
    tl_in_hook = 0;
    nanosleep(&ts, NULL);
    tl_in_hook = saved;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    int saved = tl_in_hook;
    tl_in_hook = 0;
    nanosleep(&ts, NULL);
    tl_in_hook = saved;
}

/* mark a tracked socket as natively connected (errno preserved) */
static void mark_native(int fd, const struct meta *snap)
{
    int e = errno;
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap->gen);
    if (m)
        m->state = ST_NATIVE;
    tbl_unlock();
    errno = e;
}

/* Direct handoff (AX_ST_DIRECT): the app's own socket connects to the real
 * address the daemon picked, so O_NONBLOCK, EINPROGRESS, SO_ERROR, EINTR,
 * SO_SNDTIMEO and epoll registrations are the kernel's own; nothing is
 * swapped.  Afterwards the daemon gets the one-way CONNECTED note with the
 * real local address, so the server side can see the client's VIP. */
/* Cached DIRECT answers: destination -> every backend the client may use, valid
 * while the daemon's generation is unchanged.  A hit connects without asking;
 * the daemon still hears of it (CONNECTING before, CONNECTED after). */
#define CACHE_SLOTS 32
struct cache_ent {
    int used, family;
    uint32_t gen;
    unsigned n, next;
    struct ax_addr dest, vpeer, be[AX_CACHE_MAX];
};
static struct cache_ent cache[CACHE_SLOTS];
static unsigned cache_victim;
static uint32_t cache_ticket;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static int same_addr(const struct ax_addr *x, const struct ax_addr *y)
{
    return x->family == y->family && x->port == y->port && memcmp(x->ip, y->ip, 16) == 0;
}

static void cache_store(const struct ax_addr *dest, int family, const struct ax_msg *p)
{
    if (!gen_page || !(p->flags & AX_RF_CACHE) || p->pid < 1 || p->pid > AX_CACHE_MAX)
        return;
    pthread_mutex_lock(&cache_mu);
    struct cache_ent *e = NULL;
    for (int i = 0; i < CACHE_SLOTS && !e; i++)
        if (cache[i].used && cache[i].family == family && same_addr(&cache[i].dest, dest))
            e = &cache[i];
    for (int i = 0; i < CACHE_SLOTS && !e; i++)
        if (!cache[i].used)
            e = &cache[i];
    if (!e)
        e = &cache[cache_victim++ % CACHE_SLOTS];
    e->used = 1;
    e->family = family;
    e->gen = (uint32_t)p->arg;
    e->dest = *dest;
    e->vpeer = p->a;
    e->n = p->pid;
    memcpy(e->be, p->name, e->n * sizeof(struct ax_addr));
    e->next = 0;
    for (unsigned i = 0; i < e->n; i++) /* continue the round after the backend just used */
        if (same_addr(&e->be[i], &p->b))
            e->next = i + 1;
    pthread_mutex_unlock(&cache_mu);
}

/* A cached answer for dest, as a DIRECT reply with a fresh ticket; 0 on a miss. */
static int cache_lookup(const struct ax_addr *dest, int family, struct ax_msg *p)
{
    if (!gen_page)
        return 0;
    uint32_t gen = *gen_page;
    int hit = 0;
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cache_ent *e = &cache[i];
        if (!e->used || e->family != family || !same_addr(&e->dest, dest))
            continue;
        if (e->gen != gen || e->n == 0) {
            e->used = 0; /* the table changed: ask the daemon again */
            break;
        }
        memset(p, 0, sizeof *p);
        p->status = AX_ST_DIRECT;
        p->a = e->vpeer;
        p->b = e->be[e->next++ % e->n];
        p->sock = 0x80000000u | (++cache_ticket & 0x7fffffffu);
        hit = 1;
        break;
    }
    pthread_mutex_unlock(&cache_mu);
    return hit;
}

static void send_connecting(uint32_t ticket, const struct ax_addr *backend)
{
    struct ax_msg m;
    memset(&m, 0, sizeof m);
    m.op = AX_OP_CONNECTING;
    m.sock = ticket;
    m.b = *backend;
    send_note(&m);
}

static int direct_connect(int fd, const struct meta *snap, const struct ax_msg *p)
{
    struct sockaddr_storage rd;
    socklen_t rl = ax_to_sa(&p->b, snap->family, &rd);
    int saved = tl_in_hook;
    tl_in_hook = 0; /* a blocking connect: the app's signal handlers may use sockets */
    int r = R.connect(fd, (struct sockaddr *)&rd, rl);
    int ce = errno;
    tl_in_hook = saved;
    int started = r == 0 || ce == EINPROGRESS || ce == EINTR;
    struct ax_addr local;
    memset(&local, 0, sizeof local);
    if (started) {
        tbl_lock();
        struct meta *m = tbl_get_gen_locked(fd, snap->gen); /* dups share this socket */
        if (m) {
            m->state = ST_CONN;
            m->vpeer_len = ax_to_sa(&p->a, m->family, &m->vpeer);
            m->has_vpeer = p->a.family != 0;
            m->rdest = rd;
            m->rdest_len = rl;
            m->has_rdest = 1;
            m->has_vlocal = 0;
        }
        tbl_unlock();
        struct sockaddr_storage ls;
        socklen_t ll = sizeof ls;
        if (R.getsockname(fd, (struct sockaddr *)&ls, &ll) == 0 && sa_to_ax((struct sockaddr *)&ls, ll, &local) == 0)
            ax_unmap(&local);
    }
    send_connected(p->sock, &local, &p->b, started ? 0 : ce);
    dbg("connect fd %d direct -> port %u r=%d errno=%d", fd, p->b.port, r, r ? ce : 0);
    errno = ce;
    return r;
}

static int h_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    NEED(connect);
    if (!hook_on() || !addr || len < sizeof(sa_family_t))
        return R.connect(fd, addr, len);
    GUARD_ENTER;
    int e = errno, r;
    struct meta snap;
    struct ax_addr a;
    if (!tbl_snapshot(fd, &snap, 1)) {
        r = R.connect(fd, addr, len);
        goto out;
    }
    if (snap.state == ST_CONN && snap.has_rdest) {
        /* already virtual: let the kernel answer EALREADY / EISCONN / 0 */
        r = R.connect(fd, (struct sockaddr *)&snap.rdest, snap.rdest_len);
        goto out;
    }
    if ((snap.state != ST_FRESH && snap.state != ST_BOUND) || addr->sa_family != snap.family ||
        sa_to_ax(addr, len, &a) < 0 || is_loopback(addr)) {
        r = R.connect(fd, addr, len);
        if ((r == 0 || errno == EINPROGRESS) && snap.state == ST_FRESH)
            mark_native(fd, &snap);
        goto out;
    }
    struct ax_msg q, p;
    if (cache_lookup(&a, snap.family, &p) && atomic_load(&ctl_ok)) {
        send_connecting(p.sock, &p.b);
        r = direct_connect(fd, &snap, &p);
        goto out;
    }
    /* O_NONBLOCK is only looked up when it matters: a PENDING answer (service
     * registered, not listening yet) or a socket handed over by the daemon. */
    int nonblock = -1;
    long deadline = 0, backoff = 5;
    int wait_flag = 1;
    int nfd;
    for (;;) {
        memset(&q, 0, sizeof q);
        q.op = AX_OP_CONNECT;
        q.a = a;
        q.b.family = (uint16_t)snap.family;
        q.arg = (nonblock == 1 ? AX_CF_NONBLOCK : 0) | (wait_flag ? AX_CF_WAIT : 0);
        if (ax_request(&q, &p, &nfd) < 0) {
            if (cfg.fail_open) {
                r = R.connect(fd, addr, len);
            } else {
                errno = ECONNREFUSED;
                r = -1;
            }
            goto out;
        }
        if (p.status != AX_ST_PENDING)
            break;
        if (!wait_flag) { /* should not happen: treat as refused */
            errno = ECONNREFUSED;
            r = -1;
            goto out;
        }
        if (nonblock < 0) {
            int fl = R.fcntl(fd, F_GETFL);
            nonblock = fl >= 0 && (fl & O_NONBLOCK);
            deadline = now_ms() + cfg.wait_ms;
        }
        long left = deadline - now_ms();
        if (nonblock || left <= 0) {
            wait_flag = 0; /* last ask: the daemon hands back a refused connect */
            continue;
        }
        sleep_ms(backoff < left ? backoff : left);
        backoff = backoff * 2 > 100 ? 100 : backoff * 2;
    }
    if (p.status == AX_ST_NATIVE) {
        r = R.connect(fd, addr, len);
        if (r == 0 || errno == EINPROGRESS)
            mark_native(fd, &snap);
        goto out;
    }
    if (p.status == AX_ST_DIRECT && nfd < 0 && (p.b.family == AF_INET || p.b.family == AF_INET6)) {
        cache_store(&a, snap.family, &p);
        r = direct_connect(fd, &snap, &p);
        goto out;
    }
    if (p.status != AX_ST_OK || nfd < 0) {
        errno = (p.status == AX_ST_ERR && p.err > 0) ? p.err : ECONNREFUSED;
        r = -1;
        goto out;
    }
    ino_t ino;
    int fl = 0;
    if (swap_fd(fd, nfd, &snap, &ino, &fl) < 0) {
        r = -1;
        goto out;
    }
    nonblock = (fl & O_NONBLOCK) != 0;
    tbl_lock();
    struct meta *m = tbl_own_locked(fd, snap.gen);
    if (m) {
        m->state = ST_CONN;
        m->sock_id = p.sock;
        m->owner = ax_getpid();
        m->ino = ino;
        m->vpeer_len = ax_to_sa(&p.a, m->family, &m->vpeer);
        m->has_vpeer = p.a.family != 0;
        m->rdest_len = ax_to_sa(&p.b, m->family, &m->rdest);
        m->has_rdest = p.b.family != 0;
        m->has_vlocal = 0;
        m->nopts = 0;
    }
    tbl_unlock();
    dbg("connect fd %d -> sock %u port %u err %d", fd, p.sock, p.b.port, p.err);
    if (p.err == 0) {
        r = 0;
    } else if (p.err == EINPROGRESS) {
        if (nonblock) {
            errno = EINPROGRESS;
            r = -1;
        } else {
            r = connect_wait(fd);
        }
    } else {
        errno = p.err;
        r = -1;
    }
out:
    if (r == 0)
        errno = e;
    GUARD_LEAVE;
    return r;
}
EXPORT int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len) { return h_connect(fd, CSA(addr), len); }

/* virtual peer of an accepted socket: ask PEER once, cache the answer */
static int accepted_peer(int fd, struct meta *snap)
{
    if (snap->has_vpeer)
        return 1;
    struct sockaddr_storage pe, lo;
    socklen_t pl = sizeof pe, ll = sizeof lo;
    if (R.getpeername(fd, (struct sockaddr *)&pe, &pl) < 0 || R.getsockname(fd, (struct sockaddr *)&lo, &ll) < 0)
        return 0;
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_PEER;
    if (sa_to_ax((struct sockaddr *)&pe, pl, &q.a) < 0 || sa_to_ax((struct sockaddr *)&lo, ll, &q.b) < 0)
        return 0;
    ax_unmap(&q.a);
    ax_unmap(&q.b);
    int nfd;
    /* PENDING: a client handed off directly may not have sent its CONNECTED
     * note yet; ask again for up to ~50 ms (the daemon keeps the expectation 200 ms), then report the real address */
    long waited = 0, step = 25;
    for (;;) {
        if (ax_request(&q, &p, &nfd) < 0)
            return 0; /* daemon away: report the real peer, ask again next time */
        if (p.status != AX_ST_PENDING || waited >= 50000)
            break;
        sleep_us(step);
        waited += step;
        step = step * 2 > 500 ? 500 : step * 2;
    }
    if (p.status == AX_ST_OK && p.a.family) {
        snap->vpeer_len = ax_to_sa(&p.a, snap->family, &snap->vpeer);
    } else {
        memcpy(&snap->vpeer, &pe, sizeof pe);
        snap->vpeer_len = pl;
    }
    snap->has_vpeer = 1;
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap->gen);
    if (m) {
        m->vpeer = snap->vpeer;
        m->vpeer_len = snap->vpeer_len;
        m->has_vpeer = 1;
    }
    tbl_unlock();
    return 1;
}

static int is_wildcard(const struct sockaddr_storage *ss)
{
    static const uint8_t zero[16];
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
    if (ss->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, zero, 16) == 0;
    return 0;
}

static int do_accept(int lfd, struct sockaddr *addr, socklen_t *alen, int flags, int four)
{
    socklen_t inlen = (addr && alen) ? *alen : 0;
    int fd = four ? R.accept4(lfd, addr, alen, flags) : R.accept(lfd, addr, alen);
    if (fd < 0 || !hook_on())
        return fd;
    GUARD_ENTER;
    int e = errno;
    struct meta snap;
    if (!tbl_snapshot(lfd, &snap, 0) || snap.state != ST_LISTEN || !snap.has_vlocal) {
        tbl_forget(fd);
        goto out;
    }
    struct meta acc;
    memset(&acc, 0, sizeof acc);
    acc.family = snap.family;
    acc.vlocal = snap.vlocal;
    acc.vlocal_len = snap.vlocal_len;
    if (is_wildcard(&acc.vlocal) && have_vip) {
        uint16_t port = snap.family == AF_INET6 ? ((struct sockaddr_in6 *)&snap.vlocal)->sin6_port
                                               : ((struct sockaddr_in *)&snap.vlocal)->sin_port;
        struct ax_addr v = app_vip;
        v.port = ntohs(port);
        acc.vlocal_len = ax_to_sa(&v, snap.family, &acc.vlocal);
    }
    ino_t ino = fd_ino(fd);
    tbl_lock();
    struct closeinfo ci = {0};
    tbl_drop_locked(fd, &ci);
    struct meta **s = slot_locked(fd, 1);
    struct meta *m = s ? meta_alloc_locked() : NULL;
    if (m) {
        m->family = acc.family;
        m->state = ST_ACCEPTED;
        m->ino = ino;
        m->vlocal = acc.vlocal;
        m->vlocal_len = acc.vlocal_len;
        m->has_vlocal = 1;
        acc.gen = m->gen;
        *s = m;
    }
    tbl_unlock();
    if (ci.send)
        send_close(ci.sock);
    if (m && addr && alen && accepted_peer(fd, &acc)) {
        *alen = inlen;
        copy_out(&acc.vpeer, acc.vpeer_len, addr, alen);
    }
out:
    errno = e;
    GUARD_LEAVE;
    return fd;
}

EXPORT int accept(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len)
{
    NEED(accept);
    return do_accept(fd, SA(addr), len, 0, 0);
}
static int h_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    NEED(accept4);
    return do_accept(fd, addr, len, flags, 1);
}
EXPORT int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len, int flags)
{
    return h_accept4(fd, SA(addr), len, flags);
}

/* The virtual view of one end of a socket, written to *out; 0 when the real
 * address (real, rl) is what the app must see. */
static socklen_t virtual_name(int fd, int peer, const struct sockaddr_storage *real, socklen_t rl,
                              struct sockaddr_storage *out)
{
    struct meta snap;
    if (!tbl_snapshot(fd, &snap, 1))
        return 0;
    if (peer) {
        if ((snap.state == ST_CONN && snap.has_vpeer) || (snap.state == ST_ACCEPTED && accepted_peer(fd, &snap))) {
            memcpy(out, &snap.vpeer, snap.vpeer_len);
            return snap.vpeer_len;
        }
        return 0;
    }
    if (snap.has_vlocal && (snap.state == ST_BOUND || snap.state == ST_LISTEN || snap.state == ST_ACCEPTED)) {
        memcpy(out, &snap.vlocal, snap.vlocal_len);
        return snap.vlocal_len;
    }
    struct ax_addr ra;
    if (snap.state == ST_CONN && have_vip && sa_to_ax((const struct sockaddr *)real, rl, &ra) == 0) {
        struct ax_addr v = app_vip; /* the app's VIP with the real local port */
        v.port = ra.port;
        return ax_to_sa(&v, snap.family, out);
    }
    return 0;
}

/* getsockname / getpeername: the kernel's answer, translated to the virtual view
 * where there is one, honouring the caller's length (truncate, report full). */
static int name_query(int fd, struct sockaddr *addr, socklen_t *len, int peer)
{
    int (*real_fn)(int, struct sockaddr *, socklen_t *) = peer ? R.getpeername : R.getsockname;
    if (!hook_on())
        return real_fn(fd, addr, len);
    GUARD_ENTER;
    int e = errno;
    struct sockaddr_storage real, virt;
    socklen_t rl = sizeof real;
    int r = real_fn(fd, (struct sockaddr *)&real, &rl);
    if (r < 0 || !len || !addr) {
        r = real_fn(fd, addr, len); /* the kernel's own answer and errno */
        if (r == 0)
            errno = e;
    } else {
        socklen_t vl = virtual_name(fd, peer, &real, rl, &virt);
        if (vl)
            copy_out(&virt, vl, addr, len);
        else
            copy_out(&real, rl, addr, len);
        errno = e;
    }
    GUARD_LEAVE;
    return r;
}

EXPORT int getsockname(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len)
{
    NEED(getsockname);
    return name_query(fd, SA(addr), len, 0);
}

EXPORT int getpeername(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len)
{
    NEED(getpeername);
    return name_query(fd, SA(addr), len, 1);
}

EXPORT int getsockopt(int fd, int level, int name, void *restrict val, socklen_t *restrict len)
{
    NEED(getsockopt);
    return R.getsockopt(fd, level, name, val, len);
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    NEED(setsockopt);
    int r = R.setsockopt(fd, level, name, val, len);
    if (r != 0 || !hook_on() || !val || len > OPT_MAX)
        return r;
    GUARD_ENTER;
    int e = errno;
    tbl_lock();
    struct meta **s = slot_locked(fd, 0);
    struct meta *m = s ? *s : NULL;
    if (m && (m->state == ST_FRESH || m->state == ST_BOUND)) {
        int on = len >= sizeof(int) ? *(const int *)val : 0;
        if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY)
            m->v6only = on != 0;
        if (level == SOL_SOCKET && name == SO_REUSEPORT)
            m->reuseport = on != 0;
        int i;
        for (i = 0; i < m->nopts; i++)
            if (m->opts[i].level == level && m->opts[i].name == name)
                break;
        if (i < MAX_OPTS) {
            m->opts[i].level = level;
            m->opts[i].name = name;
            m->opts[i].len = len;
            memcpy(m->opts[i].val, val, len);
            if (i == m->nopts)
                m->nopts++;
        }
    }
    tbl_unlock();
    errno = e;
    GUARD_LEAVE;
    return r;
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    NEED(epoll_ctl);
    int r = R.epoll_ctl(epfd, op, fd, ev);
    if (r != 0 || !hook_on())
        return r;
    GUARD_ENTER;
    int e = errno;
    tbl_lock();
    struct meta **s = slot_locked(fd, 0);
    struct meta *m = s ? *s : NULL;
    if (m) {
        int i;
        for (i = 0; i < m->neps; i++)
            if (m->eps[i].epfd == epfd)
                break;
        if (op == EPOLL_CTL_DEL) {
            if (i < m->neps)
                m->eps[i] = m->eps[--m->neps];
        } else if (ev && (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && i < MAX_EPS) {
            m->eps[i].epfd = epfd;
            m->eps[i].events = ev->events;
            m->eps[i].data = ev->data.u64;
            if (i == m->neps)
                m->neps++;
        }
    }
    tbl_unlock();
    errno = e;
    GUARD_LEAVE;
    return r;
}

/* ------------------------------------------------------------------------ */
/* close / dup                                                               */

static int h_close(int fd)
{
    NEED(close);
    if (!cfg.enabled || tl_in_hook)
        return R.close(fd);
    if (is_ctl(fd))
        return 0; /* our control channel: pretend it is closed */
    struct closeinfo ci = {0};
    GUARD_ENTER;
    tbl_lock();
    tbl_drop_locked(fd, &ci);
    tbl_unlock();
    GUARD_LEAVE;
    int r = R.close(fd);
    if (ci.send)
        send_close(ci.sock);
    return r;
}
static long raw_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5);

EXPORT int close(int fd)
{
    /* Nothing is tracked before init, and init must not be started from inside
     * malloc's own initialization (which may close files). */
    if (__builtin_expect(!atomic_load_explicit(&inited, memory_order_acquire), 0))
        return (int)raw_syscall6(SYS_close, fd, 0, 0, 0, 0, 0);
    return h_close(fd);
}

static void drop_range(unsigned first, unsigned last)
{
    if (first >= TOP_SIZE * CH_SIZE)
        return;
    if (last >= TOP_SIZE * CH_SIZE)
        last = TOP_SIZE * CH_SIZE - 1;
    tbl_lock();
    for (unsigned t = first >> CH_BITS; t <= (last >> CH_BITS); t++) {
        if (!tbl_top[t])
            continue;
        unsigned lo = t << CH_BITS, hi = lo + CH_SIZE - 1;
        if (lo < first)
            lo = first;
        if (hi > last)
            hi = last;
        for (unsigned fd = lo; fd <= hi; fd++) {
            struct closeinfo ci = {0};
            tbl_drop_locked((int)fd, &ci);
            if (ci.send)
                send_close(ci.sock);
        }
    }
    tbl_unlock();
}

static int raw_close_range(unsigned first, unsigned last, int flags)
{
    if (R.close_range)
        return R.close_range(first, last, flags);
#ifdef SYS_close_range
    return (int)R.syscall(SYS_close_range, first, last, flags);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int h_close_range(unsigned first, unsigned last, int flags)
{
    ax_init();
    if (!cfg.enabled || tl_in_hook || first > last)
        return raw_close_range(first, last, flags);
    int e = errno;
    GUARD_ENTER;
    if (!(flags & CLOSE_RANGE_CLOEXEC))
        drop_range(first, last);
    GUARD_LEAVE;
    int c = atomic_load(&ctl_fd);
    if (is_ctl(c) && (unsigned)c >= first && (unsigned)c <= last) {
        int r1 = (unsigned)c > first ? raw_close_range(first, (unsigned)c - 1, flags) : 0;
        int e1 = errno;
        int r2 = (unsigned)c < last ? raw_close_range((unsigned)c + 1, last, flags) : 0;
        if (r1 < 0) {
            errno = e1;
            return -1;
        }
        if (r2 == 0)
            errno = e;
        return r2;
    }
    return raw_close_range(first, last, flags);
}
EXPORT int close_range(unsigned int first, unsigned int last, int flags) { return h_close_range(first, last, flags); }

EXPORT void closefrom(int lowfd)
{
    ax_init();
    unsigned lo = lowfd < 0 ? 0 : (unsigned)lowfd;
    if (cfg.enabled && !tl_in_hook) {
        int e = errno;
        if (h_close_range(lo, ~0U, 0) == 0 || !R.closefrom) {
            errno = e;
            return;
        }
        errno = e;
    }
    if (R.closefrom)
        R.closefrom(lowfd);
    else
        raw_close_range(lo, ~0U, 0);
}

EXPORT int dup(int fd)
{
    NEED(dup);
    int r = R.dup(fd);
    if (r >= 0 && hook_on()) {
        GUARD_ENTER;
        tbl_share(fd, r);
        GUARD_LEAVE;
    }
    return r;
}

static int h_dup3(int old, int nw, int flags, int three)
{
    if (hook_on() && old != nw && is_ctl(nw)) {
        GUARD_ENTER;
        ctl_relocate(nw);
        GUARD_LEAVE;
    }
    int r = three ? R.dup3(old, nw, flags) : R.dup2(old, nw);
    if (r >= 0 && hook_on() && old != nw) {
        GUARD_ENTER;
        tbl_share(old, nw);
        GUARD_LEAVE;
    }
    return r;
}
EXPORT int dup2(int old, int nw)
{
    NEED(dup2);
    return h_dup3(old, nw, 0, 0);
}
EXPORT int dup3(int old, int nw, int flags)
{
    NEED(dup3);
    return h_dup3(old, nw, flags, 1);
}

static int h_fcntl(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
    int r = real(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && hook_on()) {
        GUARD_ENTER;
        tbl_share(fd, r);
        GUARD_LEAVE;
    }
    return r;
}
EXPORT int fcntl(int fd, int cmd, ...)
{
    NEED(fcntl);
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return h_fcntl(R.fcntl, fd, cmd, arg);
}
EXPORT int fcntl64(int fd, int cmd, ...)
{
    NEED(fcntl64);
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return h_fcntl(R.fcntl64, fd, cmd, arg);
}

/* FIONBIO and friends: flags are read back from the kernel at swap time */
EXPORT int ioctl(int fd, unsigned long req, ...)
{
    NEED(ioctl);
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return R.ioctl(fd, req, arg);
}

/* The kernel's system call, without libc: syscall() must pass other numbers
 * through even while the hook initializes (jemalloc, statically linked into
 * redis, calls syscall(SYS_open/read/close) from inside malloc's own init, and
 * resolving libc's syscall with dlsym there would allocate and deadlock). */
static long raw_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
    long ret;
#if defined(__x86_64__)
    register long r10 __asm__("r10") = a3;
    register long r8 __asm__("r8") = a4;
    register long r9 __asm__("r9") = a5;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a0;
    register long x1 __asm__("x1") = a1;
    register long x2 __asm__("x2") = a2;
    register long x3 __asm__("x3") = a3;
    register long x4 __asm__("x4") = a4;
    register long x5 __asm__("x5") = a5;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    ret = x0;
#else
#error "raw_syscall6: add this architecture"
#endif
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

static int is_socket_syscall(long nr)
{
    switch (nr) {
    case SYS_socket: case SYS_connect: case SYS_bind: case SYS_listen: case SYS_close:
    case SYS_accept4: case SYS_dup3:
#ifdef SYS_close_range
    case SYS_close_range:
#endif
        return 1;
    default:
        return 0;
    }
}

EXPORT long syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a0 = va_arg(ap, long), a1 = va_arg(ap, long), a2 = va_arg(ap, long);
    long a3 = va_arg(ap, long), a4 = va_arg(ap, long), a5 = va_arg(ap, long);
    va_end(ap);
    /* Before the hook is initialized nothing is tracked yet: pass through (this is
     * what malloc implementations that call syscall() during their own init see). */
    if (!is_socket_syscall(nr) || !atomic_load_explicit(&inited, memory_order_acquire))
        return raw_syscall6(nr, a0, a1, a2, a3, a4, a5);
    if (cfg.enabled && !tl_in_hook) {
        switch (nr) {
        case SYS_socket: return h_socket((int)a0, (int)a1, (int)a2);
        case SYS_connect: return h_connect((int)a0, (const struct sockaddr *)a1, (socklen_t)a2);
        case SYS_bind: return h_bind((int)a0, (const struct sockaddr *)a1, (socklen_t)a2);
        case SYS_listen: return h_listen((int)a0, (int)a1);
        case SYS_close: return h_close((int)a0);
        case SYS_accept4: return h_accept4((int)a0, (struct sockaddr *)a1, (socklen_t *)a2, (int)a3);
        case SYS_dup3: return dup3((int)a0, (int)a1, (int)a2);
#ifdef SYS_close_range
        case SYS_close_range: return h_close_range((unsigned)a0, (unsigned)a1, (int)a2);
#endif
        default: break;
        }
    }
    return raw_syscall6(nr, a0, a1, a2, a3, a4, a5);
}

/* ------------------------------------------------------------------------ */
/* name lookups                                                              */

static int is_numeric_host(const char *name)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_aton(name, &a4))
        return 1;
    char buf[INET6_ADDRSTRLEN + 64];
    size_t n = strcspn(name, "%");
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, name, n);
    buf[n] = 0;
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

static int never_virtual(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= AX_NAME_MAX)
        return 1;
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0)
        return 1;
    if (n > 10 && strcasecmp(name + n - 10, ".localhost") == 0)
        return 1;
    return is_numeric_host(name);
}

/* RESOLVE: 1 = virtual (ip4 filled), 0 = resolve normally */
static int ax_resolve(const char *name, int family, uint8_t ip4[4])
{
    if (never_virtual(name))
        return 0;
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_RESOLVE;
    q.a.family = (uint16_t)family;
    snprintf(q.name, sizeof q.name, "%s", name);
    int nfd;
    if (ax_request(&q, &p, &nfd) < 0 || p.status != AX_ST_OK)
        return 0;
    ax_unmap(&p.a);
    if (p.a.family != AF_INET)
        return 0;
    memcpy(ip4, p.a.ip, 4);
    return 1;
}

/* REVERSE: 1 = name filled */
static int ax_reverse(const struct ax_addr *addr, char *name, size_t cap)
{
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_REVERSE;
    q.a = *addr;
    ax_unmap(&q.a);
    if (q.a.family == AF_INET && q.a.ip[0] == 127)
        return 0;
    int nfd;
    if (ax_request(&q, &p, &nfd) < 0 || p.status != AX_ST_OK)
        return 0;
    p.name[AX_NAME_MAX - 1] = 0;
    if (!p.name[0])
        return 0;
    snprintf(name, cap, "%s", p.name);
    return 1;
}

EXPORT int getaddrinfo(const char *restrict node, const char *restrict service,
                       const struct addrinfo *restrict hints, struct addrinfo **restrict res)
{
    ax_init();
    if (!R.getaddrinfo)
        return EAI_SYSTEM;
    if (!hook_on() || !node || (hints && (hints->ai_flags & AI_NUMERICHOST)))
        return R.getaddrinfo(node, service, hints, res);
    int family = hints ? hints->ai_family : AF_UNSPEC;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return R.getaddrinfo(node, service, hints, res);
    GUARD_ENTER;
    int e = errno, rc;
    uint8_t ip[4];
    if (!ax_resolve(node, family, ip)) {
        GUARD_LEAVE;
        return R.getaddrinfo(node, service, hints, res);
    }
    char num[64];
    if (family == AF_INET6)
        snprintf(num, sizeof num, "::ffff:%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
    else
        snprintf(num, sizeof num, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
    struct addrinfo h;
    if (hints)
        h = *hints;
    else {
        memset(&h, 0, sizeof h);
        h.ai_flags = AI_V4MAPPED | AI_ADDRCONFIG;
    }
    h.ai_family = family == AF_INET6 ? AF_INET6 : AF_INET;
    int canon = h.ai_flags & AI_CANONNAME;
    h.ai_flags = (h.ai_flags & ~(AI_CANONNAME | AI_ADDRCONFIG | AI_V4MAPPED | AI_ALL)) | AI_NUMERICHOST;
    h.ai_canonname = NULL;
    h.ai_addr = NULL;
    h.ai_next = NULL;
    rc = R.getaddrinfo(num, service, &h, res);
    if (rc == 0 && canon && *res) {
        char *c = strdup(node);
        if (!c) {
            R.freeaddrinfo(*res);
            *res = NULL;
            rc = EAI_MEMORY;
        } else {
            free((*res)->ai_canonname);
            (*res)->ai_canonname = c;
        }
    }
    if (rc == 0)
        errno = e;
    GUARD_LEAVE;
    return rc;
}

EXPORT void freeaddrinfo(struct addrinfo *ai)
{
    ax_init();
    if (R.freeaddrinfo)
        R.freeaddrinfo(ai);
}

EXPORT int getnameinfo(const struct sockaddr *restrict sa, socklen_t salen, char *restrict host,
                       socklen_t hostlen, char *restrict serv, socklen_t servlen, int flags)
{
    ax_init();
    if (!R.getnameinfo)
        return EAI_SYSTEM;
    struct ax_addr a;
    if (!hook_on() || !sa || !host || !hostlen || (flags & NI_NUMERICHOST) || sa_to_ax(sa, salen, &a) < 0 ||
        is_loopback(sa))
        return R.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    GUARD_ENTER;
    int e = errno;
    char name[AX_NAME_MAX];
    if (!ax_reverse(&a, name, sizeof name)) {
        GUARD_LEAVE;
        return R.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    }
    int rc = 0;
    if (strlen(name) + 1 > hostlen)
        rc = EAI_OVERFLOW;
    else {
        strcpy(host, name);
        if (serv && servlen)
            rc = R.getnameinfo(sa, salen, NULL, 0, serv, servlen, flags);
    }
    if (rc == 0)
        errno = e;
    GUARD_LEAVE;
    return rc;
}

/* build a one-address hostent in buf; 0 or ERANGE */
static int fill_hostent(const char *name, int af, const uint8_t *addr, struct hostent *he, char *buf, size_t buflen)
{
    size_t alen = af == AF_INET6 ? 16 : 4;
    uintptr_t p = (uintptr_t)buf, end = p + buflen;
    uintptr_t aligned = (p + sizeof(char *) - 1) & ~(uintptr_t)(sizeof(char *) - 1);
    size_t nlen = strlen(name) + 1;
    if (aligned + 3 * sizeof(char *) + 16 + nlen > end)
        return ERANGE;
    char **ptrs = (char **)aligned;
    char *abuf = (char *)(aligned + 3 * sizeof(char *));
    char *nbuf = abuf + 16;
    memcpy(abuf, addr, alen);
    memcpy(nbuf, name, nlen);
    ptrs[0] = NULL;     /* aliases */
    ptrs[1] = abuf;     /* addr_list */
    ptrs[2] = NULL;
    he->h_name = nbuf;
    he->h_aliases = &ptrs[0];
    he->h_addrtype = af;
    he->h_length = (int)alen;
    he->h_addr_list = &ptrs[1];
    return 0;
}

static void v4_for_af(const uint8_t ip[4], int af, uint8_t out[16])
{
    if (af == AF_INET6) {
        memcpy(out, v4mapped_prefix, 12);
        memcpy(out + 12, ip, 4);
    } else {
        memcpy(out, ip, 4);
    }
}

static struct hostent static_he;
static char static_he_buf[AX_NAME_MAX + 128];

static struct hostent *h_gethostbyname2(const char *name, int af, int two)
{
    uint8_t ip[4], a[16];
    if (!hook_on() || !name || (af != AF_INET && af != AF_INET6))
        goto native;
    GUARD_ENTER;
    int virt = ax_resolve(name, af, ip);
    GUARD_LEAVE;
    if (!virt)
        goto native;
    v4_for_af(ip, af, a);
    if (fill_hostent(name, af, a, &static_he, static_he_buf, sizeof static_he_buf) != 0)
        goto native;
    h_errno = 0;
    return &static_he;
native:
    if (two)
        return R.gethostbyname2 ? R.gethostbyname2(name, af) : NULL;
    return R.gethostbyname ? R.gethostbyname(name) : NULL;
}
EXPORT struct hostent *gethostbyname(const char *name)
{
    ax_init();
    return h_gethostbyname2(name, AF_INET, 0);
}
EXPORT struct hostent *gethostbyname2(const char *name, int af)
{
    ax_init();
    return h_gethostbyname2(name, af, 1);
}

/* The result of a reentrant gethostby*_r for a virtual name, in the caller's
 * buffer: 0, or ERANGE when the buffer is too small. */
static int hostent_r_result(const char *name, int af, const void *addr, struct hostent *ret, char *buf,
                            size_t buflen, struct hostent **result, int *h_errnop)
{
    if (fill_hostent(name, af, addr, ret, buf, buflen) != 0) {
        *result = NULL;
        if (h_errnop)
            *h_errnop = NETDB_INTERNAL;
        errno = ERANGE;
        return ERANGE;
    }
    *result = ret;
    if (h_errnop)
        *h_errnop = 0;
    return 0;
}

static int h_gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                              struct hostent **result, int *h_errnop, int two)
{
    uint8_t ip[4], a[16];
    if (!hook_on() || !name || !ret || !buf || !result || (af != AF_INET && af != AF_INET6))
        goto native;
    GUARD_ENTER;
    int virt = ax_resolve(name, af, ip);
    GUARD_LEAVE;
    if (!virt)
        goto native;
    v4_for_af(ip, af, a);
    return hostent_r_result(name, af, a, ret, buf, buflen, result, h_errnop);
native:
    if (two)
        return R.gethostbyname2_r ? R.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop) : ENOSYS;
    return R.gethostbyname_r ? R.gethostbyname_r(name, ret, buf, buflen, result, h_errnop) : ENOSYS;
}
EXPORT int gethostbyname_r(const char *restrict name, struct hostent *restrict ret, char *restrict buf,
                           size_t buflen, struct hostent **restrict result, int *restrict h_errnop)
{
    ax_init();
    return h_gethostbyname2_r(name, AF_INET, ret, buf, buflen, result, h_errnop, 0);
}
EXPORT int gethostbyname2_r(const char *restrict name, int af, struct hostent *restrict ret, char *restrict buf,
                            size_t buflen, struct hostent **restrict result, int *restrict h_errnop)
{
    ax_init();
    return h_gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop, 1);
}

static int addr_to_ax(const void *addr, socklen_t len, int type, struct ax_addr *a)
{
    memset(a, 0, sizeof *a);
    if (!addr)
        return 0;
    if (type == AF_INET && len == 4) {
        a->family = AF_INET;
        memcpy(a->ip, addr, 4);
        return 1;
    }
    if (type == AF_INET6 && len == 16) {
        a->family = AF_INET6;
        memcpy(a->ip, addr, 16);
        return 1;
    }
    return 0;
}

EXPORT struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{
    ax_init();
    struct ax_addr a;
    char name[AX_NAME_MAX];
    if (hook_on() && addr_to_ax(addr, len, type, &a)) {
        GUARD_ENTER;
        int ok = ax_reverse(&a, name, sizeof name);
        GUARD_LEAVE;
        if (ok && fill_hostent(name, type, addr, &static_he, static_he_buf, sizeof static_he_buf) == 0) {
            h_errno = 0;
            return &static_he;
        }
    }
    return R.gethostbyaddr ? R.gethostbyaddr(addr, len, type) : NULL;
}

EXPORT int gethostbyaddr_r(const void *restrict addr, socklen_t len, int type, struct hostent *restrict ret,
                           char *restrict buf, size_t buflen, struct hostent **restrict result,
                           int *restrict h_errnop)
{
    ax_init();
    struct ax_addr a;
    char name[AX_NAME_MAX];
    if (hook_on() && ret && buf && result && addr_to_ax(addr, len, type, &a)) {
        GUARD_ENTER;
        int ok = ax_reverse(&a, name, sizeof name);
        GUARD_LEAVE;
        if (ok)
            return hostent_r_result(name, type, addr, ret, buf, buflen, result, h_errnop);
    }
    return R.gethostbyaddr_r ? R.gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop) : ENOSYS;
}

/* ------------------------------------------------------------------------ */
/* exec family: keep LD_PRELOAD and AX_* in the child's environment.
 * Everything here works on the caller's stack only (vfork children). */

static size_t env_count(char *const *envp)
{
    size_t n = 0;
    if (envp)
        while (envp[n])
            n++;
    return n;
}

static int has_prefix(const char *s, const char *name)
{
    size_t n = strlen(name);
    return strncmp(s, name, n) == 0 && s[n] == '=';
}

static size_t env_ld_cap(char *const *envp)
{
    size_t n = (cfg.preload_entry ? strlen(cfg.preload_entry) : 0) + 8;
    for (size_t i = 0; envp && envp[i]; i++)
        if (has_prefix(envp[i], "LD_PRELOAD"))
            n += strlen(envp[i]);
    return n;
}

/* out: env_count(envp) + N_SAVED_ENV + 2 slots; ld: env_ld_cap(envp) bytes */
static char *const *fix_env(char *const *envp, char **out, char *ld)
{
    if (!cfg.enabled || !cfg.preload_entry)
        return envp;
    const char *base = strrchr(cfg.self_path, '/');
    base = base ? base + 1 : cfg.self_path;
    int present[N_SAVED_ENV] = {0};
    int have_ld = 0, changed = 0;
    size_t n = 0;
    for (size_t i = 0; envp && envp[i]; i++) {
        char *e = envp[i];
        if (has_prefix(e, "LD_PRELOAD")) {
            if (have_ld)
                continue;
            have_ld = 1;
            if (!strstr(e, base)) {
                const char *v = e + strlen("LD_PRELOAD=");
                strcpy(ld, cfg.preload_entry);
                if (*v) {
                    strcat(ld, ":");
                    strcat(ld, v);
                }
                e = ld;
                changed = 1;
            }
        }
        for (int k = 0; k < N_SAVED_ENV; k++)
            if (has_prefix(e, saved_env_names[k]))
                present[k] = 1;
        out[n++] = e;
    }
    if (!have_ld) {
        strcpy(ld, cfg.preload_entry);
        out[n++] = ld;
        changed = 1;
    }
    for (int k = 0; k < N_SAVED_ENV; k++)
        if (!present[k] && cfg.saved_env[k]) {
            out[n++] = cfg.saved_env[k];
            changed = 1;
        }
    out[n] = NULL;
    return changed ? out : envp;
}

#define WITH_ENV(envp, fixed, call)                                  \
    do {                                                             \
        char *const *env_in_ = (envp);                               \
        char *slots_[env_count(env_in_) + N_SAVED_ENV + 2];          \
        char ldbuf_[env_ld_cap(env_in_)];                            \
        char *const *fixed = fix_env(env_in_, slots_, ldbuf_);       \
        return call;                                                 \
    } while (0)

static int h_execve(const char *path, char *const argv[], char *const envp[])
{
    NEED(execve);
    WITH_ENV(envp, env, R.execve(path, argv, env));
}
static int h_execvpe(const char *file, char *const argv[], char *const envp[])
{
    NEED(execvpe);
    WITH_ENV(envp, env, R.execvpe(file, argv, env));
}
EXPORT int execve(const char *path, char *const argv[], char *const envp[]) { return h_execve(path, argv, envp); }
EXPORT int execv(const char *path, char *const argv[]) { return h_execve(path, argv, environ); }
EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) { return h_execvpe(file, argv, envp); }
EXPORT int execvp(const char *file, char *const argv[]) { return h_execvpe(file, argv, environ); }

#define COLLECT_ARGS(arg0, ap_name, argv_name, after)           \
    va_list ap_name;                                            \
    size_t argc_ = 1;                                           \
    va_start(ap_name, arg0);                                    \
    while (va_arg(ap_name, char *))                             \
        argc_++;                                                \
    va_end(ap_name);                                            \
    char *argv_name[argc_ + 1];                                 \
    argv_name[0] = (char *)(arg0);                              \
    va_start(ap_name, arg0);                                    \
    for (size_t i_ = 1; i_ <= argc_; i_++)                      \
        argv_name[i_] = va_arg(ap_name, char *);                \
    after;                                                      \
    va_end(ap_name)

EXPORT int execl(const char *path, const char *arg, ...)
{
    COLLECT_ARGS(arg, ap, argv, (void)0);
    return h_execve(path, argv, environ);
}
EXPORT int execlp(const char *file, const char *arg, ...)
{
    COLLECT_ARGS(arg, ap, argv, (void)0);
    return h_execvpe(file, argv, environ);
}
EXPORT int execle(const char *path, const char *arg, ...)
{
    char *const *envp;
    COLLECT_ARGS(arg, ap, argv, envp = va_arg(ap, char *const *));
    return h_execve(path, argv, envp);
}

EXPORT int posix_spawn(pid_t *restrict pid, const char *restrict path, const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *restrict attr, char *const argv[restrict], char *const envp[restrict])
{
    ax_init();
    if (!R.posix_spawn)
        return ENOSYS;
    WITH_ENV(envp, env, R.posix_spawn(pid, path, fa, attr, argv, env));
}
EXPORT int posix_spawnp(pid_t *restrict pid, const char *restrict file, const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *restrict attr, char *const argv[restrict], char *const envp[restrict])
{
    ax_init();
    if (!R.posix_spawnp)
        return ENOSYS;
    WITH_ENV(envp, env, R.posix_spawnp(pid, file, fa, attr, argv, env));
}
