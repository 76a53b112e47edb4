//! Error paths not covered by the feature tests: each gives one clear line
//! naming what is at fault, and its documented exit code.

mod common;

use std::io::Write;

use common::*;

fn last_line(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or("")
}

#[test]
fn max_sessions_needs_a_numbered_file_or_a_cassette() {
    let (code, _, stderr) = run(&[
        "proxy",
        "127.0.0.1:0",
        "127.0.0.1:1",
        "t.tape",
        "--max-sessions",
        "2",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: --max-sessions needs a FILE with {n} or a cassette folder"),
        "{stderr}"
    );
    assert!(stderr.contains("usage: tcptape proxy"), "{stderr}");
}

#[test]
fn a_cassette_that_cannot_be_created_is_named() {
    let (code, _, stderr) = run(&["proxy", "127.0.0.1:0", "127.0.0.1:1", "/dev/null/pool/"]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        "error: cannot record a cassette into /dev/null/pool/: Not a directory"
    );
}

#[test]
fn print_and_build_name_the_output_they_cannot_write() {
    let dir = temp_dir("errors-output");
    let echo = fixture("echo.tape");
    let (code, _, stderr) = run(&[
        "print",
        echo.to_str().unwrap(),
        "-o",
        "/nonexistent/dir/t.txt",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        "error: cannot write /nonexistent/dir/t.txt: No such file or directory"
    );

    let text = dir.join("t.txt");
    std::fs::write(&text, "tcptape text 1\n> \"x\"\n").unwrap();
    let (code, _, stderr) = run(&[
        "build",
        text.to_str().unwrap(),
        "-o",
        "/nonexistent/dir/t.tape",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        "error: cannot write tape /nonexistent/dir/t.tape: No such file or directory"
    );

    let (code, _, stderr) = run(&["build", "/nonexistent/t.txt", "-o", "x.tape"]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        "error: cannot read text tape /nonexistent/t.txt: No such file or directory"
    );
}

#[test]
fn an_empty_or_missing_cassette_is_refused() {
    let dir = temp_dir("errors-empty-cassette");
    let cassette = format!("{}/", dir.display());
    let (code, _, stderr) = run(&["server", "127.0.0.1:0", &cassette]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        format!("error: {cassette}: the cassette holds no tapes (*.tape files)")
    );

    let (code, _, stderr) = run(&["server", "127.0.0.1:0", "/nonexistent/pool/"]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        "error: cannot read cassette /nonexistent/pool/: No such file or directory"
    );
}

#[test]
fn describe_of_a_cassette_lists_every_tape_and_fails_on_a_bad_one() {
    let dir = temp_dir("errors-describe-cassette");
    std::fs::copy(fixture("echo.tape"), dir.join("0001.tape")).unwrap();
    std::fs::write(dir.join("0002.tape"), b"\0\0\0\x08tcptape\0\x01\0\0\x09abc").unwrap();
    std::fs::copy(fixture("banner.tape"), dir.join("0003.tape")).unwrap();
    std::fs::write(dir.join("index"), "# not a tape, skipped\n").unwrap();
    let (code, stdout, stderr) = run(&["describe", &format!("{}/", dir.display())]);
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(
        lines[0],
        "0001.tape: 9 frames, client 8 bytes, server 8 bytes, client spoke first, 300 ms of delays, both sides closed"
    );
    assert!(lines[1].starts_with("0002.tape: error: "), "{stdout}");
    assert!(
        lines[1].contains("9 payload bytes announced, 3 present (the recording was interrupted?"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(
            "0003.tape: 13 frames, client 36 bytes, server 52 bytes, server spoke first"
        )
    );
    assert_eq!(lines[3], "3 tapes");
    assert!(last_line(&stderr).contains(
        "0002.tape: tape truncated at offset 12 in frame 1: 9 payload bytes announced, 3 present"
    ));
}

#[test]
fn auto_refuses_a_numbered_path() {
    let (code, _, stderr) = run(&["auto", "127.0.0.1:0", "127.0.0.1:1", "s{n}.tape"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: PATH: auto takes a tape or a cassette folder"),
        "{stderr}"
    );
}

#[test]
fn a_peer_reset_is_a_mismatch() {
    // The server speaks first; the client sends the start of its command
    // and leaves without reading the greeting, so its kernel resets the
    // connection.
    let tape = fixture("banner.tape");
    let server = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    let mut client = connect(server.addr());
    write_all(&mut client, b"EH");
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(client);
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("it reset the connection at byte 2 of its stream before the tape's end"),
        "{stderr}"
    );
}

#[test]
fn a_cassette_connection_that_never_speaks_times_out() {
    let dir = temp_dir("errors-choosing-timeout");
    let mut writer =
        tcptape::tape::Writer::new(std::fs::File::create(dir.join("0001.tape")).unwrap()).unwrap();
    writer
        .data(tcptape::tape::Direction::ClientToServer, b"hello")
        .unwrap();
    writer.get_mut().flush().unwrap();
    let cassette = format!("{}/", dir.display());
    let mut server = spawn(
        &[
            "server",
            "--once",
            "--timeout",
            "0.3",
            "127.0.0.1:0",
            &cassette,
        ],
        true,
    );
    let _silent = connect(server.addr());
    let line = server.wait_for_line("timed out");
    assert!(
        line.ends_with(&format!(
            "timed out after 0.3s waiting for the client's first bytes, to choose a tape of {cassette} (--timeout; 0 waits forever)"
        )),
        "{line}"
    );
    // --once: the run cannot pass any more, so it ends at once.
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("verdict: error"), "{stderr}");
}
