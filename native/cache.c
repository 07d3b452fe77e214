/*
 * cache.c -- cached DIRECT connect answers.
 */
#include "ax_internal.h"

/* Cached DIRECT answers: destination -> every backend the client may use, valid
 * while the daemon's generation is unchanged.  A hit connects without asking;
 * the daemon still hears of it (CONNECTING before, CONNECTED after). */
#define CACHE_SLOTS 32
struct cache_ent {
    int used, family;
    uint32_t gen;
    unsigned n, next;
    struct ax_addr dest, vpeer, be[AX_CACHE_MAX];
};
static struct cache_ent cache[CACHE_SLOTS];
static unsigned cache_victim;
static uint32_t cache_ticket;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

void cache_store(const struct ax_addr *dest, int family, const struct ax_msg *p)
{
    if (!gen_page || !(p->flags & AX_RF_CACHE) || p->cache.n_backends < 1 || p->cache.n_backends > AX_CACHE_MAX)
        return;
    pthread_mutex_lock(&cache_mu);
    struct cache_ent *e = NULL;
    for (int i = 0; i < CACHE_SLOTS && !e; i++)
        if (cache[i].used && cache[i].family == family && same_addr(&cache[i].dest, dest))
            e = &cache[i];
    for (int i = 0; i < CACHE_SLOTS && !e; i++)
        if (!cache[i].used)
            e = &cache[i];
    if (!e)
        e = &cache[cache_victim++ % CACHE_SLOTS];
    e->used = 1;
    e->family = family;
    e->gen = p->cache.generation;
    e->dest = *dest;
    e->vpeer = p->a;
    e->n = p->cache.n_backends;
    memcpy(e->be, p->cache.backends, e->n * sizeof(struct ax_addr));
    e->next = 0;
    for (unsigned i = 0; i < e->n; i++) /* continue the round after the backend just used */
        if (same_addr(&e->be[i], &p->b))
            e->next = i + 1;
    pthread_mutex_unlock(&cache_mu);
}

/* A cached answer for dest, as a DIRECT reply with a fresh ticket; 0 on a miss. */
int cache_lookup(const struct ax_addr *dest, int family, struct ax_msg *p)
{
    if (!gen_page)
        return 0;
    uint32_t gen = *gen_page;
    int hit = 0;
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cache_ent *e = &cache[i];
        if (!e->used || e->family != family || !same_addr(&e->dest, dest))
            continue;
        if (e->gen != gen || e->n == 0) {
            e->used = 0; /* the table changed: ask the daemon again */
            break;
        }
        memset(p, 0, sizeof *p);
        p->status = AX_ST_DIRECT;
        p->a = e->vpeer;
        p->b = e->be[e->next++ % e->n];
        p->sock = 0x80000000u | (++cache_ticket & 0x7fffffffu);
        hit = 1;
        break;
    }
    pthread_mutex_unlock(&cache_mu);
    return hit;
}
