/* forkconnect HOST PORT: the parent creates a socket and forks; the child resolves
 * HOST, connects the inherited socket and exchanges a line; the parent waits and
 * then connects a socket of its own. */
#include "common.h"
#include <sys/wait.h>

static int go(int fd, const char *host, const char *port, const char *who)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = resolve(host, port, AF_UNSPEC, &ss, &len);
    if (rc) {
        FAIL("%s resolve %s", who, gai_strerror(rc));
        return -1;
    }
    if (fd < 0)
        fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        FAIL("%s connect errno=%d", who, errno);
        return -1;
    }
    char line[64];
    snprintf(line, sizeof line, "hello from %s %d\n", who, (int)getpid());
    if (echo_check(fd, line) < 0) {
        FAIL("%s echo", who);
        return -1;
    }
    out("ok %s exchanged", who);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: forkconnect HOST PORT");
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(argv[1], argv[2], AF_UNSPEC, &ss, &len))
        DIE("resolve");
    int s = socket(ss.ss_family, SOCK_STREAM, 0);
    pid_t pid = fork();
    if (pid < 0)
        DIE("fork errno=%d", errno);
    if (pid == 0)
        _exit(go(s, argv[1], argv[2], "child") == 0 ? 0 : 1);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status=%d", st);
    close(s);
    go(-1, argv[1], argv[2], "parent");
    /* a second child after the parent has its own session */
    pid = fork();
    if (pid == 0)
        _exit(go(-1, argv[1], argv[2], "child2") == 0 ? 0 : 1);
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child2 status=%d", st);
    return failures ? 1 : 0;
}
