/* failmode: one socket call per stdin line, timed, for tests of the hook's fail
 * mode (daemon stopped, daemon gone).  Prints "ready", then for each line:
 *   connect IP PORT  -> "connect ms=N r=R errno=NAME"      (blocking connect)
 *   bind IP PORT     -> "bind ms=N r=R errno=NAME name=ADDR" (then listen, kept open)
 *   resolve NAME     -> "resolve ms=N rc=RC"                (getaddrinfo)
 *   connectn IP PORT N -> "connectn ms=N ok=K"  (N connect+close in a row)
 *   serve IP PORT    -> "serve r=R"  (listen; a thread accepts with no address
 *                       and closes, so the hook never asks for the peer)
 * Numeric addresses only (no resolver involved). */
#include "common.h"
#include <pthread.h>
#include <time.h>

static void *sink(void *arg)
{
    int lfd = (int)(long)arg;
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c >= 0)
            close(c);
        else if (errno != EINTR && errno != ECONNABORTED)
            return NULL;
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static socklen_t numeric(const char *ip, const char *port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (void *)ss;
    struct sockaddr_in6 *s6 = (void *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)atoi(port));
        return sizeof *s4;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)atoi(port));
        return sizeof *s6;
    }
    DIE("not a numeric address: %s", ip);
}

static const char *ename(int r, int e)
{
    return r == 0 ? "0" : strerrorname_np(e) ? strerrorname_np(e) : "?";
}

int main(void)
{
    char line[512], cmd[32], a1[256], a2[64];
    out("ready");
    while (read_line(0, line, sizeof line) > 0) {
        a2[0] = 0;
        if (sscanf(line, "%31s %255s %63s", cmd, a1, a2) < 2)
            continue;
        if (strcmp(cmd, "connect") == 0 || strcmp(cmd, "bind") == 0) {
            struct sockaddr_storage ss;
            socklen_t len = numeric(a1, a2, &ss);
            int fd = socket(ss.ss_family, SOCK_STREAM, 0);
            if (fd < 0)
                DIE("socket errno=%d", errno);
            long long t0 = now_ms();
            int r = cmd[0] == 'c' ? connect(fd, (struct sockaddr *)&ss, len) : bind(fd, (struct sockaddr *)&ss, len);
            int e = errno;
            long long ms = now_ms() - t0;
            if (cmd[0] == 'c') {
                out("connect ms=%lld r=%d errno=%s", ms, r, ename(r, e));
                close(fd);
            } else {
                char name[128] = "-";
                struct sockaddr_storage got;
                socklen_t gl = sizeof got;
                if (r == 0 && getsockname(fd, (struct sockaddr *)&got, &gl) == 0)
                    fmt_addr((struct sockaddr *)&got, name, sizeof name);
                if (r == 0)
                    listen(fd, 8); /* kept open: the address stays taken */
                else
                    close(fd);
                out("bind ms=%lld r=%d errno=%s name=%s", ms, r, ename(r, e), name);
            }
        } else if (strcmp(cmd, "connectn") == 0 || strcmp(cmd, "serve") == 0) {
            char a3[32] = "1";
            sscanf(line, "%*s %*s %*s %31s", a3);
            struct sockaddr_storage ss;
            socklen_t len = numeric(a1, a2, &ss);
            if (cmd[0] == 's') {
                int fd = socket(ss.ss_family, SOCK_STREAM, 0);
                int one = 1;
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                int r = bind(fd, (struct sockaddr *)&ss, len) == 0 && listen(fd, 4096) == 0 ? 0 : -1;
                pthread_t th;
                if (r == 0)
                    pthread_create(&th, NULL, sink, (void *)(long)fd);
                out("serve r=%d", r);
                continue;
            }
            int n = atoi(a3), ok = 0;
            long long t0 = now_ms();
            for (int i = 0; i < n; i++) {
                int fd = socket(ss.ss_family, SOCK_STREAM, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) == 0)
                    ok++;
                if (fd >= 0)
                    close(fd);
            }
            out("connectn ms=%lld ok=%d", now_ms() - t0, ok);
        } else if (strcmp(cmd, "resolve") == 0) {
            struct addrinfo h, *res = NULL;
            memset(&h, 0, sizeof h);
            h.ai_socktype = SOCK_STREAM;
            long long t0 = now_ms();
            int rc = getaddrinfo(a1, "80", &h, &res);
            long long ms = now_ms() - t0;
            if (rc == 0)
                freeaddrinfo(res);
            out("resolve ms=%lld rc=%d", ms, rc);
        }
    }
    return 0;
}
