/*
 * counting.h: an allocator written in C behind an mlc_valloc_t vtable,
 * for the tests: aligned blocks from the C library, counting every call,
 * the live blocks and live bytes, and remembering the last request. The
 * tests use it to see what mallocator passes on to a C vtable (and what
 * it must not pass on: invalid requests, double frees).
 */
#ifndef MLC_TEST_COUNTING_H
#define MLC_TEST_COUNTING_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mallocator.h"

#ifdef _WIN32
#include <malloc.h>
#endif

typedef struct counting {
  size_t mallocs;    /* calls of malloc */
  size_t frees;      /* calls of free, NULL included */
  size_t null_frees; /* calls of free with NULL */
  size_t live_blocks;
  size_t live_bytes;
  size_t last_align; /* the last malloc's arguments */
  size_t last_size;
  /* Sizes of the live blocks, by address (a small table is enough). */
  void *ptrs[256];
  size_t sizes[256];
} counting_t;

static void *counting_malloc(void *self, size_t align, size_t sz) {
  counting_t *c = (counting_t *)self;
  void *p = NULL;
  size_t i;
  c->mallocs++;
  c->last_align = align;
  c->last_size = sz;
  if (align < sizeof(void *)) align = sizeof(void *);
#ifdef _WIN32
  p = _aligned_malloc(sz ? sz : 1, align);
#else
  if (posix_memalign(&p, align, sz ? sz : 1) != 0) p = NULL;
#endif
  if (!p) return NULL;
  for (i = 0; i < 256; i++) {
    if (c->ptrs[i] == NULL) {
      c->ptrs[i] = p;
      c->sizes[i] = sz;
      break;
    }
  }
  if (i == 256) abort(); /* the tests never keep that many blocks live */
  c->live_blocks++;
  c->live_bytes += sz;
  return p;
}

static void counting_free(void *self, void *ptr) {
  counting_t *c = (counting_t *)self;
  size_t i;
  c->frees++;
  if (!ptr) {
    c->null_frees++;
    return;
  }
  for (i = 0; i < 256; i++) {
    if (c->ptrs[i] == ptr) {
      c->ptrs[i] = NULL;
      c->live_blocks--;
      c->live_bytes -= c->sizes[i];
#ifdef _WIN32
      _aligned_free(ptr);
#else
      free(ptr);
#endif
      return;
    }
  }
  /* A pointer this allocator did not hand out (or a double free): a
   * tracker must never pass one on. Crash loudly rather than corrupt. */
  abort();
}

static const mlc_valloc_vtable_t counting_vtable = {counting_malloc, counting_free};

static void counting_init(counting_t *c) { memset(c, 0, sizeof *c); }

static mlc_valloc_t counting_valloc(counting_t *c) {
  mlc_valloc_t v;
  v.self = c;
  v.vt = &counting_vtable;
  return v;
}

#endif /* MLC_TEST_COUNTING_H */
