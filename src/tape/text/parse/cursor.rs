//! Reading one line of a text tape: words, numbers, quoted strings and
//! hex bytes, with the column of every error.

use super::{TextError, decimal, hex_pair};

/// Reads one line, tracking the column for errors.
pub(super) struct Cursor<'a> {
    pub(super) line: &'a str,
    pub(super) number: usize,
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(line: &'a str, number: usize) -> Cursor<'a> {
        Cursor {
            line,
            number,
            pos: 0,
        }
    }

    /// The line number as the line map keeps it.
    pub(super) fn line_number(&self) -> u32 {
        u32::try_from(self.number).unwrap_or(u32::MAX)
    }

    pub(super) fn column(&self) -> usize {
        self.line[..self.pos].chars().count() + 1
    }

    pub(super) fn rest(&self) -> &'a str {
        &self.line[self.pos..]
    }

    pub(super) fn error(&self, message: String) -> TextError {
        TextError {
            source: self.line.to_string(),
            ..self.unquoted_error(message)
        }
    }

    pub(super) fn unquoted_error(&self, message: String) -> TextError {
        TextError {
            line: self.number,
            column: self.column(),
            message,
            source: String::new(),
        }
    }

    /// An error at `at`, an earlier position on the line.
    pub(super) fn error_at(&mut self, at: usize, message: String) -> TextError {
        self.pos = at;
        self.error(message)
    }

    pub(super) fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    pub(super) fn at_end_or_comment(&self) -> bool {
        self.rest().is_empty() || self.rest().starts_with('#')
    }

    /// The next run of characters up to a space, without moving.
    pub(super) fn peek_word(&self) -> &'a str {
        let rest = self.rest();
        &rest[..rest.find([' ', '\t']).unwrap_or(rest.len())]
    }

    /// The next run of characters up to a space.
    pub(super) fn word(&mut self) -> &'a str {
        let word = self.peek_word();
        self.pos += word.len();
        word
    }

    pub(super) fn end_of_line(&mut self) -> Result<(), TextError> {
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
    pub(super) fn count(&mut self) -> Result<u32, TextError> {
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

    /// Items are separated by spaces: `0a0b` is an error, not two bytes,
    /// and a trailing comment starts after a space. A span's `]` may
    /// follow its last item directly.
    pub(super) fn expect_separator(&mut self) -> Result<(), TextError> {
        match self.rest().chars().next() {
            None | Some(' ' | '\t' | ']') => Ok(()),
            Some(c) => Err(self.error(format!("expected a space before '{c}'"))),
        }
    }

    pub(super) fn hex_byte(&mut self) -> Result<u8, TextError> {
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
    pub(super) fn string(&mut self) -> Result<Vec<u8>, TextError> {
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
    pub(super) fn escape(&mut self) -> Result<u8, TextError> {
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
