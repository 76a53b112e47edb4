//! Replay: `server` plays the recorded server to every client that connects,
//! `client` plays the recorded client against a real server. Both check
//! every byte the peer sends against the tape.
//!
//! - `server` and `client`: the two services, one per role;
//! - `run`: what both keep for a run (settings, report, timers);
//! - `conn`: a server connection's stages (choosing a cassette tape,
//!   deciding among several, playing one), `catalog` and `pool` the first
//!   two, `matching` the rule that keeps a tape for every connection;
//! - `session` (one connection, one tape) and `peer` (its socket);
//! - `script`: the tape read as a script, without I/O: the cursors over
//!   the peer's frames and ours, and the playback that pairs them;
//! - `load` checks a tape before anyone connects; `report` renders a
//!   mismatch; `status` is what waking a connection says.
//!
//! Tokens: the listener is 0; a `server` connection in slab slot `k` owns
//! token `2k + 1` for its client and `2k + 2` for the upstream it may be
//! handed over to (`--update`); a `client` session in slot `k` owns `k + 1`. Each session streams its tape through two cursors of its own
//! over one shared handle, so a thousand sessions cost a thousand small
//! buffers, never a thousand copies of the tape.
//!
//! When a run ends: `--once` (and `client`) after the one session, or every
//! tape of a cassette, was played, or as soon as one did not pass; `--abort`
//! at the first mismatch; a stop (signal, library) after a grace period for
//! the sessions in progress. Nothing waits forever unless asked to:
//! `--timeout` bounds every wait for a peer and, with `--once`, for the next
//! connection.

mod catalog;
mod client;
mod conn;
mod faults;
mod load;
mod matching;
mod peer;
mod pool;
mod report;
mod run;
mod script;
mod server;
mod session;
mod status;
#[cfg(test)]
mod testing;
mod update;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::addr::Endpoint;
use crate::fault::{Control, Faults};
use crate::tape::SharedTape;

pub(crate) use client::Client;
pub(crate) use server::Server;

/// How long a replay waits for its peer (or, with `--once`, for the next
/// connection) unless told otherwise: long enough for any test, short
/// enough that a wrong tape does not hang a CI job.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

type TapeFile = SharedTape;

/// Options shared by both replay roles.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplayOptions {
    pub no_assert: bool,
    /// Delays are replayed when this is set; 1.0 is recorded speed.
    pub speed: Option<f64>,
    /// How long to wait for the peer; `None` waits forever.
    pub timeout: Option<Duration>,
    pub text_diff: bool,
    /// Print each mismatch report on stderr as it happens (the command
    /// line); the library hands them over in its `Report` instead.
    pub print_reports: bool,
    /// Faults to inject (`--fault`).
    pub faults: Faults,
    /// Where new faults come from while the run goes on (the library).
    pub control: Option<Control>,
}

impl Default for ReplayOptions {
    fn default() -> ReplayOptions {
        ReplayOptions {
            no_assert: false,
            speed: None,
            timeout: Some(DEFAULT_TIMEOUT),
            text_diff: false,
            print_reports: false,
            faults: Faults::default(),
            control: None,
        }
    }
}

/// What `server` is asked to do; the command line and the library fill it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerOptions {
    pub listen: Endpoint,
    /// A tape, or a cassette folder.
    pub tape: PathBuf,
    pub replay: ReplayOptions,
    /// Stop at the first mismatch.
    pub abort: bool,
    /// One session (a cassette: every tape once), then the verdict.
    pub once: bool,
    /// Cassette: serve the tapes again once all were used.
    pub reuse: bool,
    /// A tape never played does not fail the run.
    pub allow_unused: bool,
    pub grace: Duration,
    pub backlog: u32,
    /// `--update`: where a client departs from its tape, its connection
    /// is handed over to `upstream` (the real server), and the session
    /// with it is written as a pending tape beside the tape.
    pub update: bool,
    pub upstream: Option<Endpoint>,
}

/// What `client` is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientOptions {
    pub connect: Endpoint,
    pub tape: PathBuf,
    pub replay: ReplayOptions,
    /// Where the server departs, go on and write what it really sent as a
    /// pending tape beside the old one (`TAPE.new`).
    pub update: bool,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}
