//! Length fields, found in the first recording: where a value that
//! varies (or an echo) sits inside bytes whose length is written before
//! them, that length must change with the value, so it becomes a `length`
//! span.
//!
//! In streams that look binary (text protocols say how long things are in
//! words, not in bytes), three shapes:
//!
//! - **framing**: each turn of a direction (its bytes between two of the
//!   other side's) splits exactly into messages of one layout: a length of
//!   2 to 4 bytes, maybe after a type byte, counting what follows it (or
//!   itself too, or a sequence byte more), as PostgreSQL's and MySQL's
//!   packets are;
//! - **prefix**: an integer right before a value that varies, equal to
//!   that value's length in every recording (PostgreSQL's column values,
//!   MySQL's length-encoded strings);
//! - **tail**: inside a message, a byte before a value that varies that
//!   counts the rest of the message, when that rest splits exactly into
//!   byte-length-prefixed values (MySQL's connection attributes, which
//!   hold the client's pid).
//!
//! In any stream, two decimal shapes:
//!
//! - **decimal prefix**: digits and a line end right before a value, the
//!   digits saying the value's length in every recording (Redis's
//!   `$5\r\nhello`, memcached's data blocks);
//! - **decimal**: a number that changes between the recordings exactly as
//!   the length of the rest of its turn does, where what changes in the
//!   rest is no number itself (HTTP's `Content-Length` over a body that
//!   quotes a token). The last condition is there because in memcached's
//!   `stats`, a counter once changed by exactly as much as the counters
//!   after it did.
//!
//! A field is only a candidate: `mod.rs` keeps those that count a value
//! that may change length, and that no other span crosses.

use std::collections::BTreeMap;
use std::ops::Range;

use super::captures::{Piece, PieceKind};
use super::recording::Recording;
use super::turns::TurnIndex;
use crate::tape::{Direction, Encoding};

/// A length field in the first recording's stream of `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub dir: Direction,
    /// The field's bytes.
    pub range: Range<usize>,
    pub encoding: Encoding,
    /// The bytes after it that it counts.
    pub region: usize,
    pub shape: Shape,
    /// True when the field's bytes differ between recordings (they were
    /// part of a value that varies, and are cut out of it).
    pub differs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Framing,
    Prefix,
    Tail,
    DecimalPrefix,
    Decimal,
}

/// How a message writes its length: `before` bytes (a type), the field,
/// then `region = value + adjust` bytes.
#[derive(Debug, Clone, Copy)]
struct Layout {
    before: usize,
    width: u8,
    big_endian: bool,
    adjust: i64,
}

const fn layout(before: usize, width: u8, big_endian: bool, adjust: i64) -> Layout {
    Layout {
        before,
        width,
        big_endian,
        adjust,
    }
}

/// The layouts tried, most common first: PostgreSQL's (a type byte, a u32
/// counting itself), its startup message (no type), MySQL's (a u24 of the
/// payload after a sequence byte), then plain lengths of what follows.
const LAYOUTS: [Layout; 10] = [
    layout(1, 4, true, -4),
    layout(0, 4, true, -4),
    layout(0, 3, false, 1),
    layout(0, 4, true, 0),
    layout(0, 4, false, 0),
    layout(0, 4, false, -4),
    layout(0, 2, true, 0),
    layout(0, 2, false, 0),
    layout(0, 2, true, -2),
    layout(1, 4, true, 0),
];

/// Widths and byte orders of a prefix length.
const PREFIXES: [(u8, bool); 5] = [(1, true), (2, true), (2, false), (4, true), (4, false)];

/// A stream looks binary when this share of its bytes (in percent) are
/// neither printable ASCII nor whitespace.
const BINARY_PERCENT: usize = 5;

/// Candidate length fields of the first recording: decimal ones in any
/// stream, the others in binary streams. `turns`: each recording's.
pub fn fields(recordings: &[Recording], turns: &[TurnIndex], pieces: &[Piece]) -> Vec<Field> {
    let mut fields = Vec::new();
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        // The direction's pieces, by where they start.
        let mut of_dir: Vec<&Piece> = pieces.iter().filter(|p| p.dir == dir).collect();
        of_dir.sort_by_key(|p| p.base().start);
        for piece in &of_dir {
            fields.extend(decimal_prefix(recordings, turns, piece));
            fields.extend(decimal(recordings, turns, &of_dir, piece));
        }
        let stream = recordings[0].stream(dir);
        if !looks_binary(stream) {
            continue;
        }
        let starts: Vec<usize> = of_dir.iter().map(|p| p.base().start).collect();
        for turn in turns[0].all().iter().filter(|t| t.dir == dir) {
            let turn = turn.range.clone();
            let Some(found) = LAYOUTS.iter().find_map(|l| tile(stream, turn.clone(), l)) else {
                continue;
            };
            for (range, encoding, region) in found {
                let body = range.end..range.end + region;
                let framing = Field {
                    dir,
                    range,
                    encoding,
                    region,
                    shape: Shape::Framing,
                    differs: false,
                };
                fields.push(framing);
                fields.extend(tail(stream, body, &starts).map(|(range, region)| Field {
                    dir,
                    range,
                    encoding: Encoding::Int {
                        width: 1,
                        big_endian: true,
                    },
                    region,
                    shape: Shape::Tail,
                    differs: false,
                }));
            }
        }
        for piece in &of_dir {
            fields.extend(prefix(recordings, turns, piece));
        }
    }
    // One field per place: a prefix that is also a message's length is
    // that length.
    let mut kept = first_of_overlaps(fields);
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        let mut of_dir: Vec<&Piece> = pieces.iter().filter(|p| p.dir == dir).collect();
        of_dir.sort_by_key(|p| p.base().start);
        for field in kept.iter_mut().filter(|f| f.dir == dir) {
            field.differs = differs(recordings, &of_dir, field);
        }
    }
    kept
}

/// Of fields that overlap, the one found first.
fn first_of_overlaps(fields: Vec<Field>) -> Vec<Field> {
    // The kept fields' ranges by direction and start; none overlap, so a
    // field overlaps one of them only if it overlaps a neighbour.
    let mut kept: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut keep = vec![false; fields.len()];
    for (i, field) in fields.iter().enumerate() {
        let d = field.dir.index();
        let range = &field.range;
        let before = kept
            .range(..=(d, range.start))
            .next_back()
            .is_some_and(|(&(kd, _), &end)| kd == d && end > range.start);
        let after = kept
            .range((d, range.start)..)
            .next()
            .is_some_and(|(&(kd, start), _)| kd == d && start < range.end);
        if !(before || after) {
            kept.insert((d, range.start), range.end);
            keep[i] = true;
        }
    }
    fields
        .into_iter()
        .zip(keep)
        .filter_map(|(field, keep)| keep.then_some(field))
        .collect()
}

/// True when the field's bytes differ between the recordings: they are
/// (in part) bytes of a value that varies (`pieces`: the direction's, by
/// start), as far from its start in every recording; elsewhere the
/// recordings' bytes are aligned, so the same.
fn differs(recordings: &[Recording], pieces: &[&Piece], field: &Field) -> bool {
    let i = pieces.partition_point(|p| p.base().start < field.range.end);
    let Some(piece) = i.checked_sub(1).map(|i| pieces[i]) else {
        return false;
    };
    if !overlaps(&piece.base(), &field.range) {
        return false;
    }
    let base = piece.base().start;
    let mut first: Option<Option<&[u8]>> = None;
    for (range, recording) in piece.ranges.iter().zip(recordings) {
        let start = (range.start + field.range.start).checked_sub(base);
        let bytes = start.and_then(|start| {
            recording
                .stream(field.dir)
                .get(start..start + field.range.len())
        });
        if *first.get_or_insert(bytes) != bytes {
            return true;
        }
    }
    false
}

pub fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

fn looks_binary(stream: &[u8]) -> bool {
    let text = |b: &u8| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t');
    let binary = stream.iter().filter(|b| !text(b)).count();
    !stream.is_empty() && binary * 100 >= stream.len() * BINARY_PERCENT
}

/// The messages `turn` splits into with `layout`, exactly: each one's
/// field, encoding and counted bytes.
fn tile(
    stream: &[u8],
    turn: Range<usize>,
    layout: &Layout,
) -> Option<Vec<(Range<usize>, Encoding, usize)>> {
    let encoding = Encoding::Int {
        width: layout.width,
        big_endian: layout.big_endian,
    };
    let width = usize::from(layout.width);
    let mut messages = Vec::new();
    let mut at = turn.start;
    while at < turn.end {
        let field = at + layout.before..at + layout.before + width;
        if field.end > turn.end {
            return None;
        }
        let value = encoding.decode(&stream[field.clone()])?;
        let region =
            usize::try_from(i64::try_from(value).ok()?.checked_add(layout.adjust)?).ok()?;
        let end = field.end.checked_add(region)?;
        if end > turn.end {
            return None;
        }
        messages.push((field.clone(), encoding, region));
        at = end;
    }
    (!messages.is_empty()).then_some(messages)
}

/// The longest message body searched for a tail length: the search is
/// quadratic in it.
const TAIL_BODY: usize = 4096;

/// A tail length in a message `body`: a byte before the first value that
/// varies (`starts`: where values that vary start, in order) that counts
/// the rest of the body, at least 4 bytes, which split exactly into two
/// or more byte-length-prefixed values. Its place and count.
fn tail(stream: &[u8], body: Range<usize>, starts: &[usize]) -> Option<(Range<usize>, usize)> {
    if body.len() > TAIL_BODY {
        return None;
    }
    let first = starts[starts.partition_point(|&s| s < body.start)..]
        .first()
        .copied()
        .filter(|s| body.contains(s))?;
    let values = layout(0, 1, true, 0);
    (body.start..first).find_map(|at| {
        let rest = body.end - (at + 1);
        let counts = usize::from(stream[at]) == rest && rest >= 4;
        let split = counts && tile(stream, at + 1..body.end, &values).is_some_and(|v| v.len() >= 2);
        split.then_some((at..at + 1, rest))
    })
}

/// Where the turn that `range` of a recording's stream of `dir` starts in
/// begins (`turns`: the recording's).
fn turn_start(turns: &TurnIndex, dir: Direction, range: &Range<usize>) -> Option<usize> {
    turns.turn_of(dir, range.start).map(|t| t.range.start)
}

/// A prefix length of `piece`'s value: an integer ending where the value
/// starts (or inside its first bytes, when the recordings' lengths differ
/// and so the field's bytes do too, or when the value was taken wider
/// than what differed), equal to the length of the rest of the value, in
/// every recording, and in the value's turn. Of several, the one nearest
/// the bytes that differ (DNS's EDNS cookie: its u16 length `00 08`, not
/// the option code's low byte `0a` before it).
fn prefix(recordings: &[Recording], turns: &[TurnIndex], piece: &Piece) -> Option<Field> {
    let base = piece.base();
    let mut best: Option<Field> = None;
    for (width, big_endian) in PREFIXES {
        let encoding = Encoding::Int { width, big_endian };
        let width = usize::from(width);
        // Where the field ends, from the value's start: 0 when its bytes
        // are the same in every recording, up to `width` into the piece.
        for into in 0..=width.min(base.len()) {
            let end = base.start + into;
            if best.as_ref().is_some_and(|b| b.range.end >= end) {
                continue;
            }
            let holds = piece.ranges.iter().zip(recordings).zip(turns).all(
                |((range, recording), turns)| {
                    let stream = recording.stream(piece.dir);
                    let end = range.start + into;
                    let turn = turn_start(turns, piece.dir, range);
                    end >= width
                        && turn.is_some_and(|t| end - width >= t)
                        && end <= range.end
                        && encoding.decode(&stream[end - width..end])
                            == Some((range.end - end) as u64)
                },
            );
            // A length of nothing, or of one byte, proves little.
            if holds && base.end - end >= 2 {
                best = Some(Field {
                    dir: piece.dir,
                    range: end - width..end,
                    encoding,
                    region: base.end - end,
                    shape: Shape::Prefix,
                    differs: false,
                });
            }
        }
    }
    best
}

/// Line ends that may stand between a decimal length and its value.
const LINE_ENDS: [&[u8]; 2] = [b"\r\n", b"\n"];
/// The most digits of a decimal length (u64::MAX has 20).
const MAX_DIGITS: usize = 20;

/// A decimal prefix of `piece`'s value: digits, a line end, then the
/// value, all in its turn, and in every recording the digits say the
/// value's length.
fn decimal_prefix(recordings: &[Recording], turns: &[TurnIndex], piece: &Piece) -> Option<Field> {
    if piece.base().is_empty() {
        return None;
    }
    LINE_ENDS.iter().find_map(|line_end| {
        let mut digits =
            piece
                .ranges
                .iter()
                .zip(recordings)
                .zip(turns)
                .map(|((range, recording), turns)| {
                    let stream = recording.stream(piece.dir);
                    let turn = turn_start(turns, piece.dir, range)?;
                    let end = range.start.checked_sub(line_end.len())?;
                    if end < turn || &stream[end..range.start] != *line_end {
                        return None;
                    }
                    let count = stream[turn.max(end.saturating_sub(MAX_DIGITS))..end]
                        .iter()
                        .rev()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    let says = Encoding::Decimal.decode(&stream[end - count..end])?;
                    (says == range.len() as u64).then_some(end - count..end)
                });
        let field = digits.next()??;
        if !digits.all(|d| d.is_some()) {
            return None;
        }
        Some(Field {
            dir: piece.dir,
            region: line_end.len() + piece.base().len(),
            range: field,
            encoding: Encoding::Decimal,
            shape: Shape::DecimalPrefix,
            differs: false,
        })
    })
}

/// The rest of its turn after `piece` in the first recording, when
/// `piece` is digits that differ between the recordings and in each its
/// turn ends as many bytes after where the number says: a length of the
/// rest of the turn (HTTP's `Content-Length`), by its numbers.
pub fn counts_its_turn(
    recordings: &[Recording],
    turns: &[TurnIndex],
    piece: &Piece,
) -> Option<Range<usize>> {
    if piece.distinct(recordings) < 2 {
        return None;
    }
    let turn_end = |turns: &TurnIndex, range: &Range<usize>| {
        let turn = turns.turn_of(piece.dir, range.start)?;
        (range.end <= turn.range.end).then_some(turn.range.end)
    };
    let mut trailer = None;
    for ((range, recording), turns) in piece.ranges.iter().zip(recordings).zip(turns) {
        let value = Encoding::Decimal.decode(&recording.stream(piece.dir)[range.clone()])?;
        let rest = (turn_end(turns, range)? - range.end) as u64;
        let extra = rest.checked_sub(value)?;
        if *trailer.get_or_insert(extra) != extra {
            return None;
        }
    }
    let base = piece.base();
    Some(base.end..turn_end(&turns[0], &base)?)
}

/// A decimal length: `piece` is digits in every recording, they differ,
/// and in each recording its turn ends as many bytes after where the
/// number says; what varies in the rest of the turn is no number.
/// `pieces`: the direction's, by start.
fn decimal(
    recordings: &[Recording],
    turns: &[TurnIndex],
    pieces: &[&Piece],
    piece: &Piece,
) -> Option<Field> {
    if !matches!(piece.kind, PieceKind::Vary) {
        return None;
    }
    let region = counts_its_turn(recordings, turns, piece)?;
    let first = pieces.partition_point(|p| p.base().start < region.start);
    let mut after = pieces[first..]
        .iter()
        .take_while(|p| p.base().start < region.end)
        .filter(|p| p.base().end <= region.end)
        .peekable();
    after.peek()?;
    let numbers = after.any(|p| {
        p.values(recordings)
            .iter()
            .any(|v| super::regions::is_number(v))
    });
    (!numbers).then(|| Field {
        dir: piece.dir,
        range: piece.base(),
        encoding: Encoding::Decimal,
        region: region.len(),
        shape: Shape::Decimal,
        differs: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be32(n: u32) -> [u8; 4] {
        n.to_be_bytes()
    }

    #[test]
    fn turns_split_into_postgres_and_mysql_messages() {
        // PostgreSQL: 'Q', a u32 counting itself, the query; then Sync.
        let mut pg = vec![b'Q'];
        pg.extend(be32(4 + 9));
        pg.extend(b"select 1\0");
        pg.extend(b"S\0\0\0\x04");
        let found = LAYOUTS
            .iter()
            .find_map(|l| tile(&pg, 0..pg.len(), l))
            .unwrap();
        let int = |width, big_endian| Encoding::Int { width, big_endian };
        assert_eq!(found, [(1..5, int(4, true), 9), (15..19, int(4, true), 0)]);
        // MySQL: a u24 payload length, a sequence byte, the payload.
        let my = b"\x05\x00\x00\x00\x03abcd\x01\x00\x00\x01\x0e";
        let found = LAYOUTS
            .iter()
            .find_map(|l| tile(my, 0..my.len(), l))
            .unwrap();
        assert_eq!(found, [(0..3, int(3, false), 6), (9..12, int(3, false), 2)]);
        // Text never tiles: its "lengths" are far too long.
        let text = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(
            LAYOUTS
                .iter()
                .all(|l| tile(text, 0..text.len(), l).is_none())
        );
        // A message cut short does not tile.
        assert!(tile(&pg[..pg.len() - 1], 0..pg.len() - 1, &LAYOUTS[0]).is_none());
    }

    #[test]
    fn a_tail_length_counts_byte_prefixed_values_to_the_message_end() {
        // A header, then 10 bytes of two prefixed values; the pid varies.
        let body = b"\x01\x02\x0a\x04_pid\x047558";
        let at_pid = body.len() - 4;
        assert_eq!(tail(body, 0..body.len(), &[at_pid]), Some((2..3, 10)));
        // Not when the value that varies comes first, nor in text whose
        // byte happens to count the rest.
        assert_eq!(tail(body, 0..body.len(), &[1]), None);
        let text = b"x\x05hello";
        assert_eq!(
            tail(text, 0..text.len(), &[2]),
            None,
            "'hello' is no prefixed value"
        );
    }

    #[test]
    fn a_decimal_prefix_says_the_length_of_the_value_after_its_line_end() {
        let recording = |bytes: &[u8]| {
            let mut w = crate::tape::Writer::new(Vec::new()).unwrap();
            w.data(Direction::ClientToServer, bytes).unwrap();
            Recording::from_bytes("r", &w.into_inner()).unwrap()
        };
        let recordings = [
            recording(b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n"),
            recording(b"*2\r\n$3\r\nGET\r\n$11\r\nhello world\r\n"),
        ];
        let turns: Vec<TurnIndex> = recordings
            .iter()
            .map(|r| TurnIndex::new(crate::learn::turns::turns(r)))
            .collect();
        let piece = Piece {
            dir: Direction::ClientToServer,
            ranges: vec![17..22, 18..29],
            kind: PieceKind::Vary,
        };
        let field = decimal_prefix(&recordings, &turns, &piece).unwrap();
        assert_eq!((field.range, field.region), (14..15, 7));
        // Digits that do not say the value's length are no length.
        let piece = Piece {
            ranges: vec![17..21, 18..28],
            ..piece
        };
        assert_eq!(decimal_prefix(&recordings, &turns, &piece), None);
    }

    #[test]
    fn binary_streams_are_told_from_text() {
        assert!(looks_binary(b"Q\0\0\0\x0dselect 1\0"));
        assert!(!looks_binary(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!looks_binary(b""));
    }
}
