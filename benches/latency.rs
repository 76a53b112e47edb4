//! Round-trip latency of 64-byte request/response pairs through the
//! recording proxy, against a direct connection and a socat relay.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// An echo server: every connection gets its bytes back.
fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            stream.set_nodelay(true).unwrap();
            thread::spawn(move || {
                let mut buf = [0; 64];
                while stream.read_exact(&mut buf).is_ok() {
                    if stream.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn round_trips(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut stream: TcpStream = connect_retrying(addr);
    stream.set_nodelay(true).unwrap();
    let request = [7u8; 64];
    let mut answer = [0u8; 64];
    let mut samples = Vec::with_capacity(n);
    // A few warm-up trips, not measured.
    for i in 0..n + 50 {
        let start = Instant::now();
        stream.write_all(&request).unwrap();
        stream.read_exact(&mut answer).unwrap();
        if i >= 50 {
            samples.push(start.elapsed());
        }
    }
    samples
}

fn main() {
    let n = size(20_000, 500);
    let upstream = echo();
    let mut rows = Vec::new();
    let mut add = |name: &str, samples: Option<Vec<Duration>>, baseline: Option<&'static str>| {
        let Some(mut samples) = samples else {
            rows.push(row(&format!("{name} median"), None, "us").note("not installed"));
            return;
        };
        let (median, p99) = percentiles(&mut samples);
        let mut m = row(&format!("{name} median"), Some(median), "us");
        let mut p = row(&format!("{name} p99"), Some(p99), "us");
        if let Some(b) = baseline {
            m = m.against(b);
            p = p.against(if b.starts_with("direct") {
                "direct p99"
            } else {
                "socat p99"
            });
        }
        rows.push(m);
        rows.push(p);
    };

    add("direct", Some(round_trips(upstream, n)), None);
    let socat_samples = socat(upstream).map(|(child, listen)| {
        let samples = round_trips(listen, n);
        kill(child);
        samples
    });
    add("socat", socat_samples, Some("direct median"));

    let dir = work_dir("latency");
    let template = dir.join("rt-{n}.tape");
    let mut proxy = tcptape(&[
        "proxy",
        "127.0.0.1:0",
        &upstream.to_string(),
        template.to_str().unwrap(),
    ]);
    let samples = round_trips(proxy.addr(), n);
    proxy.kill();
    add(
        "tcptape proxy (recording)",
        Some(samples),
        Some("socat median"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&format!("latency: {n} round trips of 64 bytes"), &rows);
}
