//! A service started and bound, ready to run on the calling thread's poll
//! loop: what the command line runs on its main thread (with signals) and
//! the library runs on a thread of its own (with a stop handle).

use std::io;

use crate::engine::event_loop::{Context, EventLoop, Service, StopHandle};
use crate::engine::net::Address;
use crate::error::{Error, os_reason};
use crate::report::{Report, Verdict};
use crate::sys::SignalPipe;
use crate::{proxy, replay};

/// What a service gives back when its loop is over.
pub(crate) trait Finish: Service {
    /// The address it listens on, when it listens.
    fn local_addr(&self) -> Option<&Address>;
    /// The run's report.
    fn finish(self) -> Report;
}

/// Any job, whatever its service: what callers hold.
pub(crate) trait Job {
    fn local_addr(&self) -> Option<&Address>;
    fn stop_handle(&self) -> StopHandle;
    /// Turns SIGINT/SIGTERM into stops (the command line only).
    fn watch_signals(&mut self, pipe: SignalPipe) -> Result<(), Error>;
    /// Runs until the service is done; the report says how it went.
    fn run(self: Box<Self>) -> Report;
}

struct Bound<S: Service> {
    event_loop: EventLoop<S::Timer>,
    service: S,
}

impl<S: Finish> Job for Bound<S> {
    fn local_addr(&self) -> Option<&Address> {
        self.service.local_addr()
    }

    fn stop_handle(&self) -> StopHandle {
        self.event_loop.stop_handle()
    }

    fn watch_signals(&mut self, pipe: SignalPipe) -> Result<(), Error> {
        self.event_loop.watch_signals(pipe).map_err(poll_error)
    }

    fn run(mut self: Box<Self>) -> Report {
        let ran = self.event_loop.run(&mut self.service);
        let mut report = self.service.finish();
        if let Err(err) = ran {
            report.fail(Verdict::Error, poll_error(err).to_string());
        }
        report
    }
}

pub(crate) fn poll_error(err: io::Error) -> Error {
    Error::Session(format!("cannot poll: {}", os_reason(&err)))
}

/// What to start.
#[derive(Debug, Clone)]
pub(crate) enum Spec {
    Proxy(proxy::Options),
    Server(replay::ServerOptions),
    Client(replay::ClientOptions),
}

/// Starts a service on a new poll loop of this thread: addresses resolved,
/// tapes loaded, listener bound. Errors here are the run's, before any
/// connection.
pub(crate) fn start(spec: Spec) -> Result<Box<dyn Job>, Error> {
    fn bound<S: Finish + 'static>(
        build: impl FnOnce(&mut Context<'_, S::Timer>) -> Result<S, Error>,
    ) -> Result<Box<dyn Job>, Error>
    where
        S::Timer: 'static,
    {
        let mut event_loop = EventLoop::new().map_err(poll_error)?;
        let service = build(&mut event_loop.context())?;
        Ok(Box::new(Bound {
            event_loop,
            service,
        }))
    }
    match spec {
        Spec::Proxy(options) => bound(|cx| proxy::Proxy::start(options, cx)),
        Spec::Server(options) => bound(|cx| replay::Server::start(options, cx)),
        Spec::Client(options) => bound(|cx| replay::Client::start(options, cx)),
    }
}
