//! The global tracker's settings: one pure function from its instance's
//! configuration and the environment to what it will do, with a warning
//! for every value it cannot use (never silently ignored).

use super::global::ExitReport;
use super::{Config, LogFormat, LogTarget, StackMode, MAX_DEPTH};

/// Where log mode writes, as configured.
#[derive(Debug, Clone)]
pub(crate) enum LogSetting {
    /// As the instance's [`Config::log`] says.
    Config(LogTarget),
    /// `MALLOCATOR_LOG=stdout`.
    Stdout,
    /// `MALLOCATOR_LOG=stderr`.
    Stderr,
    /// `MALLOCATOR_LOG=<path>`: a file to create.
    Path(String),
}

/// Where the exit report goes: a file (`None`: standard error), and
/// whether as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExitDest {
    pub(crate) path: Option<String>,
    pub(crate) json: bool,
    /// `MALLOCATOR_LEAKS_EXITCODE`: the process exits with this status
    /// after the report when it finds lost blocks.
    pub(crate) exit_code: Option<u8>,
}

/// `path` with each `%p` replaced by `pid`: a log path naming the
/// process, so that each process of a tree (children after `fork` and
/// `exec`) writes its own.
pub(crate) fn expand_pid(path: &str, pid: u32) -> String {
    path.replace("%p", &pid.to_string())
}

/// Whether a log path names the process (see [`expand_pid`]).
pub(crate) fn names_the_process(path: &str) -> bool {
    path.contains("%p")
}

/// What the global tracker is set to.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) depth: usize,
    pub(crate) free_stacks: bool,
    pub(crate) full_stacks: bool,
    pub(crate) stack_mode: StackMode,
    pub(crate) log: LogSetting,
    pub(crate) log_format: LogFormat,
    /// `MALLOCATOR_SUPPRESSIONS`: a suppressions file to read.
    pub(crate) suppressions: Option<String>,
    pub(crate) exit: Option<ExitDest>,
}

/// The settings for an instance configured with `config` and `exit`,
/// reading the environment through `var` (an empty value counts as
/// unset): all of it when `from_env`, else only the exit report's
/// variables, and only for [`ExitReport::FromEnv`]. Returns the warnings
/// for values it could not use (each names the variable and what was
/// used instead).
pub(crate) fn settings(
    config: Config,
    exit: ExitReport,
    from_env: bool,
    var: &dyn Fn(&str) -> Option<String>,
) -> (Settings, Vec<String>) {
    let mut warnings = Vec::new();
    let env = |name: &str| {
        let wanted =
            from_env || (name.starts_with("MALLOCATOR_LEAKS") && exit == ExitReport::FromEnv);
        if wanted {
            var(name).filter(|v| !v.is_empty())
        } else {
            None
        }
    };
    let mut depth = config.depth.min(MAX_DEPTH);
    if let Some(v) = env("MALLOCATOR_DEPTH") {
        match v.trim().parse::<usize>() {
            Ok(n) if n > MAX_DEPTH => {
                warnings.push(format!(
                    "MALLOCATOR_DEPTH={v} is more than {MAX_DEPTH}; using {MAX_DEPTH}"
                ));
                depth = MAX_DEPTH;
            }
            Ok(n) => depth = n,
            Err(_) => warnings.push(format!(
                "MALLOCATOR_DEPTH={v} is not a number; using {depth}"
            )),
        }
    }
    let mut free_stacks = config.free_stacks;
    if let Some(v) = env("MALLOCATOR_FREE_STACKS") {
        match v.as_str() {
            "0" | "false" | "no" => free_stacks = false,
            "1" | "true" | "yes" => free_stacks = true,
            _ => warnings.push(format!(
                "MALLOCATOR_FREE_STACKS={v} is not 0 or 1; using {}",
                u8::from(free_stacks)
            )),
        }
    }
    let mut full_stacks = config.full_stacks;
    if let Some(v) = env("MALLOCATOR_FULL_STACKS") {
        match v.as_str() {
            "0" | "false" | "no" => full_stacks = false,
            "1" | "true" | "yes" => full_stacks = true,
            _ => warnings.push(format!(
                "MALLOCATOR_FULL_STACKS={v} is not 0 or 1; using {}",
                u8::from(full_stacks)
            )),
        }
    }
    let mut stack_mode = config.stack_mode;
    if let Some(v) = env("MALLOCATOR_STACKS") {
        match v.as_str() {
            "auto" => stack_mode = StackMode::Auto,
            "fp" => stack_mode = StackMode::FramePointers,
            "unwind" => stack_mode = StackMode::Unwind,
            "dwarf" => stack_mode = StackMode::Dwarf,
            _ => warnings.push(format!(
                "MALLOCATOR_STACKS={v} is not auto, fp, dwarf or unwind; using {stack_mode:?}"
            )),
        }
    }
    let log = match env("MALLOCATOR_LOG") {
        Some(v) if v == "stdout" => LogSetting::Stdout,
        Some(v) if v == "stderr" => LogSetting::Stderr,
        Some(path) => LogSetting::Path(path),
        None => LogSetting::Config(config.log),
    };
    let mut log_format = config.log_format;
    if let Some(v) = env("MALLOCATOR_LOG_FORMAT") {
        match v.as_str() {
            "v2" | "compact" => log_format = LogFormat::Compact,
            "fd" | "firedancer" => log_format = LogFormat::Firedancer,
            _ => warnings.push(format!(
                "MALLOCATOR_LOG_FORMAT={v} is not v2 or fd; using {}",
                match log_format {
                    LogFormat::Compact => "v2",
                    LogFormat::Firedancer => "fd",
                }
            )),
        }
    }
    let mut json = false;
    if let Some(v) = env("MALLOCATOR_LEAKS_FORMAT") {
        match v.as_str() {
            "json" => json = true,
            "text" => json = false,
            _ => warnings.push(format!(
                "MALLOCATOR_LEAKS_FORMAT={v} is not text or json; using text"
            )),
        }
    }
    let mut exit_code = None;
    if let Some(v) = env("MALLOCATOR_LEAKS_EXITCODE") {
        match v.trim().parse::<u8>() {
            Ok(n) if n > 0 => exit_code = Some(n),
            _ => warnings.push(format!(
                "MALLOCATOR_LEAKS_EXITCODE={v} is not a number from 1 to 255; not used"
            )),
        }
    }
    let exit = match exit {
        ExitReport::None => None,
        ExitReport::Stderr => Some(ExitDest {
            path: None,
            json,
            exit_code,
        }),
        ExitReport::Path(p) => Some(ExitDest {
            path: Some(p.to_owned()),
            json,
            exit_code,
        }),
        // An exit code asks for the report: on stderr unless it has a place.
        ExitReport::FromEnv => match env("MALLOCATOR_LEAKS") {
            Some(v) => Some(ExitDest {
                path: (v != "stderr").then_some(v),
                json,
                exit_code,
            }),
            None => exit_code.map(|_| ExitDest {
                path: None,
                json,
                exit_code,
            }),
        },
    };
    let settings = Settings {
        depth,
        free_stacks,
        full_stacks,
        stack_mode,
        log,
        log_format,
        suppressions: env("MALLOCATOR_SUPPRESSIONS"),
        exit,
    };
    (settings, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_path_can_name_the_process() {
        assert_eq!(expand_pid("/tmp/app.%p.log", 4242), "/tmp/app.4242.log");
        assert_eq!(expand_pid("/tmp/app.log", 4242), "/tmp/app.log");
        assert!(names_the_process("x.%p") && !names_the_process("x.p"));
    }

    fn with(vars: &[(&str, &str)]) -> (Settings, Vec<String>) {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings(Config::DEFAULT, ExitReport::FromEnv, true, &|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_without_variables() {
        let (s, warnings) = with(&[]);
        assert!(warnings.is_empty());
        assert_eq!(
            (s.depth, s.free_stacks, s.stack_mode),
            (32, true, StackMode::Auto)
        );
        assert_eq!(s.exit, None);
        assert!(matches!(s.log, LogSetting::Config(LogTarget::None)));
        assert_eq!(s.log_format, LogFormat::Compact);
    }

    #[test]
    fn good_values_are_used() {
        let (s, warnings) = with(&[
            ("MALLOCATOR_DEPTH", "8"),
            ("MALLOCATOR_FREE_STACKS", "0"),
            ("MALLOCATOR_STACKS", "unwind"),
            ("MALLOCATOR_LOG", "/tmp/x.log"),
            ("MALLOCATOR_LEAKS", "stderr"),
            ("MALLOCATOR_LEAKS_FORMAT", "json"),
            ("MALLOCATOR_LOG_FORMAT", "fd"),
            ("MALLOCATOR_SUPPRESSIONS", "leaks.supp"),
            ("MALLOCATOR_FULL_STACKS", "1"),
        ]);
        assert!(s.full_stacks);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(s.log_format, LogFormat::Firedancer);
        assert_eq!(s.suppressions.as_deref(), Some("leaks.supp"));
        assert_eq!(
            (s.depth, s.free_stacks, s.stack_mode),
            (8, false, StackMode::Unwind)
        );
        assert!(matches!(&s.log, LogSetting::Path(p) if p == "/tmp/x.log"));
        assert_eq!(
            s.exit,
            Some(ExitDest {
                path: None,
                json: true,
                exit_code: None
            })
        );
        for (value, mode) in [
            ("auto", StackMode::Auto),
            ("fp", StackMode::FramePointers),
            ("dwarf", StackMode::Dwarf),
        ] {
            let (s, warnings) = with(&[("MALLOCATOR_STACKS", value)]);
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(s.stack_mode, mode);
        }
        let (s, _) = with(&[
            ("MALLOCATOR_LEAKS", "leaks.txt"),
            ("MALLOCATOR_LOG", "stdout"),
        ]);
        assert_eq!(
            s.exit,
            Some(ExitDest {
                path: Some("leaks.txt".into()),
                json: false,
                exit_code: None
            })
        );
        assert!(matches!(s.log, LogSetting::Stdout));
        // An exit code alone asks for the report on stderr.
        let (s, warnings) = with(&[("MALLOCATOR_LEAKS_EXITCODE", "23")]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            s.exit,
            Some(ExitDest {
                path: None,
                json: false,
                exit_code: Some(23)
            })
        );
    }

    #[test]
    fn every_bad_value_warns_and_falls_back() {
        let (s, warnings) = with(&[
            ("MALLOCATOR_DEPTH", "deep"),
            ("MALLOCATOR_FREE_STACKS", "maybe"),
            ("MALLOCATOR_STACKS", "libunwind"),
            ("MALLOCATOR_LOG_FORMAT", "text"),
            ("MALLOCATOR_LEAKS_FORMAT", "xml"),
        ]);
        assert_eq!(
            (s.depth, s.free_stacks, s.stack_mode, s.log_format),
            (32, true, StackMode::Auto, LogFormat::Compact)
        );
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        for (w, var) in warnings.iter().zip([
            "DEPTH",
            "FREE_STACKS",
            "STACKS",
            "LOG_FORMAT",
            "LEAKS_FORMAT",
        ]) {
            assert!(w.starts_with(&format!("MALLOCATOR_{var}=")), "{w}");
        }
        let (s, warnings) = with(&[("MALLOCATOR_DEPTH", "1000")]);
        assert_eq!(s.depth, MAX_DEPTH);
        assert_eq!(warnings.len(), 1);
        for bad in ["0", "256", "-1", "two"] {
            let (s, warnings) = with(&[("MALLOCATOR_LEAKS_EXITCODE", bad)]);
            assert_eq!(s.exit, None, "{bad}");
            assert!(warnings[0].starts_with(&format!("MALLOCATOR_LEAKS_EXITCODE={bad} ")));
        }
    }

    #[test]
    fn empty_values_are_unset_and_a_program_config_ignores_the_environment() {
        let (s, warnings) = with(&[("MALLOCATOR_DEPTH", ""), ("MALLOCATOR_LEAKS", "")]);
        assert!(warnings.is_empty());
        assert_eq!((s.depth, s.exit), (32, None));
        let config = Config {
            depth: 4,
            ..Config::DEFAULT
        };
        let (s, warnings) = settings(config, ExitReport::None, false, &|_| Some("junk".into()));
        assert!(warnings.is_empty(), "unread variables cannot be wrong");
        assert_eq!((s.depth, s.exit), (4, None));
    }
}
