//! What both replay roles keep for a run: the settings every session
//! shares, the receive buffer, the report, the timers a connection files,
//! and how a session's end is reported.

use std::path::PathBuf;
use std::time::Duration;

use log::{error, info, warn};

use super::ReplayOptions;
use super::peer::{Inbound, Peer};
use super::script::playback::Settings;
use super::status::Status;
use crate::engine::buffers::Reclaim;
use crate::engine::event_loop::Context;
use crate::engine::net::Address;
use crate::error::Error;
use crate::fault::{Control, Faults, Role};
use crate::report::{Outcome, Report, SessionReport, Verdict};
use crate::tape::Direction;

/// Receive buffer shared by all sessions: what arrives is checked at once
/// and never kept, so one buffer serves them all.
const SCRATCH: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayTimer {
    /// The recorded delay before a connection's next frame is over.
    Delay { key: usize, number: u64 },
    /// Check whether a connection has waited too long for its peer.
    Timeout { key: usize, number: u64 },
    /// Continue a connection: it yielded to let others run, or its faults
    /// want it woken (a pace, a fault placed in time).
    Resume { key: usize, number: u64 },
    /// Accept again: after a batch of a burst, or after a session ended.
    ResumeAccept,
    /// The pause after running out of file descriptors is over.
    BackoffOver,
    /// Connections that wait for a cassette tape another one serves try
    /// again: a tape was given back.
    Rechoose,
    /// Check whether `--once` has waited too long for a connection.
    ConnectionWait,
    /// The grace period after a stop is over.
    Grace,
    /// `client` with a cassette: time to open the connection of tape `index`.
    Connect { index: usize },
}

/// Whether sessions may still start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sessions start as connections come (or as scheduled).
    Running,
    /// Stopped (a signal, the library, `--abort`): no session starts,
    /// those in progress finish within the grace period or are cut.
    Stopping,
}

/// How a session ended, before it is reported.
pub struct Ending {
    pub outcome: Outcome,
    /// Its summary line, when it did not pass.
    pub message: Option<String>,
    /// A mismatch's full report.
    pub details: Option<String>,
}

pub struct Run {
    /// The tape or cassette, as given.
    pub path: PathBuf,
    pub settings: Settings,
    pub timeout: Option<Duration>,
    print_reports: bool,
    pub grace: Duration,
    pub scratch: Box<[u8]>,
    pub reclaim: Reclaim,
    pub report: Report,
    /// Connections so far: their numbers.
    pub started: u64,
    /// Sessions that ended (probes are not sessions, nor are sessions a
    /// fault ended: a `--once` run waits for the client's next try).
    pub ended: u64,
    /// The tick a connection last started or ended, for `--once`'s wait.
    pub last_progress: u64,
    pub phase: Phase,
    /// The faults injected (`--fault`), and where new ones come from
    /// while the run goes on (the library's `set_faults`).
    pub faults: Faults,
    pub control: Option<Control>,
    /// Our role, as faults see it.
    role: Role,
}

impl Run {
    pub fn new(path: PathBuf, own: Direction, options: &ReplayOptions, now: u64) -> Run {
        Run {
            path,
            settings: Settings {
                own,
                compare: !options.no_assert,
                speed: options.speed,
                text_diff: options.text_diff,
            },
            timeout: options.timeout,
            print_reports: options.print_reports,
            grace: Duration::ZERO,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            reclaim: Reclaim::default(),
            report: Report::default(),
            started: 0,
            ended: 0,
            last_progress: now,
            phase: Phase::Running,
            faults: options.faults.clone(),
            control: options.control.clone(),
            role: match own {
                Direction::ServerToClient => Role::Server,
                Direction::ClientToServer => Role::Client,
            },
        }
    }

    /// Gives connection `number` (its `peer`) the faults it gets of the
    /// run's (none costs nothing).
    pub fn give_faults(&self, peer: &mut Peer, number: u64, now: u64) {
        peer.set_faults(&self.faults, (number, self.role), now);
    }

    /// Takes the faults the handle set since last asked, if any: they are
    /// the run's from now on (connections under way get them with
    /// `give_faults`). True when they changed.
    pub fn take_new_faults(&mut self) -> bool {
        Control::update(self.control.as_ref(), &mut self.faults)
    }

    /// Files the wake-up a connection's faults want.
    fn wake(
        &self,
        cx: &mut Context<'_, ReplayTimer>,
        (key, number): (usize, u64),
        peer: &mut Peer,
    ) {
        match peer.take_wake() {
            Some(at) if at <= cx.now => cx.defer(ReplayTimer::Resume { key, number }),
            Some(at) => cx.timers.insert(at, ReplayTimer::Resume { key, number }),
            None => {}
        }
    }

    /// The next connection's number.
    pub fn next_number(&mut self, now: u64) -> u64 {
        self.started += 1;
        self.last_progress = now;
        self.started
    }

    /// Files what a running status asks for (a turn after others, a
    /// delay, what faults wait for); a status that ends the session
    /// becomes its `Ending`. After a fault fired, a peer that leaves (having
    /// said something: else it is a probe) or keeps the session waiting
    /// past `--timeout` ended it by the fault.
    pub fn schedule(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        (key, number): (usize, u64),
        peer: &mut Peer,
        status: Status,
    ) -> Option<Ending> {
        let fired = peer.fired();
        let left = peer.inbound() != Inbound::Open && !peer.heard_nothing();
        let status = match status {
            Status::Mismatch { summary, .. } if !fired.is_empty() && left => Status::Faulted {
                summary: after_fault(
                    fired,
                    summary.strip_prefix("mismatch with ").unwrap_or(&summary),
                ),
            },
            Status::Failed(err @ Error::Timeout { .. }) if !fired.is_empty() => Status::Faulted {
                summary: after_fault(fired, &err.to_string()),
            },
            status => status,
        };
        let ending = self.ending(cx, (key, number), peer.addr(), status);
        if ending.is_none() {
            self.wake(cx, (key, number), peer);
        }
        ending
    }

    fn ending(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        (key, number): (usize, u64),
        peer: &Address,
        status: Status,
    ) -> Option<Ending> {
        match status {
            Status::Running => None,
            Status::Yielded => {
                cx.defer(ReplayTimer::Resume { key, number });
                None
            }
            Status::Sleep { due_ms } => {
                let deadline = cx.deadline_after(Duration::from_millis(due_ms));
                cx.timers
                    .insert(deadline, ReplayTimer::Delay { key, number });
                None
            }
            Status::Passed => Some(Ending {
                outcome: Outcome::Passed,
                message: None,
                details: None,
            }),
            Status::Updated { summary } => Some(Ending {
                outcome: Outcome::Updated,
                message: Some(summary),
                details: None,
            }),
            // The server hands a departed session over before it ends.
            Status::Departed => Some(Ending {
                outcome: Outcome::Error,
                message: Some(format!(
                    "session {number} with {peer}: departed, and nothing took it over"
                )),
                details: None,
            }),
            Status::Mismatch {
                summary, report, ..
            } => Some(Ending {
                outcome: Outcome::Mismatch,
                message: Some(summary),
                details: Some(report),
            }),
            Status::Faulted { summary } => Some(Ending {
                outcome: Outcome::Faulted,
                message: Some(format!("session {number} with {peer}: {summary}")),
                details: None,
            }),
            Status::Failed(err) => {
                // An address error names the peer already.
                let message = match err {
                    Error::Address { .. } => format!("session {number}: {err}"),
                    _ => format!("session {number} with {peer}: {err}"),
                };
                Some(Ending {
                    outcome: Outcome::Error,
                    message: Some(message),
                    details: None,
                })
            }
        }
    }

    /// Reports a session's end: the report, the log, the counts. A
    /// session cut short by a stop after a fault fired (a stall, most
    /// often) ended by the fault.
    pub fn record(
        &mut self,
        cx: &Context<'_, ReplayTimer>,
        (number, peer): (u64, &Address),
        tape: Option<PathBuf>,
        mut ending: Ending,
        (bytes, faults): ([u64; 2], Vec<String>),
    ) {
        if ending.outcome == Outcome::Cut && !faults.is_empty() {
            ending.outcome = Outcome::Faulted;
            ending.message = (ending.message).map(|m| after_fault(&faults, &m));
        }
        match (&ending.outcome, &ending.message) {
            (Outcome::Mismatch, _) => {
                if self.print_reports
                    && let Some(details) = &ending.details
                {
                    eprint!("{details}");
                }
            }
            (Outcome::Error, Some(message)) => error!("{message}"),
            (Outcome::Cut, Some(message)) => warn!("{message}"),
            (Outcome::Faulted, Some(message)) => info!("{message}"),
            _ => {}
        }
        let message = ending
            .message
            .map(|m| m.lines().next().unwrap_or_default().to_string());
        let outcome = ending.outcome;
        self.report.push(SessionReport {
            number,
            peer: peer.to_string(),
            tape,
            outcome,
            message,
            details: ending.details,
            bytes,
            faults,
        });
        if outcome != Outcome::Faulted {
            self.ended += 1;
        }
        self.last_progress = cx.now;
    }

    /// A connection that closed without a byte where the tape expected
    /// some: a readiness probe, not a session.
    pub fn probe(&mut self, cx: &Context<'_, ReplayTimer>, number: u64, addr: &Address) {
        info!("session {number}: {addr} closed without sending anything: a probe, not a session");
        self.report.probes += 1;
        self.last_progress = cx.now;
    }

    /// A connection that could not become a session.
    pub fn failed(&mut self, number: u64, addr: &Address, tape: Option<PathBuf>, err: Error) {
        error!("session {number}: {err}");
        self.ended += 1;
        self.report.push(SessionReport {
            number,
            peer: addr.to_string(),
            tape,
            outcome: Outcome::Error,
            message: Some(err.to_string()),
            details: None,
            bytes: [0, 0],
            faults: Vec::new(),
        });
    }

    /// Files the check of a connection's `--timeout`.
    pub fn arm_timeout(&self, cx: &mut Context<'_, ReplayTimer>, key: usize, number: u64) {
        if let Some(timeout) = self.timeout {
            cx.timers.insert(
                cx.deadline_after(timeout),
                ReplayTimer::Timeout { key, number },
            );
        }
    }

    /// A connection's timeout timer fired: the failure when it waited for
    /// `waiting` longer than `--timeout` since `last_activity`; otherwise
    /// the check is filed again for when it could be.
    pub fn check_timeout(
        &self,
        cx: &mut Context<'_, ReplayTimer>,
        (key, number): (usize, u64),
        last_activity: u64,
        waiting: Option<String>,
    ) -> Option<Status> {
        let timeout = self.timeout?;
        let limit = timeout.as_millis() as u64;
        let again = match waiting {
            Some(what) if cx.now.saturating_sub(last_activity) >= limit => {
                return Some(Status::Failed(timed_out(timeout, &what)));
            }
            Some(_) => last_activity + limit,
            None => cx.now + limit,
        };
        cx.timers
            .insert(again, ReplayTimer::Timeout { key, number });
        None
    }

    /// Fails the run: it waited `--timeout` for `what`.
    pub fn fail_waiting(&mut self, what: &str) {
        let Some(timeout) = self.timeout else {
            return;
        };
        let message = timed_out(timeout, what).to_string();
        error!("{message}");
        self.report.fail(Verdict::Error, message);
    }
}

/// What a session that ended after faults fired says: the faults, then
/// how it ended.
fn after_fault(fired: &[String], how: &str) -> String {
    let (s, names) = match fired {
        [one] => ("", format!("'{one}'")),
        many => ("s", format!("'{}'", many.join("', '"))),
    };
    format!("after the injected fault{s} {names}: {how}")
}

fn timed_out(timeout: Duration, what: &str) -> Error {
    Error::Timeout {
        after: timeout,
        waiting_for: what.to_string(),
        limit: "--timeout; 0 waits forever",
    }
}
