/* gai NAME PORT: name lookup matrix.  One key=value line per case so that a
 * run under ax can be compared with a native run (e.g. NAME=localhost). */
#include "common.h"

static const char *eai(int rc)
{
    switch (rc) {
    case 0: return "0";
    case EAI_NONAME: return "EAI_NONAME";
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_SERVICE: return "EAI_SERVICE";
    case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
    case EAI_NODATA: return "EAI_NODATA";
    default: return "EAI_OTHER";
    }
}

/* prints key=rc addr,addr,... (distinct addresses in order); returns rc */
static int gai_case(const char *key, const char *node, const char *serv, int family, int socktype, int flags,
                    int null_hints, char *first, size_t fcap)
{
    struct addrinfo h, *res = NULL;
    memset(&h, 0, sizeof h);
    h.ai_family = family;
    h.ai_socktype = socktype;
    h.ai_flags = flags;
    int rc = getaddrinfo(node, serv, null_hints ? NULL : &h, &res);
    char line[1024] = "", b[128];
    if (rc == 0) {
        for (struct addrinfo *p = res; p; p = p->ai_next) {
            fmt_addr(p->ai_addr, b, sizeof b);
            if (!strstr(line, b)) {
                if (*line)
                    strncat(line, ",", sizeof line - strlen(line) - 1);
                strncat(line, b, sizeof line - strlen(line) - 1);
            }
        }
        if (first)
            snprintf(first, fcap, "%s", res->ai_canonname ? res->ai_canonname : "(null)");
        freeaddrinfo(res);
    }
    out("%s=%s %s", key, eai(rc), line);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        DIE("usage: gai NAME PORT");
    const char *name = argv[1], *port = argv[2];
    char canon[256];
    int rc;
    gai_case("null_hints", name, port, 0, 0, 0, 1, NULL, 0);
    if ((rc = gai_case("inet", name, port, AF_INET, SOCK_STREAM, 0, 0, NULL, 0)) != 0)
        FAIL("inet lookup failed");
    gai_case("inet6", name, port, AF_INET6, SOCK_STREAM, 0, 0, NULL, 0);
    gai_case("inet6_v4mapped", name, port, AF_INET6, SOCK_STREAM, AI_V4MAPPED, 0, NULL, 0);
    if (gai_case("unspec", name, port, AF_UNSPEC, SOCK_STREAM, 0, 0, NULL, 0) != 0)
        FAIL("unspec lookup failed");
    gai_case("addrconfig", name, port, AF_UNSPEC, SOCK_STREAM, AI_ADDRCONFIG, 0, NULL, 0);
    rc = gai_case("numerichost", name, port, AF_UNSPEC, SOCK_STREAM, AI_NUMERICHOST, 0, NULL, 0);
    if (rc != EAI_NONAME)
        FAIL("AI_NUMERICHOST on a name must be EAI_NONAME");
    if (gai_case("canonname", name, port, AF_INET, SOCK_STREAM, AI_CANONNAME, 0, canon, sizeof canon) == 0)
        out("canonname_value=%s", canon);
    gai_case("passive_null", NULL, port, AF_INET, SOCK_STREAM, AI_PASSIVE, 0, NULL, 0);
    gai_case("nonpassive_null", NULL, port, AF_INET, SOCK_STREAM, 0, 0, NULL, 0);
    gai_case("service_http", name, "http", AF_INET, SOCK_STREAM, 0, 0, NULL, 0);
    gai_case("bad_service", name, "no-such-service-ax", AF_INET, SOCK_STREAM, 0, 0, NULL, 0);
    rc = gai_case("unknown", "no-such-host-ax-test.invalid", port, AF_INET, SOCK_STREAM, 0, 0, NULL, 0);
    if (rc != EAI_NONAME && rc != EAI_AGAIN && rc != EAI_FAIL && rc != EAI_NODATA)
        FAIL("unknown name rc=%d", rc);

    char ip[INET6_ADDRSTRLEN];
    struct hostent *he = gethostbyname(name);
    if (he && he->h_addr_list[0]) {
        inet_ntop(he->h_addrtype, he->h_addr_list[0], ip, sizeof ip);
        out("gethostbyname=%s %s", he->h_name, ip);
    } else {
        out("gethostbyname=NULL h_errno=%d", h_errno);
    }
    he = gethostbyname2(name, AF_INET6);
    if (he && he->h_addr_list[0]) {
        inet_ntop(he->h_addrtype, he->h_addr_list[0], ip, sizeof ip);
        out("gethostbyname2_inet6=%s", ip);
    } else {
        out("gethostbyname2_inet6=NULL h_errno=%d", h_errno);
    }
    struct hostent hb, *hr = NULL;
    char small[8], big[4096];
    int herr = 0;
    rc = gethostbyname_r(name, &hb, small, sizeof small, &hr, &herr);
    out("gethostbyname_r_small=%s", rc == ERANGE ? "ERANGE" : "other");
    if (rc != ERANGE || hr != NULL)
        FAIL("gethostbyname_r small buffer rc=%d", rc);
    rc = gethostbyname_r(name, &hb, big, sizeof big, &hr, &herr);
    if (rc == 0 && hr && hr->h_addr_list[0]) {
        inet_ntop(hr->h_addrtype, hr->h_addr_list[0], ip, sizeof ip);
        out("gethostbyname_r=%s", ip);
    } else {
        FAIL("gethostbyname_r rc=%d herr=%d", rc, herr);
    }
    rc = gethostbyname2_r(name, AF_INET, &hb, big, sizeof big, &hr, &herr);
    out("gethostbyname2_r=%d", rc);

    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(name, port, AF_INET, &ss, &len) == 0) {
        char host[256], serv[32];
        rc = getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, serv, sizeof serv, 0);
        out("getnameinfo=%s %s %s", eai(rc), rc ? "" : host, rc ? "" : serv);
        rc = getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, serv, sizeof serv,
                         NI_NUMERICHOST | NI_NUMERICSERV);
        out("getnameinfo_numeric=%s %s %s", eai(rc), host, serv);
        rc = getnameinfo((struct sockaddr *)&ss, len, host, 2, NULL, 0, NI_NAMEREQD);
        out("getnameinfo_short=%s", rc == EAI_OVERFLOW ? "EAI_OVERFLOW" : eai(rc));
        he = gethostbyaddr(&((struct sockaddr_in *)&ss)->sin_addr, 4, AF_INET);
        out("gethostbyaddr=%s", he ? he->h_name : "NULL");
    }
    return failures ? 1 : 0;
}
