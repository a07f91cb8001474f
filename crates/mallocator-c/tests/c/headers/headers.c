/*
 * headers.c: both public headers compile cleanly on their own terms:
 * scripts/test-c.sh builds this as C99 and C11 (gcc and clang) and as
 * C++17 (g++ and clang++), each with -Wall -Wextra -Werror -pedantic.
 * Each header is included twice (the include guards must hold), in both
 * orders, and every declaration is used once, so that a declaration the
 * compiler only checks when used is checked too. Compiled, not run.
 */
#include "fd_valloc.h"
#include "mallocator.h"
#include "mallocator.h"
#include "fd_valloc.h"

static void *c_malloc(void *self, size_t align, size_t sz) {
  (void)self;
  (void)align;
  (void)sz;
  return NULL;
}
static void c_free(void *self, void *ptr) {
  (void)self;
  (void)ptr;
}
static const mlc_valloc_vtable_t c_vtable = {c_malloc, c_free};

int uses_every_declaration(void);
int uses_every_declaration(void) {
  int x = MLC_OK + MLC_ERR_ARGUMENT + MLC_ERR_MEMORY + MLC_ERR_OS;
  mlc_protection_t prots[5] = {MLC_PROT_NONE, MLC_PROT_READ, MLC_PROT_READ_WRITE,
                               MLC_PROT_READ_EXECUTE, MLC_PROT_READ_WRITE_EXECUTE};
  mlc_valloc_t mine = {NULL, &c_vtable};
  mlc_valloc_t v = mlc_libc_valloc();
  fd_valloc_t f = fd_libc_alloc_virtual();
  mlc_arena_t *a = mlc_arena_new(0, prots[2]);
  mlc_tracker_t *t = mlc_tracker_new(v);
  mlc_tracker_t *tl = mlc_tracker_new_with_log(mine, "x.log");
  mlc_checkpoint_t cp = mlc_arena_checkpoint(a);
  const char *e = mlc_last_error();
  char *s = (char *)mlc_arena_alloc_string(a, "s", 1);
  void *p = mlc_valloc_malloc(v, 16, 1);
  const fd_valloc_vtable_t *fvt = f.vt;
  x += e != NULL;
  x += s != NULL;
  x += fvt != NULL;
  mlc_valloc_free(v, p);
  x += mlc_valloc_is_null(mlc_null_valloc());
  x += mlc_arena_alloc(a, 1, 1) != NULL;
  x += mlc_arena_alloc_bytes(a, "b", 1) != NULL;
  x += mlc_arena_alloc_byte_string(a, "b") != NULL;
  x += mlc_arena_base(a) != NULL;
  x += mlc_arena_ptr(a) != NULL;
  x += (int)mlc_arena_size(a) + (int)mlc_arena_used(a);
  x += mlc_arena_rollback(a, cp) + mlc_arena_reset(a) + mlc_arena_protect(a, prots[1]);
  x += mlc_valloc_is_null(mlc_arena_valloc(a));
  x += mlc_valloc_is_null(mlc_tracker_valloc(t));
  x += (int)mlc_tracker_live_blocks(t) + (int)mlc_tracker_live_bytes(t);
  x += (int)mlc_tracker_peak_bytes(t);
  x += mlc_tracker_objects_unloaded(t);
  x += mlc_tracker_report(t, 2, 0);
  mlc_tracker_delete(t);
  mlc_tracker_delete(tl);
  mlc_arena_delete(a);
  x += fd_is_null_alloc_virtual(fd_null_alloc_virtual());
  f = fd_backtracing_alloc_virtual(&f);
  p = fd_valloc_malloc(f, 16, 1);
  fd_valloc_free(f, p);
  return x + (int)cp.pos + (int)cp.arena;
}
