//! Sockets as the proxy and the replayer see them: TCP or UNIX domain,
//! behind one `Address`, `Stream` and `Listener`; accepting without spinning
//! when the process runs out of descriptors; telling when a non-blocking
//! connect has finished.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::{error, info};
use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// How long accepting pauses after the OS refused to hand out a socket.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The listen queue unless told otherwise: room for a burst of a thousand
/// clients and more (the kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Where to listen or connect: `IP:PORT` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => addr.fmt(f),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connected (or connecting) socket of either kind.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Starts a non-blocking connect.
    pub fn connect(addr: &Address) -> io::Result<Stream> {
        Ok(match addr {
            Address::Tcp(addr) => Stream::Tcp(TcpStream::connect(*addr)?),
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        })
    }

    /// Turns off Nagle's algorithm on TCP; UNIX sockets have none.
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(true),
            Stream::Unix(_) => Ok(()),
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// True once a non-blocking connect went through; its error if it
    /// failed; false while it is still in flight.
    pub fn connect_finished(&self) -> io::Result<bool> {
        let (error, connected) = match self {
            Stream::Tcp(s) => (s.take_error()?, s.peer_addr().map(drop)),
            Stream::Unix(s) => (s.take_error()?, s.peer_addr().map(drop)),
        };
        if let Some(err) = error {
            return Err(err);
        }
        match connected {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interest),
            Stream::Unix(s) => s.register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interest),
            Stream::Unix(s) => s.reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
        }
    }
}

/// What one non-blocking read did. With [`Sent`], this is the one place
/// where `WouldBlock`, `Interrupted` and a read of nothing are told apart.
#[derive(Debug)]
pub enum Received {
    /// This many bytes (at least one) arrived.
    Data(usize),
    /// The peer half-closed its side.
    Eof,
    /// Nothing to read now: the socket's next readiness event says when.
    Blocked,
    /// The read failed: a reset, most often.
    Failed(io::Error),
}

/// What one non-blocking write did.
#[derive(Debug)]
pub enum Sent {
    /// This many bytes (at least one) went.
    Moved(usize),
    /// No room now: the socket's next readiness event says when.
    Blocked,
    /// The write failed (the peer is gone), or took nothing.
    Failed(io::Error),
}

/// A registered stream and what the OS last said about it. Readiness is a
/// hint kept until a call answers `WouldBlock` (or a short read or write
/// shows the socket drained or full), because edge-triggered events only
/// report changes.
pub struct Socket {
    stream: Stream,
    addr: Address,
    token: Token,
    interest: Interest,
    readable: bool,
    writable: bool,
    /// The OS said the peer's side is closed: an EOF (or error) waits
    /// behind any data, so reads go on until they see it.
    read_closed: bool,
}

impl Socket {
    /// Registers `stream` for reading, and for writing when `writable`.
    pub fn register(
        registry: &Registry,
        mut stream: Stream,
        addr: Address,
        token: Token,
        writable: bool,
    ) -> io::Result<Socket> {
        let interest = interest(writable);
        registry.register(&mut stream, token, interest)?;
        Ok(Socket {
            stream,
            addr,
            token,
            interest,
            readable: true,
            writable: true,
            read_closed: false,
        })
    }

    pub fn addr(&self) -> &Address {
        &self.addr
    }

    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// True while a read may find something (or the EOF).
    pub fn is_readable(&self) -> bool {
        self.readable
    }

    /// True while a write may find room.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Takes in what an event says.
    pub fn note(&mut self, event: &mio::event::Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_read_closed() || event.is_error() {
            self.read_closed = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.writable = true;
        }
    }

    /// Reads into `buf` (never empty). A short read drained the socket,
    /// and epoll reports new data as a new edge: no need to spend a call to
    /// hear `WouldBlock` (unless a close is pending behind it).
    pub fn read(&mut self, buf: &mut [u8]) -> Received {
        debug_assert!(!buf.is_empty(), "a read of nothing would look like an EOF");
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Received::Eof,
                Ok(n) => {
                    if n < buf.len() && !self.read_closed {
                        self.readable = false;
                    }
                    return Received::Data(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Received::Blocked;
                }
                Err(err) => return Received::Failed(err),
            }
        }
    }

    /// Writes from `buf` (never empty); a short write filled the buffer.
    pub fn write(&mut self, buf: &[u8]) -> Sent {
        self.write_with(buf.len(), |stream| stream.write(buf))
    }

    /// Writes from up to several slices in one call.
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> Sent {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.write_with(len, |stream| stream.write_vectored(bufs))
    }

    /// Sends `len` bytes of `file` from `offset` without copying them
    /// through user space.
    pub fn send_file(&mut self, file: &std::fs::File, offset: u64, len: usize) -> Sent {
        self.write_with(len, |stream| {
            crate::sys::sendfile(stream.as_fd(), file.as_fd(), offset, len)
        })
    }

    fn write_with(
        &mut self,
        len: usize,
        mut call: impl FnMut(&mut Stream) -> io::Result<usize>,
    ) -> Sent {
        debug_assert!(len > 0, "a write of nothing says nothing");
        loop {
            match call(&mut self.stream) {
                Ok(0) => return Sent::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if n < len {
                        self.writable = false;
                    }
                    return Sent::Moved(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Sent::Blocked;
                }
                Err(err) => return Sent::Failed(err),
            }
        }
    }

    /// Half-closes our side; a peer that is gone entirely has it closed
    /// anyway.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self.stream.shutdown(Shutdown::Write) {
            Err(err) if err.kind() != io::ErrorKind::NotConnected => Err(err),
            _ => Ok(()),
        }
    }

    /// Makes dropping the socket a reset (RST) rather than a close (FIN).
    pub fn reset_on_close(&self) -> io::Result<()> {
        crate::sys::set_linger_zero(self.stream.as_fd())
    }

    /// Asks for WRITABLE only while output waits, or every send would wake
    /// the loop.
    pub fn want(&mut self, registry: &Registry, writable: bool) -> io::Result<()> {
        let interest = interest(writable);
        if interest != self.interest {
            registry.reregister(&mut self.stream, self.token, interest)?;
            self.interest = interest;
        }
        Ok(())
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
    }
}

fn interest(writable: bool) -> Interest {
    if writable {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

/// A socket call that failed: what was being done, and the system's reason.
#[derive(Debug)]
pub struct NetError {
    pub action: &'static str,
    pub source: io::Error,
}

impl NetError {
    fn of(action: &'static str) -> impl FnOnce(io::Error) -> NetError {
        move |source| NetError { action, source }
    }

    fn says(action: &'static str, kind: io::ErrorKind, why: &'static str) -> NetError {
        NetError {
            action,
            source: io::Error::new(kind, why),
        }
    }
}

/// A listening socket. A UNIX one removes its socket file when dropped.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr` with an accept queue of `backlog` connections (capped
    /// by the system's `somaxconn`): a burst of clients waits there rather
    /// than having its SYNs dropped. A socket file left at a UNIX path by
    /// a process that is gone is replaced; one that a live process listens
    /// on is not.
    pub fn bind(addr: &Address, backlog: u32) -> Result<Listener, NetError> {
        let listen_error = || NetError::of("listen on");
        let listener = match addr {
            Address::Tcp(socket) => {
                Listener::Tcp(TcpListener::bind(*socket).map_err(listen_error())?)
            }
            Address::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path).map_err(listen_error())?;
                Listener::Unix(listener, path.clone())
            }
        };
        let fd = match &listener {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        };
        crate::sys::set_backlog(fd, backlog).map_err(listen_error())?;
        Ok(listener)
    }

    /// The address actually bound (port 0 becomes the chosen port).
    pub fn local_addr(&self) -> io::Result<Address> {
        match self {
            Listener::Tcp(l) => Ok(Address::Tcp(l.local_addr()?)),
            Listener::Unix(_, path) => Ok(Address::Unix(path.clone())),
        }
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), NetError> {
    use io::ErrorKind::{AddrInUse, AlreadyExists};
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        let why = "the file exists and is not a socket";
        return Err(NetError::says("listen on", AlreadyExists, why));
    }
    // A non-blocking connect: a live listener whose queue is full answers
    // "try again" instead of keeping us waiting.
    match UnixStream::connect(path) {
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Ok(_) => {
            let why = "another process is listening on it";
            return Err(NetError::says("listen on", AddrInUse, why));
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            let why = "another process is listening on it (its queue is full)";
            return Err(NetError::says("listen on", AddrInUse, why));
        }
        Err(err) => return Err(NetError::of("check the socket file")(err)),
    }
    info!("replacing the stale socket file {}", path.display());
    std::fs::remove_file(path).map_err(NetError::of("replace the socket file"))
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Source for Listener {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(registry, token, interest),
            Listener::Unix(l, _) => l.register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(registry, token, interest),
            Listener::Unix(l, _) => l.reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(registry),
            Listener::Unix(l, _) => l.deregister(registry),
        }
    }
}

/// What one accept gave.
pub enum Accept {
    /// A new connection and who it is from (for a UNIX socket, whose
    /// clients are unnamed, the listening path).
    Connection(Stream, Address),
    /// Nothing more is waiting; the next readiness event will say when.
    Drained,
    /// Out of file descriptors or memory: the connection stays in the
    /// backlog; try again after `ACCEPT_BACKOFF` rather than spin.
    Backoff,
}

pub fn accept(listener: &Listener) -> Accept {
    loop {
        let accepted = match listener {
            Listener::Tcp(l) => l
                .accept()
                .map(|(s, addr)| (Stream::Tcp(s), Address::Tcp(addr))),
            Listener::Unix(l, path) => l
                .accept()
                .map(|(s, _)| (Stream::Unix(s), Address::Unix(path.clone()))),
        };
        match accepted {
            Ok((stream, addr)) => return Accept::Connection(stream, addr),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Accept::Drained,
            // A client that gave up before we got to it; the next may be fine.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(err) => {
                error!(
                    "cannot accept: {err}; retrying in {} ms",
                    ACCEPT_BACKOFF.as_millis()
                );
                return Accept::Backoff;
            }
        }
    }
}
