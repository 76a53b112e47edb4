//! The few system calls that std and mio lack, each behind a safe function:
//! the listen backlog, the descriptor limit, sendfile, a reset on close
//! (SO_LINGER), write-behind of tapes, terminal keys, and a self-pipe that
//! turns SIGINT and SIGTERM into readiness events of the poll loop.
//!
//! This is the only module with `unsafe` code (and `pairs`, the vector
//! compares of the redaction rules' search).

mod pairs;
pub(crate) use pairs::pair_positions;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Turns a libc return value into an `io::Result`, reading `errno` on -1.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Sets the accept queue length of a listening socket. Linux takes a
/// second `listen` on a listening socket as a change of its backlog; the
/// kernel caps it at `net.core.somaxconn`.
pub(crate) fn set_backlog(socket: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: `listen` only reads its integer arguments; the descriptor is
    // borrowed, so it is open for the duration of the call.
    check(unsafe { libc::listen(socket.as_raw_fd(), backlog) }).map(drop)
}

/// Raises the soft limit on open descriptors to the hard limit, so that
/// thousands of sessions fit; returns the new soft limit.
pub(crate) fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes into the struct we own and pass by pointer.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `setrlimit` only reads the struct.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) })?;
    }
    Ok(limit.rlim_cur)
}

/// Makes a write past the file size limit (`ulimit -f`) fail with EFBIG,
/// like a full disk, instead of killing the process with SIGXFSZ: a tape
/// that cannot grow is then salvaged like any tape whose write failed.
pub(crate) fn ignore_file_size_signal() -> io::Result<()> {
    // SAFETY: installing SIG_IGN for SIGXFSZ touches no memory of ours.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    if previous == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `count` bytes of `file` from `offset` to the socket `out` inside
/// the kernel (no copy through user space); returns how many went, which
/// may be fewer (a full socket buffer), or `WouldBlock`.
pub(crate) fn sendfile(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
    // SAFETY: both descriptors are borrowed, so open for the call; the
    // kernel reads and updates only the `off_t` we own.
    let sent = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Makes closing `socket` a reset: with SO_LINGER on and a zero timeout,
/// `close` drops what is still unsent and sends an RST instead of a FIN
/// (the `reset` fault). The socket is reset when its last descriptor goes.
pub(crate) fn set_linger_zero(socket: BorrowedFd<'_>) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: `setsockopt` reads `len` bytes of the `linger` we own; the
    // descriptor is borrowed, so open for the call.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            len,
        )
    })
    .map(drop)
}

/// Starts writing `len` bytes of `file` from `offset` to the disk, without
/// waiting for them to get there.
pub(crate) fn start_writeback(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let (offset, len) = file_range(offset, len)?;
    // SAFETY: the descriptor is borrowed, so open for the call; the call
    // reads only its integer arguments.
    check(unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    })
    .map(drop)
}

/// Waits until `len` bytes of `file` from `offset` are on the disk, then
/// drops them from the page cache: a long recording then cycles through the
/// same few pages instead of taking fresh ones, which cost more than the
/// copy itself on a virtual machine. An I/O error of the writeback is
/// reported here, as the data it lost.
pub(crate) fn settle_written(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let (offset, len) = file_range(offset, len)?;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: as in `start_writeback`.
    check(unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) })?;
    // SAFETY: the descriptor is borrowed; `posix_fadvise` reads only its
    // integer arguments. It returns the error number instead of setting errno.
    let advised =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    match advised {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

fn file_range(offset: u64, len: u64) -> io::Result<(libc::off_t, libc::off_t)> {
    let past = || io::Error::new(io::ErrorKind::InvalidInput, "file range past off_t");
    Ok((
        libc::off_t::try_from(offset).map_err(|_| past())?,
        libc::off_t::try_from(len).map_err(|_| past())?,
    ))
}

/// Reads one key from a terminal without waiting for Enter and without
/// echoing it: the terminal is put in non-canonical mode for the read and
/// restored after. Fails on anything that is not a terminal.
pub(crate) fn read_key(terminal: BorrowedFd<'_>) -> io::Result<u8> {
    let fd = terminal.as_raw_fd();
    // SAFETY: termios is plain data, filled by tcgetattr before any use.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is borrowed, so open; `saved` is ours to fill.
    check(unsafe { libc::tcgetattr(fd, &mut saved) })?;
    let mut raw = saved;
    raw.c_lflag &= !(libc::ICANON | libc::ECHO);
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;
    // SAFETY: as above; `raw` is a valid termios copied from the terminal's.
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) })?;
    let mut key = [0u8; 1];
    let read = loop {
        // SAFETY: reads at most one byte into `key`, which we own.
        let n = unsafe { libc::read(fd, key.as_mut_ptr().cast(), 1) };
        if n >= 0 {
            break Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            break Err(err);
        }
    };
    // SAFETY: restores the settings read above on the same descriptor.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    match read? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(key[0]),
    }
}

/// Gives the allocator's free memory back to the system: after a burst of
/// sessions ends, their freed buffers would otherwise stay resident.
/// Returns whether any memory went back (always false off glibc, whose
/// allocators are left to their own policy).
pub(crate) fn release_free_memory() -> bool {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(target_env = "gnu"))]
    false
}

/// Write end of the signal pipe, for the handler; -1 when none is installed.
static SIGNAL_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_signal: libc::c_int) {
    let fd = SIGNAL_WRITE_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: only async-signal-safe calls: `write` to a non-blocking pipe
    // (a full pipe loses the byte, and there are bytes enough to wake the
    // loop already), with errno saved and restored around it.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        let byte = 1u8;
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *errno = saved;
    }
}

/// SIGINT and SIGTERM as bytes in a pipe: its read end is registered with
/// the poll loop, which drains it and counts the signals. Nothing happens
/// inside the handler but that one write.
pub(crate) struct SignalPipe {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalPipe {
    /// Creates the pipe and installs the handlers. One per process: a
    /// second call replaces where the handler writes.
    pub(crate) fn install() -> io::Result<SignalPipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `pipe2` writes two descriptors into the array we own.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
        // SAFETY: both descriptors were just created and are owned by no one else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        SIGNAL_WRITE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed `sigaction` is a valid empty action; we set the
            // handler (a plain `extern "C" fn`) and an empty mask before use.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                check(libc::sigaction(signal, &action, std::ptr::null_mut()))?;
            }
        }
        Ok(SignalPipe {
            read,
            _write: write,
        })
    }

    /// The descriptor to register with the poll loop.
    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Reads every pending byte: how many signals arrived since last time.
    pub(crate) fn drain(&self) -> usize {
        let mut count = 0;
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: `read` writes at most `buf.len()` bytes into our buffer
            // from a descriptor we own.
            let n = unsafe {
                libc::read(
                    self.read.as_fd().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n <= 0 {
                return count;
            }
            count += n as usize;
        }
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        // Signals from now on find no pipe; the handler returns at once.
        SIGNAL_WRITE_FD.store(-1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    #[test]
    fn backlog_can_be_raised_on_a_listening_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_backlog(listener.as_fd(), 4096).unwrap();
        // Still listening: a client gets through.
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert!(listener.accept().is_ok());
    }

    #[test]
    fn backlog_on_a_socket_that_cannot_listen_is_an_error() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = set_backlog(socket.as_fd(), 16).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP));
    }

    #[test]
    fn fd_limit_is_raised_to_the_hard_limit() {
        let soft = raise_fd_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }

    #[test]
    fn a_socket_closed_with_linger_zero_resets_its_peer() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        set_linger_zero(server.as_fd()).unwrap();
        drop(server);
        let err = client.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    }

    #[test]
    fn linger_on_what_is_no_socket_is_an_error() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = set_linger_zero(file.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    }

    #[test]
    fn a_key_is_read_from_terminals_only() {
        let (read, _write) = std::os::unix::net::UnixStream::pair().unwrap();
        let err = read_key(read.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    }

    #[test]
    fn sendfile_copies_a_file_range_into_a_socket() {
        use std::io::{Read, Write};
        let path = std::env::temp_dir().join(format!("tcptape-sys-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"0123456789")
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(sendfile(b.as_fd(), file.as_fd(), 3, 4).unwrap(), 4);
        drop(b);
        let mut got = Vec::new();
        a.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"3456");
        let err = sendfile(a.as_fd(), a.as_fd(), 0, 1).unwrap_err();
        assert!(err.raw_os_error().is_some(), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn written_pages_are_settled_and_dropped() {
        use std::io::{Read, Write};
        let path = std::env::temp_dir().join(format!("tcptape-sys-wb-{}", std::process::id()));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&[7u8; 64 * 1024]).unwrap();
        start_writeback(file.as_fd(), 0, 64 * 1024).unwrap();
        settle_written(file.as_fd(), 0, 64 * 1024).unwrap();
        // Dropped from the cache, not from the file.
        let mut back = Vec::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, vec![7u8; 64 * 1024]);
        std::fs::remove_file(&path).unwrap();
        // A pipe has no pages to write back.
        let (read, _write) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(start_writeback(read.as_fd(), 0, 1).is_err());
        assert!(settle_written(read.as_fd(), 0, 1).is_err());
        assert!(start_writeback(file.as_fd(), u64::MAX, 1).is_err());
    }

    #[test]
    #[cfg(target_env = "gnu")]
    fn free_memory_can_be_given_back() {
        // Freed blocks with live ones between them: glibc keeps the holes
        // resident until asked.
        let mut blocks: Vec<Vec<u8>> = (0..128).map(|_| vec![1u8; 64 * 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter().step_by(2).cloned().collect();
        blocks.clear();
        assert!(release_free_memory(), "the holes go back to the system");
        drop(kept);
    }

    #[test]
    fn a_write_past_the_file_size_limit_is_an_error() {
        ignore_file_size_signal().unwrap();
        // SAFETY: raising SIGXFSZ, now ignored, does nothing.
        assert_eq!(unsafe { libc::raise(libc::SIGXFSZ) }, 0);
    }

    #[test]
    fn a_signal_becomes_a_byte_in_the_pipe() {
        let pipe = SignalPipe::install().unwrap();
        assert_eq!(pipe.drain(), 0);
        // SAFETY: raising SIGTERM runs our handler, installed above.
        unsafe { libc::raise(libc::SIGTERM) };
        unsafe { libc::raise(libc::SIGINT) };
        assert_eq!(pipe.drain(), 2);
        assert_eq!(pipe.drain(), 0);
        drop(pipe);
        // With the pipe gone the handler does nothing (and the test lives).
        unsafe { libc::raise(libc::SIGTERM) };
    }
}
