//! What users' files, hostile inputs and broken machines cannot do to
//! tcptape: lose data, hang it, or make it touch what it did not write.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tcptape::tape::{Direction, Writer};

/// A user's project folder: files tcptape did not write.
fn project(dir: &Path) {
    std::fs::write(dir.join("Cargo.toml"), b"[package]\n").unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
}

fn assert_untouched(dir: &Path) {
    assert_eq!(
        std::fs::read(dir.join("Cargo.toml")).unwrap(),
        b"[package]\n",
        "the user's file must survive"
    );
    assert!(dir.join(".git/HEAD").exists());
}

#[test]
fn recording_into_a_folder_that_is_not_a_cassette_touches_nothing() {
    let dir = temp_dir("hardening-project");
    project(&dir);
    let folder = format!("{}/", dir.display());
    // An address that does not resolve.
    let (code, _, stderr) = run(&["proxy", "127.0.0.1:0", "no.such.host.invalid:80", &folder]);
    assert_eq!(code, 1, "{stderr}");
    assert_untouched(&dir);
    // A listen port that is taken.
    let (_taken, addr) = listener();
    let (code, _, stderr) = run(&["proxy", &addr.to_string(), "127.0.0.1:9", &folder]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert_untouched(&dir);
    // Everything fine but the folder: refused, naming what is in it.
    let (code, _, stderr) = run(&["proxy", "127.0.0.1:0", "127.0.0.1:9", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot record a cassette into {}: the folder holds files tcptape did not write (Cargo.toml); record into a new or empty folder",
            dir.display()
        )),
        "{stderr}"
    );
    assert_untouched(&dir);
    // auto in record mode: the same.
    let out = tcptape()
        .args(["auto", "127.0.0.1:0", "127.0.0.1:9", &folder])
        .env("TCPTAPE_MODE", "record")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_untouched(&dir);
}

/// A file named as tcptape names tapes, that is no tape (a user's notes
/// in `0001.tape`, a draft in `0007.tape.new`), is not tcptape's: the
/// folder is refused, naming them, and they are kept.
#[test]
fn a_file_named_like_a_tape_that_is_none_is_not_replaced() {
    let dir = temp_dir("hardening-named-like-a-tape");
    std::fs::write(dir.join("0001.tape"), b"my precious notes\n").unwrap();
    std::fs::write(dir.join("0007.tape.new"), b"a draft\n").unwrap();
    let (code, _, stderr) = run(&["proxy", "127.0.0.1:0", "127.0.0.1:9", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("holds files tcptape did not write (0001.tape, 0007.tape.new)"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.join("0001.tape")).unwrap(),
        b"my precious notes\n"
    );
    assert_eq!(
        std::fs::read(dir.join("0007.tape.new")).unwrap(),
        b"a draft\n"
    );
}

#[test]
fn a_new_recording_replaces_only_tcptapes_own_files() {
    let dir = temp_dir("hardening-rerecord");
    let cassette = format!("{}/", dir.display());
    for name in ["0001.tape", "0002.tape", "0003.tape.partial"] {
        std::fs::copy(fixture("echo.tape"), dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("index"), "# tcptape cassette index\n").unwrap();
    std::fs::write(dir.join(".gitkeep"), b"").unwrap();
    let (upstream, server) = serve_once(|mut s| {
        let got = read_to_end(&mut s);
        s.write_all(&got).unwrap();
    });
    let proxy = spawn(
        &[
            "proxy",
            "--max-sessions",
            "1",
            "127.0.0.1:0",
            &upstream.to_string(),
            &cassette,
        ],
        true,
    );
    let mut c = connect(proxy.addr());
    write_all(&mut c, b"new");
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"new");
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".gitkeep", "0001.tape", "index"]);
}

#[test]
fn print_and_build_onto_their_own_input_replace_it_whole() {
    let dir = temp_dir("hardening-same-file");
    let tape = dir.join("t.tape");
    std::fs::copy(fixture("banner.tape"), &tape).unwrap();
    let (code, _, stderr) = run(&[
        "print",
        tape.to_str().unwrap(),
        "-o",
        tape.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&tape).unwrap();
    assert!(
        text.starts_with("tcptape text 1\n< \"220 mail.example ESMTP\\r\\n\"\n"),
        "{text}"
    );
    let (code, _, stderr) = run(&[
        "build",
        tape.to_str().unwrap(),
        "-o",
        tape.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read(&tape).unwrap(),
        std::fs::read(fixture("banner.tape")).unwrap()
    );

    // Through a symlink: the link becomes the output, its target stays.
    let target = dir.join("target.tape");
    std::fs::copy(fixture("echo.tape"), &target).unwrap();
    let link = dir.join("link.tape");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (code, _, stderr) = run(&[
        "print",
        link.to_str().unwrap(),
        "-o",
        link.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(fixture("echo.tape")).unwrap()
    );
    assert!(
        std::fs::read_to_string(&link)
            .unwrap()
            .starts_with("tcptape text 1\n")
    );
}

#[test]
fn a_tape_that_cannot_grow_keeps_its_complete_frames_and_the_others_stay_servable() {
    let dir = temp_dir("hardening-file-limit");
    let cassette = format!("{}/", dir.display());
    let (listener, upstream) = listener();
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut s, _) = listener.accept().unwrap();
            let got = read_to_end(&mut s);
            let _ = s.write_all(&got[..got.len().min(16)]);
        }
    });
    // A file size limit of 8 blocks (4 KiB for dash's 512-byte blocks):
    // the second session's upload cannot fit, as on a full disk.
    let script = format!(
        "ulimit -f 8 && exec {} proxy --max-sessions 3 127.0.0.1:0 {upstream} {cassette}",
        bin()
    );
    let proxy = spawn_shell(&script);
    for upload in [
        b"small one".to_vec(),
        vec![b'x'; 64 * 1024],
        b"small two".to_vec(),
    ] {
        let mut c = connect(proxy.addr());
        let _ = c.write_all(&upload);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let _ = c.read_to_end(&mut Vec::new());
    }
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    // The cut tape reads cleanly and says so; the index holds what is on tape.
    let (code, listing, err) = run(&["describe", &cassette]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "{listing}");
    assert!(
        lines[1].starts_with("0002.tape: ") && lines[1].ends_with("cut short while recording"),
        "{listing}"
    );
    let index = std::fs::read_to_string(dir.join("index")).unwrap();
    let second = index.lines().find(|l| l.starts_with("0002.tape ")).unwrap();
    let on_tape: u64 = second.split(' ').nth(3).unwrap().parse().unwrap();
    assert!(on_tape < 4096, "the index counts what is on tape: {second}");
    assert!(second.ends_with(" cut"), "{second}");
    // The cassette still serves: the whole tapes as recorded.
    let mock = spawn(&["server", "127.0.0.1:0", &cassette], true);
    let mut c = connect(mock.addr());
    write_all(&mut c, b"small two");
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"small two");
    mock.signal("TERM");
    let (_, _, stderr) = mock.finish();
    assert!(
        stderr.contains("0002.tape: the recording was cut short"),
        "{stderr}"
    );
}

#[test]
fn repair_keeps_the_complete_frames_of_an_interrupted_recording() {
    let dir = temp_dir("hardening-repair");
    let tape = dir.join("cut.tape");
    let whole = std::fs::read(fixture("bulk.tape")).unwrap();
    std::fs::write(&tape, &whole[..whole.len() - 100]).unwrap();
    let (code, _, stderr) = run(&["describe", tape.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "`tcptape repair {}` keeps its complete frames",
            tape.display()
        )),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&["repair", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("bytes of an incomplete last frame"),
        "{stdout}"
    );
    let (code, listing, stderr) = run(&["describe", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        listing
            .trim_end()
            .ends_with("tcptape repair removed an incomplete frame)"),
        "{listing}"
    );
    // It loads: the mock listens, then times out waiting for a client.
    let (code, _, stderr) = run(&[
        "server",
        "--once",
        "--timeout",
        "0.2",
        "127.0.0.1:0",
        tape.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cut short (frame"), "{stderr}");
    assert!(stderr.contains("waiting for a client"), "{stderr}");
    // Once whole, there is nothing more to do.
    let (code, stdout, _) = run(&["repair", tape.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.ends_with("whole, nothing to repair\n"), "{stdout}");
}

/// An upstream that answers every line with the same line, on any number
/// of connections, until the test is over.
fn echo_lines() -> SocketAddr {
    let (listener, addr) = listener();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if writer.write_all(format!("{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Says a line through the proxy and waits for its echo: it is on tape.
fn echoed(addr: SocketAddr) -> TcpStream {
    let mut c = connect(addr);
    write_all(&mut c, b"hello\n");
    assert_eq!(read_n(&mut c, 6), b"hello\n");
    c
}

#[test]
fn repair_marks_as_cut_a_recording_killed_between_frames() {
    // Issue 17: after kill -9 of a plain file's recording, repair said
    // "whole, nothing to repair", and the cut session replayed as passed.
    let dir = temp_dir("hardening-repair-killed");
    let tape = dir.join("t.tape");
    let upstream = echo_lines();
    let mut proxy = spawn(
        &[
            "proxy",
            "127.0.0.1:0",
            &upstream.to_string(),
            tape.to_str().unwrap(),
        ],
        true,
    );
    let open = echoed(proxy.addr());
    proxy.kill();
    drop(open);
    let (code, stdout, stderr) = run(&["repair", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.ends_with("but its session did not end: marked as cut\n"),
        "{stdout}"
    );
    let frames = tape_frames(&tape);
    assert_eq!(frames.last().unwrap().0, 0x83, "ends with a CUT frame");
    let (code, stdout, _) = run(&["repair", tape.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.ends_with("whole, nothing to repair\n"), "{stdout}");
}

#[test]
fn repair_of_a_killed_cassette_ends_every_tape_its_index_calls_cut_with_a_cut_frame() {
    // Issue 17: 99-100 of 100 repaired tapes lacked the CUT frame their
    // index line said they had.
    let dir = temp_dir("hardening-repair-killed-cassette");
    let cassette = format!("{}/", dir.display());
    let upstream = echo_lines();
    let mut proxy = spawn(
        &["proxy", "127.0.0.1:0", &upstream.to_string(), &cassette],
        true,
    );
    let open: Vec<TcpStream> = (0..20).map(|_| echoed(proxy.addr())).collect();
    proxy.kill();
    drop(open);
    let (code, stdout, stderr) = run(&["repair", &cassette]);
    assert_eq!(code, 0, "{stderr}");
    let index = std::fs::read_to_string(dir.join("index")).unwrap();
    let cut: Vec<&str> = index
        .lines()
        .filter(|line| line.ends_with(" cut"))
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    assert_eq!(cut.len(), 20, "{index}\n{stdout}");
    for tape in cut {
        let frames = tape_frames(&dir.join(tape));
        assert_eq!(
            frames.last().unwrap().0,
            0x83,
            "{tape} ends with a CUT frame"
        );
    }
}

#[test]
fn repair_of_a_cassette_gives_the_index_its_missing_tapes() {
    let dir = temp_dir("hardening-repair-cassette");
    std::fs::copy(fixture("echo.tape"), dir.join("0001.tape")).unwrap();
    let banner = std::fs::read(fixture("banner.tape")).unwrap();
    std::fs::write(dir.join("0002.tape"), &banner[..banner.len() - 3]).unwrap();
    std::fs::write(
        dir.join("index"),
        "# tcptape cassette index\n# tape order start_ms client_bytes server_bytes first_speaker status\n0001.tape 1 0 8 8 client whole\n",
    )
    .unwrap();
    let cassette = format!("{}/", dir.display());
    let (code, stdout, stderr) = run(&["repair", &cassette]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("0002.tape: added to the index as cut short"),
        "{stdout}"
    );
    let index = std::fs::read_to_string(dir.join("index")).unwrap();
    assert!(
        index.ends_with("0001.tape 1 0 8 8 client whole\n0002.tape 2 0 36 52 server cut\n"),
        "{index}"
    );
    let (code, _, stderr) = run(&["describe", &cassette]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_tape_that_goes_on_after_an_eof_is_refused_at_load() {
    let dir = temp_dir("hardening-concatenated");
    let joined = dir.join("joined.tape");
    let one = std::fs::read(fixture("halfclose-reply.tape")).unwrap();
    std::fs::write(&joined, [one.clone(), one].concat()).unwrap();
    for role in ["server", "client"] {
        let started = Instant::now();
        let (code, _, stderr) = run(&[role, "--once", "127.0.0.1:1", joined.to_str().unwrap()]
            .into_iter()
            .filter(|a| role == "server" || *a != "--once")
            .collect::<Vec<_>>());
        assert_eq!(code, 1, "{role}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            stderr.contains("frame 6 (tape offset 65): the client goes on after its EOF (frame 2): a tape holds one session"),
            "{role}: {stderr}"
        );
    }
    let text = dir.join("t.txt");
    std::fs::write(&text, "tcptape text 1\n> \"a\"\neof >\n> \"b\"\n< \"x\"\n").unwrap();
    let (code, _, stderr) = run(&[
        "server",
        "--once",
        "--timeout",
        "2",
        "127.0.0.1:0",
        text.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("frame 3 (line 4): the client goes on after its EOF"),
        "{stderr}"
    );
}

#[test]
fn a_live_unix_listener_with_a_full_queue_is_detected_without_blocking() {
    let dir = temp_dir("hardening-unix-full");
    let path = dir.join("busy.sock");
    let busy = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Fill its queue with connections it never accepts.
    let mut queued = Vec::new();
    loop {
        match mio::net::UnixStream::connect(&path) {
            Ok(stream) => queued.push(stream),
            Err(_) => break,
        }
        assert!(queued.len() < 100_000, "the queue never filled");
    }
    let started = Instant::now();
    let tape = fixture("echo.tape");
    let (code, _, stderr) = run(&[
        "server",
        &format!("unix:{}", path.display()),
        tape.to_str().unwrap(),
    ]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("another process is listening on it"),
        "{stderr}"
    );
    drop(busy);
}

#[test]
fn a_proxy_to_itself_is_refused() {
    let port = dead_addr().port();
    let listen = format!("127.0.0.1:{port}");
    let dir = temp_dir("hardening-loop");
    let cassette = format!("{}/", dir.display());
    let (code, _, stderr) = run(&["proxy", &listen, &listen, &cassette]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the proxy would connect to itself"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&*dir).unwrap().count(),
        0,
        "nothing written"
    );
}

/// A tape: the client sends `request`, the server answers `answer`.
fn request_tape(path: &Path, request: &[u8], answer: &[u8]) {
    let mut w = Writer::new(std::fs::File::create(path).unwrap()).unwrap();
    w.data(Direction::ClientToServer, request).unwrap();
    w.eof(Direction::ClientToServer).unwrap();
    w.data(Direction::ServerToClient, answer).unwrap();
}

#[test]
fn a_cassette_of_more_tapes_than_descriptors_is_served() {
    let dir = temp_dir("hardening-many-tapes");
    for i in 1..=300 {
        let name = format!("{i:04}.tape");
        request_tape(
            &dir.join(name),
            format!("GET {i}").as_bytes(),
            format!("ok {i}").as_bytes(),
        );
    }
    let cassette = format!("{}/", dir.display());
    let script = format!(
        "ulimit -n 64 && exec {} server --allow-unused 127.0.0.1:0 {cassette}",
        bin()
    );
    let mock = spawn_shell(&script);
    for i in [300, 1, 150] {
        let mut c = connect(mock.addr());
        write_all(&mut c, format!("GET {i}").as_bytes());
        half_close(&c);
        assert_eq!(read_to_end(&mut c), format!("ok {i}").as_bytes());
    }
    mock.signal("TERM");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_cassette_serves_only_tape_files_in_numeric_order() {
    let dir = temp_dir("hardening-strays");
    request_tape(&dir.join("10000.tape"), b"GET", b"second");
    request_tape(&dir.join("9999.tape"), b"GET", b"first");
    std::fs::write(dir.join("9999.tape~"), b"an editor's backup").unwrap();
    std::fs::write(dir.join("README.md"), b"# notes\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.tape")).unwrap();
    let cassette = format!("{}/", dir.display());
    let mut mock = spawn(&["server", "--once", "127.0.0.1:0", &cassette], true);
    for answer in [&b"first"[..], b"second"] {
        let mut c = connect(mock.addr());
        write_all(&mut c, b"GET");
        half_close(&c);
        assert_eq!(read_to_end(&mut c), answer);
    }
    mock.wait_for_line("ignoring README.md");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("ignoring passwd.tape"), "{stderr}");
    assert!(
        !stderr.contains("root:"),
        "never quote a file that is not a tape: {stderr}"
    );
}

#[test]
fn describe_of_a_cassette_into_a_closed_pipe_is_not_an_error() {
    let dir = temp_dir("hardening-describe-pipe");
    for i in 1..=1500 {
        std::fs::copy(
            fixture("halfclose-reply.tape"),
            dir.join(format!("{i:04}.tape")),
        )
        .unwrap();
    }
    let mut child = tcptape()
        .args(["describe", &format!("{}/", dir.display())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("0001.tape: "), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn describe_of_a_device_says_what_it_is() {
    let (code, _, stderr) = run(&["describe", "/dev/zero"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "error: /dev/zero: not a tape: not a regular file\n");
}

/// A tape zeroed in place while it streams to a client (issue 17: the
/// client got megabytes of zeros that were never on the tape): what the
/// client gets is a prefix of the tape, and the session fails naming it.
#[test]
fn a_tape_rewritten_in_place_while_it_streams_sends_nothing_that_is_not_the_tape() {
    use std::io::{Seek, SeekFrom};
    let dir = temp_dir("hardening-zeroed");
    let tape = dir.join("bulk.tape");
    const FRAME: usize = 8 << 20;
    let pattern: Vec<u8> = (0..FRAME).map(|i| (i % 251) as u8 + 1).collect();
    {
        let mut w = Writer::new(std::fs::File::create(&tape).unwrap()).unwrap();
        for _ in 0..8 {
            w.data(Direction::ServerToClient, &pattern).unwrap();
        }
        w.eof(Direction::ServerToClient).unwrap();
    }
    let mut mock = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    let mut c = connect(mock.addr());
    let first = read_n(&mut c, 1 << 20);
    assert_eq!(first, pattern[..1 << 20]);
    // Zeros over the middle of the tape, in place: same size.
    let mut file = std::fs::OpenOptions::new().write(true).open(&tape).unwrap();
    file.seek(SeekFrom::Start(24 << 20)).unwrap();
    file.write_all(&vec![0; 16 << 20]).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(
        !rest.contains(&0),
        "a zero byte reached the client ({} bytes after the first MiB)",
        rest.len()
    );
    assert!(
        rest.len() < 63 << 20,
        "the session went on: {} bytes",
        rest.len()
    );
    let line = mock.wait_for_line("changed on disk while it was served");
    assert!(line.contains("bulk.tape"), "{line}");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn a_tape_that_changes_on_disk_after_load_fails_its_sessions_with_a_log_line() {
    let dir = temp_dir("hardening-changed");
    let tape = dir.join("t.tape");
    std::fs::copy(fixture("halfclose-reply.tape"), &tape).unwrap();
    let mut mock = spawn(&["server", "127.0.0.1:0", tape.to_str().unwrap()], true);
    // Rewritten in place, shorter, while served.
    std::fs::write(
        &tape,
        &std::fs::read(fixture("halfclose-reply.tape")).unwrap()[..20],
    )
    .unwrap();
    let mut c = connect(mock.addr());
    let _ = c.write_all(b"request body");
    let _ = c.read_to_end(&mut Vec::new());
    let line = mock.wait_for_line("changed on disk while it was served");
    assert!(line.contains("t.tape"), "{line}");
    assert!(line.contains("its size went from 53 to 20 bytes"), "{line}");
    mock.signal("TERM");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 1, "{stderr}");
}

/// `-o` naming a pipe (or a device: `/dev/null`) writes into it: the pipe
/// stays a pipe, never replaced by a file.
#[test]
fn an_output_that_is_a_pipe_is_written_into_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let dir = temp_dir("hardening-fifo");
    let fifo = dir.join("out.pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let text = text_tape(&dir, "t.txt", "tcptape text 1\n> \"ping\"\n< \"pong\"\n");
    let reading = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let (code, _, stderr) = run(&[
        "build",
        text.to_str().unwrap(),
        "-o",
        fifo.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // Checked before the reader is waited for: a pipe replaced by a file
    // would leave it waiting for a writer forever.
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the pipe is still a pipe");
    let tape = reading.join().unwrap();
    assert!(tape.starts_with(b"\0\0\0\x08tcptape\0"), "{tape:?}");
}

/// Inputs with no end (`/dev/zero`) are refused, not read until memory
/// runs out: a text tape to build, a scan's allow-list.
#[test]
fn endless_inputs_are_refused_not_read_whole() {
    let dir = temp_dir("hardening-endless");
    let out = dir.join("x.tape");
    let (code, _, stderr) = run(&["build", "/dev/zero", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("/dev/zero: cannot read text tape: not a regular file"),
        "{stderr}"
    );
    assert!(!out.exists());
    let tape = text_tape(&dir, "t.txt", "tcptape text 1\n> \"ping\"\n");
    let (code, _, stderr) = run(&["scan", "--allow", "/dev/zero", tape.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("/dev/zero: over 1 MiB, not an allow-list"),
        "{stderr}"
    );
}

/// `repair` starts over only a tape killed while its magic was written
/// (its bytes begin the magic): a short file of other bytes, or an empty
/// one, is no tape and is left as it is.
#[test]
fn repair_leaves_a_short_file_that_is_no_tape_alone() {
    let dir = temp_dir("hardening-repair-short");
    let short = dir.join("small.bin");
    std::fs::write(&short, b"\xff\xfe\x00\x01\x02").unwrap();
    let empty = dir.join("empty.tape");
    std::fs::write(&empty, b"").unwrap();
    for (path, before) in [(&short, &b"\xff\xfe\x00\x01\x02"[..]), (&empty, &b""[..])] {
        let (code, _, stderr) = run(&["repair", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(stderr.contains("not a tape"), "{stderr}");
        assert_eq!(std::fs::read(path).unwrap(), before, "left as it was");
    }
    // Killed after 5 bytes of the magic: a tape started over, marked cut.
    let killed = dir.join("killed.tape");
    std::fs::write(&killed, b"\0\0\0\x08t").unwrap();
    let (code, _, stderr) = run(&["repair", killed.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, listing, stderr) = run(&["describe", killed.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(listing.contains("CUT"), "{listing}");
}
