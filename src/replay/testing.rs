//! What the state-machine tests of replay share: tapes built in memory, a
//! connected pair of sockets whose one end a session or pool owns and
//! whose other end the test plays the peer with, and a registry to
//! register with. Nothing waits: sockets are non-blocking and the test
//! drives the machine by calling it.

use std::io::{Read, Write};
use std::rc::Rc;

use mio::{Poll, Registry, Token};

use super::TapeFile;
use super::peer::Peer;
use super::script::playback::{Playback, Settings};
use crate::engine::net::{Address, Socket, Stream};
use crate::tape::{Direction, Locator, Writer};

pub const C2S: Direction = Direction::ClientToServer;
pub const S2C: Direction = Direction::ServerToClient;

/// A tape built in memory.
pub fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> TapeFile {
    let mut bytes = Vec::new();
    build(&mut Writer::new(&mut bytes).unwrap());
    Rc::new(bytes)
}

/// A playback of `tape` in the server's role, bytes compared; recorded
/// delays honoured at `speed` when given.
pub fn serving(name: &str, tape: &TapeFile, speed: Option<f64>) -> Playback<TapeFile> {
    let settings = Settings {
        own: S2C,
        compare: true,
        speed,
        text_diff: false,
    };
    Playback::new(
        (name.to_string(), tape.clone(), Locator::default()),
        settings,
    )
    .unwrap()
}

/// A poll registry, and the peer's end of a connection whose other end a
/// session owns (registered as token 1).
pub struct Wire {
    poll: Poll,
    pub registry: Registry,
    peer: std::os::unix::net::UnixStream,
    /// Room for what arrives, as a service lends its sessions.
    pub scratch: Vec<u8>,
}

impl Wire {
    /// A wire and our end of it, as a `Peer`.
    pub fn new() -> (Wire, Peer) {
        let poll = Poll::new().unwrap();
        let (ours, theirs) = mio::net::UnixStream::pair().unwrap();
        let addr = Address::Unix("peer".into());
        let socket =
            Socket::register(poll.registry(), Stream::Unix(ours), addr, Token(1), true).unwrap();
        let peer = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(theirs));
        peer.set_nonblocking(true).unwrap();
        let registry = poll.registry().try_clone().unwrap();
        let wire = Wire {
            poll,
            registry,
            peer,
            scratch: vec![0; 64 * 1024],
        };
        (wire, Peer::new(socket, 0))
    }

    /// Hands what the poll says of our end (waiting up to 1 s for it) to
    /// `ready`, as the loop would.
    pub fn events(&mut self, mut ready: impl FnMut(&Registry, &mio::event::Event, &mut [u8])) {
        let mut events = mio::Events::with_capacity(8);
        self.poll
            .poll(&mut events, Some(std::time::Duration::from_secs(1)))
            .unwrap();
        for event in events.iter() {
            ready(&self.registry, event, &mut self.scratch);
        }
    }

    /// The peer sends `bytes`.
    pub fn send(&self, bytes: &[u8]) {
        (&self.peer).write_all(bytes).unwrap();
    }

    /// The peer half-closes its side.
    pub fn close(&self) {
        self.peer.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// What the peer received so far.
    pub fn take(&self) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match (&self.peer).read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => return got,
            }
        }
    }

    /// True once the other end closed its side: a read finds the EOF.
    pub fn closed(&self) -> bool {
        matches!((&self.peer).read(&mut [0; 1]), Ok(0))
    }
}
