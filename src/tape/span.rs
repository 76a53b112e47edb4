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
//! - **length ENCODING REGION**: a length field counting the `region`
//!   recorded bytes after it. Its live value is the recorded one plus
//!   however much longer those bytes are live (an echo of a longer value,
//!   a variable span): played, that value is sent; received, it is checked
//!   once the bytes it counts have arrived.
//! - **secret NAME**: a value kept off the tape (a password, a token): the
//!   recorded bytes are a placeholder of the value's length, never the
//!   value. Received, any value is accepted there (exactly the value of
//!   the environment variable NAME when the replay has it); played, that
//!   variable's value goes out when set, else the placeholder.
//!
//! Payload (docs/tape-format.md):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind: 1 vary, 2 capture, 3 echo, 4 length, 5 secret |
//! | 1..5 | `len`, u32 BE: recorded bytes covered |
//! | 5..9 | `min`, u32 BE: shortest live value |
//! | 9..13 | `max`, u32 BE: longest live value |
//! | 13 | name length N (0 for vary) |
//! | 14..14+N | the name, ASCII letters, digits, `_`, `-`, `.`; a length's encoding; a secret's variable |
//! | 14+N..18+N | a length's region, u32 BE (only for kind 4) |
//!
//! Where spans may stand (a capture before its echoes, a variable span
//! followed by recorded bytes...) is a property of the whole tape: the
//! `placement` module checks it.

use std::fmt;

use byteorder::{BigEndian, ByteOrder};

/// The longest value a span may cover or take live: a value is held in
/// memory while it arrives, so this bounds a session's memory.
pub const MAX_SPAN: u32 = 64 * 1024;
/// The longest name of a capture.
pub const MAX_NAME: usize = 32;
/// Payload bytes before the name.
const FIXED: usize = 14;
/// The largest payload a span frame may have (a length's region follows
/// its encoding's name).
pub const MAX_PAYLOAD: usize = FIXED + MAX_NAME + 4;

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
const LENGTH: u8 = 4;
const SECRET: u8 = 5;

/// The most lengths whose regions may hold the same byte (a message in a
/// message in a message...): each is checked at its region's end, so this
/// bounds what a session keeps.
pub const MAX_NESTED_LENGTHS: usize = 8;
/// The most digits of a decimal length (u64::MAX has 20).
const MAX_DIGITS: u32 = 20;

/// What a span does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Vary,
    Capture(String),
    Echo(String),
    Length(Length),
    /// A secret: the recorded bytes are a placeholder; the name is the
    /// environment variable that holds the live value in a replay.
    Secret(String),
}

impl SpanKind {
    /// The capture name this span captures or echoes.
    pub fn name(&self) -> Option<&str> {
        match self {
            SpanKind::Vary | SpanKind::Length(_) | SpanKind::Secret(_) => None,
            SpanKind::Capture(name) | SpanKind::Echo(name) => Some(name),
        }
    }
}

/// A length field: how it is written, and how many recorded bytes after
/// it it counts. Its recorded value need not equal `region` (a length may
/// count its own bytes, or leave a trailer out): the live value keeps the
/// recorded difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Length {
    pub encoding: Encoding,
    pub region: u32,
}

/// How a length field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// An unsigned integer of `width` bytes (1 to 4), big- or little-endian.
    Int { width: u8, big_endian: bool },
    /// ASCII decimal digits, as HTTP's `Content-Length`: its width changes
    /// with the value, so it is received as a variable span.
    Decimal,
}

impl Encoding {
    /// Every encoding, by its name in tapes.
    pub const ALL: [(&'static str, Encoding); 8] = [
        ("u8", Encoding::int(1, true)),
        ("u16be", Encoding::int(2, true)),
        ("u16le", Encoding::int(2, false)),
        ("u24be", Encoding::int(3, true)),
        ("u24le", Encoding::int(3, false)),
        ("u32be", Encoding::int(4, true)),
        ("u32le", Encoding::int(4, false)),
        ("dec", Encoding::Decimal),
    ];

    const fn int(width: u8, big_endian: bool) -> Encoding {
        Encoding::Int { width, big_endian }
    }

    /// The encoding named `name` (`u16be`, `u24le`, `dec`...).
    pub fn named(name: &str) -> Option<Encoding> {
        Encoding::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, encoding)| encoding)
    }

    pub fn name(self) -> &'static str {
        Encoding::ALL
            .iter()
            .find(|(_, e)| *e == self)
            .map(|(n, _)| *n)
            .expect("every encoding has a name")
    }

    /// The value `bytes` hold, if they are a length of this encoding.
    pub fn decode(self, bytes: &[u8]) -> Option<u64> {
        match self {
            Encoding::Int { width, big_endian } => {
                if bytes.len() != usize::from(width) {
                    return None;
                }
                let fold = |acc: u64, &b: &u8| acc << 8 | u64::from(b);
                Some(if big_endian {
                    bytes.iter().fold(0, fold)
                } else {
                    bytes.iter().rev().fold(0, fold)
                })
            }
            Encoding::Decimal => {
                let digits = bytes.len() as u32;
                if digits == 0 || digits > MAX_DIGITS || !bytes.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(bytes).ok()?.parse().ok()
            }
        }
    }

    /// `value` written in this encoding, if it fits.
    pub fn encode(self, value: u64) -> Option<Vec<u8>> {
        match self {
            Encoding::Int { width, big_endian } => {
                let width = usize::from(width);
                if width < 8 && value >> (8 * width) != 0 {
                    return None;
                }
                let bytes = value.to_be_bytes();
                let mut out = bytes[8 - width..].to_vec();
                if !big_endian {
                    out.reverse();
                }
                Some(out)
            }
            Encoding::Decimal => Some(value.to_string().into_bytes()),
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
            // How long a secret is live is not the tape's to say: any
            // length where something ends it (docs/tape-format.md).
            SpanKind::Secret(_) if !self.is_fixed() => err(format!(
                "a secret's bounds are its recorded length ({}, not {}..{})",
                self.len, self.min, self.max
            )),
            SpanKind::Secret(name) => check_name(name),
            SpanKind::Length(length) => match length.encoding {
                Encoding::Int { width, .. } if !self.is_fixed() || self.len != u32::from(width) => {
                    err(format!(
                        "a {} length is {width} bytes, live as recorded (the span covers {}, {}..{} live)",
                        length.encoding.name(),
                        self.len,
                        self.min,
                        self.max
                    ))
                }
                Encoding::Decimal if self.min == 0 || self.max > MAX_DIGITS => err(format!(
                    "a decimal length has 1 to {MAX_DIGITS} digits ({}..{} live)",
                    self.min, self.max
                )),
                _ => Ok(()),
            },
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
        // A length's region follows its encoding's name.
        let extra = if payload[field::KIND] == LENGTH { 4 } else { 0 };
        if payload.len() != FIXED + name_len + extra {
            return Err(SpanError(format!(
                "span payload of {} bytes, {} expected for a {name_len}-byte name",
                payload.len(),
                FIXED + name_len + extra
            )));
        }
        let name = std::str::from_utf8(&payload[FIXED..FIXED + name_len])
            .map_err(|_| SpanError("span name is not UTF-8".into()))?
            .to_string();
        let kind = match (payload[field::KIND], name.is_empty()) {
            (VARY, true) => SpanKind::Vary,
            (VARY, false) => return Err(SpanError("a vary span has no name".into())),
            (CAPTURE, _) => SpanKind::Capture(name),
            (ECHO, _) => SpanKind::Echo(name),
            (SECRET, _) => SpanKind::Secret(name),
            (LENGTH, _) => {
                let encoding = Encoding::named(&name)
                    .ok_or_else(|| SpanError(format!("'{name}' is not a length encoding")))?;
                let region = BigEndian::read_u32(&payload[FIXED + name_len..]);
                SpanKind::Length(Length { encoding, region })
            }
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
            SpanKind::Length(length) => (LENGTH, length.encoding.name()),
            SpanKind::Secret(name) => (SECRET, name.as_str()),
        };
        let mut out = vec![0; FIXED + name.len()];
        out[field::KIND] = kind;
        BigEndian::write_u32(&mut out[field::LEN], self.len);
        BigEndian::write_u32(&mut out[field::MIN], self.min);
        BigEndian::write_u32(&mut out[field::MAX], self.max);
        out[field::NAME_LEN] = name.len() as u8;
        out[FIXED..].copy_from_slice(name.as_bytes());
        if let SpanKind::Length(length) = &self.kind {
            out.extend_from_slice(&length.region.to_be_bytes());
        }
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
            SpanKind::Length(length) => write!(
                f,
                "length {} of the next {} bytes",
                length.encoding.name(),
                length.region
            )?,
            SpanKind::Secret(name) => write!(f, "secret {name}")?,
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
            Span::fixed(
                SpanKind::Length(Length {
                    encoding: Encoding::named("u24le").unwrap(),
                    region: 70_000,
                }),
                3,
            ),
            Span {
                kind: SpanKind::Length(Length {
                    encoding: Encoding::Decimal,
                    region: 9,
                }),
                len: 2,
                min: 1,
                max: 20,
            },
            Span::fixed(SpanKind::Secret("REDIS_PASSWORD".into()), 8),
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
    fn lengths_decode_and_encode_in_every_encoding() {
        let cases: [(&str, u64, &[u8]); 8] = [
            ("u8", 0xfe, b"\xfe"),
            ("u16be", 0x0102, b"\x01\x02"),
            ("u16le", 0x0102, b"\x02\x01"),
            ("u24be", 0x010203, b"\x01\x02\x03"),
            ("u24le", 0x010203, b"\x03\x02\x01"),
            ("u32be", 0x01020304, b"\x01\x02\x03\x04"),
            ("u32le", 0x01020304, b"\x04\x03\x02\x01"),
            ("dec", 1234, b"1234"),
        ];
        for (name, value, bytes) in cases {
            let encoding = Encoding::named(name).unwrap();
            assert_eq!(encoding.name(), name);
            assert_eq!(encoding.decode(bytes), Some(value), "{name}");
            assert_eq!(encoding.encode(value).as_deref(), Some(bytes), "{name}");
        }
        let u8 = Encoding::named("u8").unwrap();
        assert_eq!(u8.encode(256), None, "too big for the field");
        assert_eq!(u8.decode(b"\x01\x02"), None, "wrong width");
        assert_eq!(Encoding::Decimal.decode(b"12a"), None);
        assert_eq!(Encoding::Decimal.decode(b""), None);
        assert_eq!(Encoding::Decimal.decode(b"99999999999999999999"), None);
        assert_eq!(Encoding::named("u64be"), None);
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
        let secret = Span::fixed(SpanKind::Secret("PW".into()), 8);
        assert_eq!(secret.to_string(), "secret PW, 8 bytes");
    }

    #[test]
    fn a_secret_has_a_name_and_its_recorded_length() {
        let err = |span: Span| Span::parse(&span.emit()).unwrap_err().0;
        let unnamed = Span::fixed(SpanKind::Secret(String::new()), 3);
        assert!(err(unnamed).contains("not a capture name"));
        let bounded = Span {
            kind: SpanKind::Secret("PW".into()),
            len: 8,
            min: 1,
            max: 64,
        };
        assert_eq!(
            err(bounded),
            "a secret's bounds are its recorded length (8, not 1..64)"
        );
        let secret = Span::fixed(SpanKind::Secret("PW".into()), 2).emit();
        assert_eq!(
            secret,
            [5, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 2, b'P', b'W']
        );
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
        let length = |encoding, len, min, max| Span {
            kind: SpanKind::Length(Length {
                encoding,
                region: 5,
            }),
            len,
            min,
            max,
        };
        let u16be = Encoding::named("u16be").unwrap();
        let wide = length(u16be, 3, 3, 3).emit();
        assert!(err(&wide).contains("a u16be length is 2 bytes"));
        let variable = length(u16be, 2, 1, 4).emit();
        assert!(err(&variable).contains("live as recorded"));
        let digits = length(Encoding::Decimal, 2, 1, 21).emit();
        assert!(err(&digits).contains("1 to 20 digits"));
        let mut unknown = length(u16be, 2, 2, 2).emit();
        unknown[14..19].copy_from_slice(b"u64be");
        assert_eq!(err(&unknown), "'u64be' is not a length encoding");
        let mut short = length(u16be, 2, 2, 2).emit();
        short.pop();
        assert!(err(&short).contains("23 expected"), "{}", err(&short));
    }
}
