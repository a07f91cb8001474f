//! The one error type of the subcommands: each `run` returns it, and
//! `main` turns it into a message on stderr and exit code 2, in one place.

use std::fmt;
use std::io;

/// Why a subcommand could not do its work.
#[derive(Debug)]
pub enum Error {
    /// The command cannot do what was asked: bad input, a file that
    /// cannot be read, an option it cannot use. The message says why,
    /// naming the file or option.
    Failed(String),
    /// Writing an output failed.
    Write {
        /// What was being written: a file name, or "standard output".
        what: String,
        /// Why.
        source: io::Error,
    },
}

impl Error {
    /// The error of writing `what`.
    pub fn write(what: impl Into<String>, source: io::Error) -> Self {
        Error::Write {
            what: what.into(),
            source,
        }
    }

    /// Did the reader of an output go away (`mallocator leaks log | head`)?
    /// That is normal use of a command line tool, not a failure to report.
    pub fn is_closed_pipe(&self) -> bool {
        matches!(self, Error::Write { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Failed(message) => f.write_str(message),
            Error::Write { what, source } => write!(f, "cannot write {what}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Failed(_) => None,
            Error::Write { source, .. } => Some(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed() {
        let e = Error::Failed("log.txt: no such file".into());
        assert_eq!(e.to_string(), "log.txt: no such file");
        assert!(!e.is_closed_pipe());
        let e = Error::write("out.svg", io::Error::other("disk full"));
        assert_eq!(e.to_string(), "cannot write out.svg: disk full");
        assert!(std::error::Error::source(&e).is_some());
        assert!(!e.is_closed_pipe());
    }

    #[test]
    fn only_a_closed_output_pipe_is_a_closed_pipe() {
        let pipe = || io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(Error::write("standard output", pipe()).is_closed_pipe());
        assert!(!Error::Failed(pipe().to_string()).is_closed_pipe());
    }
}
