//! The three outputs of `mallocator bench`: the text table, the JSON
//! document, and the SVG bar chart of the ratios.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

use super::measure::GroupResult;

/// The JSON document (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What the times measure: "thread CPU time" (Linux) or "wall time".
    pub clock: String,
    /// Timed runs per variant (after at least 60 ms of untimed warm-up runs).
    pub runs: usize,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Wall time of the whole benchmark, in seconds.
    pub elapsed_seconds: f64,
    /// One entry per workload, in table order.
    pub groups: Vec<GroupReport>,
}

/// One workload in the JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    /// The `--workload` name.
    pub name: String,
    /// What one operation is.
    pub description: String,
    /// Operations per timed run.
    pub ops_per_run: usize,
    /// The allocator every ratio of this group is relative to.
    pub baseline: String,
    /// One row per allocator, baseline first.
    pub rows: Vec<RowReport>,
    /// How this run measured the group, when it matters (e.g. the stack
    /// capture mode of the leak tracker).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}

/// One allocator's figures in the JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowReport {
    /// The allocator.
    pub allocator: String,
    /// Median time per operation, nanoseconds.
    pub ns_per_op: f64,
    /// Median absolute deviation, percent of the median.
    pub mad_percent: f64,
    /// `ns_per_op / baseline's ns_per_op`.
    pub ratio: f64,
    /// Every timed run's time per operation, nanoseconds.
    pub samples_ns_per_op: Vec<f64>,
}

impl Report {
    /// Builds the document from measured groups.
    pub fn new(groups: &[GroupResult], runs: usize, quick: bool, elapsed_seconds: f64) -> Self {
        let groups = groups
            .iter()
            .map(|g| GroupReport {
                name: g.name.to_owned(),
                description: g.description.to_owned(),
                ops_per_run: g.ops_per_run,
                baseline: g.rows[0].0.to_owned(),
                rows: g
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, (name, s))| RowReport {
                        allocator: (*name).to_owned(),
                        ns_per_op: s.median_ns,
                        mad_percent: s.mad_percent,
                        ratio: g.ratio(i),
                        samples_ns_per_op: s.samples_ns.clone(),
                    })
                    .collect(),
                note: g.note.clone(),
            })
            .collect();
        Report {
            clock: super::clock::CLOCK.to_owned(),
            runs,
            quick,
            elapsed_seconds,
            groups,
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The text table, as printed by `mallocator bench`.
    pub fn to_table(&self) -> String {
        let header = [
            "workload",
            "allocator",
            "ops/run",
            "ns/op",
            "±MAD",
            "vs baseline",
        ];
        let mut lines: Vec<[String; 6]> = Vec::new();
        for g in &self.groups {
            for (i, r) in g.rows.iter().enumerate() {
                lines.push([
                    if i == 0 {
                        g.name.clone()
                    } else {
                        String::new()
                    },
                    r.allocator.clone(),
                    if i == 0 {
                        g.ops_per_run.to_string()
                    } else {
                        String::new()
                    },
                    format_ns(r.ns_per_op),
                    format!("{:.1}%", r.mad_percent),
                    if i == 0 {
                        "1.00x (baseline)".to_owned()
                    } else {
                        format!("{:.2}x", r.ratio)
                    },
                ]);
            }
        }
        let mut widths = header.map(|h| h.chars().count());
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!(
            "mallocator bench: ns/op = median of {} timed samples per row (each two consecutive runs; {}, after a warm-up)\n\
             ratio = ns/op / the workload's baseline (below 1.00x is faster)\n\n",
            self.runs, self.clock
        );
        out.push_str(&format_row(&header.map(str::to_owned), &widths));
        let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        out.push_str(&"-".repeat(rule));
        out.push('\n');
        for (i, line) in lines.iter().enumerate() {
            if i > 0 && !line[0].is_empty() {
                out.push('\n');
            }
            out.push_str(&format_row(line, &widths));
        }
        out.push('\n');
        for g in &self.groups {
            let _ = writeln!(out, "{}: {}", g.name, g.description);
            if let Some(note) = &g.note {
                let _ = writeln!(out, "{:width$}  ({note})", "", width = g.name.len());
            }
        }
        let _ = writeln!(out, "\ntotal time {:.1} s", self.elapsed_seconds);
        out
    }

    /// Writes a horizontal bar chart of every non-baseline ratio to `path`
    /// as SVG: bars start at the baseline (1x) on a log scale, so faster
    /// rows extend left and slower rows right.
    pub fn write_svg(&self, path: &Path) -> Result<(), String> {
        let bars: Vec<(String, f64, usize)> = self
            .groups
            .iter()
            .enumerate()
            .flat_map(|(gi, g)| {
                g.rows
                    .iter()
                    .skip(1)
                    .map(move |r| (format!("{}: {}", g.name, r.allocator), r.ratio, gi))
            })
            .collect();
        if bars.is_empty() {
            return Err("no ratio to plot: every selected workload has only its baseline".into());
        }
        let (lo, hi) = log_range(bars.iter().map(|b| b.1));
        let height = 110 + 34 * bars.len() as u32;
        let label_chars = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0);
        let label_width = (label_chars as u32 * 8 + 20).max(120);
        let root = SVGBackend::new(path, (label_width + 620, height)).into_drawing_area();
        draw_chart(&root, &bars, lo, hi, label_width).map_err(|e| e.to_string())?;
        root.present()
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// One table line: text columns left-aligned, numbers right-aligned.
fn format_row(cells: &[String; 6], widths: &[usize; 6]) -> String {
    let mut line = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        let pad = " ".repeat(w - cell.chars().count());
        if matches!(i, 0 | 1 | 5) {
            let _ = write!(line, "{cell}{pad}  ");
        } else {
            let _ = write!(line, "{pad}{cell}  ");
        }
    }
    format!("{}\n", line.trim_end())
}

/// `ns` with three significant digits or more.
pub fn format_ns(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2}")
    } else if ns < 1000.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

/// A log-scale axis range covering 1 and every ratio, with room for the
/// value labels past the bars' ends, in whole powers of ten (so that the
/// tick labels are round).
pub fn log_range(ratios: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = ratios.fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let lo = 10f64.powf((min / 2.5).log10().floor());
    let hi = 10f64.powf((max * 2.5).log10().ceil());
    (lo, hi)
}

/// Axis ticks at 1, 2 and 5 times each power of ten in `lo..=hi`, or
/// only at the powers of ten when the range spans more than 4 decades (so
/// that the labels do not overlap).
fn key_points(lo: f64, hi: f64) -> Vec<f64> {
    let steps: &[f64] = if hi / lo > 1e4 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let mut points = Vec::new();
    let mut decade = lo;
    while decade <= hi * 1.000_001 {
        points.extend(
            steps
                .iter()
                .map(|m| decade * m)
                .filter(|&x| x <= hi * 1.000_001),
        );
        decade *= 10.0;
    }
    points
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw_chart(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    bars: &[(String, f64, usize)],
    lo: f64,
    hi: f64,
    label_width: u32,
) -> DrawResult {
    const PALETTE: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(214, 39, 40),
        RGBColor(140, 86, 75),
    ];
    root.fill(&WHITE)?;
    let n = bars.len() as i32;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "mallocator bench: time per operation relative to each workload's baseline",
            ("sans-serif", 18),
        )
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(label_width)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(key_points(lo, hi)),
            (0..n - 1).into_segmented(),
        )?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("ratio to baseline (log scale; left of 1x = faster)")
        .x_label_formatter(&|x| format!("{x}x"))
        .y_labels(bars.len())
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => bars
                .get((n - 1 - i) as usize)
                .map_or_else(String::new, |b| b.0.clone()),
            _ => String::new(),
        })
        .label_style(("sans-serif", 13))
        .draw()?;
    // Bars from 1x to the ratio, first bar at the top.
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio, group))| {
        let row = n - 1 - i as i32;
        let color = PALETTE[group % PALETTE.len()];
        let mut rect = Rectangle::new(
            [
                (1.0, SegmentValue::Exact(row)),
                (*ratio, SegmentValue::Exact(row + 1)),
            ],
            color.filled(),
        );
        rect.set_margin(5, 5, 0, 0);
        rect
    }))?;
    // The ratio as text just outside the bar's end.
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio, _))| {
        let row = n - 1 - i as i32;
        let anchor = if *ratio >= 1.0 {
            Pos::new(HPos::Left, VPos::Center)
        } else {
            Pos::new(HPos::Right, VPos::Center)
        };
        let x = if *ratio >= 1.0 {
            ratio * 1.04
        } else {
            ratio / 1.04
        };
        Text::new(
            format!("{ratio:.2}x"),
            (x, SegmentValue::CenterOf(row)),
            ("sans-serif", 12).into_font().color(&BLACK).pos(anchor),
        )
    }))?;
    // The baseline.
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
        BLACK.stroke_width(2),
    )))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::measure::summarize;
    use super::*;

    fn sample() -> Report {
        let groups = vec![
            GroupResult {
                name: "churn",
                description: "one alloc and one free",
                ops_per_run: 100,
                rows: vec![
                    ("system", summarize(vec![20.0, 21.0, 19.0])),
                    ("Valloc<u8>", summarize(vec![22.0, 22.0, 22.0])),
                    ("arena", summarize(vec![2.0, 2.5, 1.5])),
                ],
                note: None,
            },
            GroupResult {
                name: "tracking",
                description: "leak tracking",
                ops_per_run: 50,
                rows: vec![
                    ("plain", summarize(vec![10.0])),
                    ("tracked", summarize(vec![35.0])),
                ],
                note: Some("measured with care".into()),
            },
        ];
        Report::new(&groups, 3, true, 1.25)
    }

    #[test]
    fn report_carries_ratios_and_round_trips() {
        let r = sample();
        assert_eq!(r.groups[0].baseline, "system");
        let ratios: Vec<f64> = r.groups[0].rows.iter().map(|r| r.ratio).collect();
        assert_eq!(ratios, [1.0, 1.1, 0.1]);
        assert_eq!(r.groups[1].rows[1].ratio, 3.5);
        assert_eq!(r.groups[1].note.as_deref(), Some("measured with care"));
        assert!(
            !r.to_json().contains("\"note\": null"),
            "absent notes are left out"
        );
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn table_has_one_aligned_line_per_row() {
        let t = sample().to_table();
        let header = t.lines().find(|l| l.starts_with("workload")).unwrap();
        let ns_end = header.find("ns/op").unwrap() + "ns/op".len();
        let rows: Vec<&str> = t.lines().filter(|l| l.contains('%')).collect();
        assert_eq!(rows.len(), 5, "{t}");
        for (row, ns) in rows.iter().zip(["20.0", "22.0", "2.00", "10.0", "35.0"]) {
            // Right-aligned under the header: the median ends where "ns/op" ends.
            assert_eq!(&row[ns_end - ns.len()..ns_end], ns, "{t}");
        }
        assert!(
            rows[0].starts_with("churn") && rows[1].starts_with(' '),
            "{t}"
        );
        assert!(rows[0].ends_with("1.00x (baseline)") && rows[3].ends_with("1.00x (baseline)"));
        for (row, ratio) in rows[1..]
            .iter()
            .zip(["1.10x", "0.10x", "1.00x (baseline)", "3.50x"])
        {
            assert!(row.ends_with(ratio), "{row}");
        }
        assert!(t.contains("churn: one alloc and one free"));
        assert!(
            t.contains("tracking: leak tracking\n          (measured with care)\n"),
            "{t}"
        );
        assert!(t.contains("total time 1.2 s") || t.contains("total time 1.3 s"));
    }

    #[test]
    fn ns_format_keeps_three_digits() {
        assert_eq!(format_ns(1.234), "1.23");
        assert_eq!(format_ns(23.45), "23.4");
        assert_eq!(format_ns(1234.5), "1234");
    }

    #[test]
    fn log_range_covers_one_and_all_ratios() {
        assert_eq!(log_range([0.5, 3.0].into_iter()), (0.1, 10.0));
        assert_eq!(log_range([1.0].into_iter()), (0.1, 10.0));
        // Room for the label: 0.2 would end the bar at the axis.
        assert_eq!(log_range([0.2, 5.0].into_iter()), (0.01, 100.0));
        let (lo, hi) = log_range([0.013, 45.0].into_iter());
        assert!(lo <= 0.013 && hi >= 45.0 && lo > 0.0 && hi.is_finite());
    }

    #[test]
    fn key_points_are_1_2_5_per_decade() {
        let k = key_points(0.1, 10.0);
        let expected = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];
        assert_eq!(k.len(), expected.len());
        assert!(
            k.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-9),
            "{k:?}"
        );
    }

    #[test]
    fn svg_has_a_bar_and_a_label_per_ratio() {
        let dir = std::env::temp_dir().join(format!("mallocator-svg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        sample().write_svg(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "churn: Valloc&lt;u8&gt;",
            "churn: arena",
            "tracking: tracked",
            "1.10x",
            "0.10x",
            "3.50x",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert!(!svg.contains("churn: system"), "baselines are not bars");
    }

    #[test]
    fn svg_without_ratios_is_an_error() {
        let r = Report::new(
            &[GroupResult {
                name: "g",
                description: "d",
                ops_per_run: 1,
                rows: vec![("only", summarize(vec![1.0]))],
                note: None,
            }],
            1,
            false,
            0.0,
        );
        assert!(r
            .write_svg(Path::new("/nonexistent/never-written.svg"))
            .is_err());
    }
}
