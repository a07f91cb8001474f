//! # mallocator
//!
//! Composable memory allocators for systems code, in three pieces. Each
//! works alone; the C library `libmallocator` gives C programs all three.
//!
//! ## The handle: [`Valloc`]
//!
//! A copyable `{self, vtable}` allocator handle laid out exactly like
//! Firedancer's C `fd_valloc_t`, so C and Rust can hand allocators to each
//! other, with defined behaviour for every input: [`Valloc::libc`],
//! [`Valloc::null`], any [`RawAlloc`] type; [`GlobalValloc`] makes a
//! thread-safe one the `#[global_allocator]`, and every handle is an
//! [`allocator_api2::alloc::Allocator`]. Start here:
//!
//! ```
//! use mallocator::Valloc;
//!
//! let v = Valloc::libc();
//! let mut xs = allocator_api2::vec::Vec::new_in(v);
//! xs.extend_from_slice(&[1, 2, 3]);
//! assert_eq!(xs.iter().sum::<i32>(), 6);
//! ```
//!
//! ## The arena: [`Arena`]
//!
//! A bump allocator over virtual memory reserved from the OS: aligned
//! blocks, C and UTF-16 strings, bytes, checkpoints, everything freed at
//! once. Start here:
//!
//! ```
//! # #[cfg(not(miri))] { // Miri cannot reserve pages from the OS
//! use mallocator::Arena;
//!
//! let mut arena = Arena::with_capacity(1 << 20).expect("1 MiB of address space");
//! let name = arena.alloc_str("config.toml");
//! let nums = arena.alloc_slice_copy(&[1u32, 2, 3]);
//! assert_eq!((name, nums.len()), ("config.toml", 3));
//! arena.reset(); // every block at once
//! # }
//! ```
//!
//! ## The leak tracker: [`backtracing`]
//!
//! A backtracing allocator over any handle: records who allocated every
//! live block, catches double and invalid frees, and reports leaks
//! grouped by stack (in process, at exit with reachability classes, or
//! offline from its log with `mallocator leaks`). Start here:
//!
//! ```
//! # #[cfg(all(feature = "std", any(unix, windows)))] {
//! use mallocator::backtracing::Backtracing;
//! use mallocator::Valloc;
//!
//! let tracker = Backtracing::new(Valloc::libc());
//! let v = tracker.valloc();
//! let forgotten = v.malloc(8, 24);
//! let report = tracker.report();
//! assert_eq!((report.leaked_blocks, report.leaked_bytes), (1, 24));
//! println!("{report}"); // the stack that allocated it
//! # unsafe { v.free(forgotten) }; // (freed after all, for Miri's leak check)
//! # }
//! ```
//!
//! For a whole program, make [`GlobalBacktracing`] the
//! `#[global_allocator]` and run with `MALLOCATOR_LEAKS=stderr`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod arena;
#[cfg(all(feature = "std", any(unix, windows)))]
pub mod backtracing;
pub mod global;
#[cfg(any(unix, windows))]
pub mod libc_alloc;
pub mod sys;
#[cfg(test)]
mod test_util;
pub mod valloc;

pub use arena::{Arena, ArenaBuilder, ArenaError, Checkpoint, CommitPolicy, WideCStr};
#[cfg(all(feature = "std", any(unix, windows)))]
pub use backtracing::{Backtracing, GlobalBacktracing, LeakReport};
pub use global::GlobalValloc;
pub use sys::{OsError, Protection};
pub use valloc::{AllocError, Local, RawAlloc, Shared, Sharing, Valloc, VallocVtable};

/// The README's Rust examples, compiled and run as doctests so that they
/// stay true. (Not under Miri: they reserve and protect real memory.)
#[cfg(all(doctest, not(miri), feature = "std"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
