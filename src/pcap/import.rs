//! A capture to tapes: each packet to its connection, each connection to
//! its tape, written through a `Sink` as it goes (files for the command,
//! memory for tests and fuzzing).
//!
//! Connections are keyed by their 4-tuple. A SYN on a 4-tuple whose
//! connection closed, or with another initial sequence number, starts a
//! new connection (port reuse). A connection is finished, and its memory
//! freed, when both sides closed or it was reset; the others when the
//! capture ends.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;

use log::{debug, warn};

use super::ip::{self, Skip};
use super::link;
use super::read::{CaptureReader, Packet};
use super::reassembly::{Conn, Gap, State, Summary};
use super::tcp::{TcpHeader, flags};
use crate::error::Error;
use crate::tape::Direction;

/// A connection's tape bytes go to the sink once this many are waiting.
const FLUSH_AT: usize = 64 * 1024;
/// Why a connection's tape is cut: the reasons its CUT frame gives.
const CAPTURE_ENDED: &str = "the capture ended before the connection closed";
const REUSED: &str = "a new connection on the same ports started before this one was seen to close";

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep only connections to one of these servers.
    pub filter: Option<Vec<SocketAddr>>,
    /// The filter as the user wrote it, for messages.
    pub filter_text: String,
    /// Write connections with lost packets, the gaps marked as wildcards.
    pub allow_gaps: bool,
    /// The output is one tape: a second connection is an error.
    pub one_connection: bool,
}

/// Where connections' tapes go.
pub trait Sink {
    /// Appends bytes to the tape of connection `id` (the first bytes are
    /// the magic).
    fn append(&mut self, id: usize, bytes: &[u8]) -> Result<(), Error>;
    /// Drops what was appended for `id`: a connection with nothing in it.
    fn discard(&mut self, id: usize) -> Result<(), Error>;
}

/// Tapes kept in memory, by connection id.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub tapes: BTreeMap<usize, Vec<u8>>,
}

impl Sink for MemorySink {
    fn append(&mut self, id: usize, bytes: &[u8]) -> Result<(), Error> {
        self.tapes.entry(id).or_default().extend_from_slice(bytes);
        Ok(())
    }

    fn discard(&mut self, id: usize) -> Result<(), Error> {
        self.tapes.remove(&id);
        Ok(())
    }
}

/// A connection that made a tape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The sink's id of its tape.
    pub id: usize,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub first_packet: u64,
    pub start_us: u64,
    pub summary: Summary,
}

struct Slot {
    /// `None` once finished.
    conn: Option<Box<Conn>>,
    client: SocketAddr,
    server: SocketAddr,
    first_packet: u64,
    start_us: u64,
    summary: Summary,
}

struct Importer<'a, S: Sink> {
    name: &'a str,
    options: &'a Options,
    sink: &'a mut S,
    slots: Vec<Slot>,
    /// The latest connection of each 4-tuple (lower address first).
    by_tuple: HashMap<(SocketAddr, SocketAddr), usize>,
    /// The connections that have a tape so far.
    kept: Vec<usize>,
    fragments: u64,
}

/// Reads a capture and writes a tape per connection into `sink`; `name`
/// (the capture's path) starts every error message. Returns the
/// connections that made a tape, in the order they started.
pub fn import<R: Read, S: Sink>(
    input: R,
    name: &str,
    options: &Options,
    sink: &mut S,
) -> Result<Vec<Imported>, Error> {
    let fail = |err: super::read::CaptureError| {
        Error::refused(std::path::Path::new(name), format!("{name}: {err}"))
    };
    let mut reader = CaptureReader::new(input).map_err(fail)?;
    let mut importer = Importer {
        name,
        options,
        sink,
        slots: Vec::new(),
        by_tuple: HashMap::new(),
        kept: Vec::new(),
        fragments: 0,
    };
    while let Some(packet) = reader.next_packet().map_err(fail)? {
        importer.packet(&packet)?;
    }
    importer.finish(reader.packets())
}

impl<S: Sink> Importer<'_, S> {
    fn fail(&self, message: String) -> Error {
        let reason = format!("{}: {message}", self.name);
        Error::refused(std::path::Path::new(self.name), reason)
    }

    fn packet(&mut self, packet: &Packet<'_>) -> Result<(), Error> {
        let number = packet.number;
        if !link::is_supported(packet.link) {
            return Err(self.fail(format!(
                "packet {number} at offset {}: link type {} is not supported (Ethernet, raw IP, Linux cooked and loopback captures are)",
                packet.offset, packet.link
            )));
        }
        let frame = match link::ip_packet(packet.link, packet.data) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(why) => {
                debug!("{}: packet {number}: {why}, skipped", self.name);
                return Ok(());
            }
        };
        let repr = match ip::parse(frame) {
            Ok(repr) => repr,
            Err(Skip::NotTcp) => return Ok(()),
            Err(Skip::Malformed(why)) => {
                debug!("{}: packet {number}: {why}, skipped", self.name);
                return Ok(());
            }
            Err(Skip::Fragment { src, dst, ident }) => {
                self.fragments += 1;
                warn!(
                    "{}: packet {number}: skipping a fragment of IP packet {ident} from {src} to {dst}: fragmented TCP is not put back together",
                    self.name
                );
                return Ok(());
            }
            Err(Skip::Truncated { captured, length }) => {
                return Err(self.fail(format!(
                    "packet {number} at offset {}: only {captured} of its {length} bytes were captured: capture whole packets (a larger snaplen)",
                    packet.offset
                )));
            }
        };
        let (tcp, payload) = match TcpHeader::parse(repr.payload) {
            Ok(parsed) => parsed,
            Err(why) => {
                debug!("{}: packet {number}: {why}, skipped", self.name);
                return Ok(());
            }
        };
        let src = SocketAddr::new(repr.src, tcp.src_port);
        let dst = SocketAddr::new(repr.dst, tcp.dst_port);
        let Some(id) = self.connection(src, dst, &tcp, packet)? else {
            return Ok(());
        };
        let slot = &mut self.slots[id];
        let conn = slot.conn.as_mut().expect("an open connection");
        let dir = if src == conn.client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let result = conn.segment(dir, &tcp, payload, packet.time_us, number);
        self.after(id, result)
    }

    /// The connection a segment belongs to, opened if new; `None` for
    /// segments of closed or filtered-out connections.
    fn connection(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: &TcpHeader,
        packet: &Packet<'_>,
    ) -> Result<Option<usize>, Error> {
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let syn = tcp.has(flags::SYN) && !tcp.has(flags::ACK);
        if let Some(&id) = self.by_tuple.get(&key) {
            let slot = &self.slots[id];
            let Some(conn) = &slot.conn else {
                // Closed: only a new SYN opens the 4-tuple again.
                return match syn {
                    true => self.open(key, src, dst, tcp, packet),
                    false => Ok(None),
                };
            };
            let retransmitted =
                src == conn.client && conn.isn(Direction::ClientToServer) == Some(tcp.seq);
            if syn && !retransmitted {
                // The same ports, a new connection: the old one is over.
                self.close(id, REUSED)?;
                return self.open(key, src, dst, tcp, packet);
            }
            return Ok(Some(id));
        }
        if tcp.has(flags::RST) {
            return Ok(None);
        }
        self.open(key, src, dst, tcp, packet)
    }

    fn open(
        &mut self,
        key: (SocketAddr, SocketAddr),
        src: SocketAddr,
        dst: SocketAddr,
        tcp: &TcpHeader,
        packet: &Packet<'_>,
    ) -> Result<Option<usize>, Error> {
        let is_filtered = |addr: &SocketAddr| {
            self.options
                .filter
                .as_ref()
                .is_some_and(|servers| servers.contains(addr))
        };
        // The SYN's sender is the client; without it, the server is the
        // filtered address, or else the lower (well-known) port.
        let client = if tcp.has(flags::SYN) {
            if tcp.has(flags::ACK) { dst } else { src }
        } else if is_filtered(&dst) {
            src
        } else if is_filtered(&src) || src.port() < dst.port() {
            dst
        } else {
            src
        };
        let server = if client == src { dst } else { src };
        if self.options.filter.is_some() && !is_filtered(&server) {
            return Ok(None);
        }
        let id = self.slots.len();
        let conn = Conn::new(
            client,
            server,
            packet.number,
            packet.time_us,
            self.options.allow_gaps,
        );
        debug!("{}: {}", self.name, conn.name());
        self.slots.push(Slot {
            conn: Some(Box::new(conn)),
            client,
            server,
            first_packet: packet.number,
            start_us: packet.time_us,
            summary: Summary::default(),
        });
        self.by_tuple.insert(key, id);
        Ok(Some(id))
    }

    /// After a connection took a segment: gaps, output, the end.
    fn after(&mut self, id: usize, result: Result<(), Gap>) -> Result<(), Error> {
        let mut conn = self.slots[id].conn.take().expect("an open connection");
        self.note(id, &mut conn, result)?;
        if conn.state() != State::Open {
            // Closed or reset: the capture saw its end.
            return self.write_out(id, conn);
        }
        if conn.tape_len() >= FLUSH_AT {
            self.sink.append(id, &conn.take_tape())?;
        }
        self.slots[id].conn = Some(conn);
        Ok(())
    }

    /// Ends a connection whose end the capture did not show (`why`):
    /// holes left are gaps, the tape is marked as cut, its last bytes go
    /// to the sink, its memory is freed.
    fn close(&mut self, id: usize, why: &str) -> Result<(), Error> {
        let Some(mut conn) = self.slots[id].conn.take() else {
            return Ok(());
        };
        let result = match conn.state() {
            State::Open => conn.end(),
            _ => Ok(()),
        };
        self.note(id, &mut conn, result)?;
        if conn.state() == State::Open && conn.summary().content {
            conn.cut(why);
        }
        self.write_out(id, conn)
    }

    fn write_out(&mut self, id: usize, mut conn: Box<Conn>) -> Result<(), Error> {
        if conn.summary().content {
            self.sink.append(id, &conn.take_tape())
        } else {
            self.sink.discard(id)
        }
    }

    /// Reports what a connection's last step did: a gap it could not
    /// write (an error), gaps it marked, its first content.
    fn note(&mut self, id: usize, conn: &mut Conn, result: Result<(), Gap>) -> Result<(), Error> {
        if let Err(gap) = result {
            return Err(self.fail(format!(
                "{}: {gap}: packets lost by the capture; --allow-gaps imports it with the gap marked",
                conn.name()
            )));
        }
        for gap in conn.take_marked() {
            warn!(
                "{}: {}: {gap}: marked as a wildcard (replay counts those bytes without comparing them)",
                self.name,
                conn.name()
            );
        }
        let summary = conn.summary();
        let slot = &mut self.slots[id];
        let first_content = summary.content && !slot.summary.content;
        slot.summary = summary;
        if first_content {
            self.kept.push(id);
            if self.options.one_connection && self.kept.len() > 1 {
                let first = &self.slots[self.kept[0]];
                return Err(self.fail(format!(
                    "holds several TCP connections ({} -> {} from packet {} and {} -> {} from packet {}): import them into a cassette with -o DIR/, or pick one with --filter HOST:PORT",
                    first.client,
                    first.server,
                    first.first_packet,
                    conn.client,
                    conn.server,
                    conn.first_packet
                )));
            }
        }
        Ok(())
    }

    fn finish(mut self, packets: u64) -> Result<Vec<Imported>, Error> {
        for id in 0..self.slots.len() {
            self.close(id, CAPTURE_ENDED)?;
        }
        let mut imported: Vec<Imported> = self
            .kept
            .iter()
            .map(|&id| {
                let slot = &self.slots[id];
                Imported {
                    id,
                    client: slot.client,
                    server: slot.server,
                    first_packet: slot.first_packet,
                    start_us: slot.start_us,
                    summary: slot.summary,
                }
            })
            .collect();
        imported.sort_unstable_by_key(|c| (c.start_us, c.first_packet));
        if imported.is_empty() {
            let to = match &self.options.filter {
                Some(_) => format!(" to {}", self.options.filter_text),
                None => String::new(),
            };
            let fragments = match self.fragments {
                0 => String::new(),
                n => format!(" ({n} IP fragments were skipped)"),
            };
            return Err(self.fail(format!(
                "no TCP connection{to} with data found in {packets} packets{fragments}"
            )));
        }
        Ok(imported)
    }
}

/// The whole import into memory: the tapes in connection order. For tests
/// and fuzzing.
pub fn import_in_memory(capture: &[u8], options: &Options) -> Result<Vec<Vec<u8>>, Error> {
    let mut sink = MemorySink::default();
    let imported = import(capture, "capture", options, &mut sink)?;
    Ok(imported
        .iter()
        .map(|c| sink.tapes.remove(&c.id).unwrap_or_default())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::ip::{IPV4_HEADER_LEN, Ipv4Header, pseudo_header};
    use crate::pcap::link::{LINKTYPE_ETHERNET, LINKTYPE_RAW, wrap};
    use crate::pcap::read::classic::tests::pcap_file;
    use crate::pcap::tcp::{self, HEADER_LEN};
    use crate::tape::{Kind, Reader};
    use std::net::{IpAddr, Ipv4Addr};

    /// A TCP/IPv4 packet from `src` to `dst`.
    fn packet(src: &str, dst: &str, fl: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let ip = |a: SocketAddr| match a.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let mut out = vec![0u8; IPV4_HEADER_LEN + HEADER_LEN];
        Ipv4Header {
            src: ip(src),
            dst: ip(dst),
            ident: 0,
            payload_len: HEADER_LEN + data.len(),
        }
        .emit(&mut out);
        let header = TcpHeader {
            src_port: src.port(),
            dst_port: dst.port(),
            seq,
            ack,
            flags: fl,
            window: 1000,
            syn_options: None,
        };
        let pseudo = pseudo_header(src.ip(), dst.ip(), HEADER_LEN + data.len());
        header.emit(&mut out[IPV4_HEADER_LEN..], pseudo, data);
        out.extend_from_slice(data);
        out
    }

    fn capture(packets: &[Vec<u8>]) -> Vec<u8> {
        let timed: Vec<(u64, &[u8])> = packets
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64 * 1000, p.as_slice()))
            .collect();
        pcap_file(false, false, LINKTYPE_RAW, &timed)
    }

    fn streams(tape: &[u8]) -> [Vec<u8>; 2] {
        let mut reader = Reader::new(tape);
        let mut out = [Vec::new(), Vec::new()];
        while let Some(frame) = reader.next_frame().unwrap() {
            if let Kind::Data(dir) = frame.kind {
                reader.read_payload_into(&mut out[dir.index()]).unwrap();
            }
        }
        out
    }

    const C: &str = "10.9.0.1:40000";
    const S: &str = "10.9.0.2:80";
    const A: u8 = tcp::flags::ACK;

    fn session(client: &str, isn: u32, request: &[u8]) -> Vec<Vec<u8>> {
        use tcp::flags::{FIN, SYN};
        let c1 = isn.wrapping_add(1);
        let c2 = c1.wrapping_add(request.len() as u32);
        vec![
            packet(client, S, SYN, isn, 0, b""),
            packet(S, client, SYN | A, 50, c1, b""),
            packet(client, S, A, c1, 51, request),
            packet(S, client, A | FIN, 51, c2, b"bye"),
            packet(client, S, A | FIN, c2, 55, b""),
            packet(S, client, A, 55, c2.wrapping_add(1), b""),
        ]
    }

    #[test]
    fn port_reuse_after_close_is_a_new_connection() {
        let mut packets = session(C, 7, b"first");
        packets.extend(session(C, 9_000, b"second"));
        let options = Options::default();
        let tapes = import_in_memory(&capture(&packets), &options).unwrap();
        assert_eq!(tapes.len(), 2);
        assert_eq!(streams(&tapes[0]), [b"first".to_vec(), b"bye".to_vec()]);
        assert_eq!(streams(&tapes[1]), [b"second".to_vec(), b"bye".to_vec()]);
        let single = Options {
            one_connection: true,
            ..Options::default()
        };
        let err = import_in_memory(&capture(&packets), &single).unwrap_err();
        assert!(
            err.to_string().contains("holds several TCP connections"),
            "{err}"
        );
    }

    #[test]
    fn a_retransmitted_syn_is_the_same_connection() {
        let mut packets = session(C, 7, b"only");
        packets.insert(1, packets[0].clone());
        let tapes = import_in_memory(&capture(&packets), &Options::default()).unwrap();
        assert_eq!(tapes.len(), 1);
    }

    #[test]
    fn the_filter_keeps_one_server() {
        let mut packets = session(C, 7, b"to 80");
        let other = "10.9.0.3:8080";
        packets.push(packet("10.9.0.1:40001", other, A, 1, 1, b"to 8080"));
        let options = Options {
            filter: Some(vec![S.parse().unwrap()]),
            filter_text: S.into(),
            ..Options::default()
        };
        let tapes = import_in_memory(&capture(&packets), &options).unwrap();
        assert_eq!(tapes.len(), 1);
        assert_eq!(streams(&tapes[0])[0], b"to 80");
        let options = Options {
            filter: Some(vec!["10.9.9.9:1".parse().unwrap()]),
            filter_text: "10.9.9.9:1".into(),
            ..Options::default()
        };
        let err = import_in_memory(&capture(&packets), &options).unwrap_err();
        assert_eq!(
            err.to_string(),
            "capture: no TCP connection to 10.9.9.9:1 with data found in 7 packets"
        );
    }

    #[test]
    fn fragments_and_other_traffic_are_skipped() {
        let mut fragment = packet(C, S, A, 1, 1, b"fragment");
        fragment[6] = 0x20; // more fragments
        let mut udp = packet(C, S, A, 1, 1, b"udp");
        udp[9] = 17;
        let packets = [fragment, udp];
        let err = import_in_memory(&capture(&packets), &Options::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "capture: no TCP connection with data found in 2 packets (1 IP fragments were skipped)"
        );
    }

    #[test]
    fn ethernet_padding_and_connections_in_start_order() {
        let frames: Vec<Vec<u8>> = [
            packet("10.9.0.5:40000", S, A, 1, 1, b"x"),
            packet(C, S, A, 1, 1, b"y"),
        ]
        .iter()
        .map(|p| wrap(LINKTYPE_ETHERNET, p))
        .collect();
        let timed: Vec<(u64, &[u8])> = vec![(5_000, &frames[0]), (1_000, &frames[1])];
        let bytes = pcap_file(true, true, LINKTYPE_ETHERNET, &timed);
        let tapes = import_in_memory(&bytes, &Options::default()).unwrap();
        // The second packet's connection started earlier.
        assert_eq!(streams(&tapes[0])[0], b"y");
        assert_eq!(streams(&tapes[1])[0], b"x");
    }
}
