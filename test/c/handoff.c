/* handoff HOST PORT [refused]: tells which handoff the hook used for a blocking
 * connect by comparing the socket's inode before and after connect(): the same
 * socket (direct: the app's own socket was connected) or a different one (fd: the
 * daemon's socket was installed on the fd number).  Prints handoff=direct|fd,
 * checks an echoed line, EISCONN on later connects, and getpeername.
 * With "refused": expects ECONNREFUSED from the blocking connect, then a
 * successful retry-free close. */
#include "common.h"
#include <sys/stat.h>

static ino_t ino_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: handoff HOST PORT [refused]");
    int want_refused = argc > 3 && strcmp(argv[3], "refused") == 0;
    struct sockaddr_storage ss;
    socklen_t len;
    resolve_or_die(argv[1], argv[2], AF_INET, &ss, &len);
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
    ino_t before = ino_of(fd);
    int r = connect(fd, (struct sockaddr *)&ss, len);
    int e = errno;
    ino_t after = ino_of(fd);
    out("handoff=%s", before == after ? "direct" : "fd");
    if (want_refused) {
        CHECK(r < 0 && e == ECONNREFUSED, "blocking connect refused r=%d errno=%d", r, r ? e : 0);
        close(fd);
        return failures ? 1 : 0;
    }
    CHECK(r == 0, "connect r=%d errno=%d", r, r ? e : 0);
    int nodelay = 0;
    socklen_t ol = sizeof nodelay;
    getsockopt(fd, IPPROTO_TCP, 1, &nodelay, &ol);
    CHECK(nodelay == 1, "TCP_NODELAY kept");
    /* a blocking connect() that returned 0: the kernel answers EISCONN.  The fd
     * handoff waited in the hook for a non-blocking connect made by the daemon,
     * and Linux reports that completion to the next connect() (0) first. */
    r = connect(fd, (struct sockaddr *)&ss, len);
    int e2 = r < 0 ? errno : 0;
    if (before == after)
        CHECK(r < 0 && e2 == EISCONN, "second connect EISCONN errno=%d", e2);
    else
        CHECK(r == 0 || e2 == EISCONN, "second connect r=%d errno=%d", r, e2);
    r = connect(fd, (struct sockaddr *)&ss, len);
    CHECK(r < 0 && errno == EISCONN, "third connect EISCONN errno=%d", r < 0 ? errno : 0);
    CHECK(echo_check(fd, "ping handoff\n") == 0, "echo");
    struct sockaddr_storage pa, la;
    socklen_t pl = sizeof pa, ll = sizeof la;
    char b[128];
    if (getpeername(fd, (struct sockaddr *)&pa, &pl) == 0)
        out("peer=%s", fmt_addr((struct sockaddr *)&pa, b, sizeof b));
    if (getsockname(fd, (struct sockaddr *)&la, &ll) == 0)
        out("local=%s", fmt_addr((struct sockaddr *)&la, b, sizeof b));
    close(fd);
    return failures ? 1 : 0;
}
