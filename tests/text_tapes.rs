//! Text tapes: print and build round trips, syntax errors, text tapes in
//! replay and describe, and wildcards.

mod common;

use std::path::Path;

use common::*;
use tcptape::tape::text::{parse, print};
use tcptape::tape::{Direction, MAX_LEN, Reader, Writer};

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
        match rng.below(9) {
            0..=2 => {
                let len = [0, 1, 15, 16, 17, 100, 300][rng.below(7) as usize];
                let data = rng.bytes(len);
                let d = dir(rng);
                w.data(d, &data).unwrap();
            }
            3 => w.delay(1 + rng.below(u64::from(MAX_LEN))).unwrap(),
            4 => {
                let d = dir(rng);
                w.eof(d).unwrap();
            }
            5 => {
                let d = dir(rng);
                w.any(d, rng.below(100_000)).unwrap();
            }
            6 => {
                let len = rng.below(20) as usize;
                let payload = rng.bytes(len);
                w.noop(&payload).unwrap();
            }
            7 => {
                let op = 0x83 + rng.below(0x7d) as u8;
                let len = rng.below(20) as usize;
                let payload = rng.bytes(len);
                w.extension(op, &payload).unwrap();
            }
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

#[test]
fn generated_tapes_round_trip_through_text() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for i in 0..3000 {
        let binary = random_tape(&mut rng, i == 0);
        let text = to_text(&binary);
        let rebuilt = parse(&text).unwrap_or_else(|e| panic!("tape {i}: {e}\n{text}"));
        assert!(
            rebuilt == binary,
            "tape {i} differs after print and build:\n{text}"
        );
    }
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
        (
            "> \"no header\"\n",
            1,
            1,
            "not a tape: a text tape starts with 'tcptape text 1'",
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
