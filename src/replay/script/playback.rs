//! One tape being played to one peer: the two cursors, the values captured
//! on the way, and where the delay before our next move stands. A session
//! plays one; a cassette connection whose tape is not decided yet plays
//! several side by side (`pool`) and keeps the one that fits: one of them
//! speaks, the others follow silently.

use super::{Action, Captures, Expect, Expected, Fault, Play};
use crate::engine::net::Address;
use crate::error::Error;
use crate::replay::report;
use crate::replay::status::Status;
use crate::tape::{Direction, Frame, Locator, Reader, Source};

/// Bytes a follower skips at a time.
const SKIP_CHUNK: usize = 64 * 1024;

/// Settings every session of a run shares.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The direction we play; the other one is checked.
    pub own: Direction,
    pub compare: bool,
    /// Recorded delays are honoured, divided by this, when set.
    pub speed: Option<f64>,
    /// Mismatch reports carry a line diff when both sides are text.
    pub text_diff: bool,
}

/// Where the playback stands with the delay before its next own frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// The next action's recorded delay has not started counting yet.
    Pending,
    /// A timer runs until the delay is over.
    Waiting,
    /// The delay is over, or there is none to honour.
    Over,
}

pub struct Playback<S: Source> {
    expect: Expect<S>,
    play: Play<S>,
    captures: Captures,
    pub pause: Pause,
    tape: S,
    /// The tape's file name, for logs.
    tape_name: String,
    /// Names places in the tape as the user's file has them.
    locator: Locator,
    settings: Settings,
}

impl<S: Source + Clone> Playback<S> {
    pub fn new(
        (tape_name, tape, locator): (String, S, Locator),
        settings: Settings,
    ) -> Result<Playback<S>, Error> {
        let expect = Expect::new(Reader::new(tape.clone()), settings.own.reverse())
            .map_err(|fault| fault_error(&tape_name, fault))?;
        let play = Play::new(Reader::new(tape.clone()), settings.own)
            .map_err(|fault| fault_error(&tape_name, fault))?;
        Ok(Playback {
            expect,
            play,
            captures: Captures::default(),
            pause: Pause::Pending,
            tape,
            tape_name,
            locator,
            settings,
        })
    }

    /// The tape played, for another playback of it.
    pub fn tape(&self) -> (String, S, Locator) {
        (
            self.tape_name.clone(),
            self.tape.clone(),
            self.locator.clone(),
        )
    }

    pub fn tape_name(&self) -> &str {
        &self.tape_name
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Checks bytes that arrived from the peer.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), Fault> {
        self.expect
            .receive(data, self.settings.compare, &mut self.captures)
    }

    pub fn receive_eof(&mut self) -> Result<(), Fault> {
        self.expect.receive_eof(&mut self.captures)
    }

    pub fn receive_reset(&mut self) -> Result<(), Fault> {
        self.expect.receive_reset()
    }

    /// The peer went away (a failed write) before the tape's end.
    pub fn gone(&self) -> Fault {
        self.expect.gone()
    }

    pub fn action(&self) -> Action {
        self.play.action()
    }

    /// A value captured from the peer, found by other means than the
    /// cursor (`--update`, once the peer departed from the tape).
    pub fn set_capture(&mut self, name: &str, value: Vec<u8>) {
        self.captures.insert(name, value);
    }

    /// Where the cursors stand, for faults placed at a frame: the index of
    /// our next frame, of the peer's next, and how many bytes of the
    /// peer's current frame are still to come where that is known
    /// (`u64::MAX` for a cursor at the tape's end).
    pub fn frames(&self) -> (u64, u64, Option<u64>) {
        let own = match self.play.action() {
            Action::Send { frame, .. } | Action::Shutdown { frame } => frame.index,
            Action::End => u64::MAX,
        };
        let (peer, left) = match self.expect.next() {
            Expected::Data { frame, remaining } | Expected::Any { frame, remaining } => {
                (frame.index, Some(u64::from(remaining)))
            }
            Expected::Span { frame, .. } | Expected::Eof { frame } => (frame.index, None),
            Expected::Closed | Expected::End => (u64::MAX, None),
        };
        (own, peer, left)
    }

    /// How many of the peer's recorded bytes came before our next action.
    pub fn expected(&self) -> u64 {
        self.play.needs().peer_bytes
    }

    /// True when everything the peer sent before our next action in the
    /// recording has arrived.
    pub fn may_act(&self) -> bool {
        self.play
            .is_ready(self.expect.matched(), self.expect.peer_closed())
    }

    /// True when our next action may go now: it is due, and its recorded
    /// delay (if honoured) is over.
    pub fn may_go(&self) -> bool {
        self.action() != Action::End
            && self.may_act()
            && (self.pause == Pause::Over || self.delay_ms() == 0)
    }

    /// True when our next action is one to take (not the tape's end) and
    /// everything the peer sent before it in the recording has arrived.
    pub fn is_due(&self) -> bool {
        self.action() != Action::End && self.may_act()
    }

    /// Moves our stream on by the bytes another candidate of a pool just
    /// said, without sending them: every candidate stands where the client
    /// does, whatever its own frames' sizes and timing. `None` when our
    /// stream does not have that many more bytes before it closes or ends;
    /// else whether ours are the same bytes.
    pub fn skip(&mut self, said: &[u8]) -> Result<Option<bool>, Fault> {
        let mut same = true;
        let skipped = self.skip_with(said.len() as u64, |at, ours| {
            same &= ours == &said[at..at + ours.len()];
        })?;
        Ok(skipped.then_some(same))
    }

    /// Moves our stream on by `n` bytes said before we were a candidate.
    pub fn skip_unseen(&mut self, n: u64) -> Result<bool, Fault> {
        self.skip_with(n, |_, _| {})
    }

    fn skip_with(&mut self, n: u64, mut look: impl FnMut(usize, &[u8])) -> Result<bool, Fault> {
        let mut done = 0u64;
        while done < n {
            if !matches!(self.action(), Action::Send { .. }) {
                return Ok(false);
            }
            let want = usize::try_from(n - done)
                .unwrap_or(usize::MAX)
                .min(SKIP_CHUNK);
            let ours = self.peek(want)?;
            if ours.is_empty() {
                return Ok(false);
            }
            look(done as usize, ours);
            let got = ours.len();
            self.consume(got)?;
            done += got as u64;
        }
        Ok(true)
    }

    /// Fails when the tape file changed on disk since it was opened: what
    /// goes to the peer from it directly would not be the tape's.
    pub fn check_unchanged(&self) -> Result<(), Fault> {
        self.tape.unchanged().map_err(|changed| {
            Fault::Tape(crate::tape::TapeError {
                offset: 0,
                frame: 0,
                kind: crate::tape::TapeErrorKind::Changed(changed),
            })
        })
    }

    /// The tape file and the place in it of our next bytes, when they can
    /// go from the file to the socket directly (`sendfile`).
    pub fn in_file(&self) -> Option<(&std::fs::File, u64, u32)> {
        let (offset, remaining) = self.play.in_tape()?;
        Some((self.tape.file()?, offset, remaining))
    }

    /// True while the bytes going out are a secret's live value.
    pub fn sending_secret(&self) -> bool {
        self.play.sending_secret()
    }

    pub fn peek(&mut self, max: usize) -> Result<&[u8], Fault> {
        self.play.peek(max, &self.captures)
    }

    /// `n` bytes of our current frame went out.
    pub fn consume(&mut self, n: usize) -> Result<(), Fault> {
        let before = self.play.action();
        self.play.consume(n, &mut self.captures)?;
        self.note_new_action(before);
        Ok(())
    }

    /// Our half-close went out.
    pub fn shut_down(&mut self) -> Result<(), Fault> {
        let before = self.play.action();
        self.play.shut_down()?;
        self.note_new_action(before);
        Ok(())
    }

    /// A new action has its own recorded delay.
    fn note_new_action(&mut self, before: Action) {
        if self.play.action() != before {
            self.pause = Pause::Pending;
        }
    }

    /// True when the tape is played out and the peer owes nothing more.
    pub fn is_finished(&self) -> bool {
        self.play.action() == Action::End && self.expect.is_done()
    }

    /// Our bytes that went out so far.
    pub fn sent(&self) -> u64 {
        self.play.sent()
    }

    /// The peer's recorded bytes accounted for.
    pub fn matched(&self) -> u64 {
        self.expect.matched()
    }

    /// The recorded delay before the next action, scaled, in ms.
    fn delay_ms(&self) -> u64 {
        match self.settings.speed {
            Some(speed) => (self.play.needs().delay_ms as f64 / speed).round() as u64,
            None => 0,
        }
    }

    /// Starts the recorded delay of the next action once it may go:
    /// `Some(ms)` when a timer is to be set.
    pub fn wants_pause(&mut self) -> Option<u64> {
        if self.pause != Pause::Pending || self.play.action() == Action::End || !self.may_act() {
            return None;
        }
        let due_ms = self.delay_ms();
        if due_ms == 0 {
            self.pause = Pause::Over;
            return None;
        }
        self.pause = Pause::Waiting;
        Some(due_ms)
    }

    /// The delay timer fired.
    pub fn delay_over(&mut self) {
        if self.pause == Pause::Waiting {
            self.pause = Pause::Over;
        }
    }

    /// Gives the read buffers back while waiting; returns the bytes freed.
    pub fn park(&mut self) -> usize {
        self.expect.release_buffer() + self.play.release_buffer()
    }

    /// What a fault means for the session: a mismatch report, or a failure.
    pub fn fault_status(&self, fault: Fault, addr: &Address) -> Status {
        match fault {
            Fault::Deviation(deviation) => {
                let peer = self.settings.own.reverse();
                Status::Mismatch {
                    summary: report::summary(&deviation, peer, addr, &self.locator),
                    report: report::render(
                        &deviation,
                        peer,
                        addr,
                        (&self.tape, &self.locator),
                        self.settings.text_diff,
                    ),
                    received: deviation.stream_offset,
                }
            }
            fault => Status::Failed(fault_error(&self.tape_name, fault)),
        }
    }

    /// What the peer owes us, for `--timeout` messages; `None` when it
    /// owes nothing (or we wait out a recorded delay).
    pub fn owed(&self) -> Option<String> {
        let who = self.settings.own.reverse().sender();
        if self.pause == Pause::Waiting {
            return None;
        }
        let at = self.expect.received();
        let place = |frame: &Frame, offset| self.locator.place(frame, offset);
        match self.expect.next() {
            Expected::Span { frame, received } => Some(format!(
                "the rest of a value that varies from the {who} ({received} bytes so far; frame {}, {}, byte {at} of its stream)",
                frame.index,
                place(&frame, frame.offset)
            )),
            Expected::Data { frame, remaining } => Some(format!(
                "{remaining} more bytes from the {who} (frame {}, {}, byte {at} of its stream)",
                frame.index,
                place(&frame, awaited(&frame, remaining))
            )),
            Expected::Any { frame, remaining } => Some(format!(
                "{remaining} more bytes (any value) from the {who} (frame {}, {}, byte {at} of its stream)",
                frame.index,
                place(&frame, frame.offset)
            )),
            Expected::Eof { frame } => Some(format!(
                "the {who} to close its side (frame {}, {}, after byte {at} of its stream)",
                frame.index,
                place(&frame, frame.offset)
            )),
            Expected::Closed | Expected::End => None,
        }
    }

    /// Our frame that waits for the peer to read, for `--timeout` messages.
    pub fn unread(&self) -> Option<String> {
        let who = self.settings.own.reverse().sender();
        match self.play.action() {
            Action::Send { frame, remaining } => Some(format!(
                "the {who} to read {remaining} more bytes (frame {}, {})",
                frame.index,
                self.locator.place(&frame, awaited(&frame, remaining))
            )),
            _ => None,
        }
    }
}

/// What a fault that is not the peer's says: a tape that read cleanly when
/// it was loaded fails now (it changed on disk since: sessions read it as
/// they go), or a span the tape holds cannot be played.
pub fn fault_error(name: &str, fault: Fault) -> Error {
    let path = std::path::Path::new(name);
    match fault {
        Fault::Tape(source) => Error::Tape {
            path: path.to_path_buf(),
            source,
        },
        Fault::BadSpan(why) => Error::refused(path, format!("the tape {name}: {why}")),
        Fault::Deviation(_) => {
            Error::refused(path, format!("the tape {name}: a departure at its start"))
        }
    }
}

/// Where the next byte of a data frame with `remaining` bytes to go is: the
/// frame itself until its first byte, then that byte (in a text tape, the
/// line it is on).
fn awaited(frame: &Frame, remaining: u32) -> u64 {
    if remaining == frame.len {
        frame.offset
    } else {
        report::payload_offset(frame, frame.len - remaining)
    }
}
