//! The tape read as a script for one role, through two cursors over the same
//! file: [`Expect`] walks the peer's frames and checks what arrives, [`Play`]
//! walks our own frames and says what to send next and when it may go.
//!
//! Causality comes from counting: `Play` notes how many of the peer's
//! recorded bytes (and whether its EOF) came before each of our frames; the
//! frame may go once `Expect` has accounted for that many. Both count in
//! the tape's terms: a span whose live value is longer or shorter than the
//! recorded one counts as its recorded length once it is complete.
//!
//! Spans (`tape::span`): a vary span of the peer is not compared and may
//! take `min..=max` live bytes, ending where the recorded bytes after it
//! appear; a capture keeps its live value in [`Captures`]; an echo of the
//! peer must repeat a captured value, and an echo of ours sends it. A
//! length of the peer is checked once the bytes it counts have arrived; a
//! length of ours is sent grown or shrunk by what the echoes it counts
//! change.

use std::collections::HashMap;

use crate::tape::{
    Direction, Encoding, Frame, Kind, Length, Reader, Source, Span, SpanKind, TapeError,
};

/// Bytes after a variable span that end it: the recorded bytes that follow
/// it, up to this many.
const DELIMITER: usize = 16;

/// Bytes read at a time when looking a little way ahead (a length's
/// bytes, the frames a length counts): a few frames' headers, not a full
/// read-ahead buffer for every length field of a session.
const SHORT_LOOK: usize = 256;

/// Values captured during a session, by name; both cursors fill and read it.
#[derive(Debug, Default)]
pub struct Captures(HashMap<String, Vec<u8>>);

impl Captures {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(Vec::as_slice)
    }

    fn insert(&mut self, name: &str, value: Vec<u8>) {
        self.0.insert(name.to_string(), value);
    }
}

/// What the peer owes us next, according to the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// `remaining` more bytes of data frame `frame`.
    Data { frame: Frame, remaining: u32 },
    /// `remaining` more bytes of wildcard `frame`: counted, never compared.
    Any { frame: Frame, remaining: u32 },
    /// A value that varies (span `frame`): `received` live bytes of it so far.
    Span { frame: Frame, received: u32 },
    /// The peer's half-close, recorded as `frame`.
    Eof { frame: Frame },
    /// The peer's EOF came where the tape has it.
    Closed,
    /// The tape holds nothing more from the peer, and no EOF.
    End,
}

/// A way the peer departed from the tape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub kind: DeviationKind,
    /// Offset in the peer's live byte stream where it departed.
    pub stream_offset: u64,
    /// What arrived, from a little before the departure.
    pub received: Excerpt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviationKind {
    /// A received byte differs from byte `at` of data frame `frame`'s payload.
    Differ { frame: Frame, at: u32 },
    /// Data arrived where the tape has the peer's EOF.
    DataInsteadOfEof { frame: Frame },
    /// Data arrived after everything the tape holds from the peer.
    DataAfterEnd,
    /// The peer closed where the tape expects byte `at` of `frame`, with
    /// `remaining` bytes of that frame still owed.
    EarlyEof {
        frame: Frame,
        at: u32,
        remaining: u32,
    },
    /// The peer reset the connection while the tape expected more.
    Reset,
    /// A varying value (span `frame`) went on past its longest, `max`,
    /// without the bytes that end it.
    SpanTooLong { frame: Frame, max: u32 },
    /// The peer closed inside a varying value shorter than its `min`.
    SpanTooShort { frame: Frame, min: u32, got: u32 },
    /// Byte `at` of an echo (span `frame`) differs from the value
    /// captured as `name`, `value`.
    EchoDiffers {
        frame: Frame,
        name: String,
        at: u32,
        value: Vec<u8>,
    },
    /// The bytes of a length field (span `frame`) are not a length of its
    /// encoding.
    NotALength { frame: Frame, encoding: Encoding },
    /// A length field (span `frame`) said `said`, but the bytes it counts
    /// make it `counted`.
    LengthDiffers {
        frame: Frame,
        said: u64,
        counted: u64,
    },
}

/// A window of received bytes; `mismatch` is the index of the first byte
/// that departs from the tape (equal to `bytes.len()` when none is shown).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Excerpt {
    pub bytes: Vec<u8>,
    pub mismatch: usize,
}

/// Context kept before the departure point, in bytes: enough to read the
/// line a server's error message is on.
pub const CONTEXT_BEFORE: usize = 256;
/// Context kept after it: enough for a line diff of a text protocol.
pub const CONTEXT_AFTER: usize = 4096;

/// Why the peer's bytes could not be checked.
#[derive(Debug)]
pub enum Fault {
    Deviation(Box<Deviation>),
    Tape(TapeError),
    /// The tape's spans do not make sense (checked at load; this is what a
    /// tape that slipped past the check gets).
    BadSpan(String),
}

impl From<TapeError> for Fault {
    fn from(err: TapeError) -> Fault {
        Fault::Tape(err)
    }
}

/// Moves `reader` past the next `len` bytes of `dir`'s data, from the
/// current frame's unread payload on. Returns the data frame it stopped
/// in when bytes of it are left over.
fn skip_covered<S: Source>(
    reader: &mut Reader<S>,
    dir: Direction,
    mut len: u32,
    current: &mut Option<Frame>,
) -> Result<Option<Frame>, Fault> {
    loop {
        let left = reader.payload_left() as u32;
        let in_frame = matches!(current, Some(f) if f.kind == Kind::Data(dir));
        if in_frame && left > 0 {
            let n = left.min(len);
            reader.consume_payload(n as usize);
            len -= n;
            if len == 0 {
                return Ok((left > n).then_some(current.unwrap()));
            }
        } else if len == 0 {
            return Ok(None);
        }
        match reader.next_frame()? {
            Some(frame) => *current = Some(frame),
            None => {
                return Err(Fault::BadSpan(format!(
                    "a span covers {len} bytes more than the tape holds"
                )));
            }
        }
    }
}

/// A length field's recorded value.
fn recorded_length(frame: Frame, encoding: Encoding, bytes: &[u8]) -> Result<u64, Fault> {
    encoding.decode(bytes).ok_or_else(|| {
        Fault::BadSpan(format!(
            "span frame {}: the recorded bytes are not a {} length",
            frame.index,
            encoding.name()
        ))
    })
}

/// The `len` recorded bytes of `dir` a span covers, read ahead from the
/// reader's place (a length field's: a few bytes).
fn covered_bytes<S: Source + Clone>(
    reader: &Reader<S>,
    dir: Direction,
    len: u32,
    current: Option<Frame>,
) -> Result<Vec<u8>, Fault> {
    let mut ahead = reader.fork_reading(SHORT_LOOK);
    let mut current = current;
    let mut out = Vec::with_capacity(len as usize);
    while out.len() < len as usize {
        if matches!(current, Some(f) if f.kind == Kind::Data(dir)) {
            let chunk = ahead.read_payload(len as usize - out.len())?;
            if !chunk.is_empty() {
                out.extend_from_slice(chunk);
                continue;
            }
        }
        current = ahead.next_frame()?;
        if current.is_none() {
            return Err(Fault::BadSpan(format!(
                "a span covers {} bytes more than the tape holds",
                len as usize - out.len()
            )));
        }
    }
    Ok(out)
}

/// The recorded bytes of `dir` from the reader's place on, up to
/// `DELIMITER` of them, before anything that is not plain data (a span,
/// a wildcard, an EOF) and before the other side's next move: what the
/// peer sends after that may wait for us, so it cannot end the span.
fn literal_after<S: Source + Clone>(
    reader: &Reader<S>,
    dir: Direction,
    current: Option<Frame>,
) -> Result<Vec<u8>, Fault> {
    let mut ahead = reader.fork();
    let mut out = Vec::new();
    let mut in_data = matches!(current, Some(f) if f.kind == Kind::Data(dir));
    while out.len() < DELIMITER {
        if in_data {
            let chunk = ahead.read_payload(DELIMITER - out.len())?;
            if !chunk.is_empty() {
                out.extend_from_slice(chunk);
                continue;
            }
        }
        let Some(frame) = ahead.next_frame()? else {
            break;
        };
        match frame.kind {
            Kind::Data(d) if d == dir => in_data = true,
            Kind::Data(_) if frame.len == 0 => {}
            Kind::Data(_) | Kind::Any(_) | Kind::Eof(_) | Kind::Span(_) | Kind::Cut => break,
            Kind::Noop | Kind::Delay | Kind::Extension(_) => in_data = false,
        }
    }
    Ok(out)
}

/// A span of the peer's that is being received.
#[derive(Debug)]
struct Receiving {
    span: Span,
    frame: Frame,
    /// Live bytes so far (a capture's value, a length, a variable span's
    /// search window); for a fixed vary span only its count matters.
    value: Vec<u8>,
    /// A length's recorded value.
    recorded: u64,
    received: u32,
    /// The live stream offset where the span began.
    started_at: u64,
    /// The recorded bytes after a variable span, which end it.
    delimiter: Vec<u8>,
    /// The live length of a variable span that ends where a length's
    /// counted bytes do: the length says it.
    known: Option<u32>,
    /// The data frame whose rest follows the span, if it ended mid-frame.
    resume: Option<Frame>,
}

/// A length of the peer's whose counted bytes are arriving.
#[derive(Debug)]
struct Counting {
    frame: Frame,
    /// The length as received, and as recorded.
    said: u64,
    recorded: u64,
    /// Recorded bytes it counts, and where they end (in `matched` terms).
    region: u32,
    end: u64,
    /// The live stream offset where the counted bytes began.
    live_start: u64,
}

pub struct Expect<S: Source> {
    reader: Reader<S>,
    peer: Direction,
    /// The peer's recorded bytes accounted for (the tape's terms).
    matched: u64,
    /// Live bytes received from the peer.
    received: u64,
    next: Expected,
    /// The frame read last, for spans that end inside it.
    current: Option<Frame>,
    span: Option<Receiving>,
    /// Lengths whose counted bytes are still arriving, innermost last (at
    /// most `MAX_NESTED_LENGTHS`, checked at load).
    lengths: Vec<Counting>,
    /// A departure found away from the bytes (a length found wrong, a
    /// value a length makes too long), reported by `receive` with the
    /// bytes around.
    departure: Option<DeviationKind>,
    /// Whether bytes are compared (off for `--no-assert`), as last told.
    compare: bool,
}

impl<S: Source + Clone> Expect<S> {
    pub fn new(reader: Reader<S>, peer: Direction) -> Result<Expect<S>, Fault> {
        let mut expect = Expect {
            reader,
            peer,
            matched: 0,
            received: 0,
            next: Expected::End,
            current: None,
            span: None,
            lengths: Vec::new(),
            departure: None,
            compare: true,
        };
        expect.advance()?;
        Ok(expect)
    }

    /// The peer's recorded bytes accounted for: what `Play` counts against.
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// Live bytes received from the peer so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// True once the peer's EOF arrived where the tape has it.
    pub fn peer_closed(&self) -> bool {
        self.next == Expected::Closed
    }

    pub fn next(&self) -> Expected {
        self.next
    }

    /// True when the peer owes nothing more.
    pub fn is_done(&self) -> bool {
        matches!(self.next, Expected::Closed | Expected::End)
    }

    /// Gives the read buffer back while the session waits; returns its size.
    pub fn release_buffer(&mut self) -> usize {
        self.reader.release_buffer()
    }

    /// Moves to the peer's next frame that owes something.
    fn advance(&mut self) -> Result<(), Fault> {
        while let Some(frame) = self.reader.next_frame()? {
            self.current = Some(frame);
            match frame.kind {
                Kind::Data(dir) if dir == self.peer && frame.len > 0 => {
                    self.next = Expected::Data {
                        frame,
                        remaining: frame.len,
                    };
                    return Ok(());
                }
                Kind::Any(dir) if dir == self.peer => {
                    let count = self.reader.read_wildcard()?;
                    if count > 0 {
                        self.next = Expected::Any {
                            frame,
                            remaining: count,
                        };
                        return Ok(());
                    }
                }
                Kind::Span(dir) if dir == self.peer => return self.enter_span(frame),
                Kind::Eof(dir) if dir == self.peer => {
                    self.next = Expected::Eof { frame };
                    return Ok(());
                }
                _ => {}
            }
        }
        self.next = Expected::End;
        Ok(())
    }

    /// The peer's span `frame` is next: its recorded bytes are skipped and
    /// the live value awaited.
    fn enter_span(&mut self, frame: Frame) -> Result<(), Fault> {
        let span = self.reader.read_span()?;
        self.current = Some(frame);
        let recorded = match &span.kind {
            SpanKind::Length(length) => {
                let bytes = covered_bytes(&self.reader, self.peer, span.len, self.current)?;
                recorded_length(frame, length.encoding, &bytes)?
            }
            _ => 0,
        };
        let resume = skip_covered(&mut self.reader, self.peer, span.len, &mut self.current)?;
        let variable = !span.is_fixed() && !matches!(span.kind, SpanKind::Echo(_));
        let delimiter = if variable {
            literal_after(&self.reader, self.peer, resume)?
        } else {
            Vec::new()
        };
        let mut known = None;
        if let Some(c) = self.lengths.last()
            && variable
            && c.end == self.matched + u64::from(span.len)
        {
            // What the length says is left of its bytes.
            let counted = i128::from(c.said) + i128::from(c.region) - i128::from(c.recorded);
            let so_far = i128::from(self.received - c.live_start);
            let left = counted - so_far;
            let (min, max) = (span.min, span.max);
            if left < 0 {
                // Its bytes so far already make it longer than it says.
                let at_least = i128::from(c.recorded) - i128::from(c.region) + so_far;
                self.departure = Some(DeviationKind::LengthDiffers {
                    frame: c.frame,
                    said: c.said,
                    counted: u64::try_from(at_least).unwrap_or(0),
                });
            } else if left > i128::from(max) {
                self.departure = Some(DeviationKind::SpanTooLong { frame, max });
            } else if left < i128::from(min) {
                let got = left as u32;
                self.departure = Some(DeviationKind::SpanTooShort { frame, min, got });
            } else {
                known = Some(left as u32);
            }
        }
        self.span = Some(Receiving {
            span,
            frame,
            value: Vec::new(),
            recorded,
            received: 0,
            started_at: self.received,
            delimiter,
            known,
            resume,
        });
        self.next = Expected::Span { frame, received: 0 };
        Ok(())
    }

    /// The span is complete with `value`: it counts as its recorded bytes.
    fn leave_span(&mut self, captures: &mut Captures) -> Result<(), Fault> {
        let Some(receiving) = self.span.take() else {
            return Ok(());
        };
        self.matched += u64::from(receiving.span.len);
        match &receiving.span.kind {
            SpanKind::Capture(name) => captures.insert(name, receiving.value),
            SpanKind::Length(length) => match length.encoding.decode(&receiving.value) {
                Some(said) => self.lengths.push(Counting {
                    frame: receiving.frame,
                    said,
                    recorded: receiving.recorded,
                    region: length.region,
                    end: self.matched + u64::from(length.region),
                    live_start: self.received,
                }),
                // Unchecked (`--no-assert`), what is no length counts
                // nothing.
                None if !self.compare => {}
                None => {
                    let (frame, encoding) = (receiving.frame, length.encoding);
                    self.departure = Some(DeviationKind::NotALength { frame, encoding });
                }
            },
            SpanKind::Vary | SpanKind::Echo(_) => {}
        }
        self.count_lengths();
        match receiving.resume {
            Some(frame) => {
                self.next = Expected::Data {
                    frame,
                    remaining: self.reader.payload_left() as u32,
                };
                Ok(())
            }
            None => self.advance(),
        }
    }

    /// Checks the lengths whose counted bytes are all accounted for: a
    /// length is what was recorded, grown or shrunk as the bytes it counts
    /// are live. Bytes accounted past a region's end came from data, live
    /// as recorded.
    fn count_lengths(&mut self) {
        while let Some(counting) = self.lengths.last() {
            if counting.end > self.matched {
                return;
            }
            let counting = self.lengths.pop().expect("a length");
            let live_end = self.received.saturating_sub(self.matched - counting.end);
            let live = i128::from(live_end.saturating_sub(counting.live_start));
            let counted = i128::from(counting.recorded) + live - i128::from(counting.region);
            if self.compare && counted != i128::from(counting.said) && self.departure.is_none() {
                self.departure = Some(DeviationKind::LengthDiffers {
                    frame: counting.frame,
                    said: counting.said,
                    counted: u64::try_from(counted).unwrap_or(0),
                });
            }
        }
    }

    /// Checks bytes that just arrived. With `compare` off only their count
    /// is checked (`--no-assert`).
    pub fn receive(
        &mut self,
        data: &[u8],
        compare: bool,
        captures: &mut Captures,
    ) -> Result<(), Fault> {
        self.compare = compare;
        let mut done = 0;
        loop {
            if let Some(kind) = self.departure.take() {
                return Err(self.deviate(kind, data, done.min(data.len())));
            }
            if done >= data.len() {
                if !self.span_needs_no_more() {
                    return Ok(());
                }
                // A value its length makes empty (or that the last bytes
                // completed) ends without waiting for more.
                self.receive_span(data, done, compare, captures)?;
                continue;
            }
            match self.next {
                Expected::Data { frame, remaining } => {
                    let want = (remaining as usize).min(data.len() - done);
                    let chunk = self.reader.read_payload(want)?;
                    let got = &data[done..done + chunk.len()];
                    // Slice equality is a memcmp; the byte-wise search only
                    // runs once a difference is known to be there.
                    if compare
                        && chunk != got
                        && let Some(i) = chunk.iter().zip(got).position(|(a, b)| a != b)
                    {
                        // The bytes before the difference did match.
                        self.matched += i as u64;
                        self.received += i as u64;
                        let at = frame.len - remaining + i as u32;
                        let kind = DeviationKind::Differ { frame, at };
                        return Err(self.deviate(kind, data, done + i));
                    }
                    let n = chunk.len();
                    done += n;
                    self.matched += n as u64;
                    self.received += n as u64;
                    self.count_lengths();
                    if remaining as usize == n {
                        self.advance()?;
                    } else {
                        self.next = Expected::Data {
                            frame,
                            remaining: remaining - n as u32,
                        };
                    }
                }
                Expected::Any { frame, remaining } => {
                    let n = (remaining as usize).min(data.len() - done);
                    done += n;
                    self.matched += n as u64;
                    self.received += n as u64;
                    self.count_lengths();
                    if remaining as usize == n {
                        self.advance()?;
                    } else {
                        self.next = Expected::Any {
                            frame,
                            remaining: remaining - n as u32,
                        };
                    }
                }
                Expected::Span { .. } => {
                    done += self.receive_span(data, done, compare, captures)?
                }
                Expected::Eof { frame } => {
                    let kind = DeviationKind::DataInsteadOfEof { frame };
                    return Err(self.deviate(kind, data, done));
                }
                Expected::Closed | Expected::End => {
                    return Err(self.deviate(DeviationKind::DataAfterEnd, data, done));
                }
            }
        }
    }

    /// True when the span being received has all its bytes, as its length
    /// says, though none are left to take (a value of no live bytes).
    fn span_needs_no_more(&self) -> bool {
        matches!(self.next, Expected::Span { .. })
            && self
                .span
                .as_ref()
                .is_some_and(|r| r.known == Some(r.received))
    }

    /// Takes bytes of `data` from `from` on into the span being received;
    /// returns how many it took.
    fn receive_span(
        &mut self,
        data: &[u8],
        from: usize,
        compare: bool,
        captures: &mut Captures,
    ) -> Result<usize, Fault> {
        let Some(receiving) = self.span.as_mut() else {
            return Ok(0);
        };
        let frame = receiving.frame;
        let input = &data[from..];
        if let SpanKind::Echo(name) = &receiving.span.kind {
            let Some(value) = captures.get(name) else {
                return Err(Fault::BadSpan(format!(
                    "span frame {} echoes '{name}', which was never captured",
                    frame.index
                )));
            };
            let at = receiving.received as usize;
            let n = (value.len() - at).min(input.len());
            let want = &value[at..at + n];
            if compare && let Some(i) = want.iter().zip(input).position(|(a, b)| a != b) {
                let kind = DeviationKind::EchoDiffers {
                    frame,
                    name: name.clone(),
                    at: (at + i) as u32,
                    value: value.to_vec(),
                };
                self.received += i as u64;
                return Err(self.deviate(kind, data, from + i));
            }
            receiving.received += n as u32;
            self.received += n as u64;
            let complete = receiving.received as usize == value.len();
            if complete {
                self.leave_span(captures)?;
            } else {
                self.next = Expected::Span {
                    frame,
                    received: receiving.received,
                };
            }
            return Ok(n);
        }
        let span = &receiving.span;
        if span.is_fixed() || receiving.known.is_some() {
            let len = receiving.known.unwrap_or(span.len);
            let n = ((len - receiving.received) as usize).min(input.len());
            if matches!(span.kind, SpanKind::Capture(_) | SpanKind::Length(_)) {
                receiving.value.extend_from_slice(&input[..n]);
            }
            receiving.received += n as u32;
            self.received += n as u64;
            if receiving.received == len {
                self.leave_span(captures)?;
            } else {
                self.next = Expected::Span {
                    frame,
                    received: receiving.received,
                };
            }
            return Ok(n);
        }
        // A variable span: its value goes on until the bytes after it
        // (the delimiter), which must come within `max` bytes.
        let delimiter = receiving.delimiter.clone();
        let started_at = receiving.started_at;
        for (i, &byte) in input.iter().enumerate() {
            receiving.value.push(byte);
            let value_len = receiving.value.len().saturating_sub(delimiter.len());
            let ended = !delimiter.is_empty()
                && receiving.value.ends_with(&delimiter)
                && value_len >= span.min as usize;
            if ended {
                receiving.value.truncate(value_len);
                receiving.received = value_len as u32;
                self.received = started_at + value_len as u64;
                self.leave_span(captures)?;
                // The bytes that ended the span are the recorded bytes
                // after it: they are matched as such.
                self.receive(&delimiter, compare, captures)?;
                return Ok(i + 1);
            }
            if value_len > span.max as usize {
                let max = span.max;
                self.received = started_at + span.max as u64;
                return Err(self.deviate(
                    DeviationKind::SpanTooLong { frame, max },
                    data,
                    from + i,
                ));
            }
        }
        receiving.received = receiving.value.len() as u32;
        self.next = Expected::Span {
            frame,
            received: receiving.received,
        };
        self.received = started_at + receiving.value.len() as u64;
        Ok(input.len())
    }

    /// The peer half-closed its side.
    pub fn receive_eof(&mut self, captures: &mut Captures) -> Result<(), Fault> {
        if let Expected::Span { frame, .. } = self.next
            && let Some(receiving) = &self.span
        {
            // A variable span that the tape ends (nothing after it) ends
            // with the stream; one whose length says how long it is does
            // not.
            let got = receiving.received;
            if receiving.known == Some(got) {
                self.leave_span(captures)?;
                if let Some(kind) = self.departure.take() {
                    return Err(self.deviate(kind, &[], 0));
                }
                return self.receive_eof(captures);
            }
            let open_ended = receiving.delimiter.is_empty()
                && receiving.known.is_none()
                && !receiving.span.is_fixed()
                && !matches!(receiving.span.kind, SpanKind::Echo(_));
            if open_ended && got >= receiving.span.min {
                self.leave_span(captures)?;
                if let Some(kind) = self.departure.take() {
                    return Err(self.deviate(kind, &[], 0));
                }
            } else if open_ended {
                let min = receiving.span.min;
                return Err(self.deviate(DeviationKind::SpanTooShort { frame, min, got }, &[], 0));
            } else {
                let len = receiving.known.unwrap_or(receiving.span.len);
                let remaining = len.saturating_sub(got);
                let kind = DeviationKind::EarlyEof {
                    frame,
                    at: got,
                    remaining,
                };
                return Err(self.deviate(kind, &[], 0));
            }
        }
        match self.next {
            Expected::Eof { .. } => {
                self.next = Expected::Closed;
                Ok(())
            }
            Expected::Data { frame, remaining } => {
                let at = frame.len - remaining;
                let kind = DeviationKind::EarlyEof {
                    frame,
                    at,
                    remaining,
                };
                Err(self.deviate(kind, &[], 0))
            }
            Expected::Any { frame, remaining } => {
                let kind = DeviationKind::EarlyEof {
                    frame,
                    at: 0,
                    remaining,
                };
                Err(self.deviate(kind, &[], 0))
            }
            Expected::Span { .. } => Ok(()),
            // A peer that closes after all the tape has from it is done with
            // us; there is nothing left to check.
            Expected::End | Expected::Closed => Ok(()),
        }
    }

    /// The peer reset the connection; only a departure if it still owed us.
    pub fn receive_reset(&mut self) -> Result<(), Fault> {
        if self.is_done() {
            return Ok(());
        }
        Err(self.deviate(DeviationKind::Reset, &[], 0))
    }

    /// The peer went away (a failed write) before the tape's end.
    pub fn gone(&self) -> Fault {
        self.deviate(DeviationKind::Reset, &[], 0)
    }

    /// Builds the deviation at index `at` of the received `data`; the live
    /// stream offset is what was received before it.
    fn deviate(&self, kind: DeviationKind, data: &[u8], at: usize) -> Fault {
        let start = at.saturating_sub(CONTEXT_BEFORE);
        let end = data.len().min(at + CONTEXT_AFTER);
        Fault::Deviation(Box::new(Deviation {
            kind,
            stream_offset: self.received,
            received: Excerpt {
                bytes: data[start..end].to_vec(),
                mismatch: at - start,
            },
        }))
    }
}

/// Our next move according to the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `remaining` more bytes of data frame `frame` (or of the value
    /// an echo span `frame` sends in place of its recorded bytes).
    Send { frame: Frame, remaining: u32 },
    /// Half-close our side, as recorded in `frame`.
    Shutdown { frame: Frame },
    /// The tape holds nothing more of ours.
    End,
}

/// What must have happened before the current action may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// Bytes of the peer's stream that were recorded before it.
    pub peer_bytes: u64,
    /// Whether the peer's EOF was recorded before it.
    pub peer_eof: bool,
    /// Milliseconds recorded between the last event before it and itself.
    pub delay_ms: u64,
}

/// One of our spans being played.
#[derive(Debug)]
enum Playing {
    /// Recorded bytes go out; a capture keeps what went (`left` to go).
    Capture {
        name: String,
        value: Vec<u8>,
        left: u32,
    },
    /// A live value goes out in place of `len` recorded bytes; `value` is
    /// worked out when its first byte is due (the peer's captures arrive
    /// before that: they are among what the span waits for).
    Live {
        frame: Frame,
        live: Live,
        len: u32,
        value: Option<Vec<u8>>,
        sent: usize,
    },
}

/// What a played span sends instead of its recorded bytes.
#[derive(Debug)]
enum Live {
    /// The value captured under this name.
    Echo(String),
    /// The recorded length, grown or shrunk by what the echoes it counts
    /// change.
    Length(Length),
}

pub struct Play<S: Source> {
    reader: Reader<S>,
    own: Direction,
    needs: Needs,
    action: Action,
    sent: u64,
    current: Option<Frame>,
    playing: Option<Playing>,
}

/// The value captured as `name`, which span `frame` echoes.
fn captured<'a>(captures: &'a Captures, name: &str, frame: Frame) -> Result<&'a [u8], Fault> {
    captures.get(name).ok_or_else(|| {
        Fault::BadSpan(format!(
            "span frame {} echoes '{name}', which was never captured",
            frame.index
        ))
    })
}

impl<S: Source + Clone> Play<S> {
    pub fn new(reader: Reader<S>, own: Direction) -> Result<Play<S>, Fault> {
        let mut play = Play {
            reader,
            own,
            needs: Needs::default(),
            action: Action::End,
            sent: 0,
            current: None,
            playing: None,
        };
        play.advance()?;
        Ok(play)
    }

    pub fn action(&self) -> Action {
        self.action
    }

    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// Bytes of our stream sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Gives the read buffer back while the session waits; returns its size.
    pub fn release_buffer(&mut self) -> usize {
        self.reader.release_buffer()
    }

    /// True when everything the peer had sent before our next action, in
    /// the recording, has arrived.
    pub fn is_ready(&self, matched: u64, peer_closed: bool) -> bool {
        matched >= self.needs.peer_bytes && (peer_closed || !self.needs.peer_eof)
    }

    /// Moves to our next frame, noting what the peer did in between.
    fn advance(&mut self) -> Result<(), Fault> {
        self.needs.delay_ms = 0;
        while let Some(frame) = self.reader.next_frame()? {
            self.current = Some(frame);
            match frame.kind {
                Kind::Delay => self.needs.delay_ms += u64::from(frame.len),
                // A peer's frame is what we wait for; pauses before it were
                // the peer's, not ours to replay.
                Kind::Data(dir) if dir != self.own => {
                    self.needs.peer_bytes += u64::from(frame.len);
                    self.needs.delay_ms = 0;
                }
                Kind::Any(dir) if dir != self.own => {
                    self.needs.peer_bytes += u64::from(self.reader.read_wildcard()?);
                    self.needs.delay_ms = 0;
                }
                Kind::Eof(dir) if dir != self.own => {
                    self.needs.peer_eof = true;
                    self.needs.delay_ms = 0;
                }
                Kind::Span(dir) if dir == self.own => {
                    let span = self.reader.read_span()?;
                    match span.kind {
                        SpanKind::Vary => {}
                        SpanKind::Capture(name) => {
                            self.playing = Some(Playing::Capture {
                                name,
                                value: Vec::new(),
                                left: span.len,
                            });
                        }
                        SpanKind::Echo(name) => {
                            self.play_live(frame, span.len, Live::Echo(name));
                            return Ok(());
                        }
                        SpanKind::Length(length) => {
                            self.play_live(frame, span.len, Live::Length(length));
                            return Ok(());
                        }
                    }
                }
                Kind::Data(_) if frame.len > 0 => {
                    self.action = Action::Send {
                        frame,
                        remaining: frame.len,
                    };
                    return Ok(());
                }
                Kind::Eof(_) => {
                    self.action = Action::Shutdown { frame };
                    return Ok(());
                }
                // Our own wildcards have nothing to send; tapes holding
                // them are refused before replay starts (`replay::load`).
                // The peer's spans cover bytes counted in its data frames.
                Kind::Data(_)
                | Kind::Any(_)
                | Kind::Noop
                | Kind::Cut
                | Kind::Span(_)
                | Kind::Extension(_) => {}
            }
        }
        self.action = Action::End;
        Ok(())
    }

    /// Our span `frame` sends `live` in place of its recorded bytes.
    fn play_live(&mut self, frame: Frame, len: u32, live: Live) {
        self.playing = Some(Playing::Live {
            frame,
            live,
            len,
            value: None,
            sent: 0,
        });
        self.action = Action::Send {
            frame,
            remaining: len,
        };
    }

    /// The value a live span sends.
    fn live_value(
        &self,
        frame: Frame,
        live: &Live,
        len: u32,
        captures: &Captures,
    ) -> Result<Vec<u8>, Fault> {
        match live {
            Live::Echo(name) => Ok(captured(captures, name, frame)?.to_vec()),
            Live::Length(length) => {
                let bytes = covered_bytes(&self.reader, self.own, len, self.current)?;
                let recorded = recorded_length(frame, length.encoding, &bytes)?;
                let change = self.change_in(len, length.region, captures)?;
                if change == 0 {
                    return Ok(bytes);
                }
                let value = u64::try_from(i128::from(recorded) + change).ok();
                // Digits written with leading zeros keep their width.
                let padded =
                    length.encoding == Encoding::Decimal && bytes.len() > 1 && bytes[0] == b'0';
                value
                    .and_then(|value| length.encoding.encode(value))
                    .filter(|digits| !padded || digits.len() <= bytes.len())
                    .map(|digits| match padded {
                        true => [vec![b'0'; bytes.len() - digits.len()], digits].concat(),
                        false => digits,
                    })
                    .ok_or_else(|| {
                        Fault::BadSpan(format!(
                            "span frame {}: the length {recorded} changed by {change} does not fit a {} field",
                            frame.index,
                            length.encoding.name()
                        ))
                    })
            }
        }
    }

    /// How much longer than recorded the `region` bytes after our span of
    /// `len` bytes go out: echoes send the captured values.
    fn change_in(&self, len: u32, region: u32, captures: &Captures) -> Result<i128, Fault> {
        let mut ahead = self.reader.fork_reading(SHORT_LOOK);
        let mut current = self.current;
        let mut left = u64::from(region);
        if skip_covered(&mut ahead, self.own, len, &mut current)?.is_some() {
            left = left.saturating_sub(ahead.payload_left() as u64);
        }
        let mut change = 0;
        while left > 0 {
            let Some(frame) = ahead.next_frame()? else {
                break;
            };
            match frame.kind {
                Kind::Data(dir) if dir == self.own => left = left.saturating_sub(frame.len.into()),
                Kind::Any(dir) if dir == self.own => {
                    left = left.saturating_sub(ahead.read_wildcard()?.into());
                }
                Kind::Span(dir) if dir == self.own => {
                    let span = ahead.read_span()?;
                    if let SpanKind::Echo(name) = &span.kind {
                        let value = captured(captures, name, frame)?;
                        change += value.len() as i128 - i128::from(span.len);
                    }
                }
                _ => {}
            }
        }
        Ok(change)
    }

    /// The next bytes to send of the current `Send` action, at most `max`.
    pub fn peek(&mut self, max: usize, captures: &Captures) -> Result<&[u8], Fault> {
        if let Some(Playing::Live {
            frame,
            live,
            len,
            value: None,
            ..
        }) = &self.playing
        {
            let value = self.live_value(*frame, live, *len, captures)?;
            if let Some(Playing::Live { value: slot, .. }) = &mut self.playing {
                *slot = Some(value);
            }
        }
        if let Some(Playing::Live { value, sent, .. }) = &self.playing {
            let value = value.as_deref().unwrap_or_default();
            let end = value.len().min(*sent + max);
            return Ok(&value[*sent..end]);
        }
        match self.action {
            Action::Send { remaining, .. } => {
                Ok(self.reader.peek_payload(max.min(remaining as usize))?)
            }
            _ => Ok(&[]),
        }
    }

    /// Where the next bytes of the current `Send` action are in the tape,
    /// and how many: when they go out as recorded (not an echo's value,
    /// not a capture, which needs them in memory).
    pub fn in_tape(&self) -> Option<(u64, u32)> {
        match (self.action, &self.playing) {
            (Action::Send { remaining, .. }, None) => Some((self.reader.position(), remaining)),
            _ => None,
        }
    }

    /// `n` bytes of the current `Send` action went out.
    pub fn consume(&mut self, n: usize, captures: &mut Captures) -> Result<(), Fault> {
        let Action::Send { frame, remaining } = self.action else {
            return Ok(());
        };
        self.sent += n as u64;
        if let Some(Playing::Live {
            len, value, sent, ..
        }) = &mut self.playing
        {
            *sent += n;
            let total = value.as_ref().map_or(0, Vec::len);
            if *sent < total {
                self.action = Action::Send {
                    frame,
                    remaining: (total - *sent) as u32,
                };
                return Ok(());
            }
            // The value went: its recorded stand-in is skipped.
            let len = *len;
            self.playing = None;
            return match skip_covered(&mut self.reader, self.own, len, &mut self.current)? {
                Some(frame) => {
                    self.action = Action::Send {
                        frame,
                        remaining: self.reader.payload_left() as u32,
                    };
                    Ok(())
                }
                None => self.advance(),
            };
        }
        if let Some(Playing::Capture { name, value, left }) = &mut self.playing {
            let take = (*left as usize).min(n);
            value.extend_from_slice(&self.reader.peek_payload(take)?[..take]);
            *left -= take as u32;
            if *left == 0 {
                captures.insert(name, std::mem::take(value));
                self.playing = None;
            }
        }
        self.reader.consume_payload(n);
        let remaining = remaining - n as u32;
        if remaining == 0 {
            self.advance()
        } else {
            self.action = Action::Send { frame, remaining };
            Ok(())
        }
    }

    /// Our half-close went out.
    pub fn shut_down(&mut self) -> Result<(), Fault> {
        self.advance()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Writer;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut writer = Writer::new(&mut bytes).unwrap();
        build(&mut writer);
        bytes
    }

    fn echo_tape() -> Vec<u8> {
        tape(|w| {
            w.data(C2S, b"qqq\n").unwrap();
            w.data(S2C, b"qqq\n").unwrap();
            w.delay(150).unwrap();
            w.data(C2S, b"www\n").unwrap();
            w.data(S2C, b"www\n").unwrap();
            w.eof(C2S).unwrap();
            w.eof(S2C).unwrap();
        })
    }

    fn expect(bytes: &[u8], peer: Direction) -> Expect<&[u8]> {
        Expect::new(Reader::new(bytes), peer).unwrap()
    }

    fn play(bytes: &[u8], own: Direction) -> Play<&[u8]> {
        Play::new(Reader::new(bytes), own).unwrap()
    }

    fn deviation(fault: Fault) -> Deviation {
        match fault {
            Fault::Deviation(d) => *d,
            Fault::Tape(err) => panic!("tape error {err}"),
            Fault::BadSpan(why) => panic!("bad span: {why}"),
        }
    }

    #[test]
    fn expect_matches_across_any_chunking() {
        let bytes = echo_tape();
        for chunk in 1..=8 {
            let mut e = expect(&bytes, C2S);
            for piece in b"qqq\nwww\n".chunks(chunk) {
                e.receive(piece, true, &mut Captures::default()).unwrap();
            }
            assert_eq!(e.matched(), 8);
            assert!(matches!(e.next(), Expected::Eof { .. }));
            e.receive_eof(&mut Captures::default()).unwrap();
            assert!(e.peer_closed() && e.is_done());
        }
    }

    #[test]
    fn expect_reports_first_differing_byte() {
        let bytes = echo_tape();
        let mut e = expect(&bytes, C2S);
        e.receive(b"qqq\nw", true, &mut Captures::default())
            .unwrap();
        let d = deviation(
            e.receive(b"wX\n", true, &mut Captures::default())
                .unwrap_err(),
        );
        let DeviationKind::Differ { frame, at } = d.kind else {
            panic!("{d:?}")
        };
        assert_eq!((frame.index, at), (4, 2));
        assert_eq!(d.stream_offset, 6);
        assert_eq!(e.matched(), 6, "the bytes before the difference count");
        assert_eq!(d.received.bytes, b"wX\n");
        assert_eq!(d.received.mismatch, 1);
    }

    #[test]
    fn expect_without_compare_counts_only() {
        let bytes = echo_tape();
        let mut e = expect(&bytes, C2S);
        e.receive(b"XXXXYYYY", false, &mut Captures::default())
            .unwrap();
        assert_eq!(e.matched(), 8);
        let d = deviation(
            e.receive(b"!", false, &mut Captures::default())
                .unwrap_err(),
        );
        assert!(matches!(d.kind, DeviationKind::DataInsteadOfEof { .. }));
    }

    #[test]
    fn expect_early_eof_and_data_after_end() {
        let bytes = echo_tape();
        let mut e = expect(&bytes, S2C);
        e.receive(b"qq", true, &mut Captures::default()).unwrap();
        let d = deviation(e.receive_eof(&mut Captures::default()).unwrap_err());
        assert!(
            matches!(
                d.kind,
                DeviationKind::EarlyEof {
                    at: 2,
                    remaining: 2,
                    ..
                }
            ),
            "{d:?}"
        );

        let only_c2s = tape(|w| w.data(C2S, b"hi").unwrap());
        let mut e = expect(&only_c2s, C2S);
        e.receive(b"hi", true, &mut Captures::default()).unwrap();
        assert!(e.is_done());
        let d = deviation(
            e.receive(b"more", true, &mut Captures::default())
                .unwrap_err(),
        );
        assert_eq!(d.kind, DeviationKind::DataAfterEnd);
        assert_eq!(d.stream_offset, 2);
    }

    #[test]
    fn expect_reset_is_a_deviation_only_while_owed() {
        let bytes = echo_tape();
        let mut e = expect(&bytes, C2S);
        assert!(e.receive_reset().is_err());
        e.receive(b"qqq\nwww\n", true, &mut Captures::default())
            .unwrap();
        e.receive_eof(&mut Captures::default()).unwrap();
        assert!(e.receive_reset().is_ok());
    }

    #[test]
    fn wildcards_are_counted_not_compared() {
        let bytes = tape(|w| {
            w.data(C2S, b"nonce=").unwrap();
            w.any(C2S, 4).unwrap();
            w.data(C2S, b";").unwrap();
            w.data(S2C, b"ok").unwrap();
        });
        let mut e = expect(&bytes, C2S);
        e.receive(b"nonce=", true, &mut Captures::default())
            .unwrap();
        e.receive(b"\x01\x02", true, &mut Captures::default())
            .unwrap();
        assert!(matches!(e.next(), Expected::Any { remaining: 2, .. }));
        e.receive(b"\xff\x00;", true, &mut Captures::default())
            .unwrap();
        assert!(e.is_done());
        assert_eq!(e.matched(), 11);
        let p = play(&bytes, S2C);
        assert_eq!(p.needs().peer_bytes, 11);

        let mut e = expect(&bytes, C2S);
        e.receive(b"nonce=ab", true, &mut Captures::default())
            .unwrap();
        let d = deviation(e.receive_eof(&mut Captures::default()).unwrap_err());
        assert!(
            matches!(d.kind, DeviationKind::EarlyEof { remaining: 2, .. }),
            "{d:?}"
        );
    }

    #[test]
    fn play_as_server_waits_for_the_request() {
        let bytes = echo_tape();
        let mut p = play(&bytes, S2C);
        assert!(matches!(p.action(), Action::Send { remaining: 4, .. }));
        assert_eq!(p.needs().peer_bytes, 4);
        assert!(!p.is_ready(3, false));
        assert!(p.is_ready(4, false));
        assert_eq!(p.peek(100, &Captures::default()).unwrap(), b"qqq\n");
        p.consume(4, &mut Captures::default()).unwrap();
        // The 150 ms pause came before the client's second line: the
        // client's, not ours.
        assert_eq!(p.needs().peer_bytes, 8);
        assert_eq!(p.needs().delay_ms, 0);
        p.consume(4, &mut Captures::default()).unwrap();
        assert!(matches!(p.action(), Action::Shutdown { .. }));
        assert!(p.needs().peer_eof);
        assert!(!p.is_ready(8, false));
        assert!(p.is_ready(8, true));
        p.shut_down().unwrap();
        assert_eq!(p.action(), Action::End);
        assert_eq!(p.sent(), 8);
    }

    #[test]
    fn play_as_client_keeps_its_own_delays() {
        let bytes = echo_tape();
        let mut p = play(&bytes, C2S);
        assert_eq!(p.needs(), Needs::default());
        p.consume(2, &mut Captures::default()).unwrap();
        assert_eq!(p.peek(100, &Captures::default()).unwrap(), b"q\n");
        p.consume(2, &mut Captures::default()).unwrap();
        assert_eq!(p.needs().delay_ms, 150);
        assert_eq!(p.needs().peer_bytes, 4);
    }

    #[test]
    fn play_reply_after_peer_half_close() {
        let bytes = tape(|w| {
            w.data(C2S, b"request body").unwrap();
            w.eof(C2S).unwrap();
            w.data(S2C, b"got 12 bytes\n").unwrap();
            w.eof(S2C).unwrap();
        });
        let p = play(&bytes, S2C);
        assert_eq!(
            p.needs(),
            Needs {
                peer_bytes: 12,
                peer_eof: true,
                delay_ms: 0
            }
        );
    }
}

#[cfg(test)]
mod span_tests {
    use super::*;
    use crate::tape::{Span, SpanKind, Writer};

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn span(w: &mut Writer<&mut Vec<u8>>, dir: Direction, span: Span) {
        w.extension(dir.span_opcode(), &span.emit()).unwrap();
    }

    fn variable(kind: SpanKind, len: u32, min: u32, max: u32) -> Span {
        Span {
            kind,
            len,
            min,
            max,
        }
    }

    fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
        let mut bytes = Vec::new();
        build(&mut Writer::new(&mut bytes).unwrap());
        bytes
    }

    /// `Date: <29 bytes>\r\n` from the server, a fixed span.
    fn dated() -> Vec<u8> {
        tape(|w| {
            w.data(S2C, b"Date: ").unwrap();
            span(w, S2C, Span::fixed(SpanKind::Vary, 29));
            w.data(S2C, b"Wed, 25 Nov 2026 09:31:29 GMT\r\nok").unwrap();
        })
    }

    fn deviation(fault: Fault) -> Deviation {
        match fault {
            Fault::Deviation(d) => *d,
            other => panic!("not a deviation: {other:?}"),
        }
    }

    #[test]
    fn a_fixed_vary_span_takes_any_bytes_of_its_length() {
        let bytes = dated();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        let mut captures = Captures::default();
        e.receive(
            b"Date: Thu, 26 Nov 2026 10:00:00 GMT\r\nok",
            true,
            &mut captures,
        )
        .unwrap();
        assert!(e.is_done());
        assert_eq!(e.matched(), 39);
        // One byte short of the span, then the literal: the literal differs.
        let mut e = Expect::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        let d = deviation(
            e.receive(
                b"Date: Thu, 26 Nov 2026 10:00:00 GM\r\nok!",
                true,
                &mut captures,
            )
            .unwrap_err(),
        );
        assert!(matches!(d.kind, DeviationKind::Differ { .. }), "{d:?}");
    }

    /// `Message-ID: <...>\r\nQUIT` from the client, the id 1 to 64 bytes.
    fn message_id() -> Vec<u8> {
        tape(|w| {
            w.data(C2S, b"Message-ID: <").unwrap();
            span(w, C2S, variable(SpanKind::Vary, 10, 1, 64));
            w.data(C2S, b"0123456789>\r\nQUIT").unwrap();
            w.data(S2C, b"bye").unwrap();
        })
    }

    #[test]
    fn a_variable_span_ends_where_the_recorded_bytes_after_it_appear() {
        let bytes = message_id();
        let live = b"Message-ID: <a-much-longer-id-than-recorded@host>\r\nQUIT";
        for chunk in [1, 3, 7, live.len()] {
            let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
            let mut captures = Captures::default();
            for piece in live.chunks(chunk) {
                e.receive(piece, true, &mut captures).unwrap();
            }
            assert!(e.is_done(), "chunk {chunk}");
            // The tape's terms: the span counts as its 10 recorded bytes.
            assert_eq!(e.matched(), 13 + 10 + 7, "chunk {chunk}");
            assert_eq!(e.received(), live.len() as u64);
        }
        // What Play waits for is counted the same way.
        let p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        assert_eq!(p.needs().peer_bytes, 30);
    }

    #[test]
    fn a_variable_span_past_its_longest_is_a_departure() {
        let bytes = message_id();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let long = [b"Message-ID: <".as_slice(), &[b'x'; 100]].concat();
        let d = deviation(
            e.receive(&long, true, &mut Captures::default())
                .unwrap_err(),
        );
        assert!(
            matches!(d.kind, DeviationKind::SpanTooLong { max: 64, .. }),
            "{d:?}"
        );
        assert_eq!(d.stream_offset, 13 + 64);
    }

    #[test]
    fn a_span_the_stream_ends_with_takes_everything_to_the_eof() {
        let bytes = tape(|w| {
            w.data(C2S, b"id=").unwrap();
            span(w, C2S, variable(SpanKind::Vary, 3, 2, 10));
            w.data(C2S, b"abc").unwrap();
            w.eof(C2S).unwrap();
        });
        let mut captures = Captures::default();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        e.receive(b"id=wxyz", true, &mut captures).unwrap();
        e.receive_eof(&mut captures).unwrap();
        assert!(e.peer_closed());
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        e.receive(b"id=w", true, &mut captures).unwrap();
        let d = deviation(e.receive_eof(&mut captures).unwrap_err());
        assert!(
            matches!(d.kind, DeviationKind::SpanTooShort { min: 2, got: 1, .. }),
            "{d:?}"
        );
    }

    /// The server chooses a token, the client sends it back.
    fn token_tape() -> Vec<u8> {
        tape(|w| {
            w.data(S2C, b"token=").unwrap();
            span(w, S2C, variable(SpanKind::Capture("tok".into()), 6, 1, 40));
            w.data(S2C, b"abc123\r\n").unwrap();
            w.data(C2S, b"AUTH ").unwrap();
            span(w, C2S, Span::fixed(SpanKind::Echo("tok".into()), 6));
            w.data(C2S, b"abc123\r\n").unwrap();
            w.data(S2C, b"welcome\r\n").unwrap();
        })
    }

    /// Plays what `play` may send once the peer sent `matched` bytes, the
    /// way a session does, collecting it.
    fn sent_by(play: &mut Play<&[u8]>, matched: u64, captures: &mut Captures) -> Vec<u8> {
        let mut out = Vec::new();
        while matches!(play.action(), Action::Send { .. }) && play.is_ready(matched, false) {
            let chunk = play.peek(3, captures).unwrap().to_vec();
            out.extend_from_slice(&chunk);
            play.consume(chunk.len(), captures).unwrap();
        }
        out
    }

    #[test]
    fn a_mock_client_sends_back_the_token_the_server_chose() {
        let bytes = token_tape();
        let mut captures = Captures::default();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        let mut p = Play::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        assert!(!p.is_ready(e.matched(), false), "the token comes first");
        e.receive(b"token=Zq9-longer-token\r\n", true, &mut captures)
            .unwrap();
        assert_eq!(captures.get("tok"), Some(&b"Zq9-longer-token"[..]));
        assert!(p.is_ready(e.matched(), false));
        assert_eq!(
            sent_by(&mut p, e.matched(), &mut captures),
            b"AUTH Zq9-longer-token\r\n"
        );
        e.receive(b"welcome\r\n", true, &mut captures).unwrap();
        assert!(e.is_done());
    }

    #[test]
    fn a_mock_server_checks_the_token_it_chose_comes_back() {
        let bytes = token_tape();
        let mut captures = Captures::default();
        let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        assert_eq!(sent_by(&mut p, 0, &mut captures), b"token=abc123\r\n");
        assert_eq!(captures.get("tok"), Some(&b"abc123"[..]), "what it sent");
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        e.receive(b"AUTH abc123\r\n", true, &mut captures).unwrap();
        assert!(e.is_done());
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let d = deviation(
            e.receive(b"AUTH abc124\r\n", true, &mut captures)
                .unwrap_err(),
        );
        let DeviationKind::EchoDiffers { name, at, .. } = &d.kind else {
            panic!("{d:?}")
        };
        assert_eq!((name.as_str(), *at), ("tok", 5));
        assert_eq!(d.stream_offset, 10);
    }

    fn text(text: &str) -> Vec<u8> {
        crate::tape::text::parse(text).unwrap()
    }

    /// A client message with a big-endian length counting a value that
    /// varies; the server's answer echoes an id the client chose, under a
    /// little-endian length that counts the id and its own two bytes.
    const FRAMED: &str = r#"tcptape text 1
> "M" [length u16be 9 "\x00\x09"] "a=" [capture id 1..16 "xyz"] ";" "\x00\x00\x00"
< [length u24le 7 "\x05\x00\x00"] "id=" [echo id "xyz"] "!"
"#;

    #[test]
    fn a_peer_length_is_checked_against_the_bytes_it_counts() {
        let bytes = text(FRAMED);
        let mut captures = Captures::default();
        // Recorded, and with a longer id and its length grown to match,
        // byte by byte: the length is checked where its bytes end.
        for live in [
            &b"M\x00\x09a=xyz;\x00\x00\x00"[..],
            b"M\x00\x0ca=uvwxyz;\x00\x00\x00",
        ] {
            let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
            for byte in live.chunks(1) {
                e.receive(byte, true, &mut captures).unwrap();
            }
            assert!(e.is_done() || e.next() == Expected::End, "{live:?}");
            assert_eq!(e.matched(), 12);
        }
        // A longer id under the recorded length.
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let fault = e.receive(b"M\x00\x09a=uvwxyz;\x00\x00\x00", true, &mut captures);
        let d = deviation(fault.unwrap_err());
        let DeviationKind::LengthDiffers { said, counted, .. } = d.kind else {
            panic!("{d:?}")
        };
        assert_eq!((said, counted), (9, 12));
        assert_eq!(d.stream_offset, 15, "where the counted bytes end");
        // `--no-assert` counts bytes only.
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        e.receive(b"M\x00\x09a=uvwxyz;\x00\x00\x00", false, &mut captures)
            .unwrap();
    }

    #[test]
    fn a_variable_value_that_ends_a_length_s_bytes_ends_where_the_length_says() {
        // Nothing recorded after the value in its turn: only the length
        // says where it ends, before the peer waits for our answer.
        let bytes = text(
            "tcptape text 1\n> [length u8 5 \"\\x05\"] \"id=\" [vary 1..20 \"ab\"]\n< \"ok\"\n> \"bye\"\n",
        );
        let mut captures = Captures::default();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        e.receive(b"\x09id=abcdef", true, &mut captures).unwrap();
        assert_eq!(e.matched(), 6, "the value is complete");
        e.receive(b"bye", true, &mut captures).unwrap();
        assert!(e.is_done());
        // A length that says more than the value may be is a departure.
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let fault = e.receive(b"\x40id=", true, &mut captures);
        let d = deviation(fault.unwrap_err());
        assert!(
            matches!(d.kind, DeviationKind::SpanTooLong { max: 20, .. }),
            "{d:?}"
        );
    }

    /// A value whose end only its length gives, then the server's answer.
    fn ended_by_length(min: u32, eof: bool) -> Vec<u8> {
        let eof = if eof { "eof >\n" } else { "" };
        text(&format!(
            "tcptape text 1\n> [length u8 5 \"\\x05\"] \"id=\" [vary {min}..20 \"ab\"]\n{eof}< \"ok\"\n"
        ))
    }

    #[test]
    fn a_value_its_length_makes_empty_ends_without_more_bytes() {
        let bytes = ended_by_length(0, false);
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        e.receive(b"\x03id=", true, &mut Captures::default())
            .unwrap();
        assert_eq!(e.matched(), 6);
        assert!(p.is_ready(e.matched(), false), "the answer may go");
        // Closing right there is the end of the value too.
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let mut captures = Captures::default();
        e.receive(b"\x03id=", true, &mut captures).unwrap();
        e.receive_eof(&mut captures).unwrap();
    }

    #[test]
    fn a_length_that_its_value_cannot_meet_is_a_departure_at_once() {
        let mut captures = Captures::default();
        // Fewer bytes than already arrived.
        let bytes = ended_by_length(0, false);
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let d = deviation(e.receive(b"\x02id=", true, &mut captures).unwrap_err());
        let DeviationKind::LengthDiffers { said, counted, .. } = d.kind else {
            panic!("{d:?}")
        };
        assert_eq!((said, counted), (2, 3));
        // Fewer bytes than the value's shortest.
        let bytes = ended_by_length(2, false);
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let d = deviation(e.receive(b"\x04id=", true, &mut captures).unwrap_err());
        assert!(
            matches!(d.kind, DeviationKind::SpanTooShort { min: 2, got: 1, .. }),
            "{d:?}"
        );
    }

    #[test]
    fn an_eof_inside_a_value_its_length_says_more_of_is_early_even_unchecked() {
        let bytes = ended_by_length(0, true);
        for compare in [true, false] {
            let mut captures = Captures::default();
            let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
            e.receive(b"\x0aid=abc", compare, &mut captures).unwrap();
            let d = deviation(e.receive_eof(&mut captures).unwrap_err());
            assert!(
                matches!(
                    d.kind,
                    DeviationKind::EarlyEof {
                        at: 3,
                        remaining: 4,
                        ..
                    }
                ),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_decimal_length_keeps_its_recorded_digits_and_their_width() {
        let bytes = text(
            r#"tcptape text 1
> [capture v 1..200 "ab"] "."
< "LEN " [length dec 5 1..20 "02"] ":" [echo v "ab"] "\r\n"
"#,
        );
        let played = |value: &[u8]| {
            let mut captures = Captures::default();
            let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
            let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
            e.receive(&[value, b"."].concat(), true, &mut captures)
                .unwrap();
            let mut out = Vec::new();
            while matches!(p.action(), Action::Send { .. }) {
                let chunk = p.peek(64, &captures)?.to_vec();
                out.extend_from_slice(&chunk);
                p.consume(chunk.len(), &mut captures)?;
            }
            Ok::<_, Fault>(out)
        };
        assert_eq!(played(b"ab").unwrap(), b"LEN 02:ab\r\n", "as recorded");
        assert_eq!(played(b"xyz").unwrap(), b"LEN 03:xyz\r\n");
        let Err(Fault::BadSpan(message)) = played(&[b'x'; 150]) else {
            panic!("three digits in a field of two")
        };
        assert!(message.contains("does not fit a dec field"), "{message}");
    }

    #[test]
    fn a_length_that_is_no_length_of_its_encoding_is_a_departure() {
        let bytes =
            text("tcptape text 1\n> \"Content-Length: \" [length dec 2 1..5 \"5\"] \"\\r\\n\"\n");
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let fault = e.receive(b"Content-Length: 1x\r\n", true, &mut Captures::default());
        let d = deviation(fault.unwrap_err());
        assert!(
            matches!(
                d.kind,
                DeviationKind::NotALength {
                    encoding: Encoding::Decimal,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn our_length_grows_with_the_echo_it_counts() {
        let bytes = text(FRAMED);
        let mut captures = Captures::default();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        e.receive(
            b"M\x00\x13a=0123456789abc;\x00\x00\x00",
            true,
            &mut captures,
        )
        .unwrap();
        assert_eq!(
            sent_by(&mut p, e.matched(), &mut captures),
            b"\x0f\x00\x00id=0123456789abc!"
        );
        // As recorded, it sends the recorded length.
        let mut captures = Captures::default();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        e.receive(b"M\x00\x08a=xy;\x00\x00\x00", true, &mut captures)
            .unwrap();
        assert_eq!(
            sent_by(&mut p, e.matched(), &mut captures),
            b"\x04\x00\x00id=xy!"
        );
    }

    #[test]
    fn a_length_that_no_longer_fits_its_field_is_a_fault_not_a_wrap() {
        let bytes = text(
            r#"tcptape text 1
> [capture v 1..300 "ab"] "."
< [length u8 2 "\x02"] [echo v "ab"] "."
"#,
        );
        let mut captures = Captures::default();
        let mut e = Expect::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let mut p = Play::new(Reader::new(bytes.as_slice()), S2C).unwrap();
        let long = [b'x'; 260];
        e.receive(&long, true, &mut captures).unwrap();
        e.receive(b".", true, &mut captures).unwrap();
        assert!(p.is_ready(e.matched(), false));
        let Err(Fault::BadSpan(message)) = p.peek(16, &captures) else {
            panic!("no fault")
        };
        assert!(message.contains("does not fit a u8 field"), "{message}");
    }

    #[test]
    fn an_echo_of_a_value_never_captured_is_a_fault_not_a_panic() {
        let bytes = tape(|w| {
            span(w, C2S, Span::fixed(SpanKind::Echo("ghost".into()), 2));
            w.data(C2S, b"hi").unwrap();
        });
        let mut p = Play::new(Reader::new(bytes.as_slice()), C2S).unwrap();
        let Err(Fault::BadSpan(why)) = p.peek(10, &Captures::default()) else {
            panic!("expected a bad span")
        };
        assert!(
            why.contains("echoes 'ghost', which was never captured"),
            "{why}"
        );
    }
}
