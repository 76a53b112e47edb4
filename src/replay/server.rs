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

use super::catalog::{Candidates, Catalog, Choice, PREFIX_LIMIT, Prefix};
use super::conn::{Chooser, Conn, Stage};
use super::load::load;
use super::matching::has_distinct_tapes;
use super::peer::Peer;
use super::pool::{Candidate, Pool, Reserve, WINDOW};
use super::run::{Ending, Phase, ReplayTimer, Run};
use super::script::playback::Playback;
use super::session::Session;
use super::status::{PoolStatus, Status};
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
        let socket = Socket::register(cx.registry, stream, addr.clone(), Token(key + 1), true);
        let peer = match socket {
            Ok(socket) => Peer::new(socket, cx.now),
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

    /// Reads what a choosing connection sent and tries to pick its tape.
    fn choose(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let Some(Conn::Choosing(chooser)) = self.conns.get_mut(key) else {
            return;
        };
        chooser.read(&mut self.run.scratch, PREFIX_LIMIT);
        if chooser.eof() && chooser.received.is_empty() {
            return self.end_probe(cx, key);
        }
        let (Tapes::Cassette(catalog), Stage::Reading) = (&mut self.tapes, chooser.stage) else {
            return;
        };
        let eof = chooser.eof();
        let choice = catalog.choose(&mut chooser.candidates, &chooser.received, eof);
        self.apply(cx, key, choice);
    }

    /// Choosers waiting for a tape another connection played try again.
    fn rechoose(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let queued: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Choosing(c) if c.stage == Stage::Queued))
            .map(|(key, _)| key)
            .collect();
        for key in queued {
            let (Some(Conn::Choosing(chooser)), Tapes::Cassette(catalog)) =
                (self.conns.get_mut(key), &mut self.tapes)
            else {
                continue;
            };
            let mut candidates = Candidates::default();
            let choice = match catalog.on_accept(&mut candidates) {
                Choice::Wait => catalog.choose(&mut candidates, &chooser.received, chooser.eof()),
                other => other,
            };
            chooser.candidates = candidates;
            self.apply(cx, key, choice);
        }
    }

    /// Acts on what the catalog said of the chooser in `key`.
    fn apply(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, choice: Choice) {
        let Some(Conn::Choosing(chooser)) = self.conns.get_mut(key) else {
            return;
        };
        match choice {
            Choice::Tapes {
                entries,
                more_after,
            } => self.serve(cx, key, entries, more_after),
            Choice::Wait => chooser.stage = Stage::Reading,
            Choice::Queue => {
                if chooser.stage != Stage::Queued {
                    info!(
                        "session {}: every tape that agrees with it serves another connection: it waits for one",
                        chooser.number
                    );
                }
                chooser.stage = Stage::Queued;
            }
            Choice::Exhausted => self.reject(
                cx,
                key,
                "every tape of the cassette that agrees with it was served (--reuse serves them again)",
            ),
            Choice::NoMatch(text) => self.reject(cx, key, &text),
        }
    }

    /// Opens the playbacks of cassette `entries`; the first error when
    /// none opens.
    fn open(&mut self, entries: &[usize], number: u64) -> Result<Vec<Candidate<TapeFile>>, Error> {
        let Tapes::Cassette(catalog) = &mut self.tapes else {
            return Ok(Vec::new());
        };
        let mut candidates = Vec::with_capacity(entries.len());
        let mut first_error = None;
        for &entry in entries {
            let settings = self.run.settings;
            match catalog
                .open(entry)
                .and_then(|tape| Playback::new(tape, settings))
            {
                Ok(playback) => candidates.push(Candidate::new(entry, playback)),
                Err(err) => {
                    log::error!("session {number}: {err}");
                    first_error.get_or_insert(err);
                }
            }
        }
        match (candidates.is_empty(), first_error) {
            (true, Some(err)) => Err(err),
            _ => Ok(candidates),
        }
    }

    /// The chooser in `key` becomes the session of its one tape, or a pool
    /// of the tapes that agree with it.
    fn serve(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        key: usize,
        entries: Vec<usize>,
        more_after: Option<usize>,
    ) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let number = conn.number();
        let mut candidates = match self.open(&entries, number) {
            Ok(candidates) => candidates,
            Err(err) => return self.on_status(cx, key, Status::Failed(err)),
        };
        if candidates.len() == 1 && more_after.is_none() {
            let Candidate {
                entry, playback, ..
            } = candidates.remove(0);
            let mut early = None;
            self.conns.transition(key, |conn| match conn {
                Conn::Choosing(chooser) => {
                    let Chooser { peer, received, .. } = *chooser;
                    let eof = peer.inbound() != super::peer::Inbound::Open;
                    let mut session = Session::resumed(number, peer, playback, Instant::now());
                    // Its bytes so far were counted as they came.
                    early = session.feed_kept(&received, eof);
                    Conn::Playing(Box::new(session), Some(entry))
                }
                other => other,
            });
            self.taken(cx, entry, key);
            return match early {
                Some(status) => self.on_status(cx, key, status),
                None => self.resume(cx, key),
            };
        }
        self.conns.transition(key, |conn| match conn {
            Conn::Choosing(chooser) => {
                let Chooser { peer, received, .. } = *chooser;
                let eof = peer.inbound() != super::peer::Inbound::Open;
                let reserve = match more_after {
                    Some(after) => Reserve::Waiting {
                        after,
                        history: received.clone(),
                        eof,
                    },
                    None => Reserve::Empty,
                };
                let pool = Pool::new(number, peer, candidates, reserve, (&received, eof));
                Conn::Deciding(Box::new(pool))
            }
            other => other,
        });
        self.resume(cx, key);
    }

    /// Cassette entry `entry` serves the connection in `key` now: the
    /// undecided connections look elsewhere.
    fn taken(&mut self, cx: &mut Context<'_, ReplayTimer>, entry: usize, key: usize) {
        if let Tapes::Cassette(catalog) = &mut self.tapes {
            catalog.take(entry);
            if let Some(conn) = self.conns.get(key) {
                info!(
                    "session {}: serving {} with {}",
                    conn.number(),
                    conn.addr(),
                    catalog.entry(entry).name
                );
            }
        }
        let others: Vec<usize> = self.conns.keys().filter(|&k| k != key).collect();
        for other in others {
            if let Some(Conn::Deciding(pool)) = self.conns.get_mut(other)
                && !pool.remove_entry(entry)
            {
                let status = pool.failure();
                self.on_status(cx, other, status);
            }
        }
    }

    /// The pool in `key` commits to one of `preferred`: the first that
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
            .find(|&t| has_distinct_tapes(&others, t))
            .unwrap_or(first);
        let mut refused = false;
        self.conns.transition(key, |conn| match conn {
            Conn::Deciding(pool) => match pool.commit(entry) {
                Ok(session) => Conn::Playing(Box::new(session), Some(entry)),
                Err(pool) => {
                    refused = true;
                    Conn::Deciding(pool)
                }
            },
            other => other,
        });
        if refused {
            let err = Error::Internal(format!(
                "tape entry {entry} is no candidate of this connection"
            ));
            return self.on_status(cx, key, Status::Failed(err));
        }
        self.taken(cx, entry, key);
        self.resume(cx, key);
    }

    /// Brings more tapes into the pool in `key`.
    fn refill(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let (Some(Conn::Deciding(pool)), Tapes::Cassette(catalog)) =
            (self.conns.get(key), &self.tapes)
        else {
            return;
        };
        let Some((after, history, _)) = pool.wanted() else {
            return;
        };
        let want = WINDOW - pool.entries().count();
        let first = &history[..history.len().min(PREFIX_LIMIT)];
        let (found, last) = catalog.more(after, first, want);
        let number = pool.number;
        let more = self.open(&found, number).unwrap_or_default();
        if let Some(Conn::Deciding(pool)) = self.conns.get_mut(key) {
            pool.refill(more, last);
        }
        cx.defer(ReplayTimer::Resume { key, number });
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
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.run.reclaim.freed(conn.take_freed());
        let (number, addr) = (conn.number(), conn.addr().clone());
        let heard_nothing = conn.heard_nothing();
        let Some(ending) = self.run.schedule(cx, (key, number), &addr, status) else {
            return;
        };
        if ending.outcome == Outcome::Mismatch && heard_nothing {
            return self.end_probe(cx, key);
        }
        self.end(cx, key, ending);
    }

    /// A connection no tape can serve: a departure from the recording.
    fn reject(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, why: &str) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let summary = format!(
            "mismatch with client {} (session {}): {why}",
            conn.addr(),
            conn.number()
        );
        let ending = Ending {
            outcome: Outcome::Mismatch,
            message: Some(summary.clone()),
            details: Some(summary + "\n"),
        };
        self.end(cx, key, ending);
    }

    /// Ends the connection in `key`.
    fn end(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, ending: Ending) {
        let Some(conn) = self.conns.remove(key) else {
            return;
        };
        conn.log_end(ending.outcome.as_str());
        let (number, addr) = (conn.number(), conn.addr().clone());
        let (entry, bytes) = conn.close(cx.registry);
        let tape = match (&mut self.tapes, entry) {
            (Tapes::Cassette(catalog), Some(i)) => {
                catalog.release(i, true);
                cx.defer(ReplayTimer::Rechoose);
                Some(catalog.entry(i).path.clone())
            }
            (Tapes::One { path, .. }, _) => Some(path.clone()),
            (Tapes::Cassette(_), None) => None,
        };
        let outcome = ending.outcome;
        self.run.record(cx, (number, &addr), tape, ending, bytes);
        if outcome == Outcome::Mismatch && self.abort {
            self.abort_run(cx);
        } else if outcome != Outcome::Passed
            && self.until != Until::Stopped
            && !matches!(self.accepting, Accepting::Closed)
        {
            info!(
                "--once: session {number} did not pass, so the run cannot; no more connections are taken"
            );
            self.close_listener(cx);
        }
        self.after_session(cx);
    }

    /// A connection that closed without a byte where the tape expected
    /// some: its tape (if any) is free again.
    fn end_probe(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let Some(conn) = self.conns.remove(key) else {
            return;
        };
        let (number, addr) = (conn.number(), conn.addr().clone());
        let (entry, _) = conn.close(cx.registry);
        if let (Tapes::Cassette(catalog), Some(i)) = (&mut self.tapes, entry) {
            catalog.release(i, false);
            cx.defer(ReplayTimer::Rechoose);
        }
        self.run.probe(cx, number, &addr);
        self.after_session(cx);
    }

    /// After a connection ended: the run may be over, or the next client
    /// may be served (next round: never from here).
    fn after_session(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let over = match (&self.tapes, self.until) {
            (_, Until::OneSession) => self.run.ended > 0,
            (Tapes::Cassette(catalog), Until::EveryTapeOnce) => catalog.all_served(),
            _ => false,
        };
        if over {
            self.close_listener(cx);
        } else if matches!(self.accepting, Accepting::Open(_)) {
            cx.defer(ReplayTimer::ResumeAccept);
        }
        if self.conns.is_empty() {
            self.arm_connection_wait(cx);
        }
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

    /// Ends the run at once (`--abort`): sessions in progress are cut.
    fn abort_run(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        if self.run.phase == Phase::Stopping {
            return;
        }
        log::warn!("stopping at the first mismatch (--abort)");
        self.run.phase = Phase::Stopping;
        self.close_listener(cx);
        self.cut_all(cx);
    }

    fn check_timeout(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, number: u64) {
        let Some(conn) = self.conns.get(key).filter(|c| c.number() == number) else {
            return;
        };
        let (last_activity, waiting) = conn.waiting(&self.run.path);
        if let Some(status) = self
            .run
            .check_timeout(cx, (key, number), last_activity, waiting)
        {
            self.on_status(cx, key, status);
        }
    }

    /// Ends every connection still open as cut short by a stop.
    fn cut_all(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let keys: Vec<usize> = self.conns.keys().collect();
        for key in keys {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            let what = match conn {
                Conn::Choosing(_) | Conn::Deciding(_) if conn.heard_nothing() => {
                    self.end_probe(cx, key);
                    continue;
                }
                Conn::Playing(session, _) => session
                    .waiting_for()
                    .unwrap_or_else(|| "the rest of the tape".to_string()),
                Conn::Choosing(_) => "its tape to be chosen".to_string(),
                Conn::Deciding(pool) => pool
                    .waiting_for()
                    .unwrap_or_else(|| "its tape to be decided".to_string()),
            };
            let message = format!(
                "session {}: stopped before the tape's end, while waiting for {what}",
                conn.number()
            );
            let ending = Ending {
                outcome: Outcome::Cut,
                message: Some(message),
                details: None,
            };
            self.end(cx, key, ending);
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
        let key = event.token().0 - 1;
        let scratch = &mut self.run.scratch;
        match self.conns.get_mut(key) {
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
