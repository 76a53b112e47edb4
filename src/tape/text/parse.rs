//! Parsing a text tape back into the binary tape, noting which line each
//! byte came from.
//!
//! Every number is checked against what its binary field holds, and every
//! construct costs time linear in its text: a text tape may come from
//! anywhere, and a bad one must fail fast with its line and column.

use std::fmt;

use super::{HEADER, LineMap};
use crate::tape::frame::{Direction, Header, MAX_LEN, WILDCARD_LEN, opcode};
use crate::tape::span::{self, Checker, Encoding, Fault, Length, MAX_SPAN, Span, SpanKind};

/// Where a span or wildcard is in the text: its line, and the byte where
/// it starts in that line (turned into a column only for an error).
type Place = (u32, u32);

/// A syntax error in a text tape, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    /// 1-based line and column.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The line at fault, for the caret display; empty when it is not shown.
    pub source: String,
}

impl fmt::Display for TextError {
    /// `LINE:COLUMN: message`, then the line and a caret under the column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if self.source.is_empty() {
            return Ok(());
        }
        let caret = " ".repeat(self.column.saturating_sub(1));
        write!(f, "\n  {}\n  {caret}^", self.source)
    }
}

impl std::error::Error for TextError {}

/// A text tape turned binary, with the text line each byte came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub bytes: Vec<u8>,
    pub lines: LineMap,
}

/// Turns a text tape into the binary tape.
pub fn parse(text: &str) -> Result<Vec<u8>, TextError> {
    build(text).map(|built| built.bytes)
}

/// Turns a text tape into the binary tape and notes each line's bytes.
pub fn build(text: &str) -> Result<Built, TextError> {
    let mut tape = Tape::default();
    let mut pending: Option<Pending> = None;
    let mut header_seen = false;
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let mut cursor = Cursor::new(line, index + 1);
        cursor.skip_space();
        if cursor.at_end_or_comment() {
            continue;
        }
        let number = cursor.line_number();
        if !header_seen {
            if line.trim_end() != HEADER {
                // Not quoted: this may be any file at all (a symlink to a
                // secret), and its first line is none of our business.
                return Err(cursor.unquoted_error(format!(
                    "not a tape: a text tape starts with '{HEADER}', a binary tape with the tcptape magic"
                )));
            }
            header_seen = true;
            tape.magic(number);
            continue;
        }
        if cursor.pos > 0 {
            // An indented line: more items for the frame above.
            let Some(frame) = pending.as_mut() else {
                return Err(cursor.error(
                    "an indented line continues a frame's data, but no frame with data is above it"
                        .into(),
                ));
            };
            frame.starts.push((frame.body.len(), number));
            cursor
                .items(&mut frame.body)
                .map_err(|err| err.into_text_error(text))?;
            continue;
        }
        if let Some(done) = pending.take() {
            tape.emit(done).map_err(|err| err.into_text_error(text))?;
        }
        pending = cursor
            .frame(&mut tape)
            .map_err(|err| err.into_text_error(text))?;
    }
    if !header_seen {
        return Err(TextError {
            line: 1,
            column: 1,
            message: format!("empty text tape: expected the header line '{HEADER}'"),
            source: String::new(),
        });
    }
    if let Some(done) = pending.take() {
        tape.emit(done).map_err(|err| err.into_text_error(text))?;
    }
    tape.checker
        .finish()
        .map_err(|fault| Failure::from(fault).into_text_error(text))?;
    Ok(Built {
        bytes: tape.bytes,
        lines: tape.lines,
    })
}

/// An error found away from the cursor, at a place of the text: a span
/// rule broken, a bracket left open. Its line is looked up in the text
/// only when it is reported.
#[derive(Debug)]
enum Failure {
    Text(TextError),
    At { place: Place, message: String },
}

impl Failure {
    fn into_text_error(self, text: &str) -> TextError {
        let (place, message) = match self {
            Failure::Text(err) => return err,
            Failure::At { place, message } => (place, message),
        };
        let raw = text.split('\n').nth(place.0 as usize - 1).unwrap_or("");
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let at = (place.1 as usize).min(line.len());
        TextError {
            line: place.0 as usize,
            column: line[..at].chars().count() + 1,
            message,
            source: line.to_string(),
        }
    }
}

impl From<TextError> for Failure {
    fn from(err: TextError) -> Self {
        Failure::Text(err)
    }
}

impl From<Fault<Place>> for Failure {
    fn from(fault: Fault<Place>) -> Self {
        Failure::At {
            place: fault.at,
            message: fault.problem.message(|place| format!("line {}", place.0)),
        }
    }
}

/// What a data frame's items build up: bytes, wildcards and spans.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Bytes(Vec<u8>),
    /// A wildcard, and where its first item is.
    Any(u32, Place),
    /// A span, and where its `[` is. The bytes it covers are the
    /// `Covered` segment after it.
    Span(Span, Place),
    Covered(Vec<u8>),
}

/// A span whose `[` has been read, but not yet its `]`.
#[derive(Debug)]
struct OpenSpan {
    kind: SpanKind,
    bounds: Option<(u32, u32)>,
    /// Where its `[` and its bounds are.
    place: Place,
    bounds_place: Place,
    /// Items of the recorded value read so far.
    items: usize,
}

/// The items of a frame being parsed.
#[derive(Debug)]
enum Body {
    /// `len` counts the bytes and the wildcards' bytes.
    Data {
        dir: Direction,
        segments: Vec<Segment>,
        len: u64,
        open: Option<OpenSpan>,
    },
    Noop(Vec<u8>),
    Extension(u8, Vec<u8>),
}

impl Body {
    fn data(dir: Direction) -> Body {
        Body::Data {
            dir,
            segments: Vec::new(),
            len: 0,
            open: None,
        }
    }

    /// Where the next item goes, counting wildcards as their bytes.
    fn len(&self) -> u64 {
        match self {
            Body::Data { len, .. } => *len,
            Body::Noop(payload) | Body::Extension(_, payload) => payload.len() as u64,
        }
    }

    fn takes_wildcards(&self) -> bool {
        matches!(self, Body::Data { .. })
    }

    /// The span whose `]` is still to come.
    fn open_span(&mut self) -> Option<&mut OpenSpan> {
        match self {
            Body::Data { open, .. } => open.as_mut(),
            _ => None,
        }
    }

    /// Appends bytes; `Err` says why they do not fit.
    fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Body::Data {
                segments,
                len,
                open,
                ..
            } => {
                // Saturating: 2^64 bytes of text tape is not a real worry,
                // and a wrong line number is all it could cost.
                *len = len.saturating_add(bytes.len() as u64);
                if let Some(open) = open {
                    let Some(Segment::Covered(covered)) = segments.last_mut() else {
                        unreachable!("an open span's bytes are the last segment");
                    };
                    if covered.len() + bytes.len() > MAX_SPAN as usize {
                        return Err(format!(
                            "a span covers at most {MAX_SPAN} recorded bytes, and this item makes it longer"
                        ));
                    }
                    covered.extend_from_slice(bytes);
                    open.items += 1;
                    return Ok(());
                }
                match segments.last_mut() {
                    Some(Segment::Bytes(b)) => b.extend_from_slice(bytes),
                    _ => segments.push(Segment::Bytes(bytes.to_vec())),
                }
                Ok(())
            }
            Body::Noop(payload) | Body::Extension(_, payload) => {
                // One frame, unlike data: its payload cannot be split.
                if payload.len() + bytes.len() > MAX_LEN as usize {
                    let what = match self {
                        Body::Noop(_) => "a noop",
                        _ => "an ext",
                    };
                    return Err(format!(
                        "{what} frame's payload is at most {MAX_LEN} bytes, and this item makes it longer"
                    ));
                }
                payload.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Appends a wildcard of `count` bytes whose item is at `place`;
    /// wildcards in a row are one wildcard frame.
    fn push_any(&mut self, count: u32, place: Place) -> Result<(), String> {
        let Body::Data {
            segments,
            len,
            open,
            ..
        } = self
        else {
            return Err("wildcards (??, any N) are only allowed in '>' and '<' data".into());
        };
        if open.is_some() {
            return Err(INSIDE_SPAN.into());
        }
        match segments.last_mut() {
            Some(Segment::Any(n, _)) => {
                *n = n.checked_add(count).ok_or_else(|| {
                    format!(
                        "wildcards in a row add up to more than {} bytes, the most one wildcard frame counts",
                        u32::MAX
                    )
                })?;
            }
            _ => segments.push(Segment::Any(count, place)),
        }
        *len = len.saturating_add(u64::from(count));
        Ok(())
    }

    /// Opens a span at its `[`: its bytes are the items up to `]`.
    fn open(&mut self, span: OpenSpan) -> Result<(), String> {
        let Body::Data { segments, open, .. } = self else {
            return Err("spans ([vary ...], [capture ...], [echo ...]) are only allowed in '>' and '<' data".into());
        };
        if open.is_some() {
            return Err("a span inside a span: close the first with ']' before".into());
        }
        // A placeholder: the length is known at the `]`.
        segments.push(Segment::Span(Span::fixed(SpanKind::Vary, 0), span.place));
        segments.push(Segment::Covered(Vec::new()));
        *open = Some(span);
        Ok(())
    }

    /// Closes the open span at its `]`, which is at `here`; `Err` says
    /// why it is no span, and where (its bounds may be on an earlier line).
    fn close(&mut self, here: Place) -> Result<(), Failure> {
        let at = |place, message: &str| {
            Err(Failure::At {
                place,
                message: message.to_string(),
            })
        };
        let Body::Data { segments, open, .. } = self else {
            return at(here, "']' without a '[' before it");
        };
        let Some(span) = open.take() else {
            return at(here, "']' without a '[' before it");
        };
        if span.items == 0 {
            return at(
                here,
                "expected the recorded value (quoted strings, hex bytes) before ']'",
            );
        }
        let n = segments.len();
        let Segment::Covered(covered) = &segments[n - 1] else {
            unreachable!("an open span's bytes are the last segment");
        };
        let len = covered.len() as u32;
        let (min, max) = span.bounds.unwrap_or((len, len));
        let built = Span {
            kind: span.kind,
            len,
            min,
            max,
        };
        if let Err(err) = built.check() {
            return at(span.bounds_place, &err.to_string());
        }

        segments[n - 2] = Segment::Span(built, span.place);
        Ok(())
    }
}

/// What may not stand inside a span's brackets.
const INSIDE_SPAN: &str = "inside [...] only quoted strings and hex bytes: the recorded value (no wildcards, no other span)";

/// A frame being parsed, with the lines its items came from.
#[derive(Debug)]
struct Pending {
    body: Body,
    /// For the frame's line and each continuation line, where in `body`
    /// its items start (`Body::len`), and its line number.
    starts: Vec<(u64, u32)>,
}

/// The binary tape being built, the line each of its bytes came from, and
/// the check of where its spans stand.
#[derive(Default)]
struct Tape {
    bytes: Vec<u8>,
    lines: LineMap,
    checker: Checker<Place>,
}

impl Tape {
    fn offset(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn magic(&mut self, line: u32) {
        self.lines.note(self.offset(), line);
        self.bytes
            .extend_from_slice(&crate::tape::frame::magic_frame());
    }

    /// A frame without payload (delay, eof), all of it on `line`.
    fn bare(&mut self, header: Header, line: u32) {
        self.lines.note(self.offset(), line);
        self.bytes.extend_from_slice(&header.emit());
    }

    /// A half-close, on `line`.
    fn eof(&mut self, dir: Direction, line: u32) -> Result<(), Failure> {
        self.checker.eof(dir)?;
        self.bare(Header::eof(dir), line);
        Ok(())
    }

    /// A span frame of its own (`span < vary 29`), at `place`.
    fn span(&mut self, dir: Direction, span: &Span, place: Place) -> Result<(), Failure> {
        self.checker.span(dir, span, place)?;
        self.lines.note(self.offset(), place.0);
        self.span_frame(dir, span);
        Ok(())
    }

    fn span_frame(&mut self, dir: Direction, span: &Span) {
        let payload = span.emit();
        let header = Header::new(dir.span_opcode(), payload.len() as u32);
        self.bytes.extend_from_slice(&header.emit());
        self.bytes.extend_from_slice(&payload);
    }

    /// Writes a finished frame: a data frame becomes a frame per run of
    /// bytes (split at `MAX_LEN`), per wildcard, and per span and the
    /// bytes it covers.
    fn emit(&mut self, frame: Pending) -> Result<(), Failure> {
        let mut starts = frame.starts.into_iter().peekable();
        match frame.body {
            Body::Data {
                open: Some(open), ..
            } => {
                return Err(Failure::At {
                    place: open.place,
                    message:
                        "unclosed '[': a span ends with ']' (it may go on over indented lines)"
                            .into(),
                });
            }
            Body::Data { dir, segments, .. } => {
                let mut at = 0u64;
                for segment in segments {
                    match segment {
                        Segment::Bytes(bytes) | Segment::Covered(bytes) if bytes.is_empty() => {
                            self.frame(Header::data(dir, 0), &[], at, &mut starts);
                        }
                        Segment::Bytes(bytes) | Segment::Covered(bytes) => {
                            self.checker.data(dir, bytes.len() as u64, &bytes)?;
                            for chunk in bytes.chunks(MAX_LEN as usize) {
                                let header = Header::data(dir, chunk.len());
                                self.frame(header, chunk, at, &mut starts);
                                at += chunk.len() as u64;
                            }
                        }
                        Segment::Any(count, place) => {
                            self.checker.any(dir, u64::from(count), place)?;
                            self.note_starts(at, u32::MAX, &mut starts);
                            let header = Header::new(dir.any_opcode(), WILDCARD_LEN);
                            self.bytes.extend_from_slice(&header.emit());
                            self.bytes.extend_from_slice(&count.to_be_bytes());
                            // Lines that start inside the wildcard have no
                            // frame of their own: they are noted where the
                            // next frame starts.
                            at = at.saturating_add(u64::from(count));
                        }
                        Segment::Span(span, place) => {
                            self.checker.span(dir, &span, place)?;
                            // The span frame is the line of its `[`; lines
                            // after it that start with its bytes are the
                            // lines of those bytes.
                            self.note_starts(at, place.0, &mut starts);
                            self.lines.note(self.offset(), place.0);
                            self.span_frame(dir, &span);
                        }
                    }
                }
            }
            Body::Noop(payload) => {
                let header = Header::new(opcode::NOOP, payload.len() as u32);
                self.frame(header, &payload, 0, &mut starts);
            }
            Body::Extension(op, payload) => {
                let header = Header::new(op, payload.len() as u32);
                self.frame(header, &payload, 0, &mut starts);
            }
        }
        // Lines whose items added nothing, at the frame's end.
        self.note_starts(u64::MAX, u32::MAX, &mut starts);
        Ok(())
    }

    /// Notes the lines (up to line `last`) whose items start at or before
    /// `at` of the frame being built as starting here, at the next frame
    /// header.
    fn note_starts(&mut self, at: u64, last: u32, starts: &mut Starts) {
        while let Some((_, line)) = starts.next_if(|&(start, line)| start <= at && line <= last) {
            self.lines.note(self.offset(), line);
        }
    }

    /// Writes one frame whose payload is the bytes from `at` in the frame
    /// being built, noting the lines that start in it.
    fn frame(&mut self, header: Header, payload: &[u8], at: u64, starts: &mut Starts) {
        self.note_starts(at, u32::MAX, starts);
        self.bytes.extend_from_slice(&header.emit());
        let payload_at = self.offset();
        let end = at + payload.len() as u64;
        while let Some((start, line)) = starts.next_if(|&(start, _)| start < end) {
            self.lines.note(payload_at + (start - at), line);
        }
        self.bytes.extend_from_slice(payload);
    }
}

/// Where the lines of a frame start, in order, as they are written.
type Starts = std::iter::Peekable<std::vec::IntoIter<(u64, u32)>>;

/// The value of a plain decimal number (ASCII digits only, no sign);
/// `u64::MAX` stands for anything larger. `None` if it is not one.
fn decimal(word: &str) -> Option<u64> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits only, so the one way to fail is to overflow.
    Some(word.parse().unwrap_or(u64::MAX))
}

/// Two ASCII hex digits at the start of `text`, as a byte.
fn hex_pair(text: &str) -> Option<u8> {
    let pair = text.get(..2)?;
    if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(pair, 16).ok()
}

/// Reads one line, tracking the column for errors.
struct Cursor<'a> {
    line: &'a str,
    number: usize,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a str, number: usize) -> Cursor<'a> {
        Cursor {
            line,
            number,
            pos: 0,
        }
    }

    /// The line number as the line map keeps it.
    fn line_number(&self) -> u32 {
        u32::try_from(self.number).unwrap_or(u32::MAX)
    }

    fn column(&self) -> usize {
        self.line[..self.pos].chars().count() + 1
    }

    fn rest(&self) -> &'a str {
        &self.line[self.pos..]
    }

    fn error(&self, message: String) -> TextError {
        TextError {
            source: self.line.to_string(),
            ..self.unquoted_error(message)
        }
    }

    fn unquoted_error(&self, message: String) -> TextError {
        TextError {
            line: self.number,
            column: self.column(),
            message,
            source: String::new(),
        }
    }

    /// An error at `at`, an earlier position on the line.
    fn error_at(&mut self, at: usize, message: String) -> TextError {
        self.pos = at;
        self.error(message)
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn at_end_or_comment(&self) -> bool {
        self.rest().is_empty() || self.rest().starts_with('#')
    }

    /// The next run of characters up to a space, without moving.
    fn peek_word(&self) -> &'a str {
        let rest = self.rest();
        &rest[..rest.find([' ', '\t']).unwrap_or(rest.len())]
    }

    /// The next run of characters up to a space.
    fn word(&mut self) -> &'a str {
        let word = self.peek_word();
        self.pos += word.len();
        word
    }

    /// A line that starts a frame. Frames without items are written at
    /// once; others are returned for continuation lines to add to.
    fn frame(&mut self, tape: &mut Tape) -> Result<Option<Pending>, Failure> {
        let line = self.line_number();
        let keyword = self.word();
        let body = match keyword {
            ">" | "<" => {
                let dir = if keyword == ">" {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                self.skip_space();
                if self.at_end_or_comment() {
                    return Err(self
                        .error(format!(
                            "expected data after '{keyword}': a quoted string, hex bytes, ??, 'any N' or a [span]"
                        ))
                        .into());
                }
                Body::data(dir)
            }
            "delay" => {
                let ms = self.delay()?;
                self.end_of_line()?;
                tape.bare(Header::new(opcode::DELAY, ms), line);
                return Ok(None);
            }
            "eof" => {
                self.skip_space();
                let at = self.pos;
                let dir = match self.word() {
                    ">" => Direction::ClientToServer,
                    "<" => Direction::ServerToClient,
                    other => {
                        return Err(self
                            .error_at(
                                at,
                                format!("expected '>' or '<' after 'eof', found '{other}'"),
                            )
                            .into());
                    }
                };
                self.end_of_line()?;
                tape.eof(dir, line)?;
                return Ok(None);
            }
            "span" => {
                let (dir, span, place) = self.span_line()?;
                tape.span(dir, &span, place)?;
                return Ok(None);
            }
            "noop" => Body::Noop(Vec::new()),
            "ext" => Body::Extension(self.extension_opcode()?, Vec::new()),
            _ => {
                return Err(self
                    .error_at(
                        0,
                        format!(
                            "expected a frame: '>', '<', 'delay', 'eof', 'span', 'noop' or 'ext', found '{keyword}'"
                        ),
                    )
                    .into());
            }
        };
        let mut frame = Pending {
            body,
            starts: vec![(0, line)],
        };
        self.items(&mut frame.body)?;
        Ok(Some(frame))
    }

    /// `Nms` after `delay`: at most what a DELAY frame's length holds. Zero
    /// is a frame too, so that a tape with one prints and builds back.
    fn delay(&mut self) -> Result<u32, TextError> {
        self.skip_space();
        let at = self.pos;
        let word = self.word();
        let Some(ms) = word.strip_suffix("ms").and_then(decimal) else {
            return Err(self.error_at(
                at,
                format!("expected milliseconds like '150ms' after 'delay', found '{word}'"),
            ));
        };
        if ms > u64::from(MAX_LEN) {
            return Err(self.error_at(
                at,
                format!("a delay is at most {MAX_LEN}ms (the largest a DELAY frame holds)"),
            ));
        }
        Ok(ms as u32)
    }

    /// `0xNN` after `ext`: an extension opcode that is not a wildcard's.
    fn extension_opcode(&mut self) -> Result<u8, TextError> {
        self.skip_space();
        let at = self.pos;
        let word = self.word();
        let op = word
            .strip_prefix("0x")
            .filter(|hex| hex.len() == 2)
            .and_then(hex_pair)
            .filter(|&op| op >= opcode::EXTENSION_MIN);
        let Some(op) = op else {
            return Err(self.error_at(
                at,
                format!("expected an extension opcode 0x80 to 0xff after 'ext', found '{word}'"),
            ));
        };
        if op == opcode::ANY_CLIENT_TO_SERVER || op == opcode::ANY_SERVER_TO_CLIENT {
            return Err(self.error_at(
                at,
                "wildcards are written '> any N' or '< any N', not as 'ext'".into(),
            ));
        }
        if op == opcode::SPAN_CLIENT_TO_SERVER || op == opcode::SPAN_SERVER_TO_CLIENT {
            return Err(self.error_at(
                at,
                "spans are written '[vary ...]' in data or as a 'span' line, not as 'ext'".into(),
            ));
        }
        Ok(op)
    }

    /// The place of the cursor, for errors found later.
    fn place(&self) -> Place {
        (
            self.line_number(),
            u32::try_from(self.pos).unwrap_or(u32::MAX),
        )
    }

    /// `< vary 29 20..40`, `> capture NAME 12`, `< echo NAME 12` after
    /// `span`: a span frame of its own, whose bytes are in the data after it.
    fn span_line(&mut self) -> Result<(Direction, Span, Place), TextError> {
        self.skip_space();
        let place = (self.line_number(), 0);
        let at = self.pos;
        let dir = match self.word() {
            ">" => Direction::ClientToServer,
            "<" => Direction::ServerToClient,
            other => {
                return Err(self.error_at(
                    at,
                    format!("expected '>' or '<' after 'span', found '{other}'"),
                ));
            }
        };
        self.skip_space();
        let kind = self.span_kind()?;
        self.skip_space();
        let at = self.pos;
        let word = self.word();
        let Some(len) = decimal(word) else {
            return Err(self.error_at(
                at,
                format!("expected the number of recorded bytes the span covers, found '{word}'"),
            ));
        };
        let len = self.span_number(len, at)?;
        self.skip_space();
        let bounds_at = self.pos;
        let bounds = if self.at_end_or_comment() {
            (len, len)
        } else {
            self.bounds()?
        };
        self.end_of_line()?;
        let span = Span {
            kind,
            len,
            min: bounds.0,
            max: bounds.1,
        };
        span.check()
            .map_err(|err| self.error_at(bounds_at, err.to_string()))?;
        Ok((dir, span, place))
    }

    /// `vary`, `capture NAME` or `echo NAME`.
    fn span_kind(&mut self) -> Result<SpanKind, TextError> {
        let at = self.pos;
        let rest = self.rest();
        let keyword = &rest[..rest
            .find(|c: char| !c.is_ascii_lowercase())
            .unwrap_or(rest.len())];
        self.pos += keyword.len();
        let named = match keyword {
            "vary" => None,
            "capture" => Some(SpanKind::Capture as fn(String) -> SpanKind),
            "echo" => Some(SpanKind::Echo as fn(String) -> SpanKind),
            "length" => return self.length(),
            _ => {
                let found = if keyword.is_empty() {
                    self.peek_word()
                } else {
                    keyword
                };
                return Err(self.error_at(
                    at,
                    format!(
                        "expected 'vary', 'capture NAME', 'echo NAME' or 'length ENCODING REGION', found '{found}'"
                    ),
                ));
            }
        };
        self.expect_separator()?;
        let Some(named) = named else {
            return Ok(SpanKind::Vary);
        };
        self.skip_space();
        let at = self.pos;
        let rest = self.rest();
        let name = &rest[..rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or(rest.len())];
        self.pos += name.len();
        if name.is_empty() {
            return Err(self.error(format!(
                "expected a capture name after '{keyword}': 1 to {} letters, digits, '_', '-' or '.'",
                span::MAX_NAME
            )));
        }
        span::check_name(name).map_err(|err| self.error_at(at, err.to_string()))?;
        self.expect_separator()?;
        Ok(named(name.to_string()))
    }

    /// `ENCODING REGION` after `length`: how the field is written, and how
    /// many recorded bytes after it it counts.
    fn length(&mut self) -> Result<SpanKind, TextError> {
        self.expect_separator()?;
        self.skip_space();
        let at = self.pos;
        let word = self.word();
        let Some(encoding) = Encoding::named(word) else {
            let names: Vec<_> = Encoding::ALL.iter().map(|(name, _)| *name).collect();
            return Err(self.error_at(
                at,
                format!(
                    "expected a length encoding ({}), found '{word}'",
                    names.join(", ")
                ),
            ));
        };
        self.skip_space();
        let at = self.pos;
        let word = self.word();
        let word = &word[..word.find(']').unwrap_or(word.len())];
        self.pos = at + word.len();
        let region = decimal(word).and_then(|n| u32::try_from(n).ok());
        let Some(region) = region else {
            return Err(self.error_at(
                at,
                format!(
                    "expected how many bytes after the length it counts (0 to {}), found '{word}'",
                    u32::MAX
                ),
            ));
        };
        self.expect_separator()?;
        Ok(SpanKind::Length(Length { encoding, region }))
    }

    /// `MIN..MAX`, each at most `MAX_SPAN`.
    fn bounds(&mut self) -> Result<(u32, u32), TextError> {
        let at = self.pos;
        let word = self.peek_word();
        let word = &word[..word.find(']').unwrap_or(word.len())];
        let parsed = word
            .split_once("..")
            .and_then(|(min, max)| Some((decimal(min)?, decimal(max)?, min.len())));
        let Some((min, max, min_len)) = parsed else {
            return Err(self.error_at(
                at,
                format!("expected the live length's bounds like '20..40', found '{word}'"),
            ));
        };
        let min = self.span_number(min, at)?;
        let max = self.span_number(max, at + min_len + 2)?;
        if min > max {
            return Err(self.error_at(
                at,
                format!("the bounds {min}..{max} are the wrong way round"),
            ));
        }
        self.pos = at + word.len();
        self.expect_separator()?;
        Ok((min, max))
    }

    /// A span's length at `at`: at most `MAX_SPAN`.
    fn span_number(&mut self, n: u64, at: usize) -> Result<u32, TextError> {
        if n > u64::from(MAX_SPAN) {
            return Err(self.error_at(at, format!("a span's length is at most {MAX_SPAN} bytes")));
        }
        Ok(n as u32)
    }

    /// `[vary`, `[vary 20..40`, `[capture NAME`, `[capture NAME 20..40` or
    /// `[echo NAME`: opens a span whose recorded value follows.
    fn open_span(&mut self, body: &mut Body) -> Result<(), TextError> {
        let place = self.place();
        let at = self.pos;
        self.pos += 1;
        let kind = self.span_kind()?;
        self.skip_space();
        let bounds_place = self.place();
        // Bounds are told from a hex byte (`[vary 15]`) by their `..`.
        let word = self.peek_word();
        let bounds = if word.starts_with(|c: char| c.is_ascii_digit()) && word.contains("..") {
            if matches!(kind, SpanKind::Echo(_)) {
                return Err(self
                    .error("an echo takes no bounds: its live value is the captured one".into()));
            }
            Some(self.bounds()?)
        } else {
            None
        };
        let span = OpenSpan {
            kind,
            bounds,
            place,
            bounds_place,
            items: 0,
        };
        body.open(span)
            .map_err(|message| self.error_at(at, message))
    }

    fn end_of_line(&mut self) -> Result<(), TextError> {
        self.skip_space();
        if self.at_end_or_comment() {
            Ok(())
        } else {
            Err(self.error(format!(
                "unexpected '{}' at the end of the frame",
                self.rest()
            )))
        }
    }

    /// The count after `any`: at most what a wildcard frame holds.
    fn count(&mut self) -> Result<u32, TextError> {
        self.skip_space();
        let at = self.pos;
        let word = self.word();
        let Some(count) = decimal(word) else {
            return Err(self.error_at(
                at,
                format!("expected a byte count after 'any', found '{word}'"),
            ));
        };
        u32::try_from(count).map_err(|_| {
            self.error_at(
                at,
                format!("a wildcard counts at most {} bytes, found {word}", u32::MAX),
            )
        })
    }

    /// Items up to the end of the line: quoted strings, hex bytes, and (in
    /// data frames) the wildcards `??` and `any N` and spans `[...]`.
    fn items(&mut self, body: &mut Body) -> Result<(), Failure> {
        loop {
            self.skip_space();
            if self.at_end_or_comment() {
                return Ok(());
            }
            let at = self.pos;
            let wildcard = self.rest().starts_with("??") || self.peek_word() == "any";
            if wildcard && !body.takes_wildcards() {
                return Err(self
                    .error("wildcards (??, any N) are only allowed in '>' and '<' data".into())
                    .into());
            }
            if (wildcard || self.rest().starts_with('[')) && body.open_span().is_some() {
                return Err(self.error(INSIDE_SPAN.into()).into());
            }
            if self.rest().starts_with('[') {
                self.open_span(body)?;
                continue;
            }
            if self.rest().starts_with(']') {
                body.close(self.place())?;
                self.pos += 1;
                self.expect_separator()?;
                continue;
            }
            let place = self.place();
            let added = if self.rest().starts_with('"') {
                let bytes = self.string()?;
                body.push_bytes(&bytes)
            } else if self.rest().starts_with("??") {
                self.pos += 2;
                self.expect_separator()?;
                body.push_any(1, place)
            } else if wildcard {
                self.word();
                let count = self.count()?;
                body.push_any(count, place)
            } else {
                let byte = self.hex_byte()?;
                body.push_bytes(&[byte])
            };
            added.map_err(|message| self.error_at(at, message))?;
        }
    }

    /// Items are separated by spaces: `0a0b` is an error, not two bytes,
    /// and a trailing comment starts after a space. A span's `]` may
    /// follow its last item directly.
    fn expect_separator(&mut self) -> Result<(), TextError> {
        match self.rest().chars().next() {
            None | Some(' ' | '\t' | ']') => Ok(()),
            Some(c) => Err(self.error(format!("expected a space before '{c}'"))),
        }
    }

    fn hex_byte(&mut self) -> Result<u8, TextError> {
        let Some(byte) = hex_pair(self.rest()) else {
            return Err(self.error(
                "expected a quoted string, two hex digits or ?? (write text as \"...\")".into(),
            ));
        };
        self.pos += 2;
        self.expect_separator()?;
        Ok(byte)
    }

    /// A quoted string with escapes: \r \n \t \\ \" \0 \xNN.
    fn string(&mut self) -> Result<Vec<u8>, TextError> {
        let open = self.pos;
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            // Plain characters up to the next quote or escape, in one go.
            let rest = self.rest();
            let plain = rest.find(['"', '\\']).unwrap_or(rest.len());
            bytes.extend_from_slice(&rest.as_bytes()[..plain]);
            self.pos += plain;
            match self.rest().chars().next() {
                None => {
                    return Err(self.error_at(
                        open,
                        "unterminated string: expected a closing '\"' on this line".into(),
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    self.expect_separator()?;
                    return Ok(bytes);
                }
                Some(_) => bytes.push(self.escape()?),
            }
        }
    }

    /// The escape at the cursor, a backslash and what follows.
    fn escape(&mut self) -> Result<u8, TextError> {
        let at = self.pos;
        self.pos += 1;
        let Some(e) = self.rest().chars().next() else {
            return Err(self.error_at(at, "unfinished escape at the end of the line".into()));
        };
        self.pos += e.len_utf8();
        Ok(match e {
            'r' => b'\r',
            'n' => b'\n',
            't' => b'\t',
            '0' => 0,
            '\\' => b'\\',
            '"' => b'"',
            'x' => {
                let Some(byte) = hex_pair(self.rest()) else {
                    return Err(self.error_at(at, "expected two hex digits after \\x".into()));
                };
                self.pos += 2;
                byte
            }
            other => {
                return Err(self.error_at(
                    at,
                    format!("unknown escape '\\{other}': use \\r \\n \\t \\0 \\\\ \\\" or \\xNN"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::frame::HEADER_LEN;
    use crate::tape::writer::Writer;

    fn built(f: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
        let mut bytes = Vec::new();
        f(&mut Writer::new(&mut bytes).unwrap());
        bytes
    }

    #[test]
    fn any_n_stands_among_other_items() {
        let text = "tcptape text 1\n< \"Date: \" any 29 \"\\r\\n\"\n< any 3\n";
        let expected = built(|w| {
            w.data(Direction::ServerToClient, b"Date: ").unwrap();
            w.any(Direction::ServerToClient, 29).unwrap();
            w.data(Direction::ServerToClient, b"\r\n").unwrap();
            w.any(Direction::ServerToClient, 3).unwrap();
        });
        assert_eq!(parse(text).unwrap(), expected);
        let e = error("tcptape text 1\nnoop any 3\n");
        assert!(e.message.contains("only allowed"), "{e}");
    }

    #[test]
    fn mixed_items_and_wildcards_build_several_frames() {
        let text = "tcptape text 1\n# a comment\n\n> \"nonce=\" ?? ??   # two wildcard bytes\n  ?? \"\\r\\n\" 0d 0a\n";
        let expected = built(|w| {
            w.data(Direction::ClientToServer, b"nonce=").unwrap();
            w.any(Direction::ClientToServer, 3).unwrap();
            w.data(Direction::ClientToServer, b"\r\n\r\n").unwrap();
        });
        assert_eq!(parse(text).unwrap(), expected);
    }

    /// The line of each frame's header, and of the bytes at `offsets`.
    fn lines_of(built: &Built, offsets: &[u64]) -> Vec<Option<u32>> {
        offsets.iter().map(|&o| built.lines.line_at(o)).collect()
    }

    #[test]
    fn each_frame_knows_its_line() {
        let text = "# notes\ntcptape text 1\n> \"a\" ?? \"b\"\n  \"c\"\n\ndelay 5ms\neof <\n";
        let built = build(text).unwrap();
        // magic at 0, data "a" at 12, wildcard at 17, data "bc" at 25
        // (its bytes at 29 and 30), delay at 31, eof at 35.
        assert_eq!(
            lines_of(&built, &[0, 12, 16, 17, 25, 29, 30, 31, 35]),
            [2, 3, 3, 3, 3, 3, 4, 6, 7].map(Some)
        );
    }

    #[test]
    fn bytes_are_placed_on_their_continuation_line() {
        let text = "tcptape text 1\n\
                    noop \"ab\"\n  \"cd\"\n\
                    < \"x\" ??\n  ?? \"y\"\n  ??\n\
                    > \"\"\n  # nothing\n  \"z\"\n";
        let built = build(text).unwrap();
        // noop at 12: header and "ab" on line 2, "cd" on line 3.
        assert_eq!(lines_of(&built, &[12, 17, 18, 19]), [2, 2, 3, 3].map(Some));
        // "x" at 20, the wildcard (begun on line 4) at 25, "y" at 33 on line
        // 5, the last wildcard at 38 on line 6.
        assert_eq!(
            lines_of(&built, &[20, 25, 33, 37, 38]),
            [4, 4, 5, 5, 6].map(Some)
        );
        // `> ""` writes nothing itself: the frame's byte is line 9's.
        assert_eq!(lines_of(&built, &[46, 50]), [9, 9].map(Some));
        assert_eq!(built.bytes.len(), 51);
    }

    #[test]
    fn line_map_holds_an_entry_per_line_not_per_byte_or_frame() {
        // Many frames on one line, many bytes on another.
        let text = format!(
            "tcptape text 1\n> {}\n< \"{}\"\n",
            "\"a\" ?? ".repeat(1000),
            "b".repeat(100_000)
        );
        let built = build(&text).unwrap();
        assert_eq!(built.lines.len(), 3);
    }

    #[test]
    fn wildcards_are_one_frame_up_to_u32_max() {
        let text = "tcptape text 1\n> any 20000000\n< ?? any 4294967294\n";
        let expected = [
            &crate::tape::frame::magic_frame()[..],
            b"\x81\0\0\x04\x01\x31\x2d\x00",
            b"\x82\0\0\x04\xff\xff\xff\xff",
        ]
        .concat();
        assert_eq!(parse(text).unwrap(), expected);
    }

    #[test]
    fn numbers_over_their_field_are_errors() {
        let e = error("tcptape text 1\n> any 18446744073709551615 any 2\n");
        assert_eq!((e.line, e.column), (2, 7));
        assert!(e.message.contains("at most 4294967295"), "{e}");
        let e = error("tcptape text 1\n> any 99999999999999999999999\n");
        assert!(e.message.contains("at most 4294967295"), "{e}");
        let e = error("tcptape text 1\n> any 4294967295\n  ??\n");
        assert_eq!((e.line, e.column), (3, 3));
        assert!(e.message.contains("add up to more than 4294967295"), "{e}");
        let e = error("tcptape text 1\ndelay 16777216ms\n");
        assert_eq!((e.line, e.column), (2, 7));
        assert!(e.message.contains("at most 16777215ms"), "{e}");
        let e = error("tcptape text 1\ndelay 99999999999999999999999ms\n");
        assert!(e.message.contains("at most 16777215ms"), "{e}");
        let big = "00 ".repeat(MAX_LEN as usize);
        let e = error(&format!("tcptape text 1\nnoop {big}\n  01\n"));
        assert_eq!((e.line, e.column), (3, 3));
        assert!(e.message.contains("at most 16777215 bytes"), "{e}");
        let e = error(&format!("tcptape text 1\next 0xfe {big}01\n"));
        assert_eq!((e.line, e.column), (2, 10 + 3 * MAX_LEN as usize));
        assert!(e.message.starts_with("an ext frame's payload"), "{e}");
        // The largest of each fits.
        let text = format!("tcptape text 1\ndelay 16777215ms\ndelay 0ms\nnoop {big}\n");
        let bytes = parse(&text).unwrap();
        assert_eq!(&bytes[12..20], b"\x03\xff\xff\xff\x03\0\0\0");
        assert_eq!(bytes.len(), 20 + HEADER_LEN + MAX_LEN as usize);
    }

    #[test]
    fn numbers_are_plain_ascii_digits() {
        for (text, column) in [
            ("> \"\\x+f\"", 4),
            ("> \"\\x\u{0661}\u{0662}\"", 4),
            ("ext 0x+80", 5),
            ("ext 0x080", 5),
            ("ext 0X80", 5),
            ("delay +5ms", 7),
            ("delay 5\u{0661}ms", 7),
            ("> any +5", 7),
            ("> any -0", 7),
            ("> any \u{0665}", 7),
            ("> anyway 5", 3),
            ("> +a", 3),
        ] {
            let e = error(&format!("tcptape text 1\n{text}\n"));
            assert_eq!((e.line, e.column), (2, column), "{text}: {e}");
        }
    }

    #[test]
    fn comments_start_after_a_space() {
        let e = error("tcptape text 1\n> \"a\"# no\n");
        assert_eq!((e.line, e.column), (2, 6));
        let e = error("tcptape text 1\n> 0a#\n");
        assert_eq!((e.line, e.column), (2, 5));
        assert!(parse("tcptape text 1\n> \"a#\" 0a # yes\n").is_ok());
    }

    fn error(text: &str) -> TextError {
        parse(text).expect_err("should not parse")
    }

    fn vary(len: u32) -> Span {
        Span::fixed(SpanKind::Vary, len)
    }

    #[test]
    fn a_span_splits_a_line_into_frames() {
        let text = "tcptape text 1\n> \"a\" [vary \"xyz\"] \"b\"\n";
        let expected = built(|w| {
            w.data(Direction::ClientToServer, b"a").unwrap();
            w.span(Direction::ClientToServer, &vary(3)).unwrap();
            w.data(Direction::ClientToServer, b"xyz").unwrap();
            w.data(Direction::ClientToServer, b"b").unwrap();
        });
        assert_eq!(parse(text).unwrap(), expected);
    }

    #[test]
    fn each_kind_of_span_inline_and_standalone() {
        let s2c = Direction::ServerToClient;
        let c2s = Direction::ClientToServer;
        let text = "tcptape text 1\n\
                    < \"Date: \" [vary 10..40 \"Wed, 25 Nov 2026\"] \"\\r\\n\"\n\
                    < [capture token 8..16 \"abcdefghij\"\n\
                    \x20 0d 0a] \"!\"\n\
                    > [echo token \"abcdefghij\"] [vary 15]\n\
                    span < vary 2\n\
                    < \"zz\"\n\
                    span > echo token 10 1..64\n\
                    > \"abcdefghij\"\n\
                    span > capture id 1 0..4\n\
                    > \"7\" 0d\n";
        let expected = built(|w| {
            w.data(s2c, b"Date: ").unwrap();
            let date = Span {
                kind: SpanKind::Vary,
                len: 16,
                min: 10,
                max: 40,
            };
            w.span(s2c, &date).unwrap();
            w.data(s2c, b"Wed, 25 Nov 2026").unwrap();
            w.data(s2c, b"\r\n").unwrap();
            let token = Span {
                kind: SpanKind::Capture("token".into()),
                len: 12,
                min: 8,
                max: 16,
            };
            w.span(s2c, &token).unwrap();
            w.data(s2c, b"abcdefghij\r\n").unwrap();
            w.data(s2c, b"!").unwrap();
            w.span(c2s, &Span::fixed(SpanKind::Echo("token".into()), 10))
                .unwrap();
            w.data(c2s, b"abcdefghij").unwrap();
            w.span(c2s, &vary(1)).unwrap();
            w.data(c2s, &[0x15]).unwrap();
            w.span(s2c, &vary(2)).unwrap();
            w.data(s2c, b"zz").unwrap();
            let echo = Span {
                kind: SpanKind::Echo("token".into()),
                len: 10,
                min: 1,
                max: 64,
            };
            w.span(c2s, &echo).unwrap();
            w.data(c2s, b"abcdefghij").unwrap();
            let id = Span {
                kind: SpanKind::Capture("id".into()),
                len: 1,
                min: 0,
                max: 4,
            };
            w.span(c2s, &id).unwrap();
            w.data(c2s, b"7\r").unwrap();
        });
        assert_eq!(parse(text).unwrap(), expected);
        // The recorded value must be within its bounds.
        let e = error(&text.replace("10..40", "20..40"));
        assert_eq!((e.line, e.column), (2, 18), "{e}");
        assert!(e.message.contains("not within the span's 20..40"), "{e}");
    }

    #[test]
    fn span_frames_and_their_bytes_know_their_lines() {
        let text = "tcptape text 1\n\
                    > \"ab\" [vary\n\
                    \x20 \"xyz\"] \"c\"\n\
                    \x20 [vary \"q\"\n\
                    \x20 ]\n\
                    span < vary 1\n\
                    < \"w\"\n";
        let built = build(text).unwrap();
        // "ab" at 12 (bytes at 16), the span at 18 on line 2, "xyz" at 36
        // (bytes at 40) on line 3, "c" at 43, the second span at 48 on
        // line 4, "q" at 66 on line 4, the standalone span at 71 on line 6,
        // "w" at 89 on line 7.
        assert_eq!(
            lines_of(&built, &[12, 16, 18, 36, 40, 43, 48, 66, 71, 89]),
            [2, 2, 2, 3, 3, 3, 4, 4, 6, 7].map(Some)
        );
        assert_eq!(built.bytes.len(), 94);
    }

    #[test]
    fn span_syntax_errors_point_at_line_and_column() {
        for (text, line, column, message) in [
            ("> [vary \"x\"\n", 2, 3, "unclosed '['"),
            ("> [vary \"x\"\n< \"y\"\n", 2, 3, "unclosed '['"),
            (
                "> [vary \"x\" ??]\n",
                2,
                13,
                "only quoted strings and hex bytes",
            ),
            (
                "> [vary \"x\" any 3]\n",
                2,
                13,
                "only quoted strings and hex bytes",
            ),
            (
                "> [vary [vary \"x\"]]\n",
                2,
                9,
                "only quoted strings and hex bytes",
            ),
            ("> \"x\"]\n", 2, 6, "']' without a '['"),
            ("> [vary]\n", 2, 8, "expected the recorded value"),
            ("> [vary ]\n", 2, 9, "expected the recorded value"),
            ("> [vary 5..3 \"x\"]\n", 2, 9, "wrong way round"),
            ("> [vary 1..70000 \"x\"]\n", 2, 12, "at most 65536 bytes"),
            (
                "> [vary 99999999999999999999999..1 \"x\"]\n",
                2,
                9,
                "at most 65536",
            ),
            ("> [vary 4..8 \"x\"]\n", 2, 9, "not within the span's 4..8"),
            // The bounds are on the line of the '[', the ']' later.
            (
                "> [vary 4..8 \"x\"\n  \"y\"]\n",
                2,
                9,
                "not within the span's 4..8",
            ),
            (
                "> [vary \"x\"\n  # the value\n\n  \"y\" ]]\n",
                5,
                8,
                "']' without a '['",
            ),
            ("> [vary 4.8 \"x\"]\n", 2, 9, "two hex digits"),
            ("> [vary 4..x \"x\"]\n", 2, 9, "bounds like '20..40'"),
            ("> [vary +1..8 \"x\"]\n", 2, 9, "two hex digits"),
            ("> [capture \"x\"]\n", 2, 12, "expected a capture name"),
            (
                "> [capture tok/en \"x\"]\n",
                2,
                15,
                "expected a space before '/'",
            ),
            (
                "> [capture abcdefghijabcdefghijabcdefghijabc \"x\"]\n",
                2,
                12,
                "not a capture name",
            ),
            ("> [echo t 1..2 \"x\"]\n", 2, 11, "an echo takes no bounds"),
            (
                "> [oops \"x\"]\n",
                2,
                4,
                "expected 'vary', 'capture NAME', 'echo NAME' or 'length ENCODING REGION', found 'oops'",
            ),
            (
                "> [length u64be 3 \"\\x00\\x00\\x03\"]\n",
                2,
                11,
                "expected a length encoding (u8, u16be, u16le, u24be, u24le, u32be, u32le, dec), found 'u64be'",
            ),
            (
                "> [length u16be x \"\\x00\\x03\"]\n",
                2,
                17,
                "expected how many bytes after the length it counts (0 to 4294967295), found 'x'",
            ),
            (
                "> [length u8 5000000000 \"\\x03\"]\n",
                2,
                14,
                "expected how many bytes after the length it counts",
            ),
            (
                "> [length u16be 2 \"\\x00\\x03\\x00\"] \"ab\"\n",
                2,
                19,
                "a u16be length is 2 bytes, live as recorded",
            ),
            (
                "> [length dec 1 \"1x\"] \"a\"\n",
                2,
                3,
                "the recorded value is not a dec length",
            ),
            ("> [vary\"x\"]\n", 2, 8, "expected a space"),
            ("> [vary \"x\"]\"y\"\n", 2, 13, "expected a space"),
            (
                "noop [vary \"x\"]\n",
                2,
                6,
                "only allowed in '>' and '<' data",
            ),
            ("ext 0x84 00\n", 2, 5, "spans are written"),
            ("span x vary 3\n", 2, 6, "expected '>' or '<' after 'span'"),
            (
                "span > vary\n",
                2,
                12,
                "expected the number of recorded bytes",
            ),
            (
                "span > vary 3x\n",
                2,
                13,
                "expected the number of recorded bytes",
            ),
            ("span > vary 70000\n", 2, 13, "at most 65536"),
            ("span > vary 3 1..2\n", 2, 15, "not within"),
            ("span > vary 3 3..3 extra\n", 2, 20, "unexpected 'extra'"),
            ("span > capture\n", 2, 15, "expected a capture name"),
            (
                "span > capture 3\n",
                2,
                17,
                "expected the number of recorded bytes",
            ),
        ] {
            let e = error(&format!("tcptape text 1\n{text}"));
            assert_eq!((e.line, e.column), (line, column), "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
            assert!(!e.source.is_empty(), "{text}: the line is shown");
        }
        let big = format!(
            "tcptape text 1\n> [vary \"{}\"\n  \"x\"]\n",
            "a".repeat(65536)
        );
        let e = error(&big);
        assert_eq!((e.line, e.column), (3, 3), "{e}");
        assert!(e.message.contains("at most 65536 recorded bytes"), "{e}");
        // The most a span covers fits.
        let most = format!("tcptape text 1\n> [vary \"{}\"]\n", "a".repeat(65536));
        assert!(parse(&most).is_ok());
    }

    #[test]
    fn span_rules_are_checked_with_line_and_column() {
        for (text, line, column, message) in [
            (
                "< [capture t \"abcd\"]\n< [capture t \"efgh\"]\n",
                3,
                3,
                "'t' is captured a second time (first at line 2)",
            ),
            (
                "< \"x\"\n> \"id=\" [echo id \"abcd\"]\n",
                3,
                9,
                "echo of 'id', which no span before it captures",
            ),
            (
                "span < capture t 4\n< \"ab\"\n> [echo t \"abcd\"]\n< \"cd\"\n",
                4,
                3,
                "before all the bytes of its capture (at line 2)",
            ),
            (
                "< [vary 1..9 \"abc\"]\n  [vary \"d\"]\n",
                3,
                3,
                "a span right after the variable span at line 2",
            ),
            (
                "< [vary 1..9 \"abc\"] \"\"\n  ?? ??\n",
                3,
                3,
                "a wildcard right after the variable span at line 2",
            ),
            (
                "span < vary 4\n< any 4\n",
                3,
                3,
                "a wildcard inside the bytes the span at line 2 covers",
            ),
            (
                "span < vary 4\n< \"ab\"\nspan < vary 1\n",
                4,
                1,
                "a span inside the bytes the span at line 2 covers",
            ),
            (
                "span > vary 3\n> \"ab\"\neof >\n",
                2,
                1,
                "the span covers 3 bytes, but its direction ends (EOF) after 2 of them",
            ),
            (
                "eof <\n  # the server is done\n< [vary \"\"]\n",
                4,
                3,
                "a span after its direction's EOF",
            ),
            (
                "> \"a\"\nspan < vary 3\n",
                3,
                1,
                "the span covers 3 bytes, but the tape ends after 0 of them",
            ),
        ] {
            let e = error(&format!("tcptape text 1\n{text}"));
            assert_eq!((e.line, e.column), (line, column), "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
            let shown = text.lines().nth(line - 2).unwrap();
            assert_eq!(e.source, shown, "{text}: the line at fault is shown");
        }
        // Columns count characters, not bytes.
        let e = error("tcptape text 1\n> \"é\" [echo x \"abcd\"]\n");
        assert_eq!((e.line, e.column), (2, 7), "{e}");
    }

    #[test]
    fn the_header_error_does_not_quote_the_line() {
        let e = error("root:x:0:0:root:/root:/bin/bash\n");
        assert_eq!((e.line, e.column), (1, 1));
        assert!(e.message.starts_with("not a tape"), "{e}");
        assert!(!e.to_string().contains("root:x"), "{e}");
        assert_eq!(e.to_string(), format!("1:1: {}", e.message));
    }

    #[test]
    fn errors_point_at_line_and_column() {
        let e = error("tcptape text 1\n> EHLO\n");
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("expected a quoted string"), "{e}");
        assert_eq!(
            e.to_string(),
            format!("2:3: {}\n  > EHLO\n    ^", e.message)
        );

        let e = error("> \"hi\"\n");
        assert_eq!((e.line, e.column), (1, 1));
        assert!(e.message.starts_with("not a tape"), "{e}");

        let e = error("tcptape text 1\n> \"open\n");
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("unterminated string"), "{e}");

        let e = error("tcptape text 1\ndelay 5s\n");
        assert_eq!((e.line, e.column), (2, 7));
        assert!(e.message.contains("'150ms'"), "{e}");

        let e = error("tcptape text 1\neof x\n");
        assert_eq!((e.line, e.column), (2, 5));

        let e = error("tcptape text 1\nsend \"x\"\n");
        assert!(e.message.contains("expected a frame"), "{e}");

        let e = error("tcptape text 1\n  \"orphan\"\n");
        assert!(e.message.contains("no frame with data is above it"), "{e}");

        let e = error("tcptape text 1\n> \"a\\q\"\n");
        assert_eq!((e.line, e.column), (2, 5));
        assert!(e.message.contains("unknown escape"), "{e}");

        let e = error("tcptape text 1\n> 0a0b\n");
        assert!(e.message.contains("expected a space"), "{e}");

        let e = error("tcptape text 1\nnoop ??\n");
        assert!(e.message.contains("only allowed"), "{e}");

        let e = error("tcptape text 1\next 0x10 \"x\"\n");
        assert!(e.message.contains("0x80 to 0xff"), "{e}");

        let e = error("tcptape text 1\n> any lots\n");
        assert!(e.message.contains("byte count"), "{e}");

        let e = error("tcptape text 1\neof > extra\n");
        assert!(e.message.contains("unexpected 'extra'"), "{e}");

        let e = error("");
        assert!(e.message.contains("empty text tape"), "{e}");
        assert_eq!(e.to_string(), format!("1:1: {}", e.message));
    }
}
