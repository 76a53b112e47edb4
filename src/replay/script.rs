//! The tape read as a script for one role, through two cursors over the same
//! file: [`Expect`] walks the peer's frames and checks what arrives, [`Play`]
//! walks our own frames and says what to send next and when it may go.
//!
//! Causality comes from counting: `Play` notes how many of the peer's bytes
//! (and whether its EOF) were recorded before each of our frames; the frame
//! may go once `Expect` has matched that many.

use crate::tape::{Direction, Frame, Kind, Reader, Source, TapeError};

/// What the peer owes us next, according to the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// `remaining` more bytes of data frame `frame`.
    Data { frame: Frame, remaining: u32 },
    /// `remaining` more bytes of wildcard `frame`: counted, never compared.
    Any { frame: Frame, remaining: u32 },
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
    /// Offset in the peer's byte stream where it departed.
    pub stream_offset: u64,
    /// What arrived, from a little before the departure.
    pub received: Excerpt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// A window of received bytes; `mismatch` is the index of the first byte
/// that departs from the tape (equal to `bytes.len()` when none is shown).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Excerpt {
    pub bytes: Vec<u8>,
    pub mismatch: usize,
}

/// Context kept before the departure point, in bytes.
pub const CONTEXT_BEFORE: usize = 32;
/// Context kept after it: enough for a line diff of a text protocol.
pub const CONTEXT_AFTER: usize = 4096;

/// Why the peer's bytes could not be checked.
#[derive(Debug)]
pub enum Fault {
    Deviation(Box<Deviation>),
    Tape(TapeError),
}

impl From<TapeError> for Fault {
    fn from(err: TapeError) -> Fault {
        Fault::Tape(err)
    }
}

pub struct Expect<S: Source> {
    reader: Reader<S>,
    peer: Direction,
    matched: u64,
    next: Expected,
}

impl<S: Source> Expect<S> {
    pub fn new(reader: Reader<S>, peer: Direction) -> Result<Expect<S>, TapeError> {
        let mut expect = Expect {
            reader,
            peer,
            matched: 0,
            next: Expected::End,
        };
        expect.advance()?;
        Ok(expect)
    }

    /// Bytes of the peer's stream that arrived and matched.
    pub fn matched(&self) -> u64 {
        self.matched
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

    /// Moves to the peer's next frame that owes something.
    fn advance(&mut self) -> Result<(), TapeError> {
        while let Some(frame) = self.reader.next_frame()? {
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

    /// Checks bytes that just arrived. With `compare` off only their count
    /// is checked (`--no-assert`).
    pub fn receive(&mut self, data: &[u8], compare: bool) -> Result<(), Fault> {
        let mut done = 0;
        while done < data.len() {
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
                        let at = frame.len - remaining + i as u32;
                        let kind = DeviationKind::Differ { frame, at };
                        return Err(self.deviate(kind, data, done + i, self.matched));
                    }
                    let n = chunk.len();
                    done += n;
                    self.matched += n as u64;
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
                    if remaining as usize == n {
                        self.advance()?;
                    } else {
                        self.next = Expected::Any {
                            frame,
                            remaining: remaining - n as u32,
                        };
                    }
                }
                Expected::Eof { frame } => {
                    let kind = DeviationKind::DataInsteadOfEof { frame };
                    return Err(self.deviate(kind, data, done, self.matched));
                }
                Expected::Closed | Expected::End => {
                    return Err(self.deviate(
                        DeviationKind::DataAfterEnd,
                        data,
                        done,
                        self.matched,
                    ));
                }
            }
        }
        Ok(())
    }

    /// The peer half-closed its side.
    pub fn receive_eof(&mut self) -> Result<(), Fault> {
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
                Err(self.deviate(kind, &[], 0, self.matched))
            }
            Expected::Any { frame, remaining } => {
                let kind = DeviationKind::EarlyEof {
                    frame,
                    at: 0,
                    remaining,
                };
                Err(self.deviate(kind, &[], 0, self.matched))
            }
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
        Err(self.deviate(DeviationKind::Reset, &[], 0, self.matched))
    }

    /// The peer went away (a failed write) before the tape's end.
    pub fn gone(&self) -> Fault {
        self.deviate(DeviationKind::Reset, &[], 0, self.matched)
    }

    /// Builds the deviation at index `at` of the received `data`, which is
    /// byte `stream_offset` of the peer's stream.
    fn deviate(&self, kind: DeviationKind, data: &[u8], at: usize, stream_offset: u64) -> Fault {
        let start = at.saturating_sub(CONTEXT_BEFORE);
        let end = data.len().min(at + CONTEXT_AFTER);
        Fault::Deviation(Box::new(Deviation {
            kind,
            stream_offset,
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
    /// Send `remaining` more bytes of data frame `frame`.
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

pub struct Play<S: Source> {
    reader: Reader<S>,
    own: Direction,
    needs: Needs,
    action: Action,
    sent: u64,
}

impl<S: Source> Play<S> {
    pub fn new(reader: Reader<S>, own: Direction) -> Result<Play<S>, TapeError> {
        let mut play = Play {
            reader,
            own,
            needs: Needs::default(),
            action: Action::End,
            sent: 0,
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

    /// True when everything the peer had sent before our next action, in
    /// the recording, has arrived.
    pub fn is_ready(&self, matched: u64, peer_closed: bool) -> bool {
        matched >= self.needs.peer_bytes && (peer_closed || !self.needs.peer_eof)
    }

    /// Moves to our next frame, noting what the peer did in between.
    fn advance(&mut self) -> Result<(), TapeError> {
        self.needs.delay_ms = 0;
        while let Some(frame) = self.reader.next_frame()? {
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

    /// The next bytes to send of the current `Send` action, at most `max`.
    pub fn peek(&mut self, max: usize) -> Result<&[u8], TapeError> {
        match self.action {
            Action::Send { remaining, .. } => self.reader.peek_payload(max.min(remaining as usize)),
            _ => Ok(&[]),
        }
    }

    /// `n` bytes of the current `Send` action went out.
    pub fn consume(&mut self, n: usize) -> Result<(), TapeError> {
        let Action::Send { frame, remaining } = self.action else {
            return Ok(());
        };
        self.reader.consume_payload(n);
        self.sent += n as u64;
        let remaining = remaining - n as u32;
        if remaining == 0 {
            self.advance()
        } else {
            self.action = Action::Send { frame, remaining };
            Ok(())
        }
    }

    /// Our half-close went out.
    pub fn shut_down(&mut self) -> Result<(), TapeError> {
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
        }
    }

    #[test]
    fn expect_matches_across_any_chunking() {
        let bytes = echo_tape();
        for chunk in 1..=8 {
            let mut e = expect(&bytes, C2S);
            for piece in b"qqq\nwww\n".chunks(chunk) {
                e.receive(piece, true).unwrap();
            }
            assert_eq!(e.matched(), 8);
            assert!(matches!(e.next(), Expected::Eof { .. }));
            e.receive_eof().unwrap();
            assert!(e.peer_closed() && e.is_done());
        }
    }

    #[test]
    fn expect_reports_first_differing_byte() {
        let bytes = echo_tape();
        let mut e = expect(&bytes, C2S);
        e.receive(b"qqq\nw", true).unwrap();
        let d = deviation(e.receive(b"wX\n", true).unwrap_err());
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
        e.receive(b"XXXXYYYY", false).unwrap();
        assert_eq!(e.matched(), 8);
        let d = deviation(e.receive(b"!", false).unwrap_err());
        assert!(matches!(d.kind, DeviationKind::DataInsteadOfEof { .. }));
    }

    #[test]
    fn expect_early_eof_and_data_after_end() {
        let bytes = echo_tape();
        let mut e = expect(&bytes, S2C);
        e.receive(b"qq", true).unwrap();
        let d = deviation(e.receive_eof().unwrap_err());
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
        e.receive(b"hi", true).unwrap();
        assert!(e.is_done());
        let d = deviation(e.receive(b"more", true).unwrap_err());
        assert_eq!(d.kind, DeviationKind::DataAfterEnd);
        assert_eq!(d.stream_offset, 2);
    }

    #[test]
    fn expect_reset_is_a_deviation_only_while_owed() {
        let bytes = echo_tape();
        let mut e = expect(&bytes, C2S);
        assert!(e.receive_reset().is_err());
        e.receive(b"qqq\nwww\n", true).unwrap();
        e.receive_eof().unwrap();
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
        e.receive(b"nonce=", true).unwrap();
        e.receive(b"\x01\x02", true).unwrap();
        assert!(matches!(e.next(), Expected::Any { remaining: 2, .. }));
        e.receive(b"\xff\x00;", true).unwrap();
        assert!(e.is_done());
        assert_eq!(e.matched(), 11);
        let p = play(&bytes, S2C);
        assert_eq!(p.needs().peer_bytes, 11);

        let mut e = expect(&bytes, C2S);
        e.receive(b"nonce=ab", true).unwrap();
        let d = deviation(e.receive_eof().unwrap_err());
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
        assert_eq!(p.peek(100).unwrap(), b"qqq\n");
        p.consume(4).unwrap();
        // The 150 ms pause came before the client's second line: the
        // client's, not ours.
        assert_eq!(p.needs().peer_bytes, 8);
        assert_eq!(p.needs().delay_ms, 0);
        p.consume(4).unwrap();
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
        p.consume(2).unwrap();
        assert_eq!(p.peek(100).unwrap(), b"q\n");
        p.consume(2).unwrap();
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
