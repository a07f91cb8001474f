//! `--symbolize`: function, file and line for the frames a log only gives
//! as `object(+0xoffset)[0xip]`, read from the object's debug info (the
//! way heaptrack symbolizes offline). glibc's `backtrace_symbols_fd` and
//! mallocator's log mode write that form for every function that has no
//! dynamic symbol, which is most of a Rust or C program.
//!
//! The offset is taken as the object's virtual address, which holds for
//! position-independent executables (Rust's and most distributions'
//! default) and shared libraries; frames that cannot be resolved (object
//! missing, no debug info, another layout) are kept as they are.

use super::analyze::{Analysis, StackId};
use hashbrown::HashMap;

/// Debug info of the objects seen so far (`None`: could not be read).
#[derive(Default)]
struct Symbolizer {
    objects: HashMap<String, Option<addr2line::Loader>>,
}

/// `(object, offset)` of a frame `object(+0xoffset)[0xip]`.
fn object_offset(frame: &str) -> Option<(&str, u64)> {
    let open = frame.rfind("(+0x")?;
    let close = open + frame[open..].find(')')?;
    let offset = u64::from_str_radix(&frame[open + 4..close], 16).ok()?;
    Some((&frame[..open], offset))
}

impl Symbolizer {
    /// The frame's replacement lines: one per function at that address,
    /// inlined functions first, as `function at file:line`; or the frame
    /// unchanged.
    fn frame(&mut self, frame: &str) -> Vec<String> {
        let Some((object, offset)) = object_offset(frame) else {
            return vec![frame.to_owned()];
        };
        let loader = self.objects.entry_ref(object).or_insert_with(|| {
            // Only regular files: a log can name anything, and opening
            // a FIFO or a device could block or read forever.
            let regular = std::fs::metadata(object).is_ok_and(|m| m.is_file());
            regular.then(|| addr2line::Loader::new(object).ok())?
        });
        let Some(loader) = loader else {
            return vec![frame.to_owned()];
        };
        // A return address points after the call: look up the call.
        let probe = offset.saturating_sub(1);
        let mut out = Vec::new();
        if let Ok(mut frames) = loader.find_frames(probe) {
            while let Ok(Some(f)) = frames.next() {
                let Some(name) = f.function.as_ref().and_then(|n| n.raw_name().ok()) else {
                    continue;
                };
                let name = super::render::demangle(&name);
                match f.location.as_ref().and_then(|l| Some((l.file?, l.line?))) {
                    Some((file, line)) => out.push(format!("{name} at {file}:{line}")),
                    None => out.push(name),
                }
            }
        }
        if out.is_empty() {
            if let Some(sym) = loader.find_symbol(probe) {
                out.push(super::render::demangle(sym));
            }
        }
        if out.is_empty() {
            out.push(frame.to_owned());
        }
        out
    }
}

/// Rewrites the stacks the report shows, frame by frame.
pub fn symbolize(a: &mut Analysis) {
    let mut ids: Vec<StackId> = a.groups.iter().map(|g| g.stack).collect();
    for (s, _) in &a.double_frees {
        ids.extend([s.alloc, s.first_free, s.second_free]);
    }
    for list in [&a.unknown_frees, &a.null_results, &a.null_frees] {
        ids.extend(list.iter().map(|(s, _)| *s));
    }
    for (s, _) in &a.live_reuses {
        ids.extend([s.old, s.new]);
    }
    ids.sort_unstable();
    ids.dedup();
    let mut symbolizer = Symbolizer::default();
    for id in ids {
        let text = String::from_utf8_lossy(a.stacks.text(id)).into_owned();
        if text.is_empty() {
            continue;
        }
        let lines: Vec<String> = text
            .split('\n')
            .flat_map(|frame| symbolizer.frame(frame))
            .collect();
        a.stacks.rewrite(id, lines.join("\n").into_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_and_offset_of_glibc_frames() {
        assert_eq!(
            object_offset("/usr/bin/app(+0x1a2b)[0x55d5c0a0b1a2]"),
            Some(("/usr/bin/app", 0x1a2b))
        );
        assert_eq!(object_offset("./app(main+0x20)[0x1]"), None);
        assert_eq!(object_offset("[0x7f0c5a2271ca]"), None);
        assert_eq!(object_offset("./app(+0xzz)[0x1]"), None);
    }

    #[test]
    fn unreadable_objects_keep_the_frame() {
        let mut s = Symbolizer::default();
        let frame = "/no/such/object(+0x10)[0x10]";
        assert_eq!(s.frame(frame), vec![frame.to_owned()]);
        assert_eq!(s.frame("plain text"), vec!["plain text".to_owned()]);
    }

    #[cfg(unix)]
    #[test]
    fn special_files_named_in_a_log_are_not_opened() {
        // Opening a FIFO for reading blocks until a writer comes: a log
        // naming one must not hang the report (nor a directory fail it).
        let dir = std::env::temp_dir().join(format!("mallocator-symbolize-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `path` is a NUL-terminated string.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let frames = [
            format!("{}(+0x10)[0x10]", fifo.display()),
            format!("{}(+0x10)[0x10]", dir.display()),
        ];
        let expected = frames.clone();
        std::thread::spawn(move || {
            let mut s = Symbolizer::default();
            let out: Vec<Vec<String>> = frames.iter().map(|f| s.frame(f)).collect();
            tx.send(out).unwrap();
        });
        let out = rx.recv_timeout(std::time::Duration::from_secs(10));
        // Unblock a reader stuck on the FIFO (if any) before failing; with
        // `O_NONBLOCK` this open fails at once when there is none.
        let _ = std::os::unix::fs::OpenOptionsExt::custom_flags(
            std::fs::OpenOptions::new().write(true),
            libc::O_NONBLOCK,
        )
        .open(&fifo);
        std::fs::remove_dir_all(&dir).unwrap();
        let out = out.expect("symbolizing frames of special files hangs");
        assert_eq!(out, expected.map(|f| vec![f]));
    }
}
