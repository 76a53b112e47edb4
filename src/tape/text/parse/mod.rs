//! Parsing a text tape back into the binary tape, noting which line each
//! byte came from.
//!
//! Every number is checked against what its binary field holds, and every
//! construct costs time linear in its text: a text tape may come from
//! anywhere, and a bad one must fail fast with its line and column.

mod body;
mod cursor;
mod emit;
mod grammar;

use std::fmt;

use super::{HEADER, LineMap};
use crate::tape::placement::Fault;
use body::Pending;
use cursor::Cursor;
use emit::Tape;

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
    let mut tape = Tape::new();
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
    let (bytes, lines, checker) = tape.into_parts();
    checker
        .finish()
        .map_err(|fault| Failure::from(fault).into_text_error(text))?;
    Ok(Built { bytes, lines })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::frame::HEADER_LEN;
    use crate::tape::frame::{Direction, MAX_LEN};
    use crate::tape::span::{Span, SpanKind};
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
                "expected 'vary', 'capture NAME', 'echo NAME', 'secret NAME' or 'length ENCODING REGION', found 'oops'",
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
