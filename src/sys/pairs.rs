//! Where a haystack holds one of a few byte pairs, found with vector
//! compares: the first filter of the redaction rules' search, which every
//! recorded byte goes through. SSE2 is part of every x86_64, AVX2 is used
//! where the processor has it; elsewhere a plain loop does the same.

/// Calls `each` with every position `i` where `(hay[i], hay[i + 1])` is
/// one of `pairs`, in order, until it returns true; returns that position.
pub(crate) fn pair_positions(
    hay: &[u8],
    pairs: &[(u8, u8)],
    each: &mut dyn FnMut(usize) -> bool,
) -> Option<usize> {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        // Each pair costs two compares a block: past a few, the plain
        // loop's table is as fast.
        if pairs.len() <= 8 {
            let found = if has_avx2() {
                // SAFETY: the processor has AVX2, checked just above.
                unsafe { x86::avx2(hay, pairs, each, &mut done) }
            } else {
                // SAFETY: every x86_64 has SSE2.
                unsafe { x86::sse2(hay, pairs, each, &mut done) }
            };
            if found.is_some() {
                return found;
            }
        }
    }
    plain(hay, pairs, each, done)
}

/// The positions from `from` on, one by one.
fn plain(
    hay: &[u8],
    pairs: &[(u8, u8)],
    each: &mut dyn FnMut(usize) -> bool,
    from: usize,
) -> Option<usize> {
    let mut first = [false; 256];
    for &(a, _) in pairs {
        first[usize::from(a)] = true;
    }
    (from..hay.len().saturating_sub(1))
        .find(|&i| first[usize::from(hay[i])] && pairs.contains(&(hay[i], hay[i + 1])) && each(i))
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0 unknown, 1 no, 2 yes: asked once.
    static AVX2: AtomicU8 = AtomicU8::new(0);
    match AVX2.load(Ordering::Relaxed) {
        0 => {
            let yes = std::is_x86_feature_detected!("avx2");
            AVX2.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
        known => known == 2,
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 16 positions at a time; `done` says how far it got.
    ///
    /// # Safety
    /// The processor must have SSE2 (every x86_64 has).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn sse2(
        hay: &[u8],
        pairs: &[(u8, u8)],
        each: &mut dyn FnMut(usize) -> bool,
        done: &mut usize,
    ) -> Option<usize> {
        let mut splats = Vec::with_capacity(pairs.len());
        for &(a, b) in pairs {
            splats.push((_mm_set1_epi8(a as i8), _mm_set1_epi8(b as i8)));
        }
        let mut i = 0;
        while i + 17 <= hay.len() {
            // SAFETY: bytes i..i + 17 are in the haystack; loadu takes
            // any alignment.
            let (x, y) = unsafe {
                let at = hay.as_ptr().add(i);
                (
                    _mm_loadu_si128(at.cast::<__m128i>()),
                    _mm_loadu_si128(at.add(1).cast::<__m128i>()),
                )
            };
            let mut hit = _mm_setzero_si128();
            for &(a, b) in &splats {
                hit = _mm_or_si128(
                    hit,
                    _mm_and_si128(_mm_cmpeq_epi8(x, a), _mm_cmpeq_epi8(y, b)),
                );
            }
            let mut mask = _mm_movemask_epi8(hit) as u32;
            while mask != 0 {
                let at = i + mask.trailing_zeros() as usize;
                if each(at) {
                    return Some(at);
                }
                mask &= mask - 1;
            }
            i += 16;
        }
        *done = i;
        None
    }

    /// 32 positions at a time; `done` says how far it got.
    ///
    /// # Safety
    /// The processor must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(
        hay: &[u8],
        pairs: &[(u8, u8)],
        each: &mut dyn FnMut(usize) -> bool,
        done: &mut usize,
    ) -> Option<usize> {
        let mut splats = Vec::with_capacity(pairs.len());
        for &(a, b) in pairs {
            splats.push((_mm256_set1_epi8(a as i8), _mm256_set1_epi8(b as i8)));
        }
        let mut i = 0;
        while i + 33 <= hay.len() {
            // SAFETY: bytes i..i + 33 are in the haystack; loadu takes
            // any alignment.
            let (x, y) = unsafe {
                let at = hay.as_ptr().add(i);
                (
                    _mm256_loadu_si256(at.cast::<__m256i>()),
                    _mm256_loadu_si256(at.add(1).cast::<__m256i>()),
                )
            };
            let mut hit = _mm256_setzero_si256();
            for &(a, b) in &splats {
                let both = _mm256_and_si256(_mm256_cmpeq_epi8(x, a), _mm256_cmpeq_epi8(y, b));
                hit = _mm256_or_si256(hit, both);
            }
            let mut mask = _mm256_movemask_epi8(hit) as u32;
            while mask != 0 {
                let at = i + mask.trailing_zeros() as usize;
                if each(at) {
                    return Some(at);
                }
                mask &= mask - 1;
            }
            i += 32;
        }
        *done = i;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(hay: &[u8], pairs: &[(u8, u8)]) -> Vec<usize> {
        let mut out = Vec::new();
        pair_positions(hay, pairs, &mut |i| {
            out.push(i);
            false
        });
        out
    }

    #[test]
    fn every_position_of_every_pair_in_order_whatever_the_length() {
        let pairs = [(b'a', b'b'), (b'x', b'y'), (0xff, 0x00)];
        for len in [0, 1, 2, 15, 16, 17, 31, 32, 33, 34, 64, 100, 1000] {
            let hay: Vec<u8> = (0..len).map(|i| b"abxy\xff\x00zz"[i % 8]).collect();
            let want: Vec<usize> = (0..len.saturating_sub(1))
                .filter(|&i| pairs.contains(&(hay[i], hay[i + 1])))
                .collect();
            assert_eq!(positions(&hay, &pairs), want, "len {len}");
            assert_eq!(plain(&hay, &pairs, &mut |_| false, 0), None);
        }
        // Many pairs take the plain loop.
        let many: Vec<(u8, u8)> = (0..20).map(|i| (i, i + 1)).collect();
        assert_eq!(positions(&[0, 1, 2, 3, 9, 10], &many), [0, 1, 2, 4]);
        // It stops where asked.
        let hay = b"..ab....ab..";
        assert_eq!(pair_positions(hay, &pairs, &mut |i| i > 2), Some(8));
    }
}
