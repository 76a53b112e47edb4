//! A cassette connection's way to its tape: its first bytes narrow the
//! tapes down (a `Chooser`), the tapes that agree play side by side (a
//! `Pool`) until one is left, and that one plays on (a `Session`). Each
//! step happens in the connection's slab slot.

use std::time::Instant;

use log::info;

use super::{Server, Tapes};
use crate::engine::event_loop::Context;
use crate::error::Error;
use crate::replay::TapeFile;
use crate::replay::catalog::{Candidates, Choice, PREFIX_LIMIT};
use crate::replay::conn::{Chooser, Conn, Stage};
use crate::replay::faults::Frames;
use crate::replay::matching::has_distinct_tapes;
use crate::replay::peer::Inbound;
use crate::replay::pool::{Candidate, Pool, Reserve, WINDOW};
use crate::replay::run::ReplayTimer;
use crate::replay::script::playback::Playback;
use crate::replay::session::Session;
use crate::replay::status::Status;
use crate::replay::update::Handover;

impl Server {
    /// Reads what a choosing connection sent and tries to pick its tape.
    pub(super) fn choose(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let Some(Conn::Choosing(chooser)) = self.conns.get_mut(key) else {
            return;
        };
        // No tape's frames count yet: faults placed at a frame wait.
        chooser.peer.turn(cx.now, Frames::default());
        chooser.read(&mut self.run.scratch, PREFIX_LIMIT);
        if let Some(status) = chooser.peer.faulted_status() {
            return self.on_status(cx, key, status);
        }
        if chooser.eof() && chooser.received.is_empty() {
            return self.end_probe(cx, key);
        }
        let (Tapes::Cassette(catalog), Stage::Reading) = (&mut self.tapes, chooser.stage) else {
            return;
        };
        let eof = chooser.eof();
        let choice = catalog.choose(&mut chooser.candidates, &chooser.received, eof);
        self.apply(cx, key, choice);
    }

    /// Choosers waiting for a tape another connection played try again.
    pub(super) fn rechoose(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let queued: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Choosing(c) if c.stage == Stage::Queued))
            .map(|(key, _)| key)
            .collect();
        for key in queued {
            let (Some(Conn::Choosing(chooser)), Tapes::Cassette(catalog)) =
                (self.conns.get_mut(key), &mut self.tapes)
            else {
                continue;
            };
            let mut candidates = Candidates::default();
            let choice = match catalog.on_accept(&mut candidates) {
                Choice::Wait => catalog.choose(&mut candidates, &chooser.received, chooser.eof()),
                other => other,
            };
            chooser.candidates = candidates;
            self.apply(cx, key, choice);
        }
    }

    /// Acts on what the catalog said of the chooser in `key`.
    pub(super) fn apply(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, choice: Choice) {
        let Some(Conn::Choosing(chooser)) = self.conns.get_mut(key) else {
            return;
        };
        match choice {
            Choice::Tapes {
                entries,
                more_after,
            } => self.serve(cx, key, entries, more_after),
            Choice::Wait => chooser.stage = Stage::Reading,
            Choice::Queue => {
                if chooser.stage != Stage::Queued {
                    info!(
                        "session {}: every tape that agrees with it serves another connection: it waits for one",
                        chooser.number
                    );
                }
                chooser.stage = Stage::Queued;
            }
            Choice::Exhausted => self.hand_over_new(
                cx,
                key,
                "every tape of the cassette that agrees with it was served (--reuse serves them again)",
            ),
            Choice::NoMatch(text) => self.hand_over_new(cx, key, &text),
        }
    }

    /// Opens the playbacks of cassette `entries`; the first error when
    /// none opens.
    fn open(&mut self, entries: &[usize], number: u64) -> Result<Vec<Candidate<TapeFile>>, Error> {
        let Tapes::Cassette(catalog) = &mut self.tapes else {
            return Ok(Vec::new());
        };
        let mut candidates = Vec::with_capacity(entries.len());
        let mut first_error = None;
        for &entry in entries {
            let settings = self.run.settings;
            match catalog
                .open(entry)
                .and_then(|tape| Playback::new(tape, settings))
            {
                Ok(playback) => candidates.push(Candidate::new(entry, playback)),
                Err(err) => {
                    log::error!("session {number}: {err}");
                    first_error.get_or_insert(err);
                }
            }
        }
        match (candidates.is_empty(), first_error) {
            (true, Some(err)) => Err(err),
            _ => Ok(candidates),
        }
    }

    /// The chooser in `key` becomes the session of its one tape, or a pool
    /// of the tapes that agree with it.
    fn serve(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        key: usize,
        entries: Vec<usize>,
        more_after: Option<usize>,
    ) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let number = conn.number();
        let mut candidates = match self.open(&entries, number) {
            Ok(candidates) => candidates,
            Err(err) => return self.on_status(cx, key, Status::Failed(err)),
        };
        if candidates.len() == 1 && more_after.is_none() {
            let Candidate {
                entry, playback, ..
            } = candidates.remove(0);
            let mut early = None;
            let handover = self.upstream.is_some();
            self.conns.transition(key, |conn| match conn {
                Conn::Choosing(chooser) => {
                    let Chooser { peer, received, .. } = *chooser;
                    let eof = peer.inbound() != Inbound::Open;
                    let mut session = Session::resumed(number, peer, playback, Instant::now());
                    if handover {
                        session = session.with_handover(Handover::new());
                    }
                    // Its bytes so far were counted as they came.
                    early = session.feed_kept(&received, eof);
                    Conn::Playing(Box::new(session), Some(entry))
                }
                other => other,
            });
            self.taken(cx, entry, key);
            return match early {
                Some(status) => self.on_status(cx, key, status),
                None => self.resume(cx, key),
            };
        }
        let handover = self.upstream.is_some();
        self.conns.transition(key, |conn| match conn {
            Conn::Choosing(chooser) => {
                let Chooser { peer, received, .. } = *chooser;
                let eof = peer.inbound() != Inbound::Open;
                let reserve = match more_after {
                    Some(after) => Reserve::Waiting {
                        after,
                        history: received.clone(),
                        eof,
                    },
                    None => Reserve::Empty,
                };
                let pool = Pool::new(number, peer, candidates, reserve, (&received, eof));
                Conn::Deciding(Box::new(match handover {
                    true => pool.with_handover((&received, eof)),
                    false => pool,
                }))
            }
            other => other,
        });
        self.resume(cx, key);
    }

    /// Cassette entry `entry` serves the connection in `key` now: the
    /// undecided connections look elsewhere.
    pub(super) fn taken(&mut self, cx: &mut Context<'_, ReplayTimer>, entry: usize, key: usize) {
        if let Tapes::Cassette(catalog) = &mut self.tapes {
            catalog.take(entry);
            if let Some(conn) = self.conns.get(key) {
                info!(
                    "session {}: serving {} with {}",
                    conn.number(),
                    conn.addr(),
                    catalog.entry(entry).name
                );
            }
        }
        let others: Vec<usize> = self.conns.keys().filter(|&k| k != key).collect();
        for other in others {
            if let Some(Conn::Deciding(pool)) = self.conns.get_mut(other)
                && !pool.remove_entry(entry)
            {
                let status = pool.failure();
                self.on_status(cx, other, status);
            }
        }
    }

    /// The pool in `key` commits to one of `preferred`: the first that
    /// leaves every other undecided connection a tape of its own (when
    /// that is possible at all).
    pub(super) fn decide(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        key: usize,
        preferred: Vec<usize>,
    ) {
        let others: Vec<Vec<usize>> = self
            .conns
            .iter()
            .filter(|(k, _)| *k != key)
            .filter_map(|(_, conn)| match conn {
                Conn::Deciding(pool) => Some(pool.entries().collect()),
                _ => None,
            })
            .collect();
        let Some(&first) = preferred.first() else {
            return;
        };
        let entry = preferred
            .iter()
            .copied()
            .find(|&t| has_distinct_tapes(&others, t))
            .unwrap_or(first);
        let mut refused = false;
        self.conns.transition(key, |conn| match conn {
            Conn::Deciding(pool) => match pool.commit(entry) {
                Ok(session) => Conn::Playing(Box::new(session), Some(entry)),
                Err(pool) => {
                    refused = true;
                    Conn::Deciding(pool)
                }
            },
            other => other,
        });
        if refused {
            let err = Error::Internal(format!(
                "tape entry {entry} is no candidate of this connection"
            ));
            return self.on_status(cx, key, Status::Failed(err));
        }
        self.taken(cx, entry, key);
        self.resume(cx, key);
    }

    /// Brings more tapes into the pool in `key`.
    pub(super) fn refill(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let (Some(Conn::Deciding(pool)), Tapes::Cassette(catalog)) =
            (self.conns.get(key), &self.tapes)
        else {
            return;
        };
        let Some((after, history, _)) = pool.wanted() else {
            return;
        };
        let want = WINDOW - pool.entries().count();
        let first = &history[..history.len().min(PREFIX_LIMIT)];
        let (found, last) = catalog.more(after, first, want);
        let number = pool.number;
        let more = self.open(&found, number).unwrap_or_default();
        if let Some(Conn::Deciding(pool)) = self.conns.get_mut(key) {
            pool.refill(more, last);
        }
        cx.defer(ReplayTimer::Resume { key, number });
    }
}
