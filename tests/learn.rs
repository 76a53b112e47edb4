//! `tcptape learn` through the binary: recordings whose values differ the
//! way real protocols' do, the spans and comments learned from them, the
//! learned text through build and print, cassettes, and every refusal.

mod common;

use std::path::Path;

use common::*;
use tcptape::tape::text::{parse, print};
use tcptape::tape::{Direction, Reader, Writer};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

/// What changes from one run of the scenario to the next.
struct Run {
    date: &'static str,
    message_id: &'static str,
    key: [u8; 8],
    session: &'static str,
    request_id: &'static str,
}

const RUNS: [Run; 3] = [
    Run {
        date: "Wed, 25 Nov 2026 09:31:29 GMT",
        message_id: "a8f3k2",
        key: [0x9f, 0x01, 0xee, 0x80, 0x11, 0xc4, 0x07, 0xfe],
        session: "Zx81kQ0aaP3mW7vB",
        request_id: "8f2a91c4",
    },
    Run {
        date: "Thu, 03 Dec 2026 17:02:11 GMT",
        message_id: "zq81bbc7x0",
        key: [0x10, 0xa2, 0x03, 0xb4, 0xf5, 0x06, 0xe7, 0x98],
        session: "b7Tq2LmN0pQr8sXy",
        request_id: "00aa11bb",
    },
    Run {
        date: "Mon, 11 Jan 2027 23:45:01 GMT",
        message_id: "7Hq",
        key: [0xc1, 0xd2, 0xe3, 0xf4, 0x85, 0x96, 0x17, 0x1c],
        session: "mm93LLpq0e1RtYu5",
        request_id: "5d6e7f80",
    },
];

/// A login and a request: the client picks a request id that the server
/// echoes, the server picks a session the client sends back, and the
/// server's answer has a date, a message id of any length and a binary
/// key.
fn session(run: &Run) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut w = Writer::new(&mut bytes).unwrap();
    let login = format!(
        "POST /login HTTP/1.1\r\nHost: example\r\nX-Request-Id: {}\r\n\r\n",
        run.request_id
    );
    w.data(C2S, login.as_bytes()).unwrap();
    w.delay(12).unwrap();
    let head = format!(
        "HTTP/1.1 200 OK\r\nDate: {}\r\nMessage-ID: <{}@mail.example>\r\nX-Request-Id: {}\r\nSet-Cookie: session={}\r\nX-Key: ",
        run.date, run.message_id, run.request_id, run.session
    );
    w.data(S2C, &[head.as_bytes(), &run.key[..], b"\r\n\r\n"].concat())
        .unwrap();
    let get = format!(
        "GET /data HTTP/1.1\r\nCookie: session={}\r\n\r\n",
        run.session
    );
    w.data(C2S, get.as_bytes()).unwrap();
    w.data(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .unwrap();
    w.eof(C2S).unwrap();
    w.eof(S2C).unwrap();
    bytes
}

/// Writes the recordings of `runs` into `dir`; returns their paths.
fn recordings(dir: &Path, runs: &[Run]) -> Vec<String> {
    runs.iter()
        .enumerate()
        .map(|(i, run)| {
            let path = dir.join(format!("run{}.tape", i + 1));
            std::fs::write(&path, session(run)).unwrap();
            path.to_str().unwrap().to_string()
        })
        .collect()
}

/// The three runs recorded into `dir` and learned into `dir/learned.txt`.
fn learned_from_runs(dir: &Path) -> (Vec<String>, std::path::PathBuf) {
    let inputs = recordings(dir, &RUNS);
    let out = dir.join("learned.txt");
    let (code, stderr) = learn(&[
        &inputs[0],
        &inputs[1],
        &inputs[2],
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    (inputs, out)
}

fn learn(args: &[&str]) -> (i32, String) {
    let mut all = vec!["learn"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(&all);
    assert_eq!(stdout, "", "learn writes nothing on stdout");
    (code, stderr)
}

/// The number of the line holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
        + 1
}

#[test]
fn values_that_change_become_spans_with_their_reasons() {
    let dir = temp_dir("learn-spans");
    let (inputs, out) = learned_from_runs(&dir);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with(&format!(
            "tcptape text 1\n\
             # learned by tcptape learn from 3 recordings: the first, with the bytes\n\
             # that differ between them as spans\n\
             #   {}\n#   {}\n#   {}\n",
            inputs[0], inputs[1], inputs[2]
        )),
        "{text}"
    );
    // The request id the client picks, echoed by the server.
    let echo_id = line_of(&text, "[echo X-Request-Id \"8f2a91c4\"]");
    assert!(
        text.contains(&format!(
            "> [capture X-Request-Id \"8f2a91c4\"]   # capture X-Request-Id: varies in 3 of 3 recordings, 8 bytes; echoed by the server at line {echo_id}\n"
        )),
        "{text}"
    );
    let capture_id = line_of(&text, "[capture X-Request-Id");
    assert!(
        text.contains(&format!(
            "< [echo X-Request-Id \"8f2a91c4\"]   # echo X-Request-Id: the value the client sent at line {capture_id}\n"
        )),
        "{text}"
    );
    // The date, fixed in length; the message id, of any length.
    assert!(
        text.contains(
            "< [vary \"Wed, 25 Nov 2026 09:31:29\"]   # varies in 3 of 3 recordings, 25 bytes\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("< [vary 1..36 \"a8f3k2\"]   # varies in 3 of 3 recordings, 3..10 bytes\n"),
        "{text}"
    );
    // The binary key, in hex.
    assert!(
        text.contains(
            "< [vary 9f 01 ee 80 11 c4 07 fe]   # varies in 3 of 3 recordings, 8 bytes\n"
        ),
        "{text}"
    );
    // The session the server picks, sent back by the client.
    let echo_session = line_of(&text, "[echo session");
    assert!(
        text.contains(&format!(
            "< [capture session \"Zx81kQ0aaP3mW7vB\"]   # capture session: varies in 3 of 3 recordings, 16 bytes; echoed by the client at line {echo_session}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("> [echo session \"Zx81kQ0aaP3mW7vB\"]   # echo session: the value the server sent at line"),
        "{text}"
    );
    // What does not change stays as recorded, delays and EOFs too.
    assert!(text.contains("delay 12ms\n"), "{text}");
    assert!(text.contains("\"ok\"\neof >\neof <\n"), "{text}");
    assert_eq!(text.matches('[').count(), 7, "{text}");

    // The learned tape is a tape: it builds, describes, and prints back
    // as it was written (without the comments).
    let built = dir.join("learned.tape");
    let (code, _, stderr) = run(&[
        "build",
        out.to_str().unwrap(),
        "-o",
        built.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, listing, _) = run(&["describe", out.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        listing.contains("SPAN_SERVER_TO_CLIENT (vary, 6 bytes recorded, 1..36 live)"),
        "{listing}"
    );
    let binary = std::fs::read(&built).unwrap();
    let mut printed = Vec::new();
    print(&mut Reader::new(binary.as_slice()), &mut printed).unwrap();
    let printed = String::from_utf8(printed).unwrap();
    let without_comments: String = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| match line.find("   # ") {
            Some(at) => format!("{}\n", &line[..at]),
            None => format!("{line}\n"),
        })
        .collect();
    assert_eq!(printed, without_comments);
    assert!(parse(&printed).unwrap() == binary);
    // The first recording's bytes are all there, in its order.
    assert_eq!(
        tape_stream(&built, 0x02),
        tape_stream(Path::new(&inputs[0]), 0x02)
    );
    assert_eq!(
        tape_stream(&built, 0x01),
        tape_stream(Path::new(&inputs[0]), 0x01)
    );
}

#[test]
fn two_recordings_are_enough_and_equal_ones_have_no_spans() {
    let dir = temp_dir("learn-two");
    let inputs = recordings(&dir, &RUNS[..2]);
    let out = dir.join("two.txt");
    let (code, stderr) = learn(&[&inputs[0], &inputs[1], "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("[vary 3..36 \"a8f3k2\"]"), "{text}");
    assert!(
        text.contains("varies in 2 of 2 recordings, 6..10 bytes"),
        "{text}"
    );

    // The same recording twice: nothing differs.
    let (code, stderr) = learn(&[&inputs[0], &inputs[0], "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains('['), "{text}");
    let (_, plain, _) = run(&["print", &inputs[0]]);
    assert_eq!(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        plain.lines().collect::<Vec<_>>()
    );
}

#[test]
fn text_recordings_are_learned_from_too() {
    let dir = temp_dir("learn-text");
    let inputs = recordings(&dir, &RUNS[..2]);
    let text = dir.join("run1.txt");
    let (code, _, _) = run(&["print", &inputs[0], "-o", text.to_str().unwrap()]);
    assert_eq!(code, 0);
    let from_text = dir.join("from-text.txt");
    let from_binary = dir.join("from-binary.txt");
    let (code, stderr) = learn(&[
        text.to_str().unwrap(),
        &inputs[1],
        "-o",
        from_text.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = learn(&[&inputs[0], &inputs[1], "-o", from_binary.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let body = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().skip(5).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(body(&from_text), body(&from_binary));
}

/// A cassette of client-first tapes, recorded in `order`.
fn cassette(dir: &Path, runs: &[&Run], order: &[usize]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut index = String::from(
        "# tcptape cassette index\n# tape order start_ms client_bytes server_bytes first_speaker status\n",
    );
    for (n, &which) in order.iter().enumerate() {
        let name = format!("{:04}.tape", n + 1);
        let tape = if which == 0 {
            session(runs[0])
        } else {
            // Another request: a ping with a nonce.
            let mut bytes = Vec::new();
            let mut w = Writer::new(&mut bytes).unwrap();
            let nonce = &runs[0].request_id;
            w.data(C2S, format!("PING nonce={nonce}\r\n").as_bytes())
                .unwrap();
            w.data(S2C, format!("PONG {nonce}\r\n").as_bytes()).unwrap();
            bytes
        };
        std::fs::write(dir.join(&name), tape).unwrap();
        index.push_str(&format!("{name} {} {} 1 1 client whole\n", n + 1, n * 10));
    }
    std::fs::write(dir.join("index"), index).unwrap();
}

#[test]
fn cassettes_learn_tape_by_tape() {
    let dir = temp_dir("learn-cassettes");
    let (a, b) = (dir.join("a"), dir.join("b"));
    cassette(&a, &[&RUNS[0]], &[0, 1]);
    // The second cassette's connections came the other way round.
    cassette(&b, &[&RUNS[1]], &[1, 0]);
    let out = dir.join("learned");
    let a_dir = format!("{}/", a.display());
    let b_dir = format!("{}/", b.display());
    let out_dir = format!("{}/", out.display());
    let (code, stderr) = learn(&[&a_dir, &b_dir, "-o", &out_dir]);
    assert_eq!(code, 0, "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["0001.tape", "0002.tape", "index"]);
    assert_eq!(
        std::fs::read(out.join("index")).unwrap(),
        std::fs::read(a.join("index")).unwrap()
    );
    // Paired by their first request: the login with the login.
    let login = std::fs::read_to_string(out.join("0001.tape")).unwrap();
    assert!(
        login.contains("[capture session \"Zx81kQ0aaP3mW7vB\"]"),
        "{login}"
    );
    let ping = std::fs::read_to_string(out.join("0002.tape")).unwrap();
    assert!(ping.contains("> [capture nonce \"8f2a91c4\"]"), "{ping}");
    assert!(ping.contains("< [echo nonce \"8f2a91c4\"]"), "{ping}");
    // The learned cassette is one: describe reads it, and learning again
    // replaces it.
    let (code, listing, stderr) = run(&["describe", &out_dir]);
    assert_eq!(code, 0, "{stderr}");
    assert!(listing.ends_with("2 tapes\n"), "{listing}");
    let (code, stderr) = learn(&[&a_dir, &b_dir, "-o", &out_dir]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn refusals_say_why() {
    let dir = temp_dir("learn-refusals");
    let inputs = recordings(&dir, &RUNS[..2]);
    let out = dir.join("out.txt");
    let out = out.to_str().unwrap();

    // Fewer than two recordings: a usage error.
    let (code, stderr) = learn(&[&inputs[0], "-o", out]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("learn needs two or more recordings of one scenario, 1 given"),
        "{stderr}"
    );
    assert!(
        stderr.contains("usage: tcptape learn A B [C ...] -o OUT"),
        "{stderr}"
    );
    let (code, stderr) = learn(&[&inputs[0], &inputs[1]]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing option -o OUT"), "{stderr}");

    // A tape and a cassette.
    let cassette_dir = dir.join("c");
    cassette(&cassette_dir, &[&RUNS[0]], &[0]);
    let c = format!("{}/", cassette_dir.display());
    let (code, stderr) = learn(&[&inputs[0], &c, "-o", out]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "learn takes recordings of one kind, tapes or cassettes: {c} is a cassette, {} a tape",
            inputs[0]
        )),
        "{stderr}"
    );

    // The output is an input.
    let (code, stderr) = learn(&[&inputs[0], &inputs[1], "-o", &inputs[1]]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is the input: choose another output"),
        "{stderr}"
    );
    assert!(std::fs::read(&inputs[1]).unwrap() == session(&RUNS[1]));

    // Tapes learn into a file, not a folder; nor over their own folder.
    let folder = format!("{}/", dir.join("learned").display());
    let (code, stderr) = learn(&[&inputs[0], &inputs[1], "-o", &folder]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("learning from tapes writes one text tape: name a file"),
        "{stderr}"
    );
    let (code, stderr) = learn(&[&inputs[0], &inputs[1], "-o", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("which would be replaced"), "{stderr}");
    std::fs::create_dir(dir.join("empty")).unwrap();
    let (code, stderr) = learn(&[
        &inputs[0],
        &inputs[1],
        "-o",
        dir.join("empty").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("learning from tapes writes one text tape: name a file"),
        "{stderr}"
    );

    // A missing recording, a recording with wildcards.
    let (code, stderr) = learn(&[&inputs[0], "/nonexistent/run.tape", "-o", out]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot open tape /nonexistent/run.tape"),
        "{stderr}"
    );
    let wild = dir.join("wild.txt");
    std::fs::write(&wild, "tcptape text 1\n> \"POST \" any 5\n").unwrap();
    let (code, stderr) = learn(&[&inputs[0], wild.to_str().unwrap(), "-o", out]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "wild.txt: frame 2 is a wildcard: learn takes recordings as the proxy writes them"
        ),
        "{stderr}"
    );
    assert!(!Path::new(out).exists(), "nothing written on a refusal");

    // An output that cannot be written.
    let (code, stderr) = learn(&[&inputs[0], &inputs[1], "-o", "/nonexistent/learned.txt"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot write /nonexistent/learned.txt: No such file or directory"),
        "{stderr}"
    );
}

#[test]
fn recordings_of_different_scenarios_are_refused_where_they_part() {
    let dir = temp_dir("learn-unlike");
    let inputs = recordings(&dir, &RUNS[..1]);
    let other = dir.join("other.tape");
    let mut bytes = Vec::new();
    let mut w = Writer::new(&mut bytes).unwrap();
    w.data(C2S, b"POST /login HTTP/1.1\r\n").unwrap();
    w.data(S2C, &[b'z'; 400]).unwrap();
    w.data(C2S, &[b'q'; 100]).unwrap();
    std::fs::write(&other, bytes).unwrap();
    let out = dir.join("out.txt");
    let (code, stderr) = learn(&[
        &inputs[0],
        other.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "{} and {} do not look like recordings of one scenario: ",
            inputs[0],
            other.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "they part at byte 22 of the client's bytes (frame 1 of {}, frame 3 of {})",
            inputs[0],
            other.display()
        )),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn cassettes_that_do_not_pair_are_refused() {
    let dir = temp_dir("learn-cassette-refusals");
    let (a, b, e) = (dir.join("a"), dir.join("b"), dir.join("empty"));
    cassette(&a, &[&RUNS[0]], &[0, 1]);
    cassette(&b, &[&RUNS[1]], &[0]);
    std::fs::create_dir_all(&e).unwrap();
    let path = |p: &Path| format!("{}/", p.display());
    let out = dir.join("out");
    let (code, stderr) = learn(&[&path(&a), &path(&b), "-o", &path(&out)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "the cassettes hold different numbers of tapes: {} 2, {} 1",
            path(&a),
            path(&b)
        )),
        "{stderr}"
    );
    let (code, stderr) = learn(&[&path(&a), &path(&e), "-o", &path(&out)]);
    assert_eq!(code, 1);
    assert!(stderr.contains("the cassette has no tapes"), "{stderr}");
    // A folder that is not a cassette is not written into.
    let foreign = dir.join("project");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("Cargo.toml"), "[package]").unwrap();
    let (code, stderr) = learn(&[&path(&a), &path(&a), "-o", &path(&foreign)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("holds files tcptape did not write (Cargo.toml)"),
        "{stderr}"
    );
    // A missing cassette, and a folder under a file.
    let (code, stderr) = learn(&[&path(&a), "/nonexistent/c/", "-o", &path(&out)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read cassette /nonexistent/c/"),
        "{stderr}"
    );
    std::fs::write(dir.join("plain"), "x").unwrap();
    let under_file = format!("{}/", dir.join("plain").join("out").display());
    let (code, stderr) = learn(&[&path(&a), &path(&b), "-o", &under_file]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot record a cassette into"), "{stderr}");
    // A cassette learns into a folder, not a file.
    let file = dir.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let (code, stderr) = learn(&[&path(&a), &path(&a), "-o", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("learning from cassettes writes a cassette: name a folder"),
        "{stderr}"
    );
    // Output inside an input cassette.
    let (code, stderr) = learn(&[&path(&a), &path(&b), "-o", &path(&a.join("sub"))]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is inside the cassette"), "{stderr}");
    assert!(!out.exists());
}

/// Reads until `end` has arrived (or the peer closed).
fn read_until(stream: &mut std::net::TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    while !got.ends_with(end) {
        let byte = read_n(stream, 1);
        got.extend(byte);
    }
    got
}

/// The value of header `name` in `head`.
fn header<'a>(head: &'a [u8], name: &str) -> &'a [u8] {
    let needle = format!("{name}: ");
    let at = head
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap_or_else(|| panic!("no {name}"))
        + needle.len();
    let len = head[at..].windows(2).position(|w| w == b"\r\n").unwrap();
    &head[at..at + len]
}

/// A fourth run's client against the mock of the learned tape: its own
/// request id, which must come back, and the session the mock gives, sent
/// back; or, with `cheat`, another session. The mock's exit code.
fn fourth_client(tape: &Path, request_id: &str, cheat: bool) -> (i32, String) {
    let mock = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    let mut c = connect(mock.addr());
    let login =
        format!("POST /login HTTP/1.1\r\nHost: example\r\nX-Request-Id: {request_id}\r\n\r\n");
    write_all(&mut c, login.as_bytes());
    let head = read_until(&mut c, b"\r\n\r\n");
    assert_eq!(header(&head, "X-Request-Id"), request_id.as_bytes());
    let session = header(&head, "Set-Cookie")
        .strip_prefix(b"session=")
        .unwrap();
    let session = if cheat { b"0000000000000000" } else { session };
    let get = [
        b"GET /data HTTP/1.1\r\nCookie: session=",
        session,
        b"\r\n\r\n",
    ]
    .concat();
    write_all(&mut c, &get);
    half_close(&c);
    let rest = read_to_end(&mut c);
    let (code, _, stderr) = mock.finish();
    if code == 0 {
        assert_eq!(rest, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    (code, stderr)
}

#[test]
fn a_learned_tape_replays_a_run_it_never_saw() {
    let dir = temp_dir("learn-replay");
    let (inputs, tape) = learned_from_runs(&dir);
    // The recorded tape itself does not take a new run's request id.
    let (code, stderr) = fourth_client(Path::new(&inputs[0]), "8f2a91c4", false);
    assert_eq!(code, 0, "the recorded run itself: {stderr}");
    let (code, _) = {
        let mock = spawn(&["server", "--once", "127.0.0.1:0", &inputs[0]], true);
        let mut c = connect(mock.addr());
        write_all(
            &mut c,
            b"POST /login HTTP/1.1\r\nHost: example\r\nX-Request-Id: 12345678\r\n\r\n",
        );
        let _ = std::io::Read::read_to_end(&mut c, &mut Vec::new());
        let (code, _, stderr) = mock.finish();
        (code, stderr)
    };
    assert_eq!(code, 3, "a new request id departs from the recording");
    // The learned one does, and checks the session comes back.
    let (code, stderr) = fourth_client(&tape, "c0ffee42", false);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = fourth_client(&tape, "c0ffee42", true);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("'session'"), "{stderr}");
}

#[test]
fn a_learned_tape_plays_the_client_against_a_run_it_never_saw() {
    let dir = temp_dir("learn-client");
    let (_, tape) = learned_from_runs(&dir);
    // A fourth run's server: its own date, message id, key and session,
    // the client's request id echoed; it checks the session comes back.
    let (addr, server) = serve_once(|mut s| {
        let login = read_until(&mut s, b"\r\n\r\n");
        let request_id = header(&login, "X-Request-Id").to_vec();
        let head = [
            &b"HTTP/1.1 200 OK\r\nDate: Fri, 19 Feb 2027 06:07:08 GMT\r\nMessage-ID: <q9w8e7r6t5y4u3i2@mail.example>\r\nX-Request-Id: "[..],
            &request_id,
            b"\r\nSet-Cookie: session=NEWsession123456\r\nX-Key: ",
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
            b"\r\n\r\n",
        ]
        .concat();
        write_all(&mut s, &head);
        let get = read_until(&mut s, b"\r\n\r\n");
        assert_eq!(header(&get, "Cookie"), b"session=NEWsession123456");
        write_all(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(read_to_end(&mut s), b"");
        half_close(&s);
    });
    let (code, _, stderr) = run(&[
        "client",
        "--timeout",
        "10",
        &addr.to_string(),
        tape.to_str().unwrap(),
    ]);
    server.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn recordings_of_one_day_still_mark_the_whole_date() {
    let dir = temp_dir("learn-same-day");
    let runs = [
        Run {
            date: "Wed, 25 Nov 2026 09:31:29 GMT",
            ..RUNS[0]
        },
        Run {
            date: "Wed, 25 Nov 2026 09:31:47 GMT",
            ..RUNS[1]
        },
    ];
    let inputs = recordings(&dir, &runs);
    let out = dir.join("learned.txt");
    let (code, stderr) = learn(&[&inputs[0], &inputs[1], "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    // Only the seconds differed; tomorrow the day will.
    assert!(
        text.contains(r#"[vary "Wed, 25 Nov 2026 09:31:29"]"#),
        "{text}"
    );
}
