//! One proxied connection: a client, the server it was connected to, and the
//! tape they are recorded to.
//!
//! A session is `Connecting` until the non-blocking connect to the server
//! finishes, then `Relaying`. While relaying, each direction is a [`Pipe`]:
//! bytes are read from its source socket into its ring, recorded to the tape
//! from the ring, then written from the ring to its destination socket. Each
//! direction closes on its own ([`Flow`]): an EOF read from the client is
//! recorded and forwarded as a `shutdown(Write)` to the server while the
//! server's answer keeps flowing, and the other way round.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::Instant;

use log::{debug, info};
use mio::event::Event;
use mio::{Registry, Token};

use super::recorder::{Pending, Recorder};
use crate::error::{Error, os_reason};
use crate::net::{Address, Socket, Stream};
use crate::ring::Ring;
use crate::tape::Direction;

/// Rounds of read-record-forward per wake-up before a busy session yields to
/// the others; the proxy resumes it right after the current batch.
const MAX_ROUNDS: usize = 32;

const DIRECTIONS: [Direction; 2] = [Direction::ClientToServer, Direction::ServerToClient];

/// Which socket of the session an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    fn source_of(dir: Direction) -> Side {
        match dir {
            Direction::ClientToServer => Side::Client,
            Direction::ServerToClient => Side::Server,
        }
    }
}

/// The life of one direction of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Reading from the source, forwarding to the destination.
    Open,
    /// The source sent EOF and its EOF frame is on tape; what is left in the
    /// ring drains to the destination, then its write side is shut down.
    Draining,
    /// The destination got the half-close; nothing more goes this way.
    Closed,
}

/// The outcome of waking a session.
#[derive(Debug)]
pub enum Status {
    Running,
    /// Ran out of rounds with work left: resume after this batch of events.
    Yielded,
    /// Both directions closed cleanly.
    Finished,
    Failed(Error),
}

/// One direction: the ring its bytes pass through and how far it has closed.
struct Pipe {
    ring: Ring,
    flow: Flow,
    bytes: u64,
}

struct Relay {
    tape: Recorder,
    pipes: [Pipe; 2],
}

enum Phase {
    /// Waiting for the connect to the server; nothing is read or recorded yet,
    /// so a refused connect leaves no tape behind.
    Connecting {
        tape: PathBuf,
    },
    Relaying(Relay),
}

pub struct Session {
    /// 1 for the first accepted connection, 2 for the next...
    pub number: u64,
    client: Socket,
    server: Socket,
    phase: Phase,
    buffer: usize,
    opened: Instant,
    /// The tick the session was accepted.
    started: u64,
    /// The tick of the last byte moved, for the idle timeout.
    pub last_activity: u64,
}

/// What a cassette's index says of a recorded session.
#[derive(Debug, Clone)]
pub struct Summary {
    pub number: u64,
    pub started: u64,
    pub bytes: [u64; 2],
    pub first: Option<Direction>,
}

impl Session {
    /// Registers both sockets; the server's connect is still in flight.
    pub fn start(
        registry: &Registry,
        number: u64,
        (client, client_addr, client_token): (Stream, Address, Token),
        (server, server_addr, server_token): (Stream, Address, Token),
        tape: PathBuf,
        buffer: usize,
        now: u64,
    ) -> io::Result<Session> {
        let client = Socket::register(registry, client, client_addr, client_token, false)?;
        // The connect in flight finishes with a WRITABLE event.
        let server = Socket::register(registry, server, server_addr, server_token, true)?;
        Ok(Session {
            number,
            client,
            server,
            phase: Phase::Connecting { tape },
            buffer,
            opened: Instant::now(),
            started: now,
            last_activity: now,
        })
    }

    pub fn client_addr(&self) -> &Address {
        &self.client.addr
    }

    /// Handles readiness of one of the session's sockets.
    pub fn ready(&mut self, registry: &Registry, side: Side, event: &Event, now: u64) -> Status {
        match side {
            Side::Client => self.client.note(event),
            Side::Server => self.server.note(event),
        }
        self.resume(registry, now)
    }

    /// Does whatever the sockets allow now.
    pub fn resume(&mut self, registry: &Registry, now: u64) -> Status {
        if let Phase::Connecting { tape } = &self.phase {
            let tape = tape.clone();
            match self.server.stream.connect_finished() {
                Ok(false) => return Status::Running,
                Ok(true) => {}
                Err(err) => {
                    return Status::Failed(Error::address(&self.server.addr, "connect to", err));
                }
            }
            match Recorder::create(&tape, Instant::now()) {
                Ok(recorder) => self.start_relay(recorder),
                Err(err) => return Status::Failed(Error::file(&tape, "write tape", err)),
            }
        }
        match self.relay(registry, now) {
            Ok(status) => status,
            Err(err) => Status::Failed(err),
        }
    }

    fn start_relay(&mut self, tape: Recorder) {
        // Recorded sessions are often chatty request/response protocols;
        // Nagle's algorithm would add delays that end up on tape.
        for peer in [&self.client, &self.server] {
            if let Err(err) = peer.stream.set_nodelay() {
                debug!(
                    "session {}: TCP_NODELAY on {}: {err}",
                    self.number, peer.addr
                );
            }
        }
        info!(
            "session {}: connected {} to {}, recording to {}",
            self.number,
            self.client.addr,
            self.server.addr,
            tape.path().display()
        );
        let pipe = || Pipe {
            ring: Ring::new(self.buffer),
            flow: Flow::Open,
            bytes: 0,
        };
        self.phase = Phase::Relaying(Relay {
            tape,
            pipes: [pipe(), pipe()],
        });
    }

    fn relay(&mut self, registry: &Registry, now: u64) -> Result<Status, Error> {
        let Phase::Relaying(relay) = &mut self.phase else {
            return Ok(Status::Running);
        };
        let mut status = Status::Running;
        for round in 0.. {
            if round == MAX_ROUNDS {
                status = Status::Yielded;
                break;
            }
            let mut progress = false;
            let mut eof = [false; 2];
            for dir in DIRECTIONS {
                let source = peer(&mut self.client, &mut self.server, Side::source_of(dir));
                let pipe = &mut relay.pipes[dir.index()];
                let (moved, got_eof) = fill(pipe, source).map_err(|err| {
                    peer_error(
                        self.number,
                        "read from",
                        Side::source_of(dir),
                        &source.addr,
                        err,
                    )
                })?;
                progress |= moved || got_eof;
                eof[dir.index()] = got_eof;
            }
            record(relay, eof, self.number)?;
            for dir in DIRECTIONS {
                let dest_side = Side::source_of(dir.reverse());
                let dest = peer(&mut self.client, &mut self.server, dest_side);
                let pipe = &mut relay.pipes[dir.index()];
                progress |= forward(pipe, dest, self.number, dir).map_err(|err| {
                    peer_error(self.number, "write to", dest_side, &dest.addr, err)
                })?;
            }
            if !progress {
                break;
            }
            self.last_activity = now;
        }

        if relay.pipes.iter().all(|p| p.flow == Flow::Closed) {
            return Ok(Status::Finished);
        }
        let [c2s, s2c] = &relay.pipes;
        let wants = [
            (&mut self.client, !s2c.ring.is_empty()),
            (&mut self.server, !c2s.ring.is_empty()),
        ];
        for (peer, pending) in wants {
            peer.want(registry, pending).map_err(|err| {
                Error::Session(format!("cannot poll {}: {}", peer.addr, os_reason(&err)))
            })?;
        }
        Ok(status)
    }

    /// The session as the index records it; `None` when no tape was made.
    pub fn summary(&self) -> Option<Summary> {
        let Phase::Relaying(relay) = &self.phase else {
            return None;
        };
        Some(Summary {
            number: self.number,
            started: self.started,
            bytes: [relay.pipes[0].bytes, relay.pipes[1].bytes],
            first: relay.tape.first_speaker(),
        })
    }

    /// Logs the session's end and unregisters its sockets; dropping closes them.
    pub fn close(mut self, registry: &Registry) {
        self.client.deregister(registry);
        self.server.deregister(registry);
        if let Phase::Relaying(relay) = &self.phase {
            info!(
                "session {}: closed after {:.3}s, client to server {} bytes, server to client {} bytes, tape {} ({} bytes)",
                self.number,
                self.opened.elapsed().as_secs_f64(),
                relay.pipes[0].bytes,
                relay.pipes[1].bytes,
                relay.tape.path().display(),
                relay.tape.bytes()
            );
        }
    }
}

fn peer<'a>(client: &'a mut Socket, server: &'a mut Socket, side: Side) -> &'a mut Socket {
    match side {
        Side::Client => client,
        Side::Server => server,
    }
}

fn peer_error(number: u64, action: &str, side: Side, addr: &Address, err: io::Error) -> Error {
    let who = match side {
        Side::Client => "client",
        Side::Server => "server",
    };
    Error::Session(format!(
        "session {number}: cannot {action} {who} {addr}: {}",
        os_reason(&err)
    ))
}

/// Reads from the source into the ring until it would block, the ring is
/// full or the source ends. Returns (bytes were read, EOF was read).
fn fill(pipe: &mut Pipe, source: &mut Socket) -> io::Result<(bool, bool)> {
    let mut moved = false;
    while pipe.flow == Flow::Open && source.readable && !pipe.ring.is_full() {
        let mut window = 0;
        let read = pipe.ring.fill_with(|free| {
            window = free.len();
            source.stream.read(free)
        });
        match read {
            Ok(0) => return Ok((moved, true)),
            Ok(n) => {
                pipe.bytes += n as u64;
                moved = true;
                source.read_done(n, window);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => source.readable = false,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok((moved, false))
}

/// Puts everything read so far on tape, then marks the EOFs it recorded.
fn record(relay: &mut Relay, eof: [bool; 2], number: u64) -> Result<(), Error> {
    let mut eof = eof;
    loop {
        let [c2s, s2c] = &relay.pipes;
        let pending = [
            Pending {
                dir: Direction::ClientToServer,
                ring: &c2s.ring,
                eof: eof[0],
            },
            Pending {
                dir: Direction::ServerToClient,
                ring: &s2c.ring,
                eof: eof[1],
            },
        ];
        let done = relay
            .tape
            .record(pending, Instant::now())
            .map_err(|err| Error::file(relay.tape.path(), "write tape", err))?;
        if done.data == [0, 0] && done.eof == [false, false] {
            return Ok(());
        }
        for dir in DIRECTIONS {
            let i = dir.index();
            relay.pipes[i].ring.mark_recorded(done.data[i]);
            if done.eof[i] {
                eof[i] = false;
                set_flow(&mut relay.pipes[i], Flow::Draining, number, dir);
            }
        }
    }
}

/// Writes recorded bytes to the destination; once a draining direction is
/// empty, forwards its half-close. Returns whether anything moved.
fn forward(pipe: &mut Pipe, dest: &mut Socket, number: u64, dir: Direction) -> io::Result<bool> {
    let mut moved = false;
    while dest.writable {
        let (first, second) = pipe.ring.recorded_slices();
        if first.is_empty() {
            break;
        }
        let slices = [IoSlice::new(first), IoSlice::new(second)];
        let len = first.len() + second.len();
        match dest.stream.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                pipe.ring.consume(n);
                moved = true;
                dest.write_done(n, len);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => dest.writable = false,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    if pipe.flow == Flow::Draining && pipe.ring.is_empty() {
        match dest.stream.shutdown(Shutdown::Write) {
            // The peer may already be gone entirely; its half is closed either way.
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotConnected => {}
            Err(err) => return Err(err),
        }
        set_flow(pipe, Flow::Closed, number, dir);
        moved = true;
    }
    Ok(moved)
}

/// Every change of a direction's state passes here.
fn set_flow(pipe: &mut Pipe, flow: Flow, number: u64, dir: Direction) {
    debug!("session {number}: {dir:?} {:?} => {flow:?}", pipe.flow);
    if flow == Flow::Closed {
        let (from, to) = match dir {
            Direction::ClientToServer => ("client", "server"),
            Direction::ServerToClient => ("server", "client"),
        };
        info!(
            "session {number}: the {from} closed its side after {} bytes; half-close forwarded to the {to}",
            pipe.bytes
        );
    }
    pipe.flow = flow;
}
