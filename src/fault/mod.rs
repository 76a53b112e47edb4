//! Faults on demand: what `--fault SPEC` asks for, parsed into a typed
//! [`Fault`], which connections get it, and where in their byte streams it
//! takes effect. No sockets and no clock (ticks are passed in), so every
//! rule is tested without a network; only `Control`, the hand-over of new
//! faults between threads, waits.
//!
//! - `spec`: a SPEC's text into a [`Fault`], and back;
//! - `conn`: the faults one connection got ([`ConnFaults`]): where each
//!   takes effect, which fired, what a direction may send now;
//! - `shaper`: the pace of one direction's bytes (latency, bandwidth,
//!   slices), a state machine fed the clock.
//!
//! A fault changes what the peer sees, never what is checked: the services
//! ask [`ConnFaults`] before they move bytes and act on what it says.

mod conn;
mod shaper;
mod spec;

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(crate) use conn::{Allow, ConnFaults, Ending, Here};

/// At most this many faults in a run: each is checked on every move of
/// every connection it applies to.
pub const MAX_FAULTS: usize = 32;

/// A direction of a connection, as faults name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

impl Dir {
    pub const BOTH: [Dir; 2] = [Dir::Up, Dir::Down];

    /// 0 up, 1 down: the order the tape's directions have too.
    pub fn index(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Down => "down",
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Each burst of bytes goes `ms` (± up to `jitter`) after it could.
    Latency { ms: u64, jitter: u64 },
    /// At most `rate` bytes a second.
    Bandwidth { rate: u64 },
    /// Writes of at most `bytes` (± up to `vary`, at least 1), `gap` ms
    /// apart.
    Slice { bytes: u64, gap: u64, vary: u64 },
    /// The half-close goes `ms` after it could.
    SlowClose { ms: u64 },
    /// The connection is reset (an RST).
    Reset,
    /// The connection is closed (a FIN), then nothing.
    Close,
    /// The direction stops: nothing read, nothing written, kept open.
    Stall,
    /// The direction's bytes stop reaching the peer; reading goes on.
    Truncate,
}

impl Kind {
    /// True for the kinds that pace bytes rather than stop them.
    pub fn shapes(self) -> bool {
        matches!(
            self,
            Kind::Latency { .. }
                | Kind::Bandwidth { .. }
                | Kind::Slice { .. }
                | Kind::SlowClose { .. }
        )
    }

    /// The kind's name as a SPEC writes it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Latency { .. } => "latency",
            Kind::Bandwidth { .. } => "bandwidth",
            Kind::Slice { .. } => "slice",
            Kind::SlowClose { .. } => "slow_close",
            Kind::Reset => "reset",
            Kind::Close => "close",
            Kind::Stall => "stall",
            Kind::Truncate => "truncate",
        }
    }
}

/// Where in a direction a fault takes effect: a stopping fault fires
/// there, a shaping one paces the bytes from there on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Once `n` bytes of the direction went (0: from the start).
    Byte(u64),
    /// Before the tape's frame `k` (replay only).
    Frame(u64),
    /// `ms` after the connection was opened.
    Ms(u64),
}

/// The role of the service a fault runs in: which directions it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The mock server: sends down, reads up.
    Server,
    /// The mock client: sends up, reads down.
    Client,
    /// The recording proxy: forwards both.
    Proxy,
}

impl Role {
    /// The direction a mock sends; `None` for the proxy, which sends both.
    pub fn own(self) -> Option<Dir> {
        match self {
            Role::Server => Some(Dir::Down),
            Role::Client => Some(Dir::Up),
            Role::Proxy => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Server => "a mock server",
            Role::Client => "a mock client",
            Role::Proxy => "the proxy",
        }
    }
}

/// One `--fault SPEC`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: Kind,
    /// The directions it applies to.
    pub dirs: Vec<Dir>,
    pub at: At,
    /// The connections it applies to, counted from 1, both ends included.
    pub conns: (u64, u64),
    /// The chance a connection gets it, and the seed of the draw.
    pub p: f64,
    pub seed: u64,
    /// The SPEC in its canonical form, as reports name it.
    text: String,
}

impl Fault {
    /// The SPEC as reports name it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether connection `conn` gets this fault: in its range, and
    /// drawn with chance `p` by a generator of `seed` and `conn` alone, so
    /// the same connections get it in every run.
    pub fn selects(&self, conn: u64) -> bool {
        let (first, last) = self.conns;
        if conn < first || conn > last {
            return false;
        }
        self.p >= 1.0 || unit(mix(self.seed, conn)) < self.p
    }

    /// Refuses what `role` cannot do.
    fn check(&self, role: Role) -> Result<(), String> {
        let refuse = |why: String| Err(format!("'{}': {why}", self.text));
        if role == Role::Proxy && matches!(self.at, At::Frame(_)) {
            return refuse(
                "at=frame:K is for replay (server, client): the proxy counts bytes and time, not frames".into(),
            );
        }
        let Some(own) = role.own() else {
            return Ok(());
        };
        let acts_on_own = self.kind.shapes() || self.kind == Kind::Truncate;
        if acts_on_own && !self.dirs.contains(&own) {
            return refuse(format!(
                "{} sends {} only, and {} acts on what it sends (dir={} or both)",
                role.name(),
                own.name(),
                self.kind.name(),
                own.name()
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The faults of a run, in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    list: Vec<Fault>,
}

impl Faults {
    /// Parses SPECs; the error names the SPEC at fault and what is wrong.
    pub fn parse<S: AsRef<str>>(specs: impl IntoIterator<Item = S>) -> Result<Faults, String> {
        let mut faults = Faults { list: Vec::new() };
        for spec in specs {
            faults.push(spec::parse(spec.as_ref())?)?;
        }
        Ok(faults)
    }

    /// One more fault, as a repeated `--fault` adds it.
    pub fn push(&mut self, fault: Fault) -> Result<(), String> {
        if self.list.len() == MAX_FAULTS {
            return Err(format!("'{fault}': more than {MAX_FAULTS} faults at once"));
        }
        self.list.push(fault);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Refuses faults `role` cannot inject, naming the first.
    pub fn check(&self, role: Role) -> Result<(), String> {
        self.list.iter().try_for_each(|fault| fault.check(role))
    }

    /// The faults connection `conn` gets, opened at tick `now`; `None`
    /// when it gets none (and pays nothing for faults).
    pub fn for_conn(&self, conn: u64, role: Role, now: u64) -> Option<Box<ConnFaults>> {
        let chosen: Vec<Fault> = self
            .list
            .iter()
            .filter(|f| f.selects(conn))
            .cloned()
            .collect();
        if chosen.is_empty() {
            return None;
        }
        Some(Box::new(ConnFaults::new(chosen, role, conn, now)))
    }
}

/// Parses one SPEC.
pub fn parse(spec: &str) -> Result<Fault, String> {
    spec::parse(spec)
}

/// The faults of a running service, shared with the handle that changes
/// them (`set_faults`): the handle writes and wakes the loop, the service
/// takes them when woken, and the handle waits until it did, so that
/// bytes a test sends after `set_faults` meet the new faults.
#[derive(Clone, Default)]
pub struct Control(Arc<(Mutex<Handover>, Condvar)>);

#[derive(Default)]
struct Handover {
    faults: Option<Faults>,
    /// Faults set, and taken by the service, so far.
    set: u64,
    taken: u64,
}

impl Control {
    /// New faults for the service to take up when next woken; returns
    /// their number, for `wait_taken`.
    pub fn set(&self, faults: Faults) -> u64 {
        let (handover, _) = &*self.0;
        let Ok(mut handover) = handover.lock() else {
            return 0;
        };
        handover.faults = Some(faults);
        handover.set += 1;
        handover.set
    }

    /// Takes the faults set since last asked, if any, into `faults`: true
    /// when they changed (the service's side).
    pub fn update(control: Option<&Control>, faults: &mut Faults) -> bool {
        let Some(new) = control.and_then(Control::take) else {
            return false;
        };
        log::info!("the faults changed: {} in force", new.len());
        *faults = new;
        true
    }

    /// The faults set since the last call, if any (the service's side).
    pub fn take(&self) -> Option<Faults> {
        let (handover, taken) = &*self.0;
        let mut handover = handover.lock().ok()?;
        let faults = handover.faults.take()?;
        handover.taken = handover.set;
        taken.notify_all();
        Some(faults)
    }

    /// Waits until the service took faults number `set`, or `running`
    /// says it is gone; at most `patience`.
    pub fn wait_taken(&self, set: u64, running: impl Fn() -> bool, patience: Duration) {
        let (handover, taken) = &*self.0;
        let Ok(mut handover) = handover.lock() else {
            return;
        };
        let deadline = std::time::Instant::now() + patience;
        // The service may end without taking them: look again now and
        // then, not only when woken.
        let look = Duration::from_millis(50);
        while handover.taken < set && running() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match taken.wait_timeout(handover, left.min(look)) {
                Ok((next, _)) => handover = next,
                Err(_) => return,
            }
        }
    }
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Control")
    }
}

impl PartialEq for Control {
    fn eq(&self, other: &Control) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// SplitMix64's mixing of a seed and a value: one draw of a small, well
/// spread generator, the same on every machine.
fn mix(seed: u64, value: u64) -> u64 {
    let mut z = seed
        .wrapping_add(value.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A draw as a number in [0, 1).
fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chance_picks_the_same_connections_for_the_same_seed() {
        let fault = parse("reset,p=0.5,seed=7").unwrap();
        let picked = |f: &Fault| (1..=200).filter(|&c| f.selects(c)).collect::<Vec<u64>>();
        let first = picked(&fault);
        assert_eq!(first, picked(&fault.clone()));
        // About half, and another seed another half.
        assert!((70..=130).contains(&first.len()), "{}", first.len());
        let other = parse("reset,p=0.5,seed=8").unwrap();
        assert_ne!(first, picked(&other));
        assert!(picked(&parse("reset,p=0").unwrap()).is_empty());
        assert_eq!(picked(&parse("reset,p=1").unwrap()).len(), 200);
    }

    #[test]
    fn connections_outside_the_range_get_nothing() {
        let fault = parse("stall,conn=2..3").unwrap();
        let picked: Vec<u64> = (1..=5).filter(|&c| fault.selects(c)).collect();
        assert_eq!(picked, [2, 3]);
        let faults = Faults::parse(["stall,conn=2"]).unwrap();
        assert!(faults.for_conn(1, Role::Server, 0).is_none());
        assert!(faults.for_conn(2, Role::Server, 0).is_some());
    }

    #[test]
    fn a_role_refuses_what_it_cannot_do() {
        let check = |spec: &str, role| Faults::parse([spec]).unwrap().check(role);
        assert!(check("latency=10", Role::Server).is_ok());
        assert!(check("latency=10,dir=down", Role::Server).is_ok());
        let err = check("latency=10,dir=up", Role::Server).unwrap_err();
        assert_eq!(
            err,
            "'latency=10,dir=up': a mock server sends down only, and latency acts on what it sends (dir=down or both)"
        );
        assert!(check("truncate,dir=down", Role::Client).is_err());
        assert!(
            check("reset,dir=up", Role::Server).is_ok(),
            "a reset at a point of the client's bytes"
        );
        let err = check("reset,at=frame:3", Role::Proxy).unwrap_err();
        assert!(err.contains("at=frame:K is for replay"), "{err}");
        assert!(check("reset,at=frame:3", Role::Client).is_ok());
        assert!(check("truncate,dir=up", Role::Proxy).is_ok());
    }

    #[test]
    fn more_faults_than_the_limit_are_refused() {
        let specs = vec!["stall"; MAX_FAULTS + 1];
        let err = Faults::parse(specs).unwrap_err();
        assert_eq!(err, "'stall': more than 32 faults at once");
        let mut faults = Faults::parse(vec!["stall"; MAX_FAULTS]).unwrap();
        assert!(faults.push(parse("stall").unwrap()).is_err());
    }

    #[test]
    fn control_hands_over_the_last_faults_set_once() {
        let control = Control::default();
        assert!(control.take().is_none());
        assert_eq!(control.set(Faults::parse(["stall"]).unwrap()), 1);
        let second = control.set(Faults::default());
        let service = control.clone();
        let taker = std::thread::spawn(move || service.take());
        control.wait_taken(second, || true, Duration::from_secs(30));
        assert_eq!(taker.join().unwrap(), Some(Faults::default()));
        assert!(control.take().is_none());
        assert_eq!(control.clone(), control);
        assert_ne!(Control::default(), control);
    }

    #[test]
    fn control_stops_waiting_for_a_service_that_is_gone() {
        let control = Control::default();
        let set = control.set(Faults::default());
        let started = std::time::Instant::now();
        control.wait_taken(set, || false, Duration::from_secs(30));
        control.wait_taken(set, || true, Duration::from_millis(20));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
