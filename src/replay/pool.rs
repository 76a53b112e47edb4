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

use super::peer::{Arrival, Inbound, Peer};
use super::script::playback::Playback;
use super::script::{Action, Fault};
use super::session::Session;
use super::status::{PoolStatus, Status};
use crate::engine::net::{Address, Sent};
use crate::error::Error;
use crate::tape::{Direction, Source};

/// Tapes played side by side for one connection at most: enough for any
/// connection pool; bounded work per byte the client sends.
pub const WINDOW: usize = 64;
/// Client bytes kept to bring tapes beyond the window up to date.
pub const HISTORY_LIMIT: usize = 64 * 1024;
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

/// Tapes that agreed with the client's first bytes beyond the window.
#[derive(Debug)]
pub enum Reserve {
    /// There are none (left).
    Empty,
    /// Entries after `after`, in catalog order, may agree: the client's
    /// bytes so far are kept to bring them up to date.
    Waiting {
        after: usize,
        history: Vec<u8>,
        eof: bool,
    },
    /// There were more, but the client said more than the pool keeps
    /// before they could be tried.
    Lost { after: usize },
}

pub struct Pool<S: Source> {
    pub number: u64,
    peer: Peer,
    /// In catalog order.
    candidates: Vec<Candidate<S>>,
    /// The entry whose bytes go to the client, once one spoke.
    speaker: Option<usize>,
    reserve: Reserve,
    /// How the candidate that went furthest departed, for when none is left.
    best_failure: Option<(u64, Status)>,
    sent: u64,
    started: Instant,
    /// Bytes of buffers given back since the owner last asked.
    freed: usize,
}

/// What the candidates do next, taken together.
enum Move {
    Wait,
    Speak,
    Sleep(u64),
    Decide(Vec<usize>),
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

    pub fn addr(&self) -> &Address {
        self.peer.addr()
    }

    pub fn last_activity(&self) -> u64 {
        self.peer.last_activity
    }

    /// The catalog entries still in the running.
    pub fn entries(&self) -> impl Iterator<Item = usize> + '_ {
        self.candidates.iter().map(|c| c.entry)
    }

    pub fn heard_nothing(&self) -> bool {
        self.peer.heard_nothing()
    }

    /// Where to look for more candidates, when the pool wants some: the
    /// entry to look after and the client's bytes so far.
    pub fn wanted(&self) -> Option<(usize, &[u8], bool)> {
        match &self.reserve {
            Reserve::Waiting {
                after,
                history,
                eof,
            } if self.candidates.len() < WINDOW => Some((*after, history, *eof)),
            _ => None,
        }
    }

    /// Brings in `more` candidates (fresh playbacks of the entries after
    /// the last one tried), up to date with what the client sent; `last`
    /// is the last entry looked at, `None` when the catalog has no more.
    pub fn refill(&mut self, mut more: Vec<Candidate<S>>, last: Option<usize>) {
        let Reserve::Waiting { history, eof, .. } = &self.reserve else {
            return;
        };
        let (history, eof) = (history.as_slice(), *eof);
        let addr = self.peer.addr().clone();
        let tried = more.len();
        // A newcomer stands where the client does: past what was said.
        // What was said is not kept, so it cannot count as faithful.
        let said = self.sent;
        for candidate in &mut more {
            candidate.faithful = said == 0;
        }
        sift(&mut more, &mut self.best_failure, &addr, |playback| {
            playback.receive(history)?;
            if eof {
                playback.receive_eof()?;
            }
            match playback.skip_unseen(said)? {
                true => Ok(()),
                false => Err(Fault::BadSpan(
                    "its side of the tape is shorter than what was said".into(),
                )),
            }
        });
        debug!(
            "session {}: {tried} more tapes tried, {} of them agree",
            self.number,
            more.len()
        );
        self.candidates.append(&mut more);
        self.candidates.sort_by_key(|c| c.entry);
        self.reserve = match (last, std::mem::replace(&mut self.reserve, Reserve::Empty)) {
            (Some(after), Reserve::Waiting { history, eof, .. }) => Reserve::Waiting {
                after,
                history,
                eof,
            },
            _ => Reserve::Empty,
        };
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
            ..
        } = *self;
        Ok(Session::resumed(number, peer, chosen.playback, started))
    }

    /// The candidate that went furthest before departing, as a status.
    pub fn failure(&mut self) -> Status {
        match self.best_failure.take() {
            Some((_, status)) => status,
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
        self.resume(registry, now, scratch)
    }

    /// Bytes of buffers the candidates gave back since the last call.
    pub fn take_freed(&mut self) -> usize {
        std::mem::take(&mut self.freed)
    }

    /// Does whatever the socket and the candidates allow now.
    pub fn resume(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> PoolStatus {
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
            let received = self.receive(scratch);
            if received {
                self.peer.last_activity = now;
            }
            if self.wanted().is_some() {
                return PoolStatus::Refill;
            }
            if self.candidates.is_empty() {
                return PoolStatus::Failed(self.failure());
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
            ..
        } = self;
        let addr = peer.addr().clone();
        let received = peer.receive(scratch, BUDGET, |arrival| {
            remember(reserve, &arrival);
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

    fn next_move(&mut self) -> Move {
        let no_reserve = matches!(self.reserve, Reserve::Empty | Reserve::Lost { .. });
        if self.candidates.len() == 1 && no_reserve {
            return Move::Decide(vec![self.candidates[0].entry]);
        }
        let all: Vec<usize> = (0..self.candidates.len()).collect();
        let finished: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| self.candidates[i].playback.is_finished())
            .collect();
        if finished.len() == self.candidates.len() {
            return Move::Decide(self.preferred(finished));
        }
        // The faithful first: the client got what they recorded.
        let mut due: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| self.candidates[i].playback.is_due())
            .collect();
        due.sort_by_key(|&i| !self.candidates[i].faithful);
        let Some(&first_due) = due.first() else {
            return match finished.is_empty() {
                true => Move::Wait,
                // The session is over for some, others wait for bytes
                // that would have to come after it.
                false => Move::Decide(self.preferred(finished)),
            };
        };
        let speaker = due
            .iter()
            .copied()
            .find(|&i| Some(self.candidates[i].entry) == self.speaker)
            .unwrap_or(first_due);
        // Only candidates whose own next move is of the speaker's kind (send
        // or close) can follow it: one that closes here cannot follow bytes,
        // one with more to say cannot follow a close.
        let kind = std::mem::discriminant(&self.candidates[speaker].playback.action());
        let same_kind =
            |i: &usize| std::mem::discriminant(&self.candidates[*i].playback.action()) == kind;
        if !all.iter().all(same_kind) {
            let mut order = vec![speaker];
            let alike = due.iter().chain(&all).filter(|i| same_kind(i));
            for &i in alike.chain(&all) {
                if !order.contains(&i) {
                    order.push(i);
                }
            }
            return Move::Decide(self.preferred(order));
        }
        if self.speaker != Some(self.candidates[speaker].entry) {
            debug!(
                "session {}: {} speaks",
                self.number,
                self.candidates[speaker].playback.tape_name()
            );
            self.speaker = Some(self.candidates[speaker].entry);
        }
        match self.candidates[speaker].playback.wants_pause() {
            Some(due_ms) => Move::Sleep(due_ms),
            None => Move::Speak,
        }
    }

    /// The entries of candidates `order` (indices, best first), the
    /// faithful ones before the rest.
    fn preferred(&self, mut order: Vec<usize>) -> Vec<usize> {
        order.sort_by_key(|&i| !self.candidates[i].faithful);
        order.iter().map(|&i| self.candidates[i].entry).collect()
    }

    /// The others follow what the speaker just did: the bytes it `said`,
    /// or (`None`) its half-close.
    fn follow(&mut self, said: Option<&[u8]>) {
        let speaker = self.speaker;
        let addr = self.peer.addr().clone();
        let mut gone = Vec::new();
        for candidate in &mut self.candidates {
            if Some(candidate.entry) == speaker {
                continue;
            }
            let followed = match said {
                Some(bytes) => candidate.playback.skip(bytes),
                None => candidate.playback.shut_down().map(|()| Some(true)),
            };
            match followed {
                Ok(Some(same)) => candidate.faithful &= same,
                // Its side ends where the speaker's goes on: it cannot be
                // this connection's tape any more.
                Ok(None) => gone.push(candidate.entry),
                Err(fault) => {
                    let status = candidate.playback.fault_status(fault, &addr);
                    self.best_failure.get_or_insert((0, status));
                    gone.push(candidate.entry);
                }
            }
        }
        self.candidates.retain(|c| !gone.contains(&c.entry));
    }

    fn speaker_index(&self) -> Option<usize> {
        let speaker = self.speaker?;
        self.candidates.iter().position(|c| c.entry == speaker)
    }

    /// The speaker's next move: `Some(true)` when something went, `None`
    /// when the client is gone (every candidate with it).
    fn speak(&mut self) -> Option<bool> {
        let at = self.speaker_index()?;
        let Pool {
            peer,
            candidates,
            best_failure,
            sent,
            ..
        } = self;
        let addr = peer.addr().clone();
        let playback = &mut candidates[at].playback;
        if !playback.may_go() {
            return Some(false);
        }
        let step: Result<Option<Option<Vec<u8>>>, Fault> = match playback.action() {
            Action::Send { .. } if !peer.is_writable() => Ok(None),
            Action::Send { .. } => match playback.peek(CHUNK) {
                Ok(chunk) => match peer.write(chunk) {
                    Sent::Moved(n) => {
                        let said = chunk[..n].to_vec();
                        *sent += n as u64;
                        playback.consume(n).map(|()| Some(Some(said)))
                    }
                    Sent::Blocked => Ok(None),
                    Sent::Failed(_) => Err(playback.gone()),
                },
                Err(fault) => Err(fault),
            },
            Action::Shutdown { .. } => match peer.shutdown() {
                Ok(()) => playback.shut_down().map(|()| Some(None)),
                Err(_) => Err(playback.gone()),
            },
            Action::End => Ok(None),
        };
        match step {
            Ok(Some(said)) => {
                self.follow(said.as_deref());
                Some(true)
            }
            Ok(None) => Some(false),
            Err(_) if peer.inbound() == Inbound::Gone => {
                sift(candidates, best_failure, &addr, |playback| {
                    Err(playback.gone())
                });
                None
            }
            Err(fault) => {
                // This tape cannot be played on (an echo of a value never
                // captured): the others go on without it.
                let status = candidates[at].playback.fault_status(fault, &addr);
                candidates.remove(at);
                if best_failure.is_none() {
                    *best_failure = Some((0, status));
                }
                self.speaker = None;
                Some(false)
            }
        }
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

/// Keeps what the client sent while tapes beyond the window may still be
/// brought in; past `HISTORY_LIMIT` they are given up.
fn remember(reserve: &mut Reserve, arrival: &Arrival<'_>) {
    let Reserve::Waiting {
        after,
        history,
        eof,
    } = reserve
    else {
        return;
    };
    match arrival {
        Arrival::Data(bytes) if history.len() + bytes.len() > HISTORY_LIMIT => {
            debug!(
                "the client said more than {HISTORY_LIMIT} bytes: tapes beyond the window are given up"
            );
            *reserve = Reserve::Lost { after: *after };
        }
        Arrival::Data(bytes) => history.extend_from_slice(bytes),
        Arrival::Eof | Arrival::Reset => *eof = true,
    }
}

/// Keeps the candidates for which `step` goes well; remembers how the
/// furthest of the others departed.
fn sift<S: Source + Clone>(
    candidates: &mut Vec<Candidate<S>>,
    best_failure: &mut Option<(u64, Status)>,
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
            if best_failure.as_ref().is_none_or(|(best, _)| got > *best) {
                *best_failure = Some((got, status));
            }
            false
        }
    });
}
