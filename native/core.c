/*
 * core.c -- real symbols, configuration, lazy init, the debug log, the cached
 * pid, raw system calls and the syscall() dispatcher.
 */
#include "ax_internal.h"

/* ------------------------------------------------------------------------ */
/* real symbols                                                              */

struct real_syms R;

/* ------------------------------------------------------------------------ */
/* configuration (read once at init)                                         */

struct ax_cfg cfg;

const char *const saved_env_names[N_SAVED_ENV] = {
    AX_ENV_SOCK, AX_ENV_APP, AX_ENV_WAIT, AX_ENV_FAIL, AX_ENV_DEBUG, AX_ENV_DAEMON_WAIT,
};

atomic_int inited;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
TLS int tl_in_hook;
TLS int tl_initializing;

/* getpid() is a real system call since glibc 2.25 and the hook needs the pid on
 * every request and close.  It is cached in a page marked MADV_WIPEONFORK: the
 * kernel hands any child made by fork(), _Fork() or a raw clone() without
 * CLONE_VM a zeroed page, so a 0 means "fork detected, ask the kernel again".
 * The atfork child handler refreshes it too.  Without MADV_WIPEONFORK (Linux
 * < 4.14) every call asks the kernel, as before.  vfork children share the
 * parent's memory and see the parent's pid; they may only exec or _exit. */
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
atomic_int *pid_cache;

static void pid_cache_init(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    if (madvise(p, 4096, MADV_WIPEONFORK) != 0) {
        munmap(p, 4096);
        return;
    }
    pid_cache = p;
}

void dbg(const char *fmt, ...)
{
    if (!cfg.debug_path || !R.close)
        return;
    int e = errno;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "[axhook %d] ", (int)ax_getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    int fd = open(cfg.debug_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        (void)w;
        R.close(fd);
    }
    errno = e;
}

static void *load_sym(const char *name, void *self)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (p && p == self)
        p = NULL; /* would call ourselves forever */
    return p;
}

#define LOAD(f) (*(void **)&R.f = load_sym(#f, (void *)f))

static void do_init(void)
{
    int e = errno;
    LOAD(socket); LOAD(socketpair); LOAD(bind); LOAD(listen); LOAD(connect);
    LOAD(accept); LOAD(accept4); LOAD(getsockname); LOAD(getpeername);
    LOAD(getsockopt); LOAD(setsockopt); LOAD(close); LOAD(close_range);
    LOAD(closefrom); LOAD(dup); LOAD(dup2); LOAD(dup3); LOAD(fcntl);
    LOAD(fcntl64); LOAD(ioctl); LOAD(epoll_ctl); LOAD(syscall);
    LOAD(getaddrinfo); LOAD(freeaddrinfo); LOAD(getnameinfo);
    LOAD(gethostbyname); LOAD(gethostbyname2); LOAD(gethostbyname_r);
    LOAD(gethostbyname2_r); LOAD(gethostbyaddr); LOAD(gethostbyaddr_r);
    LOAD(execve); LOAD(execvpe); LOAD(posix_spawn); LOAD(posix_spawnp);
    LOAD(sendto); LOAD(sendmsg); LOAD(sendmmsg);
    LOAD(recvfrom); LOAD(recvmsg); LOAD(recvmmsg);
    if (!R.fcntl64)
        R.fcntl64 = R.fcntl;
    pid_cache_init();
    if (getenv(AX_ENV_SOCK))
        tbl_preallocate();

    const char *s = getenv(AX_ENV_SOCK);
    if (s && *s && strlen(s) < sizeof cfg.sock_path) {
        strcpy(cfg.sock_path, s);
        cfg.enabled = 1;
    }
    s = getenv(AX_ENV_APP);
    if (s)
        snprintf(cfg.app, sizeof cfg.app, "%s", s);
    s = getenv(AX_ENV_FAIL);
    cfg.fail_open = s && strcmp(s, "open") == 0;
    s = getenv(AX_ENV_WAIT);
    cfg.wait_ms = 5000;
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end == 0 && v >= 0)
            cfg.wait_ms = v;
    }
    cfg.daemon_wait_ms = AX_DAEMON_WAIT_DEFAULT_MS;
    s = getenv(AX_ENV_DAEMON_WAIT);
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end == 0 && v >= 1 && v <= 3600000)
            cfg.daemon_wait_ms = v;
    }
    s = getenv(AX_ENV_DEBUG);
    if (s && *s)
        cfg.debug_path = strdup(s);
    for (int i = 0; i < N_SAVED_ENV; i++) {
        s = getenv(saved_env_names[i]);
        if (s) {
            size_t n = strlen(saved_env_names[i]) + strlen(s) + 2;
            cfg.saved_env[i] = malloc(n);
            if (cfg.saved_env[i])
                snprintf(cfg.saved_env[i], n, "%s=%s", saved_env_names[i], s);
        }
    }
    Dl_info info;
    if (dladdr((void *)do_init, &info) && info.dli_fname)
        cfg.self_path = strdup(info.dli_fname);
    s = getenv("LD_PRELOAD");
    if (s && cfg.self_path) {
        const char *base = strrchr(cfg.self_path, '/');
        base = base ? base + 1 : cfg.self_path;
        if (strstr(s, base)) {
            size_t n = strlen(s) + 12;
            cfg.preload_entry = malloc(n);
            if (cfg.preload_entry)
                snprintf(cfg.preload_entry, n, "LD_PRELOAD=%s", s);
        }
    }
    if (!cfg.preload_entry && cfg.self_path) {
        size_t n = strlen(cfg.self_path) + 12;
        cfg.preload_entry = malloc(n);
        if (cfg.preload_entry)
            snprintf(cfg.preload_entry, n, "LD_PRELOAD=%s", cfg.self_path);
    }
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    atomic_store(&inited, 1);
    if (cfg.enabled)
        dbg("init sock=%s app=%s fail_open=%d wait_ms=%ld daemon_wait_ms=%ld self=%s", cfg.sock_path, cfg.app,
            cfg.fail_open, cfg.wait_ms, cfg.daemon_wait_ms, cfg.self_path ? cfg.self_path : "?");
    errno = e;
}

static void do_init_guarded(void)
{
    tl_initializing = 1;
    do_init();
    tl_initializing = 0;
}

void ax_init_slow(void)
{
    if (!tl_initializing)
        pthread_once(&init_once, do_init_guarded);
}

__attribute__((constructor)) static void ax_ctor(void) { ax_init(); }

/* ------------------------------------------------------------------------ */
/* system calls                                                              */

/* The kernel's system call, without libc: syscall() must pass other numbers
 * through even while the hook initializes (jemalloc, statically linked into
 * redis, calls syscall(SYS_open/read/close) from inside malloc's own init, and
 * resolving libc's syscall with dlsym there would allocate and deadlock). */
long raw_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
    long ret;
#if defined(__x86_64__)
    register long r10 __asm__("r10") = a3;
    register long r8 __asm__("r8") = a4;
    register long r9 __asm__("r9") = a5;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a0;
    register long x1 __asm__("x1") = a1;
    register long x2 __asm__("x2") = a2;
    register long x3 __asm__("x3") = a3;
    register long x4 __asm__("x4") = a4;
    register long x5 __asm__("x5") = a5;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    ret = x0;
#else
#error "raw_syscall6: add this architecture"
#endif
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

static int is_socket_syscall(long nr)
{
    switch (nr) {
    case SYS_socket: case SYS_connect: case SYS_bind: case SYS_listen: case SYS_close:
    case SYS_accept4: case SYS_dup3:
#ifdef SYS_close_range
    case SYS_close_range:
#endif
        return 1;
    default:
        return 0;
    }
}

/* syscall(): socket numbers go through the hook's logic, everything else (and
 * everything before init) straight to the kernel. */
long h_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
    /* Before the hook is initialized nothing is tracked yet: pass through (this is
     * what malloc implementations that call syscall() during their own init see). */
    if (!is_socket_syscall(nr) || !atomic_load_explicit(&inited, memory_order_acquire))
        return raw_syscall6(nr, a0, a1, a2, a3, a4, a5);
    if (cfg.enabled && !tl_in_hook) {
        switch (nr) {
        case SYS_socket: return h_socket((int)a0, (int)a1, (int)a2);
        case SYS_connect: return h_connect((int)a0, (const struct sockaddr *)a1, (socklen_t)a2);
        case SYS_bind: return h_bind((int)a0, (const struct sockaddr *)a1, (socklen_t)a2);
        case SYS_listen: return h_listen((int)a0, (int)a1);
        case SYS_close: return h_close((int)a0);
        case SYS_accept4: return h_accept((int)a0, (struct sockaddr *)a1, (socklen_t *)a2, (int)a3, 1);
        case SYS_dup3:
            if (!R.dup3) {
                errno = ENOSYS;
                return -1;
            }
            return h_dup3((int)a0, (int)a1, (int)a2, 1);
#ifdef SYS_close_range
        case SYS_close_range: return h_close_range((unsigned)a0, (unsigned)a1, (int)a2);
#endif
        default: break;
        }
    }
    return raw_syscall6(nr, a0, a1, a2, a3, a4, a5);
}
