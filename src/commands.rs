//! What each command does with its parsed arguments.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::cassette;
use crate::cli::{AutoArgs, BuildArgs, Command, DescribeArgs, PrintArgs};
use crate::error::Error;
use crate::tape::describe::{DescribeError, describe};
use crate::tape::reader::MAX_CHUNK;
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
        Command::Auto(args) => run_auto(&args, std::env::var("TCPTAPE_MODE").ok().as_deref()),
        Command::Build(args) => run_build(&args),
        Command::Pcap(args) => crate::pcap::run_pcap(&args),
        Command::Import(args) => crate::pcap::run_import(&args),
        Command::Help(_) | Command::Version => Ok(()),
    }
}

fn run_describe(args: &DescribeArgs) -> Result<(), Error> {
    if cassette::is_cassette(&args.tape) {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let listed = cassette::describe(&args.tape, &mut out);
        let flushed = out.flush();
        return listed.and(flushed.or_else(ignore_broken_pipe));
    }
    let mut reader = Reader::with_read_ahead(tape::open(&args.tape)?, MAX_CHUNK);
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

/// What `auto` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoMode {
    Record,
    Replay,
}

/// Decides `auto`'s mode from `TCPTAPE_MODE` and whether PATH exists.
pub fn auto_mode(env: Option<&str>, path: &Path) -> Result<AutoMode, Error> {
    let exists = path.exists();
    match env.unwrap_or("auto") {
        "auto" | "" if exists => Ok(AutoMode::Replay),
        "auto" | "" => Ok(AutoMode::Record),
        "record" => Ok(AutoMode::Record),
        "replay" if exists => Ok(AutoMode::Replay),
        "replay" => Err(Error::Session(format!(
            "TCPTAPE_MODE=replay but {} does not exist: nothing to replay, and recording is off",
            path.display()
        ))),
        other => Err(Error::usage(
            format!("TCPTAPE_MODE: '{other}' is not record, replay or auto"),
            "usage: TCPTAPE_MODE=record|replay|auto tcptape auto [OPTIONS] LISTEN CONNECT PATH",
        )),
    }
}

fn run_auto(args: &AutoArgs, env: Option<&str>) -> Result<(), Error> {
    let path = &args.server.tape;
    match auto_mode(env, path)? {
        AutoMode::Replay => {
            log::info!("auto: {} exists, replaying it", path.display());
            crate::replay::run_server(&args.server)
        }
        AutoMode::Record => {
            log::info!("auto: recording {}", path.display());
            crate::proxy::run(&args.proxy)
        }
    }
}

fn run_print(args: &PrintArgs) -> Result<(), Error> {
    let mut reader = Reader::with_read_ahead(tape::open(&args.tape)?, MAX_CHUNK);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EXIT_ERROR, EXIT_USAGE};

    #[test]
    fn auto_mode_follows_the_path_and_the_environment() {
        let exists = Path::new(env!("CARGO_MANIFEST_DIR"));
        let missing = Path::new("/nonexistent/tape");
        assert_eq!(auto_mode(None, exists).unwrap(), AutoMode::Replay);
        assert_eq!(auto_mode(None, missing).unwrap(), AutoMode::Record);
        assert_eq!(auto_mode(Some("auto"), missing).unwrap(), AutoMode::Record);
        assert_eq!(auto_mode(Some("record"), exists).unwrap(), AutoMode::Record);
        assert_eq!(auto_mode(Some("replay"), exists).unwrap(), AutoMode::Replay);
        let err = auto_mode(Some("replay"), missing).unwrap_err();
        assert_eq!(err.exit_code(), EXIT_ERROR);
        assert!(
            err.to_string().contains("/nonexistent/tape does not exist"),
            "{err}"
        );
        let err = auto_mode(Some("playback"), exists).unwrap_err();
        assert_eq!(err.exit_code(), EXIT_USAGE);
        assert!(err.to_string().contains("'playback'"), "{err}");
    }
}
