//! What the candidates of a pool do next, taken together: who speaks, how
//! the others follow it byte for byte, and when the pool must commit.

use log::debug;

use super::{CHUNK, Failure, Pool, Reserve, sift};
use crate::engine::net::Sent;
use crate::replay::peer::Inbound;
use crate::replay::script::Action;
use crate::replay::script::Fault;
use crate::replay::session::taking;
use crate::tape::Source;

/// What the candidates do next, taken together.
pub(super) enum Move {
    Wait,
    Speak,
    Sleep(u64),
    Decide(Vec<usize>),
}

impl<S: Source + Clone> Pool<S> {
    pub(super) fn next_move(&mut self) -> Move {
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
        // While any candidate is faithful (the client got what it
        // recorded), only the faithful may speak: another one's bytes are
        // out of step with what the client got (following an answer
        // shorter than its own, it would send the rest of its own).
        let any_faithful = self.candidates.iter().any(|c| c.faithful);
        let mut due: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| self.candidates[i].faithful || !any_faithful)
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
                    self.best_failure.get_or_insert(Failure {
                        got: 0,
                        status,
                        entry: candidate.entry,
                    });
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
    pub(super) fn speak(&mut self) -> Option<bool> {
        let at = self.speaker_index()?;
        let Pool {
            peer,
            candidates,
            best_failure,
            sent,
            handover,
            ..
        } = self;
        let addr = peer.addr().clone();
        let playback = &mut candidates[at].playback;
        if !playback.may_go() {
            return Some(false);
        }
        if let Some(handover) = handover.as_mut() {
            taking(handover, playback);
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
                Ok(true) => playback.shut_down().map(|()| Some(None)),
                // A fault holds the half-close back.
                Ok(false) => Ok(None),
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
                let entry = candidates.remove(at).entry;
                best_failure.get_or_insert(Failure {
                    got: 0,
                    status,
                    entry,
                });
                self.speaker = None;
                Some(false)
            }
        }
    }
}
