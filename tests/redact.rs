//! `tcptape redact` on tapes recorded before there were rules, and
//! `tcptape scan`, the gate that finds what was left in clear.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::thread;

use common::*;

const PASSWORD: &str = "s3cret-Pa55word";

/// A server that answers each `AUTH ...` line with `+OK`, for `sessions`
/// connections.
fn auth_server(sessions: usize) -> (std::net::SocketAddr, thread::JoinHandle<()>) {
    let (listener, addr) = listener();
    let handle = thread::spawn(move || {
        for _ in 0..sessions {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut got = Vec::new();
            let mut buf = [0; 256];
            while !got.ends_with(b"\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            stream.write_all(b"+OK\r\n").unwrap();
            let _ = stream.read_to_end(&mut got);
        }
    });
    (addr, handle)
}

fn log_in(addr: std::net::SocketAddr, password: &str) {
    let mut stream = connect(addr);
    stream
        .write_all(format!("AUTH {password}\r\n").as_bytes())
        .unwrap();
    let mut answer = [0; 5];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"+OK\r\n");
    stream.shutdown(Shutdown::Write).unwrap();
    let _ = stream.read_to_end(&mut Vec::new());
}

fn holds(dir: &Path, secret: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn redact_rewrites_a_recorded_cassette_that_then_replays_and_passes_scan() {
    let dir = temp_dir("redact-cassette");
    let cassette = format!("{}/", dir.join("auth").display());
    let (upstream, server) = auth_server(3);
    let proxy = spawn(
        &["proxy", "127.0.0.1:0", &upstream.to_string(), &cassette],
        true,
    );
    for _ in 0..3 {
        log_in(proxy.addr(), PASSWORD);
    }
    proxy.signal("TERM");
    let (code, _, log) = proxy.finish();
    assert_eq!(code, 0, "{log}");
    server.join().unwrap();
    // One tape as text, with comments, as a team might keep it.
    let second = format!("{cassette}0002.tape");
    let (code, text, err) = run(&["print", &second]);
    assert_eq!(code, 0, "{err}");
    let text = text.replacen(
        "tcptape text 1\n",
        "tcptape text 1\n# the second login\n",
        1,
    );
    std::fs::write(&second, &text).unwrap();
    assert_eq!(holds(&dir.join("auth"), PASSWORD).len(), 3);

    // The gate finds each.
    let (code, out, err) = run(&["scan", &cassette]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    // (A text tape's findings name the line; a DELAY may come first.)
    let second_line = out
        .lines()
        .find(|l| l.contains("0002.tape: frame "))
        .unwrap();
    assert!(
        second_line.contains(", line ") && second_line.contains(": a Redis AUTH password: s3c"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "scan shows no secret whole: {out}");

    let (code, out, err) = tcptape_env(
        &["redact", "--redact-env", "PW", &cassette],
        ("PW", PASSWORD),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("1 secrets redacted").count(), 3, "{out}");
    assert!(holds(&dir.join("auth"), PASSWORD).is_empty());
    let text = std::fs::read_to_string(&second).unwrap();
    assert!(
        text.starts_with("tcptape text 1\n# the second login\n"),
        "{text}"
    );
    assert!(text.contains("[secret PW \"***************\"]"), "{text}");
    let (code, out, err) = run(&["scan", &cassette]);
    assert_eq!(code, 0, "{out}{err}");
    // No temporary file left beside them.
    let names: Vec<_> = std::fs::read_dir(dir.join("auth"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");

    // It replays, to a client with another password.
    let mock = spawn(&["server", "--once", "127.0.0.1:0", &cassette], true);
    for _ in 0..3 {
        log_in(mock.addr(), "another-passw0rd");
    }
    let (code, _, log) = mock.finish();
    assert_eq!(code, 0, "{log}");
    // Redacting again finds nothing more.
    let (code, out, _) = tcptape_env(
        &["redact", "--redact-env", "PW", &cassette],
        ("PW", PASSWORD),
    );
    assert_eq!(code, 0);
    assert_eq!(out.matches(" 0 secrets redacted").count(), 3, "{out}");
}

fn tcptape_env(args: &[&str], (key, value): (&str, &str)) -> (i32, String, String) {
    let out = tcptape().args(args).env(key, value).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scan_finds_each_shape_names_its_line_and_takes_an_allow_list() {
    let dir = temp_dir("scan-shapes");
    let tape = dir.join("leaks.txt");
    let lines = [
        "> \"GET / HTTP/1.1\\r\\nAuthorization: Bearer abcdef123456\\r\\n\\r\\n\"",
        "> \"user=bob&password=hunter22\"",
        "> \"{\\\"password\\\":\\\"hunter22\\\"}\"",
        "> \"CONNECT {\\\"user\\\":\\\"a\\\",\\\"pass\\\":\\\"natspass\\\"}\\r\\n\"",
        "> \"aws=AKIAIOSFODNN7EXAMPLE\\n\"",
        "> \"-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n\"",
        "> \"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\\n\"",
        "> \"*2\\r\\n$4\\r\\nAUTH\\r\\n$8\\r\\nhunter22\\r\\n\"",
        "> \"key: Zq8vN2kLp4RtY7wXc1BmA9sD3fGhJ6uE0iOyT5\\r\\n\"",
        "> \"AUTH \" [secret PW \"********\"] \"\\r\\n\"",
        "< \"+OK nothing here\\r\\n\"",
    ];
    std::fs::write(&tape, format!("tcptape text 1\n{}\n", lines.join("\n"))).unwrap();
    let (code, out, err) = run(&["scan", tape.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let wants = [
        "line 2: an Authorization header",
        "line 3: a password= value",
        "line 4: a \"password\" value",
        "line 5: a NATS \"pass\" value",
        "line 6: an AWS access key id",
        "line 7: a private key (PEM)",
        "line 8: a JWT",
        "line 9: a Redis AUTH password",
        "line 10: a high-entropy token",
    ];
    for want in wants {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(
        !out.contains("line 11") && !out.contains("line 12"),
        "{out}"
    );
    let allow = dir.join("allow.txt");
    std::fs::write(&allow, "# test fixtures\nhunter22\nAKIAIOSFODNN7EXAMPLE\n").unwrap();
    let (code, out, _) = run(&[
        "scan",
        "--allow",
        allow.to_str().unwrap(),
        tape.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(!out.contains("password") && !out.contains("AWS"), "{out}");
    assert!(out.contains("a JWT"), "{out}");
    // A missing tape is an error, not a pass.
    let (code, _, err) = run(&["scan", dir.join("none.tape").to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot read tape"), "{err}");
    // Usage errors.
    let (code, _, err) = run(&["redact", tape.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no rules"), "{err}");
    let (code, _, err) = run(&["scan"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn redact_refuses_what_it_cannot_rewrite_and_leaves_it_alone() {
    let dir = temp_dir("redact-refused");
    let in_span = dir.join("span.txt");
    let text = "tcptape text 1\n> \"id=\" [capture id \"hunter22\"] \"\\r\\n\"\n";
    std::fs::write(&in_span, text).unwrap();
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "tcptape text 1\n> oops\n").unwrap();
    let missing = dir.join("missing.tape");
    let cases = [
        (
            &in_span,
            "a secret in the bytes of a span (frame 3): redact it by hand",
        ),
        (&bad, "bad.txt:2:3: expected"),
        (&missing, "cannot read tape"),
    ];
    for (path, want) in cases {
        let (code, _, err) = run(&["redact", "--redact", "hunter22", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(want), "{want}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&in_span).unwrap(),
        text,
        "left alone"
    );
    // A secret over two data frames gets a span in each.
    let split = dir.join("split.txt");
    std::fs::write(
        &split,
        "tcptape text 1\n> \"AUTH hunt\"\n> \"er22\\r\\n\"\n< \"+OK\\r\\n\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["redact", "--redact", "hunter22", split.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&split).unwrap();
    assert!(
        text.contains("[secret REDACTED \"****\"]\n> [secret REDACTED \"****\"]"),
        "{text}"
    );
}

/// A secret in a comment of a text tape is starred too, and counted: in a
/// tape whose frames hold it, and in one where only a comment does. The
/// rest of each line stays as written.
#[test]
fn redact_stars_a_secret_in_the_comments_of_a_text_tape() {
    let dir = temp_dir("redact-comments");
    let both = text_tape(
        &dir,
        "both.txt",
        "tcptape text 1\n# log in as admin, password hunter22\n> \"AUTH hunter22\\r\\n\" # hunter22 again\n< \"+OK\\r\\n\" # \"quoted # hash\" then hunter22\n",
    );
    let only = text_tape(
        &dir,
        "only.txt",
        "tcptape text 1\n# the password is hunter22\n> \"PING\\r\\n\"\n< \"+PONG\\r\\n\"\n",
    );
    let (code, out, err) = run(&[
        "redact",
        "--redact",
        "hunter22",
        both.to_str().unwrap(),
        only.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let both_text = std::fs::read_to_string(&both).unwrap();
    let only_text = std::fs::read_to_string(&only).unwrap();
    for text in [&both_text, &only_text] {
        assert!(!text.contains("hunter22"), "{text}");
    }
    assert!(
        both_text.contains("# log in as admin, password ********\n"),
        "{both_text}"
    );
    assert!(
        both_text.contains("< \"+OK\\r\\n\" # \"quoted # hash\" then ********\n"),
        "{both_text}"
    );
    assert_eq!(
        only_text,
        "tcptape text 1\n# the password is ********\n> \"PING\\r\\n\"\n< \"+PONG\\r\\n\"\n"
    );
    assert!(out.contains("1 secret"), "{out}");
    // Both still build and replay as tapes.
    for tape in [&both, &only] {
        let (code, _, err) = run(&["describe", tape.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
    }
}
