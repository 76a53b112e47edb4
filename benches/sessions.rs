//! Short sessions per second against `tcptape server`, against a plain
//! thread-per-connection server doing the same exchange; and a thousand
//! concurrent replay sessions, each waiting out a recorded 500 ms delay.

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

    // All sessions open at once, each waiting 500 ms before its answer.
    let delayed = dir.join("delayed.tape");
    write_tape(&delayed, |w| {
        w.data(Direction::ClientToServer, b"ask").unwrap();
        w.delay(500).unwrap();
        w.data(Direction::ServerToClient, b"answer").unwrap();
    });
    let (mut server, addr) = tcptape_quiet(&["server", "-d", "LISTEN", delayed.to_str().unwrap()]);
    let clients: Vec<TcpStream> = (0..concurrent)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let start = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    c.write_all(b"ask").unwrap();
                    let mut answer = [0; 6];
                    c.read_exact(&mut answer).unwrap();
                    assert_eq!(&answer, b"answer");
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let wall = start.elapsed();
    let rss = peak_rss_kib(server.child.id());
    server.kill();
    rows.push(
        row(
            &format!("{concurrent} concurrent delayed sessions, wall"),
            Some(wall.as_secs_f64() * 1000.0),
            "ms",
        )
        .note("500 ms recorded delay each"),
    );
    rows.push(row(
        &format!("{concurrent} concurrent sessions, server peak RSS"),
        rss.map(|k| k as f64 / 1024.0),
        "MiB",
    ));
    let _ = std::fs::remove_dir_all(&dir);
    print_table("sessions", &rows);
}
