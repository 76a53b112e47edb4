//! The cursors on secrets: a placeholder on tape, any value received
//! (or exactly the environment's), the environment's value played, and the
//! lengths that count them.

use std::collections::HashMap;
use std::rc::Rc;

use crate::replay::script::*;
use crate::tape::text::parse;

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn text(text: &str) -> Vec<u8> {
    parse(text).unwrap()
}

fn given(name: &str, value: &[u8]) -> Secrets {
    Secrets::Given(Rc::new(HashMap::from([(name.to_string(), value.to_vec())])))
}

fn none() -> Secrets {
    Secrets::Given(Rc::default())
}

fn expect(bytes: &[u8], secrets: Secrets) -> Expect<&[u8]> {
    Expect::with_secrets(Reader::new(bytes), C2S, secrets).unwrap()
}

/// Everything `play` sends as the server once the client's `matched`
/// bytes are in.
fn played(bytes: &[u8], own: Direction, secrets: Secrets, matched: u64) -> Vec<u8> {
    let mut play = Play::with_secrets(Reader::new(bytes), own, secrets).unwrap();
    let mut captures = Captures::default();
    let mut out = Vec::new();
    while matches!(play.action(), Action::Send { .. }) && play.is_ready(matched, false) {
        let chunk = play.peek(5, &captures).unwrap().to_vec();
        out.extend_from_slice(&chunk);
        play.consume(chunk.len(), &mut captures).unwrap();
    }
    out
}

const AUTH: &str =
    "tcptape text 1\n> \"AUTH \" [secret PW \"********\"] \"\\r\\n\"\n< \"+OK\\r\\n\"\n";

#[test]
fn without_a_value_any_secret_the_bytes_after_it_end_is_taken() {
    let bytes = text(AUTH);
    for live in [
        &b"AUTH hunter2\r\n"[..],
        b"AUTH \r\n",
        b"AUTH a-much-longer-password\r\n",
    ] {
        for chunk in [1, 4, live.len()] {
            let mut e = expect(&bytes, none());
            let mut captures = Captures::default();
            for piece in live.chunks(chunk) {
                e.receive(piece, true, &mut captures).unwrap();
            }
            assert!(e.is_done(), "{live:?} by {chunk}");
            assert_eq!(e.matched(), 15, "the tape's terms: the placeholder");
        }
    }
}

#[test]
fn with_a_value_exactly_that_value_is_taken_and_no_report_shows_it() {
    let bytes = text(AUTH);
    let mut e = expect(&bytes, given("PW", b"hunter2"));
    e.receive(b"AUTH hunter2\r\n", true, &mut Captures::default())
        .unwrap();
    assert!(e.is_done());
    let mut e = expect(&bytes, given("PW", b"hunter2"));
    let Err(Fault::Deviation(d)) = e.receive(b"AUTH hunter3\r\n", true, &mut Captures::default())
    else {
        panic!("a wrong password passed")
    };
    let DeviationKind::SecretDiffers { name, at, .. } = &d.kind else {
        panic!("{d:?}")
    };
    assert_eq!((name.as_str(), *at), ("PW", 6));
    assert_eq!(d.stream_offset, 11);
    assert_eq!(
        d.received.bytes, b"AUTH *********",
        "what it sent is starred, and all after it"
    );
    // A longer value, or a user name before the password: none of what
    // follows the secret's start is shown.
    for sent in [
        &b"AUTH hunter2-and-a-longer-tail\r\n"[..],
        b"AUTH default hunter2\r\n",
    ] {
        let mut e = expect(&bytes, given("PW", b"hunter2"));
        let Err(Fault::Deviation(d)) = e.receive(sent, true, &mut Captures::default()) else {
            panic!("{sent:?} passed")
        };
        let shown = &d.received.bytes;
        assert!(shown.starts_with(b"AUTH *"), "{shown:?}");
        assert!(shown[5..].iter().all(|&b| b == b'*'), "{shown:?}");
    }
}

#[test]
fn played_the_value_goes_out_else_the_placeholder() {
    let bytes = text(AUTH);
    assert_eq!(
        played(&bytes, C2S, given("PW", b"s3cret-pw"), 0),
        b"AUTH s3cret-pw\r\n"
    );
    assert_eq!(played(&bytes, C2S, none(), 0), b"AUTH ********\r\n");
}

#[test]
fn with_nothing_after_it_a_secret_is_any_bytes_of_its_length() {
    // Binary: the secret ends the client's turn.
    let bytes = text("tcptape text 1\n> 01 [secret KEY 2a 2a 2a 2a]\n< \"ok\"\n");
    let mut e = expect(&bytes, none());
    e.receive(b"\x01abcd", true, &mut Captures::default())
        .unwrap();
    assert!(e.is_done());
    assert_eq!(played(&bytes, S2C, none(), e.matched()), b"ok");
}

/// A length-prefixed login: a u16 length counting a name and the secret.
const FRAMED: &str =
    "tcptape text 1\n> [length u16be 11 00 0b] \"LOGIN \" [secret KEY \"*****\"]\n< \"ok\"\n";

#[test]
fn a_length_that_counts_a_secret_grows_with_the_value() {
    let bytes = text(FRAMED);
    assert_eq!(
        played(&bytes, C2S, given("KEY", b"longer-key"), 0),
        b"\x00\x10LOGIN longer-key"
    );
    assert_eq!(played(&bytes, C2S, none(), 0), b"\x00\x0bLOGIN *****");
    // Received, the length says where a value of any length ends.
    let mut e = expect(&bytes, none());
    e.receive(b"\x00\x09LOG", true, &mut Captures::default())
        .unwrap();
    e.receive(b"IN abc", true, &mut Captures::default())
        .unwrap();
    assert!(e.is_done());
    let mut e = expect(&bytes, given("KEY", b"longer-key"));
    e.receive(b"\x00\x10LOGIN longer-key", true, &mut Captures::default())
        .unwrap();
    assert!(e.is_done());
    // A length that does not count the live value is a departure.
    let mut e = expect(&bytes, given("KEY", b"longer-key"));
    let Err(Fault::Deviation(d)) =
        e.receive(b"\x00\x11LOGIN longer-key", true, &mut Captures::default())
    else {
        panic!("a wrong length passed")
    };
    assert!(
        matches!(
            d.kind,
            DeviationKind::LengthDiffers {
                said: 17,
                counted: 16,
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn a_secret_prints_as_it_is_written_and_takes_no_bounds() {
    for written in [AUTH, FRAMED] {
        let bytes = text(written);
        let mut out = Vec::new();
        crate::tape::text::print(&mut Reader::new(bytes.as_slice()), &mut out).unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert_eq!(text(&printed), bytes, "{printed}");
        assert!(printed.contains("[secret "), "{printed}");
    }
    let err = parse("tcptape text 1\n> [secret PW 1..9 \"**\"]\n").unwrap_err();
    assert!(
        err.to_string().contains("a secret takes no bounds"),
        "{err}"
    );
    let err = parse("tcptape text 1\nspan > secret PW 2 1..9\n> \"**\"\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("a secret's bounds are its recorded length"),
        "{err}"
    );
}

#[test]
fn a_later_mismatch_in_the_same_read_does_not_show_the_secret_before_it() {
    // Without the variable any value is taken: the client's own password,
    // then a wrong request in the same read. The report shows the bytes
    // before the departure, which held the password.
    let bytes = text(
        "tcptape text 1\n> \"AUTH \" [secret PW \"********\"] \"\\r\\n\"\n< \"+OK\\r\\n\"\n> \"GET x\\r\\n\"\n",
    );
    for chunks in [1, 3, 64] {
        let mut e = expect(&bytes, none());
        let mut captures = Captures::default();
        let live = b"AUTH hunter2\r\nGXT x\r\n";
        let deviation = live
            .chunks(chunks)
            .find_map(|piece| e.receive(piece, true, &mut captures).err());
        let Some(Fault::Deviation(d)) = deviation else {
            panic!("a wrong request passed")
        };
        let shown = String::from_utf8_lossy(&d.received.bytes).into_owned();
        assert!(!shown.contains("hunter"), "by {chunks}: {shown:?}");
        if chunks == 64 {
            assert_eq!(shown, "AUTH *******\r\nGXT x\r\n");
        }
    }
}
