//! What the benches share: full or smoke size, the load generators, the
//! baselines, process measurements and the result table.
//!
//! `cargo bench` passes `--bench`: full sizes. `cargo test` runs the same
//! programs without it: a seconds-long smoke run that checks they work.

#![allow(dead_code, unused_imports)]

#[path = "../../tests/common/mod.rs"]
pub mod harness;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub use harness::{Running, bin};

pub const MIB: usize = 1024 * 1024;

/// True under `cargo bench`.
pub fn full_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// `full` under `cargo bench`, `smoke` under `cargo test`.
pub fn size(full: usize, smoke: usize) -> usize {
    if full_run() { full } else { smoke }
}

/// A folder for bench files on the real disk (not a tmpfs).
pub fn work_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-tmp")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 1 MiB of pseudo-random bytes; uploads repeat it.
pub fn block() -> Vec<u8> {
    harness::random_bytes(MIB, 42)
}

/// Writes `total` bytes (the block, repeated) to `stream`.
pub fn send_blocks(stream: &mut TcpStream, block: &[u8], total: usize) {
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len());
        stream.write_all(&block[..n]).unwrap();
        left -= n;
    }
}

/// Reads to EOF and returns how many bytes came.
pub fn drain(stream: &mut TcpStream) -> usize {
    let mut buf = vec![0; 256 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => panic!("read: {err}"),
        }
    }
}

/// A server that reads each connection to EOF, then closes it.
pub fn sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                drain(&mut stream);
            });
        }
    });
    addr
}

/// Uploads `total` bytes to `addr`, half-closes, waits for the server to
/// close; returns the elapsed time.
pub fn upload(addr: SocketAddr, total: usize) -> Duration {
    let block = block();
    let start = Instant::now();
    let mut stream = connect_retrying(addr);
    send_blocks(&mut stream, &block, total);
    stream.shutdown(Shutdown::Write).unwrap();
    drain(&mut stream);
    start.elapsed()
}

/// Connects, retrying while the listener (another process) starts up.
pub fn connect_retrying(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => return stream,
            Err(err) if Instant::now() > deadline => panic!("connect {addr}: {err}"),
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn socat_installed() -> bool {
    Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `socat TCP-LISTEN:... TCP:upstream` relaying one connection with its
/// defaults (8 KiB blocks), or `None` when socat is not installed.
pub fn socat(upstream: SocketAddr) -> Option<(Child, SocketAddr)> {
    socat_with(upstream, &[])
}

/// `socat` with extra options before its addresses (`-b 262144`).
pub fn socat_with(upstream: SocketAddr, options: &[&str]) -> Option<(Child, SocketAddr)> {
    let listen = free_addr();
    let child = Command::new("socat")
        .args(options)
        .arg(format!(
            "TCP-LISTEN:{},bind=127.0.0.1,reuseaddr",
            listen.port()
        ))
        .arg(format!("TCP:{upstream}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // socat listens a moment after it starts; `upload` retries its connect.
    Some((child, listen))
}

/// Raises this process's descriptor limit to the hard limit: benches with
/// thousands of sessions hold thousands of sockets.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

/// Current resident memory of a process, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The median of some numbers.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Runs each contender once per round, interleaved, `rounds` times, and
/// prints every round: on a noisy machine only ratios within one run say
/// anything. Returns each contender's values, in order.
pub fn interleaved(
    rounds: usize,
    unit: &str,
    contenders: &mut [(&str, &mut dyn FnMut() -> Option<f64>)],
) -> Vec<Vec<f64>> {
    let mut values: Vec<Vec<f64>> = contenders.iter().map(|_| Vec::new()).collect();
    let n = contenders.len();
    for round in 1..=rounds {
        let mut line = format!("  round {round}:");
        // Each round starts one contender later: whoever runs first, or
        // right after a given other, measured slower or faster here by up
        // to a factor of two (a cold start, a killed relay's teardown).
        for i in (0..n).map(|k| (k + round - 1) % n) {
            let (name, measure) = &mut contenders[i];
            if let Some(value) = measure() {
                values[i].push(value);
                line.push_str(&format!(" {name} {value:.0} {unit};"));
            }
        }
        println!("{line}");
    }
    values
}

/// CPU time a process (or a zombie not yet waited for) has used, user and
/// system, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are the 14th and 15th fields, 12th and 13th after ')'.
    Some((ticks(11)? + ticks(12)?) / clock_ticks())
}

/// Clock ticks per second, as `/proc` counts CPU time.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Seconds of CPU per GiB moved.
pub fn per_gib(seconds: f64, bytes: usize) -> f64 {
    seconds / (bytes as f64 / (1024.0 * MIB as f64))
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `measure` three times under `cargo bench` (once in a smoke run)
/// and keeps the shortest time: on a shared two-core machine the scheduler
/// only ever adds time, so the best run is the least disturbed one.
pub fn best_of<F: FnMut() -> Duration>(mut measure: F) -> Duration {
    (0..size(3, 1)).map(|_| measure()).min().unwrap_or_default()
}

pub fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// One row of a result table.
pub struct Row {
    pub name: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The row this one is compared with, by name.
    pub baseline: Option<&'static str>,
    pub note: String,
}

pub fn row(name: &str, value: Option<f64>, unit: &'static str) -> Row {
    Row {
        name: name.to_string(),
        value,
        unit,
        baseline: None,
        note: String::new(),
    }
}

impl Row {
    pub fn against(mut self, baseline: &'static str) -> Row {
        self.baseline = Some(baseline);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

/// Prints a table: value, and the ratio to the baseline row where one is named.
pub fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}{}", if full_run() { "" } else { " (smoke run)" });
    println!("{:<44} {:>14} {:>8}  note", "row", "value", "ratio");
    for r in rows {
        let value = match r.value {
            Some(v) => format!("{v:.1} {}", r.unit),
            None => "-".to_string(),
        };
        let ratio = r
            .baseline
            .and_then(|b| rows.iter().find(|x| x.name == b))
            .and_then(|b| Some(r.value? / b.value.filter(|v| *v > 0.0)?))
            .map(|x| format!("{x:.2}"))
            .unwrap_or_default();
        println!("{:<44} {:>14} {:>8}  {}", r.name, value, ratio, r.note);
    }
}

/// Starts tcptape (info logs: one line per session) and waits until it listens.
pub fn tcptape(args: &[&str]) -> Running {
    harness::spawn_logged(args, true, "info")
}

/// Starts tcptape with warnings only, listening on a port picked here
/// (`LISTEN` in `args` is replaced), for benches where a log line per
/// session would be part of what is measured.
pub fn tcptape_quiet(args: &[&str]) -> (Running, SocketAddr) {
    let addr = free_addr();
    let listen = addr.to_string();
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "LISTEN" { listen.as_str() } else { a })
        .collect();
    let running = harness::spawn_logged(&args, false, "warn");
    // Ready once it accepts; this probe is one extra session.
    drop(connect_retrying(addr));
    (running, addr)
}

/// Starts tcptape with warnings only and waits for its ready line; `LISTEN`
/// in `args` becomes `127.0.0.1:0`. Returns it and its address.
pub fn tcptape_quiet_listening(args: &[&str]) -> (Running, SocketAddr) {
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "LISTEN" { "127.0.0.1:0" } else { a })
        .collect();
    let running = harness::spawn_logged(&args, true, "warn");
    let addr = running.addr();
    (running, addr)
}

/// Median and 99th percentile of samples, in microseconds.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99))
}

pub fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}
