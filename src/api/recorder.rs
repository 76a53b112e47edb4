//! `Recorder`: a recording proxy in front of a real server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Handle, LOOPBACK_ANY_PORT, endpoint, faults, verdict};
use crate::engine::event_loop::{DEFAULT_GRACE, Stop};
use crate::engine::net::DEFAULT_BACKLOG;
use crate::error::Error;
use crate::fault::{Control, Role};
use crate::job::Spec;
use crate::proxy::{self, DEFAULT_BUFFER};
use crate::report::Report;

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
    control: Control,
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
            faults: Vec::new(),
            redact: Vec::new(),
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

    /// Replaces the running recorder's faults (`--fault` SPECs, as
    /// [`RecorderBuilder::fault`] takes them): they apply from the next
    /// bytes on, to the sessions already open too, and each tape records
    /// what its sides really received. `Err` names a SPEC that is wrong,
    /// and changes nothing.
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use tcptape::Recorder;
    ///
    /// # fn main() -> Result<(), tcptape::Error> {
    /// let real = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let tape = std::env::temp_dir().join(format!("tcptape-doc-faults-{}.tape", std::process::id()));
    /// let rec = Recorder::start(real.local_addr().unwrap(), &tape)?;
    /// rec.set_faults(&["latency=50"])?; // from now on, 50 ms more each way
    /// rec.clear_faults();
    /// # drop(rec);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_faults(&self, specs: &[&str]) -> Result<(), Error> {
        self.handle.set_faults(&self.control, specs, Role::Proxy)
    }

    /// Removes every fault of the running recorder.
    pub fn clear_faults(&self) {
        let _ = self.handle.set_faults(&self.control, &[], Role::Proxy);
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
    faults: Vec<String>,
    /// Redaction rules as the command line gives them: flag and value.
    redact: Vec<(&'static str, String)>,
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

    /// Injects a fault between the clients and the server, as `--fault
    /// SPEC` does; the tapes record what each side really received.
    pub fn fault(mut self, spec: &str) -> Self {
        self.faults.push(spec.to_string());
        self
    }

    /// Keeps the value of the environment variable `name` off the tapes,
    /// either direction: a secret span named `name` holds a placeholder
    /// (`--redact-env`). The variable must be set.
    pub fn redact_env(self, name: &str) -> Self {
        self.rule("--redact-env", name)
    }

    /// Keeps `text` off the tapes (`--redact`: escapes `\\`, `\r`, `\n`,
    /// `\t`, `\xHH`).
    pub fn redact(self, text: &str) -> Self {
        self.rule("--redact", text)
    }

    /// Keeps these bytes, in hex, off the tapes (`--redact-hex`).
    pub fn redact_hex(self, hex: &str) -> Self {
        self.rule("--redact-hex", hex)
    }

    /// Keeps the bytes after a prefix off the tapes, up to the line's end
    /// or a given end: `PREFIX` or `PREFIX..END` (`--redact-after`).
    pub fn redact_after(self, prefix: &str) -> Self {
        self.rule("--redact-after", prefix)
    }

    /// The rules of a rules file, one a line (`--redact-file`).
    pub fn redact_file(self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_string_lossy().into_owned();
        self.rule("--redact-file", &path)
    }

    fn rule(mut self, flag: &'static str, value: &str) -> Self {
        self.redact.push((flag, value.to_string()));
        self
    }

    /// Starts recording; returns once it listens. A rule that cannot be
    /// taken is an `Error::Setting` naming it.
    pub fn start(self) -> Result<Recorder, Error> {
        let control = Control::default();
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
            faults: faults(&self.faults, Role::Proxy)?,
            control: Some(control.clone()),
            redact: rules(&self.redact)?,
        });
        Ok(Recorder {
            handle: Handle::spawn(spec)?,
            control,
        })
    }
}

/// The rules the builder was given, resolved: variables read, files read.
fn rules(given: &[(&'static str, String)]) -> Result<crate::secrets::Rules, Error> {
    use crate::secrets::{self, Rules};
    use std::os::unix::ffi::OsStringExt;
    let env = |name: &str| std::env::var_os(name).map(OsStringExt::into_vec);
    let refused = |err: secrets::RuleError| Error::setting("redaction rule", err.0);
    let mut rules = Vec::new();
    for (flag, value) in given {
        if *flag != "--redact-file" {
            rules.push(secrets::parse_flag(flag, value, &env).map_err(refused)?);
            continue;
        }
        let text = std::fs::read_to_string(value)
            .map_err(|err| Error::file(Path::new(value), "read rules file", err))?;
        rules.extend(secrets::parse_file(value, &text, &env).map_err(refused)?);
    }
    Rules::new(rules).map_err(refused)
}
