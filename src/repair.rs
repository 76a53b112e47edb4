//! `tcptape repair`: keeps the complete frames of a tape whose recording was
//! interrupted (kill -9, power loss, a full disk).
//!
//! The proxy writes a frame before it forwards its bytes, so everything up
//! to the last complete frame is trustworthy; only a last frame cut short
//! is not. Repair removes that part frame and ends the tape with a CUT
//! frame, so that it reads cleanly and says it is not a whole session. A
//! tape of complete frames whose session did not end (a side that never
//! closed, and no CUT frame: the recorder was killed between frames) gets
//! its CUT frame too. For a cassette it repairs every tape and gives the
//! index a line for each tape it lacks (a session whose recording never
//! ended).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::cassette::{self, Entry};
use crate::error::Error;
use crate::tape::frame::{self, Header, opcode};
use crate::tape::{Kind, Reader, TapeErrorKind};

/// What repairing one tape did.
#[derive(Debug, PartialEq, Eq)]
enum Repaired {
    /// It read cleanly, and its session ended (both sides closed) or was
    /// marked as cut: nothing to do.
    Whole,
    /// A part frame of `removed` bytes was cut off; `kept` bytes remain,
    /// then the CUT frame.
    Cut { kept: u64, removed: u64 },
    /// Its frames were complete but its session had not ended: a CUT
    /// frame was added after its `kept` bytes.
    Unfinished { kept: u64 },
}

/// Repairs a tape or every tape of a cassette; says what it did to each,
/// a line each, on `out`.
pub(crate) fn run(path: &Path, out: &mut impl Write) -> Result<(), Error> {
    if cassette::is_cassette(path) {
        return repair_cassette(path, out);
    }
    let done = repair_tape(path)?;
    let _ = writeln!(out, "{}", describe(path, &done));
    Ok(())
}

fn describe(path: &Path, done: &Repaired) -> String {
    match done {
        Repaired::Whole => format!("{}: whole, nothing to repair", path.display()),
        Repaired::Cut { kept, removed } => format!(
            "{}: removed {removed} bytes of an incomplete last frame, kept {kept} bytes of complete frames, marked as cut",
            path.display()
        ),
        Repaired::Unfinished { kept } => format!(
            "{}: its {kept} bytes are complete frames, but its session did not end: marked as cut",
            path.display()
        ),
    }
}

const REASON: &str = "the recording was interrupted; tcptape repair removed an incomplete frame";
const UNFINISHED: &str =
    "the recording was interrupted before the session ended; tcptape repair marked it";

fn repair_tape(path: &Path) -> Result<Repaired, Error> {
    let file = File::open(path).map_err(|err| Error::file(path, "open tape", err))?;
    let len = file
        .metadata()
        .map_err(|err| Error::file(path, "read tape", err))?
        .len();
    let mut start = [0u8; 1];
    let text = len > 0
        && io::Read::read(&mut &file, &mut start).is_ok()
        && crate::tape::text::looks_like_text(&start);
    if text {
        return Err(Error::refused(
            path,
            format!(
                "{}: a text tape is not recorded, so there is nothing to repair: fix it in an editor",
                path.display()
            ),
        ));
    }
    let mut reader = Reader::new(file);
    // The last frame read, and which sides closed.
    let mut last = None;
    let mut closed = [false, false];
    let (keep, reason) = loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                if let Kind::Eof(dir) = frame.kind {
                    closed[dir.index()] = true;
                }
                last = Some(frame.kind);
            }
            Ok(None) if last == Some(Kind::Cut) || closed == [true, true] => {
                return Ok(Repaired::Whole);
            }
            Ok(None) => break (len, UNFINISHED),
            Err(err) => match err.kind {
                TapeErrorKind::TruncatedHeader { .. } | TapeErrorKind::TruncatedPayload { .. } => {
                    break (err.offset, REASON);
                }
                // Killed before the magic was whole: start the tape over.
                // Only what begins as the magic does (a user's short file
                // or an empty one is no tape of ours).
                TapeErrorKind::NotATape { .. } if begins_the_magic(path, len) => {
                    break (0, REASON);
                }
                _ => return Err(Error::tape(path, err)),
            },
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|err| Error::file(path, "open tape for repair", err))?;
    let mut tail = Vec::new();
    if keep == 0 {
        tail.extend_from_slice(&frame::magic_frame());
    }
    tail.extend_from_slice(&Header::new(opcode::CUT, reason.len() as u32).emit());
    tail.extend_from_slice(reason.as_bytes());
    file.set_len(keep)
        .and_then(|()| io::Seek::seek(&mut file, io::SeekFrom::Start(keep)))
        .and_then(|_| file.write_all(&tail))
        .map_err(|err| Error::file(path, "repair tape", err))?;
    Ok(match keep == len {
        true => Repaired::Unfinished { kept: keep },
        false => Repaired::Cut {
            kept: keep,
            removed: len - keep,
        },
    })
}

fn repair_cassette(dir: &Path, out: &mut impl Write) -> Result<(), Error> {
    let tapes = cassette::tapes(dir)?;
    let mut index = cassette::read_index(dir)?;
    let mut changed = false;
    for path in &tapes {
        let done = repair_tape(path)?;
        let _ = writeln!(out, "{}", describe(path, &done));
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let listed = index.iter_mut().find(|e| e.tape == name);
        match (listed, &done) {
            (Some(entry), Repaired::Cut { .. } | Repaired::Unfinished { .. }) => {
                entry.whole = false;
                changed = true;
            }
            (Some(_), Repaired::Whole) => {}
            (None, _) => {
                // A session whose recording never ended: it has no line.
                let Some(entry) = entry_for(path, &name, &index)? else {
                    continue;
                };
                let _ = writeln!(out, "{name}: added to the index as cut short");
                index.push(entry);
                changed = true;
            }
        }
    }
    if changed {
        cassette::in_accept_order(&mut index);
        cassette::write_index(dir, &index)
            .map_err(|err| Error::file(&dir.join(cassette::INDEX), "write", err))?;
    }
    Ok(())
}

/// An index line for a tape the index lacks; `None` for a tape that is
/// not one of the numbered tapes a recording writes.
fn entry_for(path: &Path, name: &str, index: &[Entry]) -> Result<Option<Entry>, Error> {
    let Some(order) = name
        .strip_suffix(".tape")
        .and_then(|stem| stem.parse::<u64>().ok())
    else {
        return Ok(None);
    };
    let summary = cassette::summarize(path)?;
    // Its start time is not known; the latest start before it is close.
    let start_ms = index
        .iter()
        .filter(|e| e.order < order)
        .map(|e| e.start_ms)
        .max()
        .unwrap_or(0);
    Ok(Some(Entry {
        tape: name.to_string(),
        order,
        start_ms,
        client_bytes: summary.bytes[0],
        server_bytes: summary.bytes[1],
        first: summary.first,
        whole: false,
    }))
}

/// Whether the file at `path`, `len` bytes long, holds the first bytes of
/// the magic frame and no more: a tape killed while its magic was written.
fn begins_the_magic(path: &Path, len: u64) -> bool {
    let magic = frame::magic_frame();
    if len == 0 || len >= magic.len() as u64 {
        return false;
    }
    std::fs::read(path).is_ok_and(|bytes| magic.starts_with(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::{Direction, Writer};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tcptape-repair-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn kinds(path: &Path) -> Vec<Kind> {
        let mut reader = Reader::new(File::open(path).unwrap());
        let mut kinds = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            kinds.push(frame.kind);
        }
        kinds
    }

    #[test]
    fn a_cut_frame_is_removed_and_the_tape_marked() {
        let dir = temp_dir("cut");
        let path = dir.join("t.tape");
        let mut bytes = Vec::new();
        let mut w = Writer::new(&mut bytes).unwrap();
        w.data(Direction::ClientToServer, b"hello").unwrap();
        w.data(Direction::ServerToClient, b"world").unwrap();
        let whole = bytes.len();
        std::fs::write(&path, &bytes[..whole - 3]).unwrap();
        let done = repair_tape(&path).unwrap();
        assert_eq!(
            done,
            Repaired::Cut {
                kept: 21,
                removed: (whole - 3 - 21) as u64
            }
        );
        let c2s = Kind::Data(Direction::ClientToServer);
        assert_eq!(kinds(&path), [Kind::Noop, c2s, Kind::Cut]);
        assert_eq!(repair_tape(&path).unwrap(), Repaired::Whole, "idempotent");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn complete_frames_of_a_session_that_did_not_end_are_marked_cut() {
        // Issue 17: a recorder killed between frames left a tape that read
        // cleanly; repair called it whole and it replayed as passed.
        let dir = temp_dir("unfinished");
        let path = dir.join("t.tape");
        let mut bytes = Vec::new();
        let mut w = Writer::new(&mut bytes).unwrap();
        w.data(Direction::ClientToServer, b"hello").unwrap();
        w.eof(Direction::ClientToServer).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let done = repair_tape(&path).unwrap();
        assert_eq!(
            done,
            Repaired::Unfinished {
                kept: bytes.len() as u64
            }
        );
        let c2s = Direction::ClientToServer;
        assert_eq!(
            kinds(&path),
            [Kind::Noop, Kind::Data(c2s), Kind::Eof(c2s), Kind::Cut]
        );
        assert_eq!(repair_tape(&path).unwrap(), Repaired::Whole, "idempotent");
        // Both sides closed: whole.
        let mut bytes = Vec::new();
        let mut w = Writer::new(&mut bytes).unwrap();
        w.eof(Direction::ClientToServer).unwrap();
        w.eof(Direction::ServerToClient).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(repair_tape(&path).unwrap(), Repaired::Whole);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tape_cut_inside_its_magic_starts_over() {
        let dir = temp_dir("magic");
        let path = dir.join("t.tape");
        std::fs::write(&path, b"\0\0\0\x08tcp").unwrap();
        assert!(matches!(
            repair_tape(&path).unwrap(),
            Repaired::Cut { kept: 0, .. }
        ));
        assert_eq!(kinds(&path), [Kind::Noop, Kind::Cut]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_is_not_a_cut_recording_is_refused() {
        let dir = temp_dir("refused");
        let path = dir.join("t.tape");
        let mut bytes = frame::magic_frame().to_vec();
        bytes.extend_from_slice(&[0x42, 0, 0, 0]);
        std::fs::write(&path, &bytes).unwrap();
        let err = repair_tape(&path).unwrap_err().to_string();
        assert!(err.contains("unknown opcode 0x42"), "{err}");
        std::fs::write(&path, "tcptape text 1\n> \"x\"\n").unwrap();
        let err = repair_tape(&path).unwrap_err().to_string();
        assert!(err.contains("text tape"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
