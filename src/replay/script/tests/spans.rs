//! The cursors on spans: values that vary, captures and their echoes,
//! lengths that count them.

use crate::replay::script::*;
use crate::tape::{Span, SpanKind, Writer};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn span(w: &mut Writer<&mut Vec<u8>>, dir: Direction, span: Span) {
    w.extension(dir.span_opcode(), &span.emit()).unwrap();
}

fn variable(kind: SpanKind, len: u32, min: u32, max: u32) -> Span {
    Span {
        kind,
        len,
        min,
        max,
    }
}

fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
    let mut bytes = Vec::new();
    build(&mut Writer::new(&mut bytes).unwrap());
    bytes
}

/// `Date: <29 bytes>\r\n` from the server, a fixed span.
fn dated() -> Vec<u8> {
    tape(|w| {
        w.data(S2C, b"Date: ").unwrap();
        span(w, S2C, Span::fixed(SpanKind::Vary, 29));
        w.data(S2C, b"Wed, 25 Nov 2026 09:31:29 GMT\r\nok").unwrap();
    })
}

fn deviation(fault: Fault) -> Deviation {
    match fault {
        Fault::Deviation(d) => *d,
        other => panic!("not a deviation: {other:?}"),
    }
}

#[test]
fn a_fixed_vary_span_takes_any_bytes_of_its_length() {
    let bytes = dated();
    let mut e = Expect::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    let mut captures = Captures::default();
    e.receive(
        b"Date: Thu, 26 Nov 2026 10:00:00 GMT\r\nok",
        true,
        &mut captures,
    )
    .unwrap();
    assert!(e.is_done());
    assert_eq!(e.matched(), 39);
    // One byte short of the span, then the literal: the literal differs.
    let mut e = Expect::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    let d = deviation(
        e.receive(
            b"Date: Thu, 26 Nov 2026 10:00:00 GM\r\nok!",
            true,
            &mut captures,
        )
        .unwrap_err(),
    );
    assert!(matches!(d.kind, DeviationKind::Differ { .. }), "{d:?}");
}

/// `Message-ID: <...>\r\nQUIT` from the client, the id 1 to 64 bytes.
fn message_id() -> Vec<u8> {
    tape(|w| {
        w.data(C2S, b"Message-ID: <").unwrap();
        span(w, C2S, variable(SpanKind::Vary, 10, 1, 64));
        w.data(C2S, b"0123456789>\r\nQUIT").unwrap();
        w.data(S2C, b"bye").unwrap();
    })
}

#[test]
fn a_variable_span_ends_where_the_recorded_bytes_after_it_appear() {
    let bytes = message_id();
    let live = b"Message-ID: <a-much-longer-id-than-recorded@host>\r\nQUIT";
    for chunk in [1, 3, 7, live.len()] {
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let mut captures = Captures::default();
        for piece in live.chunks(chunk) {
            e.receive(piece, true, &mut captures).unwrap();
        }
        assert!(e.is_done(), "chunk {chunk}");
        // The tape's terms: the span counts as its 10 recorded bytes.
        assert_eq!(e.matched(), 13 + 10 + 7, "chunk {chunk}");
        assert_eq!(e.received(), live.len() as u64);
    }
    // What Play waits for is counted the same way.
    let p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    assert_eq!(p.needs().peer_bytes, 30);
}

#[test]
fn a_variable_span_past_its_longest_is_a_departure() {
    let bytes = message_id();
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let long = [b"Message-ID: <".as_slice(), &[b'x'; 100]].concat();
    let d = deviation(
        e.receive(&long, true, &mut Captures::default())
            .unwrap_err(),
    );
    assert!(
        matches!(d.kind, DeviationKind::SpanTooLong { max: 64, .. }),
        "{d:?}"
    );
    assert_eq!(d.stream_offset, 13 + 64);
}

#[test]
fn a_span_the_stream_ends_with_takes_everything_to_the_eof() {
    let bytes = tape(|w| {
        w.data(C2S, b"id=").unwrap();
        span(w, C2S, variable(SpanKind::Vary, 3, 2, 10));
        w.data(C2S, b"abc").unwrap();
        w.eof(C2S).unwrap();
    });
    let mut captures = Captures::default();
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    e.receive(b"id=wxyz", true, &mut captures).unwrap();
    e.receive_eof(&mut captures).unwrap();
    assert!(e.peer_closed());
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    e.receive(b"id=w", true, &mut captures).unwrap();
    let d = deviation(e.receive_eof(&mut captures).unwrap_err());
    assert!(
        matches!(d.kind, DeviationKind::SpanTooShort { min: 2, got: 1, .. }),
        "{d:?}"
    );
}

/// The server chooses a token, the client sends it back.
fn token_tape() -> Vec<u8> {
    tape(|w| {
        w.data(S2C, b"token=").unwrap();
        span(w, S2C, variable(SpanKind::Capture("tok".into()), 6, 1, 40));
        w.data(S2C, b"abc123\r\n").unwrap();
        w.data(C2S, b"AUTH ").unwrap();
        span(w, C2S, Span::fixed(SpanKind::Echo("tok".into()), 6));
        w.data(C2S, b"abc123\r\n").unwrap();
        w.data(S2C, b"welcome\r\n").unwrap();
    })
}

/// Plays what `play` may send once the peer sent `matched` bytes, the
/// way a session does, collecting it.
fn sent_by(play: &mut Play<&[u8]>, matched: u64, captures: &mut Captures) -> Vec<u8> {
    let mut out = Vec::new();
    while matches!(play.action(), Action::Send { .. }) && play.is_ready(matched, false) {
        let chunk = play.peek(3, captures).unwrap().to_vec();
        out.extend_from_slice(&chunk);
        play.consume(chunk.len(), captures).unwrap();
    }
    out
}

#[test]
fn a_mock_client_sends_back_the_token_the_server_chose() {
    let bytes = token_tape();
    let mut captures = Captures::default();
    let mut e = Expect::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    let mut p = Play::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    assert!(!p.is_ready(e.matched(), false), "the token comes first");
    e.receive(b"token=Zq9-longer-token\r\n", true, &mut captures)
        .unwrap();
    assert_eq!(captures.get("tok"), Some(&b"Zq9-longer-token"[..]));
    assert!(p.is_ready(e.matched(), false));
    assert_eq!(
        sent_by(&mut p, e.matched(), &mut captures),
        b"AUTH Zq9-longer-token\r\n"
    );
    e.receive(b"welcome\r\n", true, &mut captures).unwrap();
    assert!(e.is_done());
}

#[test]
fn a_mock_server_checks_the_token_it_chose_comes_back() {
    let bytes = token_tape();
    let mut captures = Captures::default();
    let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    assert_eq!(sent_by(&mut p, 0, &mut captures), b"token=abc123\r\n");
    assert_eq!(captures.get("tok"), Some(&b"abc123"[..]), "what it sent");
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    e.receive(b"AUTH abc123\r\n", true, &mut captures).unwrap();
    assert!(e.is_done());
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let d = deviation(
        e.receive(b"AUTH abc124\r\n", true, &mut captures)
            .unwrap_err(),
    );
    let DeviationKind::EchoDiffers { name, at, .. } = &d.kind else {
        panic!("{d:?}")
    };
    assert_eq!((name.as_str(), *at), ("tok", 5));
    assert_eq!(d.stream_offset, 10);
}

fn text(text: &str) -> Vec<u8> {
    crate::tape::text::parse(text).unwrap()
}

/// A client message with a big-endian length counting a value that
/// varies; the server's answer echoes an id the client chose, under a
/// little-endian length that counts the id and its own two bytes.
const FRAMED: &str = r#"tcptape text 1
> "M" [length u16be 9 "\x00\x09"] "a=" [capture id 1..16 "xyz"] ";" "\x00\x00\x00"
< [length u24le 7 "\x05\x00\x00"] "id=" [echo id "xyz"] "!"
"#;

#[test]
fn a_peer_length_is_checked_against_the_bytes_it_counts() {
    let bytes = text(FRAMED);
    let mut captures = Captures::default();
    // Recorded, and with a longer id and its length grown to match,
    // byte by byte: the length is checked where its bytes end.
    for live in [
        &b"M\x00\x09a=xyz;\x00\x00\x00"[..],
        b"M\x00\x0ca=uvwxyz;\x00\x00\x00",
    ] {
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        for byte in live.chunks(1) {
            e.receive(byte, true, &mut captures).unwrap();
        }
        assert!(e.is_done() || e.next() == Expected::End, "{live:?}");
        assert_eq!(e.matched(), 12);
    }
    // A longer id under the recorded length.
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let fault = e.receive(b"M\x00\x09a=uvwxyz;\x00\x00\x00", true, &mut captures);
    let d = deviation(fault.unwrap_err());
    let DeviationKind::LengthDiffers { said, counted, .. } = d.kind else {
        panic!("{d:?}")
    };
    assert_eq!((said, counted), (9, 12));
    assert_eq!(d.stream_offset, 15, "where the counted bytes end");
    // `--no-assert` counts bytes only.
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    e.receive(b"M\x00\x09a=uvwxyz;\x00\x00\x00", false, &mut captures)
        .unwrap();
}

#[test]
fn a_variable_value_that_ends_a_length_s_bytes_ends_where_the_length_says() {
    // Nothing recorded after the value in its turn: only the length
    // says where it ends, before the peer waits for our answer.
    let bytes = text(
        "tcptape text 1\n> [length u8 5 \"\\x05\"] \"id=\" [vary 1..20 \"ab\"]\n< \"ok\"\n> \"bye\"\n",
    );
    let mut captures = Captures::default();
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    e.receive(b"\x09id=abcdef", true, &mut captures).unwrap();
    assert_eq!(e.matched(), 6, "the value is complete");
    e.receive(b"bye", true, &mut captures).unwrap();
    assert!(e.is_done());
    // A length that says more than the value may be is a departure.
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let fault = e.receive(b"\x40id=", true, &mut captures);
    let d = deviation(fault.unwrap_err());
    assert!(
        matches!(d.kind, DeviationKind::SpanTooLong { max: 20, .. }),
        "{d:?}"
    );
}

/// A value whose end only its length gives, then the server's answer.
fn ended_by_length(min: u32, eof: bool) -> Vec<u8> {
    let eof = if eof { "eof >\n" } else { "" };
    text(&format!(
        "tcptape text 1\n> [length u8 5 \"\\x05\"] \"id=\" [vary {min}..20 \"ab\"]\n{eof}< \"ok\"\n"
    ))
}

#[test]
fn a_value_its_length_makes_empty_ends_without_more_bytes() {
    let bytes = ended_by_length(0, false);
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    e.receive(b"\x03id=", true, &mut Captures::default())
        .unwrap();
    assert_eq!(e.matched(), 6);
    assert!(p.is_ready(e.matched(), false), "the answer may go");
    // Closing right there is the end of the value too.
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let mut captures = Captures::default();
    e.receive(b"\x03id=", true, &mut captures).unwrap();
    e.receive_eof(&mut captures).unwrap();
}

#[test]
fn a_length_that_its_value_cannot_meet_is_a_departure_at_once() {
    let mut captures = Captures::default();
    // Fewer bytes than already arrived.
    let bytes = ended_by_length(0, false);
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let d = deviation(e.receive(b"\x02id=", true, &mut captures).unwrap_err());
    let DeviationKind::LengthDiffers { said, counted, .. } = d.kind else {
        panic!("{d:?}")
    };
    assert_eq!((said, counted), (2, 3));
    // Fewer bytes than the value's shortest.
    let bytes = ended_by_length(2, false);
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let d = deviation(e.receive(b"\x04id=", true, &mut captures).unwrap_err());
    assert!(
        matches!(d.kind, DeviationKind::SpanTooShort { min: 2, got: 1, .. }),
        "{d:?}"
    );
}

#[test]
fn an_eof_inside_a_value_its_length_says_more_of_is_early_even_unchecked() {
    let bytes = ended_by_length(0, true);
    for compare in [true, false] {
        let mut captures = Captures::default();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        e.receive(b"\x0aid=abc", compare, &mut captures).unwrap();
        let d = deviation(e.receive_eof(&mut captures).unwrap_err());
        assert!(
            matches!(
                d.kind,
                DeviationKind::EarlyEof {
                    at: 3,
                    remaining: 4,
                    ..
                }
            ),
            "{d:?}"
        );
    }
}

#[test]
fn a_decimal_length_keeps_its_recorded_digits_and_their_width() {
    let bytes = text(
        r#"tcptape text 1
> [capture v 1..200 "ab"] "."
< "LEN " [length dec 5 1..20 "02"] ":" [echo v "ab"] "\r\n"
"#,
    );
    let played = |value: &[u8]| {
        let mut captures = Captures::default();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        e.receive(&[value, b"."].concat(), true, &mut captures)
            .unwrap();
        let mut out = Vec::new();
        while matches!(p.action(), Action::Send { .. }) {
            let chunk = p.peek(64, &captures)?.to_vec();
            out.extend_from_slice(&chunk);
            p.consume(chunk.len(), &mut captures)?;
        }
        Ok::<_, Fault>(out)
    };
    assert_eq!(played(b"ab").unwrap(), b"LEN 02:ab\r\n", "as recorded");
    assert_eq!(played(b"xyz").unwrap(), b"LEN 03:xyz\r\n");
    let Err(Fault::BadSpan(message)) = played(&[b'x'; 150]) else {
        panic!("three digits in a field of two")
    };
    assert!(message.contains("does not fit a dec field"), "{message}");
}

#[test]
fn a_length_that_is_no_length_of_its_encoding_is_a_departure() {
    let bytes =
        text("tcptape text 1\n> \"Content-Length: \" [length dec 2 1..5 \"5\"] \"\\r\\n\"\n");
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let fault = e.receive(b"Content-Length: 1x\r\n", true, &mut Captures::default());
    let d = deviation(fault.unwrap_err());
    assert!(
        matches!(
            d.kind,
            DeviationKind::NotALength {
                encoding: Encoding::Decimal,
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn our_length_grows_with_the_echo_it_counts() {
    let bytes = text(FRAMED);
    let mut captures = Captures::default();
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    e.receive(
        b"M\x00\x13a=0123456789abc;\x00\x00\x00",
        true,
        &mut captures,
    )
    .unwrap();
    assert_eq!(
        sent_by(&mut p, e.matched(), &mut captures),
        b"\x0f\x00\x00id=0123456789abc!"
    );
    // As recorded, it sends the recorded length.
    let mut captures = Captures::default();
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    e.receive(b"M\x00\x08a=xy;\x00\x00\x00", true, &mut captures)
        .unwrap();
    assert_eq!(
        sent_by(&mut p, e.matched(), &mut captures),
        b"\x04\x00\x00id=xy!"
    );
}

#[test]
fn a_length_that_no_longer_fits_its_field_is_a_fault_not_a_wrap() {
    let bytes = text(
        r#"tcptape text 1
> [capture v 1..300 "ab"] "."
< [length u8 2 "\x02"] [echo v "ab"] "."
"#,
    );
    let mut captures = Captures::default();
    let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
    let long = [b'x'; 260];
    e.receive(&long, true, &mut captures).unwrap();
    e.receive(b".", true, &mut captures).unwrap();
    assert!(p.is_ready(e.matched(), false));
    let Err(Fault::BadSpan(message)) = p.peek(16, &captures) else {
        panic!("no fault")
    };
    assert!(message.contains("does not fit a u8 field"), "{message}");
}

#[test]
fn an_echo_of_a_value_never_captured_is_a_fault_not_a_panic() {
    let bytes = tape(|w| {
        span(w, C2S, Span::fixed(SpanKind::Echo("ghost".into()), 2));
        w.data(C2S, b"hi").unwrap();
    });
    let mut p = Play::new(Reader::new(bytes.as_slice()), C2S).unwrap();
    let Err(Fault::BadSpan(why)) = p.peek(10, &Captures::default()) else {
        panic!("expected a bad span")
    };
    assert!(
        why.contains("echoes 'ghost', which was never captured"),
        "{why}"
    );
}
