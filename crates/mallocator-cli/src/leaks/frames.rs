//! Stack frames as the JSON report and the flame graph see them: what a
//! frame line says broken down into its parts (address, object, function,
//! source location), the frame objects of the report schema
//! (`docs/report-schema.md`).
//!
//! The analysis keeps each stack as text, one line a frame, because the
//! text report and the C layout print those lines as the log had them
//! (or as symbolization rewrote them). Symbolization knows each frame's
//! parts when it writes its lines, so it hands them over here
//! ([`StackFrames`]); every other stack's lines are broken down by
//! [`Frame::parse`], which reads glibc's `backtrace_symbols` form, the
//! one text logs use.

use super::analyze::{Analysis, StackId};
use super::render::{demangle, folded_safe, UNKNOWN_FRAME};
use hashbrown::HashMap;
use serde::Serialize;

/// One frame of a stack. What is not known is `None`, and absent from
/// the JSON. A frame has an `ip`, a `text`, or both: `text` is the frame's
/// line when it could not be broken down (whatever could, such as the
/// address at its end, is given too).
///
/// ```text
/// ./prog(leak+0x1a)[0x55d5c0a0b1a2] -> ip 0x55d5c0a0b1a2, object ./prog, function leak
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The return address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<u64>,
    /// The function (demangled), from symbolization or the log's symbol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The source file, from symbolization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The source line, from symbolization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The object file (executable or shared library) holding the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The address in the object file's own addresses (what `addr2line
    /// -e object` takes), when the log gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The frame's line as the log had it, when it could not be broken down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `0x1a2b` (or `1a2b`) as a number.
fn hex(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

impl Frame {
    /// Breaks down one frame line of a text log, in glibc's
    /// `backtrace_symbols` form: `object(symbol+0xoff)[0xip]`,
    /// `object(+0xoff)[0xip]` (no symbol: the offset is the object's own
    /// address), `object()[0xip]`, or `[0xip]` alone. Rust symbols are
    /// demangled. A line in no such form is kept as `text`, with the
    /// address at its end if it has one.
    pub fn parse(line: &str) -> Frame {
        let mut frame = Frame::default();
        let mut rest = line.trim();
        if let Some(open) = rest.rfind('[') {
            if let Some(ip) = rest[open + 1..].strip_suffix(']').and_then(hex) {
                frame.ip = Some(ip);
                rest = rest[..open].trim_end();
            }
        }
        let understood = if rest.is_empty() {
            frame.ip.is_some()
        } else {
            frame.object_and_symbol(rest)
        };
        // A frame without an address keeps its line: the address or the
        // text is what a report shows of it (`./p(x()` names an object,
        // but no place in it).
        if !understood || frame.ip.is_none() {
            frame.text = Some(line.to_owned());
        }
        frame
    }

    /// Fills `object`, `function` and `offset` from `object(inside)`;
    /// false when `s` is not in that form or names nothing at all (`()`).
    fn object_and_symbol(&mut self, s: &str) -> bool {
        let (Some(open), Some(inner)) = (s.rfind('('), s.strip_suffix(')')) else {
            return false;
        };
        if open >= inner.len() {
            return false;
        }
        let object = &s[..open];
        let inside = &inner[open + 1..];
        let (symbol, offset) = match inside.rfind('+') {
            Some(plus) => match hex(&inside[plus + 1..]) {
                Some(off) => (&inside[..plus], Some(off)),
                None => return false,
            },
            None => (inside, None),
        };
        if object.is_empty() && symbol.is_empty() {
            return false;
        }
        self.object = (!object.is_empty()).then(|| object.to_owned());
        if symbol.is_empty() {
            // `object(+0xoff)`: an offset from the object's start.
            self.offset = offset;
        } else {
            // `object(symbol+0xoff)`: the offset is from the symbol, which
            // no field holds; the function is what matters.
            self.function = Some(demangle(symbol));
        }
        true
    }

    /// The frame's name in a flame graph: its function, else its object's
    /// file name and offset (`libc.so.6+0x271ca`), else its address
    /// (`[0x7f0c5a2271ca]`), else its text; [`UNKNOWN_FRAME`] when nothing
    /// names it. Made safe for the folded format ([`folded_safe`]).
    pub fn label(&self) -> String {
        let label = if let Some(f) = &self.function {
            f.clone()
        } else if let Some(object) = &self.object {
            let name = object.rsplit('/').next().unwrap_or(object);
            match self.offset {
                Some(off) => format!("{name}+{off:#x}"),
                None => name.to_owned(),
            }
        } else if let Some(text) = &self.text {
            // `()`: glibc's frame of a nameless object without a symbol.
            if text.trim() == "()" {
                return UNKNOWN_FRAME.to_owned();
            }
            text.clone()
        } else if let Some(ip) = self.ip {
            format!("[{ip:#x}]")
        } else {
            String::new()
        };
        folded_safe(&label)
    }
}

/// The frames of the stacks symbolization rewrote, as it resolved them;
/// the other stacks' frames come from their lines ([`Frame::parse`]).
#[derive(Default)]
pub struct StackFrames {
    resolved: HashMap<StackId, Vec<Frame>>,
}

impl StackFrames {
    /// Records the frames of stack `id`, one for each line of its new text.
    pub fn set(&mut self, id: StackId, frames: Vec<Frame>) {
        self.resolved.insert(id, frames);
    }

    /// Keeps only the frames in `range` of stack `id`, if it has its own
    /// (the report shows part of a stack).
    pub fn keep(&mut self, id: StackId, range: std::ops::Range<usize>) {
        if let Some(frames) = self.resolved.get_mut(&id) {
            frames.truncate(range.end);
            frames.drain(..range.start);
        }
    }

    /// The frames of stack `id` of `a`, innermost first.
    pub fn get(&self, a: &Analysis, id: StackId) -> Vec<Frame> {
        match self.resolved.get(&id) {
            Some(frames) => frames.clone(),
            None => a
                .stacks
                .frames(id)
                .iter()
                .map(|l| Frame::parse(l))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ip: Option<u64>, function: Option<&str>, object: Option<&str>) -> Frame {
        Frame {
            ip,
            function: function.map(str::to_owned),
            object: object.map(str::to_owned),
            ..Frame::default()
        }
    }

    fn text(ip: Option<u64>, line: &str) -> Frame {
        Frame {
            ip,
            text: Some(line.to_owned()),
            ..Frame::default()
        }
    }

    #[test]
    fn glibc_frames_are_broken_down() {
        assert_eq!(
            Frame::parse("./prog(leaky+0x1a)[0x55d5c0a0b1a2]"),
            frame(Some(0x55d5c0a0b1a2), Some("leaky"), Some("./prog"))
        );
        assert_eq!(
            Frame::parse("/lib/x86_64-linux-gnu/libc.so.6(+0x271ca)[0x7f0c5a2271ca]"),
            Frame {
                offset: Some(0x271ca),
                ..frame(
                    Some(0x7f0c5a2271ca),
                    None,
                    Some("/lib/x86_64-linux-gnu/libc.so.6")
                )
            }
        );
        assert_eq!(
            Frame::parse("./prog(main)[0x1]"),
            frame(Some(1), Some("main"), Some("./prog"))
        );
        assert_eq!(
            Frame::parse("./prog()[0x1]"),
            frame(Some(1), None, Some("./prog"))
        );
        assert_eq!(
            Frame::parse("[0x7f0c5a2271ca]"),
            frame(Some(0x7f0c5a2271ca), None, None)
        );
        // Older glibc put a space before the address.
        assert_eq!(
            Frame::parse("./prog(f+0x1) [0x2]"),
            frame(Some(2), Some("f"), Some("./prog"))
        );
        assert_eq!(
            Frame::parse("./p(_ZN10leaky_list4push17h0123456789abcdefE+0x10)[0x1]"),
            frame(Some(1), Some("leaky_list::push"), Some("./p"))
        );
        // Without an address a frame keeps its line, even where an object
        // could be read from it (a report shows the address or the text).
        let f = Frame::parse("./p(a;b+()");
        assert_eq!((f.ip, f.text.as_deref()), (None, Some("./p(a;b+()")));
    }

    #[test]
    fn other_lines_are_kept_as_text() {
        for line in [
            "main",
            "f<[u8; 4]>",
            "retry 3",
            "   ",
            "",
            "()",
            "./p(f+zz)",
        ] {
            assert_eq!(Frame::parse(line), text(None, line), "{line:?}");
        }
        // The address is read even when the rest is not understood.
        assert_eq!(
            Frame::parse("some frame [0x10]"),
            text(Some(0x10), "some frame [0x10]")
        );
        assert_eq!(Frame::parse("[0xzz]"), text(None, "[0xzz]"));
        assert_eq!(Frame::parse("[]"), text(None, "[]"));
    }

    #[test]
    fn json_leaves_out_what_is_not_known() {
        let v = serde_json::to_value(Frame::parse("./prog(+0x10)[0x20]")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ip": 32, "object": "./prog", "offset": 16})
        );
        let v = serde_json::to_value(Frame::parse("odd")).unwrap();
        assert_eq!(v, serde_json::json!({"text": "odd"}));
    }

    #[test]
    fn labels() {
        let label = |line: &str| Frame::parse(line).label();
        assert_eq!(label("./prog(leaky+0x1a)[0x55d5c0a0b1a2]"), "leaky");
        assert_eq!(
            label("/lib/x86_64-linux-gnu/libc.so.6(+0x271ca)[0x7f0c5a2271ca]"),
            "libc.so.6+0x271ca"
        );
        assert_eq!(label("./prog(main)[0x1]"), "main");
        assert_eq!(label("./prog()[0x1]"), "prog");
        assert_eq!(label("[0x7f0c5a2271ca]"), "[0x7f0c5a2271ca]");
        assert_eq!(label("f<[u8; 4]>"), "f<[u8, 4]>");
        assert_eq!(label("()"), UNKNOWN_FRAME);
        assert_eq!(label("   "), UNKNOWN_FRAME);
        let symbolized = Frame {
            file: Some("src/main.rs".into()),
            line: Some(3),
            ..frame(Some(1), Some("app::main"), Some("/bin/app"))
        };
        assert_eq!(symbolized.label(), "app::main");
        assert_eq!(Frame::default().label(), UNKNOWN_FRAME);
    }
}
