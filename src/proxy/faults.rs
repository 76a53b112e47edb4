//! The faults of a proxied session, where they meet its pipes: which
//! directions are stalled, how many of the bytes read each way are let go
//! (to the tape, then the peer) now, and when the EOF may follow. The
//! session's ring holds back what is not let go yet (`Ring::gate`), so
//! the tape records what each side really received.

use crate::engine::ring::Ring;
use crate::fault::{Allow, ConnFaults, Dir, Ending, Faults, Here, Role};
use crate::tape::Direction;

/// What releasing a direction did.
pub enum Gate {
    /// Whether bytes were let go (or dropped), and whether the EOF read
    /// may be recorded and forwarded now.
    Moved(bool, bool),
    /// A fault ends the session.
    End(Ending),
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

/// Gives session `number`, which read `read` bytes each way so far, the
/// faults it gets of `faults`.
pub fn give(
    mine: &mut Option<Box<ConnFaults>>,
    faults: &Faults,
    (number, read): (u64, [u64; 2]),
    now: u64,
) {
    match mine {
        Some(mine) => mine.replace(faults),
        None => {
            *mine = faults.for_conn(number, Role::Proxy, now);
            if let Some(mine) = mine {
                mine.resume_counts(read);
            }
        }
    }
}

/// A new turn: faults placed in time take effect; one that ends the
/// session says so.
pub fn turn(faults: Option<&mut ConnFaults>, now: u64) -> Option<Ending> {
    let faults = faults?;
    faults.new_turn();
    Dir::BOTH
        .into_iter()
        .find_map(|d| faults.poll(d, here(now)))
}

/// True while a fault stalls `direction`: its source is not read, its
/// destination not written.
pub fn stalled(faults: Option<&ConnFaults>, direction: Direction) -> bool {
    faults.is_some_and(|f| f.stalled(dir(direction)))
}

/// Lets go of the bytes of `direction` held in `ring` that the faults
/// allow now (`read`: all its source sent so far); a truncated
/// direction's are dropped. Asks only once the bytes let go before were
/// forwarded, so a fault placed at a byte finds them with the peer.
pub fn release(
    faults: &mut ConnFaults,
    (direction, ring, read, ended): (Direction, &mut Ring, u64, bool),
    now: u64,
) -> Gate {
    let d = dir(direction);
    if !ring.recorded_slices().0.is_empty() || ring.unrecorded_len() > 0 {
        return Gate::Moved(false, false);
    }
    let held = ring.held_len();
    if held > 0 {
        match faults.allow(d, (read, now), here(now)) {
            Allow::Bytes(n) => {
                let n = usize::try_from(n).map_or(held, |n| n.min(held));
                ring.release(n);
                faults.sent(d, n as u64, now);
                return Gate::Moved(n > 0, false);
            }
            Allow::Drop => {
                let n = ring.discard_held();
                faults.sent(d, n as u64, now);
                return Gate::Moved(n > 0, false);
            }
            Allow::End(ending) => return Gate::End(ending),
            Allow::Wait(_) | Allow::Hold => return Gate::Moved(false, false),
        }
    }
    if !ended {
        return Gate::Moved(false, true);
    }
    match faults.allow_eof(d, now, here(now)) {
        Allow::Bytes(_) | Allow::Drop => Gate::Moved(false, true),
        Allow::End(ending) => Gate::End(ending),
        Allow::Wait(_) | Allow::Hold => Gate::Moved(false, false),
    }
}
