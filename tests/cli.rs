//! The command line through the real binary: describe, help, version,
//! usage errors and their exit codes.

mod common;

use common::*;

#[test]
fn describe_prints_the_reference_listings() {
    for name in ["echo", "halfclose-reply", "banner", "bulk"] {
        let tape = fixture(&format!("{name}.tape"));
        let expected = std::fs::read_to_string(fixture(&format!("{name}.describe"))).unwrap();
        let (code, stdout, stderr) = run(&["describe", tape.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert_eq!(stdout, expected, "{name}");
        assert_eq!(stderr, "", "{name}");
    }
}

#[test]
fn describe_verbose_shows_payloads() {
    let tape = fixture("banner.tape");
    let (code, stdout, _) = run(&["describe", "-v", tape.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("1: SERVER_TO_CLIENT (24 bytes)\n    00000000  32 32 30 20"),
        "{stdout}"
    );
    assert!(stdout.contains("|220 mail.example|"), "{stdout}");
}

#[test]
fn describe_of_a_bad_tape_lists_then_fails() {
    let dir = temp_dir("cli-bad-tape");
    let tape = dir.join("bad.tape");
    let mut bytes = std::fs::read(fixture("echo.tape")).unwrap();
    bytes.truncate(26);
    std::fs::write(&tape, &bytes).unwrap();
    let (code, stdout, stderr) = run(&["describe", tape.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "0: NOOP\n1: CLIENT_TO_SERVER (4 bytes)\n");
    assert_eq!(
        stderr,
        format!(
            "error: {}: tape truncated at offset 20 in frame 2: 4 payload bytes announced, 2 present (the recording was interrupted? `tcptape repair {}` keeps its complete frames)\n",
            tape.display(),
            tape.display()
        )
    );
}

#[test]
fn describe_of_a_file_that_is_not_a_tape() {
    let dir = temp_dir("cli-not-tape");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "hello\n").unwrap();
    let (code, _, stderr) = run(&["describe", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    // The file's line is not quoted: it may be anything.
    assert_eq!(
        stderr,
        format!(
            "error: {}:1:1: not a tape: a text tape starts with 'tcptape text 1', a binary tape with the tcptape magic\n",
            path.display()
        )
    );
    // Bytes that are not text either: the binary reader's verdict.
    std::fs::write(&path, [0x07, 0xff, 0xfe]).unwrap();
    let (code, _, stderr) = run(&["describe", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "error: {}: not a tape: no tcptape magic at offset 0\n",
            path.display()
        )
    );
}

#[test]
fn describe_of_a_missing_file() {
    let (code, stdout, stderr) = run(&["describe", "/nonexistent/t.tape"]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert_eq!(
        stderr,
        "error: cannot open tape /nonexistent/t.tape: No such file or directory\n"
    );
}

#[test]
fn help_and_version() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for command in ["proxy", "server", "client", "describe"] {
        assert!(stdout.contains(command), "{stdout}");
    }
    let (code, stdout, _) = run(&["proxy", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("usage: tcptape proxy [OPTIONS] LISTEN CONNECT FILE"));
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("tcptape {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2_with_the_usage_line() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[],
            "error: missing command",
            "usage: tcptape <proxy|server|client|",
        ),
        (
            &["replay"],
            "error: unknown command 'replay'",
            "usage: tcptape <proxy",
        ),
        (
            &["describe"],
            "error: missing argument FILE",
            "usage: tcptape describe [-v] FILE",
        ),
        (
            &["proxy", "127.0.0.1:0", "localhost", "t.tape"],
            "error: CONNECT: 'localhost' is not an address: expected HOST:PORT",
            "usage: tcptape proxy",
        ),
        (
            &["server", "--speed", "fast", "127.0.0.1:0", "t.tape"],
            "error: --speed: 'fast' is not a positive number",
            "usage: tcptape server",
        ),
        (
            &["client", "--once", "127.0.0.1:1", "t.tape"],
            "error: invalid option '--once'",
            "usage: tcptape client",
        ),
    ];
    for (args, first, second) in cases {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines[0], *first, "{args:?}");
        assert!(lines[1].starts_with(second), "{args:?}: {stderr}");
    }
}

#[test]
fn unresolvable_host_is_an_error_naming_it() {
    let (code, _, stderr) = run(&["client", "no-such-host.invalid:80", "t.tape"]);
    assert_eq!(code, 1);
    let tape = fixture("echo.tape");
    let (code2, _, stderr2) = run(&["client", "no-such-host.invalid:80", tape.to_str().unwrap()]);
    assert_eq!(code2, 1);
    // The tape is opened first, then the name resolved.
    assert!(stderr.contains("cannot open tape t.tape"), "{stderr}");
    assert!(
        stderr2.contains("cannot resolve no-such-host.invalid:80"),
        "{stderr2}"
    );
}

#[test]
fn describe_into_a_closed_pipe_is_not_an_error() {
    use std::process::Stdio;
    // As in `tcptape describe -v big.tape | head -1`.
    let tape = fixture("bulk.tape");
    let mut child = tcptape()
        .args(["describe", "-v", tape.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
