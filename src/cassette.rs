//! A cassette: a folder of tapes, one per recorded connection, named
//! `0001.tape`, `0002.tape`... in accept order, with an `index` beside them.
//!
//! The index is for people and tools: per tape its accept order, start time
//! (ms after the first accept of the recording), byte counts, who spoke
//! first and whether the session was recorded whole. The proxy appends one
//! line as each session ends, so the index only ever names tapes whose
//! recording is over. Replay reads the tapes themselves: any `*.tape` file
//! in the folder is served (binary or text), in numeric order.
//!
//! A folder is tcptape's to record into only when it is empty, or holds
//! nothing but an index and tapes named as tcptape names them: recording
//! replaces those and never touches anything else.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::info;

use crate::error::{Error, os_reason};
use crate::tape::reader::MAX_CHUNK;
use crate::tape::{self, Direction, Kind, Reader};

/// The index file's name inside a cassette.
pub(crate) const INDEX: &str = "index";
/// The first line of every index: how a cassette is recognised.
const INDEX_HEADER: &str = "# tcptape cassette index";
const INDEX_COLUMNS: &str = "# tape order start_ms client_bytes server_bytes first_speaker status";
/// The extension of every tape a cassette serves.
const TAPE_EXTENSION: &str = ".tape";
/// What a tape whose recording failed midway is renamed to.
pub(crate) const PARTIAL_EXTENSION: &str = ".partial";
/// A tape written by `--update` beside the one it would replace, waiting
/// for `tcptape review`.
pub(crate) const PENDING_EXTENSION: &str = ".new";

/// True when `path` names a cassette: it ends with `/` or is a folder.
pub(crate) fn is_cassette(path: &Path) -> bool {
    path.to_string_lossy().ends_with('/') || path.is_dir()
}

/// The file name of the k-th session's tape.
pub(crate) fn tape_name(number: u64) -> String {
    format!("{number:04}{TAPE_EXTENSION}")
}

/// The session number of a tape tcptape named (`0042.tape` is 42).
fn tape_number(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(TAPE_EXTENSION)?;
    let all_digits = !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit());
    all_digits.then(|| stem.parse().ok()).flatten()
}

/// Where a new tape of the cassette in `dir` goes: one number past every
/// numbered tape there, pending ones (`NNNN.tape.new`) and their
/// recordings in progress included.
pub(crate) fn next_tape(dir: &Path) -> io::Result<PathBuf> {
    let mut last = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let Some(at) = name.find(TAPE_EXTENSION) else {
            continue;
        };
        if let Some(number) = tape_number(&name[..at + TAPE_EXTENSION.len()]) {
            last = last.max(number);
        }
    }
    Ok(dir.join(tape_name(last + 1)))
}

/// True for the files a recording writes: numbered tapes, the index, and
/// numbered tapes whose recording failed.
fn is_own_file(name: &str) -> bool {
    let numbered = |tape: &str| tape_number(tape).is_some();
    name == INDEX
        || numbered(name)
        || name.strip_suffix(PARTIAL_EXTENSION).is_some_and(numbered)
        || name.strip_suffix(PENDING_EXTENSION).is_some_and(numbered)
}

/// Who sent the first data of a session.
pub(crate) fn speaker(first: Option<Direction>) -> &'static str {
    first.map_or("nobody", Direction::sender)
}

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub tape: String,
    pub order: u64,
    pub start_ms: u64,
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub first: Option<Direction>,
    /// False when the recording ended before the session did.
    pub whole: bool,
}

impl Entry {
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {} {}\n",
            self.tape,
            self.order,
            self.start_ms,
            self.client_bytes,
            self.server_bytes,
            speaker(self.first),
            if self.whole { "whole" } else { "cut" }
        )
    }

    /// Reads a line as `line` writes it; `None` for anything else.
    fn parse(line: &str) -> Option<Entry> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [tape, order, start_ms, client, server, first, rest @ ..] = fields.as_slice() else {
            return None;
        };
        let first = match *first {
            "client" => Some(Direction::ClientToServer),
            "server" => Some(Direction::ServerToClient),
            "nobody" => None,
            _ => return None,
        };
        Some(Entry {
            tape: tape.to_string(),
            order: order.parse().ok()?,
            start_ms: start_ms.parse().ok()?,
            client_bytes: client.parse().ok()?,
            server_bytes: server.parse().ok()?,
            first,
            // Indexes written before the status column held whole sessions.
            whole: rest.first().is_none_or(|status| *status != "cut"),
        })
    }
}

/// The index of a recording in progress: one line appended per session as
/// it ends, with a single `write` each, so the index grows with the
/// recording instead of being rewritten, and a line is there whole or not
/// at all.
pub(crate) struct Index {
    file: File,
    path: PathBuf,
}

impl Index {
    /// Starts a new index (replacing an old one) with its header lines.
    pub(crate) fn create(dir: &Path) -> io::Result<Index> {
        let path = dir.join(INDEX);
        let header = format!("{INDEX_HEADER}\n{INDEX_COLUMNS}\n");
        crate::output::write_atomically(&path, |out| out.write_all(header.as_bytes()))?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Index { file, path })
    }

    pub(crate) fn append(&mut self, entry: &Entry) -> io::Result<()> {
        self.file.write_all(entry.line().as_bytes())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes a whole index at once (for tools that build a cassette in one go).
pub(crate) fn write_index(dir: &Path, entries: &[Entry]) -> io::Result<()> {
    let mut text = format!("{INDEX_HEADER}\n{INDEX_COLUMNS}\n");
    for entry in entries {
        text.push_str(&entry.line());
    }
    crate::output::write_atomically(&dir.join(INDEX), |out| out.write_all(text.as_bytes()))
}

/// The entries of a cassette's index in accept order; empty without an
/// index. A last line cut short (a recorder killed mid-write) is left out.
pub(crate) fn read_index(dir: &Path) -> Result<Vec<Entry>, Error> {
    let path = dir.join(INDEX);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::file(&path, "read cassette index", err)),
    };
    let mut entries: Vec<Entry> = text
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n') && !line.starts_with('#'))
        .filter_map(Entry::parse)
        .collect();
    in_accept_order(&mut entries);
    Ok(entries)
}

/// Brings the index of the cassette holding `tape` up to date with it once
/// `review --accept` put it in place: its byte counts, who spoke first and
/// whether it is whole. A tape the index does not list yet (a connection
/// `--update` recorded anew) gets a line, one past the last in accept
/// order and starting with it, as replay starts an unlisted tape. Nothing
/// to do for a tape with no index of tcptape's beside it (a file of the
/// user's named `index` is left alone).
pub(crate) fn note_accepted(tape: &Path) -> Result<(), Error> {
    let (Some(dir), Some(name)) = (tape.parent(), tape.file_name()) else {
        return Ok(());
    };
    let name = name.to_string_lossy().into_owned();
    let index = dir.join(INDEX);
    if tape_number(&name).is_none() || !is_our_index(&index) {
        return Ok(());
    }
    let mut entries = read_index(dir)?;
    let summary = summarize(tape)?;
    let update = |entry: &mut Entry| {
        entry.client_bytes = summary.bytes[0];
        entry.server_bytes = summary.bytes[1];
        entry.first = summary.first;
        entry.whole = !summary.cut;
    };
    let mut listed = false;
    for entry in entries.iter_mut().filter(|entry| entry.tape == name) {
        update(entry);
        listed = true;
    }
    if !listed {
        let last = entries.last();
        let mut entry = Entry {
            tape: name,
            order: last.map_or(1, |e| e.order + 1),
            start_ms: last.map_or(0, |e| e.start_ms),
            client_bytes: 0,
            server_bytes: 0,
            first: None,
            whole: true,
        };
        update(&mut entry);
        entries.push(entry);
    }
    write_index(dir, &entries).map_err(|err| Error::file(&index, "write cassette index", err))
}

/// Sorts index entries by accept order; entries of the same order keep
/// theirs (the index is append-only: the later line is the later word).
pub(crate) fn in_accept_order(entries: &mut [Entry]) {
    entries.sort_by_key(|e| e.order);
}

/// The cassette's tapes in the order they are served: numbered tapes by
/// number, then other `*.tape` files by name. Hidden files are skipped;
/// anything else (an editor backup, a README) is ignored with a log line.
pub(crate) fn tapes(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|err| Error::file(dir, "read cassette", err))?;
    let mut tapes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::file(dir, "read cassette", err))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == INDEX {
            continue;
        }
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if name.ends_with(PENDING_EXTENSION) && is_file {
            // A pending update: `tcptape review` takes it.
            continue;
        }
        if !name.ends_with(TAPE_EXTENSION) || !is_file {
            info!(
                "{}: ignoring {name}: a cassette serves regular files named *{TAPE_EXTENSION}",
                dir.display()
            );
            continue;
        }
        tapes.push((tape_number(&name), name));
    }
    // Numbered tapes first, by number (10000 after 9999), then by name.
    tapes.sort_unstable_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    Ok(tapes.into_iter().map(|(_, name)| dir.join(name)).collect())
}

/// Checks that a recording may write into `dir`: it is missing, empty, or
/// holds only what tcptape writes into a cassette (hidden files aside).
/// Returns true when the folder does not exist yet.
pub(crate) fn check_recordable(dir: &Path) -> Result<bool, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(err) => return Err(Error::file(dir, "record a cassette into", err)),
    };
    let mut foreign = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::file(dir, "read cassette folder", err))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !is_own(&entry, &name) {
            foreign.push(name);
        }
    }
    if foreign.is_empty() {
        return Ok(false);
    }
    foreign.sort_unstable();
    let shown: Vec<&str> = foreign.iter().take(3).map(String::as_str).collect();
    let more = match foreign.len() {
        n if n > 3 => format!(" and {} more", n - 3),
        _ => String::new(),
    };
    Err(Error::refused(
        dir,
        format!(
            "cannot record a cassette into {}: the folder holds files tcptape did not write ({}{more}); record into a new or empty folder",
            dir.display(),
            shown.join(", ")
        ),
    ))
}

/// A file of the folder that is tcptape's to replace: named as tcptape
/// names them, a regular file, and as tcptape writes them (its index; a
/// tape, or any numbered file beside tcptape's index, a tape cut short
/// included): a user's notes named `0001.tape` or `index` in a folder
/// of their own are not.
fn is_own(entry: &std::fs::DirEntry, name: &str) -> bool {
    let path = entry.path();
    let beside_our_index = || {
        path.parent()
            .is_some_and(|dir| is_our_index(&dir.join(INDEX)))
    };
    entry.file_type().is_ok_and(|t| t.is_file())
        && is_own_file(name)
        && match name == INDEX {
            true => is_our_index(&path),
            false => tape::begins_like_tape(&path) || beside_our_index(),
        }
}

fn is_our_index(path: &Path) -> bool {
    let mut start = [0u8; INDEX_HEADER.len()];
    File::open(path)
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut start))
        .is_ok_and(|()| start == INDEX_HEADER.as_bytes())
}

/// Removes the tapes and index an earlier recording left in `dir`, so it
/// can be recorded anew. Only tcptape's own files (`check_recordable`).
pub(crate) fn clear(dir: &Path) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|err| Error::file(dir, "read cassette", err))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|err| Error::file(dir, "read cassette", err))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_own(&entry, &name) {
            continue;
        }
        let path = entry.path();
        std::fs::remove_file(&path).map_err(|e| Error::file(&path, "remove old tape", e))?;
        removed += 1;
    }
    if removed > 0 {
        info!(
            "{}: removed the {removed} files of the earlier recording",
            dir.display()
        );
    }
    Ok(())
}

/// What `describe DIR/` says of one tape.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub frames: u64,
    pub bytes: [u64; 2],
    pub delay_ms: u64,
    pub first: Option<Direction>,
    pub eof: [bool; 2],
    pub cut: bool,
}

pub(crate) fn summarize(path: &Path) -> Result<Summary, Error> {
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
            Kind::Cut => summary.cut = true,
            _ => {}
        }
    }
    Ok(summary)
}

/// The one-line listing of each tape of a cassette; the first bad tape's
/// error is returned after every tape was listed.
pub(crate) fn describe(dir: &Path, out: &mut impl Write) -> Result<(), DescribeDirError> {
    let mut first_error = None;
    let tapes = tapes(dir).map_err(DescribeDirError::Cassette)?;
    for path in &tapes {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let line = match summarize(path) {
            Ok(s) => {
                let mut line = format!(
                    "{name}: {} frames, client {} bytes, server {} bytes, {} spoke first, {} ms of delays",
                    s.frames,
                    s.bytes[0],
                    s.bytes[1],
                    speaker(s.first),
                    s.delay_ms,
                );
                line.push_str(match s.eof {
                    [true, true] => ", both sides closed",
                    [true, false] => ", client closed",
                    [false, true] => ", server closed",
                    [false, false] => "",
                });
                if s.cut {
                    line.push_str(", cut short while recording");
                }
                line
            }
            Err(err) => {
                let line = format!("{name}: error: {err}");
                first_error.get_or_insert(err);
                line
            }
        };
        writeln!(out, "{line}").map_err(DescribeDirError::Output)?;
    }
    let mut total = String::new();
    let _ = write!(total, "{} tapes", tapes.len());
    writeln!(out, "{total}").map_err(DescribeDirError::Output)?;
    first_error.map_or(Ok(()), |err| Err(DescribeDirError::Cassette(err)))
}

/// Why `describe DIR/` stopped.
#[derive(Debug)]
pub(crate) enum DescribeDirError {
    Cassette(Error),
    /// Writing the listing failed (a closed pipe is not an error for the user).
    Output(io::Error),
}

/// The reason of a failed write, for log lines.
pub(crate) fn index_error(index: &Path, err: &io::Error) -> String {
    format!("cannot write {}: {}", index.display(), os_reason(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tcptape-cassette-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(tape_name(7), "0007.tape");
        assert_eq!(tape_name(12345), "12345.tape");
        assert_eq!(tape_number("0042.tape"), Some(42));
        assert_eq!(tape_number("10000.tape"), Some(10000));
        for other in ["x.tape", ".tape", "0002.tape~", "0001.txt", "+1.tape"] {
            assert_eq!(tape_number(other), None, "{other}");
        }
        assert!(is_own_file("0003.tape.partial"));
        assert!(!is_own_file("notes.tape.partial"));
    }

    #[test]
    fn a_trailing_slash_makes_a_cassette() {
        assert!(is_cassette(Path::new("/nonexistent/cassette/")));
        assert!(!is_cassette(Path::new("/nonexistent/t.tape")));
    }

    #[test]
    fn tapes_are_served_in_numeric_order_and_strays_ignored() {
        let dir = temp_dir("order");
        for name in [
            "10000.tape",
            "9999.tape",
            "0002.tape",
            "b.tape",
            "a.tape",
            "0002.tape~",
            "README.md",
            ".hidden.tape",
            INDEX,
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.join("sub.tape")).unwrap();
        let names: Vec<String> = tapes(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["0002.tape", "9999.tape", "10000.tape", "a.tape", "b.tape"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn index_lines_are_appended_and_read_back_in_order() {
        let dir = temp_dir("index");
        let entry = |order, first, whole| Entry {
            tape: tape_name(order),
            order,
            start_ms: order * 10,
            client_bytes: 5,
            server_bytes: 7,
            first,
            whole,
        };
        let mut index = Index::create(&dir).unwrap();
        index.append(&entry(2, None, false)).unwrap();
        index
            .append(&entry(1, Some(Direction::ServerToClient), true))
            .unwrap();
        let text = std::fs::read_to_string(dir.join(INDEX)).unwrap();
        assert!(text.starts_with(INDEX_HEADER), "{text}");
        assert!(
            text.ends_with("0002.tape 2 20 5 7 nobody cut\n0001.tape 1 10 5 7 server whole\n"),
            "{text}"
        );
        // A line cut short by a crash is not an entry.
        std::fs::write(dir.join(INDEX), format!("{text}0003.tape 3 3")).unwrap();
        let read = read_index(&dir).unwrap();
        assert_eq!(
            read,
            vec![
                entry(1, Some(Direction::ServerToClient), true),
                entry(2, None, false)
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_tcptapes_own_folders_are_recorded_into() {
        let dir = temp_dir("recordable");
        assert!(!check_recordable(&dir).unwrap(), "empty and existing");
        assert!(check_recordable(&dir.join("new")).unwrap(), "missing");
        write_index(&dir, &[]).unwrap();
        for name in ["0001.tape", "0002.tape.partial", ".gitignore"] {
            std::fs::write(dir.join(name), crate::tape::frame::magic_frame()).unwrap();
        }
        assert!(!check_recordable(&dir).unwrap());
        clear(&dir).unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [".gitignore"], "only tcptape's files go");

        std::fs::write(dir.join("Cargo.toml"), b"[package]").unwrap();
        std::fs::write(dir.join(INDEX), b"not ours").unwrap();
        std::fs::write(dir.join("0003.tape"), b"not a tape").unwrap();
        let err = check_recordable(&dir).unwrap_err().to_string();
        assert!(
            err.contains("holds files tcptape did not write (0003.tape, Cargo.toml, index)"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
