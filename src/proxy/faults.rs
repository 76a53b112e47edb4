//! The faults of a proxied session, where they meet its pipes: which
//! directions are stalled, how many of the bytes read each way are let go
//! (to the tape, then the peer) now, and when the EOF may follow. The
//! session's rings hold back what is not let go yet (`Ring::gate`), so
//! the tape records what each side really received.

use log::{debug, info};

use super::ProxyTimer;
use crate::engine::event_loop::Context;
use crate::engine::net::Socket;
use crate::engine::ring::Ring;
use crate::error::Error;
use crate::fault::{Allow, ConnFaults, Dir, Ending, Faults, Here, Kind, Role};
use crate::report::Outcome;
use crate::tape::Direction;

/// A direction's pipe as releasing sees it: its ring, the bytes its
/// source sent so far, and whether that source sent its EOF.
pub type Pipe<'a> = (&'a mut Ring, u64, bool);

/// The faults of one session; none costs nothing.
#[derive(Default)]
pub struct SessionFaults {
    faults: Option<Box<ConnFaults>>,
    /// The fault that ended the session.
    pub ending: Option<Ending>,
}

fn dir(direction: Direction) -> Dir {
    match direction {
        Direction::ClientToServer => Dir::Up,
        Direction::ServerToClient => Dir::Down,
    }
}

fn here(now: u64) -> Here {
    Here { frame: None, now }
}

impl SessionFaults {
    /// Gives session `number`, which read `read` bytes each way so far,
    /// the faults it gets of `faults` (the run's, or new ones while it
    /// runs). True when it has faults: its rings are gated.
    pub fn give(&mut self, faults: &Faults, (number, read): (u64, [u64; 2]), now: u64) -> bool {
        match &mut self.faults {
            Some(mine) => mine.replace(faults),
            None => {
                self.faults = faults.for_conn(number, Role::Proxy, now);
                if let Some(mine) = &mut self.faults {
                    mine.resume_counts(read);
                }
            }
        }
        self.faults.is_some()
    }

    /// True when the session has faults: its rings are gated.
    pub fn any(&self) -> bool {
        self.faults.is_some()
    }

    /// The SPECs of the faults that fired, in order.
    pub fn fired(&self) -> &[String] {
        self.faults.as_ref().map_or(&[], |f| f.fired())
    }

    /// A new turn: faults placed in time take effect. False when one
    /// ended the session (`ending` says how).
    pub fn turn(&mut self, now: u64) -> bool {
        let Some(faults) = &mut self.faults else {
            return true;
        };
        faults.new_turn();
        // Faults placed at a byte wait for `release`, which asks once the
        // bytes before them were forwarded.
        self.ending = Dir::BOTH.into_iter().find_map(|d| faults.poll_time(d, now));
        self.ending.is_none()
    }

    /// Of `directions`, those no fault stalls: a stalled one's source is
    /// not read, its destination not written.
    pub fn flowing(&self, directions: [Direction; 2]) -> impl Iterator<Item = Direction> + '_ {
        let stalled =
            move |d: &Direction| (self.faults.as_ref()).is_some_and(|f| f.stalled(dir(*d)));
        directions.into_iter().filter(move |d| !stalled(d))
    }

    /// Lets go of what the faults allow now of each direction's held
    /// bytes (a truncated direction's are dropped): whether any moved,
    /// and whether each EOF read may be recorded and forwarded now;
    /// `None` when a fault ended the session (`ending` says how).
    pub fn release(&mut self, pipes: [Pipe<'_>; 2], now: u64) -> Option<(bool, [bool; 2])> {
        let Some(faults) = &mut self.faults else {
            return Some((false, [true, true]));
        };
        let mut moved = false;
        let mut eof = [true, true];
        let directions = [Direction::ClientToServer, Direction::ServerToClient];
        for (pipe, direction) in pipes.into_iter().zip(directions) {
            match release(faults, dir(direction), pipe, now) {
                Ok((m, e)) => {
                    moved |= m;
                    eof[direction.index()] = e;
                }
                Err(ending) => {
                    self.ending = Some(ending);
                    return None;
                }
            }
        }
        Some((moved, eof))
    }

    /// The fault that ended the session acts on both connections: reset
    /// (RST) or closed (FIN). Returns why, for the tape's CUT frame.
    pub fn end(&self, sockets: [&Socket; 2], number: u64) -> Option<String> {
        let ending = self.ending.as_ref()?;
        let reason = ending.describe();
        info!("session {number}: {reason}");
        for socket in sockets {
            let done = match ending.kind {
                Kind::Reset => socket.reset_on_close(),
                _ => socket.shutdown_write(),
            };
            if let Err(err) = done {
                debug!("session {number}: {reason}: {}: {err}", socket.addr());
            }
        }
        Some(reason)
    }

    /// Files the wake-up the faults want for session `number` in `key`.
    pub fn wake(&mut self, cx: &mut Context<'_, ProxyTimer>, (key, number): (usize, u64)) {
        match self.faults.as_mut().and_then(|f| f.take_wake(cx.now)) {
            Some(at) if at <= cx.now => cx.defer(ProxyTimer::Resume { key, number }),
            Some(at) => cx.timers.insert(at, ProxyTimer::Resume { key, number }),
            None => {}
        }
    }

    /// How a session ended, once faults fired in it: cut short by a stop,
    /// idle, or left by a peer that gave up, it ended by the fault (a
    /// tape that could not be written did not).
    pub fn outcome(&self, outcome: Outcome, err: Option<Error>) -> (Outcome, Option<Error>) {
        let peers = matches!(&err, Some(Error::Timeout { .. } | Error::Address { .. }));
        let by_fault = outcome == Outcome::RecordedCut || (outcome == Outcome::Error && peers);
        match by_fault && !self.fired().is_empty() {
            true => (Outcome::Faulted, None),
            false => (outcome, err),
        }
    }

    /// The report's line for a session a fault ended.
    pub fn message(&self, number: u64) -> String {
        match &self.ending {
            Some(ending) => format!("session {number}: {}", ending.describe()),
            None => format!(
                "session {number}: ended after the injected faults '{}'",
                self.fired().join("', '")
            ),
        }
    }
}

/// Lets go of the bytes of `d` held in `ring` that the faults allow now
/// (`read`: all its source sent so far): whether any went, and whether
/// the EOF (`ended`) may go now. Asks only once the bytes let go before
/// were forwarded, so a fault placed at a byte finds them with the peer.
fn release(
    faults: &mut ConnFaults,
    d: Dir,
    (ring, read, ended): Pipe<'_>,
    now: u64,
) -> Result<(bool, bool), Ending> {
    if !ring.recorded_slices().0.is_empty() || ring.unrecorded_len() > 0 {
        return Ok((false, false));
    }
    let held = ring.held_len();
    if held > 0 {
        return match faults.allow(d, (read, now), here(now)) {
            Allow::Bytes(n) => {
                let n = usize::try_from(n).map_or(held, |n| n.min(held));
                ring.release(n);
                faults.sent(d, n as u64, now);
                Ok((n > 0, false))
            }
            Allow::Drop => {
                let n = ring.discard_held();
                faults.sent(d, n as u64, now);
                Ok((n > 0, false))
            }
            Allow::End(ending) => Err(ending),
            Allow::Wait(_) | Allow::Hold => Ok((false, false)),
        };
    }
    if !ended {
        return Ok((false, true));
    }
    match faults.allow_eof(d, now, here(now)) {
        Allow::Bytes(_) | Allow::Drop => Ok((false, true)),
        Allow::End(ending) => Err(ending),
        Allow::Wait(_) | Allow::Hold => Ok((false, false)),
    }
}
