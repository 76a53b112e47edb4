//! The tape format through the library: round trips, limits, every reader
//! error, and the reference tapes of tcptape 0.1.0.

mod common;

use common::fixture;
use tcptape::tape::describe::{DescribeError, describe};
use tcptape::tape::{Direction, Kind, MAX_LEN, Reader, Writer};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn build(f: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = Writer::new(&mut bytes).unwrap();
    f(&mut writer);
    bytes
}

/// (kind, len, payload) of every frame.
fn read_all(bytes: &[u8]) -> Vec<(Kind, u32, Vec<u8>)> {
    let mut reader = Reader::new(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        let mut payload = Vec::new();
        if matches!(frame.kind, Kind::Data(_)) {
            reader.read_payload_into(&mut payload).unwrap();
        }
        frames.push((frame.kind, frame.len, payload));
    }
    frames
}

fn first_error(bytes: &[u8]) -> String {
    let mut reader = Reader::new(bytes);
    loop {
        match reader.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error in this tape"),
            Err(err) => return err.to_string(),
        }
    }
}

#[test]
fn every_opcode_round_trips() {
    let bytes = build(|w| {
        w.noop(b"note").unwrap();
        w.data(C2S, b"hello").unwrap();
        w.data(S2C, b"world").unwrap();
        w.delay(1234).unwrap();
        w.eof(C2S).unwrap();
        w.eof(S2C).unwrap();
        w.extension(0x80, b"ext").unwrap();
        w.extension(0xff, b"").unwrap();
    });
    assert_eq!(
        read_all(&bytes),
        vec![
            (Kind::Noop, 8, vec![]),
            (Kind::Noop, 4, vec![]),
            (Kind::Data(C2S), 5, b"hello".to_vec()),
            (Kind::Data(S2C), 5, b"world".to_vec()),
            (Kind::Delay, 1234, vec![]),
            (Kind::Eof(C2S), 0, vec![]),
            (Kind::Eof(S2C), 0, vec![]),
            (Kind::Extension(0x80), 3, vec![]),
            (Kind::Extension(0xff), 0, vec![]),
        ]
    );
}

#[test]
fn data_lengths_at_the_limits() {
    for len in [0usize, 1, MAX_LEN as usize, MAX_LEN as usize + 1] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let bytes = build(|w| w.data(C2S, &payload).unwrap());
        let frames = read_all(&bytes);
        let data: Vec<_> = frames.iter().skip(1).collect();
        let expected_frames = if len > MAX_LEN as usize { 2 } else { 1 };
        assert_eq!(data.len(), expected_frames, "length {len}");
        if len > MAX_LEN as usize {
            assert_eq!((data[0].1, data[1].1), (MAX_LEN, 1));
        }
        let joined: Vec<u8> = data.iter().flat_map(|f| f.2.clone()).collect();
        assert!(joined == payload, "length {len}");
    }
}

#[test]
fn delays_are_capped_and_zero_writes_nothing() {
    let bytes = build(|w| {
        w.delay(0).unwrap();
        w.delay(u64::from(MAX_LEN) + 5).unwrap();
    });
    assert_eq!(
        read_all(&bytes),
        vec![(Kind::Noop, 8, vec![]), (Kind::Delay, MAX_LEN, vec![])]
    );
}

#[test]
fn reader_errors_name_offset_and_frame() {
    let good = build(|w| w.data(C2S, b"0123456789").unwrap());
    assert_eq!(
        first_error(&good[..good.len() - 3]),
        "tape truncated at offset 12 in frame 1: 10 payload bytes announced, 7 present"
    );
    let with = |extra: &[u8]| [good.as_slice(), extra].concat();
    assert_eq!(
        first_error(&with(&[0x01, 0x00, 0x00])),
        "tape truncated at offset 26 in frame 2: 4-byte frame header incomplete, 3 bytes present"
    );
    assert_eq!(
        first_error(&with(&[0x06, 0, 0, 0])),
        "unknown opcode 0x06 at offset 26 in frame 2"
    );
    assert_eq!(
        first_error(&with(&[0x7f, 0, 0, 9])),
        "unknown opcode 0x7f at offset 26 in frame 2"
    );
    assert_eq!(
        first_error(&with(&[0x05, 0, 1, 0])),
        "EOF frame with non-zero length 256 at offset 26 in frame 2"
    );
    assert_eq!(first_error(b""), "not a tape: empty file");
    assert_eq!(
        first_error(b"\x01\0\0\x01x"),
        "not a tape: no tcptape magic at offset 0"
    );
}

#[test]
fn extension_frames_are_skipped_with_their_payload() {
    let mut bytes = build(|w| w.data(C2S, b"a").unwrap());
    bytes.extend_from_slice(&[0x80, 0, 0, 3, 0x01, 0x02, 0x03]);
    bytes.extend_from_slice(&[0xff, 0, 0, 1, 0x04]);
    bytes.extend_from_slice(&[0x02, 0, 0, 1, b'b']);
    let frames = read_all(&bytes);
    assert_eq!(frames[2], (Kind::Extension(0x80), 3, vec![]));
    assert_eq!(frames[3], (Kind::Extension(0xff), 1, vec![]));
    assert_eq!(frames[4], (Kind::Data(S2C), 1, b"b".to_vec()));
}

#[test]
fn concatenated_tapes_are_one_valid_tape() {
    let first = build(|w| w.data(C2S, b"one").unwrap());
    let second = build(|w| w.data(S2C, b"two").unwrap());
    let frames = read_all(&[first, second].concat());
    assert_eq!(
        frames,
        vec![
            (Kind::Noop, 8, vec![]),
            (Kind::Data(C2S), 3, b"one".to_vec()),
            (Kind::Noop, 8, vec![]),
            (Kind::Data(S2C), 3, b"two".to_vec()),
        ]
    );
}

#[test]
fn reference_listings_match_byte_for_byte() {
    for name in ["echo", "halfclose-reply", "banner", "bulk"] {
        let bytes = std::fs::read(fixture(&format!("{name}.tape"))).unwrap();
        let expected = std::fs::read_to_string(fixture(&format!("{name}.describe"))).unwrap();
        let mut out = Vec::new();
        describe(&mut Reader::new(bytes.as_slice()), &mut out, false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{name}");
    }
}

#[test]
fn reference_tapes_round_trip_through_the_writer() {
    for name in ["echo", "halfclose-reply", "banner", "bulk"] {
        let original = std::fs::read(fixture(&format!("{name}.tape"))).unwrap();
        let rebuilt = build(|w| {
            for (kind, len, payload) in read_all(&original).into_iter().skip(1) {
                match kind {
                    Kind::Data(dir) => w.data(dir, &payload).unwrap(),
                    Kind::Delay => w.delay(u64::from(len)).unwrap(),
                    Kind::Eof(dir) => w.eof(dir).unwrap(),
                    other => panic!("{name}: unexpected {other:?}"),
                }
            }
        });
        assert!(rebuilt == original, "{name}");
    }
}

#[test]
fn bulk_fixture_holds_the_recorded_streams() {
    let bytes = std::fs::read(fixture("bulk.tape")).unwrap();
    let mut reader = Reader::new(bytes.as_slice());
    let (mut up, mut down) = (Vec::new(), Vec::new());
    while let Some(frame) = reader.next_frame().unwrap() {
        let Kind::Data(dir) = frame.kind else {
            continue;
        };
        loop {
            // Odd chunk sizes, so chunks straddle nothing in particular.
            let chunk = reader.read_payload(1000).unwrap();
            if chunk.is_empty() {
                break;
            }
            assert!(chunk.len() <= 1000);
            match dir {
                C2S => up.extend_from_slice(chunk),
                S2C => down.extend_from_slice(chunk),
            }
        }
    }
    let upload: Vec<u8> = (0..4096).flat_map(|_| 0..=255u8).collect();
    let mut answer = upload[..64 * 1024].to_vec();
    answer.reverse();
    assert!(up == upload);
    assert!(down == answer);
}

#[test]
fn describe_of_a_truncated_tape_lists_up_to_the_fault() {
    let bytes = std::fs::read(fixture("echo.tape")).unwrap();
    let cut = &bytes[..bytes.len() - 6];
    let mut out = Vec::new();
    let err = describe(&mut Reader::new(cut), &mut out, false).unwrap_err();
    let DescribeError::Tape(err) = err else {
        panic!("expected a tape error")
    };
    assert_eq!(
        err.to_string(),
        "tape truncated at offset 52 in frame 7: 4-byte frame header incomplete, 2 bytes present"
    );
    let listing = String::from_utf8(out).unwrap();
    assert_eq!(listing.lines().count(), 7);
    assert!(listing.ends_with("6: DELAY (150ms)\n"), "{listing}");
}

#[test]
fn verbose_describe_dumps_payloads_and_shortens_long_ones() {
    let long: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let bytes = build(|w| {
        w.data(C2S, b"qqq\n").unwrap();
        w.data(S2C, &long).unwrap();
        w.extension(0x90, b"x").unwrap();
    });
    let mut out = Vec::new();
    describe(&mut Reader::new(bytes.as_slice()), &mut out, true).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with(
            "0: NOOP (8 bytes)\n1: CLIENT_TO_SERVER (4 bytes)\n    00000000  71 71 71 0a"
        ),
        "{text}"
    );
    assert!(
        text.contains("2: SERVER_TO_CLIENT (300 bytes)\n    00000000  00 01 02"),
        "{text}"
    );
    assert!(text.contains("    000000f0  f0 f1"), "{text}");
    assert!(!text.contains("00000100"), "{text}");
    assert!(text.contains("    ... 44 more bytes not shown\n"), "{text}");
    assert!(text.ends_with("3: EXTENSION 0x90 (1 bytes)\n"), "{text}");
}
