//! The text form of a tape: one frame per line (or block of continuation
//! lines), for review and hand editing. `print` turns any binary tape into
//! text, `parse` turns text back into the binary tape, and for every binary
//! tape `parse(print(tape))` is the same bytes. docs/text-format.md has the
//! grammar.
//!
//! Text tapes may come from anywhere: the parser checks every number
//! against its binary field and takes time linear in the text.
//!
//! ```text
//! tcptape text 1
//! > "EHLO client\r\n"
//! delay 50ms
//! < "250 hello\r\n"
//! > "nonce=" ?? ?? ?? ?? "\r\n"
//! < "Date: " any 29 "\r\n"
//! eof >
//! ```

mod parse;
mod print;

pub use parse::{Built, TextError, build, parse};
pub use print::{PrintError, print, print_annotated};

/// The first line of every text tape.
pub const HEADER: &str = "tcptape text 1";

/// Which line of a text tape each byte of the built binary came from: for
/// every line that wrote something, the offset in the binary where its
/// bytes start. One entry per text line, however many bytes or frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineMap {
    /// Increasing binary offsets, and the line from each offset on.
    offsets: Vec<u64>,
    lines: Vec<u32>,
}

impl LineMap {
    /// Notes that the bytes from `offset` on come from `line`. Offsets come
    /// in order; a line noted at the offset of the one before replaces it
    /// (that one wrote nothing), and the line noted last goes on.
    fn note(&mut self, offset: u64, line: u32) {
        debug_assert!(self.offsets.last().is_none_or(|&last| last <= offset));
        if self.lines.last() == Some(&line) {
            return;
        }
        if self.offsets.last() == Some(&offset) {
            if let Some(last) = self.lines.last_mut() {
                *last = line;
            }
            return;
        }
        self.offsets.push(offset);
        self.lines.push(line);
    }

    /// The line the byte at `offset` of the binary came from.
    pub fn line_at(&self, offset: u64) -> Option<u32> {
        let after = self.offsets.partition_point(|&start| start <= offset);
        after.checked_sub(1).map(|i| self.lines[i])
    }

    /// Lines noted.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// True when a file's beginning reads as a text tape rather than binary.
/// A binary tape starts with a NUL byte (its magic frame's opcode); a file
/// of UTF-8 text is taken as a text tape, so a missing header is reported
/// by the parser, with its line.
pub fn looks_like_text(start: &[u8]) -> bool {
    if start.first().is_none_or(|&b| b == 0) {
        return false;
    }
    match std::str::from_utf8(start) {
        Ok(_) => true,
        // A sample cut in the middle of a character is still text.
        Err(err) => err.error_len().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_told_from_binary_by_content() {
        assert!(looks_like_text(b"tcptape text 1\n> \"x\"\n"));
        assert!(looks_like_text(b"# recorded by hand\n\ntcptape text 1\n"));
        assert!(!looks_like_text(b"\0\0\0\x08tcptape\0"));
        assert!(
            looks_like_text(b"GET / HTTP/1.1\r\n"),
            "text: the parser says what is wrong"
        );
        assert!(!looks_like_text(&[0xff, 0xfe, 0x00]));
    }
}
