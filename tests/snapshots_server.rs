//! Snapshot workflow for the client under test (issue 19): `auto
//! --update` and `server --update --upstream` replay a tape to a client;
//! where the client departs, its connection is handed over to the real
//! server (the tape's client turns it matched are played to it first) and
//! the session with it is written as a pending tape beside the tape.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use common::*;

/// A line server: HELLO -> "WELCOME <version>", "GET <k>" -> "VALUE <k>
/// <version>", "TOKEN" -> a fresh token, "USE <t>" -> "OK <t>", BYE ->
/// BYE and close. With `greeting`, it speaks first. Serves `n`
/// connections; each one's bytes as received are sent on the channel.
fn line_server(
    version: &'static str,
    greeting: bool,
    n: usize,
) -> (SocketAddr, mpsc::Receiver<Vec<u8>>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        for round in 0..n {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            if greeting {
                writer
                    .write_all(format!("READY {version}\n").as_bytes())
                    .unwrap();
            }
            let mut received = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                received.extend_from_slice(line.as_bytes());
                let request = line.trim_end();
                let answer = match request {
                    "HELLO" => format!("WELCOME {version}\n"),
                    "TOKEN" => format!("TOKEN t{version}x{round}\n"),
                    "BYE" => "BYE\n".to_string(),
                    r if r.starts_with("GET ") => format!("VALUE {} {version}\n", &r[4..]),
                    r if r.starts_with("USE ") => format!("OK {}\n", &r[4..]),
                    other => format!("ERR {other}\n"),
                };
                let _ = writer.write_all(answer.as_bytes());
                if request == "BYE" {
                    let _ = writer.shutdown(Shutdown::Write);
                }
            }
            let _ = tx.send(received);
        }
    });
    (addr, rx, handle)
}

/// A client that says each of `lines` and reads one answer line after
/// each (after the greeting, if `greeting`), then closes; returns what it
/// got.
fn line_client(addr: SocketAddr, greeting: bool, lines: &[&str]) -> Vec<String> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut got = Vec::new();
    let mut read_line = |reader: &mut BufReader<TcpStream>| {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        got.push(line);
    };
    if greeting {
        read_line(&mut reader);
    }
    for line in lines {
        writer.write_all(format!("{line}\n").as_bytes()).unwrap();
        read_line(&mut reader);
    }
    writer.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "nothing after the last answer");
    got
}

/// The v1 session as a hand-written text tape: a comment, and a line that
/// stays the same whatever the version.
const TAPE_V1: &str = "tcptape text 1
# the greeting: the server says its version
> \"HELLO\\n\"
< \"WELCOME v1\\n\"
# the value asked for
> \"GET a\\n\"
< \"VALUE a v1\\n\"
> \"BYE\\n\"
< \"BYE\\n\"
eof <
eof >
";

/// Runs `auto` (with `extra` options) against `upstream` for one
/// session, the client driven by `client`; returns (exit code, stderr,
/// what the client got).
fn auto(
    extra: &[&str],
    env: &[(&str, &str)],
    upstream: SocketAddr,
    tape: &Path,
    client: impl FnOnce(SocketAddr) -> Vec<String>,
) -> (i32, String, Vec<String>) {
    let upstream = upstream.to_string();
    let mut args = vec!["auto"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["127.0.0.1:0", &upstream, tape.to_str().unwrap()]);
    let running = spawn_env(&args, env, true);
    let got = client(running.addr());
    let (code, _, stderr) = running.finish();
    (code, stderr, got)
}

#[test]
fn auto_update_hands_a_departing_client_over_and_writes_the_session_as_a_pending_tape() {
    let dir = temp_dir("snap-server-auto");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let pending = dir.join("login.txt.new");
    let (v2, received, server) = line_server("v2", false, 1);

    let (code, stderr, got) = auto(&["--update"], &[], v2, &tape, |addr| {
        line_client(addr, false, &["HELLO", "GET b", "BYE"])
    });
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("1 tape pending review"), "{stderr}");
    assert!(
        stderr.contains(&format!("pending: {}", pending.display())),
        "{stderr}"
    );
    // The client had the tape's welcome, then the real server's answers.
    assert_eq!(got, ["WELCOME v1\n", "VALUE b v2\n", "BYE\n"]);
    // The upstream heard the matched turn, then the client's own bytes.
    server.join().unwrap();
    assert_eq!(received.recv().unwrap(), b"HELLO\nGET b\nBYE\n");

    assert_eq!(std::fs::read_to_string(&tape).unwrap(), TAPE_V1);
    let new = std::fs::read_to_string(&pending).unwrap();
    assert!(new.contains("< \"WELCOME v2\\n\""), "{new}");
    assert!(new.contains("> \"GET b\\n\""), "{new}");
    assert!(new.contains("< \"VALUE b v2\\n\""), "{new}");
    assert!(
        new.contains("# the greeting: the server says its version\n"),
        "comments stay: {new}"
    );
    assert!(new.contains("# the value asked for\n"), "{new}");

    // Accepted, the next replay with the new client passes.
    let (code, _, stderr) = run(&["review", "--accept", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!pending.exists());
    let (code, stderr, got) = auto(&[], &[], dead_addr(), &tape, |addr| {
        line_client(addr, false, &["HELLO", "GET b", "BYE"])
    });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(got, ["WELCOME v2\n", "VALUE b v2\n", "BYE\n"]);
}
