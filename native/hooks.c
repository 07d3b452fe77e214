/*
 * hooks.c -- the exported interposers of libaxhook.so, the ax LD_PRELOAD
 * socket hook.
 *
 * Calls that involve a virtual address are forwarded to the ax daemon over a
 * unix stream socket ($AX_HOOK_SOCK) using the fixed-size messages of
 * ax_proto.h; the daemon answers with a real socket (SCM_RIGHTS) that is
 * installed on the application's fd number with dup3(), or with a real
 * address the app's own socket connects to.  No application data ever passes
 * through the daemon.  See docs/architecture.md for what is sent when.
 *
 * Every function here is a few lines: it makes sure the real symbol is there
 * and calls the logic in the other files (ax_internal.h lists them).  These
 * are the only symbols the library exports.
 */
#include "ax_internal.h"

/* ------------------------------------------------------------------------ */
/* sockets (sock.c)                                                          */

EXPORT int socket(int domain, int type, int protocol) { return h_socket(domain, type, protocol); }

EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
    return h_socketpair(domain, type, protocol, sv);
}

EXPORT int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len) { return h_bind(fd, CSA(addr), len); }

EXPORT int listen(int fd, int backlog) { return h_listen(fd, backlog); }

EXPORT int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len) { return h_connect(fd, CSA(addr), len); }

EXPORT int accept(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len)
{
    return h_accept(fd, SA(addr), len, 0, 0);
}

EXPORT int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len, int flags)
{
    return h_accept(fd, SA(addr), len, flags, 1);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, __CONST_SOCKADDR_ARG addr, socklen_t alen)
{
    return h_sendto(fd, buf, n, flags, CSA(addr), alen);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) { return h_sendmsg(fd, msg, flags); }

EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
    return h_sendmmsg(fd, vec, vlen, flags);
}

EXPORT ssize_t recvfrom(int fd, void *restrict buf, size_t n, int flags, __SOCKADDR_ARG addr,
                        socklen_t *restrict alen)
{
    return h_recvfrom(fd, buf, n, flags, SA(addr), alen);
}

/* _FORTIFY_SOURCE builds call this for recvfrom() with a buffer of known size */
EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                              socklen_t *alen)
{
    if (n > buflen)
        __builtin_trap(); /* glibc's __chk_fail: a buffer overflow caught */
    return h_recvfrom(fd, buf, n, flags, addr, alen);
}

/* recv(): hooked only to retry the wake-up of a datagram socket moved back to
 * the wildcard (udp.c, src_move_back) */
EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags) { return h_recv(fd, buf, n, flags); }

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (n > buflen)
        __builtin_trap();
    return h_recv(fd, buf, n, flags);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) { return h_recvmsg(fd, msg, flags); }

EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *tmo)
{
    return h_recvmmsg(fd, vec, vlen, flags, tmo);
}

EXPORT int getsockname(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len)
{
    return h_name_query(fd, SA(addr), len, 0);
}

EXPORT int getpeername(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len)
{
    return h_name_query(fd, SA(addr), len, 1);
}

EXPORT int getsockopt(int fd, int level, int name, void *restrict val, socklen_t *restrict len)
{
    NEED(getsockopt);
    return R.getsockopt(fd, level, name, val, len);
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    return h_setsockopt(fd, level, name, val, len);
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) { return h_epoll_ctl(epfd, op, fd, ev); }

/* FIONBIO and friends: flags are read back from the kernel at swap time */
EXPORT int ioctl(int fd, unsigned long req, ...)
{
    NEED(ioctl);
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return R.ioctl(fd, req, arg);
}

/* ------------------------------------------------------------------------ */
/* close / dup (fdtable.c)                                                   */

EXPORT int close(int fd)
{
    /* Nothing is tracked before init, and init must not be started from inside
     * malloc's own initialization (which may close files). */
    if (__builtin_expect(!atomic_load_explicit(&inited, memory_order_acquire), 0))
        return (int)raw_syscall6(SYS_close, fd, 0, 0, 0, 0, 0);
    return h_close(fd);
}

EXPORT int close_range(unsigned int first, unsigned int last, int flags) { return h_close_range(first, last, flags); }

EXPORT void closefrom(int lowfd) { h_closefrom(lowfd); }

EXPORT int dup(int fd) { return h_dup(fd); }

EXPORT int dup2(int old, int nw)
{
    NEED(dup2);
    return h_dup3(old, nw, 0, 0);
}

EXPORT int dup3(int old, int nw, int flags)
{
    NEED(dup3);
    return h_dup3(old, nw, flags, 1);
}

EXPORT int fcntl(int fd, int cmd, ...)
{
    NEED(fcntl);
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return h_fcntl(R.fcntl, fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
    NEED(fcntl64);
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return h_fcntl(R.fcntl64, fd, cmd, arg);
}

/* ------------------------------------------------------------------------ */
/* syscall() (core.c)                                                        */

EXPORT long syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a0 = va_arg(ap, long), a1 = va_arg(ap, long), a2 = va_arg(ap, long);
    long a3 = va_arg(ap, long), a4 = va_arg(ap, long), a5 = va_arg(ap, long);
    va_end(ap);
    return h_syscall(nr, a0, a1, a2, a3, a4, a5);
}

/* ------------------------------------------------------------------------ */
/* name lookups (names.c)                                                    */

EXPORT int getaddrinfo(const char *restrict node, const char *restrict service,
                       const struct addrinfo *restrict hints, struct addrinfo **restrict res)
{
    return h_getaddrinfo(node, service, hints, res);
}

EXPORT void freeaddrinfo(struct addrinfo *ai) { h_freeaddrinfo(ai); }

EXPORT int getnameinfo(const struct sockaddr *restrict sa, socklen_t salen, char *restrict host,
                       socklen_t hostlen, char *restrict serv, socklen_t servlen, int flags)
{
    return h_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
}

EXPORT struct hostent *gethostbyname(const char *name)
{
    ax_init();
    return h_gethostbyname2(name, AF_INET, 0);
}

EXPORT struct hostent *gethostbyname2(const char *name, int af)
{
    ax_init();
    return h_gethostbyname2(name, af, 1);
}

EXPORT int gethostbyname_r(const char *restrict name, struct hostent *restrict ret, char *restrict buf,
                           size_t buflen, struct hostent **restrict result, int *restrict h_errnop)
{
    ax_init();
    return h_gethostbyname2_r(name, AF_INET, ret, buf, buflen, result, h_errnop, 0);
}

EXPORT int gethostbyname2_r(const char *restrict name, int af, struct hostent *restrict ret, char *restrict buf,
                            size_t buflen, struct hostent **restrict result, int *restrict h_errnop)
{
    ax_init();
    return h_gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop, 1);
}

EXPORT struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{
    return h_gethostbyaddr(addr, len, type);
}

EXPORT int gethostbyaddr_r(const void *restrict addr, socklen_t len, int type, struct hostent *restrict ret,
                           char *restrict buf, size_t buflen, struct hostent **restrict result,
                           int *restrict h_errnop)
{
    return h_gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop);
}

/* ------------------------------------------------------------------------ */
/* exec family and posix_spawn (execenv.c)                                   */

EXPORT int execve(const char *path, char *const argv[], char *const envp[]) { return h_execve(path, argv, envp); }
EXPORT int execv(const char *path, char *const argv[]) { return h_execve(path, argv, environ); }
EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) { return h_execvpe(file, argv, envp); }
EXPORT int execvp(const char *file, char *const argv[]) { return h_execvpe(file, argv, environ); }

/* execl*: the argument list, collected on this stack frame */
#define COLLECT_ARGS(arg0, ap_name, argv_name, after)           \
    va_list ap_name;                                            \
    size_t argc_ = 1;                                           \
    va_start(ap_name, arg0);                                    \
    while (va_arg(ap_name, char *))                             \
        argc_++;                                                \
    va_end(ap_name);                                            \
    char *argv_name[argc_ + 1];                                 \
    argv_name[0] = (char *)(arg0);                              \
    va_start(ap_name, arg0);                                    \
    for (size_t i_ = 1; i_ <= argc_; i_++)                      \
        argv_name[i_] = va_arg(ap_name, char *);                \
    after;                                                      \
    va_end(ap_name)

EXPORT int execl(const char *path, const char *arg, ...)
{
    COLLECT_ARGS(arg, ap, argv, (void)0);
    return h_execve(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
    COLLECT_ARGS(arg, ap, argv, (void)0);
    return h_execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
    char *const *envp;
    COLLECT_ARGS(arg, ap, argv, envp = va_arg(ap, char *const *));
    return h_execve(path, argv, envp);
}

EXPORT int posix_spawn(pid_t *restrict pid, const char *restrict path, const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *restrict attr, char *const argv[restrict], char *const envp[restrict])
{
    return h_posix_spawn(pid, path, fa, attr, argv, envp, 0);
}

EXPORT int posix_spawnp(pid_t *restrict pid, const char *restrict file, const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *restrict attr, char *const argv[restrict], char *const envp[restrict])
{
    return h_posix_spawn(pid, file, fa, attr, argv, envp, 1);
}
