//! Peak accounting: [`Backtracing::peak_bytes`](super::Backtracing::peak_bytes)
//! without a shared atomic counter on the hot path.
//!
//! # Protocol
//! * The shards hold the exact live bytes; summing them (a
//!   *synchronisation*) stores the sum in `synced_bytes`, raises the peak
//!   to it, and starts a new generation (`sync_gen`).
//! * Each thread keeps its own net change since the generation it last
//!   saw (its *share*, `ThreadState::shares`), and estimates the live
//!   bytes as `synced_bytes + share`, raising the peak to that.
//! * A thread synchronises when its share reaches 64 KiB either way.
//! * A thread keeps the shares of the last two trackers it used. A share
//!   pushed out while not empty is missing from its tracker's estimates,
//!   so that tracker synchronises at its next use by the thread
//!   (`ThreadState::use_share`).
//!
//! So a thread alone is exact (with up to six trackers in turn); with
//! others, their changes since the last synchronisation (less than
//! 64 KiB each, in either direction) are missing from its estimate.
//!
//! A change is accounted with `gen`, the generation read *before* the
//! change was made in its shard. A thread's share holds only changes
//! begun after the synchronisation it counts from had summed the shards,
//! and is dropped when another synchronisation has happened since (which
//! counted them). A change begun while a synchronisation ran may or may
//! not have been summed by it: one under 64 KiB is left out, a larger one
//! synchronises again, so that no big spike goes unseen.
//!
//! A signal handler that allocates through another tracker while its
//! thread is in the middle of [`State::account`] can lose one share (an
//! error under 64 KiB, until the next synchronisation): the shares are
//! the thread's, updated in steps.

use core::sync::atomic::Ordering;

use super::state::State;
use super::thread::{Share, ThreadState};

/// Net change (bytes) after which a thread synchronises.
const SYNC: usize = 64 << 10;

impl State {
    /// Bytes in live blocks: the shards summed, one after another (as
    /// the hot path, for a signal handler: [`State::reading`]).
    pub(crate) fn live_bytes(&self) -> usize {
        self.reading(|| self.live.iter().map(|s| s.lock().bytes()).sum())
    }

    /// Accounts `change` bytes made by thread `t` (`None`: one whose
    /// state is gone, which synchronises) after reading generation `gen`
    /// (see the module docs).
    #[inline]
    pub(crate) fn account(&self, t: Option<&ThreadState>, change: isize, gen: u32) {
        let epoch = self.epoch;
        if let Some(t) = t {
            if t.shares[0].get().epoch != epoch && t.use_share(epoch) {
                // A share of this thread went missing: summed again (the
                // change, made in its shard already, with it).
                self.synchronise();
            }
        }
        let now = self.sync_gen.load(Ordering::Acquire);
        let raced = gen != now;
        let delta = t.map_or(SYNC as isize, |t| {
            let share = t.shares[0].get();
            let base = if share.gen == now { share.bytes } else { 0 };
            let delta = base + if raced { 0 } else { change };
            t.shares[0].set(Share {
                epoch,
                gen: now,
                bytes: if delta.unsigned_abs() >= SYNC {
                    0
                } else {
                    delta
                },
            });
            delta
        });
        if delta.unsigned_abs() >= SYNC || (raced && change.unsigned_abs() >= SYNC) {
            self.synchronise();
        } else if change > 0 {
            let synced = self.synced_bytes.load(Ordering::Acquire);
            // Else another synchronisation began meanwhile, and the delta
            // no longer counts from `synced`.
            if self.sync_gen.load(Ordering::Acquire) == now {
                let estimate = synced.saturating_add_signed(delta);
                if estimate > self.peak_bytes.load(Ordering::Relaxed) {
                    self.peak_bytes.fetch_max(estimate, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sums the shards into `synced_bytes`, starting a new generation of
    /// thread deltas.
    #[cold]
    #[inline(never)]
    pub(crate) fn synchronise(&self) {
        let exact = self.live_bytes();
        self.sync_gen.fetch_add(1, Ordering::AcqRel);
        self.synced_bytes.store(exact, Ordering::Release);
        self.peak_bytes.fetch_max(exact, Ordering::Relaxed);
    }
}
