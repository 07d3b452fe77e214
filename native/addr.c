/*
 * addr.c -- sockaddr <-> struct ax_addr conversions and address predicates.
 */
#include "ax_internal.h"

int sa_to_ax(const struct sockaddr *sa, socklen_t len, struct ax_addr *a)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s = (const void *)sa;
        a->family = AF_INET;
        a->port = ntohs(s->sin_port);
        memcpy(a->ip, &s->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s = (const void *)sa;
        a->family = AF_INET6;
        a->port = ntohs(s->sin6_port);
        a->scope_id = s->sin6_scope_id;
        memcpy(a->ip, &s->sin6_addr, 16);
        return 0;
    }
    return -1;
}

const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* v4-mapped IPv6 -> plain IPv4 (for messages where the daemon expects IPv4) */
void ax_unmap(struct ax_addr *a)
{
    if (a->family == AF_INET6 && memcmp(a->ip, v4mapped_prefix, 12) == 0) {
        memmove(a->ip, a->ip + 12, 4);
        memset(a->ip + 4, 0, 12);
        a->family = AF_INET;
        a->scope_id = 0;
    }
}

/* ax_addr -> sockaddr of the socket's family (maps IPv4 into ::ffff:0:0/96). */
socklen_t ax_to_sa(const struct ax_addr *a, int family, struct sockaddr_storage *ss)
{
    /* only the address's own length is written (callers use the length returned) */
    if (family == AF_INET6) {
        struct sockaddr_in6 *s = (void *)ss;
        memset(s, 0, sizeof *s);
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(a->port);
        if (a->family == AF_INET) {
            memcpy(&s->sin6_addr, v4mapped_prefix, 12);
            memcpy((uint8_t *)&s->sin6_addr + 12, a->ip, 4);
        } else {
            memcpy(&s->sin6_addr, a->ip, 16);
            s->sin6_scope_id = a->scope_id;
        }
        return sizeof *s;
    }
    struct sockaddr_in *s = (void *)ss;
    memset(s, 0, sizeof *s);
    s->sin_family = AF_INET;
    s->sin_port = htons(a->port);
    if (a->family == AF_INET6 && memcmp(a->ip, v4mapped_prefix, 12) == 0)
        memcpy(&s->sin_addr, a->ip + 12, 4);
    else
        memcpy(&s->sin_addr, a->ip, 4);
    return sizeof *s;
}

int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr)[0] == 127;
    if (sa->sa_family == AF_INET6) {
        const uint8_t *ip = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        if (memcmp(ip, one, 16) == 0)
            return 1;
        if (memcmp(ip, v4mapped_prefix, 12) == 0 && ip[12] == 127)
            return 1;
    }
    return 0;
}

void copy_out(const void *src, socklen_t srclen, struct sockaddr *dst, socklen_t *dstlen)
{
    socklen_t n = *dstlen < srclen ? *dstlen : srclen;
    memcpy(dst, src, n);
    *dstlen = srclen;
}

int is_wildcard(const struct sockaddr_storage *ss)
{
    static const uint8_t zero[16];
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
    if (ss->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, zero, 16) == 0;
    return 0;
}

int same_addr(const struct ax_addr *x, const struct ax_addr *y)
{
    return x->family == y->family && x->port == y->port && memcmp(x->ip, y->ip, 16) == 0;
}
