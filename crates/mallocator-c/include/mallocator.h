/*
 * mallocator.h: the mallocator library for C.
 *
 *   - a two-pointer allocator handle, mlc_valloc_t, laid out exactly like
 *     Firedancer's fd_valloc_t (fd_valloc.h gives it those names), with the
 *     C library and null allocators;
 *   - a virtual-memory bump arena, mlc_arena_t;
 *   - a backtracing leak tracker, mlc_tracker_t, over any handle.
 *
 * Errors: a function that can fail returns NULL or a negative MLC_ERR_*
 * code, and mlc_last_error() then describes the failure (per thread).
 * NULL object pointers, NULL strings, invalid UTF-8, bad widths and
 * unknown protection values are such errors, never crashes. What C cannot
 * check is undefined, as with free(3): using an object after its
 * mlc_*_delete, passing a pointer that is not an object of that type, or
 * freeing through a handle a block it did not allocate (the tracker
 * catches the last one; other allocators do not).
 *
 * Link with -lmallocator (pkg-config: mallocator).
 */
#ifndef MALLOCATOR_H
#define MALLOCATOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* Return codes of the functions that return int. */
#define MLC_OK 0
#define MLC_ERR_ARGUMENT (-1) /* a NULL object, a bad value */
#define MLC_ERR_MEMORY (-2)   /* out of memory, or the arena is full */
#define MLC_ERR_OS (-3)       /* the operating system refused */

/* A description of the last failed call on this thread (NUL-terminated,
 * valid until this thread's next mallocator call), or NULL if none
 * failed yet. Successful calls do not clear it. */
const char *mlc_last_error(void);

/* ------------------------------------------------------------------ */
/* Allocator handles                                                   */
/* ------------------------------------------------------------------ */

/* The functions behind a handle. malloc(self, align, size) returns a
 * block of size bytes aligned to align, or NULL; free(self, ptr) gives a
 * block back (ptr may be NULL). */
typedef struct mlc_valloc_vtable {
  void *(*malloc)(void *self, size_t align, size_t sz);
  void (*free)(void *self, void *ptr);
} mlc_valloc_vtable_t;

/* An allocator handle: the allocator's state and its functions. Two
 * pointers, passed by value; fd_valloc_t is the same type. */
typedef struct mlc_valloc {
  void *self;
  const mlc_valloc_vtable_t *vt;
} mlc_valloc_t;

/* The C library's allocator (aligned malloc and free). Thread-safe. */
mlc_valloc_t mlc_libc_valloc(void);

/* The null handle ({NULL, NULL}): a marker meaning "do not allocate".
 * Allocating through it returns NULL, freeing through it does nothing. */
mlc_valloc_t mlc_null_valloc(void);

/* 1 if v is the null handle (its vtable is NULL), else 0. */
int mlc_valloc_is_null(mlc_valloc_t v);

/* Allocates through v. The request is checked first, the same way for
 * every handle: align 0 means 16; an align that is not a power of two, or
 * a size that overflows when rounded up to align, gives NULL (with
 * mlc_last_error); size 0 gives a unique block. NULL for the null handle. */
void *mlc_valloc_malloc(mlc_valloc_t v, size_t align, size_t size);

/* Frees ptr through v; NULL and the null handle do nothing. */
void mlc_valloc_free(mlc_valloc_t v, void *ptr);

/* ------------------------------------------------------------------ */
/* The arena                                                           */
/* ------------------------------------------------------------------ */

/* Page protection of an arena's memory. */
typedef int mlc_protection_t;
#define MLC_PROT_NONE 0
#define MLC_PROT_READ 1
#define MLC_PROT_READ_WRITE 2
#define MLC_PROT_READ_EXECUTE 3
#define MLC_PROT_READ_WRITE_EXECUTE 4

/* A bump arena over one reservation of virtual memory: blocks are carved
 * out one after another and freed all at once. Not thread-safe: one
 * thread at a time. */
typedef struct mlc_arena mlc_arena_t;

/* A position in an arena, to roll back to. */
typedef struct mlc_checkpoint {
  uint64_t arena; /* which arena it belongs to */
  uintptr_t pos;  /* the bump pointer then */
} mlc_checkpoint_t;

/* Reserves capacity bytes of address space (0: one allocation-granularity
 * unit, 64 KiB on Windows; else rounded up to the page size). prot must
 * be MLC_PROT_READ_WRITE or MLC_PROT_READ_WRITE_EXECUTE: an arena is
 * filled first, so it is created writable (mlc_arena_protect changes that
 * afterwards). NULL on failure: another or an unknown protection, or the
 * operating system refusing the reservation. */
mlc_arena_t *mlc_arena_new(size_t capacity, mlc_protection_t prot);

/* A block of size bytes aligned to align (0 means 1; a power of two),
 * or NULL when the arena is full or the request is invalid. Size 0 gives
 * a unique pointer (the bump pointer moves by one byte). */
void *mlc_arena_alloc(mlc_arena_t *a, size_t size, size_t align);

/* A copy of the NUL-terminated UTF-8 string utf8: width 1 gives
 * NUL-terminated bytes (char *), width 2 NUL-terminated UTF-16 (uint16_t *,
 * 2-byte aligned). NULL for invalid UTF-8, another width, or a full arena. */
void *mlc_arena_alloc_string(mlc_arena_t *a, const char *utf8, int width);

/* A copy of len bytes at bytes (bytes may be NULL when len is 0). */
void *mlc_arena_alloc_bytes(mlc_arena_t *a, const void *bytes, size_t len);

/* The NUL-terminated UTF-8 string utf8 as one byte per character
 * (Latin-1), NUL-terminated; NULL if a character is above U+00FF. */
void *mlc_arena_alloc_byte_string(mlc_arena_t *a, const char *utf8);

/* The start of the reservation, the bump pointer, the capacity, and the
 * bytes used so far (0 / NULL for a NULL arena). */
void *mlc_arena_base(const mlc_arena_t *a);
void *mlc_arena_ptr(const mlc_arena_t *a);
size_t mlc_arena_size(const mlc_arena_t *a);
size_t mlc_arena_used(const mlc_arena_t *a);

/* The current position, for mlc_arena_rollback (all zero for a NULL
 * arena, which no arena accepts). */
mlc_checkpoint_t mlc_arena_checkpoint(const mlc_arena_t *a);

/* Frees everything allocated since cp. MLC_ERR_ARGUMENT if cp belongs to
 * another arena or lies above the bump pointer (the arena is unchanged). */
int mlc_arena_rollback(mlc_arena_t *a, mlc_checkpoint_t cp);

/* Frees everything; the memory stays reserved. */
int mlc_arena_reset(mlc_arena_t *a);

/* Changes the protection of all the memory the arena has committed.
 * While it is not writable (MLC_PROT_NONE, MLC_PROT_READ or
 * MLC_PROT_READ_EXECUTE), every allocation returns NULL with
 * MLC_ERR_MEMORY and a message saying the arena is not writable. */
int mlc_arena_protect(mlc_arena_t *a, mlc_protection_t prot);

/* A handle allocating from the arena (its free gives back the most recent
 * block only). Valid until the arena is deleted; not thread-safe. */
mlc_valloc_t mlc_arena_valloc(mlc_arena_t *a);

/* Releases the whole reservation. NULL does nothing. */
void mlc_arena_delete(mlc_arena_t *a);

/* ------------------------------------------------------------------ */
/* The leak tracker                                                    */
/* ------------------------------------------------------------------ */

/* Records every live block allocated through its handle, with the stack
 * that allocated it; reports never-freed blocks, double frees and frees of
 * unknown pointers (which it does not pass on). Thread-safe when the
 * inner handle is. */
typedef struct mlc_tracker mlc_tracker_t;

/* A tracker over inner (any handle, also one whose vtable is written in
 * C; its own copy of the handle is kept). NULL for the null handle. */
mlc_tracker_t *mlc_tracker_new(mlc_valloc_t inner);

/* As mlc_tracker_new, also writing every allocation and free to the file
 * at path in Firedancer's backtracing text format (readable by
 * `mallocator leaks`). The log holds addresses of the process, so on
 * Unix the file is created with mode 0600; a symbolic link at path is
 * refused, not followed; an existing file is used only if it is a regular
 * file of this user with no other hard link, and is set to 0600, then
 * emptied. NULL (with MLC_ERR_OS's message) when the file cannot be
 * created. The path is bytes on Unix, UTF-8 elsewhere. */
mlc_tracker_t *mlc_tracker_new_with_log(mlc_valloc_t inner, const char *path);

/* A handle allocating through the tracker; valid until it is deleted. */
mlc_valloc_t mlc_tracker_valloc(mlc_tracker_t *t);

/* Live blocks and bytes now, and the most bytes live at once. */
size_t mlc_tracker_live_blocks(const mlc_tracker_t *t);
size_t mlc_tracker_live_bytes(const mlc_tracker_t *t);
size_t mlc_tracker_peak_bytes(const mlc_tracker_t *t);

/* Tells the tracker that the program unloaded shared objects: call it
 * after dlclose. A library loaded later at the same addresses is then
 * named for itself in the log (and, where call-frame information unwinds
 * stacks, unwound by its own), not after the one unloaded. MLC_OK, or
 * MLC_ERR_ARGUMENT for NULL. */
int mlc_tracker_objects_unloaded(const mlc_tracker_t *t);

/* Writes the leak report (text, or JSON if json != 0) to the file
 * descriptor fd. MLC_OK, or a negative code: MLC_ERR_MEMORY when the
 * memory the report needs for the live blocks cannot be had (the program
 * goes on). Not a cancellation point: a pthread_cancel pending for the
 * calling thread waits for the thread's next one. On Windows, fd is a
 * descriptor of msvcrt.dll's table (what MinGW's runtime uses); a program
 * built against the UCRT has its own table, whose descriptors are not
 * valid here. */
int mlc_tracker_report(const mlc_tracker_t *t, int fd, int json);

/* Deletes the tracker. Blocks still live stay allocated in the inner
 * allocator. NULL does nothing. */
void mlc_tracker_delete(mlc_tracker_t *t);

/* 1 if fd is a file descriptor a tracker's log is written through now,
 * else 0 (always 0 on Windows, where a log is no descriptor). A log file
 * is moved up to descriptor 1000 or above (below the process's limit),
 * away from the numbers a program opens and redirects; a program that
 * closes every descriptor it did not open (a daemon, a sandbox) skips
 * those for which this says 1, or its log ends there. */
int mlc_holds_descriptor(int fd);

#ifdef __cplusplus
}
#endif

#endif /* MALLOCATOR_H */
