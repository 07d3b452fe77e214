/* Connect-latency benchmark: a TCP server that accepts and closes, and a client
 * that connects and closes in a loop, timing each connect().
 *
 *   bench-connect server PORT            print "listening PORT", accept forever
 *   bench-connect client HOST PORT N     N connect/close rounds; prints
 *                                        "p50_us=.. p99_us=.. cps=.. errors=.."
 * HOST may be a name (resolved once with getaddrinfo, as apps do).
 */
#define _GNU_SOURCE
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int server(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4096) < 0) {
        perror("bind/listen");
        return 1;
    }
    printf("listening %d\n", port);
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c >= 0) close(c);
    }
}

static int client(const char *host, const char *port, int n) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "getaddrinfo %s: %s\n", host, gai_strerror(rc));
        return 1;
    }
    double *lat = calloc(n, sizeof *lat);
    int errors = 0, ok = 0;
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct linger lg = {1, 0}; /* RST on close: no TIME_WAIT pile-up over many rounds */
        setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        double a = now_us();
        if (connect(s, res->ai_addr, res->ai_addrlen) == 0) {
            lat[ok++] = now_us() - a;
        } else {
            errors++;
        }
        close(s);
    }
    double total = now_us() - t0;
    qsort(lat, ok, sizeof *lat, cmp);
    printf("p50_us=%.1f p99_us=%.1f cps=%.0f errors=%d\n", ok ? lat[ok / 2] : 0, ok ? lat[(int)(ok * 0.99)] : 0, n / (total / 1e6), errors);
    return errors ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "server") == 0) return server(atoi(argv[2]));
    if (argc == 5 && strcmp(argv[1], "client") == 0) return client(argv[2], argv[3], atoi(argv[4]));
    fprintf(stderr, "usage: bench-connect server PORT | client HOST PORT N\n");
    return 2;
}
