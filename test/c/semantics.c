/* Kernel semantics ax must keep (issue 6, item 5, 7 and 8), run natively against
 * 127.0.0.1 and under ax against a virtual name:
 *   - bind on an already bound socket: EINVAL;
 *   - a refused non-blocking connect, then a new connect on the same socket to a
 *     live port succeeds;
 *   - sendto(MSG_FASTOPEN) with a destination on an unconnected TCP socket
 *     connects (and the data arrives);
 *   - a client that binds a chosen source port keeps it;
 *   - connect(AF_UNSPEC) disconnects a connected TCP socket (getpeername: ENOTCONN),
 *     which then connects again.
 * usage: semantics HOST LIVEPORT CLOSEDPORT SRCPORT */
#include "common.h"
#include <poll.h>

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

int main(int argc, char **argv)
{
    if (argc != 5)
        DIE("usage: semantics HOST LIVEPORT CLOSEDPORT SRCPORT");
    const char *host = argv[1];
    struct sockaddr_storage live, closed;
    socklen_t ll, cl;
    resolve_or_die(host, argv[2], AF_INET, &live, &ll);
    resolve_or_die(host, argv[3], AF_INET, &closed, &cl);
    char buf[128];

    /* bind twice */
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in any = {.sin_family = AF_INET};
        int r1 = bind(s, (struct sockaddr *)&any, sizeof any);
        int r2 = bind(s, (struct sockaddr *)&any, sizeof any);
        int e = errno;
        CHECK(r1 == 0 && r2 < 0 && e == EINVAL, "second bind: EINVAL (r1=%d r2=%d errno=%d)", r1, r2, e);
        close(s);
    }

    /* refused non-blocking connect, then a connect to a live port on the same socket */
    {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int r = connect(s, (struct sockaddr *)&closed, cl);
        int e = errno;
        int soerr = 0;
        if (r < 0 && e == EINPROGRESS) {
            struct pollfd p = {s, POLLOUT, 0};
            poll(&p, 1, 5000);
            socklen_t sl = sizeof soerr;
            getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        } else if (r < 0) {
            soerr = e;
        }
        CHECK(soerr == ECONNREFUSED, "non-blocking connect to a closed port: ECONNREFUSED (%d)", soerr);
        int fl = fcntl(s, F_GETFL);
        fcntl(s, F_SETFL, fl & ~O_NONBLOCK);
        /* The kernel reports the failed attempt once more (ECONNABORTED once
         * SO_ERROR was read), then lets the socket connect again. */
        r = connect(s, (struct sockaddr *)&live, ll);
        e = errno;
        out("reconnect_first=%d", r == 0 ? 0 : e);
        if (r < 0) {
            r = connect(s, (struct sockaddr *)&live, ll);
            e = errno;
        }
        CHECK(r == 0, "then a connect to a live port on the same socket works (r=%d errno=%d)", r, r ? e : 0);
        if (r == 0)
            CHECK(echo_check(s, "again\n") == 0, "and carries data");
        close(s);
    }

    /* TCP Fast Open style: sendto with a destination on an unconnected socket */
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        ssize_t n = sendto(s, "tfo\n", 4, MSG_FASTOPEN, (struct sockaddr *)&live, ll);
        int e = errno;
        CHECK(n == 4, "sendto(MSG_FASTOPEN) connects and sends (n=%zd errno=%d)", n, n < 0 ? e : 0);
        if (n == 4) {
            ssize_t m = read_line(s, buf, sizeof buf);
            CHECK(m == 4 && strcmp(buf, "tfo\n") == 0, "the data arrived (echoed)");
            struct sockaddr_storage pe;
            socklen_t pl = sizeof pe;
            char a[96], b[96];
            getpeername(s, (struct sockaddr *)&pe, &pl);
            CHECK(strcmp(fmt_addr((struct sockaddr *)&pe, a, sizeof a), fmt_addr((struct sockaddr *)&live, b, sizeof b)) == 0,
                  "getpeername is the address given to sendto (%s)", a);
        }
        close(s);
    }

    /* a client binds a chosen source port, then connects */
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4]))};
        int r = bind(s, (struct sockaddr *)&src, sizeof src);
        CHECK(r == 0, "bind to source port %s (errno=%d)", argv[4], r ? errno : 0);
        r = connect(s, (struct sockaddr *)&live, ll);
        CHECK(r == 0, "connect after binding a source port (errno=%d)", r ? errno : 0);
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        getsockname(s, (struct sockaddr *)&me, &ml);
        CHECK(ntohs(me.sin_port) == atoi(argv[4]), "the source port is kept (%u)", ntohs(me.sin_port));
        if (r == 0)
            CHECK(echo_check(s, "src\n") == 0, "and carries data");
        close(s);
    }
    /* connect(AF_UNSPEC) disconnects (tcp_disconnect); the socket connects again */
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        int r = connect(s, (struct sockaddr *)&live, ll);
        CHECK(r == 0, "connect before AF_UNSPEC (errno=%d)", r ? errno : 0);
        struct sockaddr un = {.sa_family = AF_UNSPEC};
        r = connect(s, &un, sizeof un);
        CHECK(r == 0, "connect(AF_UNSPEC) on a connected socket: 0 (errno=%d)", r ? errno : 0);
        struct sockaddr_storage pe;
        socklen_t pl = sizeof pe;
        r = getpeername(s, (struct sockaddr *)&pe, &pl);
        int e = errno;
        CHECK(r < 0 && e == ENOTCONN, "then getpeername: ENOTCONN (r=%d errno=%d)", r, r ? e : 0);
        r = connect(s, (struct sockaddr *)&live, ll);
        e = errno;
        CHECK(r == 0, "then a new connect works (errno=%d)", r ? e : 0);
        if (r == 0)
            CHECK(echo_check(s, "unspec\n") == 0, "and carries data");
        close(s);
    }
    return failures ? 1 : 0;
}
