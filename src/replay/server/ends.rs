//! How a server's connections end: a session's verdict reported, a probe
//! let go, a stop's cut, and what comes after (the run may be over, or the
//! next client may be served, next round).

use log::info;

use super::{Accepting, Server, Tapes, Until};
use crate::engine::event_loop::Context;
use crate::replay::conn::Conn;
use crate::replay::run::{Ending, Phase, ReplayTimer};
use crate::report::Outcome;

impl Server {
    /// A connection no tape can serve: a departure from the recording.
    pub(super) fn reject(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, why: &str) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let summary = format!(
            "mismatch with client {} (session {}): {why}",
            conn.addr(),
            conn.number()
        );
        let ending = Ending {
            outcome: Outcome::Mismatch,
            message: Some(summary.clone()),
            details: Some(summary + "\n"),
        };
        self.end(cx, key, ending);
    }

    /// Ends the connection in `key`.
    pub(super) fn end(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, ending: Ending) {
        let Some(conn) = self.conns.remove(key) else {
            return;
        };
        conn.log_end(ending.outcome.as_str());
        let (number, addr) = (conn.number(), conn.addr().clone());
        let faults = conn.peer().fired().to_vec();
        // A session handed over goes to its relay's tape (a new one of a
        // cassette has no entry).
        let (entry, bytes, record) = match conn {
            Conn::Updating(relay, entry) => {
                let tape = relay.tape.clone();
                let (record, bytes) = relay.into_record(cx.registry);
                (entry, bytes, Some((record, tape)))
            }
            conn => {
                let (entry, bytes) = conn.close(cx.registry);
                (entry, bytes, None)
            }
        };
        // A session a fault ended leaves its tape to be played again (the
        // client under test retries), and does not end `--once`; nor does
        // one written as a pending tape (`--update` goes on to the next).
        let faulted = ending.outcome == Outcome::Faulted;
        let tape = match (&mut self.tapes, entry) {
            (Tapes::Cassette(catalog), Some(i)) => {
                catalog.release(i, !faulted);
                cx.defer(ReplayTimer::Rechoose);
                Some(catalog.entry(i).path.clone())
            }
            (Tapes::One { path, .. }, _) => Some(path.clone()),
            (Tapes::Cassette(_), None) => record.as_ref().map(|(_, tape)| tape.clone()),
        };
        let record = record.map(|(record, _)| record);
        let ending = self.settle((number, tape.as_deref()), record, ending);
        let outcome = ending.outcome;
        self.run
            .record(cx, (number, &addr), tape, ending, (bytes, faults));
        if outcome == Outcome::Mismatch && self.abort {
            self.abort_run(cx);
        } else if !matches!(
            outcome,
            Outcome::Passed | Outcome::Faulted | Outcome::Updated
        ) && self.until != Until::Stopped
            && !matches!(self.accepting, Accepting::Closed)
        {
            info!(
                "--once: session {number} did not pass, so the run cannot; no more connections are taken"
            );
            self.close_listener(cx);
        }
        self.after_session(cx);
    }

    /// A connection that closed without a byte where the tape expected
    /// some: its tape (if any) is free again.
    pub(super) fn end_probe(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let Some(conn) = self.conns.remove(key) else {
            return;
        };
        let (number, addr) = (conn.number(), conn.addr().clone());
        let (entry, _) = conn.close(cx.registry);
        if let (Tapes::Cassette(catalog), Some(i)) = (&mut self.tapes, entry) {
            catalog.release(i, false);
            cx.defer(ReplayTimer::Rechoose);
        }
        self.run.probe(cx, number, &addr);
        self.after_session(cx);
    }

    /// After a connection ended: the run may be over, or the next client
    /// may be served (next round: never from here).
    pub(super) fn after_session(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let over = match (&self.tapes, self.until) {
            (_, Until::OneSession) => self.run.ended > 0,
            (Tapes::Cassette(catalog), Until::EveryTapeOnce) => catalog.all_served(),
            _ => false,
        };
        if over {
            self.close_listener(cx);
        } else if matches!(self.accepting, Accepting::Open(_)) {
            cx.defer(ReplayTimer::ResumeAccept);
        }
        if self.conns.is_empty() {
            self.arm_connection_wait(cx);
        }
    }

    /// Ends the run at once (`--abort`): sessions in progress are cut.
    pub(super) fn abort_run(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        if self.run.phase == Phase::Stopping {
            return;
        }
        log::warn!("stopping at the first mismatch (--abort)");
        self.run.phase = Phase::Stopping;
        self.close_listener(cx);
        self.cut_all(cx);
    }

    /// Ends every connection still open as cut short by a stop.
    pub(super) fn cut_all(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let keys: Vec<usize> = self.conns.keys().collect();
        for key in keys {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            let what = match conn {
                Conn::Choosing(_) | Conn::Deciding(_) if conn.heard_nothing() => {
                    self.end_probe(cx, key);
                    continue;
                }
                // Handed over and in step with both sides: what it recorded
                // is the session as far as the stop let it go (a pooled
                // connection that stays open until the test ends).
                Conn::Updating(relay, _) if conn.relaying() => {
                    let ending = Ending {
                        outcome: Outcome::Updated,
                        message: Some(format!(
                            "{}; the stop ended the session handed over to the upstream",
                            relay.summary()
                        )),
                        details: None,
                    };
                    self.end(cx, key, ending);
                    continue;
                }
                Conn::Playing(session, _) => session
                    .waiting_for()
                    .unwrap_or_else(|| "the rest of the tape".to_string()),
                Conn::Choosing(_) => "its tape to be chosen".to_string(),
                Conn::Deciding(pool) => pool
                    .waiting_for()
                    .unwrap_or_else(|| "its tape to be decided".to_string()),
                Conn::Updating(relay, _) => relay.waiting_for(),
            };
            let message = format!(
                "session {}: stopped before the tape's end, while waiting for {what}",
                conn.number()
            );
            let ending = Ending {
                outcome: Outcome::Cut,
                message: Some(message),
                details: None,
            };
            self.end(cx, key, ending);
        }
    }
}
