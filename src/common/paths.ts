// Default locations: state in $XDG_STATE_HOME/ax (or ~/.local/state/ax; /var/lib/ax
// for root), sockets in $XDG_RUNTIME_DIR/ax (or /run/ax for root, /tmp/ax-$UID else).
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
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
  return `/tmp/ax-${process.getuid?.() ?? 'user'}`;
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
