//! The timer wheel: every deadline of the event loop lives here (replay
//! DELAYs, timeouts, accept back-off, resuming a session that yielded).
//!
//! A single-level hashed wheel of `SLOTS` one-tick slots; an entry sits in
//! slot `deadline % SLOTS` with its full deadline, so entries more than a
//! revolution away simply wait there until due. A bitmap of occupied slots
//! lets `poll` and `next_expiry` skip empty stretches.
//!
//! Timers are never cancelled: a session that may outlive its deadline
//! notes its last progress and, when the timer fires, acts or files a new
//! one. Stale timers name a session by slot and number and find nothing.
//!
//! Time is a plain tick count passed in by the caller; the wheel never reads
//! a clock, so its tests never sleep.

const SLOTS: usize = 4096;
const MASK: u64 = SLOTS as u64 - 1;
const WORDS: usize = SLOTS / 64;

pub struct TimerWheel<T> {
    /// Per slot, its entries: (deadline, value).
    slots: Vec<Vec<(u64, T)>>,
    occupied: [u64; WORDS],
    /// Every entry with a deadline before this tick has fired.
    now: u64,
    len: usize,
}

impl<T> TimerWheel<T> {
    pub fn new(now: u64) -> TimerWheel<T> {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            now,
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Files `value` to fire at `deadline`; a deadline already past fires
    /// at the next `poll`.
    pub fn insert(&mut self, deadline: u64, value: T) {
        let deadline = deadline.max(self.now);
        let slot = (deadline & MASK) as usize;
        self.slots[slot].push((deadline, value));
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.len += 1;
    }

    /// Takes the entry at `position` of `slot` out of the wheel.
    fn take(&mut self, slot: usize, position: usize) -> T {
        let (_, value) = self.slots[slot].swap_remove(position);
        if self.slots[slot].is_empty() {
            self.occupied[slot / 64] &= !(1 << (slot % 64));
        }
        self.len -= 1;
        value
    }

    /// One entry whose deadline is at or before `now`, if any. Call until
    /// it returns `None` to drain everything due.
    pub fn poll(&mut self, now: u64) -> Option<T> {
        let now = now.max(self.now);
        loop {
            if self.len == 0 {
                self.now = now;
                return None;
            }
            let slot = (self.now & MASK) as usize;
            if let Some(position) = self.due_in(slot, now) {
                return Some(self.take(slot, position));
            }
            if self.now == now {
                return None;
            }
            // Skip to the next occupied slot, but never past `now`.
            let skip = self
                .distance_to_occupied(slot + 1)
                .map_or(u64::MAX, |d| d + 1);
            self.now = self.now.saturating_add(skip).min(now);
        }
    }

    fn due_in(&self, slot: usize, now: u64) -> Option<usize> {
        if self.occupied[slot / 64] & (1 << (slot % 64)) == 0 {
            return None;
        }
        self.slots[slot]
            .iter()
            .position(|(deadline, _)| *deadline <= now)
    }

    /// Slots from `from` (wrapping) to the first occupied one, if any.
    fn distance_to_occupied(&self, from: usize) -> Option<u64> {
        let from = from % SLOTS;
        // Scan words starting at `from`'s word, masking bits before `from`,
        // and come back around to cover the bits before it last.
        for step in 0..=WORDS {
            let word = (from / 64 + step) % WORDS;
            let mut bits = self.occupied[word];
            if step == 0 {
                bits &= !0u64 << (from % 64);
            } else if step == WORDS {
                bits &= !(!0u64 << (from % 64));
            }
            if bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                return Some(((slot + SLOTS - from) % SLOTS) as u64);
            }
        }
        None
    }

    /// The earliest deadline held, exactly; `None` when empty.
    pub fn next_expiry(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        // Within one revolution an occupied slot at distance d can hold a
        // deadline of exactly `now + d`; the first slot that does wins.
        let start = (self.now & MASK) as usize;
        let mut distance = 0u64;
        while let Some(d) = self.distance_to_occupied(start + distance as usize) {
            let at = distance + d;
            if at >= SLOTS as u64 {
                break;
            }
            let slot = ((start as u64 + at) & MASK) as usize;
            let due = self.now + at;
            let hit = self.slots[slot]
                .iter()
                .any(|(deadline, _)| *deadline <= due);
            if hit {
                return Some(due);
            }
            distance = at + 1;
        }
        // Everything is more than a revolution away: look at them all.
        self.slots
            .iter()
            .flatten()
            .map(|(deadline, _)| *deadline)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn drain(wheel: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut fired = Vec::new();
        while let Some(v) = wheel.poll(now) {
            fired.push(v);
        }
        fired.sort();
        fired
    }

    #[test]
    fn fires_at_the_deadline_not_before() {
        let mut wheel = TimerWheel::new(0);
        wheel.insert(10, 1);
        wheel.insert(5, 2);
        assert_eq!(wheel.next_expiry(), Some(5));
        assert_eq!(drain(&mut wheel, 4), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, 5), vec![2]);
        assert_eq!(wheel.next_expiry(), Some(10));
        assert_eq!(drain(&mut wheel, 9), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, 50), vec![1]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiry(), None);
    }

    #[test]
    fn a_thousand_timers_at_one_tick_all_fire() {
        let mut wheel = TimerWheel::new(0);
        for i in 0..1000 {
            wheel.insert(500, i);
        }
        assert_eq!(wheel.next_expiry(), Some(500));
        assert_eq!(drain(&mut wheel, 500), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn deadline_in_the_past_fires_at_once() {
        let mut wheel = TimerWheel::new(100);
        wheel.insert(3, 7);
        assert_eq!(wheel.next_expiry(), Some(100));
        assert_eq!(drain(&mut wheel, 100), vec![7]);
    }

    #[test]
    fn far_deadlines_fire_on_time_not_a_revolution_early() {
        let mut wheel = TimerWheel::new(0);
        let far = 16_777_215;
        wheel.insert(far, 1);
        wheel.insert(SLOTS as u64 + 3, 2);
        wheel.insert(3, 3);
        assert_eq!(wheel.next_expiry(), Some(3));
        assert_eq!(drain(&mut wheel, 3), vec![3]);
        assert_eq!(wheel.next_expiry(), Some(SLOTS as u64 + 3));
        // Slot 3 comes round again at 4099 without its entry being due.
        assert_eq!(drain(&mut wheel, SLOTS as u64 + 2), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, SLOTS as u64 + 3), vec![2]);
        assert_eq!(wheel.next_expiry(), Some(far));
        assert_eq!(drain(&mut wheel, far - 1), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, far), vec![1]);
    }

    #[test]
    fn exactly_one_revolution_away_shares_the_current_slot() {
        let mut wheel = TimerWheel::new(10);
        let revolution = SLOTS as u64;
        wheel.insert(10 + revolution, 1);
        assert_eq!(wheel.next_expiry(), Some(10 + revolution));
        assert_eq!(drain(&mut wheel, 10), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, 9 + revolution), Vec::<u32>::new());
        assert_eq!(drain(&mut wheel, 10 + revolution), vec![1]);
    }

    #[test]
    fn a_jump_of_hours_is_cheap_and_exact() {
        let mut wheel = TimerWheel::new(0);
        let hours = 5 * 3_600_000;
        wheel.insert(hours, 1);
        assert_eq!(drain(&mut wheel, hours - 1), Vec::<u32>::new());
        wheel.insert(hours + 1, 2);
        assert_eq!(drain(&mut wheel, hours + 1), vec![1, 2]);
    }

    #[test]
    fn insert_at_the_current_tick_after_a_poll_still_fires() {
        let mut wheel = TimerWheel::new(0);
        assert_eq!(wheel.poll(40), None);
        wheel.insert(40, 9);
        assert_eq!(wheel.next_expiry(), Some(40));
        assert_eq!(drain(&mut wheel, 40), vec![9]);
    }

    /// Random inserts and polls against a sorted-map model.
    #[test]
    fn matches_a_simple_model() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut wheel = TimerWheel::new(0);
        let mut model: BTreeMap<u32, u64> = BTreeMap::new();
        let mut now = 0u64;
        for value in 0..20_000u32 {
            match next(3) {
                0 | 1 => {
                    let horizon = [10, 5_000, 50_000][next(3) as usize];
                    let deadline = now + next(horizon);
                    wheel.insert(deadline, value);
                    model.insert(value, deadline);
                }
                _ => {
                    now += next(3_000);
                    let fired = drain(&mut wheel, now);
                    let due: Vec<u32> = model
                        .iter()
                        .filter(|(_, d)| **d <= now)
                        .map(|(v, _)| *v)
                        .collect();
                    assert_eq!(fired, due, "at {now}");
                    model.retain(|_, d| *d > now);
                }
            }
            assert_eq!(wheel.len(), model.len());
            assert_eq!(
                wheel.next_expiry(),
                model.values().min().map(|d| (*d).max(now))
            );
        }
    }
}
