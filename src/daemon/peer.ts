// Who is at the other end of a unix socket, as the kernel says (SO_PEERCRED,
// SO_PEERGROUPS), and the API's access rules built on it.
import { execFileSync } from 'node:child_process';
import { getsockoptRaw, peerCred } from '../hookserver/libc';

const SOL_SOCKET = 1;
const SO_PEERGROUPS = 59;
const ERANGE = 34;

/** The kernel's credentials of a unix-socket peer, taken when it connected. */
export interface PeerCred {
  pid: number;
  uid: number;
  /** primary (effective) gid */
  gid: number;
  /** supplementary groups (SO_PEERGROUPS); empty when the kernel cannot say */
  groups: number[];
}

/**
 * Reads SO_PEERCRED (and SO_PEERGROUPS) of the connected unix socket `fd`.
 * Throws an Error naming the failed call (e.g. ENOTSOCK for a bad fd).
 */
export function peerCredOf(fd: number): PeerCred {
  const cred: PeerCred = { ...peerCred(fd), groups: [] };
  let size = 64 * 4;
  for (let tries = 0; tries < 3; tries++) {
    const g = getsockoptRaw(fd, SOL_SOCKET, SO_PEERGROUPS, size);
    if (typeof g !== 'number') {
      for (let i = 0; i + 4 <= g.length; i += 4) cred.groups.push(g.readUInt32LE(i));
      break;
    }
    if (g !== ERANGE) break;
    size = 65536 * 4; // NGROUPS_MAX groups
  }
  return cred;
}

/** The fd under a net.Socket of a unix connection, or -1. */
export function socketFd(sock: unknown): number {
  const h = (sock as { _handle?: { fd?: number } })._handle;
  return typeof h?.fd === 'number' ? h.fd : -1;
}

const nameCache = new Map<number, string>();

/** A user's login name ("root"), or the uid as text when it has none (cached; uses getent, so NSS users count). */
export function userName(uid: number): string {
  let n = nameCache.get(uid);
  if (n !== undefined) return n;
  n = String(uid);
  try {
    const line = execFileSync('getent', ['passwd', String(uid)], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    const name = line.split(':')[0];
    if (name) n = name;
  } catch {
    /* unknown uid: keep the number */
  }
  nameCache.set(uid, n);
  return n;
}

/**
 * Resolves a group given by name or number to its gid. Throws with a clear
 * message when the group does not exist.
 */
export function resolveGroup(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  try {
    const line = execFileSync('getent', ['group', group], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    const gid = Number(line.split(':')[2]);
    if (Number.isInteger(gid)) return gid;
  } catch {
    /* fall through */
  }
  throw new Error(`group "${group}" does not exist`);
}

/** Resolves a user given by name or number to its uid; throws when unknown. */
export function resolveUser(user: string): number {
  if (/^\d+$/.test(user)) return Number(user);
  try {
    const line = execFileSync('getent', ['passwd', user], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    const uid = Number(line.split(':')[2]);
    if (Number.isInteger(uid)) return uid;
  } catch {
    /* fall through */
  }
  throw new Error(`user "${user}" does not exist`);
}

/** True when the peer is in group `gid` (primary or supplementary). */
export function inGroup(p: PeerCred, gid: number): boolean {
  return p.gid === gid || p.groups.includes(gid);
}

/**
 * Who may call what on the API:
 *  - reads (status, lists): root, the daemon's own uid, and members of the
 *    --api-group;
 *  - daemon-wide calls (Shutdown): root and the daemon's own uid;
 *  - changes to an app (re-attaching to it): its owner uid, root, the daemon's uid.
 * Each check returns null when allowed, else the reason for PERMISSION_DENIED.
 */
export class ApiAccess {
  constructor(
    /** uid the daemon runs as */
    readonly daemonUid: number,
    /** --api-group: its name and gid, when given */
    readonly apiGroup?: { name: string; gid: number },
  ) {}

  private admin(p: PeerCred): boolean {
    return p.uid === 0 || p.uid === this.daemonUid;
  }

  /** May `p` read the daemon's status and tables? */
  read(p: PeerCred): string | null {
    if (this.admin(p) || (this.apiGroup && inGroup(p, this.apiGroup.gid))) return null;
    const who = `uid ${p.uid} (${userName(p.uid)})`;
    const allowed = (this.daemonUid === 0 ? 'root' : `root, uid ${this.daemonUid} (${userName(this.daemonUid)})`) + (this.apiGroup ? ` and members of group ${this.apiGroup.name}` : '');
    return `${who} may not read this daemon's table: allowed are ${allowed}` + (this.apiGroup ? '' : ' (the operator can allow a group with ax daemon --api-group GROUP)');
  }

  /** May `p` make daemon-wide changes (stop the daemon)? `what` names the action. */
  daemonWide(p: PeerCred, what: string): string | null {
    if (this.admin(p)) return null;
    return `uid ${p.uid} (${userName(p.uid)}) may not ${what}: only root or the daemon's user (uid ${this.daemonUid}, ${userName(this.daemonUid)}) may`;
  }

  /** May `p` change an app owned by `owner` (undefined: unknown owner, e.g. state from an older version)? */
  changeApp(p: PeerCred, appId: string, owner: number | undefined): string | null {
    if (this.admin(p) || (owner !== undefined && p.uid === owner)) return null;
    return `uid ${p.uid} (${userName(p.uid)}) may not change app ${appId}: it belongs to ${owner === undefined ? 'an unknown user' : `uid ${owner} (${userName(owner)})`}`;
  }
}
