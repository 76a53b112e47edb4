//! `--update` with an upstream: a connection whose client departed from
//! its tape is handed over to the real server (`update::Relay`), and what
//! its end leaves beside the tape: the pending tape of a session handed
//! over, or a stale one removed by a session that matched.

use std::path::{Path, PathBuf};
use std::time::Instant;

use log::info;

use super::{Server, Tapes, upstream_token};
use crate::cassette;
use crate::engine::event_loop::Context;
use crate::engine::net::{Socket, Stream};
use crate::error::Error;
use crate::replay::TapeFile;
use crate::replay::conn::{Chooser, Conn};
use crate::replay::peer::{Inbound, Peer};
use crate::replay::run::{Ending, ReplayTimer};
use crate::replay::script::playback::{Playback, Settings};
use crate::replay::session::Session;
use crate::replay::status::Status;
use crate::replay::update::{Departure, Handover, Relay, Update, pending};
use crate::report::Outcome;
use crate::tape::{Direction, Locator};

/// What a hand-over needs, made before the connection changes stage.
struct Prepared {
    /// The tape's client side, for a tape played.
    prefix: Option<Playback<TapeFile>>,
    /// Where the pending tape goes.
    tape: PathBuf,
    upstream: Socket,
    record: Update,
}

impl Prepared {
    /// The relay of `client`, which departed as `departure` says.
    fn relay(self, client: (u64, Peer, Instant), departure: Departure) -> Relay<TapeFile> {
        let Prepared {
            prefix,
            tape,
            upstream,
            record,
        } = self;
        Relay::new(client, (prefix, tape), departure, upstream, record)
    }
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
        let prepared = tape.and_then(|played| {
            let tape = self
                .tape_path(entry)
                .ok_or_else(|| Error::Internal("a cassette hand-over without its tape".into()))?;
            self.prepare(cx, key, tape, Some(played))
        });
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
            let client = (departed.number, departed.peer, departed.started);
            Conn::Updating(Box::new(prepared.relay(client, departed.departure)), entry)
        });
        self.resume(cx, key);
    }

    /// A cassette connection no tape agrees with (`why`): with an
    /// upstream, it is handed over whole and recorded as a new tape of the
    /// cassette (`NNNN.tape.new`, one number past the last); else it is a
    /// mismatch.
    pub(super) fn hand_over_new(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        key: usize,
        why: &str,
    ) {
        let (Some(Conn::Choosing(chooser)), Some(_)) = (self.conns.get(key), &self.upstream) else {
            return self.reject(cx, key, why);
        };
        let summary = format!(
            "client {} (session {}): {why}; --update records it as a new tape",
            chooser.peer.addr(),
            chooser.number
        );
        let prepared = cassette::next_tape(&self.run.path)
            .map_err(|err| Error::file(&self.run.path, "list the cassette", err))
            .and_then(|tape| self.prepare(cx, key, tape, None));
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(err) => return self.on_status(cx, key, Status::Failed(err)),
        };
        info!(
            "{summary}: {}",
            pending::pending_path(&prepared.tape).display()
        );
        self.conns.transition(key, |conn| match conn {
            Conn::Choosing(chooser) => {
                let Chooser {
                    number,
                    peer,
                    received,
                    ..
                } = *chooser;
                let departure = Departure {
                    eof: peer.inbound() != Inbound::Open,
                    turn: received,
                    summary,
                    answered: None,
                };
                let client = (number, peer, Instant::now());
                Conn::Updating(Box::new(prepared.relay(client, departure)), None)
            }
            other => {
                prepared.record.discard();
                other
            }
        });
        self.resume(cx, key);
    }

    /// The upstream's connect started, the recording started beside
    /// `tape`, and the client side of the tape `played` (if any) ready to
    /// be played to the upstream.
    fn prepare(
        &self,
        cx: &mut Context<'_, ReplayTimer>,
        key: usize,
        tape: PathBuf,
        played: Option<(String, TapeFile, Locator)>,
    ) -> Result<Prepared, Error> {
        let Some(addr) = &self.upstream else {
            return Err(Error::Internal("a hand-over without an upstream".into()));
        };
        let settings = Settings {
            own: Direction::ClientToServer,
            compare: false,
            speed: None,
            text_diff: false,
        };
        let prefix = match played {
            Some(played) => Some(Playback::new(played, settings)?),
            None => None,
        };
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
        if record.has_secrets() {
            record.discard();
            return Err(Error::file(
                &tape,
                "hand a client over with",
                std::io::Error::other(
                    "the tape has secret spans, and a hand-over would record what the client sends in their place, its live secrets, in the pending tape (record this session anew through proxy with the same --redact rules)",
                ),
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
                tape,
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
