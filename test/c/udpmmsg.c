/*
 * udpmmsg: sendmmsg/recvmmsg to and from a (virtual) address, as a batching
 * datagram program (a DNS or QUIC server, a metrics agent) does.
 *   udpmmsg IP PORT N   sends N datagrams "m<i>" in one sendmmsg to IP:PORT from
 *                       one unconnected socket, then receives the N replies with
 *                       recvmmsg and prints "reply <text> from <ip>:<port>".
 *                       A sendmmsg that fails prints "fail sendmmsg sent=-1 errno=E" and exits 1.
 */
#include "common.h"
#include <sys/time.h>

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int n = atoi(argv[3]);
    if (n < 1 || n > 16)
        return 2;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    struct mmsghdr m[16];
    struct iovec iov[16];
    char out[16][16], in[16][64];
    struct sockaddr_in from[16];
    memset(m, 0, sizeof m);
    for (int i = 0; i < n; i++) {
        snprintf(out[i], sizeof out[i], "m%d", i);
        iov[i].iov_base = out[i];
        iov[i].iov_len = strlen(out[i]);
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
        m[i].msg_hdr.msg_name = &to;
        m[i].msg_hdr.msg_namelen = sizeof to;
    }
    int s = sendmmsg(fd, m, (unsigned)n, 0);
    if (s < 0) { /* nothing sent: the errno, and no replies to wait for */
        printf("fail sendmmsg sent=-1 errno=%d\n", errno);
        return 1;
    }
    printf("%s sendmmsg sent=%d\n", s == n ? "ok" : "fail", s);
    int got = 0;
    while (got < n) {
        memset(m, 0, sizeof m);
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = in[i];
            iov[i].iov_len = sizeof in[i] - 1;
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
            m[i].msg_hdr.msg_name = &from[i];
            m[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int r = recvmmsg(fd, m, (unsigned)(n - got), MSG_WAITFORONE, NULL);
        if (r <= 0) {
            printf("fail recvmmsg r=%d errno=%d\n", r, errno);
            return 1;
        }
        for (int i = 0; i < r; i++) {
            in[i][m[i].msg_len] = 0;
            char ip[64];
            inet_ntop(AF_INET, &from[i].sin_addr, ip, sizeof ip);
            printf("reply %s from %s:%d\n", in[i], ip, ntohs(from[i].sin_port));
        }
        got += r;
    }
    printf("ok received=%d\n", got);
    return 0;
}
