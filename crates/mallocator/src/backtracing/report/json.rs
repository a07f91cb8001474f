//! The JSON form of a [`LeakReport`]: the leak report schema that
//! `mallocator leaks --json` writes too (`docs/report-schema.md`, checked
//! by `docs/report-schema.json`), here with `"source": "in_process"`.
//!
//! The report's Rust fields are not the schema's: the schema groups the
//! error totals by kind under `error_counts`, names a block's size
//! `bytes` as the log reader does, and puts what only this producer knows
//! under `in_process`. So the serialization is written out here rather
//! than derived from the fields.

use serde::ser::{Serialize, Serializer};
use serde::Serialize as DeriveSerialize;

use super::{ErrorEntry, ErrorKind, Frame, LeakGroup, LeakReport};

impl LeakReport {
    /// The version of the report schema that [`to_json`](Self::to_json)
    /// writes (its `"schema"` field). It changes when a field is renamed,
    /// removed or changes meaning; new optional fields keep it.
    ///
    /// ```
    /// use mallocator::backtracing::LeakReport;
    /// let json: serde_json::Value = serde_json::from_str(&LeakReport::default().to_json()).unwrap();
    /// assert_eq!(json["schema"], LeakReport::SCHEMA);
    /// ```
    pub const SCHEMA: u32 = 1;
}

/// The schema's top level, borrowed from a report.
#[derive(DeriveSerialize)]
struct Report<'a> {
    schema: u32,
    source: &'static str,
    leaked_bytes: usize,
    leaked_blocks: usize,
    suppressed_blocks: usize,
    suppressed_bytes: usize,
    groups: &'a [LeakGroup],
    error_counts: ErrorCounts,
    errors: &'a [ErrorEntry],
    in_process: InProcess,
}

/// Bad frees by kind: the kinds a tracker can see (a NULL result or a
/// reused live address is what a log reader infers from a log).
#[derive(DeriveSerialize)]
struct ErrorCounts {
    double_free: usize,
    invalid_free: usize,
}

/// What only the in-process tracker reports.
#[derive(DeriveSerialize)]
struct InProcess {
    errors_total: usize,
    off_stack_captures: usize,
    refused_allocations: usize,
}

/// One error object of the schema. The tracker reports every bad free on
/// its own, so each stands for one occurrence.
#[derive(DeriveSerialize)]
struct Error<'a> {
    kind: ErrorKind,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<usize>,
    address: usize,
    thread: u64,
    frames: &'a [Frame],
    /// Only a double free has an allocation and a first free: an invalid
    /// free's pointer was never handed out (or is forgotten).
    #[serde(skip_serializing_if = "Option::is_none")]
    alloc_frames: Option<&'a [Frame]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_free_frames: Option<&'a [Frame]>,
}

impl Serialize for ErrorEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let double = self.kind == ErrorKind::DoubleFree;
        Error {
            kind: self.kind,
            count: 1,
            bytes: self.size,
            address: self.address,
            thread: self.thread,
            frames: &self.frames,
            alloc_frames: double.then_some(&self.alloc_frames[..]),
            first_free_frames: double.then_some(&self.first_free_frames[..]),
        }
        .serialize(serializer)
    }
}

impl Serialize for LeakReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Report {
            schema: LeakReport::SCHEMA,
            source: "in_process",
            leaked_bytes: self.leaked_bytes,
            leaked_blocks: self.leaked_blocks,
            suppressed_blocks: self.suppressed_blocks,
            suppressed_bytes: self.suppressed_bytes,
            groups: &self.groups,
            error_counts: ErrorCounts {
                double_free: self.double_frees,
                invalid_free: self.invalid_frees,
            },
            errors: &self.errors,
            in_process: InProcess {
                errors_total: self.errors_total,
                off_stack_captures: self.off_stack_captures,
                refused_allocations: self.refused_allocations,
            },
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtracing::LeakKind;

    fn frame(ip: usize, function: Option<&str>) -> Frame {
        Frame {
            ip,
            function: function.map(str::to_owned),
            file: None,
            line: None,
        }
    }

    fn value(r: &LeakReport) -> serde_json::Value {
        serde_json::from_str(&r.to_json()).unwrap()
    }

    #[test]
    fn top_level_follows_the_schema() {
        let r = LeakReport {
            leaked_bytes: 40,
            leaked_blocks: 2,
            groups: vec![LeakGroup {
                bytes: 40,
                count: 2,
                frames: vec![frame(0x10, Some("leak"))],
                kind: Some(LeakKind::IndirectlyLost),
            }],
            errors_total: 5,
            double_frees: 2,
            invalid_frees: 3,
            off_stack_captures: 6,
            refused_allocations: 7,
            suppressed_blocks: 8,
            suppressed_bytes: 9,
            ..LeakReport::default()
        };
        // The version and the source come first, for a reader that
        // looks at the head of the file.
        let text = r.to_json();
        assert!(
            text.starts_with("{\n  \"schema\": 1,\n  \"source\": \"in_process\",\n"),
            "{text}"
        );
        let v = value(&r);
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "error_counts",
                "errors",
                "groups",
                "in_process",
                "leaked_blocks",
                "leaked_bytes",
                "schema",
                "source",
                "suppressed_blocks",
                "suppressed_bytes",
            ]
        );
        assert_eq!(v["schema"], 1);
        assert_eq!(v["source"], "in_process");
        assert_eq!(
            (
                v["suppressed_blocks"].as_u64(),
                v["suppressed_bytes"].as_u64()
            ),
            (Some(8), Some(9))
        );
        assert_eq!(
            v["error_counts"],
            serde_json::json!({"double_free": 2, "invalid_free": 3})
        );
        assert_eq!(
            v["in_process"],
            serde_json::json!({"errors_total": 5, "off_stack_captures": 6, "refused_allocations": 7})
        );
        assert_eq!(
            v["groups"][0],
            serde_json::json!({"bytes": 40, "count": 2, "kind": "indirectly_lost",
                "frames": [{"ip": 16, "function": "leak"}]})
        );
    }

    #[test]
    fn unknown_frame_parts_and_an_unclassified_kind_are_absent_not_null() {
        let r = LeakReport {
            groups: vec![LeakGroup {
                bytes: 1,
                count: 1,
                frames: vec![frame(0x20, None)],
                kind: None,
            }],
            ..LeakReport::default()
        };
        assert_eq!(
            value(&r)["groups"][0],
            serde_json::json!({"bytes": 1, "count": 1, "frames": [{"ip": 32}]})
        );
    }

    #[test]
    fn errors_have_a_count_and_only_the_stacks_their_kind_has() {
        let double = ErrorEntry {
            kind: ErrorKind::DoubleFree,
            address: 0x40,
            size: Some(24),
            thread: 3,
            frames: vec![frame(1, Some("second"))],
            alloc_frames: vec![frame(2, Some("alloc"))],
            first_free_frames: vec![],
        };
        let invalid = ErrorEntry {
            kind: ErrorKind::InvalidFree,
            address: 0x80,
            size: None,
            thread: 4,
            frames: vec![frame(5, None)],
            alloc_frames: vec![],
            first_free_frames: vec![],
        };
        let r = LeakReport {
            errors: vec![double, invalid],
            ..LeakReport::default()
        };
        let v = value(&r);
        assert_eq!(
            v["errors"][0],
            serde_json::json!({"kind": "double_free", "count": 1, "bytes": 24, "address": 64,
                "thread": 3, "frames": [{"ip": 1, "function": "second"}],
                "alloc_frames": [{"ip": 2, "function": "alloc"}], "first_free_frames": []})
        );
        assert_eq!(
            v["errors"][1],
            serde_json::json!({"kind": "invalid_free", "count": 1, "address": 128,
                "thread": 4, "frames": [{"ip": 5}]})
        );
    }
}
