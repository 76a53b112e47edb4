//! Aligning two byte streams: which bytes of one are the same bytes of the
//! other, in order (a diff). Bounded in time and memory whatever the input:
//!
//! - the common prefix and suffix are taken first, in linear time (two
//!   recordings of one scenario often differ in a single place);
//! - a stretch of at most `MYERS_LIMIT` bytes goes to Myers' algorithm,
//!   which finds a shortest edit script of its tokens (runs of letters and
//!   digits, and each other byte alone: bytes of two numbers never align
//!   with each other across the ` AT ` between them), and gives up after
//!   `MAX_EDITS` edits (its memory is about `MAX_EDITS`² / 2 words, never
//!   more);
//! - a longer stretch, or one with too many edits, is cut at anchors:
//!   32-byte strings found exactly once in each side, in the same order
//!   on both (sampled by content, so both sides sample the same strings),
//!   and the pieces between are aligned the same way, a few levels deep;
//! - what is left is taken as all different.

use std::collections::HashMap;
use std::ops::Range;

/// Bytes that are the same in both streams: `a[a..a + len] == b[b..b + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub a: usize,
    pub b: usize,
    pub len: usize,
}

/// The edits after which Myers' algorithm gives up on a stretch.
const MAX_EDITS: usize = 1024;
/// The longest stretch (both sides together) given to Myers' algorithm.
const MYERS_LIMIT: usize = 64 * 1024;
/// The length of an anchor.
const ANCHOR: usize = 32;
/// Levels of cutting at anchors before a stretch counts as all different.
const MAX_DEPTH: u32 = 6;
/// About how many anchors a stretch is sampled for.
const SAMPLES: usize = 4096;

/// The blocks of bytes `a` and `b` have in common, in order in both, none
/// empty and no two touching.
pub fn align(a: &[u8], b: &[u8]) -> Vec<Block> {
    let mut blocks = Vec::new();
    align_into(a, b, (0, 0), 0, &mut blocks);
    coalesce(blocks)
}

/// Aligns `a` and `b`, which start at `at` of the whole streams.
fn align_into(a: &[u8], b: &[u8], at: (usize, usize), depth: u32, out: &mut Vec<Block>) {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    push(out, at.0, at.1, prefix);
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - suffix], &b[..b.len() - suffix]);
    let at = (at.0 + prefix, at.1 + prefix);
    middle(a, b, at, depth, out);
    push(out, at.0 + a.len(), at.1 + b.len(), suffix);
}

fn push(out: &mut Vec<Block>, a: usize, b: usize, len: usize) {
    if len > 0 {
        out.push(Block { a, b, len });
    }
}

/// Aligns two stretches that differ at both ends.
fn middle(a: &[u8], b: &[u8], at: (usize, usize), depth: u32, out: &mut Vec<Block>) {
    if a.is_empty() || b.is_empty() {
        return;
    }
    let short = a.len() + b.len() <= MYERS_LIMIT;
    if let Some(blocks) = short.then(|| by_tokens(a, b, MAX_EDITS)).flatten() {
        for block in blocks {
            push(out, at.0 + block.a, at.1 + block.b, block.len);
        }
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let anchors = anchors(a, b);
    if anchors.is_empty() {
        return;
    }
    let (mut from_a, mut from_b) = (0, 0);
    for (x, y) in anchors {
        let before = (at.0 + from_a, at.1 + from_b);
        align_into(&a[from_a..x], &b[from_b..y], before, depth + 1, out);
        push(out, at.0 + x, at.1 + y, ANCHOR);
        (from_a, from_b) = (x + ANCHOR, y + ANCHOR);
    }
    let rest = (at.0 + from_a, at.1 + from_b);
    align_into(&a[from_a..], &b[from_b..], rest, depth + 1, out);
}

/// Blocks in order, touching ones joined.
fn coalesce(blocks: Vec<Block>) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::with_capacity(blocks.len());
    for block in blocks {
        match out.last_mut() {
            Some(last) if last.a + last.len == block.a && last.b + last.len == block.b => {
                last.len += block.len;
            }
            _ => out.push(block),
        }
    }
    out
}

/// The blocks of a shortest edit script of `a`'s and `b`'s tokens; `None`
/// after `max_edits` edits.
fn by_tokens(a: &[u8], b: &[u8], max_edits: usize) -> Option<Vec<Block>> {
    let (x, y) = (tokens(a), tokens(b));
    let same = |i: usize, j: usize| a[x[i].clone()] == b[y[j].clone()];
    let blocks = diff(x.len(), y.len(), max_edits, same)?;
    Some(
        blocks
            .into_iter()
            .map(|block| {
                let (first_a, last_a) = (&x[block.a], &x[block.a + block.len - 1]);
                Block {
                    a: first_a.start,
                    b: y[block.b].start,
                    len: last_a.end - first_a.start,
                }
            })
            .collect(),
    )
}

/// How many tokens of `bytes` (`tokens`) lie wholly in `range`: a token
/// that the range cuts does not count.
pub fn tokens_in(bytes: &[u8], range: Range<usize>) -> usize {
    let word = |i: usize| bytes[i].is_ascii_alphanumeric();
    let mut at = range.start;
    // The rest of a word the range starts inside.
    while at > 0 && at < range.end && word(at) && word(at - 1) {
        at += 1;
    }
    let mut count = 0;
    while at < range.end {
        let mut end = at + 1;
        if word(at) {
            while end < bytes.len() && word(end) {
                end += 1;
            }
        }
        count += usize::from(end <= range.end);
        at = end;
    }
    count
}

/// `bytes` cut into tokens: runs of ASCII letters and digits, and each
/// other byte alone.
fn tokens(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for (i, byte) in bytes.iter().enumerate() {
        match out.last_mut() {
            Some(last)
                if byte.is_ascii_alphanumeric() && bytes[last.start].is_ascii_alphanumeric() =>
            {
                last.end = i + 1
            }
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// Myers' shortest edit script of two sequences of `n` and `m` items,
/// `same(x, y)` telling whether item `x` of the first is item `y` of the
/// second, with the trace of each round kept for the walk back; `None`
/// after `max_edits` edits.
pub fn diff(
    n: usize,
    m: usize,
    max_edits: usize,
    mut same: impl FnMut(usize, usize) -> bool,
) -> Option<Vec<Block>> {
    let max = (n + m).min(max_edits) as isize;
    let (n, m) = (n as isize, m as isize);
    // v[k + offset]: the furthest x reached on diagonal k = x - y.
    let offset = max + 1;
    let mut v = vec![0isize; 2 * max as usize + 3];
    // The part of `v` each round starts with (diagonals -d..=d of round d).
    let mut trace: Vec<u32> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    for d in 0..=max {
        starts.push(trace.len());
        trace.extend((-d..=d).map(|k| v[(k + offset) as usize] as u32));
        for k in (-d..=d).step_by(2) {
            let i = (k + offset) as usize;
            let mut x = if k == -d || (k != d && v[i - 1] < v[i + 1]) {
                v[i + 1]
            } else {
                v[i - 1] + 1
            };
            let mut y = x - k;
            while x < n && y < m && same(x as usize, y as usize) {
                x += 1;
                y += 1;
            }
            v[i] = x;
            if x >= n && y >= m {
                return Some(walk_back(&trace, &starts, n, m, d));
            }
        }
    }
    None
}

/// The blocks of the edit script found in round `edits`, from the trace.
fn walk_back(trace: &[u32], starts: &[usize], n: isize, m: isize, edits: isize) -> Vec<Block> {
    let mut blocks = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (0..=edits).rev() {
        let v = |k: isize| trace[starts[d as usize] + (k + d) as usize] as isize;
        let k = x - y;
        let prev_k = if k == -d || (k != d && v(k - 1) < v(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let (prev_x, prev_y) = if d == 0 {
            (0, 0)
        } else {
            let prev_x = v(prev_k);
            (prev_x, prev_x - prev_k)
        };
        // The snake of this round, back to the edit that started it.
        let mut run = 0;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            run += 1;
        }
        if run > 0 {
            blocks.push(Block {
                a: x as usize,
                b: y as usize,
                len: run,
            });
        }
        (x, y) = (prev_x, prev_y);
    }
    blocks.reverse();
    blocks
}

/// Positions `(in a, in b)` of anchors, increasing in both and not
/// overlapping: 32-byte strings sampled by content that occur once in
/// each side.
fn anchors(a: &[u8], b: &[u8]) -> Vec<(usize, usize)> {
    if a.len() < ANCHOR || b.len() < ANCHOR {
        return Vec::new();
    }
    // About SAMPLES samples a side, one every 8 bytes at most: positions
    // whose hash has its low bits zero.
    let every = (a.len().max(b.len()) / SAMPLES).clamp(8, 1 << 20);
    let mask = every.next_power_of_two() as u64 - 1;
    let in_a = samples(a, mask);
    let in_b = samples(b, mask);
    let mut pairs: Vec<(usize, usize)> = in_a
        .iter()
        .filter_map(|(hash, &(count, x))| {
            let &(count_b, y) = in_b.get(hash)?;
            (count == 1 && count_b == 1 && a[x..x + ANCHOR] == b[y..y + ANCHOR]).then_some((x, y))
        })
        .collect();
    pairs.sort_unstable();
    let mut chain = increasing(&pairs);
    // Anchors that overlap the one before are dropped.
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(chain.len());
    for (x, y) in chain.drain(..) {
        match kept.last() {
            Some(&(px, py)) if x < px + ANCHOR || y < py + ANCHOR => {}
            _ => kept.push((x, y)),
        }
    }
    kept
}

/// For each sampled hash of a 32-byte window: how often it occurs (1 or
/// more) and where it first does.
fn samples(bytes: &[u8], mask: u64) -> HashMap<u64, (u32, usize)> {
    const BASE: u64 = 0x100_0000_01b3;
    let top = (0..ANCHOR - 1).fold(1u64, |p, _| p.wrapping_mul(BASE));
    let mut hash = bytes[..ANCHOR].iter().fold(0u64, |h, &byte| {
        h.wrapping_mul(BASE).wrapping_add(u64::from(byte))
    });
    let mut found: HashMap<u64, (u32, usize)> = HashMap::new();
    for at in 0..=bytes.len() - ANCHOR {
        if at > 0 {
            let gone = u64::from(bytes[at - 1]).wrapping_mul(top);
            hash = hash
                .wrapping_sub(gone)
                .wrapping_mul(BASE)
                .wrapping_add(u64::from(bytes[at + ANCHOR - 1]));
        }
        let mixed = mix(hash);
        if mixed & mask == 0 {
            let entry = found.entry(mixed).or_insert((0, at));
            entry.0 = entry.0.saturating_add(1);
        }
    }
    found
}

/// Spreads a polynomial hash's bits, whose low bits alone say little.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The longest chain of `pairs` (sorted by their first) whose seconds
/// increase too: patience sorting, O(n log n).
fn increasing(pairs: &[(usize, usize)]) -> Vec<(usize, usize)> {
    // tails[i]: index of the pair ending the best chain of length i + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut before: Vec<Option<usize>> = vec![None; pairs.len()];
    for (i, &(_, y)) in pairs.iter().enumerate() {
        let len = tails.partition_point(|&t| pairs[t].1 < y);
        before[i] = len.checked_sub(1).map(|l| tails[l]);
        if len == tails.len() {
            tails.push(i);
        } else {
            tails[len] = i;
        }
    }
    let mut chain = Vec::with_capacity(tails.len());
    let mut at = tails.last().copied();
    while let Some(i) = at {
        chain.push(pairs[i]);
        at = before[i];
    }
    chain.reverse();
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that the blocks are a valid alignment of `a` and `b`.
    fn check(a: &[u8], b: &[u8], blocks: &[Block]) {
        let (mut end_a, mut end_b) = (0, 0);
        for block in blocks {
            assert!(block.len > 0);
            assert!(block.a >= end_a && block.b >= end_b, "{blocks:?}");
            assert_eq!(
                a[block.a..block.a + block.len],
                b[block.b..block.b + block.len]
            );
            (end_a, end_b) = (block.a + block.len, block.b + block.len);
        }
    }

    fn matched(blocks: &[Block]) -> usize {
        blocks.iter().map(|block| block.len).sum()
    }

    fn myers(a: &[u8], b: &[u8], max_edits: usize) -> Option<Vec<Block>> {
        diff(a.len(), b.len(), max_edits, |x, y| a[x] == b[y])
    }

    fn aligned(a: &[u8], b: &[u8]) -> Vec<Block> {
        let blocks = align(a, b);
        check(a, b, &blocks);
        blocks
    }

    #[test]
    fn equal_and_empty_streams() {
        assert_eq!(aligned(b"abc", b"abc"), [Block { a: 0, b: 0, len: 3 }]);
        assert_eq!(aligned(b"", b"abc"), []);
        assert_eq!(aligned(b"abc", b""), []);
        assert_eq!(aligned(b"", b""), []);
    }

    #[test]
    fn a_changed_value_leaves_the_rest_aligned() {
        let a = b"Date: Wed, 25 Nov 2026 09:31:29 GMT\r\nServer: x\r\n";
        let b = b"Date: Thu, 03 Dec 2026 17:02:11 GMT\r\nServer: x\r\n";
        let blocks = aligned(a, b);
        assert_eq!(blocks.first(), Some(&Block { a: 0, b: 0, len: 6 }));
        // " GMT\r\nServer: x\r\n" and the digit before it.
        let last = blocks.last().unwrap();
        assert_eq!((last.a + last.len, last.b + last.len), (a.len(), b.len()));
        assert!(last.len >= 16, "{blocks:?}");
    }

    #[test]
    fn insertions_and_deletions_shift_the_other_side() {
        let a = b"id=<abc@x> rest";
        let b = b"id=<abcdefg@x> rest";
        assert_eq!(
            aligned(a, b),
            [
                Block { a: 0, b: 0, len: 7 },
                Block {
                    a: 7,
                    b: 11,
                    len: 8
                }
            ]
        );
        // Two places, with the common parts between them found.
        let a = b"one=1 two=22 three";
        let b = b"one=111 two=2 three";
        let blocks = aligned(a, b);
        assert_eq!(matched(&blocks), a.len() - 1);
    }

    #[test]
    fn myers_finds_a_shortest_script() {
        let blocks = myers(b"ABCABBA", b"CBABAC", 100).unwrap();
        check(b"ABCABBA", b"CBABAC", &blocks);
        // The classic example: 5 edits, so 4 bytes in common.
        assert_eq!(matched(&blocks), 4);
        assert!(myers(b"aaaa", b"bbbb", 7).is_none(), "8 edits needed");
        assert!(myers(b"aaaa", b"bbbb", 8).is_some());
    }

    #[test]
    fn numbers_align_by_their_tokens() {
        // Byte by byte, the digits of the two numbers agree more than the
        // ` AT ` between them: tokens keep the ` AT `.
        let a = b"ECHO 4 AT 715063793530168\r\n";
        let b = b"ECHO 701373157 AT 929469001308695\r\n";
        let blocks = aligned(a, b);
        assert!(
            blocks.contains(&Block {
                a: 6,
                b: 14,
                len: 4
            }),
            "{blocks:?}"
        );
        assert_eq!(matched(&blocks), 5 + 4 + 2);
    }

    #[test]
    fn tokens_wholly_in_a_range() {
        let bytes = b"ID 412\r\n";
        assert_eq!(tokens_in(bytes, 0..bytes.len()), 5);
        assert_eq!(tokens_in(bytes, 0..5), 2, "412 is cut");
        assert_eq!(tokens_in(bytes, 1..8), 4, "ID is cut");
        assert_eq!(tokens_in(bytes, 3..3), 0);
    }

    #[test]
    fn long_streams_are_cut_at_anchors() {
        // 1 MiB of varied bytes, with a few changes spread over it: far too
        // long for Myers' algorithm as a whole.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let a: Vec<u8> = (0..1 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut b = a.clone();
        for at in [1000, 300_000, 700_000] {
            b[at] ^= 0xff;
        }
        b.splice(500_000..500_000, *b"inserted");
        let blocks = aligned(&a, &b);
        assert_eq!(matched(&blocks), a.len() - 3);
    }

    #[test]
    fn streams_with_nothing_in_common_stay_bounded() {
        // Different everywhere and too long for Myers': no anchors, so all
        // different, quickly.
        let a = vec![b'a'; 200_000];
        let b = vec![b'b'; 200_000];
        let start = std::time::Instant::now();
        assert_eq!(aligned(&a, &b), []);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn anchors_form_an_increasing_chain() {
        let pairs = [(0, 5), (1, 1), (2, 2), (3, 0), (4, 3)];
        assert_eq!(increasing(&pairs), [(1, 1), (2, 2), (4, 3)]);
        assert_eq!(increasing(&[]), []);
    }
}
