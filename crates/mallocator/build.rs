//! Names for the two platform conditions the code tests in many places,
//! so that each is written once, here:
//!
//! - `dwarf_unwinder`: `StackMode::Dwarf` is built in (the `dwarf-unwind`
//!   feature, on Linux x86-64, which framehop and the register capture
//!   support; not under Miri, which cannot run either).
//! - `glibc_own_heap`: the tracker's own memory comes from glibc's
//!   allocator proper (the `own-heap-glibc` feature, on glibc; not under
//!   Miri, and not in sanitizer builds, whose allocator takes some of
//!   glibc's names but not all: see `own_heap.rs`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    cfg_aliases::cfg_aliases! {
        dwarf_unwinder: {
            all(feature = "dwarf-unwind", target_os = "linux", target_arch = "x86_64", not(miri))
        },
        glibc_own_heap: {
            all(
                feature = "own-heap-glibc",
                target_os = "linux",
                target_env = "gnu",
                not(miri),
                not(any(mallocator_sanitize = "address", mallocator_sanitize = "thread"))
            )
        },
    }
}
