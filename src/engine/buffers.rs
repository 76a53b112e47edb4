//! Ring storage lent to sessions while they move bytes and taken back when
//! they go idle, so memory follows the bytes in flight rather than the
//! number of sessions: a thousand idle connections hold no buffers. Sizes
//! are powers of two; a few of each size are kept for the next burst, the
//! rest go back to the allocator when a burst ends.

/// Bytes of free buffers kept for reuse; beyond that, buffers given back go
/// back to the allocator, so a burst's memory does not outlive it.
const KEEP_BYTES: usize = 8 * 1024 * 1024;

pub(crate) struct Buffers {
    /// Free buffers by size class: `free[k]` holds buffers of `min << k` bytes.
    free: Vec<Vec<Box<[u8]>>>,
    min: usize,
    /// Bytes in `free`.
    held: usize,
}

impl Buffers {
    /// Buffers from `min` bytes up to `max` (both rounded up to a power of two).
    pub(crate) fn new(min: usize, max: usize) -> Buffers {
        let min = min.next_power_of_two();
        let classes = (max.max(min).next_power_of_two() / min).trailing_zeros() as usize + 1;
        Buffers {
            free: (0..classes).map(|_| Vec::new()).collect(),
            min,
            held: 0,
        }
    }

    /// The smallest size handed out.
    pub(crate) fn min(&self) -> usize {
        self.min
    }

    /// The largest size handed out.
    pub(crate) fn max(&self) -> usize {
        self.min << (self.free.len() - 1)
    }

    fn class(&self, size: usize) -> usize {
        let size = size.clamp(self.min, self.max()).next_power_of_two();
        (size / self.min).trailing_zeros() as usize
    }

    /// A buffer of `size` bytes (rounded to its class), reused if one is free.
    pub(crate) fn take(&mut self, size: usize) -> Box<[u8]> {
        let class = self.class(size);
        match self.free[class].pop() {
            Some(buffer) => {
                self.held -= buffer.len();
                buffer
            }
            None => vec![0; self.min << class].into_boxed_slice(),
        }
    }

    /// Takes a buffer back; it is freed when enough are kept already.
    pub(crate) fn give(&mut self, buffer: Box<[u8]>) {
        if buffer.is_empty() {
            return;
        }
        let class = self.class(buffer.len());
        let fits = self.held + buffer.len() <= KEEP_BYTES;
        if self.min << class == buffer.len() && fits {
            self.held += buffer.len();
            self.free[class].push(buffer);
        }
    }

    /// Bytes held for reuse.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffers_of(len: usize) -> Box<[u8]> {
        vec![0; len].into_boxed_slice()
    }

    #[test]
    fn sizes_are_powers_of_two_within_bounds() {
        let mut buffers = Buffers::new(16 * 1024, 1024 * 1024);
        assert_eq!((buffers.min(), buffers.max()), (16 * 1024, 1024 * 1024));
        assert_eq!(buffers.take(1).len(), 16 * 1024);
        assert_eq!(buffers.take(20_000).len(), 32 * 1024);
        assert_eq!(buffers.take(1 << 30).len(), 1024 * 1024);
        let odd = Buffers::new(1000, 3000);
        assert_eq!((odd.min(), odd.max()), (1024, 4096));
    }

    #[test]
    fn freed_buffers_are_reused_and_only_a_few_kept() {
        let mut buffers = Buffers::new(1024, 1024 * 1024);
        let first = buffers.take(1024);
        let address = first.as_ptr();
        buffers.give(first);
        let again = buffers.take(1024);
        assert_eq!(again.as_ptr(), address, "reused");
        for _ in 0..100 {
            buffers.give(vec![0; 1024 * 1024].into_boxed_slice());
        }
        assert_eq!(buffers.held(), KEEP_BYTES, "the rest went back");
        // A buffer of a size no class has is not kept.
        let mut buffers = Buffers::new(1024, 4096);
        buffers.give(vec![0; 3000].into_boxed_slice());
        assert_eq!(buffers.held(), 0);
        buffers.give(buffers_of(4096));
        assert_eq!(buffers.take(4096).len(), 4096);
        assert_eq!(buffers.held(), 0, "taken back out");
    }
}
