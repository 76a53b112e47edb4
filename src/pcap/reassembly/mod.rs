//! One TCP connection, put back together from captured segments and
//! written as a tape as it goes.
//!
//! - `stream`: one direction's sequence space: offsets, segments held
//!   ahead of a hole, its FIN;
//! - `interleave`: the two directions' bytes put in one order (by time,
//!   each after what its packet acknowledged);
//! - `tape_out`: the tape in memory, through `tape::Writer`.
//!
//! A `Conn` takes the segments (`segment`), feeds each direction's new
//! bytes to its stream, queues what became contiguous, and ends in one of
//! its `State`s.
//!
//! Holes are waited for (a retransmission may fill them) until the
//! connection ends, or until more than `MAX_HELD` bytes wait behind one.
//! Then a hole is a gap: an error, or with `allow_gaps` a wildcard frame
//! of the hole's length, so replay counts those bytes without comparing
//! them.

mod interleave;
mod stream;
mod tape_out;

use std::fmt;
use std::net::SocketAddr;

use log::trace;

use super::tcp::{TcpHeader, flags};
use crate::tape::Direction;
use interleave::{Chunk, Interleave, Piece};
use stream::{Hole, Segment, Sending, Stream};

/// Bytes a connection may hold while waiting for a hole to be filled or
/// for the other direction's bytes: about one large TCP window.
pub const MAX_HELD: usize = 4 * 1024 * 1024;

const BOTH: [Direction; 2] = [Direction::ClientToServer, Direction::ServerToClient];

/// Why a connection cannot be written whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub dir: Direction,
    /// Stream offset of the first missing byte.
    pub offset: u64,
    pub len: u64,
    /// True when the gap was declared because too much waited behind it,
    /// rather than at the end of the connection.
    pub overflow: bool,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes missing at {} stream offset {}",
            self.len,
            self.dir.sender(),
            self.offset
        )?;
        if self.overflow {
            write!(
                f,
                " while more than {} MiB waited behind them",
                MAX_HELD / (1024 * 1024)
            )?;
        }
        Ok(())
    }
}

/// What a connection's tape says so far, for the cassette index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub bytes: [u64; 2],
    pub first: Option<Direction>,
    /// True once the tape holds anything: data, a gap or an EOF.
    pub content: bool,
    /// The capture ended before the connection did: the tape ends with a
    /// CUT frame.
    pub cut: bool,
}

/// Where a connection is. Segments are taken only while it is `Open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// Both sides closed and everything is written.
    Finished,
    /// Reset: the tape ends here.
    Reset,
}

/// One connection being reassembled and written.
#[derive(Debug)]
pub struct Conn {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub first_packet: u64,
    allow_gaps: bool,
    /// Indexed by `Direction::index` of the sender.
    streams: [Stream; 2],
    interleave: Interleave,
    last_time_us: u64,
    state: State,
    /// Gaps marked with wildcards, for the caller to report.
    marked: Vec<Gap>,
}

impl Conn {
    pub fn new(
        client: SocketAddr,
        server: SocketAddr,
        packet: u64,
        time_us: u64,
        allow_gaps: bool,
    ) -> Conn {
        Conn {
            client,
            server,
            first_packet: packet,
            allow_gaps,
            streams: Default::default(),
            interleave: Interleave::new(time_us),
            last_time_us: time_us,
            state: State::Open,
            marked: Vec::new(),
        }
    }

    /// How messages name this connection.
    pub fn name(&self) -> String {
        format!(
            "connection {} -> {} (from packet {})",
            self.client, self.server, self.first_packet
        )
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Every change of `state` passes here.
    fn set_state(&mut self, state: State) {
        trace!("{}: {:?} => {state:?}", self.name(), self.state);
        self.state = state;
    }

    pub fn summary(&self) -> Summary {
        self.interleave.summary()
    }

    /// The SYN's sequence number of `dir`, if one was seen.
    pub fn isn(&self, dir: Direction) -> Option<u32> {
        self.streams[dir.index()].isn()
    }

    /// Tape bytes written so far, taken out; the magic comes first.
    pub fn take_tape(&mut self) -> Vec<u8> {
        self.interleave.tape().take()
    }

    pub fn tape_len(&self) -> usize {
        self.interleave.tape_len()
    }

    /// Gaps marked since the last call.
    pub fn take_marked(&mut self) -> Vec<Gap> {
        std::mem::take(&mut self.marked)
    }

    /// What the connection holds: segments ahead of holes, and bytes
    /// queued for the tape.
    fn held(&self) -> usize {
        self.streams.iter().map(Stream::held).sum::<usize>() + self.interleave.held()
    }

    /// Takes one segment sent in direction `dir`.
    pub fn segment(
        &mut self,
        dir: Direction,
        tcp: &TcpHeader,
        payload: &[u8],
        time_us: u64,
        packet: u64,
    ) -> Result<(), Gap> {
        if self.state != State::Open {
            return Ok(());
        }
        self.last_time_us = self.last_time_us.max(time_us);
        if tcp.has(flags::RST) {
            self.set_state(State::Reset);
            return self.end();
        }
        let syn = tcp.has(flags::SYN);
        self.streams[dir.index()].sent(tcp.seq, syn);
        let needs = if tcp.has(flags::ACK) {
            self.streams[dir.reverse().index()].acknowledged(tcp.ack)
        } else {
            0
        };
        let stream = &mut self.streams[dir.index()];
        let Some(start) = stream.position(tcp.seq.wrapping_add(u32::from(syn))) else {
            return Ok(());
        };
        if stream.sending() == Sending::Closed {
            return Ok(());
        }
        if tcp.has(flags::FIN) {
            stream.fin_seen(start + payload.len() as i64, time_us, packet, needs);
        }
        let (at, data) = stream.unseen(start, payload);
        if !data.is_empty() {
            let segment = Segment {
                data: data.to_vec(),
                time_us,
                packet,
                needs,
            };
            if at == stream.delivered() {
                self.queue(dir, Chunk::from(segment));
            } else {
                stream.hold(at, segment);
            }
        }
        self.pull(dir);
        self.write_ready(false);
        if self.held() > MAX_HELD {
            self.fill_holes(true)?;
            self.write_ready(true);
        }
        let closed = self.streams.iter().all(|s| s.sending() == Sending::Closed);
        if closed && self.interleave.is_empty() {
            self.set_state(State::Finished);
        }
        Ok(())
    }

    /// Ends the connection (reset, or the capture ended): holes left are
    /// gaps, and everything queued is written.
    pub fn end(&mut self) -> Result<(), Gap> {
        self.fill_holes(false)?;
        self.write_ready(true);
        Ok(())
    }

    /// Ends the tape of a connection whose end the capture did not show:
    /// a CUT frame says why, and that nothing of the session follows.
    pub fn cut(&mut self, reason: &str) {
        self.interleave.cut(reason);
    }

    /// Queues a chunk of `dir` for the tape: its stream moves on.
    fn queue(&mut self, dir: Direction, chunk: Chunk) {
        self.streams[dir.index()].deliver(chunk.piece.len());
        self.interleave.push(dir, chunk);
    }

    /// Queues what became contiguous in `dir`, and its EOF once reached.
    fn pull(&mut self, dir: Direction) {
        while let Some(segment) = self.streams[dir.index()].next_in_order() {
            self.queue(dir, Chunk::from(segment));
        }
        if let Some(fin) = self.streams[dir.index()].reach_fin() {
            let chunk = Chunk {
                piece: Piece::Eof,
                time_us: fin.time_us,
                packet: fin.packet,
                needs: fin.needs,
            };
            self.queue(dir, chunk);
        }
    }

    fn write_ready(&mut self, all: bool) {
        let delivered = self.streams.each_ref().map(Stream::delivered);
        self.interleave.write_ready(all, delivered);
    }

    /// Declares the first hole of each direction a gap, until none is
    /// left: behind every hole something waits (a segment, the FIN, or
    /// the other side's acknowledgement).
    fn fill_holes(&mut self, overflow: bool) -> Result<(), Gap> {
        for dir in BOTH {
            while let Some(hole) = self.streams[dir.index()].hole(overflow) {
                let (len, time_us) = match hole {
                    Hole::Missing { len, time_us } => (len, time_us),
                    Hole::LostFin => {
                        self.streams[dir.index()].lost_fin(self.last_time_us);
                        self.pull(dir);
                        break;
                    }
                };
                let gap = Gap {
                    dir,
                    offset: self.streams[dir.index()].delivered(),
                    len,
                    overflow,
                };
                if !self.allow_gaps {
                    return Err(gap);
                }
                let chunk = Chunk {
                    piece: Piece::Gap(len),
                    time_us: time_us.unwrap_or(self.last_time_us),
                    packet: 0,
                    needs: 0,
                };
                self.queue(dir, chunk);
                self.marked.push(gap);
                self.pull(dir);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::{Kind, Reader};

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    /// A connection fed by hand: segments as (dir, flags, seq, ack, data).
    struct Feed {
        conn: Conn,
        packet: u64,
        /// The tape so far, and how many of its frames were returned.
        tape: Vec<u8>,
        seen: usize,
    }

    impl Feed {
        fn new(allow_gaps: bool) -> Feed {
            let addr = |s: &str| s.parse().unwrap();
            Feed {
                conn: Conn::new(
                    addr("10.0.0.1:40001"),
                    addr("10.0.0.2:80"),
                    1,
                    0,
                    allow_gaps,
                ),
                packet: 0,
                tape: Vec::new(),
                seen: 0,
            }
        }

        fn send(
            &mut self,
            dir: Direction,
            fl: u8,
            seq: u32,
            ack: u32,
            data: &[u8],
            ms: u64,
        ) -> Result<(), Gap> {
            self.packet += 1;
            let tcp = TcpHeader {
                src_port: 0,
                dst_port: 0,
                seq,
                ack,
                flags: fl,
                window: 0,
                syn_options: None,
            };
            self.conn.segment(dir, &tcp, data, ms * 1000, self.packet)
        }

        /// The tape's frames since the last call, as (kind, payload or
        /// length).
        fn frames(&mut self) -> Vec<(Kind, Vec<u8>)> {
            let more = self.conn.take_tape();
            self.tape.extend_from_slice(&more);
            let mut reader = Reader::new(self.tape.as_slice());
            let mut out = Vec::new();
            while let Some(frame) = reader.next_frame().unwrap() {
                let mut payload = Vec::new();
                match frame.kind {
                    Kind::Noop => continue,
                    Kind::Delay => payload = frame.len.to_be_bytes().to_vec(),
                    Kind::Any(_) => {
                        payload = reader.read_wildcard().unwrap().to_be_bytes().to_vec()
                    }
                    _ => reader.read_payload_into(&mut payload).unwrap(),
                }
                out.push((frame.kind, payload));
            }
            let new = out.split_off(self.seen);
            self.seen += new.len();
            new
        }
    }

    const A: u8 = flags::ACK;

    fn handshake(f: &mut Feed, c: u32, s: u32) {
        f.send(C2S, flags::SYN, c, 0, b"", 0).unwrap();
        f.send(S2C, flags::SYN | A, s, c.wrapping_add(1), b"", 0)
            .unwrap();
        f.send(C2S, A, c.wrapping_add(1), s.wrapping_add(1), b"", 0)
            .unwrap();
    }

    fn data(dir: Direction, bytes: &[u8]) -> (Kind, Vec<u8>) {
        (Kind::Data(dir), bytes.to_vec())
    }

    fn delay(ms: u32) -> (Kind, Vec<u8>) {
        (Kind::Delay, ms.to_be_bytes().to_vec())
    }

    #[test]
    fn in_order_exchange_with_fins_and_delays() {
        let mut f = Feed::new(false);
        handshake(&mut f, 100, 500);
        f.send(C2S, A, 101, 501, b"hello", 0).unwrap();
        f.send(S2C, A, 501, 106, b"world", 20).unwrap();
        f.send(C2S, flags::FIN | A, 106, 506, b"", 25).unwrap();
        f.send(S2C, flags::FIN | A, 506, 107, b"", 25).unwrap();
        assert_eq!(f.conn.state(), State::Finished);
        f.send(C2S, A, 107, 507, b"late", 25).unwrap();
        assert_eq!(
            f.frames(),
            vec![
                data(C2S, b"hello"),
                delay(20),
                data(S2C, b"world"),
                delay(5),
                (Kind::Eof(C2S), vec![]),
                (Kind::Eof(S2C), vec![]),
            ]
        );
        let summary = f.conn.summary();
        assert_eq!(summary.bytes, [5, 5]);
        assert_eq!(summary.first, Some(C2S));
    }

    #[test]
    fn reordered_duplicated_overlapping_and_wrapping() {
        let mut f = Feed::new(false);
        let c = u32::MAX - 4; // wraps within the first bytes
        handshake(&mut f, c, 0);
        let seq = |off: u32| c.wrapping_add(1).wrapping_add(off);
        f.send(C2S, A, seq(6), 1, b"ghij", 1).unwrap(); // ahead
        f.send(C2S, A, seq(3), 1, b"def", 1).unwrap(); // ahead too
        f.send(C2S, A, seq(0), 1, b"abcd", 2).unwrap(); // fills, overlaps "d"
        f.send(C2S, A, seq(0), 1, b"abcdefghij", 3).unwrap(); // retransmission
        f.send(C2S, A, seq(8), 1, b"ijKL", 3).unwrap(); // overlap then new
        f.send(C2S, flags::FIN | A, seq(12), 1, b"", 3).unwrap();
        let frames = f.frames();
        let stream: Vec<u8> = frames
            .iter()
            .filter(|(k, _)| *k == Kind::Data(C2S))
            .flat_map(|(_, d)| d.clone())
            .collect();
        assert_eq!(stream, b"abcdefghijKL");
        assert_eq!(frames.last().unwrap().0, Kind::Eof(C2S));
    }

    #[test]
    fn answer_acknowledging_a_request_follows_it() {
        // The capture saw the server's answer before the request it
        // acknowledges (clocks of a merged capture).
        let mut f = Feed::new(false);
        handshake(&mut f, 100, 500);
        f.send(S2C, A, 501, 105, b"answer", 1).unwrap();
        assert_eq!(f.frames(), vec![], "held until the request is seen");
        f.send(C2S, A, 101, 501, b"ask?", 2).unwrap();
        assert_eq!(
            f.frames(),
            vec![delay(2), data(C2S, b"ask?"), data(S2C, b"answer")]
        );
    }

    #[test]
    fn missing_handshake_takes_the_first_sequence_numbers() {
        let mut f = Feed::new(false);
        f.send(S2C, A, 9000, 7000, b"banner", 0).unwrap();
        f.send(C2S, A, 6990, 9006, b"old bytes", 1).unwrap(); // before the start
        f.send(C2S, A, 7000, 9006, b"hi", 2).unwrap();
        assert_eq!(
            f.frames(),
            vec![data(S2C, b"banner"), delay(2), data(C2S, b"hi")]
        );
    }

    #[test]
    fn gaps_are_errors_or_wildcards() {
        for allow in [false, true] {
            let mut f = Feed::new(allow);
            handshake(&mut f, 0, 0);
            f.send(C2S, A, 1, 1, b"abc", 0).unwrap();
            f.send(C2S, A, 7, 1, b"ghi", 0).unwrap(); // "def" never comes
            f.send(S2C, A, 1, 10, b"ok", 0).unwrap();
            let result = f.conn.end();
            let gap = Gap {
                dir: C2S,
                offset: 3,
                len: 3,
                overflow: false,
            };
            if !allow {
                assert_eq!(result, Err(gap));
                assert_eq!(gap.to_string(), "3 bytes missing at client stream offset 3");
                continue;
            }
            result.unwrap();
            assert_eq!(f.conn.take_marked(), vec![gap]);
            assert_eq!(
                f.frames(),
                vec![
                    data(C2S, b"abc"),
                    (Kind::Any(C2S), 3u32.to_be_bytes().to_vec()),
                    data(C2S, b"ghi"),
                    data(S2C, b"ok"),
                ]
            );
        }
    }

    #[test]
    fn acknowledged_bytes_never_captured_are_a_gap() {
        let mut f = Feed::new(true);
        handshake(&mut f, 0, 0);
        f.send(S2C, A, 1, 101, b"got your 100 bytes", 5).unwrap();
        f.conn.end().unwrap();
        assert_eq!(
            f.frames(),
            vec![
                delay(5),
                (Kind::Any(C2S), 100u32.to_be_bytes().to_vec()),
                data(S2C, b"got your 100 bytes"),
            ]
        );
    }

    #[test]
    fn a_lost_fin_acknowledged_by_the_peer_is_an_eof() {
        let mut f = Feed::new(false);
        handshake(&mut f, 0, 0);
        f.send(C2S, A, 1, 1, b"bye", 0).unwrap();
        f.send(S2C, A, 1, 5, b"", 0).unwrap(); // acknowledges a FIN at 4
        f.conn.end().unwrap();
        assert_eq!(
            f.frames(),
            vec![data(C2S, b"bye"), (Kind::Eof(C2S), vec![])]
        );
    }

    #[test]
    fn too_much_waiting_behind_a_hole() {
        let mut f = Feed::new(false);
        handshake(&mut f, 0, 0);
        let block = vec![1u8; 64 * 1024];
        let mut result = Ok(());
        for i in 0..100u32 {
            result = f.send(C2S, A, 1000 + i * block.len() as u32, 1, &block, 0);
            if result.is_err() {
                break;
            }
        }
        let gap = result.unwrap_err();
        assert_eq!((gap.offset, gap.len, gap.overflow), (0, 999, true));
        assert!(
            gap.to_string()
                .ends_with("while more than 4 MiB waited behind them")
        );
        assert!(f.conn.held() <= MAX_HELD + block.len() + stream::SEGMENT_COST);
    }

    #[test]
    fn reset_ends_the_tape() {
        let mut f = Feed::new(false);
        handshake(&mut f, 0, 0);
        f.send(C2S, A, 1, 1, b"x", 0).unwrap();
        f.send(S2C, flags::RST, 1, 0, b"", 0).unwrap();
        assert_eq!(f.conn.state(), State::Reset);
        f.send(C2S, A, 2, 1, b"ignored", 0).unwrap();
        assert_eq!(f.frames(), vec![data(C2S, b"x")]);
    }

    // State in, event in, state out: a connection built in a state (by
    // the segments that lead there), fed one segment, its next state and
    // what reached the tape asserted. Client ISN 100 (its byte k has
    // sequence number 101 + k), server ISN 500 (501 + k).

    fn sending(f: &Feed, dir: Direction) -> Sending {
        f.conn.streams[dir.index()].sending()
    }

    /// After the three-way handshake, nothing sent.
    fn established(allow_gaps: bool) -> Feed {
        let mut f = Feed::new(allow_gaps);
        handshake(&mut f, 100, 500);
        assert_eq!(f.frames(), vec![]);
        f
    }

    /// The client sent "req" and its FIN; the server acknowledged both.
    fn client_half_closed() -> Feed {
        let mut f = established(false);
        f.send(C2S, flags::FIN | A, 101, 501, b"req", 0).unwrap();
        f.send(S2C, A, 501, 105, b"", 0).unwrap();
        assert_eq!(
            f.frames(),
            vec![data(C2S, b"req"), (Kind::Eof(C2S), vec![])]
        );
        f
    }

    #[test]
    fn test_new_syn() {
        let mut f = Feed::new(false);
        f.send(C2S, flags::SYN, 100, 0, b"", 0).unwrap();
        assert_eq!(f.conn.state(), State::Open);
        assert_eq!(f.conn.isn(C2S), Some(100));
        assert_eq!(f.conn.isn(S2C), None);
        assert!(!f.conn.summary().content, "nothing for the tape");
    }

    #[test]
    fn test_established_retransmitted_syn() {
        let mut f = established(false);
        f.send(C2S, flags::SYN, 100, 0, b"", 5).unwrap();
        assert_eq!(f.conn.isn(C2S), Some(100));
        f.send(C2S, A, 101, 501, b"a", 5).unwrap();
        assert_eq!(f.frames(), vec![delay(5), data(C2S, b"a")]);
    }

    #[test]
    fn test_established_data_in_order() {
        let mut f = established(false);
        f.send(C2S, A, 101, 501, b"abc", 0).unwrap();
        f.send(C2S, A, 104, 501, b"def", 0).unwrap();
        assert_eq!(f.frames(), vec![data(C2S, b"abcdef")], "one frame");
        assert_eq!(f.conn.held(), 0);
        assert_eq!(sending(&f, C2S), Sending::Open);
    }

    #[test]
    fn test_established_data_out_of_order() {
        let mut f = established(false);
        f.send(C2S, A, 104, 501, b"def", 0).unwrap();
        assert_eq!(f.frames(), vec![], "waits for bytes 0 to 2");
        assert_eq!(f.conn.held(), 3 + stream::SEGMENT_COST);
        f.send(C2S, A, 101, 501, b"abc", 1).unwrap();
        assert_eq!(f.frames(), vec![delay(1), data(C2S, b"abcdef")]);
        assert_eq!(f.conn.held(), 0);
    }

    #[test]
    fn test_established_duplicate_data() {
        let mut f = established(false);
        f.send(C2S, A, 101, 501, b"abc", 0).unwrap();
        f.send(C2S, A, 101, 501, b"abc", 0).unwrap();
        f.send(C2S, A, 102, 501, b"bcd", 0).unwrap();
        assert_eq!(f.frames(), vec![data(C2S, b"abcd")]);
    }

    #[test]
    fn test_established_client_fin() {
        let mut f = established(false);
        f.send(C2S, flags::FIN | A, 101, 501, b"", 0).unwrap();
        assert_eq!(sending(&f, C2S), Sending::Closed);
        assert_eq!(sending(&f, S2C), Sending::Open);
        assert_eq!(f.conn.state(), State::Open, "half-closed");
        assert_eq!(f.frames(), vec![(Kind::Eof(C2S), vec![])]);
    }

    #[test]
    fn test_established_fin_behind_a_hole() {
        let mut f = established(false);
        f.send(C2S, flags::FIN | A, 104, 501, b"def", 0).unwrap();
        assert!(matches!(sending(&f, C2S), Sending::Fin(fin) if fin.at == 6));
        assert_eq!(f.frames(), vec![], "no EOF before bytes 0 to 2");
        f.send(C2S, A, 101, 501, b"abc", 0).unwrap();
        assert_eq!(sending(&f, C2S), Sending::Closed);
        assert_eq!(
            f.frames(),
            vec![data(C2S, b"abcdef"), (Kind::Eof(C2S), vec![])]
        );
    }

    #[test]
    fn test_established_rst() {
        let mut f = established(false);
        f.send(C2S, A, 101, 501, b"x", 0).unwrap();
        // An answer waiting for request bytes the capture never shows
        // (two: one would be taken for a lost FIN).
        f.send(S2C, A, 501, 104, b"y", 0).unwrap();
        assert_eq!(f.frames(), vec![data(C2S, b"x")]);
        let result = f.send(C2S, flags::RST, 102, 0, b"", 0);
        assert_eq!(f.conn.state(), State::Reset);
        assert_eq!(
            result,
            Err(Gap {
                dir: C2S,
                offset: 1,
                len: 2,
                overflow: false
            }),
            "the bytes the server acknowledged are a gap"
        );
    }

    #[test]
    fn test_established_rst_with_gaps_allowed() {
        let mut f = established(true);
        f.send(C2S, A, 103, 501, b"c", 0).unwrap();
        f.send(S2C, flags::RST, 501, 0, b"", 0).unwrap();
        assert_eq!(f.conn.state(), State::Reset);
        assert_eq!(
            f.frames(),
            vec![
                (Kind::Any(C2S), 2u32.to_be_bytes().to_vec()),
                data(C2S, b"c")
            ]
        );
        assert_eq!(f.conn.take_marked().len(), 1);
    }

    #[test]
    fn test_client_half_closed_server_data() {
        let mut f = client_half_closed();
        f.send(S2C, A, 501, 105, b"answer", 3).unwrap();
        assert_eq!(f.frames(), vec![delay(3), data(S2C, b"answer")]);
        assert_eq!(f.conn.state(), State::Open);
    }

    #[test]
    fn test_client_half_closed_client_data() {
        let mut f = client_half_closed();
        f.send(C2S, A, 105, 501, b"after the FIN", 0).unwrap();
        assert_eq!(f.frames(), vec![], "ignored");
        assert_eq!(f.conn.held(), 0, "not held either");
    }

    #[test]
    fn test_client_half_closed_server_fin() {
        let mut f = client_half_closed();
        f.send(S2C, flags::FIN | A, 501, 105, b"ok", 0).unwrap();
        assert_eq!(f.conn.state(), State::Finished);
        assert_eq!(f.frames(), vec![data(S2C, b"ok"), (Kind::Eof(S2C), vec![])]);
    }

    #[test]
    fn test_finished_segment() {
        let mut f = client_half_closed();
        f.send(S2C, flags::FIN | A, 501, 105, b"", 0).unwrap();
        f.frames();
        f.send(S2C, A, 502, 105, b"late", 0).unwrap();
        f.send(C2S, flags::RST, 105, 0, b"", 0).unwrap();
        assert_eq!(f.conn.state(), State::Finished, "no way out");
        assert_eq!(f.frames(), vec![]);
    }

    #[test]
    fn test_open_cut() {
        let mut f = established(false);
        f.send(S2C, A, 501, 101, b"banner", 0).unwrap();
        f.conn.end().unwrap();
        f.conn.cut("the capture ended");
        assert!(f.conn.summary().cut);
        assert_eq!(
            f.frames(),
            vec![
                data(S2C, b"banner"),
                (Kind::Cut, b"the capture ended".to_vec())
            ]
        );
    }
}
