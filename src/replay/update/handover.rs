//! What a `server` session played with `--update` and an upstream keeps,
//! so that the connection can be handed over to the real server where the
//! client departs: the client's live bytes since we last answered it (its
//! current turn: they go to the upstream as they came), and how many of
//! the tape's client bytes our answers followed (the turns it matched,
//! which the upstream is played first). Bytes, not frame indexes: a pool
//! of cassette tapes answers from whichever tape speaks, and tapes may cut
//! the same bytes into other frames.

use log::info;

use std::time::Instant;

use crate::replay::peer::{Arrival, Peer};

/// The most of a client's turn kept for a hand-over: a client that departs
/// further into a longer turn is reported as a mismatch, as without
/// `--update` (its session must be recorded anew).
pub const TURN_LIMIT: usize = 4 * 1024 * 1024;

/// The client's live bytes since the start of its current turn.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Turn {
    Kept(Vec<u8>),
    /// Longer than `TURN_LIMIT`: only its length is known.
    TooLong(u64),
}

impl Turn {
    fn len(&self) -> u64 {
        match self {
            Turn::Kept(bytes) => bytes.len() as u64,
            Turn::TooLong(len) => *len,
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        match self {
            Turn::Kept(kept) if kept.len() + bytes.len() <= TURN_LIMIT => {
                kept.extend_from_slice(bytes)
            }
            Turn::Kept(kept) => *self = Turn::TooLong((kept.len() + bytes.len()) as u64),
            Turn::TooLong(len) => *len += bytes.len() as u64,
        }
    }

    /// Keeps the last `keep` bytes (those not answered yet).
    fn keep_last(&mut self, keep: u64) {
        match self {
            Turn::Kept(kept) => {
                let keep = (keep as usize).min(kept.len());
                kept.drain(..kept.len() - keep);
            }
            // The bytes are gone; only an empty turn starts over.
            Turn::TooLong(_) if keep == 0 => *self = Turn::Kept(Vec::new()),
            Turn::TooLong(len) => *len = keep.min(*len),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Course {
    /// The client matched the tape so far.
    Following,
    /// The client departed (`summary` says where); `eof` once it closed
    /// its side.
    Departed { summary: String, eof: bool },
}

/// Where the client stands, for a hand-over.
#[derive(Debug)]
pub struct Handover {
    turn: Turn,
    /// The tape's client bytes before the last of our frames taken from
    /// it (`None`: none taken yet): those were answered.
    answered: Option<u64>,
    course: Course,
}

/// What the hand-over takes: the client's turn as it sent it, whether it
/// closed its side, where it departed, and how many of the tape's client
/// bytes were answered.
#[derive(Debug)]
pub struct Departure {
    pub turn: Vec<u8>,
    pub eof: bool,
    pub summary: String,
    pub answered: Option<u64>,
}

/// A session (or undecided pool) whose client departed, taken apart for
/// the hand-over.
pub struct Departed {
    pub number: u64,
    pub peer: Peer,
    pub departure: Departure,
    pub started: Instant,
}

impl Handover {
    pub fn new() -> Handover {
        Handover {
            turn: Turn::Kept(Vec::new()),
            answered: None,
            course: Course::Following,
        }
    }

    /// False while the client's turn is longer than a hand-over keeps: a
    /// departure then is a plain mismatch.
    pub fn can_hand_over(&self) -> bool {
        matches!(self.turn, Turn::Kept(_))
    }

    /// Why a departure is not handed over, for the log.
    pub fn why_not(&self) -> String {
        format!(
            "the client departed {} bytes into its turn; --update keeps {TURN_LIMIT} bytes of a turn to hand over, so its session is a mismatch (record it anew)",
            self.turn.len()
        )
    }

    /// Where the client departed, once it did.
    pub fn summary(&self) -> Option<&str> {
        match &self.course {
            Course::Departed { summary, .. } => Some(summary),
            Course::Following => None,
        }
    }

    /// How many of the tape's client bytes the client was answered, if
    /// any: what a hand-over plays the upstream first.
    pub fn answered(&self) -> Option<u64> {
        self.answered
    }

    /// True once the client departed from the tape.
    pub fn departed(&self) -> bool {
        matches!(self.course, Course::Departed { .. })
    }

    /// Bytes (or the end) the client sent, before they are checked.
    pub fn heard(&mut self, arrival: &Arrival<'_>) {
        match (arrival, &mut self.course) {
            (Arrival::Data(bytes), _) => self.turn.extend(bytes),
            (Arrival::Eof | Arrival::Reset, Course::Departed { eof, .. }) => *eof = true,
            (Arrival::Eof | Arrival::Reset, Course::Following) => {}
        }
    }

    /// The client departed where `summary` says; `eof` when what departed
    /// was its half-close.
    pub fn depart(&mut self, summary: String, eof: bool) {
        if self.departed() {
            return;
        }
        info!("{summary}; --update hands the connection over to the upstream");
        self.course = Course::Departed { summary, eof };
    }

    /// One of our frames is taken from the tape, which has `expected` of
    /// the client's bytes before it, the client `pipelined` more: the
    /// bytes before those were answered, and are no longer the client's
    /// current turn.
    pub fn taken(&mut self, expected: u64, pipelined: u64) {
        if self.answered.is_some_and(|a| expected < a) || self.departed() {
            return;
        }
        self.answered = Some(expected);
        self.turn.keep_last(pipelined);
    }

    /// What the hand-over takes, once the client departed; itself back
    /// while the client follows the tape.
    pub fn into_departure(self) -> Result<Departure, Handover> {
        match (self.course, self.turn) {
            (Course::Departed { summary, eof }, Turn::Kept(turn)) => Ok(Departure {
                turn,
                eof,
                summary,
                answered: self.answered,
            }),
            (course, turn) => Err(Handover {
                turn,
                answered: self.answered,
                course,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn following_the_turn_starts_after_each_answer_taken() {
        let mut handover = Handover::new();
        handover.heard(&Arrival::Data(b"HELLO\n"));
        handover.taken(6, 0);
        handover.heard(&Arrival::Data(b"TOKEN\nUSE"));
        // Two own frames taken for one request: the second changes nothing.
        handover.taken(12, 3);
        handover.taken(12, 3);
        handover.heard(&Arrival::Data(b" x\n"));
        handover.depart("departed".into(), false);
        let departure = handover.into_departure().unwrap();
        assert_eq!(departure.turn, b"USE x\n", "pipelined bytes stay");
        assert_eq!(departure.answered, Some(12));
        assert!(!departure.eof);
    }

    #[test]
    fn departed_bytes_and_the_end_that_follow_are_kept() {
        let mut handover = Handover::new();
        handover.heard(&Arrival::Data(b"HELL"));
        handover.depart("departed".into(), false);
        handover.taken(4, 0);
        handover.heard(&Arrival::Data(b"O v2\n"));
        handover.heard(&Arrival::Eof);
        let departure = handover.into_departure().unwrap();
        assert_eq!(departure.turn, b"HELLO v2\n");
        assert_eq!(departure.answered, None, "nothing was answered");
        assert!(departure.eof);
    }

    #[test]
    fn following_to_the_end_leaves_nothing_to_hand_over() {
        let mut handover = Handover::new();
        handover.heard(&Arrival::Data(b"x"));
        assert!(handover.into_departure().is_err());
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn a_turn_past_the_limit_is_not_handed_over() {
        let mut handover = Handover::new();
        let chunk = vec![b'x'; TURN_LIMIT / 2 + 1];
        handover.heard(&Arrival::Data(&chunk));
        assert!(handover.can_hand_over());
        handover.heard(&Arrival::Data(&chunk));
        assert!(!handover.can_hand_over());
        assert!(
            handover
                .why_not()
                .contains(&format!("{} bytes", chunk.len() * 2))
        );
        handover.depart("departed".into(), false);
        assert!(handover.into_departure().is_err());
    }

    /// The bytes a client sends after it departed still count: a turn
    /// that outgrows the limit then cannot be handed over, and says where
    /// the client departed (the session's mismatch).
    #[test]
    fn a_turn_that_outgrows_the_limit_after_departing_cannot_be_handed_over() {
        let mut handover = Handover::new();
        handover.heard(&Arrival::Data(b"GET x"));
        handover.depart("byte 4 differs".into(), false);
        assert!(handover.can_hand_over());
        handover.heard(&Arrival::Data(&vec![b'x'; TURN_LIMIT]));
        assert!(!handover.can_hand_over());
        assert_eq!(handover.summary(), Some("byte 4 differs"));
        assert!(handover.into_departure().is_err());
    }

    #[test]
    fn an_answer_starts_a_new_turn_that_is_kept_again() {
        let mut handover = Handover::new();
        handover.heard(&Arrival::Data(&vec![b'x'; TURN_LIMIT + 1]));
        assert!(!handover.can_hand_over());
        handover.taken(TURN_LIMIT as u64 + 1, 0);
        assert!(handover.can_hand_over());
        handover.heard(&Arrival::Data(b"next"));
        handover.depart("departed".into(), false);
        assert_eq!(handover.into_departure().unwrap().turn, b"next");
    }
}
