//! The recording proxy: accepts clients, connects each to the server, and
//! records each session to its own tape while relaying it.
//!
//! Tokens: the listener is `LISTENER`; the session in slab slot `k` owns
//! tokens `2k + 1` (its client) and `2k + 2` (its server).

mod recorder;
mod session;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::{error, info, warn};
use mio::event::Event;
use mio::{Interest, Token};

use crate::cassette;
use crate::cli::ProxyArgs;
use crate::error::{Error, os_reason};
use crate::event_loop::{Context, EventLoop, Service};
use crate::net::{self, Accept, Address, Listener, Stream};
use crate::slab::Slab;
use session::{Session, Side, Status};

const LISTENER: Token = Token(0);
/// Placeholder in a tape path that turns the proxy into a daemon.
const NUMBER: &str = "{n}";

/// Where sessions are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// One session to this file, then exit.
    One(PathBuf),
    /// Session k to the path with `{n}` replaced by k.
    Numbered(PathBuf),
    /// Session k to `DIR/000k.tape`, with an index.
    Cassette(PathBuf),
}

impl Target {
    fn of(path: &Path) -> Target {
        if cassette::is_cassette(path) {
            Target::Cassette(path.to_path_buf())
        } else if path.to_string_lossy().contains(NUMBER) {
            Target::Numbered(path.to_path_buf())
        } else {
            Target::One(path.to_path_buf())
        }
    }

    /// Where the k-th session's tape goes.
    fn path_for(&self, number: u64) -> PathBuf {
        match self {
            Target::One(path) => path.clone(),
            Target::Numbered(template) => {
                let text = template.to_string_lossy();
                PathBuf::from(text.replace(NUMBER, &number.to_string()))
            }
            Target::Cassette(dir) => dir.join(cassette::tape_name(number)),
        }
    }
}

fn client_token(key: usize) -> Token {
    Token(2 * key + 1)
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
pub enum ProxyTimer {
    /// Try accepting again after running out of file descriptors.
    ResumeAccept,
    /// Check whether the session numbered `number` in slot `key` went idle.
    Idle { key: usize, number: u64 },
    /// Continue a session that yielded to let others run.
    Resume { key: usize, number: u64 },
}

pub struct Proxy {
    listener: Option<Listener>,
    upstream: Address,
    target: Target,
    buffer: usize,
    idle_timeout: Option<Duration>,
    /// Sessions to record before the listener closes; `None` is forever.
    max_sessions: Option<u64>,
    accept_paused: bool,
    sessions: Slab<Session>,
    accepted: u64,
    /// The first failure of a session: the exit status of a proxy that
    /// records one session.
    failure: Option<Error>,
    /// A cassette's index so far.
    index: Vec<cassette::Entry>,
    /// The tick the first session was accepted: index times count from it.
    first_accept: Option<u64>,
}

/// Runs `tcptape proxy` until its sessions are done.
pub fn run(args: &ProxyArgs) -> Result<(), Error> {
    let target = Target::of(&args.tape);
    let max_sessions = match target {
        Target::One(_) if args.max_sessions.is_some() => {
            return Err(Error::usage(
                "--max-sessions needs a FILE with {n} or a cassette folder: a plain FILE records one session",
                crate::cli::PROXY_USAGE,
            ));
        }
        Target::One(_) => Some(1),
        Target::Numbered(_) | Target::Cassette(_) => args.max_sessions,
    };
    if let Target::Cassette(dir) = &target {
        std::fs::create_dir_all(dir).map_err(|err| Error::file(dir, "create cassette", err))?;
        // Like a tape file, a cassette is recorded anew: tapes left from an
        // earlier recording would otherwise be served with the new ones.
        cassette::clear(dir)?;
    }
    let listen = args.listen.resolve()?;
    let upstream = args.connect.resolve()?;
    let mut event_loop = EventLoop::new().map_err(poll_error)?;
    let mut proxy = Proxy::bind(listen, upstream, target, max_sessions)?;
    proxy.buffer = args.buffer;
    proxy.idle_timeout = args.idle_timeout;
    proxy.register(&mut event_loop.context())?;
    event_loop.run(&mut proxy).map_err(poll_error)?;
    match (proxy.failure, &proxy.target) {
        (Some(err), Target::One(_)) => Err(err),
        _ => Ok(()),
    }
}

fn poll_error(err: io::Error) -> Error {
    Error::Session(format!("cannot poll: {}", os_reason(&err)))
}

impl Proxy {
    /// Binds the listener; port 0 picks a free port, which is logged.
    fn bind(
        listen: Address,
        upstream: Address,
        target: Target,
        max_sessions: Option<u64>,
    ) -> Result<Proxy, Error> {
        let listener = Listener::bind(&listen)?;
        let local = listener
            .local_addr()
            .map_err(|err| Error::address(&listen, "listen on", err))?;
        info!("listening on {local}, forwarding to {upstream}");
        Ok(Proxy {
            listener: Some(listener),
            upstream,
            target,
            buffer: crate::cli::DEFAULT_BUFFER,
            idle_timeout: None,
            max_sessions,
            accept_paused: false,
            sessions: Slab::new(),
            accepted: 0,
            failure: None,
            index: Vec::new(),
            first_accept: None,
        })
    }

    fn register(&mut self, cx: &mut Context<'_, ProxyTimer>) -> Result<(), Error> {
        if let Some(listener) = &mut self.listener {
            cx.registry
                .register(listener, LISTENER, Interest::READABLE)
                .map_err(poll_error)?;
        }
        Ok(())
    }

    fn accept(&mut self, cx: &mut Context<'_, ProxyTimer>) {
        while !self.accept_paused && self.max_sessions.is_none_or(|max| self.accepted < max) {
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
        // Every session we were asked for has started: refuse further clients.
        if let Some(mut listener) = self.listener.take_if(|_| !self.accept_paused) {
            let _ = cx.registry.deregister(&mut listener);
            info!("accepted {} sessions, no longer listening", self.accepted);
        }
    }

    fn start_session(
        &mut self,
        cx: &mut Context<'_, ProxyTimer>,
        client: Stream,
        client_addr: Address,
    ) {
        self.accepted += 1;
        let number = self.accepted;
        self.first_accept.get_or_insert(cx.now);
        info!("session {number}: accepted {client_addr}");
        let server = match Stream::connect(&self.upstream) {
            Ok(server) => server,
            Err(err) => {
                return self.fail(Error::address(&self.upstream, "connect to", err), number);
            }
        };
        let key = self.sessions.vacant_key();
        let started = Session::start(
            cx.registry,
            number,
            (client, client_addr, client_token(key)),
            (
                server,
                self.upstream.clone(),
                Token(client_token(key).0 + 1),
            ),
            self.target.path_for(number),
            self.buffer,
            cx.now,
        );
        match started {
            Ok(session) => {
                let key = self.sessions.insert(session);
                if let Some(timeout) = self.idle_timeout {
                    let deadline = cx.deadline_after(timeout);
                    cx.timers.insert(deadline, ProxyTimer::Idle { key, number });
                }
            }
            Err(err) => self.fail(poll_error(err), number),
        }
    }

    /// Reports a session that failed; a single-session proxy keeps the error
    /// as its exit status.
    fn fail(&mut self, err: Error, number: u64) {
        error!("session {number}: {err}");
        self.failure.get_or_insert(err);
    }

    fn update(&mut self, cx: &mut Context<'_, ProxyTimer>, key: usize, status: Status) {
        match status {
            Status::Running => {}
            Status::Yielded => {
                if let Some(session) = self.sessions.get(key) {
                    let number = session.number;
                    cx.timers.insert(cx.now, ProxyTimer::Resume { key, number });
                }
            }
            Status::Finished => {
                if let Some(session) = self.sessions.remove(key) {
                    self.note_in_index(&session);
                    session.close(cx.registry);
                }
            }
            Status::Failed(err) => {
                if let Some(session) = self.sessions.remove(key) {
                    let number = session.number;
                    self.note_in_index(&session);
                    self.fail(err, number);
                    warn!(
                        "session {number}: closing both connections (client {})",
                        session.client_addr()
                    );
                    session.close(cx.registry);
                }
            }
        }
    }

    /// Adds a session that made a tape to a cassette's index.
    fn note_in_index(&mut self, session: &Session) {
        let (Target::Cassette(dir), Some(summary)) = (&self.target, session.summary()) else {
            return;
        };
        let start = self.first_accept.unwrap_or(summary.started);
        self.index.push(cassette::Entry {
            tape: cassette::tape_name(summary.number),
            order: summary.number,
            start_ms: summary.started - start,
            client_bytes: summary.bytes[0],
            server_bytes: summary.bytes[1],
            first: summary.first,
        });
        self.index.sort_by_key(|e| e.order);
        if let Err(err) = cassette::write_index(dir, &self.index) {
            error!(
                "cannot write {}: {}",
                dir.join(cassette::INDEX).display(),
                os_reason(&err)
            );
        }
    }

    fn idle_check(&mut self, cx: &mut Context<'_, ProxyTimer>, key: usize, number: u64) {
        let (Some(session), Some(timeout)) = (self.sessions.get(key), self.idle_timeout) else {
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
        let err = Error::Session(format!(
            "idle for {:.1}s (--idle-timeout), giving up",
            timeout.as_secs_f64()
        ));
        self.update(cx, key, Status::Failed(err));
    }
}

impl Service for Proxy {
    type Timer = ProxyTimer;

    fn ready(&mut self, cx: &mut Context<'_, ProxyTimer>, event: &Event) {
        if event.token() == LISTENER {
            return self.accept(cx);
        }
        let (key, side) = session_of(event.token());
        if let Some(session) = self.sessions.get_mut(key) {
            let status = session.ready(cx.registry, side, event, cx.now);
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
                    let status = session.resume(cx.registry, cx.now);
                    self.update(cx, key, status);
                }
            }
        }
    }

    fn is_done(&self) -> bool {
        self.listener.is_none() && self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_each_session_tape() {
        let numbered = Target::of(Path::new("/tmp/s{n}.tape"));
        assert_eq!(numbered.path_for(12), PathBuf::from("/tmp/s12.tape"));
        let one = Target::of(Path::new("/tmp/s.tape"));
        assert_eq!(one.path_for(3), PathBuf::from("/tmp/s.tape"));
        let cassette = Target::of(Path::new("/nonexistent/pool/"));
        assert_eq!(
            cassette.path_for(3),
            PathBuf::from("/nonexistent/pool/0003.tape")
        );
    }

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
}
