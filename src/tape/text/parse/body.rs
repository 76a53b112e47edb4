//! What a frame's items build up while its lines are read: bytes,
//! wildcards, spans and the bytes they cover.

use super::{Failure, Place};
use crate::tape::frame::{Direction, MAX_LEN};
use crate::tape::span::{MAX_SPAN, Span, SpanKind};

/// What a data frame's items build up: bytes, wildcards and spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Bytes(Vec<u8>),
    /// A wildcard, and where its first item is.
    Any(u32, Place),
    /// A span, and where its `[` is. The bytes it covers are the
    /// `Covered` segment after it.
    Span(Span, Place),
    Covered(Vec<u8>),
}

/// A span whose `[` has been read, but not yet its `]`.
#[derive(Debug)]
pub(super) struct OpenSpan {
    pub(super) kind: SpanKind,
    pub(super) bounds: Option<(u32, u32)>,
    /// Where its `[` and its bounds are.
    pub(super) place: Place,
    pub(super) bounds_place: Place,
    /// Items of the recorded value read so far.
    pub(super) items: usize,
}

/// The items of a frame being parsed.
#[derive(Debug)]
pub(super) enum Body {
    /// `len` counts the bytes and the wildcards' bytes.
    Data {
        dir: Direction,
        segments: Vec<Segment>,
        len: u64,
        open: Option<OpenSpan>,
    },
    Noop(Vec<u8>),
    Extension(u8, Vec<u8>),
}

impl Body {
    pub(super) fn data(dir: Direction) -> Body {
        Body::Data {
            dir,
            segments: Vec::new(),
            len: 0,
            open: None,
        }
    }

    /// Where the next item goes, counting wildcards as their bytes.
    pub(super) fn len(&self) -> u64 {
        match self {
            Body::Data { len, .. } => *len,
            Body::Noop(payload) | Body::Extension(_, payload) => payload.len() as u64,
        }
    }

    pub(super) fn takes_wildcards(&self) -> bool {
        matches!(self, Body::Data { .. })
    }

    /// The span whose `]` is still to come.
    pub(super) fn open_span(&mut self) -> Option<&mut OpenSpan> {
        match self {
            Body::Data { open, .. } => open.as_mut(),
            _ => None,
        }
    }

    /// Appends bytes; `Err` says why they do not fit.
    pub(super) fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Body::Data {
                segments,
                len,
                open,
                ..
            } => {
                // Saturating: 2^64 bytes of text tape is not a real worry,
                // and a wrong line number is all it could cost.
                *len = len.saturating_add(bytes.len() as u64);
                if let Some(open) = open {
                    let Some(Segment::Covered(covered)) = segments.last_mut() else {
                        unreachable!("an open span's bytes are the last segment");
                    };
                    if covered.len() + bytes.len() > MAX_SPAN as usize {
                        return Err(format!(
                            "a span covers at most {MAX_SPAN} recorded bytes, and this item makes it longer"
                        ));
                    }
                    covered.extend_from_slice(bytes);
                    open.items += 1;
                    return Ok(());
                }
                match segments.last_mut() {
                    Some(Segment::Bytes(b)) => b.extend_from_slice(bytes),
                    _ => segments.push(Segment::Bytes(bytes.to_vec())),
                }
                Ok(())
            }
            Body::Noop(payload) | Body::Extension(_, payload) => {
                // One frame, unlike data: its payload cannot be split.
                if payload.len() + bytes.len() > MAX_LEN as usize {
                    let what = match self {
                        Body::Noop(_) => "a noop",
                        _ => "an ext",
                    };
                    return Err(format!(
                        "{what} frame's payload is at most {MAX_LEN} bytes, and this item makes it longer"
                    ));
                }
                payload.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Appends a wildcard of `count` bytes whose item is at `place`;
    /// wildcards in a row are one wildcard frame.
    pub(super) fn push_any(&mut self, count: u32, place: Place) -> Result<(), String> {
        let Body::Data {
            segments,
            len,
            open,
            ..
        } = self
        else {
            return Err("wildcards (??, any N) are only allowed in '>' and '<' data".into());
        };
        if open.is_some() {
            return Err(INSIDE_SPAN.into());
        }
        match segments.last_mut() {
            Some(Segment::Any(n, _)) => {
                *n = n.checked_add(count).ok_or_else(|| {
                    format!(
                        "wildcards in a row add up to more than {} bytes, the most one wildcard frame counts",
                        u32::MAX
                    )
                })?;
            }
            _ => segments.push(Segment::Any(count, place)),
        }
        *len = len.saturating_add(u64::from(count));
        Ok(())
    }

    /// Opens a span at its `[`: its bytes are the items up to `]`.
    pub(super) fn open(&mut self, span: OpenSpan) -> Result<(), String> {
        let Body::Data { segments, open, .. } = self else {
            return Err("spans ([vary ...], [capture ...], [echo ...]) are only allowed in '>' and '<' data".into());
        };
        if open.is_some() {
            return Err("a span inside a span: close the first with ']' before".into());
        }
        // A placeholder: the length is known at the `]`.
        segments.push(Segment::Span(Span::fixed(SpanKind::Vary, 0), span.place));
        segments.push(Segment::Covered(Vec::new()));
        *open = Some(span);
        Ok(())
    }

    /// Closes the open span at its `]`, which is at `here`; `Err` says
    /// why it is no span, and where (its bounds may be on an earlier line).
    pub(super) fn close(&mut self, here: Place) -> Result<(), Failure> {
        let at = |place, message: &str| {
            Err(Failure::At {
                place,
                message: message.to_string(),
            })
        };
        let Body::Data { segments, open, .. } = self else {
            return at(here, "']' without a '[' before it");
        };
        let Some(span) = open.take() else {
            return at(here, "']' without a '[' before it");
        };
        if span.items == 0 {
            return at(
                here,
                "expected the recorded value (quoted strings, hex bytes) before ']'",
            );
        }
        let n = segments.len();
        let Segment::Covered(covered) = &segments[n - 1] else {
            unreachable!("an open span's bytes are the last segment");
        };
        let len = covered.len() as u32;
        let (min, max) = span.bounds.unwrap_or((len, len));
        let built = Span {
            kind: span.kind,
            len,
            min,
            max,
        };
        if let Err(err) = built.check() {
            return at(span.bounds_place, &err.to_string());
        }

        segments[n - 2] = Segment::Span(built, span.place);
        Ok(())
    }
}

/// What may not stand inside a span's brackets.
pub(super) const INSIDE_SPAN: &str = "inside [...] only quoted strings and hex bytes: the recorded value (no wildcards, no other span)";

/// A frame being parsed, with the lines its items came from.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) body: Body,
    /// For the frame's line and each continuation line, where in `body`
    /// its items start (`Body::len`), and its line number.
    pub(super) starts: Vec<(u64, u32)>,
}
