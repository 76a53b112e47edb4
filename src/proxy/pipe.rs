//! One direction of a proxied session: the ring its bytes pass through,
//! how far it has closed, reading from its source and forwarding what is
//! recorded to its destination.

use std::io::{self, IoSlice};

use log::{debug, info};

use super::redaction::Hold;
use crate::engine::buffers::Buffers;
use crate::engine::net::{Received, Sent, Socket};
use crate::engine::ring::Ring;
use crate::tape::Direction;

/// The life of one direction of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Reading from the source, forwarding to the destination.
    Open,
    /// The source sent EOF; its EOF frame is not on tape yet.
    Ended,
    /// The source sent EOF and its EOF frame is on tape; what is left in the
    /// ring drains to the destination, then its write side is shut down.
    Draining,
    /// The destination got the half-close; nothing more goes this way.
    Closed,
}

/// One direction: the ring its bytes pass through and how far it has closed.
pub struct Pipe {
    /// Storage only while bytes move: taken from `Buffers` to read, given
    /// back once empty.
    pub ring: Ring,
    /// The ring size to take next: it doubles each time a read fills the
    /// ring, so a bulk transfer gets large reads and writes while a chatty
    /// session keeps small ones.
    pub size: usize,
    pub flow: Flow,
    pub bytes: u64,
    /// Bytes waiting unrecorded for the redaction rules.
    pub hold: Hold,
}

/// Reads from the source into the ring until it would block, the ring is
/// full, the source ends or `limit` bytes came (the rest of the session's
/// turn when others wait: four sessions filling 2 MiB rings each turn held
/// a new session's first reply back 150 ms). Returns whether bytes were read; an EOF is
/// noted in the pipe.
pub fn fill(
    pipe: &mut Pipe,
    source: &mut Socket,
    buffers: &mut Buffers,
    limit: usize,
    (number, dir): (u64, Direction),
) -> io::Result<bool> {
    let can_read = pipe.flow == Flow::Open && source.is_readable();
    if can_read && !pipe.ring.has_storage() {
        pipe.ring.attach(buffers.take(pipe.size));
    }
    let mut moved = false;
    let mut left = limit;
    while pipe.flow == Flow::Open && source.is_readable() && !pipe.ring.is_full() && left > 0 {
        let free = pipe.ring.free_window();
        let len = free.len().min(left);
        match source.read(&mut free[..len]) {
            Received::Eof => set_flow(pipe, Flow::Ended, number, dir),
            Received::Data(n) => {
                pipe.ring.commit(n);
                pipe.bytes += n as u64;
                left -= n;
                moved = true;
                if pipe.ring.is_full() {
                    // More may wait: the next ring is twice as large.
                    pipe.size = (pipe.ring.capacity() * 2).min(buffers.max());
                }
            }
            Received::Blocked => {}
            Received::Failed(err) => return Err(err),
        }
    }
    Ok(moved)
}

/// Writes recorded bytes to the destination; once a draining direction is
/// empty, forwards its half-close. Returns whether anything moved.
pub fn forward(
    pipe: &mut Pipe,
    dest: &mut Socket,
    number: u64,
    dir: Direction,
) -> io::Result<bool> {
    let mut moved = false;
    while dest.is_writable() {
        let (first, second) = pipe.ring.recorded_slices();
        if first.is_empty() {
            break;
        }
        let slices = [IoSlice::new(first), IoSlice::new(second)];
        match dest.write_vectored(&slices) {
            Sent::Moved(n) => {
                pipe.ring.consume(n);
                moved = true;
            }
            Sent::Blocked => {}
            Sent::Failed(err) => return Err(err),
        }
    }
    if pipe.flow == Flow::Draining && pipe.ring.is_empty() {
        dest.shutdown_write()?;
        set_flow(pipe, Flow::Closed, number, dir);
        moved = true;
    }
    Ok(moved)
}

/// Every change of a direction's state passes here.
pub fn set_flow(pipe: &mut Pipe, flow: Flow, number: u64, dir: Direction) {
    debug!("session {number}: {dir:?} {:?} => {flow:?}", pipe.flow);
    if flow == Flow::Closed {
        let (from, to) = (dir.sender(), dir.receiver());
        info!(
            "session {number}: the {from} closed its side after {} bytes; half-close forwarded to the {to}",
            pipe.bytes
        );
    }
    pipe.flow = flow;
}
