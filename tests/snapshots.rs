//! Snapshot workflow (issue 19): a server changes on purpose; `client
//! --update` writes the new session as a pending tape beside the old one,
//! keeping what did not change (text, comments, spans); `review` shows,
//! accepts or rejects it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::thread;

use common::*;

/// A line server: HELLO -> "WELCOME <version>", "TOKEN" -> a fresh token,
/// "USE <token>" -> "OK <token>", BYE -> BYE and close. Serves `n`
/// connections.
fn line_server(version: &'static str, n: usize) -> (SocketAddr, thread::JoinHandle<()>) {
    answering_server(n, move |line, round| {
        let token = format!("t{}x{round}", version.len() * 7 + round);
        match line {
            "HELLO" => format!("WELCOME {version}\n"),
            "TOKEN" => format!("TOKEN {token}\n"),
            l if l.starts_with("USE ") => format!("OK {}\n", &l[4..]),
            "BYE" => "BYE\n".to_string(),
            other => format!("ERR {other}\n"),
        }
    })
}

/// A server answering each line with `answer(line, connection number)`,
/// closing after BYE; serves `n` connections.
fn answering_server(
    n: usize,
    answer: impl Fn(&str, usize) -> String + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        for round in 0..n {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let answer = answer(line.trim_end(), round);
                writer.write_all(answer.as_bytes()).unwrap();
                if line.trim_end() == "BYE" {
                    let _ = writer.shutdown(std::net::Shutdown::Write);
                }
            }
        }
    });
    (addr, handle)
}

/// The tape of a session with `line_server` v1, written by hand as text,
/// with a comment and a capture of the token the client sends back.
const TAPE_V1: &str = "tcptape text 1
# the greeting: this line says which version
> \"HELLO\\n\"
< \"WELCOME v1\\n\"
# a token the server picks; the client uses it
> \"TOKEN\\n\"
< \"TOKEN \" [capture tok 1..32 \"t14x0\"] \"\\n\"
> \"USE \" [echo tok \"t14x0\"] \"\\n\"
< \"OK \" [vary 1..32 \"t14x0\"] \"\\n\"
> \"BYE\\n\"
< \"BYE\\n\"
eof <
eof >
";

fn client(addr: SocketAddr, tape: &Path, update: bool) -> (i32, String) {
    let mut args = vec!["client".to_string()];
    if update {
        args.push("--update".into());
    }
    args.push(addr.to_string());
    args.push(tape.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = run(&args);
    (code, stderr)
}

#[test]
fn a_changed_server_answer_becomes_a_pending_tape_that_keeps_the_rest() {
    let dir = temp_dir("snap-update");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let pending = dir.join("login.txt.new");

    // v1 matches: nothing is written.
    let (v1, server) = line_server("v1", 1);
    let (code, stderr) = client(v1, &tape, true);
    assert_eq!(code, 0, "{stderr}");
    server.join().unwrap();
    assert!(!pending.exists());

    // v2 says another version: the plain replay fails...
    let (v2, server) = line_server("v2", 2);
    let (code, stderr) = client(v2, &tape, false);
    assert_eq!(code, 3, "{stderr}");
    // ...and --update writes the pending tape, exit 4.
    let (code, stderr) = client(v2, &tape, true);
    assert_eq!(code, 4, "{stderr}");
    server.join().unwrap();
    assert!(stderr.contains("1 tape pending review"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&tape).unwrap(),
        TAPE_V1,
        "the old tape is left alone"
    );
    let new = std::fs::read_to_string(&pending).unwrap();
    assert!(new.contains("< \"WELCOME v2\\n\""), "{new}");
    // What did not change is kept as written: comments, capture, echo.
    assert!(
        new.contains("# the greeting: this line says which version\n"),
        "{new}"
    );
    assert!(
        new.contains("# a token the server picks; the client uses it\n"),
        "{new}"
    );
    assert!(new.contains("[capture tok 1..32"), "{new}");
    assert!(new.contains("[echo tok"), "{new}");

    // The pending tape, accepted, passes against v2 with a fresh token.
    std::fs::rename(&pending, &tape).unwrap();
    let (v2, server) = line_server("v2", 1);
    let (code, stderr) = client(v2, &tape, true);
    assert_eq!(code, 0, "{stderr}");
    server.join().unwrap();
    assert!(!pending.exists());
}

/// A value the server hands out in the very answer that departs from the
/// tape (here at its version, before the value) is captured from that
/// answer: the client's echo says the new value, and the pending tape
/// keeps the capture.
#[test]
fn a_value_in_the_answer_that_departs_is_captured_for_the_echo() {
    let dir = temp_dir("snap-capture-departing");
    let tape = text_tape(
        &dir,
        "session.txt",
        "tcptape text 1\n> \"HELLO\\n\"\n< \"SESSION v1 token=\" [capture tok 1..32 \"abc\"] \"\\n\"\n> \"USE \" [echo tok \"abc\"] \"\\n\"\n< \"OK \" [vary 1..32 \"abc\"] \"\\n\"\n> \"BYE\\n\"\n< \"BYE\\n\"\neof <\neof >\n",
    );
    let (used_tx, used_rx) = std::sync::mpsc::channel();
    let v2_server = move |used: std::sync::mpsc::Sender<String>| {
        answering_server(1, move |line, _| match line {
            "HELLO" => "SESSION v2 token=xyz789\n".to_string(),
            l if l.starts_with("USE ") => {
                used.send(l.to_string()).unwrap();
                format!("OK {}\n", &l[4..])
            }
            _ => "BYE\n".to_string(),
        })
    };
    let (addr, server) = v2_server(used_tx.clone());
    let (code, stderr) = client(addr, &tape, true);
    assert_eq!(code, 4, "{stderr}");
    server.join().unwrap();
    assert_eq!(used_rx.recv().unwrap(), "USE xyz789");
    let pending = std::fs::read_to_string(dir.join("session.txt.new")).unwrap();
    assert!(
        pending.contains("[capture tok 1..32 \"xyz789\"]"),
        "{pending}"
    );
    // Accepted, it replays against the server it came from.
    let new = dir.join("session.txt.new");
    let (code, _, stderr) = run(&["review", "--accept", new.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (addr, server) = v2_server(used_tx);
    let (code, stderr) = client(addr, &tape, false);
    assert_eq!(code, 0, "{stderr}");
    server.join().unwrap();
    assert_eq!(used_rx.recv().unwrap(), "USE xyz789");
}

/// A server that no longer answers one request, between two it answers:
/// the pending tape says so, and gives each later answer to its own
/// request; accepted, it replays against that server.
#[test]
fn a_request_the_server_no_longer_answers_keeps_the_later_answers_in_place() {
    let dir = temp_dir("snap-silent-turn");
    let tape = text_tape(
        &dir,
        "abc.txt",
        "tcptape text 1\n> \"A\\n\"\n< \"x\\n\"\n> \"B\\n\"\n< \"y\\n\"\n> \"C\\n\"\n< \"z\\n\"\n> \"BYE\\n\"\n< \"BYE\\n\"\neof <\neof >\n",
    );
    let server = || {
        answering_server(1, |line, _| match line {
            "A" => "X\n".to_string(),
            "B" => String::new(),
            "C" => "z\n".to_string(),
            _ => "BYE\n".to_string(),
        })
    };
    let (addr, handle) = server();
    let (code, stderr) = client(addr, &tape, true);
    assert_eq!(code, 4, "{stderr}");
    handle.join().unwrap();
    let pending = dir.join("abc.txt.new");
    let text = std::fs::read_to_string(&pending).unwrap();
    let answers: Vec<&str> = text.lines().filter(|l| l.starts_with('<')).collect();
    assert_eq!(
        answers,
        ["< \"X\\n\"", "< \"z\\n\"", "< \"BYE\\n\""],
        "{text}"
    );
    let order: Vec<&str> = text.lines().filter(|l| l.starts_with(['<', '>'])).collect();
    assert_eq!(
        order,
        [
            "> \"A\\n\"",
            "< \"X\\n\"",
            "> \"B\\n\"",
            "> \"C\\n\"",
            "< \"z\\n\"",
            "> \"BYE\\n\"",
            "< \"BYE\\n\"",
        ],
        "{text}"
    );
    let (code, _, stderr) = run(&["review", "--accept", pending.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (addr, handle) = server();
    let (code, stderr) = client(addr, &tape, false);
    assert_eq!(code, 0, "{stderr}");
    handle.join().unwrap();
}

#[test]
fn a_stale_pending_tape_is_removed_by_a_run_that_matches() {
    let dir = temp_dir("snap-stale");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let pending = dir.join("login.txt.new");
    std::fs::write(&pending, "tcptape text 1\n").unwrap();
    let (v1, server) = line_server("v1", 1);
    let (code, stderr) = client(v1, &tape, true);
    assert_eq!(code, 0, "{stderr}");
    server.join().unwrap();
    assert!(
        !pending.exists(),
        "a run that matched removes the stale pending tape"
    );
}

#[test]
fn under_ci_the_environment_alone_writes_nothing() {
    let dir = temp_dir("snap-ci");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let (v2, server) = line_server("v2", 2);
    let mut command = tcptape();
    command
        .args(["client", &v2.to_string(), tape.to_str().unwrap()])
        .env("TCPTAPE_UPDATE", "1")
        .env("CI", "true");
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(!dir.join("login.txt.new").exists());
    // Outside CI, the variable is enough.
    let out = tcptape()
        .args(["client", &v2.to_string(), tape.to_str().unwrap()])
        .env("TCPTAPE_UPDATE", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.join().unwrap();
    assert!(dir.join("login.txt.new").exists());
}

/// Writes the v1 tape and a pending v2 tape beside it (by `client
/// --update` against a v2 server).
fn pending_v2(name: &str) -> (TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = temp_dir(name);
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let (v2, server) = line_server("v2", 1);
    let (code, stderr) = client(v2, &tape, true);
    assert_eq!(code, 4, "{stderr}");
    server.join().unwrap();
    let pending = dir.join("login.txt.new");
    assert!(pending.exists());
    (dir, tape, pending)
}

#[test]
fn review_diff_shows_only_the_changed_turn_and_changes_nothing() {
    let (dir, tape, pending) = pending_v2("snap-diff");
    let (code, stdout, stderr) = run(&["review", "--diff", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("- < \"WELCOME v1\\n\""), "{stdout}");
    assert!(stdout.contains("+ < \"WELCOME v2\\n\""), "{stdout}");
    assert!(
        !stdout.contains("BYE"),
        "only the change and its context: {stdout}"
    );
    assert!(!stdout.contains("\x1b["), "no colour off a terminal");
    assert!(pending.exists());
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), TAPE_V1);
}

#[test]
fn review_check_fails_while_anything_is_pending_and_accept_replaces_the_tape() {
    let (dir, tape, pending) = pending_v2("snap-accept");
    let (code, stdout, _) = run(&["review", "--check", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("pending: "), "{stdout}");
    let new = std::fs::read_to_string(&pending).unwrap();
    let (code, stdout, stderr) = run(&["review", "--accept", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("accepted"), "{stdout}");
    assert!(!pending.exists());
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), new);
    let (code, stdout, _) = run(&["review", "--check", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    // The next replay against v2 passes.
    let (v2, server) = line_server("v2", 1);
    let (code, stderr) = client(v2, &tape, false);
    assert_eq!(code, 0, "{stderr}");
    server.join().unwrap();
}

#[test]
fn review_reject_removes_the_pending_tape_and_keeps_the_old() {
    let (dir, tape, pending) = pending_v2("snap-reject");
    let (code, stdout, stderr) = run(&["review", "--reject", pending.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("rejected"), "{stdout}");
    assert!(!pending.exists());
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), TAPE_V1);
    drop(dir);
}

/// `review` touches tapes only: a user's `settings.conf.new` beside
/// `settings.conf`, or a pending tape that would replace a file that is no
/// tape, is left alone, found in a folder or named. A pending tape named
/// twice is one.
#[test]
fn review_leaves_files_that_are_not_tapes_alone() {
    let (dir, tape, pending) = pending_v2("snap-not-tapes");
    let conf = text_tape(&dir, "settings.conf", "port = 1\n");
    let draft = text_tape(&dir, "settings.conf.new", "port = 2\n");
    let dir_path = dir.to_str().unwrap().to_string();
    let (code, stdout, stderr) = run(&["review", "--reject", &dir_path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("rejected"), "{stdout}");
    assert!(!pending.exists(), "the pending tape was rejected");
    assert_eq!(std::fs::read_to_string(&draft).unwrap(), "port = 2\n");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "port = 1\n");
    for action in ["--accept", "--reject"] {
        let (code, _, stderr) = run(&["review", action, draft.to_str().unwrap()]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("not a pending tape"), "{stderr}");
        assert!(stderr.contains(&draft.display().to_string()), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&draft).unwrap(), "port = 2\n");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "port = 1\n");
    // A tape's draft for a file that is not a tape: left alone too.
    std::fs::copy(&tape, dir.join("notes.txt.new")).unwrap();
    std::fs::write(dir.join("notes.txt"), "my notes\n").unwrap();
    let (code, _, stderr) = run(&["review", "--accept", &dir_path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "my notes\n"
    );
    // Named twice, accepted once.
    let (addr, server) = line_server("v2", 1);
    let (code, stderr) = client(addr, &tape, true);
    assert_eq!(code, 4, "{stderr}");
    server.join().unwrap();
    let named = dir.join("login.txt.new");
    let dotted = format!("{}/./login.txt.new", dir.display());
    let (code, _, stderr) = run(&["review", "--accept", named.to_str().unwrap(), &dotted]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::read_to_string(&tape)
            .unwrap()
            .contains("WELCOME v2")
    );
}

#[test]
fn review_asks_one_key_per_tape_on_a_terminal() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs python3 for a pseudo-terminal");
        return;
    }
    let (dir, tape, pending) = pending_v2("snap-tty");
    let new = std::fs::read_to_string(&pending).unwrap();
    // A pseudo-terminal: review reads its key from it, then we send "a".
    let script = format!(
        r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv({bin:?}, [{bin:?}, "review", {dir:?}])
out = b""
while b"accept (a)" not in out:
    out += os.read(fd, 4096)
os.write(fd, b"a")
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(os.WEXITSTATUS(status))
"#,
        bin = bin(),
        dir = dir.to_str().unwrap(),
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("\x1b[32m+ < \"WELCOME v2\\n\""),
        "colour on a terminal: {shown}"
    );
    assert!(shown.contains("accepted"), "{shown}");
    assert!(!pending.exists());
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), new);
}

/// A binary server: each request is a u16 length and its bytes; the
/// answer to "VER" is a u16-prefixed "version=<v>;token=<t>".
fn binary_server(version: &'static str) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut len = [0u8; 2];
        while std::io::Read::read_exact(&mut stream, &mut len).is_ok() {
            let mut request = vec![0; u16::from_be_bytes(len) as usize];
            std::io::Read::read_exact(&mut stream, &mut request).unwrap();
            let answer = format!("version={version};token=zz9");
            let mut out = (answer.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(answer.as_bytes());
            stream.write_all(&out).unwrap();
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
    });
    (addr, handle)
}

#[test]
fn a_length_prefixed_field_that_grows_keeps_its_length_span() {
    let dir = temp_dir("snap-length");
    let tape = text_tape(
        &dir,
        "ver.txt",
        "tcptape text 1\n> 00 03 \"VER\"\n< [length u16be 21 00 15] \"version=v1;token=\" [vary 1..16 \"ab12\"]\neof >\neof <\n",
    );
    let (addr, server) = binary_server("v1.2.3");
    let (code, stderr) = client(addr, &tape, true);
    assert_eq!(code, 4, "{stderr}");
    server.join().unwrap();
    let new = std::fs::read_to_string(dir.join("ver.txt.new")).unwrap();
    assert!(new.contains("[length u16be 24 00 18]"), "{new}");
    assert!(new.contains("version=v1.2.3;token="), "{new}");
    assert!(new.contains("[vary 1..16 \"zz9\"]"), "{new}");
    // Accepted, it replays against the new server.
    std::fs::rename(dir.join("ver.txt.new"), &tape).unwrap();
    let (addr, server) = binary_server("v1.2.3");
    let (code, stderr) = client(addr, &tape, false);
    assert_eq!(code, 0, "{stderr}");
    server.join().unwrap();
}

/// A cassette of three tapes built from text: HELLO, PING and USE x, each
/// answered by the v1 server, then BYE.
fn three_tape_cassette(dir: &Path) -> std::path::PathBuf {
    let cassette = dir.join("pool");
    std::fs::create_dir(&cassette).unwrap();
    let session = |cmd: &str, answer: &str| {
        format!(
            "tcptape text 1\n> \"{cmd}\\n\"\n< \"{answer}\\n\"\n> \"BYE\\n\"\n< \"BYE\\n\"\neof <\neof >\n"
        )
    };
    let tapes = [
        ("HELLO", "WELCOME v1"),
        ("PING", "ERR PING"),
        ("USE x", "OK x"),
    ];
    for (i, (cmd, answer)) in tapes.iter().enumerate() {
        let src = dir.join(format!("{i}.txt"));
        std::fs::write(&src, session(cmd, answer)).unwrap();
        let out = cassette.join(format!("000{}.tape", i + 1));
        let (code, _, stderr) = run(&["build", src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
    }
    cassette
}

#[test]
fn in_a_cassette_only_the_tape_that_changed_gets_a_pending_tape() {
    let dir = temp_dir("snap-cassette");
    let cassette = three_tape_cassette(&dir);
    // The v2 server says another welcome; the other answers are the same
    // (the order the connections come in does not matter).
    let (v2, server) = line_server("v2", 3);
    let path = format!("{}/", cassette.display());
    let (code, _, stderr) = run(&["client", "--update", &v2.to_string(), &path]);
    assert_eq!(code, 4, "{stderr}");
    server.join().unwrap();
    let pending: Vec<String> = std::fs::read_dir(&cassette)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".new"))
        .collect();
    assert_eq!(pending, ["0001.tape.new"], "{stderr}");
    // A binary tape's pending tape is binary too.
    let (code, listing, _) = run(&["describe", cassette.join("0001.tape.new").to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(listing.contains("SERVER_TO_CLIENT"), "{listing}");
    // The cassette still serves (pending tapes are not its tapes).
    let (code, listing, stderr) = run(&["describe", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(listing.matches(".tape").count(), 3, "{listing}");
}

/// Accepted, a cassette's tape is described by its index again: its line
/// says what is on the tape now, and the other lines are left as they
/// were. An index that cannot be read fails the accept, naming it; a
/// user's file named `index` is left alone.
#[test]
fn accepting_a_cassette_tape_brings_its_index_line_up_to_date() {
    let dir = temp_dir("snap-cassette-index");
    let cassette = three_tape_cassette(&dir);
    // Byte counts no tape has, so that a line brought up to date shows.
    let header = "# tcptape cassette index\n# tape order start_ms client_bytes server_bytes first_speaker status\n";
    let stale = "0001.tape 1 0 99 99 server cut\n0002.tape 2 5 98 98 client whole\n0003.tape 3 9 97 97 client whole\n";
    std::fs::write(cassette.join("index"), format!("{header}{stale}")).unwrap();
    let (v2, server) = line_server("v2", 3);
    let path = format!("{}/", cassette.display());
    let (code, _, stderr) = run(&["client", "--update", &v2.to_string(), &path]);
    assert_eq!(code, 4, "{stderr}");
    server.join().unwrap();
    let (code, _, stderr) = run(&["review", "--accept", &path]);
    assert_eq!(code, 0, "{stderr}");
    let index = std::fs::read_to_string(cassette.join("index")).unwrap();
    // HELLO and BYE from the client; WELCOME v2 and BYE from the server.
    let fresh = "0001.tape 1 0 10 15 client whole\n0002.tape 2 5 98 98 client whole\n0003.tape 3 9 97 97 client whole\n";
    assert_eq!(index, format!("{header}{fresh}"));

    // Where the index cannot be read (not text past its header), the tape
    // is accepted, the index left as it is, and the failure names it.
    let update = |version: &'static str| {
        let (addr, server) = line_server(version, 3);
        let (code, _, stderr) = run(&["client", "--update", &addr.to_string(), &path]);
        assert_eq!(code, 4, "{stderr}");
        server.join().unwrap();
    };
    update("v3");
    let index = cassette.join("index");
    let unreadable = [header.as_bytes(), b"0001.tape 1 0 \xff\xfe\n"].concat();
    std::fs::write(&index, &unreadable).unwrap();
    let (code, _, stderr) = run(&["review", "--accept", &path]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&index.display().to_string()), "{stderr}");
    assert!(stderr.contains("cannot read cassette index"), "{stderr}");
    assert_eq!(std::fs::read(&index).unwrap(), unreadable);
    assert!(!cassette.join("0001.tape.new").exists());
    let (code, text, _) = run(&["print", cassette.join("0001.tape").to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(text.contains("WELCOME v3"), "{text}");

    // A file of the user's named `index` is not tcptape's: left alone.
    std::fs::write(&index, "my notes on these tapes\n").unwrap();
    update("v4");
    let (code, _, stderr) = run(&["review", "--accept", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&index).unwrap(),
        "my notes on these tapes\n"
    );
}

#[test]
fn the_library_mock_client_updates_and_reports_the_pending_tape() {
    let dir = temp_dir("snap-library");
    let tape = dir.join("login.txt");
    std::fs::write(&tape, TAPE_V1).unwrap();
    let (v2, server) = line_server("v2", 1);
    let err = tcptape::MockClient::builder(&tape)
        .connect(v2)
        .update(true)
        .run()
        .unwrap_err();
    server.join().unwrap();
    let report = err.report().expect("a verdict");
    assert_eq!(report.verdict(), tcptape::Verdict::Pending, "{err}");
    assert_eq!(report.pending(), [dir.join("login.txt.new")]);
    let new = std::fs::read_to_string(dir.join("login.txt.new")).unwrap();
    assert!(new.contains("< \"WELCOME v2\\n\""), "{new}");
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), TAPE_V1);
}

/// `client --update` plays a secret's value from the environment; what it
/// records of the session as it goes (`TAPE.new.partial`, on disk while
/// the session runs) has stars where the value went, never the value.
#[test]
fn client_update_never_records_a_secret_value_it_plays() {
    use std::io::Read;
    let dir = temp_dir("snap-secret-partial");
    let tape = text_tape(
        &dir,
        "auth.txt",
        "tcptape text 1\n> \"AUTH \" [secret PW \"********\"] \"\\r\\n\"\n< \"+OK\\r\\n\"\n> \"PING\\r\\n\"\n< \"+PONG\\r\\n\"\n",
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).unwrap();
            line.push(byte[0]);
        }
        // A long answer that departs: the recording goes to disk.
        let answer = [&b"+OK "[..], &vec![b'a'; 64 * 1024], b"\r\n"].concat();
        stream.write_all(&answer).unwrap();
        let _ = done_rx.recv();
        line
    });
    let mut client = tcptape()
        .args([
            "client",
            "--update",
            &addr.to_string(),
            tape.to_str().unwrap(),
        ])
        .env("PW", "hunter22")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = dir.join("auth.txt.new.partial");
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 64 * 1024 {
        assert!(std::time::Instant::now() < deadline, "no recording on disk");
        thread::sleep(std::time::Duration::from_millis(5));
    }
    // As a crash would leave it.
    client.kill().unwrap();
    client.wait().unwrap();
    done_tx.send(()).unwrap();
    assert_eq!(
        server.join().unwrap(),
        b"AUTH hunter22\r\n",
        "the value went out"
    );
    let recorded = std::fs::read(&partial).unwrap();
    assert!(
        !recorded.windows(8).any(|w| w == b"hunter22"),
        "the value is on disk"
    );
    assert!(
        recorded.windows(8).any(|w| w == b"********"),
        "stars in its place"
    );
}
