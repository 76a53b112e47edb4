//! The contract with test harnesses, through the real binary: the ready
//! line, clean stops on signals with a verdict, probes, nothing waiting
//! forever, recording failures at start, the JSON report, record modes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Plays echo.tape's client side.
fn echo_client(addr: std::net::SocketAddr) {
    let mut c = connect(addr);
    for line in [b"qqq\n", b"www\n"] {
        write_all(&mut c, line);
        assert_eq!(read_n(&mut c, 4), line);
    }
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"");
}

/// The summary line every network command ends with.
fn summary(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("tcptape: server:") || l.starts_with("tcptape: proxy:"))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"))
}

#[test]
fn the_ready_line_is_on_stdout_whatever_the_log_level() {
    let dir = temp_dir("harness-ready");
    let address_file = dir.join("addr");
    let tape = fixture("echo.tape");
    let server = spawn_logged(
        &[
            "server",
            "127.0.0.1:0",
            tape.to_str().unwrap(),
            "--address-file",
            address_file.to_str().unwrap(),
        ],
        true,
        "off",
    );
    assert!(
        server.address.starts_with("127.0.0.1:"),
        "{}",
        server.address
    );
    assert_eq!(
        std::fs::read_to_string(&address_file).unwrap(),
        format!("{}\n", server.address)
    );
    echo_client(server.addr());
    server.signal("TERM");
    let (code, stdout, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "", "nothing but the ready line goes to stdout");
    assert_eq!(
        summary(&stderr),
        "tcptape: server: 1 session: 1 passed; verdict: passed"
    );
}

#[test]
fn a_unix_socket_mock_announces_its_path_and_removes_it_when_stopped() {
    let dir = temp_dir("harness-unix");
    let path = dir.join("mock.sock");
    let listen = format!("unix:{}", path.display());
    let tape = fixture("halfclose-reply.tape");
    let server = spawn(&["server", &listen, tape.to_str().unwrap()], true);
    assert_eq!(server.address, listen);
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"request body").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"got 12 bytes\n");
    server.signal("INT");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(!path.exists(), "the socket file is removed on a clean stop");
}

#[test]
fn a_stop_cuts_a_session_short_after_the_grace_period() {
    let tape = fixture("echo.tape");
    let mut server = spawn(
        &[
            "server",
            "--grace",
            "0.3",
            "127.0.0.1:0",
            tape.to_str().unwrap(),
        ],
        true,
    );
    let mut c = connect(server.addr());
    write_all(&mut c, b"qqq\n");
    assert_eq!(read_n(&mut c, 4), b"qqq\n");
    let started = Instant::now();
    server.signal("TERM");
    server.wait_for_line("stopping: 1 sessions may finish");
    let (code, _, stderr) = server.finish();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "grace honoured"
    );
    assert_eq!(code, 3, "a session cut short did not pass: {stderr}");
    assert_eq!(
        summary(&stderr),
        "tcptape: server: 1 session: 1 cut short; verdict: mismatch"
    );
    assert!(
        stderr.contains(
            "stopped before the tape's end, while waiting for 4 more bytes from the client"
        ),
        "{stderr}"
    );
}

#[test]
fn a_second_signal_stops_at_once() {
    let tape = fixture("echo.tape");
    let mut server = spawn(
        &[
            "server",
            "--grace",
            "60",
            "127.0.0.1:0",
            tape.to_str().unwrap(),
        ],
        true,
    );
    let _idle = connect(server.addr());
    server.wait_for_line("session 1: accepted");
    server.signal("TERM");
    server.wait_for_line("stopping: 1 sessions may finish within 60.0s");
    let started = Instant::now();
    server.signal("TERM");
    let (code, _, stderr) = server.finish();
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    assert_eq!(code, 3, "{stderr}");
}

#[test]
fn a_graceful_stop_lets_a_session_in_progress_finish() {
    let tape = fixture("echo.tape");
    let mut server = spawn(
        &[
            "server",
            "--grace",
            "20",
            "127.0.0.1:0",
            tape.to_str().unwrap(),
        ],
        true,
    );
    let addr = server.addr();
    let mut c = connect(addr);
    write_all(&mut c, b"qqq\n");
    assert_eq!(read_n(&mut c, 4), b"qqq\n");
    server.signal("TERM");
    server.wait_for_line("stopping:");
    // No longer accepting, but the session goes on to pass.
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    write_all(&mut c, b"www\n");
    assert_eq!(read_n(&mut c, 4), b"www\n");
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_recording_stopped_by_a_signal_ends_every_tape_with_complete_frames() {
    let dir = temp_dir("harness-record-stop");
    let (listener, upstream) = listener();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Streams until the test is over: the session never ends by itself.
        let chunk = vec![7u8; 64 * 1024];
        while stop_rx.try_recv().is_err() {
            if s.write_all(&chunk).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
    let cassette = format!("{}/", dir.display());
    let mut proxy = spawn(
        &[
            "proxy",
            "--grace",
            "0.2",
            "127.0.0.1:0",
            &upstream.to_string(),
            &cassette,
        ],
        true,
    );
    let mut client = connect(proxy.addr());
    write_all(&mut client, b"GET stream\n");
    read_n(&mut client, 1024 * 1024);
    let reader = thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
    });
    proxy.signal("TERM");
    proxy.wait_for_line("stopping:");
    let (code, _, stderr) = proxy.finish();
    let _ = stop_tx.send(());
    reader.join().unwrap();
    server.join().unwrap();
    assert_eq!(code, 1, "a recording cut short is not whole: {stderr}");
    assert_eq!(
        summary(&stderr),
        "tcptape: proxy: 1 session: 1 cut short; verdict: error"
    );
    // The tape reads cleanly and says where it was cut.
    let tape = dir.join("0001.tape");
    let (code, listing, err) = run(&["describe", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let last = listing.lines().last().unwrap();
    assert!(
        last.ends_with(
            "CUT (the recording ended here: the recording was stopped before the session ended)"
        ),
        "{last}"
    );
    let index = std::fs::read_to_string(dir.join("index")).unwrap();
    assert!(index.ends_with(" cut\n"), "{index}");
    let (code, listing, _) = run(&["describe", &cassette]);
    assert_eq!(code, 0);
    assert!(listing.contains(", cut short while recording"), "{listing}");
}

#[test]
fn a_probe_does_not_use_up_once() {
    let tape = fixture("echo.tape");
    let server = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    // A readiness probe: connect, close without a word.
    drop(connect(server.addr()));
    thread::sleep(Duration::from_millis(50));
    echo_client(server.addr());
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        summary(&stderr),
        "tcptape: server: 1 session: 1 passed; 1 probe; verdict: passed"
    );
}

#[test]
fn a_probe_of_a_server_first_mock_does_not_use_it_up() {
    let tape = fixture("banner.tape");
    let server = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    // The probe leaves at once, the greeting unread: a reset, no bytes.
    drop(connect(server.addr()));
    thread::sleep(Duration::from_millis(50));
    let mut c = connect(server.addr());
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
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(summary(&stderr).contains("1 probe"), "{stderr}");
}

#[test]
fn once_timeout_covers_the_wait_for_a_connection() {
    let tape = fixture("echo.tape");
    let started = Instant::now();
    let (code, _, stderr) = run(&[
        "server",
        "--once",
        "--timeout",
        "0.5",
        "127.0.0.1:0",
        tape.to_str().unwrap(),
    ]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("timed out after 0.5s waiting for a client to play"),
        "{stderr}"
    );
}

#[test]
fn a_client_tape_against_a_silent_server_times_out() {
    let (upstream, server) = serve_once(|mut s| {
        // Reads, never answers, until the client gives up.
        let _ = read_to_end(&mut s);
    });
    let tape = fixture("echo.tape");
    let (code, _, stderr) = run(&[
        "client",
        "--timeout",
        "0.5",
        &upstream.to_string(),
        tape.to_str().unwrap(),
    ]);
    server.join().unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("timed out after 0.5s waiting for 4 more bytes from the server"),
        "{stderr}"
    );
}

#[test]
fn once_abort_with_a_cassette_ends_at_the_first_connection_that_matches_no_tape() {
    let dir = temp_dir("harness-abort");
    std::fs::copy(fixture("echo.tape"), dir.join("0001.tape")).unwrap();
    std::fs::copy(fixture("halfclose-reply.tape"), dir.join("0002.tape")).unwrap();
    let cassette = format!("{}/", dir.display());
    let server = spawn(
        &["server", "--once", "--abort", "127.0.0.1:0", &cassette],
        true,
    );
    let mut c = connect(server.addr());
    write_all(&mut c, b"NOTHING LIKE IT");
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("match no unused tape"), "{stderr}");
}

#[test]
fn recording_failures_come_before_anyone_connects() {
    let dir = temp_dir("harness-record-fail");
    let upstream = dead_addr().to_string();
    let (code, stdout, stderr) =
        run(&["proxy", "127.0.0.1:0", &upstream, "/nonexistent/dir/x.tape"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "", "no ready line: it never listened for clients");
    assert!(
        stderr.ends_with(
            "error: cannot write tapes into /nonexistent/dir: No such file or directory\n"
        ),
        "{stderr}"
    );
    let numbered = dir.join("nosuchdir/s{n}.tape");
    let (code, _, stderr) = run(&[
        "proxy",
        "--max-sessions",
        "1",
        "127.0.0.1:0",
        &upstream,
        numbered.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot write tapes into"), "{stderr}");
}

#[test]
fn a_cassette_whose_server_was_down_records_nothing_and_leaves_no_folder() {
    let dir = temp_dir("harness-server-down");
    let cassette = dir.join("new-cassette");
    let cassette_arg = format!("{}/", cassette.display());
    let upstream = dead_addr().to_string();
    let mut proxy = spawn(&["proxy", "127.0.0.1:0", &upstream, &cassette_arg], true);
    let mut c = connect(proxy.addr());
    write_all(&mut c, b"hello?");
    let _ = c.read_to_end(&mut Vec::new());
    proxy.wait_for_line("cannot connect to");
    proxy.signal("TERM");
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was recorded"), "{stderr}");
    assert!(
        !cassette.exists(),
        "no empty cassette for a replay to pass on"
    );
}

#[test]
fn the_json_report_is_written_however_the_command_ends() {
    let dir = temp_dir("harness-report");
    let report = dir.join("report.json");
    let tape = fixture("echo.tape");
    let server = spawn(
        &[
            "server",
            "--once",
            "--report",
            report.to_str().unwrap(),
            "127.0.0.1:0",
            tape.to_str().unwrap(),
        ],
        true,
    );
    let mut c = connect(server.addr());
    write_all(&mut c, b"qqX\n");
    let _ = c.read_to_end(&mut Vec::new());
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    let json = std::fs::read_to_string(&report).unwrap();
    assert!(
        json.starts_with("{\n  \"verdict\": \"mismatch\",\n"),
        "{json}"
    );
    assert!(
        json.contains("\"verdict\": \"mismatch\", \"message\": \"mismatch with client 127.0.0.1:"),
        "{json}"
    );
    assert!(json.contains("\"client_bytes\": 4"), "{json}");
    assert!(
        json.contains("first difference at byte 2: expected 0x71 'q', received 0x58 'X'"),
        "{json}"
    );

    // A command that could not even start writes one too.
    let (code, _, _) = run(&[
        "server",
        "--report",
        report.to_str().unwrap(),
        "127.0.0.1:0",
        "/nonexistent/t.tape",
    ]);
    assert_eq!(code, 1);
    let json = std::fs::read_to_string(&report).unwrap();
    assert!(json.starts_with("{\n  \"verdict\": \"error\",\n"), "{json}");
    assert!(
        json.contains(
            "\"errors\": [\"cannot open tape /nonexistent/t.tape: No such file or directory\"]"
        ),
        "{json}"
    );
}

#[test]
fn auto_once_records_a_cassette_until_no_session_is_open() {
    let dir = temp_dir("harness-auto-once");
    let cassette = format!("{}/", dir.join("c").display());
    let (upstream, server) = serve_once(|mut s| {
        let got = read_to_end(&mut s);
        s.write_all(&got).unwrap();
    });
    let proxy = spawn_env(
        &[
            "auto",
            "--once",
            "127.0.0.1:0",
            &upstream.to_string(),
            &cassette,
        ],
        &[],
        true,
    );
    let mut c = connect(proxy.addr());
    write_all(&mut c, b"hi");
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"hi");
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(dir.join("c/0001.tape").exists());

    // The same command replays now, and a FILE or cassette ends by itself.
    let mock = spawn_env(
        &[
            "auto",
            "--once",
            "127.0.0.1:0",
            &upstream.to_string(),
            &cassette,
        ],
        &[],
        true,
    );
    let mut c = connect(mock.addr());
    write_all(&mut c, b"hi");
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"hi");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn auto_replays_a_file_for_one_session_as_it_records_one() {
    let tape = fixture("echo.tape");
    let upstream = dead_addr().to_string();
    let mock = spawn_env(
        &["auto", "127.0.0.1:0", &upstream, tape.to_str().unwrap()],
        &[],
        true,
    );
    echo_client(mock.addr());
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn in_ci_auto_never_records() {
    let dir = temp_dir("harness-ci");
    let tape = dir.join("missing.tape");
    let mut command = tcptape();
    command
        .args(["auto", "127.0.0.1:0", "127.0.0.1:9", tape.to_str().unwrap()])
        .env("CI", "true")
        .env_remove("TCPTAPE_MODE");
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: CI=true (set TCPTAPE_MODE=record to record in CI) but"),
        "{stderr}"
    );
    assert!(!tape.exists());
}

#[test]
fn the_python_harness_example_drives_the_binary() {
    let python = ["python3", "python"].into_iter().find(|p| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok()
    });
    let Some(python) = python else {
        eprintln!("skipped: no python3 on this machine");
        return;
    };
    let script = fixture("harness.py");
    let mut command = std::process::Command::new(python);
    isolate(&mut command);
    let out = command
        .arg(&script)
        .arg(bin())
        .arg(fixture("banner.tape"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("verdict: passed"), "{stdout}\n{stderr}");
}
