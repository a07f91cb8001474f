/*
 * check.h: the few assertion helpers the C tests share.
 *
 * Every check counts as passed or failed; a failed check prints its file,
 * line and expression on stderr and the test goes on, so one run shows
 * every failure. CHECK_DONE() prints the closing "N passed, M failed"
 * line and gives main's exit status (0 only if nothing failed and
 * something was checked).
 *
 * Expected failures: CHECK_FAILS(expr, "word|other") evaluates expr (which
 * must be true when the call failed the way the header promises, e.g.
 * `p == NULL`) and checks that mlc_last_error() then describes it: not
 * NULL, not empty, and containing one of the |-separated words (case
 * insensitive). Because successful calls do not clear the error, a stale
 * message from an earlier failure could pass that check; so before expr
 * runs, a different failure with a known message is provoked (a "primer"),
 * and the message after expr must differ from the primer's.
 */
#ifndef MLC_TEST_CHECK_H
#define MLC_TEST_CHECK_H

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mallocator.h"

static int check_passed_;
static int check_failed_;

static void check_report_(int ok, const char *file, int line, const char *what) {
  if (ok) {
    check_passed_++;
  } else {
    check_failed_++;
    fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what);
    fflush(stderr);
  }
}

#define CHECK(cond) check_report_((cond) ? 1 : 0, __FILE__, __LINE__, #cond)

/* Equality of two integers (printed on failure). */
#define CHECK_EQ(a, b)                                                      \
  do {                                                                      \
    unsigned long long check_a_ = (unsigned long long)(a);                  \
    unsigned long long check_b_ = (unsigned long long)(b);                  \
    check_report_(check_a_ == check_b_, __FILE__, __LINE__, #a " == " #b);  \
    if (check_a_ != check_b_)                                               \
      fprintf(stderr, "    left: %llu (signed %lld), right: %llu (signed %lld)\n", \
              check_a_, (long long)check_a_, check_b_, (long long)check_b_); \
  } while (0)

/* Case-insensitive: does hay contain one of the |-separated words? */
static int check_mentions_(const char *hay, const char *words) {
  const char *w = words;
  while (*w) {
    size_t n = strcspn(w, "|");
    size_t i, j;
    for (i = 0; hay[i]; i++) {
      for (j = 0; j < n && hay[i + j]; j++)
        if (tolower((unsigned char)hay[i + j]) != tolower((unsigned char)w[j])) break;
      if (j == n) return 1;
    }
    w += n;
    if (*w == '|') w++;
  }
  return 0;
}

/* A copy of the current message (or "") in buf. */
static void check_copy_error_(char *buf, size_t len) {
  const char *e = mlc_last_error();
  if (!e) e = "";
  strncpy(buf, e, len - 1);
  buf[len - 1] = '\0';
}

/* Primer 0: a bad protection value. Primer 1: an align that is not a
 * power of two. Each check uses the primer whose failure is not the kind
 * it expects (see CHECK_FAILS_P). */
static void check_prime_(int which, char *buf, size_t len) {
  if (which == 0) {
    mlc_arena_t *a = mlc_arena_new(4096, 12345);
    if (a) {
      fprintf(stderr, "check.h: primer: mlc_arena_new(4096, 12345) succeeded\n");
      mlc_arena_delete(a);
    }
  } else {
    void *p = mlc_valloc_malloc(mlc_libc_valloc(), 48, 1);
    if (p) {
      fprintf(stderr, "check.h: primer: mlc_valloc_malloc(align 48) succeeded\n");
      mlc_valloc_free(mlc_libc_valloc(), p);
    }
  }
  check_copy_error_(buf, len);
}

static void check_fails_(int ok, const char *primer, const char *words, const char *file,
                         int line, const char *what) {
  const char *e = mlc_last_error();
  int described = e != NULL && e[0] != '\0' && strcmp(e, primer) != 0 &&
                  check_mentions_(e, words);
  check_report_(ok, file, line, what);
  check_report_(described, file, line, "mlc_last_error() describes the failure");
  if (!described)
    fprintf(stderr, "    after: %s\n    mlc_last_error(): %s%s%s\n    expected a new message mentioning: %s\n",
            what, e ? "\"" : "", e ? e : "NULL", e ? "\"" : "", words);
}

#define CHECK_FAILS_P(which, cond, words)                                   \
  do {                                                                      \
    char check_primer_[512];                                                \
    check_prime_((which), check_primer_, sizeof check_primer_);             \
    check_fails_((cond) ? 1 : 0, check_primer_, (words), __FILE__, __LINE__, #cond); \
  } while (0)

/* The usual primer is the protection one; checks that expect a message
 * about protection use CHECK_FAILS_PROT, which primes with a bad align. */
#define CHECK_FAILS(cond, words) CHECK_FAILS_P(0, cond, words)
#define CHECK_FAILS_PROT(cond, words) CHECK_FAILS_P(1, cond, words)

/* Words a message about a NULL object or string should contain. */
#define NULL_WORDS "null"

#define CHECK_DONE()                                                        \
  (printf("%d passed, %d failed\n", check_passed_, check_failed_), fflush(stdout), \
   (check_failed_ == 0 && check_passed_ > 0) ? 0 : 1)

#endif /* MLC_TEST_CHECK_H */
