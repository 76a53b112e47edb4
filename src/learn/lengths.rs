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

use std::ops::Range;

use super::captures::{Piece, PieceKind};
use super::recording::{Item, Recording};
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

/// Candidate length fields of every binary stream of the first recording.
pub fn fields(recordings: &[Recording], pieces: &[Piece]) -> Vec<Field> {
    let mut fields = Vec::new();
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        for piece in pieces.iter().filter(|p| p.dir == dir) {
            fields.extend(decimal_prefix(recordings, piece));
            fields.extend(decimal(recordings, pieces, piece));
        }
        let stream = recordings[0].stream(dir);
        if !looks_binary(stream) {
            continue;
        }
        let starts: Vec<usize> = pieces
            .iter()
            .filter(|p| p.dir == dir)
            .map(|p| p.base().start)
            .collect();
        for turn in turns(&recordings[0], dir) {
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
        for piece in pieces.iter().filter(|p| p.dir == dir) {
            if let Some(field) = prefix(recordings, piece) {
                fields.push(field);
            }
        }
    }
    // One field per place: a prefix that is also a message's length is
    // that length.
    let mut kept: Vec<Field> = Vec::new();
    for field in fields {
        let taken = kept
            .iter()
            .any(|k| k.dir == field.dir && overlaps(&k.range, &field.range));
        if !taken {
            kept.push(field);
        }
    }
    for field in &mut kept {
        field.differs = pieces
            .iter()
            .any(|p| p.dir == field.dir && overlaps(&p.base(), &field.range));
    }
    kept
}

pub fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

fn looks_binary(stream: &[u8]) -> bool {
    let text = |b: &u8| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t');
    let binary = stream.iter().filter(|b| !text(b)).count();
    !stream.is_empty() && binary * 100 >= stream.len() * BINARY_PERCENT
}

/// The turns of `dir`: its bytes between two of the other side's.
pub fn turns(recording: &Recording, dir: Direction) -> Vec<Range<usize>> {
    let mut turns: Vec<Range<usize>> = Vec::new();
    let mut open = false;
    for item in &recording.items {
        let Item::Data { dir: d, start, len } = *item else {
            continue;
        };
        if len == 0 {
            continue;
        }
        if d != dir {
            open = false;
            continue;
        }
        match turns.last_mut() {
            Some(turn) if open && turn.end == start => turn.end = start + len,
            _ => turns.push(start..start + len),
        }
        open = true;
    }
    turns
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
/// varies (`starts`: where values that vary start) that counts the rest of
/// the body, at least 4 bytes, which split exactly into two or more
/// byte-length-prefixed values. Its place and count.
fn tail(stream: &[u8], body: Range<usize>, starts: &[usize]) -> Option<(Range<usize>, usize)> {
    if body.len() > TAIL_BODY {
        return None;
    }
    let first = starts.iter().copied().filter(|s| body.contains(s)).min()?;
    let values = layout(0, 1, true, 0);
    (body.start..first).find_map(|at| {
        let rest = body.end - (at + 1);
        let counts = usize::from(stream[at]) == rest && rest >= 4;
        let split = counts && tile(stream, at + 1..body.end, &values).is_some_and(|v| v.len() >= 2);
        split.then_some((at..at + 1, rest))
    })
}

/// A prefix length of `piece`'s value: an integer ending where the value
/// starts (or inside its first bytes, when the recordings' lengths differ
/// and so the field's bytes do too), equal to the length of the rest of
/// the value, in every recording.
fn prefix(recordings: &[Recording], piece: &Piece) -> Option<Field> {
    let base = piece.base();
    for (width, big_endian) in PREFIXES {
        let encoding = Encoding::Int { width, big_endian };
        let width = usize::from(width);
        // Where the field ends, from the value's start: 0 when its bytes
        // are the same in every recording, up to `width` into the piece.
        for into in 0..=width.min(base.len()) {
            let holds = piece
                .ranges
                .iter()
                .zip(recordings)
                .all(|(range, recording)| {
                    let stream = recording.stream(piece.dir);
                    let end = range.start + into;
                    end >= width
                        && end <= range.end
                        && encoding.decode(&stream[end - width..end])
                            == Some((range.end - end) as u64)
                });
            // A length of nothing, or of one byte, proves little.
            if holds && base.end - (base.start + into) >= 2 {
                let end = base.start + into;
                return Some(Field {
                    dir: piece.dir,
                    range: end - width..end,
                    encoding,
                    region: base.end - end,
                    shape: Shape::Prefix,
                    differs: into > 0,
                });
            }
        }
    }
    None
}

/// Line ends that may stand between a decimal length and its value.
const LINE_ENDS: [&[u8]; 2] = [b"\r\n", b"\n"];

/// A decimal prefix of `piece`'s value: digits, a line end, then the
/// value, and in every recording the digits say the value's length.
fn decimal_prefix(recordings: &[Recording], piece: &Piece) -> Option<Field> {
    if piece.base().is_empty() {
        return None;
    }
    LINE_ENDS.iter().find_map(|line_end| {
        let mut digits = piece
            .ranges
            .iter()
            .zip(recordings)
            .map(|(range, recording)| {
                let stream = recording.stream(piece.dir);
                let end = range.start.checked_sub(line_end.len())?;
                if &stream[end..range.start] != *line_end {
                    return None;
                }
                let count = stream[..end]
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

/// A decimal length: `piece` is digits in every recording, they differ,
/// and in each recording its turn ends as many bytes after where the
/// number says; what varies in the rest of the turn is no number.
fn decimal(recordings: &[Recording], pieces: &[Piece], piece: &Piece) -> Option<Field> {
    if !matches!(piece.kind, PieceKind::Vary) || piece.distinct(recordings) < 2 {
        return None;
    }
    let turn_of = |recording: &Recording, range: &Range<usize>| {
        turns(recording, piece.dir)
            .into_iter()
            .find(|turn| turn.start <= range.start && range.end <= turn.end)
    };
    let mut trailer = None;
    for (range, recording) in piece.ranges.iter().zip(recordings) {
        let value = Encoding::Decimal.decode(&recording.stream(piece.dir)[range.clone()])?;
        let rest = (turn_of(recording, range)?.end - range.end) as u64;
        let extra = rest.checked_sub(value)?;
        if *trailer.get_or_insert(extra) != extra {
            return None;
        }
    }
    let base = piece.base();
    let region = base.end..turn_of(&recordings[0], &base)?.end;
    let mut after = pieces
        .iter()
        .filter(|p| {
            p.dir == piece.dir && region.start <= p.base().start && p.base().end <= region.end
        })
        .peekable();
    after.peek()?;
    let numbers = after.any(|p| {
        p.values(recordings)
            .iter()
            .any(|v| super::regions::is_number(v))
    });
    (!numbers).then(|| Field {
        dir: piece.dir,
        range: base.clone(),
        encoding: Encoding::Decimal,
        region: region.len(),
        shape: Shape::Decimal,
        differs: true,
    })
}

/// Per piece, whether it is a value that ends where one of `fields`
/// counts to (and starts after that field): its end is known live.
pub fn counted(pieces: &[Piece], fields: &[Field]) -> Vec<bool> {
    pieces
        .iter()
        .map(|piece| {
            let base = piece.base();
            !base.is_empty()
                && !matches!(piece.kind, PieceKind::Echo { .. })
                && fields.iter().any(|f| {
                    f.dir == piece.dir
                        && f.range.end <= base.start
                        && f.range.end + f.region == base.end
                })
        })
        .collect()
}

/// Cuts each field's bytes out of the vary pieces they are part of: what
/// is left of a piece before and after the field stays a piece. Returns
/// the fields that could be cut out (a field inside a capture or an echo,
/// or one whose place in another recording is unclear, is dropped).
pub fn cut_out(
    recordings: &[Recording],
    pieces: &mut Vec<Piece>,
    fields: Vec<Field>,
) -> Vec<Field> {
    let mut kept = Vec::new();
    for field in fields {
        let hit: Vec<usize> = (0..pieces.len())
            .filter(|&i| pieces[i].dir == field.dir && overlaps(&pieces[i].base(), &field.range))
            .collect();
        let cuttable = hit.iter().all(|&i| {
            matches!(pieces[i].kind, PieceKind::Vary)
                && (pieces[i].base() == field.range || split(&pieces[i], &field).is_some())
        });
        if !cuttable {
            continue;
        }
        let mut removed = Vec::new();
        for &i in &hit {
            if pieces[i].base() == field.range {
                // The whole value is the field.
                removed.push(i);
                continue;
            }
            let (before, after) = split(&pieces[i], &field).expect("checked");
            // What is left may not vary after all: the field's bytes were
            // what differed, and the bytes beside it only joined them.
            let varies = |piece: &Piece| piece.distinct(recordings) > 1;
            let (before, after) = (before.filter(varies), after.filter(varies));
            match (before, after) {
                (Some(before), after) => {
                    pieces[i] = before;
                    pieces.extend(after);
                }
                (None, Some(after)) => pieces[i] = after,
                (None, None) => removed.push(i),
            }
        }
        remove(pieces, &removed);
        kept.push(field);
    }
    kept
}

/// `piece` without the field's bytes: what is before them and after them
/// (in each recording, the field is as far from the piece's start as in
/// the first, and as wide). None when a recording's piece is too short
/// for that.
fn split(piece: &Piece, field: &Field) -> Option<(Option<Piece>, Option<Piece>)> {
    let base = piece.base();
    let head = field.range.start.saturating_sub(base.start);
    let skip = field.range.end - base.start;
    let tail = skip < base.len();
    let mut before = Vec::new();
    let mut after = Vec::new();
    for range in &piece.ranges {
        // The same shape in every recording: the field inside it, and
        // bytes after the field exactly where the first has some.
        if head > range.len() || (range.start + skip < range.end) != tail {
            return None;
        }
        before.push(range.start..range.start + head);
        after.push((range.start + skip).min(range.end)..range.end);
    }
    let piece_of = |ranges: Vec<Range<usize>>| {
        (!ranges[0].is_empty()).then_some(Piece {
            dir: piece.dir,
            ranges,
            kind: PieceKind::Vary,
        })
    };
    Some((piece_of(before), piece_of(after)))
}

/// Removes the pieces at `indices`, keeping echoes pointing at their
/// captures (only vary pieces are removed).
fn remove(pieces: &mut Vec<Piece>, indices: &[usize]) {
    if indices.is_empty() {
        return;
    }
    let new_index: Vec<usize> = (0..pieces.len())
        .scan(0, |next, i| {
            let at = *next;
            if !indices.contains(&i) {
                *next += 1;
            }
            Some(at)
        })
        .collect();
    let mut i = 0;
    pieces.retain(|_| {
        i += 1;
        !indices.contains(&(i - 1))
    });
    for piece in pieces.iter_mut() {
        if let PieceKind::Echo { capture } = &mut piece.kind {
            *capture = new_index[*capture];
        }
    }
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
        let piece = Piece {
            dir: Direction::ClientToServer,
            ranges: vec![17..22, 18..29],
            kind: PieceKind::Vary,
        };
        let field = decimal_prefix(&recordings, &piece).unwrap();
        assert_eq!((field.range, field.region), (14..15, 7));
        // Digits that do not say the value's length are no length.
        let piece = Piece {
            ranges: vec![17..21, 18..28],
            ..piece
        };
        assert_eq!(decimal_prefix(&recordings, &piece), None);
    }

    #[test]
    fn binary_streams_are_told_from_text() {
        assert!(looks_binary(b"Q\0\0\0\x0dselect 1\0"));
        assert!(!looks_binary(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!looks_binary(b""));
    }
}
