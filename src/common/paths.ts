// Default locations: state in $XDG_STATE_HOME/ax (or ~/.local/state/ax; /var/lib/ax
// for root), sockets in $XDG_RUNTIME_DIR/ax (or /run/ax for root, /tmp/ax-$UID else).
import { homedir } from 'node:os';
import { join } from 'node:path';

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

export function hookSocketFor(apiSocket: string): string {
  return apiSocket.replace(/(\.sock)?$/, '-hook.sock');
}
