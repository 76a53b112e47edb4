//! Replay throughput: `server` checking an upload against a tape, and
//! `client` pushing a tape into a sink, each against direct loopback.

mod common;

use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::path::Path;
use std::thread;
use std::time::Instant;

use common::*;
use tcptape::tape::{Direction, Writer};

const FRAME: usize = 256 * 1024;

/// A tape of `total` client bytes (the block, repeated) in 256 KiB frames,
/// then the client's EOF, and, when `answer`, the server's "done" and EOF.
fn write_upload_tape(path: &Path, total: usize, answer: bool) {
    let block = block();
    let file = std::fs::File::create(path).unwrap();
    let mut w = Writer::new(BufWriter::with_capacity(4 * MIB, file)).unwrap();
    let mut left = total;
    while left > 0 {
        // Frames cut the repeated block at the same places the upload does.
        let n = left.min(FRAME);
        let at = (total - left) % block.len();
        w.data(Direction::ClientToServer, &block[at..at + n])
            .unwrap();
        left -= n;
    }
    w.eof(Direction::ClientToServer).unwrap();
    if answer {
        w.data(Direction::ServerToClient, b"done").unwrap();
        w.eof(Direction::ServerToClient).unwrap();
    }
    w.into_inner().flush().unwrap();
}

fn main() {
    let total = size(1024 * MIB, 16 * MIB);
    let rounds = size(5, 1);
    let dir = work_dir("replay");

    // A plain server doing the same job as `tcptape server`: read it all, answer.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let direct_addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            drain(&mut stream);
            stream.write_all(b"done").unwrap();
        }
    });
    let upload_tape = dir.join("upload.tape");
    write_upload_tape(&upload_tape, total, true);
    let push_tape = dir.join("push.tape");
    write_upload_tape(&push_tape, total, false);
    let sink_addr = sink();
    let block = block();

    let mut direct_upload = || Some(mib_per_s(total, upload(direct_addr, total)));
    let server_checking = |program: &str| {
        let mut command = std::process::Command::new(program);
        command
            .args(["server", "--once", "127.0.0.1:0"])
            .arg(&upload_tape)
            .env("RUST_LOG", "info");
        let server = harness::start_command(command);
        let elapsed = upload(server.addr(), total);
        let (code, _, stderr) = server.finish();
        assert_eq!(code, 0, "tcptape server: {stderr}");
        Some(mib_per_s(total, elapsed))
    };
    let mut direct_push = || {
        let start = Instant::now();
        let mut stream = connect_retrying(sink_addr);
        send_blocks(&mut stream, &block, total);
        stream.shutdown(Shutdown::Write).unwrap();
        let _ = stream.read(&mut [0; 1]);
        Some(mib_per_s(total, start.elapsed()))
    };
    let client_pushing = |program: &str| {
        let start = Instant::now();
        let out = std::process::Command::new(program)
            .args([
                "client",
                &sink_addr.to_string(),
                push_tape.to_str().unwrap(),
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "tcptape client: {out:?}");
        Some(mib_per_s(total, start.elapsed()))
    };
    println!(
        "replay: {} MiB, {rounds} interleaved rounds (MiB/s)",
        total / MIB
    );
    // `TCPTAPE_BENCH_OTHER=PATH`: the same with another tcptape binary.
    let other = std::env::var("TCPTAPE_BENCH_OTHER").ok();
    let mut ours_checking = || server_checking(bin());
    let mut ours_pushing = || client_pushing(bin());
    let mut other_checking = || server_checking(other.as_deref()?);
    let mut other_pushing = || client_pushing(other.as_deref()?);
    let values = interleaved(
        rounds,
        "MiB/s",
        &mut [
            ("direct upload", &mut direct_upload),
            ("server checking", &mut ours_checking),
            ("direct push", &mut direct_push),
            ("client pushing", &mut ours_pushing),
            ("other binary checking", &mut other_checking),
            ("other binary pushing", &mut other_pushing),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let median_of = |i: usize| (!values[i].is_empty()).then(|| median(&values[i]));
    let mut rows = vec![
        row("direct loopback upload", median_of(0), "MiB/s"),
        row("tcptape server checking the upload", median_of(1), "MiB/s")
            .against("direct loopback upload")
            .note("target >= 0.9"),
        row("direct loopback push", median_of(2), "MiB/s"),
        row("tcptape client pushing the tape", median_of(3), "MiB/s")
            .against("direct loopback push")
            .note("includes process start; target >= 0.8"),
    ];
    if let Some(other) = &other {
        rows.push(
            row("other binary checking the upload", median_of(4), "MiB/s")
                .against("direct loopback upload")
                .note(other),
        );
        rows.push(
            row("other binary pushing the tape", median_of(5), "MiB/s")
                .against("direct loopback push")
                .note(other),
        );
    }
    print_table(&format!("replay: {} MiB, medians", total / MIB), &rows);
}
