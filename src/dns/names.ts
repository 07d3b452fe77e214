// Which DNS names ax answers, and what with: the one name lookup shared by the DNS
// responder (src/dns/server.ts) and, through resolveName, the hook's RESOLVE path, so a
// name means the same whichever way a program asks.
import { isIPv4 } from 'node:net';
import type { ServiceTable } from '../table/table';

/** The zone ax is authoritative for, always: NAME.ax. */
export const AX_ZONE = 'ax';

/** What a query name is to ax. */
export type NameClass =
  /** an ax service name: `name` is the service name (one label), `vip` its virtual IP;
   *  `proto`: asked as `_tcp.NAME` or `_udp.NAME` (RFC 2782 style, for SRV) */
  | { kind: 'service'; name: string; vip: string; proto?: 'tcp' | 'udp' }
  /** a reverse name (d.c.b.a.in-addr.arpa) of a registered virtual IP named `name` */
  | { kind: 'reverse'; name: string; vip: string }
  /** the apex of an ax zone ("ax", a --dns-domain): exists, has no records */
  | { kind: 'apex' }
  /** in an ax zone (under .ax, a --dns-domain, or the reverse name of an address in a
   *  virtual range) but not registered: NXDOMAIN, never asked upstream */
  | { kind: 'absent' }
  /** not ax's: forwarded upstream */
  | { kind: 'foreign' };

/**
 * Normalizes a --dns-domain: lowercase, no leading or trailing dot, labels of letters,
 * digits, '-' and '_' (RFC 1035 2.3.1 plus underscores), at most 253 bytes. Throws with the
 * reason otherwise.
 */
export function normalizeDomain(text: string): string {
  const d = text.trim().toLowerCase().replace(/^\./, '').replace(/\.$/, '');
  if (!d || d.length > 253) throw new Error(`"${text}" is not a domain name`);
  for (const l of d.split('.')) {
    if (!/^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l)) throw new Error(`"${text}": label "${l}" must be 1-63 letters, digits, '-' or '_'`);
  }
  if (d === 'arpa' || d.endsWith('.arpa')) throw new Error(`"${text}": reverse zones are answered from the virtual ranges, not as a domain`);
  return d;
}

/**
 * The service name `host` stands for, or undefined: "web", "web.ax" or "web.DOMAIN"
 * for one of `domains` (any case, an optional trailing dot). Only this node's table
 * decides (ServiceTable.resolve), so DNS and the hook agree.
 */
export function resolveName(table: ServiceTable, host: string, domains: readonly string[] = []): string | undefined {
  const h = host.toLowerCase().replace(/\.$/, '');
  for (const d of domains) {
    if (h.endsWith(`.${d}`)) return table.resolve(h.slice(0, -(d.length + 1)));
  }
  return table.resolve(h);
}

/** "4.3.2.1.in-addr.arpa" -> "1.2.3.4"; undefined for anything else (RFC 1035 3.5). */
export function reverseToIp(name: string): string | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(name);
  if (!m) return undefined;
  const ip = `${m[4]}.${m[3]}.${m[2]}.${m[1]}`;
  return isIPv4(ip) ? ip : undefined;
}

/**
 * The names ax answers: service names bare, under `.ax` and under each configured
 * domain; reverse names of virtual IPs. Cheap: a string split and map lookups.
 */
export class AxNames {
  readonly domains: readonly string[];

  /** `domains`: extra zones (normalized by normalizeDomain) besides `.ax`. */
  constructor(
    private readonly table: ServiceTable,
    domains: readonly string[] = [],
  ) {
    this.domains = domains.map(normalizeDomain);
  }

  /** resolveName over this responder's domains (what the hook's RESOLVE should call). */
  resolve(host: string): string | undefined {
    return resolveName(this.table, host, this.domains);
  }

  /**
   * Whether `host` lies in an ax zone (`ax` or one of `domains`; any case, optional
   * trailing dot): such a name is ax's to answer, registered or not, and never asked of
   * the system's resolvers.
   */
  inAxZone(host: string): boolean {
    const h = host.toLowerCase().replace(/\.$/, '');
    return [AX_ZONE, ...this.domains].some((z) => h === z || h.endsWith(`.${z}`));
  }

  /** Classifies a query name (any case, with or without the trailing dot). */
  classify(qname: string): NameClass {
    const h = qname.toLowerCase().replace(/\.$/, '');
    const pm = /^_(tcp|udp)\.(.+)$/.exec(h);
    if (pm) {
      // `_tcp.NAME` / `_udp.NAME`: the same service, its ports of one transport (SRV)
      const inner = this.classify(pm[2]);
      return inner.kind === 'service' ? { ...inner, proto: pm[1] as 'tcp' | 'udp' } : inner.kind === 'foreign' ? inner : { kind: 'absent' };
    }
    for (const zone of [AX_ZONE, ...this.domains]) {
      if (h === zone) return { kind: 'apex' };
      if (h.endsWith(`.${zone}`)) {
        const rest = h.slice(0, -(zone.length + 1));
        const vip = rest.includes('.') ? undefined : this.table.resolve(rest);
        return vip ? { kind: 'service', name: rest, vip } : { kind: 'absent' };
      }
    }
    if (!h.includes('.')) {
      const vip = h ? this.table.resolve(h) : undefined;
      return vip ? { kind: 'service', name: h, vip } : { kind: 'foreign' };
    }
    const ip = reverseToIp(h);
    if (ip !== undefined) {
      const name = this.table.nameOf(ip);
      if (name) return { kind: 'reverse', name, vip: ip };
      // Addresses in a virtual range are ax's: their reverse names never go upstream.
      if (this.table.isVirtual(ip)) return { kind: 'absent' };
    }
    return { kind: 'foreign' };
  }

  /**
   * The distinct virtual ports listening at `vip` (this node's and replicated services),
   * ascending: what an SRV query for the name returns.
   */
  ports(vip: string, proto?: 'tcp' | 'udp'): number[] {
    const ports = new Set<number>();
    for (const s of this.table.services()) if (s.vip === vip && !s.v6only && (!proto || (s.proto ?? 'tcp') === proto)) ports.add(s.vport);
    return [...ports].sort((a, b) => a - b);
  }
}
