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

use crate::cli::ProxyArgs;
use crate::error::{Error, os_reason};
use crate::event_loop::{Context, EventLoop, Service};
use crate::net::{self, Accept, Address, Listener, Stream};
use crate::slab::Slab;
use session::{Session, Side, Status};

pub use recorder::{Pending, Recorded, Recorder};

const LISTENER: Token = Token(0);
/// Placeholder in a tape path that turns the proxy into a daemon.
const NUMBER: &str = "{n}";

/// True when `path` holds the `{n}` placeholder.
pub fn is_numbered(path: &Path) -> bool {
    path.to_string_lossy().contains(NUMBER)
}

/// Where the k-th session's tape goes.
fn tape_path(template: &Path, number: u64) -> PathBuf {
    let text = template.to_string_lossy();
    if text.contains(NUMBER) {
        PathBuf::from(text.replace(NUMBER, &number.to_string()))
    } else {
        template.to_path_buf()
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
    template: PathBuf,
    buffer: usize,
    idle_timeout: Option<Duration>,
    /// Sessions to record before the listener closes; `None` is forever.
    max_sessions: Option<u64>,
    accept_paused: bool,
    sessions: Slab<Session>,
    accepted: u64,
    /// Failures of sessions, kept only while there is one session to report
    /// as the exit status.
    failure: Option<Error>,
}

/// Runs `tcptape proxy` until its sessions are done.
pub fn run(args: &ProxyArgs) -> Result<(), Error> {
    let listen = args.listen.resolve()?;
    let upstream = args.connect.resolve()?;
    let max_sessions = if is_numbered(&args.tape) {
        args.max_sessions
    } else {
        Some(1)
    };
    let mut event_loop = EventLoop::new().map_err(poll_error)?;
    let mut proxy = Proxy::bind(listen, upstream, &args.tape, max_sessions)?;
    proxy.buffer = args.buffer;
    proxy.idle_timeout = args.idle_timeout;
    proxy.register(&mut event_loop.context())?;
    event_loop.run(&mut proxy).map_err(poll_error)?;
    match proxy.failure {
        Some(err) if max_sessions == Some(1) => Err(err),
        _ => Ok(()),
    }
}

fn poll_error(err: io::Error) -> Error {
    Error::Session(format!("cannot poll: {}", os_reason(&err)))
}

impl Proxy {
    /// Binds the listener; port 0 picks a free port, which is logged.
    pub fn bind(
        listen: Address,
        upstream: Address,
        template: &Path,
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
            template: template.to_path_buf(),
            buffer: crate::cli::DEFAULT_BUFFER,
            idle_timeout: None,
            max_sessions,
            accept_paused: false,
            sessions: Slab::new(),
            accepted: 0,
            failure: None,
        })
    }

    pub fn register(&mut self, cx: &mut Context<'_, ProxyTimer>) -> Result<(), Error> {
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
            tape_path(&self.template, number),
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
                    session.close(cx.registry);
                }
            }
            Status::Failed(err) => {
                if let Some(session) = self.sessions.remove(key) {
                    let number = session.number;
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
    fn numbered_template_gets_the_session_number() {
        assert!(is_numbered(Path::new("/tmp/s{n}.tape")));
        assert!(!is_numbered(Path::new("/tmp/s.tape")));
        assert_eq!(
            tape_path(Path::new("/tmp/s{n}.tape"), 12),
            PathBuf::from("/tmp/s12.tape")
        );
        assert_eq!(
            tape_path(Path::new("/tmp/s.tape"), 3),
            PathBuf::from("/tmp/s.tape")
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
