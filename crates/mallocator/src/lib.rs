//! # mallocator
//!
//! Composable memory allocators for systems code:
//!
//! * [`Valloc`]: a copyable `{self, vtable}` allocator handle laid out
//!   exactly like Firedancer's C `fd_valloc_t`, so C and Rust can hand
//!   allocators to each other, with defined behaviour for every input;
//!   [`Valloc::libc`], [`Valloc::null`], and any [`RawAlloc`] type.
//! * [`GlobalValloc`]: any thread-safe handle as `#[global_allocator]`;
//!   every handle is also an [`allocator_api2::alloc::Allocator`].
//!
//! ```
//! use mallocator::Valloc;
//!
//! let v = Valloc::libc();
//! let mut xs = allocator_api2::vec::Vec::new_in(v);
//! xs.extend_from_slice(&[1, 2, 3]);
//! assert_eq!(xs.iter().sum::<i32>(), 6);
//! ```
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
