/*
 * proto-layout -- prints the layout of the hook wire format as the C compiler
 * sees native/ax_proto.h: sizeof and offsetof of every struct field, the value
 * of every constant, and two sample messages built with the C structs (hex).
 * test/proto-layout.test.ts compares all of it with src/hookserver/proto.ts.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "ax_proto.h"

static int first;

static void sep(void)
{
    if (!first)
        printf(",");
    first = 0;
    printf("\n    ");
}

static void field(const char *name, size_t off, size_t size)
{
    sep();
    printf("\"%s\": {\"off\": %zu, \"size\": %zu}", name, off, size);
}

static void num(const char *name, long long v)
{
    sep();
    printf("\"%s\": %lld", name, v);
}

static void str(const char *name, const char *v)
{
    sep();
    printf("\"%s\": \"%s\"", name, v);
}

static void hex(const char *name, const void *p, size_t n)
{
    sep();
    printf("\"%s\": \"", name);
    for (size_t i = 0; i < n; i++)
        printf("%02x", ((const unsigned char *)p)[i]);
    printf("\"");
}

#define F(s, f) field(#s "." #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))
#define N(c) num(#c, (long long)(c))
#define S(c) str(#c, c)

int main(void)
{
    printf("{\n  \"sizeof\": {");
    first = 1;
    num("ax_addr", sizeof(struct ax_addr));
    num("ax_cache_answer", sizeof(struct ax_cache_answer));
    num("ax_lookup", sizeof(struct ax_lookup));
    num("ax_map_hdr", sizeof(struct ax_map_hdr));
    num("ax_map_ent", sizeof(struct ax_map_ent));
    num("ax_msg", sizeof(struct ax_msg));

    printf("\n  },\n  \"fields\": {");
    first = 1;
    F(ax_addr, family);
    F(ax_addr, port);
    F(ax_addr, scope_id);
    F(ax_addr, ip);
    F(ax_cache_answer, generation);
    F(ax_cache_answer, n_backends);
    F(ax_cache_answer, local_mask);
    F(ax_cache_answer, reserved);
    F(ax_cache_answer, backends);
    F(ax_lookup, cookie);
    F(ax_map_hdr, generation);
    F(ax_map_hdr, magic);
    F(ax_map_hdr, version);
    F(ax_map_hdr, src_base);
    F(ax_map_hdr, src_count);
    F(ax_map_hdr, dns_ip);
    F(ax_map_hdr, dns_port);
    F(ax_map_hdr, n_ranges);
    F(ax_map_hdr, ranges);
    F(ax_map_hdr, flags);
    F(ax_map_hdr, reserved);
    F(ax_map_ent, vip);
    F(ax_map_ent, reserved);
    F(ax_msg, magic);
    F(ax_msg, op);
    F(ax_msg, flags);
    F(ax_msg, seq);
    F(ax_msg, status);
    F(ax_msg, err);
    F(ax_msg, sock);
    F(ax_msg, arg);
    F(ax_msg, pid);
    F(ax_msg, a);
    F(ax_msg, b);
    F(ax_msg, name);
    F(ax_msg, cache);
    F(ax_msg, lookup);
    F(ax_msg, payload);

    printf("\n  },\n  \"constants\": {");
    first = 1;
    N(AX_MAGIC);
    N(AX_MSG_SIZE);
    N(AX_NAME_MAX);
    N(AX_CACHE_MAX);
    N(AX_PAYLOAD_OFF);
    N(AX_PAYLOAD_SIZE);
    N(AX_OP_HELLO);
    N(AX_OP_BIND);
    N(AX_OP_LISTEN);
    N(AX_OP_CONNECT);
    N(AX_OP_CLOSE);
    N(AX_OP_RESOLVE);
    N(AX_OP_REVERSE);
    N(AX_OP_LOOKUP);
    N(AX_OP_ACCEPT);
    N(AX_ST_OK);
    N(AX_ST_NATIVE);
    N(AX_ST_PENDING);
    N(AX_ST_ERR);
    N(AX_ST_DIRECT);
    N(AX_RF_CACHE);
    N(AX_RF_LOCAL);
    N(AX_LK_BOUND);
    N(AX_LK_LISTEN);
    N(AX_LK_CONN);
    N(AX_LK_ACCEPTED);
    N(AX_MAP_MAGIC);
    N(AX_MAP_VERSION);
    N(AX_MAP_RANGES);
    N(AX_MAP_F_ACCEPT);
    N(AX_MAP_F_EGRESS);
    N(AX_HF_DIRECT);
    N(AX_HF_FOREIGN);
    N(AX_BF_V6ONLY);
    N(AX_BF_REUSEPORT);
    N(AX_BF_AUTOBIND);
    N(AX_BF_DGRAM);
    N(AX_BF_REUSEADDR);
    N(AX_CF_NONBLOCK);
    N(AX_CF_WAIT);
    N(AX_CF_DGRAM);
    N(AX_CF_SENDTO);
    N(AX_CF_HOST);
    S(AX_ENV_SOCK);
    S(AX_ENV_APP);
    S(AX_ENV_WAIT);
    S(AX_ENV_FAIL);
    S(AX_ENV_DEBUG);
    S(AX_ENV_DAEMON_WAIT);
    N(AX_DAEMON_WAIT_DEFAULT_MS);

    /* Two messages built with the structs, for the codec to decode and re-encode
     * byte for byte (the values are the ones test/proto-layout.test.ts expects). */
    printf("\n  },\n  \"samples\": {");
    first = 1;
    struct ax_msg m;
    memset(&m, 0, sizeof m);
    m.magic = AX_MAGIC;
    m.op = AX_OP_CONNECT;
    m.flags = AX_RF_CACHE;
    m.seq = 0x01020304;
    m.status = AX_ST_DIRECT;
    m.err = 0;
    m.sock = 0x7654321;
    m.arg = 0;
    m.pid = 0;
    m.a.family = AF_INET;
    m.a.port = 80;
    memcpy(m.a.ip, "\x0a\x01\x00\x01", 4);
    m.b.family = AF_INET;
    m.b.port = 40001;
    memcpy(m.b.ip, "\x7f\x00\x00\x01", 4);
    m.cache.generation = 0xdeadbeef;
    m.cache.n_backends = 3;
    m.cache.local_mask = 0x5;
    for (int i = 0; i < 3; i++) {
        m.cache.backends[i].family = AF_INET;
        m.cache.backends[i].port = (uint16_t)(40000 + i);
        memcpy(m.cache.backends[i].ip, "\x7f\x00\x00\x01", 4);
    }
    m.cache.backends[2].family = AF_INET6; /* ::ffff:127.0.0.2 */
    memset(m.cache.backends[2].ip, 0, 16);
    memcpy(m.cache.backends[2].ip + 10, "\xff\xff\x7f\x00\x00\x02", 6);
    hex("cache_reply", &m, sizeof m);

    memset(&m, 0, sizeof m);
    m.magic = AX_MAGIC;
    m.op = AX_OP_RESOLVE;
    m.seq = 7;
    m.sock = 9;
    m.arg = -2;
    m.pid = 4242;
    m.a.family = AF_INET6;
    m.a.port = 443;
    m.a.scope_id = 5;
    memcpy(m.a.ip, "\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 16);
    snprintf(m.name, sizeof m.name, "%s", "web.ax");
    hex("named_request", &m, sizeof m);

    printf("\n  }\n}\n");
    return 0;
}
