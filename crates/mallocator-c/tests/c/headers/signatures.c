/*
 * signatures.c: the hand-written prototypes agree with the Rust
 * definitions. scripts/test-c.sh generates mallocator_generated.h from
 * the crate with cbindgen (crates/mallocator-c/cbindgen.toml: functions
 * only, under the headers' type names) and compiles this with -Werror:
 * a function declared twice with different types is a "conflicting
 * types" error. Compiled, not run.
 */
#include "fd_valloc.h"
#include "mallocator.h"
#include "mallocator_generated.h"

/* Not empty even if the generated header were (ISO C). */
typedef int signatures_checked;
