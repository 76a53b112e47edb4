//! The command line: `tcptape`'s arguments parsed into the services'
//! option types (`args`, `flags`, `help`), each command run (`run`), and the
//! one place where results become exit codes and lines on stdout and
//! stderr. Built only with the `cli` feature (the default): a crate that
//! uses the library builds neither lexopt nor env_logger.
//!
//! The contract with test harnesses: a command that listens prints exactly
//! one line `listening on ADDR` on stdout once it listens (nothing else
//! goes to stdout), stops cleanly on SIGINT/SIGTERM, prints one summary
//! line on stderr when it ends, and exits with its verdict.

mod args;
mod flags;
mod help;
mod review;
mod rules;
mod run;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::io::{self, Write};

use crate::error::Error;
use crate::job::{self, Environment, Spec};
use crate::report::{Report, Verdict};
use crate::sys::SignalPipe;
use args::{Command, Outputs};
use run::{auto_spec, print_stdout, run_build, run_describe, run_print};

/// Runs the command line; returns the exit code.
pub(crate) fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    if let Err(err) = crate::sys::ignore_file_size_signal() {
        log::debug!("cannot ignore SIGXFSZ: {err}");
    }
    let command = match args::parse(args) {
        Ok(command) => command,
        Err(usage) => {
            eprintln!(
                "error: {}\n{}\nrun 'tcptape --help' for more",
                usage.message, usage.usage
            );
            return EXIT_USAGE;
        }
    };
    let result = match command {
        Command::Help(text) => print_stdout(text),
        Command::Version => print_stdout(&format!("tcptape {}\n", help::VERSION)),
        Command::Run(spec, outputs) => {
            return run_service(with_environment(spec, &Environment::read()), &outputs);
        }
        Command::Auto(args) => match auto_spec(args, &Environment::read()) {
            Ok((spec, outputs)) => return run_service(spec, &outputs),
            Err(err) => Err(err),
        },
        Command::Describe(args) => run_describe(&args),
        Command::Print(args) => run_print(&args),
        Command::Build(args) => run_build(&args),
        Command::Learn(args) => crate::learn::run(&args),
        Command::Repair(path) => crate::repair::run(&path, &mut io::stdout().lock()),
        Command::Review(args) => match review::run(&args) {
            Ok(code) => return code,
            Err(err) => Err(err),
        },
        Command::Pcap(args) => crate::pcap::run_pcap(&args),
        Command::Import(args) => crate::pcap::run_import(&args),
        Command::Redact(args) => rules::run_redact(&args),
        Command::Scan(args) => match rules::run_scan(&args) {
            Ok(code) => return code,
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(err) => fail(&err),
    }
}

/// Exit code of a successful run.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit code of any failure that is not a usage error or a verdict.
pub(crate) const EXIT_ERROR: i32 = 1;
/// Exit code of a command line (or environment) that could not be understood.
pub(crate) const EXIT_USAGE: i32 = 2;
/// Exit code of a replay whose peer did not do what the tape says.
pub(crate) const EXIT_MISMATCH: i32 = 3;
/// Exit code of a run with `--update` that wrote new tapes for review.
pub(crate) const EXIT_PENDING: i32 = 4;

/// A command line that could not be understood, and the usage line of the
/// command it was for.
#[derive(Debug)]
pub(crate) struct Usage {
    pub message: String,
    pub usage: &'static str,
}

impl Usage {
    pub(crate) fn new(message: impl Into<String>, usage: &'static str) -> Usage {
        Usage {
            message: message.into(),
            usage,
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code of a verdict: 0, 3 or 1.
pub(crate) fn verdict_code(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::Passed => EXIT_OK,
        Verdict::Pending => EXIT_PENDING,
        Verdict::Mismatch => EXIT_MISMATCH,
        Verdict::Error => EXIT_ERROR,
    }
}

/// The exit code of an error: a setting that cannot be understood is a
/// usage error; a run's verdict keeps its own code.
pub(crate) fn exit_code(err: &Error) -> i32 {
    match err {
        Error::Setting { .. } => EXIT_USAGE,
        Error::Verdict(report) => verdict_code(report.verdict()),
        _ => EXIT_ERROR,
    }
}

/// Prints the error line.
fn fail(err: &Error) -> i32 {
    eprintln!("error: {err}");
    exit_code(err)
}

/// What the environment adds to a command: `TCPTAPE_UPDATE`.
pub(crate) fn with_environment(spec: Spec, env: &Environment) -> Spec {
    match spec {
        Spec::Client(mut options) => {
            options.update = job::update_wanted(options.update, env);
            Spec::Client(options)
        }
        // Without an upstream there is no one to hand a client over to.
        Spec::Server(mut options) if options.upstream.is_some() => {
            options.update = job::update_wanted(options.update, env);
            Spec::Server(options)
        }
        other => other,
    }
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
    for pending in report.pending() {
        eprintln!("pending: {} (tcptape review)", pending.display());
    }
    verdict_code(report.verdict())
}

fn start_service(spec: Spec, outputs: &Outputs) -> Result<Box<dyn job::Job>, Error> {
    // Thousands of sessions need thousands of descriptors.
    if let Err(err) = crate::sys::raise_fd_limit() {
        log::debug!("cannot raise the descriptor limit: {err}");
    }
    let mut job = job::start(spec)?;
    let signals = SignalPipe::install().map_err(|source| Error::System {
        action: "catch signals",
        source,
    })?;
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
