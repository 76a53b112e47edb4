//! A cassette: a folder of tapes, one per recorded connection, named
//! `0001.tape`, `0002.tape`... in accept order, with an `index` beside them.
//!
//! The index is for people and tools: per tape its accept order, start time
//! (ms after the first accept of the recording), byte counts and who spoke
//! first. Replay reads the tapes themselves, so a hand-edited or text tape
//! dropped into the folder is served as well.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::tape::reader::MAX_CHUNK;
use crate::tape::{self, Direction, Kind, Reader};

/// The index file's name inside a cassette.
pub const INDEX: &str = "index";

/// True when `path` names a cassette: it ends with `/` or is a folder.
pub fn is_cassette(path: &Path) -> bool {
    path.to_string_lossy().ends_with('/') || path.is_dir()
}

/// The file name of the k-th session's tape.
pub fn tape_name(number: u64) -> String {
    format!("{number:04}.tape")
}

/// Who sent the first data of a session.
pub fn speaker(first: Option<Direction>) -> &'static str {
    match first {
        Some(Direction::ClientToServer) => "client",
        Some(Direction::ServerToClient) => "server",
        None => "nobody",
    }
}

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub tape: String,
    pub order: u64,
    pub start_ms: u64,
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub first: Option<Direction>,
}

/// Writes the index of the sessions recorded so far (rewritten whole after
/// each session, so a stopped recorder leaves an index of what it finished).
pub fn write_index(dir: &Path, entries: &[Entry]) -> io::Result<()> {
    let mut text = String::from(
        "# tcptape cassette index\n# tape order start_ms client_bytes server_bytes first_speaker\n",
    );
    for e in entries {
        let _ = writeln!(
            text,
            "{} {} {} {} {} {}",
            e.tape,
            e.order,
            e.start_ms,
            e.client_bytes,
            e.server_bytes,
            speaker(e.first)
        );
    }
    std::fs::write(dir.join(INDEX), text)
}

/// The cassette's tapes in name (accept) order: every file but the index
/// and hidden files.
pub fn tapes(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|err| Error::file(dir, "read cassette", err))?;
    let mut tapes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::file(dir, "read cassette", err))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == INDEX || name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        tapes.push(entry.path());
    }
    tapes.sort();
    Ok(tapes)
}

/// Removes a cassette's tapes and index, so it can be recorded anew.
pub fn clear(dir: &Path) -> Result<(), Error> {
    let old = tapes(dir)?;
    if !old.is_empty() {
        log::info!("replacing the {} tapes of {}", old.len(), dir.display());
    }
    for tape in old {
        std::fs::remove_file(&tape).map_err(|e| Error::file(&tape, "remove old tape", e))?;
    }
    let index = dir.join(INDEX);
    if index.exists() {
        std::fs::remove_file(&index).map_err(|e| Error::file(&index, "remove old index", e))?;
    }
    Ok(())
}

/// What `describe DIR/` says of one tape.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub frames: u64,
    pub bytes: [u64; 2],
    pub delay_ms: u64,
    pub first: Option<Direction>,
    pub eof: [bool; 2],
}

pub fn summarize(path: &Path) -> Result<Summary, Error> {
    let mut reader = Reader::with_read_ahead(tape::open(path)?, MAX_CHUNK);
    let mut summary = Summary::default();
    while let Some(frame) = reader.next_frame().map_err(|err| Error::tape(path, err))? {
        summary.frames += 1;
        match frame.kind {
            Kind::Data(dir) if frame.len > 0 => {
                summary.first.get_or_insert(dir);
                summary.bytes[dir.index()] += u64::from(frame.len);
            }
            Kind::Any(dir) => {
                summary.first.get_or_insert(dir);
                let count = reader
                    .read_wildcard()
                    .map_err(|err| Error::tape(path, err))?;
                summary.bytes[dir.index()] += u64::from(count);
            }
            Kind::Delay => summary.delay_ms += u64::from(frame.len),
            Kind::Eof(dir) => summary.eof[dir.index()] = true,
            _ => {}
        }
    }
    Ok(summary)
}

/// The one-line listing of each tape of a cassette; the first bad tape's
/// error is returned after every tape was listed.
pub fn describe(dir: &Path, out: &mut impl io::Write) -> Result<(), Error> {
    let write_error = |err| Error::Session(format!("cannot write to stdout: {err}"));
    let mut first_error = None;
    let tapes = tapes(dir)?;
    for path in &tapes {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match summarize(path) {
            Ok(s) => writeln!(
                out,
                "{name}: {} frames, client {} bytes, server {} bytes, {} spoke first, {} ms of delays{}",
                s.frames,
                s.bytes[0],
                s.bytes[1],
                speaker(s.first),
                s.delay_ms,
                match s.eof {
                    [true, true] => ", both sides closed",
                    [true, false] => ", client closed",
                    [false, true] => ", server closed",
                    [false, false] => "",
                }
            )
            .map_err(write_error)?,
            Err(err) => {
                writeln!(out, "{name}: error: {err}").map_err(write_error)?;
                first_error.get_or_insert(err);
            }
        }
    }
    writeln!(out, "{} tapes", tapes.len()).map_err(write_error)?;
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_accept_order() {
        assert_eq!(tape_name(7), "0007.tape");
        assert!(tape_name(9) < tape_name(10));
        assert_eq!(tape_name(12345), "12345.tape");
    }

    #[test]
    fn a_trailing_slash_makes_a_cassette() {
        assert!(is_cassette(Path::new("/nonexistent/cassette/")));
        assert!(!is_cassette(Path::new("/nonexistent/t.tape")));
    }

    #[test]
    fn index_lists_entries_in_order() {
        let dir = std::env::temp_dir().join(format!("tcptape-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let entry = |order, first| Entry {
            tape: tape_name(order),
            order,
            start_ms: order * 10,
            client_bytes: 5,
            server_bytes: 7,
            first,
        };
        write_index(
            &dir,
            &[entry(1, Some(Direction::ServerToClient)), entry(2, None)],
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.join(INDEX)).unwrap();
        assert!(
            text.ends_with("0001.tape 1 10 5 7 server\n0002.tape 2 20 5 7 nobody\n"),
            "{text}"
        );
    }
}
