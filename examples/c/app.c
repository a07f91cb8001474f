/*
 * app.c: libmallocator from C, in one short program.
 *
 *   1. an arena: strings copied in as UTF-8 and UTF-16, a checkpoint to
 *      roll scratch work back, errors reported by mlc_last_error();
 *   2. a leak tracker over the C library's allocator, used through
 *      Firedancer's fd_valloc names (the handle types are the same), that
 *      finds the block this program "forgets" and prints its report.
 *
 * Build: see the Makefile (make && make run), or
 *   cc app.c $(pkg-config --cflags --libs mallocator) -o app
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <fd_valloc.h>
#include <mallocator.h>

static int fail(const char *what) {
  fprintf(stderr, "%s failed: %s\n", what, mlc_last_error());
  return 1;
}

/* Some "request handling" that forgets to free its buffer. */
static void *handle_request(fd_valloc_t valloc) {
  char *buf = (char *)fd_valloc_malloc(valloc, 16, 48);
  if (buf) snprintf(buf, 48, "request #1");
  return buf; /* the caller never frees it: a leak */
}

static int arena_demo(void) {
  mlc_arena_t *arena = mlc_arena_new(1 << 20, MLC_PROT_READ_WRITE);
  const char *name;
  const uint16_t *wide;
  mlc_checkpoint_t cp;
  if (!arena) return fail("mlc_arena_new");

  /* Copies of UTF-8 text: as bytes, and as UTF-16 for wide-char APIs. */
  name = (const char *)mlc_arena_alloc_string(arena, "Gr\xc3\xbc\xc3\x9f" "e", 1);
  wide = (const uint16_t *)mlc_arena_alloc_string(arena, "Gr\xc3\xbc\xc3\x9f" "e", 2);
  if (!name || !wide) return fail("mlc_arena_alloc_string");
  printf("arena: \"%s\" is %zu bytes of UTF-8; its UTF-16 starts 0x%04x 0x%04x 0x%04x\n", name,
         strlen(name), wide[0], wide[1], wide[2]);

  /* Scratch work after a checkpoint, then all of it given back at once. */
  cp = mlc_arena_checkpoint(arena);
  if (!mlc_arena_alloc(arena, 4096, 64)) return fail("mlc_arena_alloc");
  printf("arena: %zu bytes used with scratch, ", mlc_arena_used(arena));
  if (mlc_arena_rollback(arena, cp) != MLC_OK) return fail("mlc_arena_rollback");
  printf("%zu after rollback\n", mlc_arena_used(arena));

  /* Bad input is an error, not a crash. */
  if (!mlc_arena_alloc_string(arena, "\xff", 1))
    printf("arena: refused: %s\n", mlc_last_error());

  mlc_arena_delete(arena); /* frees every block at once */
  return 0;
}

static int tracker_demo(void) {
  mlc_tracker_t *tracker = mlc_tracker_new(mlc_libc_valloc());
  fd_valloc_t valloc; /* an mlc_valloc_t: both names are one type */
  char *kept;
  void *leaked;
  if (!tracker) return fail("mlc_tracker_new");
  valloc = mlc_tracker_valloc(tracker);

  kept = (char *)fd_valloc_malloc(valloc, 16, 100);
  leaked = handle_request(valloc);
  if (!kept || !leaked) return fail("fd_valloc_malloc");
  fd_valloc_free(valloc, kept);

  printf("tracker: %zu block(s), %zu bytes still live\n", mlc_tracker_live_blocks(tracker),
         mlc_tracker_live_bytes(tracker));
  fflush(stdout); /* the report is written to the descriptor, not through stdio */
  if (mlc_tracker_report(tracker, 1, 0) != MLC_OK) return fail("mlc_tracker_report");

  /* A real program would now fix the leak; this one frees it here so that
   * it exits clean. Blocks are freed through the handle that made them. */
  fd_valloc_free(valloc, leaked);
  mlc_tracker_delete(tracker);
  return 0;
}

int main(void) {
  if (arena_demo() != 0) return 1;
  return tracker_demo();
}
