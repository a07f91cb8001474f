//! Function, file and line for the frames of a report, read from the
//! objects' debug info (the way heaptrack symbolizes offline).
//!
//! Two kinds of frames get there:
//!
//! * Text logs, with `--symbolize`: frames given as
//!   `object(+0xoffset)[0xip]`, the form glibc's `backtrace_symbols_fd` and
//!   mallocator's text log mode write for every function without a dynamic
//!   symbol (most of a Rust or C program). The offset is taken as the
//!   object's virtual address, which holds for position-independent
//!   executables (Rust's and most distributions' default) and shared
//!   libraries; frames that cannot be resolved (object missing, no debug
//!   info, another layout) are kept as they are.
//! * v2 logs, always: raw return addresses and the module map, so each
//!   frame has its object, the object's load bias and the build-id it had
//!   when the log was written ([`ModuleSymbolizer`]). An object file whose
//!   build-id differs is not used: its frames stay raw, with one warning,
//!   rather than being given the names of a rebuilt program's functions.

use super::analyze::{Analysis, StackId};
use super::frames::{Frame, StackFrames};
use super::v2::modules::Module;
use hashbrown::{HashMap, HashSet};
use mallocator::backtracing::PRELOAD_LIBRARY;
use std::path::{Path, PathBuf};

/// Debug info of the objects of a text log seen so far (`None`: not
/// used), where to find them, and what to say about the ones not used.
#[derive(Default)]
struct Symbolizer {
    objects: HashMap<String, Option<addr2line::Loader>>,
    files: ObjectFiles,
    /// When the log was written (its file's modification time): an object
    /// changed since may be another build, whose names would be wrong.
    log_time: Option<std::time::SystemTime>,
    warnings: Vec<String>,
}

/// `(object, offset)` of a frame `object(+0xoffset)[0xip]`.
fn object_offset(frame: &str) -> Option<(&str, u64)> {
    let open = frame.rfind("(+0x")?;
    let close = open + frame[open..].find(')')?;
    let offset = u64::from_str_radix(&frame[open + 4..close], 16).ok()?;
    Some((&frame[..open], offset))
}

/// Is `path` a regular file? Only those are opened: a log can name
/// anything, and opening a FIFO or a device could block or read forever.
fn is_regular(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// A function at an address, as the debug info or symbol table names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// The function, demangled.
    pub function: String,
    /// Its source file and line, when the debug info has them.
    pub location: Option<(String, u32)>,
}

impl Symbol {
    /// The frame line of the text report: `function at file:line`, or
    /// just the function.
    pub fn line(&self) -> String {
        match &self.location {
            Some((file, line)) => format!("{} at {file}:{line}", self.function),
            None => self.function.clone(),
        }
    }

    /// The frame object of the return address `ip`, `offset` into
    /// `object`, that this symbol resolves.
    pub fn frame(&self, ip: Option<u64>, object: Option<String>, offset: Option<u64>) -> Frame {
        Frame {
            ip,
            function: Some(self.function.clone()),
            file: self.location.as_ref().map(|(file, _)| file.clone()),
            line: self.location.as_ref().map(|&(_, line)| line),
            object,
            offset,
            text: None,
        }
    }
}

/// The functions at `probe` (an address in the object file's own
/// addresses): one per function, inlined functions first, with file and
/// line when known; the symbol table's name when there is no debug info;
/// nothing when neither knows it.
fn lookup(loader: &addr2line::Loader, probe: u64) -> Vec<Symbol> {
    let mut out = Vec::new();
    if let Ok(mut frames) = loader.find_frames(probe) {
        while let Ok(Some(f)) = frames.next() {
            let Some(name) = f.function.as_ref().and_then(|n| n.raw_name().ok()) else {
                continue;
            };
            out.push(Symbol {
                function: super::render::demangle(&name),
                location: f
                    .location
                    .as_ref()
                    .and_then(|l| Some((l.file?.to_owned(), l.line?))),
            });
        }
    }
    if out.is_empty() {
        if let Some(sym) = loader.find_symbol(probe) {
            out.push(Symbol {
                function: super::render::demangle(sym),
                location: None,
            });
        }
    }
    out
}

impl Symbolizer {
    /// The frame's replacement lines with their frame objects: one per
    /// function at that address, inlined functions first, as `function at
    /// file:line`; or the frame unchanged.
    fn frame(&mut self, frame: &str) -> Vec<(String, Frame)> {
        let unchanged = || vec![(frame.to_owned(), Frame::parse(frame))];
        let Some((object, offset)) = object_offset(frame) else {
            return unchanged();
        };
        if !self.objects.contains_key(object) {
            let loader = self.open(object);
            self.objects.insert(object.to_owned(), loader);
        }
        let Some(Some(loader)) = self.objects.get(object) else {
            return unchanged();
        };
        // A return address points after the call: look up the call.
        let symbols = lookup(loader, offset.saturating_sub(1));
        if symbols.is_empty() {
            return unchanged();
        }
        let ip = Frame::parse(frame).ip;
        symbols
            .iter()
            .map(|s| (s.line(), s.frame(ip, Some(object.to_owned()), Some(offset))))
            .collect()
    }

    /// The debug info of `object`, or a warning saying why its frames
    /// stay raw: not found, not readable, or changed after the log was
    /// written (a rebuilt program: its names would be wrong).
    fn open(&mut self, object: &str) -> Option<addr2line::Loader> {
        let file = match locate(Path::new(object), &self.files) {
            Ok(file) => file,
            Err(why) => {
                self.warnings
                    .push(format!("{object}: {why}; its frames stay raw"));
                return None;
            }
        };
        let changed = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
        if let (Some(changed), Some(log)) = (changed, self.log_time) {
            if changed > log {
                self.warnings.push(format!(
                    "{}: changed after the log was written (rebuilt?); its frames stay raw \
                     (--binary names the build the log came from)",
                    file.display()
                ));
                return None;
            }
        }
        // No build-id (or an unreadable one): only the file's own.
        let id = file_build_id(&file).ok().flatten();
        match self.files.debug_info(&file, id.as_deref()) {
            Ok(loader) => Some(loader),
            Err(why) => {
                self.warnings
                    .push(format!("{}: {why}; its frames stay raw", file.display()));
                None
            }
        }
    }
}

/// The stacks a report can show: every leak group's, every error site's
/// and every peak consumer's, each once.
pub fn shown_stacks(a: &Analysis) -> Vec<StackId> {
    let groups = a.groups.iter().chain(&a.peak_consumers);
    let mut ids: Vec<StackId> = groups.map(|g| g.stack).collect();
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
    ids
}

/// Rewrites the stacks the report shows, frame by frame, finding the
/// objects as `files` says, and not using one changed after `log_time`;
/// returns their frame objects (with the address and object of each
/// resolved frame, which its new line no longer shows), and a warning
/// for each object whose frames stay raw.
pub fn symbolize(
    a: &mut Analysis,
    files: ObjectFiles,
    log_time: Option<std::time::SystemTime>,
) -> (StackFrames, Vec<String>) {
    let mut symbolizer = Symbolizer {
        objects: HashMap::new(),
        files,
        log_time,
        warnings: Vec::new(),
    };
    let mut resolved = StackFrames::default();
    for id in shown_stacks(a) {
        let text = String::from_utf8_lossy(a.stacks.text(id)).into_owned();
        if text.is_empty() {
            continue;
        }
        let (lines, frames): (Vec<String>, Vec<Frame>) = text
            .split('\n')
            .flat_map(|frame| symbolizer.frame(frame))
            .unzip();
        a.stacks.rewrite(id, lines.join("\n").into_bytes());
        resolved.set(id, frames);
    }
    (resolved, symbolizer.warnings)
}

/// Where the object file recorded as `recorded` is: the `--binary` of
/// the same file name, else the recorded path (relative: to the log's
/// working directory), else the first `--search-path` folder holding a
/// file of that name; or why it is nowhere.
fn locate(recorded: &Path, files: &ObjectFiles) -> Result<PathBuf, String> {
    let name = recorded.file_name();
    if let Some(b) = files.binaries.iter().find(|b| b.file_name() == name) {
        return if is_regular(b) {
            Ok(b.clone())
        } else {
            Err(format!("--binary {} is not a readable file", b.display()))
        };
    }
    let full = match &files.cwd {
        Some(cwd) if recorded.is_relative() => cwd.join(recorded),
        _ => recorded.to_owned(),
    };
    if is_regular(&full) {
        return Ok(full);
    }
    if let Some(name) = name {
        for dir in &files.search_path {
            let candidate = dir.join(name);
            if is_regular(&candidate) {
                return Ok(candidate);
            }
        }
    }
    let looked = if files.search_path.is_empty() {
        String::new()
    } else {
        let dirs: Vec<String> = files
            .search_path
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        format!(", nor in {}", dirs.join(", "))
    };
    Err(format!(
        "not found at {}{looked} (point to it with --binary or --search-path)",
        full.display()
    ))
}

/// Where the object files of a v2 log's modules are looked for.
#[derive(Clone, Debug, Default)]
pub struct ObjectFiles {
    /// Files to use instead of the recorded path of the module with the
    /// same file name (`--binary`).
    pub binaries: Vec<PathBuf>,
    /// Folders to look in, by file name, when the recorded path is
    /// missing (`--search-path`).
    pub search_path: Vec<PathBuf>,
    /// What relative recorded paths are relative to (the log header's
    /// working directory; `None`: ours).
    pub cwd: Option<PathBuf>,
    /// Folders of separate debug info by build-id (`--debug-dir`), looked
    /// in before [`SYSTEM_DEBUG_DIR`].
    pub debug_dirs: Vec<PathBuf>,
}

/// Where distributions install the debug info they strip from their
/// objects (Debian's `-dbgsym` packages, `libc6-dbg`): the file for an
/// object with build-id `abcdef…` is `.build-id/ab/cdef….debug` under it,
/// where gdb and Valgrind look too. Without it, a stripped object's
/// frames could only be named by its exported symbols, and a static
/// function took the name of the exported one before it.
const SYSTEM_DEBUG_DIR: &str = "/usr/lib/debug";

impl ObjectFiles {
    /// The separate debug info of the object whose build-id is `id`, in
    /// a `--debug-dir` folder or [`SYSTEM_DEBUG_DIR`]; `None` when none
    /// is installed.
    fn separate_debug_info(&self, id: &[u8]) -> Option<PathBuf> {
        let (first, rest) = id.split_first()?;
        let name = format!(".build-id/{first:02x}/{}.debug", hex(rest));
        self.debug_dirs
            .iter()
            .map(PathBuf::as_path)
            .chain([Path::new(SYSTEM_DEBUG_DIR)])
            .map(|dir| dir.join(&name))
            .find(|file| is_regular(file))
    }

    /// The debug info of the object `file`, whose build-id is `id`: its
    /// separate debug info when installed (same addresses, the object's
    /// debug sections and symbol table), else the file's own.
    fn debug_info(&self, file: &Path, id: Option<&[u8]>) -> Result<addr2line::Loader, String> {
        let source = id
            .and_then(|id| self.separate_debug_info(id))
            .unwrap_or_else(|| file.to_owned());
        addr2line::Loader::new(&source)
            .map_err(|e| format!("cannot read its debug info in {} ({e})", source.display()))
    }
}

/// A path recorded in a log (bytes, as the loader had them) as a path.
pub fn recorded_path(bytes: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// The build-id note of an object file (`None`: it has none).
fn file_build_id(path: &Path) -> Result<Option<Vec<u8>>, String> {
    use object::Object;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let cache = object::ReadCache::new(file);
    let object = object::File::parse(&cache).map_err(|e| format!("not an object file ({e})"))?;
    object
        .build_id()
        .map(|id| id.map(<[u8]>::to_vec))
        .map_err(|e| format!("cannot read its build-id ({e})"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Symbolizes the frames of a v2 log's stacks from its module map: a
/// frame's module gives the object file (found as [`ObjectFiles`] says)
/// and the load bias, and the object's build-id must be the one the log
/// recorded. Each object is opened once; each object that cannot be used
/// gets one warning ([`ModuleSymbolizer::warnings`]) and its frames stay
/// raw.
pub struct ModuleSymbolizer<'m> {
    modules: &'m [Module],
    files: ObjectFiles,
    /// Loader index (into `loaders`) of each module asked for; `None`: unusable.
    by_module: HashMap<u32, Option<usize>>,
    /// The same, by object file and expected build-id, so that modules
    /// loaded again (after a `dlclose`) share one loader.
    by_file: HashMap<(PathBuf, Box<[u8]>), Option<usize>>,
    loaders: Vec<addr2line::Loader>,
    warnings: Vec<String>,
    warned: HashSet<String>,
}

impl<'m> ModuleSymbolizer<'m> {
    /// A symbolizer for `modules` (indexed as the stack keys index them).
    pub fn new(modules: &'m [Module], files: ObjectFiles) -> Self {
        ModuleSymbolizer {
            modules,
            files,
            by_module: HashMap::new(),
            by_file: HashMap::new(),
            loaders: Vec::new(),
            warnings: Vec::new(),
            warned: HashSet::new(),
        }
    }

    /// Why objects could not be used, one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn warn(&mut self, message: String) {
        if self.warned.insert(message.clone()) {
            self.warnings.push(message);
        }
    }

    /// The functions at the return address `ip` in module `module`: at
    /// `ip - 1 - bias` (the call instruction), inlined functions first;
    /// `None` when the object cannot be used or does not know the address.
    pub fn frame(&mut self, ip: u64, module: u32) -> Option<Vec<Symbol>> {
        let loader = self.loader(module)?;
        let m = self.modules.get(module as usize)?;
        let probe = ip.checked_sub(1)?.checked_sub(m.bias)?;
        let out = lookup(&self.loaders[loader], probe);
        (!out.is_empty()).then_some(out)
    }

    fn loader(&mut self, module: u32) -> Option<usize> {
        if let Some(&l) = self.by_module.get(&module) {
            return l;
        }
        let l = self.open(module);
        self.by_module.insert(module, l);
        l
    }

    /// Where the object file of `m` is (see [`locate`]).
    fn locate(&self, m: &Module) -> Result<PathBuf, String> {
        locate(&recorded_path(&m.path), &self.files)
    }

    fn open(&mut self, module: u32) -> Option<usize> {
        let m = self.modules.get(module as usize)?;
        // The vDSO and other pseudo-objects (`[vdso]`) have no file to read.
        if m.path.is_empty() || m.path.starts_with(b"[") {
            return None;
        }
        let name = m.path_text();
        let file = match self.locate(m) {
            Ok(file) => file,
            // `mallocator trace`'s library, in a directory gone with the
            // run: its frames are cut from every report anyway.
            Err(_) if recorded_path(&m.path).file_name() == Some(PRELOAD_LIBRARY.as_ref()) => {
                return None
            }
            Err(why) => {
                self.warn(format!("{name}: {why}; its frames stay raw"));
                return None;
            }
        };
        let key = (file.clone(), m.build_id.clone());
        if let Some(&l) = self.by_file.get(&key) {
            return l;
        }
        let shown = if file == recorded_path(&m.path) {
            name.clone()
        } else {
            format!("{name} (read from {})", file.display())
        };
        let loaded = match file_build_id(&file) {
            Err(why) => Err(why),
            Ok(found) if found.as_deref().unwrap_or_default() == &*m.build_id => {
                self.files.debug_info(&file, found.as_deref())
            }
            Ok(None) => Err(format!(
                "the file has no build-id but the log recorded {}: not the same build",
                hex(&m.build_id)
            )),
            Ok(Some(found)) if m.build_id.is_empty() => Err(format!(
                "the file has build-id {} but the log recorded none: not the same build",
                hex(&found)
            )),
            Ok(Some(found)) => Err(format!(
                "build-id mismatch: the log recorded {}, the file has {} (rebuilt or replaced \
                 since the log was written?)",
                hex(&m.build_id),
                hex(&found)
            )),
        };
        let l = match loaded {
            Ok(loader) => {
                self.loaders.push(loader);
                Some(self.loaders.len() - 1)
            }
            Err(why) => {
                self.warn(format!("{shown}: {why}; its frames stay raw"));
                None
            }
        };
        self.by_file.insert(key, l);
        l
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
        for frame in ["/no/such/object(+0x10)[0x10]", "plain text"] {
            assert_eq!(
                s.frame(frame),
                vec![(frame.to_owned(), Frame::parse(frame))]
            );
        }
    }

    #[test]
    fn symbols_give_the_report_line_and_the_frame_object() {
        let located = Symbol {
            function: "app::leak".into(),
            location: Some(("src/main.rs".into(), 7)),
        };
        assert_eq!(located.line(), "app::leak at src/main.rs:7");
        assert_eq!(
            located.frame(Some(0x1010), Some("/bin/app".into()), Some(0x10)),
            Frame {
                ip: Some(0x1010),
                function: Some("app::leak".into()),
                file: Some("src/main.rs".into()),
                line: Some(7),
                object: Some("/bin/app".into()),
                offset: Some(0x10),
                text: None,
            }
        );
        let bare = Symbol {
            function: "leak".into(),
            location: None,
        };
        assert_eq!(bare.line(), "leak");
        let f = bare.frame(Some(1), None, None);
        assert_eq!((f.file, f.line), (None, None));
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
            let out: Vec<Vec<String>> = frames
                .iter()
                .map(|f| s.frame(f).into_iter().map(|(line, _)| line).collect())
                .collect();
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
