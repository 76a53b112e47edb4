//! The cursor over our own frames: what to send next, and what the peer
//! must have done before it may go.

use super::{
    Action, Captures, Fault, Needs, SHORT_LOOK, Secrets, covered_bytes, recorded_length,
    skip_covered,
};
use crate::tape::{Direction, Encoding, Frame, Kind, Length, Reader, Source, SpanKind};

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
    /// A secret's value, from the environment.
    Secret(Vec<u8>),
}

pub struct Play<S: Source> {
    reader: Reader<S>,
    own: Direction,
    needs: Needs,
    action: Action,
    sent: u64,
    current: Option<Frame>,
    playing: Option<Playing>,
    secrets: Secrets,
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
        Play::with_secrets(reader, own, Secrets::Environment)
    }

    pub fn with_secrets(
        reader: Reader<S>,
        own: Direction,
        secrets: Secrets,
    ) -> Result<Play<S>, Fault> {
        let mut play = Play {
            reader,
            own,
            needs: Needs::default(),
            action: Action::End,
            sent: 0,
            current: None,
            playing: None,
            secrets,
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
                        // Without a value the placeholder goes, as recorded.
                        SpanKind::Secret(name) => {
                            if let Some(value) = self.secrets.value(&name) {
                                self.play_live(frame, span.len, Live::Secret(value));
                                return Ok(());
                            }
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
            Live::Secret(value) => Ok(value.clone()),
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
                    let value = match &span.kind {
                        SpanKind::Echo(name) => Some(captured(captures, name, frame)?.len()),
                        SpanKind::Secret(name) => self.secrets.value(name).map(|v| v.len()),
                        _ => None,
                    };
                    if let Some(value) = value {
                        change += value as i128 - i128::from(span.len);
                    }
                }
                _ => {}
            }
        }
        Ok(change)
    }

    /// True while the bytes going out are a secret's live value (the
    /// environment's), which nothing may record.
    pub fn sending_secret(&self) -> bool {
        matches!(
            self.playing,
            Some(Playing::Live {
                live: Live::Secret(_),
                ..
            })
        )
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
