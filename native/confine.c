/*
 * ax-confine: keeps the host sockets ax hands to an isolated app (ax run --isolate) aimed
 * where the daemon aimed them, without privilege. libc only.
 *
 *   ax-confine [--warn] -- CMD [ARGS...]    run CMD confined (ISOLATE_INIT does, inside the namespaces);
 *                                           CMD gets LD_PRELOAD=$AX_CONFINE_PRELOAD when that is set
 *   ax-confine --probe                      print what this kernel supports (ax doctor)
 *
 * Why. A TCP socket can be disconnected by its holder (connect(AF_UNSPEC), shutdown(SHUT_RD)
 * of a listener, a reset from the peer) and connected again anywhere its network namespace
 * reaches: for a socket the daemon made in the host network and handed in, the host's. A
 * root daemon locks a socket filter on each (src/daemon/trust.ts); kernels built with
 * CONFIG_BPF_UNPRIV_DEFAULT_OFF refuse that to unprivileged users, so a rootless daemon cannot.
 *
 * How (two kernel mechanisms, both unprivileged; the design is ours):
 *   1. Landlock (kernel >= 6.7, ABI 4: LANDLOCK_ACCESS_NET_CONNECT_TCP handled, no port
 *      allowed; Documentation/userspace-api/landlock.rst). CMD and everything it starts can
 *      no longer connect() any TCP socket, host or namespace, whatever its file descriptor
 *      or address: the kernel says EACCES. Disconnecting (AF_UNSPEC) stays allowed. This is
 *      the guarantee: it has no check-then-act window.
 *   2. A seccomp user-notification filter (seccomp_unotify(2)) on connect(2), so that what
 *      must work still works: a supervisor process (forked before the filter, outside it)
 *      takes each connect, duplicates the target's descriptor (pidfd_getfd(2): the same
 *      kernel socket) and
 *        - a TCP socket of the app's own (loopback-only) namespace: performs the connect
 *          itself, with the address it copied once, on its duplicate, and returns the
 *          kernel's answer (blocking sockets: in a thread, so one slow connect stalls no
 *          other). Loopback TCP inside the namespace works as it does natively.
 *        - a TCP socket of another namespace (handed in): never connects it. It answers as
 *          the kernel answers for the socket's state (EISCONN established or listening,
 *          EALREADY connecting, a pending error), and EACCES where the kernel would start
 *          a new connection. connect(AF_UNSPEC) goes on (a disconnected socket stays
 *          unconnectable).
 *        - a UDP socket of another namespace (handed in by a root daemon): EACCES, but
 *          AF_UNSPEC goes on. A courtesy, not the guarantee (the check-then-act window
 *          below): the daemon's nftables mark is (src/daemon/udpegress.ts).
 *        - anything else (unix, the namespace's UDP, netlink): SECCOMP_USER_NOTIF_FLAG_CONTINUE. The check
 *          and the kernel's action are not atomic (another thread can swap the descriptor
 *          in between: the caution in seccomp_unotify(2)), which is why (1) exists: a
 *          swapped-in host TCP socket still meets Landlock.
 *      The filter also refuses TCP Fast Open sends (sendto/sendmsg/sendmmsg with
 *      MSG_FASTOPEN connect without connect(2): EOPNOTSUPP, what a kernel with client TFO
 *      off answers), io_uring_setup (its connect and send run without seccomp: ENOSYS, the
 *      answer of a kernel without io_uring; programs fall back) and foreign system-call
 *      ABIs (i386 socketcall/connect/send*, x32: ENOSYS).
 * The supervisor keeps only CAP_SYS_PTRACE (pidfd_getfd and process_vm_readv on processes
 * that changed uid or made themselves non-dumpable) and makes itself non-dumpable (the app,
 * same uid, cannot ptrace it). If it dies, filtered connects fail (ENOSYS): closed, not open.
 *
 * Exit: CMD's exec replaces this process (its pid, status and signals are CMD's); 126 if
 * the filter cannot be installed on a kernel that has the mechanisms, 127 if CMD is not found.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#define LL_CREATE_RULESET_VERSION 1u
#define LL_ACCESS_NET_CONNECT_TCP (1ull << 1)
/** struct landlock_ruleset_attr as of ABI 4 (older headers lack handled_access_net). */
struct ll_ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
};

#if defined(__x86_64__)
#define AX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "ax-confine: add this architecture's AUDIT_ARCH"
#endif

/* TCP states (include/net/tcp_states.h). */
enum { ST_ESTABLISHED = 1, ST_SYN_SENT = 2, ST_SYN_RECV = 3, ST_CLOSE = 7 };

static int landlock_abi(void) {
  long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
  return v < 0 ? 0 : (int)v;
}

static int have_user_notif(void) {
  struct seccomp_notif_sizes sz;
  return syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) == 0;
}

/* ---- the filter ---- */

#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i)) /* little endian: low word first */

/** Installs the filter; returns the listener fd or -1 (errno). */
static int install_filter(void) {
  struct sock_filter f[] = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AX_AUDIT_ARCH, 1, 0),
      /* 2 */ BPF_JUMP(BPF_JMP | BPF_JA, 16, 0, 0), /* -> 19 foreign ABI */
      /* 3 */ LD_NR,
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 12, 0), /* x32 -> 17 ENOSYS */
      /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_connect, 12, 0), /* -> 18 notify */
      /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 10, 0), /* -> 17 */
      /* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendto, 3, 0), /* -> 11 */
      /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendmsg, 4, 0), /* -> 13 */
      /* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendmmsg, 1, 0), /* -> 11 */
      /* 10 */ RET(SECCOMP_RET_ALLOW),
      /* 11 sendto/sendmmsg: flags are args[3] */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(3)),
      /* 12 */ BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0), /* -> 14 */
      /* 13 sendmsg: flags are args[2] */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)),
      /* 14 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MSG_FASTOPEN, 1, 0), /* -> 16 */
      /* 15 */ RET(SECCOMP_RET_ALLOW),
      /* 16 */ RET(SECCOMP_RET_ERRNO | EOPNOTSUPP),
      /* 17 */ RET(SECCOMP_RET_ERRNO | ENOSYS),
      /* 18 */ RET(SECCOMP_RET_USER_NOTIF),
#if defined(__x86_64__)
      /* 19 foreign ABI on x86_64: i386 (socketcall 102, sendmmsg 345, connect 362, sendto 369,
         sendmsg 370, io_uring_setup 425); anything else of it passes */
      LD_NR,
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 102, 6, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 345, 5, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 362, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 369, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 370, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 425, 1, 0),
      RET(SECCOMP_RET_ALLOW),
      RET(SECCOMP_RET_ERRNO | ENOSYS),
#else
      /* 19 a foreign ABI elsewhere: nothing of it */
      RET(SECCOMP_RET_ERRNO | ENOSYS),
#endif
  };
  struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

/** Landlock: no TCP connect for this process and its descendants. 0 or -1 (errno). */
static int restrict_tcp_connect(void) {
  struct ll_ruleset_attr attr = {0, LL_ACCESS_NET_CONNECT_TCP};
  int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
  if (rs < 0) return -1;
  int r = (int)syscall(SYS_landlock_restrict_self, rs, 0);
  int e = errno;
  close(rs);
  errno = e;
  return r;
}

/* ---- the supervisor ---- */

static int g_listener = -1;
static uint64_t g_own_netns;
static size_t g_notif_size, g_resp_size;

static void reply(uint64_t id, int64_t val, int err, int cont) {
  struct seccomp_notif_resp *r = calloc(1, g_resp_size);
  if (!r) return;
  r->id = id;
  r->val = val;
  r->error = err ? -err : 0;
  r->flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
  /* ENOENT: the target was interrupted (a signal) or is gone; nothing to answer. */
  (void)ioctl(g_listener, SECCOMP_IOCTL_NOTIF_SEND, r);
  free(r);
}

static uint64_t netns_cookie(int fd) {
  uint64_t c = 0;
  socklen_t l = sizeof c;
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &c, &l) != 0) return 0;
  return c;
}

struct pending {
  uint64_t id;
  int fd;
  socklen_t len;
  struct sockaddr_storage addr;
  struct pending *next;
};

/* Blocking connects run on worker threads (one slow connect must not stall the others),
   kept between connects: a queue, idle workers waiting on it, a new one when none is idle. */
#define MAX_WORKERS 256
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static struct pending *q_head, *q_tail;
static int q_idle, q_len, q_workers; /* idle workers, queued connects, workers */

static void *worker(void *arg) {
  (void)arg;
  pthread_mutex_lock(&q_mu);
  for (;;) {
    while (!q_head) {
      q_idle++;
      pthread_cond_wait(&q_cv, &q_mu);
      q_idle--;
    }
    struct pending *p = q_head;
    q_head = p->next;
    if (!q_head) q_tail = NULL;
    q_len--;
    pthread_mutex_unlock(&q_mu);
    int r = (int)syscall(SYS_connect, p->fd, (struct sockaddr *)&p->addr, p->len);
    reply(p->id, 0, r == 0 ? 0 : errno, 0);
    close(p->fd);
    free(p);
    pthread_mutex_lock(&q_mu);
  }
  return NULL;
}

/** Queues a blocking connect; false if no worker could take it. */
static int enqueue(struct pending *p) {
  pthread_mutex_lock(&q_mu);
  /* an idle worker that was signalled may not have taken its connect yet: count those */
  int need = q_idle <= q_len;
  if (need && q_workers >= MAX_WORKERS) {
    pthread_mutex_unlock(&q_mu);
    return 0;
  }
  if (need) {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 64 * 1024);
    int te = pthread_create(&t, &a, worker, NULL);
    pthread_attr_destroy(&a);
    if (te != 0) {
      pthread_mutex_unlock(&q_mu);
      return 0;
    }
    q_workers++;
  }
  p->next = NULL;
  if (q_tail) q_tail->next = p;
  else q_head = p;
  q_tail = p;
  q_len++;
  pthread_cond_signal(&q_cv);
  pthread_mutex_unlock(&q_mu);
  return 1;
}

/**
 * A pidfd for the thread that made the call (`n->pid` is its thread id): PIDFD_THREAD
 * (Linux 6.9) opens any thread; before that only a thread-group leader opens, so the
 * leader is found through /proc/TID/status (Tgid). The descriptor table is the process's.
 */
static int thread_pidfd(pid_t tid) {
  int fd = (int)syscall(SYS_pidfd_open, tid, 0x80 /* PIDFD_THREAD = O_EXCL */);
  if (fd >= 0) return fd;
  fd = (int)syscall(SYS_pidfd_open, tid, 0);
  if (fd >= 0 || errno != EINVAL) return fd;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return -1;
  ssize_t r = read(f, buf, sizeof buf - 1);
  close(f);
  if (r <= 0) return -1;
  buf[r] = 0;
  char *t = strstr(buf, "\nTgid:");
  if (!t) return -1;
  return (int)syscall(SYS_pidfd_open, (pid_t)atoi(t + 6), 0);
}

/** What the kernel answers a connect on a handed-in TCP socket in its state, short of connecting it. */
static int host_socket_answer(int fd) {
  struct tcp_info ti;
  socklen_t l = sizeof ti;
  memset(&ti, 0, sizeof ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) != 0) return EACCES;
  if (ti.tcpi_state == ST_SYN_SENT || ti.tcpi_state == ST_SYN_RECV) return EALREADY;
  if (ti.tcpi_state != ST_CLOSE) return EISCONN;
  /* Closed (reset, or disconnected by its holder): the kernel would start a new connection
     (or, for a socket reset while connected, say EISCONN; user space cannot tell the two
     apart). Landlock's answer; a pending error stays for the next read. */
  return EACCES;
}

static void handle(struct seccomp_notif *n) {
  if (n->data.nr != SYS_connect) { /* the filter notifies nothing else */
    reply(n->id, 0, ENOSYS, 0);
    return;
  }
  int pidfd = thread_pidfd((pid_t)n->pid);
  if (pidfd < 0) {
    reply(n->id, 0, 0, 1);
    return;
  }
  int fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)n->data.args[0], 0);
  int gerr = errno;
  close(pidfd);
  if (fd < 0) {
    /* EBADF: the kernel's own answer. Otherwise (not allowed to look): let the kernel act;
       Landlock still refuses any TCP connect. */
    if (gerr == EBADF) reply(n->id, 0, EBADF, 0);
    else reply(n->id, 0, 0, 1);
    return;
  }
  /* The pid could have been reused between the notification and pidfd_open. */
  if (ioctl(g_listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id) != 0) {
    close(fd);
    return;
  }
  int dom = 0, type = 0, proto = 0;
  socklen_t l = sizeof dom;
  int is_inet = getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 && (dom == AF_INET || dom == AF_INET6) &&
                (l = sizeof type, getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0);
  int is_tcp = is_inet && type == SOCK_STREAM && (l = sizeof proto, getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) == 0) &&
               (proto == IPPROTO_TCP || proto == IPPROTO_MPTCP);
  /* A UDP socket handed in (a root daemon's, connected to its backend): a connect that
     would re-aim it is refused here too (EACCES below). A courtesy only (a descriptor can be
     swapped between this check and the kernel's act): what holds is the daemon's nftables
     mark (src/daemon/udpegress.ts), which drops every datagram it sends elsewhere. */
  int host_udp = is_inet && type == SOCK_DGRAM && netns_cookie(fd) != g_own_netns;
  if (!is_tcp && !host_udp) {
    close(fd);
    reply(n->id, 0, 0, 1);
    return;
  }
  struct pending *p = calloc(1, sizeof *p);
  if (!p) {
    close(fd);
    reply(n->id, 0, ENOMEM, 0);
    return;
  }
  p->id = n->id;
  p->fd = fd;
  uint64_t len = n->data.args[2];
  if ((int64_t)len < 0 || len > sizeof p->addr) {
    reply(n->id, 0, EINVAL, 0); /* move_addr_to_kernel's answer */
    goto done;
  }
  p->len = (socklen_t)len;
  if (len > 0) {
    struct iovec local = {&p->addr, len}, remote = {(void *)(uintptr_t)n->data.args[1], len};
    if (process_vm_readv((pid_t)n->pid, &local, 1, &remote, 1, 0) != (ssize_t)len) {
      /* EFAULT: the kernel's answer for a bad address. Not allowed to read: the kernel
         acts (and Landlock refuses the TCP connect). */
      if (errno == EFAULT) reply(n->id, 0, EFAULT, 0);
      else reply(n->id, 0, 0, 1);
      goto done;
    }
  }
  if (host_udp || netns_cookie(fd) != g_own_netns) {
    /* Handed in from the host: never connected here (host_socket_answer: EACCES for UDP). */
    if (len >= sizeof(sa_family_t) && p->addr.ss_family == AF_UNSPEC) reply(n->id, 0, 0, 1);
    else reply(n->id, 0, host_socket_answer(fd), 0);
    goto done;
  }
  /* The namespace's own TCP socket: connect it here, with our copy of the address. */
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) {
    int r = (int)syscall(SYS_connect, fd, (struct sockaddr *)&p->addr, p->len);
    reply(n->id, 0, r == 0 ? 0 : errno, 0);
    goto done;
  }
  if (enqueue(p)) return; /* a worker replies, closes and frees */
  reply(n->id, 0, EAGAIN, 0);
done:
  close(fd);
  free(p);
}

/** Keeps CAP_SYS_PTRACE only (raw capset: libc only, no libcap). */
static void keep_only_ptrace(void) {
  struct {
    uint32_t version;
    int pid;
  } h = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
  struct {
    uint32_t effective, permitted, inheritable;
  } d[2] = {{1u << 19, 1u << 19, 0}, {0, 0, 0}}; /* CAP_SYS_PTRACE = 19 */
  uint32_t have[6] = {0};
  if (syscall(SYS_capget, &h, have) == 0 && !(have[1] & (1u << 19))) d[0].effective = d[0].permitted = 0;
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  (void)syscall(SYS_capset, &h, d);
}

static void supervise(int sp) {
  /* Receive the listener from the process that is becoming CMD. */
  char b;
  struct iovec iov = {&b, 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } c;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
  ssize_t got = recvmsg(sp, &m, MSG_CMSG_CLOEXEC);
  struct cmsghdr *ch = got > 0 ? CMSG_FIRSTHDR(&m) : NULL;
  if (!ch || ch->cmsg_type != SCM_RIGHTS) _exit(0);
  memcpy(&g_listener, CMSG_DATA(ch), sizeof(int));
  close(sp);

  keep_only_ptrace();
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_own_netns = s >= 0 ? netns_cookie(s) : 0;
  if (s >= 0) close(s);

  struct seccomp_notif_sizes sz;
  if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) != 0) _exit(1);
  g_notif_size = sz.seccomp_notif > sizeof(struct seccomp_notif) ? sz.seccomp_notif : sizeof(struct seccomp_notif);
  g_resp_size = sz.seccomp_notif_resp > sizeof(struct seccomp_notif_resp) ? sz.seccomp_notif_resp : sizeof(struct seccomp_notif_resp);
  struct seccomp_notif *n = malloc(g_notif_size);
  if (!n) _exit(1);
  /* Linux 6.6+: the target and this supervisor wake each other on the waker's CPU (less
     latency per connect); older kernels say EINVAL and wake as usual. */
  (void)ioctl(g_listener, SECCOMP_IOW(4, uint64_t) /* SECCOMP_IOCTL_NOTIF_SET_FLAGS */, 1ull /* SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP */);
  for (;;) {
    struct pollfd pf = {g_listener, POLLIN, 0};
    if (poll(&pf, 1, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    if (pf.revents & (POLLHUP | POLLERR | POLLNVAL)) _exit(0); /* no process uses the filter any more */
    memset(n, 0, g_notif_size);
    if (ioctl(g_listener, SECCOMP_IOCTL_NOTIF_RECV, n) != 0) {
      if (errno == EINTR || errno == ENOENT) continue; /* the target went away meanwhile */
      _exit(1);
    }
    handle(n);
  }
}

static int probe(void) {
  int abi = landlock_abi();
  int un = have_user_notif();
  printf("landlock_abi %d\nuser_notif %s\nconfine %s\n", abi, un ? "yes" : "no", abi >= 4 && un ? "yes" : "no");
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: ax-confine [--warn] -- CMD [ARGS...]\n       ax-confine --probe\n");
  exit(2);
}

int main(int argc, char **argv) {
  int i = 1, warn = 0;
  if (argc == 2 && !strcmp(argv[1], "--probe")) return probe();
  for (; i < argc && strcmp(argv[i], "--"); i++) {
    if (!strcmp(argv[i], "--warn")) warn = 1;
    else usage();
  }
  if (i >= argc - 1) usage();
  char **cmd = argv + i + 1;
  /* ax run starts this program without the hook (the supervisor's connects must be the
     kernel's: the hook would hand a VIP connect over to the daemon on the supervisor's
     duplicate and leave the app's socket unconnected) and passes the preload for CMD here */
  const char *preload = getenv("AX_CONFINE_PRELOAD");
  char *cmd_preload = preload && *preload ? strdup(preload) : NULL;
  unsetenv("AX_CONFINE_PRELOAD");

  if (landlock_abi() < 4 || !have_user_notif()) {
    if (warn)
      fprintf(stderr, "ax run: warning: this kernel lacks Landlock TCP rules (ABI %d, needs 4: Linux 6.7) or seccomp user notification: "
                      "sockets ax hands in are confined only if the daemon can attach socket filters (see ax doctor)\n",
              landlock_abi());
    if (cmd_preload) setenv("LD_PRELOAD", cmd_preload, 1);
    execvp(cmd[0], cmd);
    fprintf(stderr, "ax-confine: %s: %s\n", cmd[0], strerror(errno));
    return 127;
  }

  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
    perror("ax-confine: socketpair");
    return 126;
  }
  /* The supervisor is a grandchild (its parent exits at once): CMD, which this process
     becomes, gets no unexpected child; the namespace's init adopts it. */
  pid_t s = fork();
  if (s < 0) {
    perror("ax-confine: fork");
    return 126;
  }
  if (s == 0) {
    close(sp[0]);
    if (fork() != 0) _exit(0);
    signal(SIGINT, SIG_IGN); /* a terminal's ^C is for the app; the supervisor ends with it */
    signal(SIGQUIT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul >= 0) {
      dup2(nul, 0);
      dup2(nul, 1);
      close(nul);
    }
    supervise(sp[1]);
    _exit(0);
  }
  close(sp[1]);
  while (waitpid(s, NULL, 0) < 0 && errno == EINTR) {
  }

  if (restrict_tcp_connect() != 0) {
    fprintf(stderr, "ax-confine: landlock: %s\n", strerror(errno));
    return 126;
  }
  int lis = install_filter();
  if (lis < 0) {
    fprintf(stderr, "ax-confine: seccomp: %s\n", strerror(errno));
    return 126;
  }
  char b = 'L';
  struct iovec iov = {&b, 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } c;
  memset(&c, 0, sizeof c);
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
  struct cmsghdr *ch = CMSG_FIRSTHDR(&m);
  ch->cmsg_level = SOL_SOCKET;
  ch->cmsg_type = SCM_RIGHTS;
  ch->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(ch), &lis, sizeof(int));
  if (sendmsg(sp[0], &m, 0) != 1) {
    fprintf(stderr, "ax-confine: handing the listener to the supervisor: %s\n", strerror(errno));
    return 126;
  }
  close(lis);
  close(sp[0]);
  if (cmd_preload) setenv("LD_PRELOAD", cmd_preload, 1);
  execvp(cmd[0], cmd);
  fprintf(stderr, "ax-confine: %s: %s\n", cmd[0], strerror(errno));
  return 127;
}
