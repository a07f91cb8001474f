//! Running the workloads and summarizing their timings.
//!
//! Each variant of a group is first run untimed for at least 60 ms
//! (warm-up: page faults, first chunk allocations, caches, lazily built
//! tables), then `runs` timed times. The runs of a group's variants are
//! interleaved (a, b, c, a, b, c, ...) so that a slow
//! phase of a busy machine spreads over every variant instead of landing on
//! one of them. The runners time themselves with the `clock` module.

use std::time::Duration;

use indicatif::ProgressBar;

use super::workloads::{Group, Runner};

/// The summary of one variant's timed runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Median time per operation, in nanoseconds.
    pub median_ns: f64,
    /// Median absolute deviation from the median, in percent of the median.
    pub mad_percent: f64,
    /// Every timed sample's time per operation (two consecutive runs, see
    /// [`run_group`]), in nanoseconds, in run order.
    pub samples_ns: Vec<f64>,
}

/// The measured rows of one group.
#[derive(Debug, Clone)]
pub struct GroupResult {
    /// The group's name (what `--workload` selects).
    pub name: &'static str,
    /// One line describing the workload.
    pub description: &'static str,
    /// Operations per timed run.
    pub ops_per_run: usize,
    /// One summary per variant, in the group's order; the first is the
    /// baseline.
    pub rows: Vec<(&'static str, Summary)>,
    /// The group's remark on this run, if it has one.
    pub note: Option<String>,
}

impl GroupResult {
    /// The ratio of row `i`'s median to the baseline's (row 0) median.
    pub fn ratio(&self, i: usize) -> f64 {
        self.rows[i].1.median_ns / self.rows[0].1.median_ns
    }
}

/// The median of `xs` (mean of the two middle values for an even count).
///
/// Panics on an empty slice or a NaN: both are bugs of the caller here.
pub fn median(xs: &[f64]) -> f64 {
    assert!(!xs.is_empty(), "median of no samples");
    let mut sorted = xs.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("NaN timing"));
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Summarizes per-operation samples: median and relative median absolute
/// deviation.
pub fn summarize(samples_ns: Vec<f64>) -> Summary {
    let med = median(&samples_ns);
    let deviations: Vec<f64> = samples_ns.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&deviations);
    Summary {
        median_ns: med,
        mad_percent: if med > 0.0 { mad / med * 100.0 } else { 0.0 },
        samples_ns,
    }
}

/// Nanoseconds per operation of one run. A run shorter than the clock's
/// resolution is counted as one nanosecond, so that ratios stay finite and
/// positive.
pub fn per_op_ns(elapsed: Duration, ops: usize) -> f64 {
    let ns = elapsed.as_nanos().max(1) as f64;
    ns / ops.max(1) as f64
}

/// The least time a variant runs untimed before its timed runs.
const WARM_UP: Duration = Duration::from_millis(60);

/// Runs `runner` untimed until it has run for [`WARM_UP`] (at least once),
/// so that a workload starting in a fresh process (empty heap, cold caches,
/// lazily built tables) is measured in its steady state.
fn warm_up(runner: &mut Runner) {
    let mut spent = Duration::ZERO;
    while spent < WARM_UP {
        let once = runner();
        spent += once.max(Duration::from_micros(1));
    }
}

/// Runs every variant of `group` (warm-up, then `runs` interleaved
/// timed samples), ticking `progress` once per sample.
///
/// A sample is two consecutive runs of `ops` operations, timed together:
/// some workloads cost more every other run (glibc's heap on `ffi-wide`
/// alternates between about 50 and 260 ns per string as its free lists
/// are sorted and merged on alternate runs), and a median of single runs
/// would then report whichever mode happened to win.
pub fn run_group(group: &Group, ops: usize, runs: usize, progress: &ProgressBar) -> GroupResult {
    progress.set_message(group.name);
    let mut runners: Vec<_> = group.variants.iter().map(|v| (v.setup)(ops)).collect();
    for runner in &mut runners {
        warm_up(runner);
        progress.inc(1);
    }
    let mut samples = vec![Vec::with_capacity(runs); runners.len()];
    for _ in 0..runs {
        for (runner, samples) in runners.iter_mut().zip(&mut samples) {
            let pair = runner() + runner();
            samples.push(per_op_ns(pair, 2 * ops));
            progress.inc(1);
        }
    }
    GroupResult {
        name: group.name,
        description: group.description,
        ops_per_run: ops,
        rows: group
            .variants
            .iter()
            .zip(samples)
            .map(|(v, s)| (v.name, summarize(s)))
            .collect(),
        note: group.note.map(|note| note()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workloads::Variant;

    #[test]
    fn median_odd_even_and_unsorted() {
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    #[should_panic(expected = "median of no samples")]
    fn median_of_nothing_panics() {
        median(&[]);
    }

    #[test]
    fn summary_ignores_one_outlier() {
        let s = summarize(vec![10.0, 11.0, 9.0, 10.0, 500.0]);
        assert_eq!(s.median_ns, 10.0);
        // deviations 0, 1, 1, 0, 490 -> median 1 -> 10 %.
        assert!((s.mad_percent - 10.0).abs() < 1e-9);
        assert_eq!(s.samples_ns.len(), 5);
    }

    #[test]
    fn per_op_never_zero_or_infinite() {
        assert_eq!(per_op_ns(Duration::ZERO, 10), 0.1);
        assert_eq!(per_op_ns(Duration::from_nanos(1000), 0), 1000.0);
        assert_eq!(per_op_ns(Duration::from_micros(2), 1000), 2.0);
    }

    #[test]
    fn runs_that_alternate_in_cost_are_measured_at_their_average() {
        fn alternating(_ops: usize) -> Runner {
            let mut slow = false;
            Box::new(move || {
                slow = !slow;
                Duration::from_micros(if slow { 300 } else { 100 })
            })
        }
        let group = Group {
            name: "alternating",
            description: "d",
            default_ops: 100,
            variants: &[Variant {
                name: "v",
                setup: alternating,
            }],
            note: None,
        };
        let result = run_group(&group, 100, 5, &ProgressBar::hidden());
        // (300 + 100) us for 2 x 100 operations, in every sample.
        assert_eq!(result.rows[0].1.samples_ns, [2000.0; 5]);
        assert_eq!(result.rows[0].1.mad_percent, 0.0);
    }

    #[test]
    fn ratios_are_against_the_first_row() {
        let g = GroupResult {
            name: "g",
            description: "d",
            ops_per_run: 1,
            rows: vec![
                ("base", summarize(vec![4.0])),
                ("fast", summarize(vec![1.0])),
                ("slow", summarize(vec![12.0])),
            ],
            note: None,
        };
        assert_eq!(g.ratio(0), 1.0);
        assert_eq!(g.ratio(1), 0.25);
        assert_eq!(g.ratio(2), 3.0);
    }
}
