//! A cassette connection whose tape is not decided yet. Every unused tape
//! that agrees with all the client sent so far is played side by side: one
//! of them *speaks* (its bytes go to the client), the others *follow*: each
//! moves its own stream on by as many bytes as the client got, so every
//! candidate stands where the client does whoever spoke. The client's
//! bytes are checked against every candidate, and those that depart drop
//! out.
//!
//! Which candidate speaks never decides which tape the connection gets:
//! the speaker is one whose next bytes are due, and when it has nothing
//! due while another has (their recordings cut the same bytes into other
//! frames, or answered a pipelined request earlier), the other takes
//! over where it stands. So tapes that differ only in how the same bytes
//! fell into frames, or in a value of the same length (a connection id),
//! stay in the running until the client's bytes tell them apart.
//!
//! The pool commits to one tape when one is left, when the session is
//! over, or when the candidates' next moves cannot all be followed by one
//! connection (one closes while another answers). It does not choose: it
//! says which candidates could go on (`Decide`), and the server picks one
//! so that other undecided connections keep a tape each where possible.
//!
//! At most `WINDOW` candidates play at once. When more tapes agreed with
//! the client's first bytes, the pool keeps what the client sent (up to
//! `HISTORY_LIMIT`) and brings the next ones in as candidates drop out.

use std::convert::Infallible;
use std::time::Instant;

use log::debug;
use mio::Registry;
use mio::event::Event;

mod moves;
mod window;

use super::faults::Frames;
use super::peer::{Arrival, Inbound, Peer};
use super::script::playback::Playback;
use super::script::{Action, Fault};
use super::session::Session;
use super::status::{PoolStatus, Status};
use super::update::{Departed, Handover};
use crate::engine::net::Address;
use crate::error::Error;
use crate::tape::{Direction, Source};
use moves::Move;
pub use window::Reserve;
use window::{HISTORY_LIMIT, remember};

/// Tapes played side by side for one connection at most: enough for any
/// connection pool; bounded work per byte the client sends.
pub const WINDOW: usize = 64;
/// Bytes sent at a time.
const CHUNK: usize = 16 * 1024;
/// Rounds of receive-and-send per wake-up before yielding.
const MAX_ROUNDS: usize = 32;
/// Bytes read per wake-up before yielding.
const BUDGET: u64 = 256 * 1024;

/// A cassette tape the connection may turn out to be.
pub struct Candidate<S: Source> {
    /// Its entry in the catalog.
    pub entry: usize,
    pub playback: Playback<S>,
    /// Every byte said so far is its own: when tapes must be decided
    /// between, the client got what these recorded.
    pub faithful: bool,
}

impl<S: Source> Candidate<S> {
    pub fn new(entry: usize, playback: Playback<S>) -> Candidate<S> {
        Candidate {
            entry,
            playback,
            faithful: true,
        }
    }
}

pub struct Pool<S: Source> {
    pub number: u64,
    peer: Peer,
    /// In catalog order.
    candidates: Vec<Candidate<S>>,
    /// The entry whose bytes go to the client, once one spoke.
    speaker: Option<usize>,
    reserve: Reserve,
    /// How the candidate that went furthest departed (and its entry), for
    /// when none is left.
    best_failure: Option<Failure>,
    /// With `--update` and an upstream: what a hand-over takes, should the
    /// client depart from every tape.
    handover: Option<Handover>,
    sent: u64,
    started: Instant,
    /// Bytes of buffers given back since the owner last asked.
    freed: usize,
}

impl<S: Source + Clone> Pool<S> {
    /// A pool over a registered peer; `received` (and `eof`) are what the
    /// client sent while the candidates were narrowed down by its first
    /// bytes (the peer counted them as they came).
    pub fn new(
        number: u64,
        peer: Peer,
        candidates: Vec<Candidate<S>>,
        reserve: Reserve,
        (received, eof): (&[u8], bool),
    ) -> Pool<S> {
        let mut pool = Pool {
            number,
            peer,
            candidates,
            speaker: None,
            reserve,
            best_failure: None,
            handover: None,
            sent: 0,
            started: Instant::now(),
            freed: 0,
        };
        let addr = pool.peer.addr().clone();
        let mut fed = |playback: &mut Playback<S>| {
            playback.receive(received)?;
            if eof {
                playback.receive_eof()?;
            }
            Ok(())
        };
        sift(
            &mut pool.candidates,
            &mut pool.best_failure,
            &addr,
            &mut fed,
        );
        pool
    }

    /// Plays with `--update` and an upstream: where the client departs
    /// from every tape, the pool ends `Departed`, to be handed over with
    /// the tape that went furthest. `received` and `eof` are what the pool
    /// was made with.
    pub fn with_handover(mut self, (received, eof): (&[u8], bool)) -> Pool<S> {
        let mut handover = Handover::new();
        handover.heard(&Arrival::Data(received));
        if eof {
            handover.heard(&Arrival::Eof);
        }
        self.handover = Some(handover);
        self
    }

    pub fn last_activity(&self) -> u64 {
        self.peer.last_activity
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    pub fn peer_mut(&mut self) -> &mut Peer {
        &mut self.peer
    }

    /// The catalog entries still in the running.
    pub fn entries(&self) -> impl Iterator<Item = usize> + '_ {
        self.candidates.iter().map(|c| c.entry)
    }

    pub fn heard_nothing(&self) -> bool {
        self.peer.heard_nothing()
    }

    /// Drops the candidate of `entry` (another connection took it); false
    /// when no candidate is left and none may come.
    pub fn remove_entry(&mut self, entry: usize) -> bool {
        self.candidates.retain(|c| c.entry != entry);
        if self.speaker == Some(entry) {
            self.speaker = None;
        }
        !self.candidates.is_empty() || matches!(self.reserve, Reserve::Waiting { .. })
    }

    /// Becomes the session of the candidate of `entry`; the pool back when
    /// `entry` is none of its candidates.
    pub fn commit(mut self: Box<Self>, entry: usize) -> Result<Session<S>, Box<Self>> {
        let Some(at) = self.candidates.iter().position(|c| c.entry == entry) else {
            return Err(self);
        };
        let chosen = self.candidates.swap_remove(at);
        debug!(
            "session {}: {} is {} (of {} tapes that agreed)",
            self.number,
            self.peer.addr(),
            chosen.playback.tape_name(),
            self.candidates.len() + 1
        );
        let Pool {
            number,
            peer,
            started,
            handover,
            ..
        } = *self;
        let session = Session::resumed(number, peer, chosen.playback, started);
        Ok(match handover {
            Some(handover) => session.with_handover(handover),
            None => session,
        })
    }

    /// With an upstream, once the client departed from every tape: the
    /// entry of the one that went furthest, to hand over with.
    pub fn departed_entry(&self) -> Option<usize> {
        match (&self.handover, &self.best_failure) {
            (Some(handover), Some(failure)) if handover.departed() => Some(failure.entry),
            _ => None,
        }
    }

    /// With an upstream: how many of the tape's client bytes the client
    /// was answered (what a hand-over plays the upstream first).
    pub fn answered(&self) -> Option<u64> {
        self.handover.as_ref().and_then(Handover::answered)
    }

    /// A pool whose client departed, taken apart for the hand-over.
    pub fn into_departed(mut self: Box<Self>) -> Result<Departed, Box<Pool<S>>> {
        if self.departed_entry().is_none() {
            return Err(self);
        }
        let departure = match self.handover.take().map(Handover::into_departure) {
            Some(Ok(departure)) => departure,
            Some(Err(handover)) => {
                self.handover = Some(handover);
                return Err(self);
            }
            None => return Err(self),
        };
        let Pool {
            number,
            peer,
            started,
            ..
        } = *self;
        Ok(Departed {
            number,
            peer,
            departure,
            started,
        })
    }

    /// No candidate is left: with an upstream, a client that departed from
    /// the tapes (rather than went away) is handed over; else the run
    /// hears how the furthest candidate departed.
    fn none_left(&mut self) -> PoolStatus {
        let eof = self.peer.inbound() != Inbound::Open;
        if let (Some(handover), Some(failure)) = (&mut self.handover, &self.best_failure)
            && let Status::Mismatch { summary, .. } = &failure.status
            && self.peer.inbound() != Inbound::Gone
        {
            if !handover.can_hand_over() {
                log::info!("{}", handover.why_not());
                return PoolStatus::Failed(self.failure());
            }
            handover.depart(summary.clone(), eof);
            return PoolStatus::Failed(Status::Departed);
        }
        PoolStatus::Failed(self.failure())
    }

    /// The candidate that went furthest before departing, as a status.
    pub fn failure(&mut self) -> Status {
        match self.best_failure.take() {
            Some(failure) => failure.status,
            None => {
                let lost = match self.reserve {
                    Reserve::Lost { after } => format!(
                        "; more tapes after entry {} agreed with its first bytes but were not tried: a connection plays {WINDOW} tapes at once and keeps {} KiB of what the client sent to try more",
                        after + 1,
                        HISTORY_LIMIT / 1024
                    ),
                    _ => String::new(),
                };
                // What the client sent agreed with every tape at first:
                // they parted where the pool could not follow them all.
                let summary = format!(
                    "mismatch with client {}: no tape of the cassette agrees with this connection{lost}",
                    self.peer.addr()
                );
                Status::Mismatch {
                    report: format!("{summary}\n"),
                    summary,
                    received: self.peer.received(),
                }
            }
        }
    }

    pub fn ready(
        &mut self,
        registry: &Registry,
        event: &Event,
        now: u64,
        scratch: &mut [u8],
    ) -> PoolStatus {
        self.peer.note(event);
        self.resume(registry, now, scratch)
    }

    /// The speaker's recorded delay is over.
    pub fn delay_over(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> PoolStatus {
        for candidate in &mut self.candidates {
            candidate.playback.delay_over();
        }
        self.peer.ready_now(now);
        self.resume(registry, now, scratch)
    }

    /// Bytes of buffers the candidates gave back since the last call.
    pub fn take_freed(&mut self) -> usize {
        std::mem::take(&mut self.freed)
    }

    /// Does whatever the socket and the candidates allow now.
    pub fn resume(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> PoolStatus {
        // Which tape's frames count is not decided yet: faults placed at
        // a frame wait for the session.
        self.peer.turn(now, Frames::default());
        let status = self.rounds(now, scratch);
        if matches!(status, PoolStatus::Running | PoolStatus::Sleep { .. }) {
            for candidate in &mut self.candidates {
                self.freed += candidate.playback.park();
            }
        }
        let sending = !self.peer.is_writable()
            && self
                .candidates
                .iter()
                .any(|c| matches!(c.playback.action(), Action::Send { .. }) && c.playback.is_due());
        if let Err(err) = self.peer.want(registry, sending) {
            return PoolStatus::Failed(Status::Failed(Error::address(
                self.peer.addr(),
                "poll",
                err,
            )));
        }
        status
    }

    fn rounds(&mut self, now: u64, scratch: &mut [u8]) -> PoolStatus {
        for _ in 0..MAX_ROUNDS {
            if let Some(status) = self.peer.faulted_status() {
                return PoolStatus::Failed(status);
            }
            let received = self.receive(scratch);
            if received {
                self.peer.last_activity = now;
            }
            if self.wanted().is_some() {
                return PoolStatus::Refill;
            }
            if self.candidates.is_empty() {
                return self.none_left();
            }
            match self.next_move() {
                Move::Decide(entries) => return PoolStatus::Decide(entries),
                Move::Sleep(due_ms) => return PoolStatus::Sleep { due_ms },
                Move::Wait if received => {}
                Move::Wait => return PoolStatus::Running,
                Move::Speak => match self.speak() {
                    Some(true) => self.peer.last_activity = now,
                    Some(false) if !received => return PoolStatus::Running,
                    Some(false) => {}
                    None => return PoolStatus::Failed(self.failure()),
                },
            }
        }
        PoolStatus::Yielded
    }

    /// Reads everything available and gives it to every candidate.
    fn receive(&mut self, scratch: &mut [u8]) -> bool {
        let Pool {
            peer,
            candidates,
            best_failure,
            reserve,
            handover,
            ..
        } = self;
        let addr = peer.addr().clone();
        let received = peer.receive(scratch, BUDGET, |arrival| {
            remember(reserve, &arrival);
            if let Some(handover) = handover.as_mut() {
                handover.heard(&arrival);
            }
            sift(candidates, best_failure, &addr, |playback| match &arrival {
                Arrival::Data(bytes) => playback.receive(bytes),
                Arrival::Eof => playback.receive_eof(),
                Arrival::Reset => playback.receive_reset(),
            });
            Ok::<(), Infallible>(())
        });
        let Ok(received) = received;
        if let Some(speaker) = self.speaker
            && !self.candidates.iter().any(|c| c.entry == speaker)
        {
            self.speaker = None;
        }
        received
    }

    /// What the connection waits for, for `--timeout` messages.
    pub fn waiting_for(&self) -> Option<String> {
        let names: Vec<&str> = self
            .candidates
            .iter()
            .take(3)
            .map(|c| c.playback.tape_name())
            .collect();
        let more = self.candidates.len().saturating_sub(3);
        let and_more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let owed = self.candidates.first().and_then(|c| c.playback.owed())?;
        Some(format!(
            "{owed}, which tells {}{and_more} apart",
            names.join(", ")
        ))
    }

    /// Bytes from client to server and from server to client.
    pub fn bytes(&self) -> [u64; 2] {
        let own = self
            .candidates
            .first()
            .map_or(Direction::ServerToClient, |c| c.playback.settings().own);
        match own {
            Direction::ClientToServer => [self.sent, self.peer.received()],
            Direction::ServerToClient => [self.peer.received(), self.sent],
        }
    }

    pub fn log_end(&self, verdict: &str) {
        log::info!(
            "session {} with {}: {verdict} after {:.3}s before its tape was decided",
            self.number,
            self.peer.addr(),
            self.started.elapsed().as_secs_f64(),
        );
    }

    pub fn close(self, registry: &Registry) {
        self.peer.close(registry);
    }
}

/// How a candidate departed.
struct Failure {
    /// Client bytes it had checked.
    got: u64,
    status: Status,
    entry: usize,
}

/// Keeps the candidates for which `step` goes well; remembers how the
/// furthest of the others departed.
fn sift<S: Source + Clone>(
    candidates: &mut Vec<Candidate<S>>,
    best_failure: &mut Option<Failure>,
    addr: &Address,
    mut step: impl FnMut(&mut Playback<S>) -> Result<(), Fault>,
) {
    candidates.retain_mut(|candidate| match step(&mut candidate.playback) {
        Ok(()) => true,
        Err(fault) => {
            let status = candidate.playback.fault_status(fault, addr);
            let got = match &status {
                Status::Mismatch { received, .. } => *received,
                _ => 0,
            };
            if best_failure.as_ref().is_none_or(|best| got > best.got) {
                *best_failure = Some(Failure {
                    got,
                    status,
                    entry: candidate.entry,
                });
            }
            false
        }
    });
}

#[cfg(test)]
mod tests;
