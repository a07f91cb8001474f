//! One traced run: the log file, the program's environment, its end,
//! and the report.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use super::{library, program, TraceArgs};
use crate::leaks::{self, Findings, LeaksArgs};
use crate::Error;

pub(crate) fn run(args: &TraceArgs) -> Result<ExitCode, Error> {
    let (name, program_args) = args
        .command
        .split_first()
        .ok_or_else(|| Error::Failed("no program to run".into()))?;
    let path = program::resolve(name)?;
    if let Some(why) = program::why_untraceable(&path)? {
        return Err(Error::Failed(why));
    }
    // Before the program runs, not after it: a typo costs nothing.
    leaks::load_suppressions(&args.suppressions)?;
    let unpacked = library::unpack()?;
    preloadable(&unpacked.library)?;
    let log = match &args.output {
        Some(output) => log_path(output)?,
        None => unpacked.dir.path().join("events.log"),
    };
    // Each process of the tree writes LOG.PID when children are traced;
    // PROGRAM's is renamed LOG at the end.
    let per_process = args.follow_fork || args.follow_exec;
    let created = create_log(&log, args.force, per_process)?;
    let mut log_setting = log.clone().into_os_string();
    if per_process {
        log_setting.push(".%p");
    }
    let mut command = Command::new(&path);
    command
        // As typed, as a shell passes it (a program may look at it).
        .arg0(name)
        .args(program_args)
        .env("LD_PRELOAD", preload_list(&unpacked.library))
        .env("MALLOCATOR_LOG", &log_setting)
        .env("MALLOCATOR_LOG_FORMAT", "v2");
    // Set or removed (one exported by the shell would make the programs
    // PROGRAM runs reopen its log), never added: PROGRAM sees the
    // environment it was given (the library takes its own settings out).
    if args.follow_exec {
        command.env("MALLOCATOR_FOLLOW_EXEC", "1");
    } else {
        command.env_remove("MALLOCATOR_FOLLOW_EXEC");
    }
    for variable in REPORT_VARIABLES {
        if std::env::var_os(variable).is_some() {
            note(format_args!(
                "{variable} is not passed to the program: its own leak report would \
                 repeat this one (see --suppressions and --full-stacks)"
            ));
            command.env_remove(variable);
        }
    }
    if args.frame_pointers {
        command.env("MALLOCATOR_STACKS", "fp");
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot run {}: {e}", path.display())))?;
    // As `system` does: a Ctrl-C stops the program, not the report.
    let _quiet = IgnoreInterrupts::now();
    let status = child
        .wait()
        .map_err(|e| Error::Failed(format!("waiting for {}: {e}", path.display())))?;
    let code = exit_code(&path, status);
    let children = if per_process {
        let own = per_process_log(&log, child.id());
        if own.exists() {
            std::fs::rename(&own, &log)
                .map_err(|e| Error::Failed(format!("cannot rename {}: {e}", own.display())))?;
        }
        children_logs(&log)
    } else {
        Vec::new()
    };
    if std::fs::metadata(&log).map_or(true, |m| m.len() == 0) {
        return Err(Error::Failed(format!(
            "{} wrote no allocation log: the preload library was not loaded into it \
             (the dynamic loader says why above; a temporary directory mounted noexec \
             is one cause: set TMPDIR to another)",
            path.display()
        )));
    }
    created.keep();
    if args.output.is_some() {
        note(format_args!(
            "the event log is in {} (read it with `mallocator leaks {}`)",
            log.display(),
            log.display()
        ));
        for (pid, child_log) in &children {
            note(format_args!(
                "process {pid}, a child: {}",
                child_log.display()
            ));
        }
        return Ok(code);
    }
    let found = match report_tree(args, log, children) {
        Ok(found) => found,
        Err(e) if !e.is_closed_pipe() => return Err(e),
        // Read or not (`trace ... 2>&1 | head`), the report leaves the
        // program's status to say how it ended.
        Err(_) => return Ok(code),
    };
    match args.error_exitcode {
        // A death by signal keeps its status: it says more.
        Some(n) if found != Findings::default() && status.code().is_some() => {
            note(format_args!(
                "{} lost blocks, {} bad frees: exiting with status {n} (--error-exitcode)",
                found.lost_blocks, found.bad_frees
            ));
            Ok(ExitCode::from(n))
        }
        _ => Ok(code),
    }
}

/// Prints the leak report of `log`, then of each child's log, on
/// standard error; what they found, together.
fn report_tree(
    args: &TraceArgs,
    log: PathBuf,
    children: Vec<(u32, PathBuf)>,
) -> Result<Findings, Error> {
    let mut found = report(args, log)?;
    for (pid, child_log) in children {
        writeln!(
            std::io::stderr(),
            "\n== mallocator trace: process {pid}, a child =="
        )
        .map_err(|e| Error::write("standard error", e))?;
        found += report(args, child_log)?;
    }
    Ok(found)
}

/// The tracker's settings for a program's own leak report at exit; the
/// trace makes the report, so they are not passed to the program.
const REPORT_VARIABLES: [&str; 5] = [
    "MALLOCATOR_LEAKS",
    "MALLOCATOR_LEAKS_FORMAT",
    "MALLOCATOR_LEAKS_EXITCODE",
    "MALLOCATOR_SUPPRESSIONS",
    "MALLOCATOR_FULL_STACKS",
];

/// A line on standard error, `mallocator trace: ...`; when standard error
/// is gone the line is lost, and the trace goes on.
fn note(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "mallocator trace: {line}");
}

/// `--output` as the tracker is given it: absolute (a child that changes
/// directory before it is traced writes beside PROGRAM's log, not into
/// its own directory), and UTF-8 (the tracker reads it from the
/// environment as text).
fn log_path(output: &Path) -> Result<PathBuf, Error> {
    let absolute = std::path::absolute(output)
        .map_err(|e| Error::Failed(format!("--output {}: {e}", output.display())))?;
    if absolute.to_str().is_none() {
        return Err(Error::Failed(format!(
            "--output {}: the path must be UTF-8 (the tracker reads it from the environment)",
            output.display()
        )));
    }
    Ok(absolute)
}

/// Whether `LD_PRELOAD` can name `library`: the dynamic loader splits it
/// at colons and white space.
fn preloadable(library: &Path) -> Result<(), Error> {
    if library
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|b| b":\t\n ".contains(b))
    {
        return Err(Error::Failed(format!(
            "the preload library's path {} has a colon or a space, which LD_PRELOAD cannot \
             hold: set TMPDIR to another directory",
            library.display()
        )));
    }
    Ok(())
}

/// Prints the leak report of `log` on standard error; what it found.
fn report(args: &TraceArgs, log: PathBuf) -> Result<Findings, Error> {
    let report = LeaksArgs {
        full_stacks: args.full_stacks,
        suppressions: args.suppressions.clone(),
        peak_limit: args.peak_limit,
        allow_empty: true,
        no_progress: true,
        ..LeaksArgs::for_log(log)
    };
    leaks::run_to(&report, &mut std::io::stderr().lock(), "standard error")
}

/// Where process `pid` of the tree writes when each has a log: LOG.PID.
fn per_process_log(log: &Path, pid: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{pid}"));
    PathBuf::from(name)
}

/// The other processes' logs beside `log` (LOG.PID), by process id.
fn children_logs(log: &Path) -> Vec<(u32, PathBuf)> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let pid = file.strip_prefix(&prefix)?.parse().ok()?;
            Some((pid, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// `LD_PRELOAD` with the library first and the caller's own after it.
fn preload_list(library: &Path) -> OsString {
    let mut list = library.as_os_str().to_owned();
    if let Some(theirs) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        list.push(":");
        list.push(theirs);
    }
    list
}

/// Creates the log file new, mode 0600, refusing a symbolic link; with
/// `force`, whatever is at `path` (a link itself, not its target) is
/// removed first. The tracker inside the program then writes it. When
/// each process writes a log of its own (`per_process`), the tracker
/// creates those, and `path` is only checked to be free (PROGRAM's log is
/// renamed to it at the end, which replaces a link rather than follow it),
/// as are the names of the other processes' logs, LOG.PID: one left from
/// an earlier run would be reported as this run's (`force` removes them).
fn create_log(path: &Path, force: bool, per_process: bool) -> Result<Created, Error> {
    let mut taken = vec![path.to_path_buf()];
    if per_process {
        taken.extend(children_logs(path).into_iter().map(|(_, p)| p));
    }
    for old in &taken {
        if force {
            match std::fs::remove_file(old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Failed(format!(
                        "cannot replace {}: {e}",
                        old.display()
                    )))
                }
            }
        } else if per_process && old.symlink_metadata().is_ok() {
            return Err(Error::Failed(format!(
                "cannot create {}: {} exists (add --force to replace it)",
                path.display(),
                old.display()
            )));
        }
    }
    if per_process {
        return Ok(Created(None));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map(|_| Created(Some(path.to_path_buf())))
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (add --force to replace it)"
            } else {
                ""
            };
            Error::Failed(format!("cannot create {}: {e}{hint}", path.display()))
        })
}

/// The log file this run created, removed when the run fails before the
/// program wrote it (an empty file left would make the next run ask for
/// `--force`), unless [`Created::keep`].
struct Created(Option<PathBuf>);

impl Created {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The program's exit code, or 128+N after a line saying that signal N
/// killed it.
fn exit_code(path: &Path, status: ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(code as u8);
    }
    let signal = status.signal().unwrap_or(0);
    note(format_args!(
        "{} was killed by signal {signal} ({}){}",
        path.display(),
        signal_name(signal),
        if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        }
    ));
    ExitCode::from(128u8.wrapping_add(signal as u8))
}

/// The C library's description of `signal`.
fn signal_name(signal: i32) -> String {
    // SAFETY: `strsignal` returns a NUL-terminated string, valid until
    // the next call; it is copied at once (the command has one thread).
    let p = unsafe { libc::strsignal(signal) };
    if p.is_null() {
        return "unknown signal".into();
    }
    // SAFETY: as above.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// SIGINT and SIGQUIT ignored while it lives (restored after).
struct IgnoreInterrupts {
    saved: [libc::sighandler_t; 2],
}

impl IgnoreInterrupts {
    fn now() -> Self {
        // SAFETY: `signal` with SIG_IGN installs no handler code.
        let saved = unsafe {
            [
                libc::signal(libc::SIGINT, libc::SIG_IGN),
                libc::signal(libc::SIGQUIT, libc::SIG_IGN),
            ]
        };
        IgnoreInterrupts { saved }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        // SAFETY: puts back what `now` found.
        unsafe {
            libc::signal(libc::SIGINT, self.saved[0]);
            libc::signal(libc::SIGQUIT, self.saved[1]);
        }
    }
}

impl LeaksArgs {
    /// `mallocator leaks LOG` with every option at its default.
    fn for_log(log: PathBuf) -> LeaksArgs {
        LeaksArgs {
            log: Some(log),
            json: false,
            format: None,
            top: 0,
            peak_limit: leaks::PEAK_LIMIT,
            flamegraph: None,
            lenient: false,
            fail_on_leaks: false,
            allow_empty: false,
            symbolize: false,
            suppressions: Vec::new(),
            full_stacks: false,
            binary: Vec::new(),
            search_path: Vec::new(),
            debug_dir: Vec::new(),
            no_progress: false,
        }
    }
}
