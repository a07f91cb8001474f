//! Test helpers shared by the integration tests: a custom [`RawAlloc`] that
//! records what reaches it through a handle, a wrapper that makes any
//! allocator `!Sync` (for `Valloc::new_local`), and the test binary run
//! again as a child process.
#![allow(dead_code)] // each test binary uses a different subset

use core::alloc::Layout;
use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

use mallocator::libc_alloc::LibcAlloc;
use mallocator::{AllocError, RawAlloc};

mod runner;
pub use runner::this_test_binary;

/// What a [`Recorder`] saw.
#[derive(Debug, Default)]
pub struct Log {
    /// Every layout `alloc` received, in order.
    pub requests: Vec<Layout>,
    /// Blocks handed out and not yet freed: (address, layout).
    pub live: Vec<(usize, Layout)>,
    /// How many `free` calls arrived.
    pub frees: usize,
    /// Contract violations seen (a free of a pointer it never returned).
    pub errors: Vec<String>,
}

/// A thread-safe allocator that forwards to the C library and records
/// every call, so tests can check exactly what a handle passes on.
/// Its `free` accepts any pointer: an unknown one is recorded as an error
/// and not passed on, so a faulty handle cannot corrupt memory.
#[derive(Debug, Default)]
pub struct Recorder {
    log: Mutex<Log>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The log so far.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// SAFETY: blocks come from `LibcAlloc` (which upholds the contract) and go
// back to it only when they are live blocks of this allocator.
unsafe impl RawAlloc for Recorder {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let mut log = self.log();
        log.requests.push(layout);
        let block = LibcAlloc.alloc(layout)?;
        log.live.push((block.as_ptr() as usize, layout));
        Ok(block)
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        let mut log = self.log();
        log.frees += 1;
        match log
            .live
            .iter()
            .position(|&(a, _)| a == ptr.as_ptr() as usize)
        {
            Some(i) => {
                log.live.swap_remove(i);
                // SAFETY: `ptr` is a live block from `LibcAlloc::alloc`.
                unsafe { LibcAlloc.free(ptr) }
            }
            None => {
                let msg = format!("free of unknown pointer {ptr:p}");
                log.errors.push(msg);
            }
        }
    }
}

/// `T`, but not `Sync`: only `Valloc::new_local` accepts it.
pub struct Unsync<T>(pub T, PhantomData<Cell<()>>);

impl<T> Unsync<T> {
    pub fn new(inner: T) -> Self {
        Unsync(inner, PhantomData)
    }
}

// SAFETY: forwards to `T`, which upholds the contract.
unsafe impl<T: RawAlloc> RawAlloc for Unsync<T> {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.0.alloc(layout)
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.free(ptr) }
    }
}

/// Runs this test binary's ignored test `child_process_entry` alone in a
/// child process, with the environment variable `env` set to `case`
/// (which tells the child what to do), and returns how it ended: for
/// tests that must watch a process fault, or survive what would kill it.
pub fn run_child_entry(
    env: &str,
    case: &str,
    extra_env: &[(&str, std::ffi::OsString)],
) -> std::process::Output {
    let mut command = this_test_binary();
    command
        .args([
            "child_process_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, case);
    for (name, value) in extra_env {
        command.env(name, value);
    }
    command.output().unwrap()
}
