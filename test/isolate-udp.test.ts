// UDP in `ax run --isolate` with a root daemon, beyond connected sockets (test/isolate.test.ts):
// unconnected senders (sendto/sendmsg/sendmmsg to VIPs and names) and UDP services inside
// isolated apps. Each functional check runs the same program without --isolate and compares;
// each confinement check runs the same probe without --isolate first, where every datagram
// arrives, then isolated, where a receiver sees none of them and the daemon's nftables table
// counts the drops.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { hookSocketFor } from '../src/common/paths';
import { ROOT, run, start, TestDaemon, type Proc } from './helpers';

/**
 * The probe: libc calls (through the hook) where the app uses ax as meant, raw system calls
 * (inline `syscall`: no hook sees them) where it tries to get around it. Prints one line per
 * step: "STEP ok", "STEP errno N (text)", or what it received.
 */
const PROBE_C = String.raw`#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "rawsys.h"

static int report(const char *what, long r) {
  if (r >= 0) { printf("%s ok\n", what); fflush(stdout); return 0; }
  printf("%s errno %d (%s)\n", what, errno, strerror(errno));
  fflush(stdout);
  return 1;
}

static struct sockaddr_in in4(const char *ip, const char *port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(port));
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

/* A message to dst with IP_PKTINFO naming src as its source address (libc sendmsg: the hook
   translates a virtual dst and keeps the app's own control data). */
static long send_pktinfo(int fd, const struct sockaddr_in *dst, const char *src, const char *text) {
  union { struct cmsghdr c; char b[CMSG_SPACE(sizeof(struct in_pktinfo))]; } pc;
  memset(&pc, 0, sizeof pc);
  struct iovec iov = {(void *)text, strlen(text)};
  struct msghdr m = {.msg_name = (void *)dst, .msg_namelen = sizeof *dst, .msg_iov = &iov, .msg_iovlen = 1,
                     .msg_control = pc.b, .msg_controllen = sizeof pc.b};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = IPPROTO_IP;
  c->cmsg_type = IP_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
  struct in_pktinfo pi;
  memset(&pi, 0, sizeof pi);
  inet_pton(AF_INET, src, &pi.ipi_spec_dst);
  memcpy(CMSG_DATA(c), &pi, sizeof pi);
  return sendmsg(fd, &m, 0);
}

/* Every raw way to aim fd at h; each datagram names its way ("x-sendto", ...). */
static void escape(int fd, const struct sockaddr_in *h, const char *tag) {
  char name[64];
  snprintf(name, sizeof name, "x-%s-sendto", tag);
  report("sendto-host", rsys6(SYS_sendto, fd, (long)name, (long)strlen(name), 0, (long)h, sizeof *h));
  char n2[64];
  snprintf(n2, sizeof n2, "x-%s-sendmsg", tag);
  struct iovec iov = {n2, strlen(n2)};
  struct msghdr m = {.msg_name = (void *)h, .msg_namelen = sizeof *h, .msg_iov = &iov, .msg_iovlen = 1};
  report("sendmsg-host", rsys6(SYS_sendmsg, fd, (long)&m, 0, 0, 0, 0));
  char n3[64];
  snprintf(n3, sizeof n3, "x-%s-sendmmsg", tag);
  struct iovec iov3 = {n3, strlen(n3)};
  struct mmsghdr mm = {.msg_hdr = {.msg_name = (void *)h, .msg_namelen = sizeof *h, .msg_iov = &iov3, .msg_iovlen = 1}};
  long r = rsys6(SYS_sendmmsg, fd, (long)&mm, 1, 0, 0, 0);
  if (r == 0) { errno = EAGAIN; r = -1; }
  report("sendmmsg-host", r);
  int zero = 0; /* the mark names the app to the daemon's table (root only may change it) */
  report("unmark", rsys6(SYS_setsockopt, fd, SOL_SOCKET, SO_MARK, (long)&zero, sizeof zero, 0));
  char n4[64];
  snprintf(n4, sizeof n4, "x-%s-unmark", tag);
  report("sendto-unmarked", rsys6(SYS_sendto, fd, (long)n4, (long)strlen(n4), 0, (long)h, sizeof *h));
}

int main(int argc, char **argv) {
  char buf[256];
  if (argc >= 8 && !strcmp(argv[1], "client")) {
    /* client TAG VIP PORT HOSTIP HOSTPORT SPOOFIP: an unconnected socket's first datagram to a
       VIP (libc sendto: the hook), its reply, then the escapes (datagrams "x-TAG-...") */
    const char *tag = argv[2];
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in v = in4(argv[3], argv[4]);
    if (report("sendto-vip", sendto(fd, "legit", 5, 0, (struct sockaddr *)&v, sizeof v))) return 2;
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
    if (n >= 0) { buf[n] = 0; printf("reply %s from %s:%d\n", buf, inet_ntoa(from.sin_addr), ntohs(from.sin_port)); }
    else report("recvfrom", n);
    char pk[64];
    snprintf(pk, sizeof pk, "x-%s-pktinfo", tag);
    report("sendmsg-pktinfo", send_pktinfo(fd, &v, argv[7], pk));
    struct sockaddr_in h = in4(argv[5], argv[6]);
    escape(fd, &h, tag);
    /* A host process that sends to this socket first (it learns the real address, printed from a
       raw getsockname) is answered with a raw sendto: a client socket's reply direction. */
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    rsys6(SYS_getsockname, fd, (long)&me, (long)&ml, 0, 0, 0);
    printf("local %s %d\n", inet_ntoa(me.sin_addr), ntohs(me.sin_port));
    fflush(stdout);
    for (;;) {
      fl = sizeof from;
      n = rsys6(SYS_recvfrom, fd, (long)buf, sizeof buf - 1, 0, (long)&from, (long)&fl);
      if (n < 0) return report("knock", n);
      buf[n] = 0;
      if (!strcmp(buf, "knock")) break;
    }
    char an[64];
    snprintf(an, sizeof an, "x-%s-answer", tag);
    report("answer-knock", rsys6(SYS_sendto, fd, (long)an, (long)strlen(an), 0, (long)&from, sizeof from));
    return 0;
  }
  if (argc >= 7 && !strcmp(argv[1], "server")) {
    /* server TAG PORT HOSTIP HOSTPORT SPOOFIP: a UDP service (libc bind of the wildcard: the
       hook); answers its first client, then tries the escapes */
    const char *tag = argv[2];
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = in4("0.0.0.0", argv[3]);
    if (report("bind", bind(fd, (struct sockaddr *)&a, sizeof a))) return 2;
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
    if (n < 0) return report("recvfrom", n);
    buf[n] = 0;
    printf("got %s from %s\n", buf, inet_ntoa(from.sin_addr));
    fflush(stdout);
    report("reply", sendto(fd, "srv-legit", 9, 0, (struct sockaddr *)&from, fl));
    char pk[64];
    snprintf(pk, sizeof pk, "x-%s-pktinfo", tag);
    report("reply-pktinfo", send_pktinfo(fd, &from, argv[6], pk));
    struct sockaddr_in h = in4(argv[4], argv[5]);
    escape(fd, &h, tag);
    return 0;
  }
  if (argc >= 6 && !strcmp(argv[1], "hold")) {
    /* hold VIP PORT REALIP REALPORT [BINDPORT]: authorized once through the hook (libc sendto to the VIP),
       then raw sendto to the backend's real address (no hook, no cache) every 100 ms; prints
       each change of outcome, ends at EPERM */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (argc >= 7) { /* BINDPORT: a UDP service's socket (libc bind: the hook) */
      struct sockaddr_in b = in4("0.0.0.0", argv[6]);
      if (report("bind", bind(fd, (struct sockaddr *)&b, sizeof b))) return 2;
    }
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in v = in4(argv[2], argv[3]), r = in4(argv[4], argv[5]);
    if (report("sendto-vip", sendto(fd, "p", 1, 0, (struct sockaddr *)&v, sizeof v))) return 2;
    int last = -1;
    for (int i = 0; i < 200; i++) {
      int e = rsys6(SYS_sendto, fd, (long)"p", 1, 0, (long)&r, sizeof r) < 0 ? errno : 0;
      if (e == 0 && recv(fd, buf, sizeof buf, 0) < 0) e = errno;
      if (e != last) { if (e) printf("raw errno %d\n", e); else printf("raw ok\n"); fflush(stdout); last = e; }
      if (e == EPERM) return 0;
      usleep(100000);
    }
    return 0;
  }
  if (argc >= 7 && !strcmp(argv[1], "escape")) {
    /* escape VIP PORT HOSTIP HOSTPORT SECONDS: authorized once through the hook (libc sendto
       to the VIP), then a raw sendto to HOSTIP:HOSTPORT every 100 ms for SECONDS, whatever
       happens to the daemon meanwhile; prints each change of outcome */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in v = in4(argv[2], argv[3]), h = in4(argv[4], argv[5]);
    if (report("sendto-vip", sendto(fd, "p", 1, 0, (struct sockaddr *)&v, sizeof v))) return 2;
    int last = -1;
    for (int i = 0; i < atoi(argv[6]) * 10; i++) {
      char m[32];
      snprintf(m, sizeof m, "esc-%d", i);
      int e = rsys6(SYS_sendto, fd, (long)m, (long)strlen(m), 0, (long)&h, sizeof h) < 0 ? errno : 0;
      if (e != last) { if (e) printf("esc errno %d\n", e); else printf("esc ok\n"); fflush(stdout); last = e; }
      usleep(100000);
    }
    return 0;
  }
  fprintf(stderr, "usage: probe client TAG VIP PORT HOSTIP HOSTPORT SPOOFIP | server TAG PORT HOSTIP HOSTPORT SPOOFIP | hold VIP PORT REALIP REALPORT [BINDPORT] | escape VIP PORT HOSTIP HOSTPORT SECONDS\n");
  return 2;
}
`;

/** An echo service (NAME PORT [BIND-ADDRESS], default the wildcard): answers "NAME:payload" to
 *  whoever sent, and prints what it got and from where. */
const ECHO_PY = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[3] if len(sys.argv) > 3 else '0.0.0.0', int(sys.argv[2]))); print('bound', flush=True)
while True:
  m, a = s.recvfrom(200); print('got', m.decode(), 'from', a[0], flush=True); s.sendto(sys.argv[1].encode() + b':' + m, a)
`;

/** An unconnected client: one socket, datagrams to two services by name, both replies with the
 *  address recvfrom shows; a datagram to a server on the namespace's own loopback (the socket
 *  moves back there); then a service again; sendmsg; an asyncio endpoint (epoll) by VIP. */
const CLIENT_PY = `
import socket, sys
lo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); lo.bind(('127.0.0.1', 0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
def ask(names):
  for n in names: s.sendto(('hi-' + n).encode(), (n, 7000))
  got = sorted(s.recvfrom(200) for _ in names)
  for m, a in got: print('reply', m.decode(), 'from', a[0], a[1])
ask(['ua', 'ub'])
s.sendto(b'local', lo.getsockname()); m, a = lo.recvfrom(100); print('loopback got', m.decode(), 'from', a[0]); lo.sendto(b'back', a)
m, a = s.recvfrom(100); print('loopback reply', m.decode(), 'from', a[0])
ask(['ub'])
mm = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); mm.settimeout(3)
mm.sendmsg([b'via-sendmsg'], [], 0, ('ua', 7000)); m, a = mm.recvfrom(200); print('sendmsg reply', m.decode(), 'from', a[0], a[1])
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3); c.connect(('ua', 7000))
c.sendto(b'conn-sendto', ('ub', 7000))  # a connected socket may send elsewhere (the reply is not for it)
c.send(b'conn-again'); print('connected reply', c.recv(200).decode(), 'peer', c.getpeername()[0])
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); v6.settimeout(3)
v6.sendto(b'v6', ('::ffff:10.1.0.11', 7000)); m, a = v6.recvfrom(200); print('v6 reply', m.decode(), 'from', a[0], a[1])
import asyncio  # an event loop registers the socket with epoll before its first datagram
async def main():
  loop = asyncio.get_running_loop(); got = loop.create_future()
  class P(asyncio.DatagramProtocol):
    def datagram_received(self, m, a):
      if not got.done(): got.set_result((m, a))
  tr, _ = await loop.create_datagram_endpoint(P, family=socket.AF_INET)
  tr.sendto(b'via-asyncio', ('10.1.0.12', 7000))
  m, a = await asyncio.wait_for(got, 3); print('asyncio reply', m.decode(), 'from', a[0], a[1])
asyncio.run(main())
`;

const work = mkdtempSync(join(tmpdir(), 'ax-isolate-udp-test-'));
chmodSync(work, 0o755);
t.teardown(() => rmSync(work, { recursive: true, force: true }));
writeFileSync(join(work, 'probe.c'), PROBE_C);
const PROBE = join(work, 'probe');
execFileSync('cc', ['-O1', '-I', join(ROOT, 'test', 'c'), '-o', PROBE, join(work, 'probe.c')]);
writeFileSync(join(work, 'echo.py'), ECHO_PY);
writeFileSync(join(work, 'client.py'), CLIENT_PY);

/** A receiver on the test namespace's loopback, outside ax: what escapes the confinement lands here. */
async function hostReceiver(tt: Parameters<typeof start>[3]): Promise<{ port: number; p: Proc }> {
  const p = start('python3', ['-c', "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); print('port', s.getsockname()[1], flush=True)\nwhile True:\n  m, a = s.recvfrom(200); print('udp got', m.decode(), flush=True)"], {}, tt);
  return { port: Number((await p.waitFor(/port (\d+)/))[1]), p };
}

t.test('isolated UDP with a root daemon: unconnected senders and services', async (t) => {
  if (process.getuid?.() !== 0) throw new Error('this test needs root (the test runner runs as root)');
  const d = await TestDaemon.start(t);
  const table = `ax_egress_${createHash('sha256').update(hookSocketFor(d.socket)).digest().subarray(0, 4).toString('hex')}`;
  /** The drop counter of this daemon's table. */
  const drops = () => Number(/counter packets (\d+)/.exec(execFileSync('nft', ['list', 'table', 'inet', table], { encoding: 'utf8' }))?.[1] ?? NaN);
  t.ok(Number.isFinite(drops()), `the daemon keeps its nftables table ${table} with a drop counter`);
  const ua = d.run(['--name', 'ua', '--ip', '10.1.0.11'], ['python3', join(work, 'echo.py'), 'ua', '7000']);
  const ub = d.run(['--isolate', '--name', 'ub', '--ip', '10.1.0.12'], ['python3', join(work, 'echo.py'), 'ub', '7000']);
  await Promise.all([ua.waitFor(/bound/), ub.waitFor(/bound/)]);
  await d.until('ub as a udp service', async () => (await d.get('services')).filter((s) => s.name === 'ub' && s.proto === 'udp').length === 1);
  t.pass('an isolated app\'s UDP bind of the wildcard is an ax udp service');

  await t.test('unconnected senders: the same client without and with --isolate', async (t) => {
    const [nat, iso] = await Promise.all([
      d.run(['--ip', '10.1.0.31'], ['python3', join(work, 'client.py')]).result(),
      d.run(['--isolate', '--ip', '10.1.0.32'], ['python3', join(work, 'client.py')]).result(),
    ]);
    const want = [
      'reply ua:hi-ua from 10.1.0.11 7000',
      'reply ub:hi-ub from 10.1.0.12 7000',
      'loopback got local from 127.0.0.1',
      'loopback reply back from 127.0.0.1',
      'reply ub:hi-ub from 10.1.0.12 7000',
      'sendmsg reply ua:via-sendmsg from 10.1.0.11 7000',
      'connected reply ua:conn-again peer 10.1.0.11',
      'v6 reply ua:v6 from ::ffff:10.1.0.11 7000',
      'asyncio reply ub:via-asyncio from 10.1.0.12 7000',
    ].join('\n') + '\n';
    t.equal(nat.stdout, want, `without --isolate (${nat.stderr})`);
    t.equal(iso.stdout, nat.stdout, `isolated: one socket reaches both services (plain and isolated), sees their VIPs, and its own loopback (${iso.stderr})`);
    // The services saw each client's own VIP (identity by source address, isolated or not).
    await ua.waitFor(/got hi-ua from 10\.1\.0\.32/, 5000);
    await ub.waitFor(/got hi-ub from 10\.1\.0\.31/, 5000);
    await ub.waitFor(/got hi-ub from 10\.1\.0\.32/, 5000);
    await ub.waitFor(/got conn-sendto from 10\.1\.0\.31/, 5000);
    await ub.waitFor(/got conn-sendto from 10\.1\.0\.32/, 5000);
    t.pass('the services saw each client\'s VIP');
    const socat = await d.run(['--isolate'], ['sh', '-c', 'echo hits:1 | socat -t 1 - UDP-SENDTO:ua:7000']).result();
    t.equal(socat.code, 0, `isolated socat UDP-SENDTO by name (${socat.stderr})`);
    await ua.waitFor(/got hits:1\n from 10\./, 5000);
    t.pass('its datagram arrived');
  });

  await t.test('UDP services inside isolated apps, reached by name from plain and isolated clients', async (t) => {
    const stats = d.run(['--isolate', '--name', 'stats'], ['socat', '-u', 'UDP-RECV:8125', 'STDOUT']);
    // The same echo server, bound to its VIP, without and with --isolate: what it saw and its replies.
    const srvNat = d.run(['--name', 'en', '--ip', '10.1.0.21'], ['python3', join(work, 'echo.py'), 'en', '7100', '10.1.0.21']);
    const srvIso = d.run(['--isolate', '--name', 'ei', '--ip', '10.1.0.22'], ['python3', join(work, 'echo.py'), 'ei', '7100', '10.1.0.22']);
    await Promise.all([srvNat.waitFor(/bound/), srvIso.waitFor(/bound/)]);
    await d.until('stats as a udp service', async () => (await d.get('services')).some((s) => s.name === 'stats' && s.proto === 'udp'));
    const send = (iso: string[], what: string) => d.run(iso, ['sh', '-c', `echo ${what} | socat -t 1 - UDP-SENDTO:stats:8125`]).result();
    const ask = (iso: string[], ip: string, name: string) =>
      d.run([...iso, '--ip', ip], ['python3', '-c', `import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\ns.sendto(b'q', ('${name}', 7100)); m, a = s.recvfrom(100); print(m.decode(), a[0], a[1])`]).result();
    const [a, b, ...r] = await Promise.all([
      send([], 'hits:plain'),
      send(['--isolate'], 'hits:isolated'),
      ask([], '10.1.0.41', 'en'),
      ask([], '10.1.0.42', 'ei'),
      ask(['--isolate'], '10.1.0.43', 'en'),
      ask(['--isolate'], '10.1.0.44', 'ei'),
    ]);
    t.same([a!.code, b!.code], [0, 0], `${a!.stderr}${b!.stderr}`);
    await stats.waitFor(/hits:plain/, 5000);
    await stats.waitFor(/hits:isolated/, 5000);
    t.pass('socat UDP-RECV in an isolated app receives from both');
    t.equal(r[0]!.stdout, 'en:q 10.1.0.21 7100\n', `plain -> plain (${r[0]!.stderr})`);
    t.equal(r[1]!.stdout, 'ei:q 10.1.0.22 7100\n', `plain -> isolated: the reply shows the server's VIP (${r[1]!.stderr})`);
    t.equal(r[2]!.stdout, 'en:q 10.1.0.21 7100\n', `isolated -> plain (${r[2]!.stderr})`);
    t.equal(r[3]!.stdout, 'ei:q 10.1.0.22 7100\n', `isolated -> isolated (${r[3]!.stderr})`);
    await srvNat.waitFor(/got q from 10\.1\.0\.41[\s\S]*got q from 10\.1\.0\.43|got q from 10\.1\.0\.43[\s\S]*got q from 10\.1\.0\.41/, 5000);
    await srvIso.waitFor(/got q from 10\.1\.0\.42[\s\S]*got q from 10\.1\.0\.44|got q from 10\.1\.0\.44[\s\S]*got q from 10\.1\.0\.42/, 5000);
    t.pass('both servers saw their clients\' VIPs in recvfrom');
    stats.killGroup();
    srvNat.killGroup();
    srvIso.killGroup();
  });

  await t.test('confinement: the unconnected host socket and a service socket reach nothing else', async (t) => {
    const { port: hostPort, p: recv } = await hostReceiver(t);
    const ways = ['sendto', 'sendmsg', 'sendmmsg', 'unmark'];
    const before = drops();
    const seenUa = ua.stdout.length;
    // The client probe; once it prints its real address, a host process knocks there and waits for an answer.
    const client = async (iso: string[], tag: string) => {
      const p = d.run(iso, [PROBE, 'client', tag, '10.1.0.11', '7000', '127.0.0.1', String(hostPort), '127.0.0.9']);
      const [, ip, port] = await p.waitFor(/^local (\S+) (\d+)$/m);
      const knock = await run('python3', ['-c', `import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.sendto(b'knock', ('${ip}', ${port}))\ntry: print('knocker got', s.recv(100).decode())\nexcept OSError: print('knocker got nothing')`]);
      return { ...(await p.result()), knock: knock.stdout };
    };
    // The service probe answers its client, then tries the same; natively and isolated at once.
    const server = (iso: string[], tag: string, name: string) => d.run([...iso, '--name', name], [PROBE, 'server', tag, '7200', '127.0.0.1', String(hostPort), '127.0.0.9']);
    const ask = (name: string) => d.run(['--ip', '10.1.0.51'], ['python3', '-c', `import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\ns.sendto(b'hello', ('${name}', 7200))\ntry:\n  while True: m, a = s.recvfrom(100); print('client got', m.decode(), a[0], flush=True)\nexcept OSError: pass`]).result();
    const sn = server([], 'sn', 'pn');
    const si = server(['--isolate'], 'si', 'pi');
    const [nat, iso] = await Promise.all([client([], 'cn'), client(['--isolate'], 'ci'), sn.waitFor(/^bind ok$/m), si.waitFor(/^bind ok$/m)]);
    const [cn, ci] = await Promise.all([ask('pn'), ask('pi')]);
    await Promise.all([sn.exited, si.exited]);

    // Natively every escape and every chosen source arrive.
    t.match(nat!.stdout, /^reply ua:legit from 10\.1\.0\.11:7000$/m, `natively: the reply (${nat!.stderr})`);
    for (const w of ways) await recv.waitFor(new RegExp(`udp got x-cn-${w}$`, 'm'), 5000);
    await ua.waitFor(/got x-cn-pktinfo from 127\.0\.0\.9/, 5000);
    t.pass('natively every escape reaches the host receiver, and a chosen source reaches the service');
    t.equal(nat!.knock, 'knocker got x-cn-answer\n', 'natively the socket answers a host process that sent to it first');
    t.match(sn.stdout, /^got hello from 10\.1\.0\.51$/m, 'natively: the server sees the client\'s VIP');
    t.match(cn.stdout, /^client got srv-legit /m, 'natively: its reply arrives');
    t.match(cn.stdout, /^client got x-sn-pktinfo 127\.0\.0\.9$/m, 'natively: so does a reply from a chosen source');
    for (const w of ways) await recv.waitFor(new RegExp(`udp got x-sn-${w}$`, 'm'), 5000);
    t.pass('natively the server socket\'s escapes reach the host receiver');

    // Isolated: the legitimate traffic only.
    t.match(iso!.stdout, /^reply ua:legit from 10\.1\.0\.11:7000$/m, `isolated: the reply, from the VIP (${iso!.stderr})`);
    t.match(iso!.stdout, /^sendmsg-pktinfo errno 1 /m, 'isolated: to the service from another source (IP_PKTINFO): EPERM');
    for (const s of ['sendto-host', 'sendmsg-host', 'sendmmsg-host', 'sendto-unmarked']) t.match(iso!.stdout, new RegExp(`^${s} errno 1 `, 'm'), `isolated: ${s}: EPERM`);
    t.match(iso!.stdout, /^unmark errno 1 /m, 'the mark cannot be cleared from inside');
    t.match(iso!.stdout, /^answer-knock errno 1 /m, 'isolated: a client socket cannot answer a host process that sent to it first (EPERM)');
    t.equal(iso!.knock, 'knocker got nothing\n', 'and nothing arrives there');
    t.match(si.stdout, /^got hello from 10\.1\.0\.51$/m, `isolated: the server sees the client's VIP (${si.stderr})`);
    t.match(ci.stdout, /^client got srv-legit 10\.\d+\.\d+\.\d+$/m, 'isolated: its reply arrives (the reply direction of the flow)');
    t.notMatch(ci.stdout, /x-si-pktinfo/, 'isolated: a reply from a chosen source does not');
    t.match(si.stdout, /^reply-pktinfo errno 1 /m, 'isolated: it gets EPERM');
    for (const s of ['sendto-host', 'sendmsg-host', 'sendmmsg-host', 'sendto-unmarked']) t.match(si.stdout, new RegExp(`^${s} errno 1 `, 'm'), `isolated server: ${s}: EPERM`);
    t.match(si.stdout, /^unmark errno 1 /m, 'isolated server: the mark cannot be cleared');
    // A marker sent natively after the runs: anything the isolated probes got through would be before it.
    await run('python3', ['-c', `import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'marker', ('127.0.0.1', ${hostPort}))`]);
    await recv.waitFor(/udp got marker$/m, 5000);
    t.notMatch(recv.stdout, /udp got x-ci-/, 'nothing the isolated client sent reached the host receiver');
    t.notMatch(recv.stdout, /udp got x-si-/, 'nothing the isolated server sent reached the host receiver');
    t.notMatch(ua.stdout.slice(seenUa), /x-ci-pktinfo/, 'nor the service from a chosen source address');
    t.ok(drops() >= before + 11, `the table counted the drops (${before} -> ${drops()})`);
  });

  await t.test('a rule that denies a flow revokes it, for an unconnected sender and a service socket', async (t) => {
    // Raw sends to the backend's real address after one hooked send: only the set element lets
    // them out (for the service socket, conntrack knows the flow too: it is the app's own, in
    // the original direction, which no reply rule covers).
    const svc = (await d.get('services')).find((s) => s.name === 'ua' && s.proto === 'udp')!;
    const hold = (name: string, more: string[]) => d.run(['--isolate', '--name', name], [PROBE, 'hold', '10.1.0.11', '7000', String(svc.host_ip), String(svc.host_port), ...more]);
    const sender = hold('udpc', []);
    const server = hold('udps', ['7300']);
    await Promise.all([sender.waitFor(/^raw ok$/m, 10_000), server.waitFor(/^raw ok$/m, 10_000)]);
    t.pass(`authorized once, both reach the backend's real address ${svc.host_ip}:${svc.host_port} with raw sends`);
    t.match(server.stdout, /^bind ok$/m);
    const add = await d.ax(['policy', 'add', 'no-udpc', 'deny', '--from', 'ax.name in (udpc, udps)', '--to', 'ax.name=ua']);
    t.equal(add.code, 0, `policy add (${add.stderr})`);
    await Promise.all([sender.waitFor(/^raw errno 1$/m, 10_000), server.waitFor(/^raw errno 1$/m, 10_000)]);
    t.pass('a rule that denies the flows: their sends get EPERM (the elements left the set)');
    t.equal((await d.ax(['policy', 'rm', 'no-udpc'])).code, 0);
    sender.killGroup();
    server.killGroup();
  });

  await t.test('a daemon stopped while an isolated app holds a marked socket leaves it confined', async (t) => {
    const { port: hostPort, p: recv } = await hostReceiver(t);
    const esc = d.run(['--isolate', '--name', 'esc'], [PROBE, 'escape', '10.1.0.11', '7000', '127.0.0.1', String(hostPort), '6']);
    await esc.waitFor(/^esc errno 1$/m, 10_000);
    t.pass('with the daemon up, its raw sends to a host receiver get EPERM');
    await d.stop(); // graceful: the path that used to delete the table
    await new Promise((r) => setTimeout(r, 1500));
    await run('python3', ['-c', `import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'marker', ('127.0.0.1', ${hostPort}))`]);
    await recv.waitFor(/udp got marker$/m, 5000);
    t.notMatch(recv.stdout, /udp got esc-/, 'nothing the isolated app sent while the daemon was away reached the host receiver');
    t.notMatch(esc.stdout, /^esc ok$/m, 'every raw send failed (EPERM)');
    t.match(execFileSync('nft', ['list', 'tables', 'inet'], { encoding: 'utf8' }), new RegExp(`table inet ${table}\\b`), 'the table stayed');
    esc.killGroup();
  });
  ua.killGroup();
  ub.killGroup();
});
