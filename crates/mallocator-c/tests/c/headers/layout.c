/*
 * layout.c: the headers' types have the layout the Rust side and
 * Firedancer's fd_valloc_t have, checked at compile time (C11):
 * scripts/test-c.sh compiles it with -std=c11 -Werror (gcc and clang,
 * and mingw for Windows). A mismatch is a compile error. Not run.
 */
#include <stddef.h>
#include <stdint.h>

#include "fd_valloc.h"
#include "mallocator.h"

/* The handle: two pointers, self then vt, passed by value. */
_Static_assert(sizeof(mlc_valloc_t) == 2 * sizeof(void *), "mlc_valloc_t is two pointers");
_Static_assert(_Alignof(mlc_valloc_t) == _Alignof(void *), "mlc_valloc_t is pointer-aligned");
_Static_assert(offsetof(mlc_valloc_t, self) == 0, "self comes first");
_Static_assert(offsetof(mlc_valloc_t, vt) == sizeof(void *), "vt comes second");

/* The vtable: malloc then free, two function pointers. */
_Static_assert(sizeof(mlc_valloc_vtable_t) == 2 * sizeof(void (*)(void)), "vtable is two function pointers");
_Static_assert(offsetof(mlc_valloc_vtable_t, malloc) == 0, "malloc comes first");
_Static_assert(offsetof(mlc_valloc_vtable_t, free) == sizeof(void (*)(void)), "free comes second");
_Static_assert(_Generic(((mlc_valloc_vtable_t *)0)->malloc, void *(*)(void *, size_t, size_t): 1, default: 0),
               "malloc(self, align, sz)");
_Static_assert(_Generic(((mlc_valloc_vtable_t *)0)->free, void (*)(void *, void *): 1, default: 0),
               "free(self, ptr)");
_Static_assert(_Generic(((mlc_valloc_t *)0)->vt, const mlc_valloc_vtable_t *: 1, default: 0),
               "vt points to a const vtable");

/* fd_valloc.h's types are the same types, not look-alikes. */
_Static_assert(_Generic((fd_valloc_t *)0, mlc_valloc_t *: 1, default: 0), "fd_valloc_t is mlc_valloc_t");
_Static_assert(_Generic((fd_valloc_vtable_t *)0, mlc_valloc_vtable_t *: 1, default: 0),
               "fd_valloc_vtable_t is mlc_valloc_vtable_t");

/* The checkpoint: a 64-bit arena id, then the position. */
_Static_assert(sizeof(((mlc_checkpoint_t *)0)->arena) == 8, "arena id is 64-bit");
_Static_assert(offsetof(mlc_checkpoint_t, arena) == 0, "arena comes first");
_Static_assert(offsetof(mlc_checkpoint_t, pos) == 8, "pos comes second");
_Static_assert(sizeof(((mlc_checkpoint_t *)0)->pos) == sizeof(void *), "pos is pointer-sized");
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(mlc_checkpoint_t) == 16, "mlc_checkpoint_t is 16 bytes on 64-bit");
#endif

/* The protection values and codes, as the Rust side numbers them. */
_Static_assert(_Generic((mlc_protection_t)0, int: 1, default: 0), "mlc_protection_t is int");
_Static_assert(MLC_PROT_NONE == 0 && MLC_PROT_READ == 1 && MLC_PROT_READ_WRITE == 2 &&
                   MLC_PROT_READ_EXECUTE == 3 && MLC_PROT_READ_WRITE_EXECUTE == 4,
               "protection values");
_Static_assert(MLC_OK == 0 && MLC_ERR_ARGUMENT == -1 && MLC_ERR_MEMORY == -2 && MLC_ERR_OS == -3,
               "return codes");

/* Pointers convert between the two APIs without a cast (-Werror turns an
 * incompatible-pointer warning into an error). */
fd_valloc_t *as_fd(mlc_valloc_t *v);
fd_valloc_t *as_fd(mlc_valloc_t *v) { return v; }
mlc_valloc_t *as_mlc(fd_valloc_t *v);
mlc_valloc_t *as_mlc(fd_valloc_t *v) { return v; }
const mlc_valloc_vtable_t *as_mlc_vt(const fd_valloc_vtable_t *vt);
const mlc_valloc_vtable_t *as_mlc_vt(const fd_valloc_vtable_t *vt) { return vt; }
