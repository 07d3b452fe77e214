/* threads HOST PORT [THREADS] [ITERS]: concurrent connect/send/recv/close. */
#include "common.h"
#include <pthread.h>

static const char *host, *port;
static int iters;
static int bad;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *run(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < iters; i++) {
        int fd = dial(host, port);
        char line[64];
        snprintf(line, sizeof line, "t%ld i%d\n", id, i);
        if (fd < 0 || echo_check(fd, line) < 0) {
            pthread_mutex_lock(&mu);
            if (bad++ < 5)
                out("fail thread %ld iter %d errno=%d", id, i, errno);
            pthread_mutex_unlock(&mu);
        }
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: threads HOST PORT [THREADS] [ITERS]");
    host = argv[1];
    port = argv[2];
    int n = argc > 3 ? atoi(argv[3]) : 8;
    iters = argc > 4 ? atoi(argv[4]) : 50;
    pthread_t t[64];
    if (n > 64)
        n = 64;
    for (long i = 0; i < n; i++)
        pthread_create(&t[i], NULL, run, (void *)i);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    if (bad)
        DIE("threads=%d iters=%d failures=%d", n, iters, bad);
    out("ok threads=%d iters=%d", n, iters);
    return 0;
}
