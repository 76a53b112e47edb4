//! The one error type of the library and the commands, and how each maps to
//! an exit code.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::report::{Report, Verdict};
use crate::tape::text::TextError;
use crate::tape::{TapeError, TapeErrorKind};

/// Exit code of a successful run.
pub const EXIT_OK: i32 = 0;
/// Exit code of any failure that is not a usage error or a verdict.
pub const EXIT_ERROR: i32 = 1;
/// Exit code of a command line that could not be understood.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a replay whose peer did not do what the tape says.
pub const EXIT_MISMATCH: i32 = 3;

/// Everything that can go wrong. A run that went through but whose peers
/// departed from their tapes is `Verdict`, carrying the whole report;
/// [`Error::is_mismatch`] tells it apart from a failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command line is wrong; `usage` is the command's usage line.
    Usage {
        message: String,
        usage: &'static str,
    },
    /// A file could not be opened, created, read or written.
    File {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// A tape file is malformed.
    Tape { path: PathBuf, source: TapeError },
    /// A text tape has a syntax error.
    Text { path: PathBuf, source: TextError },
    /// A socket address could not be resolved, bound or reached.
    Address {
        addr: String,
        action: &'static str,
        source: io::Error,
    },
    /// Something failed for the reason `message` describes.
    Session(String),
    /// A run ended with a verdict other than passed: a mismatch, or a
    /// session that failed. The report says what each session did.
    Verdict(Box<Report>),
}

impl Error {
    pub fn usage(message: impl Into<String>, usage: &'static str) -> Error {
        Error::Usage {
            message: message.into(),
            usage,
        }
    }

    pub fn file(path: &Path, action: &'static str, source: io::Error) -> Error {
        Error::File {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub fn tape(path: &Path, source: TapeError) -> Error {
        Error::Tape {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn address(addr: impl fmt::Display, action: &'static str, source: io::Error) -> Error {
        Error::Address {
            addr: addr.to_string(),
            action,
            source,
        }
    }

    /// The exit code the command line ends with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. } => EXIT_USAGE,
            Error::Verdict(report) => report.verdict().exit_code(),
            _ => EXIT_ERROR,
        }
    }

    /// True when a peer departed from a tape (rather than something failing).
    pub fn is_mismatch(&self) -> bool {
        matches!(self, Error::Verdict(report) if report.verdict() == Verdict::Mismatch)
    }

    /// The run's report, when the run went through.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Error::Verdict(report) => Some(report),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage { message, .. } => write!(f, "{message}"),
            Error::File {
                path,
                action,
                source,
            } => write!(
                f,
                "cannot {action} {}: {}",
                path.display(),
                os_reason(source)
            ),
            Error::Tape { path, source } => {
                write!(f, "{}: {source}", path.display())?;
                if matches!(
                    source.kind,
                    TapeErrorKind::TruncatedHeader { .. } | TapeErrorKind::TruncatedPayload { .. }
                ) {
                    write!(
                        f,
                        " (the recording was interrupted? `tcptape repair {}` keeps its complete frames)",
                        path.display()
                    )?;
                }
                Ok(())
            }
            Error::Text { path, source } => write!(f, "{}:{source}", path.display()),
            Error::Address {
                addr,
                action,
                source,
            } => write!(f, "cannot {action} {addr}: {}", os_reason(source)),
            Error::Session(message) => write!(f, "{message}"),
            Error::Verdict(report) => write_verdict(f, report),
        }
    }
}

/// A failed run: every mismatch report in full (as the command line
/// printed them), then the run's own failures, then the summary.
fn write_verdict(f: &mut fmt::Formatter<'_>, report: &Report) -> fmt::Result {
    for session in report.sessions() {
        match (&session.details, &session.message) {
            (Some(details), _) => writeln!(f, "{}", details.trim_end())?,
            (None, Some(message)) => writeln!(f, "{message}")?,
            (None, None) => {}
        }
    }
    for (_, message) in &report.failures {
        writeln!(f, "{message}")?;
    }
    write!(f, "{}", report.summary())
}

impl std::error::Error for Error {}

/// The OS reason without Rust's " (os error N)" suffix, which means nothing
/// to a user reading a one-line error.
pub fn os_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_by_kind() {
        assert_eq!(Error::usage("x", "u").exit_code(), EXIT_USAGE);
        let mut report = Report::default();
        report.fail(Verdict::Mismatch, "tape never played");
        let mismatch = Error::Verdict(Box::new(report));
        assert_eq!(mismatch.exit_code(), EXIT_MISMATCH);
        assert!(mismatch.is_mismatch());
        assert_eq!(
            mismatch.to_string(),
            "tape never played\n0 sessions; verdict: mismatch"
        );
        assert_eq!(Error::Session("s".into()).exit_code(), EXIT_ERROR);
    }

    #[test]
    fn file_error_names_path_and_reason() {
        let err = Error::file(
            Path::new("/nope/x.tape"),
            "open tape",
            io::Error::from_raw_os_error(2),
        );
        assert_eq!(
            err.to_string(),
            "cannot open tape /nope/x.tape: No such file or directory"
        );
    }

    #[test]
    fn address_error_names_address() {
        let err = Error::address(
            "127.0.0.1:9",
            "connect to",
            io::Error::from_raw_os_error(111),
        );
        assert_eq!(
            err.to_string(),
            "cannot connect to 127.0.0.1:9: Connection refused"
        );
    }
}
