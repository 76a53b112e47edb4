//! `learn` on the shapes real protocols have, as tapes written here: a
//! binary value that ends a turn (memcached's CAS), a 2-byte id the server
//! echoes (DNS over TCP), a decimal id of any length the server echoes (a
//! scripted protocol, with the values a user reported and with random
//! ones), and recordings that took different paths. Each learned tape is
//! replayed as the mock server to a client that brings values of its own.
//! Random values are drawn afresh each run; the seed is in every failure
//! message (`TCPTAPE_SEED=N` runs that seed again).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use tcptape::tape::{Direction, Writer};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

/// Writes a tape of `steps`, each one data frame, then both EOFs.
fn write_tape(path: &Path, steps: &[(Direction, Vec<u8>)]) {
    let mut bytes = Vec::new();
    let mut w = Writer::new(&mut bytes).unwrap();
    for (dir, data) in steps {
        w.data(*dir, data).unwrap();
    }
    w.eof(C2S).unwrap();
    w.eof(S2C).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes a tape of each run into `dir`, named `NAME<i>.tape`.
fn write_tapes(dir: &Path, name: &str, runs: &[Vec<(Direction, Vec<u8>)>]) -> Vec<PathBuf> {
    runs.iter()
        .enumerate()
        .map(|(i, steps)| {
            let path = dir.join(format!("{name}{i}.tape"));
            write_tape(&path, steps);
            path
        })
        .collect()
}

/// `learn` from `tapes` into `out` (which must succeed): the text.
fn learned(tapes: &[PathBuf], out: &Path) -> String {
    let tapes: Vec<&Path> = tapes.iter().map(PathBuf::as_path).collect();
    learn(&tapes, out)
}

/// Learns from `tapes` into `out`: (exit code, stderr).
fn try_learn(tapes: &[PathBuf], out: &Path) -> (i32, String) {
    let mut args = vec!["learn"];
    args.extend(tapes.iter().map(|p| p.to_str().unwrap()));
    args.extend(["-o", out.to_str().unwrap()]);
    let (code, _, stderr) = run(&args);
    (code, stderr)
}

fn seed() -> u64 {
    match std::env::var("TCPTAPE_SEED") {
        Ok(seed) => seed.parse().expect("TCPTAPE_SEED is a number"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// The `k`-th seed drawn from `seed`, far from the others (splitmix64).
fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number below `n` drawn from `seed`.
fn below(seed: u64, n: u64) -> u64 {
    mix(seed, 0) % n
}

mod memcached {
    /// A binary protocol header (24 bytes).
    pub fn header(magic: u8, opcode: u8, key: u16, extras: u8, body: u32, cas: u64) -> Vec<u8> {
        let mut h = vec![magic, opcode];
        h.extend(key.to_be_bytes());
        h.extend([extras, 0, 0, 0]);
        h.extend(body.to_be_bytes());
        h.extend([0; 4]);
        h.extend(cas.to_be_bytes());
        h
    }

    pub fn set() -> Vec<u8> {
        let mut m = header(0x80, 0x01, 5, 8, 18, 0);
        m.extend([0; 8]);
        m.extend(b"helloworld");
        m
    }

    pub fn set_reply(cas: u64) -> Vec<u8> {
        header(0x81, 0x01, 0, 0, 0, cas)
    }

    pub fn get() -> Vec<u8> {
        let mut m = header(0x80, 0x00, 5, 0, 5, 0);
        m.extend(b"hello");
        m
    }

    pub fn get_reply(cas: u64) -> Vec<u8> {
        let mut m = header(0x81, 0x00, 0, 4, 9, cas);
        m.extend([0; 4]);
        m.extend(b"world");
        m
    }
}

#[test]
fn a_value_that_ends_a_turn_stays_in_it() {
    // memcached's binary protocol: the SET reply ends with the item's CAS,
    // which differs from run to run; the next bytes the server sends, the
    // GET reply's `81 00 00`, come after the client's GET.
    let dir = temp_dir("learn-turn-end");
    let runs: Vec<_> = [0x1a2b_3c01u64, 0x1a2b_3c57]
        .into_iter()
        .map(|cas| {
            vec![
                (C2S, memcached::set()),
                (S2C, memcached::set_reply(cas)),
                (C2S, memcached::get()),
                (S2C, memcached::get_reply(cas)),
            ]
        })
        .collect();
    let out = dir.join("learned.txt");
    let text = learned(&write_tapes(&dir, "run", &runs), &out);
    // The CAS's bytes that a carry may reach, and no byte of the next turn.
    assert!(
        text.contains("< [vary 1a 2b 3c 01]   # varies in 2 of 2 recordings, 4 bytes\n> "),
        "{text}"
    );
    assert!(
        !text.contains("span <"),
        "every span holds its bytes:\n{text}"
    );
    // Served to a client of a later run: the mock answers each request.
    let out = out.to_str().unwrap();
    let (answers, code, stderr) = mock_once(out, |addr| {
        let mut c = connect(addr);
        write_all(&mut c, &memcached::set());
        let set = read_n(&mut c, 24);
        write_all(&mut c, &memcached::get());
        let get = read_n(&mut c, 33);
        half_close(&c);
        (set[..2].to_vec(), get[24..].to_vec())
    });
    assert_eq!(code, 0, "{stderr}\n{text}");
    assert_eq!(answers, (vec![0x81, 0x01], b"\0\0\0\0world".to_vec()));
}

mod dns {
    /// A DNS query for example.test over TCP, with an EDNS client cookie.
    pub fn query(id: u16, cookie: [u8; 8]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend(b"\x01\x20\x00\x01\x00\x00\x00\x00\x00\x01");
        m.extend(b"\x07example\x04test\x00\x00\x01\x00\x01");
        m.extend(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x08");
        m.extend(cookie);
        framed(m)
    }

    /// The answer: 10.1.2.3.
    pub fn answer(id: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend(b"\x85\x80\x00\x01\x00\x01\x00\x00\x00\x01");
        m.extend(b"\x07example\x04test\x00\x00\x01\x00\x01");
        m.extend(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x0a\x01\x02\x03");
        m.extend(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00");
        framed(m)
    }

    fn framed(message: Vec<u8>) -> Vec<u8> {
        let mut m = (message.len() as u16).to_be_bytes().to_vec();
        m.extend(message);
        m
    }
}

#[test]
fn a_two_byte_id_the_server_echoes_is_captured() {
    let dir = temp_dir("learn-dns");
    let runs = [
        (0x7a49u16, *b"\x0f\x71\xb6\x05\xb7\x8a\xef\xa3"),
        (0xcc80, *b"\xad\x65\x4b\xbf\x28\x62\x68\xa4"),
        (0x1234, *b"\x91\x00\x3e\x7c\x55\x10\xfe\x02"),
    ];
    let runs: Vec<_> = runs
        .into_iter()
        .map(|(id, cookie)| vec![(C2S, dns::query(id, cookie)), (S2C, dns::answer(id))])
        .collect();
    let out = dir.join("learned.txt");
    let text = learned(&write_tapes(&dir, "dig", &runs), &out);
    for line in [
        "> [length u16be 53 00 35]   # the message's length, which counts values that may change length",
        "> [capture token1 \"zI\"]   # capture token1: varies in 3 of 3 recordings, 2 bytes; echoed by the server at line 15",
        "> [length u16be 8 00 08]   # the length of the value after it, which counts values that may change length",
        "< [echo token1 \"zI\"]   # echo token1: the value the client sent at line 8",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    // The message lengths were the same in every recording, and `00 0a`
    // is the cookie option's code, not a length.
    assert!(!text.contains("different in the recordings"), "{text}");
    assert!(!text.contains("[length u8"), "{text}");
    // A new query's id comes back.
    let (answer, code, stderr) = mock_once(out.to_str().unwrap(), |addr| {
        let mut c = connect(addr);
        write_all(&mut c, &dns::query(0xbeef, *b"newcooki"));
        let len = read_n(&mut c, 2);
        let answer = read_n(&mut c, usize::from(u16::from_be_bytes([len[0], len[1]])));
        half_close(&c);
        answer
    });
    assert_eq!(code, 0, "{stderr}\n{text}");
    assert_eq!(answer[..2], [0xbe, 0xef], "the query's own id");
}

#[test]
fn recordings_that_took_different_paths_are_refused_where_they_part() {
    // One run sets and gets a key; the other sets another key between.
    let dir = temp_dir("learn-paths");
    let set = |key: &str| (C2S, format!("set {key} 0 0 5\r\nhello\r\n").into_bytes());
    let stored = || (S2C, b"STORED\r\n".to_vec());
    let get = (C2S, b"get k1\r\n".to_vec());
    let value = (S2C, b"VALUE k1 0 5\r\nhello\r\nEND\r\n".to_vec());
    let (a, b) = (dir.join("a.tape"), dir.join("b.tape"));
    write_tape(&a, &[set("k1"), stored(), get.clone(), value.clone()]);
    write_tape(&b, &[set("k1"), stored(), set("k2"), stored(), get, value]);
    let out = dir.join("learned.txt");
    let (code, stderr) = try_learn(&[a.clone(), b.clone()], &out);
    assert_eq!(code, 1, "{stderr}");
    let (a, b) = (a.display(), b.display());
    assert!(
        stderr.contains(&format!(
            "{a} and {b} took different paths: at turn 3 {b} has 2 turns that {a} has not, from the client's \"set k2 0 0 5\\r\\nhello\\r\\n\" (frame 3 of {b}); {a} goes on with the client's \"get k1\\r\\n\" (frame 3)"
        )),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// One run of the scripted protocol: the server's token, the client's id
/// and the server's time.
#[derive(Debug, Clone)]
struct Script {
    token: String,
    id: String,
    at: String,
}

impl Script {
    fn new(token: &str, id: &str, at: &str) -> Script {
        Script {
            token: token.into(),
            id: id.into(),
            at: at.into(),
        }
    }

    /// A run of random values: a hex token of 8 to 14 digits, an id of 1
    /// to 9 digits, a time of 15.
    fn random(seed: u64) -> Script {
        let digits = |len: u64, k: u64, base: u8| -> String {
            random_bytes(len as usize, mix(seed, k))
                .iter()
                .map(|b| {
                    let d = b % base;
                    char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 })
                })
                .collect()
        };
        let id = digits(1 + below(mix(seed, 1), 9), 2, 10);
        // No leading zero: the client sends a number.
        let id = id.trim_start_matches('0');
        Script {
            token: digits(8 + below(mix(seed, 3), 7), 4, 16),
            id: if id.is_empty() { "7".into() } else { id.into() },
            at: format!("{}{}", 1 + below(mix(seed, 5), 9), digits(14, 6, 10)),
        }
    }

    fn steps(&self) -> Vec<(Direction, Vec<u8>)> {
        let Script { token, id, at } = self;
        [
            (S2C, format!("HELLO {token}\r\n")),
            (C2S, format!("AUTH {token}\r\n")),
            (S2C, format!("OK {token}\r\n")),
            (C2S, format!("ID {id}\r\n")),
            (S2C, format!("ECHO {id} AT {at}\r\n")),
            (C2S, "QUIT\r\n".to_string()),
            (S2C, "BYE\r\n".to_string()),
        ]
        .into_iter()
        .map(|(dir, line)| (dir, line.into_bytes()))
        .collect()
    }
}

/// The scripted protocol's client against `addr`, with `id` of its own:
/// the server must echo it.
fn script_client(addr: SocketAddr, id: &str) -> Result<(), String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    let mut line = || {
        let mut line = String::new();
        lines.read_line(&mut line).map_err(|e| e.to_string())?;
        Ok::<_, String>(line)
    };
    let hello = line()?;
    let token = hello.strip_prefix("HELLO ").ok_or(format!("{hello:?}"))?;
    out.write_all(format!("AUTH {token}").as_bytes())
        .map_err(|e| e.to_string())?;
    let ok = line()?;
    if ok != format!("OK {token}") {
        return Err(format!("{ok:?} after HELLO {token:?}"));
    }
    out.write_all(format!("ID {id}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let echo = line()?;
    if !echo.starts_with(&format!("ECHO {id} AT ")) {
        return Err(format!("{echo:?} for ID {id}"));
    }
    out.write_all(b"QUIT\r\n").map_err(|e| e.to_string())?;
    let bye = line()?;
    out.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    (bye == "BYE\r\n").then_some(()).ok_or(bye)
}

/// Learns the scripted runs, each pair of them and all: each learned tape
/// captures the id and echoes it; the tape of all is served to clients of
/// ids of other lengths.
fn learn_scripts(dir: &Path, runs: &[Script], what: &str) {
    let steps: Vec<_> = runs.iter().map(Script::steps).collect();
    let tapes = write_tapes(dir, "script", &steps);
    let out = dir.join("learned.txt");
    let pairs = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0)];
    for (x, y) in pairs {
        // Runs with the same id show no id to echo.
        if runs[x].id == runs[y].id {
            continue;
        }
        let (code, stderr) = try_learn(&[tapes[x].clone(), tapes[y].clone()], &out);
        assert_eq!(code, 0, "{what}, runs {x} and {y}: {stderr}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.contains("> [capture id") && text.contains("< [echo id"),
            "{what}, runs {x} and {y}: no echo of the id in\n{text}\n{:?} {:?}",
            runs[x],
            runs[y]
        );
    }
    let text = learned(&tapes, &out);
    for id in ["5", "738", "901234567"] {
        let (result, code, stderr) =
            mock_once(out.to_str().unwrap(), |addr| script_client(addr, id));
        assert_eq!(
            result,
            Ok(()),
            "{what}, id {id}: {stderr}\n{text}\n{runs:?}"
        );
        assert_eq!(code, 0, "{what}, id {id}: {stderr}\n{text}");
    }
}

#[test]
fn an_id_the_server_echoes_is_found_from_any_pair_of_recordings() {
    let dir = temp_dir("learn-script");
    // The values a user recorded: from the first two alone, the id (3
    // digits in the second) was two independent vary spans.
    let runs = [
        Script::new("6cb636f01dc486", "424028324", "824553123749208"),
        Script::new("e1d7e65c", "125", "238922800564161"),
        Script::new("9d0c11aa27", "429135", "611190044318420"),
    ];
    learn_scripts(&dir, &runs, "the reported runs");
}

#[test]
fn an_id_the_server_echoes_is_found_from_random_recordings() {
    let dir = temp_dir("learn-script-random");
    let seed = seed();
    for k in 0..25u64 {
        let s = seed.wrapping_add(k * 1_000_003);
        let runs: Vec<Script> = (0..3).map(|i| Script::random(mix(s, i))).collect();
        // Runs whose ids are all the same show no id to echo.
        if runs.iter().all(|r| r.id == runs[0].id) {
            continue;
        }
        learn_scripts(&dir, &runs, &format!("seed {s}"));
    }
}
