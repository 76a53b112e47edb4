//! The library API as a `cargo test` user meets it: mocks that listen
//! before `start` returns, verdicts as `Result`s, reports, drops that do
//! not hide failures.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::*;
use tcptape::{MockClient, MockServer, Outcome, Recorder, Verdict};

/// Plays echo.tape's client side to `addr`, with `second` as its second line.
fn echo_client(addr: std::net::SocketAddr, second: &[u8]) {
    let mut c = connect(addr);
    write_all(&mut c, b"qqq\n");
    assert_eq!(read_n(&mut c, 4), b"qqq\n");
    let _ = c.write_all(second);
    let _ = c.shutdown(Shutdown::Write);
    let _ = c.read_to_end(&mut Vec::new());
}

#[test]
fn a_mock_server_passes_and_reports_its_session() {
    let mock = MockServer::start(fixture("echo.tape")).unwrap();
    echo_client(mock.addr(), b"www\n");
    let report = mock.finish().unwrap();
    assert_eq!(report.verdict(), Verdict::Passed);
    let session = &report.sessions()[0];
    assert_eq!(session.outcome, Outcome::Passed);
    assert_eq!(session.bytes, [8, 8]);
    assert_eq!(
        session.tape.as_deref(),
        Some(fixture("echo.tape").as_path())
    );
}

#[test]
fn a_mismatch_is_an_error_that_says_so_and_carries_the_report() {
    let mock = MockServer::start(fixture("echo.tape")).unwrap();
    echo_client(mock.addr(), b"wwX\n");
    let err = mock.finish().unwrap_err();
    assert!(err.is_mismatch(), "{err}");
    assert!(matches!(&err, tcptape::Error::Verdict(report) if !report.passed()));
    let text = err.to_string();
    assert!(
        text.contains("byte 6 of its stream differs from the tape"),
        "{text}"
    );
    assert!(
        text.contains("first difference at byte 6: expected 0x77 'w', received 0x58 'X'"),
        "{text}"
    );
    let report = err.report().unwrap();
    assert_eq!(report.count(Outcome::Mismatch), 1);
}

#[test]
fn a_tape_never_played_is_a_failure_unless_allowed() {
    let err = MockServer::start(fixture("echo.tape"))
        .unwrap()
        .finish()
        .unwrap_err();
    assert!(err.is_mismatch());
    assert!(
        err.to_string()
            .contains("was never played: no client connected"),
        "{err}"
    );
    let allowed = MockServer::builder(fixture("echo.tape"))
        .allow_unused(true)
        .start()
        .unwrap();
    assert!(allowed.finish().unwrap().sessions().is_empty());
}

#[test]
fn dropping_a_mock_whose_session_mismatched_panics_with_the_report() {
    let panic = std::panic::catch_unwind(|| {
        let mock = MockServer::start(fixture("echo.tape")).unwrap();
        echo_client(mock.addr(), b"wwX\n");
        // Forgotten finish(): the drop must not hide the failure.
        drop(mock);
    })
    .unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("dropped without finish()"), "{message}");
    assert!(message.contains("differs from the tape"), "{message}");
}

#[test]
fn dropping_a_mock_that_passed_is_quiet() {
    let mock = MockServer::start(fixture("echo.tape")).unwrap();
    echo_client(mock.addr(), b"www\n");
    drop(mock);
}

#[test]
fn a_start_that_cannot_listen_is_an_error_before_anything_runs() {
    let (_taken, addr) = listener();
    let err = MockServer::builder(fixture("echo.tape"))
        .listen(&addr.to_string())
        .start()
        .err()
        .expect("the port is taken");
    assert!(err.to_string().contains("Address already in use"), "{err}");
    let err = MockServer::start("/nonexistent/t.tape")
        .err()
        .expect("no tape");
    assert!(!err.is_mismatch());
    assert_eq!(
        err.to_string(),
        "cannot open tape /nonexistent/t.tape: No such file or directory"
    );
    let err = MockServer::builder(fixture("echo.tape"))
        .listen("nonsense")
        .start()
        .err()
        .expect("a bad address");
    assert!(
        err.to_string().starts_with("listen address: 'nonsense'"),
        "{err}"
    );
}

#[test]
fn a_mock_on_a_unix_socket() {
    let dir = temp_dir("library-unix");
    let path = dir.join("mock.sock");
    let mock = MockServer::builder(fixture("halfclose-reply.tape"))
        .unix(&path)
        .once(true)
        .start()
        .unwrap();
    assert_eq!(mock.address(), format!("unix:{}", path.display()));
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.write_all(b"request body").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"got 12 bytes\n");
    mock.finish().unwrap();
    assert!(!path.exists(), "the socket file goes with the mock");
}

#[test]
fn a_mock_client_against_a_server_that_answers_wrong_is_a_mismatch() {
    let (addr, server) = serve_once(|mut s| {
        let mut request = [0; 12];
        s.read_exact(&mut request).unwrap();
        s.write_all(b"got 99 bytes\n").unwrap();
    });
    let err = MockClient::run(addr, fixture("halfclose-reply.tape")).unwrap_err();
    server.join().unwrap();
    assert!(err.is_mismatch(), "{err}");
    assert!(err.to_string().contains("mismatch with server"), "{err}");
}

#[test]
fn a_mock_client_that_waits_too_long_fails_with_what_it_waited_for() {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let (addr, server) = serve_once(move |mut s| {
        let _ = s.read_to_end(&mut Vec::new());
        // Holds the connection without a word until the test is over.
        let _ = wait.recv();
    });
    let err = MockClient::builder(fixture("halfclose-reply.tape"))
        .connect(addr)
        .timeout(Some(Duration::from_millis(300)))
        .run()
        .unwrap_err();
    assert!(!err.is_mismatch(), "a timeout is an error: {err}");
    assert!(
        err.to_string()
            .contains("timed out after 0.3s waiting for 13 more bytes from the server"),
        "{err}"
    );
    done.send(()).unwrap();
    server.join().unwrap();
}

#[test]
fn a_recorder_makes_a_cassette_that_a_mock_replays() {
    let dir = temp_dir("library-recorder");
    let cassette = dir.join("pool/");
    let (listener, upstream) = listener();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let got = read_to_end(&mut s);
            s.write_all(&got).unwrap();
        }
    });
    let rec = Recorder::start(upstream, &cassette).unwrap();
    for word in [&b"one"[..], b"two"] {
        let mut c = connect(rec.addr());
        write_all(&mut c, word);
        half_close(&c);
        assert_eq!(read_to_end(&mut c), word);
    }
    server.join().unwrap();
    let report = rec.finish().unwrap();
    assert_eq!(report.count(Outcome::Recorded), 2);
    assert_eq!(report.tapes().count(), 2);

    let mock = MockServer::start(&cassette).unwrap();
    for word in [&b"two"[..], b"one"] {
        let mut c = connect(mock.addr());
        write_all(&mut c, word);
        half_close(&c);
        assert_eq!(read_to_end(&mut c), word);
    }
    assert_eq!(mock.finish().unwrap().count(Outcome::Passed), 2);
}

#[test]
fn a_recorder_that_recorded_nothing_says_so() {
    let dir = temp_dir("library-nothing");
    let rec = Recorder::start(dead_addr(), dir.join("t.tape")).unwrap();
    let err = rec.finish().unwrap_err();
    assert!(err.to_string().contains("nothing was recorded"), "{err}");
    assert!(!dir.join("t.tape").exists());
}
