//! The mismatch report: where the peer departed from the tape, and the bytes
//! on both sides around that point as hexdumps (plus a line diff on request).

use std::fmt::Write as _;

use super::script::{Deviation, DeviationKind};
use crate::engine::net::Address;
use crate::hexdump;
use crate::linediff;
use crate::tape::{Direction, Frame, Kind, Locator, Reader, Source, frame::HEADER_LEN};

/// Bytes of context shown on each side of the departure in hexdumps.
/// Bytes of context shown before the departure: enough to see where the
/// line or message it is in starts.
const SHOWN_BEFORE: usize = 48;
/// Bytes shown from the departure on: enough to read an error message a
/// server sent in place of what the tape has ("FATAL: password
/// authentication failed for user ...", "Access denied for user ...").
const SHOWN_AFTER: usize = 160;
/// A text diff reads at most this many bytes of the tape on each side of
/// the departure, and compares at most `DIFF_LINES` lines on each side:
/// a report costs milliseconds and kilobytes whatever the frame holds.
const DIFF_BYTES: usize = 16 * 1024;
const DIFF_LINES: usize = 200;
/// Frames a text diff reads at most while following the peer's stream
/// past frames of the other direction.
const DIFF_FRAMES: usize = 1024;

/// One line saying what went wrong, for logs and the exit status.
pub fn summary(
    deviation: &Deviation,
    peer: Direction,
    addr: &Address,
    locator: &Locator,
) -> String {
    let who = peer.sender();
    let at = deviation.stream_offset;
    match deviation.kind.clone() {
        DeviationKind::Differ {
            frame,
            at: in_frame,
        } => format!(
            "mismatch with {who} {addr}: byte {at} of its stream differs from the tape (frame {}, {})",
            frame.index,
            locator.place(&frame, payload_start(&frame) + u64::from(in_frame))
        ),
        DeviationKind::DataInsteadOfEof { frame } => format!(
            "mismatch with {who} {addr}: it sent data at byte {at} where the tape has its EOF (frame {}, {})",
            frame.index,
            locator.place(&frame, frame.offset)
        ),
        DeviationKind::DataAfterEnd => format!(
            "mismatch with {who} {addr}: it sent more than the tape holds, from byte {at} of its stream"
        ),
        DeviationKind::EarlyEof {
            frame,
            at: in_frame,
            remaining,
        } => {
            let offset = match frame.kind {
                Kind::Any(_) => frame.offset,
                _ => payload_start(&frame) + u64::from(in_frame),
            };
            format!(
                "mismatch with {who} {addr}: it closed its side at byte {at}, the tape expects {remaining} more bytes (frame {}, {})",
                frame.index,
                locator.place(&frame, offset)
            )
        }
        DeviationKind::Reset => format!(
            "mismatch with {who} {addr}: it reset the connection at byte {at} of its stream before the tape's end"
        ),
        DeviationKind::SpanTooLong { frame, max } => format!(
            "mismatch with {who} {addr}: a value that varies went on past its longest, {max} bytes, at byte {at} of its stream, without the bytes that end it (frame {}, {})",
            frame.index,
            locator.place(&frame, frame.offset)
        ),
        DeviationKind::SpanTooShort { frame, min, got } => format!(
            "mismatch with {who} {addr}: it closed its side {got} bytes into a value that varies, shorter than its shortest, {min} bytes (frame {}, {})",
            frame.index,
            locator.place(&frame, frame.offset)
        ),
        DeviationKind::EchoDiffers { frame, name, .. } => format!(
            "mismatch with {who} {addr}: byte {at} of its stream differs from the value captured as '{name}' that it echoes there (frame {}, {})",
            frame.index,
            locator.place(&frame, frame.offset)
        ),
        DeviationKind::SecretDiffers { frame, name, .. } => format!(
            "mismatch with {who} {addr}: byte {at} of its stream differs from the secret '{name}', which the replay's environment sets (frame {}, {})",
            frame.index,
            locator.place(&frame, frame.offset)
        ),
        DeviationKind::NotALength { frame, encoding } => format!(
            "mismatch with {who} {addr}: the length field before byte {at} of its stream is not a {} length (frame {}, {})",
            encoding.name(),
            frame.index,
            locator.place(&frame, frame.offset)
        ),
        DeviationKind::LengthDiffers {
            frame,
            said,
            counted,
        } => format!(
            "mismatch with {who} {addr}: its length field said {said}, but the bytes it counts, up to byte {at} of its stream, make it {counted} (frame {}, {})",
            frame.index,
            locator.place(&frame, frame.offset)
        ),
    }
}

/// The full report: the summary, then expected and received bytes.
pub fn render<S: Source>(
    deviation: &Deviation,
    peer: Direction,
    addr: &Address,
    (tape, locator): (&S, &Locator),
    text_diff: bool,
) -> String {
    let mut out = summary(deviation, peer, addr, locator);
    out.push('\n');
    let received = &deviation.received;
    let shown_from = received.mismatch.saturating_sub(SHOWN_BEFORE);
    let shown_to = received.bytes.len().min(received.mismatch + SHOWN_AFTER);
    let received_start = deviation.stream_offset - (received.mismatch - shown_from) as u64;

    match deviation.kind.clone() {
        DeviationKind::EarlyEof {
            frame, remaining, ..
        } if matches!(frame.kind, Kind::Any(_)) => {
            let _ = writeln!(
                out,
                "  expected (tape): {remaining} more bytes of any value (wildcard, frame {})",
                frame.index
            );
        }
        DeviationKind::Differ { frame, at } | DeviationKind::EarlyEof { frame, at, .. } => {
            let from = at.saturating_sub(SHOWN_BEFORE as u32);
            let to = frame.len.min(at + SHOWN_AFTER as u32);
            let expected = read_payload(tape, &frame, from, to);
            let start = deviation.stream_offset - u64::from(at - from);
            section(&mut out, "expected (tape)", start, &expected);
        }
        DeviationKind::DataInsteadOfEof { .. } => out.push_str("  expected: EOF\n"),
        DeviationKind::DataAfterEnd => out.push_str("  expected: nothing more\n"),
        DeviationKind::Reset => out.push_str("  expected: the rest of the tape\n"),
        DeviationKind::NotALength { encoding, .. } => {
            let _ = writeln!(out, "  expected: a {} length", encoding.name());
        }
        DeviationKind::SecretDiffers { name, .. } => {
            let _ = writeln!(
                out,
                "  expected: the value of ${name} (not shown; what was received of it is starred out)"
            );
        }
        DeviationKind::LengthDiffers { counted, .. } => {
            let _ = writeln!(out, "  expected: a length of {counted}");
        }
        DeviationKind::SpanTooLong { max, .. } => {
            let _ = writeln!(
                out,
                "  expected: a value of any bytes, at most {max} of them, then the recorded bytes after it"
            );
        }
        DeviationKind::SpanTooShort { min, .. } => {
            let _ = writeln!(
                out,
                "  expected: a value of any bytes, at least {min} of them"
            );
        }
        DeviationKind::EchoDiffers {
            name, at, value, ..
        } => {
            let from = (at as usize).saturating_sub(SHOWN_BEFORE);
            let to = value.len().min(at as usize + SHOWN_AFTER);
            let start = deviation.stream_offset - (at as usize - from) as u64;
            section(
                &mut out,
                &format!("expected (captured as '{name}')"),
                start,
                &value[from..to],
            );
        }
    }
    match deviation.kind {
        DeviationKind::EarlyEof { .. } | DeviationKind::SpanTooShort { .. } => {
            out.push_str("  received: EOF\n")
        }
        DeviationKind::Reset => out.push_str("  received: connection reset\n"),
        _ => section(
            &mut out,
            "received",
            received_start,
            &received.bytes[shown_from..shown_to],
        ),
    }
    if let DeviationKind::Differ { frame, at } = deviation.kind {
        let i = deviation.received.mismatch;
        let expected_byte = read_payload(tape, &frame, at, at + 1);
        if let (Some(e), Some(r)) = (expected_byte.first(), received.bytes.get(i)) {
            let _ = writeln!(
                out,
                "  first difference at byte {}: expected {}, received {}",
                deviation.stream_offset,
                describe_byte(*e),
                describe_byte(*r)
            );
        }
        if text_diff {
            out.push_str(&text_diff_section(tape, &frame, at, deviation));
        }
    }
    out
}

fn section(out: &mut String, title: &str, start: u64, bytes: &[u8]) {
    let _ = writeln!(out, "  {title}:");
    let mut dump = Vec::new();
    let _ = hexdump::dump(start, bytes, &mut dump, "    ");
    out.push_str(&String::from_utf8_lossy(&dump));
    if bytes.is_empty() {
        out.push_str("    (no bytes)\n");
    }
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("0x{b:02x} '{}'", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

fn payload_start(frame: &Frame) -> u64 {
    frame.offset + HEADER_LEN as u64
}

/// The tape offset of byte `at` of a frame's payload.
pub fn payload_offset(frame: &Frame, at: u32) -> u64 {
    payload_start(frame) + u64::from(at)
}

/// Bytes `from..to` of a frame's payload, read straight from the tape file.
fn read_payload<S: Source>(tape: &S, frame: &Frame, from: u32, to: u32) -> Vec<u8> {
    let mut bytes = vec![0; (to - from) as usize];
    let mut filled = 0;
    while filled < bytes.len() {
        let offset = payload_start(frame) + u64::from(from) + filled as u64;
        match tape.read_at(&mut bytes[filled..], offset) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    bytes.truncate(filled);
    bytes
}

/// A line diff of the frame as recorded against what arrived in its place,
/// around the departure. Bytes before the departure matched, so the
/// received side is the tape's bytes up to it followed by what arrived from
/// the departure on.
fn text_diff_section<S: Source>(tape: &S, frame: &Frame, at: u32, deviation: &Deviation) -> String {
    let at = at as usize;
    let skipped = at.saturating_sub(DIFF_BYTES);
    let mut expected = expected_stream(tape, frame, skipped, 2 * DIFF_BYTES);
    let departure = (at - skipped).min(expected.len());
    // Start at a line, at most DIFF_LINES lines before the departure's.
    let mut start = 0;
    let mut cut = skipped > 0;
    if cut && let Some(newline) = expected[..departure].iter().position(|&b| b == b'\n') {
        start = newline + 1;
    }
    if let Some(newline) = nth_newline_back(&expected[start..departure], DIFF_LINES) {
        start += newline + 1;
        cut = true;
    }
    let mut received = expected[start..departure].to_vec();
    received.extend_from_slice(&deviation.received.bytes[deviation.received.mismatch..]);
    expected.drain(..start);
    // Only what had arrived when the difference was found is known: compare
    // the complete lines received with as many lines of the tape, at most
    // DIFF_LINES past the departure's.
    let before = received[..departure - start]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let complete = received.iter().filter(|&&b| b == b'\n').count();
    let lines = match complete {
        0 => 1,
        n if n > before + DIFF_LINES => {
            cut = true;
            before + DIFF_LINES
        }
        n => n,
    };
    if complete > 0 {
        cut_after_lines(&mut received, lines);
    }
    cut_after_lines(&mut expected, lines);
    let (Some(old), Some(new)) = (as_text(&expected), as_text(&received)) else {
        return "  text diff: not shown, the bytes are not text\n".to_string();
    };
    let old: Vec<&str> = old.split_inclusive('\n').collect();
    let new: Vec<&str> = new.split_inclusive('\n').collect();
    let title = if cut {
        "text diff (- tape, + received; only the lines near the difference)"
    } else {
        "text diff (- tape, + received)"
    };
    format!(
        "  {title}:\n{}",
        linediff::render(&linediff::diff(&old, &new), 2, "    ")
    )
}

/// The index of the `n`-th newline of `bytes` counted back from its end (0
/// for the last): the last `n` complete lines of `bytes`, and whatever
/// follows them, start after it.
fn nth_newline_back(bytes: &[u8], n: usize) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n)
        .map(|(i, _)| i)
}

/// Keeps the first `lines` lines of `bytes` (all of it if it has fewer).
fn cut_after_lines(bytes: &mut Vec<u8>, lines: usize) {
    if let Some((end, _)) = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines - 1)
    {
        bytes.truncate(end + 1);
    }
}

/// The peer's bytes as recorded from byte `skip` of `frame` on, across its
/// following data frames, up to `limit` bytes: what the received bytes are
/// compared with, so a reply split over frames is not cut in the diff.
fn expected_stream<S: Source>(tape: &S, frame: &Frame, skip: usize, limit: usize) -> Vec<u8> {
    let Kind::Data(dir) = frame.kind else {
        return Vec::new();
    };
    let mut reader = Reader::starting_at(tape, frame.offset, frame.index);
    let mut out = Vec::new();
    for frames in 0..DIFF_FRAMES {
        if out.len() >= limit {
            break;
        }
        match reader.next_frame() {
            Ok(Some(next)) if next.kind == Kind::Data(dir) => {
                if frames == 0 {
                    reader.consume_payload(skip.min(next.len as usize));
                }
                while out.len() < limit {
                    match reader.read_payload(limit - out.len()) {
                        Ok([]) | Err(_) => break,
                        Ok(chunk) => out.extend_from_slice(chunk),
                    }
                }
            }
            // The peer's stream ends, or goes on with bytes of any value.
            Ok(Some(next)) if matches!(next.kind, Kind::Eof(d) | Kind::Any(d) if d == dir) => break,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// Text for diffing: UTF-8 without control characters other than
/// whitespace. A cut in the middle of a character at the window's end is fine.
fn as_text(bytes: &[u8]) -> Option<&str> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) if err.error_len().is_none() => {
            std::str::from_utf8(&bytes[..err.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    let printable = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    printable.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::script::{Captures, Excerpt, Expect, Fault};
    use crate::tape::{Reader, Writer};

    const C2S: Direction = Direction::ClientToServer;

    fn tape_with(payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut w = Writer::new(&mut bytes).unwrap();
        w.data(C2S, payload).unwrap();
        w.eof(C2S).unwrap();
        bytes
    }

    fn deviation(tape: &[u8], received: &[u8]) -> Deviation {
        let mut expect = Expect::new(Reader::new(tape), C2S).unwrap();
        match expect.receive(received, true, &mut Captures::default()) {
            Err(Fault::Deviation(d)) => *d,
            other => panic!("expected a deviation, got {other:?}"),
        }
    }

    fn addr() -> Address {
        Address::Tcp("127.0.0.1:4000".parse().unwrap())
    }

    /// The report of a client's deviation from a binary tape.
    fn report_of(d: &Deviation, tape: &[u8], text_diff: bool) -> String {
        render(d, C2S, &addr(), (&tape, &Locator::default()), text_diff)
    }

    #[test]
    fn differ_report_shows_both_sides_and_the_byte() {
        let tape = tape_with(b"EHLO client\r\n");
        let d = deviation(&tape, b"EHLO clienX\r\n");
        let report = report_of(&d, &tape, false);
        assert!(
            report.starts_with(
                "mismatch with client 127.0.0.1:4000: byte 10 of its stream differs from the tape (frame 1, tape offset 26)\n"
            ),
            "{report}"
        );
        assert!(
            report.contains("  expected (tape):\n    00000000  45 48 4c 4f"),
            "{report}"
        );
        assert!(report.contains("|EHLO client..|"), "{report}");
        assert!(report.contains("|EHLO clienX..|"), "{report}");
        assert!(
            report.contains("first difference at byte 10: expected 0x74 't', received 0x58 'X'"),
            "{report}"
        );
        assert!(!report.contains("text diff"), "{report}");
    }

    #[test]
    fn text_diff_shows_changed_line() {
        let tape = tape_with(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
        let d = deviation(&tape, b"MAIL FROM:<a@b>\r\nRCPT TO:<x@d>\r\nDATA\r\n");
        let report = report_of(&d, &tape, true);
        assert!(
            report.contains("  text diff (- tape, + received):\n"),
            "{report}"
        );
        assert!(
            report.contains("    - RCPT TO:<c@d>\\r\\n\n    + RCPT TO:<x@d>\\r\\n\n"),
            "{report}"
        );
    }

    #[test]
    fn text_diff_follows_the_peer_across_frames() {
        let mut tape = Vec::new();
        let mut w = Writer::new(&mut tape).unwrap();
        w.data(C2S, b"Date: Mon\r\n").unwrap();
        w.delay(3).unwrap();
        w.data(Direction::ServerToClient, b"ignored").unwrap();
        w.data(C2S, b"body\n").unwrap();
        let d = deviation(&tape, b"Date: Tue\r\nbody\n");
        let report = report_of(&d, &tape, true);
        assert!(
            report.contains("    - Date: Mon\\r\\n\n    + Date: Tue\\r\\n\n      body\\n\n"),
            "{report}"
        );
        assert!(!report.contains("+ body"), "{report}");
    }

    #[test]
    fn text_tapes_are_located_by_line() {
        let built = crate::tape::text::build("tcptape text 1\n\n> \"EHLO a\\r\\n\"\n").unwrap();
        let locator = crate::tape::Locator::for_lines(built.lines);
        let d = deviation(&built.bytes, b"EHLO b\r\n");
        let line = summary(&d, C2S, &addr(), &locator);
        assert!(
            line.ends_with("byte 5 of its stream differs from the tape (frame 1, line 3)"),
            "{line}"
        );
    }

    #[test]
    fn text_diff_of_a_huge_frame_is_fast_and_short() {
        let lines: String = (0..100_000).map(|i| format!("line {i}\r\n")).collect();
        let tape = tape_with(lines.as_bytes());
        let start = std::time::Instant::now();

        // One byte differs on line 99,000.
        let mut received = lines.clone().into_bytes();
        received[lines.find("line 99000").unwrap() + 5] = b'X';
        let report = report_of(&deviation(&tape, &received), &tape, true);
        assert!(
            report.contains(
                "  text diff (- tape, + received; only the lines near the difference):\n"
            ),
            "{report}"
        );
        assert!(
            report.contains("    - line 99000\\r\\n\n    + line X9000\\r\\n\n"),
            "{report}"
        );
        assert!(report.lines().count() < 60, "{report}");

        // Everything differs from line 10 on: the diff stops DIFF_LINES
        // lines after the departure.
        let other: String = (0..100_000).map(|i| format!("other {i}\r\n")).collect();
        let mut received = lines.as_bytes()[..lines.find("line 10\r").unwrap()].to_vec();
        received.extend_from_slice(other.as_bytes());
        let report = report_of(&deviation(&tape, &received), &tape, true);
        assert!(
            report.contains("only the lines near the difference"),
            "{report}"
        );
        assert!(report.contains("    - line 10\\r\\n\n"), "{report}");
        assert!(report.contains("    + other 0\\r\\n\n"), "{report}");
        assert!(report.lines().count() < 2 * DIFF_LINES + 60, "{report}");
        assert!(report.len() < 64 * 1024, "{} bytes", report.len());

        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    }

    #[test]
    fn text_diff_declines_binary() {
        let tape = tape_with(&[0, 1, 2, 3]);
        let d = deviation(&tape, &[0, 1, 9, 3]);
        let report = report_of(&d, &tape, true);
        assert!(report.contains("not text"), "{report}");
    }

    #[test]
    fn early_eof_report_shows_what_was_owed() {
        let tape = tape_with(b"0123456789");
        let mut expect = Expect::new(Reader::new(tape.as_slice()), C2S).unwrap();
        expect
            .receive(b"0123", true, &mut Captures::default())
            .unwrap();
        let Err(Fault::Deviation(d)) = expect.receive_eof(&mut Captures::default()) else {
            panic!("early EOF must deviate")
        };
        let report = report_of(&d, &tape, false);
        assert!(
            report.contains("it closed its side at byte 4, the tape expects 6 more bytes"),
            "{report}"
        );
        assert!(report.contains("|0123456789|"), "{report}");
        assert!(report.contains("  received: EOF"), "{report}");
    }

    #[test]
    fn data_after_end_report() {
        let d = Deviation {
            kind: DeviationKind::DataAfterEnd,
            stream_offset: 7,
            received: Excerpt {
                bytes: b"extra".to_vec(),
                mismatch: 0,
            },
        };
        let report = render(
            &d,
            Direction::ServerToClient,
            &addr(),
            (&[].as_slice(), &Locator::default()),
            false,
        );
        assert!(
            report.contains("server 127.0.0.1:4000: it sent more than the tape holds, from byte 7"),
            "{report}"
        );
        assert!(report.contains("00000007  65 78 74 72 61"), "{report}");
    }
}
