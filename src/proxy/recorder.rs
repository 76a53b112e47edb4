//! Writes one session's frames to its tape, straight from the rings.
//!
//! Everything ready at once (a DELAY, both directions' data, their EOFs) goes
//! out in one `writev`: frame headers from a small array on the stack, data
//! slices borrowed from the rings the socket reads landed in. Nothing is
//! copied into a tape buffer, and nothing is buffered in user space, so a
//! frame is in the kernel's hands before the proxy forwards its bytes.
//! With redaction rules, only what the matcher releases is written
//! (`redaction`), and a batch that holds a secret is built in a list.
//! Behind the writes, [`WriteBehind`] hands the tape to the disk chunk by
//! chunk, so a long recording holds few pages of the page cache.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use log::{error, warn};

use super::redaction::{self, Part, Redaction, Redactor};
use super::write_behind::WriteBehind;
use crate::engine::ring::Ring;
use crate::secrets::Release;
use crate::tape::frame::{self, Direction, Header};

/// One direction's contribution to a batch: its ring and whether its EOF is due.
pub struct Pending<'a> {
    pub dir: Direction,
    pub ring: &'a Ring,
    pub eof: bool,
    /// Bytes held back for the rules waited too long (or fill the ring):
    /// release them.
    pub force: bool,
}

/// How much of each direction a [`Recorder::record`] call put on tape.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub data: [usize; 2],
    pub eof: [bool; 2],
}

pub struct Recorder {
    file: File,
    path: PathBuf,
    last_frame: Instant,
    bytes: u64,
    /// Data bytes on tape per direction.
    recorded: [u64; 2],
    /// The direction of the first data recorded.
    first: Option<Direction>,
    /// The matchers of the redaction rules, when there are any.
    redactor: Option<Box<Redactor>>,
    behind: WriteBehind,
}

impl Recorder {
    /// Creates (or truncates) the tape and writes the magic frame. A tape
    /// file that cannot even hold its magic is removed again (a regular
    /// file only: the path may name a device).
    pub fn create(
        path: &Path,
        now: Instant,
        redaction: Option<&Rc<Redaction>>,
    ) -> io::Result<Recorder> {
        let mut file = File::create(path)?;
        let magic = frame::magic_frame();
        if let Err(err) = file.write_all(&magic) {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
                let _ = std::fs::remove_file(path);
            }
            return Err(err);
        }
        Ok(Recorder {
            behind: WriteBehind::for_file(&file, magic.len() as u64),
            file,
            path: path.to_path_buf(),
            last_frame: now,
            bytes: magic.len() as u64,
            recorded: [0, 0],
            first: None,
            redactor: redaction.map(|r| Box::new(Redactor::new(r))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who spoke first, once anyone has.
    pub fn first_speaker(&self) -> Option<Direction> {
        self.first
    }

    /// Bytes written to the tape so far, frames and headers included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Data bytes on tape from the client and from the server.
    pub fn recorded(&self) -> [u64; 2] {
        self.recorded
    }

    /// Writes the unrecorded bytes of each ring as a data frame, followed by
    /// its EOF frame when due, preceded by a DELAY when a millisecond or more
    /// passed since the previous frame. A data frame holds at most
    /// `frame::MAX_LEN` bytes; the caller marks what was recorded and calls
    /// again while anything is left.
    pub fn record(&mut self, pending: [Pending<'_>; 2], now: Instant) -> io::Result<Recorded> {
        let mut done = Recorded::default();
        let mut secrets = false;
        for p in &pending {
            let i = p.dir.index();
            done.data[i] = match &mut self.redactor {
                None => p.ring.unrecorded_len().min(frame::MAX_LEN as usize),
                Some(redactor) => {
                    let release = match (p.eof, p.force) {
                        (true, _) => Release::End,
                        (false, true) => Release::Force,
                        (false, false) => Release::Hold,
                    };
                    let (n, secret) = redactor.classify(p.dir, p.ring, release);
                    secrets |= secret || n > frame::MAX_LEN as usize;
                    n
                }
            };
            // An EOF follows the last of the data, so it waits for a batch
            // that records the rest.
            done.eof[i] = p.eof && done.data[i] == p.ring.unrecorded_len();
        }
        if let Some(redactor) = &mut self.redactor {
            redactor.settle(&self.file)?;
        }
        if done.data == [0, 0] && done.eof == [false, false] {
            return Ok(done);
        }
        if secrets {
            return self.record_redacted(pending, done, now);
        }

        // At most: a DELAY, then per direction a data header and an EOF.
        let mut headers = [[0u8; frame::HEADER_LEN]; 5];
        let mut used = 0;
        let elapsed = now.saturating_duration_since(self.last_frame).as_millis();
        if elapsed > 0 {
            headers[used] = Header::delay(u64::try_from(elapsed).unwrap_or(u64::MAX)).emit();
            used += 1;
        }
        let delay_headers = used;
        for p in &pending {
            let i = p.dir.index();
            if done.data[i] > 0 {
                headers[used] = Header::data(p.dir, done.data[i]).emit();
                used += 1;
            }
            if done.eof[i] {
                headers[used] = Header::eof(p.dir).emit();
                used += 1;
            }
        }

        // Headers interleaved with the ring slices they announce.
        let empty: &[u8] = &[];
        let mut slices = [IoSlice::new(empty); 9];
        let mut n = 0;
        let mut next_header = headers[..used].iter();
        for header in next_header.by_ref().take(delay_headers) {
            slices[n] = IoSlice::new(header);
            n += 1;
        }
        for p in &pending {
            let i = p.dir.index();
            if done.data[i] > 0 {
                if let Some(header) = next_header.next() {
                    slices[n] = IoSlice::new(header);
                    n += 1;
                }
                let (first, second) = p.ring.unrecorded();
                let take_first = first.len().min(done.data[i]);
                slices[n] = IoSlice::new(&first[..take_first]);
                slices[n + 1] = IoSlice::new(&second[..done.data[i] - take_first]);
                n += 2;
            }
            if done.eof[i]
                && let Some(header) = next_header.next()
            {
                slices[n] = IoSlice::new(header);
                n += 1;
            }
        }

        write_all_vectored(&mut self.file, &mut slices[..n])?;
        self.wrote(&slices[..n], &pending, done, now)?;
        Ok(done)
    }

    /// Notes a batch on tape, and hands what is written to the disk
    /// behind.
    fn wrote(
        &mut self,
        slices: &[IoSlice<'_>],
        pending: &[Pending<'_>; 2],
        done: Recorded,
        now: Instant,
    ) -> io::Result<()> {
        self.bytes += slices.iter().map(|s| s.len() as u64).sum::<u64>();
        self.recorded[0] += done.data[0] as u64;
        self.recorded[1] += done.data[1] as u64;
        self.last_frame = now;
        if self.first.is_none() {
            self.first = pending
                .iter()
                .find(|p| done.data[p.dir.index()] > 0)
                .map(|p| p.dir);
        }
        // A writeback that failed lost bytes written before: the session
        // ends with its tape salvaged, as after a failed write.
        self.behind.wrote(&self.file, self.bytes)
    }

    /// A batch with secrets in it (or more than a frame of plain bytes):
    /// its frames listed one by one, the placeholders in place of the
    /// secrets.
    fn record_redacted(
        &mut self,
        pending: [Pending<'_>; 2],
        done: Recorded,
        now: Instant,
    ) -> io::Result<Recorded> {
        let mut redactor = self
            .redactor
            .take()
            .expect("a redacted batch has a redactor");
        let mut owned = Vec::new();
        let mut parts: [Vec<Part>; 2] = [Vec::new(), Vec::new()];
        let elapsed = now.saturating_duration_since(self.last_frame).as_millis();
        if elapsed > 0 {
            let ms = u64::try_from(elapsed).unwrap_or(u64::MAX);
            parts[0].push(Part::Owned(owned.len()));
            owned.push(Header::delay(ms).emit().to_vec());
        }
        for p in &pending {
            let i = p.dir.index();
            redactor.frames(p.dir, &mut owned, &mut parts[i]);
            if done.eof[i] {
                parts[i].push(Part::Owned(owned.len()));
                owned.push(Header::eof(p.dir).emit().to_vec());
            }
        }
        // Where each tentative secret lands in the file, to put its bytes
        // back should it turn out to be none.
        let mut slices = Vec::new();
        let mut at = self.bytes;
        for p in &pending {
            for &part in &parts[p.dir.index()] {
                let before = slices.len();
                redaction::slices(part, &owned, p.ring, &mut slices);
                if let Part::Stars(len, Some((start, head))) = part {
                    redactor.place(p.dir, (start, len), at - head as u64, at);
                }
                at += slices[before..].iter().map(|s| s.len() as u64).sum::<u64>();
            }
        }
        self.redactor = Some(redactor);
        write_all_vectored(&mut self.file, &mut slices)?;
        self.wrote(&slices, &pending, done, now)?;
        Ok(done)
    }
}

impl Recorder {
    /// Ends the tape with a CUT frame: the recording stopped before the
    /// session did, for `reason`.
    pub fn cut(&mut self, reason: &str) -> io::Result<()> {
        let header = Header::new(frame::opcode::CUT, reason.len() as u32).emit();
        let mut slices = [IoSlice::new(&header), IoSlice::new(reason.as_bytes())];
        write_all_vectored(&mut self.file, &mut slices)?;
        self.bytes += (header.len() + reason.len()) as u64;
        Ok(())
    }

    /// After a failed write, keeps what can be trusted: the tape is cut
    /// back to its last complete frame and marked with a CUT frame naming
    /// `reason`. When even that fails (a full disk), the tape is renamed
    /// to `NAME.partial`, which no replay serves, so a tape is never taken
    /// for whole when it is not. Returns where the tape is now.
    pub fn salvage(&mut self, reason: &str) -> PathBuf {
        self.behind.truncated(self.bytes);
        let marked = self
            .file
            .set_len(self.bytes)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.bytes)))
            .and_then(|_| self.cut(reason));
        if marked.is_ok() {
            warn!(
                "{}: kept {} bytes of complete frames, marked as cut short ({reason})",
                self.path.display(),
                self.bytes
            );
            return self.path.clone();
        }
        let mut partial = self.path.clone().into_os_string();
        partial.push(crate::cassette::PARTIAL_EXTENSION);
        let partial = PathBuf::from(partial);
        match std::fs::rename(&self.path, &partial) {
            Ok(()) => {
                error!(
                    "{}: could not be written whole ({reason}); its complete frames are in {}",
                    self.path.display(),
                    partial.display()
                );
                partial
            }
            Err(err) => {
                error!(
                    "{}: could not be written whole ({reason}) nor renamed: {err}",
                    self.path.display()
                );
                self.path.clone()
            }
        }
    }
}

/// `Write::write_all` for vectored writes (std's is not stable yet).
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::{Kind, Reader};
    use std::time::Duration;

    /// A tape's path in a folder of its own, removed with it.
    struct TempTape {
        dir: PathBuf,
        path: PathBuf,
    }

    impl Drop for TempTape {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl std::ops::Deref for TempTape {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.path
        }
    }

    impl AsRef<Path> for TempTape {
        fn as_ref(&self) -> &Path {
            &self.path
        }
    }

    fn temp_tape(name: &str) -> TempTape {
        let dir =
            std::env::temp_dir().join(format!("tcptape-recorder-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempTape {
            path: dir.join(name),
            dir,
        }
    }

    fn ring_with(bytes: &[u8], capacity: usize) -> Ring {
        let mut ring = Ring::new(capacity);
        let window = ring.free_window();
        window[..bytes.len()].copy_from_slice(bytes);
        ring.commit(bytes.len());
        ring
    }

    fn frames(path: &Path) -> Vec<(Kind, u32, Vec<u8>)> {
        let mut reader = Reader::new(File::open(path).unwrap());
        let mut out = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            let mut payload = Vec::new();
            if matches!(frame.kind, Kind::Data(_)) {
                reader.read_payload_into(&mut payload).unwrap();
            }
            out.push((frame.kind, frame.len, payload));
        }
        out
    }

    #[test]
    fn both_directions_delay_and_eof_in_one_batch() {
        let path = temp_tape("batch.tape");
        let start = Instant::now();
        let mut recorder = Recorder::create(&path, start, None).unwrap();
        let c2s = ring_with(b"ping", 64);
        let s2c = ring_with(b"pong!", 64);
        let done = recorder
            .record(
                [
                    Pending {
                        dir: Direction::ClientToServer,
                        ring: &c2s,
                        eof: true,
                        force: false,
                    },
                    Pending {
                        dir: Direction::ServerToClient,
                        ring: &s2c,
                        eof: false,
                        force: false,
                    },
                ],
                start + Duration::from_millis(42),
            )
            .unwrap();
        assert_eq!(done.data, [4, 5]);
        assert_eq!(done.eof, [true, false]);
        let frames = frames(&path);
        assert_eq!(
            frames,
            vec![
                (Kind::Noop, 8, vec![]),
                (Kind::Delay, 42, vec![]),
                (Kind::Data(Direction::ClientToServer), 4, b"ping".to_vec()),
                (Kind::Eof(Direction::ClientToServer), 0, vec![]),
                (Kind::Data(Direction::ServerToClient), 5, b"pong!".to_vec()),
            ]
        );
        assert_eq!(recorder.bytes(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn wrapped_ring_is_one_frame_from_two_slices() {
        let path = temp_tape("wrapped.tape");
        let start = Instant::now();
        let mut recorder = Recorder::create(&path, start, None).unwrap();
        let mut ring = ring_with(b"abcdef", 8);
        ring.mark_recorded(6);
        ring.consume(6);
        // After emptying, the ring restarts at 0; fill it so it wraps.
        let mut ring2 = Ring::new(8);
        ring2.free_window()[..6].copy_from_slice(b"xxxxxx");
        ring2.commit(6);
        ring2.mark_recorded(6);
        ring2.consume(6);
        ring2.free_window()[..2].copy_from_slice(b"12");
        ring2.commit(2);
        ring2.free_window()[..3].copy_from_slice(b"345");
        ring2.commit(3);
        let (first, second) = ring2.unrecorded();
        let idle = Ring::new(8);
        recorder
            .record(
                [
                    Pending {
                        dir: Direction::ClientToServer,
                        ring: &idle,
                        eof: false,
                        force: false,
                    },
                    Pending {
                        dir: Direction::ServerToClient,
                        ring: &ring2,
                        eof: false,
                        force: false,
                    },
                ],
                start,
            )
            .unwrap();
        assert_eq!(first.len() + second.len(), 5);
        let frames = frames(&path);
        assert_eq!(
            frames[1],
            (Kind::Data(Direction::ServerToClient), 5, b"12345".to_vec())
        );
    }

    #[test]
    fn nothing_pending_writes_nothing() {
        let path = temp_tape("empty.tape");
        let start = Instant::now();
        let mut recorder = Recorder::create(&path, start, None).unwrap();
        let a = Ring::new(8);
        let b = Ring::new(8);
        let done = recorder
            .record(
                [
                    Pending {
                        dir: Direction::ClientToServer,
                        ring: &a,
                        eof: false,
                        force: false,
                    },
                    Pending {
                        dir: Direction::ServerToClient,
                        ring: &b,
                        eof: false,
                        force: false,
                    },
                ],
                start + Duration::from_secs(1),
            )
            .unwrap();
        assert_eq!(done, Recorded::default());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12);
    }

    #[test]
    fn a_failed_write_keeps_the_complete_frames_and_marks_the_tape() {
        let path = temp_tape("salvaged.tape");
        let mut recorder = Recorder::create(&path, Instant::now(), None).unwrap();
        // A frame half written when the disk filled up.
        recorder
            .file
            .write_all(&[0x01, 0, 0, 9, b'a', b'b'])
            .unwrap();
        assert_eq!(recorder.salvage("disk full"), path.to_path_buf());
        let frames = frames(&path);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[1].0, Kind::Cut);
        assert_eq!(frames[1].1, 9, "the reason is the payload");
    }

    #[test]
    fn a_tape_that_cannot_even_be_marked_is_renamed_partial() {
        let path = temp_tape("unmarkable.tape");
        let recorder = Recorder::create(&path, Instant::now(), None).unwrap();
        // A descriptor that cannot write: truncating and marking both fail.
        let mut recorder = Recorder {
            file: File::open(&path).unwrap(),
            ..recorder
        };
        let moved = recorder.salvage("disk full");
        assert_eq!(moved, path.with_extension("tape.partial"));
        assert!(!path.exists() && moved.exists());
    }

    #[test]
    fn full_device_is_an_error_and_stays_a_device() {
        use std::os::unix::fs::FileTypeExt;
        let err = Recorder::create(Path::new("/dev/full"), Instant::now(), None)
            .err()
            .expect("writing to /dev/full must fail");
        assert_eq!(err.raw_os_error(), Some(28), "{err}");
        let kind = std::fs::metadata("/dev/full").unwrap().file_type();
        assert!(kind.is_char_device(), "/dev/full must not be removed");
    }
}
