//! The one error type of the library: a variant for each kind of thing
//! that goes wrong, so a caller can tell a timeout from a bad tape, each
//! with what it is about and, where the system said why, its source.
//! The command line maps them to exit codes (`cli`); nothing here prints.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::net::NetError;
use crate::report::{Report, Verdict};
use crate::tape::text::TextError;
use crate::tape::{OpenError, TapeError, TapeErrorKind};

/// Everything that can go wrong. A run that went through but whose peers
/// departed from their tapes is `Verdict`, carrying the whole report;
/// [`Error::is_mismatch`] tells it apart from a failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
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
    /// A file or folder cannot serve as asked: not a regular file, a
    /// cassette with no tapes, a folder holding files tcptape did not
    /// write, a tape that breaks a rule of its role, an output that would
    /// replace its input. `reason` is the whole message, naming the path.
    Refused { path: PathBuf, reason: String },
    /// A socket address could not be resolved, bound or reached, or a
    /// socket failed.
    Address {
        addr: String,
        action: &'static str,
        source: io::Error,
    },
    /// A wait lasted longer than the timeout allows.
    Timeout {
        after: Duration,
        /// What was waited for.
        waiting_for: String,
        /// The option that set the limit, and what else it says.
        limit: &'static str,
    },
    /// A setting has a value it cannot take: an option of the library's
    /// builders, `TCPTAPE_MODE`.
    Setting { name: String, reason: String },
    /// Recordings `learn` cannot learn from.
    Learn { reason: String },
    /// Something a run needs from the system failed: polling, a thread,
    /// signals.
    System {
        action: &'static str,
        source: io::Error,
    },
    /// A bug in tcptape: please report it.
    Internal(String),
    /// A run ended with a verdict other than passed: a mismatch, or a
    /// session that failed. The report says what each session did.
    Verdict(Box<Report>),
}

impl Error {
    pub(crate) fn file(path: &Path, action: &'static str, source: io::Error) -> Error {
        Error::File {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn tape(path: &Path, source: TapeError) -> Error {
        Error::Tape {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn address(
        addr: impl fmt::Display,
        action: &'static str,
        source: io::Error,
    ) -> Error {
        Error::Address {
            addr: addr.to_string(),
            action,
            source,
        }
    }

    /// A socket call on `addr` that failed.
    pub(crate) fn net(addr: impl fmt::Display, err: NetError) -> Error {
        Error::address(addr, err.action, err.source)
    }

    pub(crate) fn refused(path: &Path, reason: impl Into<String>) -> Error {
        Error::Refused {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn setting(name: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Setting {
            name: name.into(),
            reason: reason.into(),
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

impl From<OpenError> for Error {
    fn from(err: OpenError) -> Error {
        match err {
            OpenError::Io {
                path,
                action,
                source,
            } => Error::File {
                path,
                action,
                source,
            },
            OpenError::NotAFile(path) => Error::Refused {
                reason: format!("{}: not a tape: not a regular file", path.display()),
                path,
            },
            OpenError::Text { path, source } => Error::Text { path, source },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
            Error::Refused { reason, .. } => f.write_str(reason),
            Error::Address {
                addr,
                action,
                source,
            } => write!(f, "cannot {action} {addr}: {}", os_reason(source)),
            Error::Timeout {
                after,
                waiting_for,
                limit,
            } => write!(
                f,
                "timed out after {:.1}s waiting for {waiting_for} ({limit})",
                after.as_secs_f64()
            ),
            Error::Setting { name, reason } => write!(f, "{name}: {reason}"),
            Error::Learn { reason } => f.write_str(reason),
            Error::System { action, source } => {
                write!(f, "cannot {action}: {}", os_reason(source))
            }
            Error::Internal(why) => write!(f, "internal error, please report it: {why}"),
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::File { source, .. }
            | Error::Address { source, .. }
            | Error::System { source, .. } => Some(source),
            Error::Tape { source, .. } => Some(source),
            Error::Text { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The OS reason without Rust's " (os error N)" suffix, which means nothing
/// to a user reading a one-line error.
pub(crate) fn os_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_verdict_carries_its_report() {
        let mut report = Report::default();
        report.fail(Verdict::Mismatch, "tape never played");
        let mismatch = Error::Verdict(Box::new(report));
        assert!(mismatch.is_mismatch());
        assert_eq!(
            mismatch.to_string(),
            "tape never played\n0 sessions; verdict: mismatch"
        );
        assert!(mismatch.report().is_some());
        assert!(!Error::Internal("x".into()).is_mismatch());
    }

    #[test]
    fn file_error_names_path_and_reason_and_keeps_its_source() {
        let err = Error::file(
            Path::new("/nope/x.tape"),
            "open tape",
            io::Error::from_raw_os_error(2),
        );
        assert_eq!(
            err.to_string(),
            "cannot open tape /nope/x.tape: No such file or directory"
        );
        let source = err.source().expect("an io error");
        assert!(source.to_string().starts_with("No such file or directory"));
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

    #[test]
    fn a_timeout_says_what_it_waited_for() {
        let err = Error::Timeout {
            after: Duration::from_millis(1500),
            waiting_for: "a client".into(),
            limit: "--timeout; 0 waits forever",
        };
        assert_eq!(
            err.to_string(),
            "timed out after 1.5s waiting for a client (--timeout; 0 waits forever)"
        );
        assert!(err.source().is_none());
    }
}
