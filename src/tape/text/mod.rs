//! The text form of a tape: one frame per line (or block of continuation
//! lines), for review and hand editing. `print` turns any binary tape into
//! text, `parse` turns text back into the binary tape, and for every binary
//! tape `parse(print(tape))` is the same bytes. docs/text-format.md has the
//! grammar.
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
pub use print::{PrintError, print};

/// The first line of every text tape.
pub const HEADER: &str = "tcptape text 1";

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
