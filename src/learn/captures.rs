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

use std::collections::HashSet;
use std::ops::Range;

use super::recording::Recording;
use super::regions::Region;
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

impl Piece {
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
        self.values(recordings)
            .into_iter()
            .collect::<HashSet<_>>()
            .len()
    }
}

/// The pieces of the places where the recordings differ (`regions`, per
/// direction), with captures and echoes found; in tape order.
pub fn pieces(recordings: &[Recording], regions: &[Vec<Region>; 2]) -> Vec<Piece> {
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
        pieces: Vec::new(),
        candidates: [Vec::new(), Vec::new()],
        names: HashSet::new(),
    };
    for (_, dir, region) in order {
        finder.place(dir, region);
    }
    finder.pieces
}

struct Finder<'a> {
    recordings: &'a [Recording],
    pieces: Vec<Piece>,
    /// Per direction, pieces whose values may be captured, in tape order.
    candidates: [Vec<usize>; 2],
    names: HashSet<String>,
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
            let Some((capture, offset)) = found else {
                i += 1;
                continue;
            };
            let parts = self.split(&list[i], capture, offset);
            list.splice(i..=i, parts);
            // The part before the echo (if any) is at `i` now: look in it
            // too.
        }
        for piece in list {
            let n = self.pieces.len();
            if piece.kind == PieceKind::Vary && self.capturable(&piece) {
                self.candidates[dir.index()].push(n);
            }
            self.pieces.push(piece);
        }
    }

    /// A piece may be captured when its value is long enough to be one in
    /// every recording, short enough for a span, and not the same in all.
    fn capturable(&self, piece: &Piece) -> bool {
        let sized = piece
            .ranges
            .iter()
            .all(|range| (MIN_CAPTURE..=MAX_SPAN as usize).contains(&range.len()));
        sized && piece.distinct(self.recordings) > 1
    }

    /// The earlier capture (piece index) whose value `piece` holds, in
    /// every recording at the same offset, and that offset; the longest
    /// such value. `last`: the piece ends its place, so what follows the
    /// echo in it may vary in length.
    fn echo_in(&self, piece: &Piece, last: bool) -> Option<(usize, usize)> {
        let base = &self.recordings[0];
        let other = piece.dir.reverse();
        let haystack = &base.stream(piece.dir)[piece.base()];
        let mut best: Option<(usize, usize, usize)> = None;
        let recent = self.candidates[other.index()].iter().rev().take(CANDIDATES);
        for &candidate in recent {
            let value = self.pieces[candidate].values(self.recordings)[0];
            if value.len() > haystack.len() || best.is_some_and(|(_, _, len)| len >= value.len()) {
                continue;
            }
            let Some(offset) = find(haystack, value) else {
                continue;
            };
            // The echo must come after the whole captured value.
            let captured = self.pieces[candidate].base();
            let echo_frame = base.frame_of(piece.dir, piece.base().start + offset);
            if echo_frame <= base.frame_of(other, captured.end - 1) {
                continue;
            }
            if self.holds_everywhere(piece, candidate, offset, last) {
                best = Some((candidate, offset, value.len()));
            }
        }
        best.map(|(candidate, offset, _)| (candidate, offset))
    }

    /// True when each recording's value of `capture` is in `piece` at
    /// `offset`, and (unless `last`) the bytes after it are as long in
    /// every recording.
    fn holds_everywhere(&self, piece: &Piece, capture: usize, offset: usize, last: bool) -> bool {
        let values = self.pieces[capture].values(self.recordings);
        let mut after = None;
        for ((range, value), recording) in piece.ranges.iter().zip(values).zip(self.recordings) {
            let start = range.start + offset;
            let end = start + value.len();
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
        let before = self.trim(piece.dir, before);
        let after = self.trim(piece.dir, after);
        let mut parts = Vec::new();
        if before.iter().any(|range| !range.is_empty()) {
            parts.push(part(before, PieceKind::Vary));
        }
        parts.push(part(echo, PieceKind::Echo { capture }));
        if after.iter().any(|range| !range.is_empty()) {
            parts.push(part(after, PieceKind::Vary));
        }
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

/// Where `needle` first occurs in `haystack` (Knuth-Morris-Pratt: linear
/// time, whatever the bytes).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
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
    use crate::learn::align::align;
    use crate::learn::regions::{Streams, regions};
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
        let regions = [C2S, S2C].map(|dir| {
            let base = recordings[0].stream(dir);
            let streams = Streams {
                bytes: recordings.iter().map(|r| r.stream(dir)).collect(),
                blocks: recordings[1..]
                    .iter()
                    .map(|r| align(base, r.stream(dir)))
                    .collect(),
                turns: Vec::new(),
            };
            regions(&streams)
        });
        pieces(recordings, &regions)
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
