/*
 * identity.c -- the identity map (struct ax_map_hdr in ax_proto.h), mapped
 * read-only.  The daemon names it in the HELLO reply; this process maps it once
 * (children inherit the mapping).  It carries the table generation, which
 * validates cached answers, and one entry per source address: the hot path
 * learns a client's virtual IP from its peer address with one read, no message.
 */
#include "ax_internal.h"

const volatile uint32_t *gen_page;
static const volatile struct ax_map_hdr *map_hdr;
static const volatile struct ax_map_ent *map_ents;
static uint32_t map_base, map_count;

struct ax_addr app_src; /* this app's source address (HELLO reply b) */
int have_src;
int session_direct;
int session_foreign;

void map_identity(const char *path)
{
    if (map_hdr || !path[0])
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dbg("identity map %s: %s", path, strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(struct ax_map_hdr)) {
        R.close(fd);
        return;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    R.close(fd);
    if (p == MAP_FAILED)
        return;
    const volatile struct ax_map_hdr *h = p;
    size_t room = ((size_t)st.st_size - sizeof *h) / sizeof(struct ax_map_ent);
    if (h->magic != AX_MAP_MAGIC || h->version != AX_MAP_VERSION || h->src_count > room) {
        dbg("identity map %s: unknown layout", path);
        munmap(p, (size_t)st.st_size);
        return;
    }
    map_base = h->src_base;
    map_count = h->src_count;
    map_ents = (const volatile struct ax_map_ent *)((const volatile char *)p + sizeof *h);
    map_hdr = h;
    gen_page = &h->generation;
}

int ident_peer(const struct ax_addr *real, struct ax_addr *virt)
{
    if (!map_ents || !real)
        return 0;
    uint32_t ip;
    if (real->family == AF_INET)
        memcpy(&ip, real->ip, 4);
    else if (real->family == AF_INET6 && memcmp(real->ip, v4mapped_prefix, 12) == 0)
        memcpy(&ip, real->ip + 12, 4);
    else
        return 0;
    uint32_t i = ntohl(ip) - map_base;
    if (i == 0 || i >= map_count)
        return 0;
    uint32_t vip = __atomic_load_n(&map_ents[i].vip, __ATOMIC_ACQUIRE);
    if (vip == 0)
        return 0;
    memset(virt, 0, sizeof *virt);
    virt->family = AF_INET;
    virt->port = real->port;
    vip = htonl(vip);
    memcpy(virt->ip, &vip, 4);
    return 1;
}

int map_virtual(const struct ax_addr *a)
{
    const volatile struct ax_map_hdr *h = map_hdr;
    if (!h || a->family != AF_INET)
        return 0;
    uint32_t ip;
    memcpy(&ip, a->ip, 4);
    ip = ntohl(ip);
    uint32_t n = h->n_ranges;
    if (n > AX_MAP_RANGES)
        n = AX_MAP_RANGES;
    for (uint32_t i = 0; i < n; i++)
        if ((ip & h->ranges[2 * i + 1]) == h->ranges[2 * i])
            return 1;
    return 0;
}

int map_dns(struct ax_addr *out)
{
    const volatile struct ax_map_hdr *h = map_hdr;
    if (!h)
        return 0;
    uint32_t ip = h->dns_ip, port = h->dns_port;
    if (ip == 0 || port == 0 || port > 65535)
        return 0;
    memset(out, 0, sizeof *out);
    out->family = AF_INET;
    out->port = (uint16_t)port;
    ip = htonl(ip);
    memcpy(out->ip, &ip, 4);
    return 1;
}

uint32_t map_flags(void)
{
    const volatile struct ax_map_hdr *h = map_hdr;
    return h ? __atomic_load_n(&h->flags, __ATOMIC_ACQUIRE) : 0;
}
