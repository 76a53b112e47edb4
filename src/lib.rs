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
pub mod pcap;
pub mod proxy;
pub mod replay;
pub mod ring;
pub mod slab;
pub mod tape;
pub mod timer;

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
