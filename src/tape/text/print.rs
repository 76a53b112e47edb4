//! Printing a binary tape as text: one frame per line, data as an escaped
//! string or as hex, chosen per frame.

use std::fmt;
use std::io::{self, Write};

use super::HEADER;
use crate::tape::frame::{Direction, Kind};
use crate::tape::placement::{Checker, Fault, FramePlace};
use crate::tape::reader::{Frame, Reader, Source, TapeError};
use crate::tape::span::{Span, SpanKind};

/// Bytes of a frame looked at to choose between string and hex form.
const SAMPLE: usize = 4096;
/// Characters of escaped string per line before wrapping.
const STRING_WIDTH: usize = 72;
/// Hex bytes per line.
const HEX_WIDTH: usize = 16;

#[derive(Debug)]
pub enum PrintError {
    Tape(TapeError),
    Output(io::Error),
}

impl fmt::Display for PrintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrintError::Tape(err) => err.fmt(f),
            PrintError::Output(err) => write!(f, "cannot write the text: {err}"),
        }
    }
}

impl From<TapeError> for PrintError {
    fn from(err: TapeError) -> Self {
        PrintError::Tape(err)
    }
}

impl From<io::Error> for PrintError {
    fn from(err: io::Error) -> Self {
        PrintError::Output(err)
    }
}

fn mark(dir: Direction) -> &'static str {
    match dir {
        Direction::ClientToServer => ">",
        Direction::ServerToClient => "<",
    }
}

/// Writes the tape as text, streaming frame by frame.
pub fn print<S: Source>(reader: &mut Reader<S>, out: &mut impl Write) -> Result<(), PrintError> {
    print_annotated(reader, out, &|_| None)
}

/// `print`, with a comment at the end of a frame's first line where
/// `notes` has one for the frame's index (for a span printed with its
/// bytes, the span frame's note, else the data frame's).
pub fn print_annotated<S: Source>(
    reader: &mut Reader<S>,
    out: &mut impl Write,
    notes: &dyn Fn(u64) -> Option<String>,
) -> Result<(), PrintError> {
    let mut printer = Printer {
        out,
        notes,
        pending: None,
        checker: Checker::new(),
        warned: false,
    };
    while let Some(frame) = reader.next_frame()? {
        printer.frame(reader, frame)?;
    }
    printer.flush_span()?;
    if let Err(fault) = std::mem::take(&mut printer.checker).finish() {
        printer.warn(fault);
    }
    Ok(())
}

/// A span frame read, waiting to see whether the frame after it holds
/// its bytes.
struct PendingSpan {
    frame: Frame,
    dir: Direction,
    span: Span,
}

struct Printer<'a, W: Write> {
    out: &'a mut W,
    notes: &'a dyn Fn(u64) -> Option<String>,
    pending: Option<PendingSpan>,
    /// Where the spans stand: a tape that breaks a rule prints (so that it
    /// can be fixed as text), with a warning that build will refuse it.
    checker: Checker<FramePlace>,
    warned: bool,
}

impl<W: Write> Printer<'_, W> {
    fn frame<S: Source>(&mut self, reader: &mut Reader<S>, frame: Frame) -> Result<(), PrintError> {
        if frame.index == 0 {
            // The magic frame; the reader has checked it.
            writeln!(self.out, "{HEADER}")?;
            return Ok(());
        }
        let place = FramePlace {
            index: frame.index,
            offset: frame.offset,
        };
        if let Some(pending) = self.pending.take() {
            let holds_its_bytes = frame.kind == Kind::Data(pending.dir)
                && frame.len == pending.span.len
                && inline(&pending.span);
            if holds_its_bytes {
                let note = (self.notes)(pending.frame.index).or_else(|| (self.notes)(frame.index));
                let bytes = reader.peek_payload(self.checker.wanted(pending.dir))?;
                if let Err(fault) = self.checker.data(pending.dir, u64::from(frame.len), bytes) {
                    self.warn(fault);
                }
                write!(self.out, "{} [{}", mark(pending.dir), head(&pending.span))?;
                return print_payload(reader, self.out, frame.len as usize, "]", note);
            }
            self.pending = Some(pending);
            self.flush_span()?;
        }
        let note = (self.notes)(frame.index);
        let checked = match frame.kind {
            Kind::Data(dir) => {
                let bytes = reader.peek_payload(self.checker.wanted(dir))?;
                let checked = self.checker.data(dir, u64::from(frame.len), bytes);
                write!(self.out, "{}", mark(dir))?;
                print_payload(reader, self.out, frame.len as usize, "", note)?;
                checked
            }
            Kind::Delay => {
                line(self.out, &format!("delay {}ms", frame.len), note)?;
                Ok(())
            }
            Kind::Eof(dir) => {
                line(self.out, &format!("eof {}", mark(dir)), note)?;
                self.checker.eof(dir)
            }
            Kind::Any(dir) => {
                let count = reader.read_wildcard()?;
                line(self.out, &format!("{} any {count}", mark(dir)), note)?;
                self.checker.any(dir, u64::from(count), place)
            }
            Kind::Span(dir) => {
                let span = reader.read_span()?;
                let checked = self.checker.span(dir, &span, place);
                self.pending = Some(PendingSpan { frame, dir, span });
                checked
            }
            Kind::Noop => {
                write!(self.out, "noop")?;
                print_payload(reader, self.out, frame.len as usize, "", note)?;
                Ok(())
            }
            Kind::Cut | Kind::Extension(_) => {
                write!(self.out, "ext {:#04x}", frame.kind.opcode())?;
                print_payload(reader, self.out, frame.len as usize, "", note)?;
                Ok(())
            }
        };
        if let Err(fault) = checked {
            self.warn(fault);
        }
        Ok(())
    }

    /// Prints the pending span as a line of its own.
    fn flush_span(&mut self) -> Result<(), PrintError> {
        let Some(PendingSpan { frame, dir, span }) = self.pending.take() else {
            return Ok(());
        };
        let mut text = format!("span {} {} {}", mark(dir), kind_words(&span.kind), span.len);
        if !span.is_fixed() {
            text.push_str(&format!(" {}..{}", span.min, span.max));
        }
        line(self.out, &text, (self.notes)(frame.index))?;
        Ok(())
    }

    fn warn(&mut self, fault: Fault<FramePlace>) {
        if !self.warned {
            let reason = fault.problem.message(|p| format!("frame {}", p.index));
            log::warn!(
                "frame {} breaks a span rule: {reason}; the text prints, but build refuses it until that is fixed",
                fault.at.index
            );
            self.warned = true;
        }
    }
}

/// True when the span prints with its bytes, `[vary ...]`: an echo
/// inline takes no bounds.
fn inline(span: &Span) -> bool {
    !matches!(span.kind, SpanKind::Echo(_)) || span.is_fixed()
}

/// `vary`, `capture NAME`, `echo NAME`, `secret NAME`, `length ENCODING REGION`.
fn kind_words(kind: &SpanKind) -> String {
    match kind {
        SpanKind::Vary => "vary".to_string(),
        SpanKind::Capture(name) => format!("capture {name}"),
        SpanKind::Echo(name) => format!("echo {name}"),
        SpanKind::Secret(name) => format!("secret {name}"),
        SpanKind::Length(length) => format!("length {} {}", length.encoding.name(), length.region),
    }
}

/// What follows `[`: the kind, and the bounds of a variable span.
fn head(span: &Span) -> String {
    let mut head = kind_words(&span.kind);
    if !span.is_fixed() {
        head.push_str(&format!(" {}..{}", span.min, span.max));
    }
    head
}

/// A frame line without payload, and its note.
fn line(out: &mut impl Write, text: &str, note: Option<String>) -> io::Result<()> {
    write!(out, "{text}")?;
    write_note(out, note)?;
    writeln!(out)
}

/// A note as a trailing comment, on one line whatever it holds.
fn write_note(out: &mut impl Write, note: Option<String>) -> io::Result<()> {
    match note {
        Some(note) => write!(out, "   # {}", note.replace(['\n', '\r'], " ")),
        None => Ok(()),
    }
}

/// Prints a payload after its frame keyword: as an escaped string when it
/// is mostly text, as hex otherwise; long payloads wrap onto continuation
/// lines. An empty payload is `""`. `close` ends the last line (a span's
/// `]`), `note` the first.
fn print_payload<S: Source>(
    reader: &mut Reader<S>,
    out: &mut impl Write,
    len: usize,
    close: &str,
    note: Option<String>,
) -> Result<(), PrintError> {
    if len == 0 {
        write!(out, " \"\"{close}")?;
        write_note(out, note)?;
        return Ok(writeln!(out)?);
    }
    let sample = reader.peek_payload(SAMPLE)?;
    let texty = sample
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || matches!(b, b'\r' | b'\n' | b'\t'))
        .count();
    let as_string = texty * 4 >= sample.len() * 3;
    let mut line = LineState {
        note,
        ..LineState::default()
    };
    loop {
        let chunk = reader.read_payload(64 * 1024)?;
        if chunk.is_empty() {
            break;
        }
        for &byte in chunk {
            if as_string {
                line.string_byte(out, byte)?;
            } else {
                line.hex_byte(out, byte)?;
            }
        }
    }
    line.finish(out, as_string, close)?;
    Ok(())
}

/// Where the printer stands on the current output line.
#[derive(Default)]
struct LineState {
    /// Characters (string) or bytes (hex) on the current line.
    width: usize,
    /// A string literal is open on the current line.
    open: bool,
    started: bool,
    /// The comment for the end of the first line.
    note: Option<String>,
}

impl LineState {
    /// Ends the current line and starts a continuation line.
    fn wrap(&mut self, out: &mut impl Write, as_string: bool) -> io::Result<()> {
        if as_string && self.open {
            write!(out, "\"")?;
        }
        write_note(out, self.note.take())?;
        write!(out, "\n ")?;
        self.open = false;
        self.width = 0;
        Ok(())
    }

    fn string_byte(&mut self, out: &mut impl Write, byte: u8) -> io::Result<()> {
        if self.started && self.width >= STRING_WIDTH {
            self.wrap(out, true)?;
        }
        if !self.open {
            write!(out, " \"")?;
            self.open = true;
        }
        self.started = true;
        let escaped = match byte {
            b'\\' => "\\\\".to_string(),
            b'"' => "\\\"".to_string(),
            b'\r' => "\\r".to_string(),
            b'\n' => "\\n".to_string(),
            b'\t' => "\\t".to_string(),
            0x20..=0x7e => (byte as char).to_string(),
            _ => format!("\\x{byte:02x}"),
        };
        write!(out, "{escaped}")?;
        self.width += escaped.len();
        // Protocol lines end at a newline: so does the text line.
        if byte == b'\n' {
            self.width = STRING_WIDTH;
        }
        Ok(())
    }

    fn hex_byte(&mut self, out: &mut impl Write, byte: u8) -> io::Result<()> {
        if self.started && self.width == HEX_WIDTH {
            self.wrap(out, false)?;
        }
        self.started = true;
        let gap = if self.width == HEX_WIDTH / 2 {
            "  "
        } else {
            " "
        };
        write!(out, "{gap}{byte:02x}")?;
        self.width += 1;
        Ok(())
    }

    fn finish(&mut self, out: &mut impl Write, as_string: bool, close: &str) -> io::Result<()> {
        if as_string && self.open {
            write!(out, "\"")?;
        }
        write!(out, "{close}")?;
        write_note(out, self.note.take())?;
        writeln!(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::text::parse;
    use crate::tape::writer::Writer;

    fn printed(binary: &[u8]) -> String {
        let mut out = Vec::new();
        print(&mut Reader::new(binary), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn built(f: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
        let mut bytes = Vec::new();
        f(&mut Writer::new(&mut bytes).unwrap());
        bytes
    }

    #[test]
    fn prints_each_kind_of_frame() {
        let binary = built(|w| {
            w.data(Direction::ClientToServer, b"EHLO client\r\n")
                .unwrap();
            w.delay(50).unwrap();
            w.data(Direction::ServerToClient, &[0, 1, 2, 0xff]).unwrap();
            w.any(Direction::ClientToServer, 8).unwrap();
            w.data(Direction::ClientToServer, b"").unwrap();
            w.noop(b"").unwrap();
            w.extension(0x90, b"x").unwrap();
            w.eof(Direction::ClientToServer).unwrap();
            w.eof(Direction::ServerToClient).unwrap();
        });
        assert_eq!(
            printed(&binary),
            "tcptape text 1\n\
             > \"EHLO client\\r\\n\"\n\
             delay 50ms\n\
             < 00 01 02 ff\n\
             > any 8\n\
             > \"\"\n\
             noop \"\"\n\
             ext 0x90 \"x\"\n\
             eof >\n\
             eof <\n"
        );
        assert_eq!(parse(&printed(&binary)).unwrap(), binary);
    }

    #[test]
    fn a_span_prints_with_the_bytes_it_covers() {
        let s2c = Direction::ServerToClient;
        let c2s = Direction::ClientToServer;
        let token = Span {
            kind: SpanKind::Capture("token".into()),
            len: 4,
            min: 2,
            max: 8,
        };
        let binary = built(|w| {
            w.data(s2c, b"Date: ").unwrap();
            w.span(s2c, &Span::fixed(SpanKind::Vary, 29)).unwrap();
            w.data(s2c, b"Wed, 25 Nov 2026 09:31:29 GMT").unwrap();
            w.data(s2c, b"\r\n").unwrap();
            w.span(s2c, &token).unwrap();
            w.data(s2c, &[0, 1, 2, 0xff]).unwrap();
            w.data(s2c, b";").unwrap();
            w.span(c2s, &Span::fixed(SpanKind::Echo("token".into()), 4))
                .unwrap();
            w.data(c2s, &[0, 1, 2, 0xff]).unwrap();
            w.span(c2s, &Span::fixed(SpanKind::Vary, 0)).unwrap();
            w.data(c2s, b"").unwrap();
        });
        let text = printed(&binary);
        assert_eq!(
            text,
            "tcptape text 1\n\
             < \"Date: \"\n\
             < [vary \"Wed, 25 Nov 2026 09:31:29 GMT\"]\n\
             < \"\\r\\n\"\n\
             < [capture token 2..8 00 01 02 ff]\n\
             < \";\"\n\
             > [echo token 00 01 02 ff]\n\
             > [vary \"\"]\n"
        );
        assert_eq!(parse(&text).unwrap(), binary);
    }

    #[test]
    fn a_span_without_its_bytes_right_after_prints_alone() {
        let s2c = Direction::ServerToClient;
        let c2s = Direction::ClientToServer;
        let vary = Span {
            kind: SpanKind::Vary,
            len: 4,
            min: 1,
            max: 9,
        };
        let echo = Span {
            kind: SpanKind::Echo("id".into()),
            len: 2,
            min: 1,
            max: 64,
        };
        let binary = built(|w| {
            w.span(c2s, &Span::fixed(SpanKind::Capture("id".into()), 2))
                .unwrap();
            w.data(c2s, b"ab").unwrap();
            // Bytes in two frames, with a delay between.
            w.span(s2c, &vary).unwrap();
            w.data(s2c, b"xy").unwrap();
            w.delay(5).unwrap();
            w.data(s2c, b"zw.").unwrap();
            // An echo with bounds, which the inline form has not.
            w.span(c2s, &echo).unwrap();
            w.data(c2s, b"ab").unwrap();
            // A span at the end, its bytes missing.
            w.span(s2c, &Span::fixed(SpanKind::Vary, 3)).unwrap();
        });
        let text = printed(&binary);
        assert_eq!(
            text,
            "tcptape text 1\n\
             > [capture id \"ab\"]\n\
             span < vary 4 1..9\n\
             < \"xy\"\n\
             delay 5ms\n\
             < \"zw.\"\n\
             span > echo id 2 1..64\n\
             > \"ab\"\n\
             span < vary 3\n"
        );
        // That tape breaks a rule: it prints, but does not build.
        let err = parse(&text).unwrap_err();
        assert_eq!((err.line, err.column), (9, 1), "{err}");
        let fixed = &binary[..binary.len() - 18];
        assert_eq!(parse(&printed(fixed)).unwrap(), fixed);
    }

    #[test]
    fn notes_end_the_first_line_of_their_frame() {
        let s2c = Direction::ServerToClient;
        let binary = built(|w| {
            w.data(s2c, b"one\ntwo\n").unwrap();
            w.span(s2c, &Span::fixed(SpanKind::Vary, 8)).unwrap();
            w.data(s2c, b"abc\ndef\n").unwrap();
            w.delay(5).unwrap();
            w.span(s2c, &Span::fixed(SpanKind::Vary, 1)).unwrap();
            w.data(s2c, b"").unwrap();
            w.data(s2c, b"x").unwrap();
        });
        let note = |index: u64| match index {
            1 => Some("first".to_string()),
            2 => Some("the span's\nnote".to_string()),
            3 => Some("not shown: the span's note wins".to_string()),
            4 => Some("a delay".to_string()),
            5 => Some("alone".to_string()),
            _ => None,
        };
        let mut out = Vec::new();
        print_annotated(&mut Reader::new(binary.as_slice()), &mut out, &note).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "tcptape text 1\n\
             < \"one\\n\"   # first\n  \"two\\n\"\n\
             < [vary \"abc\\n\"   # the span's note\n  \"def\\n\"]\n\
             delay 5ms   # a delay\n\
             span < vary 1   # alone\n\
             < \"\"\n\
             < \"x\"\n"
        );
        assert_eq!(parse(&text).unwrap(), binary);
    }

    #[test]
    fn long_data_wraps_onto_continuation_lines() {
        let text: Vec<u8> = b"line one\r\nline two\r\n".to_vec();
        let hex: Vec<u8> = (0..40).collect();
        let binary = built(|w| {
            w.data(Direction::ClientToServer, &text).unwrap();
            w.data(Direction::ServerToClient, &hex).unwrap();
        });
        let out = printed(&binary);
        assert_eq!(
            out,
            "tcptape text 1\n\
             > \"line one\\r\\n\"\n  \"line two\\r\\n\"\n\
             < 00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f\n  \
             10 11 12 13 14 15 16 17  18 19 1a 1b 1c 1d 1e 1f\n  \
             20 21 22 23 24 25 26 27\n"
        );
        assert_eq!(parse(&out).unwrap(), binary);
    }
}
