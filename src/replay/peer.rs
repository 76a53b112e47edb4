//! The peer's end of a replayed connection: its socket, how many bytes it
//! sent, and whether its direction is still open. A session and a pool
//! both read and write through it, so the non-blocking I/O of replay is
//! written once, and so are the faults (`--fault`): every read, write and
//! half-close asks them first.

use std::fs::File;
use std::io;

use log::debug;
use mio::Registry;
use mio::event::Event;

use super::faults::{Frames, Go, PeerFaults, for_open_conn};
use super::status::Status;
use crate::engine::net::{Address, Received, Sent, Socket};
use crate::fault::{Faults, Kind, Role};

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
    /// Our bytes that went.
    sent: u64,
    /// The faults this connection got; none costs nothing.
    faults: Option<Box<PeerFaults>>,
}

impl Peer {
    pub fn new(socket: Socket, now: u64) -> Peer {
        Peer {
            socket,
            inbound: Inbound::Open,
            received: 0,
            last_activity: now,
            sent: 0,
            faults: None,
        }
    }

    /// Gives connection `conn` of a `role` the faults it gets of `faults`
    /// (the run's, or new ones while it runs: they take effect for its
    /// next bytes).
    pub fn set_faults(&mut self, faults: &Faults, (conn, role): (u64, Role), now: u64) {
        if faults.is_empty() && self.faults.is_none() {
            return;
        }
        match &mut self.faults {
            Some(mine) => mine.replace(faults),
            None => {
                let done = match role {
                    Role::Client => [self.sent, self.received],
                    _ => [self.received, self.sent],
                };
                self.faults = for_open_conn(faults, (conn, role), done, now).map(Box::new);
            }
        }
    }

    /// A new turn at tick `now`, the tape's cursors at `frames`.
    pub fn turn(&mut self, now: u64, frames: Frames) {
        if let Some(faults) = &mut self.faults {
            faults.turn(now, frames);
            self.apply_ending();
        }
    }

    /// The tape's cursors moved to `frames`.
    pub fn at(&mut self, frames: Frames) {
        if let Some(faults) = &mut self.faults {
            faults.at(frames);
            self.apply_ending();
        }
    }

    /// Our next bytes are ready from now on: a recorded delay is over.
    pub fn ready_now(&mut self, now: u64) {
        if let Some(faults) = &mut self.faults {
            faults.ready_now(now);
        }
    }

    /// The first of our frames a fault waits for.
    pub fn own_frame_limit(&self) -> Option<u64> {
        self.faults.as_ref().and_then(|f| f.own_frame_limit())
    }

    /// How a fault ended the connection, as a status; `None` while none did.
    pub fn faulted_status(&self) -> Option<Status> {
        let ending = self.faults.as_ref()?.ending()?;
        Some(Status::Faulted {
            summary: ending.describe(),
        })
    }

    /// The SPECs of the faults that fired on this connection.
    pub fn fired(&self) -> &[String] {
        self.faults.as_ref().map_or(&[], |f| f.fired())
    }

    /// The tick the faults want the connection woken at, once per wake-up.
    pub fn take_wake(&mut self) -> Option<u64> {
        self.faults.as_mut().and_then(|f| f.take_wake())
    }

    /// A fault that ended the connection acts on the socket: a reset
    /// makes its close an RST, a close sends the FIN now.
    fn apply_ending(&mut self) {
        let Some(ending) = self.faults.as_ref().and_then(|f| f.ending()) else {
            return;
        };
        let done = match ending.kind {
            Kind::Reset => self.socket.reset_on_close(),
            _ => self.socket.shutdown_write(),
        };
        if let Err(err) = done {
            debug!("{}: {}: {err}", self.socket.addr(), ending.describe());
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

    /// Our bytes that went so far.
    pub fn sent(&self) -> u64 {
        self.sent
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
            let cap = match &mut self.faults {
                Some(faults) => faults.read_cap(),
                None => usize::MAX,
            };
            self.apply_ending();
            if cap == 0 {
                break;
            }
            let len = scratch.len().min(cap);
            match self.socket.read(&mut scratch[..len]) {
                Received::Data(n) => {
                    self.received += n as u64;
                    moved = true;
                    if let Some(faults) = &mut self.faults {
                        faults.arrived(n);
                    }
                    take(Arrival::Data(&scratch[..n]))?;
                }
                Received::Eof => {
                    debug!("{} half-closed", self.socket.addr());
                    self.set_inbound(Inbound::Closed);
                    moved = true;
                    if let Some(faults) = &mut self.faults {
                        faults.arrived(0);
                    }
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
            if self
                .faults
                .as_ref()
                .is_some_and(|f| f.reads_frame_by_frame())
            {
                // The cursor's frame moves with each read: the caller says
                // where it is before the next.
                break;
            }
        }
        Ok(moved)
    }

    /// True while a write may find room (and no fault holds it back).
    pub fn is_writable(&self) -> bool {
        self.socket.is_writable() && !self.held_by_fault()
    }

    /// True while a fault holds our bytes back (a pace, a stall).
    pub fn held_by_fault(&self) -> bool {
        self.faults.as_ref().is_some_and(|f| f.held())
    }

    /// Writes `bytes`, as many as the faults let go; a failed write means
    /// the peer is gone.
    pub fn write(&mut self, bytes: &[u8]) -> Sent {
        match self.allowance(bytes.len()) {
            Go::Bytes(n) => {
                let sent = self.socket.write(&bytes[..n]);
                self.note_sent(sent)
            }
            Go::Drop => self.dropped(bytes.len()),
            Go::Stop => Sent::Blocked,
        }
    }

    /// Sends `len` bytes of `file` from `offset`.
    pub fn send_file(&mut self, file: &File, offset: u64, len: usize) -> Sent {
        match self.allowance(len) {
            Go::Bytes(n) => {
                let sent = self.socket.send_file(file, offset, n);
                self.note_sent(sent)
            }
            Go::Drop => self.dropped(len),
            Go::Stop => Sent::Blocked,
        }
    }

    /// How many of our next `len` bytes the faults let go now.
    fn allowance(&mut self, len: usize) -> Go {
        let Some(faults) = &mut self.faults else {
            return Go::Bytes(len);
        };
        let go = faults.write(len);
        self.apply_ending();
        go
    }

    /// Bytes a truncated direction takes without sending: to the tape's
    /// cursor they went.
    fn dropped(&mut self, len: usize) -> Sent {
        self.note_sent(Sent::Moved(len))
    }

    fn note_sent(&mut self, sent: Sent) -> Sent {
        match &sent {
            Sent::Moved(n) => {
                self.sent += *n as u64;
                if let Some(faults) = &mut self.faults {
                    faults.sent(*n);
                }
            }
            Sent::Blocked => {}
            Sent::Failed(err) => {
                debug!("write to {}: {err}", self.socket.addr());
                self.set_inbound(Inbound::Gone);
            }
        }
        sent
    }

    /// Half-closes our side: `Ok(false)` while a fault holds it back.
    pub fn shutdown(&mut self) -> io::Result<bool> {
        if let Some(faults) = &mut self.faults {
            let go = faults.shutdown();
            self.apply_ending();
            if !go {
                return Ok(false);
            }
        }
        let done = self.socket.shutdown_write();
        if done.is_err() {
            self.set_inbound(Inbound::Gone);
        }
        done.map(|()| true)
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

    /// Asks for WRITABLE only while our bytes wait for room (not while a
    /// fault holds them: a timer wakes the connection then).
    pub fn want(&mut self, registry: &Registry, writable: bool) -> io::Result<()> {
        let held = self.held_by_fault();
        self.socket.want(registry, writable && !held)
    }

    pub fn close(mut self, registry: &Registry) {
        self.socket.deregister(registry);
    }
}
