/* echoserver HOST PORT [N]: listen on HOST:PORT ("0.0.0.0", "::", "127.0.0.1", ...),
 * print "listening ip=... port=...", then per accepted connection "peer=ip:port"
 * and echo everything back (one thread per connection).  Exits after N
 * connections have finished if N is given, else runs until killed. */
#include "common.h"
#include <pthread.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done;

static void *serve(void *arg)
{
    int fd = (int)(long)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || write_all(fd, buf, (size_t)n) < 0)
            break;
    }
    close(fd);
    pthread_mutex_lock(&mu);
    done++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: echoserver HOST PORT [N]");
    int limit = argc > 3 ? atoi(argv[3]) : -1;
    struct addrinfo h, *res;
    memset(&h, 0, sizeof h);
    h.ai_family = AF_UNSPEC;
    h.ai_socktype = SOCK_STREAM;
    h.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    int rc = getaddrinfo(argv[1], argv[2], &h, &res);
    if (rc)
        DIE("getaddrinfo %s", gai_strerror(rc));
    int ls = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (res->ai_family == AF_INET6) {
        int zero = 0;
        setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    }
    if (bind(ls, res->ai_addr, res->ai_addrlen) < 0)
        DIE("bind errno=%d %s", errno, strerror(errno));
    freeaddrinfo(res);
    if (listen(ls, 128) < 0)
        DIE("listen errno=%d", errno);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char b[128];
    getsockname(ls, (struct sockaddr *)&ss, &sl);
    fmt_addr((struct sockaddr *)&ss, b, sizeof b);
    char *colon = strrchr(b, ':');
    *colon = 0;
    out("listening ip=%s port=%s", b, colon + 1);
    for (int i = 0; limit < 0 || i < limit; i++) {
        sl = sizeof ss;
        int c = accept4(ls, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                i--;
                continue;
            }
            DIE("accept errno=%d", errno);
        }
        out("peer=%s", fmt_addr((struct sockaddr *)&ss, b, sizeof b));
        pthread_t t;
        pthread_create(&t, NULL, serve, (void *)(long)c);
        pthread_detach(t);
    }
    pthread_mutex_lock(&mu);
    while (done < limit)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    out("ok served=%d", limit);
    return 0;
}
