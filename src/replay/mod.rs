//! Replay: `server` plays the recorded server to every client that connects,
//! `client` plays the recorded client against a real server. Both check
//! every byte the peer sends against the tape.
//!
//! A server plays one tape to every client, or a cassette: a folder of
//! tapes, each serving one connection, chosen by the `catalog` module.
//!
//! Tokens: the listener is `LISTENER`; the connection in slab slot `k` owns
//! token `k + 1`. Each session streams its tape through two cursors of its
//! own over one shared handle, so a thousand sessions cost a thousand small
//! buffers, never a thousand copies of the tape.

mod catalog;
mod report;
mod script;
mod session;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::{error, info, warn};
use mio::event::Event;
use mio::{Interest, Token};

use crate::cassette;
use crate::cli::{ClientArgs, ReplayOptions, ServerArgs};
use crate::error::{Error, os_reason};
use crate::event_loop::{Context, EventLoop, Service};
use crate::net::{self, Accept, Address, Listener, Stream};
use crate::slab::Slab;
use crate::tape::reader::MAX_CHUNK;
use crate::tape::{self, Direction, Kind, Locator, Reader, SharedTape};
use catalog::{Catalog, Choice};
use session::{Session, Settings, Status};

pub use report::peer_name;
pub use script::{Action, Deviation, DeviationKind, Expect, Expected, Play};

const LISTENER: Token = Token(0);
/// Receive buffer shared by all sessions: what arrives is checked at once
/// and never kept, so one buffer serves them all.
const SCRATCH: usize = 256 * 1024;

type TapeFile = SharedTape;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayTimer {
    /// The recorded delay before a session's next frame is over.
    Delay { key: usize, number: u64 },
    /// Check whether a connection has waited too long for its peer.
    Timeout { key: usize, number: u64 },
    /// Continue a session that yielded to let others run.
    Resume { key: usize, number: u64 },
    /// Try accepting again after running out of file descriptors.
    ResumeAccept,
}

/// When the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Serve until stopped; with `abort`, until the first mismatch.
    Stopped { abort: bool },
    /// One session, then its verdict (`client`, `server --once`).
    OneSession,
    /// Every tape of the cassette once, then the combined verdict.
    EveryTapeOnce,
}

/// What a server plays.
enum Tapes {
    /// The same tape to every connection.
    One {
        name: String,
        tape: TapeFile,
        locator: Locator,
    },
    /// A cassette: a tape per connection.
    Cassette(Catalog),
}

/// A cassette connection whose tape is not chosen yet: the client's first
/// bytes are read and kept until they pick one.
struct Chooser {
    number: u64,
    stream: Stream,
    addr: Address,
    received: Vec<u8>,
    eof: bool,
    last_activity: u64,
}

enum Conn {
    Choosing(Chooser),
    Playing(Box<Session<TapeFile>>),
}

impl Conn {
    fn number(&self) -> u64 {
        match self {
            Conn::Choosing(c) => c.number,
            Conn::Playing(s) => s.number,
        }
    }
}

struct Replayer {
    /// The tape or cassette, as given.
    path: PathBuf,
    tapes: Tapes,
    settings: Settings,
    timeout: Option<Duration>,
    until: Until,
    listener: Option<Listener>,
    accept_paused: bool,
    conns: Slab<Conn>,
    scratch: Box<[u8]>,
    started: u64,
    /// The first failure or mismatch: the run's verdict.
    verdict: Option<Error>,
    stopping: bool,
}

/// Runs `tcptape server`.
pub fn run_server(args: &ServerArgs) -> Result<(), Error> {
    let own = Direction::ServerToClient;
    let tapes = if cassette::is_cassette(&args.tape) {
        Tapes::Cassette(Catalog::load(&args.tape, args.reuse, |path| {
            load(path, own)
        })?)
    } else {
        let (tape, locator) = load(&args.tape, own)?;
        Tapes::One {
            name: file_name(&args.tape),
            tape,
            locator,
        }
    };
    let until = match (&tapes, args.once) {
        (Tapes::One { .. }, true) => Until::OneSession,
        (Tapes::Cassette(_), true) => Until::EveryTapeOnce,
        (_, false) => Until::Stopped { abort: args.abort },
    };
    let listen = args.listen.resolve()?;
    let mut listener = Listener::bind(&listen)?;
    let local = listener
        .local_addr()
        .map_err(|err| Error::address(&listen, "listen on", err))?;
    match &tapes {
        Tapes::One { .. } => info!("listening on {local}, serving {}", args.tape.display()),
        Tapes::Cassette(catalog) => info!(
            "listening on {local}, serving cassette {} ({} tapes)",
            args.tape.display(),
            catalog.len()
        ),
    }
    let mut replayer = Replayer::new(&args.tape, tapes, own, &args.replay, until);
    let mut event_loop = EventLoop::new().map_err(poll_error)?;
    event_loop
        .context()
        .registry
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|err| Error::address(&local, "listen on", err))?;
    replayer.listener = Some(listener);
    event_loop.run(&mut replayer).map_err(poll_error)?;
    replayer.verdict.map_or(Ok(()), Err)
}

/// Runs `tcptape client`.
pub fn run_client(args: &ClientArgs) -> Result<(), Error> {
    let own = Direction::ClientToServer;
    let (tape, locator) = load(&args.tape, own)?;
    let name = file_name(&args.tape);
    let session_tape = (name.clone(), tape.clone(), locator.clone());
    let tapes = Tapes::One {
        name,
        tape,
        locator,
    };
    let addr = args.connect.resolve()?;
    let mut replayer = Replayer::new(&args.tape, tapes, own, &args.replay, Until::OneSession);
    let mut event_loop = EventLoop::new().map_err(poll_error)?;
    let stream = Stream::connect(&addr).map_err(|err| Error::address(&addr, "connect to", err))?;
    let start = Start {
        stream,
        addr,
        number: 1,
        connecting: true,
        received: Vec::new(),
        eof: false,
    };
    replayer.started = 1;
    replayer.start_session(&mut event_loop.context(), start, session_tape)?;
    event_loop.run(&mut replayer).map_err(poll_error)?;
    replayer.verdict.map_or(Ok(()), Err)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// Opens a tape (binary or text) and reads it through once, so a bad tape
/// is reported before anyone connects rather than in the middle of a
/// session. Wildcards are expectations: the role that plays `own` has
/// nothing to send for one in its own direction.
fn load(path: &Path, own: Direction) -> Result<(TapeFile, Locator), Error> {
    let (tape, locator) = tape::open_located(path)?;
    let mut reader = Reader::with_read_ahead(tape.clone(), MAX_CHUNK);
    let mut frames = 0u64;
    while let Some(frame) = reader.next_frame().map_err(|err| Error::tape(path, err))? {
        frames += 1;
        if frame.kind == Kind::Any(own) {
            let role = peer_name(own);
            return Err(Error::Session(format!(
                "{}: frame {} ({}) is a wildcard in the {role}'s direction, but `{role}` plays the {role} and a wildcard has no bytes to send",
                path.display(),
                frame.index,
                locator.place(&frame, frame.offset)
            )));
        }
    }
    info!("tape {}: {frames} frames", path.display());
    Ok((tape, locator))
}

fn poll_error(err: io::Error) -> Error {
    Error::Session(format!("cannot poll: {}", os_reason(&err)))
}

/// A connection about to become a session.
struct Start {
    stream: Stream,
    addr: Address,
    number: u64,
    /// Our connect is still in flight (`client`).
    connecting: bool,
    /// Bytes the client sent while a cassette tape was being chosen.
    received: Vec<u8>,
    eof: bool,
}

impl Replayer {
    fn new(
        path: &Path,
        tapes: Tapes,
        own: Direction,
        options: &ReplayOptions,
        until: Until,
    ) -> Replayer {
        Replayer {
            path: path.to_path_buf(),
            tapes,
            settings: Settings {
                own,
                compare: !options.no_assert,
                speed: options.speed,
                text_diff: options.text_diff,
            },
            timeout: options.timeout,
            until,
            listener: None,
            accept_paused: false,
            conns: Slab::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            started: 0,
            verdict: None,
            stopping: false,
        }
    }

    fn start_session(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        start: Start,
        tape: (String, TapeFile, Locator),
    ) -> Result<(), Error> {
        let key = self.conns.vacant_key();
        let token = Token(key + 1);
        let mut session = Session::start(
            cx.registry,
            start.number,
            (start.stream, start.addr, token),
            tape,
            self.settings,
            start.connecting,
            cx.now,
        )
        .map_err(|err| match err {
            Error::Session(message) => {
                Error::Session(format!("{}: {message}", self.path.display()))
            }
            other => other,
        })?;
        let early = session.feed(&start.received, start.eof);
        let key = self.conns.insert(Conn::Playing(Box::new(session)));
        if let Some(status) = early {
            self.update(cx, key, status);
            return Ok(());
        }
        self.arm_timeout(cx, key, start.number);
        // Our first frame may be due before the peer says anything.
        self.resume(cx, key);
        Ok(())
    }

    fn arm_timeout(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, number: u64) {
        if let Some(timeout) = self.timeout {
            cx.timers.insert(
                cx.deadline_after(timeout),
                ReplayTimer::Timeout { key, number },
            );
        }
    }

    fn accept(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        while !self.accept_paused && !self.stopping {
            let Some(listener) = &self.listener else {
                return;
            };
            match net::accept(listener) {
                Accept::Connection(stream, addr) => {
                    self.started += 1;
                    info!("session {}: accepted {addr}", self.started);
                    let start = Start {
                        stream,
                        addr,
                        number: self.started,
                        connecting: false,
                        received: Vec::new(),
                        eof: false,
                    };
                    self.place(cx, start);
                }
                Accept::Drained => return,
                Accept::Backoff => {
                    self.accept_paused = true;
                    let deadline = cx.deadline_after(net::ACCEPT_BACKOFF);
                    cx.timers.insert(deadline, ReplayTimer::ResumeAccept);
                }
            }
        }
    }

    /// Gives a new connection its tape, or has it wait to choose one.
    fn place(&mut self, cx: &mut Context<'_, ReplayTimer>, mut start: Start) {
        let choice = match &mut self.tapes {
            Tapes::One { .. } => Choice::Tape(0),
            Tapes::Cassette(catalog) => catalog.on_accept(),
        };
        match choice {
            Choice::Tape(i) => self.serve(cx, start, i),
            Choice::Wait => {
                let key = self.conns.vacant_key();
                if let Err(err) =
                    cx.registry
                        .register(&mut start.stream, Token(key + 1), Interest::READABLE)
                {
                    return self.record_failure(Error::address(&start.addr, "poll", err));
                }
                let number = start.number;
                self.conns.insert(Conn::Choosing(Chooser {
                    number,
                    stream: start.stream,
                    addr: start.addr,
                    received: Vec::new(),
                    eof: false,
                    last_activity: cx.now,
                }));
                self.arm_timeout(cx, key, number);
            }
            Choice::Exhausted => self.reject(
                &start.addr,
                start.number,
                "every tape of the cassette was served (--reuse serves them again)",
            ),
            Choice::NoMatch(text) => self.reject(&start.addr, start.number, &text),
        }
    }

    /// Starts the session of `start` with tape `i` (of a cassette, or the
    /// one tape).
    fn serve(&mut self, cx: &mut Context<'_, ReplayTimer>, start: Start, i: usize) {
        let tape = match &mut self.tapes {
            Tapes::One {
                name,
                tape,
                locator,
            } => (name.clone(), tape.clone(), locator.clone()),
            Tapes::Cassette(catalog) => {
                catalog.take(i);
                let entry = catalog.entry(i);
                info!(
                    "session {}: serving {} with {}",
                    start.number, start.addr, entry.name
                );
                (
                    entry.name.clone(),
                    entry.tape.clone(),
                    entry.locator.clone(),
                )
            }
        };
        let last_one = match (&self.tapes, self.until) {
            (_, Until::OneSession) => true,
            (Tapes::Cassette(catalog), Until::EveryTapeOnce) => catalog.all_used(),
            _ => false,
        };
        if last_one && let Some(mut listener) = self.listener.take() {
            let _ = cx.registry.deregister(&mut listener);
        }
        if let Err(err) = self.start_session(cx, start, tape) {
            self.record_failure(err);
        }
    }

    /// A connection no tape can serve: a departure from the recording.
    fn reject(&mut self, addr: &Address, number: u64, why: &str) {
        let summary = format!("mismatch with client {addr} (session {number}): {why}");
        eprintln!("{summary}");
        self.record_failure(Error::Mismatch(summary));
        if self.until == (Until::Stopped { abort: true }) {
            self.stopping = true;
        }
    }

    /// Reads what a choosing connection sent and tries to pick its tape.
    fn choose(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let Some(Conn::Choosing(chooser)) = self.conns.get_mut(key) else {
            return;
        };
        while !chooser.eof && chooser.received.len() < catalog::PREFIX_LIMIT {
            match chooser.stream.read(&mut self.scratch) {
                Ok(0) => chooser.eof = true,
                Ok(n) => {
                    chooser.received.extend_from_slice(&self.scratch[..n]);
                    chooser.last_activity = cx.now;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // A reset: choose with what came; the session reports it.
                Err(_) => chooser.eof = true,
            }
        }
        let Tapes::Cassette(catalog) = &mut self.tapes else {
            return;
        };
        let choice = catalog.choose(&chooser.received, chooser.eof);
        if choice == Choice::Wait {
            return;
        }
        let Some(Conn::Choosing(mut chooser)) = self.conns.remove(key) else {
            return;
        };
        let _ = cx.registry.deregister(&mut chooser.stream);
        let start = Start {
            stream: chooser.stream,
            addr: chooser.addr,
            number: chooser.number,
            connecting: false,
            received: chooser.received,
            eof: chooser.eof,
        };
        match choice {
            Choice::Tape(i) => self.serve(cx, start, i),
            Choice::NoMatch(text) => self.reject(&start.addr, start.number, &text),
            Choice::Exhausted => self.reject(
                &start.addr,
                start.number,
                "every tape of the cassette was served",
            ),
            Choice::Wait => {}
        }
    }

    fn resume(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        if let Some(Conn::Playing(session)) = self.conns.get_mut(key) {
            let status = session.resume(cx.registry, cx.now, &mut self.scratch);
            self.update(cx, key, status);
        }
    }

    fn update(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, status: Status) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let number = conn.number();
        match status {
            Status::Running => {}
            Status::Yielded => {
                cx.timers
                    .insert(cx.now, ReplayTimer::Resume { key, number });
            }
            Status::Sleep { due_ms } => {
                let deadline = cx.deadline_after(Duration::from_millis(due_ms));
                cx.timers
                    .insert(deadline, ReplayTimer::Delay { key, number });
            }
            Status::Passed => self.end(cx, key, "passed"),
            Status::Mismatch { summary, report } => {
                eprint!("{report}");
                self.end(cx, key, "mismatch");
                self.record_failure(Error::Mismatch(summary));
                if self.until == (Until::Stopped { abort: true }) {
                    self.stopping = true;
                }
            }
            Status::Failed(err) => {
                error!("session {number}: {err}");
                self.end(cx, key, "failed");
                self.record_failure(err);
            }
        }
    }

    fn end(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, verdict: &str) {
        match self.conns.remove(key) {
            Some(Conn::Playing(session)) => {
                session.log_end(verdict);
                session.close(cx.registry);
            }
            Some(Conn::Choosing(mut chooser)) => {
                let _ = cx.registry.deregister(&mut chooser.stream);
            }
            None => {}
        }
    }

    fn record_failure(&mut self, err: Error) {
        self.verdict.get_or_insert(err);
    }

    fn check_timeout(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, number: u64) {
        let (Some(conn), Some(timeout)) = (self.conns.get(key), self.timeout) else {
            return;
        };
        if conn.number() != number {
            return;
        }
        let (last_activity, waiting, addr) = match conn {
            Conn::Playing(session) => {
                (session.last_activity, session.waiting_for(), session.addr())
            }
            Conn::Choosing(chooser) => (
                chooser.last_activity,
                Some(format!(
                    "the client's first bytes, to choose a tape of {}",
                    self.path.display()
                )),
                &chooser.addr,
            ),
        };
        let limit = timeout.as_millis() as u64;
        let waited = cx.now.saturating_sub(last_activity);
        match waiting {
            Some(what) if waited >= limit => {
                let err = Error::Session(format!(
                    "session {number} with {addr}: timed out after {:.1}s waiting for {what}",
                    timeout.as_secs_f64()
                ));
                self.update(cx, key, Status::Failed(err));
            }
            Some(_) => {
                let deadline = last_activity + limit;
                cx.timers
                    .insert(deadline, ReplayTimer::Timeout { key, number });
            }
            None => {
                let deadline = cx.now + limit;
                cx.timers
                    .insert(deadline, ReplayTimer::Timeout { key, number });
            }
        }
    }

    /// True when slot `key` still holds connection `number`.
    fn holds(&self, key: usize, number: u64) -> bool {
        self.conns.get(key).is_some_and(|c| c.number() == number)
    }
}

impl Service for Replayer {
    type Timer = ReplayTimer;

    fn ready(&mut self, cx: &mut Context<'_, ReplayTimer>, event: &Event) {
        if event.token() == LISTENER {
            return self.accept(cx);
        }
        let key = event.token().0 - 1;
        match self.conns.get_mut(key) {
            Some(Conn::Playing(session)) => {
                let status = session.ready(cx.registry, event, cx.now, &mut self.scratch);
                self.update(cx, key, status);
            }
            Some(Conn::Choosing(_)) => self.choose(cx, key),
            None => {}
        }
    }

    fn expired(&mut self, cx: &mut Context<'_, ReplayTimer>, timer: ReplayTimer) {
        match timer {
            ReplayTimer::Delay { key, number } => {
                if !self.holds(key, number) {
                    return;
                }
                if let Some(Conn::Playing(session)) = self.conns.get_mut(key) {
                    let status = session.delay_over(cx.registry, cx.now, &mut self.scratch);
                    self.update(cx, key, status);
                }
            }
            ReplayTimer::Resume { key, number } => {
                if self.holds(key, number) {
                    self.resume(cx, key);
                }
            }
            ReplayTimer::Timeout { key, number } => self.check_timeout(cx, key, number),
            ReplayTimer::ResumeAccept => {
                self.accept_paused = false;
                self.accept(cx);
            }
        }
    }

    fn is_done(&self) -> bool {
        if self.stopping {
            warn!("stopping at the first mismatch (--abort)");
            return true;
        }
        self.listener.is_none() && self.conns.is_empty()
    }
}
