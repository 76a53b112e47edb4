//! Arbitrary UTF-8 as a text tape. Whatever `build` accepts must be a
//! binary tape that reads cleanly (spans where spans may stand), whose
//! line map names lines of the text, and that prints to text which builds
//! back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptape::tape::text::{build, parse, print};
use tcptape::tape::{Kind, Reader, placement};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(built) = build(text) else {
        return;
    };
    let lines = text.split('\n').count() as u32;
    let mut reader = Reader::new(built.bytes.as_slice());
    while let Some(frame) = reader.next_frame().expect("a built tape reads cleanly") {
        match frame.kind {
            Kind::Any(_) => {
                reader.read_wildcard().expect("a built wildcard reads");
            }
            Kind::Span(_) => {
                reader.read_span().expect("a built span reads");
            }
            _ => {}
        }
        let line = built
            .lines
            .line_at(frame.offset)
            .expect("every frame has a line");
        assert!((1..=lines).contains(&line), "line {line} of {lines}");
    }
    placement::check_tape(&mut Reader::new(built.bytes.as_slice()))
        .expect("a built tape's spans stand where spans may");
    let mut printed = Vec::new();
    print(&mut Reader::new(built.bytes.as_slice()), &mut printed).expect("a built tape prints");
    let printed = String::from_utf8(printed).expect("print writes UTF-8");
    let again = parse(&printed).unwrap_or_else(|err| panic!("{err}\n{printed}"));
    assert!(again == built.bytes, "print then build differs:\n{printed}");
});
