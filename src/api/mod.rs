//! The library: a mock server, a mock client and a recorder for tests in
//! Rust. Each runs tcptape's own poll loop on a thread of its own; the
//! caller needs no runtime. A mock listens before `start` returns, so a
//! test can connect at once: no port race, no sleep.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use crate::engine::addr::Endpoint;
use crate::engine::event_loop::{Stop, StopHandle};
use crate::engine::net::Address;
use crate::error::Error;
use crate::fault::{Control, Faults, Role};
use crate::job::{self, Spec};
use crate::report::{Report, Verdict};

/// Where a mock or a recorder listens unless told otherwise.
const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";
/// How long `set_faults` waits at most for the loop to take new faults
/// (it takes them at its next wake-up, at once unless the machine stalls).
const SET_FAULTS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

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

    /// Hands the running service new faults: they take effect for the
    /// next bytes of its open connections, and for new ones.
    /// Returns once the service took them (or is gone).
    fn set_faults(&self, control: &Control, specs: &[&str], role: Role) -> Result<(), Error> {
        let set = control.set(faults(specs, role)?);
        self.stop.notify();
        let running = || self.thread.as_ref().is_some_and(|t| !t.is_finished());
        control.wait_taken(set, running, SET_FAULTS_PATIENCE);
        Ok(())
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

/// Fault SPECs (`--fault`) for a service in `role`: an error names the
/// SPEC and what is wrong with it.
fn faults<S: AsRef<str>>(specs: &[S], role: Role) -> Result<Faults, Error> {
    let faults = Faults::parse(specs).map_err(|reason| Error::setting("fault", reason))?;
    faults
        .check(role)
        .map_err(|reason| Error::setting("fault", reason))?;
    Ok(faults)
}

fn endpoint(what: &str, text: &str) -> Result<Endpoint, Error> {
    Endpoint::parse(text).map_err(|reason| Error::setting(what, reason))
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

        /// Injects a fault, as `--fault SPEC` does (`"reset,at=byte:3,conn=1"`,
        /// `"latency=200"`, `"slice=1"`...; see the README's "Faults"); may
        /// be given several times. A SPEC that is wrong fails `start` (or
        /// `run`) with [`Error::Setting`](crate::Error::Setting).
        pub fn fault(mut self, spec: &str) -> Self {
            self.faults.push(spec.to_string());
            self
        }
    };
}

mod client;
mod recorder;
mod server;

pub use client::{MockClient, MockClientBuilder};
pub use recorder::{Recorder, RecorderBuilder};
pub use server::{MockServer, MockServerBuilder};
