/*
 * names.c -- name lookups: getaddrinfo, getnameinfo, gethostbyname(2)(_r),
 * gethostbyaddr(_r).  Names the daemon knows resolve to their virtual IP
 * (RESOLVE); everything else resolves as without the hook.  Results are
 * built by the real getaddrinfo from the numeric address, so freeaddrinfo
 * pairs with them.
 */
#include "ax_internal.h"

static int is_numeric_host(const char *name)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_aton(name, &a4))
        return 1;
    char buf[INET6_ADDRSTRLEN + 64];
    size_t n = strcspn(name, "%");
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, name, n);
    buf[n] = 0;
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

static int never_virtual(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= AX_NAME_MAX)
        return 1;
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0)
        return 1;
    if (n > 10 && strcasecmp(name + n - 10, ".localhost") == 0)
        return 1;
    return is_numeric_host(name);
}

/* RESOLVE: 1 = virtual (ip4 filled), 0 = resolve normally, -1 = no such name (an ax
 * name this app may not see, or an unregistered name in an ax domain such as NAME.ax:
 * answered here, never asked of the system's resolvers) */
/* Name answers (an ax name's VIP, or "not an ax name"), kept while the identity
 * map's generation equals the one the daemon answered with: a program that
 * resolves the same names over and over asks the daemon once per table change. */
#define NAME_SLOTS 512
#define NAME_KEEP  64          /* longer names are not kept */
struct name_ent {
    uint32_t gen;              /* 0: empty */
    int family, virt;
    uint8_t ip4[4];
    char name[NAME_KEEP];
};
static struct name_ent names[NAME_SLOTS];
static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned name_slot(const char *name, int family)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    for (const char *c = name; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    return h & (NAME_SLOTS - 1);
}

/* 1 = known (virt/ip4 filled), 0 = ask */
static int name_cached(const char *name, int family, int *virt, uint8_t ip4[4])
{
    if (!gen_page || strlen(name) >= NAME_KEEP)
        return 0;
    uint32_t gen = *gen_page;
    if (gen == 0)
        return 0;
    struct name_ent *e = &names[name_slot(name, family)];
    int hit = 0;
    pthread_mutex_lock(&names_mu);
    if (e->gen == gen && e->family == family && strcmp(e->name, name) == 0) {
        *virt = e->virt;
        memcpy(ip4, e->ip4, 4);
        hit = 1;
    }
    pthread_mutex_unlock(&names_mu);
    return hit;
}

static void name_keep(const char *name, int family, int virt, const uint8_t ip4[4], uint32_t gen)
{
    if (!gen_page || gen == 0 || strlen(name) >= NAME_KEEP)
        return;
    struct name_ent *e = &names[name_slot(name, family)];
    pthread_mutex_lock(&names_mu);
    e->gen = gen;
    e->family = family;
    e->virt = virt;
    memcpy(e->ip4, ip4, 4);
    strcpy(e->name, name);
    pthread_mutex_unlock(&names_mu);
}

static int ax_resolve(const char *name, int family, uint8_t ip4[4])
{
    if (never_virtual(name))
        return 0;
    int virt;
    if (name_cached(name, family, &virt, ip4))
        return virt;
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_RESOLVE;
    q.a.family = (uint16_t)family;
    snprintf(q.name, sizeof q.name, "%s", name);
    int nfd;
    dbg("resolve %s: asking the daemon", name);
    if (ax_request(&q, &p, &nfd) < 0)
        return 0;
    static const uint8_t none[4];
    if (p.status == AX_ST_NATIVE) {
        name_keep(name, family, 0, none, (uint32_t)p.arg);
        return 0;
    }
    if (p.status == AX_ST_ERR && p.err == ENOENT) {
        name_keep(name, family, -1, none, (uint32_t)p.arg);
        return -1;
    }
    if (p.status != AX_ST_OK)
        return 0;
    ax_unmap(&p.a);
    if (p.a.family != AF_INET)
        return 0;
    memcpy(ip4, p.a.ip, 4);
    name_keep(name, family, 1, ip4, (uint32_t)p.arg);
    return 1;
}

/* REVERSE: 1 = name filled */
static int ax_reverse(const struct ax_addr *addr, char *name, size_t cap)
{
    struct ax_msg q, p;
    memset(&q, 0, sizeof q);
    q.op = AX_OP_REVERSE;
    q.a = *addr;
    ax_unmap(&q.a);
    if (q.a.family == AF_INET && q.a.ip[0] == 127)
        return 0;
    int nfd;
    if (ax_request(&q, &p, &nfd) < 0 || p.status != AX_ST_OK)
        return 0;
    p.name[AX_NAME_MAX - 1] = 0;
    if (!p.name[0])
        return 0;
    snprintf(name, cap, "%s", p.name);
    return 1;
}

int h_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    ax_init();
    if (!R.getaddrinfo)
        return EAI_SYSTEM;
    if (!hook_on() || !node || (hints && (hints->ai_flags & AI_NUMERICHOST)))
        return R.getaddrinfo(node, service, hints, res);
    int family = hints ? hints->ai_family : AF_UNSPEC;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return R.getaddrinfo(node, service, hints, res);
    GUARD_ENTER;
    int e = errno, rc;
    uint8_t ip[4];
    int virt = ax_resolve(node, family, ip);
    if (virt < 0) {
        GUARD_LEAVE;
        return EAI_NONAME;
    }
    if (!virt) {
        GUARD_LEAVE;
        return R.getaddrinfo(node, service, hints, res);
    }
    char num[64];
    if (family == AF_INET6)
        snprintf(num, sizeof num, "::ffff:%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
    else
        snprintf(num, sizeof num, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
    struct addrinfo h;
    if (hints)
        h = *hints;
    else {
        memset(&h, 0, sizeof h);
        h.ai_flags = AI_V4MAPPED | AI_ADDRCONFIG;
    }
    h.ai_family = family == AF_INET6 ? AF_INET6 : AF_INET;
    int canon = h.ai_flags & AI_CANONNAME;
    h.ai_flags = (h.ai_flags & ~(AI_CANONNAME | AI_ADDRCONFIG | AI_V4MAPPED | AI_ALL)) | AI_NUMERICHOST;
    h.ai_canonname = NULL;
    h.ai_addr = NULL;
    h.ai_next = NULL;
    rc = R.getaddrinfo(num, service, &h, res);
    if (rc == 0 && canon && *res) {
        char *c = strdup(node);
        if (!c) {
            R.freeaddrinfo(*res);
            *res = NULL;
            rc = EAI_MEMORY;
        } else {
            free((*res)->ai_canonname);
            (*res)->ai_canonname = c;
        }
    }
    if (rc == 0)
        errno = e;
    GUARD_LEAVE;
    return rc;
}

void h_freeaddrinfo(struct addrinfo *ai)
{
    ax_init();
    if (R.freeaddrinfo)
        R.freeaddrinfo(ai);
}

int h_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                  socklen_t servlen, int flags)
{
    ax_init();
    if (!R.getnameinfo)
        return EAI_SYSTEM;
    struct ax_addr a;
    if (!hook_on() || !sa || !host || !hostlen || (flags & NI_NUMERICHOST) || sa_to_ax(sa, salen, &a) < 0 ||
        is_loopback(sa))
        return R.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    GUARD_ENTER;
    int e = errno;
    char name[AX_NAME_MAX];
    if (!ax_reverse(&a, name, sizeof name)) {
        GUARD_LEAVE;
        return R.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    }
    int rc = 0;
    if (strlen(name) + 1 > hostlen)
        rc = EAI_OVERFLOW;
    else {
        strcpy(host, name);
        if (serv && servlen)
            rc = R.getnameinfo(sa, salen, NULL, 0, serv, servlen, flags);
    }
    if (rc == 0)
        errno = e;
    GUARD_LEAVE;
    return rc;
}

/* build a one-address hostent in buf; 0 or ERANGE */
static int fill_hostent(const char *name, int af, const uint8_t *addr, struct hostent *he, char *buf, size_t buflen)
{
    size_t alen = af == AF_INET6 ? 16 : 4;
    uintptr_t p = (uintptr_t)buf, end = p + buflen;
    uintptr_t aligned = (p + sizeof(char *) - 1) & ~(uintptr_t)(sizeof(char *) - 1);
    size_t nlen = strlen(name) + 1;
    if (aligned + 3 * sizeof(char *) + 16 + nlen > end)
        return ERANGE;
    char **ptrs = (char **)aligned;
    char *abuf = (char *)(aligned + 3 * sizeof(char *));
    char *nbuf = abuf + 16;
    memcpy(abuf, addr, alen);
    memcpy(nbuf, name, nlen);
    ptrs[0] = NULL;     /* aliases */
    ptrs[1] = abuf;     /* addr_list */
    ptrs[2] = NULL;
    he->h_name = nbuf;
    he->h_aliases = &ptrs[0];
    he->h_addrtype = af;
    he->h_length = (int)alen;
    he->h_addr_list = &ptrs[1];
    return 0;
}

static void v4_for_af(const uint8_t ip[4], int af, uint8_t out[16])
{
    if (af == AF_INET6) {
        memcpy(out, v4mapped_prefix, 12);
        memcpy(out + 12, ip, 4);
    } else {
        memcpy(out, ip, 4);
    }
}

static struct hostent static_he;
static char static_he_buf[AX_NAME_MAX + 128];

struct hostent *h_gethostbyname2(const char *name, int af, int two)
{
    uint8_t ip[4], a[16];
    if (!hook_on() || !name || (af != AF_INET && af != AF_INET6))
        goto native;
    GUARD_ENTER;
    int virt = ax_resolve(name, af, ip);
    GUARD_LEAVE;
    if (virt < 0) {
        h_errno = HOST_NOT_FOUND;
        return NULL;
    }
    if (!virt)
        goto native;
    v4_for_af(ip, af, a);
    if (fill_hostent(name, af, a, &static_he, static_he_buf, sizeof static_he_buf) != 0)
        goto native;
    h_errno = 0;
    return &static_he;
native:
    if (two)
        return R.gethostbyname2 ? R.gethostbyname2(name, af) : NULL;
    return R.gethostbyname ? R.gethostbyname(name) : NULL;
}
/* The result of a reentrant gethostby*_r for a virtual name, in the caller's
 * buffer: 0, or ERANGE when the buffer is too small. */
static int hostent_r_result(const char *name, int af, const void *addr, struct hostent *ret, char *buf,
                            size_t buflen, struct hostent **result, int *h_errnop)
{
    if (fill_hostent(name, af, addr, ret, buf, buflen) != 0) {
        *result = NULL;
        if (h_errnop)
            *h_errnop = NETDB_INTERNAL;
        errno = ERANGE;
        return ERANGE;
    }
    *result = ret;
    if (h_errnop)
        *h_errnop = 0;
    return 0;
}

int h_gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                              struct hostent **result, int *h_errnop, int two)
{
    uint8_t ip[4], a[16];
    if (!hook_on() || !name || !ret || !buf || !result || (af != AF_INET && af != AF_INET6))
        goto native;
    GUARD_ENTER;
    int virt = ax_resolve(name, af, ip);
    GUARD_LEAVE;
    if (virt < 0) {
        *result = NULL;
        if (h_errnop)
            *h_errnop = HOST_NOT_FOUND;
        return 0;
    }
    if (!virt)
        goto native;
    v4_for_af(ip, af, a);
    return hostent_r_result(name, af, a, ret, buf, buflen, result, h_errnop);
native:
    if (two)
        return R.gethostbyname2_r ? R.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop) : ENOSYS;
    return R.gethostbyname_r ? R.gethostbyname_r(name, ret, buf, buflen, result, h_errnop) : ENOSYS;
}
static int addr_to_ax(const void *addr, socklen_t len, int type, struct ax_addr *a)
{
    memset(a, 0, sizeof *a);
    if (!addr)
        return 0;
    if (type == AF_INET && len == 4) {
        a->family = AF_INET;
        memcpy(a->ip, addr, 4);
        return 1;
    }
    if (type == AF_INET6 && len == 16) {
        a->family = AF_INET6;
        memcpy(a->ip, addr, 16);
        return 1;
    }
    return 0;
}

struct hostent *h_gethostbyaddr(const void *addr, socklen_t len, int type)
{
    ax_init();
    struct ax_addr a;
    char name[AX_NAME_MAX];
    if (hook_on() && addr_to_ax(addr, len, type, &a)) {
        GUARD_ENTER;
        int ok = ax_reverse(&a, name, sizeof name);
        GUARD_LEAVE;
        if (ok && fill_hostent(name, type, addr, &static_he, static_he_buf, sizeof static_he_buf) == 0) {
            h_errno = 0;
            return &static_he;
        }
    }
    return R.gethostbyaddr ? R.gethostbyaddr(addr, len, type) : NULL;
}

int h_gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf, size_t buflen,
                      struct hostent **result, int *h_errnop)
{
    ax_init();
    struct ax_addr a;
    char name[AX_NAME_MAX];
    if (hook_on() && ret && buf && result && addr_to_ax(addr, len, type, &a)) {
        GUARD_ENTER;
        int ok = ax_reverse(&a, name, sizeof name);
        GUARD_LEAVE;
        if (ok)
            return hostent_r_result(name, type, addr, ret, buf, buflen, result, h_errnop);
    }
    return R.gethostbyaddr_r ? R.gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop) : ENOSYS;
}
