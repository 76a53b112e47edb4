//! Faults on demand (`--fault SPEC`), end to end: the real binary and the
//! library against clients on loopback, redis-py and psql among them.
//! Each fault changes what the peer sees, never what is checked; a session
//! a fault ends is `faulted`, and passes. Timing is checked with generous
//! bounds only.

mod common;
mod peers;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use peers::*;
use tcptape::{MockClient, MockServer, Outcome};

/// The echo fixture: the client sends `qqq\n` and `www\n`, each echoed,
/// then both sides close (frames 1, 2, 4, 5, 7, 8).
fn echo_tape() -> String {
    fixture("echo.tape").to_str().unwrap().to_string()
}

/// Reads until EOF or an error (a reset): what came, and whether it
/// ended in an error.
fn read_until_gone(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, false),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (got, true),
        }
    }
}

/// The echo fixture's client, whole: true when every echo came back and
/// the server closed after it.
fn echo_client(addr: SocketAddr) -> bool {
    let mut stream = connect(addr);
    let mut ok = stream.write_all(b"qqq\n").is_ok();
    let mut echo = [0; 4];
    ok = ok && stream.read_exact(&mut echo).is_ok() && &echo == b"qqq\n";
    ok = ok && stream.write_all(b"www\n").is_ok();
    ok = ok && stream.read_exact(&mut echo).is_ok() && &echo == b"www\n";
    ok = ok && stream.shutdown(Shutdown::Write).is_ok();
    ok && read_until_gone(&mut stream) == (Vec::new(), false)
}

/// A mock server of `tape` with `args` before LISTEN and a JSON report.
fn serve(dir: &Path, tape: &str, args: &[&str]) -> (Running, PathBuf) {
    let report = dir.join(format!("report-{}.json", args.join("_").replace('/', "")));
    let mut all = vec!["server", "--report", report.to_str().unwrap()];
    all.extend(args);
    all.extend(["127.0.0.1:0", tape]);
    (spawn(&all, true), report)
}

/// Stops a mock that serves until stopped; its exit code and JSON report.
fn stop(mock: Running, report: &Path) -> (i32, String, String) {
    mock.signal("TERM");
    ended(mock, report)
}

/// Waits for a mock that ends by itself (`--once`); its exit code and
/// JSON report.
fn ended(mock: Running, report: &Path) -> (i32, String, String) {
    let (code, _, stderr) = mock.finish();
    (
        code,
        std::fs::read_to_string(report).unwrap_or_default(),
        stderr,
    )
}

/// The numbers of the sessions of a JSON report with `verdict`.
fn sessions_with(report: &str, verdict: &str) -> Vec<u64> {
    report
        .lines()
        .filter(|l| l.contains(&format!("\"verdict\": \"{verdict}\"")))
        .filter_map(|l| {
            l.split("\"number\": ")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn write_text(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_reset_at_a_byte_cuts_the_first_connection_and_the_next_one_passes() {
    let dir = temp_dir("fault-reset");
    let (mock, report) = serve(&dir, &echo_tape(), &["--fault", "reset,at=byte:3,conn=1"]);
    let mut first = connect(mock.addr());
    first.write_all(b"qqq\n").unwrap();
    assert_eq!(
        read_until_gone(&mut first),
        (b"qqq".to_vec(), true),
        "3 bytes, then an RST"
    );
    assert!(
        echo_client(mock.addr()),
        "the second connection is served whole"
    );
    let (code, report, stderr) = stop(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sessions_with(&report, "faulted"), [1]);
    assert_eq!(sessions_with(&report, "passed"), [2]);
    assert!(
        report.contains("\"message\": \"session 1 with 127.0.0.1:")
            && report.contains(
                ": reset (RST) by the fault 'reset,at=byte:3,conn=1' after 3 bytes down\""
            )
            && report.contains("\"faults\": [\"reset,at=byte:3,conn=1\"]}"),
        "{report}"
    );
    assert!(
        stderr.contains(
            "2 sessions: 1 passed, 1 ended by a fault; 1 fault injected; verdict: passed"
        ),
        "{stderr}"
    );
}

#[test]
fn a_close_at_a_frame_ends_the_connection_with_a_fin_before_that_frame() {
    let dir = temp_dir("fault-frame");
    let (mock, report) = serve(
        &dir,
        &echo_tape(),
        &["--once", "--fault", "close,at=frame:5,conn=1"],
    );
    let mut client = connect(mock.addr());
    client.write_all(b"qqq\n").unwrap();
    assert_eq!(read_n(&mut client, 4), b"qqq\n", "frame 2 goes");
    client.write_all(b"www\n").unwrap();
    assert_eq!(
        read_until_gone(&mut client),
        (Vec::new(), false),
        "a FIN before frame 5"
    );
    // A faulted session does not end --once: the client may try again.
    assert!(echo_client(mock.addr()));
    let (code, report, stderr) = ended(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sessions_with(&report, "faulted"), [1], "{report}");
}

#[test]
fn truncate_stops_the_bytes_but_the_session_goes_on_and_is_checked() {
    let dir = temp_dir("fault-truncate");
    let (mock, report) = serve(
        &dir,
        &echo_tape(),
        &["--once", "--fault", "truncate,at=byte:2"],
    );
    let mut client = connect(mock.addr());
    client.write_all(b"qqq\n").unwrap();
    client.write_all(b"www\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_gone(&mut client), (b"qq".to_vec(), false));
    let (code, report, stderr) = ended(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        sessions_with(&report, "passed"),
        [1],
        "every byte checked: {report}"
    );
    assert!(
        report.contains("\"faults\": [\"truncate,at=byte:2\"]"),
        "{report}"
    );

    // What the client sends is still checked after a fault.
    let (mock, report) = serve(&dir, &echo_tape(), &["--once", "--fault", "truncate"]);
    let mut client = connect(mock.addr());
    client.write_all(b"qqq\nwXw\n").unwrap();
    let _ = read_until_gone(&mut client);
    let (code, report, stderr) = ended(mock, &report);
    assert_eq!(code, 3, "{stderr}");
    assert!(report.contains("byte 5 of its stream differs"), "{report}");
}

#[test]
fn stall_makes_a_client_with_a_socket_timeout_time_out() {
    let dir = temp_dir("fault-stall");
    let (mock, report) = serve(&dir, &echo_tape(), &["--fault", "stall"]);
    let mut client = connect(mock.addr());
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    client.write_all(b"qqq\n").unwrap();
    let started = Instant::now();
    let err = client.read(&mut [0; 4]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The client gives up: the session ended by the fault.
    drop(client);
    let (code, report, stderr) = stop(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sessions_with(&report, "faulted"), [1], "{report}");
    assert!(
        report.contains("after the injected fault 'stall'"),
        "{report}"
    );
}

#[test]
fn a_cassette_tape_a_fault_cut_short_is_played_again() {
    let dir = temp_dir("fault-cassette");
    let cassette = dir.join("echo");
    std::fs::create_dir(&cassette).unwrap();
    std::fs::copy(fixture("echo.tape"), cassette.join("0001.tape")).unwrap();
    let cassette = format!("{}/", cassette.display());
    let (mock, report) = serve(
        &dir,
        &cassette,
        &["--once", "--fault", "reset,at=byte:2,conn=1"],
    );
    let mut client = connect(mock.addr());
    client.write_all(b"qqq\n").unwrap();
    assert_eq!(read_until_gone(&mut client), (b"qq".to_vec(), true));
    assert!(echo_client(mock.addr()), "the tape again, whole");
    let (code, report, stderr) = ended(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sessions_with(&report, "passed"), [2], "{report}");
}

#[test]
fn a_wait_a_fault_causes_is_not_the_peer_keeping_us_waiting() {
    let dir = temp_dir("fault-timeout");
    let args = ["--once", "--timeout", "0.3", "--fault", "latency=600"];
    let (mock, _) = serve(&dir, &echo_tape(), &args);
    assert!(
        echo_client(mock.addr()),
        "answers 600 ms late, past --timeout"
    );
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
    // A readiness probe stays a probe, whatever fault waited for it.
    let (mut mock, report) = serve(&dir, &echo_tape(), &["--allow-unused", "--fault", "stall"]);
    drop(connect(mock.addr()));
    mock.wait_for_line("a probe, not a session");
    let (code, report, stderr) = stop(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert!(report.contains("\"probes\": 1"), "{report}");
}

#[test]
fn a_reset_placed_in_time_comes_then() {
    let dir = temp_dir("fault-time");
    let (mock, _report) = serve(&dir, &echo_tape(), &["--fault", "reset,at=ms:300"]);
    let started = Instant::now();
    let mut client = connect(mock.addr());
    let (got, reset) = read_until_gone(&mut client);
    let waited = started.elapsed();
    assert!(got.is_empty() && reset);
    assert!(
        (Duration::from_millis(290)..Duration::from_secs(10)).contains(&waited),
        "{waited:?}"
    );
}

#[test]
fn stall_then_close_in_time_is_toxiproxys_timeout() {
    let dir = temp_dir("fault-timeout-toxic");
    let args = ["--fault", "stall", "--fault", "close,at=ms:300"];
    let (mock, report) = serve(&dir, &echo_tape(), &args);
    let started = Instant::now();
    let mut client = connect(mock.addr());
    client.write_all(b"qqq\n").unwrap();
    assert_eq!(read_until_gone(&mut client), (Vec::new(), false));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    let (code, report, stderr) = stop(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        report.contains("\"faults\": [\"stall\", \"close,at=ms:300\"]"),
        "{report}"
    );
}

#[test]
fn slow_close_holds_the_half_close_back() {
    let tape = fixture("halfclose-reply.tape");
    let dir = temp_dir("fault-slow-close");
    let (mock, _report) = serve(
        &dir,
        tape.to_str().unwrap(),
        &["--once", "--fault", "slow_close=300"],
    );
    let mut client = connect(mock.addr());
    client.write_all(b"request body").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let started = Instant::now();
    assert_eq!(read_n(&mut client, 13).len(), 13);
    let answered = started.elapsed();
    assert_eq!(read_until_gone(&mut client), (Vec::new(), false));
    let closed = started.elapsed();
    assert!(answered < Duration::from_millis(250), "{answered:?}");
    assert!(closed >= Duration::from_millis(290), "{closed:?}");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_chance_resets_the_same_connections_in_every_run() {
    let dir = temp_dir("fault-chance");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (mock, report) = serve(&dir, &echo_tape(), &["--fault", "reset,p=0.5,seed=7"]);
        // One after another, so the numbers are the clients' order.
        let served: Vec<u64> = (1..=16).filter(|_| echo_client(mock.addr())).collect();
        let (code, report, stderr) = stop(mock, &report);
        assert_eq!(code, 0, "{stderr}");
        let reset = sessions_with(&report, "faulted");
        let passed = sessions_with(&report, "passed");
        assert_eq!(reset.len() + passed.len(), 16, "{report}");
        assert_eq!(served.len(), passed.len());
        runs.push(reset);
    }
    assert_eq!(runs[0], runs[1], "the same connections both times");
    assert!(!runs[0].is_empty() && runs[0].len() < 16, "{:?}", runs[0]);
}

/// A tape of `turns` request/answer turns, then both sides close.
fn ping_pong(dir: &Path, turns: usize) -> String {
    let mut text = String::from("tcptape text 1\n");
    for turn in 0..turns {
        text += &format!("> \"ping {turn}\\n\"\n< \"pong {turn}\\n\"\n");
    }
    text += "eof >\neof <\n";
    write_text(dir, "ping-pong.txt", &text)
}

/// Plays the ping-pong client; how long each answer took.
fn ping_pong_client(addr: SocketAddr, turns: usize) -> Vec<Duration> {
    let mut stream = connect(addr);
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    let mut took = Vec::new();
    for turn in 0..turns {
        let started = Instant::now();
        stream
            .write_all(format!("ping {turn}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        took.push(started.elapsed());
        assert_eq!(line, format!("pong {turn}\n"));
    }
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut stream), b"");
    took
}

#[test]
fn latency_adds_its_milliseconds_to_each_server_turn() {
    let dir = temp_dir("fault-latency");
    let tape = ping_pong(&dir, 4);
    for (spec, low, high) in [
        ("latency=200", 195, 500),
        ("latency=200,jitter=50", 145, 500),
    ] {
        let (mock, _report) = serve(&dir, &tape, &["--once", "--fault", spec]);
        let took = ping_pong_client(mock.addr(), 4);
        for t in &took {
            let ms = t.as_millis();
            assert!((low..=high).contains(&ms), "{spec}: {took:?}");
        }
        let (code, _, stderr) = mock.finish();
        assert_eq!(code, 0, "{spec}: {stderr}");
    }
}

#[test]
fn bandwidth_paces_a_large_answer_to_its_rate() {
    let dir = temp_dir("fault-bandwidth");
    let tape = dir.join("bulk.tape");
    let body = random_bytes(4 << 20, 21);
    {
        let file = std::fs::File::create(&tape).unwrap();
        let mut writer = tcptape::tape::Writer::new(std::io::BufWriter::new(file)).unwrap();
        use tcptape::tape::Direction::{ClientToServer, ServerToClient};
        writer.data(ClientToServer, b"get\n").unwrap();
        for chunk in body.chunks(1 << 20) {
            writer.data(ServerToClient, chunk).unwrap();
        }
        writer.eof(ClientToServer).unwrap();
        writer.eof(ServerToClient).unwrap();
    }
    let (mock, _report) = serve(
        &dir,
        tape.to_str().unwrap(),
        &["--once", "--fault", "bandwidth=1M"],
    );
    let mut client = connect(mock.addr());
    let started = Instant::now();
    client.write_all(b"get\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let got = read_to_end(&mut client);
    let took = started.elapsed();
    assert!(got == body, "{} bytes", got.len());
    assert!(
        (Duration::from_millis(3500)..Duration::from_secs(6)).contains(&took),
        "4 MiB at 1 MiB/s took {took:?}"
    );
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn slices_of_one_byte_keep_a_line_based_client_whole() {
    let dir = temp_dir("fault-slice-lines");
    let tape = ping_pong(&dir, 3);
    let (mock, report) = serve(&dir, &tape, &["--once", "--fault", "slice=1"]);
    // Each answer arrives a byte at a time; the client reads whole lines.
    ping_pong_client(mock.addr(), 3);
    let (code, report, stderr) = ended(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert!(report.contains("\"faults\": [\"slice=1\"]"), "{report}");

    // A client that reads as bytes come sees them one write at a time.
    let (mock, _report) = serve(&dir, &tape, &["--once", "--fault", "slice=1,gap=20"]);
    let mut client = connect(mock.addr());
    client.write_all(b"ping 0\n").unwrap();
    let mut reads = 0;
    let mut got = Vec::new();
    while got.len() < 7 {
        let mut buf = [0; 64];
        let n = client.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(got, b"pong 0\n");
    assert_eq!(reads, 7, "20 ms apart, a byte each");
}

#[test]
fn the_mock_client_takes_faults_too() {
    let dir = temp_dir("fault-client");
    let (server, report) = serve(&dir, &echo_tape(), &["--once"]);
    let (code, _, stderr) = run(&[
        "client",
        "--fault",
        "slice=1",
        &server.addr().to_string(),
        &echo_tape(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 fault injected"), "{stderr}");
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::read_to_string(report)
            .unwrap()
            .contains("\"passed\"")
    );

    // A reset after its second byte, to a server that reads.
    let (addr, server) = serve_once(|mut stream| {
        let (got, reset) = read_until_gone(&mut stream);
        assert_eq!((got, reset), (b"qq".to_vec(), true));
    });
    let client_report = dir.join("client.json");
    let (code, _, stderr) = run(&[
        "client",
        "--report",
        client_report.to_str().unwrap(),
        "--fault",
        "reset,dir=up,at=byte:2",
        &addr.to_string(),
        &echo_tape(),
    ]);
    server.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    let report = std::fs::read_to_string(client_report).unwrap();
    assert_eq!(sessions_with(&report, "faulted"), [1], "{report}");
}

#[test]
fn a_bad_spec_is_a_usage_error_naming_it() {
    let (code, _, stderr) = run(&[
        "server",
        "--fault",
        "latency=fast",
        "127.0.0.1:0",
        &echo_tape(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(
            "error: --fault 'latency=fast': latency=fast: not a whole number of milliseconds"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[
        "proxy",
        "--fault",
        "reset,at=frame:3",
        "127.0.0.1:0",
        "127.0.0.1:1",
        "x.tape",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("at=frame:K is for replay"), "{stderr}");
}

#[test]
fn the_proxy_records_what_each_side_really_received() {
    let dir = temp_dir("fault-proxy");
    let tape = dir.join("faulted.tape");
    let (upstream, server) = serve_once(|mut stream| {
        let mut request = [0; 6];
        stream.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"abcdef");
        stream.write_all(b"hello world\n").unwrap();
    });
    let report = dir.join("proxy.json");
    let proxy = spawn(
        &[
            "proxy",
            "--report",
            report.to_str().unwrap(),
            "--fault",
            "slice=2,dir=up",
            "--fault",
            "latency=150,dir=down",
            "--fault",
            "truncate,at=byte:5",
            "127.0.0.1:0",
            &upstream.to_string(),
            tape.to_str().unwrap(),
        ],
        true,
    );
    let mut client = connect(proxy.addr());
    let started = Instant::now();
    client.write_all(b"abcdef").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"hello", "5 bytes, then the end");
    assert!(started.elapsed() >= Duration::from_millis(145));
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");
    let frames = tape_frames(&tape);
    let up: Vec<&Vec<u8>> = frames.iter().filter(|f| f.0 == 1).map(|f| &f.2).collect();
    assert!(
        up.iter().all(|p| p.len() <= 2),
        "the server got slices: {up:?}"
    );
    assert_eq!(tape_stream(&tape, 1), b"abcdef");
    assert_eq!(tape_stream(&tape, 2), b"hello", "what the client got");
    let delays: u64 = (frames.iter())
        .filter(|f| f.0 == tcptape::tape::Kind::Delay.opcode())
        .map(|f| u64::from(f.1))
        .sum();
    assert!(delays >= 145, "the latency is on tape: {delays} ms");
    let report = std::fs::read_to_string(report).unwrap();
    assert!(
        report.contains("\"verdict\": \"recorded\"")
            && report.contains(
                "\"faults\": [\"slice=2,dir=up\", \"latency=150,dir=down\", \"truncate,at=byte:5\"]"
            ),
        "{report}"
    );
}

#[test]
fn a_reset_through_the_proxy_cuts_the_tape_where_it_fired() {
    let dir = temp_dir("fault-proxy-reset");
    let tape = dir.join("reset.tape");
    let (upstream, server) = serve_once(|mut stream| {
        let mut request = [0; 3];
        stream.read_exact(&mut request).unwrap();
        stream.write_all(b"hello world\n").unwrap();
        let _ = read_until_gone(&mut stream);
    });
    let proxy = spawn(
        &[
            "proxy",
            "--fault",
            "reset,at=byte:3",
            "127.0.0.1:0",
            &upstream.to_string(),
            tape.to_str().unwrap(),
        ],
        true,
    );
    let mut client = connect(proxy.addr());
    client.write_all(b"ask").unwrap();
    assert_eq!(read_until_gone(&mut client), (b"hel".to_vec(), true));
    server.join().unwrap();
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 ended by a fault"), "{stderr}");
    assert_eq!(tape_stream(&tape, 2), b"hel");
    let (code, described, _) = run(&["describe", tape.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        described.contains("CUT (the recording ended here: reset (RST) by the fault"),
        "{described}"
    );
}

#[test]
fn set_faults_on_a_running_mock_server_takes_effect_for_the_next_bytes() {
    let mock = MockServer::start(fixture("echo.tape")).unwrap();
    assert!(echo_client(mock.addr()));
    mock.set_faults(&["reset,at=byte:2"]).unwrap();
    let mut client = connect(mock.addr());
    client.write_all(b"qqq\n").unwrap();
    assert_eq!(read_until_gone(&mut client), (b"qq".to_vec(), true));
    mock.clear_faults();
    assert!(echo_client(mock.addr()));

    // A connection open while the faults change.
    let mut client = connect(mock.addr());
    client.write_all(b"qqq\n").unwrap();
    assert_eq!(read_n(&mut client, 4), b"qqq\n");
    mock.set_faults(&["stall"]).unwrap();
    client.write_all(b"www\n").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(client.read(&mut [0; 4]).is_err(), "stalled: no answer");
    mock.clear_faults();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(read_n(&mut client, 4), b"www\n", "flowing again");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"");

    let err = mock.set_faults(&["stall", "reset=now"]).unwrap_err();
    assert_eq!(err.to_string(), "fault: 'reset=now': reset takes no value");
    let report = mock.finish().unwrap();
    let outcomes: Vec<Outcome> = report.sessions().iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Passed,
            Outcome::Faulted,
            Outcome::Passed,
            Outcome::Passed
        ]
    );
    assert_eq!(report.sessions()[3].faults, ["stall"]);
}

#[test]
fn the_builders_take_faults_and_refuse_bad_ones() {
    let tape = fixture("echo.tape");
    let err = MockServer::builder(&tape)
        .fault("slice=0")
        .start()
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("fault: 'slice=0': slice=0: not a number"),
        "{err}"
    );
    let mock = MockServer::builder(&tape).fault("slice=1").start().unwrap();
    let report = MockClient::builder(&tape)
        .connect(mock.addr())
        .fault("latency=20")
        .run()
        .unwrap();
    assert_eq!(report.sessions()[0].faults, ["latency=20"]);
    let report = mock.finish().unwrap();
    assert_eq!(report.sessions()[0].faults, ["slice=1"]);
    let err = MockClient::builder(&tape)
        .connect(dead_addr())
        .fault("truncate,dir=down")
        .run()
        .unwrap_err();
    assert!(
        err.to_string().contains("a mock client sends up only"),
        "{err}"
    );
}

// Real clients: redis-py and psql.

/// redis-py, retrying `retries` times on a connection error.
fn redis_retry(port: u16, retries: u32) -> Result<(), String> {
    python_peer("redis_retry.py", &[port.to_string(), retries.to_string()])
}

#[test]
fn redis_py_retries_after_a_reset_in_its_first_answer_and_passes() {
    let Some((redis, addr)) = redis_server() else {
        return;
    };
    let dir = temp_dir("fault-redis");
    let tape = dir.join("redis.tape");
    let recorded = record_through_proxy(addr, &tape, |proxy| redis_retry(proxy.port(), 3));
    assert_eq!(recorded, Ok(()));
    drop(redis);
    let tape = tape.to_str().unwrap();

    let fault = ["--fault", "reset,at=byte:3,conn=1"];
    let (mock, report) = serve(&dir, tape, &[&["--once"], &fault[..]].concat());
    assert_eq!(redis_retry(mock.addr().port(), 3), Ok(()));
    let (code, report, stderr) = ended(mock, &report);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sessions_with(&report, "faulted"), [1], "{report}");
    assert_eq!(sessions_with(&report, "passed"), [2], "{report}");
    assert!(report.contains("after 3 bytes down"), "{report}");

    // Without retries the same fault fails the client: it bites.
    let (mock, report) = serve(&dir, tape, &fault);
    let failed = redis_retry(mock.addr().port(), 0).unwrap_err();
    assert!(failed.contains("Connection"), "{failed}");
    let (code, _, stderr) = stop(mock, &report);
    assert_eq!(code, 0, "{stderr}");

    // Every answer a byte at a time: redis-py's parser copes.
    let (mock, _) = serve(&dir, tape, &["--once", "--fault", "slice=1"]);
    assert_eq!(redis_retry(mock.addr().port(), 0), Ok(()));
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn psql_reads_answers_sliced_into_single_bytes() {
    let Some(bin) = postgres_bin().filter(|_| installed("psql", &["--version"])) else {
        eprintln!("skipped: needs PostgreSQL's server and psql");
        return;
    };
    let dir = temp_dir("fault-psql");
    let server = postgres(&bin, &dir, &["-A", "trust"], dead_addr());
    let tape = dir.join("psql.tape");
    let answer = record_through_proxy(server.addr, &tape, |proxy| psql(proxy, "postgres", ""));
    assert_eq!(answer, Ok("42".into()));
    drop(server);
    let (mock, _) = serve(
        &dir,
        tape.to_str().unwrap(),
        &["--once", "--fault", "slice=1"],
    );
    assert_eq!(psql(mock.addr(), "postgres", ""), Ok("42".into()));
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn set_faults_on_a_running_recorder_takes_effect_for_the_next_sessions() {
    let dir = temp_dir("fault-recorder-set");
    let cassette = dir.join("rec");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0; 3];
            stream.read_exact(&mut request).unwrap();
            stream.write_all(b"hello world\n").unwrap();
            let _ = read_until_gone(&mut stream);
        }
    });
    let rec = tcptape::Recorder::start(upstream, format!("{}/", cassette.display())).unwrap();
    let session = |addr| {
        let mut client = connect(addr);
        client.write_all(b"ask").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut client)
    };
    assert_eq!(session(rec.addr()), b"hello world\n");
    rec.set_faults(&["truncate,at=byte:5"]).unwrap();
    assert_eq!(session(rec.addr()), b"hello", "truncated from now on");
    let err = rec.set_faults(&["truncate=5"]).unwrap_err();
    assert!(err.to_string().starts_with("fault: 'truncate=5'"), "{err}");
    rec.clear_faults();
    assert_eq!(session(rec.addr()), b"hello world\n", "and whole again");
    server.join().unwrap();
    rec.finish().unwrap();
    assert_eq!(
        tape_stream(&cassette.join("0001.tape"), 2),
        b"hello world\n"
    );
    assert_eq!(tape_stream(&cassette.join("0002.tape"), 2), b"hello");
    assert_eq!(
        tape_stream(&cassette.join("0003.tape"), 2),
        b"hello world\n"
    );
}

#[test]
fn slices_of_varied_sizes_as_toxiproxys_slicer() {
    let dir = temp_dir("fault-slice-vary");
    let sizes = |run: usize| {
        let tape = dir.join(format!("vary{run}.tape"));
        let up: Vec<u8> = (0..400u32).map(|i| b'a' + (i % 26) as u8).collect();
        let expected = up.clone();
        let (upstream, server) = serve_once(move |mut stream| {
            assert!(
                read_to_end(&mut stream) == expected,
                "the server got other bytes"
            );
        });
        let proxy = spawn(
            &[
                "proxy",
                "--fault",
                "slice=8,vary=6,dir=up,seed=5",
                "127.0.0.1:0",
                &upstream.to_string(),
                tape.to_str().unwrap(),
            ],
            true,
        );
        let mut client = connect(proxy.addr());
        client.write_all(&up).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let _ = read_to_end(&mut client);
        server.join().unwrap();
        let (code, _, stderr) = proxy.finish();
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(tape_stream(&tape, 1), up);
        tape_frames(&tape)
            .into_iter()
            .filter(|f| f.0 == 1)
            .map(|f| f.2.len())
            .collect::<Vec<usize>>()
    };
    let first = sizes(1);
    let (last, whole) = first.split_last().unwrap();
    assert!(*last <= 14);
    assert!(whole.iter().all(|n| (2..=14).contains(n)), "{first:?}");
    let mut distinct = whole.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 5, "sizes vary: {first:?}");
    assert_eq!(sizes(2), first, "seed=5: the same slices every run");
}
