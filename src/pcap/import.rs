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
use super::reassembly::{Conn, State, Summary};
use super::tcp::{TcpHeader, flags};
use crate::error::Error;
use crate::tape::Direction;

/// A connection's tape bytes go to the sink once this many are waiting.
const FLUSH_AT: usize = 64 * 1024;

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
    let fail = |err: super::read::CaptureError| Error::Session(format!("{name}: {err}"));
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
        Error::Session(format!("{}: {message}", self.name))
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
                self.close(id)?;
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
    fn after(
        &mut self,
        id: usize,
        result: Result<(), super::reassembly::Gap>,
    ) -> Result<(), Error> {
        let slot = &mut self.slots[id];
        let conn = slot.conn.as_mut().expect("an open connection");
        if let Err(gap) = result {
            let name = conn.name();
            return Err(self.gap_error(&name, &gap));
        }
        for gap in conn.take_marked() {
            warn!(
                "{}: {}: {gap}: marked as a wildcard (replay counts those bytes without comparing them)",
                self.name,
                conn.name()
            );
        }
        let summary = conn.summary();
        if summary.content && !slot.summary.content {
            self.kept.push(id);
            if self.options.one_connection && self.kept.len() > 1 {
                let first = &self.slots[self.kept[0]];
                let first = format!(
                    "{} -> {} (from packet {})",
                    first.client, first.server, first.first_packet
                );
                let conn = self.slots[id].conn.as_ref().expect("an open connection");
                return Err(self.fail(format!(
                    "holds several TCP connections ({first} and {} -> {} from packet {}): import them into a cassette with -o DIR/, or pick one with --filter HOST:PORT",
                    conn.client, conn.server, conn.first_packet
                )));
            }
        }
        let slot = &mut self.slots[id];
        slot.summary = summary;
        let conn = slot.conn.as_mut().expect("an open connection");
        if conn.tape_len() >= FLUSH_AT {
            let bytes = conn.take_tape();
            self.sink.append(id, &bytes)?;
        }
        if conn_state(&self.slots[id]) != State::Open {
            self.close(id)?;
        }
        Ok(())
    }

    fn gap_error(&self, conn: &str, gap: &super::reassembly::Gap) -> Error {
        self.fail(format!(
            "{conn}: {gap}: packets lost by the capture; --allow-gaps imports it with the gap marked"
        ))
    }

    /// Ends a connection: its last bytes to the sink, its memory freed.
    fn close(&mut self, id: usize) -> Result<(), Error> {
        let Some(mut conn) = self.slots[id].conn.take() else {
            return Ok(());
        };
        if conn.state() == State::Open
            && let Err(gap) = conn.end()
        {
            return Err(self.gap_error(&conn.name(), &gap));
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
        let newly_kept = summary.content && !slot.summary.content;
        slot.summary = summary;
        if newly_kept {
            self.kept.push(id);
            if self.options.one_connection && self.kept.len() > 1 {
                return Err(self.fail(format!(
                    "holds several TCP connections (the second: {}): import them into a cassette with -o DIR/, or pick one with --filter HOST:PORT",
                    conn.name()
                )));
            }
        }
        if summary.content {
            self.sink.append(id, &conn.take_tape())
        } else {
            self.sink.discard(id)
        }
    }

    fn finish(mut self, packets: u64) -> Result<Vec<Imported>, Error> {
        for id in 0..self.slots.len() {
            self.close(id)?;
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
        imported.sort_by_key(|c| (c.start_us, c.first_packet));
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

fn conn_state(slot: &Slot) -> State {
    slot.conn.as_ref().map_or(State::Finished, |c| c.state())
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
