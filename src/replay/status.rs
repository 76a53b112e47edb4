//! What waking a replayed connection says to its owner.

use crate::error::Error;

/// The outcome of waking a session.
#[derive(Debug)]
pub enum Status {
    Running,
    /// Out of rounds with work left: resume after this batch of events.
    Yielded,
    /// Our next frame waits out a recorded delay: call `delay_over` in
    /// `due_ms` milliseconds.
    Sleep {
        due_ms: u64,
    },
    /// The tape was played to its end and the peer matched it.
    Passed,
    /// With `--update`: the peer departed from the tape (`summary` says
    /// where), and the session went on and was recorded.
    Updated {
        summary: String,
    },
    /// With `--update` and an upstream: the client departed from the
    /// tape, and the session is to be handed over to the upstream.
    Departed,
    /// The peer departed from the tape; the report is ready to print.
    Mismatch {
        summary: String,
        report: String,
        /// Live bytes the peer sent before it departed.
        received: u64,
    },
    Failed(Error),
    /// A fault we injected ended the connection (a reset, a close):
    /// `summary` says which and where.
    Faulted {
        summary: String,
    },
}

/// The outcome of waking a pool (a cassette connection whose tape is not
/// decided yet).
#[derive(Debug)]
pub enum PoolStatus {
    /// As for a session.
    Running,
    Yielded,
    Sleep {
        due_ms: u64,
    },
    /// The candidates' next moves differ in a way one connection cannot
    /// follow (one closes while another answers), only one is left, or the
    /// session is over: commit to one of these entries, best first.
    Decide(Vec<usize>),
    /// Candidates dropped out and more tapes agreed with the client's first
    /// bytes than the pool plays at once: give it the next ones.
    Refill,
    /// Every candidate departed from what the client did: the status of
    /// the one that went furthest.
    Failed(Status),
}
