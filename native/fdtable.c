/*
 * fdtable.c -- per-socket metadata, shared across dups, and the calls that
 * change which fd numbers refer to what: close, close_range, closefrom, dup,
 * dup2, dup3, fcntl(F_DUPFD).  No malloc or free on the close path: metadata
 * goes back to a pool.
 */
#include "ax_internal.h"

#define CH_BITS  TBL_CH_BITS
#define CH_SIZE  TBL_CH_SIZE
#define TOP_SIZE TBL_TOP_SIZE

struct meta **tbl_top[TOP_SIZE];
pthread_mutex_t tbl_mu = PTHREAD_MUTEX_INITIALIZER;
atomic_uint tbl_seq;
static struct meta *meta_pool;
static uint64_t gen_ctr;

/* Called once at library load (before main): the first chunk of the table and a
 * few metadata records are allocated and touched then, so the program's first
 * socket call (often made with threads already running) pays no allocation and
 * no page faults. */
void tbl_preallocate(void)
{
    tbl_lock();
    slot_locked(0, 1);
    for (int i = 0; i < 8; i++) {
        struct meta *m = malloc(sizeof *m);
        if (!m)
            break;
        memset(m, 0, sizeof *m);
        m->next = meta_pool;
        meta_pool = m;
    }
    tbl_unlock();
}

struct meta **slot_locked(int fd, int create)
{
    if (fd < 0 || (unsigned)fd >= TOP_SIZE * CH_SIZE)
        return NULL;
    unsigned t = (unsigned)fd >> CH_BITS;
    if (!tbl_top[t]) {
        if (!create)
            return NULL;
        struct meta **c = calloc(CH_SIZE, sizeof(struct meta *));
        if (!c)
            return NULL;
        __atomic_store_n(&tbl_top[t], c, __ATOMIC_RELEASE); /* slot_peek reads it without the lock */
    }
    return &tbl_top[t][(unsigned)fd & (CH_SIZE - 1)];
}

struct meta *meta_alloc_locked(void)
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

/* drop one reference; never frees memory (the object goes back to the pool) */
static void meta_unref_locked(struct meta *m, struct closeinfo *ci)
{
    if (--m->refs > 0)
        return;
    if (ci && m->sock_id && (m->state == ST_LISTEN || m->state == ST_BOUND)) { /* a hint: the daemon asks the kernel */
        ci->send = 1;
        ci->sock = m->sock_id;
    }
    m->gen = 0;
    m->next = meta_pool;
    meta_pool = m;
}

void tbl_drop_locked(int fd, struct closeinfo *ci)
{
    struct meta **s = slot_locked(fd, 0);
    if (s && *s) {
        struct meta *m = *s;
        *s = NULL;
        meta_unref_locked(m, ci);
    }
}

ino_t fd_ino(int fd)
{
    struct stat st;
    int e = errno;
    ino_t r = 0;
    if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
        r = st.st_ino;
    errno = e;
    return r;
}

/* Copy the metadata of fd into *out.  verify: check the socket inode first and
 * drop the entry if the fd now refers to something else (one fstat; an entry
 * made by our own socket() has ino 0 until this first verified lookup, which
 * records it).  Returns 1 if tracked. */
/* The head of fd's record (everything before the saved options and epoll
 * registrations: cheap enough for every datagram); 0 when untracked. */
int tbl_peek(int fd, struct meta *out)
{
    int found = 0;
    tbl_lock();
    struct meta **s = slot_locked(fd, 0);
    if (s && *s) {
        memcpy(out, *s, offsetof(struct meta, nopts));
        out->nopts = out->neps = 0;
        found = 1;
    }
    tbl_unlock();
    return found;
}

int tbl_snapshot(int fd, struct meta *out, int verify)
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
struct meta *tbl_get_gen_locked(int fd, uint64_t gen)
{
    struct meta **s = slot_locked(fd, 0);
    if (s && *s && (*s)->gen == gen)
        return *s;
    return NULL;
}

/* Make fd's metadata private to fd (dups keep the old socket after a swap). */
struct meta *tbl_own_locked(int fd, uint64_t gen)
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
void tbl_track(int fd, int family, int state, int dgram)
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
            m->dgram = dgram;
            m->src_free = dgram;
            *s = m;
        }
    }
    tbl_unlock();
    if (ci.send)
        send_close(ci.sock);
    errno = e;
}

void tbl_forget(int fd)
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
void tbl_share(int oldfd, int newfd)
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
/* close / dup                                                               */

int h_close(int fd)
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

int h_close_range(unsigned first, unsigned last, int flags)
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

void h_closefrom(int lowfd)
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

int h_dup(int fd)
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

int h_dup3(int old, int nw, int flags, int three)
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

int h_fcntl(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
    int r = real(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && hook_on()) {
        GUARD_ENTER;
        tbl_share(fd, r);
        GUARD_LEAVE;
    }
    return r;
}
