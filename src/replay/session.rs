//! One replayed connection: a socket to the peer and the two cursors over the
//! tape. Whatever arrives is checked at once, even while our own next frame
//! still waits, so a peer that writes everything before reading never
//! deadlocks against us.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use log::{debug, info};
use mio::event::Event;
use mio::{Registry, Token};

use super::report;
use super::script::{Action, Captures, Expect, Expected, Fault, Play};
use crate::engine::net::{Address, Socket, Stream};
use crate::error::Error;
use crate::tape::{Direction, Frame, Locator, Reader, Source};

/// Largest chunk handed to one `write` of our own bytes.
const SEND_CHUNK: usize = 256 * 1024;
/// Own frames shorter than this that may go back to back are gathered and
/// written together: a tape of many small frames costs few syscalls.
const GATHER: usize = 64 * 1024;
/// Rounds of receive-and-send per wake-up before yielding to other sessions.
const MAX_ROUNDS: usize = 32;

/// Settings every session of a run shares.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The direction we play; the other one is checked.
    pub own: Direction,
    pub compare: bool,
    /// Recorded delays are honoured, divided by this, when set.
    pub speed: Option<f64>,
    /// Mismatch reports carry a line diff when both sides are text.
    pub text_diff: bool,
}

/// Where the session stands with the delay before its next own frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    /// The next action's recorded delay has not started counting yet.
    Pending,
    /// A timer runs until the delay is over.
    Waiting,
    /// The delay is over, or there is none to honour.
    Over,
}

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
    pause: Pause,
    /// Bytes of small frames taken from the tape to go out in one write,
    /// and how many of them went. They go before anything else.
    outgoing: Vec<u8>,
    outgoing_sent: usize,
    expect: Expect<S>,
    play: Play<S>,
    tape: S,
    /// The tape's file name, for logs.
    tape_name: String,
    /// Names places in the tape as the user's file has them.
    locator: Locator,
    settings: Settings,
    /// Values captured so far, for echoes.
    captures: Captures,
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
        (tape_name, tape, locator): (String, S, Locator),
        settings: Settings,
        connecting: bool,
        now: u64,
    ) -> Result<Session<S>, Error> {
        let expect = Expect::new(Reader::new(tape.clone()), settings.own.reverse())
            .map_err(|fault| fault_error(&tape_name, fault))?;
        let play = Play::new(Reader::new(tape.clone()), settings.own)
            .map_err(|fault| fault_error(&tape_name, fault))?;
        if !connecting {
            let _ = stream.set_nodelay();
        }
        // WRITABLE from the start: our first frame may be due at once, and
        // a connect in flight finishes with a WRITABLE event.
        let socket = Socket::register(registry, stream, addr.clone(), token, true)
            .map_err(|err| Error::address(&addr, "poll", err))?;
        Ok(Session {
            number,
            socket,
            phase: if connecting {
                Phase::Connecting
            } else {
                Phase::Playing
            },
            peer_done: false,
            pause: Pause::Pending,
            outgoing: Vec::new(),
            outgoing_sent: 0,
            expect,
            play,
            tape,
            tape_name,
            locator,
            settings,
            captures: Captures::default(),
            started: Instant::now(),
            received: 0,
            last_activity: now,
        })
    }

    pub fn addr(&self) -> &Address {
        &self.socket.addr
    }

    /// Checks bytes (and an EOF) the peer sent before the session started,
    /// while its cassette tape was being chosen. A departure ends it at once.
    pub fn feed(&mut self, received: &[u8], eof: bool) -> Option<Status> {
        self.received += received.len() as u64;
        let fed = self
            .expect
            .receive(received, self.settings.compare, &mut self.captures)
            .and_then(|()| {
                if eof {
                    self.peer_done = true;
                    self.expect.receive_eof(&mut self.captures)
                } else {
                    Ok(())
                }
            });
        fed.err().map(|fault| self.fault_status(fault))
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
        if self.pause == Pause::Waiting {
            self.pause = Pause::Over;
        }
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
            Err(fault) => return self.fault_status(fault),
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
        self.expect.release_buffer();
        self.play.release_buffer();
        if self.outgoing.is_empty() {
            self.outgoing = Vec::new();
        }
    }

    fn fault_status(&self, fault: Fault) -> Status {
        match fault {
            Fault::Deviation(deviation) => {
                let peer = self.settings.own.reverse();
                let text_diff = self.settings.text_diff;
                Status::Mismatch {
                    summary: report::summary(&deviation, peer, &self.socket.addr, &self.locator),
                    report: report::render(
                        &deviation,
                        peer,
                        &self.socket.addr,
                        (&self.tape, &self.locator),
                        text_diff,
                    ),
                }
            }
            fault => Status::Failed(fault_error(&self.tape_name, fault)),
        }
    }

    fn play_rounds(&mut self, now: u64, scratch: &mut [u8]) -> Result<Status, Fault> {
        for _ in 0..MAX_ROUNDS {
            let received = self.receive(scratch)?;
            let sent = self.send()?;
            if received || sent {
                self.last_activity = now;
            }
            if self.play.action() == Action::End
                && self.expect.is_done()
                && self.outgoing.is_empty()
            {
                // One last look: bytes beyond the tape are a departure too.
                self.receive(scratch)?;
                return Ok(Status::Passed);
            }
            if let Some(status) = self.wants_pause() {
                return Ok(status);
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
        while self.socket.readable && !self.peer_done {
            match self.socket.stream.read(scratch) {
                Ok(0) => {
                    debug!("session {}: {} half-closed", self.number, self.socket.addr);
                    self.peer_done = true;
                    self.expect.receive_eof(&mut self.captures)?;
                    moved = true;
                }
                Ok(n) => {
                    self.received += n as u64;
                    self.expect.receive(
                        &scratch[..n],
                        self.settings.compare,
                        &mut self.captures,
                    )?;
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
                    self.expect.receive_reset()?;
                    moved = true;
                }
            }
        }
        Ok(moved)
    }

    /// Sends our frames for as long as the tape's order and the socket allow.
    fn send(&mut self) -> Result<bool, Fault> {
        let mut moved = false;
        loop {
            if !self.outgoing.is_empty() {
                if !self.socket.writable {
                    return Ok(moved);
                }
                moved |= self.write_outgoing()?;
                continue;
            }
            let action = self.play.action();
            if action == Action::End
                || !self
                    .play
                    .is_ready(self.expect.matched(), self.expect.peer_closed())
                || self.pause != Pause::Over && self.delay_ms() > 0
            {
                return Ok(moved);
            }
            match action {
                Action::Send { remaining, .. } => {
                    if !self.socket.writable {
                        return Ok(moved);
                    }
                    if (remaining as usize) < GATHER {
                        self.gather()?;
                        continue;
                    }
                    let chunk = self.play.peek(SEND_CHUNK, &self.captures)?;
                    let len = chunk.len();
                    match self.socket.stream.write(chunk) {
                        Ok(n) => {
                            self.play.consume(n, &mut self.captures)?;
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
                    match self.socket.stream.shutdown(Shutdown::Write) {
                        Ok(()) => {}
                        Err(err) if err.kind() == io::ErrorKind::NotConnected => {}
                        Err(err) => return self.write_failed(err),
                    }
                    debug!("session {}: half-closed our side", self.number);
                    self.play.shut_down()?;
                    moved = true;
                }
                Action::End => return Ok(moved),
            }
            if self.play.action() != action {
                // A new action: its own recorded delay applies.
                self.pause = Pause::Pending;
            }
        }
    }

    /// Takes the current small frame, and the frames right after it that
    /// may go at once (no peer bytes or delay between), into `outgoing`.
    fn gather(&mut self) -> Result<(), Fault> {
        while self.outgoing.len() < GATHER {
            let action = self.play.action();
            if !matches!(action, Action::Send { .. })
                || !self
                    .play
                    .is_ready(self.expect.matched(), self.expect.peer_closed())
                || self.pause != Pause::Over && self.delay_ms() > 0
            {
                break;
            }
            let chunk = self
                .play
                .peek(GATHER - self.outgoing.len(), &self.captures)?;
            self.outgoing.extend_from_slice(chunk);
            let n = chunk.len();
            self.play.consume(n, &mut self.captures)?;
            if self.play.action() != action {
                self.pause = Pause::Pending;
            }
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
        Err(self.expect.gone())
    }

    /// The recorded delay before the next action, scaled, in ms.
    fn delay_ms(&self) -> u64 {
        match self.settings.speed {
            Some(speed) => (self.play.needs().delay_ms as f64 / speed).round() as u64,
            None => 0,
        }
    }

    /// Starts the recorded delay of the next action once it may go.
    fn wants_pause(&mut self) -> Option<Status> {
        if self.pause != Pause::Pending || self.play.action() == Action::End {
            return None;
        }
        if !self
            .play
            .is_ready(self.expect.matched(), self.expect.peer_closed())
        {
            return None;
        }
        let due_ms = self.delay_ms();
        if due_ms == 0 {
            self.pause = Pause::Over;
            return None;
        }
        self.pause = Pause::Waiting;
        Some(Status::Sleep { due_ms })
    }

    /// Asks for WRITABLE only while our bytes wait for room in the socket.
    fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let frame_due = matches!(self.play.action(), Action::Send { .. })
            && self
                .play
                .is_ready(self.expect.matched(), self.expect.peer_closed());
        let sending = (frame_due || !self.outgoing.is_empty()) && !self.socket.writable;
        let connecting = self.phase == Phase::Connecting;
        self.socket.want(registry, sending || connecting)
    }

    /// What the session waits for from the peer, for `--timeout` messages;
    /// `None` when it waits for nothing the peer owes.
    pub fn waiting_for(&self) -> Option<String> {
        let who = report::peer_name(self.settings.own.reverse());
        if self.phase == Phase::Connecting {
            return Some(format!("the connection to {}", self.socket.addr));
        }
        if self.pause == Pause::Waiting {
            return None;
        }
        let matched = self.expect.received();
        match self.expect.next() {
            Expected::Span { frame, received } => Some(format!(
                "the rest of a value that varies from the {who} ({received} bytes so far; frame {}, {}, byte {matched} of its stream)",
                frame.index,
                self.locator.place(&frame, frame.offset)
            )),
            Expected::Data { frame, remaining } => Some(format!(
                "{remaining} more bytes from the {who} (frame {}, {}, byte {matched} of its stream)",
                frame.index,
                self.locator.place(&frame, awaited(&frame, remaining))
            )),
            Expected::Any { frame, remaining } => Some(format!(
                "{remaining} more bytes (any value) from the {who} (frame {}, {}, byte {matched} of its stream)",
                frame.index,
                self.locator.place(&frame, frame.offset)
            )),
            Expected::Eof { frame } => Some(format!(
                "the {who} to close its side (frame {}, {}, after byte {matched} of its stream)",
                frame.index,
                self.locator.place(&frame, frame.offset)
            )),
            Expected::Closed | Expected::End
                if !self.outgoing.is_empty() && !self.socket.writable =>
            {
                Some(format!(
                    "the {who} to read {} more bytes",
                    self.outgoing.len() - self.outgoing_sent
                ))
            }
            Expected::Closed | Expected::End => match self.play.action() {
                Action::Send { frame, remaining } if !self.socket.writable => Some(format!(
                    "the {who} to read {remaining} more bytes (frame {}, {})",
                    frame.index,
                    self.locator.place(&frame, awaited(&frame, remaining))
                )),
                _ => None,
            },
        }
    }

    /// True while not a byte came from the peer: a peer that leaves so
    /// is a probe, not a client departing from the tape.
    pub fn heard_nothing(&self) -> bool {
        self.received == 0
    }

    /// Bytes of our stream that went out (gathered bytes not yet written
    /// were taken from the tape, not sent).
    fn sent(&self) -> u64 {
        self.play.sent() - (self.outgoing.len() - self.outgoing_sent) as u64
    }

    /// Bytes from client to server and from server to client: what we
    /// sent and what the peer sent.
    pub fn bytes(&self) -> [u64; 2] {
        match self.settings.own {
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
            self.tape_name,
            self.started.elapsed().as_secs_f64(),
            self.expect.matched(),
            self.sent()
        );
    }

    pub fn close(mut self, registry: &Registry) {
        self.socket.deregister(registry);
    }
}

/// A tape that read cleanly when it was loaded fails now: it was changed
/// on disk since (sessions read it as they go).
fn fault_error(name: &str, fault: Fault) -> Error {
    match fault {
        Fault::Tape(err) => Error::Session(format!(
            "cannot read the tape {name} (did it change on disk after it was loaded?): {err}"
        )),
        Fault::BadSpan(why) => Error::Session(format!("the tape {name}: {why}")),
        Fault::Deviation(_) => Error::Session(format!("the tape {name}: a departure at its start")),
    }
}

/// Where the next byte of a data frame with `remaining` bytes to go is: the
/// frame itself until its first byte, then that byte (in a text tape, the
/// line it is on).
fn awaited(frame: &Frame, remaining: u32) -> u64 {
    if remaining == frame.len {
        frame.offset
    } else {
        report::payload_offset(frame, frame.len - remaining)
    }
}
