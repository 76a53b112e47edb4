//! Secret-safe recording: rules keep values off every file the proxy
//! writes, whichever way the bytes come (split at every position, a
//! secret that begins another, a kill -9 mid-recording), and the tapes
//! still replay in both roles.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use common::*;

const PASSWORD: &str = "hunter2-s3cret!";

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// Fails when any file under `dir`, or `also`, holds `secret`.
fn assert_nowhere(dir: &Path, secret: &[u8], also: &str) {
    for (path, bytes) in files_under(dir) {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{} holds the secret",
            path.display()
        );
    }
    assert!(
        !also.as_bytes().windows(secret.len()).any(|w| w == secret),
        "the log holds the secret"
    );
}

/// A server that reads a line, answers `+OK <token>\r\n`, and reads to the
/// end; it says how many bytes it has after each read, and returns them.
fn line_server(
    token: &'static str,
) -> (
    std::net::SocketAddr,
    mpsc::Receiver<usize>,
    thread::JoinHandle<Vec<u8>>,
) {
    let (listener, addr) = listener();
    let (seen, seen_rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 256];
        while !got.ends_with(b"\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the client left early");
            got.extend_from_slice(&buf[..n]);
            let _ = seen.send(got.len());
        }
        stream
            .write_all(format!("+OK {token}\r\n").as_bytes())
            .unwrap();
        stream.read_to_end(&mut got).unwrap();
        got
    });
    (addr, seen_rx, handle)
}

fn proxy_with(dir: &Path, upstream: std::net::SocketAddr, rules: &[&str]) -> Running {
    let tape = dir.join("login.tape");
    let mut args = vec!["proxy", "127.0.0.1:0"];
    let upstream = upstream.to_string();
    args.push(&upstream);
    args.push(tape.to_str().unwrap());
    args.extend_from_slice(rules);
    spawn_env(
        &args,
        &[
            ("TEST_PASSWORD", PASSWORD),
            ("TEST_TOKEN", "tok-0123456789"),
        ],
        true,
    )
}

#[test]
fn a_secret_split_between_two_segments_at_every_position_never_reaches_the_disk() {
    let dir = temp_dir("secret-split");
    let message = format!("AUTH {PASSWORD}\r\n");
    for split in 0..=PASSWORD.len() {
        let (upstream, seen, server) = line_server("tok-0123456789");
        let proxy = proxy_with(
            &dir,
            upstream,
            &[
                "--redact-env",
                "TEST_PASSWORD",
                "--redact-env",
                "TEST_TOKEN",
            ],
        );
        let mut client = connect(proxy.addr());
        let (head, tail) = message.as_bytes().split_at(5 + split);
        client.write_all(head).unwrap();
        // What the proxy may forward of the first segment: all but the
        // beginning of the password, which it holds back until the rest
        // shows whether it is the password. The server is sent the rest
        // only once it has that, so the proxy reads the two apart.
        let whole = if split == PASSWORD.len() {
            head.len()
        } else {
            5
        };
        assert_eq!(seen.recv_timeout(PATIENCE), Ok(whole), "split {split}");
        client.write_all(tail).unwrap();
        let mut answer = [0; 20];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"+OK tok-0123456789\r\n");
        client.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        let (code, _, stderr) = proxy.finish();
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            server.join().unwrap(),
            message.as_bytes(),
            "the server gets the real bytes"
        );
        assert_nowhere(&dir, PASSWORD.as_bytes(), &stderr);
        assert_nowhere(&dir, b"tok-0123456789", &stderr);
        let text = tape_text(&dir.join("login.tape"));
        // One span, unless the machine kept the client from sending the
        // rest within the hold (then several, the secret still off disk).
        assert_eq!(
            stars(&text, "TEST_PASSWORD"),
            PASSWORD.len(),
            "split {split}: {text}"
        );
        assert_eq!(stars(&text, "TEST_TOKEN"), 14, "{text}");
    }
}

/// The tape as text, with `tcptape print`.
fn tape_text(tape: &Path) -> String {
    let (code, out, err) = run(&["print", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    out
}

/// The placeholder bytes of the secret spans named `name` in a printed
/// tape.
fn stars(text: &str, name: &str) -> usize {
    let open = format!("[secret {name} \"");
    text.match_indices(&open)
        .map(|(at, _)| {
            let rest = &text[at + open.len()..];
            rest.len() - rest.trim_start_matches('*').len()
        })
        .sum()
}

fn _unused(_: TcpStream) {}
