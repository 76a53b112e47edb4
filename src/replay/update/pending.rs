//! The pending tape beside a tape played with `--update`: where it goes,
//! the recording started beside it, and what a session leaves when it is
//! over (a merged pending tape, nothing, or a stale one removed). Both
//! roles write it the same way; only the side we played differs.

use std::path::{Path, PathBuf};

use log::info;

use super::course::{self, Update};
use super::merge::{self, MAX_TAPE};
use crate::error::Error;
use crate::report::Outcome;
use crate::tape::Direction;

/// Where the pending tape of `tape` goes.
pub fn pending_path(tape: &Path) -> PathBuf {
    let mut name = tape.as_os_str().to_owned();
    name.push(crate::cassette::PENDING_EXTENSION);
    PathBuf::from(name)
}

/// Starts recording a session of `tape` beside it; `own` is the side
/// whose frames the recording sends (their answers are what it waits for).
/// A `tape` that does not exist is a new one (a cassette's connection that
/// no tape agreed with).
pub fn start(tape: &Path, own: Direction) -> Result<Update, Error> {
    let pending = pending_path(tape);
    let old = match tape.exists() {
        true => read_old(tape)?.0,
        false => Vec::new(),
    };
    Update::start(&pending, own, &old)
        .map_err(|err| Error::file(&course::partial_path(&pending), "write", err))
}

/// What an `--update` session leaves: for one that departed, the pending
/// tape (written); for one that matched, nothing, and a stale pending tape
/// of an earlier run is removed; for one that failed, nothing. `kept` is
/// the side that went as the tape says (`None`: both may have changed).
pub fn settle(
    tape: &Path,
    update: Update,
    outcome: Outcome,
    kept: Option<Direction>,
) -> Result<Option<PathBuf>, Error> {
    let pending = pending_path(tape);
    match outcome {
        Outcome::Updated => {}
        Outcome::Passed => {
            update.discard();
            remove_stale(tape)?;
            return Ok(None);
        }
        _ => {
            update.discard();
            return Ok(None);
        }
    }
    let partial = update
        .finish()
        .map_err(|err| Error::file(&pending, "write", err))?;
    let written = match tape.exists() {
        true => write_pending(tape, &partial, &pending, kept),
        // A new tape is the session as recorded.
        false => {
            std::fs::rename(&partial, &pending).map_err(|err| Error::file(&pending, "write", err))
        }
    };
    let _ = std::fs::remove_file(&partial);
    written.map(|()| Some(pending))
}

/// A session of `tape` matched: a pending tape an earlier run left beside
/// it is stale.
pub fn remove_stale(tape: &Path) -> Result<(), Error> {
    let pending = pending_path(tape);
    if pending.exists() {
        std::fs::remove_file(&pending)
            .map_err(|err| Error::file(&pending, "remove the stale", err))?;
        info!(
            "{}: the tape matched: its stale pending tape is gone",
            tape.display()
        );
    }
    Ok(())
}

/// The old tape, whole, as binary, and its text when it is written as
/// text.
fn read_old(tape: &Path) -> Result<(Vec<u8>, Option<String>), Error> {
    let size = std::fs::metadata(tape)
        .map_err(|err| Error::file(tape, "read", err))?
        .len();
    if size > MAX_TAPE {
        return Err(Error::refused(
            tape,
            format!(
                "{}: --update merges tapes of up to {} MiB, and this one has {size} bytes",
                tape.display(),
                MAX_TAPE >> 20
            ),
        ));
    }
    let raw = std::fs::read(tape).map_err(|err| Error::file(tape, "read", err))?;
    let text = match crate::tape::text::looks_like_text(&raw[..raw.len().min(512)]) {
        true => Some(String::from_utf8(raw.clone()).map_err(|_| {
            Error::refused(
                tape,
                format!("{}: a text tape that is not UTF-8", tape.display()),
            )
        })?),
        false => None,
    };
    let old = match &text {
        Some(text) => crate::tape::text::parse(text).map_err(|source| Error::Text {
            path: tape.to_path_buf(),
            source,
        })?,
        None => raw,
    };
    Ok((old, text))
}

/// Merges the old tape with the recorded session into the pending tape,
/// in the old tape's form.
fn write_pending(
    tape: &Path,
    partial: &Path,
    pending: &Path,
    kept: Option<Direction>,
) -> Result<(), Error> {
    let (old, text) = read_old(tape)?;
    let new = std::fs::read(partial).map_err(|err| Error::file(partial, "read", err))?;
    let merged = merge::merge((&old, text.as_deref()), &new, kept).map_err(|why| {
        Error::refused(
            tape,
            format!("{}: cannot merge the update: {why}", tape.display()),
        )
    })?;
    info!("{}: {} turns changed", tape.display(), merged.changed);
    let bytes = match &merged.text {
        Some(text) => text.as_bytes(),
        None => merged.bytes.as_slice(),
    };
    crate::output::write_atomically(pending, |out| std::io::Write::write_all(out, bytes))
        .map_err(|err| Error::file(pending, "write", err))
}
