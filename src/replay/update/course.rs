//! A session played with `--update`: it is checked against the tape as
//! usual while the peer follows it; from the first byte where the peer
//! departs it goes on, sending our recorded frames and recording what the
//! peer really sends. Everything that went either way is written beside
//! the tape as it goes, for `merge` to make the pending tape of.
//!
//! Once the peer departed, its byte counts no longer say when our next
//! frame is due: a frame goes at once where the recording had no peer
//! bytes before it or where the peer answered exactly as recorded, else
//! once the peer has answered and then been quiet for `QUIET` (or said
//! nothing for `SILENT_TURN`), or closed its side.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use log::info;

use super::merge::{self, Turn};
use super::recorded;
use crate::replay::peer::Arrival;
use crate::tape::{Direction, Writer};

/// Peer bytes kept, once it departed, to find the values its answer
/// captures.
const HEARD_LIMIT: usize = 1 << 20;

/// How long a peer that answered must be quiet before its answer counts as
/// whole, once it departed from the tape.
pub const QUIET_MS: u64 = 250;
/// How long we wait for an answer that does not come before going on.
pub const SILENT_TURN_MS: u64 = 1000;

/// Whether our next frame may go, once the peer departed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The tape's own order decides (the peer follows the tape).
    Tape,
    Go,
    /// Look again at this tick.
    WaitUntil(u64),
}

#[derive(Debug)]
enum Course {
    /// The peer matched the tape so far.
    Following,
    /// The peer departed (`summary` says where): what it sends is recorded,
    /// not checked.
    Departed {
        summary: String,
        last_heard: u64,
        last_sent: u64,
        /// The peer sent something since our last frame went.
        answered: bool,
    },
}

/// What the peer said since our last frame went, kept whether or not it
/// departed: the answer it departs in began before the byte that departs.
#[derive(Debug)]
enum Heard {
    Bytes(Vec<u8>),
    /// More than `HEARD_LIMIT`: no longer known whole, so it captures
    /// nothing and is never taken for the recorded answer.
    TooMuch,
}

pub struct Update {
    record: Writer<BufWriter<File>>,
    /// Where the session is written as it goes.
    partial: PathBuf,
    own: Direction,
    course: Course,
    /// The old tape's turns, to find the values a departed peer's answers
    /// capture.
    turns: Vec<Turn>,
    /// What the peer said since our last frame.
    heard: Heard,
    /// The peer bytes the recording had before the frame we sent last.
    expected_at_send: u64,
}

impl Update {
    /// Starts writing the session beside `pending` (the `.new` path);
    /// `old` is the tape played, read whole.
    pub fn start(pending: &Path, own: Direction, old: &[u8]) -> io::Result<Update> {
        let partial = partial_path(pending);
        let file = File::create(&partial)?;
        Ok(Update {
            record: Writer::new(BufWriter::new(file))?,
            partial,
            own,
            course: Course::Following,
            // A tape that does not read whole has no turns to learn from;
            // the session itself reports what is wrong with it.
            turns: merge::turns(old).unwrap_or_default(),
            heard: Heard::Bytes(Vec::new()),
            expected_at_send: 0,
        })
    }

    /// Once the peer departed: the values its last answer captured, for
    /// our frame at tape offset `at` (the old tape's capture spans found
    /// in what the peer said since our last frame).
    pub fn captured_for(&self, at: u64) -> Vec<(String, Vec<u8>)> {
        if !self.departed() {
            return Vec::new();
        }
        let Some(ours) = self.turns.iter().position(|t| t.bytes.contains(&at)) else {
            return Vec::new();
        };
        match ours.checked_sub(1).map(|i| &self.turns[i]) {
            Some(answer) if answer.dir != self.own => match &self.heard {
                Heard::Bytes(heard) => merge::captures(answer, heard),
                Heard::TooMuch => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Where the first wildcard (`any N`) of our side is in our stream of
    /// the old tape, if it has one: what we cannot send.
    pub fn own_wildcard(&self) -> Option<u64> {
        recorded::first_wildcard(&self.turns, self.own)
    }

    /// Whether the old tape has secret spans: a hand-over would record
    /// the client's live secrets, which no rule stars there.
    pub fn has_secrets(&self) -> bool {
        recorded::has_secret(&self.turns)
    }

    /// True once the peer departed from the tape.
    pub fn departed(&self) -> bool {
        matches!(self.course, Course::Departed { .. })
    }

    /// Where the peer departed, once it did.
    pub fn summary(&self) -> Option<&str> {
        match &self.course {
            Course::Departed { summary, .. } => Some(summary),
            Course::Following => None,
        }
    }

    /// The peer departed from the tape: from now on it is recorded, not
    /// checked.
    pub fn depart(&mut self, summary: String, now: u64) {
        if self.departed() {
            return;
        }
        info!("{summary}; --update goes on and records what it sends");
        self.course = Course::Departed {
            summary,
            last_heard: now,
            last_sent: now,
            answered: true,
        };
    }

    /// The session was handed over to a real peer, which has not said a
    /// thing yet: recorded, not checked, and the first frame that waits
    /// for an answer waits for the one it gives.
    pub fn hand_over(&mut self, summary: String, now: u64) {
        self.heard = Heard::Bytes(Vec::new());
        self.expected_at_send = 0;
        self.course = Course::Departed {
            summary,
            last_heard: now,
            last_sent: now,
            answered: false,
        };
    }

    /// The values the old tape's peer turns captured, as recorded: what an
    /// echo of ours says when the real peer's answer no longer shows them.
    pub fn recorded_captures(&self) -> Vec<(String, Vec<u8>)> {
        let peer = self.own.reverse();
        self.turns
            .iter()
            .filter(|turn| turn.dir == peer)
            .flat_map(merge::recorded_captures)
            .collect()
    }

    /// Where the session is written as it goes.
    pub fn path(&self) -> &Path {
        &self.partial
    }

    /// What was recorded is in the file (the kernel's page cache), before
    /// it is forwarded: write-ahead, as the proxy records.
    pub fn flush(&mut self) -> io::Result<()> {
        self.record.get_mut().flush()
    }

    /// Bytes (or the end) the peer sent.
    pub fn theirs(&mut self, arrival: &Arrival<'_>, now: u64) -> io::Result<()> {
        if let Course::Departed {
            last_heard,
            answered,
            ..
        } = &mut self.course
        {
            *last_heard = now;
            *answered = true;
        }
        if let (Arrival::Data(bytes), Heard::Bytes(heard)) = (arrival, &mut self.heard) {
            match heard.len() + bytes.len() <= HEARD_LIMIT {
                true => heard.extend_from_slice(bytes),
                false => self.heard = Heard::TooMuch,
            }
        }
        let peer = self.own.reverse();
        match arrival {
            Arrival::Data(bytes) => self.record.data(peer, bytes),
            Arrival::Eof | Arrival::Reset => self.record.eof(peer),
        }
    }

    /// Our bytes went; `expected` is how many peer bytes the recording had
    /// before them.
    pub fn ours(&mut self, bytes: &[u8], expected: u64, now: u64) -> io::Result<()> {
        self.note_silence(expected)?;
        self.sent(expected, now);
        self.record.data(self.own, bytes)
    }

    /// Our half-close went.
    pub fn our_eof(&mut self, expected: u64, now: u64) -> io::Result<()> {
        self.note_silence(expected)?;
        self.sent(expected, now);
        self.record.eof(self.own)
    }

    /// A departed peer that said nothing where the tape has it answer gets
    /// an empty turn in the recording: without it our turns before and
    /// after would read as one, and `merge` would give the peer's later
    /// answers to the wrong turns.
    fn note_silence(&mut self, expected: u64) -> io::Result<()> {
        match self.course {
            Course::Departed {
                answered: false, ..
            } if expected > self.expected_at_send => self.record.data(self.own.reverse(), b""),
            _ => Ok(()),
        }
    }

    fn sent(&mut self, expected: u64, now: u64) {
        self.heard = Heard::Bytes(Vec::new());
        self.expected_at_send = expected;
        if let Course::Departed {
            last_sent,
            answered,
            ..
        } = &mut self.course
        {
            *last_sent = now;
            *answered = false;
        }
    }

    /// Once the peer departed: the tick its answer counts as whole (quiet
    /// after it answered, or silent for long), and the peer bytes the
    /// recording had before our last frame.
    fn answer_due(&self) -> Option<(u64, u64)> {
        match &self.course {
            Course::Following => None,
            Course::Departed {
                last_heard,
                last_sent,
                answered,
                ..
            } => {
                let due = match answered {
                    true => last_heard + QUIET_MS,
                    false => last_sent + SILENT_TURN_MS,
                };
                Some((due, self.expected_at_send))
            }
        }
    }

    /// Whether our next action may go at `now`: `expected` is how many peer
    /// bytes the recording had before it. It goes at once when the peer
    /// answered exactly as the old tape has it, and did not close there in
    /// it: an answer that did not change needs no quiet to count as whole.
    pub fn gate(&self, expected: u64, peer_closed: bool, now: u64) -> Gate {
        let Some((due, expected_at_send)) = self.answer_due() else {
            return Gate::Tape;
        };
        let peer = self.own.reverse();
        // Where the recording's peer closed after its answer, the close is
        // part of it: whole once the peer closed (or was quiet).
        let as_recorded = match &self.heard {
            Heard::Bytes(heard) => {
                expected > expected_at_send
                    && heard.len() as u64 == expected - expected_at_send
                    && recorded::is_recorded(&self.turns, peer, expected_at_send, heard)
                    && !recorded::closes_at(&self.turns, peer, expected)
            }
            Heard::TooMuch => false,
        };
        go_or_wait(
            expected == expected_at_send || peer_closed || as_recorded,
            due,
            now,
        )
    }

    /// Whether the session, having played its tape out, is over: the peer
    /// closed, or was quiet long enough.
    pub fn over(&self, peer_closed: bool, now: u64) -> Gate {
        let Some((due, _)) = self.answer_due() else {
            return Gate::Tape;
        };
        go_or_wait(peer_closed, due, now)
    }

    /// The session as it went: flushed, and where it is.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        self.record.get_mut().flush()?;
        Ok(self.partial)
    }

    /// Nothing to keep: the session matched, or failed.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

fn go_or_wait(at_once: bool, due: u64, now: u64) -> Gate {
    match at_once || now >= due {
        true => Gate::Go,
        false => Gate::WaitUntil(due),
    }
}

/// Where a session played with `--update` is written as it goes.
pub(super) fn partial_path(pending: &Path) -> PathBuf {
    let mut name = pending.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of the test's own, removed with it.
    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Folder {
            let dir =
                std::env::temp_dir().join(format!("tcptape-course-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Folder(dir)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn departed(dir: &Folder, now: u64) -> Update {
        let mut update =
            Update::start(&dir.0.join("t.tape.new"), Direction::ClientToServer, &[]).unwrap();
        update.depart("departed".into(), now);
        update
    }

    #[test]
    fn following_leaves_the_order_to_the_tape() {
        let dir = std::env::temp_dir();
        let update = Update::start(
            &dir.join(format!("tcptape-follow-{}.new", std::process::id())),
            Direction::ClientToServer,
            &[],
        )
        .unwrap();
        assert_eq!(update.gate(10, false, 0), Gate::Tape);
        update.discard();
    }

    #[test]
    fn departed_a_frame_goes_once_the_answer_went_quiet() {
        let dir = Folder::new("quiet");
        let mut update = departed(&dir, 100);
        update.ours(b"request", 5, 100).unwrap();
        // The recording had 7 more peer bytes before the next frame.
        assert_eq!(
            update.gate(12, false, 150),
            Gate::WaitUntil(100 + SILENT_TURN_MS)
        );
        update.theirs(&Arrival::Data(b"answer"), 160).unwrap();
        assert_eq!(update.gate(12, false, 200), Gate::WaitUntil(160 + QUIET_MS));
        assert_eq!(update.gate(12, false, 160 + QUIET_MS), Gate::Go);
        // No peer bytes before it in the recording: at once.
        assert_eq!(update.gate(5, false, 101), Gate::Go);
        // A peer that closed says all it will.
        assert_eq!(update.gate(12, true, 161), Gate::Go);
        update.discard();
    }

    #[test]
    fn departed_an_answer_exactly_as_recorded_lets_the_next_frame_go_at_once() {
        // The old tape: we say "HELLO\n", the peer "WELCOME v1\n", then we
        // "GET a\n" (the peer's 11 bytes come before it).
        let mut old = Writer::new(Vec::new()).unwrap();
        let c2s = Direction::ClientToServer;
        old.data(c2s, b"HELLO\n").unwrap();
        old.data(c2s.reverse(), b"WELCOME v1\n").unwrap();
        old.data(c2s, b"GET a\n").unwrap();
        let old = old.into_inner();
        let dir = Folder::new("recorded");
        let start = |name: &str| {
            let mut update = Update::start(&dir.0.join(name), c2s, &old).unwrap();
            update.depart("departed".into(), 0);
            update.ours(b"HELLO\n", 0, 100).unwrap();
            update
        };
        let mut same = start("same.new");
        same.theirs(&Arrival::Data(b"WELCOME "), 110).unwrap();
        assert_eq!(
            same.gate(11, false, 111),
            Gate::WaitUntil(110 + QUIET_MS),
            "not all of it yet"
        );
        same.theirs(&Arrival::Data(b"v1\n"), 112).unwrap();
        assert_eq!(
            same.gate(11, false, 113),
            Gate::Go,
            "as recorded: no quiet needed"
        );
        same.discard();
        let mut changed = start("changed.new");
        changed
            .theirs(&Arrival::Data(b"WELCOME v2\n"), 110)
            .unwrap();
        assert_eq!(
            changed.gate(11, false, 111),
            Gate::WaitUntil(110 + QUIET_MS)
        );
        changed.discard();
    }

    #[test]
    fn departed_an_answer_that_never_comes_is_waited_for_a_while() {
        let dir = Folder::new("silent");
        let mut update = departed(&dir, 0);
        update.ours(b"q", 0, 10).unwrap();
        assert_eq!(update.over(false, 20), Gate::WaitUntil(10 + SILENT_TURN_MS));
        assert_eq!(update.over(false, 10 + SILENT_TURN_MS), Gate::Go);
        update.discard();
    }
}
