//! The poll loop every command runs on: one mio `Poll`, one timer wheel, one
//! thread. A [`Service`] (the proxy, the replayer) owns the sockets and their
//! state machines; the loop only waits, hands out readiness events and expired
//! timers, and stops when the service says it is done.

use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Registry};

use crate::timer::TimerWheel;

/// Milliseconds since the loop started: the wheel's unit of time.
pub type Tick = u64;

/// What a service may use while it handles an event or a timer.
pub struct Context<'a, T> {
    pub registry: &'a Registry,
    pub timers: &'a mut TimerWheel<T>,
    /// The time this batch of events was taken, in ticks.
    pub now: Tick,
    epoch: Instant,
}

impl<T> Context<'_, T> {
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

    /// A timer the service inserted has expired.
    fn expired(&mut self, cx: &mut Context<'_, Self::Timer>, timer: Self::Timer);

    /// True when the loop should return.
    fn is_done(&self) -> bool;
}

pub struct EventLoop<T> {
    poll: Poll,
    events: Events,
    timers: TimerWheel<T>,
    epoch: Instant,
}

impl<T> EventLoop<T> {
    pub fn new() -> io::Result<EventLoop<T>> {
        Ok(EventLoop {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            timers: TimerWheel::new(0),
            epoch: Instant::now(),
        })
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
            now,
            epoch: self.epoch,
        }
    }

    /// Runs until `service.is_done()`. Only the OS failing to poll is an
    /// error here; everything else is the service's to handle.
    pub fn run<S: Service<Timer = T>>(&mut self, service: &mut S) -> io::Result<()> {
        while !service.is_done() {
            // The wheel decides how long we may sleep: until the next deadline.
            let timeout = self
                .timers
                .next_expiry()
                .map(|deadline| Duration::from_millis(deadline.saturating_sub(self.now())));
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            let now = self.now();
            let mut cx = Context {
                registry: self.poll.registry(),
                timers: &mut self.timers,
                now,
                epoch: self.epoch,
            };
            for event in self.events.iter() {
                service.ready(&mut cx, event);
            }
            while let Some(timer) = cx.timers.poll(now) {
                service.expired(&mut cx, timer);
            }
        }
        Ok(())
    }
}
