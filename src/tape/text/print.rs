//! Printing a binary tape as text: one frame per line, data as an escaped
//! string or as hex, chosen per frame.

use std::fmt;
use std::io::{self, Write};

use super::HEADER;
use crate::tape::frame::{Direction, Kind};
use crate::tape::reader::{Reader, Source, TapeError};

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
    while let Some(frame) = reader.next_frame()? {
        if frame.index == 0 {
            // The magic frame; the reader has checked it.
            writeln!(out, "{HEADER}")?;
            continue;
        }
        match frame.kind {
            Kind::Data(dir) => {
                write!(out, "{}", mark(dir))?;
                print_payload(reader, out, frame.len as usize)?;
            }
            Kind::Delay => writeln!(out, "delay {}ms", frame.len)?,
            Kind::Eof(dir) => writeln!(out, "eof {}", mark(dir))?,
            Kind::Any(dir) => writeln!(out, "{} any {}", mark(dir), reader.read_wildcard()?)?,
            Kind::Noop => {
                write!(out, "noop")?;
                print_payload(reader, out, frame.len as usize)?;
            }
            Kind::Cut | Kind::Span(_) | Kind::Extension(_) => {
                write!(out, "ext {:#04x}", frame.kind.opcode())?;
                print_payload(reader, out, frame.len as usize)?;
            }
        }
    }
    Ok(())
}

/// Prints a payload after its frame keyword: as an escaped string when it
/// is mostly text, as hex otherwise; long payloads wrap onto continuation
/// lines. An empty data payload is `""`, an empty NOOP nothing.
fn print_payload<S: Source>(
    reader: &mut Reader<S>,
    out: &mut impl Write,
    len: usize,
) -> Result<(), PrintError> {
    if len == 0 {
        // `noop` and `ext` alone mean an empty payload; data needs `""`.
        return Ok(writeln!(out, " \"\"")?);
    }
    let sample = reader.peek_payload(SAMPLE)?;
    let texty = sample
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || matches!(b, b'\r' | b'\n' | b'\t'))
        .count();
    let as_string = texty * 4 >= sample.len() * 3;
    let mut line = LineState::default();
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
    line.finish(out, as_string)?;
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
}

impl LineState {
    /// Ends the current line and starts a continuation line.
    fn wrap(&mut self, out: &mut impl Write, as_string: bool) -> io::Result<()> {
        if as_string && self.open {
            write!(out, "\"")?;
        }
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

    fn finish(&mut self, out: &mut impl Write, as_string: bool) -> io::Result<()> {
        if as_string && self.open {
            write!(out, "\"")?;
        }
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
