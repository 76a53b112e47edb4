//! The learned tape as text: the header, a comment naming the recordings,
//! and each span with a comment saying why it is there.
//!
//! The comments are kept small (what each says but for line numbers) and
//! written as the tape prints, so that the text of a large tape is never
//! held in memory: a first print counts lines (where each span is, for the
//! comments that point at each other), the second writes the text.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};

use super::captures::{Piece, PieceKind};
use super::emit::Written;
use super::lengths::Shape;
use super::plan::{Origin, Plan};
use super::recording::Recording;
use super::regions;
use super::turns::who;
use crate::tape::text::print_annotated;
use crate::tape::{Direction, Reader};

/// What a span's comment says, but for line numbers.
#[derive(Debug)]
enum Note {
    Length {
        shape: Shape,
        differs: bool,
    },
    Piece {
        dir: Direction,
        seen: Seen,
        what: What,
        part: usize,
        parts: usize,
    },
}

#[derive(Debug)]
enum What {
    Vary,
    /// Its name is `names[name]`.
    Capture {
        name: usize,
    },
    /// Of the capture whose first span is span `capture`.
    Echo {
        capture: usize,
    },
}

/// How the recordings' values at a piece differ.
#[derive(Debug)]
struct Seen {
    distinct: usize,
    recordings: usize,
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
    /// (capture's first span, echo span) of each echo, in order.
    echoes: Vec<(usize, usize)>,
}

/// The comments of the spans `plan` writes over `pieces`; where they
/// print comes once the tape is written (`Notes::place`).
pub fn describe(recordings: &[Recording], pieces: &[Piece], plan: &Plan) -> Notes {
    let mut names = Vec::new();
    let mut first_span = vec![usize::MAX; pieces.len()];
    for (span, origin) in plan.of.iter().enumerate() {
        if let Origin::Piece { piece, .. } = *origin {
            first_span[piece] = first_span[piece].min(span);
        }
    }
    let mut notes = Vec::with_capacity(plan.of.len());
    let mut echoes = Vec::new();
    for (span, origin) in plan.of.iter().enumerate() {
        let (piece, part, parts) = match *origin {
            Origin::Length { shape, differs } => {
                notes.push(Note::Length { shape, differs });
                continue;
            }
            Origin::Piece { piece, part, parts } => (piece, part, parts),
        };
        let p = &pieces[piece];
        let lengths = p.ranges.iter().map(|r| r.len());
        let grows = if p.is_fixed() && !plan.spans[span].span.is_fixed() {
            let numbers = p.values(recordings).iter().all(|v| regions::is_number(v));
            if numbers {
                Growth::Digits
            } else {
                Growth::AnyLength
            }
        } else {
            Growth::Fixed
        };
        let seen = Seen {
            distinct: p.distinct(recordings),
            recordings: recordings.len(),
            shortest: lengths.clone().min().unwrap_or(0),
            longest: lengths.max().unwrap_or(0),
            grows,
        };
        let what = match &p.kind {
            PieceKind::Vary => What::Vary,
            PieceKind::Capture(name) => {
                names.push(name.clone());
                What::Capture {
                    name: names.len() - 1,
                }
            }
            PieceKind::Echo { capture } => {
                echoes.push((first_span[*capture], span));
                What::Echo {
                    capture: first_span[*capture],
                }
            }
        };
        notes.push(Note::Piece {
            dir: p.dir,
            seen,
            what,
            part,
            parts,
        });
    }
    echoes.sort_unstable();
    Notes {
        intro: intro(recordings),
        notes,
        names,
        lines: Vec::new(),
        frames: Vec::new(),
        echoes,
    }
}

impl Notes {
    /// The notes of the tape `written`: where each span prints.
    pub fn place(mut self, written: &Written) -> Result<Notes, String> {
        self.frames = written
            .frames
            .iter()
            .enumerate()
            .map(|(span, &(frame, _))| (frame, span))
            .collect();
        self.frames.sort_unstable();
        self.lines = self.count_lines(&written.bytes)?;
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
    fn count_lines(&self, tape: &[u8]) -> Result<Vec<u32>, String> {
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
    pub fn print(&self, tape: &[u8], out: &mut dyn Write) -> io::Result<()> {
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
                    who(dir.reverse()),
                    lines(&echoed)
                )
            }
            What::Echo { capture } => {
                let name = match &self.notes[*capture] {
                    Note::Piece {
                        what: What::Capture { name },
                        ..
                    } => &self.names[*name],
                    _ => unreachable!("an echo's span is a capture's"),
                };
                format!(
                    "echo {name}: the value the {} sent at line {}",
                    who(dir.reverse()),
                    self.lines[*capture]
                )
            }
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
fn intro(recordings: &[Recording]) -> String {
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
