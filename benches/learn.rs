//! `tcptape learn` on two recordings of one HTTP-like keep-alive session:
//! each request with a random id the answer echoes, each answer a 500-byte
//! body with a random number. Time and peak memory (the child's maxrss)
//! by the number of exchanges and by the recordings' size: both should
//! grow linearly, memory within twice the recordings' size.

mod common;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tcptape::tape::{Direction, Writer};

/// The body's bytes, the number included.
const BODY: usize = 500;

/// Writes a recording of `exchanges` requests and answers, values drawn
/// from `seed`; returns its size in bytes.
fn write_session(path: &Path, exchanges: usize, seed: u64) -> u64 {
    let file = std::fs::File::create(path).unwrap();
    let mut w = Writer::new(BufWriter::with_capacity(1 << 20, file)).unwrap();
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let filler = "lorem ipsum dolor sit amet ".repeat(BODY / 27 + 1);
    for _ in 0..exchanges {
        let id = format!("{:016x}", next());
        let request =
            format!("GET /items HTTP/1.1\r\nHost: api.example\r\nX-Request-Id: {id}\r\n\r\n");
        w.data(Direction::ClientToServer, request.as_bytes())
            .unwrap();
        let number = format!("number={:020}\n", next());
        let body = format!("{number}{}", &filler[..BODY - number.len()]);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\nX-Request-Id: {id}\r\n\r\n{body}"
        );
        w.data(Direction::ServerToClient, answer.as_bytes())
            .unwrap();
    }
    w.eof(Direction::ClientToServer).unwrap();
    w.eof(Direction::ServerToClient).unwrap();
    w.into_inner().flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Runs `tcptape learn a b -o out`: its time and peak resident memory
/// (KiB), from the child's own resource usage.
// The child is reaped by wait4, which also gives its resource usage.
#[allow(clippy::zombie_processes)]
fn learn(a: &Path, b: &Path, out: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let child = Command::new(bin())
        .arg("learn")
        .args([a, b])
        .arg("-o")
        .arg(out)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 fills the one we own
    // for the child we started.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "learn failed: {status}"
    );
    (elapsed, usage.ru_maxrss as u64)
}

/// Learns a session of `exchanges`: (recording size, time, peak KiB).
fn measure(dir: &Path, exchanges: usize) -> (u64, Duration, u64) {
    let (a, b, out) = (dir.join("a.tape"), dir.join("b.tape"), dir.join("out.txt"));
    let size = write_session(&a, exchanges, 1) + write_session(&b, exchanges, 2);
    let (elapsed, peak) = learn(&a, &b, &out);
    if !full_run() {
        // Every id is captured and echoed.
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.matches("\n> [capture ").count(), exchanges);
        assert_eq!(text.matches("\n< [echo ").count(), exchanges);
    }
    for path in [a, b, out] {
        let _ = std::fs::remove_file(path);
    }
    (size, elapsed, peak)
}

fn main() {
    let dir = work_dir("learn");
    let mut sessions = vec![70, 100, 2_000];
    if full_run() {
        // 10,000 exchanges, then recordings of about 64 MiB, 256 MiB and
        // 1 GiB each (an exchange is about 650 bytes).
        sessions.extend([10_000, 100_000, 400_000, 1_650_000]);
    }
    println!(
        "\nlearn: two recordings of a keep-alive session{}",
        if full_run() { "" } else { " (smoke run)" }
    );
    println!(
        "{:>10} {:>14} {:>10} {:>12} {:>10} {:>12}",
        "exchanges", "recordings", "time", "peak memory", "memory", "speed"
    );
    for exchanges in sessions {
        let (size, elapsed, peak_kib) = measure(&dir, exchanges);
        let mib = size as f64 / MIB as f64;
        let peak = peak_kib as f64 / 1024.0;
        println!(
            "{exchanges:>10} {:>10.1} MiB {:>8.2} s {:>8.1} MiB {:>9.2}x {:>7.1} MiB/s",
            mib,
            elapsed.as_secs_f64(),
            peak,
            peak / mib,
            mib / elapsed.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
