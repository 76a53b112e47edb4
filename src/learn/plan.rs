//! The spans of the learned tape: one for each piece (several for a fixed
//! value longer than a span covers), and one for each length field that
//! counts a value that may change length.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use log::warn;

use super::annotate::{Note, What};
use super::captures::{Facts, Piece, PieceKind};
use super::emit::Planned;
use super::lengths::{self, Field};
use super::recording::Recording;
use super::regions;
use super::turns::TurnIndex;
use crate::tape::span::MAX_SPAN;
use crate::tape::{Direction, Encoding, Length, Span, SpanKind};

/// The spans to write, in order of their direction and start, and for
/// each what its comment says; the names captured.
pub struct Plan {
    pub spans: Vec<Planned>,
    pub notes: Vec<Note>,
    pub names: Vec<String>,
}

/// The span of each piece of `base` (learned from `recordings`
/// recordings; `facts[i]` is what their values at piece `i` are like).
/// The pieces are consumed: a plan is as large as they are, and both are
/// never held. A fixed value longer than a span covers is cut into
/// several spans, a variable one stays as recorded (with a warning:
/// replay compares those bytes). `counted[i]`: piece `i` ends where a
/// length says, so it may take any length.
pub fn plan(
    (base, recordings): (&Recording, u32),
    turns: &TurnIndex,
    pieces: Vec<Piece>,
    facts: &[Facts],
    counted: &[bool],
) -> Plan {
    let mut plan = Plan {
        spans: Vec::with_capacity(pieces.len()),
        notes: Vec::with_capacity(pieces.len()),
        names: Vec::new(),
    };
    let starts: HashSet<(Direction, usize)> =
        pieces.iter().map(|p| (p.dir, p.base().start)).collect();
    // A capture's piece comes before its echoes': the name it took.
    let mut name_of: HashMap<usize, usize> = HashMap::new();
    for (i, piece) in pieces.into_iter().enumerate() {
        let range = piece.base();
        let len = range.len() as u32;
        let (kind, what) = match &piece.kind {
            PieceKind::Vary => (SpanKind::Vary, What::Vary),
            PieceKind::Capture(name) => {
                plan.names.push(name.clone());
                name_of.insert(i, plan.names.len() - 1);
                let what = What::Capture {
                    name: plan.names.len() - 1,
                };
                (SpanKind::Capture(name.clone()), what)
            }
            PieceKind::Echo { capture } => {
                let name = name_of[capture];
                let kind = SpanKind::Echo(plan.names[name].clone());
                (kind, What::Echo { name })
            }
        };
        let mut add = |range, span: Span, part| {
            let note = Note::of_piece(&piece, (facts[i], recordings), &span, what, part);
            plan.spans.push(Planned {
                dir: piece.dir,
                range,
                span,
            });
            plan.notes.push(note);
        };
        let grows = may_grow(facts[i], turns, &starts, &piece);
        let fixed = piece.is_fixed() && !grows && !counted[i];
        if matches!(kind, SpanKind::Echo(_)) || fixed && len <= MAX_SPAN {
            add(range, Span::fixed(kind, len), (1, 1));
            continue;
        }
        if fixed {
            let parts = range.len().div_ceil(MAX_SPAN as usize) as u32;
            for (part, start) in range.clone().step_by(MAX_SPAN as usize).enumerate() {
                let end = (start + MAX_SPAN as usize).min(range.end);
                let span = Span::fixed(kind.clone(), (end - start) as u32);
                add(start..end, span, (part as u32 + 1, parts));
            }
            continue;
        }
        let longest = piece.ranges.iter().map(|r| r.len()).max().unwrap_or(0);
        if longest > MAX_SPAN as usize {
            warn!(
                "{}: the {}'s bytes {}..{} differ, by up to {longest} bytes, more than a span covers ({MAX_SPAN}): they stay as recorded, and replay compares them",
                base.name,
                piece.dir.sender(),
                range.start,
                range.end
            );
            continue;
        }
        let (min, max) = if counted[i] {
            (0, MAX_SPAN)
        } else {
            let (min, max) = regions::bounds(piece.ranges.iter().map(|r| r.len()));
            // A number may have fewer digits in another run, down to one
            // (an id drawn at random, a counter that starts again).
            (if facts[i].numbers { min.min(1) } else { min }, max)
        };
        let span = Span {
            kind,
            len,
            min,
            max,
        };
        add(range, span, (1, 1));
    }
    sort(&mut plan);
    plan
}

/// True for a number (digits, maybe in parts: `0.25`, `11:49:01`) in every
/// recording, with recorded bytes after it in its turn to end it: equal
/// lengths in the recordings say nothing about the next run, where a
/// counter or an uptime gains a digit, so it becomes a variable span
/// (which needs those bytes after it: the next turn's come only after the
/// other side's, too late to end it).
fn may_grow(
    facts: Facts,
    turns: &TurnIndex,
    starts: &HashSet<(Direction, usize)>,
    piece: &Piece,
) -> bool {
    let range = piece.base();
    let in_turn = turns
        .turn_of(piece.dir, range.start)
        .is_some_and(|turn| range.end < turn.range.end);
    facts.numbers && in_turn && !starts.contains(&(piece.dir, range.end))
}

/// Per piece, whether it is a value that ends where one of `fields`
/// counts to (and starts after that field): its end is known live.
pub fn counted(pieces: &[Piece], fields: &[Field]) -> Vec<bool> {
    // Where each counted region ends: the earliest field that ends there.
    let mut ends: HashMap<(Direction, usize), usize> = HashMap::new();
    for f in fields {
        let end = ends
            .entry((f.dir, f.range.end + f.region))
            .or_insert(f.range.end);
        *end = (*end).min(f.range.end);
    }
    pieces
        .iter()
        .map(|piece| {
            let base = piece.base();
            !base.is_empty()
                && !matches!(piece.kind, PieceKind::Echo { .. })
                && ends
                    .get(&(piece.dir, base.end))
                    .is_some_and(|&field_end| field_end <= base.start)
        })
        .collect()
}

/// Adds a length span for each field that counts a value whose live
/// length may differ from the recorded one (a variable span, an echo), or
/// whose own bytes differ between recordings; a field that another span
/// crosses into or out of is left out. The spans stay in order.
pub fn add_lengths(plan: &mut Plan, fields: &[Field]) {
    let mut added = Vec::new();
    for field in fields {
        let region = field.range.end..field.range.end + field.region;
        let spans = of_dir(&plan.spans, field.dir);
        let inside = &spans[starting_in(spans, &region)];
        let counts_a_change = inside
            .iter()
            .any(|p| !p.span.is_fixed() || matches!(p.span.kind, SpanKind::Echo(_)));
        let crossed = any_over(spans, &field.range) || across(spans, region.end);
        let Ok(region_len) = u32::try_from(field.region) else {
            continue;
        };
        if crossed || !(counts_a_change || field.differs) {
            continue;
        }
        let width = field.range.len() as u32;
        let kind = SpanKind::Length(Length {
            encoding: field.encoding,
            region: region_len,
        });
        let span = match field.encoding {
            // Any number of digits, ended by the bytes after them.
            Encoding::Decimal => Span {
                kind,
                len: width,
                min: 1,
                max: 20,
            },
            Encoding::Int { .. } => Span::fixed(kind, width),
        };
        added.push((
            Planned {
                dir: field.dir,
                range: field.range.clone(),
                span,
            },
            Note::Length {
                shape: field.shape,
                differs: field.differs,
            },
        ));
    }
    for (planned, note) in added {
        plan.spans.push(planned);
        plan.notes.push(note);
    }
    sort(plan);
}

/// The spans in order of direction and start, in place (a plan is as
/// large as its recordings have places).
fn sort(plan: &mut Plan) {
    let mut order: Vec<usize> = (0..plan.spans.len()).collect();
    order.sort_by_key(|&i| (plan.spans[i].dir.index(), plan.spans[i].range.start));
    // Span `order[i]` goes to `i`: each cycle of the permutation in turn,
    // its places marked done.
    const DONE: usize = usize::MAX;
    for i in 0..order.len() {
        let mut at = i;
        while order[at] != DONE {
            let from = order[at];
            order[at] = DONE;
            if from == i {
                break;
            }
            plan.spans.swap(at, from);
            plan.notes.swap(at, from);
            at = from;
        }
    }
}

/// The spans of `dir`, of spans in order.
fn of_dir(spans: &[Planned], dir: Direction) -> &[Planned] {
    let start = spans.partition_point(|p| p.dir.index() < dir.index());
    let end = spans.partition_point(|p| p.dir.index() <= dir.index());
    &spans[start..end]
}

/// The indices of the spans (of one direction, in order) that start in
/// `region`.
fn starting_in(spans: &[Planned], region: &Range<usize>) -> Range<usize> {
    let first = spans.partition_point(|p| p.range.start < region.start);
    let end = spans.partition_point(|p| p.range.start < region.end);
    first..end.max(first)
}

/// True when a span (of one direction, in order, none overlapping) has
/// bytes in `range`.
fn any_over(spans: &[Planned], range: &Range<usize>) -> bool {
    let first = spans.partition_point(|p| p.range.end <= range.start);
    spans
        .get(first)
        .is_some_and(|p| lengths::overlaps(&p.range, range))
}

/// True when a span (of one direction, in order) starts before `at` and
/// ends after it.
fn across(spans: &[Planned], at: usize) -> bool {
    let before = spans.partition_point(|p| p.range.start < at);
    before > 0 && spans[before - 1].range.end > at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_sort_by_direction_and_start_in_place() {
        let span = |dir, start: usize| Planned {
            dir,
            range: start..start + 1,
            span: Span::fixed(SpanKind::Vary, 1),
        };
        let (c2s, s2c) = (Direction::ClientToServer, Direction::ServerToClient);
        let starts = [(s2c, 4), (c2s, 5), (c2s, 1), (s2c, 0), (c2s, 3)];
        let mut plan = Plan {
            spans: starts.iter().map(|&(dir, at)| span(dir, at)).collect(),
            notes: (0..starts.len() as u32)
                .map(|region| Note::Length {
                    shape: super::lengths::Shape::Framing,
                    differs: region % 2 == 0,
                })
                .collect(),
            names: Vec::new(),
        };
        sort(&mut plan);
        let order: Vec<(usize, bool)> = plan
            .spans
            .iter()
            .zip(&plan.notes)
            .map(|(p, note)| match *note {
                Note::Length { differs, .. } => (p.range.start, differs),
                Note::Piece { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(
            order,
            [(1, true), (3, true), (5, false), (0, false), (4, true)]
        );
    }
}
