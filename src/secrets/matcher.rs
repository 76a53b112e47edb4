//! One direction's stream matched against the rules, in pieces of any
//! size: the bytes not yet released come in (as the ring holds them, in
//! up to two slices), and out come the pieces that may go, plain or
//! secret, in stream order. What a rule could still match is held back:
//! the end of the stream that begins a pattern (at most the longest
//! pattern's length), a match that a longer one could still grow, and a
//! value after a prefix until its end (at most `MAX_VALUE` bytes). The
//! matcher keeps the last bytes it released, so a pattern that began in
//! them is still found.
//!
//! Bytes released by force because they begin a literal are *tentative*
//! secrets: once the stream shows whether the literal completes, the
//! matcher says so ([`Verdict`]), and a recorder puts back the bytes of
//! one that did not (they were no secret).

use std::rc::Rc;

use super::finder::{Finder, Found};
use super::{End, MAX_SECRET, MAX_VALUE, Rules};

/// The most occurrences looked at in one call: a stream made of a
/// pattern is released in steps, not held in a list.
const MAX_FOUND: usize = 4096;

/// A run of released bytes: plain, or a secret of rule `secret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub len: usize,
    pub secret: Option<usize>,
    /// Released by force as a secret, in case it is one: a `Verdict`
    /// follows.
    pub tentative: bool,
}

/// What became of the tentative secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// They were (the beginning of) a secret.
    Confirmed,
    /// They were not: the stream's bytes from `start` are `bytes`.
    Retracted { start: u64, bytes: Vec<u8> },
}

/// Bytes released by force as a secret, waiting for a verdict.
#[derive(Debug)]
struct Tentative {
    /// Where they start in the stream.
    start: u64,
    bytes: Vec<u8>,
}

/// How much may be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// All but what a rule could still match.
    Hold,
    /// Everything: the held bytes waited too long, or fill the ring.
    /// Bytes that begin a literal go as a secret (they may be one), a
    /// value after a prefix as a secret so far.
    Force,
    /// Everything: the stream ended, nothing can complete any more.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Scanning,
    /// Inside the value after rule `rule`'s prefix, which began at
    /// stream offset `from`.
    Value {
        rule: usize,
        from: u64,
    },
}

#[derive(Debug)]
pub struct Matcher {
    finder: Rc<Finder>,
    /// The last bytes released, up to the longest pattern less one.
    context: Vec<u8>,
    state: State,
    /// Bytes released so far: where the unreleased ones start.
    base: u64,
    tentative: Option<Tentative>,
    verdict: Option<Verdict>,
}

/// The stream as the matcher sees it in one call: the context, then the
/// unreleased bytes.
struct View<'a> {
    parts: [&'a [u8]; 3],
}

impl View<'_> {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    /// Bytes `range` of the view, copied (a short stretch).
    fn copy(&self, from: usize, to: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(to - from);
        let mut base = 0;
        for part in self.parts {
            let (lo, hi) = (from.max(base), to.min(base + part.len()));
            if lo < hi {
                out.extend_from_slice(&part[lo - base..hi - base]);
            }
            base += part.len();
        }
        out
    }

    /// Where `end` first occurs at or after `from`.
    fn find_end(&self, end: &End, from: usize) -> Option<usize> {
        let mut base = 0;
        match end {
            End::Line => {
                for part in self.parts {
                    if base + part.len() > from {
                        let skip = from.saturating_sub(base);
                        let hit = part[skip..].iter().position(|&b| b == b'\r' || b == b'\n');
                        if let Some(i) = hit {
                            return Some(base + skip + i);
                        }
                    }
                    base += part.len();
                }
                None
            }
            End::Bytes(end) => {
                // Values are short (at most MAX_VALUE before they are
                // released), so a plain search does.
                let total = self.len();
                let bytes = self.copy(from.min(total), total);
                bytes
                    .windows(end.len())
                    .position(|w| w == &end[..])
                    .map(|i| from + i)
            }
        }
    }
}

impl Matcher {
    pub fn new(finder: Rc<Finder>) -> Matcher {
        Matcher {
            finder,
            context: Vec::new(),
            state: State::Scanning,
            base: 0,
            tentative: None,
            verdict: None,
        }
    }

    /// A finder for `rules`, to share between the matchers of a run.
    pub fn finder(rules: &Rules) -> Rc<Finder> {
        Rc::new(Finder::new(rules))
    }

    /// Takes the unreleased bytes `input` (the first of them the first
    /// not released yet) and appends to `out` the pieces released, in
    /// order; returns how many bytes they cover. The rest stays
    /// unreleased and comes again with the next call.
    pub fn scan(&mut self, input: [&[u8]; 2], release: Release, out: &mut Vec<Piece>) -> usize {
        let context = std::mem::take(&mut self.context);
        let view = View {
            parts: [&context, input[0], input[1]],
        };
        let ctx = context.len();
        let total = view.len();
        let (found, looked) = self.find_all(&view);
        // Positions before `limit` may be released; a match that reaches
        // past it may still grow.
        // (A partial that began in the context, released by force, is
        // still one: what follows it is held too.)
        let partial = match release {
            Release::End => None,
            _ => {
                let keep = (self.finder.longest - 1).min(total);
                self.finder.partial(&view.copy(total - keep, total))
            }
        };
        let held = (total - partial.map_or(0, |(len, _)| len)).max(ctx);
        let limit = looked.min(held);
        let start = self.base - ctx as u64;
        self.judge(
            &found,
            start,
            (looked == total).then(|| total - partial.map_or(0, |p| p.0)),
        );
        let mut pieces = Pieces { out, at: ctx };
        let mut next = 0;
        loop {
            match self.state {
                State::Value { rule, from } => {
                    let end = self.finder.ends[rule].as_ref().expect("a value's rule");
                    let p = pieces.at;
                    // The end may begin in the value's bytes already
                    // released (by force, before the rest of it came).
                    let back = match end {
                        End::Bytes(bytes) => bytes.len() - 1,
                        End::Line => 0,
                    };
                    let value_at = from.saturating_sub(start) as usize;
                    match view.find_end(end, p.saturating_sub(back).max(value_at)) {
                        Some(at) if at.saturating_sub(p) > MAX_VALUE => {
                            pieces.secret(p + MAX_VALUE, rule)
                        }
                        Some(at) => {
                            pieces.secret(at, rule);
                            self.state = State::Scanning;
                        }
                        None if release != Release::Hold && looked == total => {
                            pieces.secret(total.min(p + MAX_VALUE), rule);
                            if pieces.at == total {
                                break;
                            }
                        }
                        None if total - p >= MAX_VALUE => pieces.secret(p + MAX_VALUE, rule),
                        None => break,
                    }
                }
                State::Scanning => {
                    let p = pieces.at;
                    while found.get(next).is_some_and(|f| f.end <= p) {
                        next += 1;
                    }
                    let Some(&first) = found.get(next) else {
                        pieces.plain(limit);
                        break;
                    };
                    if first.start >= limit {
                        pieces.plain(limit);
                        break;
                    }
                    pieces.plain(first.start);
                    let pattern = &self.finder.patterns[first.pattern];
                    if pattern.prefix {
                        pieces.plain(first.end);
                        self.state = State::Value {
                            rule: pattern.rule,
                            from: start + first.end as u64,
                        };
                        next += 1;
                        continue;
                    }
                    // Overlapping literals are one secret.
                    let mut end = first.end;
                    for f in &found[next + 1..] {
                        if f.start >= end {
                            break;
                        }
                        if !self.finder.patterns[f.pattern].prefix {
                            end = end.max(f.end);
                        }
                    }
                    if end > limit && release == Release::Hold && end - pieces.at < MAX_SECRET {
                        break;
                    }
                    pieces.secret(end.min(pieces.at + MAX_SECRET), pattern.rule);
                }
            }
        }
        // Forced: what begins a literal goes as a secret, since it may be
        // one; what begins only a prefix is no secret.
        if release == Release::Force
            && self.state == State::Scanning
            && looked == total
            && let Some((_, index)) = partial
            && pieces.at == held
        {
            // The longest beginning may be a prefix's while a shorter
            // one, at the very end, is a literal's.
            let literal = match self.finder.patterns[index].prefix {
                false => Some((total - held, index)),
                true => self.finder.literal_partial(&view.copy(held, total)),
            };
            match literal {
                None => pieces.plain(total),
                Some((len, index)) => {
                    pieces.plain(total - len);
                    let at = pieces.at;
                    pieces.tentative(total, self.finder.patterns[index].rule);
                    let tentative = self.tentative.get_or_insert(Tentative {
                        start: start + at as u64,
                        bytes: Vec::new(),
                    });
                    tentative.bytes.extend(view.copy(at, total));
                }
            }
        }
        let released = pieces.at;
        let keep = self.finder.longest - 1;
        self.context = view.copy(released.saturating_sub(keep), released);
        self.base += (released - ctx) as u64;
        released - ctx
    }

    /// The verdict on the tentative secrets, once there is one.
    pub fn verdict(&mut self) -> Option<Verdict> {
        self.verdict.take()
    }

    /// Decides on the tentative secrets, if the stream seen says: a match
    /// over them confirms them; with none, and no beginning of one that
    /// starts inside them (`pending`, where the held beginning starts;
    /// `None` while the view was not looked through), they are retracted.
    fn judge(&mut self, found: &[Found], start: u64, pending: Option<usize>) {
        let Some(tentative) = &self.tentative else {
            return;
        };
        let end = tentative.start + tentative.bytes.len() as u64;
        let overlaps = found.iter().any(|f| {
            !self.finder.patterns[f.pattern].prefix
                && start + (f.start as u64) < end
                && start + (f.end as u64) > tentative.start
        });
        if overlaps {
            self.verdict = Some(Verdict::Confirmed);
        } else if pending.is_some_and(|at| start + at as u64 >= end) {
            let tentative = self.tentative.take().expect("a tentative secret");
            self.verdict = Some(Verdict::Retracted {
                start: tentative.start,
                bytes: tentative.bytes,
            });
            return;
        } else {
            return;
        }
        self.tentative = None;
    }

    /// The occurrences in the view that end after the context, in order
    /// of start (the longest first at a start), and the position up to
    /// which all starts were looked at.
    fn find_all(&self, view: &View<'_>) -> (Vec<Found>, usize) {
        let total = view.len();
        let reach = self.finder.longest - 1;
        let mut found = Vec::new();
        let mut looked = total;
        let mut base = 0;
        for (i, part) in view.parts.iter().enumerate() {
            if i > 0 && base > 0 && base < total {
                // Occurrences across the boundary, from a short copy.
                let from = base.saturating_sub(reach);
                let seam = view.copy(from, (base + reach).min(total));
                let mut more = Vec::new();
                self.finder
                    .find(&seam, from, base - from, &mut more, MAX_FOUND);
                found.extend(more.into_iter().filter(|f| f.end > base));
            }
            if i > 0 && found.len() < MAX_FOUND {
                let room = MAX_FOUND - found.len();
                let mut more = Vec::new();
                let stopped = self.finder.find(part, base, usize::MAX, &mut more, room);
                found.extend(more);
                if let Some(at) = stopped {
                    // Later boundaries were not looked at either.
                    looked = at.min((base + part.len()).saturating_sub(reach));
                    break;
                }
            }
            base += part.len();
        }
        found.retain(|f| f.start < looked);
        found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end), f.pattern));
        found.dedup();
        (found, looked)
    }
}

/// The pieces released so far, up to `at`.
struct Pieces<'a> {
    out: &'a mut Vec<Piece>,
    at: usize,
}

impl Pieces<'_> {
    fn push(&mut self, to: usize, secret: Option<usize>, tentative: bool) {
        if to <= self.at {
            return;
        }
        let len = to - self.at;
        self.at = to;
        match self.out.last_mut() {
            Some(last) if secret.is_none() && last.secret.is_none() => last.len += len,
            _ => self.out.push(Piece {
                len,
                secret,
                tentative,
            }),
        }
    }

    fn plain(&mut self, to: usize) {
        self.push(to, None, false);
    }

    fn secret(&mut self, to: usize, rule: usize) {
        self.push(to, Some(rule), false);
    }

    fn tentative(&mut self, to: usize, rule: usize) {
        self.push(to, Some(rule), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{Rule, What};

    fn rules(list: &[What]) -> Rc<Finder> {
        let rules = list
            .iter()
            .enumerate()
            .map(|(i, what)| Rule {
                name: format!("R{i}"),
                what: what.clone(),
            })
            .collect();
        Matcher::finder(&Rules::new(rules).unwrap())
    }

    fn lit(bytes: &[u8]) -> What {
        What::Literal(bytes.to_vec())
    }

    fn after(prefix: &[u8], end: Option<&[u8]>) -> What {
        What::After {
            prefix: prefix.to_vec(),
            end: end.map_or(End::Line, |e| End::Bytes(e.to_vec())),
        }
    }

    /// What a recorder makes of `stream` fed in `chunks` (a ring that
    /// wraps at `wrap` bytes into the unreleased ones): the released
    /// bytes, secrets as `<R0:len>`; and the most bytes ever held back.
    fn record(
        finder: &Rc<Finder>,
        stream: &[u8],
        chunks: &[usize],
        wrap: usize,
    ) -> (String, usize) {
        let mut m = Matcher::new(finder.clone());
        let mut released = 0;
        let mut fed = 0;
        let mut out = String::new();
        let mut most = 0;
        let mut feed = |fed: usize, release, released: &mut usize, out: &mut String| {
            let pending = &stream[*released..fed];
            let cut = wrap.min(pending.len());
            let mut pieces = Vec::new();
            let n = m.scan([&pending[..cut], &pending[cut..]], release, &mut pieces);
            assert_eq!(n, pieces.iter().map(|p| p.len).sum::<usize>());
            for piece in pieces {
                let bytes = &stream[*released..*released + piece.len];
                match piece.secret {
                    None => out.push_str(&String::from_utf8_lossy(bytes)),
                    Some(rule) => out.push_str(&format!("<R{rule}:{}>", piece.len)),
                }
                *released += piece.len;
            }
        };
        for &chunk in chunks {
            fed = (fed + chunk).min(stream.len());
            feed(fed, Release::Hold, &mut released, &mut out);
            most = most.max(fed - released);
        }
        fed = stream.len();
        feed(fed, Release::Hold, &mut released, &mut out);
        most = most.max(fed - released);
        while released < stream.len() {
            feed(fed, Release::End, &mut released, &mut out);
        }
        (out, most)
    }

    #[test]
    fn a_secret_split_at_every_position_is_one_secret_and_never_released() {
        let finder = rules(&[lit(b"hunter22")]);
        let stream = b"AUTH hunter22\r\n+OK hunter22";
        for split in 0..=stream.len() {
            for wrap in [0, 3, 7, 100] {
                let (out, most) = record(&finder, stream, &[split], wrap);
                assert_eq!(
                    out, "AUTH <R0:8>\r\n+OK <R0:8>",
                    "split {split} wrap {wrap}"
                );
                assert!(
                    most <= 7 || split == stream.len(),
                    "held {most} at split {split}"
                );
            }
        }
        // Byte by byte.
        let (out, most) = record(&finder, stream, &[1; 40], 1);
        assert_eq!(out, "AUTH <R0:8>\r\n+OK <R0:8>");
        assert_eq!(most, 7, "held back: at most the rule's length less one");
    }

    /// Forced out, a held tail that begins a prefix (`AUTH ` of
    /// `AUTH `) and, shorter, a literal (`H` of `HUNTER22`) releases the
    /// literal's beginning as a secret, in case it is one: it was.
    #[test]
    fn a_forced_tail_that_also_begins_a_literal_keeps_that_beginning_secret() {
        let finder = rules(&[after(b"AUTH ", None), lit(b"HUNTER22")]);
        let mut m = Matcher::new(finder);
        let mut pieces = Vec::new();
        assert_eq!(m.scan([b"xAUTH", b""], Release::Force, &mut pieces), 5);
        let shape: Vec<(usize, Option<usize>, bool)> = pieces
            .iter()
            .map(|p| (p.len, p.secret, p.tentative))
            .collect();
        assert_eq!(shape, [(4, None, false), (1, Some(1), true)]);
        pieces.clear();
        m.scan([b"UNTER22\n", b""], Release::End, &mut pieces);
        assert_eq!(m.verdict(), Some(Verdict::Confirmed));
        assert!(
            pieces.iter().all(|p| p.secret.is_some() || p.len <= 1),
            "{pieces:?}"
        );
    }

    #[test]
    fn a_secret_that_begins_another_is_the_longer_one() {
        let finder = rules(&[lit(b"pass"), lit(b"password"), lit(b"word")]);
        for split in 0..20 {
            let (out, _) = record(&finder, b"a password, a pass.", &[split], 5);
            assert_eq!(out, "a <R1:8>, a <R0:4>.", "split {split}");
        }
        // Overlapping literals are one secret, named for the first.
        let finder = rules(&[lit(b"abcd"), lit(b"cdef")]);
        let (out, _) = record(&finder, b"xabcdefx", &[3], 100);
        assert_eq!(out, "x<R0:6>x");
    }

    /// A value's end of several bytes whose first came before the hold
    /// ran out (and went out with the value) is still its end: the value
    /// does not run on to the next one.
    #[test]
    fn an_end_split_by_a_forced_release_still_ends_the_value() {
        let finder = rules(&[after(b"pw=", Some(b"&&"))]);
        let mut m = Matcher::new(finder);
        let mut pieces = Vec::new();
        assert_eq!(m.scan([b"pw=abc&", b""], Release::Force, &mut pieces), 7);
        let shape = |pieces: &[Piece]| -> Vec<(usize, bool)> {
            pieces.iter().map(|p| (p.len, p.secret.is_some())).collect()
        };
        assert_eq!(shape(&pieces), [(3, false), (4, true)]);
        pieces.clear();
        assert_eq!(m.scan([b"&next=1\n", b""], Release::End, &mut pieces), 8);
        assert_eq!(shape(&pieces), [(8, false)], "the end, then plain bytes");
    }

    #[test]
    fn a_value_after_a_prefix_ends_at_the_line_or_its_end() {
        let finder = rules(&[
            after(b"AUTH ", None),
            after(b"\"password\":\"", Some(b"\"")),
        ]);
        let stream = b"AUTH s3cr3t\r\n{\"password\":\"p4ss\",\"x\":1}\nAUTH \n";
        for split in 0..stream.len() {
            let (out, _) = record(&finder, stream, &[split, 2], 4);
            assert_eq!(
                out, "AUTH <R0:6>\r\n{\"password\":\"<R1:4>\",\"x\":1}\nAUTH \n",
                "split {split}"
            );
        }
        // A value the stream ends in is a secret to its end.
        let (out, _) = record(&finder, b"AUTH abc", &[3], 100);
        assert_eq!(out, "AUTH <R0:3>");
    }

    #[test]
    fn a_long_value_goes_in_secrets_of_at_most_max_value() {
        let finder = rules(&[after(b"Bearer ", None)]);
        let mut stream = b"Bearer ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', MAX_VALUE + 10));
        stream.extend_from_slice(b"\n");
        let (out, most) = record(&finder, &stream, &[1000; 20], 100);
        assert_eq!(out, format!("Bearer <R0:{MAX_VALUE}><R0:10>\n"));
        assert!(most <= MAX_VALUE + 1000, "{most}");
    }

    #[test]
    fn forced_the_beginning_of_a_literal_goes_as_a_secret_and_its_rest_too() {
        let finder = rules(&[lit(b"hunter22"), after(b"LOGIN ", None)]);
        let mut m = Matcher::new(finder.clone());
        let mut pieces = Vec::new();
        assert_eq!(m.scan([b"x hun", b""], Release::Hold, &mut pieces), 2);
        assert_eq!(m.scan([b"hun", b""], Release::Force, &mut pieces), 3);
        assert_eq!(m.verdict(), None, "not known yet");
        assert_eq!(m.scan([b"ter22 ok", b""], Release::Hold, &mut pieces), 8);
        assert_eq!(m.verdict(), Some(Verdict::Confirmed));
        let secret = |len, tentative| Piece {
            len,
            secret: Some(0),
            tentative,
        };
        let plain = |len| Piece {
            len,
            secret: None,
            tentative: false,
        };
        assert_eq!(
            pieces,
            [plain(2), secret(3, true), secret(5, false), plain(3)]
        );
        // Bytes that only looked like the beginning of one get a verdict
        // too, once the stream shows it (here its end).
        let mut m = Matcher::new(finder.clone());
        pieces.clear();
        assert_eq!(m.scan([b"ok h", b""], Release::Hold, &mut pieces), 3);
        assert_eq!(m.scan([b"h", b""], Release::Force, &mut pieces), 1);
        assert_eq!(m.scan([b"", b""], Release::End, &mut pieces), 0);
        assert_eq!(
            m.verdict(),
            Some(Verdict::Retracted {
                start: 3,
                bytes: b"h".to_vec()
            })
        );
        pieces.clear();
        let mut m = Matcher::new(finder.clone());
        m.scan([b"hu", b""], Release::Force, &mut pieces);
        m.scan([b"n", b""], Release::Force, &mut pieces);
        m.scan([b"tx", b""], Release::Hold, &mut pieces);
        assert_eq!(
            m.verdict(),
            Some(Verdict::Retracted {
                start: 0,
                bytes: b"hun".to_vec()
            })
        );
        // The beginning of a prefix is no secret.
        let mut m = Matcher::new(finder);
        pieces.clear();
        assert_eq!(m.scan([b"LOG", b""], Release::Hold, &mut pieces), 0);
        assert_eq!(m.scan([b"LOG", b""], Release::Force, &mut pieces), 3);
        assert_eq!(pieces, [plain(3)]);
        assert_eq!(m.verdict(), None, "nothing tentative");
    }

    #[test]
    fn a_stream_of_matches_is_released_in_steps() {
        let finder = rules(&[lit(b"abcd")]);
        let stream = b"abcd.".repeat(3 * MAX_FOUND);
        let (out, _) = record(&finder, &stream, &[stream.len()], usize::MAX);
        assert_eq!(out, "<R0:4>.".repeat(3 * MAX_FOUND));
    }

    #[test]
    fn nothing_held_without_a_beginning_of_a_rule() {
        let finder = rules(&[lit(b"zzzz"), after(b"qq", None)]);
        let mut m = Matcher::new(finder);
        let mut pieces = Vec::new();
        let bytes = vec![b'a'; 100_000];
        assert_eq!(
            m.scan(
                [&bytes[..70_000], &bytes[70_000..]],
                Release::Hold,
                &mut pieces
            ),
            100_000
        );
        assert_eq!(
            pieces,
            [Piece {
                len: 100_000,
                secret: None,
                tentative: false,
            }]
        );
    }
}
/// The matcher's speed on random bytes with the bench's five rules:
/// `cargo test --release --lib matcher_speed -- --ignored --nocapture`.
#[cfg(test)]
mod speed {
    use super::*;
    use crate::secrets::{Rule, What};

    #[test]
    #[ignore]
    fn matcher_speed() {
        let rules = Rules::new(vec![
            Rule {
                name: "A".into(),
                what: What::Literal(b"correct-horse-battery-staple".to_vec()),
            },
            Rule {
                name: "B".into(),
                what: What::Literal(b"ghp_0123456789abcdefABCDEF0123456789ab".to_vec()),
            },
            Rule {
                name: "C".into(),
                what: What::Literal(b"sk_live_0123456789abcdef".to_vec()),
            },
            Rule {
                name: "D".into(),
                what: What::After {
                    prefix: b"Authorization: Bearer ".to_vec(),
                    end: End::Line,
                },
            },
            Rule {
                name: "E".into(),
                what: What::After {
                    prefix: b"password=".to_vec(),
                    end: End::Bytes(b"&".to_vec()),
                },
            },
        ])
        .unwrap();
        let mut x: u64 = 42;
        let data: Vec<u8> = (0..64 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let finder = Matcher::finder(&rules);
        let t = std::time::Instant::now();
        let mut out = Vec::new();
        finder.find(&data, 0, usize::MAX, &mut out, 4096);
        println!(
            "find: {:.2} GB/s ({} found)",
            data.len() as f64 / t.elapsed().as_secs_f64() / 1e9,
            out.len()
        );
        let mut m = Matcher::new(finder);
        let t = std::time::Instant::now();
        let mut pieces = Vec::new();
        for chunk in data.chunks(256 << 10) {
            pieces.clear();
            m.scan([chunk, &[]], Release::Hold, &mut pieces);
        }
        println!(
            "matcher: {:.2} GB/s",
            data.len() as f64 / t.elapsed().as_secs_f64() / 1e9
        );
    }
}
