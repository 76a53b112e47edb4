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
    let dir = work_dir("replay");
    let mut rows = Vec::new();

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
    let elapsed = best_of(|| upload(direct_addr, total));
    rows.push(row(
        "direct loopback upload",
        Some(mib_per_s(total, elapsed)),
        "MiB/s",
    ));

    let tape = dir.join("upload.tape");
    write_upload_tape(&tape, total, true);
    let elapsed = best_of(|| {
        let server = tcptape(&["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()]);
        let elapsed = upload(server.addr(), total);
        let (code, _, stderr) = server.finish();
        assert_eq!(code, 0, "tcptape server: {stderr}");
        elapsed
    });
    rows.push(
        row(
            "tcptape server checking the upload",
            Some(mib_per_s(total, elapsed)),
            "MiB/s",
        )
        .against("direct loopback upload"),
    );

    // `client`: push the tape's bytes into a sink.
    let sink_addr = sink();
    let block = block();
    let direct = best_of(|| {
        let start = Instant::now();
        let mut stream = connect_retrying(sink_addr);
        send_blocks(&mut stream, &block, total);
        stream.shutdown(Shutdown::Write).unwrap();
        let _ = stream.read(&mut [0; 1]);
        start.elapsed()
    });
    rows.push(row(
        "direct loopback push",
        Some(mib_per_s(total, direct)),
        "MiB/s",
    ));

    let push = dir.join("push.tape");
    write_upload_tape(&push, total, false);
    let elapsed = best_of(|| {
        let start = Instant::now();
        let status = std::process::Command::new(bin())
            .args(["client", &sink_addr.to_string(), push.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .status()
            .unwrap();
        assert!(status.success(), "tcptape client: {status}");
        start.elapsed()
    });
    rows.push(
        row(
            "tcptape client pushing the tape",
            Some(mib_per_s(total, elapsed)),
            "MiB/s",
        )
        .against("direct loopback push")
        .note("includes process start"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&format!("replay: {} MiB", total / MIB), &rows);
}
