// The identity map: a small file the daemon writes through a shared mapping and
// every hook maps read-only (layout: struct ax_map_hdr / ax_map_ent in
// native/ax_proto.h, mirrored in Layout of ./proto.ts). It carries what the hot
// path needs without a message:
//   - the table generation (offset 0): a cached connect or name answer is used
//     while the generation it came with is unchanged;
//   - one entry per local source address: each app gets its own loopback
//     address (127.x.y.z from --source-range), bound by the hook before a
//     connect and by the daemon on sockets it connects, so a server's hook turns
//     an accepted peer address into the client's virtual IP with one read.
// Words are written with Atomics on the shared mapping (4-byte, aligned), so a
// reader never sees a torn value.
import koffi from 'koffi';
import { closeSync, existsSync, ftruncateSync, openSync } from 'node:fs';
import { ipv4ToInt, type Cidr } from '../common/addr';
import { Layout, MapConst } from './proto';

const lib = koffi.load('libc.so.6');
const c_mmap = lib.func('void *mmap(void *, size_t, int, int, int, intptr_t)');
const c_munmap = lib.func('int munmap(void *, size_t)');

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;

const H = Layout.ax_map_hdr.fields;
const E = Layout.ax_map_ent.fields;
const ENTRIES = Layout.ax_map_hdr.size;
const ENTRY = Layout.ax_map_ent.size;

/**
 * The daemon's writable view of the map file at `path`, sized for `count`
 * source addresses starting at `srcBase` (dotted IPv4).
 * Throws if the file cannot be created or mapped.
 */
export class IdentityMap {
  private readonly words: Int32Array;
  private readonly size: number;
  private ptr: unknown;
  readonly base: number;

  constructor(
    readonly path: string,
    srcBase: string,
    readonly count: number,
  ) {
    this.base = ipv4ToInt(srcBase);
    this.size = ENTRIES + count * ENTRY;
    // Reuse the file (and its inode) a previous daemon left: hooks that mapped it
    // keep seeing changes.
    const fd = openSync(path, existsSync(path) ? 'r+' : 'w+', 0o644);
    try {
      ftruncateSync(fd, this.size);
      const p = c_mmap(null, this.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (!p || koffi.address(p) === BigInt('0xffffffffffffffff')) throw new Error(`mmap ${path}: errno ${koffi.errno()}`);
      this.ptr = p;
    } finally {
      closeSync(fd);
    }
    this.words = new Int32Array(koffi.view(this.ptr, this.size));
    for (let i = 0; i < this.size / 4; i++) Atomics.store(this.words, i, 0);
    Atomics.store(this.words, H.magic.off / 4, MapConst.MAGIC | 0);
    Atomics.store(this.words, H.version.off / 4, MapConst.VERSION);
    Atomics.store(this.words, H.src_base.off / 4, this.base | 0);
    Atomics.store(this.words, H.src_count.off / 4, count);
  }

  /** Publishes the table generation (hooks drop cached answers when it changes; 0 = use none). */
  setGeneration(g: number): void {
    Atomics.store(this.words, H.generation.off / 4, g | 0);
  }

  /**
   * Publishes the virtual ranges (at most MapConst.RANGES; more are left out, and
   * datagrams to them are not routed by hooks): hooks tell a virtual datagram
   * destination from a real one without a message.
   */
  setRanges(ranges: Cidr[]): void {
    const n = Math.min(ranges.length, MapConst.RANGES);
    for (let i = 0; i < n; i++) {
      const mask = ranges[i].bits === 0 ? 0 : (0xffffffff << (32 - ranges[i].bits)) >>> 0;
      Atomics.store(this.words, H.ranges.off / 4 + 2 * i, (ranges[i].base & mask) | 0);
      Atomics.store(this.words, H.ranges.off / 4 + 2 * i + 1, mask | 0);
    }
    Atomics.store(this.words, H.n_ranges.off / 4, n);
  }

  /** Publishes the DNS responder's address (IPv4 dotted, port; port 0 = none): hooks send
   *  the app's DNS traffic for resolv.conf's servers there. */
  setDns(ip: string, port: number): void {
    Atomics.store(this.words, H.dns_port.off / 4, 0);
    Atomics.store(this.words, H.dns_ip.off / 4, port ? ipv4ToInt(ip) | 0 : 0);
    Atomics.store(this.words, H.dns_port.off / 4, port);
  }

  /**
   * Publishes which checks hooks make (MapConst.F_*: F_ACCEPT = accepts of peers outside
   * ax are judged by the daemon, F_EGRESS = datagrams to real destinations are). Read by the hook on every call that may need it.
   */
  setFlags(flags: number): void {
    Atomics.store(this.words, H.flags.off / 4, flags | 0);
  }

  /** Source address (dotted) of entry `index` (1 .. count-1). */
  sourceIp(index: number): string {
    const n = (this.base + index) >>> 0;
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }

  /** Entry index of a dotted source address, or -1 outside the range. */
  indexOf(ip: string): number {
    const n = ipv4ToInt(ip);
    if (Number.isNaN(n)) return -1;
    const i = (n - this.base) >>> 0;
    return i > 0 && i < this.count ? i : -1;
  }

  /** Entry `index` now means the app with virtual IP `vip` ('' clears it). */
  set(index: number, vip: string): void {
    if (index <= 0 || index >= this.count) throw new RangeError(`source index ${index} outside 1..${this.count - 1}`);
    Atomics.store(this.words, (ENTRIES + index * ENTRY + E.vip.off) / 4, vip ? ipv4ToInt(vip) | 0 : 0);
  }

  /** VIP (dotted) recorded for entry `index`, or ''. */
  get(index: number): string {
    const v = Atomics.load(this.words, (ENTRIES + index * ENTRY + E.vip.off) / 4) >>> 0;
    return v === 0 ? '' : `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }

  /** Clears the generation (hooks stop trusting cached answers) and unmaps. */
  close(): void {
    if (!this.ptr) return;
    Atomics.store(this.words, H.generation.off / 4, 0);
    c_munmap(this.ptr, this.size);
    this.ptr = null;
  }
}
