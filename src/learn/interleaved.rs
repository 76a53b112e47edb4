//! Recordings whose sides talked at once. A pipelining client sends its
//! next requests before the answers to the first are back, and how its
//! bytes and the server's then fell into turns depends on timing
//! (redis-py's connection set-up: three CLIENT commands in one write, the
//! three answers in one turn in one run and in three in another). Such
//! recordings do not take the same turns though each side sent the same
//! bytes: they are aligned stream by stream, and the places where they
//! differ found inside the first recording's turns, which the tape keeps.
//! Where one side sent bytes the other did not across a turn (a request
//! and its answer more), the recordings took different paths.

use std::ops::Range;

use super::align::{Block, align};
use super::recording::Recording;
use super::regions::{Map, Region, Streams, regions};
use super::turns::{Likeness, Turn};
use crate::tape::Direction;

const DIRS: [Direction; 2] = [Direction::ClientToServer, Direction::ServerToClient];

/// The places where `recordings` differ, found in the first one's turns,
/// per direction; `turns[i]` are recording `i`'s. `parted(i)` says how
/// recording `i` took another path than the first, should it have sent
/// bytes across a turn that the first did not (or the other way round).
pub fn places(
    recordings: &[Recording],
    turns: &[&[Turn]],
    parted: &dyn Fn(usize) -> String,
) -> Result<[Vec<Region>; 2], String> {
    let base = &recordings[0];
    let mut out = [Vec::new(), Vec::new()];
    let mut likeness: Vec<Likeness> = recordings[1..]
        .iter()
        .map(|_| Likeness::default())
        .collect();
    for dir in DIRS {
        let ours = base.stream(dir);
        let aligned: Vec<Vec<Block>> = recordings[1..]
            .iter()
            .map(|other| align(ours, other.stream(dir)))
            .collect();
        for (i, blocks) in aligned.iter().enumerate() {
            let other = &recordings[i + 1];
            let theirs = other.stream(dir);
            if crosses_a_turn(blocks, (ours, turns[0]), (theirs, turns[i + 1]), dir) {
                return Err(parted(i + 1));
            }
            likeness[i].add(&Likeness::of(ours, theirs, blocks));
        }
        let maps: Vec<Map> = (aligned.iter().zip(&recordings[1..]))
            .map(|(blocks, other)| Map::new(blocks, ours.len(), other.stream(dir).len()))
            .collect();
        for turn in turns[0].iter().filter(|t| t.dir == dir) {
            let mut ranges = vec![turn.range.clone()];
            ranges.extend(maps.iter().map(|map| map.range(&turn.range)));
            let bytes: Vec<&[u8]> = (recordings.iter().zip(&ranges))
                .map(|(r, range)| &r.stream(dir)[range.clone()])
                .collect();
            let blocks = (aligned.iter().zip(&ranges[1..]))
                .map(|(blocks, theirs)| clipped(blocks, &turn.range, theirs))
                .collect();
            for mut region in regions(&Streams { bytes, blocks }) {
                for (range, start) in region.ranges.iter_mut().zip(&ranges) {
                    *range = range.start + start.start..range.end + start.start;
                }
                out[dir.index()].push(region);
            }
        }
    }
    for (i, likeness) in likeness.iter().enumerate() {
        if !likeness.alike() {
            return Err(unlike(base, &recordings[i + 1]));
        }
    }
    Ok(out)
}

/// True when bytes only one recording has (with none of the other's in
/// their place) hold a turn boundary of that recording, or a whole turn:
/// a message and its answer more, not a value of other bytes.
fn crosses_a_turn(
    blocks: &[Block],
    (ours, our_turns): (&[u8], &[Turn]),
    (theirs, their_turns): (&[u8], &[Turn]),
    dir: Direction,
) -> bool {
    let crosses = |turns: &[Turn], only: Range<usize>| {
        let starts: Vec<&Turn> = turns.iter().filter(|t| t.dir == dir).collect();
        let next = starts.partition_point(|t| t.range.start <= only.start);
        let inside = starts.get(next).is_some_and(|t| t.range.start < only.end);
        let whole = next
            .checked_sub(1)
            .map(|i| &starts[i].range)
            .is_some_and(|t| t.start == only.start && t.end <= only.end);
        !only.is_empty() && (inside || whole)
    };
    let end = Block {
        a: ours.len(),
        b: theirs.len(),
        len: 0,
    };
    let (mut a, mut b) = (0, 0);
    for block in blocks.iter().chain([&end]) {
        let (only_ours, only_theirs) = (a..block.a, b..block.b);
        let one_sided = only_ours.is_empty() != only_theirs.is_empty();
        if one_sided && (crosses(our_turns, only_ours) || crosses(their_turns, only_theirs)) {
            return true;
        }
        (a, b) = (block.a + block.len, block.b + block.len);
    }
    false
}

/// `blocks` (of a whole stream) inside the base's `ours` and the other's
/// `theirs`, in offsets from their starts.
fn clipped(blocks: &[Block], ours: &Range<usize>, theirs: &Range<usize>) -> Vec<Block> {
    let first = blocks.partition_point(|b| b.a + b.len <= ours.start);
    blocks[first..]
        .iter()
        .take_while(|b| b.a < ours.end)
        .filter_map(|b| {
            let start = b.a.max(ours.start);
            let end = (b.a + b.len).min(ours.end);
            let other = b.b + (start - b.a);
            let fits = start < end && other >= theirs.start && other + (end - start) <= theirs.end;
            fits.then(|| Block {
                a: start - ours.start,
                b: other - theirs.start,
                len: end - start,
            })
        })
        .collect()
}

/// Why recordings whose streams do not look alike are refused: where the
/// first difference is.
fn unlike(base: &Recording, other: &Recording) -> String {
    let part = DIRS
        .into_iter()
        .filter_map(|dir| {
            let (a, b) = (base.stream(dir), other.stream(dir));
            let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            (at < a.len().max(b.len())).then(|| (base.frame_of(dir, at), dir, at))
        })
        .min_by_key(|&(frame, dir, _)| (frame, dir.index()));
    let mut message = format!(
        "{} and {} do not look like recordings of one scenario",
        base.name, other.name
    );
    if let Some((frame, dir, at)) = part {
        message.push_str(&format!(
            ": they part at byte {at} of the {}'s bytes (frame {frame} of {}, frame {} of {})",
            dir.sender(),
            base.name,
            other.frame_of(dir, at),
            other.name
        ));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::turns::turns;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn places_of(recordings: &[Recording]) -> Result<[Vec<Region>; 2], String> {
        let turns: Vec<Vec<Turn>> = recordings.iter().map(turns).collect();
        let all: Vec<&[Turn]> = turns.iter().map(Vec::as_slice).collect();
        places(recordings, &all, &|i| format!("recording {i} parted"))
    }

    #[test]
    fn pipelined_turns_split_another_way_are_one_path() {
        // Three commands in one write, answered in one turn; then one by
        // one. The id the server gives differs.
        let a = Recording::of_steps(
            "a",
            &[
                (C2S, b"HELLO\r\n"),
                (S2C, b"id 7\r\n"),
                (C2S, b"ONE\r\nTWO\r\nSIX\r\n"),
                (S2C, b"-ERR one\r\n-ERR two\r\n-ERR six\r\n"),
            ],
        );
        let b = Recording::of_steps(
            "b",
            &[
                (C2S, b"HELLO\r\n"),
                (S2C, b"id 8\r\n"),
                (C2S, b"ONE\r\n"),
                (S2C, b"-ERR one\r\n"),
                (C2S, b"TWO\r\nSIX\r\n"),
                (S2C, b"-ERR two\r\n-ERR six\r\n"),
            ],
        );
        let [client, server] = places_of(&[a, b]).unwrap();
        assert_eq!(client, []);
        assert_eq!(
            server,
            [Region {
                ranges: vec![3..4, 3..4]
            }]
        );
    }

    #[test]
    fn a_message_more_across_a_turn_is_another_path() {
        let set = |k: &str| format!("set {k} 0 0 5\r\nhello\r\n").into_bytes();
        let a = Recording::of_steps(
            "a",
            &[
                (C2S, &set("k1")),
                (S2C, b"STORED\r\n"),
                (C2S, b"get k1\r\n"),
            ],
        );
        let b = Recording::of_steps(
            "b",
            &[
                (C2S, &set("k1")),
                (S2C, b"STORED\r\n"),
                (C2S, &set("k2")),
                (S2C, b"STORED\r\n"),
                (C2S, b"get k1\r\n"),
            ],
        );
        assert_eq!(places_of(&[a, b]).unwrap_err(), "recording 1 parted");
        // An optional line inside a turn is a value, not a path.
        let a = Recording::of_steps("a", &[(C2S, b"GET /\r\n"), (S2C, b"200\r\nA: 1\r\n\r\n")]);
        let b = Recording::of_steps(
            "b",
            &[(C2S, b"GET /\r\n"), (S2C, b"200\r\nA: 1\r\nB: 2\r\n\r\n")],
        );
        assert!(places_of(&[a, b]).is_ok());
    }
}
