//! The recording with redaction rules: each direction's unrecorded bytes
//! go through its matcher before they are written, and only what it
//! releases is recorded (and so forwarded: write-ahead). A secret goes on
//! tape as a secret span over a placeholder of `*` bytes, as long as the
//! secret; the ring keeps the real bytes for the peer. What the matcher
//! holds back stays unrecorded in the ring, so it is neither on tape nor
//! forwarded until it is released.
//!
//! Bytes held too long go as a tentative secret (they may be one); when
//! the stream shows they were not, their placeholder on tape is replaced
//! by them and their span frame turned into a NOOP (`Tentatives`).

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use crate::engine::ring::Ring;
use crate::secrets::{MAX_SECRET, Matcher, Piece, Release, Rules, Verdict};
use crate::tape::frame::{self, Direction, Header};
use crate::tape::{Span, SpanKind};

/// What a placeholder is made of.
static STARS: [u8; MAX_SECRET] = [b'*'; MAX_SECRET];

/// How long bytes that begin a rule's match wait for the rest before they
/// are recorded anyway (a secret span, in case they are one). A peer that
/// stops in the middle of what looks like a secret and waits for an
/// answer waits this long; a secret whose sender pauses longer than this
/// in its middle is recorded in several secret spans, never in clear.
pub const HOLD_MS: u64 = 100;

/// Where a direction stands with bytes held back for the rules.
#[derive(Debug, Default, Clone, Copy)]
pub struct Hold {
    /// The tick since which bytes wait.
    since: Option<u64>,
    /// Whether a timer was asked for to release them.
    timer: bool,
}

impl Hold {
    /// True when the held bytes must go now: they waited too long, or
    /// fill the ring with nothing to forward.
    pub fn is_due(&self, ring: &Ring, now: u64) -> bool {
        self.since.is_some_and(|since| now >= since + HOLD_MS)
            || (ring.is_full() && ring.recorded_slices().0.is_empty())
    }

    /// After a batch: whether bytes are still held.
    pub fn note(&mut self, held: bool, now: u64) {
        match held {
            false => *self = Hold::default(),
            true => {
                self.since.get_or_insert(now);
            }
        }
    }

    /// When to release what is held, once per hold: a timer resumes the
    /// session then.
    pub fn deadline(&mut self) -> Option<u64> {
        let since = self.since.filter(|_| !self.timer)?;
        self.timer = true;
        Some(since + HOLD_MS)
    }
}

/// The rules of a run, shared by its sessions.
#[derive(Debug)]
pub struct Redaction {
    rules: Rules,
    finder: Rc<crate::secrets::Finder>,
}

impl Redaction {
    /// `None` without rules: recording goes as it always did.
    pub fn of(rules: &Rules) -> Option<Rc<Redaction>> {
        (!rules.is_empty()).then(|| {
            Rc::new(Redaction {
                rules: rules.clone(),
                finder: Matcher::finder(rules),
            })
        })
    }
}

/// One session's matchers, one a direction.
#[derive(Debug)]
pub struct Redactor {
    redaction: Rc<Redaction>,
    matchers: [Matcher; 2],
    pieces: [Vec<Piece>; 2],
    /// Stream bytes released so far, per direction, and where the last
    /// batch began.
    released: [u64; 2],
    batch: [u64; 2],
    /// Tentative secrets on tape, per direction, until their verdict.
    placed: [Vec<Placed>; 2],
    verdicts: [Option<Verdict>; 2],
}

/// A tentative secret on tape.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    /// Where its bytes start in the stream, and how many.
    start: u64,
    len: usize,
    /// Where its span frame and its placeholder are in the file.
    span_at: u64,
    data_at: u64,
}

impl Redactor {
    pub fn new(redaction: &Rc<Redaction>) -> Redactor {
        let matcher = || Matcher::new(redaction.finder.clone());
        Redactor {
            redaction: redaction.clone(),
            matchers: [matcher(), matcher()],
            pieces: [Vec::new(), Vec::new()],
            released: [0, 0],
            batch: [0, 0],
            placed: [Vec::new(), Vec::new()],
            verdicts: [None, None],
        }
    }

    /// Matches the ring's unrecorded bytes of `dir`: returns how many may
    /// be recorded and whether a secret is among them.
    pub fn classify(&mut self, dir: Direction, ring: &Ring, release: Release) -> (usize, bool) {
        let i = dir.index();
        self.pieces[i].clear();
        let (first, second) = ring.unrecorded();
        let n = self.matchers[i].scan([first, second], release, &mut self.pieces[i]);
        self.batch[i] = self.released[i];
        self.released[i] += n as u64;
        if let Some(verdict) = self.matchers[i].verdict() {
            self.verdicts[i] = Some(verdict);
        }
        (n, self.pieces[i].iter().any(|p| p.secret.is_some()))
    }

    /// Applies the verdicts on tentative secrets to the tape: a secret
    /// that was none gets its bytes back, and its span frame becomes a
    /// NOOP (same size: nothing else moves).
    pub fn settle(&mut self, file: &File) -> io::Result<()> {
        for i in 0..2 {
            match self.verdicts[i].take() {
                None => {}
                Some(Verdict::Confirmed) => self.placed[i].clear(),
                Some(Verdict::Retracted { start, bytes }) => {
                    let end = start + bytes.len() as u64;
                    for placed in &self.placed[i] {
                        if placed.start >= start && placed.start + placed.len as u64 <= end {
                            let from = (placed.start - start) as usize;
                            file.write_all_at(&bytes[from..from + placed.len], placed.data_at)?;
                            file.write_all_at(&[frame::opcode::NOOP], placed.span_at)?;
                        }
                    }
                    self.placed[i].retain(|p| p.start + p.len as u64 > end);
                }
            }
        }
        Ok(())
    }

    /// A tentative secret went on tape at these offsets.
    pub fn place(
        &mut self,
        dir: Direction,
        (start, len): (u64, usize),
        span_at: u64,
        data_at: u64,
    ) {
        self.placed[dir.index()].push(Placed {
            start,
            len,
            span_at,
            data_at,
        });
    }

    /// The frames of what `classify` released for `dir`: data frames of
    /// plain bytes (from the ring), a secret span and its placeholder for
    /// each secret. Headers and span payloads go to `owned`; `frames`
    /// says, in order, where each slice comes from.
    pub fn frames(&mut self, dir: Direction, owned: &mut Vec<Vec<u8>>, frames: &mut Vec<Part>) {
        let mut at = 0;
        let released = self.batch[dir.index()];
        for piece in &self.pieces[dir.index()] {
            match piece.secret {
                None => {
                    let mut left = piece.len;
                    while left > 0 {
                        let len = left.min(frame::MAX_LEN as usize);
                        frames.push(Part::Owned(owned.len()));
                        owned.push(Header::data(dir, len).emit().to_vec());
                        frames.push(Part::Ring(at, at + len));
                        at += len;
                        left -= len;
                    }
                }
                Some(rule) => {
                    let name = self.redaction.rules.name(rule).to_string();
                    let span = Span::fixed(SpanKind::Secret(name), piece.len as u32).emit();
                    let mut head = Header::new(dir.span_opcode(), span.len() as u32)
                        .emit()
                        .to_vec();
                    head.extend_from_slice(&span);
                    head.extend_from_slice(&Header::data(dir, piece.len).emit());
                    let head_len = head.len();
                    frames.push(Part::Owned(owned.len()));
                    owned.push(head);
                    let tentative = piece.tentative.then_some((released + at as u64, head_len));
                    frames.push(Part::Stars(piece.len, tentative));
                    at += piece.len;
                }
            }
        }
    }
}

/// Where a slice of a redacted batch comes from.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// One of the batch's own buffers (headers, span payloads).
    Owned(usize),
    /// Unrecorded bytes of the direction's ring, `from..to`.
    Ring(usize, usize),
    /// A placeholder of this many bytes; for a tentative secret, where
    /// it starts in the stream and the length of the frames before it
    /// (its span frame, its data header).
    Stars(usize, Option<(u64, usize)>),
}

/// The slices of `part`, pushed to `out`.
pub fn slices<'a>(part: Part, owned: &'a [Vec<u8>], ring: &'a Ring, out: &mut Vec<IoSlice<'a>>) {
    match part {
        Part::Owned(i) => out.push(IoSlice::new(&owned[i])),
        Part::Stars(len, _) => out.push(IoSlice::new(&STARS[..len])),
        Part::Ring(from, to) => {
            let (first, second) = ring.unrecorded();
            let in_first = |x: usize| x.min(first.len());
            let (a, b) = (in_first(from), in_first(to));
            if a < b {
                out.push(IoSlice::new(&first[a..b]));
            }
            let (c, d) = (from.max(first.len()), to.max(first.len()));
            if c < d {
                out.push(IoSlice::new(&second[c - first.len()..d - first.len()]));
            }
        }
    }
}
