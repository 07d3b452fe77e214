// A small ELF reader for `ax run`: can the preloaded hook see this program's socket calls?
//
// The hook works by LD_PRELOAD, which only the dynamic loader honours. A program
// without a PT_INTERP program header is static (no loader runs, nothing is
// preloaded); a Go program (a `.go.buildinfo` section, or the Go build ID note)
// makes its system calls itself, not through libc, even when it is dynamically
// linked. Neither is mediated by ax. Format: the System V gABI, "ELF header",
// "Program header" and "Sections" (https://refspecs.linuxfoundation.org/elf/gabi4+/contents.html).
import { closeSync, openSync, readSync } from 'node:fs';
import { findInPath } from './run';

/** What kind of program a file is, as far as the hook is concerned. */
export type ProgramKind =
  /** dynamically linked through libc: the hook sees its socket calls */
  | 'dynamic'
  /** no PT_INTERP: statically linked, LD_PRELOAD is never applied */
  | 'static'
  /** a Go program (its own system calls; static or not) */
  | 'go'
  /** not an ELF file and not a script (or unreadable): no verdict */
  | 'unknown';

/** The verdict on a command: its kind, the file that decided it, and a human reason. */
export interface ProgramInfo {
  kind: ProgramKind;
  /** the ELF file looked at (a script's interpreter, resolved) */
  file: string;
  reason: string;
}

const PT_INTERP = 3;
const MAX_READ = 64 << 20;

function readAt(fd: number, pos: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  const n = readSync(fd, b, 0, len, pos);
  return n === len ? b : b.subarray(0, n);
}

/**
 * Classifies an ELF file by its headers. Reads only the ELF header, the program
 * headers, the section headers and the section name table. Returns 'unknown' for
 * anything that is not a well-formed ELF file (no exception for bad input).
 */
export function classifyElf(file: string): ProgramInfo {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    return { kind: 'unknown', file, reason: `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
  }
  try {
    const h = readAt(fd, 0, 64);
    if (h.length < 52 || h.readUInt32BE(0) !== 0x7f454c46) return { kind: 'unknown', file, reason: 'not an ELF file' };
    const is64 = h[4] === 2;
    const le = h[5] === 1;
    if ((h[4] !== 1 && h[4] !== 2) || (h[5] !== 1 && h[5] !== 2)) return { kind: 'unknown', file, reason: 'unsupported ELF class or byte order' };
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const addr = (b: Buffer, o: number) => (is64 ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(b, o));
    const phoff = addr(h, is64 ? 32 : 28);
    const shoff = addr(h, is64 ? 40 : 32);
    const phentsize = u16(h, is64 ? 54 : 42);
    const phnum = u16(h, is64 ? 56 : 44);
    const shentsize = u16(h, is64 ? 58 : 46);
    const shnum = u16(h, is64 ? 60 : 48);
    const shstrndx = u16(h, is64 ? 62 : 50);
    if (phentsize * phnum > MAX_READ || shentsize * shnum > MAX_READ) return { kind: 'unknown', file, reason: 'implausible ELF header' };

    let interp = false;
    const ph = readAt(fd, phoff, phentsize * phnum);
    for (let i = 0; i + 1 <= phnum && (i + 1) * phentsize <= ph.length; i++) {
      if (u32(ph, i * phentsize) === PT_INTERP) interp = true;
    }

    // Section names: look for Go's build information (.go.buildinfo) or its build ID note.
    let goSection = '';
    if (shoff > 0 && shnum > 0 && shstrndx < shnum && shentsize >= (is64 ? 64 : 40)) {
      const sh = readAt(fd, shoff, shentsize * shnum);
      if (sh.length === shentsize * shnum) {
        const strOff = addr(sh, shstrndx * shentsize + (is64 ? 24 : 16));
        const strSize = addr(sh, shstrndx * shentsize + (is64 ? 32 : 20));
        const names = readAt(fd, strOff, Math.min(strSize, MAX_READ));
        for (let i = 0; i < shnum; i++) {
          const at = u32(sh, i * shentsize);
          if (at >= names.length) continue;
          const end = names.indexOf(0, at);
          const name = names.toString('latin1', at, end < 0 ? names.length : end);
          if (name === '.go.buildinfo' || name === '.note.go.buildid') goSection = name;
        }
      }
    }
    if (goSection) return { kind: 'go', file, reason: `a Go program (${goSection} section): it makes its system calls itself, not through libc` };
    if (!interp) return { kind: 'static', file, reason: 'statically linked (no PT_INTERP program header): LD_PRELOAD never applies' };
    return { kind: 'dynamic', file, reason: 'dynamically linked' };
  } catch (e) {
    return { kind: 'unknown', file, reason: `unreadable ELF (${(e as Error).message})` };
  } finally {
    closeSync(fd);
  }
}

/**
 * Classifies the program a command runs: the executable found in PATH, or, for a
 * script ("#!"), its interpreter (through `/usr/bin/env NAME` too), up to 4 levels.
 */
export function classifyCommand(cmd: string, path = process.env.PATH): ProgramInfo {
  let file = findInPath(cmd, path);
  if (!file) return { kind: 'unknown', file: cmd, reason: 'not found' };
  for (let depth = 0; depth < 4; depth++) {
    let head: Buffer;
    try {
      const fd = openSync(file, 'r');
      try {
        head = readAt(fd, 0, 256);
      } finally {
        closeSync(fd);
      }
    } catch {
      return classifyElf(file);
    }
    if (head[0] !== 0x23 || head[1] !== 0x21) return classifyElf(file); // not "#!"
    const line = head.toString('latin1', 2).split('\n')[0].trim().split(/\s+/);
    let interp = line[0] ?? '';
    if (/(^|\/)env$/.test(interp)) interp = line.slice(1).find((a) => !a.startsWith('-')) ?? '';
    const next = interp ? findInPath(interp, path) : null;
    if (!next) return { kind: 'unknown', file, reason: `script interpreter "${interp}" not found` };
    file = next;
  }
  return { kind: 'unknown', file, reason: 'too many levels of script interpreters' };
}
