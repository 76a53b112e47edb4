//! State-in, event-in tests of the two cursors: a cursor built over a
//! tape, fed bytes, its next state asserted.

mod plain;
mod secrets;
mod spans;
