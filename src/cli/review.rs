//! `tcptape review` on the command line: the diffs printed (in colour on
//! a terminal), and on a terminal one key per pending tape.

use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;

use super::args::{Review, ReviewMode};
use super::{EXIT_ERROR, EXIT_OK};
use crate::error::Error;
use crate::review::{self, DiffLine, Pending};

/// Unchanged lines shown around each change.
const CONTEXT: usize = 2;

pub(super) fn run(args: &Review) -> Result<i32, Error> {
    let pending = review::find(&args.paths)?;
    let mut out = io::stdout().lock();
    let colour = io::stdout().is_terminal();
    if pending.is_empty() {
        let _ = writeln!(out, "no pending tapes");
        return Ok(EXIT_OK);
    }
    match args.mode {
        ReviewMode::Check => {
            for tape in &pending {
                let _ = writeln!(out, "pending: {}", tape.new.display());
            }
            let _ = writeln!(
                out,
                "{} tapes pending review (tcptape review)",
                pending.len()
            );
            Ok(EXIT_ERROR)
        }
        ReviewMode::Diff => {
            for tape in &pending {
                show(&mut out, tape, colour)?;
            }
            Ok(EXIT_OK)
        }
        ReviewMode::Accept | ReviewMode::Reject => {
            for tape in &pending {
                decide(&mut out, tape, args.mode == ReviewMode::Accept)?;
            }
            Ok(EXIT_OK)
        }
        ReviewMode::Ask => ask(&mut out, &pending, colour),
    }
}

/// One key per pending tape: a(ccept), r(eject), s(kip), q(uit).
fn ask(out: &mut impl Write, pending: &[Pending], colour: bool) -> Result<i32, Error> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::setting(
            "review",
            "asking needs a terminal: use --accept, --reject, --check or --diff",
        ));
    }
    for (i, tape) in pending.iter().enumerate() {
        show(out, tape, colour)?;
        loop {
            let _ = write!(
                out,
                "({}/{}) accept (a), reject (r), skip (s), quit (q)? ",
                i + 1,
                pending.len()
            );
            let _ = out.flush();
            let key = crate::sys::read_key(stdin.as_fd()).map_err(|source| Error::System {
                action: "read a key from the terminal",
                source,
            })?;
            let _ = writeln!(out, "{}", key as char);
            match key {
                b'a' | b'A' => decide(out, tape, true)?,
                b'r' | b'R' => decide(out, tape, false)?,
                b's' | b'S' => {
                    let _ = writeln!(out, "skipped {}", tape.new.display());
                }
                b'q' | b'Q' | 3 | 4 => return Ok(EXIT_OK),
                _ => continue,
            }
            break;
        }
    }
    Ok(EXIT_OK)
}

fn decide(out: &mut impl Write, tape: &Pending, accept: bool) -> Result<(), Error> {
    match accept {
        true => {
            review::accept(tape)?;
            let _ = writeln!(out, "accepted {}", tape.old.display());
        }
        false => {
            review::reject(tape)?;
            let _ = writeln!(out, "rejected {}", tape.new.display());
        }
    }
    Ok(())
}

fn show(out: &mut impl Write, tape: &Pending, colour: bool) -> Result<(), Error> {
    let lines = review::diff(tape, CONTEXT)?;
    let paint = |code: &str, text: &str| match colour {
        true => format!("\x1b[{code}m{text}\x1b[0m"),
        false => text.to_string(),
    };
    // A new tape (a cassette connection no tape fitted) replaces nothing.
    let new_tape = match tape.old.exists() {
        true => "",
        false => " (a new tape)",
    };
    let _ = writeln!(
        out,
        "{}",
        paint(
            "1",
            &format!("{} -> {}{new_tape}", tape.new.display(), tape.old.display())
        )
    );
    for line in lines {
        let _ = match line {
            DiffLine::Same(text) => writeln!(out, "  {text}"),
            DiffLine::Removed(text) => writeln!(out, "{}", paint("31", &format!("- {text}"))),
            DiffLine::Added(text) => writeln!(out, "{}", paint("32", &format!("+ {text}"))),
            DiffLine::Gap => writeln!(out, "{}", paint("2", "  ...")),
        };
    }
    Ok(())
}
