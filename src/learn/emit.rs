//! Writing the learned tape: the first recording's frames, in their
//! order, with a span frame before the bytes of each span. A data frame
//! is cut where a span starts and ends, and the bytes a span covers go in
//! one data frame right after it where the recording had them in a row
//! (so that the text form prints them together, `[vary "..."]`).

use std::io::{self, Write};
use std::ops::Range;

use super::recording::{Item, Recording};
use crate::tape::frame::{HEADER_LEN, opcode};
use crate::tape::placement::{Checker, Fault, FramePlace};
use crate::tape::{Direction, Span, TapeError, TapeErrorKind, Writer};

/// A span to write: over the base's bytes `range` of `dir`.
#[derive(Debug, Clone)]
pub struct Planned {
    pub dir: Direction,
    pub range: Range<usize>,
    pub span: Span,
}

/// Per planned span: its frame's index and offset in the tape written.
pub type Frames = Vec<(u64, u64)>;

/// Writes `base` with the `planned` spans (in order of their ranges in
/// each direction, none overlapping) to `out`: where each span's frame is.
pub fn write(base: &Recording, planned: &[Planned], out: &mut dyn Write) -> io::Result<Frames> {
    let writer = Writer::new(out)?;
    let out = emit(base, planned, Target::Tape(writer, None));
    match out.target {
        Target::Tape(_, Some(err)) => Err(err),
        Target::Tape(_, None) => Ok(out.spans),
        _ => unreachable!("a tape is written"),
    }
}

/// Checks where the `planned` spans would stand in `base` (the rules of
/// `placement::check_tape`), without writing the tape.
pub fn check(base: &Recording, planned: &[Planned]) -> Result<(), TapeError> {
    let out = emit(base, planned, Target::Check(Box::default(), None));
    let Target::Check(checker, fault) = out.target else {
        unreachable!("a tape is checked")
    };
    match fault {
        Some(fault) => Err(misplaced(fault)),
        None => checker.finish().map_err(misplaced),
    }
}

fn misplaced(fault: Fault<FramePlace>) -> TapeError {
    let reason = fault.problem.message(|p| format!("frame {}", p.index));
    TapeError {
        offset: fault.at.offset,
        frame: fault.at.index,
        kind: TapeErrorKind::SpanRule(reason),
    }
}

fn emit<'a>(base: &Recording, planned: &[Planned], target: Target<'a>) -> Out<'a> {
    let mut out = Out {
        target,
        offset: 0,
        frames: 1,
        spans: vec![(0, 0); planned.len()],
    };
    out.offset = out.frame_len(&[0; 8]);
    let order = [Direction::ClientToServer, Direction::ServerToClient].map(|dir| {
        (0..planned.len())
            .filter(|&i| planned[i].dir == dir)
            .collect::<Vec<_>>()
    });
    let mut cursors = [Cursor::default(), Cursor::default()];
    for item in &base.items {
        // Bytes of a span go together only across data frames in a row.
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let next_is_more =
                matches!(item, Item::Data { dir: d, len, .. } if *d == dir && *len > 0);
            if !next_is_more {
                cursors[dir.index()].flush(&mut out, dir);
            }
        }
        match item {
            Item::Raw(raw) => {
                if let Some(dir) = eof_of(raw) {
                    // Spans of no bytes left at the end of the stream go
                    // before its EOF.
                    let end = base.stream(dir).len();
                    let cursor = &mut cursors[dir.index()];
                    cursor.pending_at(&mut out, planned, &order[dir.index()], dir, end);
                }
                out.raw(raw);
            }
            Item::Data { dir, len: 0, .. } => out.data(*dir, &[]),
            Item::Data { dir, start, len } => {
                let stream = base.stream(*dir);
                let cursor = &mut cursors[dir.index()];
                let range = *start..start + len;
                cursor.frame(&mut out, planned, &order[dir.index()], stream, *dir, range);
            }
        }
    }
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        let cursor = &mut cursors[dir.index()];
        cursor.flush(&mut out, dir);
        let end = base.stream(dir).len();
        cursor.pending_at(&mut out, planned, &order[dir.index()], dir, end);
    }
    out
}

/// The direction an EOF frame closes.
fn eof_of(raw: &[u8]) -> Option<Direction> {
    match raw.first() {
        Some(&opcode::CLIENT_TO_SERVER_EOF) => Some(Direction::ClientToServer),
        Some(&opcode::SERVER_TO_CLIENT_EOF) => Some(Direction::ServerToClient),
        _ => None,
    }
}

/// Where the frames go: into a tape (and the first error writing it), or
/// through the span checker only.
enum Target<'a> {
    Tape(Writer<&'a mut dyn Write>, Option<io::Error>),
    /// The checker, and the first fault it found.
    Check(Box<Checker<FramePlace>>, Option<Fault<FramePlace>>),
}

/// The tape being written, counting frames and bytes.
struct Out<'a> {
    target: Target<'a>,
    /// Bytes written.
    offset: u64,
    /// Frames written (the magic is frame 0).
    frames: u64,
    spans: Vec<(u64, u64)>,
}

impl Out<'_> {
    fn frame_len(&self, payload: &[u8]) -> u64 {
        (HEADER_LEN + payload.len()) as u64
    }

    fn checked(
        &mut self,
        check: impl FnOnce(&mut Checker<FramePlace>) -> Result<(), Fault<FramePlace>>,
    ) {
        if let Target::Check(checker, fault @ None) = &mut self.target {
            *fault = check(checker).err();
        }
    }

    fn data(&mut self, dir: Direction, bytes: &[u8]) {
        // Pieces of one recorded frame: never over a frame's length.
        match &mut self.target {
            Target::Tape(writer, error @ None) => *error = writer.data(dir, bytes).err(),
            Target::Tape(..) => {}
            Target::Check(..) => self.checked(|c| c.data(dir, bytes.len() as u64, bytes)),
        }
        self.offset += self.frame_len(bytes);
        self.frames += 1;
    }

    fn raw(&mut self, raw: &[u8]) {
        match &mut self.target {
            Target::Tape(writer, error @ None) => *error = writer.get_mut().write_all(raw).err(),
            Target::Tape(..) => {}
            Target::Check(..) => {
                if let Some(dir) = eof_of(raw) {
                    self.checked(|c| c.eof(dir));
                }
            }
        }
        self.offset += raw.len() as u64;
        self.frames += 1;
    }

    fn span(&mut self, index: usize, planned: &Planned) {
        let at = FramePlace {
            index: self.frames,
            offset: self.offset,
        };
        self.spans[index] = (at.index, at.offset);
        match &mut self.target {
            Target::Tape(writer, error @ None) => {
                *error = writer.span(planned.dir, &planned.span).err()
            }
            Target::Tape(..) => {}
            Target::Check(..) => self.checked(|c| c.span(planned.dir, &planned.span, at)),
        }
        self.offset += self.frame_len(&planned.span.emit());
        self.frames += 1;
    }
}

/// Where the writing of one direction is.
#[derive(Default)]
struct Cursor {
    /// The next planned span of the direction (index into its order).
    next: usize,
    /// The span whose bytes are being written, and those of them held for
    /// one data frame.
    open: Option<usize>,
    held: Vec<u8>,
}

impl Cursor {
    /// Writes the bytes held for the open span.
    fn flush(&mut self, out: &mut Out, dir: Direction) {
        if !self.held.is_empty() {
            out.data(dir, &self.held);
            self.held.clear();
        }
    }

    /// Writes the spans of no bytes planned at `at`.
    fn pending_at(
        &mut self,
        out: &mut Out,
        planned: &[Planned],
        order: &[usize],
        dir: Direction,
        at: usize,
    ) {
        while let Some(&i) = order.get(self.next) {
            if planned[i].range != (at..at) {
                break;
            }
            out.span(i, &planned[i]);
            out.data(dir, &[]);
            self.next += 1;
        }
    }

    /// Writes a data frame of the recording, the bytes `range` of
    /// `stream`, with the spans in it.
    fn frame(
        &mut self,
        out: &mut Out,
        planned: &[Planned],
        order: &[usize],
        stream: &[u8],
        dir: Direction,
        range: Range<usize>,
    ) {
        let mut at = range.start;
        loop {
            if let Some(open) = self.open {
                let end = planned[open].range.end.min(range.end);
                self.held.extend_from_slice(&stream[at..end]);
                at = end;
                if at < planned[open].range.end {
                    // The span goes on in the next data frame.
                    return;
                }
                self.flush(out, dir);
                self.open = None;
                continue;
            }
            let next = order.get(self.next).map(|&i| (i, &planned[i]));
            match next {
                // A span that starts here (or has no bytes, at the end).
                Some((i, span))
                    if span.range.start == at && (at < range.end || span.range.is_empty()) =>
                {
                    out.span(i, span);
                    self.next += 1;
                    if span.range.is_empty() {
                        out.data(dir, &[]);
                    } else {
                        self.open = Some(i);
                    }
                }
                _ if at >= range.end => return,
                // Recorded bytes up to the next span, or the frame's end.
                next => {
                    let end = next
                        .map_or(range.end, |(_, span)| span.range.start)
                        .clamp(at, range.end);
                    out.data(dir, &stream[at..end]);
                    at = end;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Reader;
    use crate::tape::SpanKind;
    use crate::tape::text::print;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn recording(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Recording {
        let mut bytes = Vec::new();
        build(&mut Writer::new(&mut bytes).unwrap());
        Recording::from_bytes("base", &bytes).unwrap()
    }

    fn vary(dir: Direction, range: Range<usize>) -> Planned {
        let span = Span::fixed(SpanKind::Vary, range.len() as u32);
        Planned { dir, range, span }
    }

    /// The tape written, and its frames.
    struct Written {
        bytes: Vec<u8>,
        frames: Frames,
    }

    fn written(base: &Recording, planned: &[Planned]) -> Written {
        let mut bytes = Vec::new();
        let frames = write(base, planned, &mut bytes).unwrap();
        Written { bytes, frames }
    }

    fn text(written: &Written) -> String {
        crate::tape::placement::check_tape(&mut Reader::new(written.bytes.as_slice())).unwrap();
        let mut out = Vec::new();
        print(&mut Reader::new(written.bytes.as_slice()), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn spans_cut_frames_and_keep_their_bytes_together() {
        let base = recording(|w| {
            w.data(S2C, b"Date: Wed, 25").unwrap();
            w.data(S2C, b" Nov\r\nid=7").unwrap();
            w.delay(3).unwrap();
            w.data(C2S, b"x=abc").unwrap();
            w.eof(C2S).unwrap();
        });
        let planned = [
            vary(S2C, 6..17),
            vary(S2C, 22..23),
            vary(C2S, 2..5),
            vary(C2S, 5..5),
        ];
        let written = written(&base, &planned);
        assert_eq!(
            text(&written),
            "tcptape text 1\n\
             < \"Date: \"\n\
             < [vary \"Wed, 25 Nov\"]\n\
             < \"\\r\\n\"\n  \"id=\"\n\
             < [vary \"7\"]\n\
             delay 3ms\n\
             > \"x=\"\n\
             > [vary \"abc\"]\n\
             > [vary \"\"]\n\
             eof >\n"
        );
        assert_eq!(written.frames[0], (2, 22));
        assert_eq!(written.frames[3].0, 11);
    }

    #[test]
    fn a_span_across_other_frames_keeps_them_in_place() {
        let base = recording(|w| {
            w.data(S2C, b"ab").unwrap();
            w.delay(5).unwrap();
            w.data(S2C, b"cd").unwrap();
            w.data(C2S, b"").unwrap();
        });
        let written = written(&base, &[vary(S2C, 1..3)]);
        assert_eq!(
            text(&written),
            "tcptape text 1\n\
             < \"a\"\n\
             span < vary 2\n\
             < \"b\"\n\
             delay 5ms\n\
             < \"c\"\n\
             < \"d\"\n\
             > \"\"\n"
        );
    }

    #[test]
    fn a_span_of_no_bytes_at_the_end_of_a_stream_without_frames() {
        let base = recording(|w| {
            w.data(C2S, b"hi").unwrap();
            w.eof(S2C).unwrap();
        });
        let span = Span {
            kind: SpanKind::Vary,
            len: 0,
            min: 0,
            max: 16,
        };
        let planned = [Planned {
            dir: S2C,
            range: 0..0,
            span,
        }];
        let written = written(&base, &planned);
        assert_eq!(
            text(&written),
            "tcptape text 1\n> \"hi\"\n< [vary 0..16 \"\"]\neof <\n"
        );
    }
}
