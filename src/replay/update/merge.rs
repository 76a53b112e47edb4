//! The pending tape of a session played with `--update`: the old tape,
//! turn by turn, with the turns where the peer's bytes changed taken from
//! what the session recorded.
//!
//! A turn is what one side sends between two moves of the other. Our own
//! turns (when one side was played from the tape: `kept`) went as the tape
//! says and stay as they are; with no side kept (a session handed over to
//! a real server, where the client and the server may both have changed),
//! every turn is compared. A turn whose new
//! bytes still match the old one (its spans taking their new values) stays
//! as it is too, text, comments and all. A peer turn that changed takes
//! the new bytes, and keeps each of its spans that still fits them: the
//! recorded bytes around the span are found again around new bytes of a
//! length the span allows (a length field must still count its bytes).
//! Spans that no longer fit become plain bytes.

use std::ops::Range;

use crate::tape::text::{self, Built};
use crate::tape::{Direction, Kind, Reader, Span, SpanKind, TapeError, Writer};

/// Recorded bytes either side of a span looked for again in the new bytes.
const ANCHOR: usize = 8;
/// The largest old tape `--update` merges (it is read into memory).
pub const MAX_TAPE: u64 = 256 << 20;

/// One piece of a turn of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    Bytes(Vec<u8>),
    Span(Span, Vec<u8>),
    Any(u32),
}

impl Item {
    pub(super) fn recorded(&self) -> usize {
        match self {
            Item::Bytes(bytes) | Item::Span(_, bytes) => bytes.len(),
            Item::Any(count) => *count as usize,
        }
    }
}

/// What one side sends between two moves of the other, in the old tape.
#[derive(Debug)]
pub(super) struct Turn {
    pub dir: Direction,
    pub(super) items: Vec<Item>,
    pub(super) eof: bool,
    /// Where its frames are in the old tape.
    pub bytes: Range<u64>,
}

/// A turn of the new session: what a side really sent.
#[derive(Debug, Default)]
struct Said {
    bytes: Vec<u8>,
    eof: bool,
}

/// The pending tape, in the old tape's form.
pub struct Merged {
    pub bytes: Vec<u8>,
    /// The text form, for an old tape written as text.
    pub text: Option<String>,
    /// Turns that changed (or are new).
    pub changed: usize,
}

/// Merges the old tape (`old`: its bytes, and its text when it was written
/// as text) with the session recorded by `--update` (`new`, a binary
/// tape); `kept` is the side that went as the tape says, if one did.
pub fn merge(
    old: (&[u8], Option<&str>),
    new: &[u8],
    kept: Option<Direction>,
) -> Result<Merged, String> {
    let (old_bytes, old_text) = old;
    let turns = turns(old_bytes).map_err(|err| format!("the old tape: {err}"))?;
    let said = said(new).map_err(|err| format!("the recording: {err}"))?;
    let mut plan: Vec<Piece> = Vec::new();
    let mut said = said.into_iter().peekable();
    for (index, turn) in turns.iter().enumerate() {
        if Some(turn.dir) == kept {
            // Ours went as the tape says; a peer turn before it that the
            // tape does not have is new.
            while let Some((dir, _)) = said.peek()
                && Some(*dir) != kept
            {
                if let Some((dir, extra)) = said.next() {
                    plan.push(Piece::Added(new_turn(dir, &extra)));
                }
            }
            said.next();
            plan.push(Piece::Old(index));
            continue;
        }
        let now = match said.peek() {
            Some((dir, _)) if *dir == turn.dir => said.next().map(|(_, s)| s).unwrap_or_default(),
            // The peer said nothing here this time.
            _ => Said::default(),
        };
        match fits(&turn.items, &now.bytes) && turn.eof == now.eof {
            true => plan.push(Piece::Old(index)),
            false => plan.push(Piece::Changed(index, refit(turn, &now))),
        }
    }
    for (dir, rest) in said {
        plan.push(Piece::Added(new_turn(dir, &rest)));
    }
    let changed = plan.iter().filter(|p| !matches!(p, Piece::Old(_))).count();
    let bytes = emit_binary(old_bytes, &turns, &plan);
    let text = match old_text {
        Some(text) => Some(emit_text(text, &turns, &plan)?),
        None => None,
    };
    Ok(Merged {
        bytes,
        text,
        changed,
    })
}

/// A turn of the pending tape: an old one kept, an old one changed, or one
/// the old tape did not have.
enum Piece {
    Old(usize),
    Changed(usize, NewTurn),
    Added(NewTurn),
}

struct NewTurn {
    dir: Direction,
    items: Vec<Item>,
    eof: bool,
}

fn new_turn(dir: Direction, said: &Said) -> NewTurn {
    let items = match said.bytes.is_empty() {
        true => Vec::new(),
        false => vec![Item::Bytes(said.bytes.clone())],
    };
    NewTurn {
        dir,
        items,
        eof: said.eof,
    }
}

/// The old tape's turns.
pub(super) fn turns(tape: &[u8]) -> Result<Vec<Turn>, TapeError> {
    let mut reader = Reader::new(tape);
    let mut turns: Vec<Turn> = Vec::new();
    // Frames that belong to no side (a delay) go with the turn after them.
    let mut start = None;
    // A span's recorded bytes still to come: (dir, span, bytes so far).
    let mut covering: Option<(Span, Vec<u8>)> = None;
    while let Some(frame) = reader.next_frame()? {
        let at = frame.offset;
        let dir = match frame.kind {
            Kind::Data(dir) | Kind::Any(dir) | Kind::Span(dir) | Kind::Eof(dir) => dir,
            Kind::Noop if frame.index == 0 => continue,
            _ => {
                start.get_or_insert(at);
                continue;
            }
        };
        if turns.last().is_none_or(|t| t.dir != dir || t.eof) {
            turns.push(Turn {
                dir,
                items: Vec::new(),
                eof: false,
                bytes: start.unwrap_or(at)..at,
            });
        }
        start = None;
        let turn = turns.last_mut().expect("a turn was pushed");
        match frame.kind {
            Kind::Span(_) => {
                let span = reader.read_span()?;
                covering = Some((span, Vec::new()));
            }
            Kind::Any(_) => {
                let count = reader.read_wildcard()?;
                turn.items.push(Item::Any(count));
            }
            Kind::Eof(_) => turn.eof = true,
            _ => {
                let mut payload = Vec::new();
                reader.read_payload_into(&mut payload)?;
                let mut payload = &payload[..];
                if let Some((span, got)) = &mut covering {
                    let take = (span.len as usize - got.len()).min(payload.len());
                    got.extend_from_slice(&payload[..take]);
                    payload = &payload[take..];
                    if got.len() == span.len as usize
                        && let Some((span, got)) = covering.take()
                    {
                        turn.items.push(Item::Span(span, got));
                    }
                }
                if !payload.is_empty() {
                    match turn.items.last_mut() {
                        Some(Item::Bytes(bytes)) => bytes.extend_from_slice(payload),
                        _ => turn.items.push(Item::Bytes(payload.to_vec())),
                    }
                }
            }
        }
        turn.bytes.end = reader.position();
    }
    if let (Some(at), Some(last)) = (start, turns.last_mut()) {
        last.bytes.end = last.bytes.end.max(at).max(tape.len() as u64);
    }
    Ok(turns)
}

/// The recorded session's turns, in order.
fn said(tape: &[u8]) -> Result<Vec<(Direction, Said)>, TapeError> {
    let mut reader = Reader::new(tape);
    let mut out: Vec<(Direction, Said)> = Vec::new();
    while let Some(frame) = reader.next_frame()? {
        let (dir, eof) = match frame.kind {
            Kind::Data(dir) => (dir, false),
            Kind::Eof(dir) => (dir, true),
            _ => continue,
        };
        if out.last().is_none_or(|(d, s)| *d != dir || s.eof) {
            out.push((dir, Said::default()));
        }
        let said = &mut out.last_mut().expect("a turn was pushed").1;
        if eof {
            said.eof = true;
        } else {
            reader.read_payload_into(&mut said.bytes)?;
        }
    }
    Ok(out)
}

/// True when `new` is what the turn's items allow: the same bytes, spans
/// of lengths they allow, lengths that count their bytes.
fn fits(items: &[Item], new: &[u8]) -> bool {
    place(items, new).is_some_and(|at| lengths_hold(items, &at, new))
}

/// Where each item starts in `new` when the items match it in order.
fn place(items: &[Item], new: &[u8]) -> Option<Vec<usize>> {
    let mut at = Vec::with_capacity(items.len() + 1);
    let mut pos = 0;
    for (i, item) in items.iter().enumerate() {
        at.push(pos);
        pos = match item {
            Item::Bytes(bytes) => {
                new.get(pos..pos + bytes.len())
                    .filter(|got| *got == bytes.as_slice())?;
                pos + bytes.len()
            }
            Item::Any(count) => pos + *count as usize,
            Item::Span(span, recorded) if span.is_fixed() => pos + recorded.len(),
            Item::Span(span, _) => {
                let min = pos + span.min as usize;
                let max = (pos + span.max as usize).min(new.len());
                match items.get(i + 1) {
                    Some(Item::Bytes(next)) if !next.is_empty() => {
                        (min..=max).find(|&end| new[end..].starts_with(next))?
                    }
                    // What is left is shorter than the span may be.
                    _ if max < min => return None,
                    _ => max,
                }
            }
        };
        if pos > new.len() {
            return None;
        }
    }
    at.push(pos);
    (pos == new.len()).then_some(at)
}

/// Every length span still counts the bytes after it, in `new` placed at
/// `at` (item starts, and the end).
fn lengths_hold(items: &[Item], at: &[usize], new: &[u8]) -> bool {
    // Where each item starts in the recorded bytes, and the end.
    let mut recorded = vec![0];
    for item in items {
        recorded.push(recorded.last().copied().unwrap_or(0) + item.recorded());
    }
    items.iter().enumerate().all(|(i, item)| {
        let Item::Span(span, _) = item else {
            return true;
        };
        let SpanKind::Length(length) = &span.kind else {
            return true;
        };
        // The region ends where an item starts (or the turn ends).
        let end = recorded[i + 1] + length.region as usize;
        let Some(last) = recorded.iter().position(|&r| r == end) else {
            return false;
        };
        let counted = at[last].saturating_sub(at[i + 1]) as u64;
        length.encoding.decode(&new[at[i]..at[i + 1]]) == Some(counted)
    })
}

/// The values the turn's captures take in `new`: where the turn still
/// fits the new bytes, or where a capture's surroundings are found again.
pub(super) fn captures(turn: &Turn, new: &[u8]) -> Vec<(String, Vec<u8>)> {
    let named = |item: &Item| match item {
        Item::Span(span, _) => match &span.kind {
            SpanKind::Capture(name) => Some(name.clone()),
            _ => None,
        },
        _ => None,
    };
    if let Some(at) = place(&turn.items, new) {
        return (0..turn.items.len())
            .filter_map(|i| Some((named(&turn.items[i])?, new[at[i]..at[i + 1]].to_vec())))
            .collect();
    }
    let refitted = refit(
        turn,
        &Said {
            bytes: new.to_vec(),
            eof: false,
        },
    );
    refitted
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Span(_, bytes) => Some((named(item)?, bytes.clone())),
            _ => None,
        })
        .collect()
}

/// The values the turn's captures took when it was recorded.
pub(super) fn recorded_captures(turn: &Turn) -> Vec<(String, Vec<u8>)> {
    turn.items
        .iter()
        .filter_map(|item| match item {
            Item::Span(span, bytes) => match &span.kind {
                SpanKind::Capture(name) => Some((name.clone(), bytes.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A changed turn: the new bytes, with the old turn's spans that still fit
/// them.
fn refit(turn: &Turn, said: &Said) -> NewTurn {
    let old: Vec<u8> = turn
        .items
        .iter()
        .flat_map(|item| match item {
            Item::Bytes(bytes) | Item::Span(_, bytes) => bytes.clone(),
            Item::Any(count) => vec![0; *count as usize],
        })
        .collect();
    let new = &said.bytes;
    let mut items = Vec::new();
    let mut pos = 0;
    let mut recorded = 0;
    for item in &turn.items {
        let here = recorded;
        recorded += item.recorded();
        let Item::Span(span, _) = item else {
            continue;
        };
        let Some(range) = find_again(&old, here..recorded, new, pos) else {
            continue;
        };
        let len = range.len() as u32;
        let mut span = span.clone();
        let fixed = span.is_fixed();
        let fits = match &mut span.kind {
            SpanKind::Length(length) => {
                // The bytes it counts must end where they did, and number
                // what the field now says.
                let end = recorded + length.region as usize;
                let counted = region_end(&old, end, new, range.end)
                    .map(|new_end| (new_end - range.end) as u64);
                let says = length.encoding.decode(&new[range.clone()]);
                match counted {
                    Some(counted) if says == Some(counted) => {
                        length.region = counted as u32;
                        true
                    }
                    _ => false,
                }
            }
            // A secret may take any length; it keeps its placeholder.
            SpanKind::Secret(_) => true,
            _ if fixed => len == span.len,
            _ => (span.min..=span.max).contains(&len),
        };
        if !fits {
            continue;
        }
        if range.start > pos {
            items.push(Item::Bytes(new[pos..range.start].to_vec()));
        }
        if matches!(span.kind, SpanKind::Length(_) | SpanKind::Secret(_)) || !span.is_fixed() {
            span.len = len;
            if matches!(span.kind, SpanKind::Length(_) | SpanKind::Secret(_)) {
                span.min = len;
                span.max = len;
            }
        }
        // The live value of a secret never reaches the pending tape.
        let bytes = match span.kind {
            SpanKind::Secret(_) => vec![b'*'; range.len()],
            _ => new[range.clone()].to_vec(),
        };
        items.push(Item::Span(span, bytes));
        pos = range.end;
    }
    if pos < new.len() {
        items.push(Item::Bytes(new[pos..].to_vec()));
    }
    NewTurn {
        dir: turn.dir,
        items,
        eof: said.eof,
    }
}

/// Where the old bytes `span` are in `new`, found by the recorded bytes
/// either side of them (from `from` on): as many of them as are found
/// there, up to `ANCHOR`, the nearest bytes first.
fn find_again(old: &[u8], span: Range<usize>, new: &[u8], from: usize) -> Option<Range<usize>> {
    let from = from.min(new.len());
    let start = match span.start {
        0 => 0,
        at => (1..=ANCHOR.min(at)).rev().find_map(|k| {
            let before = &old[at - k..at];
            find(&new[from..], before).map(|p| from + p + k)
        })?,
    };
    let end = match old.len() - span.end {
        0 => new.len(),
        left => (1..=ANCHOR.min(left)).rev().find_map(|k| {
            let after = &old[span.end..span.end + k];
            find(&new[start..], after).map(|p| start + p)
        })?,
    };
    Some(start..end)
}

/// Where the old boundary `at` (between two recorded bytes) is in `new`:
/// the recorded bytes before it found again (from `from` on), and those
/// after it right there.
fn region_end(old: &[u8], at: usize, new: &[u8], from: usize) -> Option<usize> {
    if at >= old.len() {
        return (at == old.len()).then_some(new.len());
    }
    let from = from.min(new.len());
    let after = &old[at..(at + ANCHOR).min(old.len())];
    (1..=ANCHOR.min(at)).rev().find_map(|k| {
        let before = &old[at - k..at];
        let end = from + find(&new[from..], before)? + k;
        new[end..].starts_with(after).then_some(end)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes a new turn's frames.
fn write_turn(w: &mut Writer<Vec<u8>>, turn: &NewTurn) {
    let put = |w: &mut Writer<Vec<u8>>, result: std::io::Result<()>| {
        // Memory takes every write; a span that does not check is never
        // kept (refit checks bounds), so this cannot fail.
        debug_assert!(result.is_ok());
        let _ = w;
    };
    for item in &turn.items {
        match item {
            Item::Bytes(bytes) => {
                let r = w.data(turn.dir, bytes);
                put(w, r);
            }
            Item::Span(span, bytes) => {
                let r = w
                    .span(turn.dir, span)
                    .and_then(|()| w.data(turn.dir, bytes));
                put(w, r);
            }
            Item::Any(count) => {
                let r = w.any(turn.dir, u64::from(*count));
                put(w, r);
            }
        }
    }
    if turn.eof {
        let r = w.eof(turn.dir);
        put(w, r);
    }
}

fn emit_binary(old: &[u8], turns: &[Turn], plan: &[Piece]) -> Vec<u8> {
    let mut w = Writer::in_memory();
    for piece in plan {
        match piece {
            Piece::Old(i) => {
                let range = &turns[*i].bytes;
                w.get_mut()
                    .extend_from_slice(&old[range.start as usize..range.end as usize]);
            }
            Piece::Changed(_, turn) | Piece::Added(turn) => write_turn(&mut w, turn),
        }
    }
    w.into_inner()
}

/// The pending tape as text: the old text's lines for the turns kept, the
/// new turns printed. A turn's lines run from the line after the turn
/// before it to its own last frame's, so the comments above a turn go
/// with it; a changed turn keeps them.
fn emit_text(old_text: &str, turns: &[Turn], plan: &[Piece]) -> Result<String, String> {
    let Built { lines: map, .. } = text::build(old_text).map_err(|err| err.to_string())?;
    let lines: Vec<&str> = old_text.split_inclusive('\n').collect();
    // The header's line, then each turn's last line (1-based).
    let mut ends = vec![map.line_at(0).map_or(1, |l| l as usize)];
    for turn in turns {
        let last = map.line_at(turn.bytes.end.saturating_sub(1));
        ends.push(last.map_or(lines.len(), |l| l as usize).min(lines.len()));
    }
    let range = |i: usize| ends[i].min(ends[i + 1])..ends[i + 1];
    let comment = |line: &&&str| {
        let line = line.trim_start();
        line.is_empty() || line.starts_with('#')
    };
    let mut out: String = lines[..ends[0].min(lines.len())].concat();
    for piece in plan {
        match piece {
            Piece::Old(i) => out.push_str(&lines[range(*i)].concat()),
            Piece::Changed(i, turn) => {
                let leading = lines[range(*i)].iter().take_while(comment);
                out.extend(leading.copied());
                out.push_str(&print_turn(turn)?);
            }
            Piece::Added(turn) => out.push_str(&print_turn(turn)?),
        }
    }
    // Comments after the last turn.
    out.push_str(&lines[ends.last().copied().unwrap_or(0).min(lines.len())..].concat());
    Ok(out)
}

/// A new turn in text form.
fn print_turn(turn: &NewTurn) -> Result<String, String> {
    let mut w = Writer::in_memory();
    write_turn(&mut w, turn);
    let bytes = w.into_inner();
    let mut out = Vec::new();
    text::print(&mut Reader::new(bytes.as_slice()), &mut out).map_err(|err| format!("{err:?}"))?;
    let printed = String::from_utf8_lossy(&out).into_owned();
    // Without the header line.
    Ok(printed
        .split_once('\n')
        .map_or(String::new(), |(_, rest)| rest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn session(turns: &[(Direction, &[u8])]) -> Vec<u8> {
        let mut w = Writer::in_memory();
        for (dir, bytes) in turns {
            w.data(*dir, bytes).unwrap();
        }
        w.eof(C2S).unwrap();
        w.eof(S2C).unwrap();
        w.into_inner()
    }

    #[test]
    fn a_span_at_the_end_fits_only_bytes_of_a_length_it_allows() {
        let span = Span {
            kind: SpanKind::Vary,
            len: 5,
            min: 5,
            max: 10,
        };
        let mut w = Writer::in_memory();
        w.data(S2C, b"token=").unwrap();
        w.span(S2C, &span).unwrap();
        w.data(S2C, b"abcde").unwrap();
        let turns = turns(&w.into_inner()).unwrap();
        let items = &turns[0].items;
        assert!(fits(items, b"token=vwxyz"));
        assert!(fits(items, b"token=0123456789"));
        assert!(!fits(items, b"token=ab"), "shorter than the span's least");
        assert!(!fits(items, b"token="));
    }

    #[test]
    fn a_session_that_matched_leaves_the_tape_as_it_was() {
        let old = session(&[(C2S, b"HELLO\n"), (S2C, b"WELCOME v1\n")]);
        let merged = merge((&old, None), &old, Some(C2S)).unwrap();
        assert_eq!(merged.changed, 0);
        assert_eq!(merged.bytes, old);
    }

    #[test]
    fn a_changed_answer_takes_the_new_bytes_and_the_rest_stays() {
        let old = session(&[
            (C2S, b"HELLO\n"),
            (S2C, b"WELCOME v1\n"),
            (C2S, b"BYE\n"),
            (S2C, b"BYE\n"),
        ]);
        let new = session(&[
            (C2S, b"HELLO\n"),
            (S2C, b"WELCOME v2\n"),
            (C2S, b"BYE\n"),
            (S2C, b"BYE\n"),
        ]);
        let merged = merge((&old, None), &new, Some(C2S)).unwrap();
        assert_eq!(merged.changed, 1);
        assert_eq!(merged.bytes, new);
    }

    #[test]
    fn a_text_tape_keeps_its_comments_where_it_did_not_change() {
        let text = "tcptape text 1\n# the login\n> \"HELLO\\n\"\n< \"WELCOME v1\\n\"\n# the end\n> \"BYE\\n\"\n< \"BYE\\n\"\neof >\neof <\n";
        let old = text::parse(text).unwrap();
        let new = session(&[
            (C2S, b"HELLO\n"),
            (S2C, b"WELCOME v2\n"),
            (C2S, b"BYE\n"),
            (S2C, b"BYE\n"),
        ]);
        let merged = merge((&old, Some(text)), &new, Some(C2S)).unwrap();
        let out = merged.text.unwrap();
        assert!(
            out.starts_with("tcptape text 1\n# the login\n> \"HELLO\\n\"\n"),
            "{out}"
        );
        assert!(out.contains("< \"WELCOME v2\\n\"\n"), "{out}");
        assert!(out.contains("# the end\n> \"BYE\\n\"\n"), "{out}");
        assert_eq!(
            text::parse(&out).unwrap(),
            merged.bytes,
            "text and binary agree"
        );
    }

    #[test]
    fn a_capture_in_a_changed_answer_is_kept_where_its_surroundings_are() {
        let text = "tcptape text 1\n> \"HELLO\\n\"\n< \"v1 token=\" [capture tok 1..64 \"abc\"] \";\\n\"\neof >\neof <\n";
        let old = text::parse(text).unwrap();
        let new = session(&[(C2S, b"HELLO\n"), (S2C, b"v2 token=wxyz;\n")]);
        let merged = merge((&old, Some(text)), &new, Some(C2S)).unwrap();
        let out = merged.text.unwrap();
        assert!(out.contains("[capture tok 1..64 \"wxyz\"]"), "{out}");
        assert!(out.contains("\"v2 token=\""), "{out}");
    }

    #[test]
    fn a_span_whose_value_moved_within_its_bounds_still_matches() {
        let text = "tcptape text 1\n> \"HELLO\\n\"\n< \"token=\" [vary 1..64 \"abc\"] \";\\n\"\neof >\neof <\n";
        let old = text::parse(text).unwrap();
        let new = session(&[(C2S, b"HELLO\n"), (S2C, b"token=a-longer-one;\n")]);
        let merged = merge((&old, Some(text)), &new, Some(C2S)).unwrap();
        assert_eq!(merged.changed, 0);
        assert_eq!(merged.text.unwrap(), text);
    }
}
