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
static atomic_int notes_stalled; /* a note waited AX_DAEMON_WAIT_MS in vain */
struct ax_addr app_vip;   /* from HELLO */
int have_vip;

static TLS int tl_atfork_locked;

/* The lowest fd number the control channel may take (F_DUPFD_CLOEXEC: the
 * lowest free one at or above it).  Clear of the low numbers programs use
 * (0-2, and the first sockets and files they open), but inside the fd table
 * every process starts with (64 entries, NR_OPEN_DEFAULT), so opening the
 * session never grows the table: growing a table shared by running threads
 * waits for an RCU grace period (the first connect of a process with 8
 * threads took 7-20 ms when the channel went to fd 900). */
#define CTL_FD_BASE 48

static int ctl_base(void)
{
    struct rlimit rl;
    long lim = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        lim = (long)rl.rlim_cur;
    if (lim > CTL_FD_BASE + 16)
        return CTL_FD_BASE;
    return lim > 8 ? (int)lim - 4 : 3;
}

static inline long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Every wait on the daemon ends at a deadline: AX_DAEMON_WAIT_MS (default
 * 1 s) after the call started.  A daemon that is alive but not answering
 * (SIGSTOP, overload) then gets the fail mode, not a hang. */
static long long daemon_deadline(void) { return mono_ns() + cfg.daemon_wait_ms * 1000000LL; }

/* Wait until fd is ready for ev or the deadline passes: 1 ready, 0 timed out,
 * -1 error.  EINTR is retried with the time left. */
static int wait_fd(int fd, short ev, long long deadline)
{
    for (;;) {
        long long left = deadline - mono_ns();
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, ev, 0};
        int n = poll(&p, 1, (int)((left + 999999) / 1000000));
        if (n > 0)
            return 1;
        if (n == 0)
            continue; /* recheck the clock: poll rounds */
        if (errno != EINTR)
            return -1;
    }
}

#define XFER_OK      0
#define XFER_BROKEN  (-1) /* the connection is unusable: reopen it */
#define XFER_TIMEOUT (-2) /* no answer by the deadline; the stream is still in step
                             (a late reply is skipped by its seq) */

/* Send one request, read its reply (and maybe one fd) by the deadline. */
static int ctl_xfer(int fd, struct ax_msg *req, struct ax_msg *rep, int *rfd, long long deadline)
{
    *rfd = -1;
    long long spin_until = spin_budget_ns > 0 ? mono_ns() + spin_budget_ns : 0;
    size_t off = 0;
    while (off < sizeof *req) {
        ssize_t n = send(fd, (char *)req + off, sizeof *req - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int w = wait_fd(fd, POLLOUT, deadline);
                if (w > 0)
                    continue;
                if (w == 0)
                    return off == 0 ? XFER_TIMEOUT : XFER_BROKEN;
            }
            return XFER_BROKEN;
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
            ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (spin_until) { /* see spin_budget_ns */
                    if (mono_ns() < spin_until) {
                        if (spin_yield)
                            sched_yield();
                        continue;
                    }
                    spin_until = 0; /* the daemon is busy: block (until the deadline) */
                }
                int w = wait_fd(fd, POLLIN, deadline);
                if (w > 0)
                    continue;
                if (got >= 0)
                    R.close(got);
                if (w == 0)
                    return off == 0 ? XFER_TIMEOUT : XFER_BROKEN;
                return XFER_BROKEN;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (got >= 0)
                    R.close(got);
                return XFER_BROKEN;
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
            return XFER_BROKEN;
        }
        if (rep->seq != req->seq) { /* stale reply to an abandoned request */
            if (got >= 0)
                R.close(got);
            continue;
        }
        *rfd = got;
        return XFER_OK;
    }
}

/* with ctl_mu held */
static int ctl_ensure_locked(long long deadline)
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
    /* SO_SNDTIMEO bounds a connect() that waits for room in the listen backlog
     * (a stopped daemon), then the blocking send of one-way notes */
    long long left = deadline - mono_ns();
    if (left < 1000)
        left = 1000;
    struct timeval tv = {(time_t)(left / 1000000000LL), (suseconds_t)(left % 1000000000LL / 1000)};
    R.setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (R.connect(s, (struct sockaddr *)&sun, sizeof sun) < 0) {
        dbg("cannot reach daemon at %s: %s", cfg.sock_path, strerror(errno));
        R.close(s);
        return -1;
    }
    tv.tv_sec = (time_t)(cfg.daemon_wait_ms / 1000);
    tv.tv_usec = (suseconds_t)(cfg.daemon_wait_ms % 1000 * 1000);
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
    int rfd, x = ctl_xfer(nfd, &h, &r, &rfd, deadline);
    if (x != XFER_OK) {
        dbg("HELLO: %s", x == XFER_TIMEOUT ? "no answer in time" : "connection broken");
        return -1;
    }
    if (rfd >= 0)
        R.close(rfd);
    if (r.status != AX_ST_OK) {
        dbg("HELLO refused: status %d err %d", r.status, r.err);
        return -1;
    }
    app_vip = r.a;
    have_vip = r.a.family == AF_INET || r.a.family == AF_INET6;
    /* direct sessions bind the app's source address before connecting */
    session_direct = (r.arg & AX_HF_DIRECT) != 0;
    session_foreign = (r.arg & AX_HF_FOREIGN) != 0;
    have_src = session_direct && r.b.family == AF_INET;
    if (have_src)
        app_src = r.b;
    r.name[AX_NAME_MAX - 1] = 0;
    map_identity(r.name);
    atomic_store(&ctl_ok, 1);
    dbg("session %u on fd %d, handoff %s", r.sock, nfd, (r.arg & AX_HF_DIRECT) ? "direct" : "fd");
    return 0;
}

/* Takes ctl_mu, waiting up to AX_DAEMON_WAIT_MS while another thread talks to
 * the daemon (or opens the session).  0: held; -1: no turn in time. */
static int ctl_lock_wait(void)
{
    if (pthread_mutex_trylock(&ctl_mu) == 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = ts.tv_nsec + cfg.daemon_wait_ms % 1000 * 1000000LL;
    ts.tv_sec += (time_t)(cfg.daemon_wait_ms / 1000 + ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    int e;
    while ((e = pthread_mutex_timedlock(&ctl_mu, &ts)) == EINTR)
        ;
    if (e != 0) {
        dbg("daemon busy: no turn on the control channel in %ld ms", cfg.daemon_wait_ms);
        return -1;
    }
    return 0;
}

/* One request/reply, answered by the deadline (AX_DAEMON_WAIT_MS from now,
 * waiting for the channel included).  0: *rep valid (and *rfd maybe a
 * socket); -1: daemon unreachable or not answering in time. */
int ax_request(struct ax_msg *req, struct ax_msg *rep, int *rfd)
{
    *rfd = -1;
    int rc = -1;
    long long deadline = daemon_deadline();
    if (ctl_lock_wait() < 0)
        return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ctl_ensure_locked(deadline) < 0)
            break;
        req->magic = AX_MAGIC;
        req->seq = ++ctl_seq;
        req->pid = (uint32_t)ax_getpid();
        int x = ctl_xfer(atomic_load(&ctl_fd), req, rep, rfd, deadline);
        if (x == XFER_OK) {
            atomic_store(&notes_stalled, 0);
            rc = 0;
            break;
        }
        if (x == XFER_TIMEOUT) {
            dbg("daemon did not answer in %ld ms", cfg.daemon_wait_ms);
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
 * for room (bounded by the channel's SO_SNDTIMEO, AX_DAEMON_WAIT_MS).  A daemon
 * that has not made room within that bound is stalled: notes that find the
 * channel full are dropped without waiting until it makes room again (or
 * answers a request); a dropped CLOSE hint only delays a reap to the daemon's
 * next sweep. */
static void send_note(struct ax_msg *m)
{
    int e = errno;
    int fd = atomic_load(&ctl_fd);
    if (fd >= 0 && atomic_load(&ctl_ok) && atomic_load(&ctl_pid) == ax_getpid()) {
        m->magic = AX_MAGIC;
        m->pid = (uint32_t)ax_getpid();
        ssize_t n = send(fd, m, sizeof *m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN && !atomic_load(&notes_stalled)) {
            n = send(fd, m, sizeof *m, MSG_NOSIGNAL); /* blocking: wait for the daemon */
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                atomic_store(&notes_stalled, 1);
                dbg("daemon stalled: one-way notes dropped until it drains the channel");
            }
        } else if (n > 0 && atomic_load_explicit(&notes_stalled, memory_order_relaxed)) {
            atomic_store(&notes_stalled, 0); /* it made room again */
        }
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
    /* even again: a fork made inside the hook (no atfork_prepare) may have
     * caught another thread between tbl_lock and tbl_unlock */
    unsigned seq = atomic_load_explicit(&tbl_seq, memory_order_relaxed);
    atomic_store_explicit(&tbl_seq, (seq | 1u) + 1u, memory_order_relaxed);
    pthread_mutex_init(&ctl_mu, NULL);
    tl_atfork_locked = 0;
    int fd = atomic_load(&ctl_fd);
    if (fd >= 0 && R.close && fd_ino(fd) == ctl_ino)
        R.close(fd); /* the parent's session is not ours */
    atomic_store(&ctl_ok, 0);
    atomic_store(&ctl_fd, -1);
    atomic_store(&ctl_pid, 0);
}

/* Makes sure this process has a session (and so the identity map), for callers
 * that decide locally once it is there (datagrams).  While the daemon is
 * unreachable it is asked again at most once a second.  0: session up. */
int ctl_session(void)
{
    static atomic_llong next_try;
    if (atomic_load(&ctl_ok) && atomic_load(&ctl_pid) == ax_getpid())
        return 0;
    long long now = mono_ns();
    if (now < atomic_load(&next_try))
        return -1;
    /* another thread opening the session (its first datagram, say) is waited
     * for, not taken for an unreachable daemon */
    if (ctl_lock_wait() < 0)
        return -1;
    int r = ctl_ensure_locked(daemon_deadline());
    pthread_mutex_unlock(&ctl_mu);
    if (r < 0)
        atomic_store(&next_try, now + 1000000000LL);
    return r;
}
