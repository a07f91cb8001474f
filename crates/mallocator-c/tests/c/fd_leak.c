/*
 * fd_leak.c: a program written the way Firedancer code uses fd_valloc,
 * with a known leak, for the `./fd_leak | mallocator leaks` workflow.
 *
 * It wraps the C library's allocator in the backtracing allocator, which
 * logs every allocation and free (with its stack) to standard output,
 * allocates in a few functions, frees most blocks and leaks exactly:
 *   - 3 blocks of 100 bytes from leak_parse_headers(),
 *   - 1 block of 500 bytes from leak_load_config(),
 * 800 bytes in 4 blocks. scripts/test-c.sh pipes its output into
 * `mallocator leaks --json --symbolize` and checks those numbers and that
 * both function names appear in the leak stacks (build with -g).
 *
 * Its own messages go to standard error, so that standard output is the
 * log alone (mallocator leaks would skip other lines anyway).
 */
#include <stdio.h>
#include <string.h>

#include "fd_valloc.h"

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

struct header {
  char name[64];
  char value[36];
};

/* Parses n headers into blocks of 100 bytes; the caller forgets them. */
NOINLINE void leak_parse_headers(fd_valloc_t valloc, int n) {
  int i;
  for (i = 0; i < n; i++) {
    struct header *h = (struct header *)fd_valloc_malloc(valloc, 8UL, sizeof(struct header));
    if (!h) return;
    snprintf(h->name, sizeof h->name, "X-Header-%d", i);
    strcpy(h->value, "leaked");
  }
}

/* Loads a 500-byte configuration and never gives it back. */
NOINLINE char *leak_load_config(fd_valloc_t valloc) {
  char *cfg = (char *)fd_valloc_malloc(valloc, 16UL, 500UL);
  if (cfg) memset(cfg, 'c', 500);
  return cfg;
}

/* Builds and frees a scratch table: no leak. */
NOINLINE void scratch_work(fd_valloc_t valloc) {
  void *tmp[10];
  int i;
  for (i = 0; i < 10; i++) tmp[i] = fd_valloc_malloc(valloc, 32UL, (unsigned long)(i + 1) * 64UL);
  for (i = 0; i < 10; i++) fd_valloc_free(valloc, tmp[i]);
}

int main(void) {
  fd_valloc_t libc = fd_libc_alloc_virtual();
  fd_valloc_t valloc = fd_backtracing_alloc_virtual(&libc);
  char *kept, *cfg;
  int i;

  if (fd_is_null_alloc_virtual(valloc)) {
    fprintf(stderr, "fd_leak: no backtracing allocator\n");
    return 1;
  }
  for (i = 0; i < 3; i++) scratch_work(valloc);
  kept = (char *)fd_valloc_malloc(valloc, 8UL, 4000UL); /* freed below */
  leak_parse_headers(valloc, 3);
  cfg = leak_load_config(valloc);
  if (!kept || !cfg) {
    fprintf(stderr, "fd_leak: allocation failed\n");
    return 1;
  }
  fd_valloc_free(valloc, kept);
  fprintf(stderr, "fd_leak: done, 800 bytes in 4 blocks leaked on purpose\n");
  return 0;
}
