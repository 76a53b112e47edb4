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
                if *eof {
                    "its direction ends (EOF)"
                } else {
                    "the tape ends"
                }
            ),
        }
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
}

/// What the checker knows of one direction.
#[derive(Debug)]
struct Stream<P> {
    open: Option<Open<P>>,
    /// A variable span whose bytes are all recorded, until the next bytes
    /// of the direction show where it ends.
    variable: Option<P>,
    eof: bool,
}

impl<P> Default for Stream<P> {
    fn default() -> Self {
        Stream {
            open: None,
            variable: None,
            eof: false,
        }
    }
}

/// A capture seen, and whether its bytes are all recorded.
#[derive(Debug)]
struct Captured<P> {
    at: P,
    complete: bool,
}

/// Checks where spans stand, fed a tape's frames in order (docs/tape-format.md
/// lists the rules). The text parser feeds it as it builds, the binary
/// tape goes through `check_tape`; both refuse what replay would refuse.
#[derive(Debug)]
pub struct Checker<P> {
    streams: [Stream<P>; 2],
    captures: HashMap<String, Captured<P>>,
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
                        complete: false,
                    },
                );
                capture = Some(name.clone());
            }
            SpanKind::Echo(name) => match self.captures.get(name) {
                None => return fault(Problem::EchoUncaptured { name: name.clone() }),
                Some(captured) if !captured.complete => {
                    return fault(Problem::EchoBeforeCaptured {
                        name: name.clone(),
                        capture: captured.at,
                    });
                }
                Some(_) => {}
            },
        }
        let variable = !span.is_fixed() && !matches!(span.kind, SpanKind::Echo(_));
        self.streams[dir.index()].open = Some(Open {
            at,
            len: span.len,
            left: span.len,
            variable,
            capture,
        });
        self.covered(dir, 0);
        Ok(())
    }

    /// `len` recorded bytes of `dir`.
    pub fn data(&mut self, dir: Direction, len: u64) {
        if len == 0 {
            return;
        }
        let rest = self.covered(dir, len);
        if rest > 0 {
            // Recorded bytes beyond any span: a variable span before them
            // ends there.
            self.streams[dir.index()].variable = None;
        }
    }

    /// Counts `len` bytes against the open span of `dir`, closing it when
    /// they complete it; returns the bytes beyond it.
    fn covered(&mut self, dir: Direction, len: u64) -> u64 {
        let stream = &mut self.streams[dir.index()];
        let Some(open) = &mut stream.open else {
            return len;
        };
        let taken = len.min(u64::from(open.left));
        open.left -= taken as u32;
        if open.left > 0 {
            return 0;
        }
        let open = stream.open.take().expect("an open span");
        if open.variable {
            stream.variable = Some(open.at);
        }
        if let Some(captured) = open.capture.and_then(|name| self.captures.get_mut(&name)) {
            captured.complete = true;
        }
        len - taken
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
        Ok(())
    }

    /// The EOF of `dir`.
    pub fn eof(&mut self, dir: Direction) -> Result<(), Fault<P>> {
        let stream = &mut self.streams[dir.index()];
        if let Some(open) = &stream.open {
            return Err(unfinished(open, true));
        }
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
                checker.data(dir, u64::from(frame.len));
                Ok(())
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
        checker.data(C2S, 1);
        let fault = checker.span(S2C, &capture("a", 1), (5, 7)).unwrap_err();
        assert_eq!(fault.at, (5, 7));
        assert_eq!(
            fault
                .problem
                .message(|(line, column)| format!("{line}:{column}")),
            "'a' is captured a second time (first at 2:3): each capture needs a name of its own"
        );
    }
}
