//! The byte ring of the zero-copy proxy.
//!
//! Bytes are read from a socket straight into the ring's free space, written
//! to the tape from the ring, then forwarded to the peer from the ring. So
//! the stored bytes have two parts, in order from `head`:
//!
//! ```text
//!   head                                   head+len
//!    | recorded, not yet forwarded | unrecorded | free ...
//!    |<-------- recorded --------->|
//! ```
//!
//! Only recorded bytes may be forwarded (write-ahead). Windows are lent out
//! as slices, contiguous where possible; on wrap-around a view is two slices.
//!
//! A gated ring (a session with faults) holds the bytes it reads back at
//! its end: the recorder sees them only once released, so the tape gets
//! what the peer receives, when it receives it.

pub struct Ring {
    storage: Box<[u8]>,
    /// Index of the oldest stored byte.
    head: usize,
    /// Bytes stored.
    len: usize,
    /// Stored bytes, counted from `head`, that are on tape.
    recorded: usize,
    /// Stored bytes at the end that are held back (gated rings only).
    held: usize,
    gated: bool,
}

impl Ring {
    #[cfg(test)]
    pub fn new(capacity: usize) -> Ring {
        assert!(capacity > 0, "a ring needs room for at least one byte");
        Ring {
            storage: vec![0; capacity].into_boxed_slice(),
            head: 0,
            len: 0,
            recorded: 0,
            held: 0,
            gated: false,
        }
    }

    /// A ring with no storage yet: `attach` gives it some.
    pub fn unallocated() -> Ring {
        Ring {
            storage: Box::new([]),
            head: 0,
            len: 0,
            recorded: 0,
            held: 0,
            gated: false,
        }
    }

    pub fn has_storage(&self) -> bool {
        !self.storage.is_empty()
    }

    /// Gives an empty ring its storage.
    pub fn attach(&mut self, storage: Box<[u8]>) {
        assert!(self.is_empty(), "attaching storage to a ring holding bytes");
        self.storage = storage;
        self.head = 0;
    }

    /// Takes the storage of an empty ring back; `None` while bytes are in it.
    pub fn detach(&mut self) -> Option<Box<[u8]>> {
        if !self.is_empty() || !self.has_storage() {
            return None;
        }
        self.head = 0;
        Some(std::mem::take(&mut self.storage))
    }

    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    /// The storage, whatever it holds: for a ring that is done.
    pub fn into_storage(self) -> Box<[u8]> {
        self.storage
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    #[cfg(test)]
    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Where the largest contiguous free window starts and ends.
    fn window_bounds(&self) -> (usize, usize) {
        if self.is_full() {
            return (0, 0);
        }
        let capacity = self.capacity();
        let tail = (self.head + self.len) % capacity;
        // Free space runs from the tail to the end of storage, or, once the
        // stored bytes wrap, from the tail up to the head.
        let end = if tail >= self.head {
            capacity
        } else {
            self.head
        };
        (tail, end)
    }

    /// The largest contiguous free window; shorter than `free()` when the
    /// free space wraps, empty when full.
    pub fn free_window(&mut self) -> &mut [u8] {
        let (start, end) = self.window_bounds();
        &mut self.storage[start..end]
    }

    /// `n` bytes were written into the window `free_window` lent.
    // The count checks here and below hold in release builds too: a wrong
    // count would silently forward bytes the tape never saw.
    pub fn commit(&mut self, n: usize) {
        let (start, end) = self.window_bounds();
        assert!(n <= end - start, "commit beyond the free window");
        self.len += n;
        if self.gated {
            self.held += n;
        }
    }

    /// The ring, gated (`gate`) when `gated`.
    pub fn gated(mut self, gated: bool) -> Ring {
        self.gate(gated);
        self
    }

    /// Holds the bytes committed from now on until they are released
    /// (`true`), or lets them, and any held now, be recorded (`false`).
    pub fn gate(&mut self, gated: bool) {
        self.gated = gated;
        if !gated {
            self.held = 0;
        }
    }

    /// Bytes held back.
    pub fn held_len(&self) -> usize {
        self.held
    }

    /// `n` held bytes may be recorded now.
    pub fn release(&mut self, n: usize) {
        assert!(n <= self.held, "releasing more than is held");
        self.held -= n;
    }

    /// Drops every held byte, once nothing before them waits (they are
    /// all the ring holds); returns how many went.
    pub fn discard_held(&mut self) -> usize {
        if self.held == 0 || self.held != self.len {
            return 0;
        }
        let n = self.held;
        self.held = 0;
        self.len = 0;
        self.head = 0;
        n
    }

    /// The stored bytes from `from` (relative to head) to the end, as up to
    /// two slices.
    fn slices(&self, from: usize, to: usize) -> (&[u8], &[u8]) {
        if from == to {
            return (&[], &[]);
        }
        let capacity = self.capacity();
        let start = (self.head + from) % capacity;
        let count = to - from;
        if start + count <= capacity {
            (&self.storage[start..start + count], &[])
        } else {
            let first = &self.storage[start..];
            let second = &self.storage[..count - first.len()];
            (first, second)
        }
    }

    /// Bytes stored but not yet on tape (and not held back).
    pub fn unrecorded(&self) -> (&[u8], &[u8]) {
        self.slices(self.recorded, self.len - self.held)
    }

    pub fn unrecorded_len(&self) -> usize {
        self.len - self.held - self.recorded
    }

    /// `n` more bytes are on tape.
    pub fn mark_recorded(&mut self, n: usize) {
        assert!(n <= self.unrecorded_len(), "recording beyond stored bytes");
        self.recorded += n;
    }

    /// Bytes on tape and not yet forwarded.
    pub fn recorded_slices(&self) -> (&[u8], &[u8]) {
        self.slices(0, self.recorded)
    }

    /// `n` recorded bytes were forwarded and leave the ring.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.recorded, "forwarding unrecorded bytes");
        if n == 0 {
            return;
        }
        self.head = (self.head + n) % self.capacity();
        self.len -= n;
        self.recorded -= n;
        if self.len == 0 {
            // Start over at 0 so the next read gets the biggest window.
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn put(ring: &mut Ring, bytes: &[u8]) -> usize {
        let window = ring.free_window();
        let n = window.len().min(bytes.len());
        window[..n].copy_from_slice(&bytes[..n]);
        ring.commit(n);
        n
    }

    fn joined((a, b): (&[u8], &[u8])) -> Vec<u8> {
        [a, b].concat()
    }

    #[test]
    fn a_gated_ring_shows_the_recorder_only_what_was_released() {
        let mut ring = Ring::new(16);
        ring.gate(true);
        put(&mut ring, b"abcdef");
        assert_eq!(ring.unrecorded_len(), 0);
        assert_eq!(ring.held_len(), 6);
        ring.release(2);
        assert_eq!(joined(ring.unrecorded()), b"ab");
        ring.mark_recorded(2);
        assert_eq!(ring.discard_held(), 0, "recorded bytes wait before them");
        ring.consume(2);
        assert_eq!(ring.discard_held(), 4);
        assert!(ring.is_empty());
        put(&mut ring, b"gh");
        ring.gate(false);
        assert_eq!(joined(ring.unrecorded()), b"gh", "ungated: all of it");
        put(&mut ring, b"ij");
        assert_eq!(ring.unrecorded_len(), 4);
    }

    #[test]
    #[should_panic(expected = "releasing more than is held")]
    fn releasing_what_is_not_held_is_a_bug() {
        let mut ring = Ring::new(4);
        ring.gate(true);
        put(&mut ring, b"ab");
        ring.release(3);
    }

    #[test]
    fn empty_ring_lends_everything() {
        let mut ring = Ring::new(8);
        assert_eq!(ring.free_window().len(), 8);
        assert!(ring.is_empty() && !ring.is_full());
        assert_eq!(ring.unrecorded(), (&[][..], &[][..]));
    }

    #[test]
    fn fill_record_forward() {
        let mut ring = Ring::new(8);
        assert_eq!(put(&mut ring, b"abcde"), 5);
        assert_eq!(joined(ring.unrecorded()), b"abcde");
        assert_eq!(joined(ring.recorded_slices()), b"");
        ring.mark_recorded(3);
        assert_eq!(joined(ring.recorded_slices()), b"abc");
        assert_eq!(joined(ring.unrecorded()), b"de");
        ring.consume(2);
        assert_eq!(joined(ring.recorded_slices()), b"c");
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn full_ring_lends_an_empty_window() {
        let mut ring = Ring::new(4);
        put(&mut ring, b"wxyz");
        assert!(ring.is_full());
        assert!(ring.free_window().is_empty());
    }

    #[test]
    fn wrap_around_gives_two_slices() {
        let mut ring = Ring::new(8);
        put(&mut ring, b"123456");
        ring.mark_recorded(6);
        ring.consume(4);
        // Free space wraps: the window runs to the end of storage first.
        assert_eq!(put(&mut ring, b"abcd"), 2);
        assert_eq!(put(&mut ring, b"cd"), 2);
        assert_eq!(joined(ring.unrecorded()), b"abcd");
        let (first, second) = ring.unrecorded();
        assert_eq!((first, second), (&b"ab"[..], &b"cd"[..]));
        ring.mark_recorded(4);
        let (first, second) = ring.recorded_slices();
        assert_eq!((first, second), (&b"56ab"[..], &b"cd"[..]));
    }

    #[test]
    fn storage_comes_and_goes_while_empty() {
        let mut ring = Ring::unallocated();
        assert!(!ring.has_storage() && ring.is_empty());
        assert_eq!(ring.recorded_slices(), (&[][..], &[][..]));
        ring.consume(0);
        assert!(ring.detach().is_none(), "nothing to give back");
        ring.attach(vec![0; 8].into_boxed_slice());
        put(&mut ring, b"abc");
        assert!(ring.detach().is_none(), "bytes are in it");
        ring.mark_recorded(3);
        ring.consume(3);
        assert_eq!(ring.detach().map(|s| s.len()), Some(8));
        assert!(!ring.has_storage());
    }

    #[test]
    fn emptied_ring_restarts_at_zero() {
        let mut ring = Ring::new(8);
        put(&mut ring, b"12345");
        ring.mark_recorded(5);
        ring.consume(5);
        assert_eq!(ring.free_window().len(), 8);
    }

    #[test]
    #[should_panic(expected = "forwarding unrecorded bytes")]
    fn consuming_unrecorded_bytes_is_a_bug() {
        let mut ring = Ring::new(8);
        put(&mut ring, b"abc");
        ring.consume(1);
    }

    #[test]
    #[should_panic(expected = "commit beyond the free window")]
    fn committing_past_a_wrapped_window_is_a_bug() {
        let mut ring = Ring::new(8);
        put(&mut ring, b"123456");
        ring.mark_recorded(6);
        ring.consume(4);
        // Six bytes are free, but only two of them are contiguous.
        assert_eq!(ring.free(), 6);
        assert_eq!(ring.free_window().len(), 2);
        ring.commit(3);
    }

    /// Random operations against a `VecDeque` model.
    #[test]
    fn matches_a_simple_model() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for capacity in [1, 2, 7, 64] {
            let mut ring = Ring::new(capacity);
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut recorded = 0usize;
            let mut byte = 0u8;
            for _ in 0..20_000 {
                match next(3) {
                    0 => {
                        let bytes: Vec<u8> = (0..next(capacity + 1))
                            .map(|_| {
                                byte = byte.wrapping_add(1);
                                byte
                            })
                            .collect();
                        let n = put(&mut ring, &bytes);
                        model.extend(&bytes[..n]);
                        byte = byte.wrapping_sub((bytes.len() - n) as u8);
                    }
                    1 => {
                        let n = next(ring.unrecorded_len() + 1);
                        ring.mark_recorded(n);
                        recorded += n;
                    }
                    _ => {
                        let n = next(recorded + 1);
                        ring.consume(n);
                        model.drain(..n);
                        recorded -= n;
                    }
                }
                let stored: Vec<u8> = model.iter().copied().collect();
                assert_eq!(ring.len(), stored.len());
                assert_eq!(joined(ring.recorded_slices()), stored[..recorded]);
                assert_eq!(joined(ring.unrecorded()), stored[recorded..]);
                assert_eq!(ring.free(), capacity - stored.len());
            }
        }
    }
}
