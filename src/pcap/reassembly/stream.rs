//! One direction of a connection: its sequence space as stream offsets,
//! the segments that arrived ahead of a hole, and where its FIN is.
//!
//! Offsets count from the byte after the SYN (or from the first sequence
//! number seen, when the handshake was not captured), in 64 bits, so
//! sequence numbers may wrap any number of times. Segments ahead of a hole
//! wait in a map by offset; what is already delivered is cut off, so
//! duplicates and overlaps add only new bytes (the first copy wins).
//!
//! The stream decides nothing about the tape: the connection asks it for
//! bytes that became contiguous, and queues them.

use std::collections::BTreeMap;

use log::trace;

/// What each held segment costs on top of its bytes, so a flood of tiny
/// segments is bounded too.
pub const SEGMENT_COST: usize = 64;

/// Bytes of a direction, with the packet that carried them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub data: Vec<u8>,
    pub time_us: u64,
    pub packet: u64,
    /// Position in the other direction that the packet acknowledged
    /// (that direction's stream offset, its FIN counting one): what must
    /// be on the tape before these bytes.
    pub needs: u64,
}

impl Segment {
    pub fn cost(&self) -> usize {
        self.data.len() + SEGMENT_COST
    }
}

/// Where a direction's FIN is, and what its packet said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fin {
    /// The FIN's stream offset: the offset after the last byte.
    pub at: u64,
    pub time_us: u64,
    pub packet: u64,
    pub needs: u64,
}

/// How far a direction's sender has got in closing its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// No FIN seen yet: bytes may come at any offset.
    Open,
    /// The FIN is known; bytes before it may still be missing. Nothing
    /// after it is taken.
    Fin(Fin),
    /// Every byte and the FIN are delivered: the EOF is queued, and the
    /// direction takes nothing more.
    Closed,
}

/// What lies between the bytes delivered and what waits behind them,
/// when a connection ends or holds too much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hole {
    /// `len` bytes that never came; the packet time of what waits behind
    /// them, when a segment does.
    Missing { len: u64, time_us: Option<u64> },
    /// Every byte came, and the other side acknowledged a FIN the capture
    /// did not see: it was sent.
    LostFin,
}

/// One direction of the connection.
#[derive(Debug)]
pub struct Stream {
    /// The sequence number of stream offset 0.
    base: Option<u32>,
    /// The SYN's sequence number, when one was seen.
    isn: Option<u32>,
    /// Everything before this offset is queued for the tape (the FIN
    /// counts one).
    delivered: u64,
    ahead: BTreeMap<u64, Segment>,
    /// What `ahead` costs (bytes and `SEGMENT_COST` each).
    held: usize,
    sending: Sending,
    /// The furthest offset the other side acknowledged.
    acked: u64,
}

impl Default for Stream {
    fn default() -> Stream {
        Stream {
            base: None,
            isn: None,
            delivered: 0,
            ahead: BTreeMap::new(),
            held: 0,
            sending: Sending::Open,
            acked: 0,
        }
    }
}

impl Stream {
    pub fn isn(&self) -> Option<u32> {
        self.isn
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn sending(&self) -> Sending {
        self.sending
    }

    /// Every change of `sending` passes here.
    fn set_sending(&mut self, sending: Sending) {
        trace!("stream {:?} => {sending:?}", self.sending);
        self.sending = sending;
    }

    /// A segment of this direction was sent with sequence number `seq`:
    /// the first one fixes where the stream starts.
    pub fn sent(&mut self, seq: u32, syn: bool) {
        if syn && self.isn.is_none() {
            self.isn = Some(seq);
        }
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(u32::from(syn)));
        }
    }

    /// The other side acknowledged `ack`: returns that stream offset (0
    /// for one before the capture started). Without the handshake, the
    /// first acknowledgement tells where the stream stands.
    pub fn acknowledged(&mut self, ack: u32) -> u64 {
        self.base.get_or_insert(ack);
        let at = self
            .position(ack)
            .map_or(0, |at| u64::try_from(at).unwrap_or(0));
        self.acked = self.acked.max(at);
        at
    }

    /// The stream offset of `seq`, which may be before 0 (data from
    /// before the capture started); `None` before the stream started.
    pub fn position(&self, seq: u32) -> Option<i64> {
        let base = self.base?;
        let here = base.wrapping_add(self.delivered as u32);
        Some(self.delivered as i64 + i64::from(seq.wrapping_sub(here) as i32))
    }

    /// A FIN after a segment's bytes, at offset `at`: the first one
    /// not before what is delivered stands. Bytes after it are never
    /// taken.
    pub fn fin_seen(&mut self, at: i64, time_us: u64, packet: u64, needs: u64) {
        if self.sending == Sending::Open && at >= self.delivered as i64 {
            let fin = Fin {
                at: at as u64,
                time_us,
                packet,
                needs,
            };
            self.set_sending(Sending::Fin(fin));
        }
    }

    /// The bytes of a payload at offset `start` that are new (not
    /// delivered yet, not after the FIN), and their offset.
    pub fn unseen<'a>(&self, start: i64, payload: &'a [u8]) -> (u64, &'a [u8]) {
        let end = match self.sending {
            Sending::Fin(fin) => (fin.at as i64 - start).clamp(0, payload.len() as i64) as usize,
            _ => payload.len(),
        };
        let skip = (self.delivered as i64 - start).clamp(0, end as i64) as usize;
        ((start + skip as i64) as u64, &payload[skip..end])
    }

    /// Keeps bytes that arrived ahead of a hole at offset `at`; of two
    /// segments at one offset the longer stays.
    pub fn hold(&mut self, at: u64, segment: Segment) {
        if let Some(old) = self.ahead.get(&at) {
            if old.data.len() >= segment.data.len() {
                return;
            }
            self.held -= old.cost();
        }
        self.held += segment.cost();
        self.ahead.insert(at, segment);
    }

    /// The next held bytes that became contiguous, cut to those not
    /// delivered yet; `None` while a hole is before them. The caller
    /// queues them (`deliver`) before asking again.
    pub fn next_in_order(&mut self) -> Option<Segment> {
        while let Some(entry) = self.ahead.first_entry() {
            let at = *entry.key();
            if at > self.delivered {
                return None;
            }
            let mut segment = entry.remove();
            self.held -= segment.cost();
            let skip = (self.delivered - at) as usize;
            if skip < segment.data.len() {
                segment.data.drain(..skip);
                return Some(segment);
            }
        }
        None
    }

    /// `len` more positions are queued for the tape (bytes, a gap, or the
    /// FIN's one).
    pub fn deliver(&mut self, len: u64) {
        self.delivered += len;
    }

    /// The FIN, once every byte before it is delivered: the direction
    /// closes, and the caller queues its EOF.
    pub fn reach_fin(&mut self) -> Option<Fin> {
        match self.sending {
            Sending::Fin(fin) if fin.at == self.delivered => {
                self.set_sending(Sending::Closed);
                Some(fin)
            }
            _ => None,
        }
    }

    /// Takes a FIN the capture did not show as sent right after the last
    /// byte delivered (see `Hole::LostFin`).
    pub fn lost_fin(&mut self, time_us: u64) {
        let fin = Fin {
            at: self.delivered,
            time_us,
            packet: u64::MAX,
            needs: 0,
        };
        self.set_sending(Sending::Fin(fin));
    }

    /// The first hole, if something waits behind it: a segment, the FIN,
    /// or the other side's acknowledgement of bytes never captured.
    /// `overflow`: asked because too much waits, not because the
    /// connection ended, so an unseen FIN is not assumed yet.
    pub fn hole(&self, overflow: bool) -> Option<Hole> {
        let fin = match self.sending {
            Sending::Closed => return None,
            Sending::Fin(fin) => Some(fin),
            Sending::Open => None,
        };
        let next = self.ahead.first_key_value();
        let end = match (next, fin) {
            (Some((&at, _)), _) => at,
            (None, Some(fin)) => fin.at,
            // Everything but the FIN was captured, and the other side
            // acknowledged it: the FIN was lost.
            (None, None) if !overflow && self.acked == self.delivered + 1 => {
                return Some(Hole::LostFin);
            }
            (None, None) if self.acked > self.delivered => self.acked,
            (None, None) => return None,
        };
        if end <= self.delivered {
            return None;
        }
        Some(Hole::Missing {
            len: end - self.delivered,
            time_us: next.map(|(_, s)| s.time_us),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(data: &[u8]) -> Segment {
        Segment {
            data: data.to_vec(),
            time_us: 7,
            packet: 1,
            needs: 0,
        }
    }

    /// A stream started at sequence number 1000, with `delivered` bytes
    /// delivered.
    fn stream(delivered: u64) -> Stream {
        let mut s = Stream::default();
        s.sent(1000, false);
        s.deliver(delivered);
        s
    }

    #[test]
    fn positions_wrap_and_go_before_the_start() {
        let mut s = Stream::default();
        assert_eq!(s.position(5), None, "not started");
        s.sent(u32::MAX, true);
        assert_eq!(s.isn(), Some(u32::MAX));
        assert_eq!(s.position(0), Some(0), "the byte after the SYN");
        s.deliver(10);
        assert_eq!(s.position(10), Some(10));
        assert_eq!(s.position(u32::MAX - 5), Some(-6));
    }

    #[test]
    fn acknowledgements_start_a_stream_and_only_move_on() {
        let mut s = Stream::default();
        assert_eq!(s.acknowledged(500), 0, "the first fixes the start");
        assert_eq!(s.acknowledged(520), 20);
        assert_eq!(s.acknowledged(510), 10);
        assert_eq!(s.acked, 20);
        assert_eq!(s.acknowledged(400), 0, "before the start");
    }

    #[test]
    fn open_stream_unseen_bytes() {
        let s = stream(4);
        assert_eq!(s.unseen(2, b"cdef"), (4, &b"ef"[..]));
        assert_eq!(s.unseen(0, b"ab"), (2, &b""[..]), "old bytes");
        assert_eq!(s.unseen(9, b"xy"), (9, &b"xy"[..]), "ahead");
    }

    #[test]
    fn open_stream_fin_cuts_later_bytes() {
        let mut s = stream(0);
        s.fin_seen(3, 5, 2, 9);
        let fin = Fin {
            at: 3,
            time_us: 5,
            packet: 2,
            needs: 9,
        };
        assert_eq!(s.sending(), Sending::Fin(fin));
        // A retransmission carrying more than the FIN allowed.
        assert_eq!(s.unseen(2, b"cdef"), (2, &b"c"[..]));
        assert_eq!(s.unseen(5, b"fg"), (5, &b""[..]));
        // A second FIN elsewhere does not move the first.
        s.fin_seen(8, 0, 3, 0);
        assert_eq!(s.sending(), Sending::Fin(fin));
    }

    #[test]
    fn open_stream_fin_before_delivered_is_ignored() {
        let mut s = stream(10);
        s.fin_seen(4, 0, 1, 0);
        assert_eq!(s.sending(), Sending::Open);
        s.fin_seen(10, 0, 1, 0);
        assert!(matches!(s.sending(), Sending::Fin(_)));
    }

    #[test]
    fn fin_stream_closes_when_bytes_reach_it() {
        let mut s = stream(0);
        s.fin_seen(4, 0, 1, 0);
        assert_eq!(s.reach_fin(), None, "bytes 0 to 3 missing");
        s.deliver(4);
        assert_eq!(s.reach_fin().map(|f| f.at), Some(4));
        assert_eq!(s.sending(), Sending::Closed);
        assert_eq!(s.reach_fin(), None, "once");
    }

    #[test]
    fn closed_stream_has_no_fin_and_no_hole() {
        let mut s = stream(0);
        s.lost_fin(5);
        assert!(s.reach_fin().is_some());
        s.fin_seen(9, 0, 1, 0);
        assert_eq!(s.sending(), Sending::Closed);
        s.acknowledged(1000 + 100);
        assert_eq!(s.hole(false), None);
    }

    #[test]
    fn held_segments_come_out_in_order_once_contiguous() {
        let mut s = stream(0);
        s.hold(6, segment(b"ghij"));
        s.hold(3, segment(b"de"));
        s.hold(3, segment(b"d"));
        s.hold(3, segment(b"def"));
        assert_eq!(s.held(), 7 + 2 * SEGMENT_COST, "the longer copy stays");
        assert_eq!(s.next_in_order(), None, "a hole at 0");
        s.deliver(4); // "abcd" came in order
        assert_eq!(s.next_in_order().unwrap().data, b"ef", "cut to new bytes");
        s.deliver(2);
        assert_eq!(s.next_in_order().unwrap().data, b"ghij");
        s.deliver(4);
        assert_eq!(s.next_in_order(), None);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn covered_segments_are_dropped() {
        let mut s = stream(0);
        s.hold(1, segment(b"b"));
        s.hold(2, segment(b"c"));
        s.deliver(5);
        assert_eq!(s.next_in_order(), None);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn holes_before_segments_fins_and_acknowledgements() {
        let mut s = stream(0);
        assert_eq!(s.hole(false), None, "nothing waits");
        s.acknowledged(1000 + 5);
        assert_eq!(
            s.hole(false),
            Some(Hole::Missing {
                len: 5,
                time_us: None
            }),
            "acknowledged, never captured"
        );
        s.hold(3, segment(b"d"));
        assert_eq!(
            s.hole(false),
            Some(Hole::Missing {
                len: 3,
                time_us: Some(7)
            })
        );
        let mut s = stream(0);
        s.fin_seen(4, 0, 1, 0);
        assert_eq!(
            s.hole(true),
            Some(Hole::Missing {
                len: 4,
                time_us: None
            })
        );
    }

    #[test]
    fn an_acknowledged_fin_is_lost_only_at_the_end() {
        let mut s = stream(3);
        s.acknowledged(1000 + 4);
        assert_eq!(s.hole(false), Some(Hole::LostFin));
        assert_eq!(
            s.hole(true),
            Some(Hole::Missing {
                len: 1,
                time_us: None
            }),
            "while the connection goes on, a byte may still come"
        );
        s.lost_fin(9);
        assert_eq!(s.reach_fin().map(|f| (f.at, f.time_us)), Some((3, 9)));
    }
}
