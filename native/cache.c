/*
 * cache.c -- cached DIRECT connect answers.
 *
 * destination (family, ip, port) -> every backend the client may use, valid
 * while the identity map's generation is unchanged.  A hit connects without
 * asking and without telling the daemon: the server learns the client from its
 * source address.  Open addressing over CACHE_SLOTS slots (a power of two),
 * probing at most CACHE_PROBE slots; a full probe window evicts its oldest
 * entry.  Sized for real programs: 4096 slots hold well over 1 024 destinations.
 * The table lives in .bss (untouched pages cost nothing) and is never freed.
 * The open-addressing helpers (addr_hash, slot_claim, slot_find in
 * ax_internal.h) serve the verdict cache below and udp.c's flow tables too.
 */
#include "ax_internal.h"

#define CACHE_SLOTS 4096
#define CACHE_PROBE 16

struct cache_ent {
    struct slot_hdr h;       /* gen 0: empty */
    uint16_t family, n;
    uint32_t next, local_mask;
    struct ax_addr dest, vpeer, be[AX_CACHE_MAX];
};
static struct cache_ent cache[CACHE_SLOTS];
static uint32_t cache_clock;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned slot_of(const struct ax_addr *dest, int family)
{
    return addr_hash(dest, (uint32_t)family) & (CACHE_SLOTS - 1);
}

static int same_key(const struct cache_ent *e, const struct ax_addr *dest, int family)
{
    return e->h.gen != 0 && e->family == family && same_addr(&e->dest, dest);
}

static int same_key_v(const void *e, const void *dest, uint32_t family)
{
    return same_key(e, dest, (int)family);
}

void cache_store(const struct ax_addr *dest, int family, const struct ax_msg *p)
{
    if (!gen_page || !(p->flags & AX_RF_CACHE) || p->cache.n_backends < 1 || p->cache.n_backends > AX_CACHE_MAX ||
        p->cache.generation == 0)
        return;
    pthread_mutex_lock(&cache_mu);
    struct cache_ent *e = slot_claim(cache, sizeof *cache, CACHE_SLOTS - 1, slot_of(dest, family), CACHE_PROBE, same_key_v,
                                     dest, (uint32_t)family);
    e->h.gen = p->cache.generation;
    e->h.stamp = ++cache_clock;
    e->family = (uint16_t)family;
    e->dest = *dest;
    e->vpeer = p->a;
    e->n = (uint16_t)p->cache.n_backends;
    e->local_mask = p->cache.local_mask;
    memcpy(e->be, p->cache.backends, e->n * sizeof(struct ax_addr));
    e->next = 0;
    for (unsigned i = 0; i < e->n; i++) /* continue the round after the backend just used */
        if (same_addr(&e->be[i], &p->b))
            e->next = i + 1;
    pthread_mutex_unlock(&cache_mu);
}

/* A cached answer for dest (family: the cache key, see ax_internal.h), as a DIRECT reply (flags AX_RF_LOCAL for a backend
 * on this host); 0 on a miss or when the table changed since. */
int cache_lookup(const struct ax_addr *dest, int family, struct ax_msg *p, long pick)
{
    if (!gen_page)
        return 0;
    uint32_t gen = *gen_page;
    if (gen == 0)
        return 0;
    int hit = 0;
    pthread_mutex_lock(&cache_mu);
    struct cache_ent *e = slot_find(cache, sizeof *cache, CACHE_SLOTS - 1, slot_of(dest, family), CACHE_PROBE, gen, same_key_v,
                                    dest, (uint32_t)family);
    if (e) {
        unsigned i = pick < 0 ? e->next++ % e->n : (unsigned)((unsigned long)pick % e->n);
        memset(p, 0, sizeof *p);
        p->status = AX_ST_DIRECT;
        p->flags = (e->local_mask >> i) & 1 ? AX_RF_LOCAL : 0;
        p->a = e->vpeer;
        p->b = e->be[i];
        hit = 1;
    }
    pthread_mutex_unlock(&cache_mu);
    return hit;
}

/*
 * Verdicts: (address, tag) -> allow or deny, valid while the identity map's
 * generation is unchanged (a table or policy change bumps it).  Used for the
 * daemon's ACCEPT answers (tag: the listening socket's id, address: the peer IP).
 * Same scheme as above, smaller entries.
 */
#define VC_SLOTS 1024
#define VC_PROBE 8

struct vc_ent {
    struct slot_hdr h; /* gen 0: empty */
    uint32_t tag;
    int allow;
    struct ax_addr a;
};
static struct vc_ent vcache[VC_SLOTS];
static uint32_t vc_clock;

static unsigned vc_slot(const struct ax_addr *a, uint32_t tag)
{
    return addr_hash(a, tag) & (VC_SLOTS - 1);
}

static int vc_same(const struct vc_ent *e, const struct ax_addr *a, uint32_t tag)
{
    return e->h.gen != 0 && e->tag == tag && same_addr(&e->a, a);
}

static int vc_same_v(const void *e, const void *a, uint32_t tag)
{
    return vc_same(e, a, tag);
}

int verdict_lookup(const struct ax_addr *a, uint32_t tag)
{
    if (!gen_page)
        return -1;
    uint32_t gen = *gen_page;
    if (gen == 0)
        return -1;
    pthread_mutex_lock(&cache_mu);
    struct vc_ent *e = slot_find(vcache, sizeof *vcache, VC_SLOTS - 1, vc_slot(a, tag), VC_PROBE, gen, vc_same_v, a, tag);
    int v = e ? e->allow : -1;
    pthread_mutex_unlock(&cache_mu);
    return v;
}

void verdict_store(const struct ax_addr *a, uint32_t tag, uint32_t gen, int allow)
{
    if (!gen_page || gen == 0)
        return;
    pthread_mutex_lock(&cache_mu);
    struct vc_ent *e = slot_claim(vcache, sizeof *vcache, VC_SLOTS - 1, vc_slot(a, tag), VC_PROBE, vc_same_v, a, tag);
    e->h.gen = gen;
    e->h.stamp = ++vc_clock;
    e->tag = tag;
    e->allow = allow != 0;
    e->a = *a;
    pthread_mutex_unlock(&cache_mu);
}
