//! The tape file format, byte-compatible with tcptape 0.1.0.
//!
//! A tape is a sequence of frames, each a 4-byte header (opcode, 24-bit
//! big-endian length) and a payload: NOOP (the first one carries the magic
//! `tcptape\0`), data of either direction, DELAY (the length is the
//! milliseconds), the EOF of either direction, and extension frames
//! (0x80-0xFF) that readers skip. docs/tape-format.md has the details.

pub mod describe;
pub mod frame;
pub mod placement;
pub mod reader;
pub mod span;
pub mod text;
pub mod writer;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

pub use frame::{Direction, Header, Kind, MAGIC, MAX_LEN};
pub use reader::{Changed, Frame, Reader, Source, TapeError, TapeErrorKind};
pub use span::{Encoding, Length, Span, SpanKind};
pub use writer::Writer;

/// A tape open for reading by any number of readers.
pub type SharedTape = Rc<dyn Source>;

/// Says where a frame is in the terms of the file the user has: a byte
/// offset in a binary tape, a line in a text tape.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    /// For a text tape, the line of each byte.
    lines: Option<Rc<text::LineMap>>,
}

/// A locator that does not keep a text tape's line map alive.
#[derive(Debug, Clone, Default)]
pub struct WeakLocator {
    lines: Option<Weak<text::LineMap>>,
}

impl WeakLocator {
    /// The locator, while its line map (if any) is still held elsewhere.
    pub fn upgrade(&self) -> Option<Locator> {
        match &self.lines {
            None => Some(Locator::default()),
            Some(lines) => Some(Locator {
                lines: Some(lines.upgrade()?),
            }),
        }
    }
}

impl Locator {
    pub fn downgrade(&self) -> WeakLocator {
        WeakLocator {
            lines: self.lines.as_ref().map(Rc::downgrade),
        }
    }

    /// The locator of a text tape built with `lines`.
    pub fn for_lines(lines: text::LineMap) -> Locator {
        Locator {
            lines: Some(Rc::new(lines)),
        }
    }

    /// `offset` is the binary tape offset meant (a frame's header, or a
    /// byte of its payload): in a text tape, the line that byte is on.
    pub fn place(&self, frame: &Frame, offset: u64) -> String {
        let line = self.lines.as_ref().and_then(|lines| {
            // An offset outside the frame would name some other line.
            let payload = if frame.kind.has_payload() {
                frame.len
            } else {
                0
            };
            let end = frame.offset + frame::HEADER_LEN as u64 + u64::from(payload);
            let offset = if (frame.offset..end).contains(&offset) {
                offset
            } else {
                frame.offset
            };
            lines.line_at(offset)
        });
        match line {
            Some(line) => format!("line {line}"),
            None => format!("tape offset {offset}"),
        }
    }
}

/// Why a tape could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The file could not be opened or read.
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// It is a folder, a device, a pipe: not a tape.
    NotAFile(PathBuf),
    /// A text tape with a syntax error.
    Text {
        path: PathBuf,
        source: text::TextError,
    },
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> OpenError {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Opens a tape, binary or text, told apart by content: a binary tape is
/// read from the file as it goes; a text tape is built into memory (text
/// tapes are written by hand and small).
/// Whether the file at `path` begins as a tape does: the magic frame of a
/// binary tape, or a text tape's header near the start. What tcptape
/// rewrites or removes on its own must pass this: a user's file that only
/// has a tape's name must not.
pub fn begins_like_tape(path: &Path) -> bool {
    let mut start = Vec::with_capacity(512);
    let read = File::open(path).and_then(|file| file.take(512).read_to_end(&mut start));
    if read.is_err() {
        return false;
    }
    let text = text::HEADER.as_bytes();
    start.starts_with(&frame::magic_frame())
        || (text::looks_like_text(&start) && start.windows(text.len()).any(|w| w == text))
}

pub fn open(path: &Path) -> Result<SharedTape, OpenError> {
    open_located(path).map(|(tape, _)| tape)
}

/// A binary tape file read in place, at the length it had when opened: a
/// tape that grows while it is served (a recording into it) does not show
/// its new frames halfway, and one that shrinks fails as truncated.
struct Snapshot {
    file: File,
    len: u64,
    /// When the file was last modified as opened, to tell a tape rewritten
    /// in place while it is served.
    modified: Option<std::time::SystemTime>,
}

impl Source for Snapshot {
    fn unchanged(&self) -> Result<(), Changed> {
        let meta = self
            .file
            .metadata()
            .map_err(|err| Changed(format!("cannot look at it: {err}")))?;
        if meta.len() != self.len {
            return Err(Changed(format!(
                "its size went from {} to {} bytes",
                self.len,
                meta.len()
            )));
        }
        if meta.modified().ok() != self.modified {
            return Err(Changed("it was written to".to_string()));
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(offset);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        FileExt::read_at(&self.file, &mut buf[..n], offset)
    }

    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }

    fn file(&self) -> Option<&File> {
        Some(&self.file)
    }
}

/// `open`, with the `Locator` that names places in the file as written.
pub fn open_located(path: &Path) -> Result<(SharedTape, Locator), OpenError> {
    let mut file = File::open(path).map_err(io_error(path, "open tape"))?;
    let meta = file.metadata().map_err(io_error(path, "read tape"))?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile(path.to_path_buf()));
    }
    let mut start = [0u8; 512];
    let mut got = 0;
    while got < start.len() {
        match file.read(&mut start[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(io_error(path, "read tape")(err)),
        }
    }
    if !text::looks_like_text(&start[..got]) {
        let tape = Snapshot {
            file,
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        return Ok((Rc::new(tape), Locator::default()));
    }
    let text = std::fs::read_to_string(path).map_err(io_error(path, "read tape"))?;
    let built = text::build(&text).map_err(|source| OpenError::Text {
        path: path.to_path_buf(),
        source,
    })?;
    let locator = Locator::for_lines(built.lines);
    Ok((Rc::new(built.bytes), locator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_tape_is_placed_by_the_line_of_the_byte() {
        let built = text::build("tcptape text 1\n> \"ab\"\n  \"cd\"\neof >\n").unwrap();
        let locator = Locator::for_lines(built.lines);
        let mut reader = Reader::new(built.bytes.as_slice());
        reader.next_frame().unwrap();
        let data = reader.next_frame().unwrap().unwrap();
        let at = |byte: u64| locator.place(&data, data.offset + 4 + byte);
        assert_eq!(
            [at(0), at(1), at(2), at(3)],
            ["line 2", "line 2", "line 3", "line 3"]
        );
        // An offset past the frame is not taken for another frame's line.
        assert_eq!(at(4), "line 2");
        let eof = reader.next_frame().unwrap().unwrap();
        assert_eq!(locator.place(&eof, eof.offset), "line 4");
        // A binary tape keeps its offsets.
        assert_eq!(
            Locator::default().place(&data, data.offset + 6),
            format!("tape offset {}", data.offset + 6)
        );
    }

    #[test]
    fn a_span_and_its_bytes_are_placed_on_their_lines() {
        let text = "tcptape text 1\n< \"Date: \" [vary\n  \"Wed\"\n  \", 25\"]\n";
        let built = text::build(text).unwrap();
        let locator = Locator::for_lines(built.lines);
        let mut reader = Reader::new(built.bytes.as_slice());
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            frames.push(frame);
        }
        let [_, date, span, value] = frames[..] else {
            panic!("{frames:?}")
        };
        assert_eq!(span.kind, Kind::Span(Direction::ServerToClient));
        assert_eq!(locator.place(&date, date.offset + 4), "line 2");
        assert_eq!(locator.place(&span, span.offset), "line 2");
        let at = |byte: u64| locator.place(&value, value.offset + 4 + byte);
        assert_eq!(
            [at(0), at(2), at(3), at(6)],
            ["line 3", "line 3", "line 4", "line 4"]
        );
    }
}
