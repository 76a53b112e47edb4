//! A service started and bound, ready to run on the calling thread's poll
//! loop: what the command line runs on its main thread (with signals) and
//! the library runs on a thread of its own (with a stop handle).

use std::io;
use std::path::Path;

use crate::engine::event_loop::{Context, EventLoop, Service, StopHandle};
use crate::engine::net::Address;
use crate::error::Error;
use crate::report::{Finish, Report, Verdict};
use crate::sys::SignalPipe;
use crate::{proxy, replay};

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

pub(crate) fn poll_error(source: io::Error) -> Error {
    Error::System {
        action: "poll",
        source,
    }
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

/// What `auto` and `--update` read of their environment.
#[derive(Debug, Default)]
pub(crate) struct Environment {
    /// `TCPTAPE_MODE`.
    pub mode: Option<String>,
    /// `CI=true`, as CI services set it.
    pub ci: bool,
    /// `TCPTAPE_UPDATE=1`: replays write pending tapes where peers depart.
    pub update: bool,
}

/// Whether a replay writes pending tapes: `--update` says so; so does
/// `TCPTAPE_UPDATE=1`, except under CI, where nothing is written unless
/// asked for explicitly.
pub(crate) fn update_wanted(explicit: bool, env: &Environment) -> bool {
    if explicit {
        return true;
    }
    if env.update && env.ci {
        log::warn!("TCPTAPE_UPDATE is set, but CI=true: nothing is written without --update");
    }
    env.update && !env.ci
}

impl Environment {
    pub(crate) fn read() -> Environment {
        Environment {
            mode: std::env::var("TCPTAPE_MODE").ok(),
            ci: std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
            update: std::env::var("TCPTAPE_UPDATE")
                .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
        }
    }
}

/// What `auto` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AutoMode {
    Record,
    Replay,
}

/// Decides `auto`'s mode from the environment and whether PATH exists.
pub(crate) fn auto_mode(env: &Environment, path: &Path) -> Result<AutoMode, Error> {
    let exists = path.exists();
    let never_record = |why: &str| {
        Err(Error::refused(
            path,
            format!(
                "{why} but {} does not exist: nothing to replay, and recording is off",
                path.display()
            ),
        ))
    };
    match env.mode.as_deref().unwrap_or("") {
        "auto" | "" if exists => Ok(AutoMode::Replay),
        "" if env.ci => never_record("CI=true (set TCPTAPE_MODE=record to record in CI)"),
        "auto" | "" => Ok(AutoMode::Record),
        "record" => Ok(AutoMode::Record),
        "replay" if exists => Ok(AutoMode::Replay),
        "replay" => never_record("TCPTAPE_MODE=replay"),
        other => Err(Error::setting(
            "TCPTAPE_MODE",
            format!("'{other}' is not record, replay or auto"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(mode: Option<&str>, ci: bool) -> Environment {
        Environment {
            mode: mode.map(String::from),
            ci,
            update: false,
        }
    }

    #[test]
    fn auto_mode_follows_the_path_and_the_environment() {
        let exists = Path::new(env!("CARGO_MANIFEST_DIR"));
        let missing = Path::new("/nonexistent/tape");
        let mode = |m, ci, path| auto_mode(&env(m, ci), path);
        assert_eq!(mode(None, false, exists).unwrap(), AutoMode::Replay);
        assert_eq!(mode(None, false, missing).unwrap(), AutoMode::Record);
        assert_eq!(
            mode(Some("auto"), false, missing).unwrap(),
            AutoMode::Record
        );
        assert_eq!(
            mode(Some("record"), false, exists).unwrap(),
            AutoMode::Record
        );
        assert_eq!(
            mode(Some("replay"), false, exists).unwrap(),
            AutoMode::Replay
        );
        let err = mode(Some("replay"), false, missing).unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/tape does not exist"),
            "{err}"
        );
        let err = mode(Some("playback"), false, exists).unwrap_err();
        assert!(matches!(&err, Error::Setting { name, .. } if name == "TCPTAPE_MODE"));
        assert!(err.to_string().contains("'playback'"), "{err}");
    }

    #[test]
    fn in_ci_auto_never_records_unless_told_to() {
        let exists = Path::new(env!("CARGO_MANIFEST_DIR"));
        let missing = Path::new("/nonexistent/tape");
        let err = auto_mode(&env(None, true), missing).unwrap_err();
        assert!(err.to_string().starts_with("CI=true"), "{err}");
        assert_eq!(
            auto_mode(&env(None, true), exists).unwrap(),
            AutoMode::Replay
        );
        assert_eq!(
            auto_mode(&env(Some("record"), true), missing).unwrap(),
            AutoMode::Record
        );
    }
}
