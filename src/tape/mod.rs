//! The tape file format, byte-compatible with tcptape 0.1.0.
//!
//! A tape is a sequence of frames, each a 4-byte header (opcode, 24-bit
//! big-endian length) and a payload: NOOP (the first one carries the magic
//! `tcptape\0`), data of either direction, DELAY (the length is the
//! milliseconds), the EOF of either direction, and extension frames
//! (0x80-0xFF) that readers skip. docs/tape-format.md has the details.

pub mod describe;
pub mod frame;
pub mod reader;
pub mod writer;

pub use frame::{Direction, Header, Kind, MAGIC, MAX_LEN};
pub use reader::{Frame, Reader, Source, TapeError, TapeErrorKind};
pub use writer::Writer;
