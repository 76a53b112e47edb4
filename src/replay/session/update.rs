//! What `--update` adds to a session: a recording that goes on where the
//! peer departs (`client`), or the client's current turn kept for a
//! hand-over to the upstream (`server`).

use std::io;

use log::info;

use super::Session;
use crate::replay::peer::Inbound;
use crate::replay::script::Action;
use crate::replay::script::playback::Playback;
use crate::replay::status::Status;
use crate::replay::update::{Departed, Gate, Handover, Update};
use crate::tape::Source;

/// What `--update` adds to a session, by role.
pub(super) enum Updating {
    /// A plain replay.
    No,
    /// `client --update`: the session recorded as it goes (the peer's
    /// course in it), and the first failure to write that recording.
    Recording {
        update: Box<Update>,
        failed: Option<io::Error>,
    },
    /// `server --update` with an upstream: the client's current turn, for
    /// a hand-over where it departs.
    HandingOver(Box<Handover>),
}

impl Updating {
    /// True when our frames are recorded as they go.
    pub(super) fn records(&self) -> bool {
        matches!(self, Updating::Recording { .. })
    }

    /// The first failure to write the recording, once.
    pub(super) fn take_failure(&mut self) -> Option<io::Error> {
        match self {
            Updating::Recording { failed, .. } => failed.take(),
            _ => None,
        }
    }

    fn departed(&self) -> bool {
        match self {
            Updating::No => false,
            Updating::Recording { update, .. } => update.departed(),
            Updating::HandingOver(handover) => handover.departed(),
        }
    }
}

impl<S: Source + Clone> Session<S> {
    /// Plays with `--update`: goes on where the peer departs, recording.
    pub fn with_update(mut self, update: Update) -> Session<S> {
        self.updating = Updating::Recording {
            update: Box::new(update),
            failed: None,
        };
        self
    }

    /// The update recording, once the session is over.
    pub fn take_update(&mut self) -> Option<Update> {
        match std::mem::replace(&mut self.updating, Updating::No) {
            Updating::Recording { update, .. } => Some(*update),
            other => {
                self.updating = other;
                None
            }
        }
    }

    /// Plays with `--update` and an upstream: where the client departs,
    /// the session ends `Departed`, to be handed over. `handover` is where
    /// the client stands (a new one, or a pool's).
    pub fn with_handover(mut self, handover: Handover) -> Session<S> {
        self.updating = Updating::HandingOver(Box::new(handover));
        self
    }

    /// With an upstream: how many of the tape's client bytes the client
    /// was answered (what a hand-over plays the upstream first).
    pub fn answered(&self) -> Option<u64> {
        match &self.updating {
            Updating::HandingOver(handover) => handover.answered(),
            _ => None,
        }
    }

    /// The tape played, for another playback of it.
    pub fn tape(&self) -> (String, S, crate::tape::Locator) {
        self.playback.tape()
    }

    /// A session that ended `Departed`, taken apart.
    pub fn into_departed(mut self: Box<Self>) -> Result<Departed, Box<Session<S>>> {
        let departure = match std::mem::replace(&mut self.updating, Updating::No) {
            Updating::HandingOver(handover) => match handover.into_departure() {
                Ok(departure) => departure,
                Err(handover) => {
                    self.updating = Updating::HandingOver(Box::new(handover));
                    return Err(self);
                }
            },
            other => {
                self.updating = other;
                return Err(self);
            }
        };
        let Session {
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

    pub(super) fn departed(&self) -> bool {
        self.updating.departed()
    }

    /// Our next frame is taken from the tape: with an upstream to hand
    /// over to, the client's turn before it was answered.
    pub(super) fn taking(&mut self) {
        if let Updating::HandingOver(handover) = &mut self.updating {
            taking(handover, &self.playback);
        }
    }

    /// With `--update`, once the peer departed: the session is over when
    /// our side is played out and the peer closed or went quiet; with an
    /// upstream, once what we took from the tape went out.
    pub(super) fn departed_end(&mut self, now: u64) -> Option<Status> {
        let update = match &self.updating {
            // The client's turn outgrew what a hand-over keeps after it
            // departed (it went on sending while our frames were still
            // going out): a plain mismatch after all.
            Updating::HandingOver(handover) if handover.departed() && !handover.can_hand_over() => {
                info!("{}", handover.why_not());
                let summary = handover.summary().unwrap_or_default().to_string();
                return Some(Status::Mismatch {
                    report: format!("{summary}\n{}", handover.why_not()),
                    summary,
                    received: self.peer.received(),
                });
            }
            Updating::HandingOver(handover) if handover.departed() => {
                return self.outgoing.is_empty().then_some(Status::Departed);
            }
            Updating::Recording { update, .. } if update.departed() => update,
            _ => return None,
        };
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
        let closed = self.peer.inbound() != Inbound::Open;
        let gate = match &self.updating {
            // The upstream answers from now on.
            Updating::HandingOver(handover) if handover.departed() => return false,
            Updating::Recording { update, .. } => {
                update.gate(self.playback.expected(), closed, now)
            }
            Updating::HandingOver(_) | Updating::No => Gate::Tape,
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
        let Updating::Recording { update, failed } = &mut self.updating else {
            return;
        };
        let noted = match bytes {
            Some(bytes) => update.ours(bytes, expected, now),
            None => update.our_eof(expected, now),
        };
        if let Err(err) = noted {
            failed.get_or_insert(err);
        }
    }
}

/// `playback`'s next frame is taken from the tape: the client's bytes the
/// tape has before it were answered.
pub fn taking<S: Source + Clone>(handover: &mut Handover, playback: &Playback<S>) {
    if !matches!(
        playback.action(),
        Action::Send { .. } | Action::Shutdown { .. }
    ) {
        return;
    }
    let expected = playback.expected();
    handover.taken(expected, playback.matched().saturating_sub(expected));
}
