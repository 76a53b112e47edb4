//! Fairness under load: four bulk uploads through one `tcptape proxy`, and
//! meanwhile (a) new sessions that say one line and wait for its echo, and
//! (b) a session opened before the load that does the same now and then.
//! A fair loop answers both within milliseconds however busy the bulk
//! sessions keep it, and shares the bandwidth evenly among them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A server that echoes lines to `echo` clients and swallows uploads.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            stream.set_nodelay(true).unwrap();
            thread::spawn(move || {
                let mut buf = vec![0; 256 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        // A ping is 8 bytes; an upload comes in big reads.
                        Ok(8) if &buf[..4] == b"ping" => {
                            if stream.write_all(&buf[..8]).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

fn ping(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    stream.write_all(b"ping1234").unwrap();
    let mut answer = [0; 8];
    stream.read_exact(&mut answer).unwrap();
    start.elapsed()
}

fn main() {
    let window = Duration::from_secs(size(3, 1) as u64);
    let samples = size(200, 20);
    let upstream = upstream();
    let dir = std::path::PathBuf::from("/dev/shm/tcptape-fairness");
    let _ = std::fs::create_dir_all(&dir);
    let template = dir.join("s{n}.tape");
    let proxy = tcptape_quiet_listening(&[
        "proxy",
        "LISTEN",
        &upstream.to_string(),
        template.to_str().unwrap(),
    ]);
    let addr = proxy.1;

    let mut idle = connect_retrying(addr);
    idle.set_nodelay(true).unwrap();
    ping(&mut idle);

    // The bulk load: four uploads, as fast as the proxy takes them.
    let stop = Arc::new(AtomicBool::new(false));
    let moved: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let bulk: Vec<_> = moved
        .iter()
        .map(|counter| {
            let (stop, counter) = (stop.clone(), counter.clone());
            thread::spawn(move || {
                let block = vec![7u8; 256 * 1024];
                let mut stream = connect_retrying(addr);
                while !stop.load(Ordering::Relaxed) {
                    match stream.write(&block) {
                        Ok(n) => counter.fetch_add(n as u64, Ordering::Relaxed),
                        Err(_) => return,
                    };
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));

    let start = Instant::now();
    let mut first_replies = Vec::new();
    let mut idle_replies = Vec::new();
    let before: Vec<u64> = moved.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    while first_replies.len() < samples || start.elapsed() < window {
        let mut fresh = connect_retrying(addr);
        fresh.set_nodelay(true).unwrap();
        first_replies.push(ping(&mut fresh));
        idle_replies.push(ping(&mut idle));
        thread::sleep(Duration::from_millis(10));
        if start.elapsed() > 4 * window {
            break;
        }
    }
    let shares: Vec<u64> = moved
        .iter()
        .zip(&before)
        .map(|(c, b)| c.load(Ordering::Relaxed) - b)
        .collect();
    stop.store(true, Ordering::Relaxed);
    let mut proxy = proxy.0;
    proxy.kill();
    for handle in bulk {
        let _ = handle.join();
    }
    let _ = std::fs::remove_dir_all(&dir);

    let (first_median, first_p99) = percentiles(&mut first_replies);
    let (idle_median, idle_p99) = percentiles(&mut idle_replies);
    let most = *shares.iter().max().unwrap_or(&0) as f64;
    let least = *shares.iter().min().unwrap_or(&0) as f64;
    let total: u64 = shares.iter().sum();
    let rows = vec![
        row(
            "new session, first reply, median",
            Some(first_median / 1000.0),
            "ms",
        ),
        row(
            "new session, first reply, p99",
            Some(first_p99 / 1000.0),
            "ms",
        )
        .note("target <= 20 ms"),
        row(
            "idle session, reply, median",
            Some(idle_median / 1000.0),
            "ms",
        ),
        row("idle session, reply, p99", Some(idle_p99 / 1000.0), "ms").note("target <= 10 ms"),
        row(
            "bulk sessions, most / least bytes",
            Some(most / least.max(1.0)),
            "x",
        )
        .note("target <= 2"),
        row(
            "bulk throughput, all four",
            Some(total as f64 / MIB as f64 / start.elapsed().as_secs_f64()),
            "MiB/s",
        ),
    ];
    print_table(
        &format!(
            "fairness: 4 bulk uploads through the proxy, {} probes",
            first_replies.len()
        ),
        &rows,
    );
}
