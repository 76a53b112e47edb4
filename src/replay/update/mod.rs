//! `--update`: a tape brought up to date with a peer that changed on
//! purpose. The session records what really went (`course`), then the
//! pending tape is made of the old tape and that recording (`merge`):
//! the turns that still match keep their text, comments and spans; those
//! that changed take the new bytes, keeping the spans that still fit them.

mod course;
mod merge;

pub use course::{Gate, Update};
pub use merge::{MAX_TAPE, merge};
