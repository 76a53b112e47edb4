//! Length fields end to end: a binary protocol whose messages carry their
//! length (PostgreSQL's style, a big-endian u32 that counts itself; MySQL's,
//! a little-endian u24 before a sequence byte; HTTP's decimal
//! `Content-Length`), with values one side chooses that the other echoes.
//! When a live value is longer or shorter than the recorded one, the
//! lengths that count it must change with it: one text tape, replayed as
//! the mock server and as the mock client against scripted peers that draw
//! values of new lengths every run.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use common::*;

/// The recording: the client says hello with its id, the server welcomes
/// it by that id and hands out a session token, the client sends the token
/// back, and the server answers with a body that quotes the id again.
const TAPE: &str = r#"tcptape text 1
# 'H', a u32be length counting itself and what follows (4 + 12).
> "H" [length u32be 12 "\x00\x00\x00\x10"] "name=" [capture id 1..64 "c-1234"] "\x00"
# A u24le length of the payload after the sequence byte (29 - 1).
< [length u24le 29 "\x1c\x00\x00"] "\x01" "welcome " [echo id "c-1234"]
  " session=" [capture session 1..64 "s-99"] "\n"
> "Q" [length u32be 11 "\x00\x00\x00\x0f"] "token=" [echo session "s-99"] ";"
# A decimal length of the body after the blank line (13 - 4).
< "Content-Length: " [length dec 13 1..20 "9"] "\r\n\r\n" "id=" [echo id "c-1234"]
eof >
eof <
"#;

fn write_tape(dir: &Path) -> String {
    let path = dir.join("framed.txt");
    std::fs::write(&path, TAPE).unwrap();
    path.to_str().unwrap().to_string()
}

/// A value of `len` letters drawn from `seed`.
fn token(len: usize, seed: u64) -> String {
    random_bytes(len, seed)
        .iter()
        .map(|b| (b'a' + b % 26) as char)
        .collect()
}

/// A PostgreSQL-style message: type, u32be length counting itself, body.
fn pg_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn read_pg_message(reader: &mut impl Read) -> (u8, Vec<u8>) {
    let mut head = [0; 5];
    reader.read_exact(&mut head).unwrap();
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    assert!(len >= 4, "a length that counts itself: {len}");
    let mut body = vec![0; len - 4];
    reader.read_exact(&mut body).unwrap();
    (head[0], body)
}

/// A MySQL-style packet: u24le payload length, sequence byte, payload.
fn read_mysql_packet(reader: &mut impl Read) -> Vec<u8> {
    let mut head = [0; 4];
    reader.read_exact(&mut head).unwrap();
    assert_eq!(head[3], 1, "sequence byte");
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload).unwrap();
    payload
}

fn mysql_packet(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(1);
    out.extend_from_slice(payload);
    out
}

/// The real client, with an id of `id_len` letters: it reads every message
/// by its length, so a length that does not fit the live value fails it.
fn real_client(server: SocketAddr, id_len: usize, seed: u64) {
    let stream = TcpStream::connect(server).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let id = token(id_len, seed);
    let hello = pg_message(b'H', format!("name={id}\0").as_bytes());
    writer.write_all(&hello).unwrap();
    let welcome = String::from_utf8(read_mysql_packet(&mut reader)).unwrap();
    let session = welcome
        .strip_prefix(&format!("welcome {id} session="))
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("the id comes back: {welcome:?}"));
    let query = pg_message(b'Q', format!("token={session};").as_bytes());
    writer.write_all(&query).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let len: usize = line
        .strip_prefix("Content-Length: ")
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("a Content-Length: {line:?}"));
    reader.read_line(&mut String::new()).unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    assert_eq!(body, format!("id={id}").as_bytes());
    writer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(reader.read_to_end(&mut Vec::new()).unwrap(), 0);
}

/// The real server, with a session token of `token_len` letters.
fn real_server(listener: TcpListener, token_len: usize, seed: u64) {
    let (stream, _) = listener.accept().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let (kind, body) = read_pg_message(&mut reader);
    assert_eq!(kind, b'H');
    let id = String::from_utf8(body)
        .unwrap()
        .strip_prefix("name=")
        .and_then(|rest| rest.strip_suffix('\0'))
        .unwrap()
        .to_string();
    let session = token(token_len, seed);
    let welcome = format!("welcome {id} session={session}\n");
    writer.write_all(&mysql_packet(welcome.as_bytes())).unwrap();
    let (kind, body) = read_pg_message(&mut reader);
    assert_eq!(kind, b'Q');
    assert_eq!(body, format!("token={session};").as_bytes());
    let body = format!("id={id}");
    write!(writer, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    assert_eq!(reader.read_to_end(&mut Vec::new()).unwrap(), 0);
    writer.shutdown(Shutdown::Write).unwrap();
}

#[test]
fn the_mock_server_sends_lengths_that_count_the_live_values() {
    let dir = temp_dir("lengths-server");
    let tape = write_tape(&dir);
    // Shorter, as long as, and longer than recorded; 64 crosses nothing
    // but makes the decimal length gain a digit.
    for (seed, id_len) in [1, 6, 17, 64].into_iter().enumerate() {
        let ((), code, stderr) = mock_once(&tape, |mock| real_client(mock, id_len, seed as u64));
        assert_eq!(code, 0, "id of {id_len}: {stderr}");
    }
}

#[test]
fn the_mock_client_sends_lengths_that_count_the_live_values() {
    let dir = temp_dir("lengths-client");
    let tape = write_tape(&dir);
    for (seed, token_len) in [1, 4, 30, 64].into_iter().enumerate() {
        let (listener, addr) = listener();
        let server = std::thread::spawn(move || real_server(listener, token_len, seed as u64));
        let (code, _, stderr) = run(&["client", "--timeout", "10", &addr.to_string(), &tape]);
        server.join().unwrap();
        assert_eq!(code, 0, "token of {token_len}: {stderr}");
    }
}

#[test]
fn a_length_that_does_not_count_its_bytes_is_a_mismatch_that_says_so() {
    let dir = temp_dir("lengths-mismatch");
    let tape = write_tape(&dir);
    let mock = spawn(&["server", "--once", "127.0.0.1:0", &tape], true);
    let mut c = connect(mock.addr());
    // A longer id under the recorded length.
    write_all(&mut c, b"H\x00\x00\x00\x10name=c-123456\x00");
    let _ = c.read_to_end(&mut Vec::new());
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(
            "its length field said 16, but the bytes it counts, up to byte 19 of its stream, make it 18 (frame 2, line 3)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("expected: a length of 18"), "{stderr}");
}

#[test]
fn a_length_whose_live_value_outgrows_its_field_is_an_error_not_a_wrap() {
    let dir = temp_dir("lengths-overflow");
    let tape = text_tape(
        &dir,
        "small.txt",
        "tcptape text 1\n> [capture v 1..1000 \"ab\"] \".\"\n< [length u8 2 \"\\x02\"] [echo v \"ab\"]\n",
    );
    let mock = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    let mut c = connect(mock.addr());
    write_all(&mut c, &[b'x'; 300]);
    write_all(&mut c, b".");
    let _ = c.read_to_end(&mut Vec::new());
    let (code, _, stderr) = mock.finish();
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the length 2 changed by 298 does not fit a u8 field"),
        "{stderr}"
    );
}

#[test]
fn a_tape_printed_and_built_again_keeps_its_lengths() {
    let dir = temp_dir("lengths-roundtrip");
    let text = write_tape(&dir);
    let binary = dir.join("framed.tape");
    let (code, _, stderr) = run(&["build", &text, "-o", binary.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, printed, stderr) = run(&["print", binary.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        printed.contains("> [length u32be 12 00 00 00 10]"),
        "{printed}"
    );
    assert!(
        printed.contains(r#"[length dec 13 1..20 "9"]"#),
        "{printed}"
    );
    let again = dir.join("again.txt");
    std::fs::write(&again, &printed).unwrap();
    let rebuilt = dir.join("again.tape");
    let (code, _, stderr) = run(&[
        "build",
        again.to_str().unwrap(),
        "-o",
        rebuilt.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read(&binary).unwrap(),
        std::fs::read(&rebuilt).unwrap()
    );
    let (code, listing, _) = run(&["describe", binary.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        listing.contains("length u24le of the next 29 bytes, 3 bytes"),
        "{listing}"
    );
}

/// Records one run through the proxy: a client with an id of `id_len`
/// letters, a server with a token of `token_len`.
fn record(tape: &Path, id_len: usize, token_len: usize, seed: u64) {
    let (socket, upstream) = listener();
    let server = std::thread::spawn(move || real_server(socket, token_len, seed));
    record_through_proxy(upstream, tape, |proxy| {
        real_client(proxy, id_len, seed + 1);
        server.join().unwrap();
    });
}

#[test]
fn a_tape_learned_from_two_runs_replays_values_of_new_lengths_in_both_roles() {
    let dir = temp_dir("lengths-learn");
    let (first, second) = (dir.join("run1.tape"), dir.join("run2.tape"));
    record(&first, 5, 8, 1);
    record(&second, 11, 20, 2);
    let learned = dir.join("learned.txt");
    let text = learn(&[&first, &second], &learned);
    for needle in [
        "> [length u32be 11 00 00 00 0f]   # the message's length, different in the recordings",
        "< [length u24le 32 1f 00 00]   # the message's length, different in the recordings\n< \"\\x01welcome \"",
        "> [length u32be 15 00 00 00 13]",
        "< [length dec 12 1..20 \"8\"]   # the length of the rest of the turn",
        "> [capture name 2..38 \"nsela\"]",
        "< [echo name \"nsela\"]",
        "[capture session",
        "[echo session",
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    let learned = learned.to_str().unwrap();

    // The raw recording serves no client whose id has another length...
    let mock = spawn(
        &["server", "--once", "127.0.0.1:0", first.to_str().unwrap()],
        true,
    );
    let addr = mock.addr();
    let client =
        std::thread::spawn(move || std::panic::catch_unwind(|| real_client(addr, 30, 3)).is_ok());
    let (code, _, _) = mock.finish();
    assert_ne!(code, 0);
    assert!(!client.join().unwrap(), "the client saw a wrong length");

    // ...the learned tape does, and drives servers of new token lengths,
    // within the lengths learn saw vary.
    for (seed, id_len, token_len) in [(4, 3, 4), (5, 30, 33), (6, 8, 56)] {
        let ((), code, stderr) = mock_once(learned, |mock| real_client(mock, id_len, seed));
        assert_eq!(code, 0, "id of {id_len}: {stderr}\n{text}");

        let (socket, addr) = listener();
        let server = std::thread::spawn(move || real_server(socket, token_len, seed));
        let (code, _, stderr) = run(&["client", "--timeout", "10", &addr.to_string(), learned]);
        server.join().unwrap();
        assert_eq!(code, 0, "token of {token_len}: {stderr}\n{text}");
    }
}

/// HTTP with JSON bodies that quote a request id the client picks (as
/// JSON-RPC does): the client's `Content-Length` counts its id, the
/// server's counts the id it echoes.
mod http {
    use super::*;

    fn read_message(reader: &mut impl BufRead) -> (Vec<String>, String) {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let len: usize = head
            .iter()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    pub fn client(server: SocketAddr, id_len: usize, seed: u64) {
        let stream = TcpStream::connect(server).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let id = token(id_len, seed);
        let body = format!(r#"{{"jsonrpc":"2.0","method":"ping","id":"{id}"}}"#);
        write!(
            writer,
            "POST /rpc HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let (head, body) = read_message(&mut reader);
        assert_eq!(head[0], "HTTP/1.1 200 OK");
        assert_eq!(
            body,
            format!(r#"{{"jsonrpc":"2.0","result":"pong","id":"{id}"}}"#)
        );
        writer.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.read_to_end(&mut Vec::new()).unwrap(), 0);
    }

    pub fn server(listener: TcpListener) {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let (_, body) = read_message(&mut reader);
        let id = body
            .split(r#""id":""#)
            .nth(1)
            .and_then(|rest| rest.strip_suffix(r#""}"#))
            .unwrap()
            .to_string();
        let body = format!(r#"{{"jsonrpc":"2.0","result":"pong","id":"{id}"}}"#);
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        assert_eq!(reader.read_to_end(&mut Vec::new()).unwrap(), 0);
        writer.shutdown(Shutdown::Write).unwrap();
    }

    pub fn record(tape: &Path, id_len: usize, seed: u64) {
        let (socket, upstream) = listener();
        let server = std::thread::spawn(move || server(socket));
        record_through_proxy(upstream, tape, |proxy| {
            client(proxy, id_len, seed);
            server.join().unwrap();
        });
    }
}

#[test]
fn a_learned_json_rpc_tape_echoes_ids_of_new_lengths_under_their_content_length() {
    let dir = temp_dir("lengths-http");
    let (first, second) = (dir.join("run1.tape"), dir.join("run2.tape"));
    http::record(&first, 6, 1);
    http::record(&second, 13, 2);
    let learned = dir.join("learned.txt");
    let text = learn(&[&first, &second], &learned);
    assert_eq!(text.matches("[length dec ").count(), 2, "{text}");
    assert!(text.contains("[capture id "), "{text}");
    assert!(text.contains("[echo id "), "{text}");
    let learned = learned.to_str().unwrap();
    for (seed, id_len) in [(3, 3), (4, 40)] {
        let ((), code, stderr) = mock_once(learned, |mock| http::client(mock, id_len, seed));
        assert_eq!(code, 0, "id of {id_len}: {stderr}\n{text}");
    }
    let (socket, addr) = listener();
    let server = std::thread::spawn(move || http::server(socket));
    let (code, _, stderr) = run(&["client", "--timeout", "10", &addr.to_string(), learned]);
    server.join().unwrap();
    assert_eq!(code, 0, "{stderr}\n{text}");
}

/// A MySQL-style handshake answer whose connection attributes hold the
/// client's pid in decimal: three lengths count the pid (the packet's, the
/// attribute block's, the pid's own), and the two recordings' pids have
/// as many digits, so only the recorded structure says where they are.
mod handshake {
    use super::*;

    /// The OK packet the server answers with.
    const OK: &[u8] = b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00";

    fn attribute(out: &mut Vec<u8>, value: &[u8]) {
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    }

    pub fn answer(pid: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        for (key, value) in [
            ("_client_name", "libmariadb"),
            ("_pid", pid),
            ("_platform", "x86_64"),
        ] {
            attribute(&mut attrs, key.as_bytes());
            attribute(&mut attrs, value.as_bytes());
        }
        let mut payload = b"\x0a\xa2\x3e\x00\x00\x00\x00\x01\x2d".to_vec();
        payload.extend_from_slice(&[0; 23]);
        payload.extend_from_slice(b"root\x00\x00");
        attribute(&mut payload, &attrs);
        mysql_packet(&payload)
    }

    pub fn client(server: SocketAddr, pid: &str) {
        let mut stream = TcpStream::connect(server).unwrap();
        stream.write_all(&answer(pid)).unwrap();
        let mut ok = vec![0; OK.len()];
        stream.read_exact(&mut ok).unwrap();
        assert_eq!(ok, OK);
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(stream.read_to_end(&mut Vec::new()).unwrap(), 0);
    }

    pub fn server(listener: TcpListener) {
        let (mut stream, _) = listener.accept().unwrap();
        let payload = read_mysql_packet(&mut stream);
        let attrs = &payload[9 + 23 + 6..];
        assert_eq!(
            usize::from(attrs[0]),
            attrs.len() - 1,
            "the attribute block's length"
        );
        stream.write_all(OK).unwrap();
        assert_eq!(stream.read_to_end(&mut Vec::new()).unwrap(), 0);
        stream.shutdown(Shutdown::Write).unwrap();
    }
}

#[test]
fn learn_finds_the_three_lengths_that_count_a_pid_and_serves_one_with_more_digits() {
    let dir = temp_dir("lengths-handshake");
    let (first, second) = (dir.join("run1.tape"), dir.join("run2.tape"));
    for (tape, pid) in [(&first, "7558"), (&second, "7571")] {
        let (socket, upstream) = listener();
        let server = std::thread::spawn(move || handshake::server(socket));
        record_through_proxy(upstream, tape, |proxy| handshake::client(proxy, pid));
        server.join().unwrap();
    }
    let learned = dir.join("learned.txt");
    let text = learn(&[&first, &second], &learned);
    let (_, _, stderr) = run(&[
        "learn",
        first.to_str().unwrap(),
        second.to_str().unwrap(),
        "-o",
        learned.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("learned 4 spans (0 captures, 3 lengths) from 2 recordings"),
        "{stderr}"
    );
    for needle in [
        "> [length u24le ",
        "> [length u8 51 \"3\"]   # the length of the rest of the message",
        "> [length u8 4 04]",
        "> [vary 0..65536 \"7558\"]   # varies in 2 of 2 recordings, 4 bytes, a number that may gain digits",
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    let learned = learned.to_str().unwrap();
    for pid in ["123456", "99", "7560"] {
        let ((), code, stderr) = mock_once(learned, |mock| handshake::client(mock, pid));
        assert_eq!(code, 0, "pid {pid}: {stderr}\n{text}");
    }
    // The recording as it is departs at a pid of more digits.
    let mock = spawn(
        &["server", "--once", "127.0.0.1:0", first.to_str().unwrap()],
        true,
    );
    let mut c = connect(mock.addr());
    write_all(&mut c, &handshake::answer("123456"));
    let _ = c.read_to_end(&mut Vec::new());
    let (code, _, _) = mock.finish();
    assert_eq!(code, 3);
}
