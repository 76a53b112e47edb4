//! What the proxy is asked to do, and the bounds of its settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::addr::Endpoint;
use crate::fault::{Control, Faults};

/// Placeholder in a tape path that turns the proxy into a daemon.
pub(crate) const NUMBER: &str = "{n}";
/// The largest ring per direction: rings start small and double while a
/// transfer fills them; 2 MiB reads and writes measured fastest here (4 MiB
/// fell out of the cache and got erratic: docs/performance.md).
pub(crate) const DEFAULT_BUFFER: usize = 2 * 1024 * 1024;
/// The bounds of `--buffer`.
pub(crate) const MIN_BUFFER: usize = 1024;
pub(crate) const MAX_BUFFER: usize = 1024 * 1024 * 1024;

/// What the proxy is asked to do; the command line and the library fill it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    pub listen: Endpoint,
    pub connect: Endpoint,
    /// A tape FILE (one session), a path with `{n}` (a daemon), or a
    /// cassette folder (`DIR/`).
    pub tape: PathBuf,
    /// Ring size per direction and session.
    pub buffer: usize,
    /// Sessions to record before the proxy stops listening.
    pub max_sessions: Option<u64>,
    pub idle_timeout: Option<Duration>,
    /// How long sessions in progress may go on after a stop was asked for.
    pub grace: Duration,
    pub backlog: u32,
    /// Stop once something was recorded and no session is open.
    pub until_idle: bool,
    /// Faults to inject (`--fault`), and where new ones come from (the library).
    pub faults: Faults,
    pub control: Option<Control>,
    /// What never reaches the tape.
    pub redact: crate::secrets::Rules,
}
