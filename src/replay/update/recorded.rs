//! What the old tape recorded, asked as a session goes: where a side's
//! first wildcard is (what a hand-over cannot play), and whether bytes a
//! departed peer said are exactly what it recorded (an answer that needs
//! no quiet to count as whole).

use super::merge::{Item, Turn};
use crate::tape::Direction;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::update::merge;
    use crate::tape::{Span, SpanKind, Writer};

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
