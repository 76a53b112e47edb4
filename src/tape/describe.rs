//! The `describe` listing: one line per frame, as tcptape 0.1.0 printed it,
//! and with `verbose` each data frame's payload as a hexdump.

use std::fmt;
use std::io::{self, Write};

use super::frame::Kind;
use super::reader::{Reader, Source, TapeError};
use crate::hexdump;

/// Payload bytes shown per frame with `verbose`.
pub const SHOWN_BYTES: usize = 256;
/// Bytes of a CUT frame's reason shown.
const REASON_SHOWN: usize = 256;

#[derive(Debug)]
pub enum DescribeError {
    Tape(TapeError),
    Output(io::Error),
}

impl fmt::Display for DescribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DescribeError::Tape(err) => err.fmt(f),
            DescribeError::Output(err) => write!(f, "cannot write the listing: {err}"),
        }
    }
}

impl From<io::Error> for DescribeError {
    fn from(err: io::Error) -> Self {
        DescribeError::Output(err)
    }
}

/// Lists the tape frame by frame; on a bad tape, the frames before the
/// fault are listed, then the error is returned.
pub fn describe<S: Source>(
    reader: &mut Reader<S>,
    out: &mut impl Write,
    verbose: bool,
) -> Result<(), DescribeError> {
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(err) => return Err(DescribeError::Tape(err)),
        };
        let n = frame.index;
        match frame.kind {
            Kind::Data(_) => writeln!(out, "{n}: {} ({} bytes)", frame.kind.name(), frame.len)?,
            Kind::Delay => writeln!(out, "{n}: DELAY ({}ms)", frame.len)?,
            Kind::Noop if verbose => writeln!(out, "{n}: NOOP ({} bytes)", frame.len)?,
            // tcptape's own extensions are named; 0.1.0 tapes have none,
            // so their listing stays as 0.1.0 printed it.
            Kind::Any(_) => {
                let count = reader.read_wildcard().map_err(DescribeError::Tape)?;
                writeln!(
                    out,
                    "{n}: {} ({count} bytes of any value)",
                    frame.kind.name()
                )?
            }
            Kind::Span(_) => {
                let span = reader.read_span().map_err(DescribeError::Tape)?;
                writeln!(out, "{n}: {} ({span})", frame.kind.name())?
            }
            Kind::Cut => {
                let reason = reader
                    .read_payload(REASON_SHOWN)
                    .map_err(DescribeError::Tape)?;
                let reason = String::from_utf8_lossy(reason).into_owned();
                writeln!(out, "{n}: CUT (the recording ended here: {reason})")?
            }
            Kind::Extension(op) if verbose => {
                writeln!(out, "{n}: EXTENSION {op:#04x} ({} bytes)", frame.len)?
            }
            _ => writeln!(out, "{n}: {}", frame.kind.name())?,
        }
        if verbose && matches!(frame.kind, Kind::Data(_)) {
            dump_payload(reader, out, frame.len as usize)?;
        }
    }
}

fn dump_payload<S: Source>(
    reader: &mut Reader<S>,
    out: &mut impl Write,
    len: usize,
) -> Result<(), DescribeError> {
    let mut shown = 0;
    while shown < len.min(SHOWN_BYTES) {
        let chunk = reader
            .read_payload(SHOWN_BYTES - shown)
            .map_err(DescribeError::Tape)?;
        hexdump::dump(shown as u64, chunk, out, "    ")?;
        shown += chunk.len();
    }
    if len > shown {
        writeln!(out, "    ... {} more bytes not shown", len - shown)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::span::{Span, SpanKind};
    use crate::tape::{Direction, Writer};

    fn listing(bytes: &[u8], verbose: bool) -> String {
        let mut out = Vec::new();
        describe(&mut Reader::new(bytes), &mut out, verbose).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn spans_are_listed_with_their_meaning() {
        let s2c = Direction::ServerToClient;
        let mut bytes = Vec::new();
        let mut w = Writer::new(&mut bytes).unwrap();
        let date = Span {
            kind: SpanKind::Vary,
            len: 29,
            min: 20,
            max: 40,
        };
        w.span(s2c, &date).unwrap();
        w.data(s2c, &[b'x'; 29]).unwrap();
        w.span(s2c, &Span::fixed(SpanKind::Capture("token".into()), 12))
            .unwrap();
        w.data(s2c, b"abcdefghijkl").unwrap();
        w.span(
            Direction::ClientToServer,
            &Span::fixed(SpanKind::Echo("token".into()), 12),
        )
        .unwrap();
        let expected = "0: NOOP\n\
                        1: SPAN_SERVER_TO_CLIENT (vary, 29 bytes recorded, 20..40 live)\n\
                        2: SERVER_TO_CLIENT (29 bytes)\n\
                        3: SPAN_SERVER_TO_CLIENT (capture token, 12 bytes)\n\
                        4: SERVER_TO_CLIENT (12 bytes)\n\
                        5: SPAN_CLIENT_TO_SERVER (echo token, 12 bytes)\n";
        assert_eq!(listing(&bytes, false), expected);
        let verbose = listing(&bytes, true);
        assert!(
            verbose.contains("\n3: SPAN_SERVER_TO_CLIENT (capture token, 12 bytes)\n4: "),
            "{verbose}"
        );
    }

    #[test]
    fn a_bad_span_ends_the_listing_with_its_error() {
        let mut bytes = Vec::new();
        Writer::new(&mut bytes)
            .unwrap()
            .extension(0x84, &[1, 0])
            .unwrap();
        let mut out = Vec::new();
        let err = describe(&mut Reader::new(bytes.as_slice()), &mut out, false).unwrap_err();
        assert_eq!(String::from_utf8(out).unwrap(), "0: NOOP\n");
        assert_eq!(
            err.to_string(),
            "bad span frame at offset 12 in frame 1: span payload of 2 bytes, at least 14 expected"
        );
    }
}
