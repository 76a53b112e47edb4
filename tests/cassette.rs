//! Cassettes (folders of tapes, one per connection) and `auto` mode.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::thread;

use common::*;

/// An upstream answering each connection's request with `re: REQUEST`.
fn answering_upstream(connections: usize) -> (SocketAddr, thread::JoinHandle<()>) {
    let (listener, addr) = listener();
    let handle = thread::spawn(move || {
        let mut handles = Vec::new();
        for _ in 0..connections {
            let (mut s, _) = listener.accept().unwrap();
            handles.push(thread::spawn(move || {
                let request = read_to_end(&mut s);
                s.write_all(b"re: ").unwrap();
                s.write_all(&request).unwrap();
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    (addr, handle)
}

/// One client exchange: send `request`, half-close, read the answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut c = connect(addr);
    write_all(&mut c, request);
    half_close(&c);
    read_to_end(&mut c)
}

fn record_pool(dir: &Path, requests: &[String]) {
    let (upstream, server) = answering_upstream(requests.len());
    let cassette = format!("{}/", dir.display());
    let proxy = spawn(
        &[
            "proxy",
            "127.0.0.1:0",
            &upstream.to_string(),
            &cassette,
            "--max-sessions",
            &requests.len().to_string(),
        ],
        true,
    );
    let addr = proxy.addr();
    // A pool: every connection open at once, then each used.
    let clients: Vec<TcpStream> = requests.iter().map(|_| connect(addr)).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .zip(requests.iter().cloned())
        .map(|(mut c, request)| {
            thread::spawn(move || {
                write_all(&mut c, request.as_bytes());
                half_close(&c);
                assert_eq!(read_to_end(&mut c), format!("re: {request}").as_bytes());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_pool_of_eight_is_recorded_and_replayed_in_another_order() {
    let dir = temp_dir("cassette-pool");
    let requests: Vec<String> = (0..8).map(|i| format!("SELECT {i} FROM pool")).collect();
    record_pool(&dir, &requests);
    for n in 1..=8 {
        assert!(dir.join(format!("{n:04}.tape")).exists(), "tape {n}");
    }
    let index = std::fs::read_to_string(dir.join("index")).unwrap();
    // One line per session as it ended: sorted by the order column.
    let mut lines: Vec<&str> = index.lines().filter(|l| !l.starts_with('#')).collect();
    lines.sort_by_key(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap());
    assert_eq!(lines.len(), 8, "{index}");
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], format!("{:04}.tape", i + 1));
        assert_eq!(fields[1], (i + 1).to_string());
        assert_eq!(fields[3], "18", "client bytes: {line}");
        assert_eq!(fields[4], "22", "server bytes: {line}");
        assert_eq!(fields[5], "client", "{line}");
    }

    let (code, listing, _) = run(&["describe", &format!("{}/", dir.display())]);
    assert_eq!(code, 0);
    // Frame counts and delays depend on timing; the streams do not.
    let third = listing
        .lines()
        .find(|l| l.starts_with("0003.tape: "))
        .unwrap();
    assert!(
        third.contains(" frames, client 18 bytes, server 22 bytes, client spoke first, ")
            && third.ends_with("both sides closed"),
        "{listing}"
    );
    assert!(listing.ends_with("8 tapes\n"), "{listing}");

    // Replay: the same eight requests, reversed and concurrent.
    let server = spawn(
        &[
            "server",
            "--once",
            "127.0.0.1:0",
            &format!("{}/", dir.display()),
        ],
        true,
    );
    let addr = server.addr();
    let handles: Vec<_> = requests
        .iter()
        .rev()
        .cloned()
        .map(|request| thread::spawn(move || (request.clone(), exchange(addr, request.as_bytes()))))
        .collect();
    for h in handles {
        let (request, answer) = h.join().unwrap();
        assert_eq!(answer, format!("re: {request}").as_bytes());
    }
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.matches(": passed after").count(), 8, "{stderr}");
}

#[test]
fn a_server_first_protocol_is_served_in_accept_order() {
    let dir = temp_dir("cassette-banner");
    let (listener, upstream) = listener();
    let server = thread::spawn(move || {
        for i in 1..=3 {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(format!("220 greeting {i}\r\n").as_bytes())
                .unwrap();
            assert_eq!(read_to_end(&mut s), b"QUIT\r\n");
        }
    });
    let cassette = format!("{}/", dir.display());
    let proxy = spawn(
        &[
            "proxy",
            "127.0.0.1:0",
            &upstream.to_string(),
            &cassette,
            "--max-sessions",
            "3",
        ],
        true,
    );
    for i in 1..=3 {
        let mut c = connect(proxy.addr());
        assert_eq!(
            read_n(&mut c, 16),
            format!("220 greeting {i}\r\n").as_bytes()
        );
        write_all(&mut c, b"QUIT\r\n");
        half_close(&c);
        assert_eq!(read_to_end(&mut c), b"");
    }
    server.join().unwrap();
    assert_eq!(proxy.finish().0, 0);
    let index = std::fs::read_to_string(dir.join("index")).unwrap();
    assert_eq!(index.matches(" server whole\n").count(), 3, "{index}");

    let mock = spawn(&["server", "--once", "127.0.0.1:0", &cassette], true);
    for i in 1..=3 {
        let mut c = connect(mock.addr());
        assert_eq!(
            read_n(&mut c, 16),
            format!("220 greeting {i}\r\n").as_bytes()
        );
        write_all(&mut c, b"QUIT\r\n");
        half_close(&c);
        assert_eq!(read_to_end(&mut c), b"");
    }
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_connection_that_matches_no_tape_is_reported() {
    let dir = temp_dir("cassette-nomatch");
    let requests = vec!["HELLO alpha".to_string(), "HELLO beta".to_string()];
    record_pool(&dir, &requests);
    let cassette = format!("{}/", dir.display());
    let server = spawn(&["server", "--once", "127.0.0.1:0", &cassette], true);
    let answer = exchange(server.addr(), b"HELLO gamma");
    assert_eq!(answer, b"", "an unmatched connection gets nothing");
    // --once: the run cannot pass any more, so it ends at once.
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("its first 11 bytes match no unused tape of"),
        "{stderr}"
    );
    assert!(
        stderr.contains("agrees on 6 bytes, then expects 0x61 'a' where the client sent 0x67 'g'"),
        "{stderr}"
    );
}

#[test]
fn reuse_serves_the_tapes_again() {
    let dir = temp_dir("cassette-reuse");
    record_pool(&dir, &["PING".to_string()]);
    let cassette = format!("{}/", dir.display());
    let mut server = spawn(&["server", "--reuse", "127.0.0.1:0", &cassette], true);
    for _ in 0..3 {
        assert_eq!(exchange(server.addr(), b"PING"), b"re: PING");
    }
    server.kill();
    let mut server = spawn(&["server", "127.0.0.1:0", &cassette], true);
    assert_eq!(exchange(server.addr(), b"PING"), b"re: PING");
    // No --reuse: the tape was used; the connection is closed unanswered.
    let mut c = connect(server.addr());
    let _ = c.write_all(b"PING");
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c, &mut answer);
    assert_eq!(answer, b"");
    server.wait_for_line("every tape of the cassette that agrees with it was served");
    server.kill();
}

fn auto(args: &[&str], mode: Option<&str>) -> Running {
    let mut command = tcptape();
    command.arg("auto").args(args).env("RUST_LOG", "info");
    match mode {
        Some(mode) => command.env("TCPTAPE_MODE", mode),
        None => command.env_remove("TCPTAPE_MODE"),
    };
    command.stdin(Stdio::null());
    start_command(command)
}

#[test]
fn auto_records_when_missing_and_replays_when_present() {
    let dir = temp_dir("cassette-auto");
    let tape = dir.join("t.tape");
    let tape_arg = tape.to_str().unwrap();

    // Missing: recorded through the proxy.
    let (upstream, server) = answering_upstream(1);
    let recorder = auto(&["127.0.0.1:0", &upstream.to_string(), tape_arg], None);
    assert_eq!(exchange(recorder.addr(), b"first"), b"re: first");
    server.join().unwrap();
    let (code, _, stderr) = recorder.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("auto: recording"), "{stderr}");

    // Present: replayed; the upstream address is not even used.
    let dead = dead_addr().to_string();
    let replayer = auto(&["--once", "127.0.0.1:0", &dead, tape_arg], None);
    assert_eq!(exchange(replayer.addr(), b"first"), b"re: first");
    let (code, _, stderr) = replayer.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("exists, replaying it"), "{stderr}");

    // TCPTAPE_MODE=replay is the same while the tape exists...
    let replayer = auto(&["--once", "127.0.0.1:0", &dead, tape_arg], Some("replay"));
    assert_eq!(exchange(replayer.addr(), b"first"), b"re: first");
    assert_eq!(replayer.finish().0, 0);

    // ...and TCPTAPE_MODE=record refreshes it.
    let (upstream, server) = answering_upstream(1);
    let recorder = auto(
        &["127.0.0.1:0", &upstream.to_string(), tape_arg],
        Some("record"),
    );
    assert_eq!(exchange(recorder.addr(), b"second"), b"re: second");
    server.join().unwrap();
    assert_eq!(recorder.finish().0, 0);
    assert_eq!(tape_stream(&tape, 1), b"second");

    // TCPTAPE_MODE=replay with nothing to replay: an error, nothing recorded.
    let missing = dir.join("missing.tape");
    let mut command = tcptape();
    command
        .args(["auto", "127.0.0.1:0", &dead, missing.to_str().unwrap()])
        .env("TCPTAPE_MODE", "replay");
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TCPTAPE_MODE=replay but"), "{stderr}");
    assert!(!missing.exists());

    // A mode that does not exist is a usage error.
    let out = tcptape()
        .args(["auto", "127.0.0.1:0", &dead, tape_arg])
        .env("TCPTAPE_MODE", "sometimes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'sometimes' is not record, replay or auto")
    );
}

#[test]
fn auto_rerecords_a_whole_cassette() {
    let dir = temp_dir("cassette-auto-dir");
    record_pool(&dir, &["a".to_string(), "b".to_string(), "c".to_string()]);
    assert!(dir.join("0003.tape").exists());
    let (upstream, server) = answering_upstream(1);
    let cassette = format!("{}/", dir.display());
    let recorder = auto(
        &[
            "--max-sessions",
            "1",
            "127.0.0.1:0",
            &upstream.to_string(),
            &cassette,
        ],
        Some("record"),
    );
    assert_eq!(exchange(recorder.addr(), b"only"), b"re: only");
    server.join().unwrap();
    assert_eq!(recorder.finish().0, 0);
    assert!(dir.join("0001.tape").exists());
    assert!(!dir.join("0002.tape").exists(), "old tapes are replaced");
    assert_eq!(tape_stream(&dir.join("0001.tape"), 1), b"only");
}

#[test]
fn recording_into_a_cassette_replaces_it() {
    let dir = temp_dir("cassette-replace");
    record_pool(
        &dir,
        &["one".to_string(), "two".to_string(), "three".to_string()],
    );
    assert!(dir.join("0003.tape").exists());
    record_pool(&dir, &["only".to_string()]);
    assert_eq!(tape_stream(&dir.join("0001.tape"), 1), b"only");
    assert!(
        !dir.join("0002.tape").exists(),
        "tapes of the old recording are gone"
    );
    let index = std::fs::read_to_string(dir.join("index")).unwrap();
    assert_eq!(
        index.lines().filter(|l| !l.starts_with('#')).count(),
        1,
        "{index}"
    );
}
