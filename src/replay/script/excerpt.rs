//! What a mismatch report shows of the bytes received: those around the
//! departure, with the peer's secrets starred out. A report goes to the
//! terminal and to `--report` files: a password the client sent earlier in
//! the same read must not go with it.

use std::collections::VecDeque;

use super::{CONTEXT_AFTER, CONTEXT_BEFORE, Excerpt};

/// At most this many secrets are remembered: more, all within the
/// context an excerpt shows, are starred as one stretch.
const KEPT: usize = 16;

/// Where the peer's secrets were in its live stream lately: as far back as
/// an excerpt can reach.
#[derive(Debug, Default)]
pub struct SecretsSeen {
    /// Live stream offsets `[from, to)`, oldest first.
    ranges: VecDeque<(u64, u64)>,
}

impl SecretsSeen {
    /// The peer's bytes `[from, to)` of its live stream were a secret.
    pub fn note(&mut self, from: u64, to: u64) {
        // A later excerpt starts at most CONTEXT_BEFORE bytes before `to`.
        let reach = to.saturating_sub(CONTEXT_BEFORE as u64);
        self.ranges.retain(|&(_, end)| end > reach);
        if self.ranges.len() == KEPT
            && let Some((first, _)) = self.ranges.pop_front()
            && let Some(next) = self.ranges.front_mut()
        {
            next.0 = first;
        }
        self.ranges.push_back((from, to));
    }

    /// The bytes of `data` around index `at`, which is live offset
    /// `offset`; the secrets seen, and `open` (a secret still arriving,
    /// from its live offset), starred.
    pub fn excerpt(&self, data: &[u8], at: usize, offset: u64, open: Option<u64>) -> Excerpt {
        let start = at.saturating_sub(CONTEXT_BEFORE);
        let end = data.len().min(at + CONTEXT_AFTER);
        let mut bytes = data[start..end].to_vec();
        // Live offset of bytes[0].
        let base = offset.saturating_sub((at - start) as u64);
        let open = open.map(|from| (from, offset));
        for (from, to) in self.ranges.iter().copied().chain(open) {
            // A departure right where a secret ends (or inside one): the
            // value may go on, a longer password than the one known, so
            // nothing after it is shown either.
            let to = if to == offset { u64::MAX } else { to };
            let from = from.saturating_sub(base).min(bytes.len() as u64) as usize;
            let to = to.saturating_sub(base).min(bytes.len() as u64) as usize;
            if from < to {
                bytes[from..to].fill(b'*');
            }
        }
        Excerpt {
            bytes,
            mismatch: at - start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_reach_are_starred_and_the_rest_shown() {
        let mut seen = SecretsSeen::default();
        seen.note(5, 8);
        // "abcde" at live 0..5, "pw!" at 5..8, then the departure at 10.
        let data = b"abcdepw!xyQRS";
        let e = seen.excerpt(data, 10, 10, None);
        assert_eq!(e.bytes, b"abcde***xyQRS");
        assert_eq!(e.mismatch, 10);
        // The data seen from live offset 6 on (part of the secret).
        let e = seen.excerpt(&data[6..], 4, 10, None);
        assert_eq!(e.bytes, b"**xyQRS");
        // A secret still arriving is starred, and all after it: where a
        // value other than the known one ends is not known.
        let e = SecretsSeen::default().excerpt(b"ab123", 4, 4, Some(2));
        assert_eq!(e.bytes, b"ab***");
        // So is all after a secret the departure comes right after (a
        // longer password than the one the replay knows).
        let e = seen.excerpt(b"abcdepw!-tail", 8, 8, None);
        assert_eq!(e.bytes, b"abcde********");
    }

    #[test]
    fn what_no_excerpt_can_reach_is_forgotten_and_many_secrets_merge() {
        let mut seen = SecretsSeen::default();
        seen.note(0, 4);
        seen.note(1000, 1004);
        assert_eq!(seen.ranges, [(1000, 1004)]);
        for i in 0..40 {
            seen.note(1010 + i * 2, 1011 + i * 2);
        }
        assert_eq!(seen.ranges.len(), KEPT);
        let (first, _) = seen.ranges[0];
        assert!(first <= 1010 + 24 * 2, "merged, not dropped: {first}");
    }
}
