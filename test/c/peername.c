/* peername HOST PORT: getpeername/getsockname with a too-short addrlen must
 * copy only that many bytes and report the full length; then the full call. */
#include "common.h"

static void check(int fd, int peer)
{
    const char *what = peer ? "peer" : "sock";
    unsigned char buf[sizeof(struct sockaddr_storage)];
    memset(buf, 0xAA, sizeof buf);
    socklen_t len = 4;
    int r = peer ? getpeername(fd, (struct sockaddr *)buf, &len) : getsockname(fd, (struct sockaddr *)buf, &len);
    socklen_t full = ((struct sockaddr *)buf)->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                    : sizeof(struct sockaddr_in);
    CHECK(r == 0 && len == full, "%s short len=%u", what, (unsigned)len);
    CHECK(buf[4] == 0xAA && buf[5] == 0xAA, "%s short untouched beyond 4 bytes", what);
    memset(buf, 0xAA, sizeof buf);
    len = sizeof buf;
    r = peer ? getpeername(fd, (struct sockaddr *)buf, &len) : getsockname(fd, (struct sockaddr *)buf, &len);
    CHECK(r == 0 && len == full, "%s full len=%u", what, (unsigned)len);
    CHECK(buf[full] == 0xAA, "%s nothing written past the address", what);
    char b[128];
    out("%s=%s", what, fmt_addr((struct sockaddr *)buf, b, sizeof b));
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: peername HOST PORT");
    int fd = dial(argv[1], argv[2]);
    if (fd < 0)
        DIE("connect errno=%d", errno);
    check(fd, 1);
    check(fd, 0);
    socklen_t len = 16;
    struct sockaddr_storage ss;
    int r = getpeername(12345, (struct sockaddr *)&ss, &len);
    CHECK(r == -1 && errno == EBADF, "getpeername bad fd errno=%d", errno);
    int s2 = socket(AF_INET, SOCK_STREAM, 0);
    len = sizeof ss;
    r = getpeername(s2, (struct sockaddr *)&ss, &len);
    CHECK(r == -1 && errno == ENOTCONN, "getpeername unconnected errno=%d", errno);
    CHECK(echo_check(fd, "peername\n") == 0, "echo");
    return failures ? 1 : 0;
}
