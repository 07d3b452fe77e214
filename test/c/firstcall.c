/* firstcall HOST PORT [THREADS]: the first socket calls of a process with
 * THREADS threads running (default 8).  Prints the time of the first connect
 * (which opens the process's session with the ax daemon), of a second one,
 * and the size of the process's fd table (FDSize in /proc/self/status) before
 * and after: opening the session must not grow the table, since growing a
 * table shared by running threads waits for an RCU grace period (~10 ms).
 * Then dup2()s a socket onto the hook's control fd (found as the one unix
 * socket this program did not open) and connects again: the channel moves
 * out of the way, still without growing the table.  With a numeric HOST the
 * first connect opens the session; with a name, getaddrinfo does. */
#include "common.h"
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

static volatile int stop;

static void *spin(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 200000};
    while (!stop) {
        for (volatile int i = 0; i < 20000; i++)
            ;
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int fdsize(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "FDSize: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

/* the lowest unix socket fd at or above from, or -1 */
static int unix_fd(int from)
{
    for (int fd = from; fd < 4096; fd++) {
        struct stat st;
        int dom = 0;
        socklen_t l = sizeof dom;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 &&
            dom == AF_UNIX)
            return fd;
    }
    return -1;
}

static long long timed_connect(const struct sockaddr_storage *ss, socklen_t len, int *ok)
{
    long long t0 = now_us();
    int fd = socket(ss->ss_family, SOCK_STREAM, 0);
    int r = fd < 0 ? -1 : connect(fd, (const struct sockaddr *)ss, len);
    long long us = now_us() - t0;
    *ok = r == 0 && echo_check(fd, "firstcall\n") == 0;
    if (fd >= 0)
        close(fd);
    return us;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: firstcall HOST PORT [THREADS]");
    int nthreads = argc > 3 ? atoi(argv[3]) : 8;
    int before = fdsize(); /* before anything the hook sees: a name opens the session in resolve */
    struct sockaddr_storage ss;
    socklen_t len;
    resolve_or_die(argv[1], argv[2], AF_UNSPEC, &ss, &len);
    pthread_t th[64];
    if (nthreads > 64)
        nthreads = 64;
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, spin, NULL);
    struct timespec settle = {0, 20000000};
    nanosleep(&settle, NULL);

    int ok;
    long long first = timed_connect(&ss, len, &ok);
    int after = fdsize();
    CHECK(ok, "first connect");
    long long second = timed_connect(&ss, len, &ok);
    CHECK(ok, "second connect");
    out("first_connect_us=%lld second_connect_us=%lld threads=%d", first, second, nthreads);
    out("fdsize_before=%d fdsize_after=%d", before, after);
    CHECK(after == before, "no fd table growth (%d -> %d)", before, after);

    int ctl = unix_fd(3);
    out("ctl_fd=%d", ctl);
    if (ctl >= 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(dup2(s, ctl) == ctl, "dup2 onto the control fd %d", ctl);
        close(s);
        long long third = timed_connect(&ss, len, &ok);
        CHECK(ok, "connect after dup2 onto the control fd (%lld us)", third);
        int moved = unix_fd(3);
        out("ctl_fd_after_dup2=%d fdsize=%d", moved, fdsize());
        CHECK(moved != ctl, "control channel moved away from fd %d", ctl);
        CHECK(fdsize() == before, "still no fd table growth (%d)", fdsize());
        close(ctl);
    }
    stop = 1;
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    return failures ? 1 : 0;
}
