/*
 * fd_valloc.h: Firedancer's virtual allocator interface, under its own
 * names, implemented by mallocator. Code written against fd_valloc
 * compiles unchanged and links with -lmallocator.
 *
 * Differences from the original, all of them defined answers where the
 * original had undefined behaviour or a dangling pointer:
 *   - Allocating through the null handle (fd_null_alloc_virtual()) returns
 *     NULL, and freeing through it does nothing; the original called
 *     through a NULL vtable and crashed.
 *   - fd_valloc_malloc checks the request: align 0 means 16; an align that
 *     is not a power of two, or a size that overflows when rounded up to
 *     align, gives NULL (mlc_last_error() says why); size 0 gives a unique
 *     block. The original passed anything on to aligned_alloc.
 *   - fd_backtracing_alloc_virtual keeps its own copy of *inner_valloc, so
 *     the handle stays valid after the variable inner_valloc points to is
 *     gone (the original kept the pointer). Each call makes a new tracker
 *     that lives until the process exits: call it once per inner handle.
 *     It writes the original's text log to standard output, one whole
 *     record per write, so `./prog | mallocator leaks` works as with the
 *     original's leak-detector script; unlike the original, a double free
 *     or a free of an unknown pointer is not passed on to the inner
 *     allocator (it is logged, and mallocator leaks reports it).
 *   - The functions are exported functions, not static inline ones; the
 *     handle types are mallocator.h's, so handles flow between both APIs.
 */
#ifndef FD_VALLOC_H
#define FD_VALLOC_H

#include "mallocator.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef mlc_valloc_vtable_t fd_valloc_vtable_t;
typedef mlc_valloc_t fd_valloc_t;

/* The C library's allocator. */
fd_valloc_t fd_libc_alloc_virtual(void);

/* The null handle: a marker meaning "do not allocate". */
fd_valloc_t fd_null_alloc_virtual(void);

/* 1 if valloc is the null handle, else 0. */
int fd_is_null_alloc_virtual(fd_valloc_t valloc);

/* A leak-tracking handle over *inner_valloc that logs every call to
 * standard output (see above). The null handle (and mlc_last_error) if
 * inner_valloc is NULL or points to the null handle. */
fd_valloc_t fd_backtracing_alloc_virtual(fd_valloc_t *inner_valloc);

/* Allocates sz bytes aligned to align through valloc. */
void *fd_valloc_malloc(fd_valloc_t valloc, size_t align, size_t sz);

/* Frees ptr through valloc. */
void fd_valloc_free(fd_valloc_t valloc, void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* FD_VALLOC_H */
