//! The faults one connection got, and where each stands: a lane per
//! direction holds the faults placed on it, how many of its bytes went,
//! and whether it flows, is stalled or truncated. The service asks before
//! it moves bytes (`allow`, `read_cap`, `allow_eof`), says what moved
//! (`sent`, `received`), and acts on the answer; faults take effect when
//! their place is reached (`poll`).

use log::{debug, info};

use super::shaper::{Pace, Shaper};
use super::{At, Dir, Fault, Faults, Kind, Role};

/// Where the service stands when it asks: the tape frame its cursor of
/// that direction is at (replay; `None` in the proxy), and the tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Here {
    pub frame: Option<u64>,
    pub now: u64,
}

/// What a direction may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Up to this many bytes (`u64::MAX`: any number).
    Bytes(u64),
    /// Nothing now; ask again at this tick (now itself: after the other
    /// sessions had their turn).
    Wait(u64),
    /// Nothing until the faults change: the direction is stalled.
    Hold,
    /// The bytes go nowhere: count them as gone, send nothing.
    Drop,
    /// The connection ends here.
    End(Ending),
}

/// A fault that ends the connection, as it fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// `Reset` or `Close`.
    pub kind: Kind,
    pub dir: Dir,
    /// The fault's SPEC.
    pub fault: String,
    /// Bytes of `dir` that went before it.
    pub byte: u64,
}

impl Ending {
    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            Kind::Reset => "reset (RST)",
            _ => "closed (FIN)",
        };
        format!(
            "{what} by the fault '{}' after {} bytes {}",
            self.fault,
            self.byte,
            self.dir.name()
        )
    }
}

/// How a direction's bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Flowing,
    /// Nothing is read or written.
    Stalled,
    /// Bytes are taken and dropped; nothing reaches the peer.
    Truncated,
}

/// A fault placed on a lane.
#[derive(Debug)]
struct Item {
    /// Its index among the connection's faults.
    fault: usize,
    kind: Kind,
    at: At,
    reached: bool,
}

#[derive(Debug)]
struct Lane {
    dir: Dir,
    /// Bytes of the direction that went (sent, forwarded, or received).
    done: u64,
    flow: Flow,
    items: Vec<Item>,
    shaper: Shaper,
    /// The shaping of the last `allow`, for the `sent` that follows it.
    pace: Pace,
}

#[derive(Debug)]
pub struct ConnFaults {
    /// The faults this connection got.
    faults: Vec<Fault>,
    lanes: [Lane; 2],
    /// The SPECs of the faults that fired, in order, each once.
    fired: Vec<String>,
    /// The tick the connection opened: `at=ms:` counts from it.
    started: u64,
    conn: u64,
    role: Role,
    /// The earliest tick a wait asked to be woken at since the last
    /// wake-up was filed.
    wait: Option<u64>,
    /// The wake-up filed last: no other is filed while it is ahead.
    filed: Option<u64>,
}

impl ConnFaults {
    pub(super) fn new(faults: Vec<Fault>, role: Role, conn: u64, now: u64) -> ConnFaults {
        let mut this = ConnFaults {
            faults: Vec::new(),
            lanes: Dir::BOTH.map(|dir| Lane {
                dir,
                done: 0,
                flow: Flow::Flowing,
                items: Vec::new(),
                shaper: Shaper::new(0),
                pace: Pace::default(),
            }),
            fired: Vec::new(),
            started: now,
            conn,
            role,
            wait: None,
            filed: None,
        };
        this.place(faults);
        this
    }

    /// Places `faults` on the lanes, fresh: a mock places what shapes or
    /// truncates only on the direction it sends.
    fn place(&mut self, faults: Vec<Fault>) {
        let own = self.role.own();
        for lane in &mut self.lanes {
            lane.items.clear();
            lane.flow = Flow::Flowing;
            lane.pace = Pace::default();
            let seed = faults.iter().map(|f| f.seed).fold(self.conn, super::mix);
            lane.shaper = Shaper::new(super::mix(seed, lane.dir.index() as u64));
        }
        for (index, fault) in faults.iter().enumerate() {
            let own_only = fault.kind.shapes() || fault.kind == Kind::Truncate;
            for &dir in &fault.dirs {
                if own_only && own.is_some_and(|own| own != dir) {
                    continue;
                }
                self.lanes[dir.index()].items.push(Item {
                    fault: index,
                    kind: fault.kind,
                    at: fault.at,
                    reached: false,
                });
            }
        }
        self.faults = faults;
    }

    /// The faults change while the connection runs (`set_faults`): they
    /// are placed afresh, from the bytes that went so far; what fired
    /// stays in the list, and a stalled or truncated direction flows
    /// again unless the new faults stop it.
    pub fn replace(&mut self, faults: &Faults) {
        let chosen = faults
            .list
            .iter()
            .filter(|f| f.selects(self.conn))
            .cloned()
            .collect();
        self.place(chosen);
    }

    /// Bytes of `dir` that went so far.
    pub fn done(&self, dir: Dir) -> u64 {
        self.lanes[dir.index()].done
    }

    /// For faults given to a connection under way: the bytes that went
    /// each way before (`[up, down]`), so positions count from its start.
    pub fn resume_counts(&mut self, done: [u64; 2]) {
        for lane in &mut self.lanes {
            lane.done = done[lane.dir.index()];
        }
    }

    /// The first frame a fault on `dir` waits for, if any.
    pub fn next_frame(&self, dir: Dir) -> Option<u64> {
        let items = self.lanes[dir.index()].items.iter();
        (items.filter(|i| !i.reached))
            .filter_map(|i| match i.at {
                At::Frame(k) => Some(k),
                _ => None,
            })
            .min()
    }

    /// True while a fault on `dir` waits for a frame not reached yet.
    pub fn waits_for_frame(&self, dir: Dir) -> bool {
        (self.lanes[dir.index()].items.iter()).any(|i| !i.reached && matches!(i.at, At::Frame(_)))
    }

    /// The SPECs of the faults that fired, in order.
    pub fn fired(&self) -> &[String] {
        &self.fired
    }

    /// True while `dir` is stalled: the proxy stops reading its source.
    pub fn stalled(&self, dir: Dir) -> bool {
        self.lanes[dir.index()].flow == Flow::Stalled
    }

    /// A new turn of the service for this connection.
    pub fn new_turn(&mut self) {
        for lane in &mut self.lanes {
            lane.shaper.new_turn();
        }
    }

    /// The tick of the next fault placed in time, if any is still to come.
    pub fn next_timer(&self) -> Option<u64> {
        let lanes = self.lanes.iter().flat_map(|lane| &lane.items);
        lanes
            .filter(|item| !item.reached)
            .filter_map(|item| match item.at {
                At::Ms(ms) => Some(self.started.saturating_add(ms)),
                _ => None,
            })
            .min()
    }

    /// The tick to wake the connection at for its faults (a wait of the
    /// shaping, a fault placed in time), once per needed wake-up: `None`
    /// when none is needed, or one filed before comes first.
    pub fn take_wake(&mut self, now: u64) -> Option<u64> {
        let wanted = match (self.wait.take(), self.next_timer()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let ahead = self.filed.filter(|&filed| filed > now);
        if ahead.is_some_and(|filed| filed <= wanted) {
            return None;
        }
        self.filed = Some(wanted);
        Some(wanted)
    }

    fn note_fired(&mut self, fault: usize) {
        let text = self.faults[fault].text();
        if !self.fired.iter().any(|f| f == text) {
            info!("connection {}: fault '{text}'", self.conn);
            self.fired.push(text.to_string());
        }
    }

    /// Every change of a lane's flow passes here.
    fn set_flow(&mut self, dir: Dir, flow: Flow) {
        let lane = &mut self.lanes[dir.index()];
        debug!(
            "connection {}: {} {:?} => {flow:?}",
            self.conn,
            dir.name(),
            lane.flow
        );
        lane.flow = flow;
    }

    /// Fires the faults of `dir` whose place is reached; an ending one
    /// ends the connection.
    pub fn poll(&mut self, dir: Dir, here: Here) -> Option<Ending> {
        self.poll_where(dir, here, false)
    }

    /// Fires the faults of `dir` placed in time whose time has come: for
    /// an owner whose byte counts run ahead of what the peer got (the
    /// proxy counts bytes as it lets them go, before they are forwarded).
    pub fn poll_time(&mut self, dir: Dir, now: u64) -> Option<Ending> {
        self.poll_where(dir, Here { frame: None, now }, true)
    }

    fn poll_where(&mut self, dir: Dir, here: Here, time_only: bool) -> Option<Ending> {
        let lane = &self.lanes[dir.index()];
        let reached = |at: At| match at {
            At::Byte(n) => !time_only && lane.done >= n,
            At::Frame(k) => !time_only && here.frame.is_some_and(|frame| frame >= k),
            At::Ms(ms) => here.now >= self.started.saturating_add(ms),
        };
        let due: Vec<usize> = (lane.items.iter().enumerate())
            .filter(|(_, item)| !item.reached && reached(item.at))
            .map(|(i, _)| i)
            .collect();
        for i in due {
            let item = &mut self.lanes[dir.index()].items[i];
            item.reached = true;
            let (kind, fault) = (item.kind, item.fault);
            match kind {
                Kind::Reset | Kind::Close => {
                    self.note_fired(fault);
                    return Some(Ending {
                        kind,
                        dir,
                        fault: self.faults[fault].text().to_string(),
                        byte: self.lanes[dir.index()].done,
                    });
                }
                Kind::Stall => {
                    self.note_fired(fault);
                    self.set_flow(dir, Flow::Stalled);
                }
                Kind::Truncate => {
                    self.note_fired(fault);
                    self.set_flow(dir, Flow::Truncated);
                }
                // Shaping is noted when it first paces a byte.
                _ => {}
            }
        }
        None
    }

    /// Bytes of `dir` before the next fault placed at a byte not reached
    /// yet: moves stop there, so the fault takes effect exactly there.
    fn room(&self, dir: Dir) -> u64 {
        let lane = &self.lanes[dir.index()];
        (lane.items.iter())
            .filter(|item| !item.reached)
            .filter_map(|item| match item.at {
                At::Byte(n) => Some(n.saturating_sub(lane.done)),
                _ => None,
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The shaping in force on `dir`, noting its faults as fired.
    fn pace(&mut self, dir: Dir) -> Pace {
        let mut pace = Pace::default();
        let mut applied = Vec::new();
        for item in self.lanes[dir.index()].items.iter().filter(|i| i.reached) {
            match item.kind {
                Kind::Latency { ms, jitter } => {
                    pace.latency = pace.latency.saturating_add(ms);
                    pace.jitter = pace.jitter.saturating_add(jitter);
                }
                Kind::Bandwidth { rate } => {
                    pace.rate = Some(pace.rate.map_or(rate, |r| r.min(rate)));
                }
                Kind::Slice { bytes, gap, vary } => {
                    pace.slice = Some(pace.slice.map_or(bytes, |s| s.min(bytes)));
                    pace.gap = pace.gap.max(gap);
                    pace.vary = pace.vary.max(vary);
                }
                Kind::SlowClose { ms } => pace.slow_close = pace.slow_close.saturating_add(ms),
                _ => continue,
            }
            applied.push(item.fault);
        }
        for fault in applied {
            self.note_fired(fault);
        }
        self.lanes[dir.index()].pace = pace;
        pace
    }

    /// What `dir` may send now, with its bytes ready up to stream
    /// position `end` since tick `since`.
    pub fn allow(&mut self, dir: Dir, (end, since): (u64, u64), here: Here) -> Allow {
        if let Some(ending) = self.poll(dir, here) {
            return Allow::End(ending);
        }
        match self.lanes[dir.index()].flow {
            Flow::Stalled => return Allow::Hold,
            Flow::Truncated => return Allow::Drop,
            Flow::Flowing => {}
        }
        let room = self.room(dir);
        let pace = self.pace(dir);
        if pace.is_free() {
            return Allow::Bytes(room);
        }
        let lane = &mut self.lanes[dir.index()];
        match lane.shaper.allow(&pace, (lane.done, end), since, here.now) {
            Ok(n) => Allow::Bytes(n.min(room)),
            Err(at) => self.wait_until(at),
        }
    }

    fn wait_until(&mut self, at: u64) -> Allow {
        self.wait = Some(self.wait.map_or(at, |w| w.min(at)));
        Allow::Wait(at)
    }

    /// `n` bytes of `dir` went (or were dropped) at tick `now`.
    pub fn sent(&mut self, dir: Dir, n: u64, now: u64) {
        let lane = &mut self.lanes[dir.index()];
        lane.done += n;
        if lane.flow == Flow::Flowing {
            let pace = lane.pace;
            lane.shaper.sent(&pace, n, now);
        }
    }

    /// Whether `dir`'s half-close, ready since `since`, may go now:
    /// `Bytes` when it may, else as for `allow` (never `Drop`).
    pub fn allow_eof(&mut self, dir: Dir, since: u64, here: Here) -> Allow {
        if let Some(ending) = self.poll(dir, here) {
            return Allow::End(ending);
        }
        // A truncated direction's half-close still goes: bytes stop, the
        // end of the stream does not.
        if self.lanes[dir.index()].flow == Flow::Stalled {
            return Allow::Hold;
        }
        let pace = self.pace(dir);
        let lane = &mut self.lanes[dir.index()];
        match lane.shaper.allow_eof(&pace, since, here.now) {
            Ok(()) => Allow::Bytes(1),
            Err(at) => self.wait_until(at),
        }
    }

    /// How many bytes of `dir` a mock may read now (it reads what its
    /// peer sends): up to the next fault placed on them, or to the end of
    /// the peer's current frame (`frame_left`) while a fault waits for a
    /// later frame.
    pub fn read_cap(&mut self, dir: Dir, frame_left: Option<u64>, here: Here) -> Allow {
        if let Some(ending) = self.poll(dir, here) {
            return Allow::End(ending);
        }
        if self.lanes[dir.index()].flow == Flow::Stalled {
            return Allow::Hold;
        }
        let room = self.room(dir);
        match (self.waits_for_frame(dir), frame_left) {
            (true, Some(left)) if left > 0 => Allow::Bytes(room.min(left)),
            _ => Allow::Bytes(room),
        }
    }

    /// `n` bytes of `dir` arrived from the peer.
    pub fn received(&mut self, dir: Dir, n: u64) {
        self.lanes[dir.index()].done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(specs: &[&str], role: Role) -> ConnFaults {
        let faults = Faults::parse(specs).unwrap();
        *faults.for_conn(1, role, 1000).expect("selected")
    }

    fn at(now: u64) -> Here {
        Here { frame: None, now }
    }

    #[test]
    fn flowing_with_a_reset_ahead_lets_bytes_go_up_to_it_then_ends() {
        let mut c = conn(&["reset,at=byte:3"], Role::Server);
        assert_eq!(c.allow(Dir::Down, (10, 1000), at(1000)), Allow::Bytes(3));
        c.sent(Dir::Down, 3, 1000);
        let Allow::End(ending) = c.allow(Dir::Down, (10, 1000), at(1001)) else {
            panic!("expected the reset")
        };
        assert_eq!((ending.kind, ending.byte), (Kind::Reset, 3));
        assert_eq!(
            ending.describe(),
            "reset (RST) by the fault 'reset,at=byte:3' after 3 bytes down"
        );
        assert_eq!(c.fired(), ["reset,at=byte:3"]);
        // What the peer sends is not held back by a fault on our bytes.
        assert_eq!(c.read_cap(Dir::Up, None, at(1001)), Allow::Bytes(u64::MAX));
    }

    #[test]
    fn flowing_with_a_reset_at_the_start_ends_at_the_first_poll() {
        let mut c = conn(&["close"], Role::Client);
        let Some(ending) = c.poll(Dir::Down, at(1000)) else {
            panic!("closes at once")
        };
        assert_eq!(
            (ending.kind, ending.dir, ending.byte),
            (Kind::Close, Dir::Down, 0)
        );
        assert!(c.poll(Dir::Down, at(1000)).is_none(), "fires once");
    }

    #[test]
    fn flowing_reaching_a_stall_holds_until_the_faults_change() {
        let mut c = conn(&["stall,dir=both,at=ms:50"], Role::Server);
        assert_eq!(c.next_timer(), Some(1050));
        assert_eq!(c.allow(Dir::Down, (5, 0), at(1049)), Allow::Bytes(u64::MAX));
        assert_eq!(c.allow(Dir::Down, (5, 0), at(1050)), Allow::Hold);
        assert_eq!(c.read_cap(Dir::Up, None, at(1050)), Allow::Hold);
        assert!(c.stalled(Dir::Down) && c.stalled(Dir::Up));
        assert_eq!(c.next_timer(), None);
        c.replace(&Faults::default());
        assert_eq!(c.allow(Dir::Down, (5, 0), at(1060)), Allow::Bytes(u64::MAX));
        assert_eq!(
            c.fired(),
            ["stall,dir=both,at=ms:50"],
            "what fired stays listed"
        );
    }

    #[test]
    fn truncated_bytes_are_dropped_but_not_the_half_close() {
        let mut c = conn(&["truncate,at=byte:4"], Role::Proxy);
        assert_eq!(c.allow(Dir::Down, (10, 0), at(1000)), Allow::Bytes(4));
        c.sent(Dir::Down, 4, 1000);
        assert_eq!(c.allow(Dir::Down, (10, 0), at(1000)), Allow::Drop);
        assert_eq!(
            c.allow_eof(Dir::Down, 1000, at(1000)),
            Allow::Bytes(1),
            "the FIN goes"
        );
        assert_eq!(c.allow(Dir::Up, (10, 0), at(1000)), Allow::Bytes(u64::MAX));
    }

    #[test]
    fn a_mock_shapes_only_what_it_sends() {
        let mut c = conn(&["latency=100", "truncate,dir=both"], Role::Server);
        assert_eq!(c.allow(Dir::Down, (10, 1000), at(1000)), Allow::Drop);
        let mut c = conn(&["latency=100"], Role::Server);
        assert_eq!(c.allow(Dir::Down, (10, 1000), at(1000)), Allow::Wait(1101));
        assert_eq!(c.fired(), ["latency=100"]);
        assert_eq!(c.read_cap(Dir::Up, None, at(1000)), Allow::Bytes(u64::MAX));
        let mut c = conn(&["latency=100"], Role::Proxy);
        assert_eq!(c.allow(Dir::Up, (10, 1000), at(1000)), Allow::Wait(1101));
    }

    #[test]
    fn shaping_placed_at_a_byte_paces_from_there_on() {
        let mut c = conn(&["slice=2,at=byte:5"], Role::Server);
        assert_eq!(c.allow(Dir::Down, (20, 1000), at(1000)), Allow::Bytes(5));
        assert!(c.fired().is_empty(), "nothing paced yet");
        c.sent(Dir::Down, 5, 1000);
        assert_eq!(c.allow(Dir::Down, (20, 1000), at(1000)), Allow::Bytes(2));
        assert_eq!(c.fired(), ["slice=2,at=byte:5"]);
    }

    #[test]
    fn a_fault_at_a_frame_fires_when_the_cursor_reaches_it() {
        let mut c = conn(&["reset,at=frame:4"], Role::Server);
        let frame = |frame, now| Here {
            frame: Some(frame),
            now,
        };
        assert_eq!(
            c.allow(Dir::Down, (10, 1000), frame(3, 1000)),
            Allow::Bytes(u64::MAX)
        );
        assert!(matches!(
            c.allow(Dir::Down, (10, 1000), frame(5, 1000)),
            Allow::End(_)
        ));
        // On the peer's bytes: reads stop at the end of its current frame.
        let mut c = conn(&["stall,dir=up,at=frame:4"], Role::Server);
        assert_eq!(
            c.read_cap(Dir::Up, Some(7), frame(2, 1000)),
            Allow::Bytes(7)
        );
        assert_eq!(c.read_cap(Dir::Up, Some(7), frame(4, 1000)), Allow::Hold);
    }

    #[test]
    fn a_wake_is_asked_for_once_until_it_is_due() {
        let mut c = conn(&["latency=100", "reset,at=ms:500"], Role::Server);
        assert_eq!(c.take_wake(1000), Some(1500), "the reset in time");
        assert_eq!(c.allow(Dir::Down, (10, 1000), at(1000)), Allow::Wait(1101));
        assert_eq!(c.take_wake(1000), Some(1101), "earlier than the one filed");
        assert_eq!(c.allow(Dir::Down, (10, 1000), at(1000)), Allow::Wait(1101));
        assert_eq!(c.take_wake(1000), None, "filed already");
        assert_eq!(
            c.take_wake(1101),
            Some(1500),
            "the last one is due: the next"
        );
    }

    #[test]
    fn the_half_close_waits_for_slow_close() {
        let mut c = conn(&["slow_close=200"], Role::Client);
        assert_eq!(c.allow_eof(Dir::Up, 1000, at(1000)), Allow::Wait(1201));
        assert_eq!(c.allow_eof(Dir::Up, 1100, at(1201)), Allow::Bytes(1));
        assert_eq!(c.fired(), ["slow_close=200"]);
    }
}
