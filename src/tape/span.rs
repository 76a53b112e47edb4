//! Spans: extension frames that mark part of one direction's recorded bytes
//! for replay. A span covers the next `len` bytes of its direction's stream
//! (they are in the data frames after it, so a reader that skips the span
//! still sees every recorded byte):
//!
//! - **vary**: bytes that differ from run to run. When the peer sends them
//!   they are not compared, and their live length may be anything from
//!   `min` to `max` (a variable span ends where the recorded bytes after
//!   it appear); when tcptape plays them it sends the recorded bytes.
//! - **capture NAME**: a vary span whose live bytes are kept under NAME.
//! - **echo NAME**: where a value captured earlier (by either side) goes:
//!   played, the live captured bytes are sent instead of the recorded
//!   ones; received, they are what the peer must send.
//!
//! Payload (docs/tape-format.md):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind: 1 vary, 2 capture, 3 echo |
//! | 1..5 | `len`, u32 BE: recorded bytes covered |
//! | 5..9 | `min`, u32 BE: shortest live value |
//! | 9..13 | `max`, u32 BE: longest live value |
//! | 13 | name length N (0 for vary) |
//! | 14..14+N | the name, ASCII letters, digits, `_`, `-`, `.` |

use std::fmt;

use byteorder::{BigEndian, ByteOrder};

/// The longest value a span may cover or take live: a value is held in
/// memory while it arrives, so this bounds a session's memory.
pub const MAX_SPAN: u32 = 64 * 1024;
/// The longest name of a capture.
pub const MAX_NAME: usize = 32;
/// Payload bytes before the name.
const FIXED: usize = 14;
/// The largest payload a span frame may have.
pub const MAX_PAYLOAD: usize = FIXED + MAX_NAME;

mod field {
    use std::ops::Range;
    pub const KIND: usize = 0;
    pub const LEN: Range<usize> = 1..5;
    pub const MIN: Range<usize> = 5..9;
    pub const MAX: Range<usize> = 9..13;
    pub const NAME_LEN: usize = 13;
}

const VARY: u8 = 1;
const CAPTURE: u8 = 2;
const ECHO: u8 = 3;

/// What a span does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Vary,
    Capture(String),
    Echo(String),
}

impl SpanKind {
    /// The capture name this span captures or echoes.
    pub fn name(&self) -> Option<&str> {
        match self {
            SpanKind::Vary => None,
            SpanKind::Capture(name) | SpanKind::Echo(name) => Some(name),
        }
    }
}

/// A span frame's payload, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    pub kind: SpanKind,
    /// Recorded bytes of the direction the span covers.
    pub len: u32,
    /// Bounds of the live length (equal to `len` for a fixed span; an
    /// echo's live length is the captured value's).
    pub min: u32,
    pub max: u32,
}

/// Why a span payload is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanError(pub String);

impl fmt::Display for SpanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Span {
    /// A fixed-length span of `len` bytes.
    pub fn fixed(kind: SpanKind, len: u32) -> Span {
        Span {
            kind,
            len,
            min: len,
            max: len,
        }
    }

    /// True when the live value has exactly the recorded length.
    pub fn is_fixed(&self) -> bool {
        self.min == self.len && self.max == self.len
    }

    /// Checks the span's own rules: lengths within `MAX_SPAN`, the
    /// recorded length within `min..=max`, a valid name where one belongs.
    pub fn check(&self) -> Result<(), SpanError> {
        let err = |message: String| Err(SpanError(message));
        if self.len > MAX_SPAN || self.max > MAX_SPAN {
            return err(format!(
                "a span covers at most {MAX_SPAN} bytes (len {}, max {})",
                self.len, self.max
            ));
        }
        if self.min > self.max {
            return err(format!(
                "a span's shortest value {} is longer than its longest {}",
                self.min, self.max
            ));
        }
        if !matches!(self.kind, SpanKind::Echo(_)) && !(self.min..=self.max).contains(&self.len) {
            return err(format!(
                "the recorded value ({} bytes) is not within the span's {}..{}",
                self.len, self.min, self.max
            ));
        }
        match &self.kind {
            SpanKind::Vary => Ok(()),
            SpanKind::Capture(name) | SpanKind::Echo(name) => check_name(name),
        }
    }

    /// Reads a span frame's payload.
    pub fn parse(payload: &[u8]) -> Result<Span, SpanError> {
        if payload.len() < FIXED {
            return Err(SpanError(format!(
                "span payload of {} bytes, at least {FIXED} expected",
                payload.len()
            )));
        }
        let name_len = payload[field::NAME_LEN] as usize;
        if payload.len() != FIXED + name_len {
            return Err(SpanError(format!(
                "span payload of {} bytes, {} expected for a {name_len}-byte name",
                payload.len(),
                FIXED + name_len
            )));
        }
        let name = std::str::from_utf8(&payload[FIXED..])
            .map_err(|_| SpanError("span name is not UTF-8".into()))?
            .to_string();
        let kind = match (payload[field::KIND], name.is_empty()) {
            (VARY, true) => SpanKind::Vary,
            (VARY, false) => return Err(SpanError("a vary span has no name".into())),
            (CAPTURE, _) => SpanKind::Capture(name),
            (ECHO, _) => SpanKind::Echo(name),
            (other, _) => return Err(SpanError(format!("unknown span kind {other}"))),
        };
        let span = Span {
            kind,
            len: BigEndian::read_u32(&payload[field::LEN]),
            min: BigEndian::read_u32(&payload[field::MIN]),
            max: BigEndian::read_u32(&payload[field::MAX]),
        };
        span.check()?;
        Ok(span)
    }

    /// The frame payload; the span must `check`.
    pub fn emit(&self) -> Vec<u8> {
        let (kind, name) = match &self.kind {
            SpanKind::Vary => (VARY, ""),
            SpanKind::Capture(name) => (CAPTURE, name.as_str()),
            SpanKind::Echo(name) => (ECHO, name.as_str()),
        };
        let mut out = vec![0; FIXED + name.len()];
        out[field::KIND] = kind;
        BigEndian::write_u32(&mut out[field::LEN], self.len);
        BigEndian::write_u32(&mut out[field::MIN], self.min);
        BigEndian::write_u32(&mut out[field::MAX], self.max);
        out[field::NAME_LEN] = name.len() as u8;
        out[FIXED..].copy_from_slice(name.as_bytes());
        out
    }
}

/// As `describe` lists it: `vary, 29 bytes`, `capture token, 12 bytes`,
/// and for a variable span `vary, 29 bytes recorded, 20..40 live`.
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SpanKind::Vary => write!(f, "vary")?,
            SpanKind::Capture(name) => write!(f, "capture {name}")?,
            SpanKind::Echo(name) => write!(f, "echo {name}")?,
        }
        if self.is_fixed() {
            write!(f, ", {} bytes", self.len)
        } else {
            write!(
                f,
                ", {} bytes recorded, {}..{} live",
                self.len, self.min, self.max
            )
        }
    }
}

/// Names are short and plain, so they read the same in text tapes, logs
/// and reports.
pub fn check_name(name: &str) -> Result<(), SpanError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(plain) {
        return Err(SpanError(format!(
            "'{name}' is not a capture name: 1 to {MAX_NAME} letters, digits, '_', '-' or '.'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_each_kind() {
        let spans = [
            Span::fixed(SpanKind::Vary, 29),
            Span {
                kind: SpanKind::Capture("token".into()),
                len: 12,
                min: 1,
                max: 64,
            },
            Span::fixed(SpanKind::Echo("token".into()), 12),
        ];
        for span in spans {
            let bytes = span.emit();
            assert_eq!(Span::parse(&bytes).unwrap(), span);
        }
        assert_eq!(
            Span::fixed(SpanKind::Vary, 29).emit(),
            [1, 0, 0, 0, 29, 0, 0, 0, 29, 0, 0, 0, 29, 0]
        );
    }

    #[test]
    fn display_says_kind_and_lengths() {
        let vary = Span {
            kind: SpanKind::Vary,
            len: 29,
            min: 20,
            max: 40,
        };
        assert_eq!(vary.to_string(), "vary, 29 bytes recorded, 20..40 live");
        let capture = Span::fixed(SpanKind::Capture("token".into()), 12);
        assert_eq!(capture.to_string(), "capture token, 12 bytes");
        let echo = Span::fixed(SpanKind::Echo("token".into()), 12);
        assert_eq!(echo.to_string(), "echo token, 12 bytes");
    }

    #[test]
    fn bad_payloads_say_why() {
        let err = |bytes: &[u8]| Span::parse(bytes).unwrap_err().0;
        assert!(err(&[1, 0]).contains("at least 14"));
        let mut vary = Span::fixed(SpanKind::Vary, 3).emit();
        vary[0] = 9;
        assert_eq!(err(&vary), "unknown span kind 9");
        let mut long = Span::fixed(SpanKind::Vary, 3).emit();
        long.push(b'x');
        assert!(err(&long).contains("15 bytes, 14 expected"));
        let too_big = Span::fixed(SpanKind::Vary, MAX_SPAN + 1).emit();
        assert!(err(&too_big).contains("at most 65536"));
        let outside = Span {
            kind: SpanKind::Vary,
            len: 10,
            min: 1,
            max: 5,
        };
        assert!(err(&outside.emit()).contains("not within"));
        let bad_name = Span::fixed(SpanKind::Capture("a b".into()), 3).emit();
        assert!(err(&bad_name).contains("not a capture name"));
    }
}
