//! The arena over real virtual memory: huge reservations, lazy and eager
//! commit, decommit, protection and guard pages. These need system calls,
//! so they do not run under Miri; the arena's logic is tested over buffers
//! in the library's unit tests (which do).
//!
//! Faults are shown in a child process: the test re-runs this test binary
//! with a filter selecting `child_process_entry` and an environment
//! variable naming what the child should do, and checks how it died. That
//! works on Unix and on Windows (and under Wine).
#![cfg(not(miri))]

mod common;

use std::io::Write;

use mallocator::{sys, Arena, ArenaError, CommitPolicy, Protection};

const CHILD_ENV: &str = "MALLOCATOR_ARENA_CHILD";

#[test]
fn a_one_tib_arena_is_creatable() {
    let arena = Arena::with_capacity(1 << 40).expect("reserve 1 TiB");
    assert_eq!(arena.capacity(), 1 << 40);
    assert_eq!(arena.committed(), 0);
    let x = arena.alloc(7u64);
    assert_eq!(*x, 7);
    assert!(arena.committed() >= sys::page_size());
    assert!(arena.committed() <= 1 << 20);
    // Far into the reservation: only the pages reached get committed.
    let big = arena.alloc_raw(1 << 30, 4096).unwrap();
    // SAFETY: a fresh block of 1 GiB; touch its first and last byte.
    unsafe {
        big.as_ptr().write(1);
        big.as_ptr().add((1 << 30) - 1).write(2);
    }
    assert!(arena.committed() >= (1 << 30) + 8);
    assert!(arena.committed() < (1 << 30) + (128 << 20));
}

#[test]
fn lazy_commit_grows_in_chunks_and_never_past_the_capacity() {
    let page = sys::page_size();
    let arena = Arena::builder()
        .capacity(64 << 20)
        .commit_policy(CommitPolicy::Lazy { min_chunk: page })
        .build()
        .unwrap();
    let mut last = 0;
    let mut steps = 0;
    for _ in 0..(1 << 20) {
        arena.alloc([0u8; 64]);
        if arena.committed() != last {
            last = arena.committed();
            steps += 1;
            assert_eq!(last % page, 0);
            assert!(last >= arena.used());
        }
    }
    assert_eq!(arena.used(), 64 << 20);
    assert_eq!(arena.committed(), 64 << 20);
    // Geometric growth: about log2(64 MiB / page) commits, not one per page.
    assert!(steps <= 20, "{steps} commits");
    assert!(arena.try_alloc(0u8).is_err());
}

#[test]
fn eager_commit_and_decommit_on_reset() {
    let mut arena = Arena::builder()
        .capacity(1 << 20)
        .commit_policy(CommitPolicy::Eager)
        .decommit_on_reset(true)
        .build()
        .unwrap();
    assert_eq!(arena.committed(), 1 << 20);
    let x = arena.alloc([0xABu8; 4096]);
    assert_eq!(x[4095], 0xAB);
    arena.reset();
    assert_eq!(arena.committed(), 0);
    // Decommitted pages come back zeroed.
    let p = arena.alloc_raw(4096, 1).unwrap();
    // SAFETY: the block is 4096 freshly committed bytes.
    assert_eq!(unsafe { *p.as_ptr().add(4095) }, 0);
}

#[test]
fn reset_keeps_pages_by_default() {
    let mut arena = Arena::with_capacity(1 << 20).unwrap();
    arena.alloc([1u8; 10_000]);
    let committed = arena.committed();
    arena.reset();
    assert_eq!(arena.used(), 0);
    assert_eq!(arena.committed(), committed);
}

#[test]
fn exhaustion_of_a_reservation() {
    let page = sys::page_size();
    let arena = Arena::with_capacity(page).unwrap();
    assert!(arena.alloc_raw(page + 1, 1).is_err());
    assert!(arena.alloc_raw(page, 1).is_ok());
    assert!(arena.try_alloc(1u8).is_err());
    assert!(arena.alloc_raw(usize::MAX, 1).is_err());
    assert_eq!(arena.used(), page);
}

#[test]
fn builder_rejects_bad_options() {
    assert_eq!(
        Arena::builder()
            .protection(Protection::Read)
            .build()
            .unwrap_err(),
        ArenaError::InvalidProtection(Protection::Read)
    );
    assert_eq!(
        Arena::builder()
            .protection(Protection::None)
            .build()
            .unwrap_err(),
        ArenaError::InvalidProtection(Protection::None)
    );
    assert_eq!(
        Arena::with_capacity(usize::MAX).unwrap_err(),
        ArenaError::CapacityOverflow
    );
    // More address space than the machine has: the OS error comes back.
    match Arena::with_capacity(isize::MAX as usize & !0xFFFF) {
        Err(ArenaError::Os(e)) => assert_ne!(e.code(), 0, "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn protect_seals_and_unseals() {
    let mut arena = Arena::new();
    let p = arena.alloc_slice_copy(&[1u32, 2, 3]).as_mut_ptr();
    arena.protect(Protection::Read).unwrap();
    assert_eq!(arena.protection(), Protection::Read);
    // SAFETY: the memory is readable.
    assert_eq!(unsafe { *p.add(1) }, 2);
    assert!(arena.try_alloc(1u8).is_err());
    assert!(arena.alloc_raw(1, 1).is_err());
    let v = arena.valloc();
    assert!(v.malloc(1, 1).is_null());
    // Rolling back while sealed does not open the fast path either.
    arena.scope(|a| assert!(a.try_alloc(1u8).is_err()));
    arena.reset();
    assert!(arena.try_alloc(1u8).is_err());
    arena.protect(Protection::ReadWriteExecute).unwrap();
    assert_eq!(*arena.alloc(5u8), 5);
}

#[test]
#[should_panic(expected = "the arena is not writable")]
fn allocating_from_a_sealed_arena_panics() {
    let mut arena = Arena::new();
    arena.alloc(1u8);
    arena.protect(Protection::ReadExecute).unwrap();
    arena.alloc(2u8);
}

#[cfg(target_os = "linux")]
#[test]
fn drop_releases_the_reservation() {
    let arena = Arena::with_capacity(1 << 30).unwrap();
    let base = format!("{:x}-", arena.base() as usize);
    let maps = || std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps().lines().any(|l| l.starts_with(&base)));
    drop(arena);
    assert!(!maps().lines().any(|l| l.starts_with(&base)));
}

/// What the child does, by the value of `MALLOCATOR_ARENA_CHILD`.
fn child_action(mode: &str) {
    let page = sys::page_size();
    let say = |s: &str| {
        println!("CHILD: {s}");
        std::io::stdout().flush().unwrap();
    };
    match mode {
        "write-read-write" => {
            let mut arena = Arena::new();
            let p = arena.alloc([0u8; 16]).as_mut_ptr();
            arena.protect(Protection::Read).unwrap();
            arena.protect(Protection::ReadWrite).unwrap();
            say("about to write");
            // SAFETY: the memory is writable again.
            unsafe { p.write_volatile(1) };
        }
        "write-read-only" => {
            let mut arena = Arena::new();
            let p = arena.alloc([0u8; 16]).as_mut_ptr();
            arena.protect(Protection::Read).unwrap();
            say("about to write");
            // SAFETY: not memory-unsafe: the OS stops the write (that is
            // what the parent checks); nothing reads the byte.
            unsafe { p.write_volatile(1) };
        }
        "overrun-guard" => {
            let arena = Arena::builder()
                .capacity(page)
                .guard_page(true)
                .build()
                .unwrap();
            let block = arena.alloc_raw(page, 1).unwrap();
            say("about to write");
            for i in 0..2 * page {
                // SAFETY: the first `page` bytes are the block; the next
                // byte is in the guard page, where the OS stops the write.
                unsafe { block.as_ptr().add(i).write_volatile(0xCC) };
            }
        }
        other => panic!("unknown child mode {other}"),
    }
    say("survived");
}

/// On Windows, ends the process with the exception code as soon as an
/// access violation is raised, so that the exit code is the same whether
/// or not a debugger (Wine's `winedbg`) would be started for it.
#[cfg(windows)]
fn exit_on_access_violation() {
    use windows_sys::Win32::Foundation::EXCEPTION_ACCESS_VIOLATION;
    use windows_sys::Win32::System::Diagnostics::Debug::{
        AddVectoredExceptionHandler, EXCEPTION_POINTERS,
    };
    use windows_sys::Win32::System::Threading::ExitProcess;

    unsafe extern "system" fn handler(info: *mut EXCEPTION_POINTERS) -> i32 {
        // SAFETY: the system passes valid exception pointers.
        let code = unsafe { (*(*info).ExceptionRecord).ExceptionCode };
        if code == EXCEPTION_ACCESS_VIOLATION {
            // SAFETY: ending the process is always allowed.
            unsafe { ExitProcess(code as u32) }
        }
        0 // EXCEPTION_CONTINUE_SEARCH
    }
    // SAFETY: `handler` is a valid vectored exception handler for the
    // whole life of the process.
    unsafe { AddVectoredExceptionHandler(1, Some(handler)) };
}

/// Entry point of the child processes; ignored in normal runs.
#[test]
#[ignore = "run by the protection tests in a child process"]
fn child_process_entry() {
    let mode = std::env::var(CHILD_ENV).expect("run by the protection tests only");
    #[cfg(windows)]
    exit_on_access_violation();
    child_action(&mode);
}

/// The value of the sanitizer options variable `name` for a child: this
/// process's options (if any), then `handle_segv=0:handle_sigbus=0`, which
/// win because a later option overrides an earlier one.
///
/// When the tests run under AddressSanitizer or ThreadSanitizer, the
/// sanitizer's runtime catches SIGSEGV and SIGBUS itself, prints a report
/// and exits with status 1, so a child that faults would look like one that
/// failed in some other way. With the handlers off, the fault kills the
/// child with the signal, as in a build without a sanitizer, and the parent
/// checks the same thing in every build. Without a sanitizer runtime
/// nothing reads these variables.
fn sanitizer_options(name: &str) -> std::ffi::OsString {
    let mut options = std::env::var_os(name).unwrap_or_default();
    if !options.is_empty() {
        options.push(":");
    }
    options.push("handle_segv=0:handle_sigbus=0");
    options
}

/// Runs `child_process_entry` in a child with `mode`; returns whether it
/// faulted, after checking that it reached the write.
fn child_faults(mode: &str) -> bool {
    let out = common::run_child_entry(
        CHILD_ENV,
        mode,
        &[
            ("ASAN_OPTIONS", sanitizer_options("ASAN_OPTIONS")),
            ("TSAN_OPTIONS", sanitizer_options("TSAN_OPTIONS")),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CHILD: about to write"),
        "child did not reach the write: {out:?}"
    );
    if out.status.success() {
        assert!(stdout.contains("CHILD: survived"), "{out:?}");
        return false;
    }
    assert!(!stdout.contains("CHILD: survived"), "{out:?}");
    // A memory fault, not a panic (exit code 101).
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        let signal = out.status.signal();
        assert!(
            signal == Some(libc::SIGSEGV) || signal == Some(libc::SIGBUS),
            "{out:?}"
        );
    }
    #[cfg(windows)]
    assert_eq!(out.status.code(), Some(0xC000_0005_u32 as i32), "{out:?}");
    true
}

#[test]
fn writing_to_a_read_only_arena_faults() {
    assert!(!child_faults("write-read-write"), "control: writable again");
    assert!(child_faults("write-read-only"));
}

#[test]
fn a_guard_page_stops_an_overrun() {
    assert!(child_faults("overrun-guard"));
}
