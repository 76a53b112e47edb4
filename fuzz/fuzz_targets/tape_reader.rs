//! Arbitrary bytes as a binary tape: every frame is walked with its payload
//! read (wildcards as counts, spans as spans), then the tape's spans are
//! checked, and it is described and printed. Any panic, hang or runaway
//! allocation is a bug; errors are fine.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptape::tape::describe::describe;
use tcptape::tape::text::print;
use tcptape::tape::{Kind, Reader, placement};

fuzz_target!(|data: &[u8]| {
    let mut reader = Reader::new(data);
    while let Ok(Some(frame)) = reader.next_frame() {
        let result = match frame.kind {
            Kind::Any(_) => reader.read_wildcard().map(drop),
            Kind::Span(_) => reader.read_span().map(drop),
            kind if kind.has_payload() => {
                // Peek, then read the rest in chunks: both must agree with
                // the header's length.
                let peeked = reader.peek_payload(16).map(<[u8]>::len).unwrap_or(0);
                let mut payload = Vec::new();
                let read = reader.read_payload_into(&mut payload);
                if read.is_ok() {
                    assert_eq!(payload.len(), frame.len as usize);
                    assert_eq!(peeked, payload.len().min(16));
                }
                read
            }
            _ => Ok(()),
        };
        if result.is_err() {
            break;
        }
    }
    let _ = placement::check_tape(&mut Reader::new(data));
    let mut out = Vec::new();
    let _ = describe(&mut Reader::new(data), &mut out, true);
    out.clear();
    let _ = describe(&mut Reader::new(data), &mut out, false);
    out.clear();
    let _ = print(&mut Reader::new(data), &mut out);
});
