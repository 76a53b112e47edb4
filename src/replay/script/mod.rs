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
//! change. A secret of either side is an echo of the environment
//! variable it names when the replay has it set ([`Secrets`]); without
//! it, the peer's secret is any value and ours goes out as recorded (the
//! placeholder).

use std::collections::HashMap;
#[cfg(test)]
use std::rc::Rc;

mod counting;
mod excerpt;
mod expect;
mod play;
pub mod playback;
#[cfg(test)]
mod tests;

pub use expect::Expect;
pub use play::Play;

use crate::tape::span::MAX_SPAN;
use crate::tape::{Direction, Encoding, Frame, Kind, Reader, Source, Span, SpanKind, TapeError};

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

/// The live values of secrets (`secret NAME` spans): the replay's
/// environment variables, read when a secret comes up, or values given.
#[derive(Debug, Clone, Default)]
pub enum Secrets {
    #[default]
    Environment,
    /// Values the tests give.
    #[cfg(test)]
    Given(Rc<HashMap<String, Vec<u8>>>),
}

impl Secrets {
    /// The value of secret `name`, if the replay has one. A variable set
    /// to nothing counts as not set (CI systems define unset secrets as
    /// empty).
    pub fn value(&self, name: &str) -> Option<Vec<u8>> {
        use std::os::unix::ffi::OsStringExt;
        let value = match self {
            Secrets::Environment => std::env::var_os(name).map(OsStringExt::into_vec),
            #[cfg(test)]
            Secrets::Given(values) => values.get(name).cloned(),
        };
        value.filter(|value| !value.is_empty())
    }

    /// A span of the peer's as received: a secret is the environment's
    /// value (returned), or without one any value that the bytes after it
    /// (or a length) end: a variable vary span (and true).
    fn received(&self, span: &mut Span) -> (Option<Vec<u8>>, bool) {
        let SpanKind::Secret(name) = &span.kind else {
            return (None, false);
        };
        let value = self.value(name);
        if value.is_some() {
            return (value, false);
        }
        *span = Span {
            kind: SpanKind::Vary,
            len: span.len,
            min: 0,
            max: MAX_SPAN,
        };
        (None, true)
    }
}

/// `data` with the bytes in `range` (from, to) starred out.
fn mask(data: &[u8], range: Option<(usize, usize)>) -> std::borrow::Cow<'_, [u8]> {
    let Some((from, to)) = range else {
        return data.into();
    };
    let mut out = data.to_vec();
    let to = to.min(out.len());
    if from < to {
        out[from..to].fill(b'*');
    }
    out.into()
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
    /// Byte `at` of a secret (span `frame`) differs from the value of the
    /// environment variable `name`, which no report shows.
    SecretDiffers { frame: Frame, name: String, at: u32 },
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
