//! `tcptape learn`: from two or more recordings of one scenario, the text
//! tape of the first with what differs between them marked as spans
//! (docs/learn.md).
//!
//! - `recording`: a tape read whole, a byte stream per direction;
//! - `turns`: the recordings' turns, which must be the same, paired and
//!   aligned turn by turn;
//! - `align`: a bounded byte diff (of two turns);
//! - `regions`: where the first recording differs from any other, widened
//!   to whole values inside their turn, and each recording's bytes there;
//! - `captures`: values one side sends and the other sends back later,
//!   which become captures and echoes; the rest of what differs is vary;
//! - `lengths`: length fields of binary protocols that count those values;
//! - `plan`: the spans, one a piece or length field;
//! - `emit`: the first recording's frames with the span frames added;
//! - `annotate`: the tape as text, each span with a comment saying why it
//!   is there;
//! - `cassettes`: learning folders of tapes, tape by tape.

mod align;
mod annotate;
mod captures;
mod cassettes;
mod cut;
mod emit;
mod lengths;
mod plan;
mod recording;
mod regions;
mod turns;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::{info, warn};

use crate::cassette;
use crate::cli::LearnArgs;
use crate::error::Error;
use crate::output::{self, refuse_input_as_output};
use crate::tape::Direction;
use annotate::Notes;
use captures::{Piece, PieceKind};
use plan::{Origin, Plan};
use recording::Recording;
use regions::Region;
use turns::{Turn, TurnIndex};

const DIRS: [Direction; 2] = [Direction::ClientToServer, Direction::ServerToClient];

/// A learned tape: the binary tape and the comments its text has.
#[derive(Debug)]
pub struct Learned {
    tape: Vec<u8>,
    notes: Notes,
    pub spans: usize,
    pub captures: usize,
    pub lengths: usize,
}

impl Learned {
    /// Writes the tape as text.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        self.notes.print(&self.tape, out)
    }

    #[cfg(test)]
    fn text(&self) -> String {
        let mut out = Vec::new();
        self.write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}

/// Whether length fields are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lengths {
    Find,
    Leave,
}

/// Learns from `recordings` (the first is the one written): the tape, or
/// why the recordings cannot be learned from.
pub fn learn(recordings: Vec<Recording>) -> Result<Learned, String> {
    let turns: Vec<Vec<Turn>> = recordings.iter().map(turns::turns).collect();
    let (base, ours) = (&recordings[0], &turns[0]);
    let mut alignments = Vec::new();
    for (other, theirs) in recordings.iter().zip(&turns).skip(1) {
        turns::same_path(base, ours, other, theirs)?;
        let alignment = turns::align(base, ours, other, theirs);
        turns::alike(base, ours, other, theirs, &alignment)?;
        alignments.push(alignment);
    }
    let regions = DIRS.map(|dir| regions::by_turn(&recordings, &turns, &alignments, dir));
    drop(alignments);
    let turns: Vec<TurnIndex> = turns.into_iter().map(TurnIndex::new).collect();
    let (pieces, plan) = checked(
        &recordings[0],
        spans(&recordings, &turns, &regions, Lengths::Find),
        || spans(&recordings, &turns, &regions, Lengths::Leave),
    )?;
    drop(regions);
    let notes = annotate::describe(&recordings, &pieces, &plan);
    let captures = pieces
        .iter()
        .filter(|p| matches!(p.kind, PieceKind::Capture(_)))
        .count();
    drop(pieces);
    // The others are not needed any more: the tape is the first's.
    let base = recordings
        .into_iter()
        .next()
        .expect("two recordings or more");
    let written = emit::write(&base, &plan.spans);
    drop(base);
    let notes = notes.place(&written)?;
    Ok(Learned {
        tape: written.bytes,
        notes,
        spans: plan.spans.len(),
        captures,
        lengths: plan
            .of
            .iter()
            .filter(|o| matches!(o, Origin::Length { .. }))
            .count(),
    })
}

/// `found`, the pieces and spans learned, when its spans stand where
/// replay takes them; else, with a warning, `plain()`: the same without
/// length fields. A safety net: `plan::add_lengths` keeps to the rules it
/// can see, but a tape that replay refuses is never written.
fn checked(
    base: &Recording,
    found: (Vec<Piece>, Plan),
    plain: impl FnOnce() -> (Vec<Piece>, Plan),
) -> Result<(Vec<Piece>, Plan), String> {
    let Err(err) = emit::check(base, &found.1.spans) else {
        return Ok(found);
    };
    warn!(
        "{}: the length fields found break a span rule ({err}): they are left out",
        base.name
    );
    let plain = plain();
    match emit::check(base, &plain.1.spans) {
        Ok(()) => Ok(plain),
        Err(err) => Err(format!(
            "internal error: {}: the learned spans break a span rule: {err}",
            base.name
        )),
    }
}

/// The pieces of the places that differ (`regions`, per direction), with
/// captures, echoes and (unless `Lengths::Leave`) length fields found, and
/// the spans they make.
fn spans(
    recordings: &[Recording],
    turns: &[TurnIndex],
    regions: &[Vec<Region>; 2],
    lengths: Lengths,
) -> (Vec<Piece>, Plan) {
    let mut pieces = captures::pieces(recordings, turns, regions);
    let fields = match lengths {
        Lengths::Find => lengths::fields(recordings, turns, &pieces),
        Lengths::Leave => Vec::new(),
    };
    let fields = cut::cut_out(recordings, &mut pieces, fields);
    // A value that ends where a length's counted bytes end may take any
    // length: the length says where it ends.
    let counted = plan::counted(&pieces, &fields);
    let mut plan = plan::plan(recordings, &turns[0], &pieces, &counted);
    plan::add_lengths(&mut plan, &fields);
    (pieces, plan)
}

/// `tcptape learn`.
pub(crate) fn run(args: &LearnArgs) -> Result<(), Error> {
    let cassettes: Vec<bool> = args
        .inputs
        .iter()
        .map(|p| cassette::is_cassette(p))
        .collect();
    if let (Some(dir), Some(tape)) = (
        cassettes.iter().position(|&c| c),
        cassettes.iter().position(|&c| !c),
    ) {
        return Err(Error::Session(format!(
            "learn takes recordings of one kind, tapes or cassettes: {} is a cassette, {} a tape",
            args.inputs[dir].display(),
            args.inputs[tape].display()
        )));
    }
    for input in &args.inputs {
        refuse_input_as_output(input, &args.output)?;
    }
    if cassettes[0] {
        cassettes::run_cassettes(&args.inputs, &args.output)
    } else {
        run_tapes(&args.inputs, &args.output)
    }
}

fn run_tapes(inputs: &[PathBuf], out: &Path) -> Result<(), Error> {
    if cassette::is_cassette(out) {
        return Err(Error::Session(format!(
            "{}: learning from tapes writes one text tape: name a file, not a folder",
            out.display()
        )));
    }
    let recordings = inputs
        .iter()
        .map(|path| Recording::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    let learned = learn(recordings).map_err(Error::Session)?;
    output::write_atomically(out, |file| learned.write(file))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::{Encoding, Length, Span, SpanKind};

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    #[test]
    fn lengths_that_break_a_span_rule_are_left_out() {
        let run = |name, id: &[u8]| Recording::of_steps(name, &[(C2S, &[b"\x05id=", id].concat())]);
        let recordings = [run("a.tape", b"ab"), run("b.tape", b"xy")];
        let turns: Vec<TurnIndex> = recordings
            .iter()
            .map(|r| TurnIndex::new(turns::turns(r)))
            .collect();
        let pieces = vec![Piece {
            dir: C2S,
            ranges: vec![4..6, 4..6],
            kind: PieceKind::Vary,
        }];
        let plain = || {
            let plan = plan::plan(&recordings, &turns[0], &pieces, &[false]);
            (pieces.clone(), plan)
        };
        let mut found = plain();
        // A length over the first byte that counts 9 bytes where 5
        // follow: its counted bytes run past the EOF.
        let length = Length {
            encoding: Encoding::Int {
                width: 1,
                big_endian: true,
            },
            region: 9,
        };
        found.1.spans.insert(
            0,
            emit::Planned {
                dir: C2S,
                range: 0..1,
                span: Span::fixed(SpanKind::Length(length), 1),
            },
        );
        found.1.of.insert(
            0,
            Origin::Length {
                shape: lengths::Shape::Prefix,
                differs: false,
            },
        );
        let (_, plan) = checked(&recordings[0], found, plain).unwrap();
        assert_eq!(plan.spans.len(), 1, "the vary span stays");
        assert!(matches!(plan.spans[0].span.kind, SpanKind::Vary));
        emit::check(&recordings[0], &plan.spans).unwrap();
    }

    #[test]
    fn a_learned_tape_with_its_comments() {
        let run = |name, date: &[u8], token: &[u8]| {
            let hello = [b"OK token=", token, b"\r\nDate: ", date, b"\r\n"].concat();
            let again = [b"USE ", token, b"\r\n"].concat();
            Recording::of_steps(name, &[(C2S, b"HELLO\r\n"), (S2C, &hello), (C2S, &again)])
        };
        let recordings = [
            run("a.tape", b"Wed 09:31", b"x81kQ0aa"),
            run("b.tape", b"Thu 17:02", b"b7Tq2zzz"),
        ];
        let learned = learn(recordings.into()).unwrap();
        assert_eq!(
            learned.text(),
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
            Recording::of_steps(name, &[(C2S, b"stats\r\n"), (S2C, &stats)])
        };
        let recordings = [run("a.tape", b"97", b"0.25"), run("b.tape", b"98", b"0.31")];
        let learned = learn(recordings.into()).unwrap();
        // Both two digits long, yet the uptime becomes a variable span: the
        // next run's may be 100. The total ends the stream, where nothing
        // would end a variable span: it stays fixed.
        assert!(
            learned.text().contains(
                "< [vary 1..20 \"97\"]   # varies in 2 of 2 recordings, 2 bytes, a number that may gain digits"
            ),
            "{}",
            learned.text()
        );
        assert!(
            learned.text().contains("[vary \"0.25\"]"),
            "{}",
            learned.text()
        );
    }

    #[test]
    fn recordings_that_are_not_alike_are_refused() {
        let page = |words: &[u8], n: usize| words.repeat(n);
        let a = Recording::of_steps(
            "a.tape",
            &[
                (C2S, b"GET /index.html HTTP/1.1\r\n\r\n"),
                (S2C, &page(b"x1,", 100)),
            ],
        );
        let b = Recording::of_steps(
            "b.tape",
            &[
                (C2S, b"GET /index.html HTTP/1.1\r\n\r\n"),
                (S2C, &page(b"y2;", 150)),
            ],
        );
        let err = learn(vec![a, b]).unwrap_err();
        assert_eq!(
            err,
            "a.tape and b.tape do not look like recordings of one scenario: they part at turn 2, the server's (frame 2 of a.tape, frame 2 of b.tape), at byte 0 of the turn: \"x1,x1,x1,x1,x1,x1,x1,x1,\"... in a.tape, \"y2;y2;y2;y2;y2;y2;y2;y2;\"... in b.tape"
        );
        // One value, however long, is a value: the words around it agree.
        let a = Recording::of_steps("a.tape", &[(C2S, b"GET "), (S2C, &[b'x'; 200])]);
        let b = Recording::of_steps("b.tape", &[(C2S, b"GET "), (S2C, &[b'y'; 300])]);
        assert!(learn(vec![a, b]).is_ok());
        // Small differences are differences, however large a part.
        let a = Recording::of_steps("a.tape", &[(C2S, b"1234")]);
        let b = Recording::of_steps("b.tape", &[(C2S, b"5678")]);
        assert!(learn(vec![a, b]).is_ok());
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
        let a = Recording::of_steps("a.tape", &[(C2S, b"GET\r\n"), (S2C, &answer(1, 70_000))]);
        let b = Recording::of_steps("b.tape", &[(C2S, b"GET\r\n"), (S2C, &answer(2, 70_010))]);
        let learned = learn(vec![a, b]).unwrap();
        let text = learned.text();
        let spans: Vec<&str> = text.lines().filter(|l| l.starts_with("< [vary")).collect();
        assert_eq!(spans.len(), 2, "the fixed stretch in two spans");
        assert!(spans[0].ends_with("# varies in 2 of 2 recordings, 70000 bytes (part 1 of 2)"));
        assert!(spans[1].ends_with("# varies in 2 of 2 recordings, 70000 bytes (part 2 of 2)"));
        assert_eq!(learned.spans, 2, "the variable stretch is left as recorded");
    }
}
