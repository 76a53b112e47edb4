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
mod interleaved;
mod lengths;
mod plan;
mod recording;
mod regions;
mod scratch;
mod turns;

use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use log::{info, warn};

use crate::cassette;
use crate::error::Error;
use crate::output::{self, refuse_input_as_output};
use annotate::Notes;
use captures::Facts;
use plan::Plan;
use recording::Recording;
use scratch::Scratch;
use turns::{Turn, TurnIndex};

/// A learned tape: where the binary tape is in the scratch file, and the
/// comments its text has.
#[derive(Debug)]
pub struct Learned {
    tape: Range<u64>,
    notes: Notes,
    pub spans: usize,
    pub captures: usize,
    pub lengths: usize,
}

impl Learned {
    /// Writes the tape (in `scratch`) as text.
    pub fn write(&self, scratch: &Scratch, out: &mut dyn Write) -> io::Result<()> {
        self.notes.print(&scratch.part(self.tape.clone()), out)
    }
}

/// Whether length fields are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lengths {
    Find,
    Leave,
}

/// Learns from `recordings` (the first is the one written): the tape, or
/// why the recordings cannot be learned from. `again` reads the
/// recordings once more, for the rare second try without length fields
/// (they are dropped as soon as their values are no longer needed: they
/// are most of the memory learning takes).
pub fn learn(
    recordings: Vec<Recording>,
    again: impl FnOnce() -> Result<Vec<Recording>, String>,
    scratch: &mut Scratch,
) -> Result<Learned, String> {
    let (base, mut plan, intro) = settled(planned(recordings, Lengths::Find)?, || {
        planned(again()?, Lengths::Leave)
    })?;
    let notes = annotate::describe(intro, &mut plan);
    let (frames, tape) = scratch.append(|out| emit::write(&base, &plan.spans, out))?;
    drop(base);
    let notes = notes.place(&frames, &scratch.part(tape.clone()))?;
    Ok(Learned {
        tape,
        spans: plan.spans.len(),
        captures: notes.captures(),
        lengths: notes.lengths(),
        notes,
    })
}

/// The spans planned over a recording, and whether they stand where
/// replay takes them.
enum Checked {
    /// They do: the recording written (the first), the plan, and the
    /// comment that names the recordings.
    Passed {
        base: Recording,
        plan: Plan,
        intro: String,
    },
    /// The rule they break, in the recording named.
    Broken { name: String, err: String },
}

/// `found` when its spans stand where replay takes them; else, with a
/// warning, `plain()`: the same without length fields. A safety net:
/// `plan::add_lengths` keeps to the rules it can see, but a tape that
/// replay refuses is never written.
fn settled(
    found: Checked,
    plain: impl FnOnce() -> Result<Checked, String>,
) -> Result<(Recording, Plan, String), String> {
    let (name, err) = match found {
        Checked::Passed { base, plan, intro } => return Ok((base, plan, intro)),
        Checked::Broken { name, err } => (name, err),
    };
    warn!("{name}: the length fields found break a span rule ({err}): they are left out");
    match plain()? {
        Checked::Passed { base, plan, intro } => Ok((base, plan, intro)),
        Checked::Broken { name, err } => Err(format!(
            "internal error: {name}: the learned spans break a span rule: {err}"
        )),
    }
}

/// The places where `recordings` differ, with captures, echoes and
/// (unless `Lengths::Leave`) length fields found, as the spans they make
/// over the first, checked; or why the recordings cannot be learned from.
fn planned(mut recordings: Vec<Recording>, lengths: Lengths) -> Result<Checked, String> {
    let turns: Vec<Vec<Turn>> = recordings.iter().map(turns::turns).collect();
    let paths: Vec<Result<(), String>> = (recordings.iter().zip(&turns).skip(1))
        .map(|(other, theirs)| turns::same_path(&recordings[0], &turns[0], other, theirs))
        .collect();
    // The others' frames were needed for their turns only.
    for other in &mut recordings[1..] {
        other.items = Vec::new();
    }
    let mut turns: Vec<TurnIndex> = turns.into_iter().map(TurnIndex::new).collect();
    let all: Vec<&[Turn]> = turns.iter().map(TurnIndex::all).collect();
    let regions = if paths.iter().all(Result::is_ok) {
        regions::by_turn(&recordings, &all)?
    } else {
        // Turns split another way: a pipelining client, or another path.
        let parted = |i: usize| match &paths[i - 1] {
            Err(parting) => parting.clone(),
            Ok(()) => format!(
                "{} and {} took different paths: one side sent bytes across a turn that the other did not",
                recordings[0].name, recordings[i].name
            ),
        };
        interleaved::places(&recordings, &all, &parted)?
    };
    let mut pieces = captures::pieces(&recordings, &turns, &regions);
    drop(regions);
    let fields = match lengths {
        Lengths::Find => lengths::fields(&recordings, &turns, &pieces),
        Lengths::Leave => Vec::new(),
    };
    let fields = cut::cut_out(&recordings, &mut pieces, fields);
    let facts: Vec<Facts> = pieces.iter().map(|p| p.facts(&recordings)).collect();
    let intro = annotate::intro(&recordings);
    let count = recordings.len() as u32;
    // The others' bytes are not needed any more: the tape is the first's.
    recordings.truncate(1);
    turns.truncate(1);
    let base = recordings.pop().expect("two recordings or more");
    // What was freed (many small values) would stay resident meanwhile.
    crate::sys::release_free_memory();
    // A value that ends where a length's counted bytes end may take any
    // length: the length says where it ends.
    let counted = plan::counted(&pieces, &fields);
    let mut plan = plan::plan((&base, count), &turns[0], pieces, &facts, &counted);
    plan::add_lengths(&mut plan, &fields);
    Ok(match emit::check(&base, &plan.spans) {
        Ok(()) => Checked::Passed { base, plan, intro },
        Err(err) => Checked::Broken {
            name: base.name,
            err: err.to_string(),
        },
    })
}

/// A scratch file beside `out`, which is a file or a folder to write.
fn scratch(out: &Path) -> Result<Scratch, Error> {
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // The text goes there too: a folder that cannot hold a scratch file
    // cannot hold the text either.
    Scratch::new(dir).map_err(|err| Error::file(out, "write", err))
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
        cassettes::run_cassettes(&args.inputs, &args.output)
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
    let recordings = Recording::read_all(inputs)?;
    let again = || Recording::read_all(inputs).map_err(|err| err.to_string());
    let mut scratch = scratch(out)?;
    let learned =
        learn(recordings, again, &mut scratch).map_err(|reason| Error::Learn { reason })?;
    output::write_atomically(out, |file| learned.write(&scratch, file))
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
    use crate::tape::{Direction, Encoding, Length, Span, SpanKind};

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    /// Learns from recordings that are not read again: what was learned
    /// and its text.
    fn learned(recordings: Vec<Recording>) -> Result<(Learned, String), String> {
        let mut scratch = Scratch::new(&std::env::temp_dir()).unwrap();
        let learned = learn(recordings, || Err("read again".into()), &mut scratch)?;
        let mut text = Vec::new();
        learned.write(&scratch, &mut text).unwrap();
        Ok((learned, String::from_utf8(text).unwrap()))
    }

    #[test]
    fn lengths_that_break_a_span_rule_are_left_out() {
        let run = |name, id: &[u8]| Recording::of_steps(name, &[(C2S, &[b"\x05id=", id].concat())]);
        let base = || run("a.tape", b"ab");
        let turns = TurnIndex::new(turns::turns(&base()));
        let facts = Facts {
            distinct: 2,
            numbers: false,
        };
        let plain = || {
            let pieces = vec![captures::Piece {
                dir: C2S,
                ranges: vec![4..6, 4..6],
                kind: captures::PieceKind::Vary,
            }];
            plan::plan((&base(), 2), &turns, pieces, &[facts], &[false])
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
        found.spans.insert(
            0,
            emit::Planned {
                dir: C2S,
                range: 0..1,
                span: Span::fixed(SpanKind::Length(length), 1),
            },
        );
        let shape = lengths::Shape::Prefix;
        let note = annotate::Note::Length {
            shape,
            differs: false,
        };
        found.notes.insert(0, note);
        let err = emit::check(&base(), &found.spans).unwrap_err().to_string();
        assert!(
            err.contains("the length counts 4 bytes more than there are"),
            "{err}"
        );
        let broken = || Checked::Broken {
            name: "a.tape".into(),
            err: err.clone(),
        };
        let passed = || Checked::Passed {
            base: base(),
            plan: plain(),
            intro: String::new(),
        };
        let (_, plan, _) = settled(broken(), || Ok(passed())).unwrap();
        assert_eq!(plan.spans.len(), 1, "the vary span stays");
        assert!(matches!(plan.spans[0].span.kind, SpanKind::Vary));
        // Should the second try break a rule too, nothing is written.
        let Err(err) = settled(broken(), || Ok(broken())) else {
            panic!("a tape that breaks a rule")
        };
        assert!(err.starts_with("internal error: a.tape: "), "{err}");
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
        let (learned, text) = learned(recordings.into()).unwrap();
        assert_eq!(
            text,
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
        let (_, text) = learned(recordings.into()).unwrap();
        // Both two digits long, yet the uptime becomes a variable span: the
        // next run's may be 100. The total ends the stream, where nothing
        // would end a variable span: it stays fixed.
        assert!(
            text.contains(
                "< [vary 1..20 \"97\"]   # varies in 2 of 2 recordings, 2 bytes, a number that may gain digits"
            ),
            "{}",
            text
        );
        assert!(text.contains("[vary \"0.25\"]"), "{}", text);
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
        let err = learned(vec![a, b]).unwrap_err();
        assert_eq!(
            err,
            "a.tape and b.tape do not look like recordings of one scenario: they part at turn 2, the server's (frame 2 of a.tape, frame 2 of b.tape), at byte 0 of the turn: \"x1,x1,x1,x1,x1,x1,x1,x1,\"... in a.tape, \"y2;y2;y2;y2;y2;y2;y2;y2;\"... in b.tape"
        );
        // One value, however long, is a value: the words around it agree.
        let a = Recording::of_steps("a.tape", &[(C2S, b"GET "), (S2C, &[b'x'; 200])]);
        let b = Recording::of_steps("b.tape", &[(C2S, b"GET "), (S2C, &[b'y'; 300])]);
        assert!(learned(vec![a, b]).is_ok());
        // Small differences are differences, however large a part.
        let a = Recording::of_steps("a.tape", &[(C2S, b"1234")]);
        let b = Recording::of_steps("b.tape", &[(C2S, b"5678")]);
        assert!(learned(vec![a, b]).is_ok());
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
        let (learned, text) = learned(vec![a, b]).unwrap();
        let spans: Vec<&str> = text.lines().filter(|l| l.starts_with("< [vary")).collect();
        assert_eq!(spans.len(), 2, "the fixed stretch in two spans");
        assert!(spans[0].ends_with("# varies in 2 of 2 recordings, 70000 bytes (part 1 of 2)"));
        assert!(spans[1].ends_with("# varies in 2 of 2 recordings, 70000 bytes (part 2 of 2)"));
        assert_eq!(learned.spans, 2, "the variable stretch is left as recorded");
    }
}
