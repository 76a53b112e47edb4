//! Arbitrary bytes as a binary tape: if it reads cleanly, printing it and
//! building the text must give the same bytes, byte for byte.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptape::tape::text::{parse, print};
use tcptape::tape::{Kind, Reader};

/// True when every frame of the tape reads without error.
fn reads_cleanly(data: &[u8]) -> bool {
    let mut reader = Reader::new(data);
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) if matches!(frame.kind, Kind::Any(_)) => {
                if reader.read_wildcard().is_err() {
                    return false;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if !reads_cleanly(data) {
        return;
    }
    let mut text = Vec::new();
    print(&mut Reader::new(data), &mut text).expect("a readable tape prints");
    let text = String::from_utf8(text).expect("print writes UTF-8");
    let rebuilt = parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    assert!(rebuilt == data, "print then build differs:\n{text}");
});
