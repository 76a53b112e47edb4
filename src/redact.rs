//! `tcptape redact RULES... TAPE|DIR/...`: rewrites tapes already recorded
//! so that what the rules name is a secret span over a placeholder, as a
//! recording with those rules would have made it.
//!
//! Two passes over each tape: the first feeds each direction's bytes to a
//! matcher (the one the proxy uses) and notes where the secrets are; the
//! second writes the tape again with them cut out of their data frames. A
//! secret that runs over several data frames gets a span in each. Every
//! tape is worked out before any is written, and each is replaced
//! atomically (a temporary file renamed over it, holding no secret). A
//! text tape stays text: the lines of frames that held no secret are kept
//! as written, comments included, but for what the rules name in a
//! comment, which is starred; the frames that did are printed anew.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::cassette;
use crate::error::Error;
use crate::output;
use std::rc::Rc;

use crate::secrets::{Finder, Matcher, Piece, Release, Rules};
use crate::tape::text::{self, LineMap};
use crate::tape::{Kind, Reader, Span, SpanKind, TapeError, Writer};

/// The most secrets one tape may hold: their places are kept in memory
/// between the passes.
const MAX_SECRETS: usize = 1 << 20;

/// A secret found: its bytes in its direction's stream, and its rule.
#[derive(Debug, Clone)]
struct Found {
    range: Range<u64>,
    rule: usize,
}

/// What redacting one tape did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redacted {
    pub tape: PathBuf,
    /// Secret spans written (a secret over several frames counts in each).
    pub secrets: usize,
}

/// Redacts every tape of `paths` (tapes, and the tapes of cassette
/// folders); returns what each got. Tapes without secrets are left as they
/// are.
pub(crate) fn run(rules: &Rules, paths: &[PathBuf]) -> Result<Vec<Redacted>, Error> {
    let mut tapes = Vec::new();
    for path in paths {
        if path.is_dir() {
            tapes.extend(cassette::tapes(path)?);
        } else {
            tapes.push(path.clone());
        }
    }
    // Everything is worked out before anything is written.
    let mut rewritten = Vec::new();
    for tape in &tapes {
        rewritten.push(redact(rules, tape)?);
    }
    let mut done = Vec::new();
    for (tape, (secrets, content)) in tapes.into_iter().zip(rewritten) {
        if secrets > 0 {
            output::write_atomically(&tape, |out| out.write_all(&content))
                .map_err(|err| Error::file(&tape, "write tape", err))?;
        }
        done.push(Redacted { tape, secrets });
    }
    Ok(done)
}

/// The tape at `path` redacted: the number of secret spans and the new
/// file's content.
fn redact(rules: &Rules, path: &Path) -> Result<(usize, Vec<u8>), Error> {
    let content = std::fs::read(path).map_err(|err| Error::file(path, "read tape", err))?;
    let is_text = text::looks_like_text(&content[..content.len().min(512)]);
    let (binary, lines) = if is_text {
        let source = String::from_utf8(content).map_err(|_| {
            Error::refused(
                path,
                format!("{}: a text tape must be UTF-8", path.display()),
            )
        })?;
        let built = text::build(&source).map_err(|source| Error::Text {
            path: path.to_path_buf(),
            source,
        })?;
        (built.bytes, Some((source, built.lines)))
    } else {
        (content, None)
    };
    let tape_error = |source: TapeError| Error::tape(path, source);
    let found = find(rules, &binary).map_err(tape_error)?;
    if found.iter().map(Vec::len).sum::<usize>() > MAX_SECRETS {
        return Err(Error::refused(
            path,
            format!("{}: more than {MAX_SECRETS} secrets", path.display()),
        ));
    }
    let rewritten = rewrite(rules, &binary, &found)
        .map_err(|why| Error::refused(path, format!("{}: {why}", path.display())))?;
    match lines {
        Some((source, map)) => {
            let (text, in_comments) =
                retext(&source, &map, (&binary, &rewritten), rules).map_err(tape_error)?;
            match rewritten.secrets + in_comments {
                0 => Ok((0, rewritten.bytes)),
                secrets => Ok((secrets, text.into_bytes())),
            }
        }
        None => Ok((rewritten.secrets, rewritten.bytes)),
    }
}

/// One direction's stream as the first pass reads it.
struct Stream {
    matcher: Matcher,
    /// Bytes not released yet.
    pending: Vec<u8>,
    /// Where they start in the stream.
    offset: u64,
    found: Vec<Found>,
}

impl Stream {
    fn new(rules: &Rules) -> Stream {
        Stream {
            matcher: Matcher::new(Matcher::finder(rules)),
            pending: Vec::new(),
            offset: 0,
            found: Vec::new(),
        }
    }

    /// Releases what `how` allows, noting the secrets.
    fn release(&mut self, how: Release) {
        let mut pieces = Vec::new();
        loop {
            pieces.clear();
            let n = self.matcher.scan([&self.pending, &[]], how, &mut pieces);
            note(&pieces, &mut self.offset, &mut self.found);
            self.pending.drain(..n);
            if how == Release::Hold || self.pending.is_empty() || n == 0 {
                return;
            }
        }
    }
}

/// Where the secrets are, per direction.
fn find(rules: &Rules, binary: &[u8]) -> Result<[Vec<Found>; 2], TapeError> {
    let mut streams = [Stream::new(rules), Stream::new(rules)];
    let mut reader = Reader::new(binary);
    while let Some(frame) = reader.next_frame()? {
        match frame.kind {
            Kind::Data(dir) => {
                let stream = &mut streams[dir.index()];
                reader.read_payload_into(&mut stream.pending)?;
                stream.release(Release::Hold);
            }
            // A wildcard's bytes are none to look at: what came before
            // it ends there.
            Kind::Any(dir) => {
                let count = reader.read_wildcard()?;
                let stream = &mut streams[dir.index()];
                stream.release(Release::End);
                stream.offset += u64::from(count);
                stream.matcher = Matcher::new(Matcher::finder(rules));
            }
            _ => {}
        }
    }
    let [mut c2s, mut s2c] = streams;
    c2s.release(Release::End);
    s2c.release(Release::End);
    Ok([c2s.found, s2c.found])
}

/// Adds the secrets among `pieces` (from stream offset `at`) to `found`.
fn note(pieces: &[Piece], at: &mut u64, found: &mut Vec<Found>) {
    for piece in pieces {
        let end = *at + piece.len as u64;
        if let Some(rule) = piece.secret {
            found.push(Found {
                range: *at..end,
                rule,
            });
        }
        *at = end;
    }
}

/// The tape written again with the secrets cut out.
struct Rewritten {
    /// Secret spans written.
    secrets: usize,
    bytes: Vec<u8>,
    /// The indexes of the frames that held secrets.
    touched: Vec<u64>,
    /// For each frame, where what it became is in `bytes`.
    became: Vec<Range<usize>>,
}

fn rewrite(rules: &Rules, binary: &[u8], found: &[Vec<Found>; 2]) -> Result<Rewritten, String> {
    let mut writer = Writer::new(Vec::new()).map_err(|e| e.to_string())?;
    let mut reader = Reader::new(binary);
    let mut offsets = [0u64; 2];
    let mut next = [0usize; 2];
    // The bytes of each direction an existing span covers, still to come.
    let mut covered = [0u64; 2];
    let mut out = Rewritten {
        secrets: 0,
        bytes: Vec::new(),
        touched: Vec::new(),
        became: Vec::new(),
    };
    let mut payload = Vec::new();
    let io = |e: std::io::Error| e.to_string();
    let bad = |e: TapeError| e.to_string();
    while let Some(frame) = reader.next_frame().map_err(bad)? {
        let before = writer.get_ref().len();
        payload.clear();
        match frame.kind {
            Kind::Data(dir) => {
                let i = dir.index();
                reader.read_payload_into(&mut payload).map_err(bad)?;
                let start = offsets[i];
                let end = start + payload.len() as u64;
                let mut at = start;
                while let Some(secret) = found[i].get(next[i]).filter(|s| s.range.start < end) {
                    let from = secret.range.start.max(at);
                    let to = secret.range.end.min(end);
                    if covered[i] > from - start {
                        return Err(format!(
                            "a secret in the bytes of a span (frame {}): redact it by hand",
                            frame.index
                        ));
                    }
                    let plain = &payload[(at - start) as usize..(from - start) as usize];
                    if !plain.is_empty() {
                        writer.data(dir, plain).map_err(io)?;
                    }
                    let name = rules.name(secret.rule).to_string();
                    let len = (to - from) as usize;
                    let span = Span::fixed(SpanKind::Secret(name), len as u32);
                    writer.span(dir, &span).map_err(io)?;
                    writer.data(dir, &vec![b'*'; len]).map_err(io)?;
                    out.secrets += 1;
                    at = to;
                    if secret.range.end > end {
                        break;
                    }
                    next[i] += 1;
                }
                if at == start {
                    writer.data(dir, &payload).map_err(io)?;
                } else {
                    out.touched.push(frame.index);
                    if at < end {
                        writer
                            .data(dir, &payload[(at - start) as usize..])
                            .map_err(io)?;
                    }
                }
                covered[i] = covered[i].saturating_sub(payload.len() as u64);
                offsets[i] = end;
            }
            Kind::Span(dir) => {
                let span = reader.read_span().map_err(bad)?;
                covered[dir.index()] = u64::from(span.len);
                writer.span(dir, &span).map_err(io)?;
            }
            Kind::Any(dir) => {
                let count = reader.read_wildcard().map_err(bad)?;
                offsets[dir.index()] += u64::from(count);
                writer.any(dir, u64::from(count)).map_err(io)?;
            }
            Kind::Delay => writer.delay(u64::from(frame.len)).map_err(io)?,
            Kind::Eof(dir) => writer.eof(dir).map_err(io)?,
            // The magic is written by the writer.
            Kind::Noop if frame.index == 0 => {}
            Kind::Noop => {
                reader.read_payload_into(&mut payload).map_err(bad)?;
                writer.noop(&payload).map_err(io)?;
            }
            Kind::Cut | Kind::Extension(_) => {
                reader.read_payload_into(&mut payload).map_err(bad)?;
                writer
                    .extension(frame.kind.opcode(), &payload)
                    .map_err(io)?;
            }
        }
        out.became.push(before..writer.get_ref().len());
    }
    out.bytes = writer.into_inner();
    Ok(out)
}

/// A text tape with the lines of the frames that held secrets printed
/// anew from the redacted tape (with every frame written on those lines);
/// every other line kept as it is, comments included, what the rules name
/// in a comment starred. Also returns how many secrets the comments held.
fn retext(
    source: &str,
    map: &LineMap,
    (old, new): (&[u8], &Rewritten),
    rules: &Rules,
) -> Result<(String, usize), TapeError> {
    // The lines each frame was written on.
    let mut frames = Vec::new();
    let mut reader = Reader::new(old);
    while let Some(frame) = reader.next_frame()? {
        let last = frame.offset + 4 + u64::from(frame.len) - 1;
        frames.push(map.line_at(frame.offset).zip(map.line_at(last)));
    }
    frames[0] = None;
    // Groups of lines to print anew: those of the frames that held
    // secrets, grown over every frame that shares a line with them.
    let mut groups: Vec<(u32, u32)> = new
        .touched
        .iter()
        .filter_map(|&i| frames.get(i as usize).copied().flatten())
        .collect();
    loop {
        let mut grown = false;
        for group in &mut groups {
            for &(a, b) in frames.iter().flatten() {
                if a <= group.1 && group.0 <= b && (a < group.0 || b > group.1) {
                    *group = (group.0.min(a), group.1.max(b));
                    grown = true;
                }
            }
        }
        groups.sort_unstable();
        groups.dedup_by(|b, a| {
            let overlap = b.0 <= a.1;
            if overlap {
                a.1 = a.1.max(b.1);
            }
            overlap
        });
        if !grown {
            break;
        }
    }
    let mut out = String::with_capacity(source.len());
    let mut in_comments = 0;
    let finder = Matcher::finder(rules);
    for (number, line) in source.lines().enumerate() {
        let number = number as u32 + 1;
        match groups.iter().find(|g| g.0 <= number && number <= g.1) {
            None => {
                let (kept, secrets) = star_comment(&finder, line);
                in_comments += secrets;
                out.push_str(&kept);
                out.push('\n');
            }
            Some(&(first, last)) if first == number => {
                // What the group's frames became, printed as a tape of
                // their own (its header line left out).
                let inside =
                    |f: &Option<(u32, u32)>| f.is_some_and(|(a, _)| first <= a && a <= last);
                let became: Vec<&Range<usize>> = frames
                    .iter()
                    .zip(&new.became)
                    .filter(|(f, _)| inside(f))
                    .map(|(_, r)| r)
                    .collect();
                let (Some(start), Some(end)) = (became.first(), became.last()) else {
                    continue;
                };
                let mut tape = crate::tape::frame::magic_frame().to_vec();
                tape.extend_from_slice(&new.bytes[start.start..end.end]);
                let mut text = Vec::new();
                if text::print(&mut Reader::new(tape.as_slice()), &mut text).is_err() {
                    continue;
                }
                let text = String::from_utf8_lossy(&text);
                for printed in text.lines().skip(1) {
                    out.push_str(printed);
                    out.push('\n');
                }
            }
            Some(_) => {}
        }
    }
    Ok((out, in_comments))
}

/// `line` with what the rules (`finder`) name in its comment (from a `#`
/// outside quotes on) starred, and how many secrets that was.
fn star_comment(finder: &Rc<Finder>, line: &str) -> (String, usize) {
    let mut quoted = false;
    let mut escaped = false;
    let start = line.char_indices().find_map(|(i, c)| {
        match (c, quoted, escaped) {
            (_, true, true) => escaped = false,
            ('\\', true, false) => escaped = true,
            ('"', _, _) => quoted = !quoted,
            ('#', false, _) => return Some(i),
            _ => {}
        }
        None
    });
    let Some(start) = start else {
        return (line.to_string(), 0);
    };
    let mut bytes = line.as_bytes().to_vec();
    let mut matcher = Matcher::new(finder.clone());
    let mut pieces = Vec::new();
    let mut at = start;
    let mut secrets = 0;
    while at < bytes.len() {
        pieces.clear();
        let n = matcher.scan([&line.as_bytes()[at..], &[]], Release::End, &mut pieces);
        if n == 0 {
            break;
        }
        for piece in &pieces {
            if piece.secret.is_some() {
                bytes[at..at + piece.len].fill(b'*');
                secrets += 1;
            }
            at += piece.len;
        }
    }
    (String::from_utf8_lossy(&bytes).into_owned(), secrets)
}
