//! The two directions' bytes put in one order on the tape.
//!
//! Bytes that are in order wait in a queue per direction, each chunk with
//! the time of its packet and what that packet acknowledged of the other
//! direction. The queues are merged by time, except that a chunk never goes
//! before the other direction's bytes its packet had acknowledged: a
//! server's answer follows the request it acknowledges, even when the
//! capture saw it first. DELAY frames come from the chunks' times.

use std::collections::VecDeque;

use super::stream::{SEGMENT_COST, Segment};
use super::tape_out::TapeOut;
use super::{BOTH, Summary};
use crate::tape::Direction;

/// What a chunk puts on the tape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Data(Vec<u8>),
    /// Bytes the capture lost, as a wildcard of that many.
    Gap(u64),
    Eof,
}

impl Piece {
    /// Stream positions it takes: its bytes, or one for the EOF.
    pub fn len(&self) -> u64 {
        match self {
            Piece::Data(data) => data.len() as u64,
            Piece::Gap(len) => *len,
            Piece::Eof => 1,
        }
    }
}

/// Bytes (or a gap, or the EOF) ready for the tape.
#[derive(Debug)]
pub struct Chunk {
    pub piece: Piece,
    pub time_us: u64,
    pub packet: u64,
    /// Position in the other direction (its stream offset, its FIN
    /// counting one) that must be written first.
    pub needs: u64,
}

impl From<Segment> for Chunk {
    fn from(segment: Segment) -> Chunk {
        Chunk {
            piece: Piece::Data(segment.data),
            time_us: segment.time_us,
            packet: segment.packet,
            needs: segment.needs,
        }
    }
}

impl Chunk {
    fn cost(&self) -> usize {
        match &self.piece {
            Piece::Data(data) => data.len() + SEGMENT_COST,
            _ => SEGMENT_COST,
        }
    }
}

/// The queues of both directions and the tape they go to.
#[derive(Debug)]
pub struct Interleave {
    start_us: u64,
    queues: [VecDeque<Chunk>; 2],
    /// What the queues cost (bytes and `SEGMENT_COST` each chunk).
    held: usize,
    /// Written positions per direction (the EOF counts one).
    written: [u64; 2],
    /// Milliseconds after `start_us` of the last frame written.
    last_ms: u64,
    summary: Summary,
    tape: TapeOut,
}

impl Interleave {
    /// Times on the tape count from `start_us`, the connection's first
    /// packet.
    pub fn new(start_us: u64) -> Interleave {
        Interleave {
            start_us,
            queues: Default::default(),
            held: 0,
            written: [0; 2],
            last_ms: 0,
            summary: Summary::default(),
            tape: TapeOut::new(),
        }
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    pub fn summary(&self) -> Summary {
        self.summary
    }

    pub fn tape(&mut self) -> &mut TapeOut {
        &mut self.tape
    }

    pub fn tape_len(&self) -> usize {
        self.tape.len()
    }

    pub fn push(&mut self, dir: Direction, chunk: Chunk) {
        self.held += chunk.cost();
        self.queues[dir.index()].push_back(chunk);
    }

    /// Writes queued chunks: by time, each after the bytes it needs.
    /// `delivered` is each direction's position after its queued chunks.
    /// With `all`, chunks whose needs can no longer be met are written too.
    pub fn write_ready(&mut self, all: bool, delivered: [u64; 2]) {
        loop {
            let head = |dir: Direction| self.queues[dir.index()].front();
            let ready = |dir: Direction| {
                head(dir).is_some_and(|c| c.needs <= self.written[dir.reverse().index()])
            };
            // Blocked only by the other direction's queued bytes: with
            // both so, they wait for each other (a capture that
            // contradicts itself), and time decides.
            let queued = |dir: Direction| {
                head(dir).is_some_and(|c| c.needs <= delivered[dir.reverse().index()])
            };
            let any_ready = BOTH.into_iter().any(ready);
            let unblocked = all || BOTH.into_iter().all(queued);
            let next = BOTH
                .into_iter()
                .filter(|&dir| {
                    if any_ready {
                        ready(dir)
                    } else {
                        unblocked && head(dir).is_some()
                    }
                })
                .min_by_key(|&dir| head(dir).map(|c| (c.time_us, c.packet)));
            let Some(dir) = next else {
                return;
            };
            let Some(chunk) = self.queues[dir.index()].pop_front() else {
                return;
            };
            self.held -= chunk.cost();
            self.write(dir, chunk);
        }
    }

    fn write(&mut self, dir: Direction, chunk: Chunk) {
        let d = dir.index();
        let ms = chunk.time_us.saturating_sub(self.start_us) / 1000;
        if ms > self.last_ms {
            self.tape.delay(ms - self.last_ms);
            self.last_ms = ms;
        }
        self.summary.content = true;
        self.written[d] += chunk.piece.len();
        match chunk.piece {
            Piece::Data(data) => {
                self.summary.first.get_or_insert(dir);
                self.summary.bytes[d] += data.len() as u64;
                self.tape.data(dir, &data);
            }
            Piece::Gap(len) => {
                self.summary.first.get_or_insert(dir);
                self.summary.bytes[d] += len;
                self.tape.any(dir, len);
            }
            Piece::Eof => self.tape.eof(dir),
        }
    }

    /// Ends the tape of a connection whose end the capture did not show:
    /// a CUT frame says why, and that nothing of the session follows.
    pub fn cut(&mut self, reason: &str) {
        debug_assert!(self.is_empty(), "cut after end");
        self.summary.cut = true;
        self.tape.cut(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::reassembly::tape_out;
    use crate::tape::Kind;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn chunk(piece: Piece, ms: u64, packet: u64, needs: u64) -> Chunk {
        Chunk {
            piece,
            time_us: ms * 1000,
            packet,
            needs,
        }
    }

    fn data(bytes: &[u8]) -> Piece {
        Piece::Data(bytes.to_vec())
    }

    /// The tape written so far, as (kind, length), the magic left out.
    fn frames(i: &mut Interleave) -> Vec<(Kind, u32)> {
        let mut out = tape_out::tests::frames(&i.tape().take());
        out.retain(|(kind, _)| *kind != Kind::Noop);
        out
    }

    #[test]
    fn chunks_go_by_time_with_delays() {
        let mut i = Interleave::new(1_000);
        i.push(S2C, chunk(data(b"late"), 30, 2, 0));
        i.push(C2S, chunk(data(b"early"), 10, 1, 0));
        i.push(C2S, chunk(Piece::Eof, 31, 3, 0));
        i.write_ready(false, [6, 4]);
        assert!(i.is_empty());
        assert_eq!(
            frames(&mut i),
            vec![
                (Kind::Delay, 9),
                (Kind::Data(C2S), 5),
                (Kind::Delay, 20),
                (Kind::Data(S2C), 4),
                (Kind::Delay, 1),
                (Kind::Eof(C2S), 0),
            ]
        );
        let summary = i.summary();
        assert_eq!((summary.bytes, summary.first), ([5, 4], Some(C2S)));
        assert!(summary.content && !summary.cut);
    }

    #[test]
    fn an_answer_waits_for_what_it_acknowledged() {
        let mut i = Interleave::new(0);
        // The answer's packet acknowledged 3 client bytes not queued yet.
        i.push(S2C, chunk(data(b"answer"), 1, 1, 3));
        i.write_ready(false, [0, 6]);
        assert!(!i.is_empty(), "held");
        assert_eq!(i.held(), 6 + SEGMENT_COST);
        i.push(C2S, chunk(data(b"ask"), 2, 2, 0));
        i.write_ready(false, [3, 6]);
        assert_eq!(
            frames(&mut i),
            vec![(Kind::Delay, 2), (Kind::Data(C2S), 3), (Kind::Data(S2C), 6)]
        );
        assert_eq!(i.held(), 0);
    }

    #[test]
    fn chunks_waiting_for_each_other_go_by_time() {
        let mut i = Interleave::new(0);
        i.push(C2S, chunk(data(b"a"), 2, 2, 1));
        i.push(S2C, chunk(data(b"b"), 1, 1, 1));
        i.write_ready(false, [1, 1]);
        assert_eq!(
            frames(&mut i),
            vec![
                (Kind::Delay, 1),
                (Kind::Data(S2C), 1),
                (Kind::Delay, 1),
                (Kind::Data(C2S), 1)
            ]
        );
    }

    #[test]
    fn at_the_end_needs_never_met_are_written_anyway() {
        let mut i = Interleave::new(0);
        i.push(S2C, chunk(data(b"x"), 0, 1, 100));
        i.push(S2C, chunk(Piece::Gap(3), 0, 2, 100));
        i.write_ready(false, [0, 4]);
        assert!(!i.is_empty());
        i.write_ready(true, [0, 4]);
        assert_eq!(i.summary().bytes, [0, 4]);
        i.cut("the capture ended");
        assert!(i.summary().cut);
        assert_eq!(
            frames(&mut i),
            vec![(Kind::Data(S2C), 1), (Kind::Any(S2C), 3), (Kind::Cut, 17)]
        );
    }
}
