//! Tapes beyond the pool's window: when more tapes agreed with the
//! client's first bytes than a pool plays at once, what the client sent is
//! kept (up to `HISTORY_LIMIT`) to bring the next ones in as candidates
//! drop out.

use log::debug;

use super::{Candidate, Pool, WINDOW, sift};
use crate::replay::peer::Arrival;
use crate::replay::script::Fault;
use crate::tape::Source;

/// Client bytes kept to bring tapes beyond the window up to date.
pub const HISTORY_LIMIT: usize = 64 * 1024;

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

impl<S: Source + Clone> Pool<S> {
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
}

/// Keeps what the client sent while tapes beyond the window may still be
/// brought in; past `HISTORY_LIMIT` they are given up.
pub(super) fn remember(reserve: &mut Reserve, arrival: &Arrival<'_>) {
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
