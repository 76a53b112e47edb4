//! The binary tape being built from the text, the line each of its bytes
//! came from, and the check of where its spans stand.

use super::body::{Body, Pending, Segment};
use super::{Failure, LineMap, Place};
use crate::tape::Writer;
use crate::tape::frame::{Direction, HEADER_LEN, Header, MAX_LEN, WILDCARD_LEN, opcode};
use crate::tape::placement::Checker;
use crate::tape::span::Span;

/// The binary tape being built (written by the one tape writer), the
/// line each of its bytes came from, and the check of where its spans
/// stand.
pub(super) struct Tape {
    writer: Writer<Vec<u8>>,
    pub(super) lines: LineMap,
    pub(super) checker: Checker<Place>,
}

impl Tape {
    /// A tape with its magic written, which the header line stands for.
    pub(super) fn new() -> Tape {
        Tape {
            writer: Writer::in_memory(),
            lines: LineMap::default(),
            checker: Checker::default(),
        }
    }

    pub(super) fn offset(&self) -> u64 {
        self.writer.get_ref().len() as u64
    }

    /// The header line: the magic frame, written when the tape began.
    pub(super) fn magic(&mut self, line: u32) {
        self.lines.note(0, line);
    }

    pub(super) fn into_parts(self) -> (Vec<u8>, LineMap, Checker<Place>) {
        (self.writer.into_inner(), self.lines, self.checker)
    }

    /// Writes a frame as it is: the text says every field.
    fn put(&mut self, header: Header, payload: &[u8]) {
        self.writer.put_frame(header, payload);
    }

    /// A frame without payload (delay, eof), all of it on `line`.
    pub(super) fn bare(&mut self, header: Header, line: u32) {
        self.lines.note(self.offset(), line);
        self.put(header, &[]);
    }

    /// A half-close, on `line`.
    pub(super) fn eof(&mut self, dir: Direction, line: u32) -> Result<(), Failure> {
        self.checker.eof(dir)?;
        self.bare(Header::eof(dir), line);
        Ok(())
    }

    /// A span frame of its own (`span < vary 29`), at `place`.
    pub(super) fn span(
        &mut self,
        dir: Direction,
        span: &Span,
        place: Place,
    ) -> Result<(), Failure> {
        self.checker.span(dir, span, place)?;
        self.lines.note(self.offset(), place.0);
        self.span_frame(dir, span);
        Ok(())
    }

    pub(super) fn span_frame(&mut self, dir: Direction, span: &Span) {
        let payload = span.emit();
        self.put(
            Header::new(dir.span_opcode(), payload.len() as u32),
            &payload,
        );
    }

    /// Writes a finished frame: a data frame becomes a frame per run of
    /// bytes (split at `MAX_LEN`), per wildcard, and per span and the
    /// bytes it covers.
    pub(super) fn emit(&mut self, frame: Pending) -> Result<(), Failure> {
        let mut starts = frame.starts.into_iter().peekable();
        match frame.body {
            Body::Data {
                open: Some(open), ..
            } => {
                return Err(Failure::At {
                    place: open.place,
                    message:
                        "unclosed '[': a span ends with ']' (it may go on over indented lines)"
                            .into(),
                });
            }
            Body::Data { dir, segments, .. } => {
                let mut at = 0u64;
                for segment in segments {
                    match segment {
                        Segment::Bytes(bytes) | Segment::Covered(bytes) if bytes.is_empty() => {
                            self.frame(Header::data(dir, 0), &[], at, &mut starts);
                        }
                        Segment::Bytes(bytes) | Segment::Covered(bytes) => {
                            self.checker.data(dir, bytes.len() as u64, &bytes)?;
                            for chunk in bytes.chunks(MAX_LEN as usize) {
                                let header = Header::data(dir, chunk.len());
                                self.frame(header, chunk, at, &mut starts);
                                at += chunk.len() as u64;
                            }
                        }
                        Segment::Any(count, place) => {
                            self.checker.any(dir, u64::from(count), place)?;
                            self.note_starts(at, u32::MAX, &mut starts);
                            let header = Header::new(dir.any_opcode(), WILDCARD_LEN);
                            self.put(header, &count.to_be_bytes());
                            // Lines that start inside the wildcard have no
                            // frame of their own: they are noted where the
                            // next frame starts.
                            at = at.saturating_add(u64::from(count));
                        }
                        Segment::Span(span, place) => {
                            self.checker.span(dir, &span, place)?;
                            // The span frame is the line of its `[`; lines
                            // after it that start with its bytes are the
                            // lines of those bytes.
                            self.note_starts(at, place.0, &mut starts);
                            self.lines.note(self.offset(), place.0);
                            self.span_frame(dir, &span);
                        }
                    }
                }
            }
            Body::Noop(payload) => {
                let header = Header::new(opcode::NOOP, payload.len() as u32);
                self.frame(header, &payload, 0, &mut starts);
            }
            Body::Extension(op, payload) => {
                let header = Header::new(op, payload.len() as u32);
                self.frame(header, &payload, 0, &mut starts);
            }
        }
        // Lines whose items added nothing, at the frame's end.
        self.note_starts(u64::MAX, u32::MAX, &mut starts);
        Ok(())
    }

    /// Notes the lines (up to line `last`) whose items start at or before
    /// `at` of the frame being built as starting here, at the next frame
    /// header.
    pub(super) fn note_starts(&mut self, at: u64, last: u32, starts: &mut Starts) {
        while let Some((_, line)) = starts.next_if(|&(start, line)| start <= at && line <= last) {
            self.lines.note(self.offset(), line);
        }
    }

    /// Writes one frame whose payload is the bytes from `at` in the frame
    /// being built, noting the lines that start in it.
    pub(super) fn frame(&mut self, header: Header, payload: &[u8], at: u64, starts: &mut Starts) {
        self.note_starts(at, u32::MAX, starts);
        let payload_at = self.offset() + HEADER_LEN as u64;
        let end = at + payload.len() as u64;
        while let Some((start, line)) = starts.next_if(|&(start, _)| start < end) {
            self.lines.note(payload_at + (start - at), line);
        }
        self.put(header, payload);
    }
}

/// Where the lines of a frame start, in order, as they are written.
pub(super) type Starts = std::iter::Peekable<std::vec::IntoIter<(u64, u32)>>;
