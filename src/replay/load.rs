//! Loading a tape for replay: read through once, so a bad tape is reported
//! before anyone connects rather than in the middle of a session.

use std::path::Path;

use log::{info, warn};

use super::TapeFile;
use crate::error::Error;
use crate::tape::reader::MAX_CHUNK;
use crate::tape::{self, Direction, Frame, Kind, Locator, Reader, placement};

/// Opens a tape (binary or text) and reads it through once, so a bad tape
/// is reported before anyone connects rather than in the middle of a
/// session. Refused: wildcards in the direction the role plays (there is
/// nothing to send for them), and a direction that goes on after its EOF
/// (tapes joined with `cat`: a tape replays as one session), and spans that
/// break the rules of docs/tape-format.md.
pub fn load(path: &Path, own: Direction) -> Result<(TapeFile, Locator), Error> {
    let (tape, locator) = tape::open_located(path)?;
    let mut reader = Reader::with_read_ahead(tape.clone(), MAX_CHUNK);
    let mut frames = 0u64;
    let mut closed: [Option<u64>; 2] = [None, None];
    let mut cut = None;
    let mut spans = placement::Checker::new();
    let span_error = |fault: placement::Fault<Frame>| {
        let place = |frame: &Frame| {
            let line = locator.place(frame, frame.offset);
            format!("frame {} ({line})", frame.index)
        };
        Error::refused(
            path,
            format!(
                "{}: {}: {}",
                path.display(),
                place(&fault.at),
                fault.problem.message(place)
            ),
        )
    };
    while let Some(frame) = reader.next_frame().map_err(|err| Error::tape(path, err))? {
        frames += 1;
        let checked = match frame.kind {
            Kind::Span(dir) => {
                let span = reader.read_span().map_err(|err| Error::tape(path, err))?;
                spans.span(dir, &span, frame)
            }
            Kind::Data(dir) => {
                let head = reader
                    .peek_payload(spans.wanted(dir))
                    .map_err(|err| Error::tape(path, err))?;
                spans.data(dir, u64::from(frame.len), head)
            }
            Kind::Any(dir) => {
                let count = reader
                    .read_wildcard()
                    .map_err(|err| Error::tape(path, err))?;
                spans.any(dir, u64::from(count), frame)
            }
            Kind::Eof(dir) => spans.eof(dir),
            _ => Ok(()),
        };
        checked.map_err(span_error)?;
        let place = || {
            format!(
                "{}: frame {} ({})",
                path.display(),
                frame.index,
                locator.place(&frame, frame.offset)
            )
        };
        if frame.kind == Kind::Any(own) {
            let role = own.sender();
            return Err(Error::refused(
                path,
                format!(
                    "{} is a wildcard in the {role}'s direction, but `{role}` plays the {role} and a wildcard has no bytes to send",
                    place()
                ),
            ));
        }
        match frame.kind {
            Kind::Data(dir) | Kind::Any(dir) | Kind::Eof(dir) => {
                if let Some(eof) = closed[dir.index()] {
                    return Err(Error::refused(
                        path,
                        format!(
                            "{}: the {} goes on after its EOF (frame {eof}): a tape holds one session, and this looks like tapes joined together; keep them apart (a cassette folder serves one tape per connection)",
                            place(),
                            dir.sender()
                        ),
                    ));
                }
                if matches!(frame.kind, Kind::Eof(_)) {
                    closed[dir.index()] = Some(frame.index);
                }
            }
            Kind::Cut => cut = Some(frame.index),
            _ => {}
        }
    }
    spans.finish().map_err(span_error)?;
    if let Some(at) = cut {
        warn!(
            "{}: the recording was cut short (frame {at}); replaying it up to the cut",
            path.display()
        );
    }
    info!("tape {}: {frames} frames", path.display());
    Ok((tape, locator))
}
