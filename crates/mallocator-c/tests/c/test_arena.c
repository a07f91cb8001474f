/*
 * test_arena.c: the bump arena (mallocator.h): creation with each
 * protection, alloc with alignment, the string copies (UTF-8 bytes,
 * UTF-16, Latin-1 bytes), the accessors, checkpoints and rollback, reset,
 * protection changes, a full arena, and the arena's handle used through
 * mlc_valloc_malloc/free. The bad inputs are in test_errors.c.
 */
#include <stdint.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#include "check.h"
#include "mallocator.h"

#define ALIGNED(p, a) ((((uintptr_t)(p)) & ((uintptr_t)(a)-1u)) == 0)
#define ADDR(p) ((uintptr_t)(p))

static void test_basics(void) {
  mlc_arena_t *a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  unsigned char *base, *p, *q, *r;
  CHECK(a != NULL);
  if (!a) return;
  base = (unsigned char *)mlc_arena_base(a);
  CHECK(base != NULL);
  CHECK(mlc_arena_size(a) >= 65536);
  CHECK(mlc_arena_ptr(a) == base);
  CHECK_EQ(mlc_arena_used(a), 0);

  /* Blocks are carved one after another. */
  p = (unsigned char *)mlc_arena_alloc(a, 10, 1);
  CHECK(p == base);
  CHECK_EQ(mlc_arena_used(a), 10);
  CHECK(mlc_arena_ptr(a) == base + 10);
  memset(p, 1, 10);

  /* Alignment pads; align 0 means 1 (no padding). */
  q = (unsigned char *)mlc_arena_alloc(a, 8, 8);
  CHECK(q == base + 16);
  CHECK(ALIGNED(q, 8));
  CHECK_EQ(mlc_arena_used(a), 24);
  r = (unsigned char *)mlc_arena_alloc(a, 3, 0);
  CHECK(r == base + 24);
  CHECK_EQ(mlc_arena_used(a), 27);
  r = (unsigned char *)mlc_arena_alloc(a, 1, 4096);
  CHECK(r != NULL && ALIGNED(r, 4096) && r == base + 4096);
  CHECK(ADDR(mlc_arena_ptr(a)) - ADDR(base) == mlc_arena_used(a));
  CHECK_EQ(mlc_arena_used(a), 4097);
  if (r) *r = 7; /* writable */
  CHECK(p[9] == 1); /* earlier blocks untouched */

  /* Zero-size block: a valid pointer at the bump pointer (the arena may
   * move on by a byte to keep blocks unique). */
  r = (unsigned char *)mlc_arena_alloc(a, 0, 1);
  CHECK(r != NULL && r == base + 4097);
  CHECK(mlc_arena_used(a) == 4097 || mlc_arena_used(a) == 4098);
  CHECK(ADDR(mlc_arena_ptr(a)) - ADDR(base) == mlc_arena_used(a));

  /* reset frees everything; the memory stays usable. */
  CHECK_EQ(mlc_arena_reset(a), MLC_OK);
  CHECK_EQ(mlc_arena_used(a), 0);
  CHECK(mlc_arena_ptr(a) == base);
  CHECK(mlc_arena_base(a) == base);
  p = (unsigned char *)mlc_arena_alloc(a, 100, 16);
  CHECK(p == base);
  if (p) memset(p, 2, 100);
  mlc_arena_delete(a);
}

/* Capacity 0: one allocation-granularity unit (64 KiB on Windows, a page
 * elsewhere); another capacity is rounded up to the page size. */
static void test_capacity(void) {
#ifdef _WIN32
  const size_t page = 4096, granularity = 65536;
#else
  const size_t page = (size_t)sysconf(_SC_PAGESIZE), granularity = page;
#endif
  mlc_arena_t *a = mlc_arena_new(0, MLC_PROT_READ_WRITE);
  CHECK(a != NULL);
  if (a) {
    CHECK_EQ(mlc_arena_size(a), granularity);
    CHECK(mlc_arena_alloc(a, granularity, 1) != NULL);
    CHECK(mlc_arena_alloc(a, 1, 1) == NULL);
    mlc_arena_delete(a);
  }
  a = mlc_arena_new(page + 1, MLC_PROT_READ_WRITE);
  CHECK(a != NULL);
  if (a) {
    CHECK_EQ(mlc_arena_size(a), 2 * page);
    mlc_arena_delete(a);
  }
  a = mlc_arena_new(3 * page, MLC_PROT_READ_WRITE);
  CHECK(a != NULL);
  if (a) {
    CHECK_EQ(mlc_arena_size(a), 3 * page);
    mlc_arena_delete(a);
  }
}

/* An arena is created writable (READ_WRITE or READ_WRITE_EXECUTE); the
 * other protections are refused at creation (mlc_arena_protect applies
 * them later). */
static void test_each_protection(void) {
  int prot;
  for (prot = MLC_PROT_NONE; prot <= MLC_PROT_READ_WRITE_EXECUTE; prot++) {
    mlc_arena_t *a;
    if (prot != MLC_PROT_READ_WRITE && prot != MLC_PROT_READ_WRITE_EXECUTE) {
      CHECK_FAILS_PROT(mlc_arena_new(8192, prot) == NULL, "writable");
      continue;
    }
    a = mlc_arena_new(8192, prot);
    CHECK(a != NULL);
    if (!a) continue;
    {
      unsigned char *p = (unsigned char *)mlc_arena_alloc(a, 64, 16);
      CHECK(p != NULL);
      if (p) {
        CHECK(p[0] == 0 && p[63] == 0); /* fresh memory reads as zero */
        memset(p, 3, 64);
        CHECK(p[63] == 3);
      }
    }
    mlc_arena_delete(a);
  }
}

/* A full arena refuses, and a request that fits exactly succeeds. */
static void test_full(void) {
  mlc_arena_t *a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  size_t cap;
  void *p;
  CHECK(a != NULL);
  if (!a) return;
  cap = mlc_arena_size(a);
  CHECK_FAILS(mlc_arena_alloc(a, cap + 1, 1) == NULL, "full|capacity|memory|space|room");
  CHECK_EQ(mlc_arena_used(a), 0);
  p = mlc_arena_alloc(a, cap - 1, 1);
  CHECK(p != NULL);
  CHECK_FAILS(mlc_arena_alloc(a, 2, 1) == NULL, "full|capacity|memory|space|room");
  CHECK_EQ(mlc_arena_used(a), cap - 1);
  /* The very last byte still fits. */
  p = mlc_arena_alloc(a, 1, 1);
  CHECK(p != NULL && (unsigned char *)p == (unsigned char *)mlc_arena_base(a) + cap - 1);
  if (p) *(unsigned char *)p = 9;
  CHECK_FAILS(mlc_arena_alloc(a, 1, 1) == NULL, "full|capacity|memory|space|room");
  /* Strings and byte copies refuse too. */
  CHECK_FAILS(mlc_arena_alloc_string(a, "x", 1) == NULL, "full|capacity|memory|space|room");
  CHECK_FAILS(mlc_arena_alloc_bytes(a, "x", 1) == NULL, "full|capacity|memory|space|room");
  CHECK_FAILS(mlc_arena_alloc_byte_string(a, "x") == NULL, "full|capacity|memory|space|room");
  CHECK_EQ(mlc_arena_used(a), cap);
  mlc_arena_delete(a);
}

static void test_strings(void) {
  mlc_arena_t *a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  /* "hé€😀": 1-, 2-, 3- and 4-byte UTF-8 sequences. */
  static const char utf8[] = "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  static const uint16_t utf16[] = {0x0068, 0x00e9, 0x20ac, 0xd83d, 0xde00, 0};
  char *s;
  uint16_t *w;
  unsigned char *b;
  CHECK(a != NULL);
  if (!a) return;

  /* Width 1: the same bytes, NUL-terminated, in the arena. */
  s = (char *)mlc_arena_alloc_string(a, utf8, 1);
  CHECK(s != NULL);
  if (s) {
    CHECK(memcmp(s, utf8, sizeof utf8) == 0); /* sizeof includes the NUL */
    CHECK(s != utf8);
  }
  CHECK_EQ(mlc_arena_used(a), sizeof utf8);

  /* Width 2: UTF-16 with a surrogate pair and a 16-bit NUL, 2-aligned
   * (the bump pointer is odd here: 11 bytes used). */
  w = (uint16_t *)mlc_arena_alloc_string(a, utf8, 2);
  CHECK(w != NULL);
  if (w) {
    CHECK(ALIGNED(w, 2));
    CHECK(memcmp(w, utf16, sizeof utf16) == 0);
  }

  /* Empty strings: just the terminator. */
  s = (char *)mlc_arena_alloc_string(a, "", 1);
  CHECK(s != NULL && s[0] == '\0');
  w = (uint16_t *)mlc_arena_alloc_string(a, "", 2);
  CHECK(w != NULL && w[0] == 0 && ALIGNED(w, 2));

  /* Byte string: one byte per character (Latin-1), NUL-terminated. */
  b = (unsigned char *)mlc_arena_alloc_byte_string(a, "caf\xc3\xa9 \xc3\xbf!");
  CHECK(b != NULL);
  if (b) {
    static const unsigned char latin1[] = {'c', 'a', 'f', 0xe9, ' ', 0xff, '!', 0};
    CHECK(memcmp(b, latin1, sizeof latin1) == 0);
  }
  b = (unsigned char *)mlc_arena_alloc_byte_string(a, "");
  CHECK(b != NULL && b[0] == 0);
  /* Above U+00FF: NULL, and nothing is used. */
  {
    size_t used = mlc_arena_used(a);
    CHECK_FAILS(mlc_arena_alloc_byte_string(a, "price: 5\xe2\x82\xac") == NULL,
                "latin|U+|FF|character|char|byte|range|represent");
    CHECK_FAILS(mlc_arena_alloc_byte_string(a, "\xc4\x80") == NULL, /* U+0100 */
                "latin|U+|FF|character|char|byte|range|represent");
    CHECK_EQ(mlc_arena_used(a), used);
  }

  /* Byte copies, zero length included (bytes may then be NULL). */
  {
    static const unsigned char raw[5] = {0, 1, 2, 0xfe, 0xff};
    unsigned char *c = (unsigned char *)mlc_arena_alloc_bytes(a, raw, sizeof raw);
    size_t used;
    CHECK(c != NULL && memcmp(c, raw, sizeof raw) == 0);
    used = mlc_arena_used(a);
    CHECK(mlc_arena_alloc_bytes(a, NULL, 0) != NULL);
    CHECK(mlc_arena_alloc_bytes(a, raw, 0) != NULL);
    CHECK_EQ(mlc_arena_used(a), used);
  }
  mlc_arena_delete(a);
}

static void test_checkpoints(void) {
  mlc_arena_t *a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  mlc_arena_t *b = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  mlc_checkpoint_t c0, c1, c2, cb;
  void *p1, *p2;
  CHECK(a != NULL && b != NULL);
  if (!a || !b) {
    mlc_arena_delete(a);
    mlc_arena_delete(b);
    return;
  }
  c0 = mlc_arena_checkpoint(a);
  CHECK(c0.pos == ADDR(mlc_arena_ptr(a)));
  CHECK(mlc_arena_alloc(a, 100, 1) != NULL);
  c1 = mlc_arena_checkpoint(a);
  CHECK(c1.pos == ADDR(mlc_arena_ptr(a)));
  CHECK(c1.arena == c0.arena);
  p1 = mlc_arena_alloc(a, 200, 8);
  CHECK(p1 != NULL);
  c2 = mlc_arena_checkpoint(a);
  CHECK_EQ(mlc_arena_used(a), 304);

  /* Roll back to c1: the block after it is given back, and comes back at
   * the same address. */
  CHECK_EQ(mlc_arena_rollback(a, c1), MLC_OK);
  CHECK_EQ(mlc_arena_used(a), 100);
  p2 = mlc_arena_alloc(a, 200, 8);
  CHECK(p2 == p1);

  /* Rolling back to the current position changes nothing. */
  CHECK_EQ(mlc_arena_rollback(a, mlc_arena_checkpoint(a)), MLC_OK);
  CHECK_EQ(mlc_arena_used(a), 304);

  /* Back to c1 again, then c2 lies above the bump pointer: refused, and
   * the arena is unchanged. */
  CHECK_EQ(mlc_arena_rollback(a, c1), MLC_OK);
  CHECK_FAILS(mlc_arena_rollback(a, c2) == MLC_ERR_ARGUMENT, "checkpoint|above|position|pointer");
  CHECK_EQ(mlc_arena_used(a), 100);

  /* A checkpoint of another arena: refused, this arena unchanged, even
   * when its position would be valid here. */
  cb = mlc_arena_checkpoint(b);
  CHECK(cb.arena != c0.arena);
  CHECK_FAILS(mlc_arena_rollback(a, cb) == MLC_ERR_ARGUMENT, "checkpoint|arena|another|belong");
  CHECK_EQ(mlc_arena_used(a), 100);
  {
    mlc_checkpoint_t forged = c0;
    forged.arena = cb.arena; /* a's position, b's id */
    CHECK_FAILS(mlc_arena_rollback(a, forged) == MLC_ERR_ARGUMENT, "checkpoint|arena|another|belong");
    CHECK_EQ(mlc_arena_used(a), 100);
    forged = cb;
    forged.pos = c0.pos; /* b's id given to a's position: refused by b */
    CHECK_FAILS(mlc_arena_rollback(b, forged) == MLC_ERR_ARGUMENT,
                "checkpoint|arena|another|belong|above|position");
  }

  /* Back to the very start. */
  CHECK_EQ(mlc_arena_rollback(a, c0), MLC_OK);
  CHECK_EQ(mlc_arena_used(a), 0);

  /* A checkpoint outlives its arena only as a foreign one: a new arena
   * (maybe at the same address) refuses it. */
  mlc_arena_delete(a);
  a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  CHECK(a != NULL);
  if (a) {
    CHECK(mlc_arena_alloc(a, 1000, 1) != NULL);
    CHECK_FAILS(mlc_arena_rollback(a, c0) == MLC_ERR_ARGUMENT, "checkpoint|arena|another|belong");
    CHECK_EQ(mlc_arena_used(a), 1000);
  }
  mlc_arena_delete(a);
  mlc_arena_delete(b);
}

static void test_protect(void) {
  mlc_arena_t *a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  unsigned char *p;
  CHECK(a != NULL);
  if (!a) return;
  p = (unsigned char *)mlc_arena_alloc(a, 5000, 16);
  CHECK(p != NULL);
  if (!p) {
    mlc_arena_delete(a);
    return;
  }
  memset(p, 0x5a, 5000);
  CHECK_EQ(mlc_arena_protect(a, MLC_PROT_READ), MLC_OK);
  {
    volatile unsigned char *vp = p;
    CHECK(vp[0] == 0x5a && vp[4999] == 0x5a); /* reading is allowed */
  }
  /* Not writable: every allocation fails, saying why, with room left. */
  CHECK_FAILS(mlc_arena_alloc(a, 1, 1) == NULL, "not writable");
  CHECK_FAILS(mlc_arena_alloc_string(a, "x", 1) == NULL, "not writable");
  CHECK_FAILS(mlc_arena_alloc_string(a, "x", 2) == NULL, "not writable");
  CHECK_FAILS(mlc_arena_alloc_bytes(a, "x", 1) == NULL, "not writable");
  CHECK_FAILS(mlc_arena_alloc_byte_string(a, "x") == NULL, "not writable");
  CHECK_EQ(mlc_arena_used(a), 5000);
  CHECK_EQ(mlc_arena_protect(a, MLC_PROT_NONE), MLC_OK);
  CHECK_EQ(mlc_arena_protect(a, MLC_PROT_READ_EXECUTE), MLC_OK);
  CHECK_EQ(mlc_arena_protect(a, MLC_PROT_READ_WRITE_EXECUTE), MLC_OK);
  CHECK_EQ(mlc_arena_protect(a, MLC_PROT_READ_WRITE), MLC_OK);
  p[0] = 0x11; /* writable again, contents kept */
  CHECK(p[0] == 0x11 && p[4999] == 0x5a);
  CHECK(mlc_arena_alloc(a, 1, 1) != NULL);
  CHECK_EQ(mlc_arena_used(a), 5001);
  mlc_arena_delete(a);
}

static void test_valloc_handle(void) {
  mlc_arena_t *a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  mlc_valloc_t h;
  unsigned char *base, *p, *q, *r;
  size_t used;
  CHECK(a != NULL);
  if (!a) return;
  base = (unsigned char *)mlc_arena_base(a);
  h = mlc_arena_valloc(a);
  CHECK_EQ(mlc_valloc_is_null(h), 0);

  p = (unsigned char *)mlc_valloc_malloc(h, 16, 10);
  CHECK(p != NULL && ALIGNED(p, 16) && p >= base && p < base + mlc_arena_size(a));
  used = mlc_arena_used(a);
  CHECK(used >= 10);
  q = (unsigned char *)mlc_valloc_malloc(h, 64, 20);
  CHECK(q != NULL && ALIGNED(q, 64) && q >= p + 10);
  CHECK(mlc_arena_used(a) > used);
  if (p && q) {
    memset(p, 1, 10);
    memset(q, 2, 20);
  }
  /* Freeing an older block gives nothing back... */
  {
    size_t before = mlc_arena_used(a);
    mlc_valloc_free(h, p);
    CHECK_EQ(mlc_arena_used(a), before);
  }
  /* ...freeing the most recent one does: the next request reuses it. */
  mlc_valloc_free(h, q);
  CHECK(mlc_arena_used(a) < ADDR(q) - ADDR(base) + 20);
  r = (unsigned char *)mlc_valloc_malloc(h, 64, 20);
  CHECK(r == q);
  /* align 0 means 16, also here. */
  r = (unsigned char *)mlc_valloc_malloc(h, 0, 1);
  CHECK(r != NULL && ALIGNED(r, 16));
  /* The same checks as every handle: refused without using the arena. */
  used = mlc_arena_used(a);
  CHECK_FAILS(mlc_valloc_malloc(h, 3, 8) == NULL, "align");
  CHECK_FAILS(mlc_valloc_malloc(h, 16, SIZE_MAX) == NULL, "overflow|size|large");
  /* Larger than the arena: NULL (the arena is full). */
  CHECK(mlc_valloc_malloc(h, 16, mlc_arena_size(a)) == NULL);
  CHECK_EQ(mlc_arena_used(a), used);
  mlc_valloc_free(h, NULL);
  CHECK_EQ(mlc_arena_used(a), used);
  /* The vtable called directly (Firedancer style) works too. */
  r = (unsigned char *)h.vt->malloc(h.self, 8, 8);
  CHECK(r != NULL && ALIGNED(r, 8) && r >= base && r < base + mlc_arena_size(a));
  h.vt->free(h.self, r);
  /* reset makes the handle allocate from the start again. */
  CHECK_EQ(mlc_arena_reset(a), MLC_OK);
  p = (unsigned char *)mlc_valloc_malloc(h, 16, 10);
  CHECK(p == base);
  mlc_arena_delete(a);
}

int main(void) {
  test_basics();
  test_capacity();
  test_each_protection();
  test_full();
  test_strings();
  test_checkpoints();
  test_protect();
  test_valloc_handle();
  return CHECK_DONE();
}
