//! A connection of `server`, in whichever stage it is: its cassette tape
//! being chosen by its first bytes, several tapes played side by side
//! until they differ, one tape played, or (`--update` with an upstream)
//! handed over to the real server where its client departed from the
//! tape. A connection moves from one
//! stage to the next in its slab slot, so its token and timers keep
//! naming it.

use super::TapeFile;
use super::catalog::Candidates;
use super::peer::{Arrival, Inbound, Peer};
use super::pool::Pool;
use super::session::Session;
use super::update::{Phase, Relay};
use crate::engine::net::Address;

/// A cassette connection whose tape is not chosen yet: the client's first
/// bytes are read and kept until they pick one.
pub struct Chooser {
    pub number: u64,
    pub peer: Peer,
    pub received: Vec<u8>,
    pub candidates: Candidates,
    pub stage: Stage,
}

/// Where a chooser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Its first bytes narrow the tapes down.
    Reading,
    /// Tapes agree, but each serves another connection: it waits until one
    /// is given back.
    Queued,
}

impl Chooser {
    pub fn new(number: u64, peer: Peer, candidates: Candidates) -> Chooser {
        Chooser {
            number,
            peer,
            received: Vec::new(),
            candidates,
            stage: Stage::Reading,
        }
    }

    /// Reads the client's first bytes, up to `limit` in all.
    pub fn read(&mut self, scratch: &mut [u8], limit: usize) {
        let room = limit.saturating_sub(self.received.len()).min(scratch.len());
        if room == 0 {
            return;
        }
        let received = &mut self.received;
        let read = self
            .peer
            .receive(&mut scratch[..room], room as u64, |arrival| {
                if let Arrival::Data(bytes) = arrival {
                    received.extend_from_slice(bytes);
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let Ok(_) = read;
    }

    /// True once the client closed its side (or is gone).
    pub fn eof(&self) -> bool {
        self.peer.inbound() != Inbound::Open
    }
}

pub enum Conn {
    Choosing(Box<Chooser>),
    /// Several cassette tapes agree with the connection so far.
    Deciding(Box<Pool<TapeFile>>),
    /// One tape, and the cassette entry it is (if any).
    Playing(Box<Session<TapeFile>>, Option<usize>),
    /// Its client departed from that tape: the upstream answers it now,
    /// and the session with it is recorded.
    Updating(Box<Relay<TapeFile>>, Option<usize>),
}

impl Conn {
    pub fn number(&self) -> u64 {
        match self {
            Conn::Choosing(c) => c.number,
            Conn::Deciding(p) => p.number,
            Conn::Playing(s, _) => s.number,
            Conn::Updating(r, _) => r.number,
        }
    }

    pub fn addr(&self) -> &Address {
        self.peer().addr()
    }

    pub fn peer(&self) -> &Peer {
        match self {
            Conn::Choosing(c) => &c.peer,
            Conn::Deciding(p) => p.peer(),
            Conn::Playing(s, _) => s.peer(),
            Conn::Updating(r, _) => r.peer(),
        }
    }

    pub fn peer_mut(&mut self) -> &mut Peer {
        match self {
            Conn::Choosing(c) => &mut c.peer,
            Conn::Deciding(p) => p.peer_mut(),
            Conn::Playing(s, _) => s.peer_mut(),
            Conn::Updating(r, _) => r.peer_mut(),
        }
    }

    /// True while not a byte came from the peer: a peer that leaves so is
    /// a probe.
    pub fn heard_nothing(&self) -> bool {
        match self {
            Conn::Choosing(c) => c.received.is_empty(),
            Conn::Deciding(p) => p.heard_nothing(),
            Conn::Playing(s, _) => s.heard_nothing(),
            Conn::Updating(..) => false,
        }
    }

    /// Bytes of buffers the connection gave back since the last call.
    pub fn take_freed(&mut self) -> usize {
        match self {
            Conn::Choosing(_) | Conn::Updating(..) => 0,
            Conn::Deciding(p) => p.take_freed(),
            Conn::Playing(s, _) => s.take_freed(),
        }
    }

    /// The tick of its last activity, and what it waits for (`None`:
    /// nothing the peer owes), for `--timeout`.
    pub fn waiting(&self, cassette: &std::path::Path) -> (u64, Option<String>) {
        match self {
            Conn::Playing(session, _) => (session.last_activity(), session.waiting_for()),
            Conn::Deciding(pool) => (pool.last_activity(), pool.waiting_for()),
            Conn::Updating(relay, _) => (relay.last_activity(), Some(relay.waiting_for())),
            Conn::Choosing(chooser) => (
                chooser.peer.last_activity,
                Some(match chooser.stage {
                    Stage::Reading => format!(
                        "the client's first bytes, to choose a tape of {}",
                        cassette.display()
                    ),
                    Stage::Queued => format!(
                        "a tape of {} that other connections play to be given back",
                        cassette.display()
                    ),
                }),
            ),
        }
    }

    /// Closes the connection; returns its tape entry and the bytes it
    /// moved each way.
    pub fn close(self, registry: &mio::Registry) -> (Option<usize>, [u64; 2]) {
        match self {
            Conn::Choosing(chooser) => {
                let bytes = [chooser.received.len() as u64, 0];
                chooser.peer.close(registry);
                (None, bytes)
            }
            Conn::Deciding(pool) => {
                let bytes = pool.bytes();
                pool.close(registry);
                (None, bytes)
            }
            Conn::Playing(session, entry) => {
                let bytes = session.bytes();
                session.close(registry);
                (entry, bytes)
            }
            Conn::Updating(relay, entry) => {
                let (record, bytes) = relay.into_record(registry);
                record.discard();
                (entry, bytes)
            }
        }
    }

    /// True while it relays between its client and the upstream: a
    /// session that went quiet there is over, as far as it went.
    pub fn relaying(&self) -> bool {
        matches!(self, Conn::Updating(relay, _) if relay.phase() == Phase::Relaying)
    }

    /// Logs the end of the connection.
    pub fn log_end(&self, verdict: &str) {
        match self {
            Conn::Playing(session, _) => session.log_end(verdict),
            Conn::Deciding(pool) => pool.log_end(verdict),
            Conn::Updating(relay, _) => relay.log_end(verdict),
            Conn::Choosing(_) => {}
        }
    }
}
