//! A streaming tape reader whose memory is one buffer, whatever the size of
//! the frames or the tape.
//!
//! It reads by absolute offset (`pread`), so many readers can share one file
//! handle: each replay session holds two readers over the same `Rc<File>`.
//! Every frame is checked against the tape's length when its header is read,
//! so a truncated tape is reported at the frame it cuts, before any of that
//! frame's payload is used.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use byteorder::{BigEndian, ByteOrder};

use super::frame::{HEADER_LEN, Header, Kind, MAGIC, WILDCARD_LEN};
use super::span::{self, Span};

/// A buffer grows to this size at most; callers asking for more get chunks.
pub const MAX_CHUNK: usize = 256 * 1024;
/// How far a reader reads ahead by default (less for smaller tapes): a few
/// small frames per `pread`, while a thousand concurrent sessions' cursors
/// stay small.
const READ_AHEAD: usize = 16 * 1024;

/// Tape bytes by absolute offset.
pub trait Source {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The tape's size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// The file the tape is read from in place, if it is one (so its bytes
    /// can go to a socket without passing through user space).
    fn file(&self) -> Option<&File> {
        None
    }
    /// Fails when the bytes behind the tape changed since it was opened
    /// (a file rewritten or truncated in place while it is served).
    fn unchanged(&self) -> Result<(), Changed> {
        Ok(())
    }
}

/// A tape file changed on disk since it was opened, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed(pub String);

impl fmt::Display for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the tape changed on disk while it was served ({})",
            self.0
        )
    }
}

impl std::error::Error for Changed {}

impl Source for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl Source for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
}

impl Source for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(Vec::len(self) as u64)
    }
}

impl<T: Source + ?Sized> Source for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }

    fn file(&self) -> Option<&File> {
        (**self).file()
    }

    fn unchanged(&self) -> Result<(), Changed> {
        (**self).unchanged()
    }
}

impl<T: Source + ?Sized> Source for Rc<T> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }

    fn file(&self) -> Option<&File> {
        (**self).file()
    }

    fn unchanged(&self) -> Result<(), Changed> {
        (**self).unchanged()
    }
}

/// One frame as read: where it is and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// 0 for the magic NOOP.
    pub index: u64,
    /// Offset of the frame's header in the tape.
    pub offset: u64,
    pub kind: Kind,
    /// The header's length field: payload size, or milliseconds for DELAY.
    pub len: u32,
}

#[derive(Debug)]
pub struct TapeError {
    /// Offset of the frame header at fault.
    pub offset: u64,
    /// Index of the frame at fault.
    pub frame: u64,
    pub kind: TapeErrorKind,
}

#[derive(Debug)]
pub enum TapeErrorKind {
    NotATape {
        empty: bool,
    },
    TruncatedHeader {
        present: u64,
    },
    TruncatedPayload {
        announced: u32,
        present: u64,
    },
    UnknownOpcode(u8),
    EofWithLength(u32),
    WildcardLength(u32),
    /// A span frame whose payload is not a span, and why.
    BadSpan(String),
    /// A span that breaks a rule of where spans may be (`placement::check_tape`),
    /// and which.
    SpanRule(String),
    /// The file changed on disk after it was opened.
    Changed(Changed),
    Io(io::Error),
}

impl fmt::Display for TapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (offset, frame) = (self.offset, self.frame);
        match &self.kind {
            TapeErrorKind::NotATape { empty: true } => write!(f, "not a tape: empty file"),
            TapeErrorKind::NotATape { empty: false } => {
                write!(f, "not a tape: no tcptape magic at offset 0")
            }
            TapeErrorKind::TruncatedHeader { present } => write!(
                f,
                "tape truncated at offset {offset} in frame {frame}: 4-byte frame header incomplete, {present} bytes present"
            ),
            TapeErrorKind::TruncatedPayload { announced, present } => write!(
                f,
                "tape truncated at offset {offset} in frame {frame}: {announced} payload bytes announced, {present} present"
            ),
            TapeErrorKind::UnknownOpcode(op) => {
                write!(
                    f,
                    "unknown opcode {op:#04x} at offset {offset} in frame {frame}"
                )
            }
            TapeErrorKind::EofWithLength(len) => write!(
                f,
                "EOF frame with non-zero length {len} at offset {offset} in frame {frame}"
            ),
            TapeErrorKind::WildcardLength(len) => write!(
                f,
                "wildcard frame with length {len} at offset {offset} in frame {frame}, expected {WILDCARD_LEN}"
            ),
            TapeErrorKind::BadSpan(reason) => write!(
                f,
                "bad span frame at offset {offset} in frame {frame}: {reason}"
            ),
            TapeErrorKind::SpanRule(reason) => {
                write!(
                    f,
                    "misplaced span at offset {offset} in frame {frame}: {reason}"
                )
            }
            TapeErrorKind::Changed(changed) => write!(f, "{changed}"),
            TapeErrorKind::Io(err) => write!(f, "read error at offset {offset}: {err}"),
        }
    }
}

impl std::error::Error for TapeError {}

pub struct Reader<S: Source> {
    src: S,
    /// The tape's length, asked once.
    len: Option<u64>,
    buf: Vec<u8>,
    /// Tape offset of `buf[0]`, and how many bytes of `buf` are valid.
    buf_start: u64,
    buf_len: usize,
    /// Offset of the next unread byte.
    pos: u64,
    /// Unread payload of the current frame.
    payload_left: usize,
    /// Header offset of the current frame, for errors.
    frame_offset: u64,
    /// Frames read so far; the next frame's index.
    frames: u64,
    /// Bytes each refill reads at least (when the tape has them).
    read_ahead: usize,
}

impl<S: Source> Reader<S> {
    pub fn new(src: S) -> Reader<S> {
        Reader {
            src,
            len: None,
            buf: Vec::new(),
            buf_start: 0,
            buf_len: 0,
            pos: 0,
            payload_left: 0,
            frame_offset: 0,
            frames: 0,
            read_ahead: READ_AHEAD,
        }
    }

    /// A reader that reads `bytes` ahead (at most `MAX_CHUNK`): for one
    /// reader walking a whole tape, where fewer, larger reads pay off.
    pub fn with_read_ahead(src: S, bytes: usize) -> Reader<S> {
        let mut reader = Reader::new(src);
        reader.read_ahead = bytes.clamp(HEADER_LEN, MAX_CHUNK);
        reader
    }

    /// A reader that starts at the frame header at `offset`, frame `index`
    /// of its tape, as an earlier reader of the same tape reported it.
    pub fn starting_at(src: S, offset: u64, index: u64) -> Reader<S> {
        let mut reader = Reader::new(src);
        reader.pos = offset;
        reader.frames = index;
        reader
    }

    /// A second reader at this one's place, the unread payload of the
    /// current frame included, with a buffer of its own: for looking ahead
    /// without moving this one.
    pub fn fork(&self) -> Reader<S>
    where
        S: Clone,
    {
        self.fork_reading(self.read_ahead)
    }

    /// `fork` with reads of about `read_ahead` bytes: for a short look
    /// ahead (a length field's few bytes) that a full read-ahead buffer
    /// would cost more than it saves.
    pub fn fork_reading(&self, read_ahead: usize) -> Reader<S>
    where
        S: Clone,
    {
        Reader {
            src: self.src.clone(),
            len: self.len,
            buf: Vec::new(),
            buf_start: 0,
            buf_len: 0,
            pos: self.pos,
            payload_left: self.payload_left,
            frame_offset: self.frame_offset,
            frames: self.frames,
            read_ahead,
        }
    }

    /// Unread payload bytes of the current frame.
    pub fn payload_left(&self) -> usize {
        self.payload_left
    }

    /// The tape offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Gives the read buffer back to the allocator; the next read fills a
    /// new one. For a cursor that will sit idle: a thousand idle sessions
    /// should not hold a thousand read-ahead buffers. Returns the bytes
    /// given back.
    pub fn release_buffer(&mut self) -> usize {
        let freed = self.buf.capacity();
        self.buf = Vec::new();
        self.buf_len = 0;
        freed
    }

    /// Offset of the next unread byte.
    fn error(&self, offset: u64, kind: TapeErrorKind) -> TapeError {
        TapeError {
            offset,
            frame: self.frames,
            kind,
        }
    }

    fn tape_len(&mut self) -> Result<u64, TapeError> {
        if let Some(len) = self.len {
            return Ok(len);
        }
        let len = self
            .src
            .size()
            .map_err(|err| self.error(0, TapeErrorKind::Io(err)))?;
        self.len = Some(len);
        Ok(len)
    }

    /// Makes `n` bytes from `pos` available in the buffer; returns where
    /// they start in it. `n` is at most `MAX_CHUNK`.
    fn fill(&mut self, n: usize) -> Result<usize, TapeError> {
        let in_buf = self.pos >= self.buf_start
            && self.pos + n as u64 <= self.buf_start + self.buf_len as u64;
        if in_buf {
            return Ok((self.pos - self.buf_start) as usize);
        }
        if self.buf.len() < n {
            // Room for what is asked plus a frame header: a header read then
            // pulls in the payload chunk after it, one `pread` per frame.
            // At least a page's worth, at most what is left of the tape.
            let left = self.tape_len()?.saturating_sub(self.pos) as usize;
            let size = (n + HEADER_LEN).max(self.read_ahead).min(left.max(n));
            self.buf.resize(size, 0);
        }
        // A tape rewritten in place would hand out bytes it never held.
        self.src
            .unchanged()
            .map_err(|changed| self.error(self.pos, TapeErrorKind::Changed(changed)))?;
        let mut got = 0;
        while got < n {
            match self
                .src
                .read_at(&mut self.buf[got..], self.pos + got as u64)
            {
                Ok(0) => break,
                Ok(read) => got += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.error(self.pos + got as u64, TapeErrorKind::Io(err))),
            }
        }
        self.buf_start = self.pos;
        self.buf_len = got;
        if got < n {
            // The tape shrank under us after its length was taken.
            let kind = TapeErrorKind::TruncatedPayload {
                announced: n as u32,
                present: got as u64,
            };
            return Err(self.error(self.frame_offset, kind));
        }
        Ok(0)
    }

    /// The next frame; skips whatever payload of the previous frame was not
    /// read. `Ok(None)` at a clean end of the tape.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, TapeError> {
        self.pos += self.payload_left as u64;
        self.payload_left = 0;
        let total = self.tape_len()?;
        let offset = self.pos;
        self.frame_offset = offset;
        if offset >= total {
            if self.frames == 0 {
                return Err(self.error(0, TapeErrorKind::NotATape { empty: true }));
            }
            return Ok(None);
        }
        let left = total - offset;
        if left < HEADER_LEN as u64 {
            if self.frames == 0 {
                return Err(self.error(0, TapeErrorKind::NotATape { empty: false }));
            }
            return Err(self.error(offset, TapeErrorKind::TruncatedHeader { present: left }));
        }
        let at = self.fill(HEADER_LEN)?;
        let mut bytes = [0; HEADER_LEN];
        bytes.copy_from_slice(&self.buf[at..at + HEADER_LEN]);
        let header = Header::parse(bytes);
        let kind = match header.kind() {
            Some(kind) => kind,
            None if self.frames == 0 => {
                return Err(self.error(0, TapeErrorKind::NotATape { empty: false }));
            }
            None => return Err(self.error(offset, TapeErrorKind::UnknownOpcode(header.opcode))),
        };
        if matches!(kind, Kind::Eof(_)) && header.len != 0 {
            return Err(self.error(offset, TapeErrorKind::EofWithLength(header.len)));
        }
        if matches!(kind, Kind::Any(_)) && header.len != WILDCARD_LEN {
            return Err(self.error(offset, TapeErrorKind::WildcardLength(header.len)));
        }
        // Checked here, before any of it is read: a span payload is held
        // whole, so its size is bounded.
        if matches!(kind, Kind::Span(_)) && header.len as usize > span::MAX_PAYLOAD {
            let reason = format!(
                "payload of {} bytes, at most {} expected",
                header.len,
                span::MAX_PAYLOAD
            );
            return Err(self.error(offset, TapeErrorKind::BadSpan(reason)));
        }
        let payload = header.payload_len();
        let present = left - HEADER_LEN as u64;
        let magic_len = MAGIC.len() as u64;
        if self.frames == 0
            && (kind != Kind::Noop || payload as u64 != magic_len || present < magic_len)
        {
            return Err(self.error(0, TapeErrorKind::NotATape { empty: false }));
        }
        if present < payload as u64 {
            let kind = TapeErrorKind::TruncatedPayload {
                announced: header.len,
                present,
            };
            return Err(self.error(offset, kind));
        }
        self.pos += HEADER_LEN as u64;
        if self.frames == 0 {
            self.check_magic()?;
        }
        self.payload_left = payload;
        let frame = Frame {
            index: self.frames,
            offset,
            kind,
            len: header.len,
        };
        self.frames += 1;
        Ok(Some(frame))
    }

    /// The first frame's payload must be the magic.
    fn check_magic(&mut self) -> Result<(), TapeError> {
        let at = self.fill(MAGIC.len())?;
        if &self.buf[at..at + MAGIC.len()] != MAGIC {
            return Err(self.error(0, TapeErrorKind::NotATape { empty: false }));
        }
        Ok(())
    }

    /// The next bytes of the current frame's payload, at most `max` (and at
    /// most `MAX_CHUNK`), without consuming them. Empty when the payload is
    /// used up.
    pub fn peek_payload(&mut self, max: usize) -> Result<&[u8], TapeError> {
        let n = max.min(self.payload_left).min(MAX_CHUNK);
        if n == 0 {
            return Ok(&[]);
        }
        let at = self.fill(n)?;
        Ok(&self.buf[at..at + n])
    }

    /// Marks `n` bytes of the payload as used.
    pub fn consume_payload(&mut self, n: usize) {
        debug_assert!(n <= self.payload_left, "consuming past the payload");
        let n = n.min(self.payload_left);
        self.pos += n as u64;
        self.payload_left -= n;
    }

    /// Appends the rest of the current frame's payload to `out`, in chunks.
    pub fn read_payload_into(&mut self, out: &mut Vec<u8>) -> Result<(), TapeError> {
        loop {
            let chunk = self.read_payload(MAX_CHUNK)?;
            if chunk.is_empty() {
                return Ok(());
            }
            out.extend_from_slice(chunk);
        }
    }

    /// An error about the frame `next_frame` returned last.
    fn frame_error(&self, kind: TapeErrorKind) -> TapeError {
        TapeError {
            offset: self.frame_offset,
            frame: self.frames.saturating_sub(1),
            kind,
        }
    }

    /// The byte count of the wildcard frame just read.
    pub fn read_wildcard(&mut self) -> Result<u32, TapeError> {
        let bytes = self.read_payload(WILDCARD_LEN as usize)?;
        if bytes.len() < WILDCARD_LEN as usize {
            let kind = TapeErrorKind::WildcardLength(bytes.len() as u32);
            return Err(self.frame_error(kind));
        }
        Ok(BigEndian::read_u32(bytes))
    }

    /// The span of the span frame just read, its payload checked
    /// (`Span::parse`).
    pub fn read_span(&mut self) -> Result<Span, TapeError> {
        let parsed = Span::parse(self.read_payload(span::MAX_PAYLOAD)?);
        parsed.map_err(|err| self.frame_error(TapeErrorKind::BadSpan(err.0)))
    }

    /// The next chunk of the current frame's payload (at most `max` bytes),
    /// consumed. Empty when the payload is used up.
    pub fn read_payload(&mut self, max: usize) -> Result<&[u8], TapeError> {
        let n = max.min(self.payload_left).min(MAX_CHUNK);
        if n == 0 {
            return Ok(&[]);
        }
        let at = self.fill(n)?;
        self.consume_payload(n);
        Ok(&self.buf[at..at + n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::{Direction, Writer};

    fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut writer = Writer::new(&mut bytes).unwrap();
        build(&mut writer);
        bytes
    }

    fn err(bytes: &[u8]) -> String {
        let mut reader = Reader::new(bytes);
        loop {
            match reader.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("tape read without error"),
                Err(err) => return err.to_string(),
            }
        }
    }

    #[test]
    fn unread_payload_is_skipped() {
        let bytes = tape(|w| {
            w.data(Direction::ClientToServer, b"skipped").unwrap();
            w.data(Direction::ServerToClient, b"read").unwrap();
        });
        let mut reader = Reader::new(bytes.as_slice());
        reader.next_frame().unwrap();
        let first = reader.next_frame().unwrap().unwrap();
        assert_eq!((first.index, first.offset, first.len), (1, 12, 7));
        let second = reader.next_frame().unwrap().unwrap();
        assert_eq!(second.kind, Kind::Data(Direction::ServerToClient));
        assert_eq!(reader.read_payload(100).unwrap(), b"read");
        assert_eq!(reader.read_payload(100).unwrap(), b"");
        assert!(reader.next_frame().unwrap().is_none());
    }

    #[test]
    fn peek_then_consume_in_parts() {
        let bytes = tape(|w| w.data(Direction::ClientToServer, b"abcdef").unwrap());
        let mut reader = Reader::new(bytes.as_slice());
        reader.next_frame().unwrap();
        reader.next_frame().unwrap();
        assert_eq!(reader.peek_payload(4).unwrap(), b"abcd");
        reader.consume_payload(1);
        assert_eq!(reader.peek_payload(100).unwrap(), b"bcdef");
        reader.consume_payload(5);
        assert_eq!(reader.payload_left, 0);
        assert_eq!(reader.peek_payload(100).unwrap(), b"");
    }

    #[test]
    fn errors_name_offset_and_frame() {
        let good = tape(|w| w.data(Direction::ClientToServer, b"hello").unwrap());
        assert_eq!(
            err(&good[..good.len() - 2]),
            "tape truncated at offset 12 in frame 1: 5 payload bytes announced, 3 present"
        );
        let mut cut_header = good.clone();
        cut_header.extend_from_slice(&[0x02, 0x00]);
        assert_eq!(
            err(&cut_header),
            "tape truncated at offset 21 in frame 2: 4-byte frame header incomplete, 2 bytes present"
        );
        let mut unknown = good.clone();
        unknown.extend_from_slice(&[0x42, 0, 0, 0]);
        assert_eq!(err(&unknown), "unknown opcode 0x42 at offset 21 in frame 2");
        let mut eof = good.clone();
        eof.extend_from_slice(&[0x04, 0, 0, 5]);
        assert_eq!(
            err(&eof),
            "EOF frame with non-zero length 5 at offset 21 in frame 2"
        );
        let mut wildcard = good.clone();
        wildcard.extend_from_slice(&[0x81, 0, 0, 3, 0, 0, 1]);
        assert_eq!(
            err(&wildcard),
            "wildcard frame with length 3 at offset 21 in frame 2, expected 4"
        );
        assert_eq!(err(b""), "not a tape: empty file");
        assert_eq!(
            err(b"GET / HTTP/1.1\r\n"),
            "not a tape: no tcptape magic at offset 0"
        );
        assert_eq!(
            err(b"\0\0\0\x08tcptapX\0"),
            "not a tape: no tcptape magic at offset 0"
        );
        assert_eq!(err(b"\0\0"), "not a tape: no tcptape magic at offset 0");
    }

    #[test]
    fn spans_are_read_and_checked() {
        use crate::tape::span::{MAX_PAYLOAD, SpanKind};
        let capture = Span {
            kind: SpanKind::Capture("token".into()),
            len: 12,
            min: 8,
            max: 40,
        };
        let bytes = tape(|w| {
            w.span(Direction::ServerToClient, &capture).unwrap();
            w.data(Direction::ServerToClient, b"abcdefghijkl").unwrap();
        });
        let mut reader = Reader::new(bytes.as_slice());
        reader.next_frame().unwrap();
        let frame = reader.next_frame().unwrap().unwrap();
        assert_eq!(frame.kind, Kind::Span(Direction::ServerToClient));
        assert_eq!(reader.read_span().unwrap(), capture);
        let data = reader.next_frame().unwrap().unwrap();
        assert_eq!(data.kind, Kind::Data(Direction::ServerToClient));

        // A payload that is no span names its frame and offset.
        let mut bad = tape(|w| w.data(Direction::ClientToServer, b"hello").unwrap());
        let mut payload = Span::fixed(SpanKind::Vary, 3).emit();
        payload[0] = 7;
        bad.extend_from_slice(&[0x84, 0, 0, payload.len() as u8]);
        bad.extend_from_slice(&payload);
        let mut reader = Reader::new(bad.as_slice());
        while let Some(frame) = reader.next_frame().unwrap() {
            if matches!(frame.kind, Kind::Span(_)) {
                let err = reader.read_span().unwrap_err();
                assert_eq!(
                    err.to_string(),
                    "bad span frame at offset 21 in frame 2: unknown span kind 7"
                );
            }
        }

        // A span payload too long to be one is refused at its header,
        // before it is read.
        let mut long = bad[..21].to_vec();
        let len = MAX_PAYLOAD as u32 + 1;
        long.extend_from_slice(&[0x85, 0, 0, len as u8]);
        assert_eq!(
            err(&long),
            format!(
                "bad span frame at offset 21 in frame 2: payload of {len} bytes, at most {MAX_PAYLOAD} expected"
            )
        );
    }

    /// A source that fails, or claims more bytes than it has.
    struct Faulty {
        bytes: Vec<u8>,
        claimed: u64,
        fail: bool,
    }

    impl Source for Faulty {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            if self.fail {
                return Err(io::Error::other("device gone"));
            }
            self.bytes.read_at(buf, offset)
        }

        fn size(&self) -> io::Result<u64> {
            Ok(self.claimed)
        }
    }

    #[test]
    fn a_failing_read_is_an_error_naming_the_offset() {
        let src = Faulty {
            bytes: Vec::new(),
            claimed: 100,
            fail: true,
        };
        let err = Reader::new(src).next_frame().unwrap_err();
        assert_eq!(err.to_string(), "read error at offset 0: device gone");
    }

    #[test]
    fn a_tape_that_shrinks_while_read_is_reported() {
        let good = tape(|w| w.data(Direction::ClientToServer, b"hello").unwrap());
        // The size was taken when the tape was longer.
        let src = Faulty {
            claimed: good.len() as u64 + 10,
            bytes: good,
            fail: false,
        };
        let mut reader = Reader::new(src);
        reader.next_frame().unwrap();
        reader.next_frame().unwrap();
        reader.read_payload(5).unwrap();
        let err = reader.next_frame().unwrap_err();
        assert!(
            err.to_string().starts_with("tape truncated at offset 21"),
            "{err}"
        );
    }

    #[test]
    fn buffer_stays_bounded_for_huge_frames() {
        let payload = vec![0xabu8; 3 * MAX_CHUNK + 5];
        let bytes = tape(|w| w.data(Direction::ClientToServer, &payload).unwrap());
        let mut reader = Reader::new(bytes.as_slice());
        reader.next_frame().unwrap();
        reader.next_frame().unwrap();
        let mut total = 0;
        loop {
            let chunk = reader.read_payload(usize::MAX).unwrap();
            if chunk.is_empty() {
                break;
            }
            assert!(chunk.len() <= MAX_CHUNK);
            total += chunk.len();
        }
        assert_eq!(total, payload.len());
        assert!(reader.buf.len() <= MAX_CHUNK + HEADER_LEN);
    }

    #[test]
    fn small_tapes_get_small_buffers() {
        let bytes = tape(|w| w.data(Direction::ClientToServer, b"hi").unwrap());
        let mut reader = Reader::new(bytes.as_slice());
        while reader.next_frame().unwrap().is_some() {}
        assert!(reader.buf.len() <= bytes.len(), "{}", reader.buf.len());
    }
}
