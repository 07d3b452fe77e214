/*
 * udpfast: the datagram hot path under churn.  The hook answers a repeated
 * sendto/recvfrom from a memo it reads without its lock (native/udp.c,
 * udp_send_fast/udp_recv_fast, under the fd table's sequence lock); this
 * program checks that every answer stays right while other threads change the
 * table all the time.
 *   udpfast IP_A PORT_A IP_B PORT_B ROUNDS [MASK]
 * (MASK, for diagnosis: which threads run, 1 pinger | 2 churner | 4 reuser; all by default)
 * Both ends are UDP echo servers.  Three threads run at once:
 *   - the pinger: one unconnected socket, ROUNDS request/response rounds, to A
 *     mostly and to B every 7th round (its memo moves between the two flows);
 *   - the churner: ROUNDS/4 times, a new socket connected to B, one round, then
 *     closed: the table changes under the pinger's lock-free reads;
 *   - the reuser: ROUNDS/4 times, a socket sends to A, is closed, and a new one
 *     (most often on the same fd number) is connected to B, or sends to B
 *     unconnected: what the old socket's memo said must not answer for the new.
 * Every reply must carry the payload sent and show, in recvfrom, the address
 * it was sent to (family, address, port), as natively.  Prints
 * "ok rounds=N reused=M" or "fail ..." lines; exit 1 on any failure.
 */
#include "common.h"
#include <pthread.h>
#include <sys/time.h>

static struct sockaddr_in A, B;
static int rounds;
static _Atomic int failed;

static void mk(struct sockaddr_in *s, const char *ip, const char *port)
{
    memset(s, 0, sizeof *s);
    s->sin_family = AF_INET;
    s->sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, ip, &s->sin_addr) != 1)
        DIE("bad address %s", ip);
}

static int udp(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* One round on fd: send tag to `to` (NULL: the connected peer), receive the
 * echo, check payload and source against want.  0 ok, else a failure printed. */
static int round_trip(int fd, const struct sockaddr_in *to, const struct sockaddr_in *want, const char *who, long i)
{
    char msg[64], buf[128];
    int n = snprintf(msg, sizeof msg, "%s-%ld", who, i);
    ssize_t s = to ? sendto(fd, msg, (size_t)n, 0, (const struct sockaddr *)to, sizeof *to) : send(fd, msg, (size_t)n, 0);
    if (s != n) {
        FAIL("%s round %ld: send=%zd errno=%s", who, i, s, strerror(errno));
        return 1;
    }
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    memset(&from, 0xA5, sizeof from);
    ssize_t r = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
    if (r != n || memcmp(buf, msg, (size_t)n) != 0) {
        FAIL("%s round %ld: recv=%zd errno=%s", who, i, r, r < 0 ? strerror(errno) : "-");
        return 1;
    }
    const struct sockaddr_in *f = (const void *)&from;
    if (fl != sizeof *want || f->sin_family != AF_INET || f->sin_port != want->sin_port ||
        f->sin_addr.s_addr != want->sin_addr.s_addr) {
        char got[64], exp[64];
        FAIL("%s round %ld: reply from %s (len %u), expected %s", who, i,
             fl >= sizeof(sa_family_t) ? fmt_addr((struct sockaddr *)&from, got, sizeof got) : "?", (unsigned)fl,
             fmt_addr((const struct sockaddr *)want, exp, sizeof exp));
        return 1;
    }
    return 0;
}

static void *pinger(void *arg)
{
    (void)arg;
    int fd = udp();
    for (long i = 0; i < rounds && !failed; i++) {
        const struct sockaddr_in *to = i % 7 == 6 ? &B : &A;
        if (round_trip(fd, to, to, "ping", i))
            failed = 1;
    }
    close(fd);
    return NULL;
}

static void *churner(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds / 4 && !failed; i++) {
        int fd = udp();
        if (connect(fd, (const struct sockaddr *)&B, sizeof B) != 0) {
            FAIL("churn connect errno=%s", strerror(errno));
            failed = 1;
        } else if (round_trip(fd, NULL, &B, "churn", i)) {
            failed = 1;
        }
        close(fd);
    }
    return NULL;
}

static long reused;

static void *reuser(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds / 4 && !failed; i++) {
        int fd = udp();
        if (round_trip(fd, &A, &A, "old", i)) {
            failed = 1;
            break;
        }
        close(fd);
        int nfd = udp();
        reused += nfd == fd;
        if (i % 2 == 0) {
            if (connect(nfd, (const struct sockaddr *)&B, sizeof B) != 0 || round_trip(nfd, NULL, &B, "new-conn", i))
                failed = 1;
        } else if (round_trip(nfd, &B, &B, "new-unconn", i)) {
            failed = 1;
        }
        close(nfd);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7)
        return 2;
    int mask = argc == 7 ? atoi(argv[6]) : 7; /* which threads (1 pinger, 2 churner, 4 reuser): for diagnosis */
    mk(&A, argv[1], argv[2]);
    mk(&B, argv[3], argv[4]);
    rounds = atoi(argv[5]);
    if (rounds < 4)
        return 2;
    pthread_t t[3];
    void *(*fn[3])(void *) = {pinger, churner, reuser};
    for (int i = 0; i < 3; i++)
        if (mask & 1 << i)
            pthread_create(&t[i], NULL, fn[i], NULL);
    for (int i = 0; i < 3; i++)
        if (mask & 1 << i)
            pthread_join(t[i], NULL);
    if (failed || failures)
        return 1;
    out("ok rounds=%d reused=%ld", rounds, reused);
    return 0;
}
