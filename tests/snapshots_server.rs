//! Snapshot workflow for the client under test (issue 19): `auto
//! --update` and `server --update --upstream` replay a tape to a client;
//! where the client departs, its connection is handed over to the real
//! server (the tape's client turns it matched are played to it first) and
//! the session with it is written as a pending tape beside the tape.

mod common;
mod peers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use common::*;
use peers::*;

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

/// Sends `bytes` to `addr` and reads whatever comes back until the
/// connection ends (a client that departs and is answered, or cut off).
fn say_and_drain(addr: SocketAddr, bytes: &[u8]) -> Vec<String> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    (&stream).write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = (&stream).read_to_end(&mut got);
    vec![String::from_utf8_lossy(&got).into_owned()]
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

/// Runs `server` with `args` for one session, the client driven by
/// `client`; returns (exit code, stderr, what the client got).
fn server(
    args: &[&str],
    client: impl FnOnce(SocketAddr) -> Vec<String>,
) -> (i32, String, Vec<String>) {
    let mut all = vec!["server"];
    all.extend_from_slice(args);
    let running = spawn(&all, true);
    let got = client(running.addr());
    let (code, _, stderr) = running.finish();
    (code, stderr, got)
}

/// Names in `dir` that end with `suffix`, sorted.
fn named(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn a_greeting_the_client_had_from_the_tape_is_not_forwarded_again() {
    let dir = temp_dir("snap-server-greeting");
    let tape = text_tape(
        &dir,
        "greeting.txt",
        "tcptape text 1\n< \"READY v1\\n\"\n> \"HELLO\\n\"\n< \"WELCOME v1\\n\"\n> \"GET a\\n\"\n< \"VALUE a v1\\n\"\n> \"BYE\\n\"\n< \"BYE\\n\"\neof <\neof >\n",
    );
    let (v2, received, upstream) = line_server("v2", true, 1);
    let v2 = v2.to_string();
    let path = tape.to_str().unwrap();
    let args = ["--once", "--update", "--upstream", &v2, "127.0.0.1:0", path];
    let (code, stderr, got) = server(&args, |addr| {
        line_client(addr, true, &["HELLO", "GET b", "BYE"])
    });
    assert_eq!(code, 4, "{stderr}");
    // One greeting (the tape's), then the real server's answers.
    assert_eq!(got, ["READY v1\n", "WELCOME v1\n", "VALUE b v2\n", "BYE\n"]);
    upstream.join().unwrap();
    assert_eq!(received.recv().unwrap(), b"HELLO\nGET b\nBYE\n");
    let new = std::fs::read_to_string(dir.join("greeting.txt.new")).unwrap();
    assert!(new.contains("< \"READY v2\\n\""), "{new}");
    assert!(new.contains("< \"WELCOME v2\\n\""), "{new}");
    assert!(new.contains("> \"GET b\\n\""), "{new}");
    assert!(!dir.join("greeting.txt.new.partial").exists());
}

#[test]
fn a_client_that_departs_at_its_first_byte_is_relayed_whole() {
    let dir = temp_dir("snap-server-first");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let (v2, received, upstream) = line_server("v2", false, 1);
    let (code, stderr, got) = auto(&["--update"], &[], v2, &tape, |addr| {
        line_client(addr, false, &["PING", "BYE"])
    });
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(got, ["ERR PING\n", "BYE\n"]);
    upstream.join().unwrap();
    assert_eq!(received.recv().unwrap(), b"PING\nBYE\n");
    let new = std::fs::read_to_string(dir.join("login.txt.new")).unwrap();
    assert!(new.contains("> \"PING\\n\""), "{new}");
    assert!(new.contains("< \"ERR PING\\n\""), "{new}");
    assert!(
        !new.contains("WELCOME"),
        "nothing of the old session: {new}"
    );
}

#[test]
fn a_client_that_follows_the_tape_contacts_nobody_and_removes_a_stale_pending_tape() {
    let dir = temp_dir("snap-server-follows");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let stale = dir.join("login.txt.new");
    std::fs::write(&stale, "tcptape text 1\n").unwrap();
    // Nothing listens upstream: a hand-over would fail.
    let (code, stderr, got) = auto(&["--update"], &[], dead_addr(), &tape, |addr| {
        line_client(addr, false, &["HELLO", "GET a", "BYE"])
    });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(got, ["WELCOME v1\n", "VALUE a v1\n", "BYE\n"]);
    assert!(!stale.exists(), "{stderr}");
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), TAPE_V1);
}

#[test]
fn under_ci_the_environment_alone_hands_nothing_over() {
    let dir = temp_dir("snap-server-ci");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let env = [("CI", "true"), ("TCPTAPE_UPDATE", "1")];
    let (code, stderr, _) = auto(&[], &env, dead_addr(), &tape, |addr| {
        say_and_drain(addr, b"HELLO\nGET b\n")
    });
    assert_eq!(code, 3, "a plain mismatch: {stderr}");
    assert!(stderr.contains("mismatch"), "{stderr}");
    assert_eq!(named(&dir, ".new"), Vec::<String>::new());
    assert_eq!(named(&dir, ".partial"), Vec::<String>::new());

    // Outside CI the same environment hands the client over.
    let (v2, received, upstream) = line_server("v2", false, 1);
    let (code, stderr, got) = auto(&[], &[("TCPTAPE_UPDATE", "1")], v2, &tape, |addr| {
        line_client(addr, false, &["HELLO", "GET b", "BYE"])
    });
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(got, ["WELCOME v1\n", "VALUE b v2\n", "BYE\n"]);
    upstream.join().unwrap();
    assert_eq!(received.recv().unwrap(), b"HELLO\nGET b\nBYE\n");
}

#[test]
fn an_upstream_that_refuses_fails_the_session_and_names_it() {
    let dir = temp_dir("snap-server-refused");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let dead = dead_addr();
    let (code, stderr, _) = auto(&["--update"], &[], dead, &tape, |addr| {
        say_and_drain(addr, b"HELLO\nGET b\n")
    });
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&dead.to_string()), "{stderr}");
    assert!(stderr.contains("connect to the upstream"), "{stderr}");
    assert_eq!(named(&dir, ".new"), Vec::<String>::new());
    assert_eq!(named(&dir, ".partial"), Vec::<String>::new());
}

#[test]
fn update_without_an_upstream_is_a_usage_error() {
    let (code, _, stderr) = run(&["server", "--update", "127.0.0.1:0", "x.tape"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--update needs --upstream"), "{stderr}");
    let (code, _, stderr) = run(&[
        "server",
        "--update",
        "--upstream",
        "nowhere",
        "127.0.0.1:0",
        "x.tape",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--upstream"), "{stderr}");
}

/// A session with a token the server picks and the client uses: the
/// token captured, its echo checked.
const TOKEN_TAPE: &str = "tcptape text 1
> \"TOKEN\\n\"
< \"TOKEN \" [capture tok 1..32 \"t14x0\"] \"\\n\"
> \"USE \" [echo tok \"t14x0\"] \"\\n\"
< \"OK \" [vary 1..32 \"t14x0\"] \"\\n\"
> \"GET a\\n\"
< \"VALUE a v1\\n\"
> \"BYE\\n\"
< \"BYE\\n\"
eof <
eof >
";

#[test]
fn the_upstream_is_played_its_own_token_and_the_spans_stay() {
    let dir = temp_dir("snap-server-token");
    let tape = dir.join("token.txt");
    std::fs::write(&tape, TOKEN_TAPE).unwrap();
    let (v2, received, upstream) = line_server("v2", false, 1);
    let (code, stderr, got) = auto(&["--update"], &[], v2, &tape, |addr| {
        line_client(addr, false, &["TOKEN", "USE t14x0", "GET z", "BYE"])
    });
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        got,
        ["TOKEN t14x0\n", "OK t14x0\n", "VALUE z v2\n", "BYE\n"]
    );
    upstream.join().unwrap();
    // The echo says the token the upstream gave, not the tape's.
    assert_eq!(received.recv().unwrap(), b"TOKEN\nUSE tv2x0\nGET z\nBYE\n");
    let new = std::fs::read_to_string(dir.join("token.txt.new")).unwrap();
    assert!(new.contains("[capture tok 1..32"), "{new}");
    assert!(new.contains("[echo tok"), "{new}");
    assert!(new.contains("> \"GET z\\n\""), "{new}");

    // Accepted, a client echoing whatever token it is given passes.
    let (code, _, stderr) = run(&["review", "--accept", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr, got) = auto(&[], &[], dead_addr(), &tape, |addr| {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        writer.write_all(b"TOKEN\n").unwrap();
        reader.read_line(&mut line).unwrap();
        let token = line.trim_end().strip_prefix("TOKEN ").unwrap().to_string();
        writer
            .write_all(format!("USE {token}\nGET z\nBYE\n").as_bytes())
            .unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        vec![line, rest]
    });
    assert_eq!(code, 0, "{stderr}");
    // The answer still has the span that takes any token (the merge kept
    // its text: the new bytes fit it).
    assert!(got[1].starts_with("OK "), "{got:?}");
    assert!(got[1].ends_with("\nVALUE z v2\nBYE\n"), "{got:?}");
}

/// One session of a `hello_cassette` client against `addr`: HELLO,
/// `command`, BYE; asserts the answers (WELCOME v1, `answer`, BYE).
fn hello_session(addr: SocketAddr, command: &str, answer: &str) {
    assert_eq!(
        line_client(addr, false, &["HELLO", command, "BYE"]),
        [
            "WELCOME v1\n".to_string(),
            format!("{answer}\n"),
            "BYE\n".to_string()
        ]
    );
}

/// The end of an update run that handed one session over: exit 4, the
/// upstream heard `heard`, and `name` is the cassette's one pending tape;
/// its path.
fn one_pending(
    (mock, upstream, received): (Running, thread::JoinHandle<()>, mpsc::Receiver<Vec<u8>>),
    heard: &[u8],
    cassette: &Path,
    name: &str,
) -> std::path::PathBuf {
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 4, "{stderr}");
    upstream.join().unwrap();
    assert_eq!(received.recv().unwrap(), heard);
    assert_eq!(named(cassette, ".new"), [name], "{stderr}");
    cassette.join(name)
}

/// A cassette in `dir/pool/` of binary tapes, one per (command, answer):
/// HELLO, WELCOME v1, the command and its answer, BYE.
fn hello_cassette(dir: &Path, sessions: &[(&str, &str)]) -> std::path::PathBuf {
    let cassette = dir.join("pool");
    std::fs::create_dir(&cassette).unwrap();
    for (i, (cmd, answer)) in sessions.iter().enumerate() {
        let src = dir.join(format!("{i}.txt"));
        std::fs::write(
            &src,
            format!(
                "tcptape text 1\n> \"HELLO\\n\"\n< \"WELCOME v1\\n\"\n> \"{cmd}\\n\"\n< \"{answer}\\n\"\n> \"BYE\\n\"\n< \"BYE\\n\"\neof <\neof >\n"
            ),
        )
        .unwrap();
        let out = cassette.join(format!("{:04}.tape", i + 1));
        let (code, _, stderr) = run(&["build", src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
    }
    cassette
}

/// `server --once --update` of `cassette`, handing clients over to
/// `upstream`.
fn update_server(cassette: &Path, upstream: SocketAddr) -> Running {
    let path = format!("{}/", cassette.display());
    let upstream = upstream.to_string();
    let args = ["server", "--once", "--update", "--upstream", &upstream];
    spawn(&[&args[..], &["127.0.0.1:0", &path]].concat(), true)
}

/// A cassette of three connections that all begin with HELLO: a client
/// that departs from the two tapes still free is handed over with the one
/// that went furthest; the others play as recorded.
#[test]
fn in_a_cassette_the_connection_that_departed_from_its_pool_gets_the_pending_tape() {
    let dir = temp_dir("snap-server-cassette");
    let cassette = hello_cassette(
        &dir,
        &[
            ("GET a", "VALUE a v1"),
            ("GET b", "VALUE b v1"),
            ("PING", "ERR PING"),
        ],
    );
    let (v1, received, upstream) = line_server("v1", false, 1);
    let mock = update_server(&cassette, v1);
    let addr = mock.addr();
    hello_session(addr, "GET a", "VALUE a v1");
    // Departs from 0002 after "GET ", from 0003 at once.
    hello_session(addr, "GET c", "VALUE c v1");
    hello_session(addr, "PING", "ERR PING");
    let heard = b"HELLO\nGET c\nBYE\n";
    let pending = one_pending(
        (mock, upstream, received),
        heard,
        &cassette,
        "0002.tape.new",
    );
    assert_eq!(tape_stream(&pending, 1), b"HELLO\nGET c\nBYE\n");
    assert_eq!(tape_stream(&pending, 2), b"WELCOME v1\nVALUE c v1\nBYE\n");
}

#[test]
fn the_library_mock_server_hands_over_and_reports_the_pending_tape() {
    let dir = temp_dir("snap-server-library");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let (v2, received, upstream) = line_server("v2", false, 1);

    let mock = tcptape::MockServer::builder(&tape)
        .record_from(&v2.to_string())
        .update(true)
        .start()
        .unwrap();
    let addr: SocketAddr = mock.address().parse().unwrap();
    let got = line_client(addr, false, &["HELLO", "GET b", "BYE"]);
    assert_eq!(got, ["WELCOME v1\n", "VALUE b v2\n", "BYE\n"]);
    let err = mock.finish().unwrap_err();
    let report = err.report().expect("a verdict");
    assert_eq!(report.verdict(), tcptape::Verdict::Pending, "{err}");
    assert_eq!(report.pending(), [dir.join("login.txt.new")]);
    upstream.join().unwrap();
    assert_eq!(received.recv().unwrap(), b"HELLO\nGET b\nBYE\n");

    // update(true) without an upstream is refused before it listens.
    let refused = tcptape::MockServer::builder(&tape).update(true).start();
    let Err(err) = refused else {
        panic!("update(true) without record_from started");
    };
    assert!(err.to_string().contains("record_from"), "{err}");
}

/// redis-py sets and reads back a value of `len` letters against `port`.
fn redis_echo(port: u16, len: usize, seed: u64) -> Result<(), String> {
    python_peer(
        "redis_echo.py",
        &[port.to_string(), len.to_string(), seed.to_string()],
    )
}

/// A redis-py client that now sets another value departs from its tape in
/// the middle of a RESP command; redis-server answers it from there, and
/// the accepted tape replays it without the server.
#[test]
fn a_redis_py_client_that_changed_is_handed_over_to_redis_server() {
    let Some((redis, upstream)) = redis_server() else {
        return;
    };
    let dir = temp_dir("snap-server-redis");
    let tape = dir.join("redis.tape");
    record_through_proxy(upstream, &tape, |proxy| redis_echo(proxy.port(), 8, 1)).unwrap();

    let tape_arg = tape.to_str().unwrap();
    let upstream_arg = upstream.to_string();
    let args = ["auto", "--update", "127.0.0.1:0", &upstream_arg, tape_arg];
    let running = spawn(&args, true);
    let result = redis_echo(running.addr().port(), 8, 2);
    let (code, _, stderr) = running.finish();
    result.unwrap();
    assert_eq!(code, 4, "{stderr}");
    assert!(dir.join("redis.tape.new").exists(), "{stderr}");

    let (code, _, stderr) = run(&["review", "--accept", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    drop(redis);
    let running = spawn(&["server", "--once", "127.0.0.1:0", tape_arg], true);
    let result = redis_echo(running.addr().port(), 8, 2);
    let (code, _, stderr) = running.finish();
    result.unwrap();
    assert_eq!(
        code, 0,
        "the accepted tape replays the new client: {stderr}"
    );
}

/// A client that keeps its connection open (a pooled connection) until
/// the test stops the mock, or until both sides were quiet for
/// `--timeout`: the session handed over is written as far as it went,
/// and the accepted tape replays it.
#[test]
fn a_stop_or_a_quiet_relay_writes_the_session_handed_over_as_far_as_it_went() {
    for quiet in [false, true] {
        let dir = temp_dir("snap-server-stop");
        let tape = dir.join("login.txt");
        std::fs::write(&tape, TAPE_V1).unwrap();
        let (v2, received, upstream) = line_server("v2", false, 1);
        let upstream_arg = v2.to_string();
        let ending: &[&str] = match quiet {
            true => &["--timeout", "1"],
            false => &["--grace", "1"],
        };
        let args = [
            &["auto", "--update"][..],
            ending,
            &["127.0.0.1:0", &upstream_arg],
        ]
        .concat();
        let mut running = spawn(&[&args[..], &[tape.to_str().unwrap()]].concat(), true);
        let stream = TcpStream::connect(running.addr()).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut got = Vec::new();
        for line in ["HELLO\n", "GET b\n"] {
            (&stream).write_all(line.as_bytes()).unwrap();
            let mut answer = String::new();
            reader.read_line(&mut answer).unwrap();
            got.push(answer);
        }
        assert_eq!(got, ["WELCOME v1\n", "VALUE b v2\n"]);
        running.wait_for_line("relaying");
        if !quiet {
            running.signal("TERM");
        }
        let (code, _, stderr) = running.finish();
        assert_eq!(code, 4, "quiet {quiet}: {stderr}");
        assert!(stderr.contains("1 updated"), "{stderr}");
        upstream.join().unwrap();
        assert_eq!(received.recv().unwrap(), b"HELLO\nGET b\n");
        let new = std::fs::read_to_string(dir.join("login.txt.new")).unwrap();
        assert!(new.contains("< \"VALUE b v2\\n\""), "{new}");

        let (code, _, stderr) = run(&["review", "--accept", dir.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        let (code, stderr, got) = auto(&[], &[], dead_addr(), &tape, |addr| {
            line_client(addr, false, &["HELLO", "GET b"])
        });
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(got, ["WELCOME v2\n", "VALUE b v2\n"]);
    }
}

/// A hand-over keeps at most 4 MiB of the client's current turn: a client
/// that departs further into a longer one is a plain mismatch, and
/// nothing is written.
#[test]
fn a_departure_deep_into_a_long_turn_is_a_mismatch() {
    const LEN: usize = 5 * 1024 * 1024;
    let dir = temp_dir("snap-server-long");
    let tape = dir.join("upload.tape");
    let upload = random_bytes(LEN, 7);
    let expected = upload.clone();
    let (upstream, server) = serve_once(move |mut s| {
        assert!(read_n(&mut s, LEN) == expected);
        write_all(&mut s, b"OK\n");
    });
    record_through_proxy(upstream, &tape, |proxy| {
        let mut client = connect(proxy);
        write_all(&mut client, &upload);
        assert_eq!(read_n(&mut client, 3), b"OK\n");
    });
    server.join().unwrap();

    let mut changed = upload.clone();
    changed[LEN - 1] ^= 1;
    let (code, stderr, _) = auto(&["--update"], &[], dead_addr(), &tape, |addr| {
        let mut client = connect(addr);
        write_all(&mut client, &changed);
        half_close(&client);
        let _ = read_to_end(&mut client);
        Vec::new()
    });
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("keeps 4194304 bytes of a turn"), "{stderr}");
    assert_eq!(named(&dir, ".new"), Vec::<String>::new());
    assert_eq!(named(&dir, ".partial"), Vec::<String>::new());
}

/// A tape with secret spans is never handed over: what the client sends
/// in their place is its live secret, which the pending tape would hold.
/// The session fails naming the tape and why, and writes nothing.
#[test]
fn a_tape_with_secrets_is_not_handed_over() {
    let dir = temp_dir("snap-server-secret");
    let tape = text_tape(
        &dir,
        "auth.txt",
        "tcptape text 1\n> \"AUTH \" [secret PW \"********\"] \"\\r\\n\"\n< \"+OK\\r\\n\"\n> \"GET a\\r\\n\"\n< \"v1\\r\\n\"\neof >\neof <\n",
    );
    let (v2, _received, _upstream) = line_server("v2", false, 1);
    let (code, stderr, _) = auto(&["--update"], &[("PW", "hunter22")], v2, &tape, |addr| {
        say_and_drain(addr, b"AUTH hunter22\r\nLOGIN hunter22\r\n")
    });
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&tape.display().to_string()), "{stderr}");
    assert!(stderr.contains("the tape has secret spans"), "{stderr}");
    assert!(!stderr.contains("hunter22"), "{stderr}");
    assert_eq!(named(&dir, ".new"), Vec::<String>::new());
    assert_eq!(named(&dir, ".partial"), Vec::<String>::new());
}

/// A wildcard (`any N`) on the client's side has no bytes to play the
/// upstream: a hand-over that would need it fails, naming the tape, and
/// writes nothing.
#[test]
fn a_client_wildcard_before_the_departure_cannot_be_handed_over() {
    let dir = temp_dir("snap-server-wildcard");
    let tape = text_tape(
        &dir,
        "id.txt",
        "tcptape text 1\n> \"ID \" any 4 \"\\n\"\n< \"OK\\n\"\n> \"GET a\\n\"\n< \"VALUE a v1\\n\"\neof >\neof <\n",
    );
    let (code, stderr, _) = auto(&["--update"], &[], dead_addr(), &tape, |addr| {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        (&stream).write_all(b"ID abcd\n").unwrap();
        let mut ok = String::new();
        reader.read_line(&mut ok).unwrap();
        (&stream).write_all(b"GET b\n").unwrap();
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        vec![ok]
    });
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot hand a client over with {}",
            tape.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("wildcard (any N) at byte 3"), "{stderr}");
    assert_eq!(named(&dir, ".new"), Vec::<String>::new());
    assert_eq!(named(&dir, ".partial"), Vec::<String>::new());
}

/// A connection no tape of the cassette agrees with is new: with an
/// upstream it is relayed whole and recorded as a new tape of the
/// cassette, one number past the last, for review; accepted, the
/// cassette serves it.
#[test]
fn a_new_connection_in_a_cassette_becomes_a_new_pending_tape() {
    let dir = temp_dir("snap-server-new");
    let cassette = hello_cassette(&dir, &[("GET a", "VALUE a v1"), ("PING", "ERR PING")]);
    // Its index, as the proxy that recorded it would have written it.
    let index = "# tcptape cassette index\n# tape order start_ms client_bytes server_bytes first_speaker status\n0001.tape 1 0 16 26 client whole\n0002.tape 2 40 15 24 client whole\n";
    std::fs::write(cassette.join("index"), index).unwrap();
    let path = format!("{}/", cassette.display());
    let (v1, received, upstream) = line_server("v1", false, 1);
    let mock = update_server(&cassette, v1);
    let addr = mock.addr();
    let new_client = |addr| line_client(addr, false, &["TOKEN", "GET z", "BYE"]);
    hello_session(addr, "GET a", "VALUE a v1");
    // No tape begins with TOKEN: the upstream answers all of it.
    assert_eq!(new_client(addr), ["TOKEN tv1x0\n", "VALUE z v1\n", "BYE\n"]);
    hello_session(addr, "PING", "ERR PING");
    let heard = b"TOKEN\nGET z\nBYE\n";
    let new = one_pending(
        (mock, upstream, received),
        heard,
        &cassette,
        "0003.tape.new",
    );
    assert_eq!(tape_stream(&new, 1), b"TOKEN\nGET z\nBYE\n");

    // Shown as new, all of it added; accepted, the cassette serves all
    // three connections.
    let (code, diff, stderr) = run(&["review", "--diff", cassette.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(diff.contains("0003.tape (a new tape)\n"), "{diff}");
    assert!(diff.contains("+ > \"TOKEN\\n\""), "{diff}");
    let (code, _, stderr) = run(&["review", "--accept", cassette.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // The index lists it, next in order, starting with the last: 16 bytes
    // from the client, 27 from the server.
    let now = std::fs::read_to_string(cassette.join("index")).unwrap();
    assert_eq!(now, format!("{index}0003.tape 3 40 16 27 client whole\n"));
    let mock = spawn(&["server", "--once", "127.0.0.1:0", &path], true);
    let addr = mock.addr();
    hello_session(addr, "GET a", "VALUE a v1");
    assert_eq!(new_client(addr), ["TOKEN tv1x0\n", "VALUE z v1\n", "BYE\n"]);
    hello_session(addr, "PING", "ERR PING");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

/// Where the recording cannot be written, the session fails naming the
/// file, and the tape is left alone.
#[test]
fn a_recording_that_cannot_be_written_fails_the_session_naming_the_file() {
    let dir = temp_dir("snap-server-unwritable");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    // Where the session would be written as it goes, a folder.
    let partial = dir.join("login.txt.new.partial");
    std::fs::create_dir(&partial).unwrap();
    let (v2, _received, _upstream) = line_server("v2", false, 1);
    let (code, stderr, _) = auto(&["--update"], &[], v2, &tape, |addr| {
        say_and_drain(addr, b"HELLO\nGET b\n")
    });
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&partial.display().to_string()), "{stderr}");
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), TAPE_V1);
    assert!(!dir.join("login.txt.new").exists());
}

/// Where the pending tape cannot be put (a folder in its place), the
/// session's end fails naming it; nothing else is left behind.
#[test]
fn a_pending_tape_that_cannot_be_put_in_place_fails_naming_it() {
    let dir = temp_dir("snap-server-blocked");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let pending = dir.join("login.txt.new");
    std::fs::create_dir(&pending).unwrap();
    std::fs::write(pending.join("keep"), "a user's file").unwrap();
    let (v2, received, upstream) = line_server("v2", false, 1);
    let (code, stderr, got) = auto(&["--update"], &[], v2, &tape, |addr| {
        line_client(addr, false, &["HELLO", "GET b", "BYE"])
    });
    assert_eq!(got, ["WELCOME v1\n", "VALUE b v2\n", "BYE\n"]);
    upstream.join().unwrap();
    assert_eq!(received.recv().unwrap(), b"HELLO\nGET b\nBYE\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&pending.display().to_string()), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(pending.join("keep")).unwrap(),
        "a user's file"
    );
    assert_eq!(named(&dir, ".partial"), Vec::<String>::new());
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), TAPE_V1);
}

/// A new connection whose cassette folder is gone (removed while the
/// server ran): the session fails naming the folder.
#[test]
fn a_new_connection_in_a_cassette_that_is_gone_fails_naming_it() {
    let dir = temp_dir("snap-server-gone");
    let cassette = hello_cassette(&dir, &[("GET a", "VALUE a v1")]);
    let mock = update_server(&cassette, dead_addr());
    std::fs::remove_dir_all(&cassette).unwrap();
    say_and_drain(mock.addr(), b"TOKEN\n");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot list the cassette {}", cassette.display())),
        "{stderr}"
    );
}

/// However the client's bytes fall into reads (its departing turn split
/// anywhere, or pipelined behind the turn the tape answers), the upstream
/// hears each byte once, in order, and the client gets one answer each.
#[test]
fn a_hand_over_does_not_depend_on_how_the_client_bytes_fell_into_reads() {
    let turn: &[u8] = b"GET b\nBYE\n";
    // (first write, then the rest after a pause): pipelined, then split
    // at every place of the departing turn.
    let mut cases: Vec<(Vec<u8>, Vec<u8>)> =
        vec![([b"HELLO\n".as_slice(), turn].concat(), Vec::new())];
    for at in 1..turn.len() {
        cases.push((
            [b"HELLO\n".as_slice(), &turn[..at]].concat(),
            turn[at..].to_vec(),
        ));
    }
    for (first, rest) in cases {
        let dir = temp_dir("snap-server-splits");
        let tape = dir.join("login.txt");
        std::fs::write(&tape, TAPE_V1).unwrap();
        let (v2, received, upstream) = line_server("v2", false, 1);
        let (code, stderr, got) = auto(&["--update"], &[], v2, &tape, |addr| {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_nodelay(true).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            (&stream).write_all(&first).unwrap();
            thread::sleep(std::time::Duration::from_millis(20));
            (&stream).write_all(&rest).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let mut got = String::new();
            (&stream).read_to_string(&mut got).unwrap();
            vec![got]
        });
        let case = String::from_utf8_lossy(&first).into_owned();
        assert_eq!(code, 4, "{case:?}: {stderr}");
        // The welcome is the tape's when it went before the client
        // departed, the upstream's when the departure came first (the
        // client had nothing from the tape): one welcome either way.
        let welcome_then = |v: &str| format!("WELCOME {v}\nVALUE b v2\nBYE\n");
        assert!(
            got == [welcome_then("v1")] || got == [welcome_then("v2")],
            "{case:?}: {got:?}"
        );
        upstream.join().unwrap();
        assert_eq!(received.recv().unwrap(), b"HELLO\nGET b\nBYE\n", "{case:?}");
    }
}

/// Four redis-py clients that start together, recorded as a cassette;
/// then one of them sets another value: `server --update` hands that one
/// over to redis-server (whichever tapes its pool tried first) and the
/// three others play from their tapes; accepted, the cassette replays the
/// new clients without the server.
#[test]
fn a_redis_py_pool_where_one_client_changed_updates_only_its_tape() {
    let Some((redis, upstream)) = redis_server() else {
        return;
    };
    let dir = temp_dir("snap-server-redis-pool");
    let cassette = dir.join("pool");
    let path = format!("{}/", cassette.display());
    let proxy = spawn(
        &["proxy", "127.0.0.1:0", &upstream.to_string(), &path],
        true,
    );
    python_peer(
        "redis_pool_together.py",
        &[proxy.addr().port().to_string(), "1".to_string()],
    )
    .unwrap();
    proxy.signal("TERM");
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");

    let mock = update_server(&cassette, upstream);
    // Another start order (seed 2), and client 2 sets "value2-v2".
    let args = [mock.addr().port().to_string(), "2".into(), "2".into()];
    python_peer("redis_pool_together.py", &args).unwrap();
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("3 passed, 1 updated"), "{stderr}");
    assert_eq!(named(&cassette, ".new").len(), 1, "{stderr}");

    let (code, _, stderr) = run(&["review", "--accept", &path]);
    assert_eq!(code, 0, "{stderr}");
    drop(redis);
    for seed in ["3", "4"] {
        let mock = spawn(&["server", "--once", "127.0.0.1:0", &path], true);
        let args = [
            mock.addr().port().to_string(),
            seed.to_string(),
            "2".to_string(),
        ];
        python_peer("redis_pool_together.py", &args).unwrap();
        let (code, _, stderr) = mock.finish();
        assert_eq!(code, 0, "seed {seed}: {stderr}");
    }
}

/// The upstream is played the turns the client matched, each once its
/// answer is whole: an answer exactly as the tape has it is whole at
/// once, so a long session is handed over in about one quiet period,
/// not one per turn (20 turns took 5 s before).
#[test]
fn turns_the_upstream_answers_as_recorded_are_played_without_waiting() {
    let dir = temp_dir("snap-server-fast");
    let tape = dir.join("long.txt");
    let mut text = String::from("tcptape text 1\n> \"HELLO\\n\"\n< \"WELCOME v1\\n\"\n");
    for k in 0..20 {
        text += &format!("> \"GET k{k}\\n\"\n< \"VALUE k{k} v1\\n\"\n");
    }
    text += "> \"BYE\\n\"\n< \"BYE\\n\"\neof <\neof >\n";
    std::fs::write(&tape, &text).unwrap();
    let (v1, received, upstream) = line_server("v1", false, 1);
    let mut lines: Vec<String> = (0..20).map(|k| format!("GET k{k}")).collect();
    lines.insert(0, "HELLO".into());
    let (code, stderr, took) = auto(&["--update"], &[], v1, &tape, |addr| {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        for request in &lines {
            (&stream)
                .write_all(format!("{request}\n").as_bytes())
                .unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
        }
        let started = std::time::Instant::now();
        (&stream).write_all(b"GET z\n").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "VALUE z v1\n");
        let took = started.elapsed();
        (&stream).write_all(b"BYE\n").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        vec![format!("{}", took.as_millis())]
    });
    assert_eq!(code, 4, "{stderr}");
    upstream.join().unwrap();
    let heard = received.recv().unwrap();
    assert!(heard.starts_with(b"HELLO\nGET k0\n") && heard.ends_with(b"GET k19\nGET z\nBYE\n"));
    let took: u64 = took[0].parse().unwrap();
    assert!(took < 3000, "the hand-over took {took} ms");
}
