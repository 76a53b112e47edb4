//! Secret-safe recording: rules keep values off every file the proxy
//! writes, whichever way the bytes come (split at every position, a
//! secret that begins another, a kill -9 mid-recording), and the tapes
//! still replay in both roles.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
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

#[test]
fn a_secret_that_begins_another_leaves_neither_on_disk() {
    let dir = temp_dir("secret-prefix");
    let (upstream, _seen, server) = line_server("ok");
    let proxy = spawn_env(
        &[
            "proxy",
            "--redact-env",
            "SHORT_PW",
            "--redact-env",
            "LONG_PW",
            "127.0.0.1:0",
            &upstream.to_string(),
            dir.join("t.tape").to_str().unwrap(),
        ],
        &[("SHORT_PW", "pass1234"), ("LONG_PW", "pass1234-and-more")],
        true,
    );
    let mut client = connect(proxy.addr());
    // Byte by byte: the long one's beginning is the short one, whole.
    for byte in b"AUTH pass1234-and-more pass1234 pass123\r\n" {
        client.write_all(&[*byte]).unwrap();
    }
    let mut answer = [0; 8];
    client.read_exact(&mut answer).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (code, _, log) = proxy.finish();
    assert_eq!(code, 0, "{log}");
    server.join().unwrap();
    assert_nowhere(&dir, b"pass1234", &log);
    let text = tape_text(&dir.join("t.tape"));
    assert_eq!(stars(&text, "LONG_PW"), 17, "{text}");
    assert_eq!(stars(&text, "SHORT_PW"), 8, "{text}");
    // Whatever frames the bytes came in (one each, under load).
    let sent = tape_stream(&dir.join("t.tape"), 0x01);
    assert!(
        sent.ends_with(b" ******** pass123\r\n"),
        "a beginning that never completes is released: {text}"
    );
}

#[test]
fn a_proxy_killed_mid_recording_leaves_no_secret_even_held_back() {
    let dir = temp_dir("secret-kill");
    let (listener, upstream) = listener();
    let (got_tx, got_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 256];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    let _ = got_tx.send(got.clone());
                }
            }
        }
    });
    let mut proxy = proxy_with(&dir, upstream, &["--redact-env", "TEST_PASSWORD"]);
    let mut client = connect(proxy.addr());
    // One secret whole, then the beginning of another, held back.
    let said = format!("AUTH {PASSWORD}\r\nAUTH {}", &PASSWORD[..9]);
    client.write_all(said.as_bytes()).unwrap();
    let want = format!("AUTH {PASSWORD}\r\nAUTH ");
    while got_rx.recv_timeout(PATIENCE).unwrap() != want.as_bytes() {}
    proxy.signal("KILL");
    proxy.kill();
    drop(client);
    server.join().unwrap();
    assert_nowhere(&dir, PASSWORD.as_bytes(), "");
    assert_nowhere(&dir, &PASSWORD.as_bytes()[..9], "");
    let text = tape_text(&dir.join("login.tape"));
    assert_eq!(stars(&text, "TEST_PASSWORD"), PASSWORD.len(), "{text}");
}

#[test]
fn bad_rules_are_usage_errors_naming_the_rule_or_the_file_and_line() {
    let dir = temp_dir("secret-bad-rules");
    let rules = dir.join("rules.txt");
    std::fs::write(&rules, "# ours\ntext s3cr3t-token\nafter X\n").unwrap();
    let rules = rules.to_str().unwrap();
    let missing = dir.join("missing.txt");
    let cases: [(&[&str], &str); 6] = [
        (
            &["--redact-env", "TCPTAPE_SURELY_UNSET"],
            "error: --redact-env TCPTAPE_SURELY_UNSET: the variable is not set",
        ),
        (&["--redact", "abc"], "error: --redact abc: is 3 bytes long"),
        (
            &["--redact-hex", "xyz"],
            "error: --redact-hex xyz: expected hex digits",
        ),
        (
            &["--redact-file", rules],
            &format!("error: {rules}:3: a prefix has 2 to 512 bytes"),
        ),
        (
            &["--redact-file", missing.to_str().unwrap()],
            "cannot read it: No such file or directory",
        ),
        // Endless: refused after its first 64 KiB, not read whole.
        (
            &["--redact-file", "/dev/zero"],
            "error: --redact-file /dev/zero: over 64 KiB, not a rules file",
        ),
    ];
    for (rule, want) in cases {
        let mut args = vec!["proxy"];
        args.extend_from_slice(rule);
        args.extend(["127.0.0.1:0", "127.0.0.1:9", "x.tape"]);
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{rule:?}: {err}");
        assert!(
            err.starts_with(want) || err.contains(want),
            "{rule:?}: {err}"
        );
        assert_eq!(
            err.lines().next().unwrap().matches("error").count(),
            1,
            "{err}"
        );
    }
    // auto takes the same rules.
    let (code, _, err) = run(&[
        "auto",
        "--redact",
        "abc",
        "127.0.0.1:0",
        "127.0.0.1:9",
        "x.tape",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("error: --redact abc: is 3 bytes long"),
        "{err}"
    );
    // The library says the same as a setting.
    let err = tcptape::Recorder::builder("127.0.0.1:9".parse().unwrap(), dir.join("y.tape"))
        .redact("abc")
        .start()
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "redaction rule: --redact abc: is 3 bytes long; a secret to redact has 4 to 512"
    );
    let missing = dir.join("no-rules.txt");
    let err = tcptape::Recorder::builder("127.0.0.1:9".parse().unwrap(), dir.join("y.tape"))
        .redact_file(&missing)
        .start()
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read rules file {}", missing.display())),
        "{err}"
    );
    std::fs::write(&missing, "text s3cr3t-token\nafter X\n").unwrap();
    let err = tcptape::Recorder::builder("127.0.0.1:9".parse().unwrap(), dir.join("y.tape"))
        .redact_file(&missing)
        .start()
        .err()
        .unwrap();
    assert!(matches!(err, tcptape::Error::Setting { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("no-rules.txt:2: a prefix has 2 to 512 bytes"),
        "{err}"
    );
}

/// A binary login: a u16 big-endian length, then `LOGIN ` and the key.
fn login(key: &[u8]) -> Vec<u8> {
    let mut message = ((6 + key.len()) as u16).to_be_bytes().to_vec();
    message.extend_from_slice(b"LOGIN ");
    message.extend_from_slice(key);
    message
}

/// A server that takes one length-prefixed login, answers `ok`, and
/// returns the key it got.
fn login_server() -> (std::net::SocketAddr, thread::JoinHandle<Vec<u8>>) {
    let (listener, addr) = listener();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut len = [0; 2];
        stream.read_exact(&mut len).unwrap();
        let mut body = vec![0; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).unwrap();
        stream.write_all(b"ok").unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
        body[6..].to_vec()
    });
    (addr, handle)
}

/// A client that logs in with `key` and reads the answer.
fn log_in(addr: std::net::SocketAddr, key: &[u8]) {
    let mut stream = connect(addr);
    stream.write_all(&login(key)).unwrap();
    let mut answer = [0; 2];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"ok");
    stream.shutdown(Shutdown::Write).unwrap();
    let _ = stream.read_to_end(&mut Vec::new());
}

#[test]
fn a_length_that_counts_a_secret_follows_the_value_in_both_roles() {
    let dir = temp_dir("secret-length");
    let key = b"k3y-0f-17-bytes!!";
    let tape = dir.join("login.tape");
    let (upstream, server) = login_server();
    let proxy = spawn(
        &[
            "proxy",
            "--redact",
            "k3y-0f-17-bytes!!",
            "127.0.0.1:0",
            &upstream.to_string(),
            tape.to_str().unwrap(),
        ],
        true,
    );
    log_in(proxy.addr(), key);
    let (code, _, log) = proxy.finish();
    assert_eq!(code, 0, "{log}");
    assert_eq!(server.join().unwrap(), key);
    assert_nowhere(&dir, key, &log);
    // As recorded: the placeholder has the key's length, so the length
    // stays true, and any key of that length logs in.
    let text = tape_text(&tape);
    let (_, code, log) = mock_once(tape.to_str().unwrap(), |addr| {
        log_in(addr, b"another-17-bytes!")
    });
    assert_eq!(code, 0, "{log}");
    // With a length span over the field (learned, or written by hand), a
    // key of any length: received, and played from the environment.
    let recorded = "> \"\\x00\\x17LOGIN \"\n";
    assert!(text.contains(recorded), "{text}");
    let framed = text.replace(recorded, "> [length u16be 23 00 17] \"LOGIN \"\n");
    let framed_tape = dir.join("framed.txt");
    std::fs::write(&framed_tape, &framed).unwrap();
    let framed_tape = framed_tape.to_str().unwrap();
    for other in [&b"short"[..], b"a-much-longer-key-than-recorded"] {
        let (_, code, log) = mock_once(framed_tape, |addr| log_in(addr, other));
        assert_eq!(code, 0, "{framed}\n{log}");
    }
    let (upstream, server) = login_server();
    let out = tcptape()
        .args(["client", &upstream.to_string(), framed_tape])
        .env("REDACTED", "a-live-key-of-29-bytes-long!!")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.join().unwrap(), b"a-live-key-of-29-bytes-long!!");
}
