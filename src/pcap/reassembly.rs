//! One TCP connection, put back together from captured segments and
//! written as a tape as it goes.
//!
//! Each direction is a `Half`: its stream offsets count from the byte after
//! the SYN (or from the first sequence number seen, when the handshake was
//! not captured), in 64 bits, so sequence numbers may wrap. Segments that
//! arrive ahead of a hole wait in a map by offset; duplicates and overlaps
//! are cut to the bytes not yet seen (the first copy of a byte wins).
//!
//! Bytes that are in order go to a queue per direction, each chunk with the
//! time of its packet and what that packet acknowledged of the other
//! direction. The queues are merged into the tape by time, except that a
//! chunk never goes before the other direction's bytes its packet had
//! acknowledged: a server's answer follows the request it acknowledges,
//! even when the capture saw it first.
//!
//! Holes are waited for (a retransmission may fill them) until the
//! connection ends, or until more than `MAX_HELD` bytes wait behind one.
//! Then a hole is a gap: an error, or with `allow_gaps` a wildcard frame
//! of the hole's length, so replay counts those bytes without comparing
//! them.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use byteorder::{BigEndian, ByteOrder};

use super::tcp::{TcpHeader, flags};
use crate::tape::frame::{HEADER_LEN, Header, MAX_LEN, WILDCARD_LEN, magic_frame};
use crate::tape::{Direction, Kind};

/// Bytes a connection may hold while waiting for a hole to be filled or
/// for the other direction's bytes: about one large TCP window.
pub const MAX_HELD: usize = 4 * 1024 * 1024;
/// What each held segment costs on top of its bytes, so a flood of tiny
/// segments is bounded too.
const SEGMENT_COST: usize = 64;
/// Consecutive data of one direction, with no delay between, is written
/// as one frame of up to this many bytes.
const MAX_MERGED_FRAME: usize = 64 * 1024;

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
        let side = self.dir.sender();
        write!(
            f,
            "{} bytes missing at {side} stream offset {}",
            self.len, self.offset
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

/// A segment that arrived ahead of a hole.
#[derive(Debug)]
struct Segment {
    data: Vec<u8>,
    time_us: u64,
    packet: u64,
    needs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Data(Vec<u8>),
    Gap(u64),
    Eof,
}

/// Bytes (or a gap, or the EOF) ready for the tape.
#[derive(Debug)]
struct Chunk {
    piece: Piece,
    time_us: u64,
    packet: u64,
    /// Position in the other direction (its stream offset, its FIN
    /// counting one) that must be written first.
    needs: u64,
}

impl Chunk {
    fn cost(&self) -> usize {
        match &self.piece {
            Piece::Data(data) => data.len() + SEGMENT_COST,
            _ => SEGMENT_COST,
        }
    }
}

/// Where a direction's FIN is, and what its packet said.
#[derive(Debug, Clone, Copy)]
struct Fin {
    at: u64,
    time_us: u64,
    packet: u64,
    needs: u64,
}

/// One direction of the connection.
#[derive(Debug, Default)]
struct Half {
    /// The sequence number of stream offset 0.
    base: Option<u32>,
    /// The SYN's sequence number, when one was seen.
    isn: Option<u32>,
    /// Everything before this position is queued or written (the FIN
    /// counts one).
    delivered: u64,
    ahead: BTreeMap<u64, Segment>,
    fin: Option<Fin>,
    closed: bool,
    /// The furthest position the other side acknowledged.
    acked: u64,
    /// Bytes queued: data and gaps.
    bytes: u64,
}

impl Half {
    /// The stream position of `seq`, which may be before 0 (data from
    /// before the capture started).
    fn position(&self, seq: u32) -> Option<i64> {
        let base = self.base?;
        let here = base.wrapping_add(self.delivered as u32);
        Some(self.delivered as i64 + i64::from(seq.wrapping_sub(here) as i32))
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
    pub start_us: u64,
    allow_gaps: bool,
    halves: [Half; 2],
    queues: [VecDeque<Chunk>; 2],
    /// Written positions per direction (the EOF counts one).
    written: [u64; 2],
    held: usize,
    last_time_us: u64,
    /// Milliseconds after `start_us` of the last frame written.
    last_ms: u64,
    state: State,
    summary: Summary,
    tape: TapeOut,
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
            start_us: time_us,
            allow_gaps,
            halves: Default::default(),
            queues: Default::default(),
            written: [0; 2],
            held: 0,
            last_time_us: time_us,
            last_ms: 0,
            state: State::Open,
            summary: Summary::default(),
            tape: TapeOut::new(),
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

    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// The SYN's sequence number of `dir`, if one was seen.
    pub fn isn(&self, dir: Direction) -> Option<u32> {
        self.halves[dir.index()].isn
    }

    /// Tape bytes written so far, taken out; the magic comes first.
    pub fn take_tape(&mut self) -> Vec<u8> {
        self.tape.take()
    }

    pub fn tape_len(&self) -> usize {
        self.tape.buf.len()
    }

    /// Gaps marked since the last call.
    pub fn take_marked(&mut self) -> Vec<Gap> {
        std::mem::take(&mut self.marked)
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
        let (me, peer) = (dir.index(), dir.reverse().index());
        if tcp.has(flags::RST) {
            self.state = State::Reset;
            return self.end();
        }
        let syn = tcp.has(flags::SYN);
        let half = &mut self.halves[me];
        if syn && half.isn.is_none() {
            half.isn = Some(tcp.seq);
        }
        if half.base.is_none() {
            half.base = Some(tcp.seq.wrapping_add(u32::from(syn)));
        }
        let mut needs = 0;
        if tcp.has(flags::ACK) {
            let peer_half = &mut self.halves[peer];
            // Without the handshake, the first acknowledgement tells where
            // the other side's stream stands.
            peer_half.base.get_or_insert(tcp.ack);
            if let Some(at) = peer_half.position(tcp.ack) {
                needs = u64::try_from(at).unwrap_or(0);
                peer_half.acked = peer_half.acked.max(needs);
            }
        }
        let half = &mut self.halves[me];
        let start = half.position(tcp.seq.wrapping_add(u32::from(syn)));
        let Some(start) = start else { return Ok(()) };
        if half.closed {
            return Ok(());
        }
        if tcp.has(flags::FIN) && half.fin.is_none() {
            let at = start + payload.len() as i64;
            if at >= half.delivered as i64 {
                half.fin = Some(Fin {
                    at: at as u64,
                    time_us,
                    packet,
                    needs,
                });
            }
        }
        // Only the bytes not seen yet, and none after the FIN.
        let end = match half.fin {
            Some(fin) => (fin.at as i64 - start).clamp(0, payload.len() as i64) as usize,
            None => payload.len(),
        };
        let skip = (half.delivered as i64 - start).clamp(0, end as i64) as usize;
        let data = &payload[skip..end];
        if !data.is_empty() {
            let at = (start + skip as i64) as u64;
            if at == half.delivered {
                self.queue(dir, Piece::Data(data.to_vec()), time_us, packet, needs);
            } else {
                self.hold(dir, at, data, time_us, packet, needs);
            }
        }
        self.pull(dir);
        self.write_ready(false);
        if self.held > MAX_HELD {
            self.fill_holes(true)?;
            self.write_ready(true);
        }
        if self.halves.iter().all(|h| h.closed) && self.queues.iter().all(|q| q.is_empty()) {
            self.state = State::Finished;
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
        debug_assert!(self.queues.iter().all(VecDeque::is_empty), "cut after end");
        self.summary.cut = true;
        self.tape.cut(reason);
    }

    fn hold(
        &mut self,
        dir: Direction,
        at: u64,
        data: &[u8],
        time_us: u64,
        packet: u64,
        needs: u64,
    ) {
        let half = &mut self.halves[dir.index()];
        if let Some(old) = half.ahead.get(&at) {
            if old.data.len() >= data.len() {
                return;
            }
            self.held -= old.data.len() + SEGMENT_COST;
        }
        self.held += data.len() + SEGMENT_COST;
        let segment = Segment {
            data: data.to_vec(),
            time_us,
            packet,
            needs,
        };
        half.ahead.insert(at, segment);
    }

    /// Queues what became contiguous in `dir`, and its EOF once reached.
    fn pull(&mut self, dir: Direction) {
        loop {
            let half = &mut self.halves[dir.index()];
            let Some(entry) = half.ahead.first_entry() else {
                break;
            };
            let at = *entry.key();
            if at > half.delivered {
                break;
            }
            let segment = entry.remove();
            self.held -= segment.data.len() + SEGMENT_COST;
            let skip = (half.delivered - at) as usize;
            if skip < segment.data.len() {
                let mut data = segment.data;
                data.drain(..skip);
                let Segment {
                    time_us,
                    packet,
                    needs,
                    ..
                } = segment;
                self.queue(dir, Piece::Data(data), time_us, packet, needs);
            }
        }
        let half = &mut self.halves[dir.index()];
        if let Some(fin) = half.fin
            && !half.closed
            && fin.at == half.delivered
        {
            half.closed = true;
            self.queue(dir, Piece::Eof, fin.time_us, fin.packet, fin.needs);
        }
    }

    fn queue(&mut self, dir: Direction, piece: Piece, time_us: u64, packet: u64, needs: u64) {
        let half = &mut self.halves[dir.index()];
        match &piece {
            Piece::Data(data) => {
                half.delivered += data.len() as u64;
                half.bytes += data.len() as u64;
            }
            Piece::Gap(len) => {
                half.delivered += len;
                half.bytes += len;
            }
            Piece::Eof => half.delivered += 1,
        }
        let chunk = Chunk {
            piece,
            time_us,
            packet,
            needs,
        };
        self.held += chunk.cost();
        self.queues[dir.index()].push_back(chunk);
    }

    /// Declares the first hole of each direction a gap, until none is
    /// left: behind every hole something waits (a segment, the FIN, or
    /// the other side's acknowledgement).
    fn fill_holes(&mut self, overflow: bool) -> Result<(), Gap> {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            loop {
                let half = &self.halves[dir.index()];
                if half.closed {
                    break;
                }
                let next = half.ahead.keys().next().copied();
                let lost_fin = !overflow && half.acked == half.delivered + 1;
                let end = match (next, half.fin) {
                    (Some(at), _) => at,
                    (None, Some(fin)) => fin.at,
                    (None, None) if half.acked > half.delivered && lost_fin => {
                        // Everything but the FIN was captured, and the
                        // other side acknowledged it: the FIN was lost.
                        let at = half.delivered;
                        let time_us = self.last_time_us;
                        self.halves[dir.index()].fin = Some(Fin {
                            at,
                            time_us,
                            packet: u64::MAX,
                            needs: 0,
                        });
                        self.pull(dir);
                        break;
                    }
                    (None, None) if half.acked > half.delivered => half.acked,
                    (None, None) => break,
                };
                if end <= half.delivered {
                    break;
                }
                let gap = Gap {
                    dir,
                    offset: half.delivered,
                    len: end - half.delivered,
                    overflow,
                };
                if !self.allow_gaps {
                    return Err(gap);
                }
                let time = half
                    .ahead
                    .values()
                    .next()
                    .map_or(self.last_time_us, |s| s.time_us);
                self.queue(dir, Piece::Gap(gap.len), time, 0, 0);
                self.marked.push(gap);
                self.pull(dir);
            }
        }
        Ok(())
    }

    /// Writes queued chunks: by time, each after the bytes it needs. With
    /// `all`, chunks whose needs can no longer be met are written too.
    fn write_ready(&mut self, all: bool) {
        loop {
            let head = |d: usize| self.queues[d].front();
            let ready = |d: usize| head(d).is_some_and(|c| c.needs <= self.written[1 - d]);
            // Blocked only by the other direction's queued bytes: with
            // both so, they wait for each other (a capture that
            // contradicts itself), and time decides.
            let queued =
                |d: usize| head(d).is_some_and(|c| c.needs <= self.halves[1 - d].delivered);
            let candidates: Vec<usize> = if ready(0) || ready(1) {
                (0..2).filter(|&d| ready(d)).collect()
            } else if (queued(0) && queued(1)) || all {
                (0..2).filter(|&d| head(d).is_some()).collect()
            } else {
                Vec::new()
            };
            let Some(d) = candidates
                .into_iter()
                .min_by_key(|&d| head(d).map(|c| (c.time_us, c.packet)))
            else {
                return;
            };
            let chunk = self.queues[d].pop_front().expect("a head was chosen");
            self.held -= chunk.cost();
            self.write(d, chunk);
        }
    }

    fn write(&mut self, d: usize, chunk: Chunk) {
        let dir = if d == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let ms = chunk.time_us.saturating_sub(self.start_us) / 1000;
        if ms > self.last_ms {
            self.tape.delay(ms - self.last_ms);
            self.last_ms = ms;
        }
        self.summary.content = true;
        match chunk.piece {
            Piece::Data(data) => {
                self.summary.first.get_or_insert(dir);
                self.summary.bytes[d] += data.len() as u64;
                self.written[d] += data.len() as u64;
                self.tape.data(dir, &data);
            }
            Piece::Gap(len) => {
                self.summary.first.get_or_insert(dir);
                self.summary.bytes[d] += len;
                self.written[d] += len;
                self.tape.any(dir, len);
            }
            Piece::Eof => {
                self.written[d] += 1;
                self.tape.eof(dir);
            }
        }
    }
}

/// A tape being written into memory; the caller takes the bytes out now
/// and then.
#[derive(Debug)]
struct TapeOut {
    buf: Vec<u8>,
    /// Where in `buf` the last frame's header is, when it is a data frame
    /// that more bytes may join.
    open: Option<(Direction, usize)>,
}

impl TapeOut {
    fn new() -> TapeOut {
        TapeOut {
            buf: magic_frame().to_vec(),
            open: None,
        }
    }

    fn take(&mut self) -> Vec<u8> {
        self.open = None;
        std::mem::take(&mut self.buf)
    }

    fn header(&mut self, header: Header) {
        self.open = None;
        self.buf.extend_from_slice(&header.emit());
    }

    fn data(&mut self, dir: Direction, mut bytes: &[u8]) {
        if let Some((open_dir, at)) = self.open
            && open_dir == dir
        {
            let len = BigEndian::read_u24(&self.buf[at + 1..at + HEADER_LEN]) as usize;
            let n = bytes.len().min(MAX_MERGED_FRAME.saturating_sub(len));
            self.buf.extend_from_slice(&bytes[..n]);
            BigEndian::write_u24(&mut self.buf[at + 1..at + HEADER_LEN], (len + n) as u32);
            bytes = &bytes[n..];
        }
        for chunk in bytes.chunks(MAX_MERGED_FRAME) {
            let at = self.buf.len();
            self.header(Header::data(dir, chunk.len()));
            self.buf.extend_from_slice(chunk);
            self.open = Some((dir, at));
        }
    }

    fn any(&mut self, dir: Direction, mut count: u64) {
        while count > 0 {
            let n = count.min(u64::from(MAX_LEN)) as u32;
            self.header(Header::new(Kind::Any(dir).opcode(), WILDCARD_LEN));
            self.buf.extend_from_slice(&n.to_be_bytes());
            count -= u64::from(n);
        }
    }

    /// A pause, capped like the recorder caps one (4 h 39 min): a capture's
    /// timestamps are 64 bits, and a jump of centuries must not become
    /// gigabytes of DELAY frames.
    fn delay(&mut self, ms: u64) {
        if ms > 0 {
            self.header(Header::delay(ms));
        }
    }

    fn eof(&mut self, dir: Direction) {
        self.header(Header::eof(dir));
    }

    fn cut(&mut self, reason: &str) {
        self.header(Header::new(Kind::Cut.opcode(), reason.len() as u32));
        self.buf.extend_from_slice(reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Reader;

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
        assert!(f.conn.held <= MAX_HELD + block.len() + SEGMENT_COST);
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

    #[test]
    fn merged_frames_and_long_delays_capped() {
        let mut out = TapeOut::new();
        out.data(C2S, &[1; 40_000]);
        out.data(C2S, &[2; 40_000]);
        out.delay(u64::from(MAX_LEN) + 1);
        out.any(S2C, u64::from(MAX_LEN) + 2);
        let bytes = out.take();
        let mut reader = Reader::new(bytes.as_slice());
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            let len = match frame.kind {
                Kind::Any(_) => reader.read_wildcard().unwrap(),
                _ => frame.len,
            };
            frames.push((frame.kind, len));
        }
        assert_eq!(
            frames,
            vec![
                (Kind::Noop, 8),
                (Kind::Data(C2S), 65_536),
                (Kind::Data(C2S), 14_464),
                (Kind::Delay, MAX_LEN),
                (Kind::Any(S2C), MAX_LEN),
                (Kind::Any(S2C), 2),
            ]
        );
    }
}
