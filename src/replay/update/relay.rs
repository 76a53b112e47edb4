//! A `server` connection handed over to the upstream (`--update` with an
//! upstream) where its client departed from the tape.
//!
//! The client already had the tape's answers to the turns it matched, so
//! the upstream is first brought to where the client is: it is played the
//! tape's client bytes the client was answered, turn by turn, each once
//! the answer to the one before is whole (exactly as recorded, or gone
//! quiet: `course` paces it as `client --update` paces a departed server),
//! and what it answers is recorded, not forwarded. Then
//! the client's departing turn goes, as the client sent it, and from there
//! on both ways are relayed as the proxy relays: a byte goes to the other
//! side only once it is in the recording (write-ahead), and each
//! direction's half-close is recorded and forwarded on its own.
//!
//! ```text
//!              connected               prefix played, the last
//!  Connecting -----------> CatchingUp ------------------------> Relaying
//!      | refused               (upstream's answers               (both ways,
//!      v                        recorded only)                    recorded)
//!   Failed (the upstream's address and the reason)
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use log::{debug, info};
use mio::Registry;
use mio::event::Event;

use super::course::{Gate, Update};
use super::handover::Departure;
use crate::engine::net::{Received, Sent, Socket};
use crate::error::Error;
use crate::replay::faults::Frames;
use crate::replay::peer::{Arrival, Peer};
use crate::replay::script::Action;
use crate::replay::script::playback::Playback;
use crate::replay::status::Status;
use crate::tape::{Direction, Source};

/// Rounds per wake-up before yielding to other sessions.
const MAX_ROUNDS: usize = 32;
/// Bytes read from either side at a time: what waits to be forwarded is at
/// most this much per direction (a full one stops reads: backpressure).
const CHUNK: usize = 64 * 1024;

/// Where the hand-over stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The connect to the upstream is in flight.
    Connecting,
    /// The upstream is played the client's turns it matched; its answers
    /// are recorded, not forwarded (the client had the tape's).
    CatchingUp,
    /// Both ways, recorded, then forwarded.
    Relaying,
}

/// One direction's close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Open,
    /// Its sender closed (or is gone); the close is recorded and goes on
    /// once what is buffered went.
    Ended,
    /// The half-close was forwarded.
    Closed,
}

/// Which socket of the connection an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// Recorded bytes on their way to one side.
#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    sent: usize,
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    fn went(&mut self, n: usize) {
        self.sent += n;
        if self.is_empty() {
            self.bytes.clear();
            self.sent = 0;
        }
    }
}

/// The tape's client side, played to the upstream up to `answered` bytes
/// (those the tape answered the client).
struct Prefix<S: Source> {
    playback: Playback<S>,
    answered: u64,
}

pub struct Relay<S: Source> {
    pub number: u64,
    client: Peer,
    upstream: Socket,
    phase: Phase,
    /// What the upstream is played first, when the client had anything
    /// from the tape.
    prefix: Option<Prefix<S>>,
    /// Where the session goes as a pending tape (the tape played, or a new
    /// one of a cassette).
    pub tape: PathBuf,
    /// The client's turn where it departed, and whether it closed.
    departing: Departure,
    record: Update,
    /// Where the recording goes, for its errors.
    partial: PathBuf,
    /// Ends of client-to-upstream and upstream-to-client.
    flows: [Flow; 2],
    to_upstream: Outbox,
    to_client: Outbox,
    /// When the upstream's answer may be over: the relay sleeps until.
    wake_at: Option<u64>,
    started: Instant,
}

impl<S: Source + Clone> Relay<S> {
    /// Hands the connection over: the client, the tape's client side (a
    /// playback in the client's role; none for a new tape) and the tape
    /// the session goes to, what the client said since its last answer,
    /// the upstream's socket (its connect in flight), and the recording
    /// (in the client's role).
    pub fn new(
        (number, client, started): (u64, Peer, Instant),
        (prefix, tape): (Option<Playback<S>>, PathBuf),
        departing: Departure,
        upstream: Socket,
        mut record: Update,
    ) -> Relay<S> {
        let prefix = prefix
            .zip(departing.answered)
            .map(|(mut playback, answered)| {
                // An echo of a value the upstream's answer no longer shows
                // says what the tape's server said.
                for (name, value) in record.recorded_captures() {
                    playback.set_capture(&name, value);
                }
                Prefix { playback, answered }
            });
        record.hand_over(departing.summary.clone(), 0);
        let partial = record.path().to_path_buf();
        Relay {
            number,
            client,
            upstream,
            phase: Phase::Connecting,
            prefix,
            tape,
            departing,
            record,
            partial,
            flows: [Flow::Open; 2],
            to_upstream: Outbox::default(),
            to_client: Outbox::default(),
            wake_at: None,
            started,
        }
    }

    /// Where the client departed from the tape.
    pub fn summary(&self) -> &str {
        &self.departing.summary
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn peer(&self) -> &Peer {
        &self.client
    }

    pub fn peer_mut(&mut self) -> &mut Peer {
        &mut self.client
    }

    /// The recording, once the connection is over.
    pub fn into_record(self, registry: &Registry) -> (Update, [u64; 2]) {
        let bytes = self.bytes();
        let Relay {
            client,
            mut upstream,
            record,
            ..
        } = self;
        client.close(registry);
        upstream.deregister(registry);
        (record, bytes)
    }

    /// Bytes the client sent and got.
    pub fn bytes(&self) -> [u64; 2] {
        [self.client.received(), self.client.sent()]
    }

    pub fn last_activity(&self) -> u64 {
        self.client.last_activity
    }

    fn set_phase(&mut self, phase: Phase) {
        debug!("session {}: {:?} => {phase:?}", self.number, self.phase);
        self.phase = phase;
    }

    fn set_flow(&mut self, dir: Direction, flow: Flow) {
        let i = dir as usize;
        debug!(
            "session {}: {dir:?} {:?} => {flow:?}",
            self.number, self.flows[i]
        );
        self.flows[i] = flow;
    }

    fn flow(&self, dir: Direction) -> Flow {
        self.flows[dir as usize]
    }

    pub fn ready(
        &mut self,
        registry: &Registry,
        (side, event): (Side, &Event),
        now: u64,
        scratch: &mut [u8],
    ) -> Status {
        match side {
            Side::Client => self.client.note(event),
            Side::Upstream => self.upstream.note(event),
        }
        self.resume(registry, now, scratch)
    }

    /// Does whatever the sockets and the tape allow now.
    pub fn resume(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> Status {
        if self.phase == Phase::Connecting {
            match self.upstream.stream().connect_finished() {
                Ok(false) => return self.wait(registry, Status::Running),
                Ok(true) => {
                    info!(
                        "session {}: connected to the upstream {}",
                        self.number,
                        self.upstream.addr()
                    );
                    let _ = self.upstream.stream().set_nodelay();
                    self.record.hand_over(self.departing.summary.clone(), now);
                    self.set_phase(Phase::CatchingUp);
                }
                Err(err) => {
                    let upstream = self.upstream.addr();
                    return Status::Failed(Error::address(
                        upstream,
                        "connect to the upstream",
                        err,
                    ));
                }
            }
        }
        self.client.turn(now, Frames::default());
        let len = CHUNK.min(scratch.len());
        let scratch = &mut scratch[..len];
        let status = match self.rounds(now, scratch) {
            Ok(status) => status,
            Err(status) => return status,
        };
        self.wait(registry, status)
    }

    fn rounds(&mut self, now: u64, scratch: &mut [u8]) -> Result<Status, Status> {
        for _ in 0..MAX_ROUNDS {
            self.wake_at = None;
            let mut moved = self.read_upstream(scratch, now)?;
            moved |= match self.phase {
                Phase::CatchingUp => self.catch_up(now)?,
                _ => self.read_client(scratch, now)?,
            };
            moved |= self.forward()?;
            if moved {
                self.client.last_activity = now;
            }
            if self.flows == [Flow::Closed; 2] {
                return Ok(Status::Updated {
                    summary: self.departing.summary.clone(),
                });
            }
            if !moved {
                return Ok(match self.wake_at {
                    Some(at) => Status::Sleep {
                        due_ms: at.saturating_sub(now).max(1),
                    },
                    None => Status::Running,
                });
            }
        }
        Ok(Status::Yielded)
    }

    /// Reads what the upstream said: recorded, and forwarded once the
    /// client's departing turn went (before, the client had the tape's
    /// answers).
    fn read_upstream(&mut self, scratch: &mut [u8], now: u64) -> Result<bool, Status> {
        let mut moved = false;
        while self.flow(Direction::ServerToClient) == Flow::Open
            && self.to_client.is_empty()
            && self.upstream.is_readable()
        {
            let arrival = match self.upstream.read(scratch) {
                Received::Data(n) => Arrival::Data(&scratch[..n]),
                Received::Eof => Arrival::Eof,
                Received::Failed(err) => {
                    debug!("read from {}: {err}", self.upstream.addr());
                    Arrival::Reset
                }
                Received::Blocked => break,
            };
            moved = true;
            self.record
                .theirs(&arrival, now)
                .map_err(|err| failed_record(&self.partial, err))?;
            match arrival {
                Arrival::Data(bytes) if self.phase == Phase::Relaying => {
                    self.to_client.bytes.extend_from_slice(bytes)
                }
                Arrival::Data(_) => {}
                Arrival::Eof | Arrival::Reset => {
                    self.set_flow(Direction::ServerToClient, Flow::Ended)
                }
            }
        }
        Ok(moved)
    }

    /// Reads what the client says, once relaying: recorded, then
    /// forwarded.
    fn read_client(&mut self, scratch: &mut [u8], now: u64) -> Result<bool, Status> {
        if self.flow(Direction::ClientToServer) != Flow::Open || !self.to_upstream.is_empty() {
            return Ok(false);
        }
        let Relay {
            client,
            record,
            to_upstream,
            ..
        } = self;
        let mut ended = false;
        let moved = client.receive(scratch, CHUNK as u64, |arrival| {
            match arrival {
                Arrival::Data(bytes) => {
                    to_upstream.bytes.extend_from_slice(bytes);
                    record.ours(bytes, 0, now)
                }
                Arrival::Eof | Arrival::Reset => {
                    ended = true;
                    record.our_eof(0, now)
                }
            }
            .map_err(|err| failed_record(&self.partial, err))
        })?;
        if ended {
            self.set_flow(Direction::ClientToServer, Flow::Ended);
        }
        Ok(moved)
    }

    /// Plays the upstream the client's turns before its departure, each
    /// once the upstream answered the one before; then the departing turn
    /// goes, and the relay begins.
    fn catch_up(&mut self, now: u64) -> Result<bool, Status> {
        let closed = self.flow(Direction::ServerToClient) != Flow::Open;
        let Relay {
            prefix,
            record,
            to_upstream,
            upstream,
            partial,
            wake_at,
            ..
        } = self;
        if let Some(Prefix { playback, answered }) = prefix {
            let mut moved = false;
            loop {
                let expected = playback.expected();
                let Action::Send { frame, .. } = playback.action() else {
                    break;
                };
                if playback.sent() >= *answered {
                    break;
                }
                if let Gate::WaitUntil(at) = record.gate(expected, closed, now) {
                    *wake_at = Some(at);
                    return Ok(moved);
                }
                for (name, value) in record.captured_for(frame.offset) {
                    playback.set_capture(&name, value);
                }
                let left = (*answered - playback.sent()).min(CHUNK as u64);
                let chunk = playback
                    .peek(left as usize)
                    .map(<[u8]>::to_vec)
                    .and_then(|chunk| playback.consume(chunk.len()).map(|()| chunk))
                    .map_err(|fault| playback.fault_status(fault, upstream.addr()))?;
                record
                    .ours(&chunk, expected, now)
                    .map_err(|err| failed_record(partial, err))?;
                to_upstream.bytes.extend_from_slice(&chunk);
                moved = true;
            }
            // The client had the tape's bytes before it departed (a
            // greeting, answers): the upstream's own go unforwarded, so
            // they must be whole first, as for a turn of ours (the
            // departing turn's place in the tape says how many the tape
            // had).
            if let Gate::WaitUntil(at) = record.gate(playback.expected(), closed, now) {
                *wake_at = Some(at);
                return Ok(moved);
            }
        }
        let turn = std::mem::take(&mut self.departing.turn);
        if !turn.is_empty() {
            self.record
                .ours(&turn, 0, now)
                .map_err(|err| failed_record(&self.partial, err))?;
            self.to_upstream.bytes.extend_from_slice(&turn);
        }
        if self.departing.eof {
            self.record
                .our_eof(0, now)
                .map_err(|err| failed_record(&self.partial, err))?;
            self.set_flow(Direction::ClientToServer, Flow::Ended);
        }
        info!(
            "session {}: the upstream {} caught up; relaying the client's {} bytes and what follows",
            self.number,
            self.upstream.addr(),
            turn.len()
        );
        self.set_phase(Phase::Relaying);
        Ok(true)
    }

    /// Writes what is recorded to each side, and a half-close once a
    /// direction that ended is drained.
    fn forward(&mut self) -> Result<bool, Status> {
        if self.to_upstream.is_empty() && self.to_client.is_empty() && !self.closing() {
            return Ok(false);
        }
        self.record
            .flush()
            .map_err(|err| failed_record(&self.partial, err))?;
        let mut moved = false;
        while !self.to_upstream.is_empty() && self.upstream.is_writable() {
            match self.upstream.write(self.to_upstream.pending()) {
                Sent::Moved(n) => {
                    self.to_upstream.went(n);
                    moved = true;
                }
                Sent::Blocked => {}
                Sent::Failed(err) => return Err(self.gone(Side::Upstream, &err)),
            }
        }
        while !self.to_client.is_empty() && self.client.is_writable() {
            match self.client.write(self.to_client.pending()) {
                Sent::Moved(n) => {
                    self.to_client.went(n);
                    moved = true;
                }
                Sent::Blocked => {}
                Sent::Failed(err) => return Err(self.gone(Side::Client, &err)),
            }
        }
        if self.flow(Direction::ClientToServer) == Flow::Ended && self.to_upstream.is_empty() {
            let _ = self.upstream.shutdown_write();
            self.set_flow(Direction::ClientToServer, Flow::Closed);
            moved = true;
        }
        let relaying = self.phase == Phase::Relaying;
        if relaying
            && self.flow(Direction::ServerToClient) == Flow::Ended
            && self.to_client.is_empty()
        {
            // A fault that holds the half-close back keeps it for later.
            if matches!(self.client.shutdown(), Ok(true) | Err(_)) {
                self.set_flow(Direction::ServerToClient, Flow::Closed);
                moved = true;
            }
        }
        Ok(moved)
    }

    /// True while a direction that ended has its half-close to forward.
    fn closing(&self) -> bool {
        self.flow(Direction::ClientToServer) == Flow::Ended
            || (self.phase == Phase::Relaying
                && self.flow(Direction::ServerToClient) == Flow::Ended)
    }

    /// Neither side said more for a while: the session is over, as far
    /// as it went.
    pub fn quiet_over(&self) -> Status {
        info!(
            "session {}: the client and the upstream {} went quiet; the session ends here",
            self.number,
            self.upstream.addr()
        );
        Status::Updated {
            summary: self.departing.summary.clone(),
        }
    }

    /// A side is gone: the session is over, as far as it went.
    fn gone(&self, side: Side, err: &io::Error) -> Status {
        let who = match side {
            Side::Client => format!("the client {}", self.client.addr()),
            Side::Upstream => format!("the upstream {}", self.upstream.addr()),
        };
        info!("session {}: {who} is gone ({err})", self.number);
        Status::Updated {
            summary: self.departing.summary.clone(),
        }
    }

    /// Asks for WRITABLE only where bytes wait for room (or the connect).
    fn wait(&mut self, registry: &Registry, status: Status) -> Status {
        let upstream = self.phase == Phase::Connecting
            || (!self.to_upstream.is_empty() && !self.upstream.is_writable());
        let client = !self.to_client.is_empty() && !self.client.is_writable();
        let wanted = self
            .upstream
            .want(registry, upstream)
            .and_then(|()| self.client.want(registry, client));
        match wanted {
            Ok(()) => status,
            Err(err) => Status::Failed(Error::address(self.client.addr(), "poll", err)),
        }
    }

    /// What the connection waits for, for `--timeout`.
    pub fn waiting_for(&self) -> String {
        match self.phase {
            Phase::Connecting => format!("the connection to the upstream {}", self.upstream.addr()),
            Phase::CatchingUp => format!(
                "the upstream {} to answer the client's turns the tape had",
                self.upstream.addr()
            ),
            Phase::Relaying => format!(
                "more from the client or the upstream {}",
                self.upstream.addr()
            ),
        }
    }

    pub fn log_end(&self, verdict: &str) {
        info!(
            "session {} with {} (handed over to {}): {verdict} after {:.3}s, {} bytes from the client, {} to it",
            self.number,
            self.client.addr(),
            self.upstream.addr(),
            self.started.elapsed().as_secs_f64(),
            self.client.received(),
            self.client.sent()
        );
    }
}

fn failed_record(partial: &Path, err: io::Error) -> Status {
    Status::Failed(Error::file(partial, "write the --update recording", err))
}
