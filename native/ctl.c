/*
 * ctl.c -- the control channel to the daemon: one unix stream connection per
 * process (opened lazily, re-opened after fork and after a daemon restart),
 * request/reply, one-way notes, fork handling.
 */
#include "ax_internal.h"

/* The daemon answers a request in some tens of microseconds, while waking a
 * thread blocked in recvmsg() costs about as much again (more in VMs).  So the
 * reply is first polled for a short while (non-blocking recvmsg) before
 * blocking.  The poll yields the CPU between tries, so a daemon (or another
 * client) sharing this CPU runs instead of waiting for the poll to end. */
static long spin_budget_ns = 150000;
static const int spin_yield = 1;

pthread_mutex_t ctl_mu = PTHREAD_MUTEX_INITIALIZER;
atomic_int ctl_fd = -1;   /* fd number of the channel (ours while ctl_pid == getpid()) */
atomic_int ctl_ok;        /* connection is live and HELLO done */
static atomic_int ctl_pid;
static ino_t ctl_ino;
static uint32_t ctl_seq;
struct ax_addr app_vip;   /* from HELLO */
int have_vip;

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
    /* direct sessions bind the app's source address before connecting */
    have_src = (r.arg & AX_HF_DIRECT) && r.b.family == AF_INET;
    if (have_src)
        app_src = r.b;
    r.name[AX_NAME_MAX - 1] = 0;
    map_identity(r.name);
    atomic_store(&ctl_ok, 1);
    dbg("session %u on fd %d, handoff %s", r.sock, nfd, (r.arg & AX_HF_DIRECT) ? "direct" : "fd");
    return 0;
}

/* One request/reply.  0: *rep valid (and *rfd maybe a socket); -1: daemon unreachable. */
int ax_request(struct ax_msg *req, struct ax_msg *rep, int *rfd)
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

/* One-way note (CLOSE), async-signal-safe: no lock, no allocation, one send of
 * one whole message.  When the daemon's receive buffer is full the sender waits
 * for room (bounded by the channel's SO_SNDTIMEO). */
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

void send_close(uint32_t sock)
{
    struct ax_msg m;
    memset(&m, 0, sizeof m);
    m.op = AX_OP_CLOSE;
    m.sock = sock;
    send_note(&m);
}

/* is fd our control channel in this process? */
int is_ctl(int fd)
{
    return fd >= 0 && fd == atomic_load(&ctl_fd) && atomic_load(&ctl_pid) == ax_getpid();
}

/* the app is about to dup onto our control fd number: move the channel away */
void ctl_relocate(int fd)
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

void atfork_prepare(void)
{
    tl_atfork_locked = 0;
    if (tl_in_hook)
        return;
    pthread_mutex_lock(&ctl_mu);
    pthread_mutex_lock(&tbl_mu);
    tl_atfork_locked = 1;
}

void atfork_parent(void)
{
    if (tl_atfork_locked) {
        pthread_mutex_unlock(&tbl_mu);
        pthread_mutex_unlock(&ctl_mu);
    }
    tl_atfork_locked = 0;
}

void atfork_child(void)
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
