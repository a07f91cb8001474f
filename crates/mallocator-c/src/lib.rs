//! `libmallocator`: the mallocator library for C (`mallocator.h`, and
//! `fd_valloc.h` for code written against Firedancer's fd_valloc).
//!
//! A thin layer: each exported function checks its arguments, calls the
//! `mallocator` crate, and turns failures into a NULL or negative return
//! plus a thread-local message ([`error`]). Nothing here panics across the
//! C boundary: every entry point that could reach a panic catches it and
//! reports it as an error.
//!
//! Each header's prototypes are written by hand (with the docs a C
//! programmer reads); `scripts/test-c.sh` compiles them together with
//! declarations generated from this crate by cbindgen, so a prototype
//! that disagrees with its Rust definition fails to compile.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Every exported function dereferences the C caller's pointers after
// checking them for NULL; what C cannot check is documented per function
// in the headers, as for free(3).
#![allow(clippy::missing_safety_doc)]

pub mod arena;
pub mod error;
pub mod fd_valloc;
pub mod handle;
pub mod tracker;
