//! Strings for C from an arena: NUL-terminated UTF-8 and UTF-16 strings
//! are bump-allocated next to each other and handed to real C functions,
//! with the arena's `base / ptr / used` shown after every step.
//!
//! * UTF-8 (`char *`): the C library's `strlen`, on every platform.
//! * UTF-16 (`wchar_t *` on Windows): the C runtime's `wcslen`, where
//!   `wchar_t` is 16 bits. On Unix `wchar_t` is 32 bits (UTF-32), so no C
//!   library function takes a UTF-16 string: there the example walks the
//!   string to its NUL terminator as a C caller would, and decodes it back.
//!
//! ```text
//! cargo run --example ffi_strings
//! ```

use std::ffi::{c_char, CStr};

use mallocator::{Arena, WideCStr};

extern "C" {
    /// `size_t strlen(const char *s)` from the C library.
    fn strlen(s: *const c_char) -> usize;
}

#[cfg(windows)]
extern "C" {
    /// `size_t wcslen(const wchar_t *s)` from the C runtime; `wchar_t` is
    /// UTF-16 on Windows.
    fn wcslen(s: *const u16) -> usize;
}

/// The length in `u16` units of the NUL-terminated UTF-16 string at `s`,
/// measured by C code (Windows) or by a C-style walk (elsewhere).
///
/// # Safety
/// `s` points to readable `u16`s up to and including a NUL.
unsafe fn utf16_len(s: *const u16) -> usize {
    #[cfg(windows)]
    {
        // SAFETY: forwarded from this function's contract.
        unsafe { wcslen(s) }
    }
    #[cfg(not(windows))]
    {
        let mut n = 0;
        // SAFETY: every unit up to the NUL is readable (the contract).
        while unsafe { *s.add(n) } != 0 {
            n += 1;
        }
        n
    }
}

/// Prints the arena's state after a step.
fn show(arena: &Arena, step: &str) {
    println!(
        "  base {:p}  ptr {:p}  used {:4} bytes  ({step})",
        arena.base(),
        arena.ptr(),
        arena.used()
    );
}

fn main() {
    let mut arena = Arena::new();
    println!(
        "arena of {} bytes ({} committed):",
        arena.capacity(),
        arena.committed()
    );
    show(&arena, "empty");

    let words = [
        "mallocator",
        "Grüße aus Köln",
        "日本語のテキスト",
        "crab 🦀 outside the BMP",
    ];
    for word in words {
        // UTF-8 plus NUL: a `&CStr` whose bytes live in the arena.
        let c: &CStr = arena.alloc_c_str(word).expect("no interior NUL");
        // SAFETY: `c` is NUL-terminated and lives as long as the arena borrow.
        let c_len = unsafe { strlen(c.as_ptr()) };
        show(&arena, &format!("{word:?} as C string"));
        assert_eq!(c_len, word.len());

        // UTF-16 plus a NUL `u16`, right after it in the arena.
        let wide: &WideCStr = arena.alloc_wide_str(word);
        // SAFETY: `as_ptr` covers the units and the NUL `u16` after them.
        let w_len = unsafe { utf16_len(wide.as_ptr()) };
        show(&arena, &format!("{word:?} as UTF-16"));
        assert_eq!(w_len, word.encode_utf16().count());
        assert_eq!(
            String::from_utf16(wide.as_slice()).expect("valid UTF-16"),
            word
        );

        println!(
            "    {word:?}: strlen = {c_len} bytes, {} = {w_len} UTF-16 units",
            if cfg!(windows) {
                "wcslen"
            } else {
                "walk to NUL"
            }
        );
    }

    // A string with an interior NUL cannot be a C string: an error, and
    // the arena is unchanged.
    let before = arena.used();
    let err = arena.alloc_c_str("in\0side").unwrap_err();
    println!("  \"in\\0side\" refused: {err}");
    assert_eq!(arena.used(), before);

    // Everything goes at once.
    arena.reset();
    show(&arena, "after reset");
    assert_eq!(arena.used(), 0);
}
