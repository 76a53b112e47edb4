//! The engine every service runs on: one mio poll loop per thread, its
//! timer wheel, the byte ring, the session slab, and sockets of either kind.
//! It knows nothing of tapes' meaning, the command line or the library API.

pub(crate) mod addr;
pub(crate) mod buffers;
pub(crate) mod event_loop;
pub(crate) mod net;
pub(crate) mod ring;
pub(crate) mod slab;
pub(crate) mod timer;
