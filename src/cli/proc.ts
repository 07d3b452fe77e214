// Process plumbing for `ax run`: become a child subreaper, find and reap the
// descendants that were re-parented to us, through libc (koffi).
import koffi from 'koffi';
import { readdirSync, readFileSync } from 'node:fs';

const lib = koffi.load('libc.so.6');
const c_prctl = lib.func('int prctl(int, ...)');
const c_waitpid = lib.func('int waitpid(int, _Out_ int *, int)');

const PR_SET_CHILD_SUBREAPER = 36;
const WNOHANG = 1;

/**
 * Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER):
 * a grandchild whose parent dies is re-parented here, not to init, so `ax run` can
 * end it. Returns false when the kernel refuses.
 */
export function becomeSubreaper(): boolean {
  return (c_prctl(PR_SET_CHILD_SUBREAPER, 'unsigned long', 1, 'unsigned long', 0, 'unsigned long', 0, 'unsigned long', 0) as number) === 0;
}

/** The pids of this process's children (from /proc/self/task/<tid>/children). */
export function childrenOfSelf(): number[] {
  const out: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const p of readFileSync(`/proc/self/task/${t}/children`, 'utf8').split(' ')) if (p.trim()) out.push(Number(p));
    } catch {
      /* task gone */
    }
  }
  return out;
}

/** Reaps `pid` if it has exited (waitpid WNOHANG); true when it was reaped or is not our child. */
export function reap(pid: number): boolean {
  const st = [0];
  const rc = c_waitpid(pid, st, WNOHANG) as number;
  return rc !== 0;
}
