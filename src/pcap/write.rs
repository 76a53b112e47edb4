//! Tapes to a classic pcap file: each tape becomes one synthetic TCP
//! connection over IPv4 (LINKTYPE_RAW), with a handshake, data segments of
//! at most `SEGMENT_MAX` bytes, the ACKs a receiver would send, and a FIN
//! per half-close, timed by the tape's DELAY frames.
//!
//! Nothing is held but the packet being written: each tape is read frame by
//! frame, and a segment's payload is read from the tape only when the
//! packet is written. Tapes of a cassette that overlap in time are merged
//! by packet time; each is opened when its first packet is due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use byteorder::{ByteOrder, LittleEndian};

use super::ip::{IPV4_HEADER_LEN, Ipv4Header, pseudo_header};
use super::link::LINKTYPE_RAW;
use super::read::classic::{self, field};
use super::tcp::{self, TcpHeader, flags};
use crate::error::Error;
use crate::tape::{self, Direction, Kind, Reader, SharedTape};

/// The largest segment payload: IPv4 and TCP headers without options
/// fill the rest of the 65,535 bytes an IPv4 packet can hold.
pub const SEGMENT_MAX: usize = 65_495;
/// The server port when `--port` is not given: one no Wireshark
/// dissector claims (5000 would be dissected as GSM RSL), so the payload
/// shows as plain TCP data.
pub const DEFAULT_PORT: u16 = 7777;
/// Where the first tape starts: 2020-01-01 00:00:00 UTC. A fixed time keeps
/// exports of the same tapes identical byte for byte.
pub const EPOCH_S: u64 = 1_577_836_800;
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Tape n's client port is `CLIENT_PORT_BASE + n`, up to 65535; further
/// tapes count up the client address's third byte.
const CLIENT_PORT_BASE: u64 = 40_000;
const CLIENT_PORTS: u64 = 65_535 - CLIENT_PORT_BASE;
const CLIENT_ISN: u32 = 0x0001_0000;
const SERVER_ISN: u32 = 0x8001_0000;
/// Both sides announce a window of 65535 << 7 (8 MiB) and acknowledge
/// every MiB at least, so no analyser sees a full window.
const WINDOW: u16 = 65_535;
const WINDOW_SHIFT: u8 = 7;
const ACK_EVERY: u64 = 1024 * 1024;

/// The largest packet written (IPv4 header, TCP header, payload).
const SNAPLEN: u32 = 65_535;
/// The largest IP and TCP headers written: a SYN with its options.
const MAX_HEADERS: usize = IPV4_HEADER_LEN + tcp::HEADER_LEN + 8;

/// Writes a little-endian, microsecond pcap file of raw IP packets.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut header = [0u8; classic::HEADER_LEN];
        LittleEndian::write_u32(&mut header[field::MAGIC], classic::MAGIC_MICROS);
        LittleEndian::write_u16(&mut header[field::VERSION_MAJOR], 2);
        LittleEndian::write_u16(&mut header[field::VERSION_MINOR], 4);
        LittleEndian::write_u32(&mut header[field::SNAPLEN], SNAPLEN);
        LittleEndian::write_u32(&mut header[field::LINKTYPE], LINKTYPE_RAW);
        out.write_all(&header)?;
        Ok(PcapWriter { out })
    }

    /// One packet: `headers` then `payload`, or that many zero bytes.
    fn packet(&mut self, time_ms: u64, headers: &[u8], payload: Payload<'_>) -> io::Result<()> {
        let len = headers.len() + payload.len();
        let mut record = [0u8; classic::RECORD_LEN];
        let seconds = EPOCH_S + time_ms / 1000;
        LittleEndian::write_u32(&mut record[field::TS_SEC], seconds as u32);
        LittleEndian::write_u32(&mut record[field::TS_FRAC], (time_ms % 1000 * 1000) as u32);
        LittleEndian::write_u32(&mut record[field::INCL_LEN], len as u32);
        LittleEndian::write_u32(&mut record[field::ORIG_LEN], len as u32);
        self.out.write_all(&record)?;
        self.out.write_all(headers)?;
        match payload {
            Payload::Bytes(bytes) => self.out.write_all(bytes),
            Payload::Zeros(mut n) => {
                const ZEROS: [u8; 4096] = [0; 4096];
                while n > 0 {
                    let chunk = n.min(ZEROS.len());
                    self.out.write_all(&ZEROS[..chunk])?;
                    n -= chunk;
                }
                Ok(())
            }
        }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[derive(Debug, Clone, Copy)]
enum Payload<'a> {
    Bytes(&'a [u8]),
    /// A wildcard's bytes: their value is unknown, zeros stand in.
    Zeros(usize),
}

impl Payload<'_> {
    fn len(&self) -> usize {
        match self {
            Payload::Bytes(bytes) => bytes.len(),
            Payload::Zeros(n) => *n,
        }
    }
}

/// One endpoint of a synthetic connection.
#[derive(Debug, Clone, Copy)]
struct Side {
    ip: Ipv4Addr,
    port: u16,
    /// The next sequence number this side sends.
    next: u32,
    ident: u16,
    /// Bytes sent that the other side has not acknowledged yet.
    unacked: u64,
    fin: bool,
}

/// Where the conversation is in its tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Syn,
    SynAck,
    HandshakeAck,
    /// Reading frames.
    Frames,
    /// Sending a data or wildcard frame: `left` bytes to go.
    Data {
        dir: Direction,
        left: u64,
        zeros: bool,
    },
    /// The other side acknowledges what `dir` sent (its FIN).
    AckOf(Direction),
    /// The tape ended: acknowledge what is still unacknowledged.
    Closing,
    Done,
}

/// A packet decided on but not yet written (its payload is still in the
/// tape).
#[derive(Debug, Clone, Copy)]
struct Planned {
    time_ms: u64,
    from: Direction,
    header: TcpHeader,
    /// Payload bytes, read from the tape (or zeros) when written.
    len: usize,
    zeros: bool,
    /// The IPv4 identification field.
    ident: u16,
}

/// One tape as a TCP connection, a packet at a time.
pub struct Conversation {
    path: PathBuf,
    reader: Reader<SharedTape>,
    /// Indexed by `Direction::index` of the sender: client, server.
    sides: [Side; 2],
    time_ms: u64,
    step: Step,
    planned: Option<Planned>,
    /// Bytes of wildcards exported so far (as zeros), at most
    /// `WILDCARD_LIMIT`.
    wildcard_bytes: u64,
}

/// The most wildcard bytes a tape's capture stands in zeros for: a tape of
/// a few bytes may declare gigabytes of them (`any 4294967295`), which no
/// recording made.
const WILDCARD_LIMIT: u64 = 64 * 1024 * 1024;

impl Conversation {
    /// The conversation of tape `number` (from 1), starting at `start_ms`.
    pub fn open(path: &Path, number: u64, start_ms: u64, port: u16) -> Result<Conversation, Error> {
        let (client_ip, client_port) = client_address(number);
        let side = |ip, port, isn: u32| Side {
            ip,
            port,
            next: isn,
            ident: 1,
            unacked: 0,
            fin: false,
        };
        let mut conversation = Conversation {
            path: path.to_path_buf(),
            reader: Reader::new(tape::open(path)?),
            sides: [
                side(client_ip, client_port, CLIENT_ISN),
                side(SERVER_IP, port, SERVER_ISN),
            ],
            time_ms: start_ms,
            step: Step::Syn,
            planned: None,
            wildcard_bytes: 0,
        };
        conversation.plan()?;
        Ok(conversation)
    }

    /// When the next packet is due; `None` once the tape is done.
    pub fn next_time(&self) -> Option<u64> {
        self.planned.map(|p| p.time_ms)
    }

    /// Writes the planned packet and plans the next.
    pub fn write_next<W: Write>(&mut self, out: &mut PcapWriter<W>) -> Result<(), Error> {
        let Some(planned) = self.planned.take() else {
            return Ok(());
        };
        let from = &self.sides[planned.from.index()];
        let to = &self.sides[planned.from.reverse().index()];
        let (src, dst) = (IpAddr::V4(from.ip), IpAddr::V4(to.ip));
        let tcp_len = planned.header.header_len() + planned.len;
        let ip = Ipv4Header {
            src: from.ip,
            dst: to.ip,
            ident: planned.ident,
            payload_len: tcp_len,
        };
        let mut headers = [0u8; MAX_HEADERS];
        ip.emit(&mut headers);
        let headers_len = IPV4_HEADER_LEN + planned.header.header_len();
        let pseudo = pseudo_header(src, dst, tcp_len);
        let path = &self.path;
        let payload = if planned.zeros {
            Payload::Zeros(planned.len)
        } else {
            let bytes = self
                .reader
                .read_payload(planned.len)
                .map_err(|err| Error::tape(path, err))?;
            debug_assert_eq!(bytes.len(), planned.len);
            Payload::Bytes(bytes)
        };
        match payload {
            Payload::Bytes(bytes) => {
                planned
                    .header
                    .emit(&mut headers[IPV4_HEADER_LEN..], pseudo, bytes)
            }
            // Zeros add nothing to a checksum.
            Payload::Zeros(_) => planned
                .header
                .emit(&mut headers[IPV4_HEADER_LEN..], pseudo, &[]),
        }
        out.packet(planned.time_ms, &headers[..headers_len], payload)
            .map_err(|err| Error::file(std::path::Path::new("the capture"), "write", err))?;
        self.plan()
    }

    /// Decides the next packet, reading frames as needed.
    fn plan(&mut self) -> Result<(), Error> {
        use Direction::{ClientToServer as C2S, ServerToClient as S2C};
        while self.planned.is_none() {
            match self.step {
                Step::Syn => {
                    self.step = Step::SynAck;
                    self.send(C2S, flags::SYN, 0, true);
                }
                Step::SynAck => {
                    self.step = Step::HandshakeAck;
                    self.send(S2C, flags::SYN | flags::ACK, 0, true);
                }
                Step::HandshakeAck => {
                    self.step = Step::Frames;
                    self.send(C2S, flags::ACK, 0, false);
                }
                Step::Frames => self.next_frame()?,
                Step::Data { dir, left, zeros } => {
                    let len = left.min(SEGMENT_MAX as u64);
                    if self.sides[dir.index()].unacked + len > ACK_EVERY {
                        self.send(dir.reverse(), flags::ACK, 0, false);
                        continue;
                    }
                    let left = left - len;
                    self.step = match left {
                        0 => Step::Frames,
                        _ => Step::Data { dir, left, zeros },
                    };
                    // PSH marks the end of what the application wrote at once.
                    let push = if left == 0 { flags::PSH } else { 0 };
                    self.send(dir, flags::ACK | push, len as usize, false);
                    if let Some(planned) = &mut self.planned {
                        planned.zeros = zeros;
                    }
                }
                Step::AckOf(dir) => {
                    self.step = Step::Frames;
                    self.send(dir.reverse(), flags::ACK, 0, false);
                }
                Step::Closing => {
                    self.step = Step::Done;
                    for dir in [C2S, S2C] {
                        if self.sides[dir.index()].unacked > 0 {
                            self.send(dir.reverse(), flags::ACK, 0, false);
                            self.step = Step::Closing;
                            break;
                        }
                    }
                }
                Step::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Reads the next frame and moves `step` on.
    fn next_frame(&mut self) -> Result<(), Error> {
        let path = &self.path;
        let Some(frame) = self
            .reader
            .next_frame()
            .map_err(|err| Error::tape(path, err))?
        else {
            self.step = Step::Closing;
            return Ok(());
        };
        let (dir, count, zeros) = match frame.kind {
            Kind::Delay => {
                self.time_ms += u64::from(frame.len);
                return Ok(());
            }
            Kind::Data(dir) => (dir, u64::from(frame.len), false),
            Kind::Any(dir) => {
                let count = self
                    .reader
                    .read_wildcard()
                    .map_err(|err| Error::tape(path, err))?;
                self.wildcard_bytes += u64::from(count);
                if self.wildcard_bytes > WILDCARD_LIMIT {
                    return Err(Error::refused(
                        path,
                        format!(
                            "{}: its wildcards (any N) stand for more than {} MiB, which a capture would hold as zeros: not exported",
                            path.display(),
                            WILDCARD_LIMIT >> 20
                        ),
                    ));
                }
                (dir, u64::from(count), true)
            }
            Kind::Eof(dir) => {
                if !self.sides[dir.index()].fin {
                    self.send(dir, flags::FIN | flags::ACK, 0, false);
                    self.sides[dir.index()].fin = true;
                    self.step = Step::AckOf(dir);
                }
                return Ok(());
            }
            // The recording stopped here: nothing of the session follows.
            Kind::Cut => {
                self.step = Step::Closing;
                return Ok(());
            }
            // A span marks recorded bytes that follow in data frames.
            Kind::Noop | Kind::Span(_) | Kind::Extension(_) => return Ok(()),
        };
        if count == 0 {
            return Ok(());
        }
        if self.sides[dir.index()].fin {
            let who = dir.sender();
            return Err(Error::refused(
                &self.path,
                format!(
                    "{}: frame {} at tape offset {}: {who} data after the {who}'s EOF cannot be exported as TCP",
                    self.path.display(),
                    frame.index,
                    frame.offset
                ),
            ));
        }
        self.step = Step::Data {
            dir,
            left: count,
            zeros,
        };
        Ok(())
    }

    /// Plans a packet from `dir`'s sender carrying `len` payload bytes; it
    /// acknowledges everything the other side sent.
    fn send(&mut self, dir: Direction, flags: u8, len: usize, syn: bool) {
        let ack = self.sides[dir.reverse().index()].next;
        let acks = flags & tcp::flags::ACK != 0;
        let side = &mut self.sides[dir.index()];
        let header = TcpHeader {
            src_port: side.port,
            dst_port: 0,
            seq: side.next,
            ack: if acks { ack } else { 0 },
            flags,
            window: WINDOW,
            syn_options: syn.then_some((SEGMENT_MAX as u16, WINDOW_SHIFT)),
        };
        // SYN and FIN take a sequence number each.
        let control = u32::from(flags & (tcp::flags::SYN | tcp::flags::FIN) != 0);
        side.next = side.next.wrapping_add(len as u32).wrapping_add(control);
        let ident = side.ident;
        side.ident = side.ident.wrapping_add(1);
        side.unacked += len as u64;
        if acks {
            self.sides[dir.reverse().index()].unacked = 0;
        }
        let dst_port = self.sides[dir.reverse().index()].port;
        self.planned = Some(Planned {
            time_ms: self.time_ms,
            from: dir,
            header: TcpHeader { dst_port, ..header },
            len,
            zeros: false,
            ident,
        });
    }
}

/// The client address of tape `number` (from 1): 10.0.0.1, port 40000 + n.
pub fn client_address(number: u64) -> (Ipv4Addr, u16) {
    let block = number.saturating_sub(1) / CLIENT_PORTS;
    let port = CLIENT_PORT_BASE + 1 + number.saturating_sub(1) % CLIENT_PORTS;
    let [a, b, _, d] = CLIENT_IP.octets();
    (Ipv4Addr::new(a, b, block as u8, d), port as u16)
}

/// A tape to export and when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub path: PathBuf,
    /// Its number (from 1): it picks the client port.
    pub number: u64,
    /// Milliseconds after the first tape's start; `None`: when the
    /// previous tape ends.
    pub start_ms: Option<u64>,
}

/// Writes the tapes, merged by packet time, as one capture.
pub fn export<W: Write>(
    tapes: &[Placed],
    port: u16,
    out: &mut PcapWriter<W>,
) -> Result<u64, Error> {
    let mut order: Vec<&Placed> = tapes.iter().collect();
    // Explicitly placed tapes by start; the others keep their order.
    order.sort_by_key(|t| t.start_ms.unwrap_or(0));
    let mut waiting = order.into_iter().peekable();
    let mut active: Vec<Option<Conversation>> = Vec::new();
    let mut due: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut last_ms = 0;
    let mut packets = 0;
    loop {
        // Open every tape whose start has come, or the next one when
        // nothing else is running.
        while let Some(next) = waiting.peek() {
            let first_due = due.peek().map(|Reverse((t, _))| *t);
            let start = next.start_ms.unwrap_or(last_ms);
            let ready = match next.start_ms {
                Some(start) => first_due.is_none_or(|t| t >= start),
                // After the previous tape: once nothing runs.
                None => first_due.is_none(),
            };
            if !ready {
                break;
            }
            let conversation = Conversation::open(&next.path, next.number, start, port)?;
            if let Some(t) = conversation.next_time() {
                due.push(Reverse((t, active.len())));
            }
            active.push(Some(conversation));
            waiting.next();
        }
        let Some(Reverse((time, slot))) = due.pop() else {
            break;
        };
        let conversation = active[slot].as_mut().expect("a due conversation is open");
        conversation.write_next(out)?;
        packets += 1;
        last_ms = last_ms.max(time);
        match conversation.next_time() {
            Some(t) => due.push(Reverse((t, slot))),
            // Done: its reader and buffers go.
            None => active[slot] = None,
        }
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::ip::{self, Checksum};
    use crate::pcap::read::CaptureReader;
    use crate::tape::Writer;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn client_addresses() {
        assert_eq!(client_address(1), (CLIENT_IP, 40001));
        assert_eq!(client_address(25_535), (CLIENT_IP, 65535));
        assert_eq!(client_address(25_536), (Ipv4Addr::new(10, 0, 1, 1), 40001));
    }

    fn export_one(tape: &[u8]) -> Vec<Vec<u8>> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tcptape-pcap-write-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.tape");
        std::fs::write(&path, tape).unwrap();
        let placed = [Placed {
            path,
            number: 1,
            start_ms: None,
        }];
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        export(&placed, 80, &mut writer).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let bytes = writer.into_inner();
        let mut reader = CaptureReader::new(bytes.as_slice()).unwrap();
        let mut packets = Vec::new();
        while let Some(p) = reader.next_packet().unwrap() {
            assert_eq!(p.link, LINKTYPE_RAW);
            packets.push(p.data.to_vec());
        }
        packets
    }

    fn check_sums(packet: &[u8]) -> (TcpHeader, Vec<u8>) {
        assert_eq!(
            Checksum::new().feed(&packet[..20]).finish(),
            0,
            "IP checksum"
        );
        let repr = ip::parse(packet).unwrap();
        let pseudo = pseudo_header(repr.src, repr.dst, repr.payload.len());
        assert_eq!(pseudo.feed(repr.payload).finish(), 0, "TCP checksum");
        let (header, payload) = TcpHeader::parse(repr.payload).unwrap();
        (header, payload.to_vec())
    }

    #[test]
    fn handshake_data_fin_with_valid_checksums() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.data(Direction::ClientToServer, b"ping").unwrap();
        w.eof(Direction::ClientToServer).unwrap();
        w.delay(5).unwrap();
        w.any(Direction::ServerToClient, 3).unwrap();
        let packets = export_one(&w.into_inner());
        let parsed: Vec<_> = packets.iter().map(|p| check_sums(p)).collect();
        let summary: Vec<_> = parsed
            .iter()
            .map(|(h, p)| (h.src_port, h.flags, h.seq, h.ack, p.clone()))
            .collect();
        let (c, s) = (CLIENT_ISN, SERVER_ISN);
        use flags::*;
        assert_eq!(
            summary,
            vec![
                (40001, SYN, c, 0, vec![]),
                (80, SYN | ACK, s, c + 1, vec![]),
                (40001, ACK, c + 1, s + 1, vec![]),
                (40001, ACK | PSH, c + 1, s + 1, b"ping".to_vec()),
                (40001, FIN | ACK, c + 5, s + 1, vec![]),
                (80, ACK, s + 1, c + 6, vec![]),
                (80, ACK | PSH, s + 1, c + 6, vec![0, 0, 0]),
                (40001, ACK, c + 6, s + 4, vec![]),
            ]
        );
    }

    #[test]
    fn large_frames_are_split_and_acknowledged() {
        let payload = vec![7u8; 3 * 1024 * 1024 + 5];
        let mut w = Writer::new(Vec::new()).unwrap();
        w.data(Direction::ServerToClient, &payload).unwrap();
        let packets = export_one(&w.into_inner());
        let mut data = 0;
        let mut unacked = 0;
        for packet in &packets {
            assert!(packet.len() <= 65_535);
            let (header, payload) = check_sums(packet);
            if header.src_port == 80 {
                unacked += payload.len() as u64;
                data += payload.len();
                assert!(unacked <= ACK_EVERY, "window respected");
            } else {
                unacked = 0;
            }
        }
        assert_eq!(data, payload.len());
        assert_eq!(unacked, 0, "the last segment is acknowledged");
    }

    #[test]
    fn data_after_eof_is_refused() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.eof(Direction::ClientToServer).unwrap();
        w.data(Direction::ClientToServer, b"late").unwrap();
        let dir = std::env::temp_dir().join(format!("tcptape-pcap-late-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("late.tape");
        std::fs::write(&path, w.into_inner()).unwrap();
        let placed = [Placed {
            path: path.clone(),
            number: 1,
            start_ms: None,
        }];
        let err = export(&placed, 80, &mut PcapWriter::new(Vec::new()).unwrap()).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: frame 2 at tape offset 16: client data after the client's EOF cannot be exported as TCP",
                path.display()
            )
        );
    }
}
