/*
 * test_valloc.c: allocator handles (mallocator.h): the C library's and the
 * null handle, mlc_valloc_is_null, and mlc_valloc_malloc/free's checks of
 * a request, which are the same for every handle, here one whose vtable
 * is written in C (counting.h) so that the test sees what reaches it.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "counting.h"
#include "mallocator.h"

#define ALIGNED(p, a) ((((uintptr_t)(p)) & ((uintptr_t)(a)-1u)) == 0)

static void test_libc(void) {
  mlc_valloc_t v = mlc_libc_valloc();
  size_t align;
  CHECK(v.vt != NULL);
  CHECK(v.vt->malloc != NULL && v.vt->free != NULL);
  CHECK_EQ(mlc_valloc_is_null(v), 0);

  /* Each power-of-two alignment is honoured and the block is writable. */
  for (align = 1; align <= 4096; align *= 2) {
    unsigned char *p = (unsigned char *)mlc_valloc_malloc(v, align, 100);
    CHECK(p != NULL);
    CHECK(ALIGNED(p, align));
    if (p) {
      memset(p, 0xab, 100);
      CHECK(p[99] == 0xab);
    }
    mlc_valloc_free(v, p);
  }

  /* align 0 means 16. */
  {
    void *p = mlc_valloc_malloc(v, 0, 1);
    CHECK(p != NULL && ALIGNED(p, 16));
    mlc_valloc_free(v, p);
  }

  /* Size 0: a unique block each time (not NULL, not the same twice). */
  {
    void *p = mlc_valloc_malloc(v, 8, 0);
    void *q = mlc_valloc_malloc(v, 8, 0);
    CHECK(p != NULL && q != NULL && p != q);
    mlc_valloc_free(v, p);
    mlc_valloc_free(v, q);
  }

  /* The vtable can also be called directly, as Firedancer code does. */
  {
    void *p = v.vt->malloc(v.self, 64, 10);
    CHECK(p != NULL && ALIGNED(p, 64));
    v.vt->free(v.self, p);
  }

  /* Freeing NULL does nothing. */
  mlc_valloc_free(v, NULL);
  CHECK(1);
}

static void test_null(void) {
  mlc_valloc_t n = mlc_null_valloc();
  CHECK(n.self == NULL && n.vt == NULL);
  CHECK_EQ(mlc_valloc_is_null(n), 1);
  CHECK(mlc_valloc_malloc(n, 16, 10) == NULL);
  CHECK(mlc_valloc_malloc(n, 0, 0) == NULL);
  mlc_valloc_free(n, NULL);
  /* Freeing a real pointer through the null handle does nothing either
   * (the block is then freed through its own allocator). */
  {
    void *p = mlc_valloc_malloc(mlc_libc_valloc(), 16, 10);
    CHECK(p != NULL);
    mlc_valloc_free(n, p);
    mlc_valloc_free(mlc_libc_valloc(), p);
  }
  /* Only the vtable decides: a handle with state but no vtable is null. */
  {
    int x;
    mlc_valloc_t odd;
    odd.self = &x;
    odd.vt = NULL;
    CHECK_EQ(mlc_valloc_is_null(odd), 1);
    CHECK(mlc_valloc_malloc(odd, 16, 4) == NULL);
    mlc_valloc_free(odd, &x); /* does nothing */
  }
}

static void test_c_vtable(void) {
  counting_t c;
  mlc_valloc_t v;
  void *p, *q;
  counting_init(&c);
  v = counting_valloc(&c);
  CHECK_EQ(mlc_valloc_is_null(v), 0);

  /* A valid request reaches the C allocator as it is. */
  p = mlc_valloc_malloc(v, 32, 40);
  CHECK(p != NULL && ALIGNED(p, 32));
  CHECK_EQ(c.mallocs, 1);
  CHECK_EQ(c.last_align, 32);
  CHECK_EQ(c.last_size, 40);
  CHECK_EQ(c.live_blocks, 1);
  mlc_valloc_free(v, p);
  CHECK_EQ(c.frees, 1);
  CHECK_EQ(c.live_blocks, 0);

  /* align 0 reaches it as 16. */
  p = mlc_valloc_malloc(v, 0, 8);
  CHECK(p != NULL && ALIGNED(p, 16));
  CHECK_EQ(c.last_align, 16);
  mlc_valloc_free(v, p);

  /* Invalid requests are refused before the C allocator is called. */
  c.mallocs = 0;
  CHECK_FAILS(mlc_valloc_malloc(v, 3, 8) == NULL, "align");
  CHECK_FAILS(mlc_valloc_malloc(v, 24, 8) == NULL, "align");
  CHECK_FAILS(mlc_valloc_malloc(v, SIZE_MAX, 8) == NULL, "align");
  CHECK_FAILS(mlc_valloc_malloc(v, 16, SIZE_MAX) == NULL, "overflow|size|large");
  CHECK_FAILS(mlc_valloc_malloc(v, 16, SIZE_MAX - 14) == NULL, "overflow|size|large");
  CHECK_FAILS(mlc_valloc_malloc(v, 4096, SIZE_MAX - 4000) == NULL, "overflow|size|large");
  CHECK_EQ(c.mallocs, 0);

  /* Size 0 gives a unique block (two of them differ). */
  p = mlc_valloc_malloc(v, 16, 0);
  q = mlc_valloc_malloc(v, 16, 0);
  CHECK(p != NULL && q != NULL && p != q);
  mlc_valloc_free(v, p);
  mlc_valloc_free(v, q);
  CHECK_EQ(c.live_blocks, 0);

  /* Freeing NULL does nothing: the C free is not even called. */
  c.frees = 0;
  mlc_valloc_free(v, NULL);
  CHECK_EQ(c.frees, 0);
  CHECK_EQ(c.live_blocks, 0);
}

/* The handle is two pointers passed by value (Firedancer's layout). */
static void test_layout(void) {
  mlc_valloc_t v = mlc_libc_valloc();
  CHECK_EQ(sizeof v, 2 * sizeof(void *));
  CHECK_EQ((char *)&v.vt - (char *)&v, sizeof(void *));
}

int main(void) {
  test_libc();
  test_null();
  test_c_vtable();
  test_layout();
  return CHECK_DONE();
}
