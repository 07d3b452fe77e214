// Labels and the access rule.
//
// Every app carries labels (key=value). A client may connect to a service when
// the two share at least one key=value pair. An app started without --labels
// gets zone=default, so apps that never mention labels can all reach each other.

export type Labels = Record<string, string>;

export const DEFAULT_LABELS: Labels = Object.freeze({ zone: 'default' }) as Labels;

const KEY_RE = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
const VALUE_RE = /^[A-Za-z0-9._-]{0,63}$/;

export class LabelError extends Error {}

/**
 * Parses "k=v,k2=v2". Throws LabelError naming the bad item and why.
 * An empty string gives the default labels.
 */
export function parseLabels(text: string): Labels {
  if (text.trim() === '') return { ...DEFAULT_LABELS };
  const out: Labels = {};
  const items = text.split(',');
  items.forEach((item, i) => {
    const where = `label ${i + 1} ("${item}")`;
    const eq = item.indexOf('=');
    if (eq < 0) throw new LabelError(`${where}: expected key=value`);
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    if (!KEY_RE.test(key)) {
      throw new LabelError(
        `${where}: key "${key}" must be 1-63 characters of letters, digits, '.', '_', '-', '/', starting and ending with a letter or digit`,
      );
    }
    if (!VALUE_RE.test(value)) {
      throw new LabelError(`${where}: value "${value}" must be at most 63 characters of letters, digits, '.', '_', '-'`);
    }
    if (key in out) throw new LabelError(`${where}: key "${key}" is given twice`);
    out[key] = value;
  });
  return out;
}

/** "k=v,k2=v2", sorted by key; leaves out the ax.* labels ax sets unless `withReserved`. */
export function formatLabels(l: Labels, withReserved = false): string {
  return Object.keys(l)
    .filter((k) => withReserved || !k.startsWith('ax.'))
    .sort()
    .map((k) => `${k}=${l[k]}`)
    .join(',');
}

/**
 * The access rule: true when client and server share at least one key=value label.
 * The ax.* labels ax sets itself (ax.user, ax.node, ax.name) describe identity and do
 * not count: otherwise every two apps of one node (or one user) would share one.
 */
export function mayConnect(client: Labels, server: Labels): boolean {
  for (const k of Object.keys(client)) {
    if (k.startsWith('ax.')) continue;
    if (Object.prototype.hasOwnProperty.call(server, k) && server[k] === client[k]) return true;
  }
  return false;
}
