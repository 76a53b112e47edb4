//! The library: a mock server, a mock client and a recorder for tests in
//! Rust. Each runs tcptape's own poll loop on a thread of its own; the
//! caller needs no runtime. A mock listens before `start` returns, so a
//! test can connect at once: no port race, no sleep.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::engine::addr::Endpoint;
use crate::engine::event_loop::DEFAULT_GRACE;
use crate::engine::event_loop::{Stop, StopHandle};
use crate::engine::net::Address;
use crate::engine::net::DEFAULT_BACKLOG;
use crate::error::Error;
use crate::job::{self, Spec};
use crate::job::{AutoMode, Environment};
use crate::proxy;
use crate::proxy::DEFAULT_BUFFER;
use crate::replay::{ClientOptions, ReplayOptions, ServerOptions};
use crate::report::{Report, Verdict};

/// Where a mock or a recorder listens unless told otherwise.
const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";

/// A service running on its own thread.
struct Handle {
    addr: Option<Address>,
    stop: StopHandle,
    thread: Option<JoinHandle<Report>>,
}

impl Handle {
    /// Starts `spec` on a new thread and waits until it listens (or failed
    /// to start).
    fn spawn(spec: Spec) -> Result<Handle, Error> {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("tcptape".into())
            .spawn(move || match job::start(spec) {
                Ok(job) => {
                    let _ = tx.send(Ok((job.local_addr().cloned(), job.stop_handle())));
                    job.run()
                }
                Err(err) => {
                    let _ = tx.send(Err(err));
                    Report::default()
                }
            })
            .map_err(|source| Error::System {
                action: "start a thread",
                source,
            })?;
        match rx.recv() {
            Ok(Ok((addr, stop))) => Ok(Handle {
                addr,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => Err(thread_died(thread.join().err())),
        }
    }

    /// Asks the service to stop (if `how`), waits for it, and returns its
    /// report.
    fn finish(&mut self, how: Option<Stop>) -> Report {
        if let Some(how) = how {
            self.stop.stop(how);
        }
        let Some(thread) = self.thread.take() else {
            return Report::default();
        };
        thread.join().unwrap_or_else(|panic| {
            let mut report = Report::default();
            report.fail(Verdict::Error, thread_died(Some(panic)).to_string());
            report
        })
    }

    fn addr(&self) -> SocketAddr {
        match &self.addr {
            Some(Address::Tcp(addr)) => *addr,
            Some(Address::Unix(path)) => panic!(
                "listening on the UNIX socket {}: use address() for its path",
                path.display()
            ),
            None => panic!("not listening"),
        }
    }

    fn address(&self) -> String {
        self.addr
            .as_ref()
            .map_or_else(String::new, Address::to_string)
    }
}

fn thread_died(panic: Option<Box<dyn std::any::Any + Send>>) -> Error {
    let why = panic
        .as_ref()
        .and_then(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        })
        .unwrap_or_else(|| "no message".into());
    Error::Internal(why)
}

/// A passed report, or the error that carries it.
fn verdict(report: Report) -> Result<Report, Error> {
    if report.passed() {
        Ok(report)
    } else {
        Err(Error::Verdict(Box::new(report)))
    }
}

fn endpoint(what: &str, text: &str) -> Result<Endpoint, Error> {
    Endpoint::parse(text).map_err(|reason| Error::setting(what, reason))
}

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

/// The replay settings both mocks take, as builder methods: `own` is the
/// side the tape plays, `peer` the side it checks.
macro_rules! replay_settings {
    (own = $own:literal, peer = $peer:literal) => {
        #[doc = concat!("Replays the recorded delays before the ", $own, "'s sends.")]
        pub fn delays(mut self, delays: bool) -> Self {
            self.replay.speed = delays.then_some(self.replay.speed.unwrap_or(1.0));
            self
        }

        /// Replays the recorded delays divided by `speed` (2.0: twice as fast).
        pub fn speed(mut self, speed: f64) -> Self {
            self.replay.speed = Some(speed);
            self
        }

        #[doc = concat!(
                    "How long to wait for the ", $peer, "'s next bytes; `None` waits forever. ",
                    "30 s by default."
                )]
        pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
            self.replay.timeout = timeout;
            self
        }

        #[doc = concat!("Counts the ", $peer, "'s bytes without comparing them.")]
        pub fn no_assert(mut self, no_assert: bool) -> Self {
            self.replay.no_assert = no_assert;
            self
        }

        /// Adds a line diff to mismatch reports when both sides are text.
        pub fn text_diff(mut self, text_diff: bool) -> Self {
            self.replay.text_diff = text_diff;
            self
        }
    };
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

    /// Starts the mock; returns once it listens.
    pub fn start(self) -> Result<MockServer, Error> {
        let listen = endpoint("listen address", &self.listen)?;
        let recording = match &self.record_from {
            Some(_) => crate::job::auto_mode(&Environment::read(), &self.tape)? == AutoMode::Record,
            None => false,
        };
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
            }),
            _ => Spec::Server(ServerOptions {
                listen,
                tape: self.tape,
                replay: self.replay,
                abort: false,
                once: self.once,
                reuse: self.reuse,
                allow_unused: self.allow_unused,
                grace: self.grace,
                backlog: DEFAULT_BACKLOG,
            }),
        };
        Ok(MockServer {
            handle: Handle::spawn(spec)?,
            recording,
        })
    }
}

/// A mock client: plays the client side of a tape against a real server,
/// checking every byte the server answers.
///
/// ```
/// use tcptape::{MockClient, MockServer};
///
/// # fn main() -> Result<(), tcptape::Error> {
/// let tape = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/banner.tape");
/// // The server under test; here, the tape's own server side.
/// let server = MockServer::start(tape)?;
/// let report = MockClient::run(server.addr(), tape)?; // Err on a mismatch
/// assert!(report.passed());
/// server.finish()?;
/// # Ok(())
/// # }
/// ```
pub struct MockClient;

impl MockClient {
    /// Connects to `server`, plays the tape's client side, and returns the
    /// report: `Err` when the server departed from the tape, or failed.
    pub fn run(server: SocketAddr, tape: impl AsRef<Path>) -> Result<Report, Error> {
        MockClient::builder(tape).connect(server).run()
    }

    /// A mock client with options; see [`MockClientBuilder`].
    pub fn builder(tape: impl AsRef<Path>) -> MockClientBuilder {
        MockClientBuilder {
            tape: tape.as_ref().to_path_buf(),
            connect: None,
            replay: ReplayOptions::default(),
        }
    }
}

/// Options of a [`MockClient`] run.
#[derive(Debug, Clone)]
pub struct MockClientBuilder {
    tape: PathBuf,
    connect: Option<String>,
    replay: ReplayOptions,
}

impl MockClientBuilder {
    /// The server to drive.
    pub fn connect(mut self, server: SocketAddr) -> Self {
        self.connect = Some(server.to_string());
        self
    }

    /// The server to drive, as the command line writes it (`HOST:PORT`,
    /// `[IPv6]:PORT`, `unix:/path`).
    pub fn connect_to(mut self, server: &str) -> Self {
        self.connect = Some(server.to_string());
        self
    }

    replay_settings!(own = "client", peer = "server");

    /// Plays the tape; blocks until the session is over.
    pub fn run(self) -> Result<Report, Error> {
        let Some(connect) = &self.connect else {
            return Err(Error::setting(
                "MockClient",
                "no server to connect to (connect or connect_to)",
            ));
        };
        let spec = Spec::Client(ClientOptions {
            connect: endpoint("server address", connect)?,
            tape: self.tape,
            replay: self.replay,
        });
        let mut handle = Handle::spawn(spec)?;
        verdict(handle.finish(None))
    }
}

/// A recording proxy: forwards every client to a real server and records
/// each session into a tape (or, for a folder path ending in `/`, a
/// cassette with one tape per connection).
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{Shutdown, TcpListener, TcpStream};
/// use tcptape::{MockServer, Recorder};
///
/// # fn main() -> Result<(), tcptape::Error> {
/// // The real server: answers "pong" to "ping".
/// let real = TcpListener::bind("127.0.0.1:0").unwrap();
/// let upstream = real.local_addr().unwrap();
/// std::thread::spawn(move || {
///     let (mut s, _) = real.accept().unwrap();
///     let mut ping = [0; 4];
///     s.read_exact(&mut ping).unwrap();
///     s.write_all(b"pong").unwrap();
/// });
///
/// let tape = std::env::temp_dir().join(format!("tcptape-doc-{}.tape", std::process::id()));
/// let rec = Recorder::start(upstream, &tape)?;
/// let mut client = TcpStream::connect(rec.addr()).unwrap();
/// client.write_all(b"ping").unwrap();
/// let mut pong = [0; 4];
/// client.read_exact(&mut pong).unwrap();
/// drop(client);
/// let report = rec.finish()?; // every tape complete
/// assert_eq!(report.tapes().count(), 1);
/// # std::fs::remove_file(&tape).unwrap();
/// # Ok(())
/// # }
/// ```
pub struct Recorder {
    handle: Handle,
}

impl Recorder {
    /// Starts recording sessions to `upstream` into `tape` (a file: one
    /// session; `{n}` in its name, or a folder `DIR/`: every session),
    /// listening on `127.0.0.1` and a free port.
    pub fn start(upstream: SocketAddr, tape: impl AsRef<Path>) -> Result<Recorder, Error> {
        Recorder::builder(upstream, tape).start()
    }

    /// A recorder with options; see [`RecorderBuilder`].
    pub fn builder(upstream: SocketAddr, tape: impl AsRef<Path>) -> RecorderBuilder {
        RecorderBuilder {
            upstream: upstream.to_string(),
            tape: tape.as_ref().to_path_buf(),
            listen: LOOPBACK_ANY_PORT.to_string(),
            buffer: DEFAULT_BUFFER,
            max_sessions: None,
            idle_timeout: None,
            grace: DEFAULT_GRACE,
        }
    }

    /// The TCP address clients connect to. Panics for a UNIX socket.
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    /// Where it listens, as the command line writes it.
    pub fn address(&self) -> String {
        self.handle.address()
    }

    /// Stops listening, lets sessions in progress end (within the grace
    /// period), and returns the report: `Err` when nothing was recorded or
    /// a session could not be recorded whole.
    pub fn finish(mut self) -> Result<Report, Error> {
        verdict(self.handle.finish(Some(Stop::Graceful)))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.handle.thread.is_some() {
            self.handle.finish(Some(Stop::Now));
        }
    }
}

/// Options of a [`Recorder`].
#[derive(Debug, Clone)]
pub struct RecorderBuilder {
    upstream: String,
    tape: PathBuf,
    listen: String,
    buffer: usize,
    max_sessions: Option<u64>,
    idle_timeout: Option<Duration>,
    grace: Duration,
}

impl RecorderBuilder {
    /// Listens on `addr` (`IP:PORT`, `[IPv6]:PORT`, `unix:/path`).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Listens on a UNIX domain socket at `path`.
    pub fn unix(mut self, path: impl AsRef<Path>) -> Self {
        self.listen = format!("unix:{}", path.as_ref().display());
        self
    }

    /// Ring buffer per direction and session, 1 KiB to 1 GiB.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes.clamp(1024, 1 << 30);
        self
    }

    /// With `{n}` or a cassette: stop after `n` sessions.
    pub fn max_sessions(mut self, n: u64) -> Self {
        self.max_sessions = Some(n.max(1));
        self
    }

    /// Ends a session after `timeout` without traffic.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How long `finish` lets sessions in progress go on (5 s by default).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Starts recording; returns once it listens.
    pub fn start(self) -> Result<Recorder, Error> {
        let spec = Spec::Proxy(proxy::Options {
            listen: endpoint("listen address", &self.listen)?,
            connect: endpoint("upstream address", &self.upstream)?,
            tape: self.tape,
            buffer: self.buffer,
            max_sessions: self.max_sessions,
            idle_timeout: self.idle_timeout,
            grace: self.grace,
            backlog: DEFAULT_BACKLOG,
            until_idle: false,
        });
        Ok(Recorder {
            handle: Handle::spawn(spec)?,
        })
    }
}
