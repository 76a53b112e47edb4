//! Writes tapes frame by frame: the magic first, long data split into
//! frames of at most `MAX_LEN` bytes, delays capped.
//!
//! The recording proxy does not use this writer: it writes frames straight
//! from its rings (`proxy::recorder`). This one serves everything else
//! that makes tapes: the text form's parser, `learn`, capture import,
//! tests, benches.

use std::io::{self, Write};

use super::frame::{Direction, Header, MAX_LEN, WILDCARD_LEN, magic_frame, opcode};
use super::span::Span;

pub struct Writer<W: Write> {
    inner: W,
}

impl Writer<Vec<u8>> {
    /// A tape built in memory.
    pub(crate) fn in_memory() -> Writer<Vec<u8>> {
        Writer {
            inner: magic_frame().to_vec(),
        }
    }

    /// `write_frame` into memory, which takes every write.
    pub(crate) fn put_frame(&mut self, header: Header, payload: &[u8]) {
        self.inner.extend_from_slice(&header.emit());
        self.inner.extend_from_slice(payload);
    }
}

impl<W: Write> Writer<W> {
    /// Starts a tape: writes the magic frame.
    pub fn new(mut inner: W) -> io::Result<Writer<W>> {
        inner.write_all(&magic_frame())?;
        Ok(Writer { inner })
    }

    fn frame(&mut self, header: Header, payload: &[u8]) -> io::Result<()> {
        let head = header.emit();
        if payload.is_empty() {
            return self.inner.write_all(&head);
        }
        // Header and payload in one call where the writer allows it,
        // without copying the payload.
        let mut slices = [io::IoSlice::new(&head), io::IoSlice::new(payload)];
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match self.inner.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Data of one direction; longer than `MAX_LEN` becomes several frames.
    /// An empty slice writes one empty data frame.
    pub fn data(&mut self, dir: Direction, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return self.frame(Header::data(dir, 0), &[]);
        }
        for chunk in bytes.chunks(MAX_LEN as usize) {
            self.frame(Header::data(dir, chunk.len()), chunk)?;
        }
        Ok(())
    }

    /// A pause; none under 1 ms, capped at `MAX_LEN` ms.
    pub fn delay(&mut self, ms: u64) -> io::Result<()> {
        if ms == 0 {
            return Ok(());
        }
        self.frame(Header::delay(ms), &[])
    }

    pub fn eof(&mut self, dir: Direction) -> io::Result<()> {
        self.frame(Header::eof(dir), &[])
    }

    /// A wildcard: `count` bytes of `dir`, whatever their value, in one
    /// frame: its payload is the count as a u32, so counts up to
    /// `u32::MAX` fit and larger ones are an error.
    pub fn any(&mut self, dir: Direction, count: u64) -> io::Result<()> {
        let count = u32::try_from(count).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a wildcard counts at most {} bytes, not {count}", u32::MAX),
            )
        })?;
        self.frame(
            Header::new(dir.any_opcode(), WILDCARD_LEN),
            &count.to_be_bytes(),
        )
    }

    /// A span over the next `span.len` bytes of `dir`, which the caller
    /// writes as data after it. A span that does not `check` is refused.
    pub fn span(&mut self, dir: Direction, span: &Span) -> io::Result<()> {
        span.check()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.0))?;
        self.raw(dir.span_opcode(), &span.emit())
    }

    /// The recording ended before the session did: a CUT frame saying
    /// why. Nothing of the session follows it.
    pub fn cut(&mut self, reason: &str) -> io::Result<()> {
        self.raw(opcode::CUT, reason.as_bytes())
    }

    pub fn noop(&mut self, payload: &[u8]) -> io::Result<()> {
        self.raw(opcode::NOOP, payload)
    }

    /// An extension frame (opcode 0x80-0xFF) that older readers skip.
    pub fn extension(&mut self, op: u8, payload: &[u8]) -> io::Result<()> {
        if op < opcode::EXTENSION_MIN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("opcode {op:#04x} is not an extension opcode (0x80-0xff)"),
            ));
        }
        self.raw(op, payload)
    }

    fn raw(&mut self, op: u8, payload: &[u8]) -> io::Result<()> {
        if payload.len() > MAX_LEN as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} bytes do not fit in one frame", payload.len()),
            ));
        }
        self.frame(Header::new(op, payload.len() as u32), payload)
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_then_frames() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.data(Direction::ClientToServer, b"hi").unwrap();
        w.delay(0).unwrap();
        w.delay(7).unwrap();
        w.eof(Direction::ServerToClient).unwrap();
        assert_eq!(
            w.into_inner(),
            b"\0\0\0\x08tcptape\0\x01\0\0\x02hi\x03\0\0\x07\x05\0\0\0"
        );
    }

    #[test]
    fn a_cut_frame_carries_its_reason() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.cut("stopped").unwrap();
        assert_eq!(&w.get_ref()[12..], b"\x83\0\0\x07stopped");
        assert!(w.cut(&"x".repeat(MAX_LEN as usize + 1)).is_err());
        assert_eq!(w.get_ref().len(), 12 + 11, "nothing written for it");
    }

    #[test]
    fn bad_extension_and_oversized_payloads_are_refused() {
        let mut w = Writer::new(Vec::new()).unwrap();
        assert!(w.extension(0x7f, b"").is_err());
        assert!(w.noop(&vec![0; MAX_LEN as usize + 1]).is_err());
        assert!(
            w.any(Direction::ClientToServer, u64::from(u32::MAX) + 1)
                .is_err()
        );
        assert_eq!(w.get_ref().len(), 12, "nothing written after the magic");
    }

    #[test]
    fn spans_are_checked_before_they_are_written() {
        use crate::tape::span::{MAX_SPAN, SpanKind};
        let mut w = Writer::new(Vec::new()).unwrap();
        w.span(Direction::ClientToServer, &Span::fixed(SpanKind::Vary, 3))
            .unwrap();
        assert_eq!(
            &w.get_ref()[12..],
            b"\x84\0\0\x0e\x01\0\0\0\x03\0\0\0\x03\0\0\0\x03\0"
        );
        let too_long = Span::fixed(SpanKind::Vary, MAX_SPAN + 1);
        let err = w.span(Direction::ClientToServer, &too_long).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("at most 65536"), "{err}");
        let unnamed = Span::fixed(SpanKind::Echo(String::new()), 3);
        assert!(w.span(Direction::ServerToClient, &unnamed).is_err());
        assert_eq!(w.get_ref().len(), 12 + 18, "nothing written for them");
    }

    #[test]
    fn a_wildcard_is_one_frame_whatever_its_count() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.any(Direction::ClientToServer, 20_000_000).unwrap();
        w.any(Direction::ServerToClient, u64::from(u32::MAX))
            .unwrap();
        w.any(Direction::ServerToClient, 0).unwrap();
        assert_eq!(
            &w.into_inner()[12..],
            b"\x81\0\0\x04\x01\x31\x2d\x00\x82\0\0\x04\xff\xff\xff\xff\x82\0\0\x04\0\0\0\0"
        );
    }
}
