/* The C half of tests/interop.rs: an allocator whose vtable is written in
 * C (counting what it serves), and C code that allocates through a handle
 * it is given, whatever made it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mallocator.h"

/* What the counting allocator has served; read by the Rust test. */
typedef struct counting {
  size_t allocs;
  size_t frees;
  size_t live;
} counting_t;

static void *counting_malloc(void *self, size_t align, size_t sz) {
  counting_t *c = (counting_t *)self;
  void *p;
  if (align < sizeof(void *)) align = sizeof(void *);
#ifdef _WIN32
  p = _aligned_malloc(sz, align);
#else
  if (posix_memalign(&p, align, sz) != 0) p = NULL;
#endif
  if (p) {
    c->allocs++;
    c->live++;
  }
  return p;
}

static void counting_free(void *self, void *ptr) {
  counting_t *c = (counting_t *)self;
  if (!ptr) return;
  c->frees++;
  c->live--;
#ifdef _WIN32
  _aligned_free(ptr);
#else
  free(ptr);
#endif
}

static const mlc_valloc_vtable_t COUNTING_VTABLE = {counting_malloc, counting_free};

/* A handle over the counting allocator `c`. */
mlc_valloc_t counting_valloc(counting_t *c) {
  mlc_valloc_t v = {c, &COUNTING_VTABLE};
  return v;
}

/* Allocates `n` blocks of 8 to 64 bytes (multiples of 8: no padding between them) through `v`, fills each, checks
 * them, and frees them newest first.
 * 0 on success, -1 if an allocation failed, -2 if a block was corrupted. */
int c_use_handle(mlc_valloc_t v, size_t n) {
  unsigned char *blocks[256];
  size_t i, k;
  if (n > 256) n = 256;
  for (i = 0; i < n; i++) {
    size_t sz = 8 * (1 + i % 8);
    blocks[i] = (unsigned char *)v.vt->malloc(v.self, 8, sz);
    if (!blocks[i]) return -1;
    if (((uintptr_t)blocks[i]) % 8 != 0) return -2;
    memset(blocks[i], (int)(i & 0xff), sz);
  }
  for (i = 0; i < n; i++)
    for (k = 0; k < 8 * (1 + i % 8); k++)
      if (blocks[i][k] != (unsigned char)(i & 0xff)) return -2;
  for (i = n; i-- > 0;) v.vt->free(v.self, blocks[i]);
  return 0;
}
