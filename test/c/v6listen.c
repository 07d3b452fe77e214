/* v6listen PORT N: listen on [::]:PORT with IPV6_V6ONLY=0, print "listening port=P",
 * accept N connections; for each print "peer=..." and echo one line back. */
#include "common.h"

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: v6listen PORT N");
    int n = atoi(argv[2]);
    int ls = socket(AF_INET6, SOCK_STREAM, 0);
    if (ls < 0)
        DIE("socket errno=%d", errno);
    int zero = 0, one = 1;
    if (setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0)
        DIE("v6only errno=%d", errno);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons((uint16_t)atoi(argv[1]));
    a.sin6_addr = in6addr_any;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0)
        DIE("bind errno=%d %s", errno, strerror(errno));
    if (listen(ls, 16) < 0)
        DIE("listen errno=%d", errno);
    int v = -1;
    socklen_t vl = sizeof v;
    getsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char b[128];
    if (getsockname(ls, (struct sockaddr *)&ss, &sl) < 0 || ss.ss_family != AF_INET6)
        DIE("getsockname");
    out("listening port=%u v6only=%d", ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), v);
    for (int i = 0; i < n; i++) {
        sl = sizeof ss;
        int c = accept(ls, (struct sockaddr *)&ss, &sl);
        if (c < 0)
            DIE("accept errno=%d", errno);
        out("peer=%s", fmt_addr((struct sockaddr *)&ss, b, sizeof b));
        char line[256];
        if (read_line(c, line, sizeof line) > 0)
            write_all(c, line, strlen(line));
        close(c);
    }
    out("ok accepted=%d", n);
    return 0;
}
