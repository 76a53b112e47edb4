//! Faults at scale: short sessions per second against `tcptape server`
//! with every answer sliced into 1-byte writes (`--fault slice=1`), next to
//! the same run without; and a latency (`--fault latency=100`) held by a
//! thousand sessions at once, with how far each answer came from its due
//! time, next to the same answers held by a recorded delay of as long
//! (`-d`): shaping is timers on the wheel, and so are recorded delays.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tcptape::tape::Direction;

/// The latency of the second part, in ms.
const LATENCY: u64 = 100;

fn main() {
    let sessions = size(10_000, 200);
    let concurrent = size(1000, 100);
    let dir = work_dir("faults");
    raise_fd_limit();
    let mut rows = Vec::new();

    let tape = dir.join("short.tape");
    short_tape(&tape);
    let tape = tape.to_str().unwrap();
    let (mut plain, addr) = tcptape_quiet_listening(&["server", "LISTEN", tape]);
    let rate = sessions_per_second(addr, sessions);
    plain.kill();
    rows.push(row("tcptape server", Some(rate), "sessions/s"));
    let (mut sliced, addr) =
        tcptape_quiet_listening(&["server", "--fault", "slice=1", "LISTEN", tape]);
    let rate = sessions_per_second(addr, sessions);
    sliced.kill();
    rows.push(
        row("tcptape server --fault slice=1", Some(rate), "sessions/s")
            .against("tcptape server")
            .note(format!("{sessions} sessions, 100 writes of 1 byte each")),
    );

    let tape = dir.join("ping.tape");
    write_tape(&tape, |w| {
        w.data(Direction::ClientToServer, b"ping\n").unwrap();
        w.data(Direction::ServerToClient, b"pong\n").unwrap();
    });
    let delayed = dir.join("ping-delayed.tape");
    write_tape(&delayed, |w| {
        w.data(Direction::ClientToServer, b"ping\n").unwrap();
        w.delay(LATENCY).unwrap();
        w.data(Direction::ServerToClient, b"pong\n").unwrap();
    });
    let latency = format!("latency={LATENCY}");
    let runs = [
        ("--fault", latency.as_str(), &tape),
        ("-d", "--no-assert", &delayed),
    ];
    for (option, value, tape) in runs {
        let args = ["server", "--timeout", "0", option, value, "LISTEN"];
        let (mut server, addr) =
            tcptape_quiet_listening(&[&args[..], &[tape.to_str().unwrap()]].concat());
        let took = answers_at_once(addr, concurrent);
        server.kill();
        let what = match option {
            "-d" => format!("{concurrent} sessions, recorded delay {LATENCY} ms"),
            _ => format!("{concurrent} sessions, {latency}"),
        };
        error_rows(&what, &took, &mut rows);
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table("faults", &rows);
}

/// `clients` connected sessions send their request at the same moment;
/// how long each answer took.
fn answers_at_once(addr: std::net::SocketAddr, clients: usize) -> Vec<Duration> {
    let go = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let go = go.clone();
            let mut c = connect_retrying(addr);
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    go.wait();
                    let start = Instant::now();
                    c.write_all(b"ping\n").unwrap();
                    let mut answer = [0; 5];
                    c.read_exact(&mut answer).unwrap();
                    assert_eq!(&answer, b"pong\n");
                    start.elapsed()
                })
                .unwrap()
        })
        .collect();
    go.wait();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Each answer was due `LATENCY` ms after its request: the error is how
/// much later it came (never earlier: timers do not fire early).
fn error_rows(what: &str, took: &[Duration], rows: &mut Vec<Row>) {
    let due = Duration::from_millis(LATENCY);
    let early = took.iter().filter(|t| **t < due).count();
    let mut errors: Vec<Duration> = took.iter().map(|t| t.saturating_sub(due)).collect();
    let (median, p99) = percentiles(&mut errors);
    let worst = errors.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    rows.push(
        row(&format!("{what}: error median"), Some(median / 1e3), "ms")
            .note("answer time minus the due time"),
    );
    rows.push(row(&format!("{what}: error p99"), Some(p99 / 1e3), "ms"));
    rows.push(row(&format!("{what}: error max"), Some(worst), "ms"));
    rows.push(row(&format!("{what}: answers early"), Some(early as f64), "").note("target 0"));
}
