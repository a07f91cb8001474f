//! Leak suppressions in LeakSanitizer's format: a never-freed block is
//! left out of a report when a pattern matches a frame of the stack that
//! allocated it.
//!
//! ```text
//! # a comment
//! leak:my_crate::cache::fill        the function, or part of its name
//! leak:third_party/parser.c         a source file
//! leak:libfoo.so                    an object (where the frame names one)
//! leak:^std::*::init$               `*` matches anything; `^` and `$` anchor
//! ```
//!
//! A pattern without anchors matches anywhere in the function name, the
//! file or the object of any frame. The same code serves the in-process
//! reports (`MALLOCATOR_SUPPRESSIONS`) and `mallocator leaks
//! --suppressions`, and both start from [`Suppressions::builtin`].

use core::fmt;

use super::Frame;

/// A set of suppression patterns.
///
/// ```
/// use mallocator::backtracing::Suppressions;
/// let s = Suppressions::parse("# ours\nleak:app::cache::fill\n").unwrap();
/// assert!(s.matches_text("app::cache::fill::<u8>"));
/// assert!(!s.matches_text("app::main"));
/// assert!(Suppressions::parse("leek:x").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppressions {
    patterns: Vec<Pattern>,
}

/// One `leak:` pattern: the text between `*`s, in order, each anchored to
/// the start or end of the matched string where `^` or `$` says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    source: String,
    parts: Vec<String>,
    at_start: bool,
    at_end: bool,
}

/// A line of a suppressions file that is not a suppression.
///
/// ```
/// let e = mallocator::backtracing::Suppressions::parse("leak:\n").unwrap_err();
/// assert_eq!(e.line, 1);
/// assert!(e.to_string().contains("empty pattern"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for SuppressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for SuppressionError {}

/// Allocations every Rust program makes once and keeps: stack frames of
/// the standard library that allocate them. Reachability already clears
/// most of them in an exit report; offline logs and platforms without the
/// scan need this list.
/// Each pattern names the function that makes the allocation, not a
/// caller that may run user code below it (`std::io::stdio::_print`
/// formats the user's values, so it is not listed).
const BUILTIN: &str = "\
# The main thread's guard-page information, for stack-overflow messages.
leak:std::sys::*stack_overflow::
# The buffers of stdout and stdin, made at their first use.
leak:std::io::stdio::stdout
leak:std::io::stdio::stdin
# The handle of the current thread, made at its first use.
leak:std::thread::current::init_current
# Each thread's list of thread-local destructors.
leak:std::sys::thread_local::destructors::
# The debug-info cache of a panic's backtrace (RUST_BACKTRACE=1).
leak:std::backtrace_rs::symbolize::
";

impl Suppressions {
    /// The built-in suppressions (see the crate's README): one-time
    /// allocations of Rust's standard library.
    ///
    /// ```
    /// let s = mallocator::backtracing::Suppressions::builtin();
    /// assert!(s.matches_text("std::io::stdio::stdout"));
    /// print!("{}", s); // the list, one `leak:` line each
    /// ```
    pub fn builtin() -> Self {
        Self::parse(BUILTIN).expect("the built-in suppressions parse")
    }

    /// Parses a suppressions file: `leak:PATTERN` lines, `#` comments and
    /// blank lines; any other line is an error naming it.
    pub fn parse(text: &str) -> Result<Self, SuppressionError> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: String| SuppressionError {
                line: i + 1,
                message,
            };
            let Some(pattern) = line.strip_prefix("leak:") else {
                let kind = line.split(':').next().unwrap_or(line);
                return Err(error(format!(
                    "`{kind}` suppressions are not supported (only `leak:PATTERN`)"
                )));
            };
            let body = pattern.trim();
            let at_start = body.starts_with('^');
            let body = body.strip_prefix('^').unwrap_or(body);
            let at_end = body.ends_with('$');
            let body = body.strip_suffix('$').unwrap_or(body);
            if body.chars().all(|c| c == '*') {
                return Err(error(format!("empty pattern in `{line}`")));
            }
            patterns.push(Pattern {
                source: pattern.to_owned(),
                parts: body.split('*').map(str::to_owned).collect(),
                at_start,
                at_end,
            });
        }
        Ok(Suppressions { patterns })
    }

    /// Adds `other`'s patterns to these.
    ///
    /// ```
    /// use mallocator::backtracing::Suppressions;
    /// let mut s = Suppressions::builtin();
    /// s.extend(Suppressions::parse("leak:mine").unwrap());
    /// assert!(s.matches_text("mine::f") && s.matches_text("std::io::stdio::stdout"));
    /// ```
    pub fn extend(&mut self, other: Suppressions) {
        self.patterns.extend(other.patterns);
    }

    /// Whether there are no patterns.
    ///
    /// ```
    /// assert!(mallocator::backtracing::Suppressions::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a pattern matches `text` (a function name, a file, an
    /// object, or a whole frame line of a text log).
    pub fn matches_text(&self, text: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(text))
    }

    /// Whether a pattern matches the function or the file of a frame of
    /// `frames`.
    ///
    /// ```
    /// use mallocator::backtracing::{Frame, Suppressions};
    /// let f = Frame { ip: 1, function: Some("app::load".into()), file: Some("src/load.rs".into()), line: Some(3) };
    /// assert!(Suppressions::parse("leak:load.rs").unwrap().matches_frames(&[f]));
    /// ```
    pub fn matches_frames(&self, frames: &[Frame]) -> bool {
        frames.iter().any(|f| {
            [f.function.as_deref(), f.file.as_deref()]
                .into_iter()
                .flatten()
                .any(|t| self.matches_text(t))
        })
    }
}

impl Pattern {
    /// `parts` in order in `text`: the first at its start when `at_start`,
    /// the last at its end when `at_end`.
    fn matches(&self, text: &str) -> bool {
        let n = self.parts.len();
        let mut rest = text;
        for (i, part) in self.parts.iter().enumerate() {
            let last = i + 1 == n;
            if i == 0 && self.at_start {
                match rest.strip_prefix(part.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
                if last && self.at_end {
                    return rest.is_empty();
                }
            } else if last && self.at_end {
                return rest.ends_with(part.as_str());
            } else {
                match rest.find(part.as_str()) {
                    Some(at) => rest = &rest[at + part.len()..],
                    None => return false,
                }
            }
        }
        true
    }
}

impl fmt::Display for Suppressions {
    /// The patterns, one `leak:` line each.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.patterns
            .iter()
            .try_for_each(|p| writeln!(f, "leak:{}", p.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Suppressions::parse(&format!("leak:{pattern}"))
            .unwrap()
            .matches_text(text)
    }

    #[test]
    fn patterns_match_like_leak_sanitizers() {
        assert!(m("cache", "app::cache::fill"));
        assert!(!m("cache", "app::store"));
        assert!(m("^app::", "app::cache"));
        assert!(!m("^cache", "app::cache"));
        assert!(m("fill$", "app::cache::fill"));
        assert!(!m("fill$", "app::cache::fill2"));
        assert!(m("^app::fill$", "app::fill"));
        assert!(!m("^app::fill$", "app::fill::x"));
        assert!(m("app::*::fill", "app::cache::fill"));
        assert!(m("a*b*c", "xaybzc"));
        assert!(!m("a*b*c", "xcybza"));
        assert!(m("^a*c$", "abc"));
        assert!(!m("^a*c$", "abcd"));
        assert!(m("^*fill", "app::fill"), "a leading * after ^ is anything");
        // The last part anchored at the end is not looked for earlier.
        assert!(m("a*a$", "aa"));
        assert!(!m("ab*b$", "ab"));
    }

    #[test]
    fn files_parse_with_comments_and_report_bad_lines() {
        let s = Suppressions::parse("\n# c\n  leak: foo \nleak:bar$\n").unwrap();
        assert_eq!(s.to_string(), "leak: foo\nleak:bar$\n");
        assert!(s.matches_text("xfoo") && s.matches_text("bar") && !s.matches_text("bars"));
        let e = Suppressions::parse("leak:a\nrace:b\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("`race`"), "{e}");
        for empty in ["leak:", "leak:*", "leak:^$", "leak:^**$"] {
            assert!(Suppressions::parse(empty).is_err(), "{empty}");
        }
    }

    #[test]
    fn builtin_list_covers_the_standard_librarys_one_time_allocations() {
        let s = Suppressions::builtin();
        for f in [
            "std::sys::pal::unix::stack_overflow::thread_info::set_current_info",
            "std::io::stdio::stdout",
            "std::io::stdio::stdout::{{closure}}",
            "std::thread::current::init_current",
            "std::sys::thread_local::destructors::list::register",
            "std::backtrace_rs::symbolize::gimli::Cache::with_global",
        ] {
            assert!(s.matches_text(f), "{f}");
        }
        assert!(!s.matches_text("my_app::main"));
        // A caller that runs the program's own code below it.
        assert!(!s.matches_text("std::io::stdio::_print"));
        assert!(!s.matches_text("std::vec::Vec<T>::push"));
    }

    #[test]
    fn frames_match_by_function_or_file() {
        let frame = |function: &str, file: &str| Frame {
            ip: 1,
            function: Some(function.into()),
            file: Some(file.into()),
            line: None,
        };
        let s = Suppressions::parse("leak:vendor/zlib").unwrap();
        assert!(s.matches_frames(&[
            frame("app::a", "src/a.rs"),
            frame("inflate", "vendor/zlib/inflate.c")
        ]));
        assert!(!s.matches_frames(&[frame("app::a", "src/a.rs")]));
        assert!(!s.matches_frames(&[]));
    }
}
