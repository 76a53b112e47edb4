//! The learned tape as text: the header, a comment naming the recordings,
//! and each span with a comment saying why it is there.
//!
//! The comments are kept small (what each says but for line numbers) and
//! written as the tape prints, so that the text of a large tape is never
//! held in memory: a first print counts lines (where each span is, for the
//! comments that point at each other), the second writes the text.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};

use super::captures::{Facts, Piece};
use super::emit::Frames;
use super::lengths::Shape;
use super::plan::Plan;
use super::recording::Recording;
use crate::tape::text::print_annotated;
use crate::tape::{Direction, Reader, Source, Span};

/// What a span's comment says, but for line numbers.
#[derive(Debug)]
pub enum Note {
    Length {
        shape: Shape,
        differs: bool,
    },
    Piece {
        dir: Direction,
        seen: Seen,
        what: What,
        /// Part `part` of `parts` spans of a value longer than a span.
        part: u32,
        parts: u32,
    },
}

/// What a span of a piece is.
#[derive(Debug, Clone, Copy)]
pub enum What {
    Vary,
    /// The capture of `names[name]`.
    Capture {
        name: usize,
    },
    /// An echo of `names[name]`.
    Echo {
        name: usize,
    },
}

/// How the recordings' values at a piece differ.
#[derive(Debug)]
pub struct Seen {
    distinct: u32,
    recordings: u32,
    shortest: usize,
    longest: usize,
    grows: Growth,
}

/// Why a value of one length in every recording is a variable span.
#[derive(Debug, Clone, Copy)]
enum Growth {
    Fixed,
    Digits,
    AnyLength,
}

impl Note {
    /// The comment of `span`, the span (or part `part` of `parts`) of
    /// `piece`, which is `what`; `facts` are the piece's, of `recordings`.
    pub fn of_piece(
        piece: &Piece,
        (facts, recordings): (Facts, u32),
        span: &Span,
        what: What,
        (part, parts): (u32, u32),
    ) -> Note {
        let lengths = piece.ranges.iter().map(|r| r.len());
        let grows = match piece.is_fixed() && !span.is_fixed() {
            true if facts.numbers => Growth::Digits,
            true => Growth::AnyLength,
            false => Growth::Fixed,
        };
        let seen = Seen {
            distinct: facts.distinct,
            recordings,
            shortest: lengths.clone().min().unwrap_or(0),
            longest: lengths.max().unwrap_or(0),
            grows,
        };
        Note::Piece {
            dir: piece.dir,
            seen,
            what,
            part,
            parts,
        }
    }
}

/// The comments of a learned tape, and where its spans print.
#[derive(Debug)]
pub struct Notes {
    intro: String,
    notes: Vec<Note>,
    names: Vec<String>,
    /// Per span, the line it prints on.
    lines: Vec<u32>,
    /// (frame, span) of each span, by frame.
    frames: Vec<(u64, usize)>,
    /// Per name, the span that captures it.
    captures: Vec<usize>,
    /// (capture's span, echo span) of each echo, in order.
    echoes: Vec<(usize, usize)>,
}

/// The comments of the spans of `plan` (its notes and names), after
/// `intro`; where they print comes once the tape is written
/// (`Notes::place`).
pub fn describe(intro: String, plan: &mut Plan) -> Notes {
    let notes = std::mem::take(&mut plan.notes);
    let names = std::mem::take(&mut plan.names);
    let mut captures = vec![0; names.len()];
    for (span, note) in notes.iter().enumerate() {
        if let Note::Piece {
            what: What::Capture { name },
            ..
        } = note
        {
            captures[*name] = span;
        }
    }
    let mut echoes: Vec<(usize, usize)> = notes
        .iter()
        .enumerate()
        .filter_map(|(span, note)| match note {
            Note::Piece {
                what: What::Echo { name },
                ..
            } => Some((captures[*name], span)),
            _ => None,
        })
        .collect();
    echoes.sort_unstable();
    Notes {
        intro,
        notes,
        names,
        lines: Vec::new(),
        frames: Vec::new(),
        captures,
        echoes,
    }
}

impl Notes {
    /// How many values are captured.
    pub fn captures(&self) -> usize {
        self.names.len()
    }

    /// How many spans are length fields.
    pub fn lengths(&self) -> usize {
        self.notes
            .iter()
            .filter(|n| matches!(n, Note::Length { .. }))
            .count()
    }

    /// The notes of `tape`, whose spans' frames are `frames`: where each
    /// span prints.
    pub fn place(mut self, frames: &Frames, tape: &dyn Source) -> Result<Notes, String> {
        self.frames = frames
            .iter()
            .enumerate()
            .map(|(span, &(frame, _))| (frame, span))
            .collect();
        self.frames.sort_unstable();
        self.lines = self.count_lines(tape)?;
        Ok(self)
    }

    /// The span whose frame is `frame`, if any.
    fn span_at(&self, frame: u64) -> Option<usize> {
        let i = self.frames.partition_point(|&(f, _)| f < frame);
        self.frames
            .get(i)
            .filter(|&&(f, _)| f == frame)
            .map(|&(_, span)| span)
    }

    /// The line each span prints on: the tape printed once, lines counted.
    fn count_lines(&self, tape: &dyn Source) -> Result<Vec<u32>, String> {
        let newlines = Cell::new(0u32);
        let lines = RefCell::new(vec![0u32; self.notes.len()]);
        let intro_lines = self.intro.matches('\n').count() as u32;
        let mut sink = LineCounter(&newlines);
        let notes = |frame: u64| {
            if let Some(span) = self.span_at(frame) {
                // The header, then the intro, then the frames.
                lines.borrow_mut()[span] = newlines.get() + 1 + intro_lines;
            }
            None
        };
        print_annotated(&mut Reader::new(tape), &mut sink, &notes)
            .map_err(|err| format!("internal error: the learned tape does not print: {err}"))?;
        Ok(lines.into_inner())
    }

    /// Writes the tape as text with its comments.
    pub fn print(&self, tape: &dyn Source, out: &mut dyn Write) -> io::Result<()> {
        let mut out = AfterHeader {
            inner: out,
            intro: Some(self.intro.as_bytes()),
        };
        let notes = |frame: u64| self.span_at(frame).map(|span| self.note(span));
        print_annotated(&mut Reader::new(tape), &mut out, &notes).map_err(|err| match err {
            crate::tape::text::PrintError::Output(err) => err,
            err => io::Error::other(format!(
                "internal error: the learned tape does not print: {err}"
            )),
        })
    }

    fn note(&self, span: usize) -> String {
        let (dir, seen, what, part, parts) = match &self.notes[span] {
            Note::Length { shape, differs } => return length_note(*shape, *differs),
            Note::Piece {
                dir,
                seen,
                what,
                part,
                parts,
            } => (*dir, seen, what, *part, *parts),
        };
        let varies = seen.words();
        match what {
            What::Vary if parts > 1 => format!("{varies} (part {part} of {parts})"),
            What::Vary => varies,
            What::Capture { name } => {
                let from = self.echoes.partition_point(|&(c, _)| c < span);
                let to = self.echoes.partition_point(|&(c, _)| c <= span);
                let echoed: Vec<u32> = self.echoes[from..to]
                    .iter()
                    .map(|&(_, echo)| self.lines[echo])
                    .collect();
                format!(
                    "capture {}: {varies}; echoed by the {} at {}",
                    self.names[*name],
                    dir.reverse().sender(),
                    lines(&echoed)
                )
            }
            What::Echo { name } => format!(
                "echo {}: the value the {} sent at line {}",
                self.names[*name],
                dir.reverse().sender(),
                self.lines[self.captures[*name]]
            ),
        }
    }
}

fn length_note(shape: Shape, differs: bool) -> String {
    let what = match shape {
        Shape::Framing => "the message's length",
        Shape::Prefix => "the length of the value after it",
        Shape::Tail => "the length of the rest of the message",
        Shape::DecimalPrefix => "the length of the value after the line end",
        Shape::Decimal => "the length of the rest of the turn",
    };
    let why = if differs {
        "different in the recordings"
    } else {
        "which counts values that may change length"
    };
    format!("{what}, {why}")
}

impl Seen {
    /// `varies in 3 of 3 recordings, 29 bytes` (or `29..31 bytes`, the
    /// lengths seen), and why it may take another length.
    fn words(&self) -> String {
        let size = if self.shortest == self.longest {
            format!("{} bytes", self.longest)
        } else {
            format!("{}..{} bytes", self.shortest, self.longest)
        };
        let grows = match self.grows {
            Growth::Fixed => "",
            Growth::Digits => ", a number that may gain digits",
            Growth::AnyLength => ", any length: a length says where it ends",
        };
        format!(
            "varies in {} of {} recordings, {size}{grows}",
            self.distinct, self.recordings
        )
    }
}

/// The comment after the header: where the tape comes from.
pub fn intro(recordings: &[Recording]) -> String {
    let mut intro = format!(
        "# learned by tcptape learn from {} recordings: the first, with the bytes\n\
         # that differ between them as spans\n",
        recordings.len()
    );
    for recording in recordings {
        let name = recording.name.replace(|c: char| c.is_control(), "?");
        intro.push_str(&format!("#   {name}\n"));
    }
    intro
}

/// `line 40`, `lines 40 and 52`, `lines 40, 52, 60 and 2 more`.
pub fn lines(lines: &[u32]) -> String {
    match lines {
        [] => "no line".to_string(),
        [one] => format!("line {one}"),
        [first, second] => format!("lines {first} and {second}"),
        [a, b, c] => format!("lines {a}, {b} and {c}"),
        [a, b, c, rest @ ..] => format!("lines {a}, {b}, {c} and {} more", rest.len()),
    }
}

/// Counts the lines written, and drops them.
struct LineCounter<'a>(&'a Cell<u32>);

impl Write for LineCounter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.iter().filter(|&&b| b == b'\n').count() as u32;
        self.0.set(self.0.get() + n);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `intro` after the first line (the header) of what goes through.
struct AfterHeader<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    intro: Option<&'a [u8]>,
}

impl<W: Write + ?Sized> Write for AfterHeader<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(intro) = self.intro else {
            return self.inner.write(buf);
        };
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.inner.write_all(&buf[..=end])?;
                self.inner.write_all(intro)?;
                self.intro = None;
                Ok(end + 1)
            }
            None => self.inner.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lists() {
        assert_eq!(lines(&[]), "no line");
        assert_eq!(lines(&[4]), "line 4");
        assert_eq!(lines(&[4, 9]), "lines 4 and 9");
        assert_eq!(lines(&[4, 9, 12]), "lines 4, 9 and 12");
        assert_eq!(lines(&[4, 9, 12, 15, 20]), "lines 4, 9, 12 and 2 more");
    }

    #[test]
    fn the_intro_follows_the_header() {
        let mut out = Vec::new();
        let mut w = AfterHeader {
            inner: &mut out,
            intro: Some(b"# intro\n"),
        };
        w.write_all(b"tcptape text 1").unwrap();
        w.write_all(b"\n> \"x\"\n").unwrap();
        assert_eq!(out, b"tcptape text 1\n# intro\n> \"x\"\n");
    }
}
