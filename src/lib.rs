//! tcptape records TCP sessions into tapes through a proxy, then replays
//! either side of them byte for byte: as a mock server that checks every
//! byte a client sends, or as a mock client that drives a real server and
//! checks its answers. Protocol-agnostic: databases, mail, message brokers,
//! custom binary protocols.
//!
//! For tests in Rust:
//!
//! - [`MockServer`]: plays a tape's server side to the code under test;
//! - [`MockClient`]: plays a tape's client side against a real server;
//! - [`Recorder`]: records tapes through a proxy in front of a real server;
//! - [`Report`]: what a run did; [`Error`]: what went wrong (a mismatch
//!   carries its report: [`Error::is_mismatch`]);
//! - [`tape`]: the tape format itself (reading, writing, text form).
//!
//! ```
//! use tcptape::{MockClient, MockServer};
//!
//! # fn main() -> Result<(), tcptape::Error> {
//! let tape = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/halfclose-reply.tape");
//! let mock = MockServer::start(tape)?;
//! MockClient::run(mock.addr(), tape)?; // the recorded client against the mock
//! let report = mock.finish()?;
//! assert!(report.passed());
//! # Ok(())
//! # }
//! ```
//!
//! Inside, each runs one single-threaded mio poll loop on a thread of its
//! own, with an explicit state machine per connection; docs/architecture.md
//! describes it.

// Every unsafe call is in `sys`, behind safe functions with tests.
#![deny(unsafe_code)]
// Without the command line, the commands' own code (describe, print,
// repair, learn, pcap) is not reached from the library's API.
#![cfg_attr(not(feature = "cli"), allow(dead_code))]

// The layers, top to bottom: a module imports only from the layers below
// its own (tests/layers.rs checks it, and that no file grows past 600
// lines before its tests).
//
// The command line and the library API.
mod api;
#[cfg(feature = "cli")]
mod cli;
// Running a service: started, bound, recorded or replayed.
mod job;
// The services.
mod learn;
mod pcap;
mod proxy;
mod redact;
mod repair;
mod replay;
mod review;
mod scan;
// Cassettes: folders of tapes and their index.
mod cassette;
// What went wrong, and what a run did.
mod error;
mod report;
// The tape format and the poll loop, side by side.
mod engine;
pub mod tape;
// Faults on demand: what they are and where they take effect, without I/O.
mod fault;
// Redaction rules and their matching, without I/O.
mod secrets;
// Utilities.
mod hexdump;
mod linediff;
mod output;
#[allow(unsafe_code)]
mod sys;

pub use api::{
    MockClient, MockClientBuilder, MockServer, MockServerBuilder, Recorder, RecorderBuilder,
};
pub use error::Error;
pub use report::{Outcome, Report, SessionReport, Verdict};

/// The command line, for the `tcptape` binary: runs it and returns the exit
/// code. Not part of the library's API.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub fn cli_main() -> i32 {
    cli::main(std::env::args_os().skip(1))
}

/// Entry points for fuzzing (the `fuzz/` crate); not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Imports a capture, the whole of it, into memory: it must return
    /// (an error or tapes), never panic, hang or allocate without bound.
    /// Every tape it makes must read back cleanly.
    pub fn pcap_import(capture: &[u8]) {
        for allow_gaps in [false, true] {
            let options = crate::pcap::import::Options {
                allow_gaps,
                ..Default::default()
            };
            let Ok(tapes) = crate::pcap::import::import_in_memory(capture, &options) else {
                continue;
            };
            for tape in tapes {
                let mut reader = crate::tape::Reader::new(tape.as_slice());
                while let Some(frame) = reader.next_frame().expect("an imported tape reads back") {
                    if let crate::tape::Kind::Any(_) = frame.kind {
                        reader
                            .read_wildcard()
                            .expect("an imported wildcard reads back");
                    }
                }
            }
        }
    }
}
