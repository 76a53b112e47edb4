//! The one error type the commands return, and how each maps to an exit code.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::tape::TapeError;
use crate::tape::text::TextError;

/// Exit code of a successful run.
pub const EXIT_OK: i32 = 0;
/// Exit code of any failure that is not a usage error or a verdict.
pub const EXIT_ERROR: i32 = 1;
/// Exit code of a command line that could not be understood.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a replay whose peer did not do what the tape says.
pub const EXIT_MISMATCH: i32 = 3;

#[derive(Debug)]
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
    /// A session failed for a reason already described in `message`.
    Session(String),
    /// A replay verdict: the peer did not match the tape. The report has
    /// already been printed; `message` is its summary line.
    Mismatch(String),
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

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. } => EXIT_USAGE,
            Error::Mismatch(_) => EXIT_MISMATCH,
            _ => EXIT_ERROR,
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
            Error::Tape { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Text { path, source } => write!(f, "{}:{source}", path.display()),
            Error::Address {
                addr,
                action,
                source,
            } => write!(f, "cannot {action} {addr}: {}", os_reason(source)),
            Error::Session(message) | Error::Mismatch(message) => write!(f, "{message}"),
        }
    }
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
        assert_eq!(Error::Mismatch("m".into()).exit_code(), EXIT_MISMATCH);
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
