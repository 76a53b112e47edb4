//! The recording with redaction rules: each direction's unrecorded bytes
//! go through its matcher before they are written, and only what it
//! releases is recorded (and so forwarded: write-ahead). A secret goes on
//! tape as a secret span over a placeholder of `*` bytes, as long as the
//! secret; the ring keeps the real bytes for the peer. What the matcher
//! holds back stays unrecorded in the ring, so it is neither on tape nor
//! forwarded until it is released.

use std::io::IoSlice;
use std::rc::Rc;

use crate::engine::ring::Ring;
use crate::secrets::{MAX_SECRET, Matcher, Piece, Release, Rules};
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
}

impl Redactor {
    pub fn new(redaction: &Rc<Redaction>) -> Redactor {
        let matcher = || Matcher::new(redaction.finder.clone());
        Redactor {
            redaction: redaction.clone(),
            matchers: [matcher(), matcher()],
            pieces: [Vec::new(), Vec::new()],
        }
    }

    /// Matches the ring's unrecorded bytes of `dir`: returns how many may
    /// be recorded and whether a secret is among them.
    pub fn classify(&mut self, dir: Direction, ring: &Ring, release: Release) -> (usize, bool) {
        let i = dir.index();
        self.pieces[i].clear();
        let (first, second) = ring.unrecorded();
        let n = self.matchers[i].scan([first, second], release, &mut self.pieces[i]);
        (n, self.pieces[i].iter().any(|p| p.secret.is_some()))
    }

    /// The frames of what `classify` released for `dir`: data frames of
    /// plain bytes (from the ring), a secret span and its placeholder for
    /// each secret. Headers and span payloads go to `owned`; `frames`
    /// says, in order, where each slice comes from.
    pub fn frames(&self, dir: Direction, owned: &mut Vec<Vec<u8>>, frames: &mut Vec<Part>) {
        let mut at = 0;
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
                    frames.push(Part::Owned(owned.len()));
                    owned.push(head);
                    frames.push(Part::Stars(piece.len));
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
    /// A placeholder of this many bytes.
    Stars(usize),
}

/// The slices of `part`, pushed to `out`.
pub fn slices<'a>(part: Part, owned: &'a [Vec<u8>], ring: &'a Ring, out: &mut Vec<IoSlice<'a>>) {
    match part {
        Part::Owned(i) => out.push(IoSlice::new(&owned[i])),
        Part::Stars(len) => out.push(IoSlice::new(&STARS[..len])),
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
