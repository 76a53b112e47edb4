//! What the old tape recorded, asked as a session goes: where a side's
//! first wildcard is (what a hand-over cannot play), whether bytes a
//! departed peer said are exactly what it recorded (an answer that needs
//! no quiet to count as whole), and whether it closed right after them.

use super::merge::{Item, Turn};
use crate::tape::{Direction, SpanKind};

/// Where the first wildcard (`any N`) of `dir` is in its stream of the
/// old tape's `turns`, if there is one: a wildcard has no bytes to send.
pub(super) fn first_wildcard(turns: &[Turn], dir: Direction) -> Option<u64> {
    let mut at = 0u64;
    for item in turns.iter().filter(|t| t.dir == dir).flat_map(|t| &t.items) {
        if let Item::Any(_) = item {
            return Some(at);
        }
        at += item.recorded() as u64;
    }
    None
}

/// Whether `heard` is exactly what `dir` sent from byte `from` of its
/// stream in the old tape's `turns`, plain bytes only (a span's or a
/// wildcard's bytes were free to differ: they count as not the same).
pub(super) fn is_recorded(turns: &[Turn], dir: Direction, from: u64, heard: &[u8]) -> bool {
    let to = from + heard.len() as u64;
    let mut at = 0u64;
    let mut matched = 0u64;
    for item in turns.iter().filter(|t| t.dir == dir).flat_map(|t| &t.items) {
        let len = item.recorded() as u64;
        let (start, end) = (at.max(from), (at + len).min(to));
        at += len;
        if start >= end {
            if at >= to {
                break;
            }
            continue;
        }
        let Item::Bytes(bytes) = item else {
            return false;
        };
        let ours = &bytes[(start - (at - len)) as usize..(end - (at - len)) as usize];
        if ours != &heard[(start - from) as usize..(end - from) as usize] {
            return false;
        }
        matched += end - start;
    }
    matched == heard.len() as u64
}

/// Whether the old tape has a secret span on either side.
pub(super) fn has_secret(turns: &[Turn]) -> bool {
    turns
        .iter()
        .flat_map(|t| &t.items)
        .any(|item| matches!(item, Item::Span(span, _) if matches!(span.kind, SpanKind::Secret(_))))
}

/// Whether `dir` closed its side right after byte `at` of its stream in
/// the old tape's `turns`: its EOF is then part of the answer, and an
/// answer whose bytes are all there is not whole before it.
pub(super) fn closes_at(turns: &[Turn], dir: Direction, at: u64) -> bool {
    let mut end = 0u64;
    for turn in turns.iter().filter(|t| t.dir == dir) {
        end += turn
            .items
            .iter()
            .map(|item| item.recorded() as u64)
            .sum::<u64>();
        if turn.eof {
            return end == at;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::update::merge;
    use crate::tape::{Span, Writer};

    #[test]
    fn a_side_closes_where_its_eof_follows_its_last_byte() {
        let c2s = Direction::ClientToServer;
        let mut tape = Writer::in_memory();
        tape.data(c2s, b"BYE\n").unwrap();
        tape.data(c2s.reverse(), b"BYE\n").unwrap();
        tape.eof(c2s.reverse()).unwrap();
        tape.eof(c2s).unwrap();
        let turns = merge::turns(&tape.into_inner()).unwrap();
        assert!(closes_at(&turns, c2s.reverse(), 4));
        assert!(!closes_at(&turns, c2s.reverse(), 3), "not before its end");
        assert!(closes_at(&turns, c2s, 4));
        let mut open = Writer::in_memory();
        open.data(c2s, b"PING\n").unwrap();
        let turns = merge::turns(&open.into_inner()).unwrap();
        assert!(!closes_at(&turns, c2s, 5), "no EOF recorded");
    }

    #[test]
    fn heard_bytes_are_recorded_only_where_the_tape_has_plain_bytes_that_agree() {
        let c2s = Direction::ClientToServer;
        let span = Span {
            kind: SpanKind::Vary,
            len: 2,
            min: 1,
            max: 4,
        };
        let mut tape = Writer::in_memory();
        tape.data(c2s, b"ab").unwrap();
        tape.data(c2s.reverse(), b"ZZ").unwrap();
        tape.span(c2s, &span).unwrap();
        tape.data(c2s, b"xycd").unwrap();
        tape.any(c2s, 3).unwrap();
        let turns = merge::turns(&tape.into_inner()).unwrap();
        assert!(is_recorded(&turns, c2s, 0, b"ab"));
        assert!(is_recorded(&turns, c2s, 1, b"b"));
        assert!(
            is_recorded(&turns, c2s.reverse(), 0, b"ZZ"),
            "the other side's stream"
        );
        assert!(
            is_recorded(&turns, c2s, 4, b"cd"),
            "offsets count the span's bytes"
        );
        assert!(!is_recorded(&turns, c2s, 0, b"ax"));
        assert!(
            !is_recorded(&turns, c2s, 0, b"abxy"),
            "a span's bytes may differ"
        );
        assert!(
            !is_recorded(&turns, c2s, 4, b"cdqqq"),
            "so may a wildcard's"
        );
        assert!(
            !is_recorded(&turns, c2s.reverse(), 0, b"ZZZ"),
            "past the stream's end"
        );
    }
}
