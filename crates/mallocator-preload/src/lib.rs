//! `libmallocator_preload.so`: the C allocator's functions (`malloc`,
//! `free`, `calloc`, `realloc`, `reallocarray`, `posix_memalign`,
//! `aligned_alloc`, `memalign`, `valloc`, `pvalloc`,
//! `malloc_usable_size`, and C23's `free_sized` and `free_aligned_sized`,
//! for programs built against a C library that has them) over the process-wide
//! backtracing tracker, for
//! `mallocator trace`, which runs a program with this library in
//! `LD_PRELOAD`.
//!
//! Linux with glibc only (the tracker's own memory and the blocks it
//! hands out come from glibc's allocator proper, `__libc_malloc` and its
//! kin); on other targets this library is empty.
//!
//! `dlclose` is defined too, to tell the tracker after each unload (so a
//! library loaded later at the same addresses is named for itself in the
//! log); and so are `_exit`, `_Exit`, `abort` and the `exec` family, to
//! end the log first (`init.rs`, `exec.rs`); and `close`, `close_range`,
//! `closefrom`, `dup2` and `dup3`, to keep the log's descriptor open
//! (`descriptors.rs`); and `pthread_getattr_np`, which glibc's allocates
//! in while it holds a thread's lock (`thread_stack.rs`).
//!
//! The C++ `operator new` and `operator delete` are not defined here:
//! libstdc++ (and libc++) implement them with `malloc` and `free`, so
//! their blocks are tracked through these.
//!
//! The tracker is configured by the environment as
//! [`GlobalBacktracing::new`](mallocator::backtracing::GlobalBacktracing::new)
//! documents (`MALLOCATOR_LOG` and the rest), read at the first
//! allocation.
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod descriptors;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod environment;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod exec;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod hooks;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod init;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod next;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod signals;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod thread_stack;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod unload;
