//! Replay end to end: `server` and `client` against scripted peers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tcptape::tape::{Direction, Writer};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn write_tape(path: &Path, build: impl FnOnce(&mut Writer<std::fs::File>)) {
    let mut writer = Writer::new(std::fs::File::create(path).unwrap()).unwrap();
    build(&mut writer);
}

fn serve(args: &[&str]) -> Running {
    let mut all = vec!["server", "127.0.0.1:0"];
    all.extend_from_slice(args);
    spawn(&all, true)
}

/// The bytes of bulk.tape's upload: 0..=255 repeated 4096 times.
fn bulk_upload() -> Vec<u8> {
    (0..4096).flat_map(|_| 0..=255u8).collect()
}

fn bulk_answer() -> Vec<u8> {
    let mut answer = bulk_upload()[..64 * 1024].to_vec();
    answer.reverse();
    answer
}

// ---- every fixture, both roles ----

/// Plays the client side of a fixture's session against `tcptape server`.
fn fixture_client(name: &str, mut c: TcpStream) {
    match name {
        "echo" => {
            for line in [b"qqq\n", b"www\n"] {
                write_all(&mut c, line);
                assert_eq!(read_n(&mut c, 4), line);
            }
            half_close(&c);
            assert_eq!(read_to_end(&mut c), b"");
        }
        "halfclose-reply" => {
            write_all(&mut c, b"request body");
            half_close(&c);
            assert_eq!(read_to_end(&mut c), b"got 12 bytes\n");
        }
        "banner" => {
            assert_eq!(read_n(&mut c, 24), b"220 mail.example ESMTP\r\n");
            for (command, reply) in [
                (&b"EHLO client\r\n"[..], &b"250 hello\r\n"[..]),
                (b"MAIL FROM:<a@b>\r\n", b"250 ok\r\n"),
                (b"QUIT\r\n", b"221 bye\r\n"),
            ] {
                write_all(&mut c, command);
                assert_eq!(read_n(&mut c, reply.len()), reply);
            }
            assert_eq!(read_to_end(&mut c), b"");
            half_close(&c);
        }
        "bulk" => {
            write_all(&mut c, &bulk_upload());
            assert!(read_to_end(&mut c) == bulk_answer());
            half_close(&c);
        }
        _ => unreachable!(),
    }
}

/// Plays the server side of a fixture's session against `tcptape client`.
fn fixture_server(name: &str, mut s: TcpStream) {
    match name {
        "echo" => {
            for _ in 0..2 {
                let line = read_n(&mut s, 4);
                write_all(&mut s, &line);
            }
            assert_eq!(read_to_end(&mut s), b"");
            half_close(&s);
        }
        "halfclose-reply" => {
            let body = read_to_end(&mut s);
            write_all(&mut s, format!("got {} bytes\n", body.len()).as_bytes());
            half_close(&s);
        }
        "banner" => {
            write_all(&mut s, b"220 mail.example ESMTP\r\n");
            for (command, reply) in [
                (&b"EHLO client\r\n"[..], &b"250 hello\r\n"[..]),
                (b"MAIL FROM:<a@b>\r\n", b"250 ok\r\n"),
                (b"QUIT\r\n", b"221 bye\r\n"),
            ] {
                assert_eq!(read_n(&mut s, command.len()), command);
                write_all(&mut s, reply);
            }
            half_close(&s);
            assert_eq!(read_to_end(&mut s), b"");
        }
        "bulk" => {
            assert!(read_n(&mut s, 1024 * 1024) == bulk_upload());
            write_all(&mut s, &bulk_answer());
            half_close(&s);
            assert_eq!(read_to_end(&mut s), b"");
        }
        _ => unreachable!(),
    }
}

const FIXTURES: [&str; 4] = ["echo", "halfclose-reply", "banner", "bulk"];

#[test]
fn every_fixture_replays_as_server() {
    for name in FIXTURES {
        let tape = fixture(&format!("{name}.tape"));
        let server = serve(&["--once", tape.to_str().unwrap()]);
        fixture_client(name, connect(server.addr()));
        let (code, _, stderr) = server.finish();
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(stderr.contains("passed"), "{name}: {stderr}");
    }
}

#[test]
fn every_fixture_replays_as_client() {
    for name in FIXTURES {
        let tape = fixture(&format!("{name}.tape"));
        let (addr, server) = serve_once(move |s| fixture_server(name, s));
        let (code, _, stderr) = run(&["client", &addr.to_string(), tape.to_str().unwrap()]);
        server.join().unwrap();
        assert_eq!(code, 0, "{name}: {stderr}");
    }
}

#[test]
fn server_serves_many_clients_one_after_another() {
    let tape = fixture("echo.tape");
    let mut server = serve(&[tape.to_str().unwrap()]);
    for _ in 0..3 {
        fixture_client("echo", connect(server.addr()));
    }
    server.wait_for_line("session 3 with");
    server.kill();
}

// ---- mismatches ----

#[test]
fn server_mismatch_exits_3_with_a_report() {
    let tape = fixture("banner.tape");
    let server = serve(&["--once", "--text-diff", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    read_n(&mut c, 24);
    write_all(&mut c, b"EHLO clienX\r\n");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("mismatch with client 127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("byte 10 of its stream differs from the tape (frame 2, tape offset 54)"),
        "{stderr}"
    );
    assert!(stderr.contains("|EHLO client..|"), "{stderr}");
    assert!(stderr.contains("|EHLO clienX..|"), "{stderr}");
    assert!(
        stderr.contains("expected 0x74 't', received 0x58 'X'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("    - EHLO client\\r\\n\n    + EHLO clienX\\r\\n"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("error: mismatch with client")
    );
}

#[test]
fn client_mismatch_exits_3() {
    let tape = fixture("echo.tape");
    let (addr, server) = serve_once(|mut s| {
        read_n(&mut s, 4);
        write_all(&mut s, b"nope");
        let _ = s.read_to_end(&mut Vec::new());
    });
    let (code, _, stderr) = run(&["client", &addr.to_string(), tape.to_str().unwrap()]);
    server.join().unwrap();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("mismatch with server"), "{stderr}");
    assert!(stderr.contains("|nope|"), "{stderr}");
}

#[test]
fn peer_closing_early_is_a_mismatch() {
    let tape = fixture("echo.tape");
    let server = serve(&["--once", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    write_all(&mut c, b"qq");
    half_close(&c);
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("it closed its side at byte 2, the tape expects 2 more bytes"),
        "{stderr}"
    );
}

#[test]
fn data_where_eof_was_recorded_is_a_mismatch() {
    let tape = fixture("halfclose-reply.tape");
    let server = serve(&["--once", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    write_all(&mut c, b"request body and more");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("it sent data at byte 12 where the tape has its EOF"),
        "{stderr}"
    );
}

#[test]
fn more_than_recorded_is_a_mismatch() {
    let dir = temp_dir("replay-more");
    let tape = dir.join("t.tape");
    write_tape(&tape, |w| {
        w.data(C2S, b"ping").unwrap();
        w.data(S2C, b"pong").unwrap();
    });
    let server = serve(&["--once", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    write_all(&mut c, b"pingping");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("it sent more than the tape holds, from byte 4"),
        "{stderr}"
    );
}

#[test]
fn no_assert_accepts_wrong_bytes_of_the_right_length() {
    let tape = fixture("echo.tape");
    let server = serve(&["--once", "-n", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    write_all(&mut c, b"XXXX");
    assert_eq!(read_n(&mut c, 4), b"qqq\n");
    write_all(&mut c, b"YYYY");
    assert_eq!(read_n(&mut c, 4), b"www\n");
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn abort_stops_the_server_at_the_first_mismatch() {
    let tape = fixture("echo.tape");
    let server = serve(&["-a", tape.to_str().unwrap()]);
    fixture_client("echo", connect(server.addr()));
    let mut bad = connect(server.addr());
    write_all(&mut bad, b"bad!");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
}

// ---- causality and half-close ----

#[test]
fn peer_that_writes_everything_before_reading_does_not_deadlock() {
    const SIZE: usize = 16 * 1024 * 1024;
    let dir = temp_dir("replay-duplex");
    let tape = dir.join("duplex.tape");
    let up = random_bytes(SIZE, 3);
    let down = random_bytes(SIZE, 4);
    // Recorded as a full-duplex session: the server's answer starts while
    // the upload is still going.
    write_tape(&tape, |w| {
        for (u, d) in up.chunks(1 << 20).zip(down.chunks(1 << 20)) {
            w.data(C2S, u).unwrap();
            w.data(S2C, d).unwrap();
        }
        w.eof(C2S).unwrap();
        w.eof(S2C).unwrap();
    });
    let server = serve(&["--once", tape.to_str().unwrap()]);
    let c = connect(server.addr());
    let mut writer = c.try_clone().unwrap();
    let up_copy = up.clone();
    // Writes all 16 MiB before it reads anything.
    let sender = thread::spawn(move || {
        writer.write_all(&up_copy).unwrap();
        half_close(&writer);
    });
    sender.join().unwrap();
    let mut reader = c;
    assert!(read_to_end(&mut reader) == down);
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
}

// ---- delays ----

fn delayed_tape(dir: &Path, delay_ms: u64) -> PathBuf {
    let tape = dir.join("delayed.tape");
    write_tape(&tape, |w| {
        w.data(C2S, b"ask").unwrap();
        w.delay(delay_ms).unwrap();
        w.data(S2C, b"answer").unwrap();
    });
    tape
}

fn timed_exchange(args: &[&str]) -> Duration {
    let server = serve(args);
    let mut c = connect(server.addr());
    let start = Instant::now();
    write_all(&mut c, b"ask");
    assert_eq!(read_n(&mut c, 6), b"answer");
    let elapsed = start.elapsed();
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
    elapsed
}

#[test]
fn delays_are_replayed_with_d_and_scaled_with_speed() {
    let dir = temp_dir("replay-delay");
    let tape = delayed_tape(&dir, 400);
    let tape = tape.to_str().unwrap();
    let plain = timed_exchange(&["--once", tape]);
    assert!(plain < Duration::from_millis(300), "no -d: {plain:?}");
    let delayed = timed_exchange(&["--once", "-d", tape]);
    assert!(delayed >= Duration::from_millis(400), "-d: {delayed:?}");
    assert!(delayed < Duration::from_millis(1400), "-d: {delayed:?}");
    let fast = timed_exchange(&["--once", "--speed", "4", tape]);
    assert!(fast >= Duration::from_millis(100), "--speed 4: {fast:?}");
    assert!(fast < Duration::from_millis(350), "--speed 4: {fast:?}");
}

#[test]
fn three_hundred_delayed_sessions_run_concurrently() {
    const SESSIONS: usize = 300;
    let dir = temp_dir("replay-concurrent");
    let tape = delayed_tape(&dir, 500);
    let server = serve(&["-d", tape.to_str().unwrap()]);
    let addr = server.addr();
    let clients: Vec<TcpStream> = (0..SESSIONS).map(|_| connect(addr)).collect();
    let start = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            thread::spawn(move || {
                write_all(&mut c, b"ask");
                assert_eq!(read_n(&mut c, 6), b"answer");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed();
    // One after another this would take 150 s; concurrently about 0.5 s.
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    drop(server);
}

// ---- timeouts and errors ----

#[test]
fn timeout_names_what_the_session_waited_for() {
    let tape = fixture("echo.tape");
    let server = serve(&["--once", "--timeout", "0.3", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    write_all(&mut c, b"qqq\n");
    assert_eq!(read_n(&mut c, 4), b"qqq\n");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("timed out after 0.3s waiting for 4 more bytes from the client (frame 4, tape offset 32, byte 4 of its stream)"),
        "{stderr}"
    );
}

#[test]
fn client_connect_refused_exits_1() {
    let addr = dead_addr();
    let tape = fixture("echo.tape");
    let (code, _, stderr) = run(&["client", &addr.to_string(), tape.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!("error: session 1: cannot connect to {addr}: Connection refused")
    );
}

#[test]
fn truncated_tape_is_refused_before_serving() {
    let dir = temp_dir("replay-truncated");
    let tape = dir.join("cut.tape");
    let bytes = std::fs::read(fixture("banner.tape")).unwrap();
    std::fs::write(&tape, &bytes[..bytes.len() - 10]).unwrap();
    let (code, _, stderr) = run(&["server", "127.0.0.1:0", tape.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}: tape truncated at offset 127 in frame 10: 9 payload bytes announced, 7 present (the recording was interrupted? `tcptape repair {}` keeps its complete frames)",
            tape.display(),
            tape.display()
        )
    );
    let (code, _, stderr) = run(&["client", "127.0.0.1:1", tape.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("tape truncated at offset 127"), "{stderr}");
}

#[test]
fn missing_tape_is_an_error_naming_it() {
    let (code, _, stderr) = run(&["server", "127.0.0.1:0", "/nonexistent/x.tape"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        "error: cannot open tape /nonexistent/x.tape: No such file or directory"
    );
}

// ---- gathering small frames must respect the tape's order and delays ----

#[test]
fn own_frames_after_a_peer_frame_wait_for_it() {
    let dir = temp_dir("replay-gather-order");
    let tape = dir.join("t.tape");
    write_tape(&tape, |w| {
        w.data(S2C, b"a").unwrap();
        w.data(S2C, b"b").unwrap();
        w.data(C2S, b"x").unwrap();
        w.data(S2C, b"c").unwrap();
    });
    let server = serve(&["--once", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    assert_eq!(read_n(&mut c, 2), b"ab");
    // "c" was recorded after the client's "x": it must not come first.
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut early = [0u8; 1];
    assert!(
        c.read(&mut early).is_err(),
        "got {early:?} before sending x"
    );
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    write_all(&mut c, b"x");
    assert_eq!(read_to_end(&mut c), b"c");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_delay_between_own_frames_is_kept_with_d() {
    let dir = temp_dir("replay-gather-delay");
    let tape = dir.join("t.tape");
    write_tape(&tape, |w| {
        w.data(S2C, b"first").unwrap();
        w.delay(300).unwrap();
        w.data(S2C, b"second").unwrap();
    });
    let server = serve(&["--once", "-d", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    assert_eq!(read_n(&mut c, 5), b"first");
    let start = Instant::now();
    assert_eq!(read_n(&mut c, 6), b"second");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn many_small_frames_arrive_whole_and_in_order() {
    let dir = temp_dir("replay-gather-many");
    let tape = dir.join("t.tape");
    let data = random_bytes(3 * 1024 * 1024, 7);
    write_tape(&tape, |w| {
        for chunk in data.chunks(1000) {
            w.data(S2C, chunk).unwrap();
        }
        w.eof(S2C).unwrap();
    });
    let server = serve(&["--once", tape.to_str().unwrap()]);
    let mut c = connect(server.addr());
    assert!(read_to_end(&mut c) == data);
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
}
