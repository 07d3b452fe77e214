/*
 * dnsrelay.c -- ax-dnsrelay: the nameserver inside an isolated app's network
 * namespace (ax run --isolate).
 *
 *   usage: ax-dnsrelay SOCKET IP        (AX_APP=<app id>:<token> in the environment)
 *
 * The namespace's only interface is its own loopback, so the daemon's DNS
 * responder (in the host network) is out of reach.  ax run's init starts this
 * relay with the capabilities of the new user namespace: it binds UDP and TCP
 * port 53 on IP (127.0.0.53, which the namespace's private /etc/resolv.conf
 * names), drops every capability, and then relays each query, unchanged but for
 * its ID, to the daemon over the unix stream socket SOCKET (the hook socket's
 * path + ".dns", kept reachable inside like the hook socket).  DNS is control
 * traffic; no application data goes through here.
 *
 * Wire to the daemon: one unix connection per client transport (UDP, TCP), each
 * message with the 2-byte length prefix of DNS over TCP (RFC 1035 4.2.2).  The
 * first message of a connection is "AXDNS1 udp|tcp <app id>:<token>": the
 * daemon admits the connection as it admits a hook session (token, then the
 * kernel's SO_PEERCRED pid, which must belong to the app), so the responder
 * knows which app asks (need-to-know policy).  A refused connection is closed.
 *
 * Query IDs: queries from several clients share one connection, so each gets a
 * relay ID (its slot, the slot's generation in the high byte); the reply gets
 * the client's own ID back.  Bounds: MAX_SLOTS queries in flight per transport
 * (past that the client gets SERVFAIL at once), a query unanswered after
 * SLOT_MS is forgotten, MAX_TCP TCP clients (each closed when idle TCP_IDLE_MS,
 * or at its first malformed frame).  Garbage (shorter than a header, or a
 * response) is dropped here; everything else is the responder's to judge.
 *
 * Lifetime: the relay forks once it is bound (the parent exits 0, so the init
 * knows names work before the app starts) and lives in the app's pid
 * namespace: when the app's init exits, the kernel ends it.  libc only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS  256
#define SLOT_MS    6000
#define MAX_TCP    64
#define TCP_IDLE_MS 10000
#define FRAME_MAX  (2 + 65535)
#define RETRY_MS   200
#define UDP_RCVBUF (4 << 20)

enum { T_UDP = 0, T_TCP = 1 };

struct slot {
    int used;
    uint16_t wire_id;  /* the ID the daemon sees */
    uint16_t client_id;
    long long deadline;
    /* UDP: the client's address; TCP: the client's index and generation */
    struct sockaddr_in from;
    int client;
    unsigned client_gen;
};

struct upstream {
    int fd;
    long long retry_at;
    unsigned char buf[FRAME_MAX];
    size_t len;
    struct slot slots[MAX_SLOTS];
    uint8_t gen;
    unsigned next;
};

struct client {
    int fd;
    unsigned gen;
    long long idle_at;
    unsigned char buf[FRAME_MAX];
    size_t len;
};

static const char *sock_path, *app;
static int udp_fd = -1, tcp_fd = -1;
static struct upstream up[2];
static struct client clients[MAX_TCP];
static unsigned client_gen;
static int warned_refused;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void up_close(struct upstream *u, const char *why)
{
    if (u->fd < 0)
        return;
    close(u->fd);
    u->fd = -1;
    u->len = 0;
    u->retry_at = now_ms() + RETRY_MS;
    /* queries in flight on it get no answer from here; their clients ask again */
    for (int i = 0; i < MAX_SLOTS; i++)
        u->slots[i].used = 0;
    if (why && !warned_refused) {
        fprintf(stderr, "ax-dnsrelay: the daemon's DNS socket %s: %s\n", sock_path, why);
        warned_refused = 1;
    }
}

/* Sends one framed message; the socket has a send timeout, so a stalled daemon
 * costs at most that (then the connection is dropped and made again). */
static int send_frame(int fd, const unsigned char *msg, size_t n)
{
    unsigned char hdr[2] = {(unsigned char)(n >> 8), (unsigned char)n};
    struct iovec iov[2] = {{hdr, 2}, {(void *)msg, n}};
    struct msghdr mh = {0};
    mh.msg_iov = iov;
    mh.msg_iovlen = 2;
    size_t want = n + 2, done = 0;
    while (done < want) {
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)w;
        /* advance the iovecs past what was written */
        size_t k = (size_t)w;
        while (mh.msg_iovlen > 0 && k >= mh.msg_iov[0].iov_len) {
            k -= mh.msg_iov[0].iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (mh.msg_iovlen > 0) {
            mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + k;
            mh.msg_iov[0].iov_len -= k;
        }
    }
    return 0;
}

static int up_open(int t)
{
    struct upstream *u = &up[t];
    if (u->fd >= 0)
        return 0;
    if (now_ms() < u->retry_at)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sun = {0};
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", sock_path);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        if (!warned_refused)
            fprintf(stderr, "ax-dnsrelay: cannot reach the daemon at %s: %s\n", sock_path, strerror(errno));
        warned_refused = 1;
        close(fd);
        u->retry_at = now_ms() + RETRY_MS;
        return -1;
    }
    char hello[512];
    int n = snprintf(hello, sizeof hello, "AXDNS1 %s %s", t == T_UDP ? "udp" : "tcp", app);
    if (n <= 0 || (size_t)n >= sizeof hello || send_frame(fd, (unsigned char *)hello, (size_t)n) < 0) {
        close(fd);
        u->retry_at = now_ms() + RETRY_MS;
        return -1;
    }
    u->fd = fd;
    u->len = 0;
    return 0;
}

/* A header-only SERVFAIL for a query we cannot pass on (RFC 1035 4.1.1). */
static size_t servfail(const unsigned char *q, unsigned char *out)
{
    memcpy(out, q, 12);
    out[2] = (unsigned char)((q[2] & 0x79) | 0x80); /* QR=1, opcode and RD kept */
    out[3] = 0x80 | 2;                              /* RA, SERVFAIL */
    memset(out + 4, 0, 8);
    return 12;
}

static void client_close(int i)
{
    if (clients[i].fd >= 0)
        close(clients[i].fd);
    clients[i].fd = -1;
    clients[i].len = 0;
}

static void deliver(int t, struct slot *s, unsigned char *msg, size_t n)
{
    msg[0] = (unsigned char)(s->client_id >> 8);
    msg[1] = (unsigned char)s->client_id;
    if (t == T_UDP) {
        sendto(udp_fd, msg, n, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&s->from, sizeof s->from);
        return;
    }
    struct client *c = &clients[s->client];
    if (c->fd < 0 || c->gen != s->client_gen)
        return; /* the client went away */
    unsigned char hdr[2] = {(unsigned char)(n >> 8), (unsigned char)n};
    struct iovec iov[2] = {{hdr, 2}, {msg, n}};
    struct msghdr mh = {0};
    mh.msg_iov = iov;
    mh.msg_iovlen = 2;
    ssize_t w = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w != (ssize_t)(n + 2))
        client_close(s->client); /* a client that does not read its answers is dropped */
}

/* One query from a client: relayed under a relay ID, or answered SERVFAIL. */
static void relay(int t, unsigned char *q, size_t n, const struct sockaddr_in *from, int client)
{
    if (n < 12 || (q[2] & 0x80))
        return; /* shorter than a header, or a response: dropped */
    struct upstream *u = &up[t];
    struct slot *s = NULL;
    for (unsigned k = 0; k < MAX_SLOTS; k++) {
        unsigned i = (u->next + k) % MAX_SLOTS;
        if (!u->slots[i].used) {
            s = &u->slots[i];
            u->next = (i + 1) % MAX_SLOTS;
            break;
        }
    }
    if (!s || up_open(t) < 0) {
        unsigned char out[12];
        size_t m = servfail(q, out);
        struct slot tmp = {0};
        tmp.client_id = (uint16_t)(q[0] << 8 | q[1]);
        if (from)
            tmp.from = *from;
        tmp.client = client;
        tmp.client_gen = client >= 0 ? clients[client].gen : 0;
        deliver(t, &tmp, out, m);
        return;
    }
    s->used = 1;
    s->client_id = (uint16_t)(q[0] << 8 | q[1]);
    s->wire_id = (uint16_t)((++u->gen) << 8 | (unsigned)(s - u->slots));
    s->deadline = now_ms() + SLOT_MS;
    if (from)
        s->from = *from;
    s->client = client;
    s->client_gen = client >= 0 ? clients[client].gen : 0;
    q[0] = (unsigned char)(s->wire_id >> 8);
    q[1] = (unsigned char)s->wire_id;
    if (send_frame(u->fd, q, n) < 0)
        up_close(u, NULL);
}

/* Frames from the daemon: answers, matched to their slot by relay ID. */
static void up_read(int t)
{
    struct upstream *u = &up[t];
    ssize_t r = recv(u->fd, u->buf + u->len, sizeof u->buf - u->len, MSG_DONTWAIT);
    if (r == 0) {
        up_close(u, "closed by the daemon (refused, or the daemon stopped)");
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR)
            up_close(u, strerror(errno));
        return;
    }
    u->len += (size_t)r;
    size_t off = 0;
    while (u->len - off >= 2) {
        size_t n = (size_t)u->buf[off] << 8 | u->buf[off + 1];
        if (u->len - off < 2 + n)
            break;
        unsigned char *m = u->buf + off + 2;
        off += 2 + n;
        if (n < 12)
            continue;
        uint16_t id = (uint16_t)(m[0] << 8 | m[1]);
        struct slot *s = &u->slots[id & 0xff];
        if (!s->used || s->wire_id != id)
            continue; /* timed out, or its connection was made again */
        s->used = 0;
        deliver(t, s, m, n);
    }
    memmove(u->buf, u->buf + off, u->len - off);
    u->len -= off;
}

static void tcp_read(int i)
{
    struct client *c = &clients[i];
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT);
    if (r <= 0) {
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            client_close(i);
        return;
    }
    c->len += (size_t)r;
    c->idle_at = now_ms() + TCP_IDLE_MS;
    size_t off = 0;
    while (c->fd >= 0 && c->len - off >= 2) {
        size_t n = (size_t)c->buf[off] << 8 | c->buf[off + 1];
        if (n < 12) { /* cannot be a query: the stream is out of step */
            client_close(i);
            return;
        }
        if (c->len - off < 2 + n)
            break;
        relay(T_TCP, c->buf + off + 2, n, NULL, i);
        off += 2 + n;
    }
    if (c->fd >= 0) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
}

static void tcp_accept(void)
{
    int fd = accept4(tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    for (int i = 0; i < MAX_TCP; i++)
        if (clients[i].fd < 0) {
            clients[i].fd = fd;
            clients[i].gen = ++client_gen;
            clients[i].len = 0;
            clients[i].idle_at = now_ms() + TCP_IDLE_MS;
            return;
        }
    close(fd); /* over MAX_TCP */
}

static int bind_both(const char *ip)
{
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "ax-dnsrelay: %s is not an IPv4 address\n", ip);
        return -1;
    }
    int one = 1;
    udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (udp_fd < 0 || tcp_fd < 0)
        return -1;
    setsockopt(tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* room for a burst of queries (a resolver's parallel lookups) while one is relayed: past
     * net.core.rmem_max with the namespace's CAP_NET_ADMIN (held until drop_caps) */
    int rcvbuf = UDP_RCVBUF;
    if (setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (bind(udp_fd, (struct sockaddr *)&a, sizeof a) < 0 || bind(tcp_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(tcp_fd, 64) < 0) {
        fprintf(stderr, "ax-dnsrelay: bind %s:53: %s\n", ip, strerror(errno));
        return -1;
    }
    return 0;
}

/* Every capability of the user namespace goes: the relay needed them to bind port 53 only. */
static int drop_caps(void)
{
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) != 0) {
        fprintf(stderr, "ax-dnsrelay: capset: %s\n", strerror(errno));
        return -1;
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ax-dnsrelay SOCKET IP   (AX_APP=<app id>:<token> in the environment)\n");
        return 2;
    }
    sock_path = argv[1];
    app = getenv("AX_APP");
    if (!app || !*app || strlen(sock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "ax-dnsrelay: %s\n", !app || !*app ? "AX_APP is not set" : "socket path too long");
        return 2;
    }
    if (bind_both(argv[2]) < 0 || drop_caps() < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    for (int t = 0; t < 2; t++)
        up[t].fd = -1;
    for (int i = 0; i < MAX_TCP; i++)
        clients[i].fd = -1;
    pid_t pid = fork();
    if (pid < 0) {
        perror("ax-dnsrelay: fork");
        return 1;
    }
    if (pid > 0)
        return 0; /* bound: the init goes on */
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        close(null);
    }
    prctl(PR_SET_NAME, "ax-dnsrelay", 0, 0, 0);

    static unsigned char dgram[65536];
    for (;;) {
        struct pollfd p[4 + MAX_TCP];
        int idx[4 + MAX_TCP];
        int n = 0;
        p[n] = (struct pollfd){udp_fd, POLLIN, 0};
        idx[n++] = -1;
        p[n] = (struct pollfd){tcp_fd, POLLIN, 0};
        idx[n++] = -2;
        for (int t = 0; t < 2; t++)
            if (up[t].fd >= 0) {
                p[n] = (struct pollfd){up[t].fd, POLLIN, 0};
                idx[n++] = -10 - t;
            }
        for (int i = 0; i < MAX_TCP; i++)
            if (clients[i].fd >= 0) {
                p[n] = (struct pollfd){clients[i].fd, POLLIN, 0};
                idx[n++] = i;
            }
        int r = poll(p, (nfds_t)n, 500);
        if (r < 0 && errno != EINTR)
            return 1;
        for (int k = 0; r > 0 && k < n; k++) {
            if (!p[k].revents)
                continue;
            if (idx[k] == -1) {
                for (int burst = 0; burst < 64; burst++) {
                    struct sockaddr_in from;
                    socklen_t fl = sizeof from;
                    ssize_t m = recvfrom(udp_fd, dgram, sizeof dgram, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
                    if (m < 0)
                        break;
                    relay(T_UDP, dgram, (size_t)m, &from, -1);
                }
            } else if (idx[k] == -2) {
                tcp_accept();
            } else if (idx[k] <= -10) {
                if (up[-10 - idx[k]].fd >= 0)
                    up_read(-10 - idx[k]);
            } else if (clients[idx[k]].fd >= 0) {
                tcp_read(idx[k]);
            }
        }
        long long now = now_ms();
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < MAX_SLOTS; i++)
                if (up[t].slots[i].used && up[t].slots[i].deadline <= now)
                    up[t].slots[i].used = 0;
        for (int i = 0; i < MAX_TCP; i++)
            if (clients[i].fd >= 0 && clients[i].idle_at <= now)
                client_close(i);
    }
}
