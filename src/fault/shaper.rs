//! The pace of one direction's bytes: how many may go now, and when the
//! next may. A state machine without I/O: the owner says what it has to
//! send and since when (`allow`), what went (`sent`), and passes the clock
//! in, so every rule is tested with made-up ticks.
//!
//! - latency: bytes offered at tick `t` go at `t + ms` (± a draw of
//!   `jitter`); bytes offered later than others never overtake them;
//! - bandwidth: a link that is free again `n / rate` seconds after `n`
//!   bytes went; an idle link saves up no credit;
//! - slices: at most so many bytes a write (each slice's size drawn
//!   within `vary` of it), `gap` ms apart.

use std::collections::VecDeque;

use super::mix;

/// Bursts of offered bytes kept apart at most: beyond, a new burst joins
/// the last one (its bytes then wait for the later of the two).
const MAX_MARKS: usize = 64;
/// Writes of slices per turn at most: 1-byte slices of a large answer
/// would otherwise keep the loop from every other session.
const MAX_SLICES_PER_TURN: u32 = 256;
/// A bandwidth lets this many milliseconds' worth of bytes go at once.
const QUANTUM_MS: u64 = 10;

/// The shaping in force for a direction: every active fault's, combined
/// (latencies add up, the narrowest bandwidth and slice hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pace {
    pub latency: u64,
    pub jitter: u64,
    pub rate: Option<u64>,
    pub slice: Option<u64>,
    pub gap: u64,
    pub vary: u64,
    pub slow_close: u64,
}

impl Pace {
    pub fn is_free(&self) -> bool {
        *self == Pace::default()
    }
}

/// Bytes offered together: the stream up to `end`, available since
/// `since`, with their draw of the jitter (-1 to 1).
#[derive(Debug, Clone, Copy)]
struct Mark {
    end: u64,
    since: u64,
    draw: f64,
}

#[derive(Debug)]
pub struct Shaper {
    marks: VecDeque<Mark>,
    /// The end of what was offered so far.
    offered: u64,
    /// In microseconds: when the link is free for more bytes.
    link_free_us: u64,
    /// The tick the next slice may go.
    slice_at: u64,
    /// Slices written this turn.
    slices: u32,
    /// The size of the slice due next, once drawn.
    slice_size: Option<u64>,
    /// Since when the half-close waits to go.
    eof_since: Option<u64>,
    seed: u64,
    draws: u64,
}

impl Shaper {
    pub fn new(seed: u64) -> Shaper {
        Shaper {
            marks: VecDeque::new(),
            offered: 0,
            link_free_us: 0,
            slice_at: 0,
            slices: 0,
            slice_size: None,
            eof_since: None,
            seed,
            draws: 0,
        }
    }

    /// A new turn of the owner: its slices are counted afresh.
    pub fn new_turn(&mut self) {
        self.slices = 0;
    }

    /// Bytes of the stream up to `end` are ready, since tick `since`.
    fn offer(&mut self, end: u64, since: u64) {
        if end <= self.offered {
            return;
        }
        self.offered = end;
        let full = self.marks.len() == MAX_MARKS;
        match self.marks.back_mut() {
            Some(last) if last.since >= since || full => {
                last.end = end;
                last.since = last.since.max(since);
            }
            _ => {
                self.draws += 1;
                let draw = super::unit(mix(self.seed, self.draws)) * 2.0 - 1.0;
                self.marks.push_back(Mark { end, since, draw });
            }
        }
    }

    /// When a mark's bytes may go, under `pace`. Ticks are whole
    /// milliseconds rounded down: bytes ready at tick `t` were ready at
    /// most a tick later than `t`, so they are due a tick after `t` plus
    /// the latency, and never go early.
    fn due(mark: &Mark, pace: &Pace) -> u64 {
        let shift = pace.jitter as f64 * mark.draw;
        let at = (mark.since + pace.latency) as f64 + shift;
        (at.max(mark.since as f64)) as u64 + 1
    }

    /// How many bytes from `done` may go at tick `now`, with the stream
    /// ready up to `end` since `since`: `Ok(n)` (at least one; `u64::MAX`
    /// for any number), or `Err(tick)` to ask again then (`now` itself:
    /// after the others had their turn).
    pub fn allow(
        &mut self,
        pace: &Pace,
        (done, end): (u64, u64),
        since: u64,
        now: u64,
    ) -> Result<u64, u64> {
        self.offer(end, since);
        while self.marks.front().is_some_and(|m| m.end <= done) {
            self.marks.pop_front();
        }
        let mut n = u64::MAX;
        if pace.latency > 0 || pace.jitter > 0 {
            let mut floor = 0;
            let mut due_end = None;
            for mark in &self.marks {
                let due = Self::due(mark, pace).max(floor);
                floor = due;
                if due > now {
                    break;
                }
                due_end = Some(mark.end);
            }
            match due_end {
                Some(due_end) => n = due_end - done,
                None => return Err(floor),
            }
        }
        if let Some(rate) = pace.rate {
            // Within the current tick counts as free: the wheel's ticks
            // are whole milliseconds, and rounding up at every wake would
            // slow the link by up to a tick a wake.
            if self.link_free_us >= (now + 1) * 1000 {
                return Err(self.link_free_us / 1000);
            }
            n = n.min((rate * QUANTUM_MS / 1000).max(1));
        }
        if let Some(slice) = pace.slice {
            if self.slice_at > now {
                return Err(self.slice_at);
            }
            if self.slices >= MAX_SLICES_PER_TURN {
                return Err(now);
            }
            n = n.min(self.slice_size(slice, pace.vary));
        }
        Ok(n)
    }

    /// `n` bytes went at tick `now`.
    pub fn sent(&mut self, pace: &Pace, n: u64, now: u64) {
        if let Some(rate) = pace.rate {
            let cost = (u128::from(n) * 1_000_000 / u128::from(rate.max(1))) as u64;
            self.link_free_us = self.link_free_us.max(now * 1000).saturating_add(cost);
        }
        if pace.slice.is_some() {
            self.slices += 1;
            self.slice_at = now + pace.gap;
            self.slice_size = None;
        }
    }

    /// The size of the slice due next: `slice` ± up to `vary` (at least
    /// 1), drawn once per slice from the seed.
    fn slice_size(&mut self, slice: u64, vary: u64) -> u64 {
        if vary == 0 {
            return slice;
        }
        *self.slice_size.get_or_insert_with(|| {
            self.draws += 1;
            let low = slice.saturating_sub(vary).max(1);
            let sizes = slice.saturating_add(vary) - low + 1;
            let offset = (super::unit(mix(self.seed, self.draws)) * sizes as f64) as u64;
            low + offset.min(sizes - 1)
        })
    }

    /// Whether the half-close, ready since `since`, may go at `now`:
    /// `Err(tick)` when it must wait (latency, slow_close).
    pub fn allow_eof(&mut self, pace: &Pace, since: u64, now: u64) -> Result<(), u64> {
        let since = *self.eof_since.get_or_insert(since);
        let hold = pace.latency + pace.slow_close;
        if hold == 0 {
            return Ok(());
        }
        // A tick late rather than early, as for bytes (`due`).
        let due = since + hold + 1;
        match due > now {
            true => Err(due),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(ms: u64, jitter: u64) -> Pace {
        Pace {
            latency: ms,
            jitter,
            ..Pace::default()
        }
    }

    #[test]
    fn latency_holds_a_burst_until_its_time_then_lets_it_all_go() {
        let pace = latency(200, 0);
        let mut s = Shaper::new(0);
        // A tick more than the latency: tick 1000 may have been 1000.9.
        assert_eq!(s.allow(&pace, (0, 100), 1000, 1000), Err(1201));
        assert_eq!(s.allow(&pace, (0, 100), 1000, 1200), Err(1201));
        assert_eq!(s.allow(&pace, (0, 100), 1000, 1201), Ok(100));
        s.sent(&pace, 60, 1201);
        // The rest of the same burst goes at once, whenever asked.
        assert_eq!(s.allow(&pace, (60, 100), 1000, 1250), Ok(40));
    }

    #[test]
    fn latency_keeps_later_bursts_behind_earlier_ones() {
        let pace = latency(100, 0);
        let mut s = Shaper::new(0);
        assert_eq!(s.allow(&pace, (0, 10), 0, 0), Err(101));
        // More bytes, ready later: they wait for their own time.
        assert_eq!(s.allow(&pace, (0, 30), 50, 101), Ok(10));
        s.sent(&pace, 10, 101);
        assert_eq!(s.allow(&pace, (10, 30), 50, 120), Err(151));
        assert_eq!(s.allow(&pace, (10, 30), 50, 151), Ok(20));
    }

    #[test]
    fn jitter_moves_each_burst_within_its_bounds_and_never_before_it_was_ready() {
        let pace = latency(200, 50);
        let mut s = Shaper::new(7);
        let mut dues = Vec::new();
        for burst in 0..50u64 {
            let since = burst * 1000;
            let due = s
                .allow(&pace, (burst * 10, burst * 10 + 10), since, since)
                .unwrap_err();
            assert!((since + 151..=since + 251).contains(&due), "{due}");
            dues.push(due - since - 1);
            s.allow(&pace, (burst * 10, burst * 10 + 10), since, due)
                .unwrap();
            s.sent(&pace, 10, due);
        }
        assert!(dues.iter().any(|&d| d < 200) && dues.iter().any(|&d| d > 200));
        let mut wide = Shaper::new(1);
        let due = wide.allow(&latency(0, 500), (0, 1), 10, 10);
        assert!(matches!(due, Ok(_) | Err(11..=511)), "{due:?}");
    }

    #[test]
    fn bursts_beyond_the_limit_join_the_last_one() {
        let pace = latency(10, 0);
        let mut s = Shaper::new(0);
        for t in 0..(MAX_MARKS as u64 + 10) {
            let _ = s.allow(&pace, (0, t + 1), t, t);
        }
        assert_eq!(s.marks.len(), MAX_MARKS);
        let last = s.marks.back().unwrap();
        assert_eq!(
            (last.end, last.since),
            (MAX_MARKS as u64 + 10, MAX_MARKS as u64 + 9)
        );
    }

    #[test]
    fn bandwidth_paces_writes_to_its_rate() {
        let pace = Pace {
            rate: Some(100_000),
            ..Pace::default()
        };
        let mut s = Shaper::new(0);
        let mut now = 0;
        let mut done = 0;
        let total = 1_000_000;
        while done < total {
            match s.allow(&pace, (done, total), 0, now) {
                Ok(n) => {
                    let n = n.min(total - done);
                    s.sent(&pace, n, now);
                    done += n;
                }
                Err(at) => {
                    assert!(at > now, "a wait is in the future");
                    now = at;
                }
            }
        }
        // 10 s for 1 MB at 100 kB/s, give or take the first burst.
        assert!((9_980..=10_000).contains(&now), "{now}");
        // An idle link saves no credit.
        assert_eq!(
            s.allow(&pace, (done, done + 5000), now, now + 5000),
            Ok(1000)
        );
        s.sent(&pace, 1000, now + 5000);
        assert_eq!(
            s.allow(&pace, (done + 1000, done + 5000), now, now + 5000),
            Err(now + 5010)
        );
    }

    #[test]
    fn slices_go_one_write_at_a_time_with_their_gap() {
        let pace = Pace {
            slice: Some(3),
            gap: 5,
            ..Pace::default()
        };
        let mut s = Shaper::new(0);
        assert_eq!(s.allow(&pace, (0, 10), 0, 0), Ok(3));
        s.sent(&pace, 3, 0);
        assert_eq!(s.allow(&pace, (3, 10), 0, 1), Err(5));
        assert_eq!(s.allow(&pace, (3, 10), 0, 5), Ok(3));
        let no_gap = Pace { gap: 0, ..pace };
        let mut s = Shaper::new(0);
        for _ in 0..MAX_SLICES_PER_TURN {
            assert_eq!(s.allow(&no_gap, (0, 10_000), 0, 7), Ok(3));
            s.sent(&no_gap, 3, 7);
        }
        assert_eq!(
            s.allow(&no_gap, (0, 10_000), 0, 7),
            Err(7),
            "yield: others' turn"
        );
        s.new_turn();
        assert_eq!(s.allow(&no_gap, (0, 10_000), 0, 7), Ok(3));
    }

    #[test]
    fn varied_slices_keep_their_size_until_sent_and_stay_within_bounds() {
        let pace = Pace {
            slice: Some(8),
            vary: 4,
            ..Pace::default()
        };
        let sizes = |seed| {
            let mut s = Shaper::new(seed);
            let mut sizes = Vec::new();
            let mut done = 0;
            while done < 4000 {
                let n = s.allow(&pace, (done, 1 << 20), 0, 0).unwrap();
                // Asked again before it went: the same slice.
                assert_eq!(s.allow(&pace, (done, 1 << 20), 0, 0), Ok(n));
                s.sent(&pace, n, 0);
                s.new_turn();
                sizes.push(n);
                done += n;
            }
            sizes
        };
        let drawn = sizes(7);
        assert!(drawn.iter().all(|&n| (4..=12).contains(&n)), "{drawn:?}");
        for n in 4..=12 {
            assert!(drawn.contains(&n), "{n} never drawn: {drawn:?}");
        }
        assert_eq!(drawn, sizes(7), "the same seed, the same slices");
        assert_ne!(drawn, sizes(8));
        // A variation wider than the slice: at least one byte.
        let wide = Pace { vary: 20, ..pace };
        let mut s = Shaper::new(3);
        for _ in 0..200 {
            let n = s.allow(&wide, (0, 1 << 20), 0, 0).unwrap();
            assert!((1..=28).contains(&n), "{n}");
            s.sent(&wide, n, 0);
            s.new_turn();
        }
    }

    #[test]
    fn the_half_close_waits_its_latency_and_slow_close() {
        let pace = Pace {
            latency: 10,
            slow_close: 30,
            ..Pace::default()
        };
        let mut s = Shaper::new(0);
        assert_eq!(s.allow_eof(&pace, 100, 100), Err(141));
        // Asked again later, it still counts from when it was first ready.
        assert_eq!(s.allow_eof(&pace, 120, 140), Err(141));
        assert_eq!(s.allow_eof(&pace, 120, 141), Ok(()));
        assert_eq!(Shaper::new(0).allow_eof(&Pace::default(), 5, 5), Ok(()));
    }
}
