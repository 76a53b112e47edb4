//! What each command does with its parsed arguments.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::cli::{BuildArgs, Command, DescribeArgs, PrintArgs};
use crate::error::Error;
use crate::tape::describe::{DescribeError, describe};
use crate::tape::text::{self, PrintError};
use crate::tape::{self, Reader};

/// Runs a parsed command. Help and version are printed by the binary itself.
pub fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Proxy(args) => crate::proxy::run(&args),
        Command::Server(args) => crate::replay::run_server(&args),
        Command::Client(args) => crate::replay::run_client(&args),
        Command::Describe(args) => run_describe(&args),
        Command::Print(args) => run_print(&args),
        Command::Build(args) => run_build(&args),
        Command::Help(_) | Command::Version => Ok(()),
    }
}

fn run_describe(args: &DescribeArgs) -> Result<(), Error> {
    let mut reader = Reader::new(tape::open(&args.tape)?);
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

fn run_print(args: &PrintArgs) -> Result<(), Error> {
    let mut reader = Reader::new(tape::open(&args.tape)?);
    match &args.output {
        Some(path) => {
            let file = File::create(path).map_err(|e| Error::file(path, "create", e))?;
            let mut out = BufWriter::new(file);
            text::print(&mut reader, &mut out)
                .and_then(|()| out.flush().map_err(PrintError::Output))
                .map_err(|err| match err {
                    PrintError::Tape(err) => Error::tape(&args.tape, err),
                    PrintError::Output(err) => Error::file(path, "write", err),
                })
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
    std::fs::write(&args.output, binary).map_err(|e| Error::file(&args.output, "write tape", e))
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
