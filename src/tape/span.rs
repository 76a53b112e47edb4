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
//!
//! Payload (docs/tape-format.md):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind: 1 vary, 2 capture, 3 echo, 4 length |
//! | 1..5 | `len`, u32 BE: recorded bytes covered |
//! | 5..9 | `min`, u32 BE: shortest live value |
//! | 9..13 | `max`, u32 BE: longest live value |
//! | 13 | name length N (0 for vary) |
//! | 14..14+N | the name, ASCII letters, digits, `_`, `-`, `.`; a length's encoding |
//! | 14+N..18+N | a length's region, u32 BE (only for kind 4) |
//!
//! Where spans may stand (a capture before its echoes, a variable span
//! followed by recorded bytes...) is a property of the whole tape:
//! `Checker` checks it frame by frame, `check_tape` over a binary tape.

use std::collections::HashMap;
use std::fmt;

use byteorder::{BigEndian, ByteOrder};

use super::frame::{Direction, Kind};
use super::reader::{Reader, Source, TapeError, TapeErrorKind};

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
}

impl SpanKind {
    /// The capture name this span captures or echoes.
    pub fn name(&self) -> Option<&str> {
        match self {
            SpanKind::Vary | SpanKind::Length(_) => None,
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

/// Why a span (or a wildcard near one) stands where it may not. `P` says
/// where things are: a frame of a binary tape, a line and column of a text
/// tape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem<P> {
    /// A second capture of a name.
    CapturedTwice { name: String, first: P },
    /// An echo with no capture of its name before it.
    EchoUncaptured { name: String },
    /// An echo before all the bytes its capture covers were recorded.
    EchoBeforeCaptured { name: String, capture: P },
    /// A span or wildcard right after a variable span, with no recorded
    /// byte between to show where the variable value ends.
    AfterVariable { variable: P, wildcard: bool },
    /// A span inside the bytes another span covers.
    Nested { outer: P },
    /// A wildcard inside the bytes a span covers.
    WildcardInside { span: P },
    /// A span after its direction's EOF.
    AfterEof,
    /// The direction's EOF, or the tape's end, came after `recorded` of the
    /// span's `len` bytes.
    Unfinished { len: u32, recorded: u32, eof: bool },
    /// The other direction's bytes came after `recorded` of the span's
    /// `len` bytes: its value would be split by a turn.
    AcrossTurn { len: u32, recorded: u32 },
    /// A span that begins inside the bytes a length counts and ends after.
    AcrossLength { length: P },
    /// A decimal length inside the bytes another length counts: played,
    /// its width could change the other's count.
    DecimalInLength { length: P },
    /// More than `MAX_NESTED_LENGTHS` lengths count this span's bytes.
    LengthsTooDeep,
    /// An echo inside the bytes a length counts, of a value captured after
    /// that length: played, the length could not be computed in time.
    EchoAfterLength { name: String, length: P },
    /// The direction's EOF, or the tape's end, came `missing` bytes before
    /// the end of what the length counts.
    LengthUnfinished { missing: u64, eof: bool },
    /// A length's recorded bytes are not a length of its encoding.
    NotALength { encoding: Encoding },
}

impl<P> Problem<P> {
    /// The problem in words, with other places named by `place`.
    pub fn message(&self, place: impl Fn(&P) -> String) -> String {
        match self {
            Problem::CapturedTwice { name, first } => format!(
                "'{name}' is captured a second time (first at {}): each capture needs a name of its own",
                place(first)
            ),
            Problem::EchoUncaptured { name } => {
                format!("echo of '{name}', which no span before it captures")
            }
            Problem::EchoBeforeCaptured { name, capture } => format!(
                "echo of '{name}' before all the bytes of its capture (at {}) are recorded",
                place(capture)
            ),
            Problem::AfterVariable { variable, wildcard } => format!(
                "{} right after the variable span at {}: replay finds where a variable value ends by the recorded bytes after it, so bytes (or the EOF) must come between",
                if *wildcard { "a wildcard" } else { "a span" },
                place(variable)
            ),
            Problem::Nested { outer } => format!(
                "a span inside the bytes the span at {} covers: spans do not nest or overlap",
                place(outer)
            ),
            Problem::WildcardInside { span } => format!(
                "a wildcard inside the bytes the span at {} covers: a span covers recorded bytes",
                place(span)
            ),
            Problem::AfterEof => "a span after its direction's EOF".to_string(),
            Problem::Unfinished { len, recorded, eof } => format!(
                "the span covers {len} bytes, but {} after {recorded} of them",
                ends(*eof)
            ),
            Problem::AcrossTurn { len, recorded } => format!(
                "the span covers {len} bytes, but the other side's bytes come after {recorded} of them: a span never crosses a turn (replay would wait for the rest of it before the other side's turn)"
            ),
            Problem::AcrossLength { length } => format!(
                "a span across the end of the bytes the length at {} counts: a length counts whole spans",
                place(length)
            ),
            Problem::DecimalInLength { length } => format!(
                "a decimal length inside the bytes the length at {} counts: its width can change, and so the other's count",
                place(length)
            ),
            Problem::LengthsTooDeep => {
                format!("more than {MAX_NESTED_LENGTHS} lengths count the bytes of this span")
            }
            Problem::EchoAfterLength { name, length } => format!(
                "echo of '{name}' inside the bytes the length at {} counts, but '{name}' is captured after that length: the length could not be computed when it is sent",
                place(length)
            ),
            Problem::LengthUnfinished { missing, eof } => format!(
                "the length counts {missing} bytes more than there are: {}",
                ends(*eof)
            ),
            Problem::NotALength { encoding } => {
                format!("the recorded value is not a {} length", encoding.name())
            }
        }
    }
}

fn ends(eof: bool) -> &'static str {
    if eof {
        "its direction ends (EOF)"
    } else {
        "the tape ends"
    }
}

/// A problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault<P> {
    pub at: P,
    pub problem: Problem<P>,
}

/// The span whose covered bytes are being recorded.
#[derive(Debug)]
struct Open<P> {
    at: P,
    len: u32,
    /// Covered bytes still to come.
    left: u32,
    variable: bool,
    /// The name it captures.
    capture: Option<String>,
    /// A length's encoding, and its recorded bytes so far.
    length: Option<(Encoding, Vec<u8>)>,
}

/// A length whose counted bytes are being recorded.
#[derive(Debug)]
struct Region<P> {
    at: P,
    /// The direction's recorded offsets where the counted bytes start and
    /// end.
    start: u64,
    end: u64,
    /// Captures complete when the length came.
    completions: u64,
}

/// What the checker knows of one direction.
#[derive(Debug)]
struct Stream<P> {
    open: Option<Open<P>>,
    /// A variable span whose bytes are all recorded, until the next bytes
    /// of the direction show where it ends.
    variable: Option<P>,
    eof: bool,
    /// Recorded bytes so far (data and wildcards).
    offset: u64,
    /// Lengths whose counted bytes are still to come, innermost last.
    regions: Vec<Region<P>>,
    /// The regions completed by the last bytes counted: where they
    /// started and ended.
    ended: Vec<(u64, u64)>,
}

impl<P> Default for Stream<P> {
    fn default() -> Self {
        Stream {
            open: None,
            variable: None,
            eof: false,
            offset: 0,
            regions: Vec::new(),
            ended: Vec::new(),
        }
    }
}

impl<P: Copy> Stream<P> {
    /// Counts `len` recorded bytes, closing the regions they complete.
    fn advance(&mut self, len: u64) {
        self.offset += len;
        let offset = self.offset;
        self.ended.clear();
        let ended = &mut self.ended;
        self.regions.retain(|region| {
            let open = region.end > offset;
            if !open {
                ended.push((region.start, region.end));
            }
            open
        });
    }

    /// A fault when the direction ends inside a length's region.
    fn unfinished_region(&self, eof: bool) -> Result<(), Fault<P>> {
        match self.regions.first() {
            Some(region) => Err(Fault {
                at: region.at,
                problem: Problem::LengthUnfinished {
                    missing: region.end - self.offset,
                    eof,
                },
            }),
            None => Ok(()),
        }
    }
}

/// A capture seen, and when its bytes were all recorded (the count of
/// captures complete by then, from 1).
#[derive(Debug)]
struct Captured<P> {
    at: P,
    completed: Option<u64>,
}

/// Checks where spans stand, fed a tape's frames in order (docs/tape-format.md
/// lists the rules). The text parser feeds it as it builds, the binary
/// tape goes through `check_tape`; both refuse what replay would refuse.
#[derive(Debug)]
pub struct Checker<P> {
    streams: [Stream<P>; 2],
    captures: HashMap<String, Captured<P>>,
    /// Captures complete so far.
    completions: u64,
}

impl<P: Copy> Default for Checker<P> {
    fn default() -> Self {
        Checker::new()
    }
}

impl<P: Copy> Checker<P> {
    pub fn new() -> Checker<P> {
        Checker {
            streams: [Stream::default(), Stream::default()],
            captures: HashMap::new(),
            completions: 0,
        }
    }

    /// A span frame of `dir`, at `at`.
    pub fn span(&mut self, dir: Direction, span: &Span, at: P) -> Result<(), Fault<P>> {
        let fault = |problem| Err(Fault { at, problem });
        let stream = &mut self.streams[dir.index()];
        if stream.eof {
            return fault(Problem::AfterEof);
        }
        if let Some(open) = &stream.open {
            return fault(Problem::Nested { outer: open.at });
        }
        if let Some(variable) = stream.variable {
            return fault(Problem::AfterVariable {
                variable,
                wildcard: false,
            });
        }
        let end = stream.offset + u64::from(span.len);
        let counted = match &span.kind {
            SpanKind::Length(length) => u64::from(length.region),
            _ => 0,
        };
        if let Some(region) = stream.regions.iter().find(|r| end + counted > r.end) {
            return fault(Problem::AcrossLength { length: region.at });
        }
        if let SpanKind::Length(length) = &span.kind {
            if let (Some(outer), Encoding::Decimal) = (stream.regions.last(), length.encoding) {
                return fault(Problem::DecimalInLength { length: outer.at });
            }
            if stream.regions.len() == MAX_NESTED_LENGTHS {
                return fault(Problem::LengthsTooDeep);
            }
            stream.regions.push(Region {
                at,
                start: end,
                end: end + counted,
                completions: self.completions,
            });
        }
        let mut capture = None;
        match &span.kind {
            SpanKind::Vary => {}
            SpanKind::Capture(name) => {
                if let Some(first) = self.captures.get(name) {
                    return fault(Problem::CapturedTwice {
                        name: name.clone(),
                        first: first.at,
                    });
                }
                self.captures.insert(
                    name.clone(),
                    Captured {
                        at,
                        completed: None,
                    },
                );
                capture = Some(name.clone());
            }
            SpanKind::Echo(name) => match self.captures.get(name) {
                None => return fault(Problem::EchoUncaptured { name: name.clone() }),
                Some(Captured {
                    at: capture,
                    completed: None,
                }) => {
                    return fault(Problem::EchoBeforeCaptured {
                        name: name.clone(),
                        capture: *capture,
                    });
                }
                Some(Captured {
                    completed: Some(completed),
                    ..
                }) => {
                    // Any length counting the echo is sent before it, and
                    // must know the value's length by then.
                    let regions = self.streams[dir.index()].regions.iter();
                    if let Some(region) = regions.into_iter().find(|r| *completed > r.completions) {
                        return fault(Problem::EchoAfterLength {
                            name: name.clone(),
                            length: region.at,
                        });
                    }
                }
            },
            SpanKind::Length(_) => {}
        }
        let variable = !span.is_fixed() && !matches!(span.kind, SpanKind::Echo(_));
        let length = match &span.kind {
            SpanKind::Length(length) => Some((length.encoding, Vec::new())),
            _ => None,
        };
        self.streams[dir.index()].open = Some(Open {
            at,
            len: span.len,
            left: span.len,
            variable,
            capture,
            length,
        });
        self.covered(dir, 0, &[]).map(|_| ())
    }

    /// How many of the next data frame's first bytes `data` needs to see:
    /// those of a length field, whose recorded value is checked.
    pub fn wanted(&self, dir: Direction) -> usize {
        match &self.streams[dir.index()].open {
            Some(open) if open.length.is_some() => open.left as usize,
            _ => 0,
        }
    }

    /// `len` recorded bytes of `dir`, of which `head` are the first (at
    /// least as many as `wanted` asked, or all of them).
    pub fn data(&mut self, dir: Direction, len: u64, head: &[u8]) -> Result<(), Fault<P>> {
        if len == 0 {
            return Ok(());
        }
        self.other_side_speaks(dir)?;
        self.streams[dir.index()].advance(len);
        let rest = self.covered(dir, len, head)?;
        if rest > 0 {
            // Recorded bytes beyond any span: a variable span before them
            // ends there.
            self.streams[dir.index()].variable = None;
        }
        Ok(())
    }

    /// Counts `len` bytes (the first of them `head`) against the open span
    /// of `dir`, closing it when they complete it; returns the bytes
    /// beyond it.
    fn covered(&mut self, dir: Direction, len: u64, head: &[u8]) -> Result<u64, Fault<P>> {
        let stream = &mut self.streams[dir.index()];
        let Some(open) = &mut stream.open else {
            return Ok(len);
        };
        let taken = len.min(u64::from(open.left));
        if let Some((_, recorded)) = &mut open.length {
            recorded.extend_from_slice(&head[..head.len().min(taken as usize)]);
        }
        open.left -= taken as u32;
        if open.left > 0 {
            return Ok(0);
        }
        let open = stream.open.take().expect("an open span");
        // A variable value that ends where a length's counted bytes end
        // needs no bytes after it to show where: the length says.
        let span_end = stream.offset - (len - taken);
        // (A length's own region, which starts where the span ends, does
        // not: replay knows a length's value only once it is complete.)
        let length_ends_it = stream
            .ended
            .iter()
            .any(|&(start, end)| end == span_end && start < span_end);
        if open.variable && !length_ends_it {
            stream.variable = Some(open.at);
        }
        if let Some(captured) = open.capture.and_then(|name| self.captures.get_mut(&name)) {
            self.completions += 1;
            captured.completed = Some(self.completions);
        }
        if let Some((encoding, recorded)) = open.length
            && encoding.decode(&recorded).is_none()
        {
            let problem = Problem::NotALength { encoding };
            return Err(Fault {
                at: open.at,
                problem,
            });
        }
        Ok(len - taken)
    }

    /// A wildcard of `count` bytes of `dir`, at `at`.
    pub fn any(&mut self, dir: Direction, count: u64, at: P) -> Result<(), Fault<P>> {
        if count == 0 {
            return Ok(());
        }
        let stream = &mut self.streams[dir.index()];
        if let Some(open) = &stream.open {
            let problem = Problem::WildcardInside { span: open.at };
            return Err(Fault { at, problem });
        }
        if let Some(variable) = stream.variable {
            let problem = Problem::AfterVariable {
                variable,
                wildcard: true,
            };
            return Err(Fault { at, problem });
        }
        self.other_side_speaks(dir)?;
        self.streams[dir.index()].advance(count);
        Ok(())
    }

    /// Bytes of `dir` are recorded: a span of the other direction still
    /// open would have its bytes split by them.
    fn other_side_speaks(&self, dir: Direction) -> Result<(), Fault<P>> {
        match &self.streams[dir.reverse().index()].open {
            Some(open) => Err(Fault {
                at: open.at,
                problem: Problem::AcrossTurn {
                    len: open.len,
                    recorded: open.len - open.left,
                },
            }),
            None => Ok(()),
        }
    }

    /// The EOF of `dir`.
    pub fn eof(&mut self, dir: Direction) -> Result<(), Fault<P>> {
        let stream = &mut self.streams[dir.index()];
        if let Some(open) = &stream.open {
            return Err(unfinished(open, true));
        }
        stream.unfinished_region(true)?;
        stream.eof = true;
        stream.variable = None;
        Ok(())
    }

    /// The end of the tape.
    pub fn finish(self) -> Result<(), Fault<P>> {
        for stream in &self.streams {
            if let Some(open) = &stream.open {
                return Err(unfinished(open, false));
            }
            stream.unfinished_region(false)?;
        }
        Ok(())
    }
}

fn unfinished<P: Copy>(open: &Open<P>, eof: bool) -> Fault<P> {
    Fault {
        at: open.at,
        problem: Problem::Unfinished {
            len: open.len,
            recorded: open.len - open.left,
            eof,
        },
    }
}

/// A frame of a binary tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePlace {
    pub index: u64,
    pub offset: u64,
}

/// Reads a whole binary tape, every frame, span and wildcard, and checks
/// where its spans stand: the first problem is a `TapeErrorKind::SpanRule`
/// error naming its frame and offset (other frames are named by index, as
/// `describe` lists them). The reader's own errors come as they are.
pub fn check_tape<S: Source>(reader: &mut Reader<S>) -> Result<(), TapeError> {
    let mut checker = Checker::new();
    let mut result = Ok(());
    while let Some(frame) = reader.next_frame()? {
        let at = FramePlace {
            index: frame.index,
            offset: frame.offset,
        };
        result = match frame.kind {
            Kind::Span(dir) => {
                let span = reader.read_span()?;
                checker.span(dir, &span, at)
            }
            Kind::Data(dir) => {
                let head = reader.peek_payload(checker.wanted(dir))?;
                checker.data(dir, u64::from(frame.len), head)
            }
            Kind::Any(dir) => {
                let count = reader.read_wildcard()?;
                checker.any(dir, u64::from(count), at)
            }
            Kind::Eof(dir) => checker.eof(dir),
            _ => Ok(()),
        };
        if result.is_err() {
            break;
        }
    }
    result.and_then(|()| checker.finish()).map_err(|fault| {
        let reason = fault.problem.message(|p| format!("frame {}", p.index));
        TapeError {
            offset: fault.at.offset,
            frame: fault.at.index,
            kind: TapeErrorKind::SpanRule(reason),
        }
    })
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

#[cfg(test)]
mod checker_tests {
    use super::*;
    use crate::tape::Writer;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn vary(len: u32) -> Span {
        Span::fixed(SpanKind::Vary, len)
    }

    fn variable(len: u32) -> Span {
        Span {
            kind: SpanKind::Vary,
            len,
            min: 0,
            max: 100,
        }
    }

    fn capture(name: &str, len: u32) -> Span {
        Span::fixed(SpanKind::Capture(name.into()), len)
    }

    fn echo(name: &str, len: u32) -> Span {
        Span::fixed(SpanKind::Echo(name.into()), len)
    }

    fn length(name: &str, region: u32) -> Span {
        let encoding = Encoding::named(name).unwrap();
        let (len, min, max) = match encoding {
            Encoding::Int { width, .. } => (u32::from(width), u32::from(width), u32::from(width)),
            Encoding::Decimal => (1, 1, 5),
        };
        Span {
            kind: SpanKind::Length(Length { encoding, region }),
            len,
            min,
            max,
        }
    }

    /// The tape `build` writes, checked: the error's text.
    fn check(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Result<(), String> {
        let mut bytes = Vec::new();
        build(&mut Writer::new(&mut bytes).unwrap());
        check_tape(&mut Reader::new(bytes.as_slice())).map_err(|err| err.to_string())
    }

    #[test]
    fn well_placed_spans_pass() {
        check(|w| {
            w.data(C2S, b"LOGIN ").unwrap();
            w.span(C2S, &variable(4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.data(C2S, b"cd\r\n").unwrap();
            w.span(S2C, &capture("token", 3)).unwrap();
            w.data(S2C, b"xyz").unwrap();
            // Fixed spans may follow each other, and an echo may come
            // any number of times.
            w.span(C2S, &echo("token", 3)).unwrap();
            w.data(C2S, b"xyz").unwrap();
            w.span(C2S, &vary(0)).unwrap();
            w.span(C2S, &echo("token", 3)).unwrap();
            w.data(C2S, b"xyz").unwrap();
            // A variable span may end at the EOF, or the tape's end.
            w.span(S2C, &variable(2)).unwrap();
            w.data(S2C, b"zz").unwrap();
            w.eof(S2C).unwrap();
            w.span(C2S, &variable(1)).unwrap();
            w.data(C2S, b"q").unwrap();
        })
        .unwrap();
    }

    #[test]
    fn each_rule_is_an_error_naming_the_frame() {
        let err = check(|w| {
            w.span(S2C, &capture("token", 1)).unwrap();
            w.data(S2C, b"x").unwrap();
            w.span(S2C, &capture("token", 1)).unwrap();
        })
        .unwrap_err();
        assert_eq!(
            err,
            "misplaced span at offset 40 in frame 3: 'token' is captured a second time (first at frame 1): each capture needs a name of its own"
        );
        let err = check(|w| w.span(C2S, &echo("id", 4)).unwrap()).unwrap_err();
        assert!(
            err.ends_with("in frame 1: echo of 'id', which no span before it captures"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &capture("id", 4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(S2C, &echo("id", 4)).unwrap();
        })
        .unwrap_err();
        assert!(
            err.ends_with("frame 3: echo of 'id' before all the bytes of its capture (at frame 1) are recorded"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &variable(2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(S2C, &vary(1)).unwrap();
            w.data(S2C, b"x").unwrap();
            w.span(C2S, &vary(1)).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("frame 5: a span right after the variable span at frame 1"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &variable(2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.data(C2S, b"").unwrap();
            w.any(C2S, 3).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("frame 4: a wildcard right after the variable span at frame 1"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &vary(4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(C2S, &vary(1)).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("frame 3: a span inside the bytes the span at frame 1 covers"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &vary(4)).unwrap();
            w.any(C2S, 4).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("frame 2: a wildcard inside the bytes the span at frame 1 covers"),
            "{err}"
        );
        let err = check(|w| {
            w.eof(S2C).unwrap();
            w.span(S2C, &vary(0)).unwrap();
        })
        .unwrap_err();
        assert!(
            err.ends_with("frame 2: a span after its direction's EOF"),
            "{err}"
        );
        let err = check(|w| {
            w.span(S2C, &vary(4)).unwrap();
            w.data(S2C, b"abc").unwrap();
            w.eof(S2C).unwrap();
        })
        .unwrap_err();
        assert!(
            err.ends_with(
                "frame 1: the span covers 4 bytes, but its direction ends (EOF) after 3 of them"
            ),
            "{err}"
        );
        let err = check(|w| {
            w.data(C2S, b"hello").unwrap();
            w.span(S2C, &vary(4)).unwrap();
        })
        .unwrap_err();
        assert_eq!(
            err,
            "misplaced span at offset 21 in frame 2: the span covers 4 bytes, but the tape ends after 0 of them"
        );
    }

    #[test]
    fn a_span_never_crosses_a_turn() {
        // memcached's binary protocol: a SET reply's CAS, then the GET
        // reply after the client's GET. A span over the CAS's last bytes
        // and the GET reply's first is split by the client's turn.
        let err = check(|w| {
            w.data(S2C, b"\x81\x01\x00\x00").unwrap();
            w.span(S2C, &vary(7)).unwrap();
            w.data(S2C, b"\x11\x22\x33\x44").unwrap();
            w.data(C2S, b"\x80\x00\x00\x03key").unwrap();
            w.data(S2C, b"\x81\x00\x00").unwrap();
        })
        .unwrap_err();
        assert_eq!(
            err,
            "misplaced span at offset 20 in frame 2: the span covers 7 bytes, but the other side's bytes come after 4 of them: a span never crosses a turn (replay would wait for the rest of it before the other side's turn)"
        );
        // So does a wildcard of the other side.
        let err = check(|w| {
            w.span(C2S, &vary(4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.any(S2C, 2).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains(
                "in frame 1: the span covers 4 bytes, but the other side's bytes come after 2"
            ),
            "{err}"
        );
        // Frames in between that hold no bytes of the other side (a delay,
        // an empty data frame, a span of no bytes) do not end a turn.
        check(|w| {
            w.span(C2S, &vary(4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.delay(3).unwrap();
            w.data(S2C, b"").unwrap();
            w.span(S2C, &vary(0)).unwrap();
            w.data(C2S, b"cd").unwrap();
            w.data(S2C, b"ok").unwrap();
        })
        .unwrap();
    }

    #[test]
    fn reader_errors_come_as_they_are() {
        let err = check_tape(&mut Reader::new(&b"\0\0"[..])).unwrap_err();
        assert!(matches!(err.kind, TapeErrorKind::NotATape { .. }), "{err}");
        let mut bytes = Vec::new();
        Writer::new(&mut bytes)
            .unwrap()
            .extension(0x85, &[9; 14])
            .unwrap();
        let err = check_tape(&mut Reader::new(bytes.as_slice())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad span frame at offset 12 in frame 1: span payload of 14 bytes, 23 expected for a 9-byte name"
        );
    }

    #[test]
    fn places_are_the_callers() {
        // The text parser checks with lines and columns.
        let mut checker = Checker::new();
        checker.span(C2S, &capture("a", 1), (2, 3)).unwrap();
        checker.data(C2S, 1, b"x").unwrap();
        let fault = checker.span(S2C, &capture("a", 1), (5, 7)).unwrap_err();
        assert_eq!(fault.at, (5, 7));
        assert_eq!(
            fault
                .problem
                .message(|(line, column)| format!("{line}:{column}")),
            "'a' is captured a second time (first at 2:3): each capture needs a name of its own"
        );
    }

    #[test]
    fn lengths_count_whole_spans_and_known_values() {
        // Nested lengths around an echo of a value captured before them.
        check(|w| {
            w.span(S2C, &capture("id", 2)).unwrap();
            w.data(S2C, b"ab").unwrap();
            w.span(C2S, &length("u16be", 8)).unwrap();
            w.data(C2S, b"\x00\x08").unwrap();
            w.span(C2S, &length("u8", 5)).unwrap();
            w.data(C2S, b"\x05id=").unwrap();
            w.span(C2S, &echo("id", 2)).unwrap();
            w.data(C2S, b"ab;!").unwrap();
        })
        .unwrap();
        let err = check(|w| {
            w.span(C2S, &length("u8", 3)).unwrap();
            w.data(C2S, b"\x03ab").unwrap();
            w.span(C2S, &vary(2)).unwrap();
            w.data(C2S, b"cd").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains(
                "in frame 3: a span across the end of the bytes the length at frame 1 counts"
            ),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &length("u16le", 9)).unwrap();
            w.data(C2S, b"\x09\x00").unwrap();
            w.span(C2S, &length("dec", 3)).unwrap();
            w.data(C2S, b"3abc").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("a decimal length inside the bytes the length at frame 1 counts"),
            "{err}"
        );
        let err = check(|w| {
            for i in 0..=MAX_NESTED_LENGTHS as u32 {
                w.span(C2S, &length("u8", 100 - 2 * i)).unwrap();
                w.data(C2S, b"\x64").unwrap();
            }
        })
        .unwrap_err();
        assert!(err.contains("more than 8 lengths count"), "{err}");
        let err = check(|w| {
            w.span(S2C, &length("u8", 2)).unwrap();
            w.data(S2C, b"\x02").unwrap();
            w.span(C2S, &capture("id", 2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(S2C, &echo("id", 2)).unwrap();
            w.data(S2C, b"ab").unwrap();
        })
        .unwrap_err();
        assert!(err.contains("echo of 'id' inside the bytes the length at frame 1 counts, but 'id' is captured after that length"), "{err}");
        let err = check(|w| {
            w.span(C2S, &length("u8", 5)).unwrap();
            w.data(C2S, b"\x05ab").unwrap();
            w.eof(C2S).unwrap();
        })
        .unwrap_err();
        assert!(err.contains("in frame 1: the length counts 3 bytes more than there are: its direction ends (EOF)"), "{err}");
        let err = check(|w| {
            w.span(C2S, &length("u8", 5)).unwrap();
            w.data(C2S, b"\x05").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("the length counts 5 bytes more than there are: the tape ends"),
            "{err}"
        );
        // A variable value that ends where a length's bytes end needs no
        // recorded bytes after it: another span may follow at once.
        check(|w| {
            w.span(C2S, &length("u8", 2)).unwrap();
            w.data(C2S, b"\x02").unwrap();
            w.span(C2S, &variable(2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(C2S, &length("u8", 1)).unwrap();
            w.data(C2S, b"\x01c").unwrap();
        })
        .unwrap();
        let err = check(|w| {
            w.span(C2S, &length("u8", 3)).unwrap();
            w.data(C2S, b"\x03").unwrap();
            w.span(C2S, &variable(2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(C2S, &vary(1)).unwrap();
            w.data(C2S, b"c").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("right after the variable span at frame 3"),
            "{err}"
        );
        // A length's own bytes do not count as ending where its region
        // (of no bytes) ends: a span right after a decimal length is still
        // after a variable value.
        let err = check(|w| {
            w.span(C2S, &length("dec", 0)).unwrap();
            w.data(C2S, b"0").unwrap();
            w.span(C2S, &vary(2)).unwrap();
            w.data(C2S, b"xy\r\n").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("right after the variable span at frame 1"),
            "{err}"
        );
        // A length's recorded bytes may span data frames; they must be one.
        check(|w| {
            w.span(C2S, &length("u16be", 1)).unwrap();
            w.data(C2S, b"\x00").unwrap();
            w.data(C2S, b"\x01!").unwrap();
        })
        .unwrap();
        let err = check(|w| {
            w.span(C2S, &length("dec", 1)).unwrap();
            w.data(C2S, b"x!").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("in frame 1: the recorded value is not a dec length"),
            "{err}"
        );
    }
}
