/*
 * test_errors.c: every bad input mallocator.h and fd_valloc.h promise an
 * error (never a crash) for, each followed by a check that
 * mlc_last_error() describes it (see check.h): NULL object pointers for
 * each function that takes one, NULL strings, invalid UTF-8, widths other
 * than 1 and 2, unknown protection values, aligns that are not powers of
 * two, overflowing sizes, the null handle; and that the error is per
 * thread, NULL before any failure, and not cleared by a success.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "fd_valloc.h"
#include "mallocator.h"

#ifndef _WIN32
#include <pthread.h>
#endif

/* Malformed UTF-8: a lone continuation byte, a truncated sequence, an
 * overlong encoding, a UTF-16 surrogate, a code point above U+10FFFF, the
 * bytes 0xFE/0xFF, and a truncation at the very end of the string. */
static const char *const bad_utf8[] = {
    "\x80", "a\xc3", "\xc3(", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
    "\xf4\x90\x80\x80", "\xfe", "\xff", "ok\xe2\x82",
};
#define N_BAD_UTF8 (sizeof bad_utf8 / sizeof bad_utf8[0])

static void test_null_objects(void) {
  mlc_checkpoint_t cp;
  mlc_valloc_t h;

  /* The arena's functions. */
  CHECK_FAILS(mlc_arena_alloc(NULL, 8, 8) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_alloc_string(NULL, "x", 1) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_alloc_string(NULL, "x", 2) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_alloc_bytes(NULL, "x", 1) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_alloc_bytes(NULL, NULL, 0) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_alloc_byte_string(NULL, "x") == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_base(NULL) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_ptr(NULL) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_size(NULL) == 0, NULL_WORDS);
  CHECK_FAILS(mlc_arena_used(NULL) == 0, NULL_WORDS);
  CHECK_FAILS((cp = mlc_arena_checkpoint(NULL), 1), NULL_WORDS);
  CHECK_FAILS(mlc_arena_rollback(NULL, cp) == MLC_ERR_ARGUMENT, NULL_WORDS);
  CHECK_FAILS(mlc_arena_reset(NULL) == MLC_ERR_ARGUMENT, NULL_WORDS);
  CHECK_FAILS_PROT(mlc_arena_protect(NULL, MLC_PROT_READ) == MLC_ERR_ARGUMENT, NULL_WORDS);
  CHECK_FAILS((h = mlc_arena_valloc(NULL), mlc_valloc_is_null(h) == 1), NULL_WORDS);
  mlc_arena_delete(NULL); /* does nothing */

  /* A checkpoint of no arena is refused by a real one. */
  {
    mlc_arena_t *a = mlc_arena_new(4096, MLC_PROT_READ_WRITE);
    CHECK(a != NULL);
    if (a) {
      CHECK(mlc_arena_alloc(a, 10, 1) != NULL);
      CHECK_FAILS(mlc_arena_rollback(a, cp) == MLC_ERR_ARGUMENT, "checkpoint|arena|another|belong");
      CHECK_EQ(mlc_arena_used(a), 10);
      mlc_arena_delete(a);
    }
  }

  /* The tracker's functions. */
  CHECK_FAILS(mlc_tracker_new(mlc_null_valloc()) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_tracker_new_with_log(mlc_null_valloc(), "unused.log") == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_tracker_new_with_log(mlc_libc_valloc(), NULL) == NULL, NULL_WORDS);
  CHECK_FAILS((h = mlc_tracker_valloc(NULL), mlc_valloc_is_null(h) == 1), NULL_WORDS);
  CHECK_FAILS(mlc_tracker_live_blocks(NULL) == 0, NULL_WORDS);
  CHECK_FAILS(mlc_tracker_live_bytes(NULL) == 0, NULL_WORDS);
  CHECK_FAILS(mlc_tracker_peak_bytes(NULL) == 0, NULL_WORDS);
  CHECK_FAILS(mlc_tracker_objects_unloaded(NULL) == MLC_ERR_ARGUMENT, NULL_WORDS);
  CHECK_FAILS(mlc_tracker_report(NULL, 1, 0) == MLC_ERR_ARGUMENT, NULL_WORDS);
  CHECK_FAILS(mlc_tracker_report(NULL, 1, 1) == MLC_ERR_ARGUMENT, NULL_WORDS);
  mlc_tracker_delete(NULL); /* does nothing */

  /* A negative descriptor. */
  {
    mlc_tracker_t *t = mlc_tracker_new(mlc_libc_valloc());
    CHECK(t != NULL);
    if (t) {
      CHECK_FAILS(mlc_tracker_report(t, -1, 0) < 0, "descriptor|fd");
      CHECK_FAILS(mlc_tracker_report(t, -5, 1) < 0, "descriptor|fd");
      mlc_tracker_delete(t);
    }
  }

  /* fd_backtracing_alloc_virtual of NULL, of the null handle, or of a
   * handle with a state but no vtable: the null handle. */
  CHECK_FAILS(fd_is_null_alloc_virtual(fd_backtracing_alloc_virtual(NULL)) == 1, NULL_WORDS);
  {
    int x = 0;
    fd_valloc_t null_handle = fd_null_alloc_virtual();
    fd_valloc_t odd;
    odd.self = &x;
    odd.vt = NULL;
    CHECK_FAILS(fd_is_null_alloc_virtual(fd_backtracing_alloc_virtual(&null_handle)) == 1,
                NULL_WORDS);
    CHECK_FAILS(fd_is_null_alloc_virtual(fd_backtracing_alloc_virtual(&odd)) == 1, NULL_WORDS);
  }
}

/* The null handle allocates nothing, through either API, and crashes on
 * nothing; a handle with a state but no vtable is also the null handle. */
static void test_null_handle(void) {
  int x = 0;
  mlc_valloc_t odd;
  odd.self = &x;
  odd.vt = NULL;
  CHECK_FAILS(mlc_valloc_malloc(mlc_null_valloc(), 16, 8) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_valloc_malloc(odd, 16, 8) == NULL, NULL_WORDS);
  CHECK_FAILS(fd_valloc_malloc(fd_null_alloc_virtual(), 16, 8) == NULL, NULL_WORDS);
  mlc_valloc_free(mlc_null_valloc(), &x);
  fd_valloc_free(fd_null_alloc_virtual(), &x);
  mlc_valloc_free(odd, &x);
  CHECK_EQ(x, 0);
}

static void test_strings(void) {
  mlc_arena_t *a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  size_t i, used;
  int widths[] = {0, 3, 4, -1, -2, 8, 16, 1 << 30};
  CHECK(a != NULL);
  if (!a) return;
  CHECK(mlc_arena_alloc(a, 1, 1) != NULL);
  used = mlc_arena_used(a);

  /* NULL strings. */
  CHECK_FAILS(mlc_arena_alloc_string(a, NULL, 1) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_alloc_string(a, NULL, 2) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_alloc_byte_string(a, NULL) == NULL, NULL_WORDS);
  /* NULL bytes with a length. */
  CHECK_FAILS(mlc_arena_alloc_bytes(a, NULL, 1) == NULL, NULL_WORDS);
  CHECK_FAILS(mlc_arena_alloc_bytes(a, NULL, 100) == NULL, NULL_WORDS);

  /* Invalid UTF-8, for each width and for the byte string. */
  for (i = 0; i < N_BAD_UTF8; i++) {
    CHECK_FAILS(mlc_arena_alloc_string(a, bad_utf8[i], 1) == NULL, "utf-8|utf8");
    CHECK_FAILS(mlc_arena_alloc_string(a, bad_utf8[i], 2) == NULL, "utf-8|utf8");
    CHECK_FAILS(mlc_arena_alloc_byte_string(a, bad_utf8[i]) == NULL, "utf-8|utf8");
  }

  /* Widths other than 1 and 2, with a valid string. */
  for (i = 0; i < sizeof widths / sizeof widths[0]; i++)
    CHECK_FAILS(mlc_arena_alloc_string(a, "hello", widths[i]) == NULL, "width");

  /* None of that used the arena. */
  CHECK_EQ(mlc_arena_used(a), used);
  mlc_arena_delete(a);
}

static void test_protections(void) {
  int bad[] = {99, -1, 5, 1000, -2147483647 - 1};
  size_t i;
  mlc_arena_t *a;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_FAILS_PROT(mlc_arena_new(4096, bad[i]) == NULL, "protection|prot");
  a = mlc_arena_new(4096, MLC_PROT_READ_WRITE);
  CHECK(a != NULL);
  if (!a) return;
  {
    unsigned char *p = (unsigned char *)mlc_arena_alloc(a, 16, 1);
    CHECK(p != NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
      CHECK_FAILS_PROT(mlc_arena_protect(a, bad[i]) == MLC_ERR_ARGUMENT, "protection|prot");
    /* Still writable: the refused calls changed nothing. */
    if (p) {
      p[0] = 1;
      CHECK(p[0] == 1);
    }
  }
  mlc_arena_delete(a);
}

static void test_aligns_and_sizes(void) {
  size_t bad_align[] = {3, 5, 6, 7, 12, 24, 100, 4097, SIZE_MAX, SIZE_MAX / 2};
  mlc_valloc_t libc = mlc_libc_valloc();
  mlc_arena_t *a = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  size_t i;
  CHECK(a != NULL);
  if (!a) return;
  for (i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++) {
    CHECK_FAILS(mlc_valloc_malloc(libc, bad_align[i], 8) == NULL, "align");
    CHECK_FAILS(fd_valloc_malloc(fd_libc_alloc_virtual(), bad_align[i], 8) == NULL, "align");
    CHECK_FAILS(mlc_arena_alloc(a, 8, bad_align[i]) == NULL, "align");
    CHECK_FAILS(mlc_valloc_malloc(mlc_arena_valloc(a), bad_align[i], 8) == NULL, "align");
  }
  CHECK_EQ(mlc_arena_used(a), 0);

  /* Sizes that overflow when rounded up to the alignment. */
  CHECK_FAILS(mlc_valloc_malloc(libc, 16, SIZE_MAX) == NULL, "overflow|size|large");
  CHECK_FAILS(mlc_valloc_malloc(libc, 1, SIZE_MAX) == NULL, "overflow|size|large|memory");
  CHECK_FAILS(mlc_valloc_malloc(libc, 0, SIZE_MAX - 1) == NULL, "overflow|size|large");
  CHECK_FAILS(mlc_valloc_malloc(libc, 65536, SIZE_MAX - 65534) == NULL, "overflow|size|large");
  CHECK_FAILS(fd_valloc_malloc(fd_libc_alloc_virtual(), 16, SIZE_MAX) == NULL, "overflow|size|large");
  /* A huge power-of-two alignment that cannot be had. */
  CHECK(mlc_valloc_malloc(libc, (SIZE_MAX >> 1) + 1, 1) == NULL);

  /* The arena: sizes beyond its capacity, up to SIZE_MAX. */
  CHECK_FAILS(mlc_arena_alloc(a, SIZE_MAX, 1) == NULL, "full|room|capacity|memory|overflow|size|large");
  CHECK_FAILS(mlc_arena_alloc(a, SIZE_MAX, 16) == NULL, "full|room|capacity|memory|overflow|size|large");
  CHECK_FAILS(mlc_arena_alloc(a, SIZE_MAX - 8, 4096) == NULL, "full|room|capacity|memory|overflow|size|large");
  CHECK_FAILS(mlc_arena_alloc(a, 1, (SIZE_MAX >> 1) + 1) == NULL, "full|room|capacity|memory|overflow|size|large|align");
  CHECK_FAILS(mlc_arena_alloc_bytes(a, "x", SIZE_MAX) == NULL, "full|room|capacity|memory|overflow|size|large");
  CHECK_FAILS(mlc_valloc_malloc(mlc_arena_valloc(a), 16, SIZE_MAX) == NULL, "overflow|size|large");
  CHECK_EQ(mlc_arena_used(a), 0);
  mlc_arena_delete(a);

  /* An arena larger than the address space. */
  CHECK_FAILS(mlc_arena_new(SIZE_MAX, MLC_PROT_READ_WRITE) == NULL, "memory|reserve|capacity|large|overflow|size");
  CHECK_FAILS(mlc_arena_new(SIZE_MAX - 4095, MLC_PROT_READ_WRITE) == NULL, "memory|reserve|capacity|large|overflow|size");
}

/* The message stays readable, and a success does not clear it. */
static void test_message_lifetime(void) {
  const char *e;
  char copy[512];
  CHECK(mlc_arena_new(4096, 77) == NULL);
  e = mlc_last_error();
  CHECK(e != NULL && strlen(e) > 0 && strlen(e) < sizeof copy);
  if (!e) return;
  strncpy(copy, e, sizeof copy - 1);
  copy[sizeof copy - 1] = '\0';
  CHECK(strcmp(mlc_last_error(), copy) == 0); /* asking again changes nothing */
  {
    void *p = mlc_valloc_malloc(mlc_libc_valloc(), 16, 16);
    CHECK(p != NULL);
    mlc_valloc_free(mlc_libc_valloc(), p);
  }
  CHECK(mlc_last_error() != NULL && strcmp(mlc_last_error(), copy) == 0);
}

#ifndef _WIN32
/* Each thread has its own last error. */
struct thread_result {
  int null_at_start;
  int own_error_seen;
};
static void *thread_main(void *arg) {
  struct thread_result *r = (struct thread_result *)arg;
  const char *e;
  r->null_at_start = mlc_last_error() == NULL;
  CHECK(mlc_arena_alloc_string(NULL, "x", 7) == NULL);
  e = mlc_last_error();
  r->own_error_seen = e != NULL && e[0] != '\0';
  return NULL;
}
static void test_per_thread(void) {
  pthread_t th;
  struct thread_result r = {0, 0};
  char before[512];
  CHECK(mlc_arena_new(4096, 1234) == NULL); /* this thread: protection */
  check_copy_error_(before, sizeof before);
  CHECK(check_mentions_(before, "protection|prot"));
  CHECK(pthread_create(&th, NULL, thread_main, &r) == 0);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(r.null_at_start);
  CHECK(r.own_error_seen);
  /* The other thread's failure left this thread's message alone. */
  CHECK(mlc_last_error() != NULL && strcmp(mlc_last_error(), before) == 0);
}
#endif

int main(void) {
  /* Before any failure: NULL. */
  CHECK(mlc_last_error() == NULL);
  {
    /* A success does not set it either. */
    void *p = mlc_valloc_malloc(mlc_libc_valloc(), 16, 16);
    mlc_valloc_free(mlc_libc_valloc(), p);
    CHECK(mlc_last_error() == NULL);
  }
  test_null_objects();
  test_null_handle();
  test_strings();
  test_protections();
  test_aligns_and_sizes();
  test_message_lifetime();
#ifndef _WIN32
  test_per_thread();
#endif
  return CHECK_DONE();
}
