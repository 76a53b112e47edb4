//! `tcptape learn`: from two or more recordings of one scenario, the text
//! tape of the first with what differs between them marked as spans
//! (docs/learn.md).
//!
//! - `recording`: a tape read whole, a byte stream per direction;
//! - `align`: a bounded byte diff of two streams;
//! - `regions`: where the first recording differs from any other, widened
//!   to whole values, and each recording's bytes there;
//! - `captures`: values one side sends and the other sends back later,
//!   which become captures and echoes; the rest of what differs is vary;
//! - `lengths`: length fields of binary protocols that count those values;
//! - `emit`: the first recording's frames with the span frames added.
//!
//! The tape is then printed as text, each span with a comment saying why
//! it is there.

mod align;
mod captures;
mod emit;
mod lengths;
mod recording;
mod regions;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use log::{info, warn};

use crate::cassette;
use crate::error::Error;
use crate::output::{self, refuse_input_as_output};
use crate::tape::span::{self, MAX_SPAN};
use crate::tape::text::{self, HEADER};
use crate::tape::{Direction, Encoding, Length, Reader, Span, SpanKind};
use captures::{Piece, PieceKind};
use emit::Planned;
use lengths::{Field, Shape};
use recording::Recording;
use regions::{Region, Streams};

/// Recordings that agree on fewer of their bytes than this (in percent),
/// and differ in more than `UNLIKE_BYTES`, are not of one scenario.
const ALIKE_PERCENT: usize = 50;
const UNLIKE_BYTES: usize = 64;
/// The client's first bytes compared when cassette tapes are paired.
const FIRST_REQUEST: usize = 64 * 1024;

/// A learned tape.
#[derive(Debug)]
pub struct Learned {
    pub text: String,
    pub spans: usize,
    pub captures: usize,
    pub lengths: usize,
}

/// Learns from `recordings` (the first is the one written): the text tape,
/// or why the recordings cannot be learned from.
pub fn learn(recordings: &[Recording]) -> Result<Learned, String> {
    let dirs = [Direction::ClientToServer, Direction::ServerToClient];
    let blocks = dirs.map(|dir| {
        let base = recordings[0].stream(dir);
        recordings[1..]
            .iter()
            .map(|other| align::align(base, other.stream(dir)))
            .collect::<Vec<_>>()
    });
    for (i, other) in recordings.iter().enumerate().skip(1) {
        let per_dir = [&blocks[0][i - 1][..], &blocks[1][i - 1][..]];
        alike(&recordings[0], other, per_dir)?;
    }
    let regions: [Vec<Region>; 2] = dirs.map(|dir| {
        regions::regions(&Streams {
            bytes: recordings.iter().map(|r| r.stream(dir)).collect(),
            blocks: blocks[dir.index()].clone(),
            turns: lengths::turns(&recordings[0], dir)
                .into_iter()
                .map(|turn| turn.start)
                .collect(),
        })
    });
    let mut pieces = captures::pieces(recordings, &regions);
    let fields = lengths::fields(recordings, &pieces);
    let uncut = pieces.clone();
    let fields = lengths::cut_out(recordings, &mut pieces, fields);
    // A value that ends where a length's counted bytes end may take any
    // length: the length says where it ends.
    let counted = lengths::counted(&pieces, &fields);
    let mut plan = self::plan(recordings, &pieces, &counted);
    add_lengths(&mut plan, &fields);
    let (plan, written, pieces) = write_checked(recordings, pieces, uncut, plan);
    let names: Vec<&str> = recordings.iter().map(|r| r.name.as_str()).collect();
    let text = annotate(recordings, &names, &pieces, &plan, &written)?;
    Ok(Learned {
        text,
        spans: plan.spans.len(),
        captures: pieces
            .iter()
            .filter(|p| matches!(p.kind, PieceKind::Capture(_)))
            .count(),
        lengths: plan
            .of
            .iter()
            .filter(|o| matches!(o, Origin::Length { .. }))
            .count(),
    })
}

/// The tape `plan` writes over `pieces`, checked; where its lengths break
/// a span rule after all, the tape of the pieces as they were before the
/// lengths were cut out of them (`uncut`), with a warning. A safety net:
/// `add_lengths` keeps to the rules it can see, but a tape that replay
/// refuses is never written. Returns the pieces the tape is of.
fn write_checked(
    recordings: &[Recording],
    pieces: Vec<Piece>,
    uncut: Vec<Piece>,
    plan: Plan,
) -> (Plan, emit::Written, Vec<Piece>) {
    let written = emit::write(&recordings[0], &plan.spans);
    let Err(err) = span::check_tape(&mut Reader::new(written.bytes.as_slice())) else {
        return (plan, written, pieces);
    };
    warn!(
        "{}: the length fields found break a span rule ({err}): they are left out",
        recordings[0].name
    );
    let plan = self::plan(recordings, &uncut, &vec![false; uncut.len()]);
    let written = emit::write(&recordings[0], &plan.spans);
    (plan, written, uncut)
}

/// Refuses recordings that do not look like runs of one scenario, saying
/// where they part.
fn alike(base: &Recording, other: &Recording, blocks: [&[align::Block]; 2]) -> Result<(), String> {
    let total: usize = base
        .streams
        .iter()
        .chain(&other.streams)
        .map(Vec::len)
        .sum();
    let matched: usize = blocks.iter().map(|b| align::matched(b)).sum();
    let unlike = total - 2 * matched;
    if matched * 200 >= total * ALIKE_PERCENT || unlike <= UNLIKE_BYTES {
        return Ok(());
    }
    // Where they part: the first byte, in the base's tape order, that is
    // not aligned.
    let part = [Direction::ClientToServer, Direction::ServerToClient]
        .into_iter()
        .filter_map(|dir| {
            let blocks = blocks[dir.index()];
            let (a, b) = match blocks.first() {
                Some(first) if first.a == 0 && first.b == 0 => (first.len, first.len),
                _ => (0, 0),
            };
            let differs = a < base.stream(dir).len() || b < other.stream(dir).len();
            differs.then(|| (base.frame_of(dir, a), dir, a, other.frame_of(dir, b)))
        })
        .min_by_key(|&(frame, dir, _, _)| (frame, dir.index()));
    let percent = matched * 200 / total.max(1);
    let mut message = format!(
        "{} and {} do not look like recordings of one scenario: {percent}% of their bytes agree",
        base.name, other.name
    );
    if let Some((frame, dir, at, other_frame)) = part {
        message.push_str(&format!(
            "; they part at byte {at} of the {}'s bytes (frame {frame} of {}, frame {other_frame} of {})",
            who(dir),
            base.name,
            other.name
        ));
    }
    Err(message)
}

fn who(dir: Direction) -> &'static str {
    match dir {
        Direction::ClientToServer => "client",
        Direction::ServerToClient => "server",
    }
}

/// The spans to write, and for each where it comes from.
struct Plan {
    spans: Vec<Planned>,
    of: Vec<Origin>,
}

/// What a planned span stands for.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Piece `piece`, or part `part` of `parts` of it.
    Piece {
        piece: usize,
        part: usize,
        parts: usize,
    },
    /// A length field that counts values that vary.
    Length { shape: Shape, differs: bool },
}

/// Adds a length span for each field that counts a value whose live
/// length may differ from the recorded one (a variable span, an echo), or
/// whose own bytes differ between recordings; a field that another span
/// crosses into or out of is left out. The spans end up in order.
fn add_lengths(plan: &mut Plan, fields: &[Field]) {
    let mut added = Vec::new();
    for field in fields {
        let region = field.range.end..field.range.end + field.region;
        let mut inside = plan.spans.iter().filter(|p| {
            p.dir == field.dir && p.range.start < region.end && region.start <= p.range.start
        });
        let counts_a_change = inside
            .clone()
            .any(|p| !p.span.is_fixed() || matches!(p.span.kind, SpanKind::Echo(_)));
        let crossed = plan.spans.iter().any(|p| {
            p.dir == field.dir
                && (lengths::overlaps(&p.range, &field.range)
                    || (p.range.start < region.end && region.end < p.range.end))
        }) || inside.any(|p| p.range.end > region.end);
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
    let mut all: Vec<(Planned, Origin)> = plan.spans.drain(..).zip(plan.of.drain(..)).collect();
    all.extend(added);
    all.sort_by_key(|(p, _)| (p.dir.index(), p.range.start));
    (plan.spans, plan.of) = all.into_iter().unzip();
}

/// The span of each piece; a fixed value longer than a span covers is
/// cut into several spans, a variable one stays as recorded (with a
/// warning: replay compares those bytes).
fn plan(recordings: &[Recording], pieces: &[Piece], counted: &[bool]) -> Plan {
    let mut plan = Plan {
        spans: Vec::new(),
        of: Vec::new(),
    };
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
        let fixed = piece.is_fixed() && !may_grow(recordings, pieces, i) && !counted[i];
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
            regions::bounds(piece.ranges.iter().map(|r| r.len()))
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
    plan
}

/// True for a number (digits, maybe in parts: `0.25`, `11:49:01`) in every
/// recording, with recorded bytes after it to end it: equal lengths in the
/// recordings say nothing about the next run, where a counter or an uptime
/// gains a digit, so it becomes a variable span (which needs those bytes
/// after it).
fn may_grow(recordings: &[Recording], pieces: &[Piece], i: usize) -> bool {
    let piece = &pieces[i];
    let range = piece.base();
    let number = piece
        .values(recordings)
        .iter()
        .all(|value| regions::is_number(value));
    let ended = range.end < recordings[0].stream(piece.dir).len()
        && !pieces
            .iter()
            .any(|other| other.dir == piece.dir && other.base().start == range.end);
    number && ended
}

/// The learned tape as text: the header, a comment naming the recordings,
/// and each span with a comment saying why it is there.
fn annotate(
    recordings: &[Recording],
    names: &[&str],
    pieces: &[Piece],
    plan: &Plan,
    written: &emit::Written,
) -> Result<String, String> {
    let intro = intro(names);
    let print = |notes: &dyn Fn(u64) -> Option<String>| {
        let mut out = Vec::new();
        text::print_annotated(&mut Reader::new(written.bytes.as_slice()), &mut out, notes)
            .map_err(|err| format!("internal error: the learned tape does not print: {err}"))?;
        let printed = String::from_utf8(out).expect("print writes UTF-8");
        let body = printed
            .strip_prefix(&format!("{HEADER}\n"))
            .expect("print starts with the header");
        Ok::<_, String>(format!("{HEADER}\n{intro}{body}"))
    };
    // Comments end lines, so the lines are the same with them or without.
    let plain = print(&|_| None)?;
    let built = text::build(&plain)
        .map_err(|err| format!("internal error: the learned tape does not build: {err}"))?;
    let line = |span: usize| {
        let (_, offset) = written.frames[span];
        built.lines.line_at(offset).unwrap_or(0)
    };
    // The first span of each piece, where its comment goes.
    let mut first_span: HashMap<usize, usize> = HashMap::new();
    let of_pieces = || {
        plan.of
            .iter()
            .enumerate()
            .filter_map(|(span, origin)| match *origin {
                Origin::Piece { piece, part, parts } => Some((span, piece, part, parts)),
                Origin::Length { .. } => None,
            })
    };
    for (span, piece, _, _) in of_pieces() {
        first_span.entry(piece).or_insert(span);
    }
    let mut echoes: HashMap<usize, Vec<u32>> = HashMap::new();
    for (span, piece, _, _) in of_pieces() {
        if let PieceKind::Echo { capture } = pieces[piece].kind {
            echoes.entry(capture).or_default().push(line(span));
        }
    }
    let mut notes: HashMap<u64, String> = HashMap::new();
    for (span, origin) in plan.of.iter().enumerate() {
        let (piece, part, parts) = match *origin {
            Origin::Piece { piece, part, parts } => (piece, part, parts),
            Origin::Length { shape, differs } => {
                let mut note = match shape {
                    Shape::Framing => "the message's length",
                    Shape::Prefix => "the length of the value after it",
                    Shape::Tail => "the length of the rest of the message",
                    Shape::DecimalPrefix => "the length of the value after the line end",
                    Shape::Decimal => "the length of the rest of the turn",
                }
                .to_string();
                note.push_str(if differs {
                    ", different in the recordings"
                } else {
                    ", which counts values that may change length"
                });
                notes.insert(written.frames[span].0, note);
                continue;
            }
        };
        let piece_ref = &pieces[piece];
        let mut varies = varies(recordings, piece_ref);
        if piece_ref.is_fixed() && !plan.spans[span].span.is_fixed() {
            let numbers = piece_ref
                .values(recordings)
                .iter()
                .all(|v| regions::is_number(v));
            varies.push_str(if numbers {
                ", a number that may gain digits"
            } else {
                ", any length: a length says where it ends"
            });
        }
        let note = match &piece_ref.kind {
            PieceKind::Vary if parts > 1 => format!("{varies} (part {part} of {parts})"),
            PieceKind::Vary => varies,
            PieceKind::Capture(name) => {
                let echoed = echoes.get(&piece).map(Vec::as_slice).unwrap_or_default();
                format!(
                    "capture {name}: {varies}; echoed by the {} at {}",
                    who(piece_ref.dir.reverse()),
                    lines(echoed)
                )
            }
            PieceKind::Echo { capture } => {
                let name = match &pieces[*capture].kind {
                    PieceKind::Capture(name) => name,
                    _ => unreachable!("an echo's piece is a capture"),
                };
                let at = first_span.get(capture).map_or(0, |&span| line(span));
                format!(
                    "echo {name}: the value the {} sent at line {at}",
                    who(pieces[*capture].dir)
                )
            }
        };
        notes.insert(written.frames[span].0, note);
    }
    let annotated = print(&|frame| notes.get(&frame).cloned())?;
    let check = text::build(&annotated).map(|built| built.bytes);
    if check.as_ref() != Ok(&written.bytes) {
        return Err("internal error: the learned text does not build back to its tape".into());
    }
    Ok(annotated)
}

/// The comment after the header: where the tape comes from.
fn intro(names: &[&str]) -> String {
    let mut intro = format!(
        "# learned by tcptape learn from {} recordings: the first, with the bytes\n\
         # that differ between them as spans\n",
        names.len()
    );
    for name in names {
        let name = name.replace(|c: char| c.is_control(), "?");
        intro.push_str(&format!("#   {name}\n"));
    }
    intro
}

/// `varies in 3 of 3 recordings, 29 bytes` (or `29..31 bytes`, the lengths
/// seen).
fn varies(recordings: &[Recording], piece: &Piece) -> String {
    let lengths = piece.ranges.iter().map(|r| r.len());
    let (shortest, longest) =
        lengths.fold((usize::MAX, 0), |(lo, hi), len| (lo.min(len), hi.max(len)));
    let size = if shortest == longest {
        format!("{longest} bytes")
    } else {
        format!("{shortest}..{longest} bytes")
    };
    format!(
        "varies in {} of {} recordings, {size}",
        piece.distinct(recordings),
        recordings.len()
    )
}

/// `line 40`, `lines 40 and 52`, `lines 40, 52, 60 and 2 more`.
fn lines(lines: &[u32]) -> String {
    match lines {
        [] => "no line".to_string(),
        [one] => format!("line {one}"),
        [first, second] => format!("lines {first} and {second}"),
        [a, b, c] => format!("lines {a}, {b} and {c}"),
        [a, b, c, rest @ ..] => format!("lines {a}, {b}, {c} and {} more", rest.len()),
    }
}

/// `tcptape learn`.
#[derive(Debug, Clone, PartialEq)]
/// What `learn` is asked to do.
pub(crate) struct Options {
    /// Two or more tapes, or two or more cassettes; the first is written.
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
}

pub(crate) fn run(args: &Options) -> Result<(), Error> {
    let cassettes: Vec<bool> = args
        .inputs
        .iter()
        .map(|p| cassette::is_cassette(p))
        .collect();
    if let (Some(dir), Some(tape)) = (
        cassettes.iter().position(|&c| c),
        cassettes.iter().position(|&c| !c),
    ) {
        return Err(Error::Learn {
            reason: format!(
                "learn takes recordings of one kind, tapes or cassettes: {} is a cassette, {} a tape",
                args.inputs[dir].display(),
                args.inputs[tape].display()
            ),
        });
    }
    for input in &args.inputs {
        refuse_input_as_output(input, &args.output)
            .map_err(|reason| Error::refused(&args.output, reason))?;
    }
    if cassettes[0] {
        run_cassettes(&args.inputs, &args.output)
    } else {
        run_tapes(&args.inputs, &args.output)
    }
}

fn run_tapes(inputs: &[PathBuf], out: &Path) -> Result<(), Error> {
    if cassette::is_cassette(out) {
        return Err(Error::Learn {
            reason: format!(
                "{}: learning from tapes writes one text tape: name a file, not a folder",
                out.display()
            ),
        });
    }
    let recordings = inputs
        .iter()
        .map(|path| Recording::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    let learned = learn(&recordings).map_err(|reason| Error::Learn { reason })?;
    output::write_atomically(out, |file| file.write_all(learned.text.as_bytes()))
        .map_err(|err| Error::file(out, "write", err))?;
    info!(
        "learned {} spans ({} captures, {} lengths) from {} recordings into {}",
        learned.spans,
        learned.captures,
        learned.lengths,
        inputs.len(),
        out.display()
    );
    Ok(())
}

fn run_cassettes(inputs: &[PathBuf], out: &Path) -> Result<(), Error> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Learn {
            reason: format!(
                "{}: learning from cassettes writes a cassette: name a folder, not a file",
                out.display()
            ),
        });
    }
    let new = cassette::check_recordable(out)?;
    let mut cassettes = Vec::new();
    for input in inputs {
        let tapes = cassette::tapes(input)?;
        if tapes.is_empty() {
            return Err(Error::Learn {
                reason: format!("{}: the cassette has no tapes", input.display()),
            });
        }
        let recordings = tapes
            .iter()
            .map(|path| Recording::read(path))
            .collect::<Result<Vec<_>, _>>()?;
        cassettes.push((tapes, recordings));
    }
    let count = cassettes[0].0.len();
    if let Some((i, (tapes, _))) = cassettes
        .iter()
        .enumerate()
        .find(|(_, (tapes, _))| tapes.len() != count)
    {
        return Err(Error::Learn {
            reason: format!(
                "the cassettes hold different numbers of tapes: {} {count}, {} {}",
                inputs[0].display(),
                inputs[i].display(),
                tapes.len()
            ),
        });
    }
    let names: Vec<String> = cassettes[0]
        .0
        .iter()
        .map(|path| {
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let recordings: Vec<Vec<Recording>> = cassettes.into_iter().map(|(_, r)| r).collect();
    let groups = pair(&recordings, inputs)?;
    // Everything is learned before anything is written.
    let mut learned = Vec::new();
    let mut taken: Vec<Vec<Option<Recording>>> = recordings
        .into_iter()
        .map(|list| list.into_iter().map(Some).collect())
        .collect();
    for group in &groups {
        let set: Vec<Recording> = group
            .iter()
            .enumerate()
            .map(|(c, &t)| taken[c][t].take().expect("each tape in one group"))
            .collect();
        learned.push(learn(&set).map_err(|reason| Error::Learn { reason })?);
    }
    let written = write_cassette(out, &names, &learned, &inputs[0]);
    if written.is_err() && new {
        let _ = std::fs::remove_dir_all(out);
    }
    written?;
    let spans: usize = learned.iter().map(|l| l.spans).sum();
    info!(
        "learned {spans} spans in {} tapes from {} cassettes into {}",
        learned.len(),
        inputs.len(),
        out.display()
    );
    Ok(())
}

/// Pairs each tape of the first cassette with one of each other: tapes
/// where the server speaks first in order, as replay serves them; the
/// others by their first request (the longest common beginning), as
/// replay picks them, ties in order. `groups[i][c]` is the tape of
/// cassette `c` learned with the first cassette's tape `i`.
fn pair(cassettes: &[Vec<Recording>], inputs: &[PathBuf]) -> Result<Vec<Vec<usize>>, Error> {
    let first = &cassettes[0];
    let mut groups: Vec<Vec<usize>> = (0..first.len()).map(|i| vec![i]).collect();
    for (c, other) in cassettes.iter().enumerate().skip(1) {
        let servers = |tapes: &[Recording]| {
            (0..tapes.len())
                .filter(|&i| tapes[i].server_first())
                .collect::<Vec<_>>()
        };
        let (ours, theirs) = (servers(first), servers(other));
        if ours.len() != theirs.len() {
            return Err(Error::Learn {
                reason: format!(
                    "the cassettes were not recorded the same way: the server speaks first in {} tapes of {} and {} of {}",
                    ours.len(),
                    inputs[0].display(),
                    theirs.len(),
                    inputs[c].display()
                ),
            });
        }
        for (&i, &j) in ours.iter().zip(&theirs) {
            groups[i].push(j);
        }
        let mut free: Vec<usize> = (0..other.len())
            .filter(|&j| !other[j].server_first())
            .collect();
        for (i, tape) in first.iter().enumerate() {
            if tape.server_first() {
                continue;
            }
            let request = tape.first_request(FIRST_REQUEST);
            let agree = |j: usize| {
                let theirs = other[j].first_request(FIRST_REQUEST);
                request
                    .iter()
                    .zip(theirs)
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            // The first of the best: `max_by_key` keeps the last.
            let best = free
                .iter()
                .enumerate()
                .rev()
                .max_by_key(|&(_, &j)| agree(j))
                .map(|(at, _)| at)
                .expect("as many client-first tapes");
            groups[i].push(free.remove(best));
        }
    }
    Ok(groups)
}

/// Writes the learned tapes into `out` under the first cassette's names,
/// and its index, replacing what an earlier learn or recording put there.
fn write_cassette(
    out: &Path,
    names: &[String],
    learned: &[Learned],
    first: &Path,
) -> Result<(), Error> {
    std::fs::create_dir_all(out).map_err(|err| Error::file(out, "create cassette", err))?;
    cassette::clear(out)?;
    for (name, tape) in names.iter().zip(learned) {
        let path = out.join(name);
        output::write_atomically(&path, |file| file.write_all(tape.text.as_bytes()))
            .map_err(|err| Error::file(&path, "write", err))?;
    }
    let index = first.join(cassette::INDEX);
    match std::fs::read(&index) {
        Ok(bytes) => {
            let to = out.join(cassette::INDEX);
            output::write_atomically(&to, |file| file.write_all(&bytes))
                .map_err(|err| Error::file(&to, "write", err))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::file(&index, "read cassette index", err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Writer;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn recording(name: &str, steps: &[(Direction, &[u8])]) -> Recording {
        let mut bytes = Vec::new();
        let mut w = Writer::new(&mut bytes).unwrap();
        for (dir, data) in steps {
            w.data(*dir, data).unwrap();
        }
        w.eof(C2S).unwrap();
        w.eof(S2C).unwrap();
        Recording::from_bytes(name, &bytes).unwrap()
    }

    #[test]
    fn lengths_that_break_a_span_rule_are_left_out() {
        let run = |name, id: &[u8]| recording(name, &[(C2S, &[b"\x05id=", id].concat())]);
        let recordings = [run("a.tape", b"ab"), run("b.tape", b"xy")];
        let pieces = vec![Piece {
            dir: C2S,
            ranges: vec![4..6, 4..6],
            kind: PieceKind::Vary,
        }];
        let mut plan = plan(&recordings, &pieces, &[false]);
        // A length over the first byte that counts 9 bytes where 5
        // follow: its counted bytes run past the EOF.
        let length = Length {
            encoding: Encoding::Int {
                width: 1,
                big_endian: true,
            },
            region: 9,
        };
        plan.spans.insert(
            0,
            Planned {
                dir: C2S,
                range: 0..1,
                span: Span::fixed(SpanKind::Length(length), 1),
            },
        );
        plan.of.insert(
            0,
            Origin::Length {
                shape: Shape::Prefix,
                differs: false,
            },
        );
        let (plan, written, _) = write_checked(&recordings, pieces.clone(), pieces, plan);
        assert_eq!(plan.spans.len(), 1, "the vary span stays");
        assert!(matches!(plan.spans[0].span.kind, SpanKind::Vary));
        span::check_tape(&mut Reader::new(written.bytes.as_slice())).unwrap();
    }

    #[test]
    fn a_learned_tape_with_its_comments() {
        let run = |name, date: &[u8], token: &[u8]| {
            let hello = [b"OK token=", token, b"\r\nDate: ", date, b"\r\n"].concat();
            let again = [b"USE ", token, b"\r\n"].concat();
            recording(name, &[(C2S, b"HELLO\r\n"), (S2C, &hello), (C2S, &again)])
        };
        let recordings = [
            run("a.tape", b"Wed 09:31", b"x81kQ0aa"),
            run("b.tape", b"Thu 17:02", b"b7Tq2zzz"),
        ];
        let learned = learn(&recordings).unwrap();
        assert_eq!(
            learned.text,
            "tcptape text 1\n\
             # learned by tcptape learn from 2 recordings: the first, with the bytes\n\
             # that differ between them as spans\n\
             #   a.tape\n\
             #   b.tape\n\
             > \"HELLO\\r\\n\"\n\
             < \"OK token=\"\n\
             < [capture token \"x81kQ0aa\"]   # capture token: varies in 2 of 2 recordings, 8 bytes; echoed by the client at line 14\n\
             < \"\\r\\n\"\n  \"Date: \"\n\
             < [vary \"Wed 09:31\"]   # varies in 2 of 2 recordings, 9 bytes\n\
             < \"\\r\\n\"\n\
             > \"USE \"\n\
             > [echo token \"x81kQ0aa\"]   # echo token: the value the server sent at line 8\n\
             > \"\\r\\n\"\n\
             eof >\n\
             eof <\n"
        );
        assert_eq!((learned.spans, learned.captures), (3, 1));
    }

    #[test]
    fn numbers_may_gain_a_digit_where_bytes_end_them() {
        let run = |name, uptime: &[u8], total: &[u8]| {
            let stats = [b"STAT uptime ", uptime, b"\r\nSTAT total ", total].concat();
            recording(name, &[(C2S, b"stats\r\n"), (S2C, &stats)])
        };
        let recordings = [run("a.tape", b"97", b"0.25"), run("b.tape", b"98", b"0.31")];
        let learned = learn(&recordings).unwrap();
        // Both two digits long, yet the uptime becomes a variable span: the
        // next run's may be 100. The total ends the stream, where nothing
        // would end a variable span: it stays fixed.
        assert!(
            learned.text.contains(
                "< [vary 1..20 \"97\"]   # varies in 2 of 2 recordings, 2 bytes, a number that may gain digits"
            ),
            "{}",
            learned.text
        );
        assert!(learned.text.contains("[vary \"0.25\"]"), "{}", learned.text);
    }

    #[test]
    fn recordings_that_are_not_alike_are_refused() {
        let a = recording(
            "a.tape",
            &[
                (C2S, b"GET /index.html HTTP/1.1\r\n\r\n"),
                (S2C, &[b'x'; 200]),
            ],
        );
        let b = recording(
            "b.tape",
            &[
                (C2S, b"GET /index.html HTTP/1.1\r\n\r\n"),
                (S2C, &[b'y'; 300]),
            ],
        );
        let err = learn(&[a, b]).unwrap_err();
        assert_eq!(
            err,
            "a.tape and b.tape do not look like recordings of one scenario: 10% of their bytes agree; they part at byte 0 of the server's bytes (frame 2 of a.tape, frame 2 of b.tape)"
        );
        // Small differences are differences, however large a part.
        let a = recording("a.tape", &[(C2S, b"1234")]);
        let b = recording("b.tape", &[(C2S, b"5678")]);
        assert!(learn(&[a, b]).is_ok());
    }

    #[test]
    fn values_longer_than_a_span_are_cut_or_left_as_recorded() {
        // A large answer, alike but for two long stretches: one of the same
        // length in both recordings, one not, far apart.
        let text = |from: usize, to: usize| -> Vec<u8> {
            (from..to)
                .flat_map(|i| format!("{i}\n").into_bytes())
                .collect()
        };
        let blob = |seed: u8, len: usize| -> Vec<u8> {
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 0x80)
                .collect()
        };
        let answer = |seed: u8, variable: usize| {
            let fixed = blob(seed, 70_000);
            let other = blob(seed ^ 0x55, variable);
            [
                text(0, 50_000),
                fixed,
                text(50_000, 51_000),
                other,
                text(51_000, 52_000),
            ]
            .concat()
        };
        let a = recording("a.tape", &[(C2S, b"GET\r\n"), (S2C, &answer(1, 70_000))]);
        let b = recording("b.tape", &[(C2S, b"GET\r\n"), (S2C, &answer(2, 70_010))]);
        let learned = learn(&[a, b]).unwrap();
        let spans: Vec<&str> = learned
            .text
            .lines()
            .filter(|l| l.starts_with("< [vary"))
            .collect();
        assert_eq!(spans.len(), 2, "the fixed stretch in two spans");
        assert!(spans[0].ends_with("# varies in 2 of 2 recordings, 70000 bytes (part 1 of 2)"));
        assert!(spans[1].ends_with("# varies in 2 of 2 recordings, 70000 bytes (part 2 of 2)"));
        assert_eq!(learned.spans, 2, "the variable stretch is left as recorded");
    }

    #[test]
    fn line_lists() {
        assert_eq!(lines(&[]), "no line");
        assert_eq!(lines(&[4]), "line 4");
        assert_eq!(lines(&[4, 9]), "lines 4 and 9");
        assert_eq!(lines(&[4, 9, 12]), "lines 4, 9 and 12");
        assert_eq!(lines(&[4, 9, 12, 15, 20]), "lines 4, 9, 12 and 2 more");
    }

    #[test]
    fn tapes_pair_by_order_or_by_first_request() {
        let client = |name: &str, request: &[u8]| recording(name, &[(C2S, request), (S2C, b"ok")]);
        let server = |name: &str| recording(name, &[(S2C, b"220 hi"), (C2S, b"QUIT")]);
        let first = vec![
            server("a1"),
            client("a2", b"GET /users?id=1"),
            client("a3", b"GET /items?id=1"),
            server("a4"),
        ];
        let second = vec![
            client("b1", b"GET /items?id=2"),
            server("b2"),
            server("b3"),
            client("b4", b"GET /users?id=2"),
        ];
        let inputs = [PathBuf::from("a/"), PathBuf::from("b/")];
        let groups = pair(&[first, second], &inputs).unwrap();
        assert_eq!(groups, [vec![0, 1], vec![1, 3], vec![2, 0], vec![3, 2]]);
        let err = pair(&[vec![server("a1")], vec![client("b1", b"x")]], &inputs).unwrap_err();
        assert!(
            err.to_string()
                .contains("the server speaks first in 1 tapes of a/ and 0 of b/"),
            "{err}"
        );
    }
}
