//! One replayed connection: a socket to the peer and the two cursors over the
//! tape. Whatever arrives is checked at once, even while our own next frame
//! still waits, so a peer that writes everything before reading never
//! deadlocks against us.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::Instant;

use log::{debug, info};
use mio::event::Event;
use mio::{Registry, Token};

use super::playback::Playback;
use super::script::{Action, Fault};
use crate::engine::net::{Address, Socket, Stream};
use crate::error::Error;
use crate::tape::{Direction, Source};

/// Largest chunk handed to one `write` of our own bytes.
const SEND_CHUNK: usize = 256 * 1024;
/// Own frames shorter than this that may go back to back are gathered and
/// written together: a tape of many small frames costs few syscalls.
const GATHER: usize = 64 * 1024;
/// Rounds of receive-and-send per wake-up before yielding to other sessions.
const MAX_ROUNDS: usize = 32;
/// Bytes moved per wake-up (either way) before yielding, at least one round:
/// a bulk session's turn stays about a millisecond.
const BUDGET: u64 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Our connect to the server is in flight (client role).
    Connecting,
    Playing,
}

/// The outcome of waking a session.
#[derive(Debug)]
pub enum Status {
    Running,
    /// Out of rounds with work left: resume after this batch of events.
    Yielded,
    /// Our next frame waits out a recorded delay: call `delay_over` in
    /// `due_ms` milliseconds.
    Sleep {
        due_ms: u64,
    },
    /// The tape was played to its end and the peer matched it.
    Passed,
    /// The peer departed from the tape; the report is ready to print.
    Mismatch {
        summary: String,
        report: String,
        /// Live bytes the peer sent before it departed.
        received: u64,
    },
    Failed(Error),
}

pub struct Session<S: Source> {
    pub number: u64,
    socket: Socket,
    phase: Phase,
    /// The peer's direction has ended (EOF, reset, or a failed write):
    /// nothing more is read.
    peer_done: bool,
    /// Bytes of small frames taken from the tape to go out in one write,
    /// and how many of them went. They go before anything else.
    outgoing: Vec<u8>,
    outgoing_sent: usize,
    playback: Playback<S>,
    started: Instant,
    /// Bytes that arrived from the peer, matched or not.
    received: u64,
    /// The tick of the last byte moved either way, for `--timeout`.
    pub last_activity: u64,
}

impl<S: Source + Clone> Session<S> {
    /// A session over an accepted or connecting stream; registers it.
    pub fn start(
        registry: &Registry,
        number: u64,
        (stream, addr, token): (Stream, Address, Token),
        playback: Playback<S>,
        connecting: bool,
        now: u64,
    ) -> Result<Session<S>, Error> {
        if !connecting {
            let _ = stream.set_nodelay();
        }
        // WRITABLE from the start: our first frame may be due at once, and
        // a connect in flight finishes with a WRITABLE event.
        let socket = Socket::register(registry, stream, addr.clone(), token, true)
            .map_err(|err| Error::address(&addr, "poll", err))?;
        let mut session = Session::resumed(number, socket, playback, 0, now);
        if connecting {
            session.phase = Phase::Connecting;
        }
        Ok(session)
    }

    /// A session that goes on with a playback already under way (a
    /// cassette connection whose tape was just decided).
    pub fn resumed(
        number: u64,
        socket: Socket,
        playback: Playback<S>,
        received: u64,
        now: u64,
    ) -> Session<S> {
        Session {
            number,
            socket,
            phase: Phase::Playing,
            peer_done: false,
            outgoing: Vec::new(),
            outgoing_sent: 0,
            playback,
            started: Instant::now(),
            received,
            last_activity: now,
        }
    }

    pub fn addr(&self) -> &Address {
        &self.socket.addr
    }

    /// Checks bytes (and an EOF) the peer sent before the session started,
    /// while its cassette tape was being chosen. A departure ends it at once.
    pub fn feed(&mut self, received: &[u8], eof: bool) -> Option<Status> {
        self.received += received.len() as u64;
        let fed = self.playback.receive(received).and_then(|()| {
            if eof {
                self.peer_done = true;
                self.playback.receive_eof()
            } else {
                Ok(())
            }
        });
        fed.err()
            .map(|fault| self.playback.fault_status(fault, &self.socket.addr))
    }

    /// The peer's direction ended before the session started.
    pub fn set_peer_done(&mut self) {
        self.peer_done = true;
    }

    /// Handles readiness of the session's socket.
    pub fn ready(
        &mut self,
        registry: &Registry,
        event: &Event,
        now: u64,
        scratch: &mut [u8],
    ) -> Status {
        self.socket.note(event);
        self.resume(registry, now, scratch)
    }

    /// The delay before our next frame is over.
    pub fn delay_over(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> Status {
        self.playback.delay_over();
        self.resume(registry, now, scratch)
    }

    /// Does whatever the socket and the tape allow now.
    pub fn resume(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> Status {
        if self.phase == Phase::Connecting {
            match self.socket.stream.connect_finished() {
                Ok(false) => return Status::Running,
                Ok(true) => {
                    info!("connected to {}", self.socket.addr);
                    let _ = self.socket.stream.set_nodelay();
                    self.phase = Phase::Playing;
                }
                Err(err) => {
                    return Status::Failed(Error::address(&self.socket.addr, "connect to", err));
                }
            }
        }
        let status = match self.play_rounds(now, scratch) {
            Ok(status) => status,
            Err(fault) => return self.playback.fault_status(fault, &self.socket.addr),
        };
        if matches!(status, Status::Running | Status::Sleep { .. }) {
            self.park();
        }
        match self.update_interest(registry) {
            Ok(()) => status,
            Err(err) => Status::Failed(Error::address(&self.socket.addr, "poll", err)),
        }
    }

    /// The session waits for its peer or a timer: it gives back what it
    /// buffered, so an idle session costs little more than its socket.
    fn park(&mut self) {
        self.playback.park();
        if self.outgoing.is_empty() {
            self.outgoing = Vec::new();
        }
    }

    fn play_rounds(&mut self, now: u64, scratch: &mut [u8]) -> Result<Status, Fault> {
        let moved_before = self.received + self.playback.sent();
        for _ in 0..MAX_ROUNDS {
            if self.received + self.playback.sent() - moved_before >= BUDGET {
                break;
            }
            let received = self.receive(scratch)?;
            let sent = self.send()?;
            if received || sent {
                self.last_activity = now;
            }
            if self.playback.is_finished() && self.outgoing.is_empty() {
                // One last look: bytes beyond the tape are a departure too.
                self.receive(scratch)?;
                return Ok(Status::Passed);
            }
            if let Some(due_ms) = self.playback.wants_pause() {
                return Ok(Status::Sleep { due_ms });
            }
            if !received && !sent {
                return Ok(Status::Running);
            }
        }
        Ok(Status::Yielded)
    }

    /// Reads everything available and checks it against the tape.
    fn receive(&mut self, scratch: &mut [u8]) -> Result<bool, Fault> {
        let mut moved = false;
        let before = self.received;
        while self.socket.readable && !self.peer_done && self.received - before < BUDGET {
            match self.socket.stream.read(scratch) {
                Ok(0) => {
                    debug!("session {}: {} half-closed", self.number, self.socket.addr);
                    self.peer_done = true;
                    self.playback.receive_eof()?;
                    moved = true;
                }
                Ok(n) => {
                    self.received += n as u64;
                    self.playback.receive(&scratch[..n])?;
                    moved = true;
                    self.socket.read_done(n, scratch.len());
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.socket.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    debug!(
                        "session {}: read from {}: {err}",
                        self.number, self.socket.addr
                    );
                    self.peer_done = true;
                    self.playback.receive_reset()?;
                    moved = true;
                }
            }
        }
        Ok(moved)
    }

    /// Sends our frames for as long as the tape's order and the socket allow.
    fn send(&mut self) -> Result<bool, Fault> {
        let mut moved = false;
        let before = self.playback.sent();
        loop {
            if self.playback.sent() - before >= BUDGET {
                return Ok(moved);
            }
            if !self.outgoing.is_empty() {
                if !self.socket.writable {
                    return Ok(moved);
                }
                moved |= self.write_outgoing()?;
                continue;
            }
            if !self.playback.may_go() {
                return Ok(moved);
            }
            match self.playback.action() {
                Action::Send { remaining, .. } => {
                    if !self.socket.writable {
                        return Ok(moved);
                    }
                    if (remaining as usize) < GATHER {
                        self.gather()?;
                        continue;
                    }
                    if let Some((file, offset, remaining)) = self.playback.in_file() {
                        let len = (remaining as usize).min(SEND_CHUNK);
                        match crate::sys::sendfile(
                            self.socket.stream.as_fd(),
                            file.as_fd(),
                            offset,
                            len,
                        ) {
                            Ok(0) => return self.write_failed(io::ErrorKind::WriteZero.into()),
                            Ok(n) => {
                                self.playback.consume(n)?;
                                moved = true;
                                self.socket.write_done(n, len);
                            }
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                                self.socket.writable = false
                            }
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                            Err(err) => return self.write_failed(err),
                        }
                        continue;
                    }
                    let chunk = self.playback.peek(SEND_CHUNK)?;
                    let len = chunk.len();
                    match self.socket.stream.write(chunk) {
                        Ok(n) => {
                            self.playback.consume(n)?;
                            moved = true;
                            self.socket.write_done(n, len);
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            self.socket.writable = false
                        }
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => return self.write_failed(err),
                    }
                }
                Action::Shutdown { .. } => {
                    if let Err(err) = shut_down(&self.socket) {
                        return self.write_failed(err);
                    }
                    debug!("session {}: half-closed our side", self.number);
                    self.playback.shut_down()?;
                    moved = true;
                }
                Action::End => return Ok(moved),
            }
        }
    }

    /// Takes the current small frame, and the frames right after it that
    /// may go at once (no peer bytes or delay between), into `outgoing`.
    fn gather(&mut self) -> Result<(), Fault> {
        while self.outgoing.len() < GATHER
            && matches!(self.playback.action(), Action::Send { .. })
            && self.playback.may_go()
        {
            let chunk = self.playback.peek(GATHER - self.outgoing.len())?;
            self.outgoing.extend_from_slice(chunk);
            let n = chunk.len();
            self.playback.consume(n)?;
        }
        Ok(())
    }

    /// Writes what is gathered; true when bytes went.
    fn write_outgoing(&mut self) -> Result<bool, Fault> {
        let pending = &self.outgoing[self.outgoing_sent..];
        match self.socket.stream.write(pending) {
            Ok(n) => {
                self.socket.write_done(n, pending.len());
                self.outgoing_sent += n;
                if self.outgoing_sent == self.outgoing.len() {
                    self.outgoing.clear();
                    self.outgoing_sent = 0;
                }
                Ok(n > 0)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.socket.writable = false;
                Ok(false)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(err) => self.write_failed(err),
        }
    }

    /// A write failed: the peer went away before taking all of our frames.
    fn write_failed(&mut self, err: io::Error) -> Result<bool, Fault> {
        debug!(
            "session {}: write to {}: {err}",
            self.number, self.socket.addr
        );
        self.peer_done = true;
        Err(self.playback.gone())
    }

    /// Asks for WRITABLE only while our bytes wait for room in the socket.
    fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let frame_due =
            matches!(self.playback.action(), Action::Send { .. }) && self.playback.may_act();
        let sending = (frame_due || !self.outgoing.is_empty()) && !self.socket.writable;
        let connecting = self.phase == Phase::Connecting;
        self.socket.want(registry, sending || connecting)
    }

    /// What the session waits for from the peer, for `--timeout` messages;
    /// `None` when it waits for nothing the peer owes.
    pub fn waiting_for(&self) -> Option<String> {
        if self.phase == Phase::Connecting {
            return Some(format!("the connection to {}", self.socket.addr));
        }
        if let Some(owed) = self.playback.owed() {
            return Some(owed);
        }
        if self.socket.writable {
            return None;
        }
        if !self.outgoing.is_empty() {
            let who = super::report::peer_name(self.playback.settings().own.reverse());
            return Some(format!(
                "the {who} to read {} more bytes",
                self.outgoing.len() - self.outgoing_sent
            ));
        }
        self.playback.unread()
    }

    /// True while not a byte came from the peer: a peer that leaves so
    /// is a probe, not a client departing from the tape.
    pub fn heard_nothing(&self) -> bool {
        self.received == 0
    }

    /// Bytes of our stream that went out (gathered bytes not yet written
    /// were taken from the tape, not sent).
    fn sent(&self) -> u64 {
        self.playback.sent() - (self.outgoing.len() - self.outgoing_sent) as u64
    }

    /// Bytes from client to server and from server to client: what we
    /// sent and what the peer sent.
    pub fn bytes(&self) -> [u64; 2] {
        match self.playback.settings().own {
            Direction::ClientToServer => [self.sent(), self.received],
            Direction::ServerToClient => [self.received, self.sent()],
        }
    }

    /// Bytes checked and sent, for the session's closing log line.
    pub fn log_end(&self, verdict: &str) {
        info!(
            "session {} with {} ({}): {verdict} after {:.3}s, checked {} bytes, sent {} bytes",
            self.number,
            self.socket.addr,
            self.playback.tape_name(),
            self.started.elapsed().as_secs_f64(),
            self.playback.matched(),
            self.sent()
        );
    }

    pub fn close(mut self, registry: &Registry) {
        self.socket.deregister(registry);
    }
}

/// Half-closes our side; a peer that is gone entirely has it closed anyway.
pub fn shut_down(socket: &Socket) -> io::Result<()> {
    match socket.stream.shutdown(Shutdown::Write) {
        Err(err) if err.kind() != io::ErrorKind::NotConnected => Err(err),
        _ => Ok(()),
    }
}
