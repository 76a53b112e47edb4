//! Cutting length fields out of the values they were taken in with: a
//! binary value is widened over the bytes beside it (a number's high
//! bytes), which may be a length field's; the field becomes a span of its
//! own, and what is left of the value beside it stays a piece.

use std::collections::BTreeMap;
use std::ops::Range;

use super::captures::{Piece, PieceKind};
use super::lengths::{Field, overlaps};
use super::recording::Recording;

/// Cuts each field's bytes out of the vary pieces they are part of: what
/// is left of a piece before and after the field stays a piece. Returns
/// the fields that could be cut out (a field inside a capture or an echo,
/// or one whose place in another recording is unclear, is dropped).
pub fn cut_out(
    recordings: &[Recording],
    pieces: &mut Vec<Piece>,
    fields: Vec<Field>,
) -> Vec<Field> {
    if fields.is_empty() {
        return fields;
    }
    // The pieces by direction, start and end (a piece of no bytes may
    // start where another does). Pieces are changed in place, new ones
    // pushed, and those taken out only marked until the end, so that
    // indices hold meanwhile.
    let key = |p: &Piece| (p.dir.index(), p.base().start, p.base().end);
    let mut places: BTreeMap<(usize, usize, usize), usize> =
        (0..pieces.len()).map(|i| (key(&pieces[i]), i)).collect();
    let mut taken = vec![false; pieces.len()];
    let mut kept = Vec::new();
    for field in fields {
        let d = field.dir.index();
        let range = &field.range;
        // Pieces of a direction do not overlap: the last one that starts
        // before the field, and those that start in it.
        let before = places
            .range(..(d, range.start, 0))
            .next_back()
            .filter(|(k, _)| k.0 == d)
            .map(|(_, &i)| i);
        let inside = places
            .range((d, range.start, 0)..(d, range.end, 0))
            .map(|(_, &i)| i);
        let hit: Vec<usize> = before
            .into_iter()
            .chain(inside)
            .filter(|&i| overlaps(&pieces[i].base(), range))
            .collect();
        let cuttable = hit.iter().all(|&i| {
            let piece = &pieces[i];
            matches!(piece.kind, PieceKind::Vary)
                && (piece.base() == *range || split(piece, &field).is_some())
        });
        if !cuttable {
            continue;
        }
        for &i in &hit {
            places.remove(&key(&pieces[i]));
            if pieces[i].base() == *range {
                // The whole value is the field.
                taken[i] = true;
                continue;
            }
            let (before, after) = split(&pieces[i], &field).expect("checked");
            // What is left may not vary after all: the field's bytes were
            // what differed, and the bytes beside it only joined them.
            let varies = |piece: &Piece| piece.distinct(recordings) > 1;
            let (before, after) = (before.filter(varies), after.filter(varies));
            let (here, more) = match (before, after) {
                (Some(before), after) => (Some(before), after),
                (None, after) => (after, None),
            };
            match here {
                Some(piece) => {
                    places.insert(key(&piece), i);
                    pieces[i] = piece;
                }
                None => taken[i] = true,
            }
            if let Some(piece) = more {
                places.insert(key(&piece), pieces.len());
                pieces.push(piece);
                taken.push(false);
            }
        }
        kept.push(field);
    }
    remove_taken(pieces, &taken);
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

/// Removes the pieces `taken`, keeping echoes pointing at their captures
/// (only vary pieces are taken).
fn remove_taken(pieces: &mut Vec<Piece>, taken: &[bool]) {
    let new_index: Vec<usize> = taken
        .iter()
        .scan(0, |next, &taken| {
            let at = *next;
            *next += usize::from(!taken);
            Some(at)
        })
        .collect();
    let mut i = 0;
    pieces.retain(|_| {
        i += 1;
        !taken[i - 1]
    });
    for piece in pieces.iter_mut() {
        if let PieceKind::Echo { capture } = &mut piece.kind {
            *capture = new_index[*capture];
        }
    }
}
