//! Where spans may stand: a property of the whole tape, not of one span (a
//! capture before its echoes, a variable span followed by recorded bytes,
//! a span that never crosses a turn, a length whose region holds...).
//! `Checker` checks it frame by frame as a tape is read or written (replay
//! and `build` load through it), `check_tape` over a binary tape;
//! docs/tape-format.md lists the rules.

use std::collections::HashMap;

use super::frame::{Direction, Kind};
use super::reader::{Reader, Source, TapeError, TapeErrorKind};
use super::span::{Encoding, MAX_NESTED_LENGTHS, Span, SpanKind};

/// Why a span (or a wildcard near one) stands where it may not. `P` says
/// where things are: a frame of a binary tape, a line and column of a text
/// tape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem<P> {
    /// A second capture of a name.
    CapturedTwice { name: String, first: P },
    /// An echo with no capture of its name before it.
    EchoUncaptured { name: String },
    /// An echo before all the bytes its capture covers were recorded.
    EchoBeforeCaptured { name: String, capture: P },
    /// A span or wildcard right after a variable span, with no recorded
    /// byte between to show where the variable value ends.
    AfterVariable { variable: P, wildcard: bool },
    /// A span inside the bytes another span covers.
    Nested { outer: P },
    /// A wildcard inside the bytes a span covers.
    WildcardInside { span: P },
    /// A span after its direction's EOF.
    AfterEof,
    /// The direction's EOF, or the tape's end, came after `recorded` of the
    /// span's `len` bytes.
    Unfinished { len: u32, recorded: u32, eof: bool },
    /// The other direction's bytes came after `recorded` of the span's
    /// `len` bytes: its value would be split by a turn.
    AcrossTurn { len: u32, recorded: u32 },
    /// A span that begins inside the bytes a length counts and ends after.
    AcrossLength { length: P },
    /// A decimal length inside the bytes another length counts: played,
    /// its width could change the other's count.
    DecimalInLength { length: P },
    /// More than `MAX_NESTED_LENGTHS` lengths count this span's bytes.
    LengthsTooDeep,
    /// An echo inside the bytes a length counts, of a value captured after
    /// that length: played, the length could not be computed in time.
    EchoAfterLength { name: String, length: P },
    /// The direction's EOF, or the tape's end, came `missing` bytes before
    /// the end of what the length counts.
    LengthUnfinished { missing: u64, eof: bool },
    /// A length's recorded bytes are not a length of its encoding.
    NotALength { encoding: Encoding },
}

impl<P> Problem<P> {
    /// The problem in words, with other places named by `place`.
    pub fn message(&self, place: impl Fn(&P) -> String) -> String {
        match self {
            Problem::CapturedTwice { name, first } => format!(
                "'{name}' is captured a second time (first at {}): each capture needs a name of its own",
                place(first)
            ),
            Problem::EchoUncaptured { name } => {
                format!("echo of '{name}', which no span before it captures")
            }
            Problem::EchoBeforeCaptured { name, capture } => format!(
                "echo of '{name}' before all the bytes of its capture (at {}) are recorded",
                place(capture)
            ),
            Problem::AfterVariable { variable, wildcard } => format!(
                "{} right after the variable span at {}: replay finds where a variable value ends by the recorded bytes after it, so bytes (or the EOF) must come between",
                if *wildcard { "a wildcard" } else { "a span" },
                place(variable)
            ),
            Problem::Nested { outer } => format!(
                "a span inside the bytes the span at {} covers: spans do not nest or overlap",
                place(outer)
            ),
            Problem::WildcardInside { span } => format!(
                "a wildcard inside the bytes the span at {} covers: a span covers recorded bytes",
                place(span)
            ),
            Problem::AfterEof => "a span after its direction's EOF".to_string(),
            Problem::Unfinished { len, recorded, eof } => format!(
                "the span covers {len} bytes, but {} after {recorded} of them",
                ends(*eof)
            ),
            Problem::AcrossTurn { len, recorded } => format!(
                "the span covers {len} bytes, but the other side's bytes come after {recorded} of them: a span never crosses a turn (replay would wait for the rest of it before the other side's turn)"
            ),
            Problem::AcrossLength { length } => format!(
                "a span across the end of the bytes the length at {} counts: a length counts whole spans",
                place(length)
            ),
            Problem::DecimalInLength { length } => format!(
                "a decimal length inside the bytes the length at {} counts: its width can change, and so the other's count",
                place(length)
            ),
            Problem::LengthsTooDeep => {
                format!("more than {MAX_NESTED_LENGTHS} lengths count the bytes of this span")
            }
            Problem::EchoAfterLength { name, length } => format!(
                "echo of '{name}' inside the bytes the length at {} counts, but '{name}' is captured after that length: the length could not be computed when it is sent",
                place(length)
            ),
            Problem::LengthUnfinished { missing, eof } => format!(
                "the length counts {missing} bytes more than there are: {}",
                ends(*eof)
            ),
            Problem::NotALength { encoding } => {
                format!("the recorded value is not a {} length", encoding.name())
            }
        }
    }
}

fn ends(eof: bool) -> &'static str {
    if eof {
        "its direction ends (EOF)"
    } else {
        "the tape ends"
    }
}

/// A problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault<P> {
    pub at: P,
    pub problem: Problem<P>,
}

/// The span whose covered bytes are being recorded.
#[derive(Debug)]
struct Open<P> {
    at: P,
    len: u32,
    /// Covered bytes still to come.
    left: u32,
    variable: bool,
    /// The name it captures.
    capture: Option<String>,
    /// A length's encoding, and its recorded bytes so far.
    length: Option<(Encoding, Vec<u8>)>,
}

/// A length whose counted bytes are being recorded.
#[derive(Debug)]
struct Region<P> {
    at: P,
    /// The direction's recorded offsets where the counted bytes start and
    /// end.
    start: u64,
    end: u64,
    /// Captures complete when the length came.
    completions: u64,
}

/// What the checker knows of one direction.
#[derive(Debug)]
struct Stream<P> {
    open: Option<Open<P>>,
    /// A variable span whose bytes are all recorded, until the next bytes
    /// of the direction show where it ends.
    variable: Option<P>,
    eof: bool,
    /// Recorded bytes so far (data and wildcards).
    offset: u64,
    /// Lengths whose counted bytes are still to come, innermost last.
    regions: Vec<Region<P>>,
    /// The regions completed by the last bytes counted: where they
    /// started and ended.
    ended: Vec<(u64, u64)>,
}

impl<P> Default for Stream<P> {
    fn default() -> Self {
        Stream {
            open: None,
            variable: None,
            eof: false,
            offset: 0,
            regions: Vec::new(),
            ended: Vec::new(),
        }
    }
}

impl<P: Copy> Stream<P> {
    /// Counts `len` recorded bytes, closing the regions they complete.
    fn advance(&mut self, len: u64) {
        self.offset += len;
        let offset = self.offset;
        self.ended.clear();
        let ended = &mut self.ended;
        self.regions.retain(|region| {
            let open = region.end > offset;
            if !open {
                ended.push((region.start, region.end));
            }
            open
        });
    }

    /// A fault when the direction ends inside a length's region.
    fn unfinished_region(&self, eof: bool) -> Result<(), Fault<P>> {
        match self.regions.first() {
            Some(region) => Err(Fault {
                at: region.at,
                problem: Problem::LengthUnfinished {
                    missing: region.end - self.offset,
                    eof,
                },
            }),
            None => Ok(()),
        }
    }
}

/// A capture seen, and when its bytes were all recorded (the count of
/// captures complete by then, from 1).
#[derive(Debug)]
struct Captured<P> {
    at: P,
    completed: Option<u64>,
}

/// Checks where spans stand, fed a tape's frames in order (docs/tape-format.md
/// lists the rules). The text parser feeds it as it builds, the binary
/// tape goes through `check_tape`; both refuse what replay would refuse.
#[derive(Debug)]
pub struct Checker<P> {
    streams: [Stream<P>; 2],
    captures: HashMap<String, Captured<P>>,
    /// Captures complete so far.
    completions: u64,
}

impl<P: Copy> Default for Checker<P> {
    fn default() -> Self {
        Checker::new()
    }
}

impl<P: Copy> Checker<P> {
    pub fn new() -> Checker<P> {
        Checker {
            streams: [Stream::default(), Stream::default()],
            captures: HashMap::new(),
            completions: 0,
        }
    }

    /// A span frame of `dir`, at `at`.
    pub fn span(&mut self, dir: Direction, span: &Span, at: P) -> Result<(), Fault<P>> {
        let fault = |problem| Err(Fault { at, problem });
        let stream = &mut self.streams[dir.index()];
        if stream.eof {
            return fault(Problem::AfterEof);
        }
        if let Some(open) = &stream.open {
            return fault(Problem::Nested { outer: open.at });
        }
        if let Some(variable) = stream.variable {
            return fault(Problem::AfterVariable {
                variable,
                wildcard: false,
            });
        }
        let end = stream.offset + u64::from(span.len);
        let counted = match &span.kind {
            SpanKind::Length(length) => u64::from(length.region),
            _ => 0,
        };
        if let Some(region) = stream.regions.iter().find(|r| end + counted > r.end) {
            return fault(Problem::AcrossLength { length: region.at });
        }
        if let SpanKind::Length(length) = &span.kind {
            if let (Some(outer), Encoding::Decimal) = (stream.regions.last(), length.encoding) {
                return fault(Problem::DecimalInLength { length: outer.at });
            }
            if stream.regions.len() == MAX_NESTED_LENGTHS {
                return fault(Problem::LengthsTooDeep);
            }
            stream.regions.push(Region {
                at,
                start: end,
                end: end + counted,
                completions: self.completions,
            });
        }
        let mut capture = None;
        match &span.kind {
            SpanKind::Vary => {}
            SpanKind::Capture(name) => {
                if let Some(first) = self.captures.get(name) {
                    return fault(Problem::CapturedTwice {
                        name: name.clone(),
                        first: first.at,
                    });
                }
                self.captures.insert(
                    name.clone(),
                    Captured {
                        at,
                        completed: None,
                    },
                );
                capture = Some(name.clone());
            }
            SpanKind::Echo(name) => match self.captures.get(name) {
                None => return fault(Problem::EchoUncaptured { name: name.clone() }),
                Some(Captured {
                    at: capture,
                    completed: None,
                }) => {
                    return fault(Problem::EchoBeforeCaptured {
                        name: name.clone(),
                        capture: *capture,
                    });
                }
                Some(Captured {
                    completed: Some(completed),
                    ..
                }) => {
                    // Any length counting the echo is sent before it, and
                    // must know the value's length by then.
                    let regions = self.streams[dir.index()].regions.iter();
                    if let Some(region) = regions.into_iter().find(|r| *completed > r.completions) {
                        return fault(Problem::EchoAfterLength {
                            name: name.clone(),
                            length: region.at,
                        });
                    }
                }
            },
            // A secret stands where a fixed vary span may: replay knows its
            // live value, or takes any that something after it ends.
            SpanKind::Length(_) | SpanKind::Secret(_) => {}
        }
        let variable = !span.is_fixed() && !matches!(span.kind, SpanKind::Echo(_));
        let length = match &span.kind {
            SpanKind::Length(length) => Some((length.encoding, Vec::new())),
            _ => None,
        };
        self.streams[dir.index()].open = Some(Open {
            at,
            len: span.len,
            left: span.len,
            variable,
            capture,
            length,
        });
        self.covered(dir, 0, &[]).map(|_| ())
    }

    /// How many of the next data frame's first bytes `data` needs to see:
    /// those of a length field, whose recorded value is checked.
    pub fn wanted(&self, dir: Direction) -> usize {
        match &self.streams[dir.index()].open {
            Some(open) if open.length.is_some() => open.left as usize,
            _ => 0,
        }
    }

    /// `len` recorded bytes of `dir`, of which `head` are the first (at
    /// least as many as `wanted` asked, or all of them).
    pub fn data(&mut self, dir: Direction, len: u64, head: &[u8]) -> Result<(), Fault<P>> {
        if len == 0 {
            return Ok(());
        }
        self.other_side_speaks(dir)?;
        self.streams[dir.index()].advance(len);
        let rest = self.covered(dir, len, head)?;
        if rest > 0 {
            // Recorded bytes beyond any span: a variable span before them
            // ends there.
            self.streams[dir.index()].variable = None;
        }
        Ok(())
    }

    /// Counts `len` bytes (the first of them `head`) against the open span
    /// of `dir`, closing it when they complete it; returns the bytes
    /// beyond it.
    fn covered(&mut self, dir: Direction, len: u64, head: &[u8]) -> Result<u64, Fault<P>> {
        let stream = &mut self.streams[dir.index()];
        let Some(open) = &mut stream.open else {
            return Ok(len);
        };
        let taken = len.min(u64::from(open.left));
        if let Some((_, recorded)) = &mut open.length {
            recorded.extend_from_slice(&head[..head.len().min(taken as usize)]);
        }
        open.left -= taken as u32;
        if open.left > 0 {
            return Ok(0);
        }
        let open = stream.open.take().expect("an open span");
        // A variable value that ends where a length's counted bytes end
        // needs no bytes after it to show where: the length says.
        let span_end = stream.offset - (len - taken);
        // (A length's own region, which starts where the span ends, does
        // not: replay knows a length's value only once it is complete.)
        let length_ends_it = stream
            .ended
            .iter()
            .any(|&(start, end)| end == span_end && start < span_end);
        if open.variable && !length_ends_it {
            stream.variable = Some(open.at);
        }
        if let Some(captured) = open.capture.and_then(|name| self.captures.get_mut(&name)) {
            self.completions += 1;
            captured.completed = Some(self.completions);
        }
        if let Some((encoding, recorded)) = open.length
            && encoding.decode(&recorded).is_none()
        {
            let problem = Problem::NotALength { encoding };
            return Err(Fault {
                at: open.at,
                problem,
            });
        }
        Ok(len - taken)
    }

    /// A wildcard of `count` bytes of `dir`, at `at`.
    pub fn any(&mut self, dir: Direction, count: u64, at: P) -> Result<(), Fault<P>> {
        if count == 0 {
            return Ok(());
        }
        let stream = &mut self.streams[dir.index()];
        if let Some(open) = &stream.open {
            let problem = Problem::WildcardInside { span: open.at };
            return Err(Fault { at, problem });
        }
        if let Some(variable) = stream.variable {
            let problem = Problem::AfterVariable {
                variable,
                wildcard: true,
            };
            return Err(Fault { at, problem });
        }
        self.other_side_speaks(dir)?;
        self.streams[dir.index()].advance(count);
        Ok(())
    }

    /// Bytes of `dir` are recorded: a span of the other direction still
    /// open would have its bytes split by them.
    fn other_side_speaks(&self, dir: Direction) -> Result<(), Fault<P>> {
        match &self.streams[dir.reverse().index()].open {
            Some(open) => Err(Fault {
                at: open.at,
                problem: Problem::AcrossTurn {
                    len: open.len,
                    recorded: open.len - open.left,
                },
            }),
            None => Ok(()),
        }
    }

    /// The EOF of `dir`.
    pub fn eof(&mut self, dir: Direction) -> Result<(), Fault<P>> {
        let stream = &mut self.streams[dir.index()];
        if let Some(open) = &stream.open {
            return Err(unfinished(open, true));
        }
        stream.unfinished_region(true)?;
        stream.eof = true;
        stream.variable = None;
        Ok(())
    }

    /// The end of the tape.
    pub fn finish(self) -> Result<(), Fault<P>> {
        for stream in &self.streams {
            if let Some(open) = &stream.open {
                return Err(unfinished(open, false));
            }
            stream.unfinished_region(false)?;
        }
        Ok(())
    }
}

fn unfinished<P: Copy>(open: &Open<P>, eof: bool) -> Fault<P> {
    Fault {
        at: open.at,
        problem: Problem::Unfinished {
            len: open.len,
            recorded: open.len - open.left,
            eof,
        },
    }
}

/// A frame of a binary tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePlace {
    pub index: u64,
    pub offset: u64,
}

/// Reads a whole binary tape, every frame, span and wildcard, and checks
/// where its spans stand: the first problem is a `TapeErrorKind::SpanRule`
/// error naming its frame and offset (other frames are named by index, as
/// `describe` lists them). The reader's own errors come as they are.
pub fn check_tape<S: Source>(reader: &mut Reader<S>) -> Result<(), TapeError> {
    let mut checker = Checker::new();
    let mut result = Ok(());
    while let Some(frame) = reader.next_frame()? {
        let at = FramePlace {
            index: frame.index,
            offset: frame.offset,
        };
        result = match frame.kind {
            Kind::Span(dir) => {
                let span = reader.read_span()?;
                checker.span(dir, &span, at)
            }
            Kind::Data(dir) => {
                let head = reader.peek_payload(checker.wanted(dir))?;
                checker.data(dir, u64::from(frame.len), head)
            }
            Kind::Any(dir) => {
                let count = reader.read_wildcard()?;
                checker.any(dir, u64::from(count), at)
            }
            Kind::Eof(dir) => checker.eof(dir),
            _ => Ok(()),
        };
        if result.is_err() {
            break;
        }
    }
    result.and_then(|()| checker.finish()).map_err(|fault| {
        let reason = fault.problem.message(|p| format!("frame {}", p.index));
        TapeError {
            offset: fault.at.offset,
            frame: fault.at.index,
            kind: TapeErrorKind::SpanRule(reason),
        }
    })
}

#[cfg(test)]
mod checker_tests {
    use super::*;
    use crate::tape::Writer;
    use crate::tape::span::Length;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn vary(len: u32) -> Span {
        Span::fixed(SpanKind::Vary, len)
    }

    fn variable(len: u32) -> Span {
        Span {
            kind: SpanKind::Vary,
            len,
            min: 0,
            max: 100,
        }
    }

    fn capture(name: &str, len: u32) -> Span {
        Span::fixed(SpanKind::Capture(name.into()), len)
    }

    fn echo(name: &str, len: u32) -> Span {
        Span::fixed(SpanKind::Echo(name.into()), len)
    }

    fn length(name: &str, region: u32) -> Span {
        let encoding = Encoding::named(name).unwrap();
        let (len, min, max) = match encoding {
            Encoding::Int { width, .. } => (u32::from(width), u32::from(width), u32::from(width)),
            Encoding::Decimal => (1, 1, 5),
        };
        Span {
            kind: SpanKind::Length(Length { encoding, region }),
            len,
            min,
            max,
        }
    }

    /// The tape `build` writes, checked: the error's text.
    fn check(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Result<(), String> {
        let mut bytes = Vec::new();
        build(&mut Writer::new(&mut bytes).unwrap());
        check_tape(&mut Reader::new(bytes.as_slice())).map_err(|err| err.to_string())
    }

    #[test]
    fn well_placed_spans_pass() {
        check(|w| {
            w.data(C2S, b"LOGIN ").unwrap();
            w.span(C2S, &variable(4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.data(C2S, b"cd\r\n").unwrap();
            w.span(S2C, &capture("token", 3)).unwrap();
            w.data(S2C, b"xyz").unwrap();
            // Fixed spans may follow each other, and an echo may come
            // any number of times.
            w.span(C2S, &echo("token", 3)).unwrap();
            w.data(C2S, b"xyz").unwrap();
            w.span(C2S, &vary(0)).unwrap();
            w.span(C2S, &echo("token", 3)).unwrap();
            w.data(C2S, b"xyz").unwrap();
            // A variable span may end at the EOF, or the tape's end.
            w.span(S2C, &variable(2)).unwrap();
            w.data(S2C, b"zz").unwrap();
            w.eof(S2C).unwrap();
            w.span(C2S, &variable(1)).unwrap();
            w.data(C2S, b"q").unwrap();
        })
        .unwrap();
    }

    #[test]
    fn each_rule_is_an_error_naming_the_frame() {
        let err = check(|w| {
            w.span(S2C, &capture("token", 1)).unwrap();
            w.data(S2C, b"x").unwrap();
            w.span(S2C, &capture("token", 1)).unwrap();
        })
        .unwrap_err();
        assert_eq!(
            err,
            "misplaced span at offset 40 in frame 3: 'token' is captured a second time (first at frame 1): each capture needs a name of its own"
        );
        let err = check(|w| w.span(C2S, &echo("id", 4)).unwrap()).unwrap_err();
        assert!(
            err.ends_with("in frame 1: echo of 'id', which no span before it captures"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &capture("id", 4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(S2C, &echo("id", 4)).unwrap();
        })
        .unwrap_err();
        assert!(
            err.ends_with("frame 3: echo of 'id' before all the bytes of its capture (at frame 1) are recorded"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &variable(2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(S2C, &vary(1)).unwrap();
            w.data(S2C, b"x").unwrap();
            w.span(C2S, &vary(1)).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("frame 5: a span right after the variable span at frame 1"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &variable(2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.data(C2S, b"").unwrap();
            w.any(C2S, 3).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("frame 4: a wildcard right after the variable span at frame 1"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &vary(4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(C2S, &vary(1)).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("frame 3: a span inside the bytes the span at frame 1 covers"),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &vary(4)).unwrap();
            w.any(C2S, 4).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("frame 2: a wildcard inside the bytes the span at frame 1 covers"),
            "{err}"
        );
        let err = check(|w| {
            w.eof(S2C).unwrap();
            w.span(S2C, &vary(0)).unwrap();
        })
        .unwrap_err();
        assert!(
            err.ends_with("frame 2: a span after its direction's EOF"),
            "{err}"
        );
        let err = check(|w| {
            w.span(S2C, &vary(4)).unwrap();
            w.data(S2C, b"abc").unwrap();
            w.eof(S2C).unwrap();
        })
        .unwrap_err();
        assert!(
            err.ends_with(
                "frame 1: the span covers 4 bytes, but its direction ends (EOF) after 3 of them"
            ),
            "{err}"
        );
        let err = check(|w| {
            w.data(C2S, b"hello").unwrap();
            w.span(S2C, &vary(4)).unwrap();
        })
        .unwrap_err();
        assert_eq!(
            err,
            "misplaced span at offset 21 in frame 2: the span covers 4 bytes, but the tape ends after 0 of them"
        );
    }

    #[test]
    fn a_span_never_crosses_a_turn() {
        // memcached's binary protocol: a SET reply's CAS, then the GET
        // reply after the client's GET. A span over the CAS's last bytes
        // and the GET reply's first is split by the client's turn.
        let err = check(|w| {
            w.data(S2C, b"\x81\x01\x00\x00").unwrap();
            w.span(S2C, &vary(7)).unwrap();
            w.data(S2C, b"\x11\x22\x33\x44").unwrap();
            w.data(C2S, b"\x80\x00\x00\x03key").unwrap();
            w.data(S2C, b"\x81\x00\x00").unwrap();
        })
        .unwrap_err();
        assert_eq!(
            err,
            "misplaced span at offset 20 in frame 2: the span covers 7 bytes, but the other side's bytes come after 4 of them: a span never crosses a turn (replay would wait for the rest of it before the other side's turn)"
        );
        // So does a wildcard of the other side.
        let err = check(|w| {
            w.span(C2S, &vary(4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.any(S2C, 2).unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains(
                "in frame 1: the span covers 4 bytes, but the other side's bytes come after 2"
            ),
            "{err}"
        );
        // Frames in between that hold no bytes of the other side (a delay,
        // an empty data frame, a span of no bytes) do not end a turn.
        check(|w| {
            w.span(C2S, &vary(4)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.delay(3).unwrap();
            w.data(S2C, b"").unwrap();
            w.span(S2C, &vary(0)).unwrap();
            w.data(C2S, b"cd").unwrap();
            w.data(S2C, b"ok").unwrap();
        })
        .unwrap();
    }

    #[test]
    fn reader_errors_come_as_they_are() {
        let err = check_tape(&mut Reader::new(&b"\0\0"[..])).unwrap_err();
        assert!(matches!(err.kind, TapeErrorKind::NotATape { .. }), "{err}");
        let mut bytes = Vec::new();
        Writer::new(&mut bytes)
            .unwrap()
            .extension(0x85, &[9; 14])
            .unwrap();
        let err = check_tape(&mut Reader::new(bytes.as_slice())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad span frame at offset 12 in frame 1: span payload of 14 bytes, 23 expected for a 9-byte name"
        );
    }

    #[test]
    fn places_are_the_callers() {
        // The text parser checks with lines and columns.
        let mut checker = Checker::new();
        checker.span(C2S, &capture("a", 1), (2, 3)).unwrap();
        checker.data(C2S, 1, b"x").unwrap();
        let fault = checker.span(S2C, &capture("a", 1), (5, 7)).unwrap_err();
        assert_eq!(fault.at, (5, 7));
        assert_eq!(
            fault
                .problem
                .message(|(line, column)| format!("{line}:{column}")),
            "'a' is captured a second time (first at 2:3): each capture needs a name of its own"
        );
    }

    #[test]
    fn lengths_count_whole_spans_and_known_values() {
        // Nested lengths around an echo of a value captured before them.
        check(|w| {
            w.span(S2C, &capture("id", 2)).unwrap();
            w.data(S2C, b"ab").unwrap();
            w.span(C2S, &length("u16be", 8)).unwrap();
            w.data(C2S, b"\x00\x08").unwrap();
            w.span(C2S, &length("u8", 5)).unwrap();
            w.data(C2S, b"\x05id=").unwrap();
            w.span(C2S, &echo("id", 2)).unwrap();
            w.data(C2S, b"ab;!").unwrap();
        })
        .unwrap();
        let err = check(|w| {
            w.span(C2S, &length("u8", 3)).unwrap();
            w.data(C2S, b"\x03ab").unwrap();
            w.span(C2S, &vary(2)).unwrap();
            w.data(C2S, b"cd").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains(
                "in frame 3: a span across the end of the bytes the length at frame 1 counts"
            ),
            "{err}"
        );
        let err = check(|w| {
            w.span(C2S, &length("u16le", 9)).unwrap();
            w.data(C2S, b"\x09\x00").unwrap();
            w.span(C2S, &length("dec", 3)).unwrap();
            w.data(C2S, b"3abc").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("a decimal length inside the bytes the length at frame 1 counts"),
            "{err}"
        );
        let err = check(|w| {
            for i in 0..=MAX_NESTED_LENGTHS as u32 {
                w.span(C2S, &length("u8", 100 - 2 * i)).unwrap();
                w.data(C2S, b"\x64").unwrap();
            }
        })
        .unwrap_err();
        assert!(err.contains("more than 8 lengths count"), "{err}");
        let err = check(|w| {
            w.span(S2C, &length("u8", 2)).unwrap();
            w.data(S2C, b"\x02").unwrap();
            w.span(C2S, &capture("id", 2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(S2C, &echo("id", 2)).unwrap();
            w.data(S2C, b"ab").unwrap();
        })
        .unwrap_err();
        assert!(err.contains("echo of 'id' inside the bytes the length at frame 1 counts, but 'id' is captured after that length"), "{err}");
        let err = check(|w| {
            w.span(C2S, &length("u8", 5)).unwrap();
            w.data(C2S, b"\x05ab").unwrap();
            w.eof(C2S).unwrap();
        })
        .unwrap_err();
        assert!(err.contains("in frame 1: the length counts 3 bytes more than there are: its direction ends (EOF)"), "{err}");
        let err = check(|w| {
            w.span(C2S, &length("u8", 5)).unwrap();
            w.data(C2S, b"\x05").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("the length counts 5 bytes more than there are: the tape ends"),
            "{err}"
        );
        // A variable value that ends where a length's bytes end needs no
        // recorded bytes after it: another span may follow at once.
        check(|w| {
            w.span(C2S, &length("u8", 2)).unwrap();
            w.data(C2S, b"\x02").unwrap();
            w.span(C2S, &variable(2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(C2S, &length("u8", 1)).unwrap();
            w.data(C2S, b"\x01c").unwrap();
        })
        .unwrap();
        let err = check(|w| {
            w.span(C2S, &length("u8", 3)).unwrap();
            w.data(C2S, b"\x03").unwrap();
            w.span(C2S, &variable(2)).unwrap();
            w.data(C2S, b"ab").unwrap();
            w.span(C2S, &vary(1)).unwrap();
            w.data(C2S, b"c").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("right after the variable span at frame 3"),
            "{err}"
        );
        // A length's own bytes do not count as ending where its region
        // (of no bytes) ends: a span right after a decimal length is still
        // after a variable value.
        let err = check(|w| {
            w.span(C2S, &length("dec", 0)).unwrap();
            w.data(C2S, b"0").unwrap();
            w.span(C2S, &vary(2)).unwrap();
            w.data(C2S, b"xy\r\n").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("right after the variable span at frame 1"),
            "{err}"
        );
        // A length's recorded bytes may span data frames; they must be one.
        check(|w| {
            w.span(C2S, &length("u16be", 1)).unwrap();
            w.data(C2S, b"\x00").unwrap();
            w.data(C2S, b"\x01!").unwrap();
        })
        .unwrap();
        let err = check(|w| {
            w.span(C2S, &length("dec", 1)).unwrap();
            w.data(C2S, b"x!").unwrap();
        })
        .unwrap_err();
        assert!(
            err.contains("in frame 1: the recorded value is not a dec length"),
            "{err}"
        );
    }
}
