/*
 * test_tracker.c: the leak tracker (mallocator.h) over an allocator whose
 * vtable is written in C (counting.h): live blocks, bytes and peak; the
 * leak report in text and JSON written to a file descriptor; double frees
 * and frees of unknown pointers, which must not reach the inner
 * allocator; blocks that stay live in the inner allocator after the
 * tracker is deleted; a tracker over the libc and arena handles; the log
 * file of mlc_tracker_new_with_log (mode 0600, never through a symbolic
 * link, its descriptor out of the program's way); and, on POSIX, several
 * threads at once. Everything allocated is
 * freed and every object deleted before exit, so that Valgrind and
 * LeakSanitizer see no leak.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "counting.h"
#include "mallocator.h"

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#include <process.h>
#include <sys/stat.h>
#define close _close
#define read _read
#define lseek _lseek
#else
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* A temporary file, open for reading and writing; its path in path. */
static int temp_fd(char *path, size_t len, const char *tag) {
#ifdef _WIN32
  int fd;
  const char *dir = getenv("TEMP");
  snprintf(path, len, "%s\\mlc_%s_%d.tmp", dir ? dir : ".", tag, (int)_getpid());
  fd = _open(path, _O_RDWR | _O_CREAT | _O_TRUNC | _O_BINARY, _S_IREAD | _S_IWRITE);
  return fd;
#else
  const char *dir = getenv("TMPDIR");
  snprintf(path, len, "%s/mlc_%s_XXXXXX", dir && *dir ? dir : "/tmp", tag);
  return mkstemp(path);
#endif
}

/* Everything in the file behind fd (from the start), NUL-terminated;
 * free() it. */
static char *read_all(int fd) {
  size_t cap = 4096, len = 0;
  char *buf = (char *)malloc(cap);
  if (!buf) abort();
  lseek(fd, 0, SEEK_SET);
  for (;;) {
    int n;
    if (cap - len < 1024) {
      char *nb = (char *)realloc(buf, cap * 2);
      if (!nb) abort();
      buf = nb;
      cap *= 2;
    }
    n = (int)read(fd, buf + len, (unsigned)(cap - len - 1));
    if (n <= 0) break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  return buf;
}

/* The number after "key": in JSON text, or -1 if absent. */
static long long json_number(const char *json, const char *key) {
  char pattern[64];
  const char *p;
  snprintf(pattern, sizeof pattern, "\"%s\"", key);
  p = strstr(json, pattern);
  if (!p) return -1;
  p += strlen(pattern);
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p != ':') return -1;
  p++;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p < '0' || *p > '9') return -1;
  return strtoll(p, NULL, 10);
}

/* The report (text or JSON) as a string, through a temporary file. */
static char *report_string(const mlc_tracker_t *t, int json) {
  char path[512];
  char *s;
  int fd = temp_fd(path, sizeof path, json ? "json" : "text");
  CHECK(fd >= 0);
  if (fd < 0) return NULL;
  CHECK_EQ(mlc_tracker_report(t, fd, json), MLC_OK);
  s = read_all(fd);
  close(fd);
  remove(path);
  return s;
}

/* Two leak sites with distinct names, kept out of line so that their
 * names appear in the allocation stacks. */
NOINLINE void *tracker_test_leak_site_one(mlc_valloc_t h, size_t size) {
  return mlc_valloc_malloc(h, 16, size);
}
NOINLINE void *tracker_test_leak_site_two(mlc_valloc_t h, size_t size) {
  return mlc_valloc_malloc(h, 64, size);
}

static void test_counts_and_report(void) {
  counting_t c;
  mlc_tracker_t *t;
  mlc_valloc_t h;
  void *a[3], *b, *tmp[4];
  char *text, *json;
  int i;

  counting_init(&c);
  t = mlc_tracker_new(counting_valloc(&c));
  CHECK(t != NULL);
  if (!t) return;
  h = mlc_tracker_valloc(t);
  CHECK_EQ(mlc_valloc_is_null(h), 0);
  CHECK_EQ(mlc_tracker_live_blocks(t), 0);
  CHECK_EQ(mlc_tracker_live_bytes(t), 0);
  CHECK_EQ(mlc_tracker_peak_bytes(t), 0);

  /* Nothing live: the report says so. */
  json = report_string(t, 1);
  CHECK(json != NULL && json_number(json, "leaked_bytes") == 0);
  CHECK(json != NULL && json_number(json, "leaked_blocks") == 0);
  free(json);

  /* Temporary blocks, all freed: they raise the peak, not the leaks. */
  for (i = 0; i < 4; i++) tmp[i] = mlc_valloc_malloc(h, 8, 1000);
  CHECK_EQ(mlc_tracker_live_blocks(t), 4);
  CHECK_EQ(mlc_tracker_live_bytes(t), 4000);
  CHECK_EQ(c.live_blocks, 4); /* the inner allocator holds them */
  for (i = 0; i < 4; i++) mlc_valloc_free(h, tmp[i]);
  CHECK_EQ(mlc_tracker_live_blocks(t), 0);
  CHECK_EQ(mlc_tracker_live_bytes(t), 0);
  CHECK_EQ(mlc_tracker_peak_bytes(t), 4000);
  CHECK_EQ(c.live_blocks, 0);

  /* The planted leak: 3 x 100 bytes from one site, 1 x 500 from another. */
  for (i = 0; i < 3; i++) a[i] = tracker_test_leak_site_one(h, 100);
  b = tracker_test_leak_site_two(h, 500);
  CHECK(a[0] && a[1] && a[2] && b);
  CHECK_EQ(mlc_tracker_live_blocks(t), 4);
  CHECK_EQ(mlc_tracker_live_bytes(t), 800);
  CHECK_EQ(mlc_tracker_peak_bytes(t), 4000);
  CHECK_EQ(c.live_blocks, 4);
  CHECK_EQ(c.live_bytes, 800);
  CHECK_EQ(c.last_align, 64); /* the request reached the C allocator as made */
  CHECK_EQ(c.last_size, 500);

  /* JSON report: the totals and both groups. */
  json = report_string(t, 1);
  CHECK(json != NULL);
  if (json) {
    CHECK_EQ(json_number(json, "leaked_bytes"), 800);
    CHECK_EQ(json_number(json, "leaked_blocks"), 4);
    CHECK(strstr(json, "\"groups\"") != NULL);
    CHECK(strstr(json, "tracker_test_leak_site_one") != NULL);
    CHECK(strstr(json, "tracker_test_leak_site_two") != NULL);
    free(json);
  }
  /* Text report: the totals and the leak sites by name. */
  text = report_string(t, 0);
  CHECK(text != NULL);
  if (text) {
    CHECK(strstr(text, "800 bytes") != NULL);
    CHECK(strstr(text, "4 blocks") != NULL);
    CHECK(strstr(text, "300 bytes in 3 blocks") != NULL);
    CHECK(strstr(text, "500 bytes in 1 block") != NULL);
    CHECK(strstr(text, "tracker_test_leak_site_one") != NULL);
    CHECK(strstr(text, "tracker_test_leak_site_two") != NULL);
    CHECK(strstr(text, "\"leaked_bytes\"") == NULL); /* not JSON */
    free(text);
  }

  /* A double free and a free of an unknown pointer are reported, not
   * passed on (counting_free would abort on either). */
  {
    size_t frees = c.frees;
    int local;
    mlc_valloc_free(h, a[2]);
    CHECK_EQ(c.frees, frees + 1);
    mlc_valloc_free(h, a[2]); /* double free */
    mlc_valloc_free(h, &local); /* never allocated */
    CHECK_EQ(c.frees, frees + 1);
    CHECK_EQ(mlc_tracker_live_blocks(t), 3);
    CHECK_EQ(mlc_tracker_live_bytes(t), 700);
    json = report_string(t, 1);
    CHECK(json != NULL && json_number(json, "errors_total") == 2);
    CHECK(json != NULL && json_number(json, "leaked_bytes") == 700);
    free(json);
    text = report_string(t, 0);
    CHECK(text != NULL && strstr(text, "double free") != NULL);
    CHECK(text != NULL && strstr(text, "invalid free") != NULL);
    free(text);
  }

  /* Freeing NULL through the tracker does nothing. */
  mlc_valloc_free(h, NULL);
  CHECK_EQ(mlc_tracker_live_blocks(t), 3);

  /* Invalid requests are refused before the tracker or C allocator. */
  {
    size_t mallocs = c.mallocs;
    CHECK_FAILS(mlc_valloc_malloc(h, 12, 8) == NULL, "align");
    CHECK_FAILS(mlc_valloc_malloc(h, 16, SIZE_MAX) == NULL, "overflow|size|large");
    CHECK_EQ(c.mallocs, mallocs);
    CHECK_EQ(mlc_tracker_live_blocks(t), 3);
  }

  /* Free what is left but one block, delete the tracker: that block stays
   * allocated in the inner allocator, which frees it itself. */
  mlc_valloc_free(h, a[0]);
  mlc_valloc_free(h, b);
  CHECK_EQ(mlc_tracker_live_blocks(t), 1);
  CHECK_EQ(mlc_tracker_live_bytes(t), 100);
  mlc_tracker_delete(t);
  CHECK_EQ(c.live_blocks, 1);
  CHECK_EQ(c.live_bytes, 100);
  counting_free(&c, a[1]);
  CHECK_EQ(c.live_blocks, 0);
}

/* Trackers over the library's own handles, and one over another tracker. */
static void test_other_inners(void) {
  mlc_tracker_t *t = mlc_tracker_new(mlc_libc_valloc());
  mlc_arena_t *arena = mlc_arena_new(65536, MLC_PROT_READ_WRITE);
  CHECK(t != NULL && arena != NULL);
  if (t) {
    mlc_valloc_t h = mlc_tracker_valloc(t);
    void *p = mlc_valloc_malloc(h, 4096, 10);
    CHECK(p != NULL && ((uintptr_t)p & 4095u) == 0);
    CHECK_EQ(mlc_tracker_live_bytes(t), 10);
    /* A tracker over a tracker: both count. */
    {
      mlc_tracker_t *outer = mlc_tracker_new(h);
      CHECK(outer != NULL);
      if (outer) {
        void *q = mlc_valloc_malloc(mlc_tracker_valloc(outer), 16, 30);
        CHECK(q != NULL);
        CHECK_EQ(mlc_tracker_live_bytes(outer), 30);
        CHECK_EQ(mlc_tracker_live_bytes(t), 40);
        mlc_valloc_free(mlc_tracker_valloc(outer), q);
        CHECK_EQ(mlc_tracker_live_bytes(t), 10);
        mlc_tracker_delete(outer);
      }
    }
    mlc_valloc_free(h, p);
    CHECK_EQ(mlc_tracker_live_blocks(t), 0);
    mlc_tracker_delete(t);
  }
  if (arena) {
    mlc_tracker_t *ta = mlc_tracker_new(mlc_arena_valloc(arena));
    CHECK(ta != NULL);
    if (ta) {
      unsigned char *p = (unsigned char *)mlc_valloc_malloc(mlc_tracker_valloc(ta), 16, 64);
      unsigned char *base = (unsigned char *)mlc_arena_base(arena);
      CHECK(p != NULL && p >= base && p < base + mlc_arena_size(arena));
      CHECK(mlc_arena_used(arena) >= 64);
      CHECK_EQ(mlc_tracker_live_blocks(ta), 1);
      mlc_valloc_free(mlc_tracker_valloc(ta), p);
      CHECK_EQ(mlc_tracker_live_blocks(ta), 0);
      mlc_tracker_delete(ta);
    }
    mlc_arena_delete(arena);
  }
}

#ifndef _WIN32
/* The log file: created with mode 0600 whatever the umask, filled in the
 * backtracing text format; never opened through a symbolic link. */
static void test_log_file(void) {
  char dir[512], path[600], link_path[600], target[600];
  const char *tmp = getenv("TMPDIR");
  struct stat st;
  mode_t old_umask;
  mlc_tracker_t *t;

  snprintf(dir, sizeof dir, "%s/mlc_logtest_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/alloc.log", dir);
  snprintf(link_path, sizeof link_path, "%s/link.log", dir);
  snprintf(target, sizeof target, "%s/target.log", dir);

  old_umask = umask(0); /* a 0666-and-umask file would now be 0666 */
  t = mlc_tracker_new_with_log(mlc_libc_valloc(), path);
  umask(old_umask);
  CHECK(t != NULL);
  if (t) {
    mlc_valloc_t h = mlc_tracker_valloc(t);
    void *p = mlc_valloc_malloc(h, 16, 77), *q;
    char expect[64];
    int fd;
    char *log;
    CHECK(p != NULL);
    mlc_valloc_free(h, p);
    /* After an unload the log goes on. */
    CHECK_EQ(mlc_tracker_objects_unloaded(t), MLC_OK);
    q = mlc_valloc_malloc(h, 16, 78);
    CHECK(q != NULL);
    mlc_valloc_free(h, q);
    CHECK(stat(path, &st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK_EQ(st.st_mode & 07777, 0600);
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
      log = read_all(fd);
      close(fd);
      /* "+++ ALLOC:<frames>:0x<addr, 16 digits>:<align>:<size>", a FREE. */
      snprintf(expect, sizeof expect, ":0x%016llx:16:77", (unsigned long long)(uintptr_t)p);
      CHECK(strstr(log, "+++ ALLOC:") != NULL);
      CHECK(strstr(log, "+++ FREE:") != NULL);
      CHECK(strstr(log, expect) != NULL);
      snprintf(expect, sizeof expect, ":0x%016llx:16:78", (unsigned long long)(uintptr_t)q);
      CHECK(strstr(log, expect) != NULL);
      free(log);
    }
    mlc_tracker_delete(t);
  }

  /* A symbolic link, to a file that does not exist yet: refused, and the
   * target is not created. */
  CHECK(symlink(target, link_path) == 0);
  CHECK_FAILS(mlc_tracker_new_with_log(mlc_libc_valloc(), link_path) == NULL,
              "link|symlink|loop|exist");
  CHECK(stat(target, &st) != 0 && errno == ENOENT);
  /* A symbolic link to an existing file: refused, the file unchanged. */
  {
    FILE *f = fopen(target, "w");
    CHECK(f != NULL);
    if (f) {
      fputs("keep me\n", f);
      fclose(f);
    }
    CHECK_FAILS(mlc_tracker_new_with_log(mlc_libc_valloc(), link_path) == NULL,
                "link|symlink|loop|exist");
    CHECK(stat(target, &st) == 0 && st.st_size == 8);
  }
  /* A second name of a file (a hard link): refused, the file unchanged. */
  {
    char hard_path[600];
    snprintf(hard_path, sizeof hard_path, "%s/hard.log", dir);
    CHECK(link(target, hard_path) == 0);
    CHECK_FAILS(mlc_tracker_new_with_log(mlc_libc_valloc(), hard_path) == NULL,
                "one name|link|regular");
    CHECK(stat(target, &st) == 0 && st.st_size == 8);
    remove(hard_path);
  }
  /* A directory that does not exist: the OS refuses. */
  {
    char missing[700];
    snprintf(missing, sizeof missing, "%s/no/such/dir.log", dir);
    CHECK_FAILS(mlc_tracker_new_with_log(mlc_libc_valloc(), missing) == NULL,
                "no such|not found|exist|directory|open|create");
  }
  /* No tracker for the null handle, with or without a log. */
  CHECK_FAILS(mlc_tracker_new_with_log(mlc_null_valloc(), target) == NULL, NULL_WORDS);

  remove(link_path);
  remove(target);
  remove(path);
  CHECK(rmdir(dir) == 0);
}

/* Reports to a pipe and to a closed descriptor. */
static void test_report_fds(void) {
  mlc_tracker_t *t = mlc_tracker_new(mlc_libc_valloc());
  int fds[2];
  CHECK(t != NULL);
  if (!t) return;
  {
    void *p = mlc_valloc_malloc(mlc_tracker_valloc(t), 16, 123);
    char buf[65536];
    ssize_t n;
    CHECK(pipe(fds) == 0);
    CHECK_EQ(mlc_tracker_report(t, fds[1], 1), MLC_OK);
    close(fds[1]);
    n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    CHECK(n > 0);
    buf[n > 0 ? n : 0] = '\0';
    CHECK_EQ(json_number(buf, "leaked_bytes"), 123);
    mlc_valloc_free(mlc_tracker_valloc(t), p);
  }
  /* A descriptor that is not open: MLC_ERR_OS. */
  {
    int fd = open("/dev/null", O_WRONLY);
    close(fd);
    CHECK_FAILS(mlc_tracker_report(t, fd, 0) == MLC_ERR_OS, "descriptor|write|bad|fd");
  }
  /* A read-only descriptor: the write fails, MLC_ERR_OS. */
  {
    int fd = open("/dev/null", O_RDONLY);
    CHECK_FAILS(mlc_tracker_report(t, fd, 1) == MLC_ERR_OS, "descriptor|write|bad|fd");
    close(fd);
  }
  mlc_tracker_delete(t);
}

/* Thread-safe over a thread-safe inner handle. */
#define THREADS 4
#define ROUNDS 2000
static void *thread_main(void *arg) {
  mlc_valloc_t h = *(mlc_valloc_t *)arg;
  void *keep[8];
  int i, k;
  for (i = 0; i < ROUNDS; i++) {
    for (k = 0; k < 8; k++) keep[k] = mlc_valloc_malloc(h, 16, (size_t)(k + 1) * 8);
    for (k = 0; k < 8; k++) mlc_valloc_free(h, keep[k]);
  }
  /* Leave exactly one block of 10 bytes per thread. */
  return mlc_valloc_malloc(h, 16, 10);
}

static void test_threads(void) {
  mlc_tracker_t *t = mlc_tracker_new(mlc_libc_valloc());
  mlc_valloc_t h;
  pthread_t th[THREADS];
  void *left[THREADS];
  int i;
  CHECK(t != NULL);
  if (!t) return;
  h = mlc_tracker_valloc(t);
  for (i = 0; i < THREADS; i++) CHECK(pthread_create(&th[i], NULL, thread_main, &h) == 0);
  for (i = 0; i < THREADS; i++) CHECK(pthread_join(th[i], &left[i]) == 0);
  CHECK_EQ(mlc_tracker_live_blocks(t), THREADS);
  CHECK_EQ(mlc_tracker_live_bytes(t), THREADS * 10);
  CHECK(mlc_tracker_peak_bytes(t) >= 288); /* one thread's 8 blocks */
  for (i = 0; i < THREADS; i++) mlc_valloc_free(h, left[i]);
  CHECK_EQ(mlc_tracker_live_blocks(t), 0);
  mlc_tracker_delete(t);
}
/* The log's descriptor: moved up out of the way of the numbers a program
 * opens, said held while the tracker lives, so that a program closing
 * every descriptor it did not open (as a daemon does) can spare it and
 * keep its log; not held once the tracker is deleted. */
static void test_log_descriptor(void) {
  char dir[512], path[600], expect[64];
  const char *tmp = getenv("TMPDIR");
  mlc_tracker_t *t;
  int fd, held = -1, count = 0, log_fd;
  long limit = sysconf(_SC_OPEN_MAX);

  snprintf(dir, sizeof dir, "%s/mlc_fdtest_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/alloc.log", dir);
  CHECK_EQ(mlc_holds_descriptor(-1), 0);
  t = mlc_tracker_new_with_log(mlc_libc_valloc(), path);
  CHECK(t != NULL);
  if (!t) return;
  for (fd = 0; fd < limit && fd < 1 << 16; fd++) {
    if (mlc_holds_descriptor(fd)) {
      held = fd;
      count++;
    }
  }
  CHECK_EQ(count, 1);
  CHECK(held >= 1000 || held == limit - 1);
  /* A daemon's start: every descriptor above 2 closed, but the log's. */
  for (fd = 3; fd < limit && fd < 1 << 16; fd++) {
    if (!mlc_holds_descriptor(fd)) close(fd);
  }
  {
    mlc_valloc_t h = mlc_tracker_valloc(t);
    void *p = mlc_valloc_malloc(h, 16, 79);
    CHECK(p != NULL);
    mlc_valloc_free(h, p);
    snprintf(expect, sizeof expect, ":0x%016llx:16:79", (unsigned long long)(uintptr_t)p);
  }
  mlc_tracker_delete(t);
  CHECK_EQ(mlc_holds_descriptor(held), 0);
  log_fd = open(path, O_RDONLY);
  CHECK(log_fd >= 0);
  if (log_fd >= 0) {
    char *log = read_all(log_fd);
    close(log_fd);
    CHECK(strstr(log, expect) != NULL);
    free(log);
  }
  unlink(path);
  rmdir(dir);
}
#endif /* !_WIN32 */

int main(void) {
  test_counts_and_report();
  test_other_inners();
#ifndef _WIN32
  test_log_file();
  test_log_descriptor();
  test_report_fds();
  test_threads();
#endif
  return CHECK_DONE();
}
