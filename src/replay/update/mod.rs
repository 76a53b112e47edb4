//! `--update`: a tape brought up to date with a peer that changed on
//! purpose. The session records what really went (`course`), then the
//! pending tape is made of the old tape and that recording (`merge`,
//! written beside the tape by `pending`): the turns that still match keep
//! their text, comments and spans; those that changed take the new bytes,
//! keeping the spans that still fit them. `recorded` answers what the old
//! tape holds as the session goes.
//!
//! `server` with an upstream hands a connection whose client departs over
//! to the real server (`handover` notes, while the tape is played, what
//! that takes; `relay` then brings the upstream to where the client is and
//! relays the rest, recording it).

mod course;
mod handover;
mod merge;
pub mod pending;
mod recorded;
mod relay;

pub use course::{Gate, Update};
pub use handover::{Departed, Departure, Handover};
pub use relay::{Phase, Relay, Side};
