//! The tracker's one lock type.
//!
//! Every lock the tracker owns is a [`SpinLock`], never a
//! `std::sync::Mutex`, for two reasons:
//! * **fork:** a child process inherits every lock in the state it had in
//!   the parent, held by threads that do not exist in the child. The
//!   fork handlers (see `fork.rs`) take each tracker lock before `fork`
//!   and release it on both sides afterwards, which needs a lock that can
//!   be taken and released without a guard object living across `fork`;
//! * **reentrancy:** the tracker may be the global allocator, and a
//!   `Mutex` is free to allocate (or, in other implementations, to park a
//!   thread through a table that allocates).
//!
//! Critical sections are short (a table probe, a copy, a `write` of one
//! log record), and no tracker lock is ever held while calling the inner
//! allocator, so spinning, then yielding, is cheap and cannot starve.
//! (The one long wait, for another thread's `exec`, lets the log's lock
//! go: see `log/threads.rs`.)

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A test-and-test-and-set spin lock: releasing it is a plain store (a
/// `Mutex` release is an atomic swap). After a short spin a waiter
/// yields its time slice, so a preempted holder is not starved.
/// Aligned to 128 bytes (two cache lines, which x86 prefetches in pairs):
/// neighbouring locks in an array never share a line, so threads working
/// on different shards do not slow each other down.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock gives one thread at a time access to the `T`, which
// is `Send`; this is the contract of `std::sync::Mutex` too.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The lock if it is free now, else `None`.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        // The guard is made only on success: one made for a failed
        // attempt would release, when dropped, the lock its holder has.
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Some(SpinGuard { lock: self })
        } else {
            None
        }
    }

    /// Waits for the lock; released when the guard drops.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        // Weak: a spurious failure only takes the slow path, which retries.
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    spins += 1;
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Takes the lock if it is free, without a guard: the caller must
    /// [`release`](Self::release) it (the fork handlers, which hold
    /// locks across `fork`, where no guard can be kept). A strong
    /// compare-exchange: false means another thread holds the lock.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Releases a lock taken with [`try_acquire`](Self::try_acquire).
    ///
    /// # Safety
    /// The calling thread holds the lock through `try_acquire` (not
    /// through a guard), or is the only thread of a child process whose
    /// parent's forking thread held it (which is the same thing).
    #[inline]
    pub(crate) unsafe fn release(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// The protected value, for a caller that holds the lock without a
    /// guard (see [`try_acquire`](Self::try_acquire)).
    pub(crate) fn data_ptr(&self) -> *mut T {
        self.value.get()
    }

    /// Whether some thread holds the lock now (tests).
    #[cfg(test)]
    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

/// A lock as the fork handlers see it: taken and released without a
/// guard, whatever it protects.
pub(crate) trait RawLock {
    /// See [`SpinLock::try_acquire`].
    fn try_acquire(&self) -> bool;
    /// See [`SpinLock::release`].
    ///
    /// # Safety
    /// As there.
    unsafe fn release(&self);
}

impl<T> RawLock for SpinLock<T> {
    fn try_acquire(&self) -> bool {
        SpinLock::try_acquire(self)
    }
    unsafe fn release(&self) {
        // SAFETY: the caller's promise is the one `release` needs.
        unsafe { SpinLock::release(self) }
    }
}

/// Access to a [`SpinLock`]'s value; releases it when dropped.
pub(crate) struct SpinGuard<'l, T> {
    lock: &'l SpinLock<T>,
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other reference exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this one unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> SpinGuard<'_, T> {
    /// Lets the lock go while `f` runs (another thread may take it
    /// meanwhile), then waits for it again, even if `f` unwinds.
    pub(crate) fn unlocked<R>(&mut self, f: impl FnOnce() -> R) -> R {
        /// Takes the lock again when dropped, for the guard to hold.
        struct Relock<'l, T>(&'l SpinLock<T>);
        impl<T> Drop for Relock<'_, T> {
            fn drop(&mut self) {
                core::mem::forget(self.0.lock());
            }
        }
        // SAFETY: `release` is meant for a lock taken without a guard; a
        // guard's lock may be let go the same way as long as it is taken
        // again before the guard drops (which releases it once more):
        // `Relock` does that, even if `f` unwinds. Meanwhile nothing
        // reaches the value through this guard (it is borrowed here).
        unsafe { self.lock.release() };
        let _relock = Relock(self.lock);
        f()
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard was made by `lock`, which took the lock.
        unsafe { self.lock.release() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_lock_excludes() {
        let counter = SpinLock::new(0u64);
        let n = if cfg!(miri) { 50 } else { 20_000 };
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..n {
                        *counter.lock() += 1;
                    }
                });
            }
        });
        assert_eq!(*counter.lock(), 4 * n);
    }

    #[test]
    fn a_failed_try_lock_leaves_the_lock_held() {
        let l = SpinLock::new(());
        let held = l.lock();
        assert!(l.try_lock().is_none());
        assert!(l.is_locked(), "released by a failed try_lock");
        drop(held);
        drop(l.try_lock().expect("free"));
        assert!(!l.is_locked());
    }

    #[test]
    fn a_guard_lets_the_lock_go_while_it_waits() {
        let l = SpinLock::new(0u32);
        let mut held = l.lock();
        let taken = held.unlocked(|| {
            let mut other = l.try_lock().expect("free meanwhile");
            *other += 1;
            true
        });
        assert!(taken);
        assert!(l.try_lock().is_none(), "held again");
        assert_eq!(*held, 1);
        drop(held);
        assert!(!l.is_locked());
    }

    #[test]
    fn raw_acquire_and_release() {
        let l = SpinLock::new(());
        assert!(l.try_acquire());
        assert!(!l.try_acquire(), "held");
        assert!(l.is_locked());
        // SAFETY: taken by `try_acquire` above.
        unsafe { l.release() };
        drop(l.lock());
        assert!(!l.is_locked());
    }
}
