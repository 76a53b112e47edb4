//! A length field of the peer's whose counted bytes are arriving, and
//! whether they turned out as many as it said.

use super::DeviationKind;
use crate::tape::Frame;

/// A length of the peer's whose counted bytes are arriving.
#[derive(Debug)]
pub struct Counting {
    pub frame: Frame,
    /// The length as received, and as recorded.
    pub said: u64,
    pub recorded: u64,
    /// Recorded bytes it counts, and where they end (in `matched` terms).
    pub region: u32,
    pub end: u64,
    /// The live stream offset where the counted bytes began.
    pub live_start: u64,
}

impl Counting {
    /// Once every byte it counts is accounted for (`matched` reached its
    /// end; `received` live bytes so far): a departure when the length
    /// said another count than arrived.
    pub fn differs(&self, matched: u64, received: u64) -> Option<DeviationKind> {
        let live_end = received.saturating_sub(matched - self.end);
        let live = i128::from(live_end.saturating_sub(self.live_start));
        let counted = i128::from(self.recorded) + live - i128::from(self.region);
        (counted != i128::from(self.said)).then(|| DeviationKind::LengthDiffers {
            frame: self.frame,
            said: self.said,
            counted: u64::try_from(counted).unwrap_or(0),
        })
    }
}
