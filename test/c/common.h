/* Shared helpers for the ax C test programs (header only). Each program prints
 * `key=value`, `ok ...` or `fail ...` lines on stdout and exits non-zero on failure. */
#ifndef AX_TEST_COMMON_H
#define AX_TEST_COMMON_H
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static __attribute__((unused)) int failures;

static __attribute__((unused)) void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static __attribute__((unused)) void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

#define FAIL(...) do { printf("fail "); out(__VA_ARGS__); failures++; } while (0)
#define DIE(...)  do { printf("fail "); out(__VA_ARGS__); exit(1); } while (0)
#define CHECK(cond, ...) do { if (cond) { printf("ok "); out(__VA_ARGS__); } else FAIL(__VA_ARGS__); } while (0)

/* "ip:port" or "[ip6]:port" */
static __attribute__((unused)) const char *fmt_addr(const struct sockaddr *sa, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        snprintf(buf, n, "%s:%u", ip, ntohs(s->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        snprintf(buf, n, "[%s]:%u", ip, ntohs(s->sin6_port));
    } else {
        snprintf(buf, n, "family%d", sa->sa_family);
    }
    return buf;
}

/* resolve host:port (TCP) with getaddrinfo; first result */
static __attribute__((unused)) int resolve(const char *host, const char *port, int family, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo h, *res;
    memset(&h, 0, sizeof h);
    h.ai_family = family;
    h.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &h, &res);
    if (rc != 0)
        return rc;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* resolve(), or print "fail resolve ..." and exit 1 */
static __attribute__((unused)) void resolve_or_die(const char *host, const char *port, int family,
                                                   struct sockaddr_storage *ss, socklen_t *len)
{
    int rc = resolve(host, port, family, ss, len);
    if (rc)
        DIE("resolve %s", gai_strerror(rc));
}

static __attribute__((unused)) int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* read up to and including '\n'; returns length or -1 */
static __attribute__((unused)) ssize_t read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n++;
        if (buf[n - 1] == '\n')
            break;
    }
    buf[n] = 0;
    return n ? (ssize_t)n : -1;
}

/* send a line, expect it echoed back */
static __attribute__((unused)) int echo_check(int fd, const char *line)
{
    char buf[256];
    if (write_all(fd, line, strlen(line)) < 0)
        return -1;
    if (read_line(fd, buf, sizeof buf) < 0)
        return -1;
    return strcmp(buf, line) == 0 ? 0 : -1;
}

/* connect a new blocking TCP socket to host:port (getaddrinfo) */
static __attribute__((unused)) int dial(const char *host, const char *port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(host, port, AF_UNSPEC, &ss, &len) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

#endif
