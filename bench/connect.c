/* Connect benchmark: servers and clients for the connect rows of `npm run bench`.
 *
 *   bench-connect server PORT [peer] [NPORTS]
 *        listen on PORT (and the NPORTS-1 ports after it); print "listening PORT";
 *        accept forever; with "peer", take the client's address at accept (as
 *        servers that log clients do) and write one byte before closing
 *   bench-connect client HOST PORT N
 *        N rounds of connect+close; prints "p50_us=.. p99_us=.. cps=.. errors=.. fast=.."
 *   bench-connect rr HOST PORT N
 *        N rounds of connect, read one byte, close (the server must run with "peer")
 *   bench-connect spread HOST PORT NDEST N
 *        one unmeasured round over NDEST ports PORT..PORT+NDEST-1, then N rounds of
 *        connect+close, round robin over them
 *   bench-connect first HOST PORT THREADS
 *        start THREADS busy threads, then time the process's first socket() and
 *        socket()+connect() to HOST:PORT (the hook's first requests: its session
 *        with the daemon, then CONNECT); prints "first_us=.. socket_us=.."
 *
 *   bench-connect userver PORT
 *        a UDP echo server on PORT (recvfrom + sendto to the source it reports)
 *   bench-connect uclient HOST PORT N
 *        N request/response rounds of one small datagram from one unconnected
 *        socket (sendto + recvfrom); prints "p50_us=.. p99_us=.. cps=.. errors=.. fast=.."
 *        (cps = round trips per second)
 *   bench-connect ucclient HOST PORT N
 *        the same from a connected socket (connect once, then send + recvfrom)
 *   bench-connect uclient|ucclient HOST PORT N driven
 *        the same, driven over stdin: after the warm-up, print "ready", then one
 *        measured window of N round trips (and its line) per "go" line read, until
 *        end of input.  One process serves many short windows, so a driver can
 *        alternate a native and an ax client window by window (bench.ts)
 *
 * HOST may be a name (resolved once with getaddrinfo, as apps do). "fast" is the
 * share of connects under 16 µs: native connect latency on a 2-vCPU VM is bimodal
 * (about 12 µs when the server's CPU is idle, 21 µs otherwise), and the share shows
 * which mode a run was in.
 */
#define _GNU_SOURCE
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int server(int port, int peer, int nports)
{
    struct pollfd *pf = calloc((size_t)nports, sizeof *pf);
    for (int i = 0; i < nports; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(port + i))};
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4096) < 0) {
            perror("bind/listen");
            return 1;
        }
        pf[i].fd = s;
        pf[i].events = POLLIN;
    }
    printf("listening %d\n", port);
    fflush(stdout);
    for (;;) {
        int s = pf[0].fd;
        if (nports > 1) {
            if (poll(pf, (nfds_t)nports, -1) <= 0)
                continue;
            for (int i = 0; i < nports; i++)
                if (pf[i].revents & POLLIN)
                    s = pf[i].fd;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int c = peer ? accept(s, (struct sockaddr *)&ss, &sl) : accept(s, NULL, NULL);
        if (c < 0)
            continue;
        if (peer) {
            ssize_t w = write(c, "x", 1);
            (void)w;
        }
        close(c);
    }
}

static struct addrinfo *lookup(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "getaddrinfo %s: %s\n", host, gai_strerror(rc));
        exit(1);
    }
    return res;
}

/* mode 0: connect+close; 1: connect, read a byte, close */
static int client(const char *host, const char *port, int n, int ndest, int mode)
{
    struct addrinfo *res = lookup(host, port);
    struct sockaddr_in base;
    memcpy(&base, res->ai_addr, sizeof base);
    double *lat = calloc((size_t)n, sizeof *lat);
    int errors = 0, ok = 0, fast = 0;
    /* spread: one unmeasured round over the destinations first (a first connect
     * to each asks the daemon once; the run measures the steady state) */
    for (int i = 0; ndest > 1 && i < ndest; i++) {
        struct sockaddr_in dst = base;
        dst.sin_port = htons((uint16_t)(ntohs(base.sin_port) + i));
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct linger lg = {1, 0};
        setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (connect(s, (struct sockaddr *)&dst, sizeof dst) != 0)
            errors++;
        close(s);
    }
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        struct sockaddr_in dst = base;
        dst.sin_port = htons((uint16_t)(ntohs(base.sin_port) + i % ndest));
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct linger lg = {1, 0}; /* RST on close: no TIME_WAIT pile-up over many rounds */
        setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        double a = now_us();
        if (connect(s, (struct sockaddr *)&dst, sizeof dst) == 0) {
            double l = now_us() - a;
            lat[ok++] = l;
            fast += l < 16.0;
            if (mode == 1) {
                char b;
                if (read(s, &b, 1) != 1)
                    errors++;
            }
        } else {
            errors++;
        }
        close(s);
    }
    double total = now_us() - t0;
    qsort(lat, (size_t)ok, sizeof *lat, cmp);
    printf("p50_us=%.1f p99_us=%.1f cps=%.0f errors=%d fast=%.2f\n", ok ? lat[ok / 2] : 0, ok ? lat[(int)(ok * 0.99)] : 0,
           n / (total / 1e6), errors, ok ? (double)fast / ok : 0);
    return errors ? 1 : 0;
}

static atomic_int stop_spin;
static void *spin(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_spin))
        usleep(100);
    return NULL;
}

static int first(const char *host, const char *port, int threads)
{
    struct addrinfo *res = lookup(host, port);
    pthread_t th[64];
    if (threads > 64)
        threads = 64;
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, spin, NULL);
    usleep(20000);
    double a = now_us();
    int s = socket(AF_INET, SOCK_STREAM, 0);
    double sock_us = now_us() - a;
    int r = connect(s, res->ai_addr, res->ai_addrlen);
    double l = now_us() - a;
    close(s);
    atomic_store(&stop_spin, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    printf("first_us=%.1f socket_us=%.1f r=%d\n", l, sock_us, r);
    return r == 0 ? 0 : 1;
}

static int userver(int port)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("bind");
        return 1;
    }
    printf("listening %d\n", port);
    fflush(stdout);
    char buf[2048];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n >= 0)
            sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
    }
}

/* One measured window of n request/response rounds on socket s (to/tolen: the
 * destination, NULL when connected); prints its line; 1 when a round failed. */
static int uwindow(int s, const struct sockaddr *to, socklen_t tolen, int n, double *lat)
{
    int errors = 0, ok = 0, fast = 0;
    char msg[32] = "ping", buf[64];
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        double a = now_us();
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        if (sendto(s, msg, 4, 0, to, tolen) == 4 &&
            recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl) == 4) {
            double l = now_us() - a;
            lat[ok++] = l;
            fast += l < 16.0;
        } else {
            errors++;
        }
    }
    double total = now_us() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    /* the client's own CPU time (user + system) per round trip: what the hook adds to
     * each send and receive, hardly touched by the VM's wake-up latency modes */
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e6 +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
    qsort(lat, (size_t)ok, sizeof *lat, cmp);
    printf("p50_us=%.1f p99_us=%.1f cps=%.0f errors=%d fast=%.2f cpu_us=%.3f\n", ok ? lat[ok / 2] : 0,
           ok ? lat[(int)(ok * 0.99)] : 0, n / (total / 1e6), errors, ok ? (double)fast / ok : 0, cpu / n);
    fflush(stdout);
    return errors ? 1 : 0;
}

static int uclient(const char *host, const char *port, int n, int connected, int driven)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return 1;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connected && connect(s, res->ai_addr, res->ai_addrlen) != 0) {
        perror("connect");
        return 1;
    }
    /* a connected socket sends with no address (send), as a stub resolver does */
    const struct sockaddr *to = connected ? NULL : res->ai_addr;
    socklen_t tolen = connected ? 0 : res->ai_addrlen;
    double *lat = calloc((size_t)n, sizeof *lat);
    char msg[32] = "ping", buf[64];
    for (int i = 0; i < 200; i++) { /* warm-up: the first datagram routes the flow */
        sendto(s, msg, 4, 0, to, tolen);
        recvfrom(s, buf, sizeof buf, 0, NULL, NULL);
    }
    if (!driven)
        return uwindow(s, to, tolen, n, lat);
    printf("ready\n");
    fflush(stdout);
    int failed = 0;
    char line[64];
    while (fgets(line, sizeof line, stdin))
        failed |= uwindow(s, to, tolen, n, lat);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "userver") == 0)
        return userver(atoi(argv[2]));
    int driven = argc == 6 && strcmp(argv[5], "driven") == 0;
    if ((argc == 5 || driven) && strcmp(argv[1], "uclient") == 0)
        return uclient(argv[2], argv[3], atoi(argv[4]), 0, driven);
    if ((argc == 5 || driven) && strcmp(argv[1], "ucclient") == 0)
        return uclient(argv[2], argv[3], atoi(argv[4]), 1, driven);
    if (argc >= 3 && strcmp(argv[1], "server") == 0) {
        int peer = argc >= 4 && strcmp(argv[3], "peer") == 0;
        int nports = argc >= 5 ? atoi(argv[4]) : 1;
        return server(atoi(argv[2]), peer, nports < 1 ? 1 : nports);
    }
    if (argc == 5 && strcmp(argv[1], "client") == 0)
        return client(argv[2], argv[3], atoi(argv[4]), 1, 0);
    if (argc == 5 && strcmp(argv[1], "rr") == 0)
        return client(argv[2], argv[3], atoi(argv[4]), 1, 1);
    if (argc == 6 && strcmp(argv[1], "spread") == 0)
        return client(argv[2], argv[3], atoi(argv[5]), atoi(argv[4]), 0);
    if (argc == 5 && strcmp(argv[1], "first") == 0)
        return first(argv[2], argv[3], atoi(argv[4]));
    fprintf(stderr, "usage: bench-connect server PORT [peer] [NPORTS] | client|rr HOST PORT N | spread HOST PORT NDEST N | first HOST PORT THREADS\n");
    return 2;
}
