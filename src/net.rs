//! Socket chores the proxy and the replayer share: accepting without
//! spinning when the process runs out of descriptors, and telling when a
//! non-blocking connect has finished.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::error;
use mio::net::{TcpListener, TcpStream};

use crate::error::os_reason;

/// How long accepting pauses after the OS refused to hand out a socket.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What one accept gave.
pub enum Accept {
    Connection(TcpStream, SocketAddr),
    /// Nothing more is waiting; the next readiness event will say when.
    Drained,
    /// Out of file descriptors or memory: the connection stays in the
    /// backlog; try again after `ACCEPT_BACKOFF` rather than spin.
    Backoff,
}

pub fn accept(listener: &TcpListener) -> Accept {
    loop {
        match listener.accept() {
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
                    "cannot accept: {}; retrying in {} ms",
                    os_reason(&err),
                    ACCEPT_BACKOFF.as_millis()
                );
                return Accept::Backoff;
            }
        }
    }
}

/// True once a non-blocking connect went through; its error if it failed;
/// false while it is still in flight.
pub fn connect_finished(stream: &TcpStream) -> io::Result<bool> {
    if let Some(err) = stream.take_error()? {
        return Err(err);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(err) => Err(err),
    }
}
