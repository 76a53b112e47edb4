//! One replayed connection: a socket to the peer and the two cursors over the
//! tape. Whatever arrives is checked at once, even while our own next frame
//! still waits, so a peer that writes everything before reading never
//! deadlocks against us.

use std::io;
use std::path::Path;
use std::time::Instant;

use log::{debug, info};
use mio::event::Event;
use mio::{Registry, Token};

use super::faults::Frames;
use super::peer::{Arrival, Peer};
use super::script::playback::Playback;
use super::script::{Action, Fault};
use super::status::Status;
use crate::engine::net::{Address, Sent, Socket, Stream};
use crate::error::Error;
use crate::tape::{Direction, Source};

mod update;

use update::Updating;
pub use update::taking;

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

pub struct Session<S: Source> {
    pub number: u64,
    peer: Peer,
    phase: Phase,
    /// Bytes of small frames taken from the tape to go out in one write,
    /// and how many of them went. They go before anything else.
    outgoing: Vec<u8>,
    outgoing_sent: usize,
    playback: Playback<S>,
    /// What `--update` adds, by role.
    updating: Updating,
    /// When a departed peer's turn may be over: the session sleeps until.
    wake_at: Option<u64>,
    started: Instant,
    /// Bytes of buffers given back since the owner last asked.
    freed: usize,
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
        let mut session =
            Session::resumed(number, Peer::new(socket, now), playback, Instant::now());
        if connecting {
            session.phase = Phase::Connecting;
        }
        Ok(session)
    }

    /// A session that goes on with a playback already under way (a
    /// cassette connection whose tape was just decided).
    pub fn resumed(number: u64, peer: Peer, playback: Playback<S>, started: Instant) -> Session<S> {
        Session {
            number,
            peer,
            phase: Phase::Playing,
            outgoing: Vec::new(),
            outgoing_sent: 0,
            playback,
            updating: Updating::No,
            wake_at: None,
            started,
            freed: 0,
        }
    }

    pub fn addr(&self) -> &Address {
        self.peer.addr()
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    pub fn peer_mut(&mut self) -> &mut Peer {
        &mut self.peer
    }

    /// Where the tape's cursors stand, for faults placed at a frame. While
    /// bytes taken from the tape wait to be written, our frame is not
    /// known (they never reach a frame a fault waits for: see `gather`).
    fn frames(&self) -> Frames {
        let mut frames = Frames::of(self.playback.frames());
        if !self.outgoing.is_empty() {
            frames.own = None;
        }
        frames
    }

    /// The tick of the last byte moved either way, for `--timeout`.
    pub fn last_activity(&self) -> u64 {
        self.peer.last_activity
    }

    /// Checks bytes (and an EOF) the peer sent before the session started,
    /// while its cassette tape was being chosen (its peer counted them as
    /// they came). A departure ends it at once, unless there is an
    /// upstream to hand the session over to.
    pub fn feed_kept(&mut self, received: &[u8], eof: bool) -> Option<Status> {
        if let Updating::HandingOver(handover) = &mut self.updating {
            handover.heard(&Arrival::Data(received));
        }
        let fed = self.playback.receive(received).and_then(|()| {
            if eof {
                self.playback.receive_eof()
            } else {
                Ok(())
            }
        });
        let status = fed
            .err()
            .map(|fault| self.playback.fault_status(fault, self.peer.addr()))?;
        match (&mut self.updating, status) {
            (Updating::HandingOver(handover), Status::Mismatch { summary, .. })
                if handover.can_hand_over() =>
            {
                handover.depart(summary, eof);
                Some(Status::Departed)
            }
            (_, status) => Some(status),
        }
    }

    /// Handles readiness of the session's socket.
    pub fn ready(
        &mut self,
        registry: &Registry,
        event: &Event,
        now: u64,
        scratch: &mut [u8],
    ) -> Status {
        self.peer.note(event);
        self.resume(registry, now, scratch)
    }

    /// The delay before our next frame is over.
    pub fn delay_over(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> Status {
        self.playback.delay_over();
        self.peer.ready_now(now);
        self.resume(registry, now, scratch)
    }

    /// Does whatever the socket and the tape allow now.
    pub fn resume(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> Status {
        if self.phase == Phase::Connecting {
            match self.peer.socket().stream().connect_finished() {
                Ok(false) => return Status::Running,
                Ok(true) => {
                    info!("connected to {}", self.peer.addr());
                    let _ = self.peer.socket().stream().set_nodelay();
                    self.phase = Phase::Playing;
                }
                Err(err) => {
                    return Status::Failed(Error::address(self.peer.addr(), "connect to", err));
                }
            }
        }
        self.peer.turn(now, self.frames());
        let status = match self.play_rounds(now, scratch) {
            Ok(status) => status,
            Err(fault) => return self.playback.fault_status(fault, self.peer.addr()),
        };
        if let Some(err) = self.updating.take_failure() {
            let path = self.playback.tape_name().to_string() + ".new";
            return Status::Failed(Error::file(Path::new(&path), "write the update of", err));
        }
        if matches!(status, Status::Running | Status::Sleep { .. }) {
            self.park();
        }
        match self.update_interest(registry) {
            Ok(()) => status,
            Err(err) => Status::Failed(Error::address(self.peer.addr(), "poll", err)),
        }
    }

    /// The session waits for its peer or a timer: it gives back what it
    /// buffered, so an idle session costs little more than its socket.
    fn park(&mut self) {
        self.freed += self.playback.park();
        if self.outgoing.is_empty() {
            self.freed += self.outgoing.capacity();
            self.outgoing = Vec::new();
        }
    }

    /// Bytes of buffers the session gave back since the last call.
    pub fn take_freed(&mut self) -> usize {
        std::mem::take(&mut self.freed)
    }

    fn play_rounds(&mut self, now: u64, scratch: &mut [u8]) -> Result<Status, Fault> {
        let moved_before = self.peer.received() + self.playback.sent();
        for _ in 0..MAX_ROUNDS {
            if self.peer.received() + self.playback.sent() - moved_before >= BUDGET {
                break;
            }
            self.wake_at = None;
            if let Some(status) = self.peer.faulted_status() {
                return Ok(status);
            }
            let received = self.receive(scratch, now)?;
            let sent = self.send(now)?;
            if received || sent {
                self.peer.last_activity = now;
            }
            if let Some(status) = self.peer.faulted_status() {
                return Ok(status);
            }
            if let Some(status) = self.departed_end(now) {
                return Ok(status);
            }
            if self.playback.is_finished() && self.outgoing.is_empty() && !self.departed() {
                // One last look: bytes beyond the tape are a departure too.
                self.receive(scratch, now)?;
                if !self.departed() {
                    return Ok(Status::Passed);
                }
            }
            if let (Some(at), false) = (self.wake_at, received || sent) {
                return Ok(Status::Sleep {
                    due_ms: at.saturating_sub(now).max(1),
                });
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

    /// Reads everything available and checks it against the tape (with
    /// `--update`, records it too; once the peer departed, only records).
    fn receive(&mut self, scratch: &mut [u8], now: u64) -> Result<bool, Fault> {
        let Session {
            peer,
            playback,
            updating,
            ..
        } = self;
        let addr = peer.addr().clone();
        peer.at(Frames::of(playback.frames()));
        peer.receive(scratch, BUDGET, |arrival| {
            match updating {
                Updating::No => {}
                Updating::HandingOver(handover) => {
                    handover.heard(&arrival);
                    if handover.departed() {
                        return Ok(());
                    }
                }
                Updating::Recording { update, failed } => {
                    if let Err(err) = update.theirs(&arrival, now) {
                        failed.get_or_insert(err);
                    }
                    if update.departed() {
                        return Ok(());
                    }
                }
            }
            let (checked, eof) = match arrival {
                Arrival::Data(bytes) => (playback.receive(bytes), false),
                Arrival::Eof => (playback.receive_eof(), true),
                Arrival::Reset => (playback.receive_reset(), true),
            };
            // A client that is gone takes no answer from an upstream.
            let gone = matches!(arrival, Arrival::Reset);
            let fault = match (checked, &*updating) {
                (Err(fault @ Fault::Deviation(_)), Updating::Recording { .. }) => fault,
                (Err(fault @ Fault::Deviation(_)), Updating::HandingOver(handover)) if !gone => {
                    if !handover.can_hand_over() {
                        info!("{}", handover.why_not());
                        return Err(fault);
                    }
                    fault
                }
                (checked, _) => return checked,
            };
            let Status::Mismatch { summary, .. } = playback.fault_status(fault, &addr) else {
                return Ok(());
            };
            match updating {
                Updating::Recording { update, .. } => update.depart(summary, now),
                Updating::HandingOver(handover) => handover.depart(summary, eof),
                Updating::No => {}
            }
            Ok(())
        })
    }

    /// Sends our frames for as long as the tape's order and the socket allow.
    fn send(&mut self, now: u64) -> Result<bool, Fault> {
        let mut moved = false;
        let before = self.playback.sent();
        loop {
            if self.playback.sent() - before >= BUDGET {
                return Ok(moved);
            }
            self.peer.at(self.frames());
            if self.peer.faulted_status().is_some() {
                return Ok(moved);
            }
            if !self.outgoing.is_empty() {
                if !self.peer.is_writable() {
                    return Ok(moved);
                }
                moved |= self.write_outgoing()?;
                continue;
            }
            if !self.may_go(now) {
                return Ok(moved);
            }
            let expected = self.playback.expected();
            match self.playback.action() {
                Action::Send { frame, .. } if self.updating.records() => {
                    // Frame by frame, from memory: each byte that goes is
                    // recorded, and a departed peer's turns decide.
                    if !self.peer.is_writable() {
                        return Ok(moved);
                    }
                    if let Updating::Recording { update, .. } = &self.updating {
                        for (name, value) in update.captured_for(frame.offset) {
                            self.playback.set_capture(&name, value);
                        }
                    }
                    let chunk = self.playback.peek(SEND_CHUNK)?.to_vec();
                    // A secret's live value is recorded as stars: the
                    // pending tape keeps its placeholder anyway.
                    let secret = self.playback.sending_secret();
                    match self.peer.write(&chunk) {
                        Sent::Moved(n) => {
                            self.playback.consume(n)?;
                            let starred = vec![b'*'; n];
                            let sent = if secret { &starred } else { &chunk[..n] };
                            self.note_sent(Some(sent), expected, now);
                            moved = true;
                        }
                        Sent::Blocked => {}
                        Sent::Failed(_) if self.departed() => return Ok(moved),
                        Sent::Failed(_) => return Err(self.playback.gone()),
                    }
                }
                Action::Send { remaining, .. } => {
                    if !self.peer.is_writable() {
                        return Ok(moved);
                    }
                    if (remaining as usize) < GATHER {
                        self.gather()?;
                        continue;
                    }
                    self.taking();
                    if self.playback.in_file().is_some() {
                        // What is left of this frame is a place in the tape:
                        // no read buffer is needed while it goes, however
                        // long the peer takes to read it.
                        self.freed += self.playback.park();
                    }
                    let sent = match self.playback.in_file() {
                        Some((file, offset, remaining)) => {
                            self.playback.check_unchanged()?;
                            let len = (remaining as usize).min(SEND_CHUNK);
                            self.peer.send_file(file, offset, len)
                        }
                        None => {
                            let chunk = self.playback.peek(SEND_CHUNK)?;
                            self.peer.write(chunk)
                        }
                    };
                    match sent {
                        Sent::Moved(n) => {
                            self.playback.consume(n)?;
                            moved = true;
                        }
                        Sent::Blocked => {}
                        Sent::Failed(_) => return Err(self.playback.gone()),
                    }
                }
                Action::Shutdown { .. } => {
                    match self.peer.shutdown() {
                        // A fault holds our half-close back.
                        Ok(false) => return Ok(moved),
                        Err(_) if !self.departed() => return Err(self.playback.gone()),
                        Ok(true) | Err(_) => {}
                    }
                    debug!("session {}: half-closed our side", self.number);
                    self.taking();
                    self.playback.shut_down()?;
                    self.note_sent(None, expected, now);
                    moved = true;
                }
                Action::End => return Ok(moved),
            }
        }
    }

    /// Takes the current small frame, and the frames right after it that
    /// may go at once (no peer bytes or delay between), into `outgoing`;
    /// never a frame a fault waits for, which must find its bytes unsent.
    fn gather(&mut self) -> Result<(), Fault> {
        let limit = self.peer.own_frame_limit().unwrap_or(u64::MAX);
        while self.outgoing.len() < GATHER
            && matches!(self.playback.action(), Action::Send { frame, .. } if frame.index < limit)
            && self.playback.may_go()
        {
            self.taking();
            let chunk = self.playback.peek(GATHER - self.outgoing.len())?;
            self.outgoing.extend_from_slice(chunk);
            let n = chunk.len();
            self.playback.consume(n)?;
        }
        Ok(())
    }

    /// Writes what is gathered; true when bytes went.
    fn write_outgoing(&mut self) -> Result<bool, Fault> {
        match self.peer.write(&self.outgoing[self.outgoing_sent..]) {
            Sent::Moved(n) => {
                self.outgoing_sent += n;
                if self.outgoing_sent == self.outgoing.len() {
                    self.outgoing.clear();
                    self.outgoing_sent = 0;
                }
                Ok(true)
            }
            Sent::Blocked => Ok(false),
            Sent::Failed(_) => Err(self.playback.gone()),
        }
    }

    /// Asks for WRITABLE only while our bytes wait for room in the socket.
    fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let frame_due =
            matches!(self.playback.action(), Action::Send { .. }) && self.playback.may_act();
        let sending = (frame_due || !self.outgoing.is_empty()) && !self.peer.is_writable();
        let connecting = self.phase == Phase::Connecting;
        self.peer.want(registry, sending || connecting)
    }

    /// What the session waits for from the peer, for `--timeout` messages;
    /// `None` when it waits for nothing the peer owes.
    pub fn waiting_for(&self) -> Option<String> {
        if self.phase == Phase::Connecting {
            return Some(format!("the connection to {}", self.peer.addr()));
        }
        // Our bytes are due and a fault holds them (a latency, a stall):
        // the peer owes nothing before it has them.
        let ours_due = !self.outgoing.is_empty() || self.playback.is_due();
        if ours_due && self.peer.held_by_fault() {
            return None;
        }
        if let Some(owed) = self.playback.owed() {
            return Some(owed);
        }
        if self.peer.is_writable() {
            return None;
        }
        if !self.outgoing.is_empty() {
            let who = self.playback.settings().own.reverse().sender();
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
        self.peer.heard_nothing()
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
            Direction::ClientToServer => [self.sent(), self.peer.received()],
            Direction::ServerToClient => [self.peer.received(), self.sent()],
        }
    }

    /// Bytes checked and sent, for the session's closing log line.
    pub fn log_end(&self, verdict: &str) {
        info!(
            "session {} with {} ({}): {verdict} after {:.3}s, checked {} bytes, sent {} bytes",
            self.number,
            self.peer.addr(),
            self.playback.tape_name(),
            self.started.elapsed().as_secs_f64(),
            self.playback.matched(),
            self.sent()
        );
    }

    pub fn close(self, registry: &Registry) {
        self.peer.close(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::TapeFile;
    use crate::replay::testing::*;

    fn ping_pong(delay_ms: u64) -> TapeFile {
        tape(|w| {
            w.data(C2S, b"ping\n").unwrap();
            w.delay(delay_ms).unwrap();
            w.data(S2C, b"pong\n").unwrap();
            w.eof(C2S).unwrap();
            w.eof(S2C).unwrap();
        })
    }

    fn session(tape: &TapeFile, speed: Option<f64>) -> (Wire, Session<TapeFile>) {
        let (wire, peer) = Wire::new();
        let playback = serving("t.tape", tape, speed);
        (wire, Session::resumed(1, peer, playback, Instant::now()))
    }

    fn resume(session: &mut Session<TapeFile>, wire: &mut Wire, now: u64) -> Status {
        session.resume(&wire.registry, now, &mut wire.scratch)
    }

    /// What the session does with the events its socket has now.
    fn ready(session: &mut Session<TapeFile>, wire: &mut Wire, now: u64) -> Status {
        let mut status = Status::Running;
        wire.events(|registry, event, scratch| {
            status = session.ready(registry, event, now, scratch);
        });
        status
    }

    #[test]
    fn playing_waits_for_the_request_answers_it_and_passes_at_both_eofs() {
        let (mut wire, mut s) = session(&ping_pong(0), None);
        assert!(matches!(resume(&mut s, &mut wire, 0), Status::Running));
        assert_eq!(wire.take(), b"", "nothing goes before the request");
        wire.send(b"pi");
        assert!(matches!(resume(&mut s, &mut wire, 1), Status::Running));
        assert_eq!(wire.take(), b"", "nor before the whole request");
        wire.send(b"ng\n");
        assert!(matches!(ready(&mut s, &mut wire, 2), Status::Running));
        assert_eq!(wire.take(), b"pong\n");
        assert_eq!(s.last_activity(), 2);
        wire.close();
        assert!(matches!(ready(&mut s, &mut wire, 3), Status::Passed));
        assert!(wire.closed(), "the session closed its side as recorded");
        assert_eq!(s.bytes(), [5, 5]);
    }

    #[test]
    fn a_differing_byte_is_a_mismatch_at_its_offset() {
        let (mut wire, mut s) = session(&ping_pong(0), None);
        wire.send(b"pinG\n");
        let Status::Mismatch {
            summary, received, ..
        } = resume(&mut s, &mut wire, 0)
        else {
            panic!("expected a mismatch")
        };
        assert_eq!(received, 3);
        assert!(
            summary.contains("byte 3 of its stream differs"),
            "{summary}"
        );
        assert_eq!(wire.take(), b"", "no answer to a wrong request");
    }

    #[test]
    fn a_peer_that_closes_early_departs_and_says_what_it_owed() {
        let (mut wire, mut s) = session(&ping_pong(0), None);
        assert!(
            s.waiting_for()
                .unwrap()
                .starts_with("5 more bytes from the client")
        );
        wire.send(b"pi");
        wire.close();
        let Status::Mismatch { summary, .. } = ready(&mut s, &mut wire, 0) else {
            panic!("expected a mismatch")
        };
        assert!(summary.contains("closed its side at byte 2"), "{summary}");
    }

    #[test]
    fn a_recorded_delay_puts_the_session_to_sleep_until_its_timer() {
        let (mut wire, mut s) = session(&ping_pong(40), Some(1.0));
        wire.send(b"ping\n");
        assert!(matches!(
            resume(&mut s, &mut wire, 0),
            Status::Sleep { due_ms: 40 }
        ));
        assert_eq!(wire.take(), b"", "the answer waits out its delay");
        assert!(s.waiting_for().is_none(), "the peer owes nothing meanwhile");
        let status = s.delay_over(&wire.registry, 40, &mut wire.scratch);
        assert!(matches!(status, Status::Running));
        assert_eq!(wire.take(), b"pong\n");
    }

    fn faulted(tape: &TapeFile, specs: &[&str]) -> (Wire, Session<TapeFile>) {
        let (wire, mut s) = session(tape, None);
        let faults = crate::fault::Faults::parse(specs).unwrap();
        s.peer_mut()
            .set_faults(&faults, (1, crate::fault::Role::Server), 0);
        (wire, s)
    }

    #[test]
    fn playing_with_latency_holds_the_answer_until_its_wake() {
        let (mut wire, mut s) = faulted(&ping_pong(0), &["latency=40"]);
        wire.send(b"ping\n");
        assert!(matches!(resume(&mut s, &mut wire, 10), Status::Running));
        assert_eq!(wire.take(), b"", "held");
        assert_eq!(s.peer_mut().take_wake(), Some(51), "ready at 10, due at 51");
        assert!(
            s.waiting_for().is_none(),
            "the client owes nothing meanwhile"
        );
        assert!(matches!(resume(&mut s, &mut wire, 50), Status::Running));
        assert_eq!(wire.take(), b"");
        assert!(matches!(resume(&mut s, &mut wire, 51), Status::Running));
        assert_eq!(wire.take(), b"pong\n");
        assert_eq!(s.peer().fired(), ["latency=40"]);
    }

    #[test]
    fn playing_into_a_reset_ends_the_session_where_it_stands() {
        let (mut wire, mut s) = faulted(&ping_pong(0), &["reset,at=byte:2"]);
        wire.send(b"ping\n");
        let Status::Faulted { summary } = resume(&mut s, &mut wire, 0) else {
            panic!("expected the fault to end it")
        };
        assert_eq!(
            summary,
            "reset (RST) by the fault 'reset,at=byte:2' after 2 bytes down"
        );
        assert_eq!(wire.take(), b"po");
    }

    #[test]
    fn playing_with_a_stall_on_the_client_reads_nothing_more() {
        let (mut wire, mut s) = faulted(&ping_pong(0), &["stall,dir=up,at=byte:2"]);
        wire.send(b"ping\n");
        assert!(matches!(resume(&mut s, &mut wire, 0), Status::Running));
        assert_eq!(s.peer().received(), 2, "reads stop at the stall's byte");
        assert_eq!(wire.take(), b"");
        let none = crate::fault::Faults::default();
        s.peer_mut()
            .set_faults(&none, (1, crate::fault::Role::Server), 5);
        assert!(matches!(resume(&mut s, &mut wire, 5), Status::Running));
        assert_eq!(
            wire.take(),
            b"pong\n",
            "flowing again once the stall is gone"
        );
    }

    #[test]
    fn bytes_kept_while_a_tape_was_chosen_are_checked_like_any_others() {
        let (_wire, mut s) = session(&ping_pong(0), None);
        assert!(s.feed_kept(b"pin", false).is_none());
        let Some(Status::Mismatch { received, .. }) = s.feed_kept(b"X\n", false) else {
            panic!("expected a mismatch")
        };
        assert_eq!(received, 3);
    }
}
