//! `MockServer`: a tape's server side played to the code under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use super::{Handle, LOOPBACK_ANY_PORT, endpoint, faults, verdict};
use crate::engine::event_loop::{DEFAULT_GRACE, Stop};
use crate::engine::net::DEFAULT_BACKLOG;
use crate::error::Error;
use crate::fault::{Control, Role};
use crate::job::{AutoMode, Environment, Spec};
use crate::proxy::{self, DEFAULT_BUFFER};
use crate::replay::{ReplayOptions, ServerOptions};
use crate::report::Report;

/// A mock server: plays the server side of a tape (or of each tape of a
/// cassette folder) to every client that connects, checking every byte
/// each client sends.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{Shutdown, TcpStream};
/// use tcptape::MockServer;
///
/// # fn main() -> Result<(), tcptape::Error> {
/// let tape = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/echo.tape");
/// let mock = MockServer::start(tape)?; // listening on 127.0.0.1 already
///
/// // The code under test talks to mock.addr(); here, a client by hand.
/// let mut client = TcpStream::connect(mock.addr()).unwrap();
/// let mut echo = [0; 4];
/// for line in [b"qqq\n", b"www\n"] {
///     client.write_all(line).unwrap();
///     client.read_exact(&mut echo).unwrap();
///     assert_eq!(&echo, line);
/// }
/// client.shutdown(Shutdown::Write).unwrap();
/// client.read_to_end(&mut Vec::new()).unwrap();
///
/// let report = mock.finish()?; // Err if the client departed from the tape
/// assert_eq!(report.sessions().len(), 1);
/// # Ok(())
/// # }
/// ```
///
/// Dropping a `MockServer` without [`finish`](MockServer::finish) stops it;
/// if a session did not pass, the drop panics with the report (unless the
/// thread is panicking already), so a forgotten `finish` cannot hide a
/// failure.
pub struct MockServer {
    handle: Handle,
    recording: bool,
    /// Where `set_faults` puts new faults for the running mock.
    control: Control,
}

impl MockServer {
    /// Starts a mock of the tape (binary or text) or cassette folder at
    /// `tape`, on `127.0.0.1` and a free port, with the defaults: every
    /// tape must be played, a wait for a client's bytes fails after 30 s.
    pub fn start(tape: impl AsRef<Path>) -> Result<MockServer, Error> {
        MockServer::builder(tape).start()
    }

    /// A mock with options; see [`MockServerBuilder`].
    pub fn builder(tape: impl AsRef<Path>) -> MockServerBuilder {
        MockServerBuilder {
            tape: tape.as_ref().to_path_buf(),
            listen: LOOPBACK_ANY_PORT.to_string(),
            replay: ReplayOptions::default(),
            once: false,
            reuse: false,
            allow_unused: false,
            grace: DEFAULT_GRACE,
            record_from: None,
            update: false,
            faults: Vec::new(),
        }
    }

    /// The TCP address it listens on. Panics for a mock on a UNIX socket
    /// (see [`address`](MockServer::address)).
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    /// Where it listens, as the command line writes it: `127.0.0.1:41234`,
    /// `[::1]:41234` or `unix:/path`.
    pub fn address(&self) -> String {
        self.handle.address()
    }

    /// Replaces the faults of the running mock (see
    /// [`MockServerBuilder::fault`]): they take effect for the next bytes
    /// of the connections open now, and for new ones; a stalled
    /// connection whose stall is gone flows again. Connections count from
    /// the mock's start, as `conn=` counts them. An `Err` names a SPEC
    /// that is wrong, and changes nothing.
    ///
    /// ```
    /// use tcptape::MockServer;
    ///
    /// # fn main() -> Result<(), tcptape::Error> {
    /// let tape = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/banner.tape");
    /// let mock = MockServer::builder(tape).allow_unused(true).start()?;
    /// mock.set_faults(&["stall"])?; // from now on, no answer
    /// mock.clear_faults(); // and answers again
    /// mock.finish()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_faults(&self, specs: &[&str]) -> Result<(), Error> {
        let role = if self.recording {
            Role::Proxy
        } else {
            Role::Server
        };
        self.handle.set_faults(&self.control, specs, role)
    }

    /// Removes every fault of the running mock: connections flow as
    /// recorded from their next bytes on.
    pub fn clear_faults(&self) {
        let _ = self.handle.set_faults(&self.control, &[], Role::Server);
    }

    /// True when [`MockServerBuilder::record_from`] made it record instead
    /// of replaying.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Stops listening, lets sessions in progress finish (within the grace
    /// period, 5 s by default), and returns the report: `Err` when a client
    /// departed from its tape ([`Error::is_mismatch`]), a tape was never
    /// played, or something failed.
    pub fn finish(mut self) -> Result<Report, Error> {
        let report = self.handle.finish(Some(Stop::Graceful));
        verdict(report)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if self.handle.thread.is_none() {
            return;
        }
        let report = self.handle.finish(Some(Stop::Now));
        if !report.passed() && !thread::panicking() && !self.recording {
            panic!(
                "tcptape::MockServer dropped without finish(), and not every session passed:\n{}",
                Error::Verdict(Box::new(report))
            );
        }
    }
}

/// Options of a [`MockServer`].
///
/// ```
/// use std::time::Duration;
/// use tcptape::MockServer;
///
/// # fn main() -> Result<(), tcptape::Error> {
/// let tape = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/banner.tape");
/// let mock = MockServer::builder(tape)
///     .listen("[::1]:0")
///     .timeout(Some(Duration::from_secs(5)))
///     .allow_unused(true) // this example never connects
///     .start()?;
/// assert!(mock.address().starts_with("[::1]:"));
/// mock.finish()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MockServerBuilder {
    tape: PathBuf,
    listen: String,
    replay: ReplayOptions,
    once: bool,
    reuse: bool,
    allow_unused: bool,
    grace: Duration,
    record_from: Option<String>,
    update: bool,
    faults: Vec<String>,
}

impl MockServerBuilder {
    /// Listens on `addr` (`IP:PORT`, `[IPv6]:PORT`, `HOST:PORT`, or
    /// `unix:/path`) instead of `127.0.0.1:0`.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Listens on a UNIX domain socket at `path`.
    pub fn unix(mut self, path: impl AsRef<Path>) -> Self {
        self.listen = format!("unix:{}", path.as_ref().display());
        self
    }

    /// Serves one connection (a cassette: each tape once), then stops on
    /// its own; [`finish`](MockServer::finish) then just collects the report.
    pub fn once(mut self, once: bool) -> Self {
        self.once = once;
        self
    }

    replay_settings!(own = "server", peer = "client");

    /// Cassette: serves its tapes again once all were used.
    pub fn reuse(mut self, reuse: bool) -> Self {
        self.reuse = reuse;
        self
    }

    /// Lets `finish` pass when a tape was never played (by default every
    /// tape must be).
    pub fn allow_unused(mut self, allow: bool) -> Self {
        self.allow_unused = allow;
        self
    }

    /// How long `finish` lets sessions in progress go on (5 s by default).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Record mode as VCR users know it: when the tape does not exist yet
    /// (or `TCPTAPE_MODE=record`), the mock records it instead, through a
    /// proxy to the real server at `upstream`; with `TCPTAPE_MODE=replay`,
    /// or `CI=true` and no `TCPTAPE_MODE`, a missing tape is an error.
    pub fn record_from(mut self, upstream: &str) -> Self {
        self.record_from = Some(upstream.to_string());
        self
    }

    /// Snapshot workflow, with [`record_from`](Self::record_from): where a
    /// client departs from its tape, its connection is handed over to the
    /// upstream (the tape's client turns it matched are played to it
    /// first, then the rest is relayed) and the session is written as a
    /// pending tape beside the old one (`TAPE.new`, for `tcptape
    /// review`); the run's verdict is then `Pending`. `TCPTAPE_UPDATE=1`
    /// in the environment does the same, except under `CI=true`.
    pub fn update(mut self, update: bool) -> Self {
        self.update = update;
        self
    }

    /// Starts the mock; returns once it listens.
    pub fn start(self) -> Result<MockServer, Error> {
        if self.update && self.record_from.is_none() {
            return Err(Error::setting(
                "MockServer",
                "update(true) needs record_from(upstream): the real server a departing client is handed over to",
            ));
        }
        let listen = endpoint("listen address", &self.listen)?;
        let recording = match &self.record_from {
            Some(_) => crate::job::auto_mode(&Environment::read(), &self.tape)? == AutoMode::Record,
            None => false,
        };
        let control = Control::default();
        let spec = match (&self.record_from, recording) {
            (Some(upstream), true) => Spec::Proxy(proxy::Options {
                listen,
                connect: endpoint("upstream address", upstream)?,
                tape: self.tape,
                buffer: DEFAULT_BUFFER,
                max_sessions: None,
                idle_timeout: None,
                grace: self.grace,
                backlog: DEFAULT_BACKLOG,
                until_idle: false,
                faults: faults(&self.faults, Role::Proxy)?,
                control: Some(control.clone()),
                redact: crate::secrets::Rules::default(),
            }),
            _ => Spec::Server(ServerOptions {
                listen,
                tape: self.tape,
                replay: ReplayOptions {
                    faults: faults(&self.faults, Role::Server)?,
                    control: Some(control.clone()),
                    ..self.replay
                },
                abort: false,
                once: self.once,
                reuse: self.reuse,
                allow_unused: self.allow_unused,
                grace: self.grace,
                backlog: DEFAULT_BACKLOG,
                update: crate::job::update_wanted(self.update, &Environment::read()),
                upstream: match &self.record_from {
                    Some(upstream) => Some(endpoint("upstream address", upstream)?),
                    None => None,
                },
            }),
        };
        Ok(MockServer {
            handle: Handle::spawn(spec)?,
            recording,
            control,
        })
    }
}
