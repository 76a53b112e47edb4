//! Text tapes: print and build round trips, syntax errors, text tapes in
//! replay and describe, and wildcards.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tcptape::tape::text::{parse, print};
use tcptape::tape::{Direction, Header, MAX_LEN, Reader, Span, SpanKind, Writer, placement};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;
const FIXTURES: [&str; 4] = ["echo", "halfclose-reply", "banner", "bulk"];

fn to_text(binary: &[u8]) -> String {
    let mut out = Vec::new();
    print(&mut Reader::new(binary), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn fixtures_round_trip_through_text() {
    for name in FIXTURES {
        let binary = std::fs::read(fixture(&format!("{name}.tape"))).unwrap();
        let text = to_text(&binary);
        assert!(parse(&text).unwrap() == binary, "{name}");
    }
    let banner = to_text(&std::fs::read(fixture("banner.tape")).unwrap());
    assert_eq!(
        banner,
        "tcptape text 1\n\
         < \"220 mail.example ESMTP\\r\\n\"\n\
         > \"EHLO client\\r\\n\"\n\
         delay 50ms\n\
         < \"250 hello\\r\\n\"\n\
         > \"MAIL FROM:<a@b>\\r\\n\"\n\
         delay 50ms\n\
         < \"250 ok\\r\\n\"\n\
         > \"QUIT\\r\\n\"\n\
         delay 50ms\n\
         < \"221 bye\\r\\n\"\n\
         eof <\n\
         eof >\n"
    );
}

#[test]
fn print_and_build_commands_round_trip_byte_for_byte() {
    let dir = temp_dir("text-commands");
    for name in FIXTURES {
        let text = dir.join(format!("{name}.txt"));
        let rebuilt = dir.join(format!("{name}.tape"));
        let original = fixture(&format!("{name}.tape"));
        let (code, _, stderr) = run(&[
            "print",
            original.to_str().unwrap(),
            "-o",
            text.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let (code, _, stderr) = run(&[
            "build",
            text.to_str().unwrap(),
            "-o",
            rebuilt.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            std::fs::read(&rebuilt).unwrap() == std::fs::read(&original).unwrap(),
            "{name}"
        );
        // And print to stdout says the same as print -o.
        let (code, stdout, _) = run(&["print", original.to_str().unwrap()]);
        assert_eq!(code, 0);
        assert_eq!(stdout, std::fs::read_to_string(&text).unwrap());
    }
}

/// A seeded xorshift generator, so a failing tape can be rebuilt.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        // Mostly text, mostly binary, or mixed: both printer forms get used.
        let style = self.below(3);
        (0..len)
            .map(|_| match style {
                0 => {
                    let alphabet = b"abc xyz\r\n\t\"\\";
                    alphabet[self.below(alphabet.len() as u64) as usize]
                }
                1 => self.next() as u8,
                _ => {
                    if self.below(4) == 0 {
                        self.next() as u8
                    } else {
                        b'a' + self.below(26) as u8
                    }
                }
            })
            .collect()
    }
}

fn random_tape(rng: &mut Rng, big: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut w = Writer::new(&mut bytes).unwrap();
    let dir = |rng: &mut Rng| if rng.below(2) == 0 { C2S } else { S2C };
    for _ in 0..rng.below(12) {
        match rng.below(10) {
            0..=2 => {
                let len = [0, 1, 15, 16, 17, 100, 300][rng.below(7) as usize];
                let data = rng.bytes(len);
                let d = dir(rng);
                w.data(d, &data).unwrap();
            }
            // Any delay, 0 too, which `Writer::delay` would not write.
            3 => {
                let ms = rng.below(u64::from(MAX_LEN) + 1) as u32;
                let frame = Header::new(0x03, ms).emit();
                w.get_mut().extend_from_slice(&frame);
            }
            4 => {
                let d = dir(rng);
                w.eof(d).unwrap();
            }
            5 => {
                let d = dir(rng);
                let count = [rng.below(100_000), rng.below(1 << 32)][rng.below(2) as usize];
                w.any(d, count).unwrap();
            }
            6 => {
                let len = rng.below(20) as usize;
                let payload = rng.bytes(len);
                w.noop(&payload).unwrap();
            }
            7 => {
                // Any extension but the spans, whose payloads are checked.
                let mut op = 0x83 + rng.below(0x7d) as u8;
                if op == 0x84 || op == 0x85 {
                    op = 0x90;
                }
                let len = rng.below(20) as usize;
                let payload = rng.bytes(len);
                w.extension(op, &payload).unwrap();
            }
            8 => random_span(rng, &mut w),
            _ => w.noop(b"tcptape\0").unwrap(),
        }
    }
    if big {
        // Data of every byte value, at the largest frame length.
        let data: Vec<u8> = (0..MAX_LEN as usize).map(|i| (i % 256) as u8).collect();
        w.data(C2S, &data).unwrap();
    }
    bytes
}

/// A span and (mostly) the bytes it covers: in one frame, in two, or not
/// at all; spans of few names, so that some tapes break span rules.
fn random_span(rng: &mut Rng, w: &mut Writer<&mut Vec<u8>>) {
    let dir = if rng.below(2) == 0 { C2S } else { S2C };
    let len = [0, 1, 3, 5][rng.below(4) as usize];
    let name = ["a", "b", "token"][rng.below(3) as usize].to_string();
    let kind = match rng.below(3) {
        0 => SpanKind::Vary,
        1 => SpanKind::Capture(name),
        _ => SpanKind::Echo(name),
    };
    let (min, max) = match rng.below(3) {
        0 => (len / 2, len + 3),
        _ => (len, len),
    };
    w.span(
        dir,
        &Span {
            kind,
            len,
            min,
            max,
        },
    )
    .unwrap();
    let covered = rng.bytes(len as usize);
    match rng.below(4) {
        0 => {
            let cut = rng.below(u64::from(len) + 1) as usize;
            w.data(dir, &covered[..cut]).unwrap();
            w.data(dir, &covered[cut..]).unwrap();
        }
        1 => {}
        _ => w.data(dir, &covered).unwrap(),
    }
}

#[test]
fn generated_tapes_round_trip_through_text() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut refused = 0;
    for i in 0..3000 {
        let binary = random_tape(&mut rng, i == 0);
        let text = to_text(&binary);
        // A tape whose spans break a rule prints, so that it can be fixed
        // as text, but builds only once fixed.
        if placement::check_tape(&mut Reader::new(binary.as_slice())).is_err() {
            assert!(parse(&text).is_err(), "tape {i} builds:\n{text}");
            refused += 1;
            continue;
        }
        let rebuilt = parse(&text).unwrap_or_else(|e| panic!("tape {i}: {e}\n{text}"));
        assert!(
            rebuilt == binary,
            "tape {i} differs after print and build:\n{text}"
        );
    }
    assert!((100..1000).contains(&refused), "{refused} tapes refused");
}

#[test]
fn every_byte_value_survives_both_forms() {
    let all: Vec<u8> = (0..=255).collect();
    let mostly_text: Vec<u8> = b"hello\r\n"
        .iter()
        .cycle()
        .take(200)
        .copied()
        .chain(all.iter().copied())
        .collect();
    for data in [all.clone(), mostly_text] {
        let mut binary = Vec::new();
        Writer::new(&mut binary).unwrap().data(S2C, &data).unwrap();
        assert!(parse(&to_text(&binary)).unwrap() == binary);
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn syntax_errors_name_line_and_column_with_a_caret() {
    let dir = temp_dir("text-errors");
    let cases = [
        (
            "tcptape text 1\n> EHLO\n",
            2,
            3,
            "expected a quoted string, two hex digits or ??",
        ),
        ("tcptape text 1\n< \"250 ok\n", 2, 3, "unterminated string"),
        (
            "tcptape text 1\ndelay fast\n",
            2,
            7,
            "expected milliseconds like '150ms'",
        ),
        (
            "tcptape text 1\neof\n",
            2,
            4,
            "expected '>' or '<' after 'eof'",
        ),
        ("tcptape text 1\nsend \"x\"\n", 2, 1, "expected a frame"),
        ("tcptape text 1\n> \"\\q\"\n", 2, 4, "unknown escape"),
        ("tcptape text 1\n> 0g\n", 2, 3, "two hex digits"),
        // Numbers are bounded by what the binary frames hold.
        (
            "tcptape text 1\n> any 18446744073709551615\n",
            2,
            7,
            "a wildcard counts at most 4294967295 bytes",
        ),
        (
            "tcptape text 1\n> any 1125899906842624\n",
            2,
            7,
            "a wildcard counts at most 4294967295 bytes",
        ),
        (
            "tcptape text 1\n> any 4294967296\n",
            2,
            7,
            "a wildcard counts at most 4294967295 bytes",
        ),
        (
            "tcptape text 1\n> any 4294967295 any 1\n",
            2,
            18,
            "add up to more than 4294967295 bytes",
        ),
        (
            "tcptape text 1\n> \"x\" ?? any 4294967295\n",
            2,
            10,
            "add up to more than 4294967295 bytes",
        ),
        (
            "tcptape text 1\ndelay 16777216ms\n",
            2,
            7,
            "a delay is at most 16777215ms",
        ),
        // Only plain ASCII digits: no sign, no other width.
        (
            "tcptape text 1\n> \"\\x+f\"\n",
            2,
            4,
            "two hex digits after \\x",
        ),
        ("tcptape text 1\next 0x+80\n", 2, 5, "0x80 to 0xff"),
        ("tcptape text 1\next 0x080\n", 2, 5, "0x80 to 0xff"),
        (
            "tcptape text 1\ndelay +5ms\n",
            2,
            7,
            "expected milliseconds",
        ),
        ("tcptape text 1\n> any +5\n", 2, 7, "byte count"),
        ("tcptape text 1\n> anyx 5\n", 2, 3, "two hex digits"),
        // A trailing comment starts after a space, as the grammar says.
        ("tcptape text 1\n> \"a\"# no\n", 2, 6, "expected a space"),
        // Spans: their syntax, their numbers, and where they stand.
        (
            "tcptape text 1\n< \"Date: \" [vary \"Wed\"\n< \"x\"\n",
            2,
            12,
            "unclosed '['",
        ),
        (
            "tcptape text 1\n> [vary 1..65537 \"x\"]\n",
            2,
            12,
            "a span's length is at most 65536 bytes",
        ),
        (
            "tcptape text 1\n> [capture id \"1234\"]\n< [capture id \"5678\"]\n",
            3,
            3,
            "'id' is captured a second time (first at line 2)",
        ),
        (
            "tcptape text 1\n> \"token=\" [echo token \"abcd\"]\n",
            2,
            12,
            "echo of 'token', which no span before it captures",
        ),
        (
            "tcptape text 1\n< [vary 1..64 \"abc\"]\n< [vary \"d\"]\n",
            3,
            3,
            "right after the variable span at line 2",
        ),
        (
            "tcptape text 1\nspan < vary 5\n< \"abc\"\neof <\n",
            2,
            1,
            "its direction ends (EOF) after 3 of them",
        ),
        (
            "tcptape text 1\n> \"a\"\nspan < capture t 4\n",
            3,
            1,
            "the tape ends after 0 of them",
        ),
    ];
    for (i, (text, line, column, message)) in cases.into_iter().enumerate() {
        let path = write(&dir, &format!("case{i}.txt"), text);
        let (code, stdout, stderr) = run(&["describe", &path]);
        assert_eq!((code, stdout.as_str()), (1, ""), "{text}");
        let lines: Vec<&str> = stderr.lines().collect();
        let prefix = format!("error: {path}:{line}:{column}: ");
        assert!(lines[0].starts_with(&prefix), "{text}: {stderr}");
        assert!(lines[0].contains(message), "{text}: {stderr}");
        assert_eq!(lines.len(), 3, "{stderr}");
        // The line itself, then a caret under the column.
        let source = text.lines().nth(line - 1).unwrap();
        assert_eq!(lines[1], format!("  {source}"));
        assert_eq!(lines[2], format!("  {}^", " ".repeat(column - 1)));
        let (code, _, build_err) =
            run(&["build", &path, "-o", dir.join("x.tape").to_str().unwrap()]);
        assert_eq!(code, 1);
        assert_eq!(build_err, stderr);
    }
}

#[test]
fn describe_and_replay_read_text_tapes() {
    let dir = temp_dir("text-replay");
    let tape = write(
        &dir,
        "hello.txt",
        "# a hand-written exchange\n\
         tcptape text 1\n\
         > \"hello\\n\"   # the client greets\n\
         < \"hi there\\n\"\n\
         eof >\n\
         eof <\n",
    );
    let (code, stdout, _) = run(&["describe", &tape]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "0: NOOP\n1: CLIENT_TO_SERVER (6 bytes)\n2: SERVER_TO_CLIENT (9 bytes)\n3: CLIENT_TO_SERVER_EOF\n4: SERVER_TO_CLIENT_EOF\n"
    );

    let server = spawn(&["server", "--once", "127.0.0.1:0", &tape], true);
    let mut c = connect(server.addr());
    write_all(&mut c, b"hello\n");
    half_close(&c);
    assert_eq!(read_to_end(&mut c), b"hi there\n");
    assert_eq!(server.finish().0, 0);

    let (addr, peer) = serve_once(|mut s| {
        assert_eq!(read_n(&mut s, 6), b"hello\n");
        write_all(&mut s, b"hi there\n");
        assert_eq!(read_to_end(&mut s), b"");
        half_close(&s);
    });
    let (code, _, stderr) = run(&["client", &addr.to_string(), &tape]);
    peer.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
}

fn session_with_nonce(tape: &str, nonce: &[u8]) -> (i32, String) {
    let server = spawn(&["server", "--once", "127.0.0.1:0", tape], true);
    let mut c = connect(server.addr());
    write_all(&mut c, b"LOGIN nonce=");
    write_all(&mut c, nonce);
    write_all(&mut c, b"\r\n");
    let answer = read_to_end(&mut c);
    let (code, _, stderr) = server.finish();
    if code == 0 {
        assert_eq!(answer, b"OK\r\n");
    }
    (code, stderr)
}

#[test]
fn a_wildcard_lets_changing_bytes_pass() {
    let dir = temp_dir("text-wildcard");
    let strict = write(
        &dir,
        "strict.txt",
        "tcptape text 1\n> \"LOGIN nonce=\" \"1234abcd\" \"\\r\\n\"\n< \"OK\\r\\n\"\n",
    );
    let wild = write(
        &dir,
        "wild.txt",
        "tcptape text 1\n> \"LOGIN nonce=\" ?? ?? ?? ?? ?? ?? ?? ?? \"\\r\\n\"\n< \"OK\\r\\n\"\n",
    );
    let any = write(
        &dir,
        "any.txt",
        "tcptape text 1\n> \"LOGIN nonce=\"\n> any 8\n> \"\\r\\n\"\n< \"OK\\r\\n\"\n",
    );
    assert_eq!(session_with_nonce(&wild, b"9f8e7d6c").0, 0);
    assert_eq!(session_with_nonce(&any, b"00000000").0, 0);
    let (code, stderr) = session_with_nonce(&strict, b"9f8e7d6c");
    assert_eq!(code, 3, "{stderr}");
    // A text tape's places are its lines, not offsets of the built binary.
    assert!(
        stderr.contains("byte 12 of its stream differs from the tape (frame 1, line 2)"),
        "{stderr}"
    );
    // A wildcard still counts: a nonce one byte short is a mismatch.
    let (code, stderr) = session_with_nonce(&wild, b"9f8e7d6");
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("more than the tape holds") || stderr.contains("differs"),
        "{stderr}"
    );

    // The binary form keeps the wildcard as an extension frame.
    let binary = dir.join("wild.tape");
    let (code, _, _) = run(&["build", &wild, "-o", binary.to_str().unwrap()]);
    assert_eq!(code, 0);
    let (_, listing, _) = run(&["describe", "-v", binary.to_str().unwrap()]);
    assert!(
        listing.contains("2: ANY_CLIENT_TO_SERVER (8 bytes of any value)"),
        "{listing}"
    );
    // Tapes with wildcards are not 0.1.0 tapes: the frame is named, not
    // listed as the NOOP 0.1.0 would have seen.
    let (_, listing, _) = run(&["describe", binary.to_str().unwrap()]);
    assert!(
        listing.contains("2: ANY_CLIENT_TO_SERVER (8 bytes of any value)\n"),
        "{listing}"
    );
}

#[test]
fn a_wildcard_in_the_replayed_role_is_refused() {
    let dir = temp_dir("text-own-wildcard");
    let tape = write(&dir, "t.txt", "tcptape text 1\n> \"ping\"\n< any 4\n");
    let (code, _, stderr) = run(&["server", "127.0.0.1:0", &tape]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("frame 2 (line 3) is a wildcard in the server's direction, but `server` plays the server"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["client", "127.0.0.1:1", &tape]);
    assert_eq!(
        code, 1,
        "the client role may expect any bytes from the server: {stderr}"
    );
    assert!(stderr.contains("cannot connect to 127.0.0.1:1"), "{stderr}");
}

/// `tcptape build` of `text`: (exit code, stderr, the built tape).
fn build_text(dir: &Path, name: &str, text: &str) -> (i32, String, Vec<u8>) {
    let path = write(dir, name, text);
    let out = dir.join(format!("{name}.tape"));
    let _ = std::fs::remove_file(&out);
    let (code, _, stderr) = run(&["build", &path, "-o", out.to_str().unwrap()]);
    (code, stderr, std::fs::read(&out).unwrap_or_default())
}

const MAGIC: &[u8] = b"\0\0\0\x08tcptape\0";

#[test]
fn numbers_at_their_limits_build_single_frames() {
    let dir = temp_dir("text-limits");
    // The largest wildcard is one frame: its payload is a u32 count.
    let (code, stderr, tape) = build_text(&dir, "any", "tcptape text 1\n> any 4294967295\n");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tape, [MAGIC, b"\x81\0\0\x04\xff\xff\xff\xff"].concat());
    // Wildcards in a row merge, up to that count.
    let (code, stderr, tape) = build_text(
        &dir,
        "merged",
        "tcptape text 1\n< ?? any 4294967293\n  ??\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tape, [MAGIC, b"\x82\0\0\x04\xff\xff\xff\xff"].concat());
    let (code, stderr, tape) = build_text(&dir, "delay", "tcptape text 1\ndelay 16777215ms\n");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tape, [MAGIC, b"\x03\xff\xff\xff"].concat());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn payloads_over_the_frame_limit_are_refused_where_they_overflow() {
    let dir = temp_dir("text-big-payload");
    let line = format!("  \"{}\"\n", "x".repeat(1 << 20));
    for keyword in ["noop", "ext 0x90"] {
        // 16 lines of 1 MiB reach 16,777,216 bytes: one more than a frame
        // holds, on line 18.
        let text = format!("tcptape text 1\n{keyword} \"\"\n{}", line.repeat(16));
        let (code, stderr, tape) = build_text(&dir, "big.txt", &text);
        assert_eq!(code, 1, "{keyword}: {stderr}");
        assert!(tape.is_empty());
        assert!(
            stderr.contains("big.txt:18:3: ") && stderr.contains("at most 16777215 bytes"),
            "{keyword}: {stderr}"
        );
        // One byte less fits.
        let text = format!(
            "tcptape text 1\n{keyword} \"\"\n{}  \"{}\"\n",
            line.repeat(15),
            "x".repeat((1 << 20) - 1)
        );
        let (code, stderr, tape) = build_text(&dir, "fits.txt", &text);
        assert_eq!(code, 0, "{keyword}: {stderr}");
        assert_eq!(tape.len(), MAGIC.len() + 4 + 16_777_215);
        assert_eq!(&tape[MAGIC.len() + 1..MAGIC.len() + 4], b"\xff\xff\xff");
    }
    // Megabytes of test files: not left behind.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `frames` (raw binary frames) after the magic, then prints the
/// tape and builds the text with the binary: the result must be the same
/// bytes.
fn assert_print_build_is_lossless(dir: &Path, name: &str, frames: &[u8]) {
    let binary = [MAGIC, frames].concat();
    let original = dir.join(format!("{name}.tape"));
    let text = dir.join(format!("{name}.txt"));
    let rebuilt = dir.join(format!("{name}.rebuilt"));
    std::fs::write(&original, &binary).unwrap();
    let (code, _, stderr) = run(&[
        "print",
        original.to_str().unwrap(),
        "-o",
        text.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{name}: {stderr}");
    let (code, _, stderr) = run(&[
        "build",
        text.to_str().unwrap(),
        "-o",
        rebuilt.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{name}: {stderr}");
    assert!(
        std::fs::read(&rebuilt).unwrap() == binary,
        "{name} changed through print and build:\n{}",
        std::fs::read_to_string(&text).unwrap()
    );
}

#[test]
fn print_then_build_keeps_every_frame() {
    let dir = temp_dir("text-lossless");
    assert_print_build_is_lossless(&dir, "delay0", b"\x03\0\0\0\x01\0\0\x01a\x03\0\0\0");
    // Wildcards over the largest frame length are still one frame.
    assert_print_build_is_lossless(&dir, "any-big", b"\x81\0\0\x04\x01\x31\x2d\x00");
    assert_print_build_is_lossless(&dir, "any-max", b"\x82\0\0\x04\xff\xff\xff\xff");
    assert_print_build_is_lossless(&dir, "any-zero", b"\x82\0\0\x04\0\0\0\0");
    // NOOP and extension payloads of both forms, long enough to wrap.
    let text: Vec<u8> = b"line\r\n".iter().cycle().take(100_000).copied().collect();
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    for (op, payload) in [
        (0x00, &text),
        (0x00, &binary),
        (0xfe, &text),
        (0x80, &binary),
    ] {
        let len = payload.len() as u32;
        let frames = [&[op][..], &len.to_be_bytes()[1..], payload].concat();
        assert_print_build_is_lossless(&dir, &format!("payload-{op:02x}"), &frames);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Builds `text` through the library and says how long it took.
fn timed_build(what: &str, text: &str) -> Duration {
    let start = Instant::now();
    let built = tcptape::tape::text::build(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = start.elapsed();
    assert!(built.bytes.len() > MAGIC.len(), "{what}");
    took
}

#[test]
fn parsing_takes_linear_time_in_every_construct() {
    // About 4 MiB of text each; the parser takes well under a second per
    // construct even in a debug build, a quadratic one minutes.
    const LINES: usize = 200_000;
    let cases = [
        (
            "string lines",
            format!("> \"x\"\n{}", "  \"abcdefghij\\r\\n\"\n".repeat(LINES)),
        ),
        (
            "hex lines",
            format!("< 00\n{}", "  00 01 02 03 04 05 06 07\n".repeat(LINES)),
        ),
        (
            "noop lines",
            format!("noop\n{}", "  \"abcdefghij\\r\\n\"\n".repeat(LINES)),
        ),
        (
            "ext lines",
            format!("ext 0x90\n{}", "  00 01 02 03 04 05 06 07\n".repeat(LINES)),
        ),
        (
            "wildcards",
            format!("> ??\n{}", "  ?? any 3 \"x\" ??\n".repeat(LINES)),
        ),
        (
            "frames",
            "delay 5ms\neof >\n> any 7\n< \"a\"\n".repeat(LINES),
        ),
        (
            "spans",
            format!(
                "> \"x\"\n{}",
                "  [vary \"ab\"] \"x\" [vary 1..4 \"cd\"] \"y\"\n".repeat(LINES)
            ),
        ),
        (
            "spans on one line",
            format!("> {}\n", "[vary \"ab\"] ".repeat(LINES * 3 / 2)),
        ),
        ("span lines", "span < vary 2\n< \"ab\"\n".repeat(LINES)),
    ];
    for (what, body) in cases {
        let text = format!("tcptape text 1\n{body}");
        assert!(text.len() > 3 << 20, "{what}: {} bytes", text.len());
        let took = timed_build(what, &text);
        // Linear takes a second or two in a debug build; quadratic, hours.
        assert!(took < Duration::from_secs(20), "{what} took {took:?}");
    }
}

#[test]
fn a_file_that_is_no_tape_is_not_quoted() {
    let dir = temp_dir("text-not-a-tape");
    let secret = write(&dir, "secret", "root:x:0:0:hunter2:/root:/bin/sh\nmore\n");
    let link = dir.join("link.tape");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    for command in ["describe", "server"] {
        let args: &[&str] = if command == "server" {
            &["server", "127.0.0.1:0", link.to_str().unwrap()]
        } else {
            &["describe", link.to_str().unwrap()]
        };
        let (code, _, stderr) = run(args);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "{command} quotes the file: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "error: {}:1:1: not a tape: a text tape starts with 'tcptape text 1'",
                link.display()
            )),
            "{stderr}"
        );
        assert_eq!(
            stderr.lines().last(),
            stderr.lines().find(|l| l.contains("not a tape"))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn places_in_a_text_tape_name_the_line_of_the_byte() {
    let dir = temp_dir("text-line-of-byte");
    // A request whose frame starts on line 3 and goes on for five lines.
    let tape = write(
        &dir,
        "long.txt",
        "tcptape text 1\n\
         # a request over several lines\n\
         > \"GET / HTTP/1.1\\r\\n\"\n\
         \x20 \"Host: example\\r\\n\"\n\
         \n\
         \x20 # the agent changes\n\
         \x20 \"User-Agent: x\\r\\n\"\n\
         \x20 \"\\r\\n\"\n\
         < \"HTTP/1.1 200 OK\\r\\n\"\n",
    );
    let server = spawn(&["server", "--once", "127.0.0.1:0", &tape], true);
    let mut c = connect(server.addr());
    write_all(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: example\r\nUser-Agent: y\r\n\r\n",
    );
    half_close(&c);
    let _ = read_to_end(&mut c);
    let (code, _, stderr) = server.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("byte 43 of its stream differs from the tape (frame 1, line 7)"),
        "{stderr}"
    );

    // A wildcard refused for the role is named by its own line.
    let tape = write(
        &dir,
        "wild.txt",
        "tcptape text 1\n> \"ping\"\n< \"pong \"\n  \"and \"\n  ?? ??\n",
    );
    let (code, _, stderr) = run(&["server", "127.0.0.1:0", &tape]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("frame 3 (line 5) is a wildcard in the server's direction"),
        "{stderr}"
    );

    // A timeout names the line of the next byte awaited.
    let server = spawn(
        &[
            "server",
            "--once",
            "--timeout",
            "1",
            "127.0.0.1:0",
            &tape.replace("wild.txt", "long.txt"),
        ],
        true,
    );
    let mut c = connect(server.addr());
    write_all(&mut c, b"GET / HTTP/1.1\r\nHost: example\r\n");
    let (code, _, stderr) = server.finish();
    drop(c);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("(frame 1, line 7, byte 31 of its stream)"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A session with every kind of span, as `learn` writes them.
const SPAN_TAPE: &str = "tcptape text 1\n\
    > \"LOGIN nonce=\" [capture nonce \"8f2a91c4\"] \"\\r\\n\"\n\
    < \"OK session=\" [capture session 8..40 \"Zx81kQ0aa\"] \"\\r\\n\"\n\
    \x20 \"Date: \" [vary \"Wed, 25 Nov 2026 09:31:29 GMT\"] \"\\r\\n\"\n\
    \x20 \"Key: \" [vary de ad be ef\n\
    \x20 00 01 02 03]\n\
    > \"GET /data session=\" [echo session \"Zx81kQ0aa\"] \"\\r\\n\"\n\
    < \"DATA for \" [echo nonce \"8f2a91c4\"] \"\\r\\n\"\n\
    span < vary 3 1..10\n\
    < \"end\" \"\\r\\n\"\n\
    eof >\n\
    eof <\n";

#[test]
fn span_tapes_round_trip_through_print_and_build() {
    let dir = temp_dir("text-spans");
    let text = write(&dir, "spans.txt", SPAN_TAPE);
    let binary = dir.join("spans.tape");
    let (code, _, stderr) = run(&["build", &text, "-o", binary.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, printed, stderr) = run(&["print", binary.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // Spans print with their bytes, as written; the continuation lines and
    // the standalone span keep their frames.
    assert!(
        printed.contains(
            "> [capture nonce \"8f2a91c4\"]\n\
             > \"\\r\\n\"\n\
             < \"OK session=\"\n\
             < [capture session 8..40 \"Zx81kQ0aa\"]\n"
        ),
        "{printed}"
    );
    assert!(
        printed.contains("< [vary de ad be ef 00 01 02 03]\n"),
        "{printed}"
    );
    assert!(
        printed.contains("span < vary 3 1..10\n< \"end\\r\\n\"\n"),
        "{printed}"
    );
    let again = write(&dir, "again.txt", &printed);
    let rebuilt = dir.join("again.tape");
    let (code, _, stderr) = run(&["build", &again, "-o", rebuilt.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read(&rebuilt).unwrap() == std::fs::read(&binary).unwrap());

    // describe names the spans, for the text tape and the binary alike.
    for tape in [text.as_str(), binary.to_str().unwrap()] {
        let (code, listing, stderr) = run(&["describe", tape]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            listing.contains(
                "2: SPAN_CLIENT_TO_SERVER (capture nonce, 8 bytes)\n3: CLIENT_TO_SERVER (8 bytes)\n"
            ),
            "{listing}"
        );
        assert!(
            listing.contains(
                "SPAN_SERVER_TO_CLIENT (capture session, 9 bytes recorded, 8..40 live)\n"
            ),
            "{listing}"
        );
        assert!(
            listing.contains("SPAN_CLIENT_TO_SERVER (echo session, 9 bytes)\n"),
            "{listing}"
        );
    }
}

#[test]
fn a_binary_tape_that_breaks_a_span_rule_prints_but_does_not_build() {
    let dir = temp_dir("text-span-rule");
    let mut binary = Vec::new();
    let mut w = Writer::new(&mut binary).unwrap();
    w.data(C2S, b"id=").unwrap();
    w.span(C2S, &Span::fixed(SpanKind::Echo("id".into()), 4))
        .unwrap();
    w.data(C2S, b"1234").unwrap();
    let tape = dir.join("bad.tape");
    std::fs::write(&tape, &binary).unwrap();
    let text = dir.join("bad.txt");
    let (code, _, stderr) = run(&[
        "print",
        tape.to_str().unwrap(),
        "-o",
        text.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr
            .contains("frame 2 breaks a span rule: echo of 'id', which no span before it captures"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[
        "build",
        text.to_str().unwrap(),
        "-o",
        dir.join("x.tape").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.txt:3:3: echo of 'id', which no span before it captures"),
        "{stderr}"
    );
    // describe lists what it holds; a bad span payload ends the listing.
    let (code, listing, _) = run(&["describe", tape.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(listing.contains("2: SPAN_CLIENT_TO_SERVER (echo id, 4 bytes)"));
    let mut broken = binary.clone();
    broken[23] = 9;
    std::fs::write(&tape, &broken).unwrap();
    let (code, listing, stderr) = run(&["describe", tape.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(listing, "0: NOOP\n1: CLIENT_TO_SERVER (3 bytes)\n");
    assert!(
        stderr.contains("bad span frame at offset 19 in frame 2: unknown span kind 9"),
        "{stderr}"
    );
}
