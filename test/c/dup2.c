/* dup2 HOST PORT: dup2 a fresh socket onto fd 100, connect through 100, close the
 * original, data still flows; dup3(x,x) = EINVAL; dup2(x,x) = x;
 * F_DUPFD_CLOEXEC sets FD_CLOEXEC and shares the connection. */
#include "common.h"

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: dup2 HOST PORT");
    struct sockaddr_storage ss;
    socklen_t len;
    resolve_or_die(argv[1], argv[2], AF_UNSPEC, &ss, &len);
    int s = socket(ss.ss_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    CHECK(dup2(s, 100) == 100, "dup2 onto 100");
    CHECK(connect(100, (struct sockaddr *)&ss, len) == 0, "connect via 100 errno=%d", errno);
    close(s);
    CHECK(echo_check(100, "hello dup2\n") == 0, "data after closing original");
    int ka = 0;
    socklen_t kl = sizeof ka;
    getsockopt(100, SOL_SOCKET, SO_KEEPALIVE, &ka, &kl);
    CHECK(ka == 1, "SO_KEEPALIVE kept=%d", ka);
    errno = 0;
    int r = dup3(100, 100, 0);
    CHECK(r == -1 && errno == EINVAL, "dup3(x,x) r=%d errno=%d", r, errno);
    r = dup2(100, 100);
    CHECK(r == 100, "dup2(x,x) r=%d", r);
    r = dup2(12345, 101);
    CHECK(r == -1 && errno == EBADF, "dup2 bad fd errno=%d", errno);
    int d = fcntl(100, F_DUPFD_CLOEXEC, 200);
    CHECK(d >= 200 && (fcntl(d, F_GETFD) & FD_CLOEXEC), "F_DUPFD_CLOEXEC fd=%d", d);
    CHECK(!(fcntl(100, F_GETFD) & FD_CLOEXEC), "original not cloexec");
    struct sockaddr_storage p1, p2;
    socklen_t l1 = sizeof p1, l2 = sizeof p2;
    getpeername(100, (struct sockaddr *)&p1, &l1);
    getpeername(d, (struct sockaddr *)&p2, &l2);
    char b[128];
    out("peer=%s", fmt_addr((struct sockaddr *)&p1, b, sizeof b));
    CHECK(l1 == l2 && memcmp(&p1, &p2, l1) == 0, "dup shares peer");
    close(100);
    CHECK(echo_check(d, "via dup\n") == 0, "data via dup after closing 100");
    close(d);
    return failures ? 1 : 0;
}
