// LD_PRELOAD library that counts calls to the C allocator in a live process (perf/alloc_count.py).
//
// Every allocation function of glibc is wrapped and forwarded to glibc's own entry points
// (__libc_malloc & co.), so no dlsym bootstrap is needed. The counts are atomic (workers are
// threads) and are written on SIGUSR2, to the file named by REMORA_MALLOC_COUNT_FILE, as
// "allocations frees\n": the caller reads them before and after a known number of requests.

#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);
extern void __libc_free(void*);

static atomic_ullong allocations;
static atomic_ullong frees;

void* malloc(size_t n) {
  atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
  return __libc_malloc(n);
}

void* calloc(size_t n, size_t size) {
  atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
  return __libc_calloc(n, size);
}

void* realloc(void* p, size_t n) {
  atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
  return __libc_realloc(p, n);
}

void* memalign(size_t align, size_t n) {
  atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
  return __libc_memalign(align, n);
}

void* aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void** out, size_t align, size_t n) {
  void* p = memalign(align, n);
  if (p == NULL) return 12;  // ENOMEM
  *out = p;
  return 0;
}

void free(void* p) {
  if (p != NULL) atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
  __libc_free(p);
}

// Async-signal-safe: formats with no allocation and writes with open/write/close.
static void dump(int sig) {
  (void)sig;
  const char* path = getenv("REMORA_MALLOC_COUNT_FILE");
  if (path == NULL) return;
  char buf[64];
  unsigned long long v[2] = {atomic_load(&allocations), atomic_load(&frees)};
  size_t len = 0;
  for (int i = 0; i < 2; ++i) {
    char digits[24];
    int d = 0;
    unsigned long long x = v[i];
    do {
      digits[d++] = (char)('0' + x % 10);
      x /= 10;
    } while (x != 0);
    while (d > 0) buf[len++] = digits[--d];
    buf[len++] = i == 0 ? ' ' : '\n';
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, buf, len);
  (void)w;
  close(fd);
}

__attribute__((constructor)) static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = dump;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR2, &sa, NULL);
}
