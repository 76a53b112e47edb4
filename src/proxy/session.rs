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
//!
//! The tape is created when the first byte (or EOF) is read, not at
//! connect: a client that leaves before anything was said either way (a
//! readiness probe) leaves no tape and is not counted as a session.

use std::io;
use std::path::PathBuf;
use std::time::Instant;

use log::{debug, info};
use mio::event::Event;
use mio::{Registry, Token};

use super::faults::SessionFaults;
use super::pipe::{Flow, Pipe, fill, forward, set_flow};
use super::recorder::{Pending, Recorder};
use super::redaction::Hold;
use crate::engine::buffers::Buffers;
use crate::engine::net::{Address, Socket, Stream};
use crate::engine::ring::Ring;
use crate::error::{Error, os_reason};
use crate::fault::Faults;
use crate::tape::Direction;

/// Bytes a session reads per turn before it yields to the others (at
/// least one round). With four bulk uploads, 256 KiB turns gave an idle
/// session's reply a p99 of 14 ms, 128 KiB turns 5.5-5.8 ms with more bulk
/// throughput, not less (docs/performance.md). The proxy resumes it after
/// the sockets were polled again.
const BUDGET: u64 = 128 * 1024;

/// The most a session reads before it records and forwards, however large
/// its rings (`--buffer`): bytes read are still in the CPU's cache when they
/// are written to the tape and to the peer. With 8 MiB reads, recording ran
/// at 458-1029 MiB/s against 1250-1712 with 2 MiB ones.
const READ_CHUNK: usize = 2 * 1024 * 1024;

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

/// The outcome of waking a session.
#[derive(Debug)]
pub enum Status {
    Running,
    /// Ran out of rounds with work left: resume after this batch of events.
    Yielded,
    /// Bytes arrived and there is no tape yet: `attach` one, then resume.
    NeedsTape,
    /// The client left before a byte went either way: a readiness probe,
    /// not a session, and no tape.
    Probe,
    /// Both directions closed cleanly.
    Finished,
    /// A fault we injected ended the session (a reset, a close).
    Faulted,
    Failed(Error),
}

struct Relay {
    /// Created with the first byte or EOF (see `Status::NeedsTape`).
    tape: Option<Recorder>,
    pipes: [Pipe; 2],
}

// A session changes phase in its slab slot, never moved: boxing gains nothing.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// Waiting for the connect to the server; nothing is read or recorded yet,
    /// so a refused connect leaves no tape behind.
    Connecting,
    Relaying(Relay),
}

pub struct Session {
    /// 1 for the first accepted connection, 2 for the next...
    pub number: u64,
    client: Socket,
    server: Socket,
    phase: Phase,
    opened: Instant,
    /// The tick the session was accepted.
    started: u64,
    /// The tick of the last byte moved, for the idle timeout.
    pub last_activity: u64,
    /// The faults this session got (`--fault`).
    pub faults: SessionFaults,
}

/// What the report and a cassette's index say of a recorded session.
#[derive(Debug, Clone)]
pub struct Summary {
    pub started: u64,
    pub bytes: [u64; 2],
    pub first: Option<Direction>,
    /// Where the tape is (a tape that failed midway is renamed).
    pub tape: PathBuf,
}

impl Session {
    /// Registers both sockets; the server's connect is still in flight.
    pub fn start(
        registry: &Registry,
        number: u64,
        (client, client_addr, client_token): (Stream, Address, Token),
        (server, server_addr, server_token): (Stream, Address, Token),
        now: u64,
    ) -> io::Result<Session> {
        let client = Socket::register(registry, client, client_addr, client_token, false)?;
        // The connect in flight finishes with a WRITABLE event.
        let server = Socket::register(registry, server, server_addr, server_token, true)?;
        Ok(Session {
            number,
            client,
            server,
            phase: Phase::Connecting,
            opened: Instant::now(),
            started: now,
            last_activity: now,
            faults: SessionFaults::default(),
        })
    }

    /// Gives the session the faults it gets of `faults` (the run's, or
    /// new ones while it runs: they take effect for its next bytes).
    pub fn set_faults(&mut self, faults: &Faults, now: u64) {
        let gated = (self.faults).give(faults, (self.number, self.bytes()), now);
        if let Phase::Relaying(relay) = &mut self.phase {
            relay.pipes.iter_mut().for_each(|p| p.ring.gate(gated));
        }
    }

    pub fn client_addr(&self) -> &Address {
        self.client.addr()
    }

    /// Handles readiness of one of the session's sockets.
    pub fn ready(
        &mut self,
        registry: &Registry,
        side: Side,
        event: &Event,
        turn: Turn,
        buffers: &mut Buffers,
    ) -> Status {
        match side {
            Side::Client => self.client.note(event),
            Side::Server => self.server.note(event),
        }
        self.resume(registry, turn, buffers)
    }

    /// Does whatever the sockets allow now.
    pub fn resume(&mut self, registry: &Registry, turn: Turn, buffers: &mut Buffers) -> Status {
        if let Phase::Connecting = &self.phase {
            match self.server.stream().connect_finished() {
                Ok(false) => return Status::Running,
                Ok(true) => self.start_relay(buffers.min()),
                Err(err) => {
                    return Status::Failed(Error::address(self.server.addr(), "connect to", err));
                }
            }
        }
        let status = match self.relay(registry, turn, buffers) {
            // A fault ended it: the sockets reset or closed, the tape cut.
            Ok(Status::Faulted) => {
                if let Some(reason) = self.faults.end([&self.client, &self.server], self.number) {
                    self.cut(&reason);
                }
                Status::Faulted
            }
            Ok(status) => status,
            Err(err) => Status::Failed(err),
        };
        // Rings that are empty go back: an idle session holds no buffer.
        if let Phase::Relaying(relay) = &mut self.phase {
            for pipe in &mut relay.pipes {
                if let Some(storage) = pipe.ring.detach() {
                    buffers.give(storage);
                }
            }
        }
        status
    }

    /// Gives the session the tape it asked for with `NeedsTape`.
    pub fn attach(&mut self, tape: Recorder) {
        if let Phase::Relaying(relay) = &mut self.phase {
            info!(
                "session {}: recording to {}",
                self.number,
                tape.path().display()
            );
            relay.tape = Some(tape);
        }
    }

    fn start_relay(&mut self, size: usize) {
        // Recorded sessions are often chatty request/response protocols;
        // Nagle's algorithm would add delays that end up on tape.
        for peer in [&self.client, &self.server] {
            if let Err(err) = peer.stream().set_nodelay() {
                debug!(
                    "session {}: TCP_NODELAY on {}: {err}",
                    self.number,
                    peer.addr()
                );
            }
        }
        info!(
            "session {}: connected {} to {}",
            self.number,
            self.client.addr(),
            self.server.addr(),
        );
        let pipe = || Pipe {
            ring: Ring::unallocated().gated(self.faults.any()),
            size,
            flow: Flow::Open,
            bytes: 0,
            hold: Hold::default(),
        };
        self.phase = Phase::Relaying(Relay {
            tape: None,
            pipes: [pipe(), pipe()],
        });
    }

    fn relay(
        &mut self,
        registry: &Registry,
        turn: Turn,
        buffers: &mut Buffers,
    ) -> Result<Status, Error> {
        let now = turn.now;
        let Phase::Relaying(relay) = &mut self.phase else {
            return Ok(Status::Running);
        };
        let mut status = Status::Running;
        let read_before: u64 = relay.pipes.iter().map(|p| p.bytes).sum();
        if !self.faults.turn(now) {
            return Ok(Status::Faulted);
        }
        loop {
            let read: u64 = relay.pipes.iter().map(|p| p.bytes).sum();
            if read - read_before >= BUDGET {
                status = Status::Yielded;
                break;
            }
            let mut progress = false;
            for dir in self.faults.flowing(DIRECTIONS) {
                let side = Side::source_of(dir);
                let silent = relay.pipes.iter().all(|p| p.bytes == 0);
                let source = peer(&mut self.client, &mut self.server, side);
                let pipe = &mut relay.pipes[dir.index()];
                // Alone, a session reads up to READ_CHUNK (fewer, larger
                // calls: the fastest bulk recording); with others waiting,
                // no more than its turn, so that theirs come soon.
                let limit = if turn.contended {
                    BUDGET.saturating_sub(read - read_before).max(1) as usize
                } else {
                    READ_CHUNK
                };
                match fill(pipe, source, buffers, limit, (self.number, dir)) {
                    Ok(moved) => progress |= moved,
                    // A client that resets before a byte went either way is a probe too.
                    Err(_) if side == Side::Client && silent => return Ok(Status::Probe),
                    Err(err) => {
                        let err = peer_error(Action::Read, side, source.addr(), err);
                        return Err(salvage(relay, err));
                    }
                }
            }
            // What the faults let go is all the peers get, and all recorded.
            let pipes =
                (relay.pipes.each_mut()).map(|p| (&mut p.ring, p.bytes, p.flow == Flow::Ended));
            let Some((moved, eof_due)) = self.faults.release(pipes, now) else {
                return Ok(Status::Faulted);
            };
            progress |= moved;
            let [c2s, s2c] = &relay.pipes;
            if c2s.flow == Flow::Ended && c2s.bytes == 0 && s2c.bytes == 0 {
                return Ok(Status::Probe);
            }
            let ended = |pipe: &Pipe| pipe.flow == Flow::Ended;
            let pending = ended(c2s) || ended(s2c) || c2s.ring.unrecorded_len() > 0;
            if relay.tape.is_none() && (pending || s2c.ring.unrecorded_len() > 0) {
                return Ok(Status::NeedsTape);
            }
            record(relay, self.number, eof_due, now)?;
            for dir in self.faults.flowing(DIRECTIONS) {
                let dest_side = Side::source_of(dir.reverse());
                let dest = peer(&mut self.client, &mut self.server, dest_side);
                let pipe = &mut relay.pipes[dir.index()];
                match forward(pipe, dest, self.number, dir) {
                    Ok(moved) => progress |= moved,
                    Err(err) => {
                        let err = peer_error(Action::Write, dest_side, dest.addr(), err);
                        return Err(salvage(relay, err));
                    }
                }
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
            peer.want(registry, pending)
                .map_err(|err| Error::address(peer.addr(), "poll", err))?;
        }
        Ok(status)
    }

    /// When bytes held back for the redaction rules are to be released,
    /// once per hold: the caller sets a timer that resumes the session.
    pub fn hold_deadline(&mut self) -> Option<u64> {
        let Phase::Relaying(relay) = &mut self.phase else {
            return None;
        };
        relay.pipes.iter_mut().find_map(|pipe| pipe.hold.deadline())
    }

    /// Ends the recording before the session ended: the tape gets a CUT
    /// frame saying why. False when there was no tape to cut (nothing was
    /// ever said).
    pub fn cut(&mut self, reason: &str) -> bool {
        let Phase::Relaying(Relay {
            tape: Some(tape), ..
        }) = &mut self.phase
        else {
            return false;
        };
        if let Err(err) = tape.cut(reason) {
            tape.salvage(&format!("{reason}; then {}", os_reason(&err)));
        }
        true
    }

    /// The session as the report and the index record it; `None` when no
    /// tape was made.
    pub fn summary(&self) -> Option<Summary> {
        let Phase::Relaying(Relay {
            tape: Some(tape), ..
        }) = &self.phase
        else {
            return None;
        };
        // What is on tape, which after a failed write is less than was read.
        Some(Summary {
            started: self.started,
            bytes: tape.recorded(),
            first: tape.first_speaker(),
            tape: tape.path().to_path_buf(),
        })
    }

    /// Bytes read from the client and from the server so far.
    pub fn bytes(&self) -> [u64; 2] {
        match &self.phase {
            Phase::Relaying(relay) => [relay.pipes[0].bytes, relay.pipes[1].bytes],
            Phase::Connecting => [0, 0],
        }
    }

    /// Logs the session's end and unregisters its sockets; dropping closes them.
    pub fn close(mut self, registry: &Registry, buffers: &mut Buffers) {
        if let Phase::Relaying(relay) = &mut self.phase {
            for pipe in &mut relay.pipes {
                let storage = std::mem::replace(&mut pipe.ring, Ring::unallocated());
                buffers.give(storage.into_storage());
            }
        }
        self.client.deregister(registry);
        self.server.deregister(registry);
        if let Phase::Relaying(Relay {
            tape: Some(tape),
            pipes,
        }) = &self.phase
        {
            info!(
                "session {}: closed after {:.3}s, client to server {} bytes, server to client {} bytes, tape {} ({} bytes)",
                self.number,
                self.opened.elapsed().as_secs_f64(),
                pipes[0].bytes,
                pipes[1].bytes,
                tape.path().display(),
                tape.bytes()
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

/// The session's number is not part of the message: whoever reports the
/// error puts it in front.
fn peer_error(action: Action, side: Side, addr: &Address, err: io::Error) -> Error {
    let action = match (action, side) {
        (Action::Read, Side::Client) => "read from client",
        (Action::Read, Side::Server) => "read from server",
        (Action::Write, Side::Client) => "write to client",
        (Action::Write, Side::Server) => "write to server",
    };
    Error::address(addr, action, err)
}

/// What a peer's socket was asked to do when it failed.
#[derive(Debug, Clone, Copy)]
enum Action {
    Read,
    Write,
}

/// What a session's turn may do: the loop's clock, and whether other
/// sessions wait for their turns (then it reads no more than its share).
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    pub now: u64,
    pub contended: bool,
}

/// A session that fails: its tape (if any) is marked as cut short for
/// `err`, and `err` is what the session reports.
fn salvage(relay: &mut Relay, err: Error) -> Error {
    if let Some(tape) = &mut relay.tape
        && let Err(cut_err) = tape.cut(&err.to_string())
    {
        tape.salvage(&format!("{err}; then {}", os_reason(&cut_err)));
    }
    err
}

/// Puts everything read (and let go) so far on tape (all but what the
/// redaction rules hold back, for at most `HOLD_MS`), then marks the EOFs
/// it recorded.
fn record(relay: &mut Relay, number: u64, eof_due: [bool; 2], now: u64) -> Result<(), Error> {
    let Some(tape) = &mut relay.tape else {
        return Ok(());
    };
    let force = |pipe: &Pipe| pipe.hold.is_due(&pipe.ring, now);
    loop {
        let [c2s, s2c] = &relay.pipes;
        let pending = [
            Pending {
                dir: Direction::ClientToServer,
                ring: &c2s.ring,
                eof: c2s.flow == Flow::Ended && eof_due[0],
                force: force(c2s),
            },
            Pending {
                dir: Direction::ServerToClient,
                ring: &s2c.ring,
                eof: s2c.flow == Flow::Ended && eof_due[1],
                force: force(s2c),
            },
        ];
        let done = match tape.record(pending, Instant::now()) {
            Ok(done) => done,
            Err(err) => {
                let err = Error::file(tape.path(), "write tape", err);
                tape.salvage(&err.to_string());
                return Err(err);
            }
        };
        if done.data == [0, 0] && done.eof == [false, false] {
            for pipe in &mut relay.pipes {
                pipe.hold.note(pipe.ring.unrecorded_len() > 0, now);
            }
            return Ok(());
        }
        for dir in DIRECTIONS {
            let pipe = &mut relay.pipes[dir.index()];
            pipe.ring.mark_recorded(done.data[dir.index()]);
            if done.eof[dir.index()] {
                set_flow(pipe, Flow::Draining, number, dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use mio::{Events, Poll};

    use super::*;
    use crate::tape::{Kind, Reader};

    /// A session between a client and a server the test plays, each over a
    /// socket pair, with a poll to hand it events as the loop would.
    struct Bench {
        poll: Poll,
        registry: Registry,
        client: UnixStream,
        server: UnixStream,
        buffers: Buffers,
        tape: PathBuf,
    }

    impl Bench {
        fn new(name: &str) -> (Bench, Session) {
            let poll = Poll::new().unwrap();
            let registry = poll.registry().try_clone().unwrap();
            let pair = || {
                let (ours, theirs) = mio::net::UnixStream::pair().unwrap();
                let theirs = UnixStream::from(std::os::fd::OwnedFd::from(theirs));
                theirs.set_nonblocking(true).unwrap();
                (Stream::Unix(ours), theirs)
            };
            let (client_end, client) = pair();
            let (server_end, server) = pair();
            let session = Session::start(
                &registry,
                1,
                (client_end, Address::Unix("client".into()), Token(1)),
                (server_end, Address::Unix("server".into()), Token(2)),
                0,
            )
            .unwrap();
            let tape = std::env::temp_dir().join(format!(
                "tcptape-proxy-session-{}-{name}.tape",
                std::process::id()
            ));
            let bench = Bench {
                poll,
                registry,
                client,
                server,
                buffers: Buffers::new(1024, 64 * 1024),
                tape,
            };
            (bench, session)
        }

        /// Hands the session what the poll says (waiting up to 1 s), then
        /// resumes it; attaches a tape when it asks for one.
        fn turn(&mut self, session: &mut Session) -> Status {
            let mut events = Events::with_capacity(8);
            let turn = Turn {
                now: 1,
                contended: false,
            };
            self.poll
                .poll(&mut events, Some(std::time::Duration::from_secs(1)))
                .unwrap();
            for event in events.iter() {
                let side = match event.token() {
                    Token(1) => Side::Client,
                    _ => Side::Server,
                };
                session.ready(&self.registry, side, event, turn, &mut self.buffers);
            }
            match session.resume(&self.registry, turn, &mut self.buffers) {
                Status::NeedsTape => {
                    session.attach(Recorder::create(&self.tape, Instant::now(), None).unwrap());
                    session.resume(&self.registry, turn, &mut self.buffers)
                }
                status => status,
            }
        }

        fn read(end: &UnixStream) -> Vec<u8> {
            let mut got = Vec::new();
            let mut buf = [0; 1024];
            while let Ok(n) = (&*end).read(&mut buf) {
                if n == 0 {
                    got.extend_from_slice(b"<EOF>");
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            got
        }

        /// The kinds of the tape's frames, DELAYs left out: a loaded
        /// machine puts a millisecond between two steps of a test.
        fn frames(&self) -> Vec<Kind> {
            let mut reader = Reader::new(std::fs::File::open(&self.tape).unwrap());
            let mut kinds = Vec::new();
            while let Some(frame) = reader.next_frame().unwrap() {
                if frame.kind != Kind::Delay {
                    kinds.push(frame.kind);
                }
            }
            kinds
        }
    }

    impl Drop for Bench {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.tape);
        }
    }

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    #[test]
    fn connecting_a_client_that_leaves_without_a_byte_is_a_probe_and_no_tape() {
        let (mut bench, mut session) = Bench::new("probe");
        bench.client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut status = bench.turn(&mut session);
        if matches!(status, Status::Running) {
            status = bench.turn(&mut session);
        }
        assert!(matches!(status, Status::Probe), "{status:?}");
        assert!(session.summary().is_none());
        assert!(!bench.tape.exists());
    }

    #[test]
    fn relaying_bytes_reach_the_server_once_they_are_on_tape() {
        let (mut bench, mut session) = Bench::new("write-ahead");
        bench.client.write_all(b"hello").unwrap();
        let status = bench.turn(&mut session);
        assert!(matches!(status, Status::Running), "{status:?}");
        assert_eq!(Bench::read(&bench.server), b"hello");
        assert_eq!(bench.frames(), [Kind::Noop, Kind::Data(C2S)]);
        assert_eq!(session.summary().unwrap().bytes, [5, 0]);
    }

    fn with_faults(session: &mut Session, specs: &[&str]) {
        let faults = Faults::parse(specs).unwrap();
        session.set_faults(&faults, 0);
    }

    #[test]
    fn relaying_sliced_bytes_records_each_slice_as_the_server_got_it() {
        let (mut bench, mut session) = Bench::new("slices");
        with_faults(&mut session, &["slice=2,dir=up"]);
        bench.client.write_all(b"hello").unwrap();
        let mut got = Vec::new();
        for _ in 0..10 {
            if got.len() == 5 {
                break;
            }
            bench.turn(&mut session);
            got.extend(Bench::read(&bench.server));
        }
        assert_eq!(got, b"hello");
        let sizes: Vec<Kind> = bench.frames();
        assert_eq!(
            sizes,
            [
                Kind::Noop,
                Kind::Data(C2S),
                Kind::Data(C2S),
                Kind::Data(C2S)
            ]
        );
        assert_eq!(session.faults.fired(), ["slice=2,dir=up"]);
    }

    #[test]
    fn relaying_into_a_reset_resets_both_and_cuts_the_tape() {
        let (mut bench, mut session) = Bench::new("reset");
        with_faults(&mut session, &["reset,at=byte:3"]);
        bench.server.write_all(b"hello").unwrap();
        let mut status = Status::Running;
        for _ in 0..10 {
            status = bench.turn(&mut session);
            if matches!(status, Status::Faulted) {
                break;
            }
        }
        assert!(matches!(status, Status::Faulted), "{status:?}");
        assert_eq!(Bench::read(&bench.client), b"hel");
        assert_eq!(
            bench.frames(),
            [Kind::Noop, Kind::Data(S2C), Kind::Cut],
            "3 bytes, then where it ended"
        );
        let reason = session.faults.message(1);
        assert_eq!(
            reason,
            "session 1: reset (RST) by the fault 'reset,at=byte:3' after 3 bytes down"
        );
    }

    #[test]
    fn relaying_a_half_close_is_recorded_then_forwarded_while_the_answer_flows() {
        let (mut bench, mut session) = Bench::new("half-close");
        bench.client.write_all(b"ask").unwrap();
        bench.client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut status = bench.turn(&mut session);
        let mut got = Bench::read(&bench.server);
        for _ in 0..10 {
            if got.ends_with(b"<EOF>") {
                break;
            }
            status = bench.turn(&mut session);
            got.extend(Bench::read(&bench.server));
        }
        assert_eq!(got, b"ask<EOF>");
        // The client's EOF went on tape and to the server; the server's
        // side is still open and answers.
        bench.server.write_all(b"answer").unwrap();
        bench.server.shutdown(std::net::Shutdown::Write).unwrap();
        let mut turns = 0;
        while !matches!(status, Status::Finished) && turns < 10 {
            status = bench.turn(&mut session);
            turns += 1;
        }
        assert!(matches!(status, Status::Finished), "{status:?}");
        assert_eq!(Bench::read(&bench.client), b"answer<EOF>");
        assert_eq!(
            bench.frames(),
            [
                Kind::Noop,
                Kind::Data(C2S),
                Kind::Eof(C2S),
                Kind::Data(S2C),
                Kind::Eof(S2C)
            ]
        );
    }
}
