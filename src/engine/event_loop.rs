//! The poll loop every command runs on: one mio `Poll`, one timer wheel, one
//! thread. A [`Service`] (the proxy, the replayer) owns the sockets and their
//! state machines; the loop only waits, hands out readiness events, expired
//! timers and stop requests, and returns when the service says it is done.
//!
//! A stop is asked for from another thread through a [`StopHandle`] (a
//! `mio::Waker`), or by SIGINT/SIGTERM through the signal self-pipe: the
//! first asks for a graceful stop, a second for an immediate one.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::engine::timer::TimerWheel;
use crate::sys::SignalPipe;

/// Tokens the loop keeps for itself, far above any session's.
/// How long sessions may finish after a graceful stop, unless told
/// otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// How a service is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stop {
    /// Stop accepting; let sessions in progress finish within the grace
    /// period, then end the rest.
    Graceful = 1,
    /// End every session now.
    Now = 2,
}

/// Asks a loop running on another thread to stop, or to look at what
/// changed for its service (`notify`). Cheap to clone.
#[derive(Clone)]
pub(crate) struct StopHandle {
    asked: Arc<AtomicU8>,
    notified: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    pub(crate) fn stop(&self, how: Stop) {
        self.asked.fetch_max(how as u8, Ordering::SeqCst);
        // A loop that is gone cannot be woken, and needs no stopping.
        let _ = self.waker.wake();
    }

    /// Wakes the loop to hand its service `Service::notified`: something
    /// it shares with another thread changed (the faults of a mock).
    pub(crate) fn notify(&self) {
        self.notified.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    fn asked(&self) -> Option<Stop> {
        match self.asked.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(Stop::Graceful),
            _ => Some(Stop::Now),
        }
    }
}

/// Milliseconds since the loop started: the wheel's unit of time.
pub type Tick = u64;

/// What a service may use while it handles an event or a timer.
pub struct Context<'a, T> {
    pub registry: &'a Registry,
    pub timers: &'a mut TimerWheel<T>,
    deferred: &'a mut Vec<T>,
    /// The time this batch of events was taken, in ticks.
    pub now: Tick,
    /// How many sessions yielded in the last round and get their turn in
    /// this one: more than one means they compete for it.
    pub yielded: usize,
    epoch: Instant,
}

impl<T> Context<'_, T> {
    /// Runs `timer` after the current round of events and timers, behind
    /// every other session that is ready: how a busy session yields. The
    /// loop polls (without waiting) before it comes back to it. A timer
    /// deferred twice in a round runs once: a session that yields from an
    /// event and from its own resume must not multiply its turns.
    pub fn defer(&mut self, timer: T)
    where
        T: PartialEq,
    {
        if !self.deferred.contains(&timer) {
            self.deferred.push(timer);
        }
    }

    /// The tick `after` from this instant. Measured on the precise clock
    /// and rounded up, not from the batch's `now` (a tick rounded down), so
    /// a timer never fires early.
    pub fn deadline_after(&self, after: Duration) -> Tick {
        let at = self.epoch.elapsed().saturating_add(after);
        u64::try_from(at.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// The part of a command that reacts to the loop.
pub trait Service {
    /// What the service files in the timer wheel.
    type Timer;

    /// A socket registered with `token` is ready (or failed).
    fn ready(&mut self, cx: &mut Context<'_, Self::Timer>, event: &Event);

    /// A timer the service inserted has expired (or a deferred one is due).
    fn expired(&mut self, cx: &mut Context<'_, Self::Timer>, timer: Self::Timer);

    /// Someone asked the service to stop; called once per kind of stop.
    fn stop(&mut self, cx: &mut Context<'_, Self::Timer>, how: Stop);

    /// Another thread changed what it shares with the service
    /// (`StopHandle::notify`).
    fn notified(&mut self, _cx: &mut Context<'_, Self::Timer>) {}

    /// True when the loop should return.
    fn is_done(&self) -> bool;
}

pub struct EventLoop<T> {
    poll: Poll,
    events: Events,
    timers: TimerWheel<T>,
    /// Timers deferred in the current round, run in the next one.
    deferred: Vec<T>,
    epoch: Instant,
    stop_handle: StopHandle,
    signals: Option<SignalPipe>,
    /// The strongest stop handed to the service so far.
    stopped: Option<Stop>,
}

impl<T> EventLoop<T> {
    pub fn new() -> io::Result<EventLoop<T>> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            timers: TimerWheel::new(0),
            deferred: Vec::new(),
            epoch: Instant::now(),
            stop_handle: StopHandle {
                asked: Arc::new(AtomicU8::new(0)),
                notified: Arc::new(AtomicBool::new(false)),
                waker: Arc::new(waker),
            },
            signals: None,
            stopped: None,
        })
    }

    /// A handle that stops this loop from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop_handle.clone()
    }

    /// Turns SIGINT and SIGTERM into stop requests: the first graceful,
    /// any further one immediate.
    pub fn watch_signals(&mut self, pipe: SignalPipe) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&pipe.fd()), SIGNALS, Interest::READABLE)?;
        self.signals = Some(pipe);
        Ok(())
    }

    fn now(&self) -> Tick {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A context for setting a service up before the loop runs.
    pub fn context(&mut self) -> Context<'_, T> {
        let now = self.now();
        Context {
            registry: self.poll.registry(),
            timers: &mut self.timers,
            deferred: &mut self.deferred,
            now,
            yielded: 0,
            epoch: self.epoch,
        }
    }

    /// Runs until `service.is_done()`. Only the OS failing to poll is an
    /// error here; everything else is the service's to handle.
    pub fn run<S: Service<Timer = T>>(&mut self, service: &mut S) -> io::Result<()> {
        let mut ready = Vec::new();
        let mut due = Vec::new();
        while !service.is_done() {
            // Sessions that yielded go on after a look at the sockets;
            // otherwise the wheel decides how long we may sleep.
            let timeout = if !self.deferred.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.timers
                    .next_expiry()
                    .map(|deadline| Duration::from_millis(deadline.saturating_sub(self.now())))
            };
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            std::mem::swap(&mut ready, &mut self.deferred);
            let now = self.now();
            let mut asked = None;
            let mut cx = Context {
                registry: self.poll.registry(),
                timers: &mut self.timers,
                deferred: &mut self.deferred,
                now,
                yielded: ready.len(),
                epoch: self.epoch,
            };
            for event in self.events.iter() {
                match event.token() {
                    WAKER => {
                        asked = asked.max(self.stop_handle.asked());
                        if self.stop_handle.notified.swap(false, Ordering::SeqCst) {
                            service.notified(&mut cx);
                        }
                    }
                    SIGNALS => {
                        let signals = self.signals.as_ref().map_or(0, SignalPipe::drain);
                        if signals > 0 {
                            // A second signal, now or since the first: stop now.
                            let how = if signals > 1 || self.stopped.is_some() {
                                Stop::Now
                            } else {
                                Stop::Graceful
                            };
                            asked = asked.max(Some(how));
                        }
                    }
                    _ => service.ready(&mut cx, event),
                }
            }
            if let Some(how) = asked
                && self.stopped < Some(how)
            {
                self.stopped = Some(how);
                service.stop(&mut cx, how);
            }
            // Only what is due now: timers filed while these run wait for
            // the next round, so the loop always comes back to `poll`.
            while let Some(timer) = cx.timers.poll(now) {
                due.push(timer);
            }
            for timer in due.drain(..).chain(ready.drain(..)) {
                service.expired(&mut cx, timer);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service whose "sessions" always have more work: each turn yields.
    struct Busy {
        turns: Vec<u32>,
        rounds: u32,
        /// What each turn saw of the competition (`cx.yielded`).
        yielded: Vec<usize>,
    }

    impl Service for Busy {
        type Timer = usize;

        fn ready(&mut self, _: &mut Context<'_, usize>, _: &Event) {}

        fn expired(&mut self, cx: &mut Context<'_, usize>, session: usize) {
            self.turns[session] += 1;
            self.yielded.push(cx.yielded);
            // Yields twice, as a session woken by an event and by its own
            // resume in the same round would.
            cx.defer(session);
            cx.defer(session);
        }

        fn stop(&mut self, _: &mut Context<'_, usize>, _: Stop) {}

        fn is_done(&self) -> bool {
            self.turns.iter().sum::<u32>() >= self.rounds * self.turns.len() as u32
        }
    }

    #[test]
    fn a_session_that_yields_gets_one_turn_a_round() {
        let mut event_loop = EventLoop::new().unwrap();
        let mut busy = Busy {
            turns: vec![0; 3],
            rounds: 50,
            yielded: Vec::new(),
        };
        {
            let mut cx = event_loop.context();
            for session in 0..3 {
                cx.defer(session);
            }
        }
        event_loop.run(&mut busy).unwrap();
        assert_eq!(busy.turns, vec![50, 50, 50], "turns do not multiply");
        assert!(
            busy.yielded.iter().all(|&n| n == 3),
            "each turn knows three sessions compete: {:?}",
            busy.yielded
        );
    }

    #[test]
    fn a_session_alone_knows_it_is() {
        let mut event_loop = EventLoop::new().unwrap();
        let mut busy = Busy {
            turns: vec![0; 1],
            rounds: 5,
            yielded: Vec::new(),
        };
        event_loop.context().defer(0);
        event_loop.run(&mut busy).unwrap();
        assert_eq!(busy.yielded, vec![1; 5]);
    }

    #[test]
    fn a_notice_from_another_thread_reaches_the_service() {
        struct Listening(u32);
        impl Service for Listening {
            type Timer = ();
            fn ready(&mut self, _: &mut Context<'_, ()>, _: &Event) {}
            fn expired(&mut self, _: &mut Context<'_, ()>, _: ()) {}
            fn stop(&mut self, _: &mut Context<'_, ()>, _: Stop) {}
            fn notified(&mut self, _: &mut Context<'_, ()>) {
                self.0 += 1;
            }
            fn is_done(&self) -> bool {
                self.0 > 0
            }
        }
        let mut event_loop = EventLoop::new().unwrap();
        let handle = event_loop.stop_handle();
        let notifier = std::thread::spawn(move || handle.notify());
        let mut service = Listening(0);
        event_loop.run(&mut service).unwrap();
        notifier.join().unwrap();
        assert_eq!(service.0, 1);
    }

    #[test]
    fn a_stop_from_another_thread_reaches_the_service() {
        struct Waiting(Option<Stop>);
        impl Service for Waiting {
            type Timer = ();
            fn ready(&mut self, _: &mut Context<'_, ()>, _: &Event) {}
            fn expired(&mut self, _: &mut Context<'_, ()>, _: ()) {}
            fn stop(&mut self, _: &mut Context<'_, ()>, how: Stop) {
                self.0 = Some(how);
            }
            fn is_done(&self) -> bool {
                self.0.is_some()
            }
        }
        let mut event_loop = EventLoop::new().unwrap();
        let handle = event_loop.stop_handle();
        let stopper = std::thread::spawn(move || handle.stop(Stop::Graceful));
        let mut service = Waiting(None);
        event_loop.run(&mut service).unwrap();
        stopper.join().unwrap();
        assert_eq!(service.0, Some(Stop::Graceful));
    }
}
