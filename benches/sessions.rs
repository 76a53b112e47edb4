//! Short sessions per second against `tcptape server`, against a plain
//! thread-per-connection server doing the same exchange; a thousand clients
//! connecting at once to sessions that each wait out a recorded 500 ms
//! delay (no SYN may be dropped); and thousands of idle sessions held by
//! the replay server and by the proxy, with their resident memory, and
//! what is left of it once they are gone.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tcptape::tape::{Direction, Writer};

const REQUEST: [u8; 100] = [b'q'; 100];
const ANSWER: [u8; 100] = [b'a'; 100];
const CLIENTS: usize = 4;

/// The reference: one thread per connection, same exchange as the tape.
fn thread_per_connection() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            thread::spawn(move || {
                let mut request = [0; 100];
                stream.read_exact(&mut request).unwrap();
                stream.write_all(&ANSWER).unwrap();
                let _ = stream.read(&mut [0; 1]);
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// connect, 100-byte request, answer, close: `sessions` times over
/// `CLIENTS` threads. Returns sessions per second.
fn sessions_per_second(addr: SocketAddr, sessions: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..sessions / CLIENTS {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_nodelay(true).unwrap();
                    s.write_all(&REQUEST).unwrap();
                    let mut answer = [0; 100];
                    s.read_exact(&mut answer).unwrap();
                    assert_eq!(answer, ANSWER);
                    s.shutdown(Shutdown::Write).unwrap();
                    let _ = s.read(&mut [0; 1]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (sessions / CLIENTS * CLIENTS) as f64 / start.elapsed().as_secs_f64()
}

fn write_tape(path: &Path, build: impl FnOnce(&mut Writer<std::fs::File>)) {
    let mut w = Writer::new(std::fs::File::create(path).unwrap()).unwrap();
    build(&mut w);
}

fn main() {
    let sessions = size(10_000, 200);
    let concurrent = size(1000, 100);
    let dir = work_dir("sessions");
    let mut rows = Vec::new();

    let reference = sessions_per_second(thread_per_connection(), sessions);
    rows.push(row(
        "thread-per-connection std server",
        Some(reference),
        "sessions/s",
    ));

    let tape = dir.join("short.tape");
    write_tape(&tape, |w| {
        w.data(Direction::ClientToServer, &REQUEST).unwrap();
        w.data(Direction::ServerToClient, &ANSWER).unwrap();
        w.eof(Direction::ClientToServer).unwrap();
        w.eof(Direction::ServerToClient).unwrap();
    });
    let (mut server, addr) = tcptape_quiet(&["server", "LISTEN", tape.to_str().unwrap()]);
    let rate = sessions_per_second(addr, sessions);
    server.kill();
    rows.push(
        row("tcptape server", Some(rate), "sessions/s").against("thread-per-connection std server"),
    );

    raise_fd_limit();
    burst(&dir, concurrent, &mut rows);
    idle_replay_sessions(&dir, size(10_000, 200), &mut rows);
    idle_proxy_sessions(&dir, size(5_000, 100), &mut rows);
    non_reading_clients(&dir, size(10_000, 50), &mut rows);
    let _ = std::fs::remove_dir_all(&dir);
    print_table("sessions", &rows);
}

/// `clients` connect at the same moment (a thread each, released
/// together) to sessions that answer after a recorded 500 ms: all answers
/// come about 500 ms later, and no connect waits for a SYN retransmit.
fn burst(dir: &Path, clients: usize, rows: &mut Vec<Row>) {
    let delayed = dir.join("delayed.tape");
    write_tape(&delayed, |w| {
        w.delay(500).unwrap();
        w.data(Direction::ServerToClient, b"answer").unwrap();
    });
    let (mut server, addr) =
        tcptape_quiet_listening(&["server", "-d", "LISTEN", delayed.to_str().unwrap()]);
    let go = std::sync::Arc::new(std::sync::Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let go = go.clone();
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    go.wait();
                    let start = Instant::now();
                    let mut c = TcpStream::connect(addr).unwrap();
                    let connected = start.elapsed();
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut answer = [0; 6];
                    c.read_exact(&mut answer).unwrap();
                    assert_eq!(&answer, b"answer");
                    connected
                })
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    go.wait();
    let connects: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wall = start.elapsed();
    let retransmitted = connects
        .iter()
        .filter(|d| **d >= Duration::from_millis(900))
        .count();
    let rss = peak_rss_kib(server.child.id());
    server.kill();
    rows.push(
        row(
            &format!("{clients} clients at once, 500 ms delay each, wall"),
            Some(wall.as_secs_f64() * 1000.0),
            "ms",
        )
        .note("target < 700 ms"),
    );
    rows.push(
        row(
            &format!("{clients} clients at once, connects waiting >= 0.9 s"),
            Some(retransmitted as f64),
            "",
        )
        .note("a SYN retransmit; target 0"),
    );
    rows.push(row(
        &format!("{clients} clients at once, server peak RSS"),
        rss.map(|k| k as f64 / 1024.0),
        "MiB",
    ));
}

/// Resident memory of `pid` once `sessions` clients each got a greeting
/// and sit idle, and what is left once they are gone.
fn hold_idle(pid: u32, addr: SocketAddr, sessions: usize) -> (Option<u64>, Option<u64>) {
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let mut c = connect_retrying(addr);
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut greeting = [0; 3];
        c.read_exact(&mut greeting).unwrap();
        clients.push(c);
    }
    thread::sleep(Duration::from_millis(200));
    let held = rss_kib(pid);
    drop(clients);
    thread::sleep(Duration::from_millis(1000));
    (held, rss_kib(pid))
}

fn idle_replay_sessions(dir: &Path, sessions: usize, rows: &mut Vec<Row>) {
    let tape = dir.join("greeting.tape");
    write_tape(&tape, |w| {
        w.data(Direction::ServerToClient, b"hi\n").unwrap();
        w.data(Direction::ClientToServer, b"bye").unwrap();
    });
    let (mut server, addr) =
        tcptape_quiet_listening(&["server", "--timeout", "0", "LISTEN", tape.to_str().unwrap()]);
    let (held, after) = hold_idle(server.child.id(), addr, sessions);
    server.kill();
    rows.push(
        row(
            &format!("{sessions} idle replay sessions, server RSS"),
            held.map(|k| k as f64 / 1024.0),
            "MiB",
        )
        .note("target <= 32 MiB"),
    );
    rows.push(row(
        "  ... after they closed",
        after.map(|k| k as f64 / 1024.0),
        "MiB",
    ));
}

/// Clients that never read from a server whose tape answers with 16 MiB
/// frames: the kernel's socket buffers fill, and the server holds no
/// copy of the frames while its sessions wait.
fn non_reading_clients(dir: &Path, clients: usize, rows: &mut Vec<Row>) {
    let tape = dir.join("big.tape");
    let frame = vec![b'z'; 16 * MIB];
    write_tape(&tape, |w| {
        w.data(Direction::ServerToClient, &frame).unwrap();
        w.data(Direction::ServerToClient, &frame).unwrap();
    });
    let (mut server, addr) =
        tcptape_quiet_listening(&["server", "--timeout", "0", "LISTEN", tape.to_str().unwrap()]);
    let held: Vec<TcpStream> = (0..clients).map(|_| connect_retrying(addr)).collect();
    thread::sleep(Duration::from_millis(1000));
    let rss = rss_kib(server.child.id());
    let peak = peak_rss_kib(server.child.id());
    drop(held);
    server.kill();
    rows.push(
        row(
            &format!("{clients} clients not reading 16 MiB frames, server RSS"),
            rss.map(|k| k as f64 / 1024.0),
            "MiB",
        )
        .note(format!(
            "peak {:.1} MiB",
            peak.map_or(0.0, |k| k as f64 / 1024.0)
        )),
    );
}

fn idle_proxy_sessions(dir: &Path, sessions: usize, rows: &mut Vec<Row>) {
    // A server that greets each connection and keeps it, on one thread.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(b"hi\n");
            held.push(stream);
        }
    });
    let cassette = format!("{}/", dir.join("idle").display());
    let (mut proxy, addr) =
        tcptape_quiet_listening(&["proxy", "LISTEN", &upstream.to_string(), &cassette]);
    let (held, after) = hold_idle(proxy.child.id(), addr, sessions);
    proxy.kill();
    rows.push(
        row(
            &format!("{sessions} idle proxied sessions, proxy RSS"),
            held.map(|k| k as f64 / 1024.0),
            "MiB",
        )
        .note("target <= 32 MiB"),
    );
    rows.push(row(
        "  ... after they closed",
        after.map(|k| k as f64 / 1024.0),
        "MiB",
    ));
}
