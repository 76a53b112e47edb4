//! From the places where recordings differ to the spans of the learned
//! tape: a value one side sends that the other side sends back later
//! becomes a capture and its echoes; the rest of what differs is vary.
//!
//! The places are taken in tape order. Each is one piece to begin with;
//! when a piece holds the value of an earlier piece of the other
//! direction, in every recording at the same offset, that value is cut
//! out of it as an echo (the earlier piece becomes its capture), and what
//! is left before and after it are pieces again, which later places may
//! echo in turn: a SCRAM server nonce, the client's nonce followed by the
//! server's own part, is an echo of the client's nonce and a capture of
//! the rest.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;

use super::lengths::counts_its_turn;
use super::recording::Recording;
use super::regions::{NUMBER_REACH, Region, is_binary, is_number};
use super::turns::TurnIndex;
use crate::tape::Direction;
use crate::tape::span::{MAX_NAME, MAX_SPAN, check_name};

/// The shortest value taken for a capture: shorter ones turn up by chance.
pub const MIN_CAPTURE: usize = 4;
/// The captures looked for in a place: the latest of the other direction.
const CANDIDATES: usize = 256;

/// A span of the learned tape: the bytes of each recording it stands for
/// (recording 0, the base, is the one written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub dir: Direction,
    pub ranges: Vec<Range<usize>>,
    pub kind: PieceKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceKind {
    Vary,
    Capture(String),
    /// The value of the capture that is piece `capture`.
    Echo {
        capture: usize,
    },
}

/// What the recordings' values at a piece are like, kept for when the
/// values themselves are gone (the other recordings are dropped before the
/// spans are planned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// How many different values the recordings have.
    pub distinct: u32,
    /// True when every value is a number (`regions::is_number`).
    pub numbers: bool,
}

impl Piece {
    pub fn facts(&self, recordings: &[Recording]) -> Facts {
        Facts {
            distinct: self.distinct(recordings) as u32,
            numbers: self.values(recordings).iter().all(|v| is_number(v)),
        }
    }

    pub fn base(&self) -> Range<usize> {
        self.ranges[0].clone()
    }

    /// True when every recording has as many bytes here.
    pub fn is_fixed(&self) -> bool {
        let base = self.ranges[0].len();
        self.ranges.iter().all(|range| range.len() == base)
    }

    /// Each recording's bytes here.
    pub fn values<'a>(&self, recordings: &'a [Recording]) -> Vec<&'a [u8]> {
        self.ranges
            .iter()
            .zip(recordings)
            .map(|(range, recording)| &recording.stream(self.dir)[range.clone()])
            .collect()
    }

    /// How many different values the recordings have here.
    pub fn distinct(&self, recordings: &[Recording]) -> usize {
        // Recordings are few: each value against those before it.
        let values = self.values(recordings);
        (0..values.len())
            .filter(|&i| !values[..i].contains(&values[i]))
            .count()
    }
}

/// The pieces of the places where the recordings differ (`regions`, per
/// direction), with captures and echoes found. Mostly in tape order: what
/// is left of a place when a capture is cut out of it comes at the end.
pub fn pieces(
    recordings: &[Recording],
    turns: &[TurnIndex],
    regions: &[Vec<Region>; 2],
) -> Vec<Piece> {
    let base = &recordings[0];
    let mut order: Vec<(u64, Direction, &Region)> = Vec::new();
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        for region in &regions[dir.index()] {
            order.push((base.frame_of(dir, region.base().start), dir, region));
        }
    }
    // Frames are one direction's each, so this is the order of the tape.
    order.sort_unstable_by_key(|&(frame, dir, region)| (frame, dir.index(), region.base().start));
    let mut finder = Finder {
        recordings,
        turns,
        pieces: Vec::new(),
        candidates: [VecDeque::new(), VecDeque::new()],
        names: HashSet::new(),
    };
    for (_, dir, region) in order {
        finder.place(dir, region);
    }
    finder.pieces
}

struct Finder<'a> {
    recordings: &'a [Recording],
    /// Each recording's turns.
    turns: &'a [TurnIndex],
    pieces: Vec<Piece>,
    /// Per direction, the latest `CANDIDATES` pieces whose values may be
    /// captured, in tape order.
    candidates: [VecDeque<Candidate>; 2],
    names: HashSet<String>,
}

/// A piece whose value may be captured, and the bytes of it that differ
/// between the recordings where they are not all of it.
struct Candidate {
    piece: usize,
    core: Option<Vec<Range<usize>>>,
}

/// An echo found in a piece.
struct Found {
    /// The piece that holds the captured value, and each recording's
    /// bytes of the value in it.
    capture: usize,
    value: Vec<Range<usize>>,
    /// Where the echo starts in the piece, in every recording.
    offset: usize,
}

/// Which of a candidate's bytes are tried as the value echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// All of them.
    Whole,
    /// Those that differ between the recordings (`core`).
    Core,
}

impl Finder<'_> {
    /// Cuts the echoes of earlier captures out of a place, and adds its
    /// pieces.
    fn place(&mut self, dir: Direction, region: &Region) {
        let mut list = vec![Piece {
            dir,
            ranges: region.ranges.clone(),
            kind: PieceKind::Vary,
        }];
        let mut i = 0;
        while i < list.len() {
            let last = i + 1 == list.len();
            let found = match list[i].kind {
                PieceKind::Vary => self.echo_in(&list[i], last),
                _ => None,
            };
            let Some(found) = found else {
                i += 1;
                continue;
            };
            self.cut_capture(found.capture, found.value);
            let parts = self.split(&list[i], found.capture, found.offset);
            list.splice(i..=i, parts);
            // The part before the echo (if any) is at `i` now: look in it
            // too.
        }
        for piece in list {
            if piece.kind == PieceKind::Vary && self.capturable(&piece) {
                let core = self.core(&piece).filter(|core| *core != piece.ranges);
                let candidates = &mut self.candidates[dir.index()];
                if candidates.len() == CANDIDATES {
                    candidates.pop_front();
                }
                candidates.push_back(Candidate {
                    piece: self.pieces.len(),
                    core,
                });
            }
            self.pieces.push(piece);
        }
    }

    /// A piece may be captured when its value is short enough for a span
    /// in every recording, and not the same in all.
    fn capturable(&self, piece: &Piece) -> bool {
        let sized = piece
            .ranges
            .iter()
            .all(|range| (1..=MAX_SPAN as usize).contains(&range.len()));
        sized && piece.distinct(self.recordings) > 1
    }

    /// The earlier capture whose value `piece` holds, in every recording
    /// at the same offset; the longest such value. `last`: the piece ends
    /// its place, so what follows the echo in it may vary in length.
    ///
    /// A value of `MIN_CAPTURE` bytes or more may be anywhere in the
    /// piece. A shorter one (a DNS query id, a 3-digit request id) turns up
    /// by chance, so it must be all that differs there, in the other
    /// side's turn right after the capture's: the same value crossing
    /// sides at the same place.
    fn echo_in(&self, piece: &Piece, last: bool) -> Option<Found> {
        let base = &self.recordings[0];
        let other = piece.dir.reverse();
        let haystack = &base.stream(piece.dir)[piece.base()];
        // A number that says how long the rest of its turn is (HTTP's
        // `Content-Length`) is a length, whatever it equals on the other
        // side: two bodies of one length in every run.
        if counts_its_turn(self.recordings, self.turns, piece).is_some() {
            return None;
        }
        let turns = &self.turns[0];
        let turn = turns.number_of(piece.dir, piece.base().start);
        let own_core = self.core(piece);
        let mut best: Option<(Found, usize)> = None;
        for candidate in self.candidates[other.index()].iter().rev() {
            let c = &self.pieces[candidate.piece];
            let parts = [
                (Part::Whole, Some(&c.ranges)),
                (Part::Core, candidate.core.as_ref()),
            ];
            for (part, value) in parts {
                let Some(value) = value else {
                    continue;
                };
                let len = value[0].len();
                if len > haystack.len() || best.as_ref().is_some_and(|(_, l)| *l >= len) {
                    continue;
                }
                let short = value.iter().any(|v| v.len() < MIN_CAPTURE);
                let offset = if short {
                    let next_turn = turns.number_of(other, c.base().start).map(|t| t + 1);
                    match &own_core {
                        Some(core) if turn.is_some() && turn == next_turn => {
                            let same = core.iter().zip(value).all(|(a, b)| a.len() == b.len());
                            if !same {
                                continue;
                            }
                            core[0].start - piece.ranges[0].start
                        }
                        _ => continue,
                    }
                } else {
                    let needle = &base.stream(other)[value[0].clone()];
                    match find(haystack, needle) {
                        Some(offset) => offset,
                        None => continue,
                    }
                };
                // The echo must come after the whole captured value.
                let echo_frame = base.frame_of(piece.dir, piece.base().start + offset);
                if echo_frame <= base.frame_of(other, value[0].end - 1) {
                    continue;
                }
                if self.holds_everywhere(piece, other, value, offset, last) {
                    let found = Found {
                        capture: candidate.piece,
                        value: value.clone(),
                        offset,
                    };
                    let found = match part {
                        Part::Whole => found,
                        Part::Core => self.extend(piece, found),
                    };
                    best = Some((found, len));
                }
            }
        }
        best.map(|(found, _)| found)
    }

    /// The bytes of `piece` that differ between the recordings, in each:
    /// all but what they have in common at its start and end, grown in
    /// text to whole tokens over fewer than `MIN_CAPTURE` common bytes.
    /// `None` where a recording has none.
    fn core(&self, piece: &Piece) -> Option<Vec<Range<usize>>> {
        let values = piece.values(self.recordings);
        let shortest = values.iter().map(|v| v.len()).min()?;
        let first = values[0];
        let same_at = |at: &dyn Fn(&[u8]) -> u8| values.iter().all(|v| at(v) == at(first));
        let mut head = (0..shortest).take_while(|&k| same_at(&|v| v[k])).count();
        let mut tail = (0..shortest - head)
            .take_while(|&k| same_at(&|v| v[v.len() - 1 - k]))
            .count();
        let text = values.iter().all(|v| v.iter().all(|&b| !is_binary(b)));
        // Inside a token at `at` (between two of its bytes, or at the
        // end of a value that ends with one).
        let token = |v: &[u8], at: Option<usize>| {
            at.is_none_or(|at| v.get(at).is_none_or(u8::is_ascii_alphanumeric))
        };
        let inside = |v: &[u8], before: Option<usize>, after: Option<usize>| {
            before.is_some_and(|b| v.get(b).is_some_and(u8::is_ascii_alphanumeric))
                && token(v, after)
        };
        // Values that agree on a few letters by chance (two nonces that
        // start with `f`) are still whole tokens; a longer common part is
        // no chance (memcached's key, written right before the value).
        let (mut grown_head, mut grown_tail) = (head, tail);
        while text
            && grown_head > 0
            && values
                .iter()
                .all(|v| inside(v, Some(grown_head - 1), Some(grown_head)))
        {
            grown_head -= 1;
        }
        while text
            && grown_tail > 0
            && values.iter().all(|v| {
                let at = v.len() - grown_tail;
                inside(v, Some(at), at.checked_sub(1))
            })
        {
            grown_tail -= 1;
        }
        if head - grown_head < MIN_CAPTURE {
            head = grown_head;
        }
        if tail - grown_tail < MIN_CAPTURE {
            tail = grown_tail;
        }
        let core: Vec<Range<usize>> = piece
            .ranges
            .iter()
            .map(|r| r.start + head..r.end - tail)
            .collect();
        core.iter().all(|r| !r.is_empty()).then_some(core)
    }

    /// `found` (a part of its capture's piece) grown over the bytes beside
    /// it that are the same on both sides in every recording, up to
    /// `NUMBER_REACH` each side: a binary number's high bytes that happened
    /// to be equal in the recordings.
    fn extend(&self, piece: &Piece, mut found: Found) -> Found {
        let c = &self.pieces[found.capture];
        let both = |i: usize, at_c: usize, at_p: usize| {
            let r = &self.recordings[i];
            r.stream(c.dir)[at_c] == r.stream(piece.dir)[at_p]
        };
        for _ in 0..NUMBER_REACH {
            let grows = (0..self.recordings.len()).all(|i| {
                let (v, p) = (&found.value[i], &piece.ranges[i]);
                v.start > c.ranges[i].start
                    && found.offset > 0
                    && both(i, v.start - 1, p.start + found.offset - 1)
            });
            if !grows {
                break;
            }
            found.value.iter_mut().for_each(|v| v.start -= 1);
            found.offset -= 1;
        }
        for _ in 0..NUMBER_REACH {
            let grows = (0..self.recordings.len()).all(|i| {
                let (v, p) = (&found.value[i], &piece.ranges[i]);
                let echo_end = p.start + found.offset + v.len();
                v.end < c.ranges[i].end && echo_end < p.end && both(i, v.end, echo_end)
            });
            if !grows {
                break;
            }
            found.value.iter_mut().for_each(|v| v.end += 1);
        }
        found
    }

    /// True when each recording's `value` (bytes of `from`) is in `piece`
    /// at `offset`, and (unless `last`) the bytes after it are as long in
    /// every recording.
    fn holds_everywhere(
        &self,
        piece: &Piece,
        from: Direction,
        value: &[Range<usize>],
        offset: usize,
        last: bool,
    ) -> bool {
        let mut after = None;
        for ((range, value), recording) in piece.ranges.iter().zip(value).zip(self.recordings) {
            let start = range.start + offset;
            let end = start + value.len();
            let value = &recording.stream(from)[value.clone()];
            if end > range.end || &recording.stream(piece.dir)[start..end] != value {
                return false;
            }
            let rest = range.end - end;
            if !last && *after.get_or_insert(rest) != rest {
                return false;
            }
        }
        true
    }

    /// Makes `value`, part of piece `capture` (or all of it), the piece:
    /// what is beside it is the same in every recording, and stays as
    /// recorded.
    fn cut_capture(&mut self, capture: usize, value: Vec<Range<usize>>) {
        let dir = self.pieces[capture].dir;
        self.pieces[capture].ranges = value;
        let candidates = &mut self.candidates[dir.index()];
        if let Some(candidate) = candidates.iter_mut().find(|c| c.piece == capture) {
            candidate.core = None;
        }
    }

    /// `piece` cut at the echo of `capture` at `offset`: the bytes before
    /// it (as long in every recording), the echo, the bytes after it.
    fn split(&mut self, piece: &Piece, capture: usize, offset: usize) -> Vec<Piece> {
        self.name(capture);
        let values = self.pieces[capture].values(self.recordings);
        let part = |ranges: Vec<Range<usize>>, kind| Piece {
            dir: piece.dir,
            ranges,
            kind,
        };
        let before: Vec<_> = piece
            .ranges
            .iter()
            .map(|range| range.start..range.start + offset)
            .collect();
        let echo: Vec<_> = piece
            .ranges
            .iter()
            .zip(&values)
            .map(|(range, value)| range.start + offset..range.start + offset + value.len())
            .collect();
        let after: Vec<_> = piece
            .ranges
            .iter()
            .zip(&echo)
            .map(|(range, echo)| echo.end..range.end)
            .collect();
        // What is left beside the echo stays a piece where it differs
        // between the recordings (the place may have been taken wider
        // than what differed: the `r` of SCRAM's `r=` before the nonce).
        let left = |ranges: Vec<Range<usize>>| {
            let piece = part(self.trim(piece.dir, ranges), PieceKind::Vary);
            (piece.distinct(self.recordings) > 1).then_some(piece)
        };
        let (before, after) = (left(before), left(after));
        let mut parts: Vec<Piece> = before.into_iter().collect();
        parts.push(part(echo, PieceKind::Echo { capture }));
        parts.extend(after);
        parts
    }

    /// The ranges without the separators (bytes other than letters and
    /// digits) at their edges that are the same in every recording: what
    /// is left of a place beside an echo is the value, not the `,` or
    /// space that joined the two.
    fn trim(&self, dir: Direction, mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
        let byte = |i: usize, at: usize| self.recordings[i].stream(dir)[at];
        let same = |ranges: &[Range<usize>], at: &dyn Fn(&Range<usize>) -> usize| {
            let first = byte(0, at(&ranges[0]));
            !first.is_ascii_alphanumeric()
                && ranges
                    .iter()
                    .enumerate()
                    .all(|(i, range)| byte(i, at(range)) == first)
        };
        while ranges.iter().all(|range| !range.is_empty()) && same(&ranges, &|r| r.start) {
            ranges.iter_mut().for_each(|range| range.start += 1);
        }
        while ranges.iter().all(|range| !range.is_empty()) && same(&ranges, &|r| r.end - 1) {
            ranges.iter_mut().for_each(|range| range.end -= 1);
        }
        ranges
    }

    /// Makes piece `capture` a capture, with a name: the one just before
    /// its value (`session=`, `"id": `, `X-Request-Id: `) when there is
    /// one, else `token1`, `id2`...
    fn name(&mut self, capture: usize) {
        if matches!(self.pieces[capture].kind, PieceKind::Capture(_)) {
            return;
        }
        let piece = &self.pieces[capture];
        let n = self.names.len() + 1;
        let stream = self.recordings[0].stream(piece.dir);
        let value = &stream[piece.base()];
        let name = match key_before(stream, piece.base().start) {
            Some(key) if !self.names.contains(key) => key.to_string(),
            Some(key) if key.len() + n.to_string().len() <= MAX_NAME => format!("{key}{n}"),
            _ if value.iter().all(u8::is_ascii_digit) => format!("id{n}"),
            _ => format!("token{n}"),
        };
        debug_assert!(check_name(&name).is_ok(), "{name}");
        self.names.insert(name.clone());
        self.pieces[capture].kind = PieceKind::Capture(name);
    }
}

/// The key a value is given under, from the bytes just before it:
/// `name=`, `name: `, `"name": "`, `"name":`. `None` when there is none.
pub fn key_before(bytes: &[u8], at: usize) -> Option<&str> {
    let mut i = at;
    let skip = |i: &mut usize, set: &[u8]| {
        while *i > 0 && set.contains(&bytes[*i - 1]) {
            *i -= 1;
        }
    };
    // A quoted value's quote, then spaces.
    if i > 0 && matches!(bytes[i - 1], b'"' | b'\'') {
        i -= 1;
    }
    skip(&mut i, b" \t");
    if i == 0 || !matches!(bytes[i - 1], b'=' | b':') {
        return None;
    }
    i -= 1;
    skip(&mut i, b" \t");
    if i > 0 && matches!(bytes[i - 1], b'"' | b'\'') {
        i -= 1;
    }
    let end = i;
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    while i > 0 && end - i < MAX_NAME && name_byte(bytes[i - 1]) {
        i -= 1;
    }
    if i > 0 && name_byte(bytes[i - 1]) {
        // Longer than a name may be.
        return None;
    }
    let key = std::str::from_utf8(&bytes[i..end]).ok()?;
    check_name(key).ok().map(|()| key)
}

/// Work below which a plain search is cheaper than building a table.
const PLAIN_SEARCH: usize = 4096;

/// Where `needle` first occurs in `haystack` (Knuth-Morris-Pratt: linear
/// time, whatever the bytes; short ones compared in place).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    if needle.len().saturating_mul(haystack.len()) <= PLAIN_SEARCH {
        return haystack.windows(needle.len()).position(|w| w == needle);
    }
    // fail[i]: the longest proper prefix of needle[..=i] that is also its
    // suffix.
    let mut fail = vec![0usize; needle.len()];
    let mut k = 0;
    for i in 1..needle.len() {
        while k > 0 && needle[i] != needle[k] {
            k = fail[k - 1];
        }
        if needle[i] == needle[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let mut k = 0;
    for (i, &byte) in haystack.iter().enumerate() {
        while k > 0 && byte != needle[k] {
            k = fail[k - 1];
        }
        if byte == needle[k] {
            k += 1;
        }
        if k == needle.len() {
            return Some(i + 1 - k);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::regions::by_turn;
    use crate::learn::turns::{self, Turn};
    use crate::tape::Writer;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    #[test]
    fn find_is_a_substring_search() {
        assert_eq!(find(b"hello world", b"world"), Some(6));
        assert_eq!(find(b"aaaab", b"aab"), Some(2));
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"abc", b""), Some(0));
    }

    #[test]
    fn keys_before_values() {
        fn key(text: &str) -> Option<&str> {
            key_before(text.as_bytes(), text.len())
        }
        assert_eq!(key("GET /?session="), Some("session"));
        assert_eq!(key("{\"id\": \""), Some("id"));
        assert_eq!(key("{\"id\":"), Some("id"));
        assert_eq!(key("X-Request-Id: "), Some("X-Request-Id"));
        assert_eq!(key("n,,n=user,r="), Some("r"));
        assert_eq!(key("Date "), None);
        assert_eq!(key("="), None);
        assert_eq!(key(""), None);
        assert_eq!(key(&format!("{}=", "k".repeat(33))), None);
        assert_eq!(
            key(&format!(" {}=", "k".repeat(32))),
            Some(&*"k".repeat(32))
        );
    }

    /// Recordings of one exchange: (client bytes, server bytes) per step,
    /// each step a client frame then a server frame.
    fn recorded(runs: &[Vec<(&str, &str)>]) -> Vec<Recording> {
        runs.iter()
            .enumerate()
            .map(|(i, steps)| {
                let mut bytes = Vec::new();
                let mut w = Writer::new(&mut bytes).unwrap();
                for (client, server) in steps {
                    w.data(C2S, client.as_bytes()).unwrap();
                    w.data(S2C, server.as_bytes()).unwrap();
                }
                Recording::from_bytes(&format!("r{i}"), &bytes).unwrap()
            })
            .collect()
    }

    fn learned(recordings: &[Recording]) -> Vec<Piece> {
        let turns: Vec<Vec<Turn>> = recordings.iter().map(turns::turns).collect();
        let all: Vec<&[Turn]> = turns.iter().map(Vec::as_slice).collect();
        let regions = by_turn(recordings, &all).unwrap();
        let turns: Vec<TurnIndex> = turns.into_iter().map(TurnIndex::new).collect();
        pieces(recordings, &turns, &regions)
    }

    /// The base's bytes of each piece, and its kind in words.
    fn described(recordings: &[Recording], pieces: &[Piece]) -> Vec<(String, String)> {
        pieces
            .iter()
            .map(|piece| {
                let kind = match &piece.kind {
                    PieceKind::Vary => "vary".to_string(),
                    PieceKind::Capture(name) => format!("capture {name}"),
                    PieceKind::Echo { capture } => match &pieces[*capture].kind {
                        PieceKind::Capture(name) => format!("echo {name}"),
                        other => panic!("echo of {other:?}"),
                    },
                };
                let value = String::from_utf8_lossy(piece.values(recordings)[0]).into_owned();
                (kind, value)
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_token_the_server_picks_and_the_client_sends_back() {
        let run = |token: &str, date: &str| {
            vec![
                (
                    "LOGIN\r\n",
                    format!("OK session={token}\r\nDate: {date}\r\n"),
                ),
                (&*format!("GET /a?session={token}\r\n"), "A\r\n".to_string()),
            ]
            .into_iter()
            .map(|(c, s)| (c.to_string(), s))
            .collect::<Vec<_>>()
        };
        let runs = [
            run("Zx81kQ0aa", "Wed 09:31"),
            run("b7Tq2", "Thu 17:02"),
            run("mm93LLpq0e1", "Mon 23:45"),
        ];
        let runs: Vec<Vec<(&str, &str)>> = runs
            .iter()
            .map(|steps| {
                steps
                    .iter()
                    .map(|(c, s)| (c.as_str(), s.as_str()))
                    .collect()
            })
            .collect();
        let recordings = recorded(&runs);
        let pieces = learned(&recordings);
        assert_eq!(
            described(&recordings, &pieces),
            pairs(&[
                ("capture session", "Zx81kQ0aa"),
                ("vary", "Wed 09:31"),
                ("echo session", "Zx81kQ0aa"),
            ])
        );
        assert!(!pieces[0].is_fixed());
    }

    #[test]
    fn a_value_inside_a_larger_one_is_an_echo_and_the_rest_a_capture() {
        // SCRAM: the server's nonce starts with the client's, and the
        // client sends the whole of it back.
        let run = |client: &str, server: &str, salt: &str| {
            (
                format!("n,,n=user,r={client}\n"),
                format!("r={client}{server},s={salt},i=4096\n"),
                format!("c=biws,r={client}{server},p=proof\n"),
            )
        };
        let runs = [
            run(
                "fyko+d2lbbFgONRv9qkxdawL",
                "3rfcNHYJY1ZVvWVs7j",
                "QSXCR+Q6sek8bf92",
            ),
            run(
                "abcdefghijklmnopqrstuvwx",
                "0123456789ABCDEFGH",
                "ZZXCR+Q6sek8bf00",
            ),
        ];
        let runs: Vec<Vec<(&str, &str)>> = runs
            .iter()
            .map(|(first, reply, last)| {
                vec![(first.as_str(), reply.as_str()), (last.as_str(), "ok")]
            })
            .collect();
        let recordings = recorded(&runs);
        let pieces = learned(&recordings);
        assert_eq!(
            described(&recordings, &pieces),
            pairs(&[
                ("capture r", "fyko+d2lbbFgONRv9qkxdawL"),
                ("echo r", "fyko+d2lbbFgONRv9qkxdawL"),
                ("capture token2", "3rfcNHYJY1ZVvWVs7j"),
                ("vary", "QSXCR+Q6sek8bf92"),
                ("vary", "fyko+d2lbbFgONRv9qkxdawL"),
                ("echo token2", "3rfcNHYJY1ZVvWVs7j"),
            ])
        );
    }

    #[test]
    fn a_request_id_the_client_picks_and_the_server_echoes() {
        let runs = [
            vec![(
                "{\"id\":\"8f2a91c4\",\"q\":1}",
                "{\"id\":\"8f2a91c4\",\"r\":2}",
            )],
            vec![(
                "{\"id\":\"00aa11bb\",\"q\":1}",
                "{\"id\":\"00aa11bb\",\"r\":2}",
            )],
        ];
        let recordings = recorded(&runs);
        let pieces = learned(&recordings);
        assert_eq!(
            described(&recordings, &pieces),
            pairs(&[("capture id", "8f2a91c4"), ("echo id", "8f2a91c4")])
        );
    }

    #[test]
    fn an_echo_must_be_in_every_recording_and_after_the_capture() {
        // In the second recording the server answers with another value:
        // not an echo.
        let runs = [
            vec![("id=11112222\r\n", "got 11112222\r\n")],
            vec![("id=33334444\r\n", "got 55556666\r\n")],
        ];
        let recordings = recorded(&runs);
        let pieces = learned(&recordings);
        assert_eq!(
            described(&recordings, &pieces),
            pairs(&[("vary", "11112222"), ("vary", "11112222")])
        );
        // A value the server sent before the client did is no echo of it,
        // and short values are not captured.
        let runs = [
            vec![("", "nonce 5555aaaa\r\n"), ("use 5555aaaa 123\r\n", "")],
            vec![("", "nonce 7777bbbb\r\n"), ("use 7777bbbb 456\r\n", "")],
        ];
        let recordings = recorded(&runs);
        let pieces = learned(&recordings);
        assert_eq!(
            described(&recordings, &pieces),
            pairs(&[
                ("capture token1", "5555aaaa"),
                ("echo token1", "5555aaaa"),
                ("vary", "123")
            ])
        );
    }

    #[test]
    fn a_variable_part_before_an_echo_keeps_the_place_whole() {
        // The bytes before the value differ in length: an echo cut there
        // would follow a variable span, so the place stays one vary.
        let runs = [
            vec![("k=abcd1234\r\n", "x=1,abcd1234\r\n")],
            vec![("k=efgh5678\r\n", "x=22,efgh5678\r\n")],
        ];
        let recordings = recorded(&runs);
        let pieces = learned(&recordings);
        assert_eq!(
            described(&recordings, &pieces),
            pairs(&[("vary", "abcd1234"), ("vary", "1,abcd1234")])
        );
    }
}
