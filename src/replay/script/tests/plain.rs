//! The cursors on plain data: bytes checked across any chunking, EOFs,
//! resets, wildcards, delays.

use crate::replay::script::*;
use crate::tape::Writer;

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = Writer::new(&mut bytes).unwrap();
    build(&mut writer);
    bytes
}

fn echo_tape() -> Vec<u8> {
    tape(|w| {
        w.data(C2S, b"qqq\n").unwrap();
        w.data(S2C, b"qqq\n").unwrap();
        w.delay(150).unwrap();
        w.data(C2S, b"www\n").unwrap();
        w.data(S2C, b"www\n").unwrap();
        w.eof(C2S).unwrap();
        w.eof(S2C).unwrap();
    })
}

fn expect(bytes: &[u8], peer: Direction) -> Expect<&[u8]> {
    Expect::new(Reader::new(bytes), peer).unwrap()
}

fn play(bytes: &[u8], own: Direction) -> Play<&[u8]> {
    Play::new(Reader::new(bytes), own).unwrap()
}

fn deviation(fault: Fault) -> Deviation {
    match fault {
        Fault::Deviation(d) => *d,
        Fault::Tape(err) => panic!("tape error {err}"),
        Fault::BadSpan(why) => panic!("bad span: {why}"),
    }
}

#[test]
fn expect_matches_across_any_chunking() {
    let bytes = echo_tape();
    for chunk in 1..=8 {
        let mut e = expect(&bytes, C2S);
        for piece in b"qqq\nwww\n".chunks(chunk) {
            e.receive(piece, true, &mut Captures::default()).unwrap();
        }
        assert_eq!(e.matched(), 8);
        assert!(matches!(e.next(), Expected::Eof { .. }));
        e.receive_eof(&mut Captures::default()).unwrap();
        assert!(e.peer_closed() && e.is_done());
    }
}

#[test]
fn expect_reports_first_differing_byte() {
    let bytes = echo_tape();
    let mut e = expect(&bytes, C2S);
    e.receive(b"qqq\nw", true, &mut Captures::default())
        .unwrap();
    let d = deviation(
        e.receive(b"wX\n", true, &mut Captures::default())
            .unwrap_err(),
    );
    let DeviationKind::Differ { frame, at } = d.kind else {
        panic!("{d:?}")
    };
    assert_eq!((frame.index, at), (4, 2));
    assert_eq!(d.stream_offset, 6);
    assert_eq!(e.matched(), 6, "the bytes before the difference count");
    assert_eq!(d.received.bytes, b"wX\n");
    assert_eq!(d.received.mismatch, 1);
}

#[test]
fn expect_without_compare_counts_only() {
    let bytes = echo_tape();
    let mut e = expect(&bytes, C2S);
    e.receive(b"XXXXYYYY", false, &mut Captures::default())
        .unwrap();
    assert_eq!(e.matched(), 8);
    let d = deviation(
        e.receive(b"!", false, &mut Captures::default())
            .unwrap_err(),
    );
    assert!(matches!(d.kind, DeviationKind::DataInsteadOfEof { .. }));
}

#[test]
fn expect_early_eof_and_data_after_end() {
    let bytes = echo_tape();
    let mut e = expect(&bytes, S2C);
    e.receive(b"qq", true, &mut Captures::default()).unwrap();
    let d = deviation(e.receive_eof(&mut Captures::default()).unwrap_err());
    assert!(
        matches!(
            d.kind,
            DeviationKind::EarlyEof {
                at: 2,
                remaining: 2,
                ..
            }
        ),
        "{d:?}"
    );

    let only_c2s = tape(|w| w.data(C2S, b"hi").unwrap());
    let mut e = expect(&only_c2s, C2S);
    e.receive(b"hi", true, &mut Captures::default()).unwrap();
    assert!(e.is_done());
    let d = deviation(
        e.receive(b"more", true, &mut Captures::default())
            .unwrap_err(),
    );
    assert_eq!(d.kind, DeviationKind::DataAfterEnd);
    assert_eq!(d.stream_offset, 2);
}

#[test]
fn expect_reset_is_a_deviation_only_while_owed() {
    let bytes = echo_tape();
    let mut e = expect(&bytes, C2S);
    assert!(e.receive_reset().is_err());
    e.receive(b"qqq\nwww\n", true, &mut Captures::default())
        .unwrap();
    e.receive_eof(&mut Captures::default()).unwrap();
    assert!(e.receive_reset().is_ok());
}

#[test]
fn wildcards_are_counted_not_compared() {
    let bytes = tape(|w| {
        w.data(C2S, b"nonce=").unwrap();
        w.any(C2S, 4).unwrap();
        w.data(C2S, b";").unwrap();
        w.data(S2C, b"ok").unwrap();
    });
    let mut e = expect(&bytes, C2S);
    e.receive(b"nonce=", true, &mut Captures::default())
        .unwrap();
    e.receive(b"\x01\x02", true, &mut Captures::default())
        .unwrap();
    assert!(matches!(e.next(), Expected::Any { remaining: 2, .. }));
    e.receive(b"\xff\x00;", true, &mut Captures::default())
        .unwrap();
    assert!(e.is_done());
    assert_eq!(e.matched(), 11);
    let p = play(&bytes, S2C);
    assert_eq!(p.needs().peer_bytes, 11);

    let mut e = expect(&bytes, C2S);
    e.receive(b"nonce=ab", true, &mut Captures::default())
        .unwrap();
    let d = deviation(e.receive_eof(&mut Captures::default()).unwrap_err());
    assert!(
        matches!(d.kind, DeviationKind::EarlyEof { remaining: 2, .. }),
        "{d:?}"
    );
}

#[test]
fn play_as_server_waits_for_the_request() {
    let bytes = echo_tape();
    let mut p = play(&bytes, S2C);
    assert!(matches!(p.action(), Action::Send { remaining: 4, .. }));
    assert_eq!(p.needs().peer_bytes, 4);
    assert!(!p.is_ready(3, false));
    assert!(p.is_ready(4, false));
    assert_eq!(p.peek(100, &Captures::default()).unwrap(), b"qqq\n");
    p.consume(4, &mut Captures::default()).unwrap();
    // The 150 ms pause came before the client's second line: the
    // client's, not ours.
    assert_eq!(p.needs().peer_bytes, 8);
    assert_eq!(p.needs().delay_ms, 0);
    p.consume(4, &mut Captures::default()).unwrap();
    assert!(matches!(p.action(), Action::Shutdown { .. }));
    assert!(p.needs().peer_eof);
    assert!(!p.is_ready(8, false));
    assert!(p.is_ready(8, true));
    p.shut_down().unwrap();
    assert_eq!(p.action(), Action::End);
    assert_eq!(p.sent(), 8);
}

#[test]
fn play_as_client_keeps_its_own_delays() {
    let bytes = echo_tape();
    let mut p = play(&bytes, C2S);
    assert_eq!(p.needs(), Needs::default());
    p.consume(2, &mut Captures::default()).unwrap();
    assert_eq!(p.peek(100, &Captures::default()).unwrap(), b"q\n");
    p.consume(2, &mut Captures::default()).unwrap();
    assert_eq!(p.needs().delay_ms, 150);
    assert_eq!(p.needs().peer_bytes, 4);
}

#[test]
fn play_reply_after_peer_half_close() {
    let bytes = tape(|w| {
        w.data(C2S, b"request body").unwrap();
        w.eof(C2S).unwrap();
        w.data(S2C, b"got 12 bytes\n").unwrap();
        w.eof(S2C).unwrap();
    });
    let p = play(&bytes, S2C);
    assert_eq!(
        p.needs(),
        Needs {
            peer_bytes: 12,
            peer_eof: true,
            delay_ms: 0
        }
    );
}
