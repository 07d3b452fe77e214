/*
 * udpsrc: what an unconnected UDP client sees of its own socket, before and
 * after it talks to a second, real destination.  Under ax the first datagram
 * to a virtual address binds the socket to the app's source address (source
 * binding) and a datagram to a real address moves it back to the wildcard; the
 * app must see nothing of either, so the output is compared line by line with
 * a native run (every line is `key=value`, free of addresses that differ).
 *
 *   udpsrc VHOST VPORT RHOST RPORT
 *       VHOST:VPORT an echo server (virtual under ax, a real one natively),
 *       RHOST:RPORT a real echo server (both runs).  Echo servers answer each
 *       datagram in upper case.  Prints the port the client used as
 *       `port=P` (on stderr, for the servers' logs) and the lines checked.
 *   udpsrc name FD
 *       (run by the first mode over exec) getsockname of an inherited socket.
 */
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/wait.h>

static struct sockaddr_in vdst, rdst;
static int s;

static void resolve_host(const char *host, const char *port, struct sockaddr_in *a)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        DIE("resolve %s", host);
    memcpy(a, res->ai_addr, sizeof *a);
    freeaddrinfo(res);
}

/* getsockname as "ADDR:PORT" with the port replaced by "P" when it is p0 (or
 * "nonzero" when p0 is 0 and the port is not) */
static const char *local_of(int fd, unsigned p0, unsigned *port)
{
    static char buf[64];
    struct sockaddr_in l;
    socklen_t ll = sizeof l;
    if (getsockname(fd, (struct sockaddr *)&l, &ll) < 0)
        return "error";
    char ip[32];
    inet_ntop(AF_INET, &l.sin_addr, ip, sizeof ip);
    unsigned p = ntohs(l.sin_port);
    if (port)
        *port = p;
    snprintf(buf, sizeof buf, "%s:%s len=%u", ip, p == 0 ? "0" : (p0 == 0 ? "nonzero" : (p == p0 ? "P" : "other")),
             (unsigned)ll);
    return buf;
}

/* one exchange: send `what` to dst, wait (poll, 3 s) for the reply; prints
 * whether the reply is the upper-cased text and came from dst as the app named it */
static void exchange(const char *key, const struct sockaddr_in *dst, const char *what)
{
    if (sendto(s, what, strlen(what), 0, (const struct sockaddr *)dst, sizeof *dst) < 0) {
        out("%s=send-errno-%d", key, errno);
        return;
    }
    struct pollfd p = {s, POLLIN, 0};
    if (poll(&p, 1, 3000) != 1) {
        out("%s=timeout", key);
        return;
    }
    char b[64];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(s, b, sizeof b - 1, 0, (struct sockaddr *)&from, &fl);
    if (n < 0) {
        out("%s=recv-errno-%d", key, errno);
        return;
    }
    b[n] = 0;
    int same = fl == sizeof from && from.sin_addr.s_addr == dst->sin_addr.s_addr && from.sin_port == dst->sin_port;
    out("%s=%s from-dest=%s", key, b, same ? "yes" : "no");
}

static char got[64];
static ssize_t got_n = -2;
static void *reader(void *arg)
{
    (void)arg;
    /* blocks in recv() until a datagram comes: across the move under ax */
    got_n = recv(s, got, sizeof got - 1, 0);
    if (got_n >= 0)
        got[got_n] = 0;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "name") == 0) {
        out("inherited-local=%s", local_of(atoi(argv[2]), (unsigned)atoi(getenv("UDPSRC_PORT")), NULL));
        return 0;
    }
    if (argc != 5)
        return 2;
    resolve_host(argv[1], argv[2], &vdst);
    resolve_host(argv[3], argv[4], &rdst);
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rcv = 65536;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    int rcv_set = 0;
    socklen_t ol = sizeof rcv_set;
    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv_set, &ol);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x5eed};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    out("fresh-local=%s", local_of(s, 0, NULL));

    /* to the first server: under ax a virtual address, so the socket is source-bound */
    exchange("first", &vdst, "first");
    unsigned port;
    out("after-first-local=%s", local_of(s, 0, &port));
    fprintf(stderr, "port=%u\n", port);
    int ok = 0;
    for (int i = 0; i < 200; i++) {
        char b[16];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        if (sendto(s, "r", 1, 0, (struct sockaddr *)&vdst, sizeof vdst) == 1 &&
            recvfrom(s, b, sizeof b, 0, (struct sockaddr *)&from, &fl) == 1 && b[0] == 'R' &&
            from.sin_port == vdst.sin_port && from.sin_addr.s_addr == vdst.sin_addr.s_addr)
            ok++;
    }
    out("repeated=%d", ok);
    struct sockaddr_in any = {.sin_family = AF_INET};
    errno = 0;
    int br = bind(s, (struct sockaddr *)&any, sizeof any);
    out("bind-again=%d errno=%s", br, br < 0 ? strerrorname_np(errno) : "-");
    out("after-bind-local=%s", local_of(s, port, NULL));

    /* a thread blocked in recv() while the next datagram goes to a real address */
    pthread_t th;
    pthread_create(&th, NULL, reader, NULL);
    usleep(200 * 1000);
    if (sendto(s, "real", 4, 0, (struct sockaddr *)&rdst, sizeof rdst) != 4)
        out("real-send=errno-%d", errno);
    pthread_join(th, NULL);
    out("blocked-reader=%zd %s", got_n, got_n > 0 ? got : "-");
    out("after-real-local=%s", local_of(s, port, NULL));

    /* the socket as the app set it up: flags, options, its epoll registration */
    int fdfl = fcntl(s, F_GETFD), fl = fcntl(s, F_GETFL), rcv_now = 0;
    ol = sizeof rcv_now;
    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv_now, &ol);
    out("cloexec=%d nonblock=%d rcvbuf-kept=%s", (fdfl & FD_CLOEXEC) != 0, (fl & O_NONBLOCK) != 0,
        rcv_now == rcv_set ? "yes" : "no");
    if (sendto(s, "again", 5, 0, (struct sockaddr *)&rdst, sizeof rdst) != 5)
        out("again-send=errno-%d", errno);
    struct epoll_event evs[4];
    int n = epoll_wait(ep, evs, 4, 3000);
    out("epoll=%d data=%llx", n, n > 0 ? (unsigned long long)evs[0].data.u64 : 0ull);
    char b[64];
    struct sockaddr_in from;
    socklen_t frl = sizeof from;
    ssize_t r = recvfrom(s, b, sizeof b - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &frl);
    if (r >= 0)
        b[r] = 0;
    out("again=%s from-dest=%s", r >= 0 ? b : "none",
        r >= 0 && from.sin_port == rdst.sin_port && from.sin_addr.s_addr == rdst.sin_addr.s_addr ? "yes" : "no");
    exchange("real-then-first", &vdst, "back");
    out("final-local=%s", local_of(s, port, NULL));

    /* a third: connect(AF_UNSPEC) releases an autobound port (and address); bind works again */
    int s3 = socket(AF_INET, SOCK_DGRAM, 0);
    int keep3 = s;
    s = s3;
    exchange("third", &vdst, "third");
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    int cr = connect(s3, &unspec, sizeof unspec);
    out("unspec=%d local=%s", cr, local_of(s3, 0, NULL));
    struct sockaddr_in any3 = {.sin_family = AF_INET};
    int br3 = bind(s3, (struct sockaddr *)&any3, sizeof any3);
    out("rebind=%d errno=%s local=%s", br3, br3 < 0 ? strerrorname_np(errno) : "-", local_of(s3, 0, NULL));
    exchange("third-again", &vdst, "third");
    s = keep3;

    /* a second socket, source-bound, inherited over exec: its name there */
    int s2 = socket(AF_INET, SOCK_DGRAM, 0);
    int keep = s;
    s = s2;
    exchange("second", &vdst, "second");
    s = keep;
    unsigned p2;
    local_of(s2, 0, &p2);
    char fdarg[16], parg[16];
    snprintf(fdarg, sizeof fdarg, "%d", s2);
    snprintf(parg, sizeof parg, "%u", p2);
    setenv("UDPSRC_PORT", parg, 1);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "name", fdarg, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return failures ? 1 : 0;
}
