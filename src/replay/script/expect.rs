//! The cursor over the peer's frames: checks what arrives, byte for byte
//! or by the rules of the spans over it.

use super::counting::Counting;
use super::excerpt::SecretsSeen;
use super::{
    Captures, Deviation, DeviationKind, Expected, Fault, Secrets, covered_bytes, literal_after,
    mask, recorded_length, skip_covered,
};
use crate::tape::{Direction, Frame, Kind, Reader, Source, Span, SpanKind};

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
    /// A secret's value from the environment, which the peer must send.
    secret: Option<Vec<u8>>,
    /// A secret, whatever it became: its bytes stay out of reports.
    hidden: bool,
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
    secrets: Secrets,
    seen: SecretsSeen,
}

impl<S: Source + Clone> Expect<S> {
    pub fn new(reader: Reader<S>, peer: Direction) -> Result<Expect<S>, Fault> {
        Expect::with_secrets(reader, peer, Secrets::Environment)
    }

    pub fn with_secrets(
        reader: Reader<S>,
        peer: Direction,
        secrets: Secrets,
    ) -> Result<Expect<S>, Fault> {
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
            secrets,
            seen: SecretsSeen::default(),
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
        let mut span = self.reader.read_span()?;
        self.current = Some(frame);
        let (secret, any_secret) = self.secrets.received(&mut span);
        let recorded = match &span.kind {
            SpanKind::Length(length) => {
                let bytes = covered_bytes(&self.reader, self.peer, span.len, self.current)?;
                recorded_length(frame, length.encoding, &bytes)?
            }
            _ => 0,
        };
        let resume = skip_covered(&mut self.reader, self.peer, span.len, &mut self.current)?;
        let variable =
            !span.is_fixed() && !matches!(span.kind, SpanKind::Echo(_) | SpanKind::Secret(_));
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
        if any_secret && delimiter.is_empty() && known.is_none() {
            // Nothing after it to show where a value of another length
            // ends: the placeholder's length (the recorded value's) it is.
            span = Span::fixed(SpanKind::Vary, span.len);
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
            hidden: any_secret || secret.is_some(),
            secret,
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
        if receiving.hidden {
            self.seen.note(receiving.started_at, self.received);
        }
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
            SpanKind::Vary | SpanKind::Echo(_) | SpanKind::Secret(_) => {}
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
        while let Some(counting) = self.lengths.pop_if(|c| c.end <= self.matched) {
            if self.compare && self.departure.is_none() {
                self.departure = counting.differs(self.matched, self.received);
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
        let echoed = match &receiving.span.kind {
            SpanKind::Echo(name) => Some((name, captures.get(name))),
            SpanKind::Secret(name) => Some((name, receiving.secret.as_deref())),
            _ => None,
        };
        if let Some((name, value)) = echoed {
            let Some(value) = value else {
                return Err(Fault::BadSpan(format!(
                    "span frame {} echoes '{name}', which was never captured",
                    frame.index
                )));
            };
            let at = receiving.received as usize;
            let n = (value.len() - at).min(input.len());
            let want = &value[at..at + n];
            if compare && let Some(i) = want.iter().zip(input).position(|(a, b)| a != b) {
                let (name, at) = (name.clone(), (at + i) as u32);
                let kind = match receiving.span.kind {
                    SpanKind::Secret(_) => DeviationKind::SecretDiffers { frame, name, at },
                    _ => DeviationKind::EchoDiffers {
                        frame,
                        name,
                        at,
                        value: value.to_vec(),
                    },
                };
                // What the peer sent of a secret stays out of reports, and
                // so does all it sent after it: where a value other than
                // the secret's ends is not known (a longer password's
                // tail, a user name and then the password).
                let secret = matches!(kind, DeviationKind::SecretDiffers { .. });
                let start = from.saturating_sub(at as usize - i);
                let shown = mask(data, secret.then_some((start, data.len())));
                self.received += i as u64;
                return Err(self.deviate(kind, &shown, from + i));
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
                && !matches!(receiving.span.kind, SpanKind::Echo(_) | SpanKind::Secret(_));
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
        let open = self
            .span
            .as_ref()
            .filter(|r| r.hidden)
            .map(|r| r.started_at);
        let received = self.seen.excerpt(data, at, self.received, open);
        let stream_offset = self.received;
        Fault::Deviation(Box::new(Deviation {
            kind,
            stream_offset,
            received,
        }))
    }
}
