//! UNIX domain sockets as LISTEN and CONNECT addresses.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;

use common::*;

fn unix(path: &Path) -> String {
    format!("unix:{}", path.display())
}

fn connect_unix(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

#[test]
fn proxy_records_between_unix_sockets_and_the_tape_replays_over_one() {
    let dir = temp_dir("unix-proxy");
    let upstream_path = dir.join("upstream.sock");
    let proxy_path = dir.join("proxy.sock");
    let tape = dir.join("t.tape");
    let upstream = UnixListener::bind(&upstream_path).unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut request = Vec::new();
        s.read_to_end(&mut request).unwrap();
        s.write_all(b"pong: ").unwrap();
        s.write_all(&request).unwrap();
    });
    let proxy = spawn(
        &[
            "proxy",
            &unix(&proxy_path),
            &unix(&upstream_path),
            tape.to_str().unwrap(),
        ],
        true,
    );
    let mut client = connect_unix(&proxy_path);
    client.write_all(b"ping").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"pong: ping");
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("listening on {}", unix(&proxy_path))),
        "{stderr}"
    );
    assert!(!proxy_path.exists(), "the socket file is removed on exit");
    assert_eq!(tape_stream(&tape, 1), b"ping");
    assert_eq!(tape_stream(&tape, 2), b"pong: ping");

    // The same tape, served on a UNIX socket.
    let mock_path = dir.join("mock.sock");
    let mock = spawn(
        &[
            "server",
            "--once",
            &unix(&mock_path),
            tape.to_str().unwrap(),
        ],
        true,
    );
    let mut client = connect_unix(&mock_path);
    client.write_all(b"ping").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"pong: ping");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(!mock_path.exists());

    // And the client side, against a UNIX socket server.
    let real_path = dir.join("real.sock");
    let real = UnixListener::bind(&real_path).unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = real.accept().unwrap();
        let mut request = Vec::new();
        s.read_to_end(&mut request).unwrap();
        s.write_all(b"pong: ping").unwrap();
    });
    let (code, _, stderr) = run(&["client", &unix(&real_path), tape.to_str().unwrap()]);
    server.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = temp_dir("unix-stale");
    let path = dir.join("stale.sock");
    // Bound and dropped: the file stays, nobody listens.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let tape = fixture("echo.tape");
    let mut server = spawn(&["server", &unix(&path), tape.to_str().unwrap()], true);
    server.wait_for_line("replacing the stale socket file");
    let mut client = connect_unix(&path);
    client.write_all(b"qqq\n").unwrap();
    let mut answer = [0; 4];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"qqq\n");
}

#[test]
fn a_live_socket_or_another_file_is_not_replaced() {
    let dir = temp_dir("unix-live");
    let path = dir.join("live.sock");
    let _live = UnixListener::bind(&path).unwrap();
    let tape = fixture("echo.tape");
    let (code, _, stderr) = run(&["server", &unix(&path), tape.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "error: cannot listen on {}: another process is listening on it",
            unix(&path)
        )
    );
    assert!(path.exists(), "a live socket file is left alone");

    let file = dir.join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let (code, _, stderr) = run(&["proxy", &unix(&file), "127.0.0.1:1", "t.tape"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "error: cannot listen on {}: the file exists and is not a socket",
            unix(&file)
        )
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn connecting_to_a_missing_unix_socket_names_it() {
    let dir = temp_dir("unix-missing");
    let path = dir.join("nobody.sock");
    let tape = fixture("echo.tape");
    let (code, _, stderr) = run(&["client", &unix(&path), tape.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "error: cannot connect to {}: No such file or directory",
            unix(&path)
        )
    );
}
