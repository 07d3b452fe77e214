/* A system call made with the syscall instruction itself, not libc's syscall(): no
 * LD_PRELOAD interposer (the ax hook) can see it, as with a static or Go program.
 * For the isolation probes (test/isolate*.test.ts). */
#ifndef AX_TEST_RAWSYS_H
#define AX_TEST_RAWSYS_H
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

static long rsys6(long n, long a, long b, long c, long d, long e, long f) {
#if defined(__x86_64__)
  long r;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
  if (r < 0 && r > -4096) { errno = (int)-r; return -1; }
  return r;
#else
  return syscall(n, a, b, c, d, e, f);
#endif
}
#define rsys5(n, a, b, c, d, e) rsys6(n, a, b, c, d, e, 0)
#define rsys(n, a, b, c) rsys6(n, a, b, c, 0, 0, 0)
#endif
