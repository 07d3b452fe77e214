// The host port pool: which host ports the daemon hands out for virtual listeners.

export interface PortRange {
  first: number;
  last: number;
}

export function parsePortRange(text: string): PortRange {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  if (!m) throw new Error(`invalid port range "${text}": expected FIRST-LAST, e.g. 40000-60000`);
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first < 1 || last > 65535 || first > last) {
    throw new Error(`invalid port range "${text}": need 1 <= FIRST <= LAST <= 65535`);
  }
  return { first, last };
}

export function parsePort(text: string, what: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new Error(`${what} "${text}" is not a port number (1-65535)`);
  const n = Number(text);
  if (n < 1 || n > 65535) throw new Error(`${what} ${n} is out of range (1-65535)`);
  return n;
}

export class PortPool {
  private readonly used = new Set<number>();
  private next: number;

  constructor(readonly range: PortRange) {
    this.next = range.first;
  }

  /**
   * Takes a free port for which `tryPort` succeeds (it binds the real socket and
   * returns false when the kernel says the port is taken). Returns 0 when the pool
   * is exhausted.
   */
  allocate(tryPort: (port: number) => boolean): number {
    const size = this.range.last - this.range.first + 1;
    for (let i = 0; i < size; i++) {
      const port = this.next;
      this.next = port >= this.range.last ? this.range.first : port + 1;
      if (this.used.has(port)) continue;
      if (tryPort(port)) {
        this.used.add(port);
        return port;
      }
    }
    return 0;
  }

  /** Marks a port as used (restored state, or an --expose'd port inside the range). */
  reserve(port: number): void {
    if (port >= this.range.first && port <= this.range.last) this.used.add(port);
  }

  release(port: number): void {
    this.used.delete(port);
  }
}
