//! A connection's tape, written into memory with `tape::Writer`; the
//! importer takes the bytes out now and then and appends them to the file.
//!
//! A capture's segments are how TCP cut the bytes, not how the
//! application wrote them: consecutive data of one direction with nothing
//! between is joined into frames of up to `MAX_MERGED_FRAME` bytes. The
//! last data frame is therefore kept open, and written when another frame
//! comes or the bytes are taken.

use std::fmt;
use std::io;

use crate::tape::frame::{HEADER_LEN, MAX_LEN};
use crate::tape::{Direction, Writer};

/// Consecutive data of one direction, with no delay between, is written
/// as one frame of up to this many bytes.
pub const MAX_MERGED_FRAME: usize = 64 * 1024;

pub struct TapeOut {
    writer: Writer<Vec<u8>>,
    /// The direction of the data frame still open to more bytes, if any:
    /// its bytes are in `frame`.
    open: Option<Direction>,
    frame: Vec<u8>,
}

/// Sizes, not bytes: a tape in memory may be 64 KiB and more.
impl fmt::Debug for TapeOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapeOut")
            .field("len", &self.len())
            .field("open", &self.open)
            .finish()
    }
}

impl TapeOut {
    pub fn new() -> TapeOut {
        TapeOut {
            writer: Writer::in_memory(),
            open: None,
            frame: Vec::new(),
        }
    }

    /// The tape's bytes since the last call (the magic first), every
    /// frame closed: bytes after this start a new frame.
    pub fn take(&mut self) -> Vec<u8> {
        self.close_frame();
        std::mem::take(self.writer.get_mut())
    }

    /// Bytes `take` would return.
    pub fn len(&self) -> usize {
        let open = match self.open {
            Some(_) => HEADER_LEN + self.frame.len(),
            None => 0,
        };
        self.writer.get_ref().len() + open
    }

    fn close_frame(&mut self) {
        if let Some(dir) = self.open.take() {
            emitted(self.writer.data(dir, &self.frame));
            self.frame.clear();
        }
    }

    pub fn data(&mut self, dir: Direction, mut bytes: &[u8]) {
        if self.open == Some(dir) {
            let n = bytes.len().min(MAX_MERGED_FRAME - self.frame.len());
            self.frame.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        for chunk in bytes.chunks(MAX_MERGED_FRAME) {
            self.close_frame();
            self.frame.extend_from_slice(chunk);
            self.open = Some(dir);
        }
    }

    /// `count` bytes of any value, in wildcard frames of at most `MAX_LEN`
    /// each: the pieces import has always written, so a capture gives the
    /// same tape as before.
    pub fn any(&mut self, dir: Direction, mut count: u64) {
        self.close_frame();
        while count > 0 {
            let n = count.min(u64::from(MAX_LEN));
            emitted(self.writer.any(dir, n));
            count -= n;
        }
    }

    /// A pause, capped like the recorder caps one (4 h 39 min): a capture's
    /// timestamps are 64 bits, and a jump of centuries must not become
    /// gigabytes of DELAY frames.
    pub fn delay(&mut self, ms: u64) {
        self.close_frame();
        emitted(self.writer.delay(ms));
    }

    pub fn eof(&mut self, dir: Direction) {
        self.close_frame();
        emitted(self.writer.eof(dir));
    }

    pub fn cut(&mut self, reason: &str) {
        self.close_frame();
        emitted(self.writer.cut(reason));
    }
}

/// A writer into a `Vec` fails only on what the format cannot hold (a
/// payload over `MAX_LEN`, a wildcard over `u32::MAX`), and `TapeOut`
/// never asks for that: an error is a bug here, whatever the capture.
fn emitted<T>(result: io::Result<T>) -> T {
    result.expect("a tape in memory takes every frame TapeOut makes")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::tape::{Kind, Reader};

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    /// The frames of tape bytes, as (kind, length or count).
    pub fn frames(bytes: &[u8]) -> Vec<(Kind, u32)> {
        let mut reader = Reader::new(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            let len = match frame.kind {
                Kind::Any(_) => reader.read_wildcard().unwrap(),
                _ => frame.len,
            };
            frames.push((frame.kind, len));
        }
        frames
    }

    #[test]
    fn merged_frames_and_long_delays_capped() {
        let mut out = TapeOut::new();
        out.data(C2S, &[1; 40_000]);
        out.data(C2S, &[2; 40_000]);
        out.delay(u64::from(MAX_LEN) + 1);
        out.any(S2C, u64::from(MAX_LEN) + 2);
        assert_eq!(
            frames(&out.take()),
            vec![
                (Kind::Noop, 8),
                (Kind::Data(C2S), 65_536),
                (Kind::Data(C2S), 14_464),
                (Kind::Delay, MAX_LEN),
                (Kind::Any(S2C), MAX_LEN),
                (Kind::Any(S2C), 2),
            ]
        );
    }

    #[test]
    fn another_direction_or_frame_closes_the_open_one() {
        let mut out = TapeOut::new();
        out.data(C2S, b"ab");
        out.data(S2C, b"cd");
        out.data(C2S, b"e");
        out.eof(C2S);
        out.data(S2C, b"f");
        out.cut("why");
        let tape = out.take();
        assert_eq!(
            frames(&tape),
            vec![
                (Kind::Noop, 8),
                (Kind::Data(C2S), 2),
                (Kind::Data(S2C), 2),
                (Kind::Data(C2S), 1),
                (Kind::Eof(C2S), 0),
                (Kind::Data(S2C), 1),
                (Kind::Cut, 3),
            ]
        );
        assert!(tape.ends_with(b"\x83\0\0\x03why"));
    }

    #[test]
    fn taking_the_bytes_closes_the_open_frame() {
        let mut out = TapeOut::new();
        out.data(C2S, b"abc");
        assert_eq!(out.len(), 12 + 4 + 3, "the open frame counts");
        let mut tape = out.take();
        assert_eq!(out.len(), 0);
        out.data(C2S, b"de");
        out.data(C2S, b"");
        tape.extend_from_slice(&out.take());
        assert_eq!(
            frames(&tape),
            vec![(Kind::Noop, 8), (Kind::Data(C2S), 3), (Kind::Data(C2S), 2)]
        );
        assert!(out.take().is_empty());
    }
}
