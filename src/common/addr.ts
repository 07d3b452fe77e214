// IP address helpers shared by the CLI, the daemon and the hook server.
import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';

export const AF_INET = 2;
export const AF_INET6 = 10;

/** An address as the hook protocol carries it: ip as text, port in host order. */
export interface Addr {
  family: number; // AF_INET or AF_INET6
  ip: string;
  port: number;
}

export function ipv4ToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

export function intToIpv4(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** "::ffff:1.2.3.4" → "1.2.3.4"; anything else unchanged. */
export function unmapV4(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1] : ip;
}

export function isLoopback(ip: string): boolean {
  const v4 = unmapV4(ip);
  if (isIPv4(v4)) return v4.startsWith('127.');
  return ip === '::1';
}

export function isWildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::' || ip === '::ffff:0.0.0.0';
}

export interface Cidr {
  base: number;
  bits: number;
}

export function parseCidr(text: string): Cidr {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(text);
  if (!m || !isIPv4(m[1])) throw new Error(`invalid CIDR "${text}": expected a.b.c.d/bits`);
  const bits = Number(m[2]);
  if (bits < 8 || bits > 30) throw new Error(`invalid CIDR "${text}": prefix length must be 8..30`);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return { base: (ipv4ToInt(m[1]) & mask) >>> 0, bits };
}

export function cidrContains(c: Cidr, ip: string): boolean {
  const v4 = unmapV4(ip);
  if (!isIPv4(v4)) return false;
  const mask = (~0 << (32 - c.bits)) >>> 0;
  return ((ipv4ToInt(v4) & mask) >>> 0) === c.base;
}

/**
 * Validate an IPv4 address given as a virtual IP. Returns an error message, or null.
 * Loopback, wildcard, multicast and broadcast addresses cannot be virtual.
 */
export function checkVirtualIp(ip: string): string | null {
  if (!isIPv4(ip)) return `"${ip}" is not an IPv4 address (virtual IPs are IPv4, e.g. 10.1.0.1)`;
  const first = Number(ip.split('.')[0]);
  if (first === 127) return `"${ip}" is a loopback address; loopback is never virtualized`;
  if (first === 0) return `"${ip}" is a wildcard/"this network" address`;
  if (first >= 224) return `"${ip}" is a multicast or reserved address`;
  return null;
}

/** "10.240.0.0/16" */
export function formatCidr(c: Cidr): string {
  return `${intToIpv4(c.base)}/${c.bits}`;
}

/** True when two ranges share any address. */
export function cidrOverlap(a: Cidr, b: Cidr): boolean {
  const bits = Math.min(a.bits, b.bits);
  const mask = (~0 << (32 - bits)) >>> 0;
  return ((a.base & mask) >>> 0) === ((b.base & mask) >>> 0);
}

/** Every address assigned to this host's interfaces, with the interface's name. */
export function localAddresses(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) out.set(unmapV4(a.address), name);
  }
  return out;
}

/**
 * Checks an address an app asks for as its VIP (ax run --ip) against the daemon's virtual
 * ranges. Returns an error message, or null. A real address (outside every range, or
 * assigned to one of this host's interfaces) is never a VIP.
 */
export function checkVipInRanges(ip: string, ranges: Cidr[]): string | null {
  const bad = checkVirtualIp(ip);
  if (bad) return bad;
  const where = ranges.map(formatCidr).join(', ');
  if (!ranges.some((r) => cidrContains(r, ip))) {
    return `${ip} is not in this daemon's virtual range${ranges.length > 1 ? 's' : ''} (${where}); a real address can never be a virtual IP. Pick one in the range, or start the daemon with --vip-range`;
  }
  const r = ranges.find((c) => cidrContains(c, ip))!;
  const host = (ipv4ToInt(ip) - r.base) >>> 0;
  const last = 2 ** (32 - r.bits) - 1;
  if (host === 0 || host === last) {
    return `${ip} is the ${host === 0 ? 'network' : 'broadcast'} address of ${formatCidr(r)}; pick an address inside the range`;
  }
  const dev = localAddresses().get(ip);
  if (dev !== undefined) return `${ip} is a real address of this host (${dev}); a real address can never be a virtual IP`;
  return null;
}

export function formatAddr(a: { ip: string; port: number }): string {
  return isIPv6(a.ip) ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
}
