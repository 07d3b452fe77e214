/* closerange HOST PORT: close_range over sockets, CLOSE_RANGE_CLOEXEC over
 * 3..~0U, closefrom(3) and a close-every-fd loop; connecting keeps working
 * after each (the ax control channel must survive). */
#include "common.h"
#include <sys/resource.h>

static void roundtrip(const char *host, const char *port, const char *when)
{
    int fd = dial(host, port);
    if (fd < 0) {
        FAIL("connect %s errno=%d", when, errno);
        return;
    }
    CHECK(echo_check(fd, "closerange\n") == 0, "echo %s", when);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: closerange HOST PORT");
    roundtrip(argv[1], argv[2], "initial");
    int a = dial(argv[1], argv[2]);
    int b = socket(AF_INET, SOCK_STREAM, 0);
    int c = socket(AF_INET6, SOCK_STREAM, 0);
    int lo = a < b ? a : b, hi = a > b ? a : b;
    lo = lo < c ? lo : c;
    hi = hi > c ? hi : c;
    CHECK(close_range((unsigned)lo, (unsigned)hi, 0) == 0, "close_range %d..%d", lo, hi);
    CHECK(fcntl(a, F_GETFD) == -1 && errno == EBADF, "closed a");
    CHECK(fcntl(c, F_GETFD) == -1 && errno == EBADF, "closed c");
    roundtrip(argv[1], argv[2], "after close_range");
    CHECK(close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0, "close_range cloexec");
    roundtrip(argv[1], argv[2], "after close_range cloexec");
    CHECK(close_range(3, ~0U, 0) == 0, "close_range 3..~0");
    roundtrip(argv[1], argv[2], "after close_range all");
    dial(argv[1], argv[2]);
    closefrom(3);
    roundtrip(argv[1], argv[2], "after closefrom");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    for (int fd = 3; fd < (int)rl.rlim_cur && fd < 65536; fd++)
        close(fd);
    roundtrip(argv[1], argv[2], "after close loop");
    return failures ? 1 : 0;
}
