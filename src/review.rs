//! `tcptape review`: the pending tapes `--update` wrote beside the tapes
//! they would replace (`TAPE.new`, or `DIR/NNNN.tape.new` in a cassette),
//! each shown as a diff of the two tapes in text form, and accepted (the
//! pending tape replaces the old one, in one rename) or rejected (removed).

use std::path::{Path, PathBuf};

use log::info;

use crate::cassette::{self, PENDING_EXTENSION};
use crate::error::Error;
use crate::linediff::{self, Line};
use crate::tape::text;
use crate::tape::{self, Reader};

/// Folders a search for pending tapes does not enter.
const SKIPPED: &[&str] = &["target", "node_modules", ".git"];
/// How deep a search goes, and how many pending tapes it lists at most.
const MAX_DEPTH: usize = 32;
const MAX_FOUND: usize = 100_000;

/// A tape `--update` wrote, and the tape it would replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub new: PathBuf,
    pub old: PathBuf,
}

/// The pending tapes under `paths` (files named `*.new`, or folders
/// searched for them), in path order.
pub fn find(paths: &[PathBuf]) -> Result<Vec<Pending>, Error> {
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|err| Error::file(path, "review", err))?;
        if meta.is_dir() {
            walk(path, 0, &mut found)?;
        } else if let Some(pending) = pending_of(path) {
            if !pending.is_tapes() {
                return Err(Error::refused(
                    path,
                    format!(
                        "{}: not a pending tape: it, or the file it would replace, is not a tape",
                        path.display()
                    ),
                ));
            }
            found.push(pending);
        } else {
            return Err(Error::refused(
                path,
                format!(
                    "{}: not a pending tape (they are named *{PENDING_EXTENSION}, written by --update)",
                    path.display()
                ),
            ));
        }
    }
    // The same file named twice (`a.new` and `./a.new`) is one.
    let real = |p: &Pending| std::fs::canonicalize(&p.new).unwrap_or_else(|_| p.new.clone());
    found.sort_by_key(real);
    found.dedup_by_key(|p| real(p));
    found.sort_by(|a, b| a.new.cmp(&b.new));
    Ok(found)
}

impl Pending {
    /// Both tcptape's to touch: the pending file a tape, and the file it
    /// would replace a tape or absent (a new cassette tape). A user's
    /// `settings.conf.new` beside `settings.conf` is neither.
    fn is_tapes(&self) -> bool {
        tape::begins_like_tape(&self.new)
            && (!self.old.exists() || tape::begins_like_tape(&self.old))
    }
}

fn pending_of(path: &Path) -> Option<Pending> {
    let name = path.to_str()?;
    let old = name.strip_suffix(PENDING_EXTENSION)?;
    Some(Pending {
        new: path.to_path_buf(),
        old: PathBuf::from(old),
    })
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<Pending>) -> Result<(), Error> {
    if depth > MAX_DEPTH || found.len() >= MAX_FOUND {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|err| Error::file(dir, "search", err))?;
    for entry in entries {
        let entry = entry.map_err(|err| Error::file(dir, "search", err))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && !name.starts_with('.') && !SKIPPED.contains(&name.as_ref()) {
            walk(&entry.path(), depth + 1, found)?;
        } else if kind.is_file()
            && let Some(pending) = pending_of(&entry.path())
        {
            match pending.is_tapes() {
                true => found.push(pending),
                false => info!("{}: not a pending tape, left alone", pending.new.display()),
            }
        }
    }
    Ok(())
}

/// A tape in text form: as written for a text tape, printed for a binary
/// one; empty for a tape that does not exist (a new one).
fn as_text(path: &Path) -> Result<String, Error> {
    if !path.exists() {
        return Ok(String::new());
    }
    let bytes = std::fs::read(path).map_err(|err| Error::file(path, "read", err))?;
    if text::looks_like_text(&bytes[..bytes.len().min(512)]) {
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    let mut reader = Reader::new(tape::open(path)?);
    let mut out = Vec::new();
    text::print(&mut reader, &mut out).map_err(|err| match err {
        text::PrintError::Tape(source) => Error::tape(path, source),
        text::PrintError::Output(source) => Error::file(path, "print", source),
    })?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The changed lines of a pending tape against its old tape, with
/// `context` lines around each change, rendered (`-` removed, `+` added).
pub fn diff(pending: &Pending, context: usize) -> Result<Vec<DiffLine>, Error> {
    let old = as_text(&pending.old)?;
    let new = as_text(&pending.new)?;
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let edits = linediff::diff(&old, &new);
    let changed: Vec<usize> = (0..edits.len())
        .filter(|&i| !matches!(edits[i], Line::Same(_)))
        .collect();
    let shown = |i: usize| changed.iter().any(|&c| c.abs_diff(i) <= context);
    let mut out = Vec::new();
    let mut gap = false;
    for (i, edit) in edits.iter().enumerate() {
        if !shown(i) {
            gap = true;
            continue;
        }
        if gap && !out.is_empty() {
            out.push(DiffLine::Gap);
        }
        gap = false;
        out.push(match edit {
            Line::Same(line) => DiffLine::Same(line.to_string()),
            Line::Removed(line) => DiffLine::Removed(line.to_string()),
            Line::Added(line) => DiffLine::Added(line.to_string()),
        });
    }
    Ok(out)
}

/// One line of a review's diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Same(String),
    Removed(String),
    Added(String),
    /// Unchanged lines left out.
    Gap,
}

/// The pending tape replaces the old one (one rename: atomic); a
/// cassette's index then describes it.
pub fn accept(pending: &Pending) -> Result<(), Error> {
    std::fs::rename(&pending.new, &pending.old)
        .map_err(|err| Error::file(&pending.old, "replace", err))?;
    cassette::note_accepted(&pending.old)
}

/// The pending tape is thrown away.
pub fn reject(pending: &Pending) -> Result<(), Error> {
    std::fs::remove_file(&pending.new).map_err(|err| Error::file(&pending.new, "remove", err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tcptape-review-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub/target")).unwrap();
        dir
    }

    #[test]
    fn pending_tapes_are_found_in_folders_but_not_in_build_output() {
        let root = dir("find");
        let tape = "tcptape text 1\n> \"x\"\n";
        std::fs::write(root.join("a.txt.new"), tape).unwrap();
        std::fs::write(root.join("sub/0001.tape.new"), tape).unwrap();
        std::fs::write(root.join("sub/target/x.txt.new"), tape).unwrap();
        std::fs::write(root.join("sub/other.txt"), "").unwrap();
        // Named like one, but no tape: not found.
        std::fs::write(root.join("sub/notes.md.new"), "# notes\n").unwrap();
        let found = find(std::slice::from_ref(&root)).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.new.strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            [
                PathBuf::from("a.txt.new"),
                PathBuf::from("sub/0001.tape.new")
            ]
        );
        assert_eq!(found[1].old, root.join("sub/0001.tape"));
        let err = find(&[root.join("sub/other.txt")]).unwrap_err().to_string();
        assert!(err.contains("not a pending tape"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_diff_shows_changed_lines_with_their_context_only() {
        let root = dir("diff");
        let old = (1..=20)
            .map(|i| format!("< \"line {i}\"\n"))
            .collect::<String>();
        let new = old.replace("line 10\"", "line ten\"");
        std::fs::write(root.join("t.txt"), format!("tcptape text 1\n{old}")).unwrap();
        std::fs::write(root.join("t.txt.new"), format!("tcptape text 1\n{new}")).unwrap();
        let pending = pending_of(&root.join("t.txt.new")).unwrap();
        let lines = diff(&pending, 1).unwrap();
        assert_eq!(
            lines,
            [
                DiffLine::Same("< \"line 9\"".into()),
                DiffLine::Removed("< \"line 10\"".into()),
                DiffLine::Added("< \"line ten\"".into()),
                DiffLine::Same("< \"line 11\"".into()),
            ]
        );
        accept(&pending).unwrap();
        assert!(!root.join("t.txt.new").exists());
        assert!(
            std::fs::read_to_string(root.join("t.txt"))
                .unwrap()
                .contains("line ten")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
