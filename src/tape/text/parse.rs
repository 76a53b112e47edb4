//! Parsing a text tape back into the binary tape, noting each frame's line.

use std::fmt;
use std::io;

use super::HEADER;
use crate::tape::frame::{Direction, HEADER_LEN, Header};
use crate::tape::writer::Writer;

/// A syntax error in a text tape, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    /// 1-based line and column.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The line at fault, for the caret display.
    pub source: String,
}

impl fmt::Display for TextError {
    /// `LINE:COLUMN: message`, then the line and a caret under the column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        let caret = " ".repeat(self.column.saturating_sub(1));
        write!(f, "\n  {}\n  {caret}^", self.source)
    }
}

impl std::error::Error for TextError {}

/// What a frame's items build up: bytes, and wildcards between them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Bytes(Vec<u8>),
    Any(u64),
}

/// A frame being parsed; continuation lines add to its segments.
#[derive(Debug)]
enum Pending {
    Data(Direction, Vec<Segment>),
    Noop(Vec<u8>),
    Extension(u8, Vec<u8>),
}

/// A text tape turned binary, with the text line each frame came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// `lines[i]` is the line of frame `i` (frame 0, the magic: the header).
    pub lines: Vec<u32>,
}

/// Turns a text tape into the binary tape.
pub fn parse(text: &str) -> Result<Vec<u8>, TextError> {
    build(text).map(|built| built.bytes)
}

/// Turns a text tape into the binary tape and notes each frame's line.
pub fn build(text: &str) -> Result<Built, TextError> {
    let mut writer = Writer::new(Vec::new()).map_err(|_| unreachable_io())?;
    let mut lines = vec![0];
    // Bytes of the binary whose frames have their line noted.
    let mut noted = writer.get_ref().len();
    let mut pending: Option<(Pending, u32)> = None;
    let mut header_seen = false;
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let mut cursor = Cursor::new(line, index + 1);
        cursor.skip_space();
        if cursor.at_end_or_comment() {
            continue;
        }
        if !header_seen {
            if line.trim_end() != HEADER {
                return Err(cursor.error(format!(
                    "not a tape: a text tape starts with '{HEADER}', a binary tape with the tcptape magic"
                )));
            }
            header_seen = true;
            lines[0] = number;
            continue;
        }
        if cursor.column() > 1 {
            // A continuation line: more items for the frame above.
            match pending.as_mut().map(|(frame, _)| frame) {
                Some(Pending::Data(_, segments)) => cursor.items(segments, true)?,
                Some(Pending::Noop(payload) | Pending::Extension(_, payload)) => {
                    let mut segments = vec![Segment::Bytes(std::mem::take(payload))];
                    cursor.items(&mut segments, false)?;
                    *payload = flatten(segments);
                }
                None => {
                    return Err(cursor.error(
                        "an indented line continues a frame's data, but no frame with data is above it"
                            .into(),
                    ));
                }
            }
            continue;
        }
        if let Some((done, at)) = pending.take() {
            emit(&mut writer, done);
            note_lines(writer.get_ref(), &mut noted, at, &mut lines);
        }
        pending = cursor.frame(&mut writer)?.map(|frame| (frame, number));
        // Frames written at once (delay, eof) belong to this line.
        note_lines(writer.get_ref(), &mut noted, number, &mut lines);
    }
    if !header_seen {
        return Err(TextError {
            line: 1,
            column: 1,
            message: format!("empty text tape: expected the header line '{HEADER}'"),
            source: String::new(),
        });
    }
    if let Some((done, at)) = pending.take() {
        emit(&mut writer, done);
        note_lines(writer.get_ref(), &mut noted, at, &mut lines);
    }
    Ok(Built {
        bytes: writer.into_inner(),
        lines,
    })
}

/// Notes `line` for every frame written since `noted`.
fn note_lines(bytes: &[u8], noted: &mut usize, line: u32, lines: &mut Vec<u32>) {
    while *noted + HEADER_LEN <= bytes.len() {
        let mut head = [0; HEADER_LEN];
        head.copy_from_slice(&bytes[*noted..*noted + HEADER_LEN]);
        *noted += HEADER_LEN + Header::parse(head).payload_len();
        lines.push(line);
    }
}

/// Writing into a `Vec` cannot fail.
fn unreachable_io() -> TextError {
    TextError {
        line: 0,
        column: 0,
        message: "out of memory".into(),
        source: String::new(),
    }
}

fn flatten(segments: Vec<Segment>) -> Vec<u8> {
    segments
        .into_iter()
        .flat_map(|s| match s {
            Segment::Bytes(b) => b,
            Segment::Any(_) => Vec::new(),
        })
        .collect()
}

/// Writes a finished frame. Writing into a `Vec` cannot fail.
fn emit(writer: &mut Writer<Vec<u8>>, frame: Pending) {
    let _ = match frame {
        Pending::Data(dir, segments) => emit_data(writer, dir, segments),
        Pending::Noop(payload) => writer.noop(&payload),
        Pending::Extension(op, payload) => writer.extension(op, &payload),
    };
}

fn emit_data(
    writer: &mut Writer<Vec<u8>>,
    dir: Direction,
    segments: Vec<Segment>,
) -> io::Result<()> {
    if segments.is_empty() {
        return writer.data(dir, &[]);
    }
    for segment in segments {
        match segment {
            Segment::Bytes(bytes) => writer.data(dir, &bytes)?,
            Segment::Any(count) => writer.any(dir, count)?,
        }
    }
    Ok(())
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

    fn column(&self) -> usize {
        self.line[..self.pos].chars().count() + 1
    }

    fn rest(&self) -> &'a str {
        &self.line[self.pos..]
    }

    fn error(&self, message: String) -> TextError {
        TextError {
            line: self.number,
            column: self.column(),
            message,
            source: self.line.to_string(),
        }
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn at_end_or_comment(&self) -> bool {
        self.rest().is_empty() || self.rest().starts_with('#')
    }

    /// The next run of characters up to a space.
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest.find([' ', '\t']).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// A line that starts a frame.
    fn frame(&mut self, writer: &mut Writer<Vec<u8>>) -> Result<Option<Pending>, TextError> {
        let start = self.pos;
        let keyword = self.word();
        let pending = match keyword {
            ">" | "<" => {
                let dir = if keyword == ">" {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                self.skip_space();
                let mut segments = Vec::new();
                if self.at_end_or_comment() {
                    return Err(self.error(format!(
                        "expected data after '{keyword}': a quoted string, hex bytes, ?? or 'any N'"
                    )));
                }
                self.items(&mut segments, true)?;
                Pending::Data(dir, segments)
            }
            "delay" => {
                self.skip_space();
                let digits_at = self.pos;
                let word = self.word();
                let Some(ms) = word.strip_suffix("ms").and_then(|d| d.parse::<u64>().ok()) else {
                    self.pos = digits_at;
                    return Err(self.error(format!(
                        "expected milliseconds like '150ms' after 'delay', found '{word}'"
                    )));
                };
                let _ = writer.delay(ms);
                self.end_of_line()?;
                return Ok(None);
            }
            "eof" => {
                self.skip_space();
                let dir = match self.word() {
                    ">" => Direction::ClientToServer,
                    "<" => Direction::ServerToClient,
                    other => {
                        self.pos -= other.len();
                        return Err(
                            self.error(format!("expected '>' or '<' after 'eof', found '{other}'"))
                        );
                    }
                };
                let _ = writer.eof(dir);
                self.end_of_line()?;
                return Ok(None);
            }
            "noop" => {
                let mut segments = Vec::new();
                self.items(&mut segments, false)?;
                Pending::Noop(flatten(segments))
            }
            "ext" => {
                self.skip_space();
                let at = self.pos;
                let word = self.word();
                let op = word
                    .strip_prefix("0x")
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .filter(|&op| op >= 0x80);
                let Some(op) = op else {
                    self.pos = at;
                    return Err(self.error(format!(
                        "expected an extension opcode 0x80 to 0xff after 'ext', found '{word}'"
                    )));
                };
                if op == Direction::ClientToServer.any_opcode()
                    || op == Direction::ServerToClient.any_opcode()
                {
                    self.pos = at;
                    return Err(self.error(
                        "wildcards are written '> any N' or '< any N', not as 'ext'".into(),
                    ));
                }
                let mut segments = Vec::new();
                self.items(&mut segments, false)?;
                Pending::Extension(op, flatten(segments))
            }
            _ => {
                self.pos = start;
                return Err(self.error(format!(
                    "expected a frame: '>', '<', 'delay', 'eof', 'noop' or 'ext', found '{keyword}'"
                )));
            }
        };
        Ok(Some(pending))
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

    fn number(&mut self, what: &str) -> Result<u64, TextError> {
        self.skip_space();
        let at = self.pos;
        let word = self.word();
        word.parse::<u64>().map_err(|_| {
            self.pos = at;
            self.error(format!("expected {what}, found '{word}'"))
        })
    }

    /// Data items up to the end of the line: quoted strings, hex bytes,
    /// and (in data frames) `??` wildcard bytes.
    fn items(&mut self, segments: &mut Vec<Segment>, wildcards: bool) -> Result<(), TextError> {
        loop {
            self.skip_space();
            if self.at_end_or_comment() {
                return Ok(());
            }
            if self.rest().starts_with('"') {
                let bytes = self.string()?;
                push_bytes(segments, &bytes);
            } else if self.rest().starts_with("any") {
                if !wildcards {
                    return Err(
                        self.error("wildcards (any N) are only allowed in '>' and '<' data".into())
                    );
                }
                self.word();
                let count = self.number("a byte count after 'any'")?;
                match segments.last_mut() {
                    Some(Segment::Any(n)) => *n += count,
                    _ => segments.push(Segment::Any(count)),
                }
            } else if self.rest().starts_with("??") {
                if !wildcards {
                    return Err(
                        self.error("wildcards (??) are only allowed in '>' and '<' data".into())
                    );
                }
                self.pos += 2;
                match segments.last_mut() {
                    Some(Segment::Any(n)) => *n += 1,
                    _ => segments.push(Segment::Any(1)),
                }
                self.expect_separator()?;
            } else {
                let byte = self.hex_byte()?;
                push_bytes(segments, &[byte]);
            }
        }
    }

    /// Items are separated by spaces: `0a0b` is an error, not two bytes.
    fn expect_separator(&mut self) -> Result<(), TextError> {
        match self.rest().chars().next() {
            None | Some(' ' | '\t' | '#') => Ok(()),
            Some(c) => Err(self.error(format!("expected a space before '{c}'"))),
        }
    }

    fn hex_byte(&mut self) -> Result<u8, TextError> {
        let rest = self.rest();
        let pair = rest
            .get(..2)
            .filter(|p| p.chars().all(|c| c.is_ascii_hexdigit()));
        let Some(pair) = pair else {
            return Err(self.error(
                "expected a quoted string, two hex digits or ?? (write text as \"...\")".into(),
            ));
        };
        let byte = u8::from_str_radix(pair, 16).map_err(|_| self.error("bad hex".into()))?;
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
            let Some(c) = self.rest().chars().next() else {
                self.pos = open;
                return Err(
                    self.error("unterminated string: expected a closing '\"' on this line".into())
                );
            };
            match c {
                '"' => {
                    self.pos += 1;
                    self.expect_separator()?;
                    return Ok(bytes);
                }
                '\\' => {
                    let escape_at = self.pos;
                    self.pos += 1;
                    let Some(e) = self.rest().chars().next() else {
                        self.pos = escape_at;
                        return Err(self.error("unfinished escape at the end of the line".into()));
                    };
                    self.pos += e.len_utf8();
                    match e {
                        'r' => bytes.push(b'\r'),
                        'n' => bytes.push(b'\n'),
                        't' => bytes.push(b'\t'),
                        '0' => bytes.push(0),
                        '\\' => bytes.push(b'\\'),
                        '"' => bytes.push(b'"'),
                        'x' => {
                            let hex = self
                                .rest()
                                .get(..2)
                                .and_then(|h| u8::from_str_radix(h, 16).ok());
                            let Some(byte) = hex else {
                                self.pos = escape_at;
                                return Err(self.error("expected two hex digits after \\x".into()));
                            };
                            bytes.push(byte);
                            self.pos += 2;
                        }
                        other => {
                            self.pos = escape_at;
                            return Err(self.error(format!(
                                "unknown escape '\\{other}': use \\r \\n \\t \\0 \\\\ \\\" or \\xNN"
                            )));
                        }
                    }
                }
                c => {
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    self.pos += c.len_utf8();
                }
            }
        }
    }
}

fn push_bytes(segments: &mut Vec<Segment>, bytes: &[u8]) {
    match segments.last_mut() {
        Some(Segment::Bytes(b)) => b.extend_from_slice(bytes),
        _ => segments.push(Segment::Bytes(bytes.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn each_frame_knows_its_line() {
        let text = "# notes\ntcptape text 1\n> \"a\" ?? \"b\"\n  \"c\"\n\ndelay 5ms\neof <\n";
        let built = build(text).unwrap();
        // magic, data "a", wildcard, data "bc", delay, eof
        assert_eq!(built.lines, vec![2, 3, 3, 3, 6, 7]);
    }

    fn error(text: &str) -> TextError {
        parse(text).expect_err("should not parse")
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
    }
}
