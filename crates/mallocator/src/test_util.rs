//! Helpers shared by the unit tests of several modules.

use std::cell::RefCell;

std::thread_local! {
    /// Where this thread last panicked.
    static SEEN: RefCell<Option<(String, u32)>> = const { RefCell::new(None) };
}

/// Where `f` panicked: file and line of the panic's location.
pub(crate) fn panic_location(f: impl FnOnce()) -> (String, u32) {
    // One hook for the whole test binary, installed once and never
    // removed (tests run in parallel; swapping hooks back and forth
    // would lose another test's): it records each panic's location in
    // the panicking thread, then does what the previous hook did.
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(l) = info.location() {
                let _ = SEEN.try_with(|s| *s.borrow_mut() = Some((l.file().to_owned(), l.line())));
            }
            previous(info);
        }));
    });
    SEEN.with(|s| s.borrow_mut().take());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    assert!(result.is_err(), "no panic");
    SEEN.with(|s| s.borrow_mut().take())
        .expect("the hook saw the panic")
}

/// A string lent out as `&'static str` (what `LogTarget::Path` takes)
/// and freed when dropped, once whatever it was lent to is gone, so that
/// LeakSanitizer's exit check stays clean. Freed through the pointer
/// `Box::into_raw` gave, never through a shared reference.
struct StaticStr(*mut str);

impl StaticStr {
    fn new(s: &str) -> Self {
        StaticStr(Box::into_raw(s.to_owned().into_boxed_str()))
    }

    /// The string, as long as the program runs.
    ///
    /// # Safety
    /// No use of the reference comes after `self` is dropped.
    unsafe fn get(&self) -> &'static str {
        // SAFETY: `self.0` came from `Box::into_raw` and is freed only by
        // `drop`, after every use of this reference (the caller's promise).
        unsafe { &*self.0 }
    }
}

impl Drop for StaticStr {
    fn drop(&mut self) {
        // SAFETY: from `Box::into_raw`, freed once, here.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// A directory of one test's own under the temporary folder (named
/// after the test and this process, so that parallel tests and runs
/// never share one), with paths in it lent out as `&'static str` for
/// `LogTarget::Path`. Removed with all it holds when dropped, also when
/// the test fails; drop it after every log that writes there.
pub(crate) struct TempDir {
    dir: std::path::PathBuf,
    /// The paths lent out, freed with the directory.
    lent: RefCell<Vec<StaticStr>>,
}

impl TempDir {
    /// A new, empty directory for the test `test`.
    #[track_caller]
    pub(crate) fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mallocator-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir {
            dir,
            lent: RefCell::new(Vec::new()),
        }
    }

    /// The path of `name` in the directory.
    pub(crate) fn join(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    /// The path of `name` in the directory, as long as the program runs.
    ///
    /// # Safety
    /// No use of the reference comes after `self` is dropped.
    pub(crate) unsafe fn lend(&self, name: &str) -> &'static str {
        let path = StaticStr::new(self.join(name).to_str().unwrap());
        // SAFETY: `path` is kept in `self.lent` and freed only when `self`
        // is dropped, after every use of the reference (the caller's
        // promise).
        let lent = unsafe { path.get() };
        self.lent.borrow_mut().push(path);
        lent
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(target_os = "linux")]
#[path = "../tests/common/address_space.rs"]
mod address_space;
#[cfg(all(target_os = "linux", not(miri)))]
#[path = "../tests/common/cancel.rs"]
mod cancel;
#[cfg(all(unix, not(miri)))]
#[path = "../tests/common/child.rs"]
mod child;
#[cfg(target_os = "linux")]
pub(crate) use address_space::{address_space_limits_hold, with_address_space_limited};
#[cfg(all(target_os = "linux", not(miri)))]
pub(crate) use cancel::{cancel_this_thread, in_cancelled_child};
#[cfg(all(unix, not(miri)))]
pub(crate) use child::in_child_status;

/// The test binary run again as a child process (shared with the
/// integration tests).
#[cfg(all(
    any(target_os = "linux", target_os = "freebsd", target_vendor = "apple"),
    not(miri)
))]
#[path = "../tests/common/runner.rs"]
mod runner;
#[cfg(all(
    any(target_os = "linux", target_os = "freebsd", target_vendor = "apple"),
    not(miri)
))]
pub(crate) use runner::this_test_binary;

/// Runs the unit test `name` (its path from the crate root, as `cargo
/// test --exact` takes it) alone, in a fresh run of this test binary,
/// with the variable `child` set to `1` and `envs` set: for a test of
/// process-wide state that nothing else in the process may have touched
/// yet. The test does its child's part when it finds `child` set.
#[cfg(all(
    any(target_os = "linux", target_os = "freebsd", target_vendor = "apple"),
    not(miri)
))]
pub(crate) fn run_alone(
    name: &str,
    child: &str,
    envs: &[(&str, &std::ffi::OsStr)],
) -> std::process::Output {
    let mut command = this_test_binary();
    command
        .args(["--exact", name, "--test-threads=1"])
        .env(child, "1");
    for (variable, value) in envs {
        command.env(variable, value);
    }
    command.output().unwrap()
}

/// The watchdog's tries (`tests/common/child.rs`), checked natively: a
/// fork under an emulator may hang on its own, which these tests count
/// as starts.
#[cfg(all(unix, not(miri)))]
mod child_tests {
    use super::child::in_child_tries;
    use core::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn emulated() -> bool {
        let emulated = std::env::var_os("MALLOCATOR_TEST_RUNNER").is_some();
        if emulated {
            eprintln!("skipped: under an emulator a fork may hang on its own");
        }
        emulated
    }

    /// A counter in memory shared with the children forked after it is
    /// made, each child counting its own start. Never unmapped (a page
    /// for each test that makes one).
    fn shared_counter() -> &'static AtomicU32 {
        // SAFETY: a fresh anonymous mapping, shared so that children's
        // writes are seen; zeroed, which is a valid `AtomicU32`, and
        // page-aligned.
        unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED, "mmap");
            &*p.cast::<AtomicU32>()
        }
    }

    fn hang() -> ! {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Counts its drops in this process (a child's drop touches its own
    /// copy of the counter).
    struct Dropped<'a>(&'a AtomicU32);

    impl Drop for Dropped<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_child_that_ends_is_forked_once_and_its_closure_dropped_once() {
        if emulated() {
            return;
        }
        let starts = shared_counter();
        let drops = AtomicU32::new(0);
        let guard = Dropped(&drops);
        let status = in_child_tries(
            move || {
                let _guard = guard;
                starts.fetch_add(1, Ordering::SeqCst);
                3
            },
            3,
            Duration::from_secs(60),
        );
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3);
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_child_that_hangs_once_is_forked_again() {
        if emulated() {
            return;
        }
        let starts = shared_counter();
        let status = in_child_tries(
            || match starts.fetch_add(1, Ordering::SeqCst) {
                0 => hang(),
                _ => 7,
            },
            2,
            Duration::from_secs(2),
        );
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7);
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_child_that_hangs_every_time_fails_the_test() {
        if emulated() {
            return;
        }
        let starts = shared_counter();
        let drops = AtomicU32::new(0);
        let guard = Dropped(&drops);
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            in_child_tries(
                move || {
                    let _guard = guard;
                    starts.fetch_add(1, Ordering::SeqCst);
                    hang()
                },
                2,
                Duration::from_millis(500),
            )
        }));
        let message = *failed.unwrap_err().downcast::<String>().unwrap();
        assert!(message.starts_with("the child hung"), "{message}");
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
