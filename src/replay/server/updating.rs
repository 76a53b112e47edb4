//! `--update` with an upstream: a connection whose client departed from
//! its tape is handed over to the real server (`update::Relay`), and what
//! its end leaves beside the tape: the pending tape of a session handed
//! over, or a stale one removed by a session that matched.

use std::path::{Path, PathBuf};

use log::info;

use super::{Server, Tapes, upstream_token};
use crate::engine::event_loop::Context;
use crate::engine::net::{Socket, Stream};
use crate::error::Error;
use crate::replay::TapeFile;
use crate::replay::conn::Conn;
use crate::replay::run::{Ending, ReplayTimer};
use crate::replay::script::playback::{Playback, Settings};
use crate::replay::session::Session;
use crate::replay::status::Status;
use crate::replay::update::{Handover, Relay, Update, pending};
use crate::report::Outcome;
use crate::tape::{Direction, Locator};

/// What a hand-over needs, made before the connection changes stage.
struct Prepared {
    prefix: Playback<TapeFile>,
    upstream: Socket,
    record: Update,
}

impl Server {
    /// With an upstream, a session keeps what a hand-over takes.
    pub(super) fn with_handover(&self, session: Session<TapeFile>) -> Session<TapeFile> {
        match self.upstream {
            Some(_) => session.with_handover(Handover::new()),
            None => session,
        }
    }

    /// The tape of the connection's cassette `entry`, or the one tape.
    fn tape_path(&self, entry: Option<usize>) -> Option<PathBuf> {
        match (&self.tapes, entry) {
            (Tapes::Cassette(catalog), Some(i)) => Some(catalog.entry(i).path.clone()),
            (Tapes::One { path, .. }, _) => Some(path.clone()),
            (Tapes::Cassette(_), None) => None,
        }
    }

    /// The session (or undecided pool) in `key` departed: it becomes a
    /// relay to the upstream, with the tape it played (for a pool, the one
    /// that went furthest).
    pub(super) fn hand_over(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let (tape, entry) = match self.conns.get_mut(key) {
            Some(Conn::Playing(session, entry)) => (Ok(session.tape()), *entry),
            Some(Conn::Deciding(pool)) => match (pool.departed_entry(), &mut self.tapes) {
                // Another connection took that tape since: nothing to hand
                // over with, the client departed from every free tape.
                (Some(entry), Tapes::Cassette(catalog)) if catalog.serving(entry) => {
                    let status = pool.failure();
                    return self.on_status(cx, key, status);
                }
                (Some(entry), Tapes::Cassette(catalog)) => (catalog.open(entry), Some(entry)),
                _ => return,
            },
            _ => return,
        };
        if let (Some(entry), Some(Conn::Deciding(_))) = (entry, self.conns.get(key)) {
            self.taken(cx, entry, key);
        }
        let prepared = tape.and_then(|tape| self.prepare(cx, key, tape, entry));
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(err) => return self.on_status(cx, key, Status::Failed(err)),
        };
        self.conns.transition(key, |conn| {
            let (departed, entry) = match conn {
                Conn::Playing(session, entry) => match session.into_departed() {
                    Ok(departed) => (departed, entry),
                    Err(session) => {
                        prepared.record.discard();
                        return Conn::Playing(session, entry);
                    }
                },
                Conn::Deciding(pool) => match pool.into_departed() {
                    Ok(departed) => (departed, entry),
                    Err(pool) => {
                        prepared.record.discard();
                        return Conn::Deciding(pool);
                    }
                },
                other => {
                    prepared.record.discard();
                    return other;
                }
            };
            let Prepared {
                prefix,
                upstream,
                record,
            } = prepared;
            let client = (departed.number, departed.peer, departed.started);
            Conn::Updating(
                Box::new(Relay::new(
                    client,
                    prefix,
                    departed.departure,
                    upstream,
                    record,
                )),
                entry,
            )
        });
        self.resume(cx, key);
    }

    /// The upstream's connect started, the recording started beside the
    /// tape, the tape's client side ready to be played to the upstream.
    fn prepare(
        &self,
        cx: &mut Context<'_, ReplayTimer>,
        key: usize,
        tape_played: (String, TapeFile, Locator),
        entry: Option<usize>,
    ) -> Result<Prepared, Error> {
        let (Some(addr), Some(tape)) = (&self.upstream, self.tape_path(entry)) else {
            return Err(Error::Internal("a hand-over without an upstream".into()));
        };
        let settings = Settings {
            own: Direction::ClientToServer,
            compare: false,
            speed: None,
            text_diff: false,
        };
        let prefix = Playback::new(tape_played, settings)?;
        let record = pending::start(&tape, Direction::ClientToServer)?;
        let answered = match self.conns.get(key) {
            Some(Conn::Playing(session, _)) => session.answered(),
            Some(Conn::Deciding(pool)) => pool.answered(),
            _ => None,
        };
        if let (Some(wildcard), Some(answered)) = (record.own_wildcard(), answered)
            && wildcard < answered
        {
            record.discard();
            return Err(Error::file(
                &tape,
                "hand a client over with",
                std::io::Error::other(format!(
                    "the client's side has a wildcard (any N) at byte {wildcard} of its stream, before where the client departed: the upstream cannot be played it (record this session anew)"
                )),
            ));
        }
        let upstream = Stream::connect(addr)
            .and_then(|stream| {
                Socket::register(cx.registry, stream, addr.clone(), upstream_token(key), true)
            })
            .map_err(|err| Error::address(addr, "connect to the upstream", err));
        match upstream {
            Ok(upstream) => Ok(Prepared {
                prefix,
                upstream,
                record,
            }),
            Err(err) => {
                record.discard();
                Err(err)
            }
        }
    }

    /// A relay where neither side said more for `--timeout`: its session
    /// is over, as far as it went.
    pub(super) fn quiet_relay_over(&self, key: usize) -> Option<Status> {
        match self.conns.get(key) {
            Some(Conn::Updating(relay, _)) => Some(relay.quiet_over()),
            _ => None,
        }
    }

    /// What a connection's end leaves beside its tape, with `--update`:
    /// a session handed over writes its pending tape; one that matched
    /// removes a stale one (unless this run wrote it).
    pub(super) fn settle(
        &mut self,
        (number, tape): (u64, Option<&Path>),
        record: Option<Update>,
        ending: Ending,
    ) -> Ending {
        let (Some(tape), Some(_)) = (tape, &self.upstream) else {
            if let Some(record) = record {
                record.discard();
            }
            return ending;
        };
        let written_now = self
            .run
            .report
            .pending
            .contains(&pending::pending_path(tape));
        let settled = match record {
            Some(record) => pending::settle(tape, record, ending.outcome, None),
            None if ending.outcome == Outcome::Passed && !written_now => {
                pending::remove_stale(tape).map(|()| None)
            }
            None => Ok(None),
        };
        match settled {
            Ok(Some(written)) => {
                info!("{}: the updated tape waits for review", written.display());
                if !written_now {
                    self.run.report.pending.push(written);
                }
                ending
            }
            Ok(None) => ending,
            Err(err) => Ending {
                outcome: Outcome::Error,
                message: Some(format!("session {number}: {err}")),
                details: None,
            },
        }
    }
}
