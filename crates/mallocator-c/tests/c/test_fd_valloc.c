/*
 * test_fd_valloc.c: Firedancer's names (fd_valloc.h): the libc and null
 * handles, fd_is_null_alloc_virtual, fd_valloc_malloc/free with the
 * request checks, handles flowing between fd_valloc.h and mallocator.h,
 * and fd_backtracing_alloc_virtual: its log on standard output (captured
 * here, on POSIX, through a temporary file), its own copy of the inner
 * handle, and double frees kept from the inner allocator.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "counting.h"
#include "fd_valloc.h"

#ifndef _WIN32
#include <unistd.h>
#endif

#define ALIGNED(p, a) ((((uintptr_t)(p)) & ((uintptr_t)(a)-1u)) == 0)

static void test_libc_and_null(void) {
  fd_valloc_t v = fd_libc_alloc_virtual();
  fd_valloc_t n = fd_null_alloc_virtual();
  void *p, *q;
  CHECK_EQ(fd_is_null_alloc_virtual(v), 0);
  CHECK_EQ(fd_is_null_alloc_virtual(n), 1);
  CHECK(n.self == NULL && n.vt == NULL);
  CHECK(v.vt != NULL);

  p = fd_valloc_malloc(v, 128, 1000);
  CHECK(p != NULL && ALIGNED(p, 128));
  if (p) memset(p, 0x33, 1000);
  fd_valloc_free(v, p);
  fd_valloc_free(v, NULL);

  /* The same checks as mallocator.h's: align 0 means 16, size 0 gives
   * unique blocks, bad aligns and overflowing sizes give NULL. */
  p = fd_valloc_malloc(v, 0, 1);
  CHECK(p != NULL && ALIGNED(p, 16));
  fd_valloc_free(v, p);
  p = fd_valloc_malloc(v, 16, 0);
  q = fd_valloc_malloc(v, 16, 0);
  CHECK(p != NULL && q != NULL && p != q);
  fd_valloc_free(v, p);
  fd_valloc_free(v, q);
  CHECK_FAILS(fd_valloc_malloc(v, 7, 8) == NULL, "align");
  CHECK_FAILS(fd_valloc_malloc(v, 16, SIZE_MAX) == NULL, "overflow|size|large");

  /* The null handle: NULL, and freeing does nothing. */
  CHECK(fd_valloc_malloc(n, 16, 8) == NULL);
  fd_valloc_free(n, NULL);
}

/* fd_valloc_t is mlc_valloc_t: handles and blocks flow between the APIs
 * without casts (this file is compiled with -Werror). */
static void test_same_type(void) {
  mlc_valloc_t m = mlc_libc_valloc();
  fd_valloc_t f = m;
  fd_valloc_t *fp = &m;
  mlc_valloc_t *mp = &f;
  const fd_valloc_vtable_t *vt = m.vt;
  const mlc_valloc_vtable_t *mvt = f.vt;
  void *p;
  CHECK(fp == &m && mp == &f && vt == mvt);
  CHECK(fd_is_null_alloc_virtual(mlc_null_valloc()) == 1);
  CHECK(mlc_valloc_is_null(fd_null_alloc_virtual()) == 1);
  p = fd_valloc_malloc(m, 32, 64); /* an mlc handle through fd names */
  CHECK(p != NULL && ALIGNED(p, 32));
  mlc_valloc_free(f, p); /* an fd handle through mlc names */
  p = mlc_valloc_malloc(fd_libc_alloc_virtual(), 16, 8);
  CHECK(p != NULL);
  fd_valloc_free(mlc_libc_valloc(), p);
  /* The libc handles of both APIs are the same allocator. */
  p = fd_valloc_malloc(fd_libc_alloc_virtual(), 16, 24);
  CHECK(p != NULL);
  mlc_valloc_free(mlc_libc_valloc(), p);
}

/* Makes a backtracing handle from a local variable that is gone when
 * this returns (the handle must hold its own copy). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static fd_valloc_t make_backtracing(counting_t *c) {
  fd_valloc_t inner = counting_valloc(c);
  fd_valloc_t h = fd_backtracing_alloc_virtual(&inner);
  inner.self = NULL; /* scribble over it: the handle must not care */
  inner.vt = NULL;
  return h;
}

#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void scribble_stack(void) {
  volatile unsigned char junk[4096];
  size_t i;
  for (i = 0; i < sizeof junk; i++) junk[i] = 0xee;
  (void)junk[100];
}

static int count_substr(const char *hay, const char *needle) {
  int n = 0;
  const char *p = hay;
  while ((p = strstr(p, needle)) != NULL) {
    n++;
    p += strlen(needle);
  }
  return n;
}

static void test_backtracing(void) {
  static counting_t c; /* outlives the process-lifetime tracker's uses */
  fd_valloc_t h;
  void *p, *q, *r;
  char expect[80];
#ifndef _WIN32
  char path[512];
  const char *tmp = getenv("TMPDIR");
  int saved = -1, fd;
#endif

  counting_init(&c);
#ifndef _WIN32
  /* Capture standard output (fd 1) in a temporary file. */
  snprintf(path, sizeof path, "%s/mlc_fdlog_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  fd = mkstemp(path);
  CHECK(fd >= 0);
  fflush(stdout);
  saved = dup(1);
  CHECK(saved >= 0 && dup2(fd, 1) == 1);
#endif

  h = make_backtracing(&c);
  scribble_stack();
  CHECK_EQ(fd_is_null_alloc_virtual(h), 0);
  p = fd_valloc_malloc(h, 16, 100);
  q = fd_valloc_malloc(h, 64, 200);
  CHECK(p != NULL && q != NULL && ALIGNED(q, 64));
  CHECK_EQ(c.mallocs, 2); /* reached the C allocator through the copy */
  CHECK_EQ(c.live_bytes, 300);
  CHECK_EQ(c.last_align, 64);
  /* Invalid requests never reach it. */
  CHECK(fd_valloc_malloc(h, 3, 8) == NULL);
  CHECK(fd_valloc_malloc(h, 16, SIZE_MAX) == NULL);
  CHECK_EQ(c.mallocs, 2);
  fd_valloc_free(h, p);
  fd_valloc_free(h, q);
  CHECK_EQ(c.frees, 2);
  CHECK_EQ(c.live_blocks, 0);
  /* A double free and an unknown pointer: logged, not passed on
   * (counting_free would abort). */
  fd_valloc_free(h, q);
  r = &c;
  fd_valloc_free(h, r);
  CHECK_EQ(c.frees, 2);
  /* A second tracker over the libc allocator, used through mlc names. */
  {
    fd_valloc_t libc = fd_libc_alloc_virtual();
    fd_valloc_t h2 = fd_backtracing_alloc_virtual(&libc);
    void *s = mlc_valloc_malloc(h2, 16, 33);
    CHECK(s != NULL);
    mlc_valloc_free(h2, s);
  }

#ifndef _WIN32
  /* Restore standard output and read the log. */
  fflush(stdout);
  CHECK(dup2(saved, 1) == 1);
  close(saved);
  {
    char *log;
    FILE *f = fdopen(fd, "rb");
    long len;
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    log = (char *)malloc((size_t)len + 1);
    CHECK(log != NULL && fread(log, 1, (size_t)len, f) == (size_t)len);
    if (log) {
      log[len] = '\0';
      /* 3 allocations (2 + 1 of h2), 5 frees (2 + the double, the
       * unknown, h2's); records whole, each ended by "---". */
      CHECK_EQ(count_substr(log, "+++ ALLOC:"), 3);
      CHECK_EQ(count_substr(log, "+++ FREE:"), 5);
      CHECK_EQ(count_substr(log, "\n---\n"), 8);
      snprintf(expect, sizeof expect, ":0x%016llx:16:100\n", (unsigned long long)(uintptr_t)p);
      CHECK(strstr(log, expect) != NULL);
      snprintf(expect, sizeof expect, ":0x%016llx:64:200\n", (unsigned long long)(uintptr_t)q);
      CHECK(strstr(log, expect) != NULL);
      snprintf(expect, sizeof expect, ":0x%016llx\n", (unsigned long long)(uintptr_t)q);
      CHECK_EQ(count_substr(log, expect), 2); /* freed twice */
      snprintf(expect, sizeof expect, ":0x%016llx\n", (unsigned long long)(uintptr_t)r);
      CHECK_EQ(count_substr(log, expect), 1);
      free(log);
    }
    fclose(f);
    remove(path);
  }
#else
  (void)expect;
  (void)count_substr;
#endif
}

int main(void) {
  test_libc_and_null();
  test_same_type();
  test_backtracing();
  return CHECK_DONE();
}
