//! Turns: a recording as its sides took turns, each turn one side's bytes
//! between two of the other side's. Recordings of one scenario take the
//! same turns in the same order, whatever their values; learn pairs them
//! turn by turn and aligns bytes only inside a pair, so a long session
//! costs what its turns cost, a value never reaches into the next turn,
//! and recordings that took different paths are named where they part.

use std::ops::Range;

use super::align::{self, Block};
use super::recording::{Item, Recording};
use crate::tape::Direction;

/// One side's bytes between two of the other side's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub dir: Direction,
    /// Its bytes in the direction's stream.
    pub range: Range<usize>,
}

/// The turns of a recording, in order. Frames without bytes (delays, EOFs,
/// empty data) do not end a turn.
pub fn turns(recording: &Recording) -> Vec<Turn> {
    let mut turns: Vec<Turn> = Vec::new();
    for item in &recording.items {
        let Item::Data { dir, start, len } = *item else {
            continue;
        };
        if len == 0 {
            continue;
        }
        match turns.last_mut() {
            Some(turn) if turn.dir == dir => turn.range.end = start + len,
            _ => turns.push(Turn {
                dir,
                range: start..start + len,
            }),
        }
    }
    turns
}

/// A recording's turns, and which one a byte of a direction is in.
pub struct TurnIndex {
    turns: Vec<Turn>,
    /// Per direction, the indices of its turns in `turns`.
    of_dir: [Vec<usize>; 2],
}

impl TurnIndex {
    pub fn new(turns: Vec<Turn>) -> TurnIndex {
        let mut of_dir = [Vec::new(), Vec::new()];
        for (i, turn) in turns.iter().enumerate() {
            of_dir[turn.dir.index()].push(i);
        }
        TurnIndex { turns, of_dir }
    }

    pub fn all(&self) -> &[Turn] {
        &self.turns
    }

    /// The number (index among all turns) of the turn of `dir` that byte
    /// `at` of its stream is in; a place between two bytes at a turn's
    /// end is in the next turn of the direction, if any.
    pub fn number_of(&self, dir: Direction, at: usize) -> Option<usize> {
        let of_dir = &self.of_dir[dir.index()];
        let i = of_dir.partition_point(|&t| self.turns[t].range.start <= at);
        let t = of_dir[i.checked_sub(1)?];
        (at <= self.turns[t].range.end).then_some(t)
    }

    /// The turn that byte `at` of `dir` is in (`number_of`).
    pub fn turn_of(&self, dir: Direction, at: usize) -> Option<&Turn> {
        self.number_of(dir, at).map(|t| &self.turns[t])
    }
}

/// Recordings that agree on fewer of their bytes and tokens than this (in
/// percent), and differ in more than `UNLIKE`, are not of one scenario.
const ALIKE_PERCENT: usize = 50;
const UNLIKE: usize = 64;
/// Turns skipped or added before the search for where two recordings part
/// gives up and names the first turn that differs.
const MAX_TURN_EDITS: usize = 64;
/// Bytes shown of where recordings part.
const EXCERPT: usize = 24;

/// Refuses recordings that did not take the same turns (the same sides,
/// in the same order, as many), saying where they part.
pub fn same_path(
    base: &Recording,
    ours: &[Turn],
    other: &Recording,
    theirs: &[Turn],
) -> Result<(), String> {
    let same = ours.len() == theirs.len() && ours.iter().zip(theirs).all(|(a, b)| a.dir == b.dir);
    if same {
        return Ok(());
    }
    let pair = Pair::new(base, ours, other, theirs);
    Err(format!(
        "{} and {} took different paths: {}",
        base.name,
        other.name,
        pair.parting()
    ))
}

/// How alike two recordings that took the same turns look, told turn by
/// turn (each turn's bytes aligned, then forgotten): they do not look
/// like runs of one scenario when fewer than half of their bytes agree
/// and more than `UNLIKE` differ, and the same of their tokens. Tokens
/// too: a value is one token however long, so a short session of long
/// values is still one scenario when its words and separators agree.
#[derive(Debug, Default)]
pub struct Judge {
    all: Likeness,
    first_unlike: Option<usize>,
    first_strictly_unlike: Option<usize>,
}

impl Judge {
    /// Turn `k`: `ours` and `theirs`, aligned by `blocks` (offsets in them).
    pub fn turn(&mut self, k: usize, ours: &[u8], theirs: &[u8], blocks: &[Block]) {
        let likeness = Likeness::of(ours, theirs, blocks);
        if self.first_unlike.is_none() && !likeness.alike() {
            self.first_unlike = Some(k);
        }
        if self.first_strictly_unlike.is_none() && !likeness.strictly_alike() {
            self.first_strictly_unlike = Some(k);
        }
        self.all.add(&likeness);
    }

    /// Refuses the recordings when they do not look alike, saying where
    /// they part: the first turn that does not look alike.
    pub fn verdict(
        &self,
        base: &Recording,
        ours: &[Turn],
        other: &Recording,
        theirs: &[Turn],
    ) -> Result<(), String> {
        if self.all.alike() {
            return Ok(());
        }
        // Many small turns, each unlike by a few bytes: the first of them.
        let k = self
            .first_unlike
            .or(self.first_strictly_unlike)
            .unwrap_or(0);
        let pair = Pair::new(base, ours, other, theirs);
        Err(format!(
            "{} and {} do not look like recordings of one scenario: {}",
            base.name,
            other.name,
            pair.differ_at(k, k)
        ))
    }
}

/// How much of two recordings (or turns) agrees, in bytes and in tokens:
/// (agreeing, in both together).
#[derive(Debug, Default)]
pub struct Likeness {
    bytes: (usize, usize),
    tokens: (usize, usize),
}

impl Likeness {
    /// Of `a` and `b`, whose alignment is `blocks` (offsets in them).
    pub fn of(a: &[u8], b: &[u8], blocks: &[Block]) -> Likeness {
        let agree: usize = blocks
            .iter()
            .map(|block| align::tokens_in(a, block.a..block.a + block.len))
            .sum();
        let matched: usize = blocks.iter().map(|block| block.len).sum();
        let tokens = align::tokens_in(a, 0..a.len()) + align::tokens_in(b, 0..b.len());
        Likeness {
            bytes: (matched, a.len() + b.len()),
            tokens: (agree, tokens),
        }
    }

    pub fn add(&mut self, other: &Likeness) {
        self.bytes.0 += other.bytes.0;
        self.bytes.1 += other.bytes.1;
        self.tokens.0 += other.tokens.0;
        self.tokens.1 += other.tokens.1;
    }

    /// At least half agree, or at most `UNLIKE` differ, in bytes or in
    /// tokens.
    pub fn alike(&self) -> bool {
        let alike = |(agree, total): (usize, usize)| {
            agree * 200 >= total * ALIKE_PERCENT || total - 2 * agree <= UNLIKE
        };
        alike(self.bytes) || alike(self.tokens)
    }

    /// At least a quarter agree, in bytes or in tokens.
    fn strictly_alike(&self) -> bool {
        let alike = |(agree, total): (usize, usize)| 4 * agree >= total;
        alike(self.bytes) || alike(self.tokens)
    }
}

/// A recording's turns.
#[derive(Clone, Copy)]
struct Side<'a> {
    recording: &'a Recording,
    turns: &'a [Turn],
}

impl Side<'_> {
    fn name(&self) -> &str {
        &self.recording.name
    }

    fn bytes(&self, k: usize) -> &[u8] {
        let turn = &self.turns[k];
        &self.recording.stream(turn.dir)[turn.range.clone()]
    }

    /// The frame turn `k` starts in.
    fn frame(&self, k: usize) -> u64 {
        let turn = &self.turns[k];
        self.recording.frame_of(turn.dir, turn.range.start)
    }

    /// `client's "GET /a ..."`
    fn said(&self, k: usize) -> String {
        format!(
            "{}'s {}",
            self.turns[k].dir.sender(),
            excerpt(self.bytes(k))
        )
    }

    /// What it does at turn `k`: goes on, or ends.
    fn next(&self, k: usize) -> String {
        match k < self.turns.len() {
            true => format!(
                "goes on with the {} (frame {})",
                self.said(k),
                self.frame(k)
            ),
            false => "ends there".to_string(),
        }
    }
}

/// Two recordings' turns, to say where they part.
struct Pair<'a> {
    ours: Side<'a>,
    theirs: Side<'a>,
}

impl<'a> Pair<'a> {
    fn new(
        base: &'a Recording,
        ours: &'a [Turn],
        other: &'a Recording,
        theirs: &'a [Turn],
    ) -> Pair<'a> {
        Pair {
            ours: Side {
                recording: base,
                turns: ours,
            },
            theirs: Side {
                recording: other,
                turns: theirs,
            },
        }
    }
    /// True when turn `x` of ours and `y` of theirs are one exchange: the
    /// same side, and at least half of their bytes or of their tokens
    /// agree.
    fn same_turn(&self, x: usize, y: usize) -> bool {
        if self.ours.turns[x].dir != self.theirs.turns[y].dir {
            return false;
        }
        let (a, b) = (self.ours.bytes(x), self.theirs.bytes(y));
        if a == b {
            return true;
        }
        let likeness = Likeness::of(a, b, &align::align(a, b));
        let half = |(agree, total): (usize, usize)| 4 * agree >= total;
        half(likeness.bytes) || half(likeness.tokens)
    }

    /// Where turns of the two recordings stop pairing up: the first run
    /// of turns that only one has, or that are of other sides; turns that
    /// differ only in their bytes pair up. From a shortest edit script of
    /// the turns, or the first turn that differs when there are too many
    /// edits for one.
    fn parting(&self) -> String {
        let (n, m) = (self.ours.turns.len(), self.theirs.turns.len());
        let Some(blocks) = align::diff(n, m, MAX_TURN_EDITS, |x, y| self.same_turn(x, y)) else {
            let k = (0..n.min(m))
                .find(|&k| !self.same_turn(k, k))
                .unwrap_or(n.min(m));
            return self.hunk(k, k, n - k, m - k);
        };
        let end = Block { a: n, b: m, len: 0 };
        let (mut x, mut y) = (0, 0);
        for block in blocks.iter().chain([&end]) {
            let (skipped, added) = (block.a - x, block.b - y);
            let replaced = skipped == added
                && (0..skipped).all(|i| self.ours.turns[x + i].dir == self.theirs.turns[y + i].dir);
            if (skipped > 0 || added > 0) && !replaced {
                return self.hunk(x, y, skipped, added);
            }
            (x, y) = (block.a + block.len, block.b + block.len);
        }
        unreachable!("recordings of other turns have a run of turns that does not pair")
    }

    /// Says that from turn `x` of ours and `y` of theirs, `skipped` turns
    /// of ours and `added` of theirs do not pair up.
    fn hunk(&self, x: usize, y: usize, skipped: usize, added: usize) -> String {
        let (a, b) = (self.ours.name(), self.theirs.name());
        let turns = |n: usize| if n == 1 { "turn" } else { "turns" };
        let at = format!("at turn {}", x + 1);
        match (skipped, added) {
            (0, added) => format!(
                "{at} {b} has {added} {} that {a} has not, from the {} (frame {} of {b}); {a} {}",
                turns(added),
                self.theirs.said(y),
                self.theirs.frame(y),
                self.ours.next(x)
            ),
            (skipped, 0) => format!(
                "{at} {a} has {skipped} {} that {b} has not, from the {} (frame {} of {a}); {b} {}",
                turns(skipped),
                self.ours.said(x),
                self.ours.frame(x),
                self.theirs.next(y)
            ),
            _ if self.ours.turns[x].dir == self.theirs.turns[y].dir => self.differ_at(x, y),
            _ => format!(
                "{at} {a} has the {} (frame {}) where {b} has the {} (frame {})",
                self.ours.said(x),
                self.ours.frame(x),
                self.theirs.said(y),
                self.theirs.frame(y)
            ),
        }
    }

    /// Turn `x` of ours and `y` of theirs, of one side, from the first byte
    /// where they differ.
    fn differ_at(&self, x: usize, y: usize) -> String {
        let (a, b) = (self.ours.bytes(x), self.theirs.bytes(y));
        let at = a.iter().zip(b).take_while(|(p, q)| p == q).count();
        format!(
            "they part at turn {}, the {}'s (frame {} of {}, frame {} of {}), at byte {at} of the turn: {} in {}, {} in {}",
            x + 1,
            self.ours.turns[x].dir.sender(),
            self.ours.frame(x),
            self.ours.name(),
            self.theirs.frame(y),
            self.theirs.name(),
            excerpt(&a[at..]),
            self.ours.name(),
            excerpt(&b[at..]),
            self.theirs.name()
        )
    }
}

/// The first bytes of `bytes`, quoted and escaped: `"GET /a\r\n..."`.
fn excerpt(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(EXCERPT)];
    let more = if bytes.len() > EXCERPT { "..." } else { "" };
    format!("\"{}\"{more}", shown.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    #[test]
    fn turns_are_runs_of_one_side() {
        let r = Recording::of_steps(
            "a",
            &[
                (C2S, b"GET "),
                (C2S, b"/\r\n"),
                (S2C, b"200"),
                (C2S, b"QUIT"),
            ],
        );
        let turns = turns(&r);
        let turn = |dir, range| Turn { dir, range };
        assert_eq!(turns, [turn(C2S, 0..7), turn(S2C, 0..3), turn(C2S, 7..11)]);
    }

    fn path(a: &Recording, b: &Recording) -> Result<(), String> {
        same_path(a, &turns(a), b, &turns(b))
    }

    #[test]
    fn recordings_with_a_turn_more_part_where_it_is() {
        let set = |k: &str| format!("set {k} 0 0 5\r\nhello\r\n").into_bytes();
        let get = |k: &str| format!("get {k}\r\n").into_bytes();
        let value = b"VALUE k1 0 5\r\nhello\r\nEND\r\n";
        let a = Recording::of_steps(
            "a.tape",
            &[
                (C2S, &set("k1")),
                (S2C, b"STORED\r\n"),
                (C2S, &get("k1")),
                (S2C, value),
                (C2S, b"quit\r\n"),
            ],
        );
        let b = Recording::of_steps(
            "b.tape",
            &[
                (C2S, &set("k1")),
                (S2C, b"STORED\r\n"),
                (C2S, &set("k2")),
                (S2C, b"STORED\r\n"),
                (C2S, &get("k1")),
                (S2C, value),
                (C2S, b"quit\r\n"),
            ],
        );
        assert_eq!(
            path(&a, &b).unwrap_err(),
            "a.tape and b.tape took different paths: at turn 3 b.tape has 2 turns that a.tape has not, from the client's \"set k2 0 0 5\\r\\nhello\\r\\n\" (frame 3 of b.tape); a.tape goes on with the client's \"get k1\\r\\n\" (frame 3)"
        );
        assert_eq!(
            path(&b, &a).unwrap_err(),
            "b.tape and a.tape took different paths: at turn 3 b.tape has 2 turns that a.tape has not, from the client's \"set k2 0 0 5\\r\\nhello\\r\\n\" (frame 3 of b.tape); a.tape goes on with the client's \"get k1\\r\\n\" (frame 3)"
        );
        assert!(path(&a, &a).is_ok());
    }

    #[test]
    fn recordings_whose_sides_differ_part_there() {
        let a = Recording::of_steps("a", &[(C2S, b"HELLO\r\n"), (S2C, b"OK\r\n")]);
        let b = Recording::of_steps("b", &[(S2C, b"220 ready\r\n"), (C2S, b"HELLO\r\n")]);
        let err = path(&a, &b).unwrap_err();
        assert!(
            err.ends_with("at turn 1 a has 1 turn that b has not, from the client's \"HELLO\\r\\n\" (frame 1 of a); b goes on with the server's \"220 ready\\r\\n\" (frame 1)"),
            "{err}"
        );
        let c = Recording::of_steps("c", &[(C2S, b"HELLO\r\n")]);
        let err = path(&a, &c).unwrap_err();
        assert!(
            err.ends_with("at turn 2 a has 1 turn that c has not, from the server's \"OK\\r\\n\" (frame 2 of a); c ends there"),
            "{err}"
        );
    }

    #[test]
    fn turns_that_differ_only_in_bytes_pair_up() {
        // A turn that is all value (a nonce) pairs with the other's.
        let a = Recording::of_steps("a", &[(C2S, &[1; 100]), (S2C, b"ok"), (C2S, b"bye")]);
        let b = Recording::of_steps("b", &[(C2S, &[2; 90]), (S2C, b"ok"), (C2S, b"bye")]);
        assert!(path(&a, &b).is_ok());
        let (ours, theirs) = (turns(&a), turns(&b));
        let mut judge = Judge::default();
        for k in 0..ours.len() {
            let x = &a.stream(ours[k].dir)[ours[k].range.clone()];
            let y = &b.stream(theirs[k].dir)[theirs[k].range.clone()];
            judge.turn(k, x, y, &align::align(x, y));
        }
        let err = judge.verdict(&a, &ours, &b, &theirs).unwrap_err();
        assert_eq!(
            err,
            "a and b do not look like recordings of one scenario: they part at turn 1, the client's (frame 1 of a, frame 1 of b), at byte 0 of the turn: \"\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\"... in a, \"\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\"... in b"
        );
    }
}
