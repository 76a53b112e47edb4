//! Write-behind: keeps a long recording's footprint in the page cache
//! bounded, and its cost steady.
//!
//! A tape written with plain `write`s fills the page cache with fresh
//! pages until the kernel's dirty limits kick in. On a virtual machine (a
//! CI runner, a cloud host) a page the guest has not touched lately costs
//! ten times the copy into it, so a 1 GiB recording costs 0.3 s or 3 s of
//! CPU depending on the history of the machine's memory. Instead, every
//! [`CHUNK`] of tape is handed to the disk as soon as it is written, and
//! what lies more than [`LAG`] chunks behind the end is waited for and
//! dropped from the cache: a recording cycles through the same few pages,
//! about `(LAG + 1) * CHUNK` of them per tape.
//!
//! The wait is what makes the cost steady, and it also means that past its
//! first `LAG * CHUNK` bytes a recording goes no faster than the disk
//! writes. Write-ahead is unchanged: a byte is forwarded once `write`
//! returned, whether or not it reached the disk yet.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use crate::sys;

/// How much tape is handed to the disk at a time.
pub const CHUNK: u64 = 8 * 1024 * 1024;

/// How many chunks may be on their way to the disk before the oldest is
/// waited for. Measured on a 2-core VM: 1 or 2 cost 0.36-0.39 s of CPU per
/// GiB, 4 and 8 cost 0.51-0.57 s (more distinct pages), plain writes 2.7 s.
pub const LAG: usize = 2;

/// Where a tape's writeback stands.
#[derive(Debug)]
pub enum WriteBehind {
    /// The tape is not a regular file (a device, a pipe): its pages, if it
    /// has any, are not ours to manage.
    Off,
    /// Bytes before `handed` were handed to the disk; those before
    /// `settled` are on it, and out of the page cache.
    On { handed: u64, settled: u64 },
}

impl WriteBehind {
    /// Write-behind for a tape of `file`'s type, whose first `written`
    /// bytes are already written (and too few to manage).
    pub fn for_file(file: &File, written: u64) -> WriteBehind {
        match file.metadata() {
            Ok(meta) if meta.is_file() => WriteBehind::On {
                handed: written,
                settled: 0,
            },
            _ => WriteBehind::Off,
        }
    }

    /// Called after each write, with the tape's length now. Hands a chunk
    /// to the disk once one is full, and settles what lies `LAG` chunks
    /// behind the end.
    /// An error is a writeback that failed: bytes already written did not
    /// reach the disk.
    pub fn wrote(&mut self, file: &File, written: u64) -> io::Result<()> {
        let WriteBehind::On { handed, settled } = self else {
            return Ok(());
        };
        if written < *handed + CHUNK {
            return Ok(());
        }
        sys::start_writeback(file.as_fd(), *handed, written - *handed)?;
        *handed = written;
        let behind = written.saturating_sub(LAG as u64 * CHUNK);
        if behind > *settled {
            sys::settle_written(file.as_fd(), *settled, behind - *settled)?;
            *settled = behind;
        }
        Ok(())
    }

    /// The tape was cut back to `len` bytes (after a failed write): chunks
    /// past it are gone.
    pub fn truncated(&mut self, len: u64) {
        if let WriteBehind::On { handed, settled } = self {
            *handed = (*handed).min(len);
            *settled = (*settled).min(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(name: &str) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("tcptape-wb-{}-{name}", std::process::id()));
        let file = File::create(&path).unwrap();
        (path, file)
    }

    fn state(wb: &WriteBehind) -> (u64, u64) {
        match wb {
            WriteBehind::On { handed, settled } => (*handed, *settled),
            WriteBehind::Off => panic!("write-behind is off"),
        }
    }

    #[test]
    fn chunks_are_handed_over_and_settled_lag_behind() {
        let (path, mut file) = temp_file("chunks");
        let mut wb = WriteBehind::for_file(&file, 0);
        let block = vec![1u8; 1024 * 1024];
        let mut written = 0u64;
        let mut seen = Vec::new();
        for _ in 0..(CHUNK as usize / block.len()) * 5 {
            file.write_all(&block).unwrap();
            written += block.len() as u64;
            wb.wrote(&file, written).unwrap();
            seen.push(state(&wb));
        }
        assert_eq!(state(&wb), (5 * CHUNK, 3 * CHUNK));
        // Nothing handed over before a chunk filled; never more than LAG
        // chunks handed over and not settled.
        assert_eq!(seen[0], (0, 0));
        assert!(
            seen.iter()
                .all(|(handed, settled)| handed - settled <= LAG as u64 * CHUNK)
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), written);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_cut_back_tape_forgets_the_chunks_past_it() {
        let (path, file) = temp_file("cut");
        let mut wb = WriteBehind::On {
            handed: 3 * CHUNK,
            settled: CHUNK,
        };
        wb.truncated(2 * CHUNK + 10);
        assert_eq!(state(&wb), (2 * CHUNK + 10, CHUNK));
        wb.truncated(5);
        assert_eq!(state(&wb), (5, 5));
        drop(file);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_failed_writeback_is_an_error() {
        // A pipe taken for a regular file: the kernel refuses its writeback,
        // as it reports a disk's I/O error.
        let (read, _write) = std::io::pipe().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(read));
        let mut wb = WriteBehind::On {
            handed: 0,
            settled: 0,
        };
        wb.wrote(&file, CHUNK - 1).unwrap();
        let err = wb.wrote(&file, CHUNK).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESPIPE), "{err}");
    }

    #[test]
    fn devices_are_left_alone() {
        let file = File::options().write(true).open("/dev/null").unwrap();
        let mut wb = WriteBehind::for_file(&file, 0);
        assert!(matches!(wb, WriteBehind::Off));
        wb.wrote(&file, 100 * CHUNK).unwrap();
    }
}
