//! Replay: `server` plays the recorded server to every client that connects,
//! `client` plays the recorded client against a real server. Both check
//! every byte the peer sends against the tape.
//!
//! Tokens: the listener is `LISTENER`; the session in slab slot `k` owns
//! token `k + 1`. Each session streams the tape through two cursors of its
//! own over one shared file handle, so a thousand sessions cost a thousand
//! small buffers, never a thousand copies of the tape.

mod report;
mod script;
mod session;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::{error, info, warn};
use mio::event::Event;
use mio::{Interest, Token};

use crate::cli::{ClientArgs, ReplayOptions, ServerArgs};
use crate::error::{Error, os_reason};
use crate::event_loop::{Context, EventLoop, Service};
use crate::net::{self, Accept, Address, Listener, Stream};
use crate::slab::Slab;
use crate::tape::{self, Direction, Kind, Reader, SharedTape};
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
    /// Check whether a session has waited too long for its peer.
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
}

struct Replayer {
    path: PathBuf,
    tape: TapeFile,
    settings: Settings,
    timeout: Option<Duration>,
    until: Until,
    listener: Option<Listener>,
    accept_paused: bool,
    sessions: Slab<Session<TapeFile>>,
    scratch: Box<[u8]>,
    started: u64,
    /// The first failure or mismatch: the run's verdict.
    verdict: Option<Error>,
    stopping: bool,
}

/// Runs `tcptape server`.
pub fn run_server(args: &ServerArgs) -> Result<(), Error> {
    let own = Direction::ServerToClient;
    let tape = load(&args.tape, own)?;
    let listen = args.listen.resolve()?;
    let listener = Listener::bind(&listen)?;
    let local = listener
        .local_addr()
        .map_err(|err| Error::address(&listen, "listen on", err))?;
    info!("listening on {local}, serving {}", args.tape.display());
    let until = if args.once {
        Until::OneSession
    } else {
        Until::Stopped { abort: args.abort }
    };
    let mut replayer = Replayer::new(&args.tape, tape, own, &args.replay, until);
    let mut event_loop = EventLoop::new().map_err(poll_error)?;
    let mut listener = listener;
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
    let tape = load(&args.tape, own)?;
    let addr = args.connect.resolve()?;
    let mut replayer = Replayer::new(&args.tape, tape, own, &args.replay, Until::OneSession);
    let mut event_loop = EventLoop::new().map_err(poll_error)?;
    let stream = Stream::connect(&addr).map_err(|err| Error::address(&addr, "connect to", err))?;
    replayer.start_session(&mut event_loop.context(), stream, addr, true)?;
    event_loop.run(&mut replayer).map_err(poll_error)?;
    replayer.verdict.map_or(Ok(()), Err)
}

/// Opens a tape (binary or text) and reads it through once, so a bad tape
/// is reported before anyone connects rather than in the middle of a
/// session. Wildcards are expectations: the role that plays `own` has
/// nothing to send for one in its own direction.
fn load(path: &Path, own: Direction) -> Result<TapeFile, Error> {
    let tape = tape::open(path)?;
    let mut reader = Reader::new(tape.clone());
    let mut frames = 0u64;
    while let Some(frame) = reader.next_frame().map_err(|err| Error::tape(path, err))? {
        frames += 1;
        if frame.kind == Kind::Any(own) {
            let role = peer_name(own);
            return Err(Error::Session(format!(
                "{}: frame {} (tape offset {}) is a wildcard in the {role}'s direction, but `{role}` plays the {role} and a wildcard has no bytes to send",
                path.display(),
                frame.index,
                frame.offset
            )));
        }
    }
    info!("tape {}: {frames} frames", path.display());
    Ok(tape)
}

fn poll_error(err: io::Error) -> Error {
    Error::Session(format!("cannot poll: {}", os_reason(&err)))
}

impl Replayer {
    fn new(
        path: &Path,
        tape: TapeFile,
        own: Direction,
        options: &ReplayOptions,
        until: Until,
    ) -> Replayer {
        Replayer {
            path: path.to_path_buf(),
            tape,
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
            sessions: Slab::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            started: 0,
            verdict: None,
            stopping: false,
        }
    }

    fn start_session(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        stream: Stream,
        addr: Address,
        connecting: bool,
    ) -> Result<(), Error> {
        self.started += 1;
        let number = self.started;
        let key = self.sessions.vacant_key();
        let token = Token(key + 1);
        let session = Session::start(
            cx.registry,
            number,
            (stream, addr, token),
            self.tape.clone(),
            self.settings,
            connecting,
            cx.now,
        )
        .map_err(|err| match err {
            Error::Session(message) => {
                Error::Session(format!("{}: {message}", self.path.display()))
            }
            other => other,
        })?;
        let key = self.sessions.insert(session);
        if let Some(timeout) = self.timeout {
            cx.timers.insert(
                cx.deadline_after(timeout),
                ReplayTimer::Timeout { key, number },
            );
        }
        // Our first frame may be due before the peer says anything.
        self.resume(cx, key);
        Ok(())
    }

    fn accept(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        while !self.accept_paused && !self.stopping {
            let Some(listener) = &self.listener else {
                return;
            };
            match net::accept(listener) {
                Accept::Connection(stream, addr) => {
                    info!("session {}: accepted {addr}", self.started + 1);
                    if self.until == Until::OneSession
                        && let Some(mut listener) = self.listener.take()
                    {
                        let _ = cx.registry.deregister(&mut listener);
                    }
                    if let Err(err) = self.start_session(cx, stream, addr, false) {
                        self.record_failure(err);
                    }
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

    fn resume(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        if let Some(session) = self.sessions.get_mut(key) {
            let status = session.resume(cx.registry, cx.now, &mut self.scratch);
            self.update(cx, key, status);
        }
    }

    fn update(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, status: Status) {
        let Some(session) = self.sessions.get(key) else {
            return;
        };
        let number = session.number;
        match status {
            Status::Running => {}
            Status::Yielded => {
                cx.timers
                    .insert(cx.now, ReplayTimer::Resume { key, number });
            }
            Status::Sleep { due_ms } => {
                cx.timers
                    .insert(cx.now + due_ms, ReplayTimer::Delay { key, number });
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
        if let Some(session) = self.sessions.remove(key) {
            session.log_end(verdict);
            session.close(cx.registry);
        }
    }

    fn record_failure(&mut self, err: Error) {
        self.verdict.get_or_insert(err);
    }

    fn check_timeout(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, number: u64) {
        let (Some(session), Some(timeout)) = (self.sessions.get(key), self.timeout) else {
            return;
        };
        if session.number != number {
            return;
        }
        let limit = timeout.as_millis() as u64;
        let waited = cx.now.saturating_sub(session.last_activity);
        match session.waiting_for() {
            Some(what) if waited >= limit => {
                let err = Error::Session(format!(
                    "session {number} with {}: timed out after {:.1}s waiting for {what}",
                    session.addr(),
                    timeout.as_secs_f64()
                ));
                self.update(cx, key, Status::Failed(err));
            }
            Some(_) => {
                let deadline = session.last_activity + limit;
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
}

impl Service for Replayer {
    type Timer = ReplayTimer;

    fn ready(&mut self, cx: &mut Context<'_, ReplayTimer>, event: &Event) {
        if event.token() == LISTENER {
            return self.accept(cx);
        }
        let key = event.token().0 - 1;
        if let Some(session) = self.sessions.get_mut(key) {
            let status = session.ready(cx.registry, event, cx.now, &mut self.scratch);
            self.update(cx, key, status);
        }
    }

    fn expired(&mut self, cx: &mut Context<'_, ReplayTimer>, timer: ReplayTimer) {
        match timer {
            ReplayTimer::Delay { key, number } => {
                if let Some(session) = self.sessions.get_mut(key).filter(|s| s.number == number) {
                    let status = session.delay_over(cx.registry, cx.now, &mut self.scratch);
                    self.update(cx, key, status);
                }
            }
            ReplayTimer::Resume { key, number } => {
                if self.sessions.get(key).is_some_and(|s| s.number == number) {
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
        self.listener.is_none() && self.sessions.is_empty()
    }
}
