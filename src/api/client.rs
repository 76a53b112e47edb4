//! `MockClient`: a tape's client side played against a real server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Handle, endpoint, faults, verdict};
use crate::error::Error;
use crate::fault::Role;
use crate::job::Spec;
use crate::replay::{ClientOptions, ReplayOptions};
use crate::report::Report;

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
            update: false,
            faults: Vec::new(),
        }
    }
}

/// Options of a [`MockClient`] run.
#[derive(Debug, Clone)]
pub struct MockClientBuilder {
    tape: PathBuf,
    connect: Option<String>,
    replay: ReplayOptions,
    update: bool,
    faults: Vec<String>,
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

    /// Where the server departs from the tape, goes on and writes what it
    /// really sent as a pending tape beside the old one (`TAPE.new`, for
    /// `tcptape review`); the run's verdict is then `Pending`.
    /// `TCPTAPE_UPDATE=1` in the environment does the same, except under
    /// `CI=true`.
    pub fn update(mut self, update: bool) -> Self {
        self.update = update;
        self
    }

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
            replay: ReplayOptions {
                faults: faults(&self.faults, Role::Client)?,
                ..self.replay
            },
            update: crate::job::update_wanted(self.update, &crate::job::Environment::read()),
        });
        let mut handle = Handle::spawn(spec)?;
        verdict(handle.finish(None))
    }
}
