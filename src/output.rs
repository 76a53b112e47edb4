//! Writing output files without ever leaving a half-written one in place:
//! the bytes go to a temporary file in the same folder, which is renamed
//! over the destination once complete. An output that is also the input
//! (`print t.tape -o t.tape`, or through a symlink) is read whole before
//! it is replaced; a failure leaves the old file as it was. A device or a
//! pipe is written into, never replaced.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

/// A name for a temporary file beside `path`, unique in this process.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(
        ".{name}.tcptape-{}-{unique}.tmp",
        std::process::id()
    ))
}

/// Writes `path` through `write`, atomically: readers see the old file or
/// the whole new one, never a part.
pub(crate) fn write_atomically<F>(path: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    // A device or a pipe (`-o /dev/null`, a FIFO) is written into as it
    // is: renaming a file over it would replace the device itself.
    if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file() && !meta.is_dir()) {
        let mut out = BufWriter::new(std::fs::OpenOptions::new().write(true).open(path)?);
        write(&mut out)?;
        return out.flush();
    }
    let temp = temp_path(path);
    let result = File::create(&temp).and_then(|file| {
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        std::fs::rename(&temp, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Checks that files can be created in `dir`, by creating one and
/// removing it: permissions, a read-only mount or a full disk say no now
/// rather than at the first session.
pub(crate) fn check_writable_dir(dir: &Path) -> io::Result<()> {
    let probe = temp_path(&dir.join("probe"));
    File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// Refuses to write over the input, or into the cassette being read: the
/// reason, naming both.
pub(crate) fn refuse_input_as_output(input: &Path, output: &Path) -> Result<(), String> {
    let (Some(input_real), Some(output_real)) = (real_path(input), real_path(output)) else {
        return Ok(());
    };
    if input_real == output_real {
        return Err(format!(
            "{} is the input: choose another output",
            output.display()
        ));
    }
    if input_real.is_dir() && output_real.starts_with(&input_real) {
        return Err(format!(
            "{} is inside the cassette {}: choose an output outside it",
            output.display(),
            input.display()
        ));
    }
    if output_real.is_dir() && input_real.starts_with(&output_real) {
        return Err(format!(
            "{} is inside {}, which would be replaced: choose another output",
            input.display(),
            output.display()
        ));
    }
    Ok(())
}

/// The path with symbolic links and `..` resolved, for a file that may not
/// exist yet (its folder must).
fn real_path(path: &Path) -> Option<PathBuf> {
    if let Ok(real) = std::fs::canonicalize(path) {
        return Some(real);
    }
    let name = path.file_name()?;
    std::fs::canonicalize(parent_of(path))
        .ok()
        .map(|dir| dir.join(name))
}

pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tcptape-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_the_file_whole() {
        let dir = temp_dir("whole");
        let path = dir.join("out");
        std::fs::write(&path, b"old").unwrap();
        write_atomically(&path, |out| out.write_all(b"new bytes")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new bytes");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = temp_dir("failed");
        let path = dir.join("out");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomically(&path, |out| {
            out.write_all(b"part")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writability_of_a_folder() {
        let dir = temp_dir("writable");
        check_writable_dir(&dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let err = check_writable_dir(&dir.join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outputs_that_would_destroy_the_input_are_refused() {
        let dir = temp_dir("refuse");
        let tape = dir.join("t.tape");
        std::fs::write(&tape, b"x").unwrap();
        let same = dir.join(".").join("t.tape");
        let err = refuse_input_as_output(&tape, &same).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is the input: choose another output")
        );
        let err = refuse_input_as_output(&dir, &dir.join("out.pcap")).unwrap_err();
        assert!(err.to_string().contains("is inside the cassette"), "{err}");
        let err = refuse_input_as_output(&tape, &dir).unwrap_err();
        assert!(err.to_string().contains("which would be replaced"), "{err}");
        refuse_input_as_output(&tape, &dir.join("other.tape")).unwrap();
        refuse_input_as_output(&tape, Path::new("/nonexistent/x/y")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
