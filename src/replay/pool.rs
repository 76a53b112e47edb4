//! A cassette connection whose tape is not decided yet. Every unused tape
//! that agrees with all the client sent so far is played side by side;
//! what they all would send next goes out (a shared banner, the same
//! answer to the same request). Where their answers differ (redis tells
//! each connection its own id in the same handshake), the first
//! candidate answers for all of them and the others skip their answer:
//! the client's next bytes tell them apart. The connection commits to one
//! tape when their next moves differ in kind (one answers, another waits
//! or closes), or when the session ends. So a pool of connections that
//! start alike (a database driver's handshake, an SMTP greeting) replays
//! in whatever order its connections come.
//!
//! The pool does not choose: it says which candidates could go on
//! (`Decide`), and the replayer picks one so that other undecided
//! connections keep a tape each where possible.

use std::io::{self, Read, Write};
use std::time::Instant;

use log::debug;
use mio::Registry;
use mio::event::Event;

use super::playback::Playback;
use super::script::{Action, Fault};
use super::session::{Session, Status, shut_down};
use crate::engine::net::{Address, Socket};
use crate::tape::{Direction, Source};

/// Tapes played side by side for one connection at most: the lowest
/// numbered that agree. Enough for any connection pool; bounded memory.
pub const MAX_CANDIDATES: usize = 64;
/// Bytes compared (and sent) at a time while the candidates agree.
const CHUNK: usize = 16 * 1024;
/// Rounds of receive-and-send per wake-up before yielding.
const MAX_ROUNDS: usize = 32;

/// A cassette tape the connection may turn out to be.
pub struct Candidate<S: Source> {
    /// Its entry in the catalog.
    pub entry: usize,
    pub playback: Playback<S>,
}

/// The outcome of waking a pool.
pub enum PoolStatus {
    Running,
    Yielded,
    Sleep {
        due_ms: u64,
    },
    /// The candidates' next moves differ (or the session is over): commit
    /// to one of these entries, best first.
    Decide(Vec<usize>),
    /// Every candidate departed from what the client did: the status of
    /// the one that went furthest.
    Failed(Status),
}

pub struct Pool<S: Source> {
    pub number: u64,
    socket: Socket,
    peer_done: bool,
    candidates: Vec<Candidate<S>>,
    /// The candidates' answers differed: the first one answers for all
    /// until its turn is over (the others skipped theirs).
    speaking: bool,
    /// How the candidate that went furthest departed, for when none is left.
    best_failure: Option<(u64, String, Status)>,
    received: u64,
    sent: u64,
    started: Instant,
    pub last_activity: u64,
}

impl<S: Source + Clone> Pool<S> {
    /// A pool over a registered socket; `received` (and `eof`) are what the
    /// client sent while the candidates were narrowed down by its first
    /// bytes.
    pub fn new(
        number: u64,
        socket: Socket,
        candidates: Vec<Candidate<S>>,
        (received, eof): (&[u8], bool),
        now: u64,
    ) -> Pool<S> {
        let mut pool = Pool {
            number,
            socket,
            peer_done: false,
            candidates,
            speaking: false,
            best_failure: None,
            received: 0,
            sent: 0,
            started: Instant::now(),
            last_activity: now,
        };
        pool.feed(received);
        if eof {
            pool.feed_eof();
        }
        pool
    }

    pub fn addr(&self) -> &Address {
        &self.socket.addr
    }

    /// The catalog entries still in the running.
    pub fn entries(&self) -> impl Iterator<Item = usize> + '_ {
        self.candidates.iter().map(|c| c.entry)
    }

    /// True while not a byte came from the client.
    pub fn heard_nothing(&self) -> bool {
        self.received == 0
    }

    /// Drops the candidate of `entry` (another connection took it); false
    /// when no candidate is left.
    pub fn remove_entry(&mut self, entry: usize) -> bool {
        self.candidates.retain(|c| c.entry != entry);
        !self.candidates.is_empty()
    }

    /// Becomes the session of the candidate of `entry`.
    pub fn commit(mut self, entry: usize, now: u64) -> Option<Session<S>> {
        let at = self.candidates.iter().position(|c| c.entry == entry)?;
        let chosen = self.candidates.swap_remove(at);
        debug!(
            "session {}: {} is {} (of {} tapes that agreed)",
            self.number,
            self.socket.addr,
            chosen.playback.tape_name(),
            self.candidates.len() + 1
        );
        let mut session = Session::resumed(
            self.number,
            self.socket,
            chosen.playback,
            self.received,
            now,
        );
        if self.peer_done {
            session.set_peer_done();
        }
        session.last_activity = self.last_activity;
        Some(session)
    }

    /// The candidate that went furthest before departing, as a status.
    pub fn failure(&mut self) -> Status {
        match self.best_failure.take() {
            Some((_, _, status)) => status,
            None => Status::Failed(crate::error::Error::Session(
                "no tape of the cassette agrees with this connection".into(),
            )),
        }
    }

    /// Gives every candidate bytes the client sent; those that depart drop out.
    fn feed(&mut self, data: &[u8]) {
        self.received += data.len() as u64;
        self.sift(|playback| playback.receive(data));
    }

    fn feed_eof(&mut self) {
        self.peer_done = true;
        self.sift(|playback| playback.receive_eof());
    }

    /// Keeps the candidates for which `step` goes well; remembers how the
    /// furthest of the others departed.
    fn sift(&mut self, mut step: impl FnMut(&mut Playback<S>) -> Result<(), Fault>) {
        let addr = self.socket.addr.clone();
        let mut kept = Vec::with_capacity(self.candidates.len());
        for mut candidate in self.candidates.drain(..) {
            match step(&mut candidate.playback) {
                Ok(()) => kept.push(candidate),
                Err(fault) => {
                    let status = candidate.playback.fault_status(fault, &addr);
                    let got = match &status {
                        Status::Mismatch { received, .. } => *received,
                        _ => 0,
                    };
                    let better = self
                        .best_failure
                        .as_ref()
                        .is_none_or(|(best, _, _)| got > *best);
                    if better {
                        let name = candidate.playback.tape_name().to_string();
                        self.best_failure = Some((got, name, status));
                    }
                }
            }
        }
        self.candidates = kept;
    }

    pub fn ready(
        &mut self,
        registry: &Registry,
        event: &Event,
        now: u64,
        scratch: &mut [u8],
    ) -> PoolStatus {
        self.socket.note(event);
        self.resume(registry, now, scratch)
    }

    /// The shared delay is over.
    pub fn delay_over(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> PoolStatus {
        for candidate in &mut self.candidates {
            candidate.playback.delay_over();
        }
        self.resume(registry, now, scratch)
    }

    /// Does whatever the socket and the candidates allow now.
    pub fn resume(&mut self, registry: &Registry, now: u64, scratch: &mut [u8]) -> PoolStatus {
        let status = self.rounds(now, scratch);
        if matches!(status, PoolStatus::Running | PoolStatus::Sleep { .. }) {
            for candidate in &mut self.candidates {
                candidate.playback.park();
            }
        }
        let sending =
            !self.socket.writable && (self.speaking || self.all_may_act() && self.sends_next());
        if let Err(err) = self.socket.want(registry, sending) {
            return PoolStatus::Failed(Status::Failed(crate::error::Error::address(
                &self.socket.addr,
                "poll",
                err,
            )));
        }
        status
    }

    fn all_may_act(&self) -> bool {
        self.candidates.iter().all(|c| c.playback.may_act())
    }

    fn sends_next(&self) -> bool {
        self.candidates
            .iter()
            .all(|c| matches!(c.playback.action(), Action::Send { .. }))
    }

    fn rounds(&mut self, now: u64, scratch: &mut [u8]) -> PoolStatus {
        for _ in 0..MAX_ROUNDS {
            let received = self.receive(scratch);
            if self.candidates.is_empty() {
                return PoolStatus::Failed(self.failure());
            }
            if received {
                self.last_activity = now;
            }
            if self.speaking {
                match self.speak() {
                    Ok(true) => {
                        self.last_activity = now;
                        continue;
                    }
                    Ok(false) if self.speaking => return PoolStatus::Running,
                    Ok(false) => continue,
                    Err(()) => return PoolStatus::Failed(self.failure()),
                }
            }
            let ready: Vec<usize> = self
                .candidates
                .iter()
                .filter(|c| c.playback.may_act() || c.playback.is_finished())
                .map(|c| c.entry)
                .collect();
            if ready.is_empty() {
                if received {
                    continue;
                }
                return PoolStatus::Running;
            }
            if ready.len() < self.candidates.len() {
                // Some would answer now, some wait for more: the ones that
                // answer are what the client is waiting for.
                return PoolStatus::Decide(ready);
            }
            let sent = match self.step() {
                Ok(Step::Decide) => return PoolStatus::Decide(ready),
                Ok(Step::Sleep(due_ms)) => return PoolStatus::Sleep { due_ms },
                Ok(Step::Moved(moved)) => moved,
                Err(()) => return PoolStatus::Failed(self.failure()),
            };
            if sent {
                self.last_activity = now;
            }
            if !received && !sent {
                return PoolStatus::Running;
            }
        }
        PoolStatus::Yielded
    }

    /// Reads everything available and gives it to every candidate.
    fn receive(&mut self, scratch: &mut [u8]) -> bool {
        let mut moved = false;
        while self.socket.readable && !self.peer_done && !self.candidates.is_empty() {
            match self.socket.stream.read(scratch) {
                Ok(0) => {
                    self.feed_eof();
                    moved = true;
                }
                Ok(n) => {
                    self.feed(&scratch[..n]);
                    self.socket.read_done(n, scratch.len());
                    moved = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.socket.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.peer_done = true;
                    self.sift(|playback| playback.receive_reset());
                    moved = true;
                }
            }
        }
        moved
    }

    /// One move every candidate agrees on, when they all may move.
    fn step(&mut self) -> Result<Step, ()> {
        if self.candidates.iter().all(|c| c.playback.is_finished()) {
            return Ok(Step::Decide);
        }
        let first = self.candidates[0].playback.action();
        let same_kind = self.candidates.iter().all(|c| {
            std::mem::discriminant(&c.playback.action()) == std::mem::discriminant(&first)
        });
        if !same_kind {
            return Ok(Step::Decide);
        }
        // Recorded delays: the first candidate's stands for all.
        if let Some(due_ms) = self.candidates[0].playback.wants_pause() {
            for candidate in &mut self.candidates[1..] {
                candidate.playback.wants_pause();
            }
            return Ok(Step::Sleep(due_ms));
        }
        if !self.candidates.iter().all(|c| c.playback.may_go()) {
            return Ok(Step::Moved(false));
        }
        match first {
            Action::Send { .. } => self.send_common(),
            Action::Shutdown { .. } => {
                if shut_down(&self.socket).is_err() {
                    self.sift(|playback| Err(playback.gone()));
                    return Err(());
                }
                self.sift(|playback| playback.shut_down());
                Ok(Step::Moved(true))
            }
            Action::End => Ok(Step::Moved(false)),
        }
    }

    /// Sends the bytes every candidate would send next.
    fn send_common(&mut self) -> Result<Step, ()> {
        if !self.socket.writable {
            return Ok(Step::Moved(false));
        }
        let mut common = match self.candidates[0].playback.peek(CHUNK) {
            Ok(bytes) => bytes.to_vec(),
            Err(_) => return Ok(Step::Decide),
        };
        for candidate in &mut self.candidates[1..] {
            let Ok(theirs) = candidate.playback.peek(common.len()) else {
                return Ok(Step::Decide);
            };
            let agree = common
                .iter()
                .zip(theirs)
                .take_while(|(a, b)| a == b)
                .count();
            common.truncate(agree);
        }
        if common.is_empty() {
            // Different answers to the same bytes: the first answers for
            // all, the others skip their turn.
            for candidate in &mut self.candidates[1..] {
                if skip_turn(&mut candidate.playback).is_err() {
                    return Ok(Step::Decide);
                }
            }
            self.speaking = true;
            return Ok(Step::Moved(true));
        }
        match self.socket.stream.write(&common) {
            Ok(n) => {
                self.socket.write_done(n, common.len());
                self.sent += n as u64;
                self.sift(|playback| playback.consume(n));
                if self.candidates.is_empty() {
                    return Err(());
                }
                Ok(Step::Moved(n > 0))
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.socket.writable = false;
                Ok(Step::Moved(false))
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(Step::Moved(false)),
            Err(_) => {
                self.peer_done = true;
                self.sift(|playback| Err(playback.gone()));
                Err(())
            }
        }
    }

    /// The first candidate's turn while it answers for all: true when bytes
    /// went; `speaking` ends with the turn.
    fn speak(&mut self) -> Result<bool, ()> {
        let playback = &mut self.candidates[0].playback;
        if !matches!(playback.action(), Action::Send { .. }) || !playback.may_act() {
            self.speaking = false;
            return Ok(false);
        }
        if !playback.may_go() || !self.socket.writable {
            return Ok(false);
        }
        let chunk = match playback.peek(CHUNK) {
            Ok(chunk) => chunk.to_vec(),
            Err(_) => return Err(()),
        };
        match self.socket.stream.write(&chunk) {
            Ok(n) => {
                self.socket.write_done(n, chunk.len());
                self.sent += n as u64;
                let playback = &mut self.candidates[0].playback;
                if playback.consume(n).is_err() {
                    return Err(());
                }
                Ok(n > 0)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.socket.writable = false;
                Ok(false)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(_) => {
                self.peer_done = true;
                self.sift(|playback| Err(playback.gone()));
                Err(())
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
            Direction::ClientToServer => [self.sent, self.received],
            Direction::ServerToClient => [self.received, self.sent],
        }
    }

    pub fn log_end(&self, verdict: &str) {
        log::info!(
            "session {} with {}: {verdict} after {:.3}s before its tape was decided",
            self.number,
            self.socket.addr,
            self.started.elapsed().as_secs_f64(),
        );
    }

    pub fn close(mut self, registry: &Registry) {
        self.socket.deregister(registry);
    }
}

/// Moves a candidate past its answer without sending it: every own frame
/// that may go before the peer says more.
fn skip_turn<S: Source + Clone>(playback: &mut Playback<S>) -> Result<(), Fault> {
    while matches!(playback.action(), Action::Send { .. }) && playback.may_act() {
        let n = playback.peek(CHUNK)?.len();
        playback.consume(n)?;
    }
    Ok(())
}

/// True when, with `taken` gone, each of the `others` (undecided
/// connections, by the entries they may still be) can still get an entry
/// no other one gets: a matching that covers them all (Kuhn's augmenting
/// paths; pools are small).
pub fn has_distinct_tapes(others: &[Vec<usize>], taken: usize) -> bool {
    let mut owner: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for pool in 0..others.len() {
        let mut seen = std::collections::HashSet::new();
        if !augment(pool, others, taken, &mut owner, &mut seen) {
            return false;
        }
    }
    true
}

/// Finds an entry for `pool`, moving earlier pools to other entries if
/// need be.
fn augment(
    pool: usize,
    others: &[Vec<usize>],
    taken: usize,
    owner: &mut std::collections::HashMap<usize, usize>,
    seen: &mut std::collections::HashSet<usize>,
) -> bool {
    for &entry in &others[pool] {
        if entry == taken || !seen.insert(entry) {
            continue;
        }
        let free = match owner.get(&entry) {
            None => true,
            Some(&holder) => augment(holder, others, taken, owner, seen),
        };
        if free {
            owner.insert(entry, pool);
            return true;
        }
    }
    false
}

/// What one step of agreeing candidates did.
enum Step {
    /// Their next moves differ: time to decide.
    Decide,
    /// They wait out a recorded delay of `ms`.
    Sleep(u64),
    /// Something went (or not).
    Moved(bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tape_is_taken_only_if_the_others_keep_one_each() {
        // Another connection can only be tape 1: taking 1 would strand it.
        assert!(!has_distinct_tapes(&[vec![1]], 1));
        assert!(has_distinct_tapes(&[vec![1]], 2));
        // Two others share 2 and 3: taking 1 leaves them one each.
        assert!(has_distinct_tapes(&[vec![1, 2], vec![2, 3]], 1));
        // ...but taking 2 leaves them fighting over 1 and 3: still fine.
        assert!(has_distinct_tapes(&[vec![1, 2], vec![2, 3]], 2));
        // Three others on two tapes can never all be served.
        assert!(!has_distinct_tapes(
            &[vec![1, 2], vec![1, 2], vec![1, 2]],
            9
        ));
        assert!(has_distinct_tapes(&[], 1));
    }
}
