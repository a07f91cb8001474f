//! Scoped leak checks: which blocks a [`Scope`] counts.
//!
//! Each thread stamps its allocations with the id of the last scope it
//! opened (0 before its first). A scope's blocks are those stamped with
//! its own id or with the id of a scope the same thread opened later,
//! which is a descendant in the registry below: each scope records the
//! stamp its thread had when it was opened (its parent). Following parents
//! instead of thread ids means no thread id has to fit in a stamp.

use core::marker::PhantomData;

use super::report::Reach;
use super::sync::SpinLock;
use super::sys_vec::{sys_vec, SysVec};
use super::thread::THREAD;
use super::{Backtracing, LeakReport};

/// Every scope opened so far, `(scope id, parent stamp)`, in increasing id
/// order, and the next id: 8 bytes per scope ever opened (scopes are for
/// tests). Ids start at 1 (0 is "no scope") and never wrap: opening a
/// scope after `u32::MAX - 1` of them panics.
pub(crate) static SCOPES: SpinLock<(u32, SysVec<(u32, u32)>)> = SpinLock::new((1, sys_vec()));

/// Registers a new scope for the calling thread and stamps its
/// allocations with it; returns the id.
#[track_caller]
pub(crate) fn open() -> u32 {
    let parent = THREAD.try_with(|t| t.stamp.get()).unwrap_or(0);
    let mut scopes = SCOPES.lock();
    let id = scopes.0;
    let room = id != u32::MAX && scopes.1.try_reserve(1).is_ok();
    if room {
        scopes.0 = id + 1;
        scopes.1.push((id, parent));
    }
    drop(scopes);
    assert!(room, "mallocator: cannot register another scope");
    let _ = THREAD.try_with(|t| t.stamp.set(id));
    id
}

/// The stamps scope `start` counts: its own id and its descendants',
/// sorted.
fn stamps_of(start: u32) -> SysVec<u32> {
    let mut stamps: SysVec<u32> = sys_vec();
    let scopes = SCOPES.lock();
    let from = scopes.1.partition_point(|&(id, _)| id < start);
    for &(id, parent) in &scopes.1[from..] {
        // Parents are older than their children, so one pass in id order
        // sees every parent before its children.
        if id == start || stamps.binary_search(&parent).is_ok() {
            stamps.push(id);
        }
    }
    stamps
}

/// A per-thread leak check, from [`Backtracing::scope`]. Not `Send`: it
/// belongs to the thread that made it.
///
/// ```compile_fail
/// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
/// let scope = t.scope();
/// std::thread::scope(|s| { s.spawn(move || scope.assert_no_leaks()); }); // error: not `Send`
/// ```
#[derive(Debug)]
pub struct Scope<'t, 'a> {
    pub(crate) tracker: &'t Backtracing<'a>,
    pub(crate) start: u32,
    pub(crate) _not_send: PhantomData<*const ()>,
}

impl Scope<'_, '_> {
    /// This thread's blocks allocated since the scope began, still live,
    /// and not reachable from the program's static data or this thread's
    /// thread-local storage (no errors: those are in
    /// [`Backtracing::report`]).
    ///
    /// So memory the runtime keeps for good is not counted: stdout's
    /// buffer made by the first `println!`, a test harness's output
    /// capture, a thread-local's first value, a cache in a static. A block
    /// only a local variable still holds is counted (the stack is not
    /// scanned: the scope's end is where its blocks should be gone), and
    /// so is every forgotten one. A block reallocated inside the scope
    /// (a growing `Vec`) belongs to the scope its first block was made
    /// in. Where the loader cannot list the static data (Miri; outside
    /// Linux), every live block of the scope is counted.
    ///
    /// ```
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let scope = t.scope();
    /// let p = t.valloc().malloc(8, 40);
    /// assert_eq!(scope.leaks().leaked_bytes, 40);
    /// # unsafe { t.valloc().free(p) };
    /// ```
    ///
    /// # Panics
    /// When the memory the report needs for the live blocks cannot be had
    /// (as [`Backtracing::report`]).
    #[track_caller]
    pub fn leaks(&self) -> LeakReport {
        let stamps = stamps_of(self.start);
        self.tracker
            .build_report(
                &|r| stamps.binary_search(&r.stamp).is_ok(),
                false,
                Reach::ScopeRoots,
            )
            .unwrap_or_else(|| super::report::out_of_memory())
    }

    /// Panics with the text report if [`leaks`](Self::leaks) finds any.
    ///
    /// ```should_panic
    /// let t = mallocator::backtracing::Backtracing::new(mallocator::Valloc::libc());
    /// let scope = t.scope();
    /// let _leaked = t.valloc().malloc(8, 40);
    /// scope.assert_no_leaks(); // panics: 40 bytes in 1 block
    /// ```
    #[track_caller]
    pub fn assert_no_leaks(self) {
        let leaks = self.leaks();
        assert!(leaks.leaked_blocks == 0, "leaks in scope: {leaks}");
    }
}
