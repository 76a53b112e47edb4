//! Arbitrary bytes as a binary tape: if it reads cleanly (its spans
//! standing where spans may), printing it and building the text must give
//! the same bytes, byte for byte; if only its spans are misplaced, it
//! prints and the text does not build.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptape::tape::text::{parse, print};
use tcptape::tape::{Kind, Reader, placement};

/// True when every frame of the tape reads without error, wildcards and
/// spans too.
fn reads_cleanly(data: &[u8]) -> bool {
    let mut reader = Reader::new(data);
    loop {
        let read = match reader.next_frame() {
            Ok(Some(frame)) if matches!(frame.kind, Kind::Any(_)) => {
                reader.read_wildcard().is_ok()
            }
            Ok(Some(frame)) if matches!(frame.kind, Kind::Span(_)) => reader.read_span().is_ok(),
            Ok(Some(_)) => true,
            Ok(None) => return true,
            Err(_) => false,
        };
        if !read {
            return false;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if !reads_cleanly(data) {
        return;
    }
    let misplaced = placement::check_tape(&mut Reader::new(data)).is_err();
    let mut text = Vec::new();
    print(&mut Reader::new(data), &mut text).expect("a readable tape prints");
    let text = String::from_utf8(text).expect("print writes UTF-8");
    if misplaced {
        assert!(parse(&text).is_err(), "misplaced spans build:\n{text}");
        return;
    }
    let rebuilt = parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    assert!(rebuilt == data, "print then build differs:\n{text}");
});
