//! What `--update` adds to a session: a recording that goes on where the
//! peer departs (`client`), or the client's current turn kept for a
//! hand-over to the upstream (`server`).

use std::time::Instant;

use super::Session;
use crate::replay::peer::{Inbound, Peer};
use crate::replay::script::Action;
use crate::replay::status::Status;
use crate::replay::update::{Departure, Gate, Handover, Update};
use crate::tape::Source;

/// A session whose client departed, taken apart for the hand-over.
pub struct Departed {
    pub number: u64,
    pub peer: Peer,
    pub departure: Departure,
    pub started: Instant,
}

impl<S: Source + Clone> Session<S> {
    /// Plays with `--update`: goes on where the peer departs, recording.
    pub fn with_update(mut self, update: Update) -> Session<S> {
        self.update = Some(Box::new(update));
        self
    }

    /// The update recording, once the session is over.
    pub fn take_update(&mut self) -> Option<Update> {
        self.update.take().map(|update| *update)
    }

    /// Plays with `--update` and an upstream: where the client departs,
    /// the session ends `Departed`, to be handed over.
    pub fn with_handover(mut self) -> Session<S> {
        self.handover = Some(Box::new(Handover::new()));
        self
    }

    /// The tape played, for another playback of it.
    pub fn tape(&self) -> (String, S, crate::tape::Locator) {
        self.playback.tape()
    }

    /// A session that ended `Departed`, taken apart.
    pub fn into_departed(self: Box<Self>) -> Result<Departed, Box<Session<S>>> {
        if !self.handover.as_ref().is_some_and(|h| h.departed()) {
            return Err(self);
        }
        let Session {
            number,
            peer,
            handover,
            started,
            ..
        } = *self;
        let departure = handover.and_then(|h| h.into_departure());
        Ok(Departed {
            number,
            peer,
            departure: departure.expect("checked: departed"),
            started,
        })
    }

    pub(super) fn departed(&self) -> bool {
        self.update.as_ref().is_some_and(|u| u.departed())
            || self.handover.as_ref().is_some_and(|h| h.departed())
    }

    /// Our next frame is taken from the tape: with an upstream to hand
    /// over to, the client's turn before it was answered.
    pub(super) fn taking(&mut self) {
        let (Some(handover), Action::Send { frame, .. } | Action::Shutdown { frame }) =
            (self.handover.as_deref_mut(), self.playback.action())
        else {
            return;
        };
        let pipelined = self
            .playback
            .matched()
            .saturating_sub(self.playback.expected());
        handover.taken(frame.index, pipelined);
    }

    /// With `--update`, once the peer departed: the session is over when
    /// our side is played out and the peer closed or went quiet; with an
    /// upstream, once what we took from the tape went out.
    pub(super) fn departed_end(&mut self, now: u64) -> Option<Status> {
        if self.handover.as_ref().is_some_and(|h| h.departed()) {
            return self.outgoing.is_empty().then_some(Status::Departed);
        }
        let update = self.update.as_ref().filter(|u| u.departed())?;
        let ours_done = self.playback.action() == Action::End && self.outgoing.is_empty();
        if !ours_done {
            return None;
        }
        match update.over(self.peer.inbound() != Inbound::Open, now) {
            Gate::WaitUntil(at) => {
                self.wake_at = Some(at);
                None
            }
            Gate::Go | Gate::Tape => Some(Status::Updated {
                summary: update.summary().unwrap_or_default().to_string(),
            }),
        }
    }

    /// Whether our next action may go now; when not, and a departed peer's
    /// turn may end at a later tick, notes it in `wake_at`.
    pub(super) fn may_go(&mut self, now: u64) -> bool {
        if self.handover.as_ref().is_some_and(|h| h.departed()) {
            // The upstream answers from now on.
            return false;
        }
        let closed = self.peer.inbound() != Inbound::Open;
        let gate = match &self.update {
            Some(update) => update.gate(self.playback.expected(), closed, now),
            None => Gate::Tape,
        };
        match gate {
            Gate::Tape => self.playback.may_go(),
            Gate::Go => self.playback.action() != Action::End,
            Gate::WaitUntil(at) => {
                self.wake_at = Some(at);
                false
            }
        }
    }

    /// With `--update`: our bytes went, or our half-close.
    pub(super) fn note_sent(&mut self, bytes: Option<&[u8]>, expected: u64, now: u64) {
        let Some(update) = self.update.as_deref_mut() else {
            return;
        };
        let noted = match bytes {
            Some(bytes) => update.ours(bytes, expected, now),
            None => update.our_eof(expected, now),
        };
        if let Err(err) = noted {
            self.update_failed.get_or_insert(err);
        }
    }
}
