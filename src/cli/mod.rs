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
mod run;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::io::{self, Write};

use crate::error::{EXIT_OK, Error};
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
        Err(err) => return fail(&err),
    };
    let result = match command {
        Command::Help(text) => print_stdout(text),
        Command::Version => print_stdout(&format!("tcptape {}\n", help::VERSION)),
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
