//! The recording proxy end to end: the real binary between real sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use common::*;

const C2S: u8 = 1;
const S2C: u8 = 2;
const DELAY: u8 = 3;
const C2S_EOF: u8 = 4;
const S2C_EOF: u8 = 5;

/// Starts `tcptape proxy` on an ephemeral port in front of `upstream`.
fn record(upstream: std::net::SocketAddr, tape: &std::path::Path, extra: &[&str]) -> Running {
    let upstream = upstream.to_string();
    let mut args = vec!["proxy", "127.0.0.1:0", &upstream, tape.to_str().unwrap()];
    args.extend_from_slice(extra);
    spawn(&args, true)
}

/// The tape's frames without DELAYs, which depend on timing.
fn frames_without_delays(path: &std::path::Path) -> Vec<(u8, Vec<u8>)> {
    tape_frames(path)
        .into_iter()
        .filter(|(op, _, _)| *op != DELAY)
        .map(|(op, _, payload)| (op, payload))
        .collect()
}

/// Coalesces consecutive data frames of one direction, since chunking
/// depends on how TCP delivered the bytes.
fn coalesced(frames: Vec<(u8, Vec<u8>)>) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for (op, payload) in frames {
        match out.last_mut() {
            Some((last, bytes)) if *last == op && (op == C2S || op == S2C) => {
                bytes.extend_from_slice(&payload)
            }
            _ => out.push((op, payload)),
        }
    }
    out
}

#[test]
fn echo_session_is_recorded_frame_by_frame() {
    let dir = temp_dir("proxy-echo");
    let tape = dir.join("echo.tape");
    let (upstream, server) = serve_once(|mut s| {
        let mut buf = [0; 4];
        for _ in 0..2 {
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
        assert_eq!(read_to_end(&mut s), b"");
        half_close(&s);
    });
    let proxy = record(upstream, &tape, &[]);
    let mut client = connect(proxy.addr());
    for line in [b"qqq\n", b"www\n"] {
        write_all(&mut client, line);
        assert_eq!(read_n(&mut client, 4), line);
    }
    half_close(&client);
    assert_eq!(read_to_end(&mut client), b"");
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");

    let frames = frames_without_delays(&tape);
    assert_eq!(
        frames,
        vec![
            (0, b"tcptape\0".to_vec()),
            (C2S, b"qqq\n".to_vec()),
            (S2C, b"qqq\n".to_vec()),
            (C2S, b"www\n".to_vec()),
            (S2C, b"www\n".to_vec()),
            (C2S_EOF, vec![]),
            (S2C_EOF, vec![]),
        ]
    );
    assert!(stderr.contains("session 1: closed"), "{stderr}");
    assert!(
        stderr.contains("client to server 8 bytes, server to client 8 bytes"),
        "{stderr}"
    );
}

#[test]
fn client_half_closes_first_and_still_gets_the_answer() {
    let dir = temp_dir("proxy-halfclose-client");
    let tape = dir.join("t.tape");
    let (upstream, server) = serve_once(|mut s| {
        let request = read_to_end(&mut s);
        s.write_all(format!("got {} bytes\n", request.len()).as_bytes())
            .unwrap();
    });
    let proxy = record(upstream, &tape, &[]);
    let mut client = connect(proxy.addr());
    write_all(&mut client, b"request body");
    half_close(&client);
    assert_eq!(read_to_end(&mut client), b"got 12 bytes\n");
    server.join().unwrap();
    assert_eq!(proxy.finish().0, 0);
    assert_eq!(
        coalesced(frames_without_delays(&tape)),
        vec![
            (0, b"tcptape\0".to_vec()),
            (C2S, b"request body".to_vec()),
            (C2S_EOF, vec![]),
            (S2C, b"got 12 bytes\n".to_vec()),
            (S2C_EOF, vec![]),
        ]
    );
}

#[test]
fn server_speaks_first_and_closes_first() {
    let dir = temp_dir("proxy-server-first");
    let tape = dir.join("t.tape");
    let (upstream, server) = serve_once(|mut s| {
        s.write_all(b"220 ready\r\n").unwrap();
        half_close(&s);
        // The client keeps talking after our half-close; we still read it.
        assert_eq!(read_to_end(&mut s), b"QUIT\r\n");
    });
    let proxy = record(upstream, &tape, &[]);
    let mut client = connect(proxy.addr());
    assert_eq!(read_to_end(&mut client), b"220 ready\r\n");
    write_all(&mut client, b"QUIT\r\n");
    half_close(&client);
    server.join().unwrap();
    assert_eq!(proxy.finish().0, 0);
    assert_eq!(
        coalesced(frames_without_delays(&tape)),
        vec![
            (0, b"tcptape\0".to_vec()),
            (S2C, b"220 ready\r\n".to_vec()),
            (S2C_EOF, vec![]),
            (C2S, b"QUIT\r\n".to_vec()),
            (C2S_EOF, vec![]),
        ]
    );
}

#[test]
fn pauses_are_recorded_as_delays() {
    let dir = temp_dir("proxy-delay");
    let tape = dir.join("t.tape");
    let (upstream, server) = serve_once(|mut s| {
        assert_eq!(read_n(&mut s, 1), b"a");
        thread::sleep(std::time::Duration::from_millis(120));
        s.write_all(b"b").unwrap();
        half_close(&s);
        read_to_end(&mut s);
    });
    let proxy = record(upstream, &tape, &[]);
    let mut client = connect(proxy.addr());
    write_all(&mut client, b"a");
    assert_eq!(read_to_end(&mut client), b"b");
    half_close(&client);
    server.join().unwrap();
    assert_eq!(proxy.finish().0, 0);
    let frames = tape_frames(&tape);
    let position = |op| frames.iter().position(|f| f.0 == op).unwrap();
    let between = &frames[position(C2S)..position(S2C)];
    let delay: u32 = between.iter().filter(|f| f.0 == DELAY).map(|f| f.1).sum();
    // The server paused 120 ms; scheduling on a busy machine only adds.
    assert!(
        (115..2000).contains(&delay),
        "delay {delay} ms in {frames:?}"
    );
}

#[test]
fn eight_mib_each_way_at_once() {
    const SIZE: usize = 8 * 1024 * 1024;
    let dir = temp_dir("proxy-bulk");
    let tape = dir.join("bulk.tape");
    let up = random_bytes(SIZE, 1);
    let down = random_bytes(SIZE, 2);
    let (down_for_server, up_expected) = (down.clone(), up.clone());
    let (upstream, server) = serve_once(move |s| {
        // Write and read at the same time, so both directions are in flight.
        let mut writer = s.try_clone().unwrap();
        let sender = thread::spawn(move || {
            writer.write_all(&down_for_server).unwrap();
            half_close(&writer);
        });
        let mut reader = s;
        assert!(
            read_to_end(&mut reader) == up_expected,
            "server got other bytes"
        );
        sender.join().unwrap();
    });
    let proxy = record(upstream, &tape, &["--buffer", "64K"]);
    let client = connect(proxy.addr());
    let mut writer = client.try_clone().unwrap();
    let up_for_client = up.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&up_for_client).unwrap();
        half_close(&writer);
    });
    let mut reader = client;
    assert!(read_to_end(&mut reader) == down, "client got other bytes");
    sender.join().unwrap();
    server.join().unwrap();
    assert_eq!(proxy.finish().0, 0);
    assert!(
        tape_stream(&tape, C2S) == up,
        "tape's client stream differs"
    );
    assert!(
        tape_stream(&tape, S2C) == down,
        "tape's server stream differs"
    );
    let frames = tape_frames(&tape);
    assert_eq!(frames.iter().filter(|f| f.0 == C2S_EOF).count(), 1);
    assert_eq!(frames.iter().filter(|f| f.0 == S2C_EOF).count(), 1);
}

/// Write-behind: a long recording is handed to the disk as it goes and
/// its older pages leave the page cache, so a 64 MiB tape holds at most
/// about 24 MiB of it once recorded (plain writes would leave all 64).
#[test]
fn a_long_recording_leaves_the_page_cache_as_it_goes() {
    const SIZE: usize = 64 * 1024 * 1024;
    if std::process::Command::new("fincore")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs fincore (util-linux-extra)");
        return;
    }
    // On the disk under target/, not a tmpfs, whose pages never leave.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("write-behind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tape = dir.join("long.tape");
    let up = random_bytes(SIZE, 3);
    let expected = up.clone();
    let (upstream, server) = serve_once(move |mut s| {
        assert!(read_to_end(&mut s) == expected, "server got other bytes");
    });
    let proxy = record(upstream, &tape, &[]);
    let mut client = connect(proxy.addr());
    client.write_all(&up).unwrap();
    half_close(&client);
    let _ = read_to_end(&mut client);
    server.join().unwrap();
    assert_eq!(proxy.finish().0, 0);

    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(&tape)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let resident: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("fincore said {text:?}"));
    assert!(
        resident <= 32 * 1024 * 1024,
        "{resident} bytes of the tape still in the page cache"
    );
    assert!(
        tape_stream(&tape, C2S) == up,
        "tape's client stream differs"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fifty_concurrent_sessions_with_numbered_tapes() {
    const SESSIONS: usize = 50;
    let dir = temp_dir("proxy-daemon");
    let template = dir.join("s{n}.tape");
    let (listener, upstream) = listener();
    let server = thread::spawn(move || {
        let mut handles = Vec::new();
        for _ in 0..SESSIONS {
            let (mut s, _) = listener.accept().unwrap();
            handles.push(thread::spawn(move || {
                let request = read_to_end(&mut s);
                s.write_all(&request).unwrap();
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    let proxy = record(
        upstream,
        &template,
        &["--max-sessions", &SESSIONS.to_string()],
    );
    let addr = proxy.addr();
    // All clients connected before any sends, so the sessions overlap.
    let clients: Vec<TcpStream> = (0..SESSIONS).map(|_| connect(addr)).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || {
                let message = format!("client {i} says hello");
                write_all(&mut c, message.as_bytes());
                half_close(&c);
                assert_eq!(read_to_end(&mut c), message.as_bytes());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");
    let mut seen: Vec<String> = (1..=SESSIONS)
        .map(|n| {
            let path = dir.join(format!("s{n}.tape"));
            String::from_utf8(tape_stream(&path, C2S)).unwrap()
        })
        .collect();
    seen.sort();
    let mut expected: Vec<String> = (0..SESSIONS)
        .map(|i| format!("client {i} says hello"))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(!dir.join(format!("s{}.tape", SESSIONS + 1)).exists());
}

#[test]
fn refused_upstream_leaves_no_tape_and_the_daemon_goes_on() {
    let dir = temp_dir("proxy-refused");
    let template = dir.join("s{n}.tape");
    let upstream = dead_addr();
    let mut proxy = record(upstream, &template, &["--max-sessions", "2"]);
    let mut first = connect(proxy.addr());
    // The proxy closes the client whose server can't be reached.
    let mut buf = Vec::new();
    let _ = first.read_to_end(&mut buf);
    assert!(buf.is_empty());
    let line = proxy.wait_for_line("cannot connect to");
    assert!(
        line.ends_with(&format!(
            "session 1: cannot connect to {upstream}: Connection refused"
        )),
        "{line}"
    );
    assert!(!dir.join("s1.tape").exists());

    // Now the server is up at the same address: the next session works.
    let listener = std::net::TcpListener::bind(upstream).unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let got = read_to_end(&mut s);
        s.write_all(&got).unwrap();
    });
    let mut second = connect(proxy.addr());
    write_all(&mut second, b"again");
    half_close(&second);
    assert_eq!(read_to_end(&mut second), b"again");
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    // Not everything was recorded: the verdict says so.
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("tcptape: proxy: 2 sessions: 1 recorded, 1 failed; verdict: error"),
        "{stderr}"
    );
    // Tapes are numbered as they are made: the failed session made none.
    assert_eq!(tape_stream(&dir.join("s1.tape"), C2S), b"again");
    assert!(!dir.join("s2.tape").exists());
}

#[test]
fn refused_upstream_fails_a_single_session_proxy() {
    let dir = temp_dir("proxy-refused-single");
    let tape = dir.join("t.tape");
    let upstream = dead_addr();
    let proxy = record(upstream, &tape, &[]);
    let client = connect(proxy.addr());
    let (code, _, stderr) = proxy.finish();
    drop(client);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "\nerror: session 1: cannot connect to {upstream}: Connection refused\nerror: nothing was recorded"
        )),
        "{stderr}"
    );
    assert!(!tape.exists());
}

#[test]
fn full_disk_aborts_the_session_with_the_file_named() {
    let (upstream, server) = serve_once(|mut s| {
        let _ = s.read(&mut [0; 16]);
    });
    let proxy = record(upstream, std::path::Path::new("/dev/full"), &[]);
    let mut client = connect(proxy.addr());
    let _ = client.write_all(b"hello");
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing may be forwarded unrecorded");
    let (code, _, stderr) = proxy.finish();
    server.join().unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .contains("\nerror: session 1: cannot write tape /dev/full: No space left on device\n"),
        "{stderr}"
    );
}

#[test]
fn idle_timeout_ends_a_session_whose_server_never_reads() {
    let dir = temp_dir("proxy-idle");
    let tape = dir.join("t.tape");
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (upstream, server) = serve_once(move |_s| {
        // Never reads; holds the connection until the test is over.
        let _ = wait.recv();
    });
    let proxy = record(
        upstream,
        &tape,
        &["--buffer", "4K", "--idle-timeout", "0.5"],
    );
    let client = connect(proxy.addr());
    client.set_nonblocking(true).unwrap();
    let mut writer = client.try_clone().unwrap();
    // Fill every buffer on the way until the client blocks.
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0usize;
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5) {
        match writer.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent > 0);
    let (code, _, stderr) = proxy.finish();
    let _ = release.send(());
    server.join().unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .contains("timed out after 0.5s waiting for a byte from either side (--idle-timeout)"),
        "{stderr}"
    );
    // What was recorded is a valid tape holding a prefix of what was sent.
    let recorded = tape_stream(&tape, C2S);
    assert!(!recorded.is_empty() && recorded.len() <= sent);
    assert!(recorded.iter().all(|&b| b == 7));
}

#[test]
fn kill_9_mid_transfer_keeps_everything_the_server_received() {
    let dir = temp_dir("proxy-kill");
    let tape = dir.join("t.tape");
    let data = random_bytes(32 * 1024 * 1024, 9);
    let (got_tx, got_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let (upstream, server) = serve_once(move |mut s| {
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got_tx.send(got).unwrap();
    });
    let mut proxy = record(upstream, &tape, &[]);
    let mut client = connect(proxy.addr());
    let to_send = data.clone();
    let sender = thread::spawn(move || {
        let _ = client.write_all(&to_send);
    });
    // Kill once a good part is through, while bytes are still moving.
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::fs::metadata(&tape).map(|m| m.len()).unwrap_or(0) < 4 * 1024 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "proxy recorded nothing"
        );
        thread::yield_now();
    }
    proxy.kill();
    sender.join().unwrap();
    let received = got_rx.recv().unwrap();
    server.join().unwrap();

    // Complete frames hold at least what the server got; a truncated last
    // frame is reported, never misread.
    let bytes = std::fs::read(&tape).unwrap();
    let mut reader = tcptape::tape::Reader::new(bytes.as_slice());
    let mut recorded = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) if frame.kind.opcode() == C2S => {
                reader.read_payload_into(&mut recorded).unwrap()
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(err) => {
                assert!(err.to_string().starts_with("tape truncated"), "{err}");
                break;
            }
        }
    }
    assert!(!received.is_empty());
    assert!(
        recorded.len() >= received.len(),
        "{} < {}",
        recorded.len(),
        received.len()
    );
    assert!(recorded[..received.len()] == received[..]);
    assert!(recorded == data[..recorded.len()]);
}

#[test]
fn listen_address_in_use_is_an_error_naming_it() {
    let (_busy, addr) = listener();
    let (code, _, stderr) = run(&["proxy", &addr.to_string(), "127.0.0.1:1", "/tmp/x.tape"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end().lines().last().unwrap(),
        format!("error: cannot listen on {addr}: Address already in use")
    );
}

/// An upstream that echoes every chunk at once, one thread per connection.
fn chunk_echo() -> std::net::SocketAddr {
    let (listener, addr) = listener();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// True when `client` gets `ping` echoed within a second.
fn echoes(client: &mut TcpStream) -> bool {
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let _ = client.write_all(b"ping");
    let mut buf = [0; 4];
    client.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

#[test]
fn out_of_file_descriptors_is_logged_and_the_daemon_recovers() {
    let dir = temp_dir("proxy-emfile");
    let template = dir.join("s{n}.tape");
    let upstream = chunk_echo();
    let script = format!(
        "ulimit -n 16 && exec {} proxy 127.0.0.1:0 {upstream} {}",
        bin(),
        template.display()
    );
    let mut proxy = spawn_shell(&script);
    let addr = proxy.addr();
    // Each session holds three descriptors (client, server, tape): open
    // sessions until the proxy runs out.
    let mut held = Vec::new();
    let mut starved = None;
    for _ in 0..16 {
        let mut client = connect(addr);
        if echoes(&mut client) {
            held.push(client);
        } else {
            starved = Some(client);
            break;
        }
    }
    assert!(starved.is_some(), "16 descriptors never ran out");
    proxy.wait_for_line("Too many open files");
    // Free the held sessions; the proxy serves again.
    for client in &held {
        half_close(client);
    }
    drop(held);
    let mut fresh = connect(addr);
    let deadline = std::time::Instant::now() + PATIENCE;
    while !echoes(&mut fresh) {
        assert!(std::time::Instant::now() < deadline, "{}", proxy.stderr());
        fresh = connect(addr);
    }
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the daemon must keep running"
    );
}

#[test]
fn a_client_reset_ends_its_session_and_the_daemon_goes_on() {
    let dir = temp_dir("proxy-reset");
    let template = dir.join("s{n}.tape");
    let (listener, upstream) = listener();
    let server = thread::spawn(move || {
        // First session: flood the client, which will reset.
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(&vec![1u8; 16 * 1024 * 1024]);
        drop(s);
        // Second session: a normal echo.
        let (mut s, _) = listener.accept().unwrap();
        let got = read_to_end(&mut s);
        s.write_all(&got).unwrap();
    });
    let mut proxy = record(upstream, &template, &["--max-sessions", "2"]);
    let mut flooded = connect(proxy.addr());
    // Take a little, then close with unread data pending: the kernel resets.
    read_n(&mut flooded, 1024);
    drop(flooded);
    let line = proxy.wait_for_line("session 1: cannot");
    assert!(
        line.contains("client 127.0.0.1:") && line.contains("Connection reset by peer")
            || line.contains("Broken pipe"),
        "{line}"
    );
    let mut next = connect(proxy.addr());
    write_all(&mut next, b"still here");
    half_close(&next);
    assert_eq!(read_to_end(&mut next), b"still here");
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(
        code, 1,
        "a session cut by a reset was not recorded whole: {stderr}"
    );
    assert!(stderr.contains("1 recorded, 1 failed"), "{stderr}");
    // The reset session's tape is valid and holds what went through.
    let first = tape_stream(&dir.join("s1.tape"), S2C);
    assert!(first.len() >= 1024 && first.iter().all(|&b| b == 1));
}
