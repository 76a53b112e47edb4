//! The grammar of a text tape's lines: frames, span lines, spans inside
//! data, and the items of data (docs/text-format.md).

use super::body::{Body, INSIDE_SPAN, OpenSpan, Pending};
use super::cursor::Cursor;
use super::emit::Tape;
use super::{Failure, Place, TextError, decimal, hex_pair};
use crate::tape::frame::{Direction, Header, MAX_LEN, opcode};
use crate::tape::span::{self, Encoding, Length, MAX_SPAN, Span, SpanKind};

impl Cursor<'_> {
    /// A line that starts a frame. Frames without items are written at
    /// once; others are returned for continuation lines to add to.
    pub(super) fn frame(&mut self, tape: &mut Tape) -> Result<Option<Pending>, Failure> {
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
    pub(super) fn delay(&mut self) -> Result<u32, TextError> {
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
    pub(super) fn extension_opcode(&mut self) -> Result<u8, TextError> {
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
    pub(super) fn place(&self) -> Place {
        (
            self.line_number(),
            u32::try_from(self.pos).unwrap_or(u32::MAX),
        )
    }

    /// `< vary 29 20..40`, `> capture NAME 12`, `< echo NAME 12` after
    /// `span`: a span frame of its own, whose bytes are in the data after it.
    pub(super) fn span_line(&mut self) -> Result<(Direction, Span, Place), TextError> {
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

    /// `vary`, `capture NAME`, `echo NAME` or `secret NAME`.
    pub(super) fn span_kind(&mut self) -> Result<SpanKind, TextError> {
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
            "secret" => Some(SpanKind::Secret as fn(String) -> SpanKind),
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
                        "expected 'vary', 'capture NAME', 'echo NAME', 'secret NAME' or 'length ENCODING REGION', found '{found}'"
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
    pub(super) fn length(&mut self) -> Result<SpanKind, TextError> {
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
    pub(super) fn bounds(&mut self) -> Result<(u32, u32), TextError> {
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
    pub(super) fn span_number(&mut self, n: u64, at: usize) -> Result<u32, TextError> {
        if n > u64::from(MAX_SPAN) {
            return Err(self.error_at(at, format!("a span's length is at most {MAX_SPAN} bytes")));
        }
        Ok(n as u32)
    }

    /// `[vary`, `[vary 20..40`, `[capture NAME`, `[capture NAME 20..40` or
    /// `[echo NAME`: opens a span whose recorded value follows.
    pub(super) fn open_span(&mut self, body: &mut Body) -> Result<(), TextError> {
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
            if matches!(kind, SpanKind::Secret(_)) {
                return Err(self.error(
                    "a secret takes no bounds: replay takes a value of any length there".into(),
                ));
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

    /// Items up to the end of the line: quoted strings, hex bytes, and (in
    /// data frames) the wildcards `??` and `any N` and spans `[...]`.
    pub(super) fn items(&mut self, body: &mut Body) -> Result<(), Failure> {
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
}
