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
//!
//! When a run ends: `--once` (and `client`) after the one session, or every
//! tape of a cassette, was played; `--abort` at the first mismatch; a stop
//! (signal, library) after a grace period for the sessions in progress.
//! Nothing waits forever unless asked to: `--timeout` bounds every wait for
//! a peer and, with `--once`, for the next connection.

mod catalog;
mod playback;
mod pool;
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
use crate::engine::addr::Endpoint;
use crate::engine::buffers::Reclaim;
use crate::engine::event_loop::{Context, Service, Stop};
use crate::engine::net::{self, Accept, Address, Listener, Socket, Stream};
use crate::engine::slab::Slab;
use crate::error::Error;
use crate::job::Finish;
use crate::report::{Outcome, Report, SessionReport, Verdict};
use crate::tape::reader::MAX_CHUNK;
use crate::tape::{self, Direction, Frame, Kind, Locator, Reader, SharedTape, span};
use catalog::{Candidates, Catalog, Choice, Prefix};
use playback::{Playback, Settings};
use pool::{Candidate, Pool, PoolStatus};
use session::{Session, Status};

pub(crate) use report::peer_name;

const LISTENER: Token = Token(0);
/// Receive buffer shared by all sessions: what arrives is checked at once
/// and never kept, so one buffer serves them all.
const SCRATCH: usize = 256 * 1024;
/// How long a replay waits for its peer (or, with `--once`, for the next
/// connection) unless told otherwise: long enough for any test, short
/// enough that a wrong tape does not hang a CI job.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

type TapeFile = SharedTape;

/// Options shared by both replay roles.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplayOptions {
    pub no_assert: bool,
    /// Delays are replayed when this is set; 1.0 is recorded speed.
    pub speed: Option<f64>,
    /// How long to wait for the peer; `None` waits forever.
    pub timeout: Option<Duration>,
    pub text_diff: bool,
    /// Print each mismatch report on stderr as it happens (the command
    /// line); the library hands them over in its `Report` instead.
    pub print_reports: bool,
}

impl Default for ReplayOptions {
    fn default() -> ReplayOptions {
        ReplayOptions {
            no_assert: false,
            speed: None,
            timeout: Some(DEFAULT_TIMEOUT),
            text_diff: false,
            print_reports: false,
        }
    }
}

/// What `server` is asked to do; the command line and the library fill it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerOptions {
    pub listen: Endpoint,
    /// A tape, or a cassette folder.
    pub tape: PathBuf,
    pub replay: ReplayOptions,
    /// Stop at the first mismatch.
    pub abort: bool,
    /// One session (a cassette: every tape once), then the verdict.
    pub once: bool,
    /// Cassette: serve the tapes again once all were used.
    pub reuse: bool,
    /// A tape never played is a mismatch (the library's default; `--once`
    /// implies it).
    pub require_all: bool,
    pub grace: Duration,
    pub backlog: u32,
}

/// What `client` is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientOptions {
    pub connect: Endpoint,
    pub tape: PathBuf,
    pub replay: ReplayOptions,
}

/// Connections accepted per round of a burst. Each new session reads its
/// tape's first frames before it waits for its peer: 2,000 at once held
/// 67 MiB of read-ahead until the next round.
const ACCEPT_BATCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayTimer {
    /// The recorded delay before a session's next frame is over.
    Delay { key: usize, number: u64 },
    /// Check whether a connection has waited too long for its peer.
    Timeout { key: usize, number: u64 },
    /// Continue a session that yielded to let others run.
    Resume { key: usize, number: u64 },
    /// Try accepting again after running out of file descriptors, or
    /// after a batch of a burst.
    ResumeAccept,
    /// Check whether `--once` has waited too long for a connection.
    ConnectionWait,
    /// The grace period after a stop is over.
    Grace,
    /// `client` with a cassette: time to open the connection of tape `index`.
    Connect { index: usize },
}

/// When the run ends (and, with `--abort`, at the first mismatch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Serve until stopped.
    Stopped,
    /// One session, then its verdict (`client`, `server --once`).
    OneSession,
    /// Every tape of the cassette once, then the combined verdict.
    EveryTapeOnce,
}

/// What a server plays.
enum Tapes {
    /// The same tape to every connection.
    One {
        path: PathBuf,
        tape: TapeFile,
        locator: Locator,
    },
    /// A cassette: a tape per connection.
    Cassette(Catalog),
    /// A cassette played by `client`: a connection per tape, each started
    /// when it was in the recording.
    Schedule(Vec<Planned>),
}

/// A connection `client` makes for a cassette tape.
struct Planned {
    path: PathBuf,
    name: String,
    /// When it started in the recording, after the first one.
    start_ms: u64,
    /// Its connection was opened in this run.
    opened: bool,
}

/// A cassette connection whose tape is not chosen yet: the client's first
/// bytes are read and kept until they pick one.
struct Chooser {
    number: u64,
    stream: Stream,
    addr: Address,
    received: Vec<u8>,
    candidates: Candidates,
    eof: bool,
    last_activity: u64,
}

enum Conn {
    Choosing(Chooser),
    /// Several cassette tapes agree with the connection so far.
    Deciding(Box<Pool<TapeFile>>),
    /// A session, and the cassette entry it plays (if any).
    Playing(Box<Session<TapeFile>>, Option<usize>),
}

impl Conn {
    fn number(&self) -> u64 {
        match self {
            Conn::Choosing(c) => c.number,
            Conn::Deciding(p) => p.number,
            Conn::Playing(s, _) => s.number,
        }
    }

    /// Bytes of buffers the connection gave back since the last call.
    fn take_freed(&mut self) -> usize {
        match self {
            Conn::Choosing(_) => 0,
            Conn::Deciding(p) => p.take_freed(),
            Conn::Playing(s, _) => s.take_freed(),
        }
    }

    fn addr(&self) -> &Address {
        match self {
            Conn::Choosing(c) => &c.addr,
            Conn::Deciding(p) => p.addr(),
            Conn::Playing(s, _) => s.addr(),
        }
    }
}

pub(crate) struct Replayer {
    /// The tape or cassette, as given.
    path: PathBuf,
    tapes: Tapes,
    settings: Settings,
    timeout: Option<Duration>,
    print_reports: bool,
    grace: Duration,
    until: Until,
    require_all: bool,
    /// `--abort`: the first mismatch ends the run.
    abort: bool,
    listener: Option<Listener>,
    local: Option<Address>,
    accept_paused: bool,
    conns: Slab<Conn>,
    scratch: Box<[u8]>,
    reclaim: Reclaim,
    /// Connections so far: their numbers.
    started: u64,
    /// Sessions that ended (probes are not sessions).
    ended: u64,
    /// `client` with a cassette: where to connect, and the connections
    /// not opened yet.
    connect_to: Option<Address>,
    unstarted: usize,
    /// The tick a connection last started or ended, for `--once`'s wait.
    last_progress: u64,
    stopping: bool,
    report: Report,
}

/// Opens a tape (binary or text) and reads it through once, so a bad tape
/// is reported before anyone connects rather than in the middle of a
/// session. Refused: wildcards in the direction the role plays (there is
/// nothing to send for them), and a direction that goes on after its EOF
/// (tapes joined with `cat`: a tape replays as one session), and spans that
/// break the rules of docs/tape-format.md.
fn load(path: &Path, own: Direction) -> Result<(TapeFile, Locator), Error> {
    let (tape, locator) = tape::open_located(path)?;
    let mut reader = Reader::with_read_ahead(tape.clone(), MAX_CHUNK);
    let mut frames = 0u64;
    let mut closed: [Option<u64>; 2] = [None, None];
    let mut cut = None;
    let mut spans = span::Checker::new();
    let span_error = |fault: span::Fault<Frame>| {
        let place = |frame: &Frame| {
            let line = locator.place(frame, frame.offset);
            format!("frame {} ({line})", frame.index)
        };
        Error::Session(format!(
            "{}: {}: {}",
            path.display(),
            place(&fault.at),
            fault.problem.message(place)
        ))
    };
    while let Some(frame) = reader.next_frame().map_err(|err| Error::tape(path, err))? {
        frames += 1;
        let checked = match frame.kind {
            Kind::Span(dir) => {
                let span = reader.read_span().map_err(|err| Error::tape(path, err))?;
                spans.span(dir, &span, frame)
            }
            Kind::Data(dir) => {
                let head = reader
                    .peek_payload(spans.wanted(dir))
                    .map_err(|err| Error::tape(path, err))?;
                spans.data(dir, u64::from(frame.len), head)
            }
            Kind::Any(dir) => {
                let count = reader
                    .read_wildcard()
                    .map_err(|err| Error::tape(path, err))?;
                spans.any(dir, u64::from(count), frame)
            }
            Kind::Eof(dir) => spans.eof(dir),
            _ => Ok(()),
        };
        checked.map_err(span_error)?;
        let place = || {
            format!(
                "{}: frame {} ({})",
                path.display(),
                frame.index,
                locator.place(&frame, frame.offset)
            )
        };
        if frame.kind == Kind::Any(own) {
            let role = peer_name(own);
            return Err(Error::Session(format!(
                "{} is a wildcard in the {role}'s direction, but `{role}` plays the {role} and a wildcard has no bytes to send",
                place()
            )));
        }
        match frame.kind {
            Kind::Data(dir) | Kind::Any(dir) | Kind::Eof(dir) => {
                if let Some(eof) = closed[dir.index()] {
                    return Err(Error::Session(format!(
                        "{}: the {} goes on after its EOF (frame {eof}): a tape holds one session, and this looks like tapes joined together; keep them apart (a cassette folder serves one tape per connection)",
                        place(),
                        peer_name(dir)
                    )));
                }
                if matches!(frame.kind, Kind::Eof(_)) {
                    closed[dir.index()] = Some(frame.index);
                }
            }
            Kind::Cut => cut = Some(frame.index),
            _ => {}
        }
    }
    spans.finish().map_err(span_error)?;
    if let Some(at) = cut {
        warn!(
            "{}: the recording was cut short (frame {at}); replaying it up to the cut",
            path.display()
        );
    }
    info!("tape {}: {frames} frames", path.display());
    Ok((tape, locator))
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
            print_reports: options.print_reports,
            grace: Duration::ZERO,
            until,
            require_all: until != Until::Stopped,
            abort: false,
            listener: None,
            local: None,
            accept_paused: false,
            conns: Slab::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            reclaim: Reclaim::default(),
            started: 0,
            ended: 0,
            connect_to: None,
            unstarted: 0,
            last_progress: 0,
            stopping: false,
            report: Report::default(),
        }
    }

    /// `server`: loads the tape or cassette, binds the listener.
    pub(crate) fn server(
        options: ServerOptions,
        cx: &mut Context<'_, ReplayTimer>,
    ) -> Result<Replayer, Error> {
        let own = Direction::ServerToClient;
        let tapes = if cassette::is_cassette(&options.tape) {
            Tapes::Cassette(Catalog::load(&options.tape, options.reuse, |path| {
                let (tape, _) = load(path, own)?;
                Prefix::of(&tape, path)
            })?)
        } else {
            let (tape, locator) = load(&options.tape, own)?;
            Tapes::One {
                path: options.tape.clone(),
                tape,
                locator,
            }
        };
        let until = match (&tapes, options.once) {
            (Tapes::One { .. }, true) => Until::OneSession,
            (Tapes::Cassette(_) | Tapes::Schedule(_), true) => Until::EveryTapeOnce,
            (_, false) => Until::Stopped,
        };
        let listen = options.listen.resolve()?;
        let mut listener = Listener::bind(&listen, options.backlog)?;
        let local = listener
            .local_addr()
            .map_err(|err| Error::address(&listen, "listen on", err))?;
        cx.registry
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|err| Error::address(&local, "listen on", err))?;
        match &tapes {
            Tapes::One { .. } => info!("listening on {local}, serving {}", options.tape.display()),
            Tapes::Cassette(catalog) => info!(
                "listening on {local}, serving cassette {} ({} tapes)",
                options.tape.display(),
                catalog.len()
            ),
            Tapes::Schedule(_) => {}
        }
        let mut replayer = Replayer::new(&options.tape, tapes, own, &options.replay, until);
        replayer.abort = options.abort;
        replayer.require_all |= options.require_all;
        replayer.grace = options.grace;
        replayer.listener = Some(listener);
        replayer.local = Some(local);
        replayer.last_progress = cx.now;
        replayer.arm_connection_wait(cx);
        Ok(replayer)
    }

    /// `client`: loads the tape, starts connecting.
    pub(crate) fn client(
        options: ClientOptions,
        cx: &mut Context<'_, ReplayTimer>,
    ) -> Result<Replayer, Error> {
        let own = Direction::ClientToServer;
        if cassette::is_cassette(&options.tape) {
            return Replayer::client_of_cassette(options, cx);
        }
        let (tape, locator) = load(&options.tape, own)?;
        let addr = options.connect.resolve()?;
        let tapes = Tapes::One {
            path: options.tape.clone(),
            tape,
            locator,
        };
        let mut replayer = Replayer::new(
            &options.tape,
            tapes,
            own,
            &options.replay,
            Until::OneSession,
        );
        let stream =
            Stream::connect(&addr).map_err(|err| Error::address(&addr, "connect to", err))?;
        replayer.started = 1;
        let start = Start {
            stream,
            addr,
            number: 1,
            connecting: true,
            received: Vec::new(),
            eof: false,
        };
        let tape = replayer.tape_of(None)?;
        replayer.start_session(cx, start, tape, None)?;
        Ok(replayer)
    }

    /// `client DIR/`: every tape of the cassette, each on a connection of
    /// its own opened when it was in the recording (the index's start
    /// times, divided by `--speed`), so a pool connects as it did.
    fn client_of_cassette(
        options: ClientOptions,
        cx: &mut Context<'_, ReplayTimer>,
    ) -> Result<Replayer, Error> {
        let dir = &options.tape;
        let index = cassette::read_index(dir)?;
        let mut planned = Vec::new();
        let mut previous = 0;
        for path in cassette::tapes(dir)? {
            load(&path, Direction::ClientToServer)?;
            let name = file_name(&path);
            // A tape the index does not know starts with the one before it.
            let start_ms = index
                .iter()
                .find(|e| e.tape == name)
                .map_or(previous, |e| e.start_ms);
            previous = start_ms;
            planned.push(Planned {
                path,
                name,
                start_ms,
                opened: false,
            });
        }
        if planned.is_empty() {
            return Err(Error::Session(format!(
                "{}: the cassette holds no tapes (*.tape files)",
                dir.display()
            )));
        }
        let addr = options.connect.resolve()?;
        let speed = options.replay.speed.unwrap_or(1.0);
        for (index, plan) in planned.iter().enumerate() {
            let after = Duration::from_secs_f64(plan.start_ms as f64 / 1000.0 / speed);
            cx.timers
                .insert(cx.deadline_after(after), ReplayTimer::Connect { index });
        }
        info!(
            "playing the {} tapes of {} against {addr}",
            planned.len(),
            dir.display()
        );
        let mut replayer = Replayer::new(
            dir,
            Tapes::Schedule(Vec::new()),
            Direction::ClientToServer,
            &options.replay,
            Until::EveryTapeOnce,
        );
        replayer.unstarted = planned.len();
        replayer.tapes = Tapes::Schedule(planned);
        replayer.connect_to = Some(addr);
        Ok(replayer)
    }

    /// Opens the connection of scheduled tape `index`.
    fn connect(&mut self, cx: &mut Context<'_, ReplayTimer>, index: usize) {
        self.unstarted = self.unstarted.saturating_sub(1);
        let Some(addr) = self.connect_to.clone() else {
            return;
        };
        if self.stopping {
            return;
        }
        if let Tapes::Schedule(planned) = &mut self.tapes {
            planned[index].opened = true;
        }
        self.started += 1;
        let number = self.started;
        let started = Stream::connect(&addr)
            .map_err(|err| Error::address(&addr, "connect to", err))
            .and_then(|stream| {
                let start = Start {
                    stream,
                    addr: addr.clone(),
                    number,
                    connecting: true,
                    received: Vec::new(),
                    eof: false,
                };
                let tape = self.tape_of(Some(index))?;
                self.start_session(cx, start, tape, Some(index))
            });
        if let Err(err) = started {
            error!("session {number}: {err}");
            self.session_failed(&addr, number, self.planned_path(index), err);
        }
    }

    fn planned_path(&self, index: usize) -> Option<PathBuf> {
        match &self.tapes {
            Tapes::Schedule(planned) => planned.get(index).map(|p| p.path.clone()),
            _ => None,
        }
    }

    /// The tape to play for cassette entry `entry`, or the one tape.
    fn tape_of(&self, entry: Option<usize>) -> Result<(String, TapeFile, Locator), Error> {
        match (&self.tapes, entry) {
            (Tapes::Cassette(catalog), Some(i)) => {
                let entry = catalog.entry(i);
                let (tape, locator) = tape::open_located(&entry.path)?;
                Ok((entry.name.clone(), tape, locator))
            }
            (
                Tapes::One {
                    path,
                    tape,
                    locator,
                },
                _,
            ) => Ok((file_name(path), tape.clone(), locator.clone())),
            (Tapes::Schedule(planned), Some(i)) => {
                let plan = &planned[i];
                let (tape, locator) = tape::open_located(&plan.path)?;
                Ok((plan.name.clone(), tape, locator))
            }
            (Tapes::Cassette(_) | Tapes::Schedule(_), None) => {
                Err(Error::Session("no tape chosen".into()))
            }
        }
    }

    fn start_session(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        start: Start,
        tape: (String, TapeFile, Locator),
        entry: Option<usize>,
    ) -> Result<(), Error> {
        let key = self.conns.vacant_key();
        let token = Token(key + 1);
        let playback = Playback::new(tape, self.settings).map_err(|err| match err {
            Error::Session(message) => {
                Error::Session(format!("{}: {message}", self.path.display()))
            }
            other => other,
        })?;
        let mut session = Session::start(
            cx.registry,
            start.number,
            (start.stream, start.addr, token),
            playback,
            start.connecting,
            cx.now,
        )?;
        let early = session.feed(&start.received, start.eof);
        let key = self.conns.insert(Conn::Playing(Box::new(session), entry));
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

    /// With `--once`, a run waiting for a connection waits `--timeout` at most.
    fn arm_connection_wait(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        if self.until == Until::Stopped {
            return;
        }
        if let Some(timeout) = self.timeout {
            cx.timers
                .insert(cx.deadline_after(timeout), ReplayTimer::ConnectionWait);
        }
    }

    fn check_connection_wait(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let Some(timeout) = self.timeout else {
            return;
        };
        if self.listener.is_none() || self.stopping {
            return;
        }
        let limit = timeout.as_millis() as u64;
        if !self.conns.is_empty() || cx.now < self.last_progress + limit {
            // Someone is being served, or came lately: look again later.
            let at = cx.now.max(self.last_progress) + limit;
            cx.timers.insert(at, ReplayTimer::ConnectionWait);
            return;
        }
        let what = match &self.tapes {
            Tapes::One { path, .. } => format!("a client to play {} to", path.display()),
            Tapes::Cassette(catalog) => format!(
                "clients for the {} tapes of {} not played yet",
                catalog.never_served().len(),
                self.path.display()
            ),
            Tapes::Schedule(_) => format!("the connections of {}", self.path.display()),
        };
        let message = format!(
            "timed out after {:.1}s waiting for {what} (--timeout; 0 waits forever)",
            timeout.as_secs_f64()
        );
        error!("{message}");
        self.report.fail(Verdict::Error, message);
        self.close_listener(cx);
    }

    /// True while new connections may start sessions now; otherwise they
    /// wait in the listen backlog (a session in progress may still turn
    /// out to be a probe, and then the next client is served).
    fn may_accept(&self) -> bool {
        if self.accept_paused || self.stopping {
            return false;
        }
        match (&self.tapes, self.until) {
            (_, Until::OneSession) => self.conns.is_empty(),
            (Tapes::Cassette(catalog), Until::EveryTapeOnce) => {
                self.conns.len() < catalog.len() - catalog_served(catalog)
            }
            _ => true,
        }
    }

    fn accept(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let mut accepted = 0;
        while self.may_accept() {
            if accepted == ACCEPT_BATCH {
                // The rest of a burst next round, after these sessions had
                // their turn (and gave back their read-ahead).
                cx.defer(ReplayTimer::ResumeAccept);
                return;
            }
            let Some(listener) = &self.listener else {
                return;
            };
            match net::accept(listener) {
                Accept::Connection(stream, addr) => {
                    accepted += 1;
                    self.started += 1;
                    self.last_progress = cx.now;
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
        let mut candidates = Candidates::default();
        let choice = match &mut self.tapes {
            Tapes::One { .. } | Tapes::Schedule(_) => return self.serve(cx, start, None),
            Tapes::Cassette(catalog) => catalog.on_accept(&mut candidates),
        };
        match choice {
            Choice::Tapes(entries) => self.serve_candidates(cx, start, entries),
            Choice::Wait => {
                let key = self.conns.vacant_key();
                if let Err(err) =
                    cx.registry
                        .register(&mut start.stream, Token(key + 1), Interest::READABLE)
                {
                    let err = Error::address(&start.addr, "poll", err);
                    return self.session_failed(&start.addr, start.number, None, err);
                }
                let number = start.number;
                self.conns.insert(Conn::Choosing(Chooser {
                    number,
                    stream: start.stream,
                    addr: start.addr,
                    received: Vec::new(),
                    candidates,
                    eof: false,
                    last_activity: cx.now,
                }));
                self.arm_timeout(cx, key, number);
            }
            Choice::Exhausted => self.reject(
                cx,
                &start.addr,
                start.number,
                "every tape of the cassette was served (--reuse serves them again)",
            ),
            Choice::NoMatch(text) => self.reject(cx, &start.addr, start.number, &text),
        }
    }

    /// Serves `start` with one of the cassette `entries`: at once when there
    /// is one, else by playing them side by side until they differ.
    fn serve_candidates(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        mut start: Start,
        entries: Vec<usize>,
    ) {
        if entries.len() == 1 {
            return self.serve(cx, start, entries.first().copied());
        }
        let mut candidates = Vec::with_capacity(entries.len());
        for entry in entries {
            let playback = self
                .tape_of(Some(entry))
                .and_then(|tape| Playback::new(tape, self.settings));
            match playback {
                Ok(playback) => candidates.push(Candidate { entry, playback }),
                Err(err) => error!("session {}: {err}", start.number),
            }
        }
        let key = self.conns.vacant_key();
        let socket = start.stream.set_nodelay().and_then(|()| {
            Socket::register(
                cx.registry,
                start.stream,
                start.addr.clone(),
                Token(key + 1),
                true,
            )
        });
        let socket = match socket {
            Ok(socket) => socket,
            Err(err) => {
                let err = Error::address(&start.addr, "poll", err);
                return self.session_failed(&start.addr, start.number, None, err);
            }
        };
        start.received.shrink_to_fit();
        let pool = Pool::new(
            start.number,
            socket,
            candidates,
            (&start.received, start.eof),
            cx.now,
        );
        let number = start.number;
        let key = self.conns.insert(Conn::Deciding(Box::new(pool)));
        self.arm_timeout(cx, key, number);
        self.resume(cx, key);
    }

    /// The pool in `key` must commit to one of `preferred`: the first that
    /// leaves every other undecided connection a tape of its own (when
    /// that is possible at all).
    fn decide(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, preferred: Vec<usize>) {
        let others: Vec<Vec<usize>> = self
            .conns
            .iter()
            .filter(|(k, _)| *k != key)
            .filter_map(|(_, conn)| match conn {
                Conn::Deciding(pool) => Some(pool.entries().collect()),
                _ => None,
            })
            .collect();
        let Some(&first) = preferred.first() else {
            return;
        };
        let entry = preferred
            .iter()
            .copied()
            .find(|&t| pool::has_distinct_tapes(&others, t))
            .unwrap_or(first);
        let Some(Conn::Deciding(pool)) = self.conns.remove(key) else {
            return;
        };
        let number = pool.number;
        let Some(session) = pool.commit(entry, cx.now) else {
            return;
        };
        if let Tapes::Cassette(catalog) = &mut self.tapes {
            catalog.take(entry);
            info!(
                "session {number}: serving {} with {}",
                session.addr(),
                catalog.entry(entry).name
            );
        }
        let key = self
            .conns
            .insert(Conn::Playing(Box::new(session), Some(entry)));
        // The tape is this connection's now: the others look elsewhere.
        let keys: Vec<usize> = self.conns.keys().filter(|&k| k != key).collect();
        for other in keys {
            if let Some(Conn::Deciding(pool)) = self.conns.get_mut(other)
                && !pool.remove_entry(entry)
            {
                let status = pool.failure();
                self.update(cx, other, status);
            }
        }
        self.resume(cx, key);
    }

    /// Starts the session of `start` with cassette entry `entry`, or the
    /// one tape.
    fn serve(&mut self, cx: &mut Context<'_, ReplayTimer>, start: Start, entry: Option<usize>) {
        if let (Tapes::Cassette(catalog), Some(i)) = (&mut self.tapes, entry) {
            catalog.take(i);
            info!(
                "session {}: serving {} with {}",
                start.number,
                start.addr,
                catalog.entry(i).name
            );
        }
        let (addr, number) = (start.addr.clone(), start.number);
        let started = self
            .tape_of(entry)
            .and_then(|tape| self.start_session(cx, start, tape, entry));
        if let Err(err) = started {
            error!("session {number}: {err}");
            if let (Tapes::Cassette(catalog), Some(i)) = (&mut self.tapes, entry) {
                catalog.release(i, true);
            }
            self.session_failed(&addr, number, None, err);
        }
    }

    /// A connection no tape can serve: a departure from the recording.
    fn reject(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        addr: &Address,
        number: u64,
        why: &str,
    ) {
        let summary = format!("mismatch with client {addr} (session {number}): {why}");
        if self.print_reports {
            eprintln!("{summary}");
        }
        self.ended += 1;
        self.report.push(SessionReport {
            number,
            peer: addr.to_string(),
            tape: None,
            outcome: Outcome::Mismatch,
            message: Some(summary.lines().next().unwrap_or_default().to_string()),
            details: Some(summary.clone()),
            bytes: [0, 0],
        });
        if self.abort {
            self.abort_run(cx);
        }
    }

    fn session_failed(&mut self, addr: &Address, number: u64, tape: Option<PathBuf>, err: Error) {
        self.ended += 1;
        self.report.push(SessionReport {
            number,
            peer: addr.to_string(),
            tape,
            outcome: Outcome::Error,
            message: Some(err.to_string()),
            details: None,
            bytes: [0, 0],
        });
    }

    /// Reads what a choosing connection sent and tries to pick its tape.
    fn choose(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let Some(Conn::Choosing(chooser)) = self.conns.get_mut(key) else {
            return;
        };
        while !chooser.eof && chooser.received.len() < catalog::PREFIX_LIMIT {
            let room = catalog::PREFIX_LIMIT - chooser.received.len();
            match chooser.stream.read(&mut self.scratch[..room]) {
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
        if chooser.eof && chooser.received.is_empty() {
            // Closed without a word: a readiness probe. No tape is used up.
            let Some(Conn::Choosing(mut chooser)) = self.conns.remove(key) else {
                return;
            };
            let _ = cx.registry.deregister(&mut chooser.stream);
            return self.probe(cx, chooser.number, &chooser.addr);
        }
        let Tapes::Cassette(catalog) = &mut self.tapes else {
            return;
        };
        let choice = catalog.choose(&mut chooser.candidates, &chooser.received, chooser.eof);
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
            Choice::Tapes(entries) => self.serve_candidates(cx, start, entries),
            Choice::NoMatch(text) => self.reject(cx, &start.addr, start.number, &text),
            Choice::Exhausted => self.reject(
                cx,
                &start.addr,
                start.number,
                "every tape it agrees with is served or serving",
            ),
            Choice::Wait => {}
        }
        self.after_session(cx);
    }

    fn resume(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        match self.conns.get_mut(key) {
            Some(Conn::Playing(session, _)) => {
                let status = session.resume(cx.registry, cx.now, &mut self.scratch);
                self.update(cx, key, status);
            }
            Some(Conn::Deciding(pool)) => {
                let status = pool.resume(cx.registry, cx.now, &mut self.scratch);
                self.update_pool(cx, key, status);
            }
            _ => {}
        }
    }

    fn update_pool(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, status: PoolStatus) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.reclaim.freed(conn.take_freed());
        let number = conn.number();
        match status {
            PoolStatus::Running => {}
            PoolStatus::Yielded => cx.defer(ReplayTimer::Resume { key, number }),
            PoolStatus::Sleep { due_ms } => {
                let deadline = cx.deadline_after(Duration::from_millis(due_ms));
                cx.timers
                    .insert(deadline, ReplayTimer::Delay { key, number });
            }
            PoolStatus::Decide(preferred) => self.decide(cx, key, preferred),
            PoolStatus::Failed(status) => self.update(cx, key, status),
        }
    }

    fn update(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, status: Status) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.reclaim.freed(conn.take_freed());
        let number = conn.number();
        match status {
            Status::Running => {}
            Status::Yielded => cx.defer(ReplayTimer::Resume { key, number }),
            Status::Sleep { due_ms } => {
                let deadline = cx.deadline_after(Duration::from_millis(due_ms));
                cx.timers
                    .insert(deadline, ReplayTimer::Delay { key, number });
            }
            Status::Passed => self.end(cx, key, Outcome::Passed, None),
            Status::Mismatch {
                summary, report, ..
            } => {
                let probe = self.settings.own == Direction::ServerToClient
                    && match self.conns.get(key) {
                        Some(Conn::Playing(s, _)) => s.heard_nothing(),
                        Some(Conn::Deciding(p)) => p.heard_nothing(),
                        _ => false,
                    };
                if probe {
                    return self.end_probe(cx, key);
                }
                if self.print_reports {
                    eprint!("{report}");
                }
                self.end(cx, key, Outcome::Mismatch, Some((summary, Some(report))));
                if self.abort {
                    self.abort_run(cx);
                }
            }
            Status::Failed(err) => {
                let peer = conn.addr();
                // An address error names the peer already.
                let message = match err {
                    Error::Address { .. } => format!("session {number}: {err}"),
                    _ => format!("session {number} with {peer}: {err}"),
                };
                error!("{message}");
                self.end(cx, key, Outcome::Error, Some((message, None)));
            }
        }
    }

    /// A connection that closed without a byte where the tape expected some.
    fn end_probe(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        match self.conns.remove(key) {
            Some(Conn::Playing(session, entry)) => {
                if let (Tapes::Cassette(catalog), Some(i)) = (&mut self.tapes, entry) {
                    catalog.release(i, false);
                }
                let (number, addr) = (session.number, session.addr().clone());
                session.close(cx.registry);
                self.probe(cx, number, &addr);
            }
            Some(Conn::Choosing(mut chooser)) => {
                let _ = cx.registry.deregister(&mut chooser.stream);
                self.probe(cx, chooser.number, &chooser.addr);
            }
            Some(Conn::Deciding(pool)) => {
                let (number, addr) = (pool.number, pool.addr().clone());
                pool.close(cx.registry);
                self.probe(cx, number, &addr);
            }
            None => {}
        }
    }

    fn probe(&mut self, cx: &mut Context<'_, ReplayTimer>, number: u64, addr: &Address) {
        info!("session {number}: {addr} closed without sending anything: a probe, not a session");
        self.report.probes += 1;
        self.last_progress = cx.now;
        self.after_session(cx);
    }

    /// Ends the session in `key` with `outcome`; `failure` is its summary
    /// line and, for a mismatch, the full report.
    fn end(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        key: usize,
        outcome: Outcome,
        failure: Option<(String, Option<String>)>,
    ) {
        let (message, details) = failure.unzip();
        match self.conns.remove(key) {
            Some(Conn::Playing(session, entry)) => {
                session.log_end(outcome.as_str());
                if let (Tapes::Cassette(catalog), Some(i)) = (&mut self.tapes, entry) {
                    catalog.release(i, true);
                }
                let tape = match (&self.tapes, entry) {
                    (Tapes::Cassette(catalog), Some(i)) => Some(catalog.entry(i).path.clone()),
                    (Tapes::Schedule(planned), Some(i)) => planned.get(i).map(|p| p.path.clone()),
                    (Tapes::One { path, .. }, _) => Some(path.clone()),
                    _ => None,
                };
                self.report.push(SessionReport {
                    number: session.number,
                    peer: session.addr().to_string(),
                    tape,
                    outcome,
                    message,
                    details: details.flatten(),
                    bytes: session.bytes(),
                });
                session.close(cx.registry);
            }
            Some(Conn::Deciding(pool)) => {
                pool.log_end(outcome.as_str());
                self.report.push(SessionReport {
                    number: pool.number,
                    peer: pool.addr().to_string(),
                    tape: None,
                    outcome,
                    message,
                    details: details.flatten(),
                    bytes: pool.bytes(),
                });
                pool.close(cx.registry);
            }
            Some(Conn::Choosing(mut chooser)) => {
                let _ = cx.registry.deregister(&mut chooser.stream);
                self.report.push(SessionReport {
                    number: chooser.number,
                    peer: chooser.addr.to_string(),
                    tape: None,
                    outcome,
                    message,
                    details: details.flatten(),
                    bytes: [chooser.received.len() as u64, 0],
                });
            }
            None => return,
        }
        self.ended += 1;
        self.last_progress = cx.now;
        self.after_session(cx);
    }

    /// After a connection ended: the run may be over, or the next client
    /// may be served.
    fn after_session(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let over = match (&self.tapes, self.until) {
            (_, Until::OneSession) => self.ended > 0,
            (Tapes::Cassette(catalog), Until::EveryTapeOnce) => catalog.all_served(),
            _ => false,
        };
        if over {
            self.close_listener(cx);
        } else if self.listener.is_some() {
            self.accept(cx);
        }
    }

    fn close_listener(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        if let Some(mut listener) = self.listener.take() {
            let _ = cx.registry.deregister(&mut listener);
        }
    }

    /// Ends the run at once (`--abort`): sessions in progress are cut.
    fn abort_run(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        if self.stopping {
            return;
        }
        warn!("stopping at the first mismatch (--abort)");
        self.stopping = true;
        self.close_listener(cx);
        self.cut_all(cx);
    }

    fn check_timeout(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, number: u64) {
        let (Some(conn), Some(timeout)) = (self.conns.get(key), self.timeout) else {
            return;
        };
        if conn.number() != number {
            return;
        }
        let (last_activity, waiting) = match conn {
            Conn::Playing(session, _) => (session.last_activity, session.waiting_for()),
            Conn::Deciding(pool) => (pool.last_activity, pool.waiting_for()),
            Conn::Choosing(chooser) => (
                chooser.last_activity,
                Some(format!(
                    "the client's first bytes, to choose a tape of {}",
                    self.path.display()
                )),
            ),
        };
        let limit = timeout.as_millis() as u64;
        let waited = cx.now.saturating_sub(last_activity);
        match waiting {
            Some(what) if waited >= limit => {
                let err = Error::Session(format!(
                    "timed out after {:.1}s waiting for {what} (--timeout; 0 waits forever)",
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

    /// Ends every connection still open as cut short by a stop.
    fn cut_all(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let keys: Vec<usize> = self.conns.keys().collect();
        for key in keys {
            let (number, what) = match self.conns.get(key) {
                Some(Conn::Playing(session, _)) => (
                    session.number,
                    session
                        .waiting_for()
                        .unwrap_or_else(|| "the rest of the tape".to_string()),
                ),
                Some(Conn::Choosing(chooser)) if chooser.received.is_empty() => {
                    self.end_probe(cx, key);
                    continue;
                }
                Some(Conn::Choosing(chooser)) => {
                    (chooser.number, "its tape to be chosen".to_string())
                }
                Some(Conn::Deciding(pool)) if pool.heard_nothing() => {
                    self.end_probe(cx, key);
                    continue;
                }
                Some(Conn::Deciding(pool)) => (
                    pool.number,
                    pool.waiting_for()
                        .unwrap_or_else(|| "its tape to be decided".to_string()),
                ),
                None => continue,
            };
            let message = format!(
                "session {number}: stopped before the tape's end, while waiting for {what}"
            );
            warn!("{message}");
            self.end(cx, key, Outcome::Cut, Some((message, None)));
        }
    }

    /// True when slot `key` still holds connection `number`.
    fn holds(&self, key: usize, number: u64) -> bool {
        self.conns.get(key).is_some_and(|c| c.number() == number)
    }
}

fn catalog_served(catalog: &Catalog) -> usize {
    catalog.len() - catalog.never_served().len()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

impl Service for Replayer {
    type Timer = ReplayTimer;

    fn ready(&mut self, cx: &mut Context<'_, ReplayTimer>, event: &Event) {
        if event.token() == LISTENER {
            return self.accept(cx);
        }
        let key = event.token().0 - 1;
        match self.conns.get_mut(key) {
            Some(Conn::Playing(session, _)) => {
                let status = session.ready(cx.registry, event, cx.now, &mut self.scratch);
                self.update(cx, key, status);
            }
            Some(Conn::Deciding(pool)) => {
                let status = pool.ready(cx.registry, event, cx.now, &mut self.scratch);
                self.update_pool(cx, key, status);
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
                match self.conns.get_mut(key) {
                    Some(Conn::Playing(session, _)) => {
                        let status = session.delay_over(cx.registry, cx.now, &mut self.scratch);
                        self.update(cx, key, status);
                    }
                    Some(Conn::Deciding(pool)) => {
                        let status = pool.delay_over(cx.registry, cx.now, &mut self.scratch);
                        self.update_pool(cx, key, status);
                    }
                    _ => {}
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
            ReplayTimer::ConnectionWait => self.check_connection_wait(cx),
            ReplayTimer::Grace => self.cut_all(cx),
            ReplayTimer::Connect { index } => self.connect(cx, index),
        }
    }

    fn stop(&mut self, cx: &mut Context<'_, ReplayTimer>, how: Stop) {
        self.stopping = true;
        self.close_listener(cx);
        match how {
            Stop::Graceful if !self.conns.is_empty() => {
                info!(
                    "stopping: {} sessions may finish within {:.1}s",
                    self.conns.len(),
                    self.grace.as_secs_f64()
                );
                cx.timers
                    .insert(cx.deadline_after(self.grace), ReplayTimer::Grace);
            }
            Stop::Graceful => {}
            Stop::Now => self.cut_all(cx),
        }
    }

    fn is_done(&self) -> bool {
        self.listener.is_none() && self.conns.is_empty() && (self.unstarted == 0 || self.stopping)
    }
}

impl Finish for Replayer {
    fn local_addr(&self) -> Option<&Address> {
        self.local.as_ref()
    }

    fn finish(mut self) -> Report {
        match &self.tapes {
            Tapes::Cassette(catalog) => self.report.unused = catalog.never_served(),
            Tapes::Schedule(planned) => {
                let unopened = planned.iter().filter(|p| !p.opened);
                self.report.unused = unopened.map(|p| p.name.clone()).collect();
            }
            Tapes::One { .. } => {}
        }
        if !self.require_all {
            return self.report;
        }
        match &self.tapes {
            Tapes::One { path, .. } if self.report.sessions().is_empty() => {
                let message = format!("{} was never played: no client connected", path.display());
                self.report.fail(Verdict::Mismatch, message);
            }
            Tapes::Cassette(_) | Tapes::Schedule(_) if !self.report.unused.is_empty() => {
                let message = format!(
                    "{} of the tapes of {} were never played: {}",
                    self.report.unused.len(),
                    self.path.display(),
                    self.report.unused.join(", ")
                );
                self.report.fail(Verdict::Mismatch, message);
            }
            _ => {}
        }
        self.report
    }
}
