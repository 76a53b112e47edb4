//! `server`: plays the recorded server to every client that connects, the
//! same tape to each, or a cassette's tape per connection.
//!
//! A cassette connection is first a `Chooser` (its first bytes narrow the
//! tapes down, `catalog`), then a `Pool` (the tapes that agree, played side
//! by side until one is left), then a `Session`; each change happens in the
//! connection's slab slot. Accepting is never called from the end of a
//! session: that files `ResumeAccept` for the next round, so a storm of
//! clients that close at once cannot nest calls.

use std::path::PathBuf;
use std::time::Instant;

use log::info;
use mio::event::Event;
use mio::{Interest, Token};

mod ends;
mod stages;
mod updating;

use super::catalog::{Candidates, Catalog, Prefix};
use super::conn::{Chooser, Conn};
use super::load::load;
use super::peer::Peer;
use super::run::{Phase, ReplayTimer, Run};
use super::script::playback::Playback;
use super::session::Session;
use super::status::{PoolStatus, Status};
use super::update::Side;
use super::{ServerOptions, TapeFile, file_name};
use crate::cassette;
use crate::engine::event_loop::{Context, Service, Stop};
use crate::engine::net::{self, Accept, Address, Listener, Socket, Stream};
use crate::engine::slab::Slab;
use crate::error::Error;
use crate::report::Finish;
use crate::report::{Outcome, Report, Verdict};
use crate::tape::{Direction, Locator};

const LISTENER: Token = Token(0);
/// Connections accepted per round of a burst. Each new session reads its
/// tape's first frames before it waits for its peer: 2,000 at once held
/// 67 MiB of read-ahead until the next round.
const ACCEPT_BATCH: usize = 64;

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
}

/// Whether new connections are taken.
enum Accepting {
    Open(Listener),
    /// Out of descriptors: accepting again after a back-off.
    Backoff(Listener),
    /// The listener is closed.
    Closed,
}

/// When the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Serve until stopped.
    Stopped,
    /// `--once` with one tape: one session, then its verdict.
    OneSession,
    /// `--once` with a cassette: every tape once, then the verdict.
    EveryTapeOnce,
}

pub(crate) struct Server {
    run: Run,
    tapes: Tapes,
    accepting: Accepting,
    local: Address,
    conns: Slab<Conn>,
    until: Until,
    /// `--abort`: the first mismatch ends the run.
    abort: bool,
    /// A tape never played does not fail the run.
    allow_unused: bool,
    /// `--update`: the real server a departing client is handed over to.
    upstream: Option<Address>,
}

impl Server {
    /// Loads the tape or cassette, binds the listener.
    pub(crate) fn start(
        options: ServerOptions,
        cx: &mut Context<'_, ReplayTimer>,
    ) -> Result<Server, Error> {
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
            (Tapes::Cassette(_), true) => Until::EveryTapeOnce,
            (_, false) => Until::Stopped,
        };
        let listen = options
            .listen
            .resolve()
            .map_err(|err| Error::net(&options.listen, err))?;
        let mut listener =
            Listener::bind(&listen, options.backlog).map_err(|err| Error::net(&listen, err))?;
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
        }
        let upstream = match (options.update, &options.upstream) {
            (true, Some(upstream)) => Some(
                upstream
                    .resolve()
                    .map_err(|err| Error::net(upstream, err))?,
            ),
            (true, None) => {
                return Err(Error::setting(
                    "--update",
                    "a server needs --upstream: the real server a client that departs from the tape is handed over to",
                ));
            }
            (false, _) => None,
        };
        let mut run = Run::new(options.tape.clone(), own, &options.replay, cx.now);
        run.grace = options.grace;
        let server = Server {
            run,
            tapes,
            accepting: Accepting::Open(listener),
            local,
            conns: Slab::new(),
            until,
            abort: options.abort,
            allow_unused: options.allow_unused,
            upstream,
        };
        server.arm_connection_wait(cx);
        Ok(server)
    }

    /// True while new connections may start sessions now; otherwise they
    /// wait in the listen backlog (a session in progress may still turn
    /// out to be a probe, and then the next client is served).
    fn may_accept(&self) -> bool {
        if self.run.phase == Phase::Stopping {
            return false;
        }
        match (&self.tapes, self.until) {
            (_, Until::OneSession) => self.conns.is_empty(),
            (Tapes::Cassette(catalog), Until::EveryTapeOnce) => {
                self.conns.len() < catalog.len() - catalog.served_count()
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
            let Accepting::Open(listener) = &self.accepting else {
                return;
            };
            match net::accept(listener) {
                Accept::Connection(stream, addr) => {
                    accepted += 1;
                    self.admit(cx, stream, addr);
                }
                Accept::Drained => return,
                Accept::Backoff => {
                    if let Accepting::Open(listener) =
                        std::mem::replace(&mut self.accepting, Accepting::Closed)
                    {
                        self.accepting = Accepting::Backoff(listener);
                    }
                    let deadline = cx.deadline_after(net::ACCEPT_BACKOFF);
                    cx.timers.insert(deadline, ReplayTimer::BackoffOver);
                    return;
                }
            }
        }
    }

    /// A new connection: its session, or a chooser of its cassette tape.
    fn admit(&mut self, cx: &mut Context<'_, ReplayTimer>, stream: Stream, addr: Address) {
        let number = self.run.next_number(cx.now);
        info!("session {number}: accepted {addr}");
        let key = self.conns.vacant_key();
        let _ = stream.set_nodelay();
        // WRITABLE from the start: our first frame may be due at once.
        let socket = Socket::register(cx.registry, stream, addr.clone(), client_token(key), true);
        let peer = match socket {
            Ok(socket) => {
                let mut peer = Peer::new(socket, cx.now);
                self.run.give_faults(&mut peer, number, cx.now);
                peer
            }
            Err(err) => {
                let err = Error::address(&addr, "poll", err);
                return self.run.failed(number, &addr, None, err);
            }
        };
        let choice = match &mut self.tapes {
            Tapes::One {
                path,
                tape,
                locator,
            } => {
                let tape = (file_name(path), tape.clone(), locator.clone());
                match Playback::new(tape, self.run.settings) {
                    Ok(playback) => {
                        let session = Session::resumed(number, peer, playback, Instant::now());
                        let session = self.with_handover(session);
                        self.conns.insert(Conn::Playing(Box::new(session), None));
                        None
                    }
                    Err(err) => {
                        peer.close(cx.registry);
                        return self.run.failed(number, &addr, Some(path.clone()), err);
                    }
                }
            }
            Tapes::Cassette(catalog) => {
                let mut candidates = Candidates::default();
                let choice = catalog.on_accept(&mut candidates);
                let chooser = Chooser::new(number, peer, candidates);
                self.conns.insert(Conn::Choosing(Box::new(chooser)));
                Some(choice)
            }
        };
        self.run.arm_timeout(cx, key, number);
        match choice {
            Some(choice) => self.apply(cx, key, choice),
            None => self.resume(cx, key),
        }
    }

    fn resume(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let scratch = &mut self.run.scratch;
        match self.conns.get_mut(key) {
            Some(Conn::Playing(session, _)) => {
                let status = session.resume(cx.registry, cx.now, scratch);
                self.on_status(cx, key, status);
            }
            Some(Conn::Deciding(pool)) => {
                let status = pool.resume(cx.registry, cx.now, scratch);
                self.on_pool(cx, key, status);
            }
            Some(Conn::Choosing(_)) => self.choose(cx, key),
            Some(Conn::Updating(relay, _)) => {
                let status = relay.resume(cx.registry, cx.now, scratch);
                self.on_status(cx, key, status);
            }
            None => {}
        }
    }

    fn on_pool(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, status: PoolStatus) {
        match status {
            PoolStatus::Running => {
                if let Some(conn) = self.conns.get_mut(key) {
                    self.run.reclaim.freed(conn.take_freed());
                }
            }
            PoolStatus::Yielded => self.on_status(cx, key, Status::Yielded),
            PoolStatus::Sleep { due_ms } => self.on_status(cx, key, Status::Sleep { due_ms }),
            PoolStatus::Decide(preferred) => self.decide(cx, key, preferred),
            PoolStatus::Refill => self.refill(cx, key),
            PoolStatus::Failed(status) => self.on_status(cx, key, status),
        }
    }

    fn on_status(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, status: Status) {
        if let Status::Departed = status {
            return self.hand_over(cx, key);
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.run.reclaim.freed(conn.take_freed());
        let number = conn.number();
        let heard_nothing = conn.heard_nothing();
        let Some(ending) = self
            .run
            .schedule(cx, (key, number), conn.peer_mut(), status)
        else {
            return;
        };
        if ending.outcome == Outcome::Mismatch && heard_nothing {
            return self.end_probe(cx, key);
        }
        self.end(cx, key, ending);
    }

    fn close_listener(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        if let Accepting::Open(mut listener) | Accepting::Backoff(mut listener) =
            std::mem::replace(&mut self.accepting, Accepting::Closed)
        {
            let _ = cx.registry.deregister(&mut listener);
        }
    }

    /// With `--once`, a run waiting for a connection waits `--timeout` at
    /// most after the last one ended.
    fn arm_connection_wait(&self, cx: &mut Context<'_, ReplayTimer>) {
        if self.until == Until::Stopped {
            return;
        }
        if let Some(timeout) = self.run.timeout {
            let due = self.run.last_progress + timeout.as_millis() as u64;
            cx.timers
                .insert(due.max(cx.now), ReplayTimer::ConnectionWait);
        }
    }

    fn check_connection_wait(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let Some(timeout) = self.run.timeout else {
            return;
        };
        let listening = !matches!(self.accepting, Accepting::Closed);
        if !listening || self.run.phase == Phase::Stopping || !self.conns.is_empty() {
            // A connection in progress arms the wait again when it ends.
            return;
        }
        let due = self.run.last_progress + timeout.as_millis() as u64;
        if cx.now < due {
            cx.timers.insert(due, ReplayTimer::ConnectionWait);
            return;
        }
        let what = match &self.tapes {
            Tapes::One { path, .. } => format!("a client to play {} to", path.display()),
            Tapes::Cassette(catalog) => format!(
                "clients for the {} tapes of {} not played yet",
                catalog.never_served().len(),
                self.run.path.display()
            ),
        };
        self.run.fail_waiting(&what);
        self.close_listener(cx);
    }

    fn check_timeout(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, number: u64) {
        let Some(conn) = self.conns.get(key).filter(|c| c.number() == number) else {
            return;
        };
        let (last_activity, waiting) = conn.waiting(&self.run.path);
        let relaying = conn.relaying();
        let status = match self
            .run
            .check_timeout(cx, (key, number), last_activity, waiting)
        {
            // Neither side said more for --timeout: the session with the
            // upstream is over, as far as it went.
            Some(Status::Failed(Error::Timeout { .. })) if relaying => self.quiet_relay_over(key),
            other => other,
        };
        if let Some(status) = status {
            self.on_status(cx, key, status);
        }
    }

    /// True when slot `key` still holds connection `number`.
    fn holds(&self, key: usize, number: u64) -> bool {
        self.conns.get(key).is_some_and(|c| c.number() == number)
    }
}

impl Service for Server {
    type Timer = ReplayTimer;

    fn ready(&mut self, cx: &mut Context<'_, ReplayTimer>, event: &Event) {
        if event.token() == LISTENER {
            return self.accept(cx);
        }
        let (key, side) = conn_of(event.token());
        let scratch = &mut self.run.scratch;
        match self.conns.get_mut(key) {
            Some(Conn::Updating(relay, _)) => {
                let status = relay.ready(cx.registry, (side, event), cx.now, scratch);
                self.on_status(cx, key, status);
            }
            // Only a relay has a socket of the other side.
            _ if side == Side::Upstream => {}
            Some(Conn::Playing(session, _)) => {
                let status = session.ready(cx.registry, event, cx.now, scratch);
                self.on_status(cx, key, status);
            }
            Some(Conn::Deciding(pool)) => {
                let status = pool.ready(cx.registry, event, cx.now, scratch);
                self.on_pool(cx, key, status);
            }
            Some(Conn::Choosing(chooser)) => {
                chooser.peer.note(event);
                self.choose(cx, key);
            }
            None => {}
        }
    }

    fn expired(&mut self, cx: &mut Context<'_, ReplayTimer>, timer: ReplayTimer) {
        match timer {
            ReplayTimer::Delay { key, number } if self.holds(key, number) => {
                let scratch = &mut self.run.scratch;
                match self.conns.get_mut(key) {
                    Some(Conn::Playing(session, _)) => {
                        let status = session.delay_over(cx.registry, cx.now, scratch);
                        self.on_status(cx, key, status);
                    }
                    Some(Conn::Deciding(pool)) => {
                        let status = pool.delay_over(cx.registry, cx.now, scratch);
                        self.on_pool(cx, key, status);
                    }
                    Some(Conn::Updating(..)) => self.resume(cx, key),
                    _ => {}
                }
            }
            ReplayTimer::Resume { key, number } if self.holds(key, number) => {
                self.resume(cx, key);
            }
            ReplayTimer::Timeout { key, number } => self.check_timeout(cx, key, number),
            ReplayTimer::ResumeAccept => self.accept(cx),
            ReplayTimer::BackoffOver => {
                if let Accepting::Backoff(listener) =
                    std::mem::replace(&mut self.accepting, Accepting::Closed)
                {
                    self.accepting = Accepting::Open(listener);
                    self.accept(cx);
                }
            }
            ReplayTimer::Rechoose => self.rechoose(cx),
            ReplayTimer::ConnectionWait => self.check_connection_wait(cx),
            ReplayTimer::Grace => self.cut_all(cx),
            ReplayTimer::Delay { .. }
            | ReplayTimer::Resume { .. }
            | ReplayTimer::Connect { .. } => {}
        }
    }

    /// The library's handle changed the faults: open connections take
    /// them up for their next bytes, new ones get them.
    fn notified(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        if !self.run.take_new_faults() {
            return;
        }
        let keys: Vec<usize> = self.conns.keys().collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                let number = conn.number();
                self.run.give_faults(conn.peer_mut(), number, cx.now);
            }
            self.resume(cx, key);
        }
    }

    fn stop(&mut self, cx: &mut Context<'_, ReplayTimer>, how: Stop) {
        self.run.phase = Phase::Stopping;
        self.close_listener(cx);
        match how {
            Stop::Graceful if !self.conns.is_empty() => {
                info!(
                    "stopping: {} sessions may finish within {:.1}s",
                    self.conns.len(),
                    self.run.grace.as_secs_f64()
                );
                cx.timers
                    .insert(cx.deadline_after(self.run.grace), ReplayTimer::Grace);
            }
            Stop::Graceful => {}
            Stop::Now => self.cut_all(cx),
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.accepting, Accepting::Closed) && self.conns.is_empty()
    }
}

impl Finish for Server {
    fn local_addr(&self) -> Option<&Address> {
        Some(&self.local)
    }

    fn finish(self) -> Report {
        let mut report = self.run.report;
        if let Tapes::Cassette(catalog) = &self.tapes {
            report.unused = catalog.never_served();
        }
        if self.allow_unused {
            return report;
        }
        match &self.tapes {
            Tapes::One { path, .. } if report.sessions().is_empty() => {
                let message = format!(
                    "{} was never played: no client connected (--allow-unused lets a run pass without it)",
                    path.display()
                );
                report.fail(Verdict::Mismatch, message);
            }
            Tapes::Cassette(_) if !report.unused.is_empty() => {
                let message = format!(
                    "{} of the tapes of {} were never played: {} (--allow-unused lets a run pass without them)",
                    report.unused.len(),
                    self.run.path.display(),
                    report.unused.join(", ")
                );
                report.fail(Verdict::Mismatch, message);
            }
            _ => {}
        }
        report
    }
}

/// The token of the client of the connection in slab slot `key`; the
/// upstream it may be handed over to has the next one.
fn client_token(key: usize) -> Token {
    Token(2 * key + 1)
}

fn upstream_token(key: usize) -> Token {
    Token(2 * key + 2)
}

/// The connection slot and the side an event's token names.
fn conn_of(token: Token) -> (usize, Side) {
    let side = match (token.0 - 1) % 2 {
        0 => Side::Client,
        _ => Side::Upstream,
    };
    ((token.0 - 1) / 2, side)
}
