//! Ring storage lent to sessions while they move bytes and taken back when
//! they go idle, so memory follows the bytes in flight rather than the
//! number of sessions: a thousand idle connections hold no buffers. Sizes
//! are powers of two; a few of each size are kept for the next burst, the
//! rest go back to the allocator when a burst ends.

/// Bytes freed, in all, before the allocator is asked to return its free
/// pages to the system.
const RECLAIM_AFTER: usize = 4 * 1024 * 1024;

/// Bytes of free buffers kept for reuse; beyond that, buffers given back go
/// back to the allocator, so a burst's memory does not outlive it.
const KEEP_BYTES: usize = 8 * 1024 * 1024;

pub(crate) struct Buffers {
    /// Free buffers by size class: `free[k]` holds buffers of `min << k` bytes.
    free: Vec<Vec<Box<[u8]>>>,
    min: usize,
    /// Bytes in `free`.
    held: usize,
    reclaim: Reclaim,
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
            reclaim: Reclaim::default(),
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
        } else {
            self.reclaim.freed(buffer.len());
        }
    }

    /// Bytes held for reuse.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held
    }
}

/// Counts bytes given back to the allocator and, every few MiB, has it
/// return its free pages to the system. glibc keeps freed memory resident
/// while live allocations sit between the free chunks, and that is what a
/// burst of sessions leaves: each freed its buffers, each kept its small
/// state, so without this the resident size would stay at the burst's peak.
#[derive(Default)]
pub(crate) struct Reclaim {
    freed: usize,
}

impl Reclaim {
    /// Notes `bytes` freed; returns whether memory went back to the system.
    pub(crate) fn freed(&mut self, bytes: usize) -> bool {
        self.freed += bytes;
        if self.freed < RECLAIM_AFTER {
            return false;
        }
        self.freed = 0;
        crate::sys::release_free_memory();
        true
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

    #[test]
    fn memory_goes_back_to_the_system_every_few_mib_freed() {
        let mut reclaim = Reclaim::default();
        assert!(!reclaim.freed(0));
        assert!(!reclaim.freed(RECLAIM_AFTER - 1));
        assert!(reclaim.freed(1), "the total reached the mark");
        assert!(!reclaim.freed(RECLAIM_AFTER / 2), "counting starts over");
        assert!(reclaim.freed(RECLAIM_AFTER));
    }
}
