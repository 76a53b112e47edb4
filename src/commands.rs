//! What each command does with its parsed arguments.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::cli::{Command, DescribeArgs};
use crate::error::Error;
use crate::tape::Reader;
use crate::tape::describe::{DescribeError, describe};

/// Runs a parsed command. Help and version are printed by the binary itself.
pub fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Proxy(args) => crate::proxy::run(&args),
        Command::Server(args) => crate::replay::run_server(&args),
        Command::Client(args) => crate::replay::run_client(&args),
        Command::Describe(args) => run_describe(&args),
        Command::Help(_) | Command::Version => Ok(()),
    }
}

fn run_describe(args: &DescribeArgs) -> Result<(), Error> {
    let file = File::open(&args.tape).map_err(|e| Error::file(&args.tape, "open tape", e))?;
    let mut reader = Reader::new(file);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
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
