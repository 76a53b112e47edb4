//! What the commands that do not run a service do, and which service
//! `auto` runs.

use std::io::{self, BufWriter, Write};

use log::info;

use super::args::{BuildArgs, DescribeArgs, Outputs, PrintArgs};
use super::flags::AutoArgs;
use crate::cassette;
use crate::error::Error;
use crate::job::{self, AutoMode, Environment, Spec};
use crate::tape::describe::{DescribeError, describe};
use crate::tape::reader::MAX_CHUNK;
use crate::tape::text::{self, PrintError};
use crate::tape::{self, Reader};

/// The service `auto` runs: a FILE is one session either way; a cassette
/// replays until stopped, or with `--once` until every tape played.
pub(super) fn auto_spec(args: AutoArgs, env: &Environment) -> Result<(Spec, Outputs), Error> {
    let path = args.server.tape.clone();
    let spec = match job::auto_mode(env, &path)? {
        AutoMode::Replay => {
            info!("auto: {} exists, replaying it", path.display());
            let mut server = args.server;
            server.once |= !cassette::is_cassette(&path);
            super::with_environment(Spec::Server(server), env)
        }
        AutoMode::Record => {
            info!("auto: recording {}", path.display());
            Spec::Proxy(args.proxy)
        }
    };
    Ok((spec, args.outputs))
}

pub(super) fn run_describe(args: &DescribeArgs) -> Result<(), Error> {
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

pub(super) fn run_print(args: &PrintArgs) -> Result<(), Error> {
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

pub(super) fn run_build(args: &BuildArgs) -> Result<(), Error> {
    // A device or a pipe (`/dev/zero`) has no end to read to.
    if std::fs::metadata(&args.text).is_ok_and(|meta| !meta.is_file()) {
        return Err(Error::refused(
            &args.text,
            format!(
                "{}: cannot read text tape: not a regular file",
                args.text.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(&args.text)
        .map_err(|e| Error::file(&args.text, "read text tape", e))?;
    let binary = text::parse(&text).map_err(|source| Error::Text {
        path: args.text.clone(),
        source,
    })?;
    crate::output::write_atomically(&args.output, |out| out.write_all(&binary))
        .map_err(|e| Error::file(&args.output, "write tape", e))
}

pub(super) fn print_stdout(text: &str) -> Result<(), Error> {
    // A closed pipe (`tcptape --help | head -1`) is not worth an error.
    let _ = io::stdout().write_all(text.as_bytes());
    Ok(())
}

/// `tcptape describe big.tape | head` closes stdout early; that is not an error.
fn ignore_broken_pipe(err: io::Error) -> Result<(), Error> {
    match err.kind() {
        io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(Error::file(std::path::Path::new("stdout"), "write to", err)),
    }
}
