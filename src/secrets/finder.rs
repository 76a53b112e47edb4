//! Finds the rules' patterns (literals and prefixes) in a slice.
//!
//! A recording scans every byte it records, so the scan is the cost that
//! matters: positions are checked 16 or 32 at a time for the first two
//! bytes of any pattern, with vector compares (`sys::pair_positions`);
//! only where such a pair stands are the patterns compared. In random
//! data that is once in 65,536 positions for each pattern.

use super::{End, Rules, What};

/// A pattern: a literal value, or the prefix of a value.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub bytes: Vec<u8>,
    pub rule: usize,
    pub prefix: bool,
}

/// An occurrence of pattern `pattern` at `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub pattern: usize,
}

#[derive(Debug, Clone)]
pub struct Finder {
    pub patterns: Vec<Pattern>,
    /// The patterns' first two bytes, each pair once.
    pairs: Vec<(u8, u8)>,
    /// The ends of values, by rule.
    pub ends: Vec<Option<End>>,
    /// The longest pattern (and end).
    pub longest: usize,
}

impl Finder {
    pub fn new(rules: &Rules) -> Finder {
        let mut patterns = Vec::new();
        let mut ends = Vec::new();
        for (rule, r) in rules.rules().iter().enumerate() {
            match &r.what {
                What::Literal(bytes) => {
                    ends.push(None);
                    patterns.push(Pattern {
                        bytes: bytes.clone(),
                        rule,
                        prefix: false,
                    });
                }
                What::After { prefix, end } => {
                    ends.push(Some(end.clone()));
                    patterns.push(Pattern {
                        bytes: prefix.clone(),
                        rule,
                        prefix: true,
                    });
                }
            }
        }
        let mut pairs: Vec<(u8, u8)> = patterns.iter().map(|p| (p.bytes[0], p.bytes[1])).collect();
        pairs.sort_unstable();
        pairs.dedup();
        Finder {
            patterns,
            pairs,
            ends,
            longest: rules.longest().max(1),
        }
    }

    /// Every occurrence wholly inside `hay` that starts before `before`,
    /// in order of start, at positions offset by `base`, appended to `out`
    /// until it holds `max`. Returns the start where it stopped when it
    /// filled up (occurrences from there on were not looked for).
    pub fn find(
        &self,
        hay: &[u8],
        base: usize,
        before: usize,
        out: &mut Vec<Found>,
        max: usize,
    ) -> Option<usize> {
        let before = before.min(hay.len().saturating_sub(1));
        let mut stopped = None;
        let starts = &hay[..(before + 1).min(hay.len())];
        crate::sys::pair_positions(starts, &self.pairs, &mut |at| {
            let full = self.verify(hay, at, base, out, max);
            if full {
                stopped = Some(base + at);
            }
            full
        });
        stopped
    }

    /// Appends the patterns that occur whole at `at`; true when `out` is
    /// full.
    fn verify(&self, hay: &[u8], at: usize, base: usize, out: &mut Vec<Found>, max: usize) -> bool {
        for (index, pattern) in self.patterns.iter().enumerate() {
            let end = at + pattern.bytes.len();
            if end <= hay.len() && hay[at..end] == pattern.bytes[..] {
                if out.len() == max {
                    return true;
                }
                out.push(Found {
                    start: base + at,
                    end: base + end,
                    pattern: index,
                });
            }
        }
        false
    }

    /// The longest end of `tail` that is the beginning (not the whole) of
    /// a pattern: bytes a pattern could still complete. Its length and
    /// the pattern.
    pub fn partial(&self, tail: &[u8]) -> Option<(usize, usize)> {
        self.partial_of(tail, |_| true)
    }

    /// As `partial`, for the literals only (a prefix's beginning is no
    /// secret, a literal's may be).
    pub fn literal_partial(&self, tail: &[u8]) -> Option<(usize, usize)> {
        self.partial_of(tail, |pattern| !pattern.prefix)
    }

    fn partial_of(&self, tail: &[u8], keep: impl Fn(&Pattern) -> bool) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for (index, pattern) in self.patterns.iter().enumerate().filter(|(_, p)| keep(p)) {
            let most = (pattern.bytes.len() - 1).min(tail.len());
            let longest = (1..=most)
                .rev()
                .find(|&k| tail.ends_with(&pattern.bytes[..k]));
            if let Some(k) = longest
                && best.is_none_or(|(len, _)| k > len)
            {
                best = Some((k, index));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{Rule, Rules};

    fn finder(literals: &[&[u8]]) -> Finder {
        let rules = literals
            .iter()
            .map(|bytes| Rule {
                name: "X".into(),
                what: What::Literal(bytes.to_vec()),
            })
            .collect();
        Finder::new(&Rules::new(rules).unwrap())
    }

    #[test]
    fn finds_every_occurrence_in_and_across_blocks() {
        let f = finder(&[b"pass", b"password", b"word"]);
        let mut hay = vec![b'.'; 100];
        hay[30..38].copy_from_slice(b"password");
        hay[95..99].copy_from_slice(b"pass");
        let mut out = Vec::new();
        assert_eq!(f.find(&hay, 10, usize::MAX, &mut out, 100), None);
        let got: Vec<_> = out.iter().map(|f| (f.start, f.end)).collect();
        assert_eq!(got, [(40, 44), (40, 48), (44, 48), (105, 109)]);
        // Only starts before `before`, and at most `max`.
        out.clear();
        assert_eq!(f.find(&hay, 0, 34, &mut out, 100), None);
        assert_eq!(out.len(), 2);
        out.clear();
        assert_eq!(f.find(&hay, 0, usize::MAX, &mut out, 1), Some(30));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_partial_is_the_longest_beginning_that_ends_the_tail() {
        let f = finder(&[b"hunter2", b"huntress"]);
        assert_eq!(f.partial(b"xx hunt"), Some((4, 0)));
        assert_eq!(f.partial(b"xx hunte"), Some((5, 0)));
        assert_eq!(f.partial(b"xx huntr"), Some((5, 1)));
        assert_eq!(f.partial(b"hunter2"), None, "whole is no partial");
        assert_eq!(f.partial(b"xyz"), None);
        assert_eq!(f.partial(b""), None);
    }
}
