//! What each command does with its parsed arguments, and the one place
//! where results become exit codes and lines on stdout and stderr.
//!
//! The contract with test harnesses: a command that listens prints exactly
//! one line `listening on ADDR` on stdout once it listens (nothing else
//! goes to stdout), stops cleanly on SIGINT/SIGTERM, prints one summary
//! line on stderr when it ends, and exits with its verdict.

use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use log::info;

use crate::cassette;
use crate::cli::{self, AutoArgs, BuildArgs, Command, DescribeArgs, Outputs, PrintArgs};
use crate::error::{EXIT_OK, Error};
use crate::job::{self, Spec};
use crate::report::{Report, Verdict};
use crate::sys::SignalPipe;
use crate::tape::describe::{DescribeError, describe};
use crate::tape::reader::MAX_CHUNK;
use crate::tape::text::{self, PrintError};
use crate::tape::{self, Reader};

/// Runs the command line; returns the exit code.
pub(crate) fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    if let Err(err) = crate::sys::ignore_file_size_signal() {
        log::debug!("cannot ignore SIGXFSZ: {err}");
    }
    let command = match cli::parse(args) {
        Ok(command) => command,
        Err(err) => return fail(&err),
    };
    let result = match command {
        Command::Help(text) => print_stdout(text),
        Command::Version => print_stdout(&format!("tcptape {}\n", cli::VERSION)),
        Command::Run(spec, outputs) => return run_service(spec, &outputs),
        Command::Auto(args) => match auto_spec(args, &Environment::read()) {
            Ok((spec, outputs)) => return run_service(spec, &outputs),
            Err(err) => Err(err),
        },
        Command::Describe(args) => run_describe(&args),
        Command::Print(args) => run_print(&args),
        Command::Build(args) => run_build(&args),
        Command::Learn(args) => crate::learn::run(&args),
        Command::Repair(path) => crate::repair::run(&path),
        Command::Pcap(args) => crate::pcap::run_pcap(&args),
        Command::Import(args) => crate::pcap::run_import(&args),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(err) => fail(&err),
    }
}

/// Prints the error line (and for a usage error the usage line).
fn fail(err: &Error) -> i32 {
    match err {
        Error::Usage { usage, .. } => {
            eprintln!("error: {err}\n{usage}\nrun 'tcptape --help' for more")
        }
        _ => eprintln!("error: {err}"),
    }
    err.exit_code()
}

/// Starts a service, announces where it listens, runs it until it is done
/// or stopped by a signal, then reports.
fn run_service(spec: Spec, outputs: &Outputs) -> i32 {
    let name = match &spec {
        Spec::Proxy(_) => "proxy",
        Spec::Server(_) => "server",
        Spec::Client(_) => "client",
    };
    let report = match start_service(spec, outputs) {
        Ok(job) => job.run(),
        Err(err) => {
            let code = fail(&err);
            let mut report = Report::default();
            report.fail(Verdict::Error, err.to_string());
            write_report(outputs, &report);
            return code;
        }
    };
    write_report(outputs, &report);
    eprintln!("tcptape: {name}: {}", report.summary());
    // The first thing that went wrong, then what went wrong with the run
    // as a whole (a tape never played, nothing recorded).
    let first = report.first_failure();
    for failure in first
        .iter()
        .chain(report.failures().filter(|f| Some(*f) != first.as_ref()))
    {
        eprintln!("error: {failure}");
    }
    report.verdict().exit_code()
}

fn start_service(spec: Spec, outputs: &Outputs) -> Result<Box<dyn job::Job>, Error> {
    // Thousands of sessions need thousands of descriptors.
    if let Err(err) = crate::sys::raise_fd_limit() {
        log::debug!("cannot raise the descriptor limit: {err}");
    }
    let mut job = job::start(spec)?;
    let signals = SignalPipe::install()
        .map_err(|err| Error::Session(format!("cannot catch signals: {err}")))?;
    job.watch_signals(signals)?;
    if let Some(addr) = job.local_addr() {
        let line = addr.to_string();
        if let Some(path) = &outputs.address_file {
            crate::output::write_atomically(path, |out| writeln!(out, "{line}"))
                .map_err(|err| Error::file(path, "write the address to", err))?;
        }
        // The ready signal harnesses wait for, whatever RUST_LOG says.
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "listening on {line}");
        let _ = stdout.flush();
    }
    Ok(job)
}

/// `--report FILE`: written however the command ended; a failure to write
/// it is said, but does not change the verdict.
fn write_report(outputs: &Outputs, report: &Report) {
    let Some(path) = &outputs.report else {
        return;
    };
    let json = report.to_json();
    if let Err(err) = crate::output::write_atomically(path, |out| out.write_all(json.as_bytes())) {
        eprintln!("error: {}", Error::file(path, "write the report", err));
    }
}

/// What `auto` reads of its environment.
#[derive(Debug, Default)]
pub(crate) struct Environment {
    /// `TCPTAPE_MODE`.
    pub mode: Option<String>,
    /// `CI=true`, as CI services set it.
    pub ci: bool,
}

impl Environment {
    pub(crate) fn read() -> Environment {
        Environment {
            mode: std::env::var("TCPTAPE_MODE").ok(),
            ci: std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
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
        Err(Error::Session(format!(
            "{why} but {} does not exist: nothing to replay, and recording is off",
            path.display()
        )))
    };
    match env.mode.as_deref().unwrap_or("") {
        "auto" | "" if exists => Ok(AutoMode::Replay),
        "" if env.ci => never_record("CI=true (set TCPTAPE_MODE=record to record in CI)"),
        "auto" | "" => Ok(AutoMode::Record),
        "record" => Ok(AutoMode::Record),
        "replay" if exists => Ok(AutoMode::Replay),
        "replay" => never_record("TCPTAPE_MODE=replay"),
        other => Err(Error::usage(
            format!("TCPTAPE_MODE: '{other}' is not record, replay or auto"),
            "usage: TCPTAPE_MODE=record|replay|auto tcptape auto [OPTIONS] LISTEN CONNECT PATH",
        )),
    }
}

/// The service `auto` runs: a FILE is one session either way; a cassette
/// replays until stopped, or with `--once` until every tape played.
fn auto_spec(args: AutoArgs, env: &Environment) -> Result<(Spec, Outputs), Error> {
    let path = args.server.tape.clone();
    let spec = match auto_mode(env, &path)? {
        AutoMode::Replay => {
            info!("auto: {} exists, replaying it", path.display());
            let mut server = args.server;
            server.once |= !cassette::is_cassette(&path);
            Spec::Server(server)
        }
        AutoMode::Record => {
            info!("auto: recording {}", path.display());
            Spec::Proxy(args.proxy)
        }
    };
    Ok((spec, args.outputs))
}

fn run_describe(args: &DescribeArgs) -> Result<(), Error> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if cassette::is_cassette(&args.tape) {
        let listed = cassette::describe(&args.tape, &mut out);
        let flushed = out.flush();
        return match listed {
            Ok(()) => flushed.or_else(ignore_broken_pipe),
            Err(cassette::DescribeDirError::Cassette(err)) => Err(err),
            Err(cassette::DescribeDirError::Output(err)) => ignore_broken_pipe(err),
        };
    }
    let mut reader = Reader::with_read_ahead(tape::open(&args.tape)?, MAX_CHUNK);
    let result = describe(&mut reader, &mut out, args.verbose);
    // Flush what was listed before reporting an error, so the listing
    // shows the frames up to the fault.
    let flushed = out.flush();
    match result {
        Ok(()) => flushed.or_else(ignore_broken_pipe),
        Err(DescribeError::Tape(err)) => Err(Error::tape(&args.tape, err)),
        Err(DescribeError::Output(err)) => ignore_broken_pipe(err),
    }
}

fn run_print(args: &PrintArgs) -> Result<(), Error> {
    let mut reader = Reader::with_read_ahead(tape::open(&args.tape)?, MAX_CHUNK);
    match &args.output {
        Some(path) => {
            // Written aside and renamed: `print t.tape -o t.tape` reads the
            // whole tape before replacing it.
            let mut failure = None;
            let written = crate::output::write_atomically(path, |out| {
                text::print(&mut reader, &mut &mut *out).map_err(|err| match err {
                    PrintError::Tape(err) => {
                        failure = Some(Error::tape(&args.tape, err));
                        io::Error::other("bad tape")
                    }
                    PrintError::Output(err) => err,
                })
            });
            match (written, failure) {
                (_, Some(err)) => Err(err),
                (Err(err), None) => Err(Error::file(path, "write", err)),
                (Ok(()), None) => Ok(()),
            }
        }
        None => {
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let printed = text::print(&mut reader, &mut out);
            let flushed = out.flush();
            match printed {
                Ok(()) => flushed.or_else(ignore_broken_pipe),
                Err(PrintError::Tape(err)) => Err(Error::tape(&args.tape, err)),
                Err(PrintError::Output(err)) => ignore_broken_pipe(err),
            }
        }
    }
}

fn run_build(args: &BuildArgs) -> Result<(), Error> {
    let text = std::fs::read_to_string(&args.text)
        .map_err(|e| Error::file(&args.text, "read text tape", e))?;
    let binary = text::parse(&text).map_err(|source| Error::Text {
        path: args.text.clone(),
        source,
    })?;
    crate::output::write_atomically(&args.output, |out| out.write_all(&binary))
        .map_err(|e| Error::file(&args.output, "write tape", e))
}

fn print_stdout(text: &str) -> Result<(), Error> {
    // A closed pipe (`tcptape --help | head -1`) is not worth an error.
    let _ = io::stdout().write_all(text.as_bytes());
    Ok(())
}

/// `tcptape describe big.tape | head` closes stdout early; that is not an error.
fn ignore_broken_pipe(err: io::Error) -> Result<(), Error> {
    match err.kind() {
        io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(Error::Session(format!(
            "cannot write to stdout: {}",
            crate::error::os_reason(&err)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EXIT_ERROR, EXIT_USAGE};

    fn env(mode: Option<&str>, ci: bool) -> Environment {
        Environment {
            mode: mode.map(String::from),
            ci,
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
        assert_eq!(err.exit_code(), EXIT_ERROR);
        assert!(
            err.to_string().contains("/nonexistent/tape does not exist"),
            "{err}"
        );
        let err = mode(Some("playback"), false, exists).unwrap_err();
        assert_eq!(err.exit_code(), EXIT_USAGE);
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
