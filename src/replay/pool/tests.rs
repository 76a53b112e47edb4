//! A pool built over tapes in memory and a socket pair, fed the client's
//! bytes, its next move asserted.

use super::*;
use crate::replay::TapeFile;
use crate::replay::testing::*;

/// A pool of `tapes` (entries 0, 1, ...) for a client that sent nothing
/// yet, and the client's end.
fn pool(tapes: &[TapeFile]) -> (Wire, Pool<TapeFile>) {
    let (wire, peer) = Wire::new();
    let candidates = tapes
        .iter()
        .enumerate()
        .map(|(entry, tape)| Candidate::new(entry, serving(&format!("{entry}.tape"), tape, None)))
        .collect();
    (
        wire,
        Pool::new(1, peer, candidates, Reserve::Empty, (&[], false)),
    )
}

/// What the pool does with the events its socket has now.
fn ready(pool: &mut Pool<TapeFile>, wire: &mut Wire) -> PoolStatus {
    let mut status = PoolStatus::Running;
    wire.events(|registry, event, scratch| {
        status = pool.ready(registry, event, 0, scratch);
    });
    status
}

fn resume(pool: &mut Pool<TapeFile>, wire: &mut Wire) -> PoolStatus {
    pool.resume(&wire.registry, 0, &mut wire.scratch)
}

/// The same exchange recorded twice with the server's answer falling into
/// other frames (answered at once, or after the next request): then a key
/// of each tape's own.
fn framed(answer_early: bool, key: &[u8]) -> TapeFile {
    tape(|w| {
        w.data(C2S, b"a").unwrap();
        if answer_early {
            w.data(S2C, b"x").unwrap();
            w.data(C2S, b"b").unwrap();
        } else {
            w.data(C2S, b"b").unwrap();
            w.data(S2C, b"x").unwrap();
        }
        w.data(S2C, b"y").unwrap();
        w.data(C2S, key).unwrap();
        w.data(S2C, b"ok").unwrap();
        w.eof(C2S).unwrap();
        w.eof(S2C).unwrap();
    })
}

#[test]
fn how_the_same_bytes_fell_into_frames_never_decides_the_tape() {
    let (mut wire, mut p) = pool(&[framed(false, b"k0"), framed(true, b"k1")]);
    assert!(matches!(resume(&mut p, &mut wire), PoolStatus::Running));
    // Tape 1 answers "a" at once; tape 0 not before "b": tape 1 speaks.
    wire.send(b"a");
    assert!(matches!(ready(&mut p, &mut wire), PoolStatus::Running));
    assert_eq!(wire.take(), b"x");
    wire.send(b"b");
    assert!(matches!(ready(&mut p, &mut wire), PoolStatus::Running));
    assert_eq!(wire.take(), b"y", "x is not said twice");
    assert_eq!(p.entries().collect::<Vec<_>>(), [0, 1], "both still agree");
    // The key tells them apart.
    wire.send(b"k0");
    let PoolStatus::Decide(entries) = ready(&mut p, &mut wire) else {
        panic!("expected a decision")
    };
    assert_eq!(entries, [0]);
}

#[test]
fn a_close_that_not_every_candidate_can_follow_asks_to_decide() {
    let bye = tape(|w| {
        w.data(C2S, b"q").unwrap();
        w.data(S2C, b"bye").unwrap();
        w.eof(S2C).unwrap();
        w.eof(C2S).unwrap();
    });
    let more = tape(|w| {
        w.data(C2S, b"q").unwrap();
        w.data(S2C, b"bye").unwrap();
        w.data(C2S, b"more").unwrap();
        w.data(S2C, b"ok").unwrap();
    });
    let (mut wire, mut p) = pool(&[bye, more]);
    wire.send(b"q");
    let PoolStatus::Decide(entries) = ready(&mut p, &mut wire) else {
        panic!("expected a decision")
    };
    assert_eq!(wire.take(), b"bye", "what they agree on went first");
    assert_eq!(entries, [0, 1], "the one that closes now first");
}

#[test]
fn when_answers_differ_the_tape_whose_answer_the_client_got_is_preferred() {
    let answer = |text: &'static [u8]| {
        tape(move |w| {
            w.data(C2S, b"GET").unwrap();
            w.eof(C2S).unwrap();
            w.data(S2C, text).unwrap();
        })
    };
    let (mut wire, mut p) = pool(&[answer(b"first"), answer(b"second")]);
    wire.send(b"GET");
    wire.close();
    let PoolStatus::Decide(entries) = ready(&mut p, &mut wire) else {
        panic!("expected a decision")
    };
    assert_eq!(wire.take(), b"first");
    assert_eq!(entries[0], 0, "{entries:?}");
}

#[test]
fn a_client_that_leaves_every_tape_is_a_mismatch_against_the_closest() {
    let (mut wire, mut p) = pool(&[framed(false, b"k0"), framed(false, b"k1")]);
    wire.send(b"ab");
    assert!(matches!(ready(&mut p, &mut wire), PoolStatus::Running));
    assert_eq!(wire.take(), b"xy");
    wire.send(b"zz");
    let PoolStatus::Failed(Status::Mismatch {
        summary, received, ..
    }) = ready(&mut p, &mut wire)
    else {
        panic!("expected a mismatch")
    };
    assert_eq!(received, 2);
    assert!(
        summary.contains("byte 2 of its stream differs"),
        "{summary}"
    );
}

#[test]
fn a_tape_another_connection_took_leaves_the_pool() {
    let (mut wire, mut p) = pool(&[framed(false, b"k0"), framed(false, b"k1")]);
    assert!(p.remove_entry(0));
    wire.send(b"a");
    let PoolStatus::Decide(entries) = ready(&mut p, &mut wire) else {
        panic!("one left: it is this connection's")
    };
    assert_eq!(entries, [1]);
    assert!(!p.remove_entry(1), "none left");
}

#[test]
fn a_longer_answer_than_was_said_never_sends_its_tail() {
    // redis-py's HELLO answer holds the connection's id, `:3` on one tape
    // and `:10` on another: following the first, the second is left with
    // the last byte of its answer, which it must not send (the client got
    // a stray "\n" before its next answer).
    let session = |id: &'static [u8]| {
        tape(move |w| {
            w.data(C2S, b"HELLO\r\n").unwrap();
            w.data(S2C, id).unwrap();
            w.data(C2S, b"PING\r\n").unwrap();
            w.data(S2C, b"+PONG\r\n").unwrap();
            w.eof(C2S).unwrap();
            w.eof(S2C).unwrap();
        })
    };
    let (mut wire, mut p) = pool(&[session(b":3\r\n"), session(b":10\r\n")]);
    wire.send(b"HELLO\r\n");
    assert!(matches!(ready(&mut p, &mut wire), PoolStatus::Running));
    assert!(matches!(resume(&mut p, &mut wire), PoolStatus::Running));
    assert_eq!(wire.take(), b":3\r\n");
    wire.send(b"PING\r\n");
    assert!(matches!(ready(&mut p, &mut wire), PoolStatus::Running));
    assert_eq!(wire.take(), b"+PONG\r\n", "nothing of the other answer");
    wire.close();
    let PoolStatus::Decide(entries) = ready(&mut p, &mut wire) else {
        panic!("expected a decision")
    };
    assert_eq!(entries[0], 0, "the tape whose answers the client got");
}
