//! Spans end to end: one tape serves as the mock server and as the mock
//! client of a protocol whose values change every run (a Host header, a
//! date, a request id the server echoes, a session token the client sends
//! back), against scripted peers that draw new values each time.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use common::*;
use tcptape::tape::{Direction, Span, SpanKind, Writer};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn span(w: &mut Writer<std::fs::File>, dir: Direction, span: Span, recorded: &[u8]) {
    w.span(dir, &span).unwrap();
    w.data(dir, recorded).unwrap();
}

fn variable(kind: SpanKind, recorded: &[u8]) -> Span {
    Span {
        kind,
        len: recorded.len() as u32,
        min: 1,
        max: 64,
    }
}

/// The recording, with its varying values marked.
fn write_tape(path: &Path) {
    let mut w = Writer::new(std::fs::File::create(path).unwrap()).unwrap();
    w.data(C2S, b"GET / HTTP/1.1\r\nHost: ").unwrap();
    span(
        &mut w,
        C2S,
        variable(SpanKind::Vary, b"127.0.0.1:5000"),
        b"127.0.0.1:5000",
    );
    w.data(C2S, b"\r\nX-Request-Id: ").unwrap();
    let rid = b"r-123";
    span(
        &mut w,
        C2S,
        variable(SpanKind::Capture("rid".into()), rid),
        rid,
    );
    w.data(C2S, b"\r\n\r\n").unwrap();
    w.data(S2C, b"HTTP/1.1 200 OK\r\nDate: ").unwrap();
    let date = b"Wed, 25 Nov 2026 09:31:29 GMT";
    span(
        &mut w,
        S2C,
        Span::fixed(SpanKind::Vary, date.len() as u32),
        date,
    );
    w.data(S2C, b"\r\nX-Request-Id: ").unwrap();
    span(
        &mut w,
        S2C,
        Span::fixed(SpanKind::Echo("rid".into()), 5),
        rid,
    );
    w.data(S2C, b"\r\nSet-Cookie: s=").unwrap();
    span(
        &mut w,
        S2C,
        variable(SpanKind::Capture("session".into()), b"abc"),
        b"abc",
    );
    w.data(S2C, b"\r\n\r\n").unwrap();
    w.data(C2S, b"GET /next HTTP/1.1\r\nCookie: s=").unwrap();
    span(
        &mut w,
        C2S,
        Span::fixed(SpanKind::Echo("session".into()), 3),
        b"abc",
    );
    w.data(C2S, b"\r\n\r\n").unwrap();
    w.data(S2C, b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    w.eof(C2S).unwrap();
    w.eof(S2C).unwrap();
}

/// A value of `len` letters and digits drawn from `seed`.
fn token(len: usize, seed: u64) -> String {
    random_bytes(len, seed)
        .iter()
        .map(|b| (b'a' + b % 26) as char)
        .collect()
}

/// Reads an HTTP head: lines up to the empty one.
fn read_head(reader: &mut impl BufRead) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            return lines;
        }
        lines.push(line.trim_end().to_string());
    }
}

fn header<'a>(head: &'a [String], name: &str) -> &'a str {
    head.iter()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {head:?}"))
}

/// The real client: its own Host and request id each run; it checks the
/// id comes back and returns the session cookie.
fn real_client(server: SocketAddr, run: u64) {
    let stream = TcpStream::connect(server).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let rid = format!("req-{}", token(3 + run as usize * 7, run));
    write!(
        writer,
        "GET / HTTP/1.1\r\nHost: localhost:{}\r\nX-Request-Id: {rid}\r\n\r\n",
        40000 + run
    )
    .unwrap();
    let head = read_head(&mut reader);
    assert_eq!(header(&head, "X-Request-Id"), rid, "the id comes back");
    let session = header(&head, "Set-Cookie")
        .strip_prefix("s=")
        .unwrap()
        .to_string();
    write!(writer, "GET /next HTTP/1.1\r\nCookie: s={session}\r\n\r\n").unwrap();
    assert_eq!(read_head(&mut reader), ["HTTP/1.1 204 No Content"]);
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(reader.read_to_end(&mut Vec::new()).unwrap(), 0);
}

/// The real server: its own date and session token each run; it checks
/// the client echoes the id and sends the token back.
fn real_server(listener: std::net::TcpListener, run: u64) {
    let (stream, _) = listener.accept().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader);
    let rid = header(&head, "X-Request-Id").to_string();
    let session = token(5 + run as usize * 9, run + 100);
    write!(
        writer,
        "HTTP/1.1 200 OK\r\nDate: Thu, 2{run} Nov 2026 11:22:3{run} GMT\r\nX-Request-Id: {rid}\r\nSet-Cookie: s={session}\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut reader);
    assert_eq!(
        header(&head, "Cookie"),
        format!("s={session}"),
        "the token comes back"
    );
    writer
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .unwrap();
    assert_eq!(reader.read_to_end(&mut Vec::new()).unwrap(), 0);
    writer.shutdown(std::net::Shutdown::Write).unwrap();
}

#[test]
fn one_tape_mocks_the_server_for_a_client_that_draws_new_values() {
    let dir = temp_dir("spans-server");
    let tape = dir.join("http.tape");
    write_tape(&tape);
    for run in 1..=4 {
        let mock = spawn(
            &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
            true,
        );
        real_client(mock.addr(), run);
        let (code, _, stderr) = mock.finish();
        assert_eq!(code, 0, "run {run}: {stderr}");
    }
}

#[test]
fn the_same_tape_mocks_the_client_for_a_server_that_draws_new_values() {
    let dir = temp_dir("spans-client");
    let tape = dir.join("http.tape");
    write_tape(&tape);
    for run in 1..=4 {
        let (listener, addr) = listener();
        let server = std::thread::spawn(move || real_server(listener, run));
        let (code, _, stderr) = run_client(addr, &tape);
        server.join().unwrap();
        assert_eq!(code, 0, "run {run}: {stderr}");
    }
}

fn run_client(addr: SocketAddr, tape: &Path) -> (i32, String, String) {
    run(&[
        "client",
        "--timeout",
        "10",
        &addr.to_string(),
        tape.to_str().unwrap(),
    ])
}

#[test]
fn a_client_that_does_not_echo_the_token_is_told_what_was_captured() {
    let dir = temp_dir("spans-echo-mismatch");
    let tape = dir.join("http.tape");
    write_tape(&tape);
    let mock = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    let mut c = connect(mock.addr());
    write_all(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: r-9\r\n\r\n",
    );
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_n(&mut c, 1));
    }
    write_all(&mut c, b"GET /next HTTP/1.1\r\nCookie: s=abX\r\n\r\n");
    let _ = c.read_to_end(&mut Vec::new());
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("differs from the value captured as 'session' that it echoes there"),
        "{stderr}"
    );
    assert!(
        stderr.contains("expected (captured as 'session')"),
        "{stderr}"
    );
}

#[test]
fn a_value_longer_than_its_span_allows_is_a_mismatch() {
    let dir = temp_dir("spans-too-long");
    let tape = dir.join("http.tape");
    write_tape(&tape);
    let mock = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    let mut c = connect(mock.addr());
    let long_host = "h".repeat(100);
    let _ = c.write_all(format!("GET / HTTP/1.1\r\nHost: {long_host}\r\n").as_bytes());
    let _ = c.read_to_end(&mut Vec::new());
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("went on past its longest, 64 bytes"),
        "{stderr}"
    );
}

#[test]
fn a_tape_whose_spans_break_the_rules_is_refused_before_anyone_connects() {
    let dir = temp_dir("spans-rules");
    let tape = dir.join("bad.tape");
    let mut w = Writer::new(std::fs::File::create(&tape).unwrap()).unwrap();
    w.data(C2S, b"hello ").unwrap();
    // The server echoes a value nobody captured.
    span(
        &mut w,
        S2C,
        Span::fixed(SpanKind::Echo("sid".into()), 3),
        b"abc",
    );
    drop(w);
    for role in ["server", "client"] {
        let (code, stdout, stderr) = run(&[role, "127.0.0.1:9", tape.to_str().unwrap()]);
        assert_eq!(code, 1, "{role}: {stderr}");
        assert!(!stdout.contains("listening"), "{role}: {stdout}");
        assert!(
            stderr.contains("bad.tape: frame 2")
                && stderr.contains("echo of 'sid', which no span before it captures"),
            "{role}: {stderr}"
        );
    }
    // A span whose bytes the recording never finished.
    let mut w = Writer::new(std::fs::File::create(&tape).unwrap()).unwrap();
    w.span(C2S, &Span::fixed(SpanKind::Vary, 8)).unwrap();
    w.data(C2S, b"abc").unwrap();
    drop(w);
    let (code, _, stderr) = run(&["server", "127.0.0.1:0", tape.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("bad.tape: frame 1"), "{stderr}");
}
