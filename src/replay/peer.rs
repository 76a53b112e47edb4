//! The peer's end of a replayed connection: its socket, how many bytes it
//! sent, and whether its direction is still open. A session and a pool
//! both read and write through it, so the non-blocking I/O of replay is
//! written once.

use std::fs::File;
use std::io;

use log::debug;
use mio::Registry;
use mio::event::Event;

use crate::engine::net::{Address, Received, Sent, Socket};

/// Where the peer's direction (what it sends us) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Bytes may still come.
    Open,
    /// It half-closed its side: nothing more will come.
    Closed,
    /// It reset the connection, or a write to it failed: it is gone.
    Gone,
}

/// What one read brought.
pub enum Arrival<'a> {
    Data(&'a [u8]),
    Eof,
    Reset,
}

pub struct Peer {
    socket: Socket,
    inbound: Inbound,
    /// Live bytes that arrived from the peer, matched or not.
    received: u64,
    /// The tick of the last byte moved either way, for `--timeout`.
    pub last_activity: u64,
}

impl Peer {
    pub fn new(socket: Socket, now: u64) -> Peer {
        Peer {
            socket,
            inbound: Inbound::Open,
            received: 0,
            last_activity: now,
        }
    }

    pub fn addr(&self) -> &Address {
        self.socket.addr()
    }

    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    pub fn inbound(&self) -> Inbound {
        self.inbound
    }

    /// Live bytes that arrived so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// True while not a byte came from the peer: a peer that leaves so is
    /// a probe, not a client departing from the tape.
    pub fn heard_nothing(&self) -> bool {
        self.received == 0
    }

    pub fn note(&mut self, event: &Event) {
        self.socket.note(event);
    }

    /// Reads what the socket holds, at most about `budget` bytes, into
    /// `scratch`, handing each arrival to `take`; stops at the first error
    /// `take` returns. True when anything arrived.
    pub fn receive<E>(
        &mut self,
        scratch: &mut [u8],
        budget: u64,
        mut take: impl FnMut(Arrival<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        let before = self.received;
        let mut moved = false;
        while self.socket.is_readable()
            && self.inbound == Inbound::Open
            && self.received - before < budget
        {
            match self.socket.read(scratch) {
                Received::Data(n) => {
                    self.received += n as u64;
                    moved = true;
                    take(Arrival::Data(&scratch[..n]))?;
                }
                Received::Eof => {
                    debug!("{} half-closed", self.socket.addr());
                    self.set_inbound(Inbound::Closed);
                    moved = true;
                    take(Arrival::Eof)?;
                }
                Received::Blocked => {}
                Received::Failed(err) => {
                    debug!("read from {}: {err}", self.socket.addr());
                    self.set_inbound(Inbound::Gone);
                    moved = true;
                    take(Arrival::Reset)?;
                }
            }
        }
        Ok(moved)
    }

    /// True while a write may find room.
    pub fn is_writable(&self) -> bool {
        self.socket.is_writable()
    }

    /// Writes `bytes`; a failed write means the peer is gone.
    pub fn write(&mut self, bytes: &[u8]) -> Sent {
        let sent = self.socket.write(bytes);
        self.note_sent(&sent);
        sent
    }

    /// Sends `len` bytes of `file` from `offset`.
    pub fn send_file(&mut self, file: &File, offset: u64, len: usize) -> Sent {
        let sent = self.socket.send_file(file, offset, len);
        self.note_sent(&sent);
        sent
    }

    fn note_sent(&mut self, sent: &Sent) {
        if let Sent::Failed(err) = sent {
            debug!("write to {}: {err}", self.socket.addr());
            self.set_inbound(Inbound::Gone);
        }
    }

    /// Half-closes our side.
    pub fn shutdown(&mut self) -> io::Result<()> {
        let done = self.socket.shutdown_write();
        if done.is_err() {
            self.set_inbound(Inbound::Gone);
        }
        done
    }

    fn set_inbound(&mut self, inbound: Inbound) {
        if self.inbound != inbound {
            debug!(
                "{}: inbound {:?} => {inbound:?}",
                self.socket.addr(),
                self.inbound
            );
        }
        // A peer that is gone stays gone.
        if self.inbound != Inbound::Gone {
            self.inbound = inbound;
        }
    }

    /// Asks for WRITABLE only while our bytes wait for room.
    pub fn want(&mut self, registry: &Registry, writable: bool) -> io::Result<()> {
        self.socket.want(registry, writable)
    }

    pub fn close(mut self, registry: &Registry) {
        self.socket.deregister(registry);
    }
}
