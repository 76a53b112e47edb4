//! `client`: plays the recorded client against a real server, one tape on
//! one connection, or a cassette's tapes each on a connection of its own
//! opened when it was in the recording.

use std::path::PathBuf;
use std::time::Duration;

use log::info;
use mio::Token;
use mio::event::Event;

use super::load::load;
use super::run::{Ending, Phase, ReplayTimer, Run};
use super::script::playback::Playback;
use super::session::Session;
use super::update::pending;
use super::{ClientOptions, TapeFile, file_name};
use crate::cassette;
use crate::engine::event_loop::{Context, Service, Stop};
use crate::engine::net::{Address, Stream};
use crate::engine::slab::Slab;
use crate::error::Error;
use crate::report::Finish;
use crate::report::{Outcome, Report, Verdict};
use crate::tape::{self, Direction};

/// A connection `client` makes for a tape.
struct Planned {
    path: PathBuf,
    name: String,
    /// When it started in the recording, after the first one.
    start_ms: u64,
    opened: bool,
}

pub(crate) struct Client {
    run: Run,
    /// `--update`: where the server departs, pending tapes are written.
    update: bool,
    connect_to: Address,
    plan: Vec<Planned>,
    /// Each session, and the planned tape it plays.
    sessions: Slab<(Box<Session<TapeFile>>, usize)>,
}

impl Client {
    /// Loads the tape (or every tape of the cassette) and plans their
    /// connections: a cassette's start when they started in the recording
    /// (the index's start times, divided by `--speed`), so a pool connects
    /// as it did.
    pub(crate) fn start(
        options: ClientOptions,
        cx: &mut Context<'_, ReplayTimer>,
    ) -> Result<Client, Error> {
        let own = Direction::ClientToServer;
        let path = &options.tape;
        let mut plan = Vec::new();
        if cassette::is_cassette(path) {
            let index = cassette::read_index(path)?;
            let mut previous = 0;
            for tape in cassette::tapes(path)? {
                load(&tape, own)?;
                let name = file_name(&tape);
                // A tape the index does not know starts with the one before it.
                let start_ms = index
                    .iter()
                    .find(|e| e.tape == name)
                    .map_or(previous, |e| e.start_ms);
                previous = start_ms;
                plan.push(Planned {
                    path: tape,
                    name,
                    start_ms,
                    opened: false,
                });
            }
            if plan.is_empty() {
                return Err(Error::refused(
                    path,
                    format!(
                        "{}: the cassette holds no tapes (*.tape files)",
                        path.display()
                    ),
                ));
            }
        } else {
            load(path, own)?;
            plan.push(Planned {
                path: path.clone(),
                name: file_name(path),
                start_ms: 0,
                opened: false,
            });
        }
        let connect_to = options
            .connect
            .resolve()
            .map_err(|err| Error::net(&options.connect, err))?;
        let speed = options.replay.speed.unwrap_or(1.0);
        if plan.len() > 1 {
            info!(
                "playing the {} tapes of {} against {connect_to}",
                plan.len(),
                path.display()
            );
        }
        let mut client = Client {
            run: Run::new(path.clone(), own, &options.replay, cx.now),
            update: options.update,
            connect_to,
            plan,
            sessions: Slab::new(),
        };
        for index in 0..client.plan.len() {
            let start_ms = client.plan[index].start_ms;
            if start_ms == 0 && index == 0 {
                // The first connection fails the command at once if the
                // server cannot be reached.
                client.connect(cx, index)?;
                continue;
            }
            let after = Duration::from_secs_f64(start_ms as f64 / 1000.0 / speed);
            cx.timers
                .insert(cx.deadline_after(after), ReplayTimer::Connect { index });
        }
        Ok(client)
    }

    /// Opens the connection of planned tape `index`.
    fn connect(&mut self, cx: &mut Context<'_, ReplayTimer>, index: usize) -> Result<(), Error> {
        self.plan[index].opened = true;
        let number = self.run.next_number(cx.now);
        let addr = self.connect_to.clone();
        let stream =
            Stream::connect(&addr).map_err(|err| Error::address(&addr, "connect to", err))?;
        let (tape, locator) = tape::open_located(&self.plan[index].path)?;
        let name = self.plan[index].name.clone();
        let playback = Playback::new((name, tape, locator), self.run.settings)?;
        let key = self.sessions.vacant_key();
        let mut session = Session::start(
            cx.registry,
            number,
            (stream, addr, Token(key + 1)),
            playback,
            true,
            cx.now,
        )?;
        if self.update {
            let tape = &self.plan[index].path;
            let update = pending::start(tape, Direction::ClientToServer)?;
            session = session.with_update(update);
        }
        self.run.give_faults(session.peer_mut(), number, cx.now);
        self.sessions.insert((Box::new(session), index));
        self.run.arm_timeout(cx, key, number);
        self.resume(cx, key);
        Ok(())
    }

    /// A scheduled connection is due.
    fn connect_scheduled(&mut self, cx: &mut Context<'_, ReplayTimer>, index: usize) {
        if self.run.phase == Phase::Stopping || self.plan[index].opened {
            return;
        }
        if let Err(err) = self.connect(cx, index) {
            let (number, addr) = (self.run.started, self.connect_to.clone());
            let path = self.plan[index].path.clone();
            self.run.failed(number, &addr, Some(path), err);
        }
    }

    fn resume(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize) {
        let scratch = &mut self.run.scratch;
        if let Some((session, _)) = self.sessions.get_mut(key) {
            let status = session.resume(cx.registry, cx.now, scratch);
            self.on_status(cx, key, status);
        }
    }

    fn on_status(
        &mut self,
        cx: &mut Context<'_, ReplayTimer>,
        key: usize,
        status: super::status::Status,
    ) {
        let Some((session, _)) = self.sessions.get_mut(key) else {
            return;
        };
        self.run.reclaim.freed(session.take_freed());
        let number = session.number;
        if let Some(ending) = self
            .run
            .schedule(cx, (key, number), session.peer_mut(), status)
        {
            self.end(cx, key, ending);
        }
    }

    fn end(&mut self, cx: &mut Context<'_, ReplayTimer>, key: usize, mut ending: Ending) {
        let Some((mut session, index)) = self.sessions.remove(key) else {
            return;
        };
        session.log_end(ending.outcome.as_str());
        let (number, addr, bytes) = (session.number, session.addr().clone(), session.bytes());
        let faults = session.peer().fired().to_vec();
        let update = session.take_update();
        session.close(cx.registry);
        let path = self.plan[index].path.clone();
        if let Some(update) = update {
            match pending::settle(
                &path,
                update,
                ending.outcome,
                Some(Direction::ClientToServer),
            ) {
                Ok(Some(pending)) => {
                    info!("{}: the updated tape waits for review", pending.display());
                    self.run.report.pending.push(pending);
                }
                Ok(None) => {}
                Err(err) => {
                    ending = Ending {
                        outcome: Outcome::Error,
                        message: Some(format!("session {number}: {err}")),
                        details: None,
                    };
                }
            }
        }
        self.run
            .record(cx, (number, &addr), Some(path), ending, (bytes, faults));
    }

    fn cut_all(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        let keys: Vec<usize> = self.sessions.keys().collect();
        for key in keys {
            let Some((session, _)) = self.sessions.get(key) else {
                continue;
            };
            let what = session
                .waiting_for()
                .unwrap_or_else(|| "the rest of the tape".to_string());
            let message = format!(
                "session {}: stopped before the tape's end, while waiting for {what}",
                session.number
            );
            let ending = Ending {
                outcome: Outcome::Cut,
                message: Some(message),
                details: None,
            };
            self.end(cx, key, ending);
        }
    }

    fn holds(&self, key: usize, number: u64) -> bool {
        self.sessions
            .get(key)
            .is_some_and(|(s, _)| s.number == number)
    }
}

impl Service for Client {
    type Timer = ReplayTimer;

    fn ready(&mut self, cx: &mut Context<'_, ReplayTimer>, event: &Event) {
        let key = event.token().0 - 1;
        let scratch = &mut self.run.scratch;
        if let Some((session, _)) = self.sessions.get_mut(key) {
            let status = session.ready(cx.registry, event, cx.now, scratch);
            self.on_status(cx, key, status);
        }
    }

    fn expired(&mut self, cx: &mut Context<'_, ReplayTimer>, timer: ReplayTimer) {
        match timer {
            ReplayTimer::Delay { key, number } if self.holds(key, number) => {
                let scratch = &mut self.run.scratch;
                if let Some((session, _)) = self.sessions.get_mut(key) {
                    let status = session.delay_over(cx.registry, cx.now, scratch);
                    self.on_status(cx, key, status);
                }
            }
            ReplayTimer::Resume { key, number } if self.holds(key, number) => {
                self.resume(cx, key);
            }
            ReplayTimer::Timeout { key, number } if self.holds(key, number) => {
                let Some((session, _)) = self.sessions.get(key) else {
                    return;
                };
                let (last, waiting) = (session.last_activity(), session.waiting_for());
                if let Some(status) = self.run.check_timeout(cx, (key, number), last, waiting) {
                    self.on_status(cx, key, status);
                }
            }
            ReplayTimer::Connect { index } => self.connect_scheduled(cx, index),
            ReplayTimer::Grace => self.cut_all(cx),
            _ => {}
        }
    }

    fn stop(&mut self, cx: &mut Context<'_, ReplayTimer>, how: Stop) {
        self.run.phase = Phase::Stopping;
        match how {
            Stop::Graceful if !self.sessions.is_empty() => {
                cx.timers
                    .insert(cx.deadline_after(self.run.grace), ReplayTimer::Grace);
            }
            Stop::Graceful => {}
            Stop::Now => self.cut_all(cx),
        }
    }

    /// The library's handle changed the faults: sessions under way take
    /// them up for their next bytes, new ones get them.
    fn notified(&mut self, cx: &mut Context<'_, ReplayTimer>) {
        if !self.run.take_new_faults() {
            return;
        }
        let keys: Vec<usize> = self.sessions.keys().collect();
        for key in keys {
            if let Some((session, _)) = self.sessions.get_mut(key) {
                let number = session.number;
                self.run.give_faults(session.peer_mut(), number, cx.now);
            }
            self.resume(cx, key);
        }
    }

    fn is_done(&self) -> bool {
        let all_opened = self.plan.iter().all(|p| p.opened);
        self.sessions.is_empty() && (all_opened || self.run.phase == Phase::Stopping)
    }
}

impl Finish for Client {
    fn local_addr(&self) -> Option<&Address> {
        None
    }

    fn finish(self) -> Report {
        let mut report = self.run.report;
        if self.plan.len() > 1 {
            let unopened = self.plan.iter().filter(|p| !p.opened);
            report.unused = unopened.map(|p| p.name.clone()).collect();
        }
        if !report.unused.is_empty() {
            let message = format!(
                "{} of the tapes of {} were never played: {}",
                report.unused.len(),
                self.run.path.display(),
                report.unused.join(", ")
            );
            report.fail(Verdict::Mismatch, message);
        } else if report.sessions().is_empty() {
            let message = format!("{} was never played", self.run.path.display());
            report.fail(Verdict::Mismatch, message);
        }
        report
    }
}
