// Default locations: state in $XDG_STATE_HOME/ax (or ~/.local/state/ax; /var/lib/ax
// for root), sockets in $XDG_RUNTIME_DIR/ax (or /run/ax for root, /tmp/ax-$UID else).
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

export function defaultStateDir(env = process.env): string {
  if (env.AX_STATE_DIR) return env.AX_STATE_DIR;
  if (env.XDG_STATE_HOME) return join(env.XDG_STATE_HOME, 'ax');
  if (isRoot()) return '/var/lib/ax';
  return join(homedir(), '.local', 'state', 'ax');
}

export function defaultRunDir(env = process.env): string {
  if (env.AX_RUN_DIR) return env.AX_RUN_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'ax');
  if (isRoot()) return '/run/ax';
  return privateTmpDir(`/tmp/ax-${process.getuid?.() ?? 'user'}`);
}

/**
 * The fallback socket directory in /tmp (no XDG_RUNTIME_DIR): anyone can create a name
 * there first, and whoever owns the directory can replace the sockets in it with a fake
 * daemon's. So it is made 0700 when missing, and an existing one is used only when it is
 * a real directory (not a symlink) owned by this uid that nobody else may write.
 * Throws an Error saying what is wrong and what to do.
 */
export function privateTmpDir(dir: string): string {
  const uid = process.getuid?.() ?? -1;
  for (let attempt = 0; attempt < 2; attempt++) {
    let st;
    try {
      st = lstatSync(dir);
    } catch {
      try {
        mkdirSync(dir, { mode: 0o700 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot make ${dir}: ${(e as Error).message}`);
      }
      continue; // check what is there now (made by us, or by someone faster)
    }
    const fix = `set XDG_RUNTIME_DIR to a directory of your own (or AX_RUN_DIR), or remove ${dir}`;
    if (!st.isDirectory()) throw new Error(`${dir} is not a directory (a symlink or a file): refusing it for ax's sockets; ${fix}`);
    if (st.uid !== uid) throw new Error(`${dir} belongs to uid ${st.uid}, not to you (uid ${uid}): it could hold another user's fake daemon sockets; ${fix}`);
    if (st.mode & 0o022) throw new Error(`${dir} is writable by others (mode ${(st.mode & 0o777).toString(8)}): its sockets could be replaced; ${fix} (or chmod 700 ${dir})`);
    return dir;
  }
  throw new Error(`cannot make ${dir}`);
}

/** The gRPC API socket; the hook socket lives beside it. */
export function defaultApiSocket(env = process.env): string {
  return env.AX_SOCKET || join(defaultRunDir(env), 'ax.sock');
}

/** Every existing directory from `dir` up to / lets others through (o+x). */
function traversable(dir: string): boolean {
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return false;
    } catch {
      /* not made yet: the daemon makes it 0755 */
    }
    if (d === '/') return true;
  }
}

/**
 * The hook socket of the daemon whose API socket is `apiSocket`: beside it
 * ("ax-hook.sock"). Apps of a root daemon drop privileges (nginx and memcached
 * workers, postgres) and must still reach it as `nobody`; when the API socket's
 * directory is private (XDG_RUNTIME_DIR is 0700), a root daemon's hook socket
 * goes to /run/ax instead, named after the API socket. The API socket stays
 * where it is: private.
 */
export function hookSocketFor(apiSocket: string, root = isRoot()): string {
  const beside = apiSocket.replace(/(\.sock)?$/, '-hook.sock');
  if (!root || traversable(dirname(beside))) return beside;
  const tag = createHash('sha256').update(resolve(apiSocket)).digest('hex').slice(0, 12);
  return join('/run/ax', `hook-${tag}.sock`);
}
