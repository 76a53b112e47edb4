//! The faults of a replayed connection as its peer half keeps them: the
//! clock and the tape positions of the current turn, since when our bytes
//! are ready (latency counts from there), whether a fault held our bytes
//! back this turn, the fault that ended the connection, and the wake-up
//! the faults want. `Peer` asks this before each read, write and
//! half-close; nothing here does I/O.

use crate::fault::{Allow, ConnFaults, Dir, Ending, Faults, Here, Role};

/// Where the cursors stand, for faults placed at a frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frames {
    /// The index of our next frame (`None`: not known, as while bytes
    /// taken from the tape wait to be written).
    pub own: Option<u64>,
    /// The index of the peer's next frame.
    pub peer: Option<u64>,
    /// Bytes of the peer's current frame still to come, where known.
    pub peer_left: Option<u64>,
}

impl Frames {
    /// From a playback's `(own, peer, peer_left)`.
    pub fn of((own, peer, peer_left): (u64, u64, Option<u64>)) -> Frames {
        Frames {
            own: Some(own),
            peer: Some(peer),
            peer_left,
        }
    }
}

/// What a direction may do now, said to the socket half.
pub enum Go {
    /// Move up to this many bytes.
    Bytes(usize),
    /// Count them as gone, move nothing (truncate).
    Drop,
    /// Nothing now.
    Stop,
}

pub struct PeerFaults {
    faults: Box<ConnFaults>,
    /// The direction we send; the peer sends the other.
    own: Dir,
    now: u64,
    frames: Frames,
    /// Since when our next bytes are ready: the peer's last arrival, a
    /// recorded delay over, or the start.
    since: u64,
    /// A fault held our bytes back this turn (a wait, a stall).
    held: bool,
    /// The fault that ended the connection.
    ending: Option<Ending>,
}

impl PeerFaults {
    pub fn new(faults: Box<ConnFaults>, role: Role, now: u64) -> PeerFaults {
        PeerFaults {
            faults,
            own: role.own().unwrap_or(Dir::Down),
            now,
            frames: Frames::default(),
            since: now,
            held: false,
            ending: None,
        }
    }

    fn peer_dir(&self) -> Dir {
        match self.own {
            Dir::Up => Dir::Down,
            Dir::Down => Dir::Up,
        }
    }

    fn here(&self, frame: Option<u64>) -> Here {
        Here {
            frame,
            now: self.now,
        }
    }

    /// A new turn at `now`: faults whose place is reached take effect.
    pub fn turn(&mut self, now: u64, frames: Frames) {
        self.now = now;
        self.held = false;
        self.faults.new_turn();
        self.at(frames);
    }

    /// The cursors moved: faults placed at their frames take effect.
    pub fn at(&mut self, frames: Frames) {
        self.frames = frames;
        for (dir, frame) in [(self.own, frames.own), (self.peer_dir(), frames.peer)] {
            if let Some(ending) = self.faults.poll(dir, self.here(frame)) {
                self.ending.get_or_insert(ending);
            }
        }
        if self.faults.stalled(self.own) {
            self.held = true;
        }
    }

    /// Our next bytes are ready from `now` on (a recorded delay is over).
    pub fn ready_now(&mut self, now: u64) {
        self.since = now;
    }

    /// The peer's bytes (or its EOF) arrived: what we answer is ready
    /// from now on.
    pub fn arrived(&mut self, n: usize) {
        self.faults.received(self.peer_dir(), n as u64);
        self.since = self.now;
    }

    /// How many of the peer's bytes may be read now.
    pub fn read_cap(&mut self) -> usize {
        if self.ending.is_some() {
            return 0;
        }
        let frames = self.frames;
        let here = self.here(frames.peer);
        let allow = self
            .faults
            .read_cap(self.peer_dir(), frames.peer_left, here);
        self.go(allow, 0).unwrap_or(0)
    }

    /// True while a fault waits for a later frame of the peer: reads go
    /// one at a time, so the cursor's frame is known before each.
    pub fn reads_frame_by_frame(&self) -> bool {
        self.frames.peer_left.is_some() && self.faults.waits_for_frame(self.peer_dir())
    }

    /// The first of our frames a fault waits for: bytes of it and after
    /// must not be taken from the tape ahead of writing them.
    pub fn own_frame_limit(&self) -> Option<u64> {
        self.faults.next_frame(self.own)
    }

    /// What may happen to our next `len` bytes.
    pub fn write(&mut self, len: usize) -> Go {
        if self.ending.is_some() {
            return Go::Stop;
        }
        let end = self.faults.done(self.own) + len as u64;
        let here = self.here(self.frames.own);
        let allow = self.faults.allow(self.own, (end, self.since), here);
        match self.go(allow, len) {
            Some(0) => Go::Stop,
            Some(n) => Go::Bytes(n),
            None => Go::Drop,
        }
    }

    /// `n` of our bytes went (or were dropped).
    pub fn sent(&mut self, n: usize) {
        self.faults.sent(self.own, n as u64, self.now);
    }

    /// Whether our half-close may go now.
    pub fn shutdown(&mut self) -> bool {
        if self.ending.is_some() {
            return false;
        }
        let here = self.here(self.frames.own);
        let allow = self.faults.allow_eof(self.own, self.since, here);
        self.go(allow, 1) != Some(0)
    }

    /// Turns an answer into a count (`None`: drop them), noting a wait, a
    /// hold or an ending.
    fn go(&mut self, allow: Allow, len: usize) -> Option<usize> {
        match allow {
            Allow::Bytes(n) if len == 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Allow::Bytes(n) => Some(usize::try_from(n).map_or(len, |n| n.min(len))),
            Allow::Drop => None,
            Allow::Wait(_) | Allow::Hold => {
                self.held = true;
                Some(0)
            }
            Allow::End(ending) => {
                self.held = true;
                self.ending.get_or_insert(ending);
                Some(0)
            }
        }
    }

    /// True while a fault holds our bytes back: the socket's room is not
    /// what we wait for.
    pub fn held(&self) -> bool {
        self.held
    }

    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    pub fn fired(&self) -> &[String] {
        self.faults.fired()
    }

    /// The tick to wake the connection at for its faults, once per
    /// needed wake-up: `None` when one filed before comes first.
    pub fn take_wake(&mut self) -> Option<u64> {
        self.faults.take_wake(self.now)
    }

    /// The faults of the run changed while the connection runs.
    pub fn replace(&mut self, faults: &Faults) {
        self.faults.replace(faults);
    }
}

/// The faults connection `conn` gets as a `role` that sent and received
/// `done` bytes so far (`[up, down]`), for a peer that had none.
pub fn for_open_conn(
    faults: &Faults,
    (conn, role): (u64, Role),
    done: [u64; 2],
    now: u64,
) -> Option<PeerFaults> {
    let mut chosen = faults.for_conn(conn, role, now)?;
    chosen.resume_counts(done);
    Some(PeerFaults::new(chosen, role, now))
}
