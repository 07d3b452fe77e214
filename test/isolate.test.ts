// ax run --isolate: the app's network namespace has only loopback; it reaches the world only
// through sockets the daemon makes and hands in. Every security check runs the same probe
// twice: without --isolate, where it must succeed (the probe works and the target is there),
// and with --isolate, where it must not. Then the functional path (names, redis, curl, loopback
// inside), as root against a root daemon and as nobody against a rootless daemon.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { classifyCommand, classifyElf } from '../src/cli/elf';
import { AX, nobodyAx, ROOT, run, start, TestDaemon, type Proc } from './helpers';

/** Probes with raw system calls (inline `syscall` instruction: no LD_PRELOAD hook sees them). */
const PROBE_C = String.raw`// Probes what a process can reach, with raw system calls (no libc socket wrappers, so no
// LD_PRELOAD hook sees them). Prints one line "RESULT ok" or "RESULT errno N (text)".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <stddef.h>
#include <unistd.h>

#include <sys/time.h>
#include <pthread.h>
#include <time.h>
#define SO_SNDTIMEO_NEW_OR_OLD SO_SNDTIMEO

static volatile int race_stop;
static int race_fds[3]; /* target number, host socket, unix socket */
static void *swapper(void *arg) {
  (void)arg;
  while (!race_stop) { dup2(race_fds[1], race_fds[0]); dup2(race_fds[2], race_fds[0]); }
  return NULL;
}

#include "rawsys.h"

static int report(const char *what, long r) {
  if (r >= 0) { printf("%s ok\n", what); return 0; }
  printf("%s errno %d (%s)\n", what, errno, strerror(errno));
  return 1;
}

static struct sockaddr_in in4(const char *ip, const char *port) {
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(port));
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

/* A socket ax handed in (libc connect to VIP:PORT goes through the hook), then disconnected
   with a raw connect(AF_UNSPEC); -1 if the connect failed. */
static int handed_in_disconnected(const char *vip, const char *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in v = in4(vip, port);
  if (report("hooked-connect", connect(fd, (struct sockaddr *)&v, sizeof v))) return -1;
  struct sockaddr un = {0};
  un.sa_family = AF_UNSPEC;
  report("disconnect", rsys(SYS_connect, fd, (long)&un, sizeof un));
  return fd;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc >= 4 && !strcmp(argv[1], "tcp")) {
    long fd = rsys(SYS_socket, AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return report("socket", fd);
    struct sockaddr_in a = in4(argv[2], argv[3]);
    return report("connect", rsys(SYS_connect, fd, (long)&a, sizeof a));
  }
  if (argc >= 5 && !strcmp(argv[1], "udp")) {
    long fd = rsys(SYS_socket, AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return report("socket", fd);
    struct sockaddr_in a = in4(argv[2], argv[3]);
    return report("sendto", rsys6(SYS_sendto, fd, (long)argv[4], (long)strlen(argv[4]), 0, (long)&a, sizeof a));
  }
  if (argc >= 2 && !strcmp(argv[1], "packet")) {
    return report("packet", rsys(SYS_socket, AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
  }
  if (argc >= 3 && !strcmp(argv[1], "unix")) {
    long fd = rsys(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return report("socket", fd);
    struct sockaddr_un u = {0};
    u.sun_family = AF_UNIX;
    size_t n = strlen(argv[2]);
    if (n >= sizeof u.sun_path) n = sizeof u.sun_path - 1;
    memcpy(u.sun_path, argv[2], n);
    if (argv[2][0] == '@') u.sun_path[0] = 0; // abstract
    return report("connect", rsys(SYS_connect, fd, (long)&u, (long)(offsetof(struct sockaddr_un, sun_path) + n)));
  }
  if (argc >= 6 && !strcmp(argv[1], "reaim")) {
    // A socket ax handed in (libc connect: the hook), disconnected (AF_UNSPEC) and aimed elsewhere.
    int fd = handed_in_disconnected(argv[2], argv[3]);
    if (fd < 0) return 2;
    struct sockaddr_in a = in4(argv[4], argv[5]);
    struct timeval tv = {2, 0}; // a connect whose answer never comes gives up (EINPROGRESS)
    rsys5(SYS_setsockopt, fd, SOL_SOCKET, SO_SNDTIMEO_NEW_OR_OLD, (long)&tv, sizeof tv);
    return report("connect", rsys(SYS_connect, fd, (long)&a, sizeof a));
  }
  if (argc >= 4 && !strcmp(argv[1], "reaim-listen")) {
    // A listener ax bound and handed in (libc bind/listen: the hook), shut down and aimed elsewhere.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = in4("0.0.0.0", "0");
    if (report("hooked-bind", bind(fd, (struct sockaddr *)&any, sizeof any)) || report("hooked-listen", listen(fd, 8))) return 2;
    report("shutdown", rsys(SYS_shutdown, fd, SHUT_RD, 0));
    struct sockaddr_in a = in4(argv[2], argv[3]);
    struct timeval tv = {2, 0};
    rsys5(SYS_setsockopt, fd, SOL_SOCKET, SO_SNDTIMEO_NEW_OR_OLD, (long)&tv, sizeof tv);
    return report("connect", rsys(SYS_connect, fd, (long)&a, sizeof a));
  }
  if (argc >= 6 && !strcmp(argv[1], "reaim-tfo")) {
    // As reaim, but the second connection by a TCP Fast Open send (no connect call).
    int fd = handed_in_disconnected(argv[2], argv[3]);
    if (fd < 0) return 2;
    struct sockaddr_in a = in4(argv[4], argv[5]);
    return report("sendto-fastopen", rsys6(SYS_sendto, fd, (long)"GET", 3, MSG_FASTOPEN, (long)&a, sizeof a));
  }
  if (argc >= 6 && !strcmp(argv[1], "race")) {
    // The check-then-act window of a seccomp supervisor: one thread connects descriptor N at
    // the host while another keeps swapping N between a unix socket (which the supervisor
    // lets the kernel connect) and the disconnected handed-in socket. For 2 seconds.
    int h = handed_in_disconnected(argv[2], argv[3]);
    if (h < 0) return 2;
    race_fds[1] = h;
    race_fds[2] = (int)rsys(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    race_fds[0] = dup(race_fds[2]);
    struct sockaddr_in a = in4(argv[4], argv[5]);
    pthread_t t;
    pthread_create(&t, NULL, swapper, NULL);
    long tries = 0, r = -1;
    int last = 0;
    time_t end = time(NULL) + 2;
    while (time(NULL) < end && r != 0) {
      r = rsys(SYS_connect, race_fds[0], (long)&a, sizeof a);
      if (r != 0) last = errno;
      tries++;
    }
    race_stop = 1;
    pthread_join(t, NULL);
    if (r == 0) printf("race connected after %ld tries\n", tries);
    else printf("race never connected in %ld tries (last errno %d)\n", tries, last);
    return 0;
  }
  if (argc >= 7 && !strcmp(argv[1], "udp-reaim")) {
    // A UDP socket ax handed in (libc connect to VIP:PORT: the hook), used once as meant (an
    // echo), then aimed at IP:PORT every way the kernel offers, with raw system calls. Each
    // datagram names its way ("x-sendto", ...), so the receiver tells which got through.
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in v = in4(argv[2], argv[3]);
    if (report("hooked-connect", connect(fd, (struct sockaddr *)&v, sizeof v))) return 2;
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[64];
    report("send", send(fd, "legit", 5, 0));
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n >= 0) { buf[n] = 0; printf("echo %s\n", buf); } else report("recv", n);
    // To its backend, but from another local address (another app's would claim its identity).
    union { struct cmsghdr c; char b[CMSG_SPACE(sizeof(struct in_pktinfo))]; } pc;
    memset(&pc, 0, sizeof pc);
    struct iovec piov = {(void *)"x-pktinfo", 9};
    struct msghdr pm = {.msg_iov = &piov, .msg_iovlen = 1, .msg_control = pc.b, .msg_controllen = sizeof pc.b};
    struct cmsghdr *c = CMSG_FIRSTHDR(&pm);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pi = {0};
    inet_pton(AF_INET, argv[6], &pi.ipi_spec_dst);
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    report("sendmsg-pktinfo", rsys(SYS_sendmsg, fd, (long)&pm, 0));
    struct sockaddr_in h = in4(argv[4], argv[5]);
    report("sendto-host", rsys6(SYS_sendto, fd, (long)"x-sendto", 8, 0, (long)&h, sizeof h));
    struct iovec iov = {(void *)"x-sendmsg", 9};
    struct msghdr m = {.msg_name = &h, .msg_namelen = sizeof h, .msg_iov = &iov, .msg_iovlen = 1};
    report("sendmsg-host", rsys(SYS_sendmsg, fd, (long)&m, 0));
    struct iovec iov2 = {(void *)"x-sendmmsg", 10};
    struct mmsghdr mm = {.msg_hdr = {.msg_name = &h, .msg_namelen = sizeof h, .msg_iov = &iov2, .msg_iovlen = 1}};
    long r = rsys5(SYS_sendmmsg, fd, (long)&mm, 1, 0, 0);
    if (r == 0) { errno = EAGAIN; r = -1; } // none sent
    report("sendmmsg-host", r);
    long d = rsys(SYS_dup, fd, 0, 0); // another descriptor of the same socket
    report("dup-sendto-host", rsys6(SYS_sendto, d, (long)"x-dup", 5, 0, (long)&h, sizeof h));
    report("connect-host", rsys(SYS_connect, fd, (long)&h, sizeof h));
    report("send-connected", rsys6(SYS_sendto, fd, (long)"x-connect", 9, 0, 0, 0));
    struct sockaddr un = {0};
    un.sa_family = AF_UNSPEC;
    report("disconnect", rsys(SYS_connect, fd, (long)&un, sizeof un));
    report("sendto-unspec", rsys6(SYS_sendto, fd, (long)"x-unspec", 8, 0, (long)&h, sizeof h));
    int zero = 0; // the mark that names the socket's sender (root only)
    report("unmark", rsys5(SYS_setsockopt, fd, SOL_SOCKET, SO_MARK, (long)&zero, sizeof zero));
    report("sendto-unmarked", rsys6(SYS_sendto, fd, (long)"x-unmark", 8, 0, (long)&h, sizeof h));
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "iouring")) {
    // io_uring's connect and sends run without seccomp seeing them.
    char params[120] = {0};
    return report("io_uring_setup", rsys(425, 4, (long)params, 0));
  }
  if (argc >= 2 && !strcmp(argv[1], "filter")) {
    // May this user attach a classic BPF socket filter (what the daemon confines handed-in sockets with)?
    long fd = rsys(SYS_socket, AF_INET, SOCK_STREAM, 0);
    struct sock_filter f[] = {{0x06, 0, 0, 0xffffffff}};
    struct sock_fprog p = {1, f};
    return report("filter", rsys5(SYS_setsockopt, fd, SOL_SOCKET, SO_ATTACH_FILTER, (long)&p, sizeof p));
  }
  fprintf(stderr, "usage: probe tcp IP PORT | packet | unix PATH|@NAME | reaim VIP VPORT IP PORT\n");
  return 2;
}
`;

const work = mkdtempSync(join(tmpdir(), 'ax-isolate-test-'));
chmodSync(work, 0o755);
t.teardown(() => rmSync(work, { recursive: true, force: true }));
writeFileSync(join(work, 'probe.c'), PROBE_C);
/** statically linked: the hook is never loaded, whatever LD_PRELOAD says */
const PROBE = join(work, 'probe-static');
/** dynamically linked: its libc connect() goes through the hook */
const PROBE_DYN = join(work, 'probe');
execFileSync('gcc', ['-O2', '-Wall', '-pthread', '-static', '-I', join(ROOT, 'test', 'c'), '-o', PROBE, join(work, 'probe.c')]);
execFileSync('gcc', ['-O2', '-Wall', '-pthread', '-I', join(ROOT, 'test', 'c'), '-o', PROBE_DYN, join(work, 'probe.c')]);
const HOOKCLIENT = join(ROOT, 'test', 'hookclient.py');

/** A listener outside ax, in the test's (the host's) network namespace: TCP on 127.0.0.1 and an abstract unix socket. */
const HOST_LISTENER = `
import socket, sys, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("127.0.0.1", 0)); t.listen(128)
u = socket.socket(socket.AF_UNIX); u.bind("\\0" + sys.argv[1]); u.listen(128)
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.bind(("127.0.0.1", t.getsockname()[1]))
print("port", t.getsockname()[1], flush=True)
while True:
    print("udp got", d.recv(100).decode(), flush=True)
`;

async function hostListener(tt: { teardown(fn: () => unknown): void }, name: string): Promise<{ port: number; p: Proc }> {
  const p = start('python3', ['-c', HOST_LISTENER, name], {}, tt);
  return { port: Number((await p.waitFor(/port (\d+)/))[1]), p };
}

/** The same command without and with --isolate (at once: they are independent). */
async function both(d: TestDaemon, cmd: string[], extra: string[] = []) {
  const [native, isolated] = await Promise.all([d.run(extra, cmd).result(), d.run(['--isolate', ...extra], cmd).result()]);
  return { native, isolated };
}

t.test('ELF reader: static, dynamic, scripts, not ELF', async (t) => {
  t.equal(classifyElf(PROBE).kind, 'static', 'gcc -static: no PT_INTERP');
  t.equal(classifyElf(PROBE_DYN).kind, 'dynamic');
  t.equal(classifyElf(process.execPath).kind, 'dynamic', 'node');
  const script = join(work, 'script.sh');
  writeFileSync(script, `#!/usr/bin/env -S ${PROBE} tcp\n`, { mode: 0o755 });
  t.equal(classifyCommand(script).kind, 'static', 'a script is judged by its interpreter (through env -S)');
  t.equal(classifyCommand(script).file, PROBE);
  const junk = join(work, 'junk');
  writeFileSync(junk, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1]), Buffer.alloc(100, 0xff)]));
  t.equal(classifyElf(junk).kind, 'unknown', 'a corrupt ELF header: no verdict, no exception');
  writeFileSync(junk, 'hello');
  t.equal(classifyElf(junk).kind, 'unknown');
  t.equal(classifyCommand('no-such-command-ax').kind, 'unknown');
  // A Go binary: its build-info section, in an otherwise dynamic ELF (objcopy adds the section).
  const go = join(work, 'go-like');
  execFileSync('objcopy', ['--add-section', `.go.buildinfo=${junk}`, PROBE_DYN, go]);
  t.equal(classifyElf(go).kind, 'go', 'a .go.buildinfo section marks a Go program');
});

t.test('isolated apps as root, root daemon', async (t) => {
  const d = await TestDaemon.start(t);
  const abstract = `ax-isolate-test-${process.pid}`;
  const { port: hostPort, p: listener } = await hostListener(t, abstract);
  const web = d.run(['--name', 'web', '--ip', '10.1.0.1'], ['python3', '-m', 'http.server', '8000']);
  await web.waitFor(/Serving HTTP/);
  const svc = await d.get('services');
  const webHost = svc.find((s) => s.name === 'web');
  t.ok(webHost, 'web is a service');
  const webHostPort = String(webHost!.host_port);

  await t.test('raw socket+connect to the host loopback: connects natively, not isolated; a warning either way', async (t) => {
    const r = await both(d, [PROBE, 'tcp', '127.0.0.1', String(hostPort)]);
    t.match(r.native.stdout, /^connect ok$/m, 'without --isolate the probe reaches the host listener');
    t.match(r.native.stderr, /statically linked.*does not mediate it/s, 'ax run warns that a static program is not mediated');
    t.match(r.isolated.stdout, /^connect errno 111 /m, 'isolated: refused (nothing listens on the namespace\'s own loopback)');
    t.match(r.isolated.stderr, /statically linked.*no network at all/s, 'ax run --isolate warns it has no network');
    t.equal(r.isolated.stderr.match(/warning/g)?.length, 1, 'warned once');
    // The pool port the daemon bound for web, on the host's loopback: a host port, not a service name.
    const pool = await both(d, [PROBE, 'tcp', '127.0.0.1', webHostPort]);
    t.match(pool.native.stdout, /^connect ok$/m, 'a host loopback port (web\'s pool port) natively');
    t.match(pool.isolated.stdout, /^connect errno /m, 'isolated: that host port is unreachable');
    // A VIP is nothing to the kernel: a program the hook cannot see gets no virtual network, isolated
    // or not (ax-confine's supervisor connects such a socket itself, with the hook kept out of it)
    const vip = await both(d, [PROBE, 'tcp', '10.1.0.1', '8000']);
    t.match(vip.native.stdout, /^connect errno 101 /m, 'natively: ENETUNREACH');
    t.match(vip.isolated.stdout, /^connect errno 101 /m, 'isolated: ENETUNREACH too, not a connect that seemed to succeed');
  });

  await t.test('raw UDP sendto a host listener: arrives natively, never isolated', async (t) => {
    const iso = await d.run(['--isolate'], [PROBE, 'udp', '127.0.0.1', String(hostPort), 'from-isolated']).result();
    t.match(iso.stdout, /^sendto /m, 'the isolated probe ran');
    const nat = await d.run([], [PROBE, 'udp', '127.0.0.1', String(hostPort), 'from-native']).result();
    t.match(nat.stdout, /^sendto ok$/m);
    await listener.waitFor(/udp got from-native/);
    t.notMatch(listener.stdout, /from-isolated/, 'the isolated datagram (sent first) never reached the host');
  });

  await t.test('AF_PACKET socket: made natively (root), refused isolated', async (t) => {
    const r = await both(d, [PROBE, 'packet']);
    t.match(r.native.stdout, /^packet ok$/m);
    t.match(r.isolated.stdout, /^packet errno 1 /m, 'EPERM: no CAP_NET_RAW in the app\'s namespaces');
  });

  await t.test('abstract unix socket of the host: reachable natively, not isolated', async (t) => {
    const r = await both(d, [PROBE, 'unix', `@${abstract}`]);
    t.match(r.native.stdout, /^connect ok$/m);
    t.match(r.isolated.stdout, /^connect errno 111 /m);
  });

  await t.test('the daemon\'s API socket and state: reachable natively, not isolated (not through /proc either)', async (t) => {
    const api = await both(d, [PROBE, 'unix', d.socket]);
    t.match(api.native.stdout, /^connect ok$/m, 'API socket natively');
    t.match(api.isolated.stdout, /^connect errno /m, 'API socket isolated');
    const viaProc = `/proc/${d.proc.pid}/root${d.socket}`;
    const proc = await both(d, [PROBE, 'unix', viaProc]);
    t.match(proc.native.stdout, /^connect ok$/m, `${viaProc} natively`);
    t.match(proc.isolated.stdout, /^connect errno 2 /m, 'isolated: host processes are not in its /proc');
    const state = await both(d, ['ls', '-A', d.stateDir]);
    t.not(state.native.stdout.trim(), '', 'state dir has files natively');
    t.equal(state.isolated.stdout.trim(), '', 'isolated: the state dir is empty');
    t.equal(state.isolated.code, 0);
    // Registering another app (with other labels) needs the API: an ax run inside cannot. The
    // CLI says so at once (AX_ISOLATED, a courtesy); without that variable it really tries.
    const nestedArgs = [process.execPath, AX, 'run', '--socket', d.socket, '--no-start', '--labels', 'zone=other', '--', 'true'];
    const nested = await d.run(['--isolate'], nestedArgs).result();
    t.equal(nested.code, 1, 'a nested ax run cannot register an app');
    t.match(nested.stderr, /the ax API is not reachable from inside an isolated app/);
    const forced = await d.run(['--isolate'], ['env', '-u', 'AX_ISOLATED', ...nestedArgs]).result();
    t.equal(forced.code, 1, 'nor one that unset AX_ISOLATED: the API socket is not there');
    t.match(forced.stderr, /no ax daemon|not a socket|none is running/);
  });

  await t.test('the hook socket stays: names work, policy holds, loopback stays inside', async (t) => {
    const r = await d.run(['--isolate'], ['curl', '-sS', '-m', '5', 'http://web:8000/']).result();
    t.equal(r.code, 0, `curl web from an isolated app: ${r.stderr}`);
    t.match(r.stdout, /Directory listing/);
    const denied = await d.run(['--isolate', '--labels', 'zone=other'], ['curl', '-sS', '-m', '5', 'http://web:8000/']).result();
    t.not(denied.code, 0, 'an isolated app with other labels is refused by policy');
    // Two processes of one isolated app over 127.0.0.1, which the host cannot reach.
    const inner = d.run(['--isolate'], ['sh', '-c',
      'python3 -m http.server 8099 --bind 127.0.0.1 >/dev/null 2>&1 & i=0; while [ $i -lt 100 ] && ! curl -s -o /dev/null 127.0.0.1:8099/; do i=$((i+1)); sleep 0.1; done; ' +
      'echo "inside $(curl -s -o /dev/null -w %{http_code} 127.0.0.1:8099/)"; sleep 30']);
    await inner.waitFor(/inside \d+/, 15_000);
    t.match(inner.stdout, /inside 200/, 'loopback inside the app works');
    const fromHost = await run(PROBE, ['tcp', '127.0.0.1', '8099']);
    t.match(fromHost.stdout, /^connect errno 111 /m, 'the app\'s 127.0.0.1:8099 is not the host\'s');
    inner.killGroup();
  });

  await t.test('an isolated app cannot open a hook session as another app', async (t) => {
    const other = d.run(['--labels', 'zone=secret'], ['sh', '-c', 'echo "app=$AX_APP"; exec sleep 30']);
    const otherApp = (await other.waitFor(/app=(\S+)/))[1];
    const hook = join(d.dir, 'ax-hook.sock');
    const r = await d.run(['--isolate'], ['sh', '-c', `python3 ${HOOKCLIENT} hello ${hook} "$AX_APP"; python3 ${HOOKCLIENT} hello ${hook} ${otherApp}`]).result();
    const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('status') || l === 'closed');
    t.match(lines[0], /^status 0 /, `its own app: admitted (${r.stdout}${r.stderr})`);
    t.match(lines[1], /^status -?\d+ err 13|^closed/, 'another app\'s id and token: EACCES');
    t.notMatch(lines[1], /^status 0 /);
    other.killGroup();
  });

  await t.test('a handed-in socket cannot be re-aimed at the host (disconnected, then connected elsewhere)', async (t) => {
    const r = await both(d, [PROBE_DYN, 'reaim', '10.1.0.1', '8000', '127.0.0.1', String(hostPort)]);
    t.match(r.native.stdout, /^hooked-connect ok\ndisconnect ok\nconnect ok$/m, 'without --isolate the app\'s own socket can (it has the network anyway)');
    t.match(r.isolated.stdout, /^hooked-connect ok$/m, 'isolated: the connect to web went through ax');
    t.match(r.isolated.stdout, /^connect errno /m, `isolated: connect(AF_UNSPEC) then a connect to a host listener never completes (${r.isolated.stdout.trim()})`);
    const l = await both(d, [PROBE_DYN, 'reaim-listen', '127.0.0.1', String(hostPort)]);
    t.match(l.native.stdout, /^hooked-listen ok$/m);
    t.match(l.native.stdout, /^connect ok$/m, 'a listener shut down (SHUT_RD) and connected: natively it can');
    t.match(l.isolated.stdout, /^hooked-listen ok$/m, 'isolated: the listener came from ax');
    t.match(l.isolated.stdout, /^connect errno /m, `isolated: the handed-in listener cannot become a host client (${l.isolated.stdout.trim()})`);
    // Connecting without connect(2): a TCP Fast Open send, and io_uring (seccomp never sees its operations).
    const tfo = await both(d, [PROBE_DYN, 'reaim-tfo', '10.1.0.1', '8000', '127.0.0.1', String(hostPort)]);
    t.match(tfo.native.stdout, /^sendto-fastopen ok$/m, 'natively a Fast Open send connects the disconnected socket');
    t.match(tfo.isolated.stdout, /^hooked-connect ok$/m);
    t.match(tfo.isolated.stdout, /^sendto-fastopen errno (95|13) /m, `isolated: it does not (${tfo.isolated.stdout.trim()})`);
    const uring = await both(d, [PROBE, 'iouring']);
    t.match(uring.native.stdout, /^io_uring_setup ok$/m, 'io_uring natively');
    t.match(uring.isolated.stdout, /^io_uring_setup errno 38 /m, 'isolated under ax-confine: ENOSYS, as a kernel without io_uring');
  });

  await t.test('exit status, signals and stdin pass through the namespace\'s init', async (t) => {
    t.equal((await d.run(['--isolate'], ['sh', '-c', 'exit 7']).result()).code, 7, 'exit status');
    const nf = await d.run(['--isolate'], ['no-such-command-ax']).result();
    t.equal(nf.code, 127, 'command not found: 127');
    t.match(nf.stderr, /no-such-command-ax: command not found/);
    const cat = start(process.execPath, [AX, 'run', '--socket', d.socket, '--no-start', '--isolate', '--', 'cat'], { stdio: ['pipe', 'pipe', 'pipe'] }, t);
    cat.child.stdin!.end('through stdin\n');
    const c = await cat.result();
    t.equal(c.stdout, 'through stdin\n', 'stdin reaches CMD');
    const sl = d.run(['--isolate'], ['sh', '-c', 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done']);
    await sl.waitFor(/ready/);
    sl.kill('SIGTERM');
    const r = await sl.result();
    t.match(r.stdout, /got TERM/, 'SIGTERM to ax run reaches CMD');
    t.equal(r.code, 3);
  });

  await t.test('redis by name between two isolated apps', async (t) => {
    const db = d.run(['--isolate', '--name', 'db'], ['redis-server', '--port', '6379', '--protected-mode', 'no', '--save', '', '--appendonly', 'no']);
    await db.waitFor(/Ready to accept connections/);
    const r = await d.run(['--isolate'], ['redis-cli', '-h', 'db', 'ping']).result();
    t.equal(r.stdout.trim(), 'PONG', r.stderr);
    db.killGroup();
  });

  await t.test('root: every uid exists inside, a server that drops to nobody works; the kept capabilities cannot undo the isolation', async (t) => {
    const mc = d.run(['--isolate', '--name', 'mc'], ['memcached', '-u', 'nobody', '-p', '11211', '-U', '0', '-l', '0.0.0.0', '-vv']);
    const ask = `
import socket
s = socket.create_connection(('mc', 11211), timeout=5); s.sendall(b'version\\r\\n'); print(s.recv(100).decode().strip())
`;
    let r: { code: number | null; stdout: string; stderr: string } = { code: 1, stdout: '', stderr: '' };
    for (let i = 0; i < 50 && r.code !== 0; i++) {
      r = await d.run(['--isolate'], ['python3', '-c', ask]).result();
      if (r.code !== 0) await new Promise((res) => setTimeout(res, 100));
    }
    t.match(r.stdout, /^VERSION \d/, `memcached -u nobody answers by name: ${r.stderr}`);
    const pid = (await run('pgrep', ['-f', '^memcached -u nobody -p 11211'])).stdout.trim().split('\n')[0];
    t.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+65534\s/m, 'memcached runs as nobody (uid 65534 on the host too)');
    const caps = await d.run(['--isolate'], ['sh', '-c', `grep CapEff /proc/self/status; umount ${d.socket} && echo umount-ok || echo umount-refused; unshare -n true && echo unshare-ok || echo unshare-refused`]).result();
    t.match(caps.stdout, /umount-refused/, 'the mount hiding the API socket stays');
    t.match(caps.stdout, /unshare-refused/, 'no new namespaces');
    const eff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(caps.stdout)?.[1] ?? '0'}`);
    const CAP_SYS_ADMIN = 21n, CAP_NET_RAW = 13n, CAP_NET_ADMIN = 12n, CAP_SETUID = 7n;
    t.equal((eff >> CAP_SETUID) & 1n, 1n, 'keeps CAP_SETUID');
    for (const [n, c] of [['SYS_ADMIN', CAP_SYS_ADMIN], ['NET_RAW', CAP_NET_RAW], ['NET_ADMIN', CAP_NET_ADMIN]] as const) t.equal((eff >> c) & 1n, 0n, `no CAP_${n}`);
    mc.killGroup();
  });

  await t.test('UDP: a root daemon hands isolated apps connected UDP sockets that reach only their backend', async (t) => {
    const echo = d.run(['--name', 'uecho', '--ip', '10.1.0.3'], ['python3', '-c', "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7000)); print('bound', flush=True)\nwhile True:\n  m, a = s.recvfrom(100); print('got', m.decode(), flush=True); s.sendto(m, a)"]);
    await echo.waitFor(/bound/);
    // By name (socat connects its UDP socket: the daemon hands one in) and by VIP (python).
    const socat = await d.run(['--isolate'], ['sh', '-c', 'echo ping-by-name | socat -t 3 - UDP:uecho:7000']).result();
    t.equal(socat.stdout, 'ping-by-name\n', `isolated socat reaches a UDP service by name (${socat.stderr})`);
    const py = `
import socket, errno
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.connect(('10.1.0.3', 7000))
s.send(b'ping-by-vip'); print('echo', s.recv(100).decode(), 'peer', s.getpeername()[0])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b'x', ('10.1.0.3', 7000)); print('unconnected sendto ok')
except OSError as e:
    print('unconnected sendto', errno.errorcode[e.errno])
`;
    const vip = await d.run(['--isolate'], ['python3', '-c', py]).result();
    t.match(vip.stdout, /^echo ping-by-vip peer 10\.1\.0\.3$/m, `isolated python by VIP, connected (${vip.stderr})`);
    t.match(vip.stdout, /^unconnected sendto ok$/m, 'an unconnected sendto to a VIP from an isolated app works (a host socket handed in: test/isolate-udp.test.ts)');

    // The attacker: a handed-in socket re-aimed at a listener of the host (a raw sendto,
    // sendmsg, sendmmsg, a dup, connect, AF_UNSPEC + sendto). Natively every datagram arrives.
    const args = [PROBE_DYN, 'udp-reaim', '10.1.0.3', '7000', '127.0.0.1', String(hostPort), '127.0.0.9'];
    const ways = ['x-sendto', 'x-sendmsg', 'x-sendmmsg', 'x-dup', 'x-connect', 'x-unspec', 'x-unmark'];
    const nat = await d.run([], args).result();
    t.match(nat.stdout, /^echo legit$/m, `natively: the echo (${nat.stderr})`);
    for (const w of ways) await listener.waitFor(new RegExp(`udp got ${w}$`, 'm'), 5000);
    t.pass('natively every re-aimed datagram reaches the host listener');
    await echo.waitFor(/^got x-pktinfo$/m, 5000);
    t.pass('natively a datagram from another source address (IP_PKTINFO) reaches the backend');
    const echoSeen = echo.stdout.length;
    // Drops counted by the ax daemons' egress tables (other test files' daemons may share this namespace).
    const drops = () => {
      const tables = execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' }).split(/^table /m).filter((b) => b.startsWith('inet ax_egress_'));
      if (tables.length === 0) return -1;
      return tables.reduce((n, b) => n + [...b.matchAll(/counter packets (\d+)/g)].reduce((m, x) => m + Number(x[1]), 0), 0);
    };
    const before = drops();
    t.ok(before >= 0, 'the daemon keeps an nftables table with a drop counter');
    const seen = listener.stdout.length;
    const iso = await d.run(['--isolate'], args).result();
    t.match(iso.stdout, /^hooked-connect ok$/m, `isolated: the hook got a UDP socket from the daemon (${iso.stderr})`);
    t.match(iso.stdout, /^echo legit$/m, 'isolated: it reaches its backend');
    t.match(iso.stdout, /^sendmsg-pktinfo errno 1 /m, 'isolated: to its backend from another source address (IP_PKTINFO): EPERM');
    t.match(iso.stdout, /^sendto-host errno 1 /m, 'sendto a host address: EPERM (dropped in OUTPUT)');
    t.match(iso.stdout, /^sendmsg-host errno 1 /m, 'sendmsg: EPERM');
    t.match(iso.stdout, /^sendmmsg-host errno 1 /m, 'sendmmsg: EPERM');
    t.match(iso.stdout, /^dup-sendto-host errno 1 /m, 'another descriptor of the socket: EPERM');
    t.match(iso.stdout, /^connect-host errno 13 /m, 'connect elsewhere: EACCES (ax-confine)');
    t.match(iso.stdout, /^send-connected (ok|errno 1 .*)$/m, 'a send after the refused connect: to its backend (or dropped), never the host');
    t.match(iso.stdout, /^sendto-unspec errno 1 /m, 'disconnected, then sendto: EPERM');
    t.match(iso.stdout, /^unmark errno 1 /m, 'the socket\'s mark cannot be changed from inside (no CAP_NET_ADMIN)');
    t.match(iso.stdout, /^sendto-unmarked errno 1 /m, 'so that sendto is dropped too');
    // A marker datagram natively after the isolated run: once it arrives, anything the isolated
    // probe got through would have arrived before it.
    await d.run([], [PROBE, 'udp', '127.0.0.1', String(hostPort), 'marker']).result();
    await listener.waitFor(/udp got marker$/m, 5000);
    t.notMatch(listener.stdout.slice(seen), /udp got x-/, 'nothing the isolated probe sent reached the host listener');
    // x-connect went to the backend after x-pktinfo, on the same socket: once it is there, so would x-pktinfo be.
    if (/^send-connected ok$/m.test(iso.stdout)) await echo.waitFor(/^got x-connect$/m, 5000);
    t.notMatch(echo.stdout.slice(echoSeen), /got x-pktinfo/, 'nor the backend from a chosen source address');
    t.ok(drops() >= before + 7, `the table counted the seven drops (${before} -> ${drops()})`);
    // A rule that denies the flow revokes it: the handed-in socket can no longer send there.
    const loop = "import socket, time, errno\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.connect(('uecho', 7000))\nlast = None\nfor i in range(150):\n  try:\n    s.send(b'p'); s.recv(10); r = 'ok'\n  except OSError as e:\n    r = errno.errorcode.get(e.errno, str(e))\n  if r != last: print('udp', r, flush=True); last = r\n  if r == 'EPERM': break\n  time.sleep(0.1)";
    const held = d.run(['--isolate', '--name', 'udpc'], ['python3', '-c', loop]);
    await held.waitFor(/^udp ok$/m, 10_000);
    const add = await d.ax(['policy', 'add', 'no-udpc', 'deny', '--from', 'ax.name=udpc', '--to', 'ax.name=uecho']);
    t.equal(add.code, 0, `policy add (${add.stderr})`);
    await held.waitFor(/^udp EPERM$/m, 10_000);
    t.pass('a flow the new rule denies: its sends get EPERM (revoked in the nftables set)');
    t.equal((await d.ax(['policy', 'rm', 'no-udpc'])).code, 0);
    held.killGroup();
    echo.killGroup();
  });
  web.killGroup();
});

t.test('as nobody, with a rootless daemon it starts itself', async (t) => {
  const { home, env, ax, nobody } = nobodyAx(t, 'ax-isolate-nobody-');
  const db: Proc = ax(['run', '--isolate', '--name', 'db', '--', 'redis-server', '--port', '6379', '--protected-mode', 'no', '--save', '', '--appendonly', 'no']);
  await db.waitFor(/Ready to accept connections/, 20_000);
  const status = JSON.parse((await ax(['status', '-o', 'json']).result()).stdout);
  t.equal(status.caller_uid ?? 65534, 65534);
  const daemonUid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${status.pid}/status`, 'utf8'))?.[1]);
  t.equal(daemonUid, 65534, 'the daemon runs as nobody');
  t.match(status.api_socket, new RegExp(`^${home}/run/ax/`), 'its sockets are in XDG_RUNTIME_DIR');
  const r = await ax(['run', '--isolate', '--', 'redis-cli', '-h', 'db', 'ping']).result();
  t.equal(r.stdout.trim(), 'PONG', r.stderr);
  const web = ax(['run', '--name', 'web', '--', '/usr/bin/python3', '-u', '-m', 'http.server', '8000']);
  await web.waitFor(/Serving HTTP/);
  const c = await ax(['run', '--isolate', '--', 'curl', '-sS', '-m', '5', 'http://web:8000/']).result();
  t.match(c.stdout, /Directory listing/, `curl web as nobody, isolated: ${c.stderr}`);
  const raw = await ax(['run', '--isolate', '--', PROBE, 'unix', status.api_socket]).result();
  t.match(raw.stdout, /^connect errno /m, 'the rootless daemon\'s API socket is unreachable from inside');
  const rawNative = await ax(['run', '--', PROBE, 'unix', status.api_socket]).result();
  t.match(rawNative.stdout, /^connect ok$/m, 'and reachable without --isolate');
  const pkt = await ax(['run', '--isolate', '--', PROBE, 'packet']).result();
  t.match(pkt.stdout, /^packet errno 1 /m, 'no AF_PACKET as nobody either');
  // Re-aiming a handed-in socket (disconnected, then aimed at a listener of the host): ax-confine
  // (Landlock) refuses it where the kernel has Landlock TCP rules; a locked socket filter keeps it
  // from completing where nobody may attach one; where neither, the daemon must say so.
  const abstract = `ax-isolate-nobody-${process.pid}`;
  const { port: hostPort } = await hostListener(t, abstract);
  const dbVip = (JSON.parse((await ax(['get', 'services', '-o', 'json']).result()).stdout) as Array<{ name: string; vip: string }>).find((x) => x.name === 'db')!.vip;
  const reaimNative = await ax(['run', '--', PROBE_DYN, 'reaim', dbVip, '6379', '127.0.0.1', String(hostPort)]).result();
  t.match(reaimNative.stdout, /^connect ok$/m, 'without --isolate the probe re-aims its socket at the host listener');
  const reaim = await ax(['run', '--isolate', '--', PROBE_DYN, 'reaim', dbVip, '6379', '127.0.0.1', String(hostPort)]).result();
  t.match(reaim.stdout, /^hooked-connect ok$/m, `nobody, isolated: connect to db through ax (${reaim.stdout}${reaim.stderr})`);
  const listenReaim = await ax(['run', '--isolate', '--', PROBE_DYN, 'reaim-listen', '127.0.0.1', String(hostPort)]).result();
  t.match(listenReaim.stdout, /^hooked-listen ok$/m, `nobody, isolated: a listener from ax (${listenReaim.stdout}${listenReaim.stderr})`);
  const filter = await run('setpriv', nobody([PROBE, 'filter']), { env });
  const probe = await run(join(ROOT, 'dist', 'ax-confine'), ['--probe']);
  const landlock = /^confine yes$/m.test(probe.stdout);
  // ax doctor as nobody says the same as the probes, and that --isolate is available.
  const doc = JSON.parse((await ax(['doctor', '-o', 'json']).result()).stdout) as { uid: number; checks: Array<{ name: string; ok: boolean }>; verdicts: string[] };
  t.equal(doc.uid, 65534);
  t.equal(doc.checks.find((c) => c.name.startsWith('socket filters'))?.ok, /^filter ok$/m.test(filter.stdout), 'ax doctor: socket filters as the probe found');
  t.equal(doc.checks.find((c) => c.name.startsWith('ax-confine'))?.ok, landlock, 'ax doctor: Landlock as ax-confine --probe found');
  t.equal(doc.checks.find((c) => c.name.startsWith('unshare -U -n'))?.ok, true, 'ax doctor: user namespaces work for nobody');
  t.match(doc.verdicts.join('\n'), /--isolate: available for uid 65534/);
  const log = () => readFileSync(join(home, 'state', 'ax', 'daemon.log'), 'utf8');
  if (landlock) {
    t.match(reaim.stdout, /^connect errno 13 /m, `nobody, isolated: the handed-in socket cannot be re-aimed: Landlock's EACCES (${reaim.stdout.trim()})`);
    t.match(listenReaim.stdout, /^connect errno 13 /m, `nobody, isolated: nor the handed-in listener (${listenReaim.stdout.trim()})`);
    t.notMatch(log(), /sockets handed to it are not confined/, 'the daemon knows these apps run under ax-confine (no warning)');
    // The supervisor's check-then-act window (a descriptor swapped between its check and the
    // kernel's connect): Landlock closes it.
    const [rn, ri] = await Promise.all([
      ax(['run', '--', PROBE_DYN, 'race', dbVip, '6379', '127.0.0.1', String(hostPort)]).result(),
      ax(['run', '--isolate', '--', PROBE_DYN, 'race', dbVip, '6379', '127.0.0.1', String(hostPort)]).result(),
    ]);
    t.match(rn.stdout, /^race connected after \d+ tries$/m, `natively the swapped descriptor connects (${rn.stdout.trim()})`);
    t.match(ri.stdout, /^hooked-connect ok$/m, ri.stderr);
    t.match(ri.stdout, /^race never connected in \d+ tries/m, `isolated: never (${ri.stdout.trim()})`);
    t.match(doc.verdicts.join('\n'), /confined by ax-confine/);
    // Loopback TCP inside still works (the supervisor connects it), as natively: blocking,
    // non-blocking, refused, connected twice, from a thread (its own thread id in the
    // notification); a unix socket connect goes on unchanged.
    const loop = join(work, 'loop.py');
    writeFileSync(loop, `
import socket, errno
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(8); port = l.getsockname()[1]
c = socket.socket(); c.connect(('127.0.0.1', port)); a, _ = l.accept(); a.send(b'x'); print('blocking', c.recv(1))
n = socket.socket(); n.setblocking(False)
print('nonblocking', errno.errorcode.get(n.connect_ex(('127.0.0.1', port))))
r = socket.socket(); print('closed port', errno.errorcode.get(r.connect_ex(('127.0.0.1', 1))))
print('again', errno.errorcode.get(c.connect_ex(('127.0.0.1', port))))
u = socket.socket(socket.AF_UNIX); print('unix', errno.errorcode.get(u.connect_ex('/nonexistent')))
import threading
out = []
th = threading.Thread(target=lambda: out.append(socket.socket().connect_ex(('127.0.0.1', port)))); th.start(); th.join()
print('from a thread', out[0])
# a blocking connect that waits (a full accept queue; SO_SNDTIMEO 2 s) holds up no other connect
import struct, time
full = socket.socket(); full.bind(('127.0.0.1', 0)); full.listen(0); fa = full.getsockname()
fill = [socket.socket() for i in range(2)]
for f in fill: f.setblocking(False); f.connect_ex(fa)
time.sleep(0.1)
res = []
def slow():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack('ll', 2, 0))
    res.append(errno.errorcode.get(s.connect_ex(fa)))
th = threading.Thread(target=slow); th.start(); time.sleep(0.3)
print('another connect', socket.socket().connect_ex(('127.0.0.1', port)), 'while the first waits', th.is_alive())
th.join(); print('the first', res[0])
`, { mode: 0o644 });
    const [ln, li] = await Promise.all([ax(['run', '--', '/usr/bin/python3', loop]).result(), ax(['run', '--isolate', '--', '/usr/bin/python3', loop]).result()]);
    t.equal(ln.stdout, "blocking b'x'\nnonblocking EINPROGRESS\nclosed port ECONNREFUSED\nagain EISCONN\nunix ENOENT\nfrom a thread 0\nanother connect 0 while the first waits True\nthe first EINPROGRESS\n", ln.stderr);
    t.equal(li.stdout, ln.stdout, `isolated as nobody: loopback TCP inside behaves as natively (${li.stderr})`);
  } else if (/^filter ok$/m.test(filter.stdout)) {
    t.notMatch(reaim.stdout, /^connect ok$/m, 'nobody, isolated: the handed-in socket cannot be re-aimed');
  } else {
    t.match(filter.stdout, /^filter errno 1 /m, 'this kernel refuses socket filters to nobody');
    t.match(log(), /sockets handed to it are not confined/, 'and the rootless daemon says its handed-in sockets are not confined');
  }
  // UDP: a rootless daemon cannot confine a host UDP socket (no SO_MARK, no nftables; Landlock
  // has no UDP rules): an isolated app's datagrams to a VIP stay ENETUNREACH.
  const uecho = ax(['run', '--name', 'uecho', '--', '/usr/bin/python3', '-c', "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7000)); print('bound', flush=True)\nwhile True:\n  m, a = s.recvfrom(100); s.sendto(m, a)"]);
  await uecho.waitFor(/bound/);
  const udpPy = "import socket, errno\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\ntry:\n  s.connect(('uecho', 7000)); s.send(b'hi'); print('udp echo', s.recv(10).decode())\nexcept OSError as e: print('udp', errno.errorcode.get(e.errno, e))";
  const [un, ui] = await Promise.all([ax(['run', '--', '/usr/bin/python3', '-c', udpPy]).result(), ax(['run', '--isolate', '--', '/usr/bin/python3', '-c', udpPy]).result()]);
  t.equal(un.stdout, 'udp echo hi\n', `nobody, not isolated: UDP to a service by name (${un.stderr})`);
  t.equal(ui.stdout, 'udp ENETUNREACH\n', `nobody, isolated, rootless daemon: no host UDP socket (${ui.stderr})`);
  t.match(doc.verdicts.join('\n'), /UDP: .*rootless.*ENETUNREACH/s, 'ax doctor says what UDP does for isolated apps here');
  uecho.killGroup();
  db.killGroup();
  web.killGroup();
});
