/*
 * sock.c -- the socket logic: socket, bind, listen, connect (daemon, direct and
 * cached), accept, getsockname/getpeername translation, installing the
 * daemon's socket on the app's fd number (swap), and the bookkeeping of socket
 * options and epoll registrations that a swap replays.
 */
#include "ax_internal.h"
#include <netinet/tcp.h>

/* ------------------------------------------------------------------------ */
/* fd swap                                                                   */

/* Install the daemon's socket nfd on the app's fd number, restoring the fd
 * flag, file status flags, owner, socket options and epoll registrations.
 * *app_fl: the app socket's file status flags.  Returns 0, or -1 with errno. */
int swap_fd(int fd, int nfd, const struct meta *snap, ino_t *ino, int *app_fl)
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

/* 1: TCP, 2: UDP, 0: not an inet socket ax looks at */
static int tracked_type(int domain, int type, int protocol)
{
    if (domain != AF_INET && domain != AF_INET6)
        return 0;
    if ((type & 0xff) == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP))
        return 1;
    if ((type & 0xff) == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP))
        return 2;
    return 0;
}

int h_socket(int domain, int type, int protocol)
{
    NEED(socket);
    int fd = R.socket(domain, type, protocol);
    if (fd >= 0 && hook_on()) {
        GUARD_ENTER;
        int t = tracked_type(domain, type, protocol);
        if (t)
            tbl_track(fd, domain, ST_FRESH, t == 2);
        else
            tbl_forget(fd);
        GUARD_LEAVE;
    }
    return fd;
}
int h_socketpair(int domain, int type, int protocol, int sv[2])
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

/* A socket this process has no record of (inherited across exec, received over
 * SCM_RIGHTS, made by a raw syscall): learn its virtual view once, from the
 * kernel's identity of it (SO_COOKIE) and its addresses, and record it (also
 * when it is nothing virtual, so the question is asked once).  Returns 1 with
 * *out filled for an AF_INET/AF_INET6 stream or datagram socket, else 0. */
static int learn_socket(int fd, struct meta *out)
{
    int type = 0, dom = 0;
    socklen_t sl = sizeof type;
    if (R.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0 || (type != SOCK_STREAM && type != SOCK_DGRAM))
        return 0;
    sl = sizeof dom;
    if (R.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &sl) < 0 || (dom != AF_INET && dom != AF_INET6))
        return 0;
    struct meta m;
    memset(&m, 0, sizeof m);
    m.family = dom;
    m.state = ST_FRESH;
    m.dgram = type == SOCK_DGRAM;
    struct sockaddr_storage lo, pe;
    socklen_t ll = sizeof lo, pl = sizeof pe;
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_LOOKUP;
    int bound = R.getsockname(fd, (struct sockaddr *)&lo, &ll) == 0 && sa_to_ax((struct sockaddr *)&lo, ll, &q.a) == 0 &&
                q.a.port != 0;
    if (m.dgram)
        m.src_free = !bound || is_wildcard(&lo);
    /* a connected datagram socket is the app's own business (udp.c routes by destination) */
    int conn = !m.dgram && R.getpeername(fd, (struct sockaddr *)&pe, &pl) == 0 &&
               sa_to_ax((struct sockaddr *)&pe, pl, &q.b) == 0;
    if (!conn)
        memset(&q.b, 0, sizeof q.b);
    int record = 1;
    if (bound || conn) {
        uint64_t cookie = 0;
        sl = sizeof cookie;
        R.getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &sl);
        q.lookup.cookie = cookie;
        ax_unmap(&q.a);
        ax_unmap(&q.b);
        int nfd;
        m.state = ST_NATIVE;
        m.bound_native = 1;
        if (ax_request(&q, &p, &nfd) < 0) {
            record = 0; /* daemon away: native for now, ask again next time */
        } else if (p.status == AX_ST_OK) {
            m.bound_native = 0;
            m.sock_id = p.sock;
            m.owner = ax_getpid();
            if (p.a.family) {
                m.vlocal_len = ax_to_sa(&p.a, dom, &m.vlocal);
                m.has_vlocal = 1;
            }
            if (p.b.family) {
                m.vpeer_len = ax_to_sa(&p.b, dom, &m.vpeer);
                m.has_vpeer = 1;
            }
            switch (m.dgram && p.arg == AX_LK_LISTEN ? AX_LK_BOUND : p.arg) {
            case AX_LK_BOUND: m.state = ST_BOUND; break;
            case AX_LK_LISTEN: m.state = ST_LISTEN; break;
            case AX_LK_CONN:
                m.state = ST_CONN;
                m.has_vlocal = 0;
                memcpy(&m.rdest, &pe, pl);
                m.rdest_len = pl;
                m.has_rdest = 1;
                break;
            case AX_LK_ACCEPTED: m.state = ST_ACCEPTED; break;
            default: m.state = ST_NATIVE; m.bound_native = 1; break;
            }
        }
        if (m.dgram && bound && m.state == ST_NATIVE && udp_is_src_bound(&lo)) {
            /* a client socket ax bound to the app's source address (udp.c) */
            m.state = ST_FRESH;
            m.bound_native = 0;
            m.src_bound = 1;
        }
        dbg("learned fd %d: state %d sock %u", fd, m.state, m.sock_id);
    }
    m.ino = fd_ino(fd);
    if (record) {
        tbl_lock();
        struct closeinfo ci = {0};
        tbl_drop_locked(fd, &ci);
        struct meta **s = slot_locked(fd, 1);
        struct meta *n = s ? meta_alloc_locked() : NULL;
        if (n) {
            uint64_t g = n->gen;
            *n = m;
            n->gen = g;
            n->refs = 1;
            n->next = NULL;
            *s = n;
            m.gen = g;
        }
        tbl_unlock();
        if (ci.send)
            send_close(ci.sock);
    }
    *out = m;
    return 1;
}

/* tbl_snapshot, learning a socket this process has no record of */
int snapshot_or_learn(int fd, struct meta *out, int verify)
{
    if (tbl_snapshot(fd, out, verify))
        return 1;
    return learn_socket(fd, out);
}

/* The snapshot for a call with address addr: an inet address may concern a
 * socket this process has not seen yet (learned); any other family never does. */
static int snapshot_for(int fd, const struct sockaddr *addr, struct meta *out)
{
    if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)
        return snapshot_or_learn(fd, out, 1);
    return tbl_snapshot(fd, out, 1);
}

static void bind_flags(const struct meta *m, struct ax_msg *q)
{
    q->arg |= (m->v6only ? AX_BF_V6ONLY : 0) | (m->reuseport ? AX_BF_REUSEPORT : 0) | (m->reuseaddr ? AX_BF_REUSEADDR : 0);
}

/* Does a bind to a need the daemon?  Only the wildcard and the app's own VIP
 * are virtual; any other address is real (the daemon answers NATIVE) or
 * another app's VIP (refused), and the kernel refuses a non-local one itself. */
static int bind_needs_daemon(const struct ax_addr *a)
{
    static const uint8_t zero[16];
    struct ax_addr u = *a;
    ax_unmap(&u);
    if (memcmp(u.ip, zero, u.family == AF_INET ? 4 : 16) == 0)
        return 1;
    if (!have_vip)
        return 0;
    struct ax_addr v = app_vip;
    ax_unmap(&v);
    return u.family == v.family && memcmp(u.ip, v.ip, u.family == AF_INET ? 4 : 16) == 0;
}

/* BIND round trip + swap.  Returns 0, -1 (errno), or 1 = "do it natively".
 * Daemon unreachable: fail closed with fail_errno (or natively with
 * AX_FAIL_MODE=open), except for a real address, which never needs it. */
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
        if (cfg.fail_open || !bind_needs_daemon(a))
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
        m->src_free = 0;
        m->host = session_foreign && m->dgram; /* a UDP service of an isolated app: a host socket (udp.c) */
        m->vlocal_len = ax_to_sa(&p.a, m->family, &m->vlocal);
        m->has_vlocal = 1;
    }
    tbl_unlock();
    dbg("bind fd %d -> sock %u vport %u", fd, p.sock, p.a.port);
    return 0;
}

int h_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    NEED(bind);
    if (!hook_on() || !addr || len < sizeof(sa_family_t))
        return R.bind(fd, addr, len);
    GUARD_ENTER;
    int e = errno, r;
    struct meta snap;
    struct ax_addr a;
    if (!snapshot_for(fd, addr, &snap)) {
        r = R.bind(fd, addr, len);
        goto native_done;
    }
    if (snap.src_bound) {
        /* bound by ax where the kernel had autobound it (udp.c): bound already,
         * unless a connect(AF_UNSPEC) released the port, as it does natively */
        struct sockaddr_in cur;
        socklen_t cl = sizeof cur;
        if (R.getsockname(fd, (struct sockaddr *)&cur, &cl) < 0 || cur.sin_port != 0) {
            errno = EINVAL;
            GUARD_LEAVE;
            return -1;
        }
        tbl_lock();
        struct meta *m = tbl_get_gen_locked(fd, snap.gen);
        if (m)
            m->src_bound = 0;
        tbl_unlock();
        snap.src_bound = 0;
    }
    if (snap.state != ST_FRESH && !snap.bound_native && sa_to_ax(addr, len, &a) == 0) {
        /* Bound already (virtually): the kernel would say EINVAL for a local
         * address, and the wildcard and the app's VIP are local to it. */
        struct ax_addr v = a;
        ax_unmap(&v);
        struct sockaddr_storage ss;
        ax_to_sa(&a, addr->sa_family, &ss);
        if (is_wildcard(&ss) || (have_vip && v.family == AF_INET && memcmp(v.ip, app_vip.ip, 4) == 0)) {
            errno = EINVAL;
            r = -1;
            GUARD_LEAVE;
            return r;
        }
    }
    if (snap.state != ST_FRESH || snap.bound_native || addr->sa_family != snap.family || sa_to_ax(addr, len, &a) < 0 ||
        is_loopback(addr)) {
        r = R.bind(fd, addr, len);
        goto native_done;
    }
    if (snap.dgram) {
        struct sockaddr_storage ss;
        ax_to_sa(&a, addr->sa_family, &ss);
        if (is_wildcard(&ss) && a.port == 0) {
            /* the wildcard, any port: a datagram client (the kernel picks the port) */
            r = R.bind(fd, addr, len);
            goto native_done;
        }
    }
    r = virtual_bind(fd, &snap, &a, snap.dgram ? AX_BF_DGRAM : 0, EADDRNOTAVAIL);
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
        struct sockaddr_storage ss;
        int wild = 0;
        if ((addr->sa_family == AF_INET || addr->sa_family == AF_INET6) && len <= sizeof ss) {
            memcpy(&ss, addr, len);
            wild = is_wildcard(&ss);
        }
        tbl_lock();
        struct meta **s = slot_locked(fd, 0);
        if (s && *s) {
            (*s)->bound_native = 1;
            if ((*s)->dgram)
                (*s)->src_free = wild;
        }
        tbl_unlock();
        errno = e;
    }
    GUARD_LEAVE;
    return r;
}

int h_listen(int fd, int backlog)
{
    NEED(listen);
    if (!hook_on())
        return R.listen(fd, backlog);
    GUARD_ENTER;
    int e = errno, r;
    struct meta snap;
    if (!snapshot_or_learn(fd, &snap, 1) || snap.dgram || snap.bound_native ||
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

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    int saved = tl_in_hook;
    tl_in_hook = 0;
    nanosleep(&ts, NULL);
    tl_in_hook = saved;
}

/* mark a tracked socket as natively connected (errno preserved) */
/* After connect(AF_UNSPEC) disconnected a stream socket: no virtual or real peer, and a
 * fresh socket to ax again (unless it was native), so the next connect asks anew. */
static void forget_peer(int fd, const struct meta *snap)
{
    int e = errno;
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap->gen);
    if (m) {
        if (m->state == ST_CONN)
            m->state = ST_FRESH;
        m->has_vpeer = 0;
        m->has_rdest = 0;
    }
    tbl_unlock();
    errno = e;
}

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

/* Binds the app's own source address (HELLO reply) on a fresh socket before a
 * connect to a backend on this host, leaving the port to connect()
 * (IP_BIND_ADDRESS_NO_PORT): the server's hook reads the client's VIP from the
 * peer address (identity.c).  Best effort: without it the server sees 127.0.0.1. */
static void bind_source(int fd, const struct meta *snap)
{
    if (!have_src || (snap->family == AF_INET6 && snap->v6only))
        return;
    int one = 1;
    R.setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_storage ss;
    struct ax_addr a = app_src;
    a.port = 0;
    socklen_t l = ax_to_sa(&a, snap->family, &ss);
    if (R.bind(fd, (struct sockaddr *)&ss, l) < 0)
        dbg("bind source address on fd %d: %s", fd, strerror(errno));
}

/* A client that bound (the wildcard or its VIP, port P: the daemon bound a pool
 * port for it) and now connects: a fresh socket takes the fd number, bound to
 * port P on the app's source address (backend on this host) or the wildcard, so
 * the connection leaves from the port the client chose.  The daemon's socket is
 * closed by the swap (and reaped by the daemon).  0, or -1 with errno. */
static int rebind_client(int fd, struct meta *snap, int local)
{
    struct ax_addr v;
    if (sa_to_ax((struct sockaddr *)&snap->vlocal, snap->vlocal_len, &v) < 0)
        memset(&v, 0, sizeof v);
    int nfd = R.socket(snap->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (nfd < 0)
        return -1;
    ino_t ino;
    uint32_t old = snap->sock_id;
    if (swap_fd(fd, nfd, snap, &ino, NULL) < 0)
        return -1;
    struct sockaddr_storage ss;
    struct ax_addr b;
    memset(&b, 0, sizeof b);
    if (local && have_src && !(snap->family == AF_INET6 && snap->v6only)) {
        b = app_src;
    } else {
        b.family = (uint16_t)snap->family;
    }
    b.port = v.port;
    socklen_t l = ax_to_sa(&b, snap->family, &ss);
    int r = R.bind(fd, (struct sockaddr *)&ss, l);
    int e = errno;
    tbl_lock();
    struct meta *m = tbl_own_locked(fd, snap->gen);
    if (m) {
        m->state = ST_FRESH;
        m->sock_id = 0;
        m->ino = ino;
        m->has_vlocal = 0;
        snap->gen = m->gen;
    }
    tbl_unlock();
    if (old)
        send_close(old);
    snap->state = ST_FRESH;
    snap->sock_id = 0;
    dbg("rebind fd %d for a connect from port %u: %d", fd, v.port, r);
    errno = e;
    return r;
}

/* Direct handoff (AX_ST_DIRECT): the app's own socket connects to the real
 * address the daemon picked, so O_NONBLOCK, EINPROGRESS, SO_ERROR, EINTR,
 * SO_SNDTIMEO and epoll registrations are the kernel's own; nothing is
 * swapped and nothing is reported back: for a backend on this host the socket
 * leaves from the app's own source address first. */
static int direct_connect(int fd, struct meta *snap, const struct ax_msg *p, int retry)
{
    int local = (p->flags & AX_RF_LOCAL) != 0;
    if (snap->state == ST_BOUND && snap->sock_id) {
        if (rebind_client(fd, snap, local) < 0)
            return -1;
    } else if (snap->state == ST_FRESH && !retry && local) {
        bind_source(fd, snap);
    }
    struct sockaddr_storage rd;
    socklen_t rl = ax_to_sa(&p->b, snap->family, &rd);
    int saved = tl_in_hook;
    tl_in_hook = 0; /* a blocking connect: the app's signal handlers may use sockets */
    int r = R.connect(fd, (struct sockaddr *)&rd, rl);
    int ce = errno;
    tl_in_hook = saved;
    if (r == 0 || ce == EINPROGRESS || ce == EINTR) {
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
    }
    dbg("connect fd %d direct -> port %u r=%d errno=%d", fd, p->b.port, r, r ? ce : 0);
    errno = ce;
    return r;
}

/* A socket whose earlier connect failed is in TCP_CLOSE: it may connect again. */
static int connect_failed(int fd)
{
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (R.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0)
        return 0;
    return ti.tcpi_state == 7 /* TCP_CLOSE */;
}

int h_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    NEED(connect);
    if (!hook_on() || !addr || len < sizeof(sa_family_t))
        return R.connect(fd, addr, len);
    GUARD_ENTER;
    int e = errno, r;
    struct meta snap;
    struct ax_addr a;
    if (!snapshot_for(fd, addr, &snap)) {
        r = R.connect(fd, addr, len);
        goto out;
    }
    if (snap.dgram) {
        r = udp_connect(fd, &snap, addr, len);
        goto out;
    }
    if (addr->sa_family == AF_UNSPEC) {
        /* a disconnect (tcp_disconnect): the kernel's, then ax forgets the virtual peer, so
         * getpeername says ENOTCONN and the next connect is a new one, as natively */
        r = R.connect(fd, addr, len);
        if (r == 0)
            forget_peer(fd, &snap);
        goto out;
    }
    int retry = 0;
    if (snap.state == ST_CONN && snap.has_rdest) {
        if (!connect_failed(fd)) {
            /* in progress or connected: let the kernel answer EALREADY / EISCONN / 0 */
            r = R.connect(fd, (struct sockaddr *)&snap.rdest, snap.rdest_len);
            goto out;
        }
        /* The earlier connect failed: the kernel lets the socket connect again
         * (after reporting that failure once), to wherever the app asks now. */
        retry = 1;
        snap.state = ST_FRESH;
    }
    struct ax_msg q, p;
    if ((snap.state == ST_FRESH || snap.state == ST_BOUND) && addr->sa_family == snap.family &&
        sa_to_ax(addr, len, &a) == 0) {
        /* DNS over TCP to a resolv.conf server: to the daemon's responder */
        struct ax_addr u = a;
        ax_unmap(&u);
        memset(&p, 0, sizeof p);
        if (dns_redirect(&u, &p.b)) {
            p.status = AX_ST_DIRECT;
            p.flags = AX_RF_LOCAL;
            p.a = a;
            r = direct_connect(fd, &snap, &p, retry);
            goto out;
        }
    }
    if ((snap.state != ST_FRESH && snap.state != ST_BOUND) || addr->sa_family != snap.family ||
        sa_to_ax(addr, len, &a) < 0 || is_loopback(addr)) {
        /* a socket the daemon bound lives in the host network: a native connect (to
         * loopback too, which is the app's own in another namespace) gets a fresh one */
        if (snap.state == ST_BOUND && snap.sock_id && (!is_loopback(addr) || !session_direct) &&
            rebind_client(fd, &snap, 0) < 0) {
            r = -1;
            goto out;
        }
        r = R.connect(fd, addr, len);
        if ((r == 0 || errno == EINPROGRESS) && snap.state == ST_FRESH)
            mark_native(fd, &snap);
        goto out;
    }
    if (cache_lookup(&a, snap.family, &p, -1) && atomic_load(&ctl_ok)) {
        r = direct_connect(fd, &snap, &p, retry);
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
            /* a send timeout the app set bounds a blocking connect natively (it is the
             * connect's timeout, socket(7)): it bounds the wait for a starting app too */
            long wait = cfg.wait_ms;
            struct timeval tv = {0, 0};
            socklen_t tl = sizeof tv;
            if (R.getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &tl) == 0 && (tv.tv_sec || tv.tv_usec)) {
                long snd = tv.tv_sec * 1000L + tv.tv_usec / 1000L;
                if (snd < wait)
                    wait = snd;
            }
            deadline = now_ms() + wait;
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
        if (snap.state == ST_BOUND && snap.sock_id && rebind_client(fd, &snap, 0) < 0) {
            r = -1;
            goto out;
        }
        r = R.connect(fd, addr, len);
        if (r == 0 || errno == EINPROGRESS)
            mark_native(fd, &snap);
        goto out;
    }
    if (p.status == AX_ST_DIRECT && nfd < 0 && (p.b.family == AF_INET || p.b.family == AF_INET6)) {
        cache_store(&a, snap.family, &p);
        r = direct_connect(fd, &snap, &p, retry);
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

/* Virtual peer of an accepted socket, from the identity map: a client under ax
 * connects from its app's source address.  No message.  *real: the kernel's
 * peer address when the caller has it (accept), else NULL (asks the kernel). */
static int accepted_peer(int fd, struct meta *snap, const struct sockaddr_storage *real, socklen_t rlen)
{
    if (snap->has_vpeer)
        return 1;
    struct sockaddr_storage pe;
    socklen_t pl = sizeof pe;
    if (real) {
        memcpy(&pe, real, rlen);
        pl = rlen;
    } else if (R.getpeername(fd, (struct sockaddr *)&pe, &pl) < 0) {
        return 0;
    }
    struct ax_addr ra, va;
    if (sa_to_ax((struct sockaddr *)&pe, pl, &ra) == 0 && ident_peer(&ra, &va)) {
        snap->vpeer_len = ax_to_sa(&va, snap->family, &snap->vpeer);
    } else {
        memcpy(&snap->vpeer, &pe, pl);
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

/* Accept filtering (only while the map's flags have AX_MAP_F_ACCEPT): whether the
 * connection fd, accepted on listening socket snap, may reach the app.  A peer in
 * the identity map is a local ax app, judged at its own connect: it passes.  Any
 * other peer is judged by the daemon (AX_OP_ACCEPT) once per (listening socket,
 * peer IP) and generation; the verdict is kept in the verdict cache.  The kernel's
 * peer address is taken from the caller's buffer when it holds all of it, else
 * asked for (one getpeername, only here).  Daemon unreachable: the fail mode. */
static int accept_allowed(int fd, const struct meta *snap, const struct sockaddr *addr, const socklen_t *alen,
                          socklen_t inlen)
{
    struct sockaddr_storage real;
    socklen_t rlen;
    if (addr && alen && *alen <= sizeof real && *alen <= inlen) {
        rlen = *alen;
        memcpy(&real, addr, rlen);
    } else {
        rlen = sizeof real;
        if (R.getpeername(fd, (struct sockaddr *)&real, &rlen) != 0)
            return 1; /* gone already: the app learns it from the socket itself */
    }
    struct ax_addr ra, v;
    if (sa_to_ax((const struct sockaddr *)&real, rlen, &ra) != 0 || ident_peer(&ra, &v))
        return 1;
    ax_unmap(&ra);
    struct ax_addr key = ra;
    key.port = 0;
    int verdict = verdict_lookup(&key, snap->sock_id);
    if (verdict >= 0)
        return verdict;
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_ACCEPT;
    q.sock = snap->sock_id;
    q.a = ra;
    int nfd;
    if (ax_request(&q, &p, &nfd) < 0) {
        dbg("accept on socket %u: daemon unreachable, fail %s", snap->sock_id, cfg.fail_open ? "open" : "closed");
        return cfg.fail_open;
    }
    if (nfd >= 0)
        R.close(nfd);
    if (p.status == AX_ST_ERR && p.err != EACCES)
        return cfg.fail_open; /* the daemon failed internally */
    verdict = !(p.status == AX_ST_ERR);
    if (p.status == AX_ST_OK || p.status == AX_ST_ERR)
        verdict_store(&key, snap->sock_id, (uint32_t)p.arg, verdict);
    dbg("accept on socket %u: peer %s by the daemon", snap->sock_id, verdict ? "allowed" : "denied");
    return verdict;
}

/* Egress policy for a datagram to real destination d (unmapped IPv4): 1 = send it.
 * Judged only while the map's flags have AX_MAP_F_EGRESS (a process with no session
 * yet, e.g. one that only talked to loopback so far, opens one to read them).
 * Another ax app's source address is no egress.  Asked once per destination and
 * generation (AX_OP_CONNECT, AX_CF_DGRAM), kept in the verdict cache.  Daemon
 * unreachable: the fail mode. */
int egress_dgram_allowed(const struct ax_addr *d, int family)
{
    struct ax_addr v;
    if (!gen_page)
        ctl_session();
    if (!(map_flags() & AX_MAP_F_EGRESS) || d->family != AF_INET || ident_peer(d, &v))
        return 1;
    int verdict = verdict_lookup(d, VC_TAG_UDP_EGRESS);
    if (verdict >= 0)
        return verdict;
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_CONNECT;
    q.a = *d;
    q.b.family = (uint16_t)family;
    q.arg = AX_CF_DGRAM;
    int nfd;
    if (ax_request(&q, &p, &nfd) < 0)
        return cfg.fail_open;
    if (nfd >= 0)
        R.close(nfd);
    if (p.status == AX_ST_ERR && p.err != EPERM)
        return cfg.fail_open;
    verdict = p.status != AX_ST_ERR;
    verdict_store(d, VC_TAG_UDP_EGRESS, (uint32_t)p.arg, verdict);
    dbg("udp egress to port %u: %s by the daemon", d->port, verdict ? "allowed" : "denied");
    return verdict;
}

/* A connection policy refuses: reset (SO_LINGER {1, 0}: RST, no FIN, nothing was read)
 * and closed before the app ever sees it. */
static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    R.setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    tbl_forget(fd);
    R.close(fd);
}

static int do_accept(int lfd, struct sockaddr *addr, socklen_t *alen, int flags, int four)
{
    socklen_t inlen = (addr && alen) ? *alen : 0;
    int fd, e;
    struct meta snap;
    for (;;) {
        fd = four ? R.accept4(lfd, addr, alen, flags) : R.accept(lfd, addr, alen);
        if (fd < 0 || !hook_on())
            return fd;
        GUARD_ENTER;
        e = errno;
        if (!snapshot_or_learn(lfd, &snap, 0) || snap.state != ST_LISTEN || !snap.has_vlocal) {
            tbl_forget(fd);
            goto out;
        }
        if (!(map_flags() & AX_MAP_F_ACCEPT) || accept_allowed(fd, &snap, addr, alen, inlen))
            break;
        /* Denied: as if it never arrived.  The next accept waits for (blocking) or
         * returns (non-blocking: the next pending connection, or EAGAIN) what the
         * kernel has, with the caller's flags and buffers as given. */
        reset_close(fd);
        if (addr && alen)
            *alen = inlen;
        errno = e;
        GUARD_LEAVE;
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
    /* The inode is read lazily by the first verified lookup, as for socket():
     * an accept costs no extra system call. */
    tbl_lock();
    struct closeinfo ci = {0};
    tbl_drop_locked(fd, &ci);
    struct meta **s = slot_locked(fd, 1);
    struct meta *m = s ? meta_alloc_locked() : NULL;
    if (m) {
        m->family = acc.family;
        m->state = ST_ACCEPTED;
        m->ino = 0;
        m->vlocal = acc.vlocal;
        m->vlocal_len = acc.vlocal_len;
        m->has_vlocal = 1;
        acc.gen = m->gen;
        *s = m;
    }
    tbl_unlock();
    if (ci.send)
        send_close(ci.sock);
    if (m && addr && alen && *alen <= sizeof(struct sockaddr_storage) && *alen <= inlen) {
        /* the kernel wrote the whole real peer address: translate it in place */
        struct sockaddr_storage real;
        socklen_t rlen = *alen;
        memcpy(&real, addr, rlen);
        if (accepted_peer(fd, &acc, &real, rlen)) {
            *alen = inlen;
            copy_out(&acc.vpeer, acc.vpeer_len, addr, alen);
        }
    } else if (m && addr && alen && accepted_peer(fd, &acc, NULL, 0)) {
        *alen = inlen;
        copy_out(&acc.vpeer, acc.vpeer_len, addr, alen);
    }
out:
    errno = e;
    GUARD_LEAVE;
    return fd;
}

int h_accept(int lfd, struct sockaddr *addr, socklen_t *alen, int flags, int four)
{
    if (four)
        NEED(accept4);
    else
        NEED(accept);
    return do_accept(lfd, addr, alen, flags, four);
}

/* The virtual view of one end of a socket, written to *out; 0 when the real
 * address (real, rl) is what the app must see. */
static socklen_t virtual_name(int fd, int peer, const struct sockaddr_storage *real, socklen_t rl,
                              struct sockaddr_storage *out)
{
    struct meta snap;
    int inet = real->ss_family == AF_INET || real->ss_family == AF_INET6;
    if (!(inet ? snapshot_or_learn(fd, &snap, 1) : tbl_snapshot(fd, &snap, 1)))
        return 0;
    if (peer) {
        if ((snap.state == ST_CONN && snap.has_vpeer) ||
            (snap.state == ST_ACCEPTED && accepted_peer(fd, &snap, real, rl))) {
            memcpy(out, &snap.vpeer, snap.vpeer_len);
            return snap.vpeer_len;
        }
        return 0;
    }
    if (snap.has_vlocal && (snap.state == ST_BOUND || snap.state == ST_LISTEN || snap.state == ST_ACCEPTED)) {
        memcpy(out, &snap.vlocal, snap.vlocal_len);
        return snap.vlocal_len;
    }
    if (snap.dgram && snap.src_bound && snap.state != ST_CONN && real->ss_family == AF_INET) {
        /* bound to the app's source address by ax (udp.c, src_bind) where the
         * kernel would have autobound the wildcard: the wildcard and the port */
        struct sockaddr_in *w = (struct sockaddr_in *)out;
        memset(w, 0, sizeof *w);
        w->sin_family = AF_INET;
        w->sin_port = ((const struct sockaddr_in *)real)->sin_port;
        return sizeof *w;
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
int h_name_query(int fd, struct sockaddr *addr, socklen_t *len, int peer)
{
    if (peer)
        NEED(getpeername);
    else
        NEED(getsockname);
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

/* remember options set before a swap (replayed on the daemon's socket) */
int h_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
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
        if (level == SOL_SOCKET && name == SO_REUSEADDR)
            m->reuseaddr = on != 0;
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

/* remember epoll registrations (re-added after a swap) */
int h_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
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
/* sendto / sendmsg                                                          */

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

/* MSG_FASTOPEN with a destination on a TCP socket that is not connected yet is
 * a connect (then the data): it takes the connect path, so a virtual address
 * never reaches the kernel.  A non-blocking socket gets EINPROGRESS, as from the
 * kernel's own Fast Open without a cookie.  1: handled (*r set), 0: pass through. */
static int fastopen_connect(int fd, const struct sockaddr *addr, socklen_t alen, int *r)
{
    struct meta snap;
    if (!addr || alen < sizeof(sa_family_t) || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
        !tbl_snapshot(fd, &snap, 0) || (snap.state != ST_FRESH && snap.state != ST_BOUND))
        return 0;
    *r = h_connect(fd, addr, alen);
    return 1;
}

ssize_t h_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t alen)
{
    NEED(sendto);
    int r;
    ssize_t ur;
    if (addr && hook_on() && udp_sendto(fd, buf, n, flags, addr, alen, &ur))
        return ur;
    if (__builtin_expect(!(flags & MSG_FASTOPEN), 1) || !hook_on() || !fastopen_connect(fd, addr, alen, &r))
        return R.sendto(fd, buf, n, flags, addr, alen);
    if (r < 0)
        return -1;
    return R.sendto(fd, buf, n, flags & ~MSG_FASTOPEN, NULL, 0);
}

ssize_t h_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    NEED(sendmsg);
    int r;
    ssize_t ur;
    if (msg && msg->msg_name && hook_on() && udp_sendmsg(fd, msg, flags, &ur))
        return ur;
    if (__builtin_expect(!(flags & MSG_FASTOPEN), 1) || !hook_on() || !msg ||
        !fastopen_connect(fd, msg->msg_name, msg->msg_namelen, &r))
        return R.sendmsg(fd, msg, flags);
    if (r < 0)
        return -1;
    struct msghdr m = *msg;
    m.msg_name = NULL;
    m.msg_namelen = 0;
    return R.sendmsg(fd, &m, flags & ~MSG_FASTOPEN);
}
