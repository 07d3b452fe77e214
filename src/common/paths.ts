// Default locations: state in $XDG_STATE_HOME/ax (or ~/.local/state/ax; /var/lib/ax
// for root), sockets in /run/ax for root, else $XDG_RUNTIME_DIR/ax (or /tmp/ax-$UID).
import { homedir } from 'node:os';
import { join } from 'node:path';

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

export function defaultStateDir(env = process.env): string {
  if (env.AX_STATE_DIR) return env.AX_STATE_DIR;
  if (env.XDG_STATE_HOME) return join(env.XDG_STATE_HOME, 'ax');
  if (isRoot()) return '/var/lib/ax';
  return join(homedir(), '.local', 'state', 'ax');
}

/**
 * Where the sockets live. A root daemon serves apps that drop privileges (nginx
 * and memcached workers, postgres): their hook must reach the hook socket as
 * `nobody`, so root uses /run/ax (world-traversable) even when XDG_RUNTIME_DIR
 * (mode 0700) is set. Other users cannot switch uids, so their private runtime
 * directory is right.
 */
export function defaultRunDir(env = process.env): string {
  if (env.AX_RUN_DIR) return env.AX_RUN_DIR;
  if (isRoot()) return '/run/ax';
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'ax');
  return `/tmp/ax-${process.getuid?.() ?? 'user'}`;
}

/** The gRPC API socket; the hook socket lives beside it. */
export function defaultApiSocket(env = process.env): string {
  return env.AX_SOCKET || join(defaultRunDir(env), 'ax.sock');
}

export function hookSocketFor(apiSocket: string): string {
  return apiSocket.replace(/(\.sock)?$/, '-hook.sock');
}
