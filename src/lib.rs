//! tcptape: record TCP sessions into tapes, replay either side byte for byte.
//!
//! The engine is a single-threaded mio poll loop ([`event_loop`]) that runs one
//! explicit state machine per connection: the recording [`proxy`] and the
//! [`replay`] mock server and client. Deadlines live in a [`timer`] wheel, bytes
//! in fixed-size [`ring`] buffers, sessions in a [`slab`]. The [`tape`] module
//! owns the file format; [`cli`] the command line.

pub mod addr;
pub mod cassette;
pub mod cli;
pub mod commands;
pub mod error;
pub mod event_loop;
pub mod hexdump;
pub mod linediff;
pub mod net;
pub mod proxy;
pub mod replay;
pub mod ring;
pub mod slab;
pub mod tape;
pub mod timer;
