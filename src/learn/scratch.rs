//! The scratch file learned tapes are written to before their text is. A
//! learned tape is as large as its recording, and its text is printed
//! from it twice (lines counted, then written): kept on disk, it costs no
//! memory. One file, unlinked as soon as it is open (nothing is left
//! behind, whatever happens), that the tapes are appended to.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::tape::Source;

/// Scratch files opened by this process, for their names.
static OPENED: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct Scratch {
    file: File,
    /// The name it had, for messages.
    path: PathBuf,
    len: u64,
}

impl Scratch {
    /// A scratch file in `dir`: the output's folder, where the text will
    /// need room too.
    pub fn new(dir: &Path) -> io::Result<Scratch> {
        let n = OPENED.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".tcptape-learn-{}-{n}.scratch", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Scratch { file, path, len: 0 })
    }

    /// Appends what `write` writes; returns what it returned, and where
    /// its bytes are.
    pub fn append<T>(
        &mut self,
        write: impl FnOnce(&mut dyn Write) -> io::Result<T>,
    ) -> Result<(T, Range<u64>), String> {
        let start = self.len;
        let mut out = Counted {
            inner: BufWriter::new(&self.file),
            written: 0,
        };
        let result = write(&mut out).and_then(|value| out.flush().map(|()| value));
        let written = out.written;
        drop(out);
        self.len += written;
        result.map(|value| (value, start..self.len)).map_err(|err| {
            format!(
                "cannot write the scratch file {} (unlinked): {err}",
                self.path.display()
            )
        })
    }

    /// The bytes `range` of the file, to read.
    pub fn part(&self, range: Range<u64>) -> Part<'_> {
        Part {
            file: &self.file,
            range,
        }
    }
}

/// A writer that counts what goes through it.
struct Counted<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes of a scratch file: one tape.
pub struct Part<'a> {
    file: &'a File,
    range: Range<u64>,
}

impl Source for Part<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let left = self.range.end.saturating_sub(self.range.start + offset);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        FileExt::read_at(self.file, &mut buf[..n], self.range.start + offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.range.end - self.range.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_read_back_what_was_appended_and_nothing_is_left() {
        let dir = std::env::temp_dir();
        let mut scratch = Scratch::new(&dir).unwrap();
        let ((), first) = scratch.append(|out| out.write_all(b"first")).unwrap();
        let (n, second) = scratch
            .append(|out| out.write_all(b"second tape").map(|()| 7))
            .unwrap();
        assert_eq!((first.clone(), second.clone(), n), (0..5, 5..16, 7));
        let read = |range: Range<u64>| {
            let part = scratch.part(range);
            let mut buf = vec![0; part.size().unwrap() as usize + 4];
            let n = part.read_at(&mut buf, 0).unwrap();
            buf.truncate(n);
            buf
        };
        assert_eq!(read(first), b"first");
        assert_eq!(read(second), b"second tape");
        assert!(!scratch.path.exists(), "the scratch file has no name");
    }

    #[test]
    fn a_folder_that_cannot_hold_it_says_so() {
        let err = Scratch::new(Path::new("/nonexistent/learn")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
