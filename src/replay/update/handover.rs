//! What a `server` session played with `--update` and an upstream keeps,
//! so that the connection can be handed over to the real server where the
//! client departs: the client's live bytes since we last answered it (its
//! current turn: they go to the upstream as they came), and how far our
//! answers went in the tape (the client's frames before that boundary are
//! the turns it matched, which the upstream is played first).

use log::info;

use crate::replay::peer::Arrival;

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
    /// The client's live bytes since the start of its current turn.
    turn: Vec<u8>,
    /// One past the index of the last of our frames taken from the tape
    /// (0: none yet). The client's frames before it were answered.
    boundary: u64,
    course: Course,
}

/// What the hand-over takes: the client's turn as it sent it, whether it
/// closed its side, where it departed, and the tape's boundary.
#[derive(Debug)]
pub struct Departure {
    pub turn: Vec<u8>,
    pub eof: bool,
    pub summary: String,
    pub boundary: u64,
}

impl Handover {
    pub fn new() -> Handover {
        Handover {
            turn: Vec::new(),
            boundary: 0,
            course: Course::Following,
        }
    }

    /// True once the client departed from the tape.
    pub fn departed(&self) -> bool {
        matches!(self.course, Course::Departed { .. })
    }

    /// Bytes (or the end) the client sent, before they are checked.
    pub fn heard(&mut self, arrival: &Arrival<'_>) {
        match (arrival, &mut self.course) {
            (Arrival::Data(bytes), _) => self.turn.extend_from_slice(bytes),
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

    /// Our frame `index` is taken from the tape, `pipelined` of the
    /// client's bytes beyond what the tape has before it: the bytes before
    /// those were answered, and are no longer the client's current turn.
    pub fn taken(&mut self, index: u64, pipelined: u64) {
        if index < self.boundary || self.departed() {
            return;
        }
        self.boundary = index + 1;
        let keep = (pipelined as usize).min(self.turn.len());
        self.turn.drain(..self.turn.len() - keep);
    }

    /// What the hand-over takes, once the client departed.
    pub fn into_departure(self) -> Option<Departure> {
        match self.course {
            Course::Departed { summary, eof } => Some(Departure {
                turn: self.turn,
                eof,
                summary,
                boundary: self.boundary,
            }),
            Course::Following => None,
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
        handover.taken(2, 0);
        handover.heard(&Arrival::Data(b"TOKEN\nUSE"));
        // Two own frames taken for one request: the second changes nothing.
        handover.taken(4, 3);
        handover.taken(4, 3);
        handover.heard(&Arrival::Data(b" x\n"));
        handover.depart("departed".into(), false);
        let departure = handover.into_departure().unwrap();
        assert_eq!(departure.turn, b"USE x\n", "pipelined bytes stay");
        assert_eq!(departure.boundary, 5);
        assert!(!departure.eof);
    }

    #[test]
    fn departed_bytes_and_the_end_that_follow_are_kept() {
        let mut handover = Handover::new();
        handover.heard(&Arrival::Data(b"HELL"));
        handover.depart("departed".into(), false);
        handover.taken(9, 0);
        handover.heard(&Arrival::Data(b"O v2\n"));
        handover.heard(&Arrival::Eof);
        let departure = handover.into_departure().unwrap();
        assert_eq!(departure.turn, b"HELLO v2\n");
        assert_eq!(departure.boundary, 0, "nothing was answered");
        assert!(departure.eof);
    }

    #[test]
    fn following_to_the_end_leaves_nothing_to_hand_over() {
        let mut handover = Handover::new();
        handover.heard(&Arrival::Data(b"x"));
        assert!(handover.into_departure().is_none());
    }
}
