//! The spans of the learned tape: one for each piece (several for a fixed
//! value longer than a span covers), and one for each length field that
//! counts a value that may change length.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use log::warn;

use super::captures::{Piece, PieceKind};
use super::emit::Planned;
use super::lengths::{self, Field, Shape};
use super::recording::Recording;
use super::regions;
use super::turns::{TurnIndex, who};
use crate::tape::span::MAX_SPAN;
use crate::tape::{Direction, Encoding, Length, Span, SpanKind};

/// The spans to write, in order of their direction and start, and for
/// each where it comes from.
pub struct Plan {
    pub spans: Vec<Planned>,
    pub of: Vec<Origin>,
}

/// What a planned span stands for.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// Piece `piece`, or part `part` of `parts` of it.
    Piece {
        piece: usize,
        part: usize,
        parts: usize,
    },
    /// A length field that counts values that vary.
    Length { shape: Shape, differs: bool },
}

/// The span of each piece; a fixed value longer than a span covers is
/// cut into several spans, a variable one stays as recorded (with a
/// warning: replay compares those bytes). `counted[i]`: piece `i` ends
/// where a length says, so it may take any length.
pub fn plan(
    recordings: &[Recording],
    turns: &TurnIndex,
    pieces: &[Piece],
    counted: &[bool],
) -> Plan {
    let mut plan = Plan {
        spans: Vec::new(),
        of: Vec::new(),
    };
    let starts: HashSet<(Direction, usize)> =
        pieces.iter().map(|p| (p.dir, p.base().start)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let range = piece.base();
        let len = range.len() as u32;
        let kind = match &piece.kind {
            PieceKind::Vary => SpanKind::Vary,
            PieceKind::Capture(name) => SpanKind::Capture(name.clone()),
            PieceKind::Echo { capture } => match &pieces[*capture].kind {
                PieceKind::Capture(name) => SpanKind::Echo(name.clone()),
                _ => unreachable!("an echo's piece is a capture"),
            },
        };
        let mut add = |range, span: Span, part, parts| {
            plan.spans.push(Planned {
                dir: piece.dir,
                range,
                span,
            });
            plan.of.push(Origin::Piece {
                piece: i,
                part,
                parts,
            });
        };
        let grows = may_grow(recordings, turns, &starts, piece);
        let fixed = piece.is_fixed() && !grows && !counted[i];
        if matches!(kind, SpanKind::Echo(_)) || fixed && len <= MAX_SPAN {
            add(range, Span::fixed(kind, len), 1, 1);
            continue;
        }
        if fixed {
            let parts = range.len().div_ceil(MAX_SPAN as usize);
            for (part, start) in range.clone().step_by(MAX_SPAN as usize).enumerate() {
                let end = (start + MAX_SPAN as usize).min(range.end);
                let span = Span::fixed(kind.clone(), (end - start) as u32);
                add(start..end, span, part + 1, parts);
            }
            continue;
        }
        let longest = piece.ranges.iter().map(|r| r.len()).max().unwrap_or(0);
        if longest > MAX_SPAN as usize {
            warn!(
                "{}: the {}'s bytes {}..{} differ, by up to {longest} bytes, more than a span covers ({MAX_SPAN}): they stay as recorded, and replay compares them",
                recordings[0].name,
                who(piece.dir),
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
            let numbers = piece
                .values(recordings)
                .iter()
                .all(|v| regions::is_number(v));
            (if numbers { min.min(1) } else { min }, max)
        };
        add(
            range,
            Span {
                kind,
                len,
                min,
                max,
            },
            1,
            1,
        );
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
    recordings: &[Recording],
    turns: &TurnIndex,
    starts: &HashSet<(Direction, usize)>,
    piece: &Piece,
) -> bool {
    let range = piece.base();
    let number = piece
        .values(recordings)
        .iter()
        .all(|value| regions::is_number(value));
    let in_turn = turns
        .turn_of(piece.dir, range.start)
        .is_some_and(|turn| range.end < turn.range.end);
    number && in_turn && !starts.contains(&(piece.dir, range.end))
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
            Origin::Length {
                shape: field.shape,
                differs: field.differs,
            },
        ));
    }
    for (planned, origin) in added {
        plan.spans.push(planned);
        plan.of.push(origin);
    }
    sort(plan);
}

fn sort(plan: &mut Plan) {
    let mut all: Vec<(Planned, Origin)> = plan.spans.drain(..).zip(plan.of.drain(..)).collect();
    all.sort_by_key(|(p, _)| (p.dir.index(), p.range.start));
    (plan.spans, plan.of) = all.into_iter().unzip();
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
