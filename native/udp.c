/*
 * udp.c -- datagram sockets: connect, sendto/sendmsg/sendmmsg and
 * recvfrom/recvmsg/recvmmsg to and from virtual addresses, and the redirect of
 * an app's DNS traffic to the daemon's responder.
 *
 * A datagram to a virtual address is routed like a TCP connect: the answer
 * cache (key | CACHE_DGRAM) or one CONNECT round trip (AX_CF_DGRAM) gives the
 * real backend, and the datagram goes there from the app's own socket.  No
 * message per datagram: answers are cached under the table generation.
 *
 * Identity without a message, as for TCP: a datagram to a backend on this host
 * leaves from the app's own source address, so the receiving hook turns the
 * source into the sender's VIP through the identity map.  How the source is set:
 *   - an IPv4 socket that is still unbound at its first datagram to such a
 *     backend (a client socket) is bound to the app's source address, port 0
 *     ("source binding"; getsockname still shows the wildcard and the port, as
 *     natively).  If it later sends to a real destination (or a backend on
 *     another host), it is moved back: a fresh socket bound to the wildcard and
 *     the same port takes its fd number (src_move_back);
 *   - a socket already bound to the wildcard (by the app, or by an earlier
 *     datagram to a real destination), and IPv6 sockets: IP_PKTINFO with the
 *     source address on each datagram;
 *   - connect(): bind before connecting (rebind_source for a wildcard-bound one).
 * Sources are translated back on receipt:
 *   - a connected socket: the virtual peer it connected to;
 *   - a real address this process sent to on behalf of a virtual one (the flow
 *     table below): that virtual address (a service's reply shows VIP:port);
 *   - a source address of the identity map: the client's VIP (port kept), and
 *     the pair is remembered so a reply to VIP:port goes to the real client.
 * These receive-side pairs outlive table generations (a change anywhere in the
 * table, such as an app starting or stopping, must not turn a service's reply
 * into VIP:host-port): a reply shows the address the datagram it answers was
 * sent to, as natively.  A remembered client pair is used for a reply only
 * while the identity map still gives that real address that VIP.  Where a
 * datagram to a virtual address goes is always judged under the current
 * generation.
 *
 * Load balancing: per connected socket (a connect picks the next backend), and
 * per flow for unconnected senders (the backend is chosen by a hash of the
 * socket and the destination, so one socket's datagrams to one service stay on
 * one backend while the table is unchanged).
 *
 * A datagram to a virtual address nobody serves goes to a closed loopback port
 * the daemon names: the kernel's own ICMP port-unreachable follows
 * (ECONNREFUSED on a connected socket's next call, nothing for an unconnected
 * one), and nothing is ever sent to the virtual address itself.
 */
#include "ax_internal.h"

/* ------------------------------------------------------------------------ */
/* flow table: virtual <-> real pairs this process has used                  */

#define FLOW_SLOTS 1024 /* a power of two, per direction */
#define FLOW_PROBE 8

struct flow_ent {
    struct slot_hdr h; /* gen 0: empty */
    struct ax_addr key, val;
};
static struct flow_ent by_real[FLOW_SLOTS], by_virt[FLOW_SLOTS];
static uint32_t flow_clock;
static pthread_mutex_t flow_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned flow_slot(const struct ax_addr *a) { return addr_hash(a, 0) & (FLOW_SLOTS - 1); }

static int flow_same(const void *e, const void *key, uint32_t tag)
{
    (void)tag;
    const struct flow_ent *c = e;
    return c->h.gen != 0 && same_addr(&c->key, key);
}

static uint32_t cur_gen(void) { return gen_page ? *gen_page : 0; }

atomic_uint udp_moves;          /* moves back to the wildcard so far */
static atomic_int src_bound_any; /* some socket of this process was source-bound */

static void flow_put(struct flow_ent *tab, const struct ax_addr *key, const struct ax_addr *val)
{
    uint32_t gen = cur_gen();
    if (gen == 0)
        return;
    pthread_mutex_lock(&flow_mu);
    struct flow_ent *e = slot_claim(tab, sizeof *tab, FLOW_SLOTS - 1, flow_slot(key), FLOW_PROBE, flow_same, key, 0);
    e->h.gen = gen;
    e->h.stamp = ++flow_clock;
    e->key = *key;
    e->val = *val;
    pthread_mutex_unlock(&flow_mu);
}

/* The pair for key, learned under any table generation (see the comment at the
 * top: by_real answers receipts, by_virt is checked against the identity map by
 * its caller).  1 with *val, 0 when none (or no session yet). */
static int flow_get(struct flow_ent *tab, const struct ax_addr *key, struct ax_addr *val)
{
    if (cur_gen() == 0)
        return 0;
    int hit = 0;
    unsigned h = flow_slot(key);
    pthread_mutex_lock(&flow_mu);
    for (unsigned k = 0; k < FLOW_PROBE && !hit; k++) {
        const struct flow_ent *c = &tab[(h + k) & (FLOW_SLOTS - 1)];
        if (flow_same(c, key, 0)) {
            *val = c->val;
            hit = 1;
        }
    }
    pthread_mutex_unlock(&flow_mu);
    return hit;
}

/* A reply to the client VIP:port d goes to *real: 1 when this process saw d's
 * datagrams come from *real and the identity map still gives *real that VIP. */
static int client_flow(const struct ax_addr *d, struct ax_addr *real)
{
    struct ax_addr iv;
    return flow_get(by_virt, d, real) && ident_peer(real, &iv) && same_addr(&iv, d);
}

/* ------------------------------------------------------------------------ */
/* DNS redirect                                                              */

#define MAX_NS 3
static struct ax_addr ns_list[MAX_NS];
static int ns_count;
static pthread_once_t ns_once = PTHREAD_ONCE_INIT;

/* The nameservers of /etc/resolv.conf (IPv4, as the resolver reads them; none
 * listed: 127.0.0.1, glibc's default).  Read once, with plain system calls. */
static void ns_load(void)
{
    char buf[4096];
    int fd = open("/etc/resolv.conf", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        R.close(fd);
    if (n < 0)
        n = 0;
    buf[n] = 0;
    for (char *line = buf; line && *line && ns_count < MAX_NS;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        while (*line == ' ' || *line == '\t')
            line++;
        if (strncmp(line, "nameserver", 10) == 0 && (line[10] == ' ' || line[10] == '\t')) {
            char *v = line + 11;
            while (*v == ' ' || *v == '\t')
                v++;
            char ip[64];
            size_t k = 0;
            while (v[k] && v[k] != ' ' && v[k] != '\t' && v[k] != '\r' && k < sizeof ip - 1) {
                ip[k] = v[k];
                k++;
            }
            ip[k] = 0;
            struct in_addr in;
            if (inet_pton(AF_INET, ip, &in) == 1) {
                struct ax_addr *a = &ns_list[ns_count++];
                memset(a, 0, sizeof *a);
                a->family = AF_INET;
                a->port = 53;
                memcpy(a->ip, &in, 4);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    if (ns_count == 0) {
        struct ax_addr *a = &ns_list[ns_count++];
        memset(a, 0, sizeof *a);
        a->family = AF_INET;
        a->port = 53;
        uint32_t lo = htonl(INADDR_LOOPBACK);
        memcpy(a->ip, &lo, 4);
    }
}

int dns_redirect(const struct ax_addr *dest, struct ax_addr *real)
{
    /* map_dns needs the HELLO reply, which also says whether the responder is reachable */
    if (dest->port != 53 || dest->family != AF_INET || !map_dns(real) || session_foreign)
        return 0;
    pthread_once(&ns_once, ns_load);
    for (int i = 0; i < ns_count; i++)
        if (memcmp(ns_list[i].ip, dest->ip, 4) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* routing a datagram                                                        */

enum { RT_NATIVE = 0, RT_REAL = 1, RT_VIRTUAL = 2 };

/* What every session routes alike: a reply to a client seen on this socket's side (RT_REAL,
 * *real from the flow table), a destination that is not virtual (RT_NATIVE; -1 with EPERM
 * when an egress rule forbids it, as a netfilter OUTPUT drop gives natively); RT_VIRTUAL: a
 * virtual address, for the caller (route, foreign_route) to route. */
static int route_known(int family, const struct ax_addr *d, struct ax_addr *real)
{
    if (client_flow(d, real))
        return RT_REAL;
    if (!map_virtual(d)) {
        if (!egress_dgram_allowed(d, family)) {
            errno = EPERM;
            return -1;
        }
        return RT_NATIVE;
    }
    return RT_VIRTUAL;
}

/* Where a datagram to d (unmapped) goes.  RT_REAL: to *real (*local: a backend
 * on this host, so the app's source address applies); RT_NATIVE: d is not
 * virtual; -1: errno set (a virtual address with no route, daemon away).
 * flow: the hash that picks a backend for an unconnected sender, -1 for a
 * connect (round robin).  *nfd: a socket the daemon handed over (fd sessions),
 * else -1. */
static int route(int family, const struct ax_addr *d, long flow, struct ax_addr *real, int *local, int *nfd,
                 struct ax_msg *p)
{
    *nfd = -1;
    if (dns_redirect(d, real)) {
        *local = 1;
        return RT_REAL;
    }
    int known = route_known(family, d, real);
    if (known != RT_VIRTUAL) {
        *local = 1;
        return known;
    }
    if (cache_lookup(d, family | CACHE_DGRAM, p, flow) && atomic_load(&ctl_ok)) {
        *real = p->b;
        *local = (p->flags & AX_RF_LOCAL) != 0;
        return RT_REAL;
    }
    struct ax_msg q;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_CONNECT;
    q.a = *d;
    q.b.family = (uint16_t)family;
    q.arg = AX_CF_DGRAM;
    if (ax_request(&q, p, nfd) < 0) {
        if (cfg.fail_open)
            return RT_NATIVE;
        errno = ENETUNREACH;
        return -1;
    }
    if (p->status == AX_ST_NATIVE)
        return RT_NATIVE;
    if (p->status == AX_ST_DIRECT && (p->b.family == AF_INET || p->b.family == AF_INET6)) {
        cache_store(d, family | CACHE_DGRAM, p);
        *real = p->b;
        ax_unmap(real);
        *local = (p->flags & AX_RF_LOCAL) != 0;
        return RT_REAL;
    }
    if (p->status == AX_ST_OK && *nfd >= 0) {
        *real = p->b;
        ax_unmap(real);
        *local = 0;
        return RT_REAL;
    }
    if (*nfd >= 0) {
        R.close(*nfd);
        *nfd = -1;
    }
    errno = (p->status == AX_ST_ERR && p->err > 0) ? p->err : ENETUNREACH;
    return -1;
}

/* An unconnected sender of a foreign session (ax run --isolate, root daemon): where
 * a datagram to the virtual address d goes, as route() says for other sessions, but
 * through a host socket.  A socket that is no host socket yet (snap->host clear) asks
 * the daemon (AX_CF_SENDTO), which hands in an unconnected host UDP socket bound to
 * the app's source address and marked, after letting the mark send to d's backends
 * (udpegress.ts); it takes fd's number here (swap_fd: flags, options and epoll
 * registrations kept), and is source-bound (a later datagram to a real destination
 * moves it back into the namespace: src_move_back).  A host socket asks only for
 * destinations the process has no answer for (AX_CF_HOST; the answer is cached under
 * CACHE_HOST until the table changes).  Returns RT_REAL with *real (*local = 1: no
 * IP_PKTINFO, the host socket's source is the app's), RT_NATIVE, or -1 with errno. */
static int foreign_route(int fd, struct meta *snap, const struct ax_addr *d, long flow, struct ax_addr *real,
                         int *local)
{
    *local = 1;
    int known = route_known(snap->family, d, real);
    if (known != RT_VIRTUAL)
        return known;
    int key = snap->family | CACHE_DGRAM | CACHE_HOST;
    struct ax_msg p;
    /* a connected socket the daemon handed in (udp_connect) is a host socket too: a sendto
     * with another destination keeps it (and its connection), as natively */
    if (!snap->host && snap->state == ST_CONN && snap->has_vpeer)
        snap->host = 1;
    if (snap->host && cache_lookup(d, key, &p, flow) && atomic_load(&ctl_ok)) {
        *real = p.b;
        ax_unmap(real);
        return RT_REAL;
    }
    struct ax_msg q;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_CONNECT;
    q.a = *d;
    q.b.family = (uint16_t)snap->family;
    q.arg = AX_CF_DGRAM | AX_CF_SENDTO | (snap->host ? AX_CF_HOST : 0);
    if (!snap->host) {
        /* bound in the namespace already (a move back left it on wildcard:port): keep the port */
        struct sockaddr_storage cur;
        socklen_t cl = sizeof cur;
        struct ax_addr c;
        if (R.getsockname(fd, (struct sockaddr *)&cur, &cl) == 0 && sa_to_ax((struct sockaddr *)&cur, cl, &c) == 0) {
            if (!is_wildcard(&cur)) {
                errno = ENETUNREACH; /* bound to an address of the namespace: no host socket for it */
                return -1;
            }
            q.b.port = c.port;
        }
    }
    int nfd = -1;
    if (ax_request(&q, &p, &nfd) < 0) {
        errno = ENETUNREACH;
        return -1;
    }
    if (p.status == AX_ST_ERR) {
        if (nfd >= 0)
            R.close(nfd);
        errno = p.err > 0 ? p.err : ENETUNREACH;
        return -1;
    }
    if (p.b.family != AF_INET && p.b.family != AF_INET6) {
        if (nfd >= 0)
            R.close(nfd);
        errno = ENETUNREACH;
        return -1;
    }
    if (!snap->host) {
        if (p.status != AX_ST_OK || nfd < 0) {
            if (nfd >= 0)
                R.close(nfd);
            errno = ENETUNREACH;
            return -1;
        }
        /* the whole record: snap may be a peek, without the options and epoll registrations
         * the swap replays */
        struct meta full;
        if (!tbl_snapshot(fd, &full, 0)) {
            R.close(nfd);
            errno = EBADF;
            return -1;
        }
        for (int i = 0; i < full.neps; i++) /* the entries name the old socket: swap_fd adds new ones */
            R.epoll_ctl(full.eps[i].epfd, EPOLL_CTL_DEL, fd, NULL);
        ino_t ino;
        if (swap_fd(fd, nfd, &full, &ino, NULL) < 0)
            return -1;
        atomic_store_explicit(&src_bound_any, 1, memory_order_relaxed);
        tbl_lock();
        struct meta *m = tbl_get_gen_locked(fd, snap->gen);
        if (m) {
            m->ino = ino;
            m->host = 1;
            m->src_bound = 1; /* a real destination moves it back into the namespace */
            m->src_free = 0;
            m->memo.gen = m->memo.rgen = 0;
        }
        tbl_unlock();
        snap->ino = ino;
        snap->host = 1;
        snap->src_bound = 1;
        snap->src_free = 0;
        dbg("udp fd %d: host socket handed in for unconnected sends", fd);
    } else if (nfd >= 0) {
        R.close(nfd);
    }
    cache_store(d, key, &p);
    *real = p.b;
    ax_unmap(real);
    return RT_REAL;
}

/* ------------------------------------------------------------------------ */
/* connect                                                                   */

static void set_conn(int fd, const struct meta *snap, const struct sockaddr *vpeer, socklen_t vlen,
                     const struct sockaddr_storage *rd, socklen_t rl, int state, int src_free, ino_t ino)
{
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap->gen);
    if (m) {
        m->memo.gen = m->memo.rgen = 0; /* a new association: forget the last flows */
        m->state = state;
        m->has_vpeer = vpeer != NULL;
        if (vpeer) {
            memcpy(&m->vpeer, vpeer, vlen);
            m->vpeer_len = vlen;
        }
        m->has_rdest = rd != NULL;
        if (rd) {
            m->rdest = *rd;
            m->rdest_len = rl;
        }
        if (src_free >= 0)
            m->src_free = src_free;
        if (ino)
            m->ino = ino;
    }
    tbl_unlock();
}

/* A datagram socket bound to the wildcard (the app bound port 0, or sent
 * already) that now connects to a backend on this host: a fresh socket takes
 * its fd number, bound to the app's source address and the same port (another
 * port if that one is still held through a dup), so the server sees the VIP. */
static int rebind_source(int fd, struct meta *snap, struct ax_addr *src)
{
    struct sockaddr_storage cur;
    socklen_t cl = sizeof cur;
    if (R.getsockname(fd, (struct sockaddr *)&cur, &cl) < 0 || !is_wildcard(&cur))
        return -1;
    struct ax_addr c;
    if (sa_to_ax((struct sockaddr *)&cur, cl, &c) < 0)
        return -1;
    int nfd = R.socket(snap->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (nfd < 0)
        return -1;
    ino_t ino;
    if (swap_fd(fd, nfd, snap, &ino, NULL) < 0)
        return -1;
    struct sockaddr_storage ss;
    src->port = c.port;
    socklen_t l = ax_to_sa(src, snap->family, &ss);
    int r = R.bind(fd, (struct sockaddr *)&ss, l);
    if (r < 0) {
        src->port = 0;
        l = ax_to_sa(src, snap->family, &ss);
        r = R.bind(fd, (struct sockaddr *)&ss, l);
    }
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap->gen);
    if (m)
        m->ino = ino;
    tbl_unlock();
    snap->ino = ino;
    dbg("udp rebind fd %d on the source address, port %u: %d", fd, src->port, r);
    return r;
}

/* ------------------------------------------------------------------------ */
/* source binding of unconnected senders                                     */

/* 1 when local (a socket's address from getsockname) is the app's source
 * address: a socket ax bound there (learn_socket marks it source-bound), and
 * then notes that this process has one. */
int udp_is_src_bound(const struct sockaddr_storage *local)
{
    const struct sockaddr_in *l = (const struct sockaddr_in *)local;
    if (!have_src || l->sin_family != AF_INET || memcmp(&l->sin_addr, app_src.ip, 4) != 0)
        return 0;
    atomic_store_explicit(&src_bound_any, 1, memory_order_relaxed);
    return 1;
}

/* Source binding: an IPv4 datagram socket with no local address yet (a client
 * that has sent nothing so far) whose datagram goes to a backend on this host
 * is bound to the app's source address, port 0, so this datagram and the next
 * ones carry the identity without a control message (IP_PKTINFO costs about
 * 0.3-0.4 us of kernel time per datagram).  A socket bound already (the app
 * bound wildcard:port, or an earlier datagram to a real destination
 * autobound it) is left alone: it keeps IP_PKTINFO, since moving it would
 * need a new socket and would strand datagrams queued on the old one.
 * Updates the record and *snap; returns 1 when the socket is source-bound. */
static int src_bind(int fd, struct meta *snap)
{
    struct sockaddr_in cur;
    socklen_t cl = sizeof cur;
    if (R.getsockname(fd, (struct sockaddr *)&cur, &cl) < 0 || cur.sin_family != AF_INET)
        return 0;
    if (cur.sin_port != 0 || cur.sin_addr.s_addr != htonl(INADDR_ANY)) {
        /* bound: by someone else (the app, an earlier send), or by a concurrent
         * thread's source binding an instant ago */
        if (!udp_is_src_bound((struct sockaddr_storage *)&cur))
            return 0;
    } else {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        memcpy(&sa.sin_addr, app_src.ip, 4);
        if (R.bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            cl = sizeof cur;
            if (R.getsockname(fd, (struct sockaddr *)&cur, &cl) < 0 || !udp_is_src_bound((struct sockaddr_storage *)&cur))
                return 0;
        }
    }
    atomic_store_explicit(&src_bound_any, 1, memory_order_relaxed);
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap->gen);
    if (m) {
        m->src_bound = 1;
        m->src_free = 0;
    }
    tbl_unlock();
    snap->src_bound = 1;
    snap->src_free = 0;
    dbg("udp fd %d source-bound", fd);
    return 1;
}

/* 1 when fd is a source-bound datagram socket (cheap when none ever was). */
static int is_src_bound(int fd)
{
    if (!atomic_load_explicit(&src_bound_any, memory_order_relaxed))
        return 0;
    tbl_lock();
    struct meta **s = slot_locked(fd, 0);
    int r = s && *s && (*s)->src_bound;
    tbl_unlock();
    return r;
}

int udp_moved_since(int fd, unsigned seq)
{
    tbl_lock();
    struct meta **s = slot_locked(fd, 0);
    int r = s && *s && (*s)->move_seq != 0 && (int)((*s)->move_seq - seq) > 0;
    tbl_unlock();
    return r;
}

/* A source-bound socket that now sends to a real destination (or to a backend
 * on another host, or connects to one): the kernel would use its natural
 * source address, and replies must reach the socket there.  A fresh socket
 * bound to the wildcard and the same port takes the fd number (swap_fd keeps
 * O_NONBLOCK, FD_CLOEXEC, O_ASYNC, the app's socket options and its epoll
 * registrations: the old ones are deleted first, so no entry for the old
 * socket is left behind).  The new socket is bound before the swap
 * (SO_REUSEADDR on both for that instant; the app's own setting is replayed),
 * so the port is never free in between.  A 0-byte datagram from the old
 * socket to itself then wakes a thread blocked on it (the hooked receive calls
 * -- recv, recvfrom, recvmsg, recvmmsg -- see the move and retry on the new
 * socket; read() sees one 0-byte read), and the old socket is closed.
 * Datagrams still queued on it, or arriving later at the source address (late
 * replies from virtual peers), are dropped, as if lost on the way.  A process
 * that shares the socket (fork) keeps the old one, still source-bound (its own
 * hook moves its copy when it sends to a real destination): the two copies
 * are separate sockets from then on.  Errors leave the socket source-bound
 * (the datagram then leaves from the source address). */
static void src_move_back(int fd)
{
    struct meta snap;
    if (!tbl_snapshot(fd, &snap, 0) || !snap.src_bound)
        return;
    struct sockaddr_in cur;
    socklen_t cl = sizeof cur;
    if (R.getsockname(fd, (struct sockaddr *)&cur, &cl) < 0 || cur.sin_family != AF_INET)
        return;
    int nfd = R.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (nfd < 0)
        return;
    int one = 1, zero = 0;
    R.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    R.setsockopt(nfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in w;
    memset(&w, 0, sizeof w);
    w.sin_family = AF_INET;
    w.sin_port = cur.sin_port;
    int br = R.bind(nfd, (struct sockaddr *)&w, sizeof w);
    R.setsockopt(nfd, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero);
    if (br < 0) {
        dbg("udp move of fd %d: bind to port %u: errno %d", fd, ntohs(cur.sin_port), errno);
        R.close(nfd);
        return;
    }
    int ofd = R.fcntl(fd, F_DUPFD_CLOEXEC, 0);
    for (int i = 0; i < snap.neps; i++) /* the entries name the old socket: swap_fd adds new ones */
        R.epoll_ctl(snap.eps[i].epfd, EPOLL_CTL_DEL, fd, NULL);
    ino_t ino;
    if (swap_fd(fd, nfd, &snap, &ino, NULL) < 0) {
        if (ofd >= 0)
            R.close(ofd);
        return;
    }
    unsigned seq = atomic_fetch_add(&udp_moves, 1) + 1;
    if (seq == 0)
        seq = atomic_fetch_add(&udp_moves, 1) + 1;
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap.gen);
    if (m) {
        m->ino = ino;
        m->src_bound = 0;
        if (m->host) /* a socket of the namespace again (foreign sessions): its memo named host addresses */
            m->memo.gen = m->memo.rgen = 0;
        m->host = 0;
        m->src_free = 1; /* bound to the wildcard now: IP_PKTINFO from here on */
        m->move_seq = seq;
    }
    tbl_unlock();
    if (ofd >= 0) {
        /* wakes a reader blocked on the old socket (not shutdown(): a process
         * sharing the socket would read 0 bytes from it for ever) */
        if (cur.sin_port != 0 && !snap.host)
            R.sendto(ofd, "", 0, MSG_DONTWAIT, (struct sockaddr *)&cur, cl);
        else /* no port (a connect(AF_UNSPEC) released it: nothing can arrive there anyway), or a
              * host socket (its marked datagram to itself would be dropped: udpegress.ts) */
            shutdown(ofd, SHUT_RD);
        R.close(ofd);
    }
    dbg("udp fd %d moved back to the wildcard, port %u", fd, ntohs(cur.sin_port));
}

int udp_connect(int fd, struct meta *snap, const struct sockaddr *addr, socklen_t len)
{
    struct ax_addr a;
    if (addr->sa_family == AF_UNSPEC || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
        addr->sa_family != snap->family || sa_to_ax(addr, len, &a) < 0) {
        /* AF_UNSPEC dissolves the association; anything else is the kernel's to judge */
        int r = R.connect(fd, addr, len);
        if (r == 0 && snap->state == ST_CONN)
            set_conn(fd, snap, NULL, 0, NULL, 0, snap->state == ST_CONN ? ST_FRESH : snap->state, -1, 0);
        return r;
    }
    struct ax_addr d = a;
    ax_unmap(&d);
    if (!gen_page && !is_loopback(addr) && ctl_session() < 0 && !gen_page && !cfg.fail_open) {
        /* no session, so no map to tell virtual from real: fail closed, as a TCP connect does */
        errno = ENETUNREACH;
        return -1;
    }
    struct ax_addr real;
    struct ax_msg p;
    int local = 0, nfd = -1;
    int rt = route(snap->family, &d, -1, &real, &local, &nfd, &p);
    if (rt < 0)
        return -1;
    if (snap->src_bound && (rt == RT_NATIVE || (nfd < 0 && !local))) {
        /* the kernel picks the source for this peer: off the app's source address first */
        src_move_back(fd);
        tbl_snapshot(fd, snap, 0);
    }
    if (rt == RT_NATIVE) {
        int r = R.connect(fd, addr, len);
        if (r == 0 && snap->state == ST_CONN)
            set_conn(fd, snap, NULL, 0, NULL, 0, ST_FRESH, -1, 0);
        return r;
    }
    ino_t ino = 0;
    if (nfd >= 0) {
        /* fd session: the daemon's socket, already connected */
        if (swap_fd(fd, nfd, snap, &ino, NULL) < 0)
            return -1;
        set_conn(fd, snap, addr, len, NULL, 0, ST_CONN, 0, ino);
        return 0;
    }
    int src_free = -1;
    if (local && have_src && snap->src_free && !(snap->family == AF_INET6 && snap->v6only)) {
        /* leave from the app's source address, so the server sees its VIP */
        struct sockaddr_storage ss;
        struct ax_addr s = app_src;
        s.port = 0;
        if (snap->state == ST_FRESH && !snap->bound_native) {
            socklen_t l = ax_to_sa(&s, snap->family, &ss);
            if (R.bind(fd, (struct sockaddr *)&ss, l) == 0)
                src_free = 0;
        } else if (rebind_source(fd, snap, &s) == 0) {
            src_free = 0;
        }
    }
    struct sockaddr_storage rd;
    socklen_t rl = ax_to_sa(&real, snap->family, &rd);
    int r = R.connect(fd, (struct sockaddr *)&rd, rl);
    if (r == 0) {
        set_conn(fd, snap, addr, len, &rd, rl, ST_CONN, src_free, 0);
        flow_put(by_real, &real, &d);
    }
    dbg("udp connect fd %d -> port %u r=%d", fd, real.port, r);
    return r;
}

/* ------------------------------------------------------------------------ */
/* send                                                                      */

/* The per-flow hash of an unconnected sender: its socket (the record's
 * generation, unique to each socket this process tracks) and the destination. */
static long flow_hash(const struct meta *snap, const struct ax_addr *d)
{
    uint64_t h = 1469598103934665603ull ^ snap->gen;
    for (int i = 0; i < 4; i++)
        h = (h ^ d->ip[i]) * 1099511628211ull;
    h = (h ^ d->port) * 1099511628211ull;
    return (long)(h >> 1);
}

/* The snapshot of a datagram socket, or 0 when fd is not one (or not tracked). */
static int dgram_snapshot(int fd, struct meta *snap)
{
    if (!tbl_peek(fd, snap) && !snapshot_or_learn(fd, snap, 0))
        return 0;
    return snap->dgram;
}

/* 1 when the socket's datagrams to a backend on this host need IP_PKTINFO
 * with the app's source address (m: the record, local: the backend is here) */
static inline int needs_pktinfo(const struct meta *m, int local)
{
    return local && have_src && m->src_free && !(m->family == AF_INET6 && m->v6only);
}

/* The send half of record m's memo (see struct udp_memo) for the sockaddr
 * bytes addr (alen of them) under generation gen: 1 with *out, *outlen and
 * *pktinfo when the socket's last datagram went to exactly these bytes.  No
 * parsing: one compare, one copy (constant sizes, inline).  A source-bound
 * socket's memo of a backend on another host is no hit: that send moves the
 * socket first.  m may be a racing read (memo_send checks the sequence). */
static inline __attribute__((always_inline)) int memo_send_read(const struct meta *m, uint32_t gen, const struct sockaddr *addr, socklen_t alen,
                                 struct sockaddr_storage *out, socklen_t *outlen, int *pktinfo)
{
    if (!m || m->memo.gen != gen || m->memo.rawlen != alen || (!m->memo.local && m->src_bound))
        return 0;
    if (alen == sizeof(struct sockaddr_in) ? memcmp(&m->memo.raw, addr, sizeof(struct sockaddr_in)) != 0
                                           : memcmp(&m->memo.raw, addr, alen) != 0)
        return 0;
    socklen_t ol = m->memo.outlen;
    if (ol == sizeof(struct sockaddr_in))
        memcpy(out, &m->memo.out, sizeof(struct sockaddr_in));
    else if (ol == sizeof(struct sockaddr_in6))
        memcpy(out, &m->memo.out, sizeof(struct sockaddr_in6));
    else
        return 0;
    *outlen = ol;
    *pktinfo = needs_pktinfo(m, m->memo.local);
    return 1;
}

/* memo_send's read under the table's lock (a change raced the lock-free one) */
static __attribute__((noinline)) int memo_send_locked(int fd, uint32_t gen, const struct sockaddr *addr,
                                                      socklen_t alen, struct sockaddr_storage *out, socklen_t *outlen,
                                                      int *pktinfo)
{
    tbl_lock();
    struct meta **sl = slot_locked(fd, 0);
    int hit = memo_send_read(sl ? *sl : NULL, gen, addr, alen, out, outlen, pktinfo);
    tbl_unlock();
    return hit;
}

/* A repeated send's destination from fd's memo (memo_send_read), read without
 * the table's lock (see tbl_seq), and under it only when a change raced the
 * read.  No errno change.  1: hit; 0: the caller translates (translate_dest). */
static int memo_send(int fd, const struct sockaddr *addr, socklen_t alen, struct sockaddr_storage *out,
                     socklen_t *outlen, int *pktinfo)
{
    uint32_t gen = cur_gen();
    if (gen == 0 || !addr || alen < sizeof(sa_family_t) || alen > sizeof(struct sockaddr_in6))
        return 0;
    unsigned seq = tbl_read_begin();
    if (!(seq & 1)) {
        int hit = memo_send_read(slot_peek(fd), gen, addr, alen, out, outlen, pktinfo);
        if (!tbl_read_retry(seq))
            return hit;
    }
    return memo_send_locked(fd, gen, addr, alen, out, outlen, pktinfo);
}

/* Remember virtual d -> real destination out (outlen bytes; learned under
 * generation gen) as the socket's send memo, with the app's sockaddr bytes
 * (addr, alen), and what a datagram from out shows as its source (d). */
static void memo_send_store(int fd, const struct meta *snap, uint32_t gen, const struct ax_addr *d, int local,
                            const struct sockaddr *addr, socklen_t alen, const struct sockaddr_storage *out,
                            socklen_t outlen)
{
    tbl_lock();
    struct meta *m = tbl_get_gen_locked(fd, snap->gen);
    if (m) {
        m->memo.gen = gen;
        m->memo.local = local;
        m->memo.rawlen = 0;
        m->memo.voutlen = 0;
        if (outlen <= sizeof m->memo.out) {
            memcpy(&m->memo.out, out, outlen);
            m->memo.outlen = outlen;
            struct sockaddr_storage v;
            m->memo.voutlen = ax_to_sa(d, m->family, &v);
            memcpy(&m->memo.vout, &v, m->memo.voutlen);
            if (alen <= sizeof m->memo.raw) {
                memcpy(&m->memo.raw, addr, alen);
                m->memo.rawlen = alen;
            }
        }
    }
    tbl_unlock();
}

/* Translation of one datagram's destination, when its memo had none
 * (callers try memo_send first).  1: *out (length *outlen, the
 * socket's family) is where it goes, *pktinfo: add the app's source address;
 * 0: send unchanged; -1: errno set.  *move is set when the socket is
 * source-bound and this datagram must leave from the kernel's own choice of
 * source (a real destination, a backend on another host): the caller moves
 * it (src_move_back) before sending.  may_bind: the socket may be source-bound
 * here (not in the middle of a batch whose earlier datagrams go elsewhere). */
static int translate_dest(int fd, const struct sockaddr *addr, socklen_t alen, struct sockaddr_storage *out,
                          socklen_t *outlen, int *pktinfo, int *move, int may_bind, struct meta *snap,
                          int *have_snap)
{
    *move = 0;
    if (!addr || alen < sizeof(sa_family_t) || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return 0;
    struct ax_addr a;
    if (sa_to_ax(addr, alen, &a) < 0)
        return 0;
    struct ax_addr d = a;
    ax_unmap(&d);
    if (d.family != AF_INET)
        return 0;
    /* cheap test first: a destination that cannot be virtual needs no socket lookup */
    if (!gen_page && !is_loopback(addr) && ctl_session() < 0 && !gen_page) {
        /* no session, so no map to tell virtual from real: as a connect does */
        if (cfg.fail_open)
            return 0;
        errno = ENETUNREACH;
        return -1;
    }
    if (d.port != 53 && !map_virtual(&d)) { /* every VIP, clients' too, lies in a virtual range */
        *move = is_src_bound(fd);
        if ((gen_page && !(map_flags() & AX_MAP_F_EGRESS)) || (!*have_snap && !dgram_snapshot(fd, snap)))
            return 0; /* no egress rules, or not a datagram socket */
        *have_snap = 1;
        if (egress_dgram_allowed(&d, snap->family))
            return 0;
        *move = 0;
        errno = EPERM; /* what a netfilter OUTPUT drop gives natively */
        return -1;
    }
    struct ax_addr real;
    uint32_t gen = cur_gen();
    if (!*have_snap) {
        if (!dgram_snapshot(fd, snap))
            return 0;
        *have_snap = 1;
    }
    if (addr->sa_family != snap->family)
        return 0;
    struct ax_msg p;
    int local = 0, nfd = -1;
    struct ax_addr iv;
    int rt;
    if (snap->memo.rgen != 0 && same_addr(&snap->memo.vsrc, &d) && ident_peer(&snap->memo.rsrc, &iv) &&
        same_addr(&iv, &d)) {
        /* a reply to the client this socket heard from last (the flow table may have let it go) */
        real = snap->memo.rsrc;
        local = 1;
        rt = RT_REAL;
    } else {
        rt = session_foreign && !session_direct ? foreign_route(fd, snap, &d, flow_hash(snap, &d), &real, &local)
                                                : route(snap->family, &d, flow_hash(snap, &d), &real, &local, &nfd, &p);
    }
    if (nfd >= 0) {
        /* an fd session cannot send unconnected datagrams through a handed-over socket */
        R.close(nfd);
        errno = ENETUNREACH;
        return -1;
    }
    if (rt < 0)
        return rt;
    if (rt == RT_NATIVE || !local) {
        *move = snap->src_bound;
        if (rt == RT_NATIVE)
            return 0;
    } else if (may_bind && have_src && snap->src_free && snap->family == AF_INET) {
        src_bind(fd, snap); /* a client socket's first datagram: no IP_PKTINFO from now on */
    }
    flow_put(by_real, &real, &d);
    *outlen = ax_to_sa(&real, snap->family, out);
    memo_send_store(fd, snap, gen, &d, local, addr, alen, out, *outlen);
    *pktinfo = !*move && needs_pktinfo(snap, local);
    return 1;
}

#define CTL_ROOM 512

/* Control data for one message: the app's own, plus IP_PKTINFO with the app's
 * source address unless the app set a source itself.  Returns the length, 0 for
 * "the app's control data unchanged" (*use_app = 1). */
static size_t with_pktinfo(const struct msghdr *app, char *buf, size_t room, int *use_app)
{
    *use_app = 1;
    if (app && app->msg_controllen) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)app); c; c = CMSG_NXTHDR((struct msghdr *)app, c))
            if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) ||
                (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO))
                return 0;
    }
    size_t have = app ? app->msg_controllen : 0;
    size_t need = have + CMSG_SPACE(sizeof(struct in_pktinfo));
    if (need > room)
        return 0;
    memset(buf, 0, need);
    if (have)
        memcpy(buf, app->msg_control, have);
    struct cmsghdr *c = (struct cmsghdr *)(buf + have);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pi;
    memset(&pi, 0, sizeof pi);
    memcpy(&pi.ipi_spec_dst, app_src.ip, 4);
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    *use_app = 0;
    return need;
}

/* Sends the app's message `msg` to the translated destination out, adding
 * IP_PKTINFO with the app's source address when pktinfo is set. */
static ssize_t send_out(int fd, const struct msghdr *msg, struct sockaddr_storage *out, socklen_t outlen,
                        int pktinfo, int flags)
{
    struct msghdr m = *msg;
    m.msg_name = out;
    m.msg_namelen = outlen;
    char ctl[CTL_ROOM] __attribute__((aligned(8)));
    if (pktinfo) {
        int use_app;
        size_t l = with_pktinfo(msg, ctl, sizeof ctl, &use_app);
        if (!use_app) {
            m.msg_control = ctl;
            m.msg_controllen = l;
        }
    }
    return R.sendmsg(fd, &m, flags);
}

/* One send's translated destination. */
struct dest_out {
    struct sockaddr_storage ss;
    socklen_t len;
    int pktinfo; /* add the app's source address (IP_PKTINFO) */
};

/* translate_dest for one send (its large record snapshot kept off the hot
 * path's stack frame): as dest_for_send */
static __attribute__((noinline)) int dest_translate(int fd, const struct sockaddr *addr, socklen_t alen,
                                                    struct dest_out *o)
{
    struct meta snap;
    int have_snap = 0, move = 0;
    GUARD_ENTER;
    int e = errno;
    int t = translate_dest(fd, addr, alen, &o->ss, &o->len, &o->pktinfo, &move, 1, &snap, &have_snap);
    if (move)
        src_move_back(fd);
    GUARD_LEAVE;
    if (t >= 0)
        errno = e;
    return t;
}

/* memo_send, else translate_dest, for one send: 0 = not ours (send unchanged),
 * 1 = *o filled (errno as the app left it), -1 = failed (errno set). */
static inline int dest_for_send(int fd, const struct sockaddr *addr, socklen_t alen, struct dest_out *o)
{
    o->pktinfo = 0;
    o->len = 0;
    if (memo_send(fd, addr, alen, &o->ss, &o->len, &o->pktinfo))
        return 1;
    return dest_translate(fd, addr, alen, o);
}

int udp_sendmsg(int fd, const struct msghdr *msg, int flags, ssize_t *r)
{
    struct dest_out o;
    int t = dest_for_send(fd, msg->msg_name, msg->msg_namelen, &o);
    if (t == 0)
        return 0;
    *r = t < 0 ? -1 : send_out(fd, msg, &o.ss, o.len, o.pktinfo, flags);
    return 1;
}

int udp_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t alen,
               ssize_t *r)
{
    struct dest_out o;
    int t = dest_for_send(fd, addr, alen, &o);
    if (t == 0)
        return 0;
    if (t < 0) {
        *r = -1;
    } else if (!o.pktinfo) {
        /* the common case (no source address to add) stays a sendto: the kernel's
         * sendmsg path copies and checks a msghdr and an iovec more */
        *r = R.sendto(fd, buf, n, flags, (struct sockaddr *)&o.ss, o.len);
    } else {
        struct iovec iov = {(void *)buf, n};
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        *r = send_out(fd, &m, &o.ss, o.len, o.pktinfo, flags);
    }
    return 1;
}

#define MMSG_CHUNK 32

int h_sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
    NEED(sendmmsg);
    if (!hook_on() || !vec || vlen == 0)
        return R.sendmmsg(fd, vec, vlen, flags);
    /* untouched unless some message goes to a virtual address */
    struct meta snap;
    int have_snap = 0;
    unsigned done = 0;
    int e = errno;
    while (done < vlen) {
        unsigned k = vlen - done < MMSG_CHUNK ? vlen - done : MMSG_CHUNK;
        struct mmsghdr v[MMSG_CHUNK];
        struct sockaddr_storage out[MMSG_CHUNK];
        char ctl[MMSG_CHUNK][CMSG_SPACE(sizeof(struct in_pktinfo))] __attribute__((aligned(8)));
        unsigned use = 0;
        int fail = 0, fail_errno = 0;
        GUARD_ENTER;
        for (; use < k; use++) {
            struct mmsghdr *src = &vec[done + use];
            v[use] = *src;
            int pktinfo = 0, move = 0;
            socklen_t outlen;
            int t = memo_send(fd, src->msg_hdr.msg_name, src->msg_hdr.msg_namelen, &out[use], &outlen, &pktinfo)
                        ? 1
                        : translate_dest(fd, src->msg_hdr.msg_name, src->msg_hdr.msg_namelen, &out[use], &outlen,
                                         &pktinfo, &move, use == 0, &snap, &have_snap);
            if (move) {
                /* this one must leave from the kernel's own source: send the
                 * ones before it first (from the source address), then move */
                if (use > 0)
                    break;
                src_move_back(fd);
                have_snap = 0;
            }
            if (t < 0) {
                fail = 1;
                fail_errno = errno;
                break;
            }
            if (t == 1) {
                v[use].msg_hdr.msg_name = &out[use];
                v[use].msg_hdr.msg_namelen = outlen;
                if (pktinfo && src->msg_hdr.msg_controllen == 0) {
                    int use_app;
                    size_t l = with_pktinfo(NULL, ctl[use], sizeof ctl[use], &use_app);
                    if (!use_app) {
                        v[use].msg_hdr.msg_control = ctl[use];
                        v[use].msg_hdr.msg_controllen = l;
                    }
                }
            }
        }
        GUARD_LEAVE;
        int n = 0;
        if (use > 0) {
            errno = e;
            n = R.sendmmsg(fd, v, use, flags);
            if (n < 0)
                return done > 0 ? (int)done : -1;
            for (int i = 0; i < n; i++)
                vec[done + i].msg_len = v[i].msg_len;
            done += (unsigned)n;
            if ((unsigned)n < use)
                break;
        }
        if (fail) {
            if (done == 0) {
                errno = fail_errno;
                return -1;
            }
            break;
        }
    }
    errno = e;
    return (int)done;
}

/* ------------------------------------------------------------------------ */
/* receive                                                                   */

/* a and b (the socket's sockaddr forms) name the same address as same_addr
 * compares: family, port and address, not IPv6 flow label or scope */
static inline int sa_same(const struct sockaddr *a, socklen_t alen, const struct sockaddr_in6 *b)
{
    if (a->sa_family == AF_INET && b->sin6_family == AF_INET && alen >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6 && b->sin6_family == AF_INET6 && alen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *x = (const void *)a;
        return x->sin6_port == b->sin6_port && memcmp(&x->sin6_addr, &b->sin6_addr, 16) == 0;
    }
    return 0;
}

/* The receive half of record m's memo for the source sa (len bytes, the
 * socket's sockaddr form) under generation gen: 1 with *v (*vl bytes) when
 * it answers (a connected socket's virtual peer, the reply of the flow it sent
 * last whatever the table did since, the source it saw last), or with *vl = 0
 * when nothing is to be rewritten (no datagram socket); 0: no answer.  m may
 * be a racing read (memo_recv checks the sequence). */
static inline __attribute__((always_inline)) int memo_recv_read(const struct meta *m, uint32_t gen, const struct sockaddr *sa, socklen_t len,
                                 struct sockaddr_in6 *v, socklen_t *vl)
{
    const void *from;
    socklen_t l;
    if (!m)
        return 0;
    if (!m->dgram) {
        *vl = 0;
        return 1;
    }
    if (m->state == ST_CONN && m->has_vpeer) {
        from = &m->vpeer;
        l = m->vpeer_len;
    } else if (m->memo.gen != 0 && m->memo.voutlen && sa_same(sa, len, &m->memo.out)) {
        from = &m->memo.vout;
        l = m->memo.voutlen;
    } else if (gen != 0 && m->memo.rgen == gen && m->memo.vsrclen && sa_same(sa, len, &m->memo.rsrc_sa)) {
        from = &m->memo.vsrc_sa;
        l = m->memo.vsrclen;
    } else {
        return 0;
    }
    /* an inet sockaddr, so no more than a sockaddr_in6: copied whole (constant size, inline) */
    if (l != sizeof(struct sockaddr_in) && l != sizeof(struct sockaddr_in6))
        return 0;
    memcpy(v, from, sizeof *v);
    *vl = l;
    return 1;
}

/* memo_recv's read under the table's lock (a change raced the lock-free one) */
static __attribute__((noinline)) int memo_recv_locked(int fd, uint32_t gen, const struct sockaddr *sa, socklen_t len,
                                                      struct sockaddr_in6 *v, socklen_t *vl)
{
    tbl_lock();
    struct meta **sl = slot_locked(fd, 0);
    int hit = memo_recv_read(sl ? *sl : NULL, gen, sa, len, v, vl);
    tbl_unlock();
    return hit;
}

/* The hot path of a receive's source (no parsing, errno untouched): 1 when
 * fd's memo answers for sa (*len bytes, in a buffer of room) and sa has been
 * rewritten, or needs no rewriting (not an inet address, not a datagram
 * socket); 0: learn it (udp_fix_source).  Read without the table's lock (see
 * tbl_seq), and under it only when a change raced the read. */
static int memo_recv(int fd, struct sockaddr *sa, socklen_t *len, socklen_t room)
{
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
        return 1;
    uint32_t gen = cur_gen();
    struct sockaddr_in6 v;
    socklen_t vl = 0;
    int hit = -1;
    unsigned seq = tbl_read_begin();
    if (!(seq & 1)) {
        hit = memo_recv_read(slot_peek(fd), gen, sa, *len, &v, &vl);
        if (tbl_read_retry(seq))
            hit = -1;
    }
    if (hit < 0)
        hit = memo_recv_locked(fd, gen, sa, *len, &v, &vl);
    if (hit && vl) {
        if (room >= sizeof v)
            memcpy(sa, &v, sizeof v); /* bytes past vl are the caller's room, unread */
        else
            memcpy(sa, &v, vl < room ? vl : room);
        *len = vl;
    }
    return hit;
}

void udp_fix_source(int fd, struct sockaddr *sa, socklen_t *len, socklen_t room)
{
    if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return;
    struct ax_addr ra;
    if (sa_to_ax(sa, *len, &ra) < 0)
        return;
    struct ax_addr u = ra, virt;
    ax_unmap(&u);
    struct sockaddr_storage v;
    socklen_t vl = 0;
    uint32_t gen = cur_gen();
    struct meta snap;
    /* a socket this process has no record of (inherited across exec, received over
     * SCM_RIGHTS) is learned once, as for sends */
    if ((!tbl_peek(fd, &snap) && !snapshot_or_learn(fd, &snap, 0)) || !snap.dgram)
        return;
    if (snap.state == ST_CONN && snap.has_vpeer) {
        memcpy(&v, &snap.vpeer, snap.vpeer_len);
        vl = snap.vpeer_len;
    } else {
        if (u.family != AF_INET)
            return;
        struct ax_addr idv;
        int id = ident_peer(&u, &idv);
        if (flow_get(by_real, &u, &virt)) {
            vl = ax_to_sa(&virt, snap.family, &v);
        } else if (id) {
            virt = idv;
            vl = ax_to_sa(&virt, snap.family, &v);
        }
        if (vl && id && same_addr(&virt, &idv)) {
            /* an ax app's own address: a reply to virt goes back to u.  Checked
             * whichever table answered: by_real may keep u after by_virt let its
             * entry go (the tables evict independently), and a reply with no
             * entry would find no route (a server of many clients lost them) */
            struct ax_addr known;
            if (!flow_get(by_virt, &virt, &known) || !same_addr(&known, &u))
                flow_put(by_virt, &virt, &u);
        }
        if (vl && gen != 0) {
            tbl_lock();
            struct meta *m = tbl_get_gen_locked(fd, snap.gen);
            if (m) {
                m->memo.rgen = gen;
                m->memo.rsrc = u;
                m->memo.vsrc = virt;
                m->memo.vsrclen = 0;
                if (*len <= sizeof m->memo.rsrc_sa && vl <= sizeof m->memo.vsrc_sa) {
                    memcpy(&m->memo.rsrc_sa, sa, *len);
                    memcpy(&m->memo.vsrc_sa, &v, vl);
                    m->memo.vsrclen = vl;
                }
            }
            tbl_unlock();
        }
    }
    if (vl) {
        *len = room;
        copy_out(&v, vl, sa, len);
    }
}

/* A receive that returned 0 bytes: 1 when fd's socket was moved back to the
 * wildcard (src_move_back) since the call began (seq: udp_moves then), so the
 * 0 bytes are the wake-up of the old socket and the call is made again on the
 * new one.  A real 0-byte datagram on a socket that was not moved is never
 * retried; one that arrives on the new socket in the instant between the move
 * and the call's start would be (the move happens once per socket at most). */
static inline int recv_moved(int fd, unsigned *seq)
{
    unsigned now = atomic_load_explicit(&udp_moves, memory_order_relaxed);
    if (now == *seq || !udp_moved_since(fd, *seq))
        return 0;
    *seq = now;
    return 1;
}

ssize_t h_recv(int fd, void *buf, size_t n, int flags)
{
    NEED(recvfrom);
    unsigned seq = atomic_load_explicit(&udp_moves, memory_order_relaxed);
    ssize_t r;
    while ((r = R.recvfrom(fd, buf, n, flags, NULL, NULL)) == 0 && recv_moved(fd, &seq))
        ;
    return r;
}

ssize_t h_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    NEED(recvfrom);
    unsigned seq = atomic_load_explicit(&udp_moves, memory_order_relaxed);
    if (!addr || !alen || !hook_on()) {
        ssize_t r;
        while ((r = R.recvfrom(fd, buf, n, flags, addr, alen)) == 0 && recv_moved(fd, &seq))
            ;
        return r;
    }
    socklen_t have = *alen;
    if (have >= sizeof(struct sockaddr_in6) && have <= sizeof(struct sockaddr_storage)) {
        /* room for any inet address: the kernel writes it where the app wants it,
         * and it is translated in place */
        ssize_t r;
        while ((r = R.recvfrom(fd, buf, n, flags, addr, alen)) == 0 && recv_moved(fd, &seq))
            *alen = have;
        if (r < 0 || *alen == 0 || *alen > have || memo_recv(fd, addr, alen, have))
            return r;
        int e = errno;
        GUARD_ENTER;
        udp_fix_source(fd, addr, alen, have);
        GUARD_LEAVE;
        errno = e;
        return r;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    socklen_t room = *alen;
    ssize_t r;
    while ((r = R.recvfrom(fd, buf, n, flags, (struct sockaddr *)&ss, &sl)) == 0 && recv_moved(fd, &seq))
        sl = sizeof ss;
    if (r < 0)
        return r;
    if (sl > 0 && sl <= sizeof ss && !memo_recv(fd, (struct sockaddr *)&ss, &sl, sizeof ss)) {
        int e = errno;
        GUARD_ENTER;
        udp_fix_source(fd, (struct sockaddr *)&ss, &sl, sizeof ss);
        GUARD_LEAVE;
        errno = e;
    }
    *alen = room;
    copy_out(&ss, sl, addr, alen);
    return r;
}

ssize_t h_recvmsg(int fd, struct msghdr *msg, int flags)
{
    NEED(recvmsg);
    unsigned seq = atomic_load_explicit(&udp_moves, memory_order_relaxed);
    if (!msg || !msg->msg_name || !hook_on()) {
        ssize_t r;
        socklen_t cl = msg ? (socklen_t)msg->msg_controllen : 0;
        while ((r = R.recvmsg(fd, msg, flags)) == 0 && recv_moved(fd, &seq))
            msg->msg_controllen = cl;
        return r;
    }
    struct sockaddr_storage ss;
    struct msghdr m = *msg;
    m.msg_name = &ss;
    m.msg_namelen = sizeof ss;
    ssize_t r;
    while ((r = R.recvmsg(fd, &m, flags)) == 0 && recv_moved(fd, &seq)) {
        m.msg_namelen = sizeof ss;
        m.msg_controllen = msg->msg_controllen;
    }
    if (r < 0)
        return r;
    socklen_t sl = m.msg_namelen;
    if (sl > 0 && sl <= sizeof ss && !memo_recv(fd, (struct sockaddr *)&ss, &sl, sizeof ss)) {
        int e = errno;
        GUARD_ENTER;
        udp_fix_source(fd, (struct sockaddr *)&ss, &sl, sizeof ss);
        GUARD_LEAVE;
        errno = e;
    }
    socklen_t room = msg->msg_namelen;
    msg->msg_controllen = m.msg_controllen;
    msg->msg_flags = m.msg_flags;
    copy_out(&ss, sl, msg->msg_name, &room);
    msg->msg_namelen = room;
    return r;
}

int h_recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *tmo)
{
    NEED(recvmmsg);
    unsigned seq = atomic_load_explicit(&udp_moves, memory_order_relaxed);
    socklen_t nl0 = vec && vlen ? vec[0].msg_hdr.msg_namelen : 0;
    size_t cl0 = vec && vlen ? vec[0].msg_hdr.msg_controllen : 0;
    int r = R.recvmmsg(fd, vec, vlen, flags, tmo);
    while (r == 1 && vec[0].msg_len == 0 && recv_moved(fd, &seq)) {
        vec[0].msg_hdr.msg_namelen = nl0; /* the only entry the kernel wrote */
        vec[0].msg_hdr.msg_controllen = cl0;
        r = R.recvmmsg(fd, vec, vlen, flags, tmo);
    }
    if (r <= 0 || !hook_on())
        return r;
    int e = errno;
    GUARD_ENTER;
    /* in place: the kernel wrote whole addresses where the buffer had room */
    for (int i = 0; i < r; i++) {
        struct msghdr *h = &vec[i].msg_hdr;
        if (!h->msg_name || h->msg_namelen == 0 || h->msg_namelen > sizeof(struct sockaddr_storage))
            continue;
        struct sockaddr_storage ss;
        socklen_t sl = h->msg_namelen;
        memcpy(&ss, h->msg_name, sl);
        if (!memo_recv(fd, (struct sockaddr *)&ss, &sl, sizeof ss))
            udp_fix_source(fd, (struct sockaddr *)&ss, &sl, sizeof ss);
        socklen_t cap = h->msg_namelen;
        if (sl <= cap) {
            memcpy(h->msg_name, &ss, sl);
            h->msg_namelen = sl;
        }
    }
    GUARD_LEAVE;
    errno = e;
    return r;
}
