//! The recording proxy: accepts clients, connects each to the server, and
//! records each session to its own tape while relaying it.
//!
//! Tokens: the listener is `LISTENER`; the session in slab slot `k` owns
//! tokens `2k + 1` (its client) and `2k + 2` (its server).
//!
//! Nothing on disk is touched before the addresses are resolved and the
//! listener is bound; an earlier cassette is replaced only once the first
//! new session has something to record.

mod faults;
mod options;
mod pipe;
mod recorder;
mod redaction;
mod session;
mod target;
mod write_behind;

use std::path::PathBuf;
use std::time::Instant;

use log::{error, info, warn};
use mio::event::Event;
use mio::{Interest, Token};

use crate::cassette::{self, Index};
use crate::engine::buffers::Buffers;
use crate::engine::event_loop::{Context, Service, Stop};
use crate::engine::net::{self, Accept, Address, Listener, Stream};
use crate::engine::slab::Slab;
use crate::error::Error;
use crate::fault::Control;
use crate::report::Finish;
use crate::report::{Outcome, Report, SessionReport, Verdict};
pub(crate) use options::{DEFAULT_BUFFER, MAX_BUFFER, MIN_BUFFER, NUMBER, Options};
use recorder::Recorder;
use redaction::Redaction;
use session::{Session, Side, Status, Turn};
use target::{CassetteState, Target, prepare_folder};

const LISTENER: Token = Token(0);
/// A session's first ring per direction: small, for request and answer;
/// it doubles up to `--buffer` while a transfer keeps filling it.
const FIRST_RING: usize = 16 * 1024;
fn client_token(key: usize) -> Token {
    Token(2 * key + 1)
}

/// A session's turn: with other sessions waiting for theirs (several
/// yielded in the last round), each takes only its share.
fn turn(cx: &Context<'_, ProxyTimer>) -> Turn {
    Turn {
        now: cx.now,
        contended: cx.yielded > 1,
    }
}

fn session_of(token: Token) -> (usize, Side) {
    let n = token.0 - 1;
    let side = if n.is_multiple_of(2) {
        Side::Client
    } else {
        Side::Server
    };
    (n / 2, side)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyTimer {
    /// Try accepting again after running out of file descriptors.
    ResumeAccept,
    /// Check whether the session numbered `number` in slot `key` went idle.
    Idle { key: usize, number: u64 },
    /// Continue a session: it yielded to let others run, or its faults
    /// want it woken (a pace, a fault placed in time).
    Resume { key: usize, number: u64 },
    /// The grace period after a stop is over.
    Grace,
}

pub(crate) struct Proxy {
    listener: Option<Listener>,
    local: Address,
    upstream: Address,
    target: Target,
    options: Options,
    accept_paused: bool,
    sessions: Slab<Session>,
    /// Connections accepted, probes included: the session numbers.
    accepted: u64,
    /// Probes that ended: accepted connections that are not sessions.
    probes: u64,
    /// Tapes created: the tape numbers.
    taped: u64,
    cassette: Option<CassetteState>,
    /// Ring storage, lent to sessions while they move bytes.
    buffers: Buffers,
    /// The tick the first session was accepted: index times count from it.
    first_accept: Option<u64>,
    stopping: bool,
    report: Report,
    redaction: Option<std::rc::Rc<Redaction>>,
}

impl Proxy {
    /// Resolves both addresses, binds the listener, and checks that the
    /// tapes can be written, in that order: a mistyped address or a taken
    /// port fails before anything on disk is touched.
    pub(crate) fn start(
        options: Options,
        cx: &mut Context<'_, ProxyTimer>,
    ) -> Result<Proxy, Error> {
        let target = Target::of(&options.tape);
        let listen = options
            .listen
            .resolve()
            .map_err(|err| Error::net(&options.listen, err))?;
        let upstream = options
            .connect
            .resolve()
            .map_err(|err| Error::net(&options.connect, err))?;
        let mut listener =
            Listener::bind(&listen, options.backlog).map_err(|err| Error::net(&listen, err))?;
        let local = listener
            .local_addr()
            .map_err(|err| Error::address(&listen, "listen on", err))?;
        refuse_loop(&local, &upstream)?;
        let cassette = prepare_folder(&target)?;
        cx.registry
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|err| Error::address(&local, "listen on", err))?;
        info!("listening on {local}, forwarding to {upstream}");
        let buffers = Buffers::new(FIRST_RING.min(options.buffer), options.buffer);
        let redaction = Redaction::of(&options.redact);
        Ok(Proxy {
            redaction,
            buffers,
            listener: Some(listener),
            local,
            upstream,
            target,
            options,
            accept_paused: false,
            sessions: Slab::new(),
            accepted: 0,
            probes: 0,
            taped: 0,
            cassette,
            first_accept: None,
            stopping: false,
            report: Report::default(),
        })
    }

    /// Sessions the proxy may still start: `None` is any number.
    fn room(&self) -> Option<u64> {
        let limit = match self.target {
            Target::One(_) => Some(1),
            _ => self.options.max_sessions,
        }?;
        let counted = self.accepted - self.probes;
        Some(limit.saturating_sub(counted))
    }

    fn accept(&mut self, cx: &mut Context<'_, ProxyTimer>) {
        while !self.accept_paused && !self.stopping && self.room() != Some(0) {
            let Some(listener) = &self.listener else {
                return;
            };
            match net::accept(listener) {
                Accept::Connection(stream, addr) => self.start_session(cx, stream, addr),
                Accept::Drained => return,
                Accept::Backoff => {
                    self.accept_paused = true;
                    let deadline = cx.deadline_after(net::ACCEPT_BACKOFF);
                    cx.timers.insert(deadline, ProxyTimer::ResumeAccept);
                }
            }
        }
        // Clients beyond the limit wait in the backlog: a session may yet
        // turn out to be a probe and make room.
    }

    /// Closes the listener once every session asked for was recorded.
    fn close_when_full(&mut self, cx: &mut Context<'_, ProxyTimer>) {
        let full = self.room() == Some(0) && self.sessions.is_empty();
        let recorded = self.report.tapes().next().is_some();
        let idle = self.options.until_idle && recorded && self.sessions.is_empty();
        if full || idle {
            self.close_listener(cx);
        }
    }

    fn close_listener(&mut self, cx: &mut Context<'_, ProxyTimer>) {
        if let Some(mut listener) = self.listener.take() {
            let _ = cx.registry.deregister(&mut listener);
            info!("no longer listening on {}", self.local);
        }
    }

    fn start_session(&mut self, cx: &mut Context<'_, ProxyTimer>, client: Stream, peer: Address) {
        self.accepted += 1;
        let number = self.accepted;
        self.first_accept.get_or_insert(cx.now);
        info!("session {number}: accepted {peer}");
        let server = match Stream::connect(&self.upstream) {
            Ok(server) => server,
            Err(err) => {
                let err = Error::address(&self.upstream, "connect to", err);
                error!("session {number}: {err}");
                return self.failed(number, &peer, None, [0, 0], err);
            }
        };
        let key = self.sessions.vacant_key();
        let started = Session::start(
            cx.registry,
            number,
            (client, peer.clone(), client_token(key)),
            (
                server,
                self.upstream.clone(),
                Token(client_token(key).0 + 1),
            ),
            cx.now,
        );
        match started {
            Ok(mut session) => {
                session.set_faults(&self.options.faults, cx.now);
                let key = self.sessions.insert(session);
                if let Some(timeout) = self.options.idle_timeout {
                    let deadline = cx.deadline_after(timeout);
                    cx.timers.insert(deadline, ProxyTimer::Idle { key, number });
                }
            }
            Err(err) => {
                let err = Error::address(&peer, "poll", err);
                error!("session {number}: {err}");
                self.failed(number, &peer, None, [0, 0], err);
            }
        }
    }

    /// Creates the next tape for the session in `key`.
    fn new_tape(&mut self) -> Result<Recorder, Error> {
        if let Some(cassette) = &mut self.cassette
            && cassette.index.is_none()
        {
            // The first tape of this recording: only now does an earlier
            // recording of the cassette make way.
            cassette::clear(&cassette.dir)?;
            let index = Index::create(&cassette.dir)
                .map_err(|err| Error::file(&cassette.dir.join(cassette::INDEX), "write", err))?;
            cassette.index = Some(index);
        }
        self.taped += 1;
        let path = self.target.path_for(self.taped);
        Recorder::create(&path, Instant::now(), self.redaction.as_ref())
            .map_err(|err| Error::file(&path, "write tape", err))
    }

    fn update(&mut self, cx: &mut Context<'_, ProxyTimer>, key: usize, status: Status) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let number = session.number;
        session.faults.wake(cx, (key, number));
        if let Some(deadline) = session.hold_deadline() {
            // Bytes held back for the rules are released by then.
            cx.timers
                .insert(deadline, ProxyTimer::Resume { key, number });
        }
        match status {
            Status::Running => {}
            Status::Yielded => cx.defer(ProxyTimer::Resume { key, number }),
            Status::NeedsTape => {
                let status = match self.new_tape() {
                    Ok(tape) => {
                        let session = self.sessions.get_mut(key).expect("session checked above");
                        session.attach(tape);
                        session.resume(cx.registry, turn(cx), &mut self.buffers)
                    }
                    Err(err) => Status::Failed(err),
                };
                self.update(cx, key, status);
            }
            Status::Probe => {
                if let Some(session) = self.sessions.remove(key) {
                    self.probe(cx, session);
                }
            }
            Status::Finished => self.end(cx, key, Outcome::Recorded, None),
            Status::Faulted => self.end(cx, key, Outcome::Faulted, None),
            Status::Failed(err) => self.end(cx, key, Outcome::Error, Some(err)),
        }
    }

    /// A client that left before a word was said: not a session, and no tape.
    fn probe(&mut self, cx: &mut Context<'_, ProxyTimer>, session: Session) {
        self.probes += 1;
        self.report.probes += 1;
        info!(
            "session {}: {} closed before anything was said: a probe, not recorded",
            session.number,
            session.client_addr()
        );
        session.close(cx.registry, &mut self.buffers);
        // The probe may have held the only place: take the next client.
        self.accept(cx);
        self.close_when_full(cx);
    }

    /// Ends the session in `key`: notes it in the report and the index.
    fn end(
        &mut self,
        cx: &mut Context<'_, ProxyTimer>,
        key: usize,
        outcome: Outcome,
        err: Option<Error>,
    ) {
        let Some(session) = self.sessions.remove(key) else {
            return;
        };
        let (outcome, err) = session.faults.outcome(outcome, err);
        let faults = session.faults.fired().to_vec();
        let number = session.number;
        let summary = session.summary();
        if let Some(err) = &err {
            error!("session {}: {err}", session.number);
            warn!(
                "session {}: closing both connections (client {})",
                session.number,
                session.client_addr()
            );
        }
        if let Some(summary) = &summary {
            self.note_in_index(summary, outcome == Outcome::Recorded);
        }
        let peer = session.client_addr().clone();
        let bytes = session.bytes();
        let message = match outcome {
            Outcome::RecordedCut => Some(format!(
                "session {number}: cut short by the stop; its tape ends with a CUT frame"
            )),
            Outcome::Faulted => Some(session.faults.message(number)),
            _ => None,
        };
        session.close(cx.registry, &mut self.buffers);
        match (outcome, err) {
            (_, Some(err)) => self.failed(number, &peer, summary.map(|s| s.tape), bytes, err),
            (outcome, None) => self.report.push(SessionReport {
                number,
                peer: peer.to_string(),
                tape: summary.map(|s| s.tape),
                outcome,
                message,
                details: None,
                bytes,
                faults,
            }),
        }
        self.close_when_full(cx);
    }

    fn failed(
        &mut self,
        number: u64,
        peer: &Address,
        tape: Option<PathBuf>,
        bytes: [u64; 2],
        err: Error,
    ) {
        self.report.push(SessionReport {
            number,
            peer: peer.to_string(),
            tape,
            outcome: Outcome::Error,
            message: Some(format!("session {number}: {err}")),
            details: None,
            bytes,
            faults: Vec::new(),
        });
    }

    /// Appends a session that made a tape to a cassette's index.
    fn note_in_index(&mut self, summary: &session::Summary, whole: bool) {
        let Some(CassetteState {
            index: Some(index), ..
        }) = &mut self.cassette
        else {
            return;
        };
        let name = summary
            .tape
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some(order) = name
            .strip_suffix(".tape")
            .and_then(|stem| stem.parse::<u64>().ok())
        else {
            // Renamed to .partial: not a tape the cassette serves.
            return;
        };
        let start = self.first_accept.unwrap_or(summary.started);
        let entry = cassette::Entry {
            tape: name,
            order,
            start_ms: summary.started - start,
            client_bytes: summary.bytes[0],
            server_bytes: summary.bytes[1],
            first: summary.first,
            whole,
        };
        if let Err(err) = index.append(&entry) {
            let message = cassette::index_error(index.path(), &err);
            error!("{message}");
            self.report.fail(Verdict::Error, message);
        }
    }

    fn idle_check(&mut self, cx: &mut Context<'_, ProxyTimer>, key: usize, number: u64) {
        let (Some(session), Some(timeout)) =
            (self.sessions.get_mut(key), self.options.idle_timeout)
        else {
            return;
        };
        if session.number != number {
            return;
        }
        let idle_until = session.last_activity + timeout.as_millis() as u64;
        if cx.now < idle_until {
            cx.timers
                .insert(idle_until, ProxyTimer::Idle { key, number });
            return;
        }
        let err = Error::Timeout {
            after: timeout,
            waiting_for: "a byte from either side".into(),
            limit: "--idle-timeout",
        };
        session.cut(&err.to_string());
        self.end(cx, key, Outcome::Error, Some(err));
    }

    /// Ends every session still open; their tapes are marked as cut.
    fn cut_all(&mut self, cx: &mut Context<'_, ProxyTimer>) {
        let keys: Vec<usize> = self.sessions.keys().collect();
        for key in keys {
            let Some(session) = self.sessions.get_mut(key) else {
                continue;
            };
            if session.cut("the recording was stopped before the session ended") {
                warn!("session {}: cut short by the stop", session.number);
                self.end(cx, key, Outcome::RecordedCut, None);
            } else if let Some(session) = self.sessions.remove(key) {
                // Nothing was said yet: as good as a probe.
                self.probe(cx, session);
            }
        }
    }
}

/// A proxy whose server is itself would connect to itself forever.
fn refuse_loop(local: &Address, upstream: &Address) -> Result<(), Error> {
    let same = match (local, upstream) {
        (Address::Tcp(l), Address::Tcp(u)) => {
            l.port() == u.port()
                && (l.ip() == u.ip()
                    || l.ip().is_unspecified()
                    || u.ip().is_unspecified()
                    || (l.ip().is_loopback() && u.ip().is_loopback()))
        }
        (Address::Unix(l), Address::Unix(u)) => l == u,
        _ => false,
    };
    if same {
        let why = format!("the proxy would connect to itself (it listens on {local})");
        let loop_back = std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        return Err(Error::address(upstream, "proxy to", loop_back));
    }
    Ok(())
}

impl Service for Proxy {
    type Timer = ProxyTimer;

    fn ready(&mut self, cx: &mut Context<'_, ProxyTimer>, event: &Event) {
        if event.token() == LISTENER {
            return self.accept(cx);
        }
        let (key, side) = session_of(event.token());
        if let Some(session) = self.sessions.get_mut(key) {
            let status = session.ready(cx.registry, side, event, turn(cx), &mut self.buffers);
            self.update(cx, key, status);
        }
    }

    fn expired(&mut self, cx: &mut Context<'_, ProxyTimer>, timer: ProxyTimer) {
        match timer {
            ProxyTimer::ResumeAccept => {
                self.accept_paused = false;
                self.accept(cx);
            }
            ProxyTimer::Idle { key, number } => self.idle_check(cx, key, number),
            ProxyTimer::Resume { key, number } => {
                if let Some(session) = self.sessions.get_mut(key)
                    && session.number == number
                {
                    let status = session.resume(cx.registry, turn(cx), &mut self.buffers);
                    self.update(cx, key, status);
                }
            }
            ProxyTimer::Grace => self.cut_all(cx),
        }
    }

    fn stop(&mut self, cx: &mut Context<'_, ProxyTimer>, how: Stop) {
        self.stopping = true;
        self.close_listener(cx);
        match how {
            Stop::Graceful if !self.sessions.is_empty() => {
                info!(
                    "stopping: {} sessions may finish within {:.1}s",
                    self.sessions.len(),
                    self.options.grace.as_secs_f64()
                );
                let deadline = cx.deadline_after(self.options.grace);
                cx.timers.insert(deadline, ProxyTimer::Grace);
            }
            Stop::Graceful => {}
            Stop::Now => self.cut_all(cx),
        }
    }

    /// New faults from the library's handle, for the sessions under way
    /// (their next bytes) and new ones.
    fn notified(&mut self, cx: &mut Context<'_, ProxyTimer>) {
        if !Control::update(self.options.control.as_ref(), &mut self.options.faults) {
            return;
        }
        for key in self.sessions.keys().collect::<Vec<_>>() {
            if let Some(session) = self.sessions.get_mut(key) {
                let number = session.number;
                session.set_faults(&self.options.faults, cx.now);
                cx.defer(ProxyTimer::Resume { key, number });
            }
        }
    }

    fn is_done(&self) -> bool {
        self.listener.is_none() && self.sessions.is_empty()
    }
}

impl Finish for Proxy {
    fn local_addr(&self) -> Option<&Address> {
        Some(&self.local)
    }

    fn finish(mut self) -> Report {
        if self.report.tapes().next().is_none() {
            let why = self
                .report
                .first_failure()
                .map_or(String::new(), |failure| format!(" ({failure})"));
            self.report
                .fail(Verdict::Error, format!("nothing was recorded{why}"));
            if let Some(CassetteState {
                dir, created: true, ..
            }) = &self.cassette
            {
                // Leave no empty cassette behind for a replay to "pass" on.
                let _ = std::fs::remove_dir(dir);
            }
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_back_to_slot_and_side() {
        for key in [0, 1, 7, 1000] {
            assert_eq!(session_of(client_token(key)), (key, Side::Client));
            assert_eq!(
                session_of(Token(client_token(key).0 + 1)),
                (key, Side::Server)
            );
        }
    }

    #[test]
    fn a_proxy_to_itself_is_refused() {
        let tcp = |s: &str| Address::Tcp(s.parse().unwrap());
        for (local, upstream) in [
            ("127.0.0.1:4000", "127.0.0.1:4000"),
            ("0.0.0.0:4000", "127.0.0.1:4000"),
            ("127.0.0.1:4000", "127.0.0.2:4000"),
            ("[::]:4000", "[::1]:4000"),
        ] {
            let err = refuse_loop(&tcp(local), &tcp(upstream)).unwrap_err();
            assert!(err.to_string().contains("connect to itself"), "{err}");
        }
        assert!(refuse_loop(&tcp("127.0.0.1:4000"), &tcp("127.0.0.1:4001")).is_ok());
        assert!(refuse_loop(&tcp("127.0.0.1:4000"), &tcp("10.0.0.1:4000")).is_ok());
        let unix = Address::Unix("/tmp/x.sock".into());
        assert!(refuse_loop(&unix, &unix).is_err());
    }
}
