// `ax doctor`: what this host supports, and what ax will do with it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { canConfine } from '../daemon/trust';
import { SockDiag } from '../hookserver/sockdiag';
import { bool, parseFlags, str, UsageError, type FlagSpec } from './args';
import { confineProgram, dnsRelayProgram, findInPath, hookLibrary } from './run';

export const DOCTOR_USAGE = `usage: ax doctor [-o json]

Reports what this host supports for ax (kernel version, unprivileged user namespaces,
seccomp user notification, Landlock, sock_diag, socket filters, the hook library and the
programs --isolate needs) and what ax will do here. Exit status 0 whatever the findings.

flags:
  -o, --output FORMAT     text (default) or json
`;

const SPECS: FlagSpec[] = [
  { name: 'output', short: 'o', kind: 'string' },
  { name: 'help', short: 'h', kind: 'bool' },
];

/** One finding: what was checked, whether it is there, and the detail (a value or the reason). */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** The whole report: the checks, then what ax does on this host, in sentences. */
export interface DoctorReport {
  kernel: string;
  uid: number;
  checks: Check[];
  verdicts: string[];
}

function readTrim(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** [major, minor] of a kernel release string ("6.18.44-fc" → [6, 18]). */
export function kernelVersion(rel: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/** Runs a trial command; ok when it exits 0, with its stderr (first line) otherwise. */
function trial(cmd: string, args: string[]): { ok: boolean; why: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  if (r.error) return { ok: false, why: r.error.message };
  return { ok: r.status === 0, why: (r.stderr || '').trim().split('\n')[0] || `exit status ${r.status}` };
}

/** Gathers the report (runs a few trial commands: unshare, a netlink socket, a socket filter). */
export function doctorReport(): DoctorReport {
  const rel = release();
  const [maj, min] = kernelVersion(rel);
  const uid = process.getuid?.() ?? -1;
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

  add('kernel', maj > 5 || (maj === 5 && min >= 9), `${rel}${maj > 5 || (maj === 5 && min >= 9) ? '' : ' (older than 5.9)'}`);

  const maxUserNs = readTrim('/proc/sys/user/max_user_namespaces');
  add('user.max_user_namespaces', maxUserNs !== null && Number(maxUserNs) > 0, maxUserNs ?? 'not present');
  const clone = readTrim('/proc/sys/kernel/unprivileged_userns_clone');
  if (clone !== null) add('kernel.unprivileged_userns_clone', clone === '1', clone);
  const apparmor = readTrim('/proc/sys/kernel/apparmor_restrict_unprivileged_userns');
  if (apparmor !== null) add('kernel.apparmor_restrict_unprivileged_userns', apparmor === '0', apparmor);

  const unshare = findInPath('unshare', process.env.PATH);
  const setpriv = findInPath('setpriv', process.env.PATH);
  for (const [tool, pkg] of [['unshare', 'util-linux'], ['setpriv', 'util-linux'], ['mount', 'util-linux'], ['ip', 'iproute2']]) {
    const at = findInPath(tool, process.env.PATH);
    add(`program ${tool}`, at !== null, at ?? `not found (package ${pkg})`);
  }
  if (unshare) {
    const me = trial(unshare, ['-U', '-n', 'true']);
    add(`unshare -U -n as uid ${uid}`, me.ok, me.ok ? 'works' : me.why);
    if (uid === 0 && setpriv) {
      const nobody = trial(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', unshare, '-U', '-n', 'true']);
      add('unshare -U -n as nobody (an ordinary user)', nobody.ok, nobody.ok ? 'works' : nobody.why);
    }
  }

  const actions = readTrim('/proc/sys/kernel/seccomp/actions_avail');
  const notif = actions !== null && actions.split(/\s+/).includes('user_notif');
  const addfd = maj > 5 || (maj === 5 && min >= 9);
  add('seccomp user notification', notif && addfd, actions === null ? 'no /proc/sys/kernel/seccomp/actions_avail' : notif ? (addfd ? 'user_notif, with SECCOMP_IOCTL_NOTIF_ADDFD (5.9+)' : 'user_notif, but no ADDFD (kernel < 5.9)') : 'user_notif not available');

  try {
    const diag = new SockDiag();
    const n = diag.dump(2, 1 << 10).length;
    diag.close();
    add('sock_diag (NETLINK_SOCK_DIAG)', true, `works (${n} listening IPv4 sockets here)`);
  } catch (e) {
    add('sock_diag (NETLINK_SOCK_DIAG)', false, (e as Error).message);
  }

  const filters = canConfine();
  add(`socket filters (SO_ATTACH_FILTER) as uid ${uid}`, filters, filters ? 'allowed' : 'refused by the kernel');

  try {
    const lib = hookLibrary();
    add('hook library (LD_PRELOAD)', true, lib);
    const relay = dnsRelayProgram(lib);
    add('DNS relay (ax-dnsrelay, for --isolate)', relay !== null, relay ?? `missing beside ${lib}: isolated programs with their own resolver get no answers (npm run build)`);
    const confine = confineProgram(lib);
    if (!confine) add('ax-confine (Landlock TCP rules + seccomp user notification, for --isolate)', false, `missing beside ${lib} (npm run build)`);
    else {
      // ax-confine --probe: "landlock_abi N", "user_notif yes|no", "confine yes|no"
      const p = spawnSync(confine, ['--probe'], { encoding: 'utf8', timeout: 5000 });
      const abi = Number(/^landlock_abi (\d+)$/m.exec(p.stdout ?? '')?.[1] ?? 0);
      const ok = /^confine yes$/m.test(p.stdout ?? '');
      add('ax-confine (Landlock TCP rules + seccomp user notification, for --isolate)', ok, ok ? `Landlock ABI ${abi}: ${confine}` : `Landlock ABI ${abi} (TCP rules need 4, Linux 6.7)${/^user_notif no$/m.test(p.stdout ?? '') ? ', no seccomp user notification' : ''}`);
    }
  } catch (e) {
    add('hook library (LD_PRELOAD)', false, (e as Error).message);
  }

  const get = (name: string) => checks.find((c) => c.name.startsWith(name));
  const landlockOk = get('ax-confine')?.ok ?? false;
  const filterCheck = get('socket filters');
  if (filterCheck && !filters) {
    filterCheck.detail = landlockOk
      ? 'refused by the kernel (unprivileged classic BPF is off): for --isolate, Landlock and ax-confine confine handed-in TCP sockets instead; UDP: see below'
      : 'refused by the kernel (unprivileged classic BPF is off), and no Landlock TCP rules: handed-in TCP sockets of a daemon of this uid are not confined';
  }
  // UDP for isolated apps: a host UDP socket can be re-aimed by sendto alone; only a root
  // daemon confines it (SO_MARK + an nftables table, src/daemon/udpegress.ts).
  const nft = findInPath('nft', `${process.env.PATH ?? ''}:/usr/sbin:/sbin`);
  const udpOk = uid === 0 && nft !== null;
  add(
    'UDP for isolated apps (SO_MARK + nftables)',
    udpOk,
    uid !== 0
      ? `not for uid ${uid}: a rootless daemon hands isolated apps no UDP socket (Landlock has no UDP rules up to ABI 9; SO_MARK and nftables need root)`
      : nft
        ? `a root daemon marks each UDP socket it hands in and drops what it sends to anything but the destinations policy allowed the app and replies to its clients (${nft})`
        : 'no nft program (package nftables): isolated apps get no host UDP socket',
  );
  const verdicts: string[] = [];
  const hook = get('hook library')?.ok;
  verdicts.push(hook ? 'ax run: programs linked dynamically against libc are mediated by the preloaded hook.' : 'ax run: the hook library is missing: ax run cannot work (npm run build).');
  verdicts.push('ax run: static and Go programs are not mediated (ax run warns): without --isolate they use the network natively; under --isolate they have only their own loopback.');
  const tools = ['unshare', 'setpriv', 'mount', 'ip'].every((t) => get(`program ${t}`)?.ok);
  const userns = get(`unshare -U -n as uid ${uid}`)?.ok ?? false;
  if (!tools) verdicts.push('ax run --isolate: unavailable (a program it needs is missing, see above).');
  else if (uid === 0) verdicts.push('ax run --isolate: available for root: new network, mount and pid namespaces (no user namespace: every uid exists inside; the app keeps only the capabilities servers need to drop privileges).');
  else if (!userns) verdicts.push(`ax run --isolate: unavailable for uid ${uid} (user namespaces are refused: see above).`);
  else verdicts.push(`ax run --isolate: available for uid ${uid}: new user, network, mount and pid namespaces, no root needed.`);
  const nobody = get('unshare -U -n as nobody');
  if (nobody) verdicts.push(`ax run --isolate for ordinary users (rootless daemon): ${nobody.ok ? 'available' : 'unavailable'}.`);
  const landlock = get('ax-confine')?.ok ?? false;
  verdicts.push(
    landlock
      ? `Sockets handed to isolated apps are confined by ax-confine: Landlock refuses every TCP connect the app makes itself, a seccomp supervisor makes its loopback ones${filters ? '; this uid\'s daemon also locks a socket filter on each' : ''}. TCP Fast Open sends get EOPNOTSUPP and io_uring ENOSYS inside.`
      : filters
        ? 'Sockets a daemon of this uid hands to isolated apps are confined (a locked socket filter: they cannot be re-aimed).'
        : 'Sockets a daemon of this uid hands to isolated apps are NOT confined (no Landlock TCP rules, and the kernel refuses socket filters to it): a raw connect(AF_UNSPEC) and connect() can re-aim one at any host address. Run the daemon as root for enforcement.',
  );
  verdicts.push(
    udpOk
      ? 'UDP: an isolated app gets host UDP sockets from a root daemon, marked: one connected to the backend when it connects a UDP socket to a service (by name or VIP), an unconnected one at the first datagram an unconnected socket sends to a VIP (each new destination allowed once by policy), and one bound as a udp service when it binds a UDP port (reachable by name; it may answer its clients). What they send elsewhere (sendto, sendmsg, sendmmsg, another source address) is dropped by the daemon\'s nftables table (EPERM).'
      : `UDP: isolated apps ${uid === 0 ? 'of a root daemon without nft' : 'of a rootless daemon'} get no host UDP socket (a host UDP socket can be re-aimed by a plain sendto; Landlock has no UDP rules up to ABI 9, and the mark that confines it needs root): datagrams to VIPs fail with ENETUNREACH; names resolve through the hook and the namespace's DNS relay.`,
  );
  verdicts.push(get('sock_diag')?.ok ? 'Services live as long as their kernel sockets (sock_diag).' : 'Without sock_diag a service ends with the process that bound it.');
  verdicts.push(`seccomp user notification is ${get('seccomp')?.ok ? 'supported here' : 'not supported here'}; ax uses it under --isolate for connect(2) (ax-confine), not to mediate static and Go programs (they stay unmediated).`);
  return { kernel: rel, uid, checks, verdicts };
}

/** `ax doctor [-o json]`. */
export function doctorMain(argv: string[]): number {
  const p = parseFlags(argv, SPECS);
  if (bool(p, 'help')) {
    process.stdout.write(DOCTOR_USAGE);
    return 0;
  }
  if (p.rest.length > 0) throw new UsageError(`ax doctor takes no arguments (got "${p.rest[0]}")`);
  const fmt = str(p, 'output') ?? 'text';
  if (fmt !== 'text' && fmt !== 'json') throw new UsageError(`-o "${fmt}": use text or json`);
  const r = doctorReport();
  if (fmt === 'json') {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return 0;
  }
  const w = Math.max(...r.checks.map((c) => c.name.length));
  let out = `ax doctor (kernel ${r.kernel}, uid ${r.uid})\n\n`;
  for (const c of r.checks) out += `  ${c.ok ? 'ok  ' : 'no  '} ${c.name.padEnd(w)}  ${c.detail}\n`;
  out += '\nwhat ax does here:\n';
  for (const v of r.verdicts) out += `  - ${v}\n`;
  process.stdout.write(out);
  return 0;
}
