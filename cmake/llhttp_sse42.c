/* llhttp's parser built with its SSE4.2 fast paths (header values and URLs are scanned 16 bytes
 * at a time with PCMPESTRI instead of a byte at a time), plus the check that the CPU has them.
 *
 * The check is a constructor in the same object as the parser, so every program that parses
 * HTTP runs it before main(), and a CPU without SSE4.2 (before x86-64-v2, 2008) gets a message
 * instead of SIGILL on its first request. Build with -DREMORA_LLHTTP_SSE42=OFF for such CPUs. */
#include <stdio.h>
#include <unistd.h>

#include LLHTTP_C

__attribute__((constructor)) static void remora_llhttp_require_sse42(void) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("sse4.2")) {
    static const char kMessage[] =
        "fatal: this build's HTTP parser uses SSE4.2 instructions, which this CPU lacks; rebuild "
        "with cmake -DREMORA_LLHTTP_SSE42=OFF\n";
    (void)!write(2, kMessage, sizeof(kMessage) - 1);
    _exit(70); /* EX_SOFTWARE */
  }
}
