/* nbconnect HOST PORT [refused]: non-blocking connect with the socket added to
 * epoll BEFORE connect (nginx style).  Expects EINPROGRESS/0, EPOLLOUT within 5s,
 * SO_ERROR 0, an echoed line, EISCONN on a later connect.  With "refused" the
 * connect must end with ECONNREFUSED instead. */
#include "common.h"
#include <sys/epoll.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: nbconnect HOST PORT [refused]");
    int want_refused = argc > 3 && strcmp(argv[3], "refused") == 0;
    struct sockaddr_storage ss;
    socklen_t len;
    resolve_or_die(argv[1], argv[2], AF_UNSPEC, &ss, &len);
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u64 = 0xabcdef};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        DIE("epoll_ctl errno=%d", errno);
    int r = connect(fd, (struct sockaddr *)&ss, len);
    int e = errno;
    if (want_refused && r < 0 && e == ECONNREFUSED) {
        out("ok connect refused immediately");
        return 0;
    }
    CHECK(r == 0 || e == EINPROGRESS, "connect r=%d errno=%d", r, r ? e : 0);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK, "still nonblocking");
    struct epoll_event got;
    int n = epoll_wait(ep, &got, 1, 5000);
    if (n != 1)
        DIE("epoll_wait n=%d (registration lost?)", n);
    CHECK(got.data.u64 == 0xabcdef, "epoll data kept");
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (want_refused) {
        CHECK(soerr == ECONNREFUSED, "so_error=%d", soerr);
        return failures ? 1 : 0;
    }
    CHECK(soerr == 0 && (got.events & EPOLLOUT), "writable so_error=%d events=0x%x", soerr, got.events);
    /* Linux reports the completion of a non-blocking connect to the next
     * connect() (0) and EISCONN after that */
    r = connect(fd, (struct sockaddr *)&ss, len);
    CHECK(r == 0 || errno == EISCONN, "second connect r=%d errno=%d", r, r < 0 ? errno : 0);
    r = connect(fd, (struct sockaddr *)&ss, len);
    CHECK(r < 0 && errno == EISCONN, "third connect EISCONN errno=%d", r < 0 ? errno : 0);
    const char *msg = "ping nbconnect\n";
    if (write_all(fd, msg, strlen(msg)) < 0)
        DIE("write errno=%d", errno);
    /* wait for the reply through epoll (EPOLLIN) */
    char buf[256];
    size_t have = 0;
    while (have < strlen(msg)) {
        n = epoll_wait(ep, &got, 1, 5000);
        if (n != 1)
            DIE("epoll_wait for reply n=%d", n);
        ssize_t k = read(fd, buf + have, sizeof buf - 1 - have);
        if (k < 0 && errno == EAGAIN)
            continue;
        if (k <= 0)
            DIE("read k=%zd errno=%d", k, errno);
        have += (size_t)k;
    }
    buf[have] = 0;
    CHECK(strcmp(buf, msg) == 0, "echo");
    struct sockaddr_storage pa;
    socklen_t pl = sizeof pa;
    char b[128];
    if (getpeername(fd, (struct sockaddr *)&pa, &pl) < 0)
        DIE("getpeername errno=%d", errno);
    out("peer=%s", fmt_addr((struct sockaddr *)&pa, b, sizeof b));
    close(fd);
    return failures ? 1 : 0;
}
