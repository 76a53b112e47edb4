//! Where a recording's tapes go: one file (one session), a path with
//! `{n}` (a tape per session), or a cassette folder with its index; and
//! the check, before anyone connects, that they can be written there.

use std::path::{Path, PathBuf};

use super::NUMBER;
use crate::cassette::{self, Index};
use crate::error::Error;

/// Where sessions are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// One session to this file, then exit.
    One(PathBuf),
    /// Session k to the path with `{n}` replaced by k.
    Numbered(PathBuf),
    /// Session k to `DIR/000k.tape`, with an index.
    Cassette(PathBuf),
}

impl Target {
    pub(super) fn of(path: &Path) -> Target {
        if cassette::is_cassette(path) {
            Target::Cassette(path.to_path_buf())
        } else if path.to_string_lossy().contains(NUMBER) {
            Target::Numbered(path.to_path_buf())
        } else {
            Target::One(path.to_path_buf())
        }
    }

    /// Where the k-th recorded session's tape goes.
    pub(super) fn path_for(&self, number: u64) -> PathBuf {
        match self {
            Target::One(path) => path.clone(),
            Target::Numbered(template) => {
                let text = template.to_string_lossy();
                PathBuf::from(text.replace(NUMBER, &number.to_string()))
            }
            Target::Cassette(dir) => dir.join(cassette::tape_name(number)),
        }
    }

    /// The folder the tapes go to.
    fn folder(&self) -> PathBuf {
        match self {
            Target::Cassette(dir) => dir.clone(),
            Target::One(path) | Target::Numbered(path) => match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }
}

/// A cassette being recorded: its index appears with the first tape.
pub(super) struct CassetteState {
    pub dir: PathBuf,
    /// The folder did not exist before this recording.
    pub created: bool,
    pub index: Option<Index>,
}

/// Checks that the tapes can be written, before anyone connects: the
/// folder exists and is writable; a cassette folder is created if missing
/// and must be empty or a cassette already.
pub(super) fn prepare_folder(target: &Target) -> Result<Option<CassetteState>, Error> {
    let folder = target.folder();
    let cassette = match target {
        Target::Cassette(dir) => {
            let created = cassette::check_recordable(dir)?;
            if created {
                std::fs::create_dir_all(dir)
                    .map_err(|err| Error::file(dir, "create cassette folder", err))?;
            }
            Some(CassetteState {
                dir: dir.clone(),
                created,
                index: None,
            })
        }
        Target::One(_) | Target::Numbered(_) => None,
    };
    crate::output::check_writable_dir(&folder)
        .map_err(|err| Error::file(&folder, "write tapes into", err))?;
    Ok(cassette)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_each_session_tape() {
        let numbered = Target::of(Path::new("/tmp/s{n}.tape"));
        assert_eq!(numbered.path_for(12), PathBuf::from("/tmp/s12.tape"));
        assert_eq!(numbered.folder(), PathBuf::from("/tmp"));
        let one = Target::of(Path::new("s.tape"));
        assert_eq!(one.path_for(3), PathBuf::from("s.tape"));
        assert_eq!(one.folder(), PathBuf::from("."));
        let cassette = Target::of(Path::new("/nonexistent/pool/"));
        assert_eq!(
            cassette.path_for(3),
            PathBuf::from("/nonexistent/pool/0003.tape")
        );
    }
}
