//! The clock the benchmarks read.
//!
//! On Linux it is the thread's CPU time (user + system, which includes
//! page faults), so that the time the benchmark thread spends preempted by
//! other processes does not count; elsewhere it is wall time.

use std::time::Duration;

/// What [`time`] measures, as shown in the outputs.
pub const CLOCK: &str = if cfg!(target_os = "linux") {
    "thread CPU time"
} else {
    "wall time"
};

/// The calling thread's CPU time so far.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is one Linux
    // always supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Times `f` (one run of a workload) with [`CLOCK`].
pub fn time(f: impl FnOnce()) -> Duration {
    #[cfg(target_os = "linux")]
    {
        let start = thread_cpu_time();
        f();
        thread_cpu_time().saturating_sub(start)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let start = std::time::Instant::now();
        f();
        start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_counts_work_not_sleep() {
        let busy = time(|| {
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        });
        assert!(busy > Duration::ZERO);
        let slept = time(|| std::thread::sleep(Duration::from_millis(50)));
        if cfg!(target_os = "linux") {
            assert!(
                slept < Duration::from_millis(25),
                "CPU time excludes sleeping: {slept:?}"
            );
        } else {
            assert!(slept >= Duration::from_millis(50));
        }
    }
}
