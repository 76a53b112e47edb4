//! `learn` as a user meets it: a real client and a real server whose values
//! change every run (a node name and timestamps of any length, a request id
//! the client picks and the server must echo, a session the server picks
//! and the client must send back), recorded twice through the proxy,
//! learned, and replayed in both roles against a third run that draws new
//! values. Values are drawn afresh each test run; the seed is in every
//! failure message (`TCPTAPE_SEED=N` runs that seed again).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

/// What one run of the scenario draws.
#[derive(Debug, Clone)]
struct Values {
    node: String,
    stamp: String,
    request_id: String,
    session: String,
}

/// Letters and digits of length `len`.
fn token(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    random_bytes(len, seed)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn digits(len: usize, seed: u64) -> String {
    random_bytes(len, seed)
        .iter()
        .map(|b| (b'0' + b % 10) as char)
        .collect()
}

/// The `k`-th seed drawn from `seed`, far from the others.
fn mix(seed: u64, k: u64) -> u64 {
    (seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// Three runs' values from `seed`. The two recorded runs differ in the
/// length of every value that may change length, so learn sees that it
/// does; the third run's lengths lie between theirs.
fn draw(seed: u64) -> [Values; 3] {
    let pick = |i: u64, n: u64| {
        random_bytes(8, mix(seed, i))
            .iter()
            .map(|b| u64::from(*b))
            .sum::<u64>()
            % n
    };
    let lengths = |i: u64, base: u64| {
        let first = base + pick(i, 6);
        let second = first + 2 + pick(i + 1, 6);
        let third = first + pick(i + 2, second - first + 1);
        [first, second, third].map(|n| n as usize)
    };
    let node = lengths(1, 4);
    let session = lengths(4, 12);
    let stamp = lengths(7, 10);
    std::array::from_fn(|run| {
        let s = |k: u64| mix(seed, 100 + run as u64 * 10 + k);
        Values {
            node: token(node[run], s(1)),
            stamp: digits(stamp[run], s(2)),
            request_id: token(8, s(3)),
            session: token(session[run], s(4)),
        }
    })
}

fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|err| format!("read: {err}"))?;
    if !line.ends_with("\r\n") {
        return Err(format!("a line cut short: {line:?}"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn send(stream: &mut TcpStream, line: &str) -> Result<(), String> {
    stream
        .write_all(format!("{line}\r\n").as_bytes())
        .map_err(|err| format!("write {line:?}: {err}"))
}

/// The real server: greets, echoes the request id, hands out a session and
/// refuses a request that does not bring it back.
fn server(stream: TcpStream, v: &Values) -> Result<(), String> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    send(&mut out, &format!("+HELLO node-{} ts={}", v.node, v.stamp))?;
    let login = read_line(&mut lines)?;
    let request_id = login
        .strip_prefix("LOGIN alice rid=")
        .ok_or(format!("server: unexpected {login:?}"))?;
    send(
        &mut out,
        &format!("+OK rid={request_id} session={}", v.session),
    )?;
    let get = read_line(&mut lines)?;
    if get != format!("GET greeting session={}", v.session) {
        send(&mut out, "-ERR bad session")?;
        return Err(format!("server: wrong session in {get:?}"));
    }
    send(&mut out, "$5")?;
    send(&mut out, "hello")?;
    send(
        &mut out,
        &format!("ts={}", v.stamp.chars().rev().collect::<String>()),
    )?;
    let quit = read_line(&mut lines)?;
    if quit != "QUIT" {
        return Err(format!("server: unexpected {quit:?}"));
    }
    send(&mut out, "+BYE")
}

/// The real client: logs in with its own request id, checks it comes back,
/// and sends the session it was given.
fn client(stream: TcpStream, v: &Values) -> Result<(), String> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    let hello = read_line(&mut lines)?;
    if !hello.starts_with("+HELLO node-") {
        return Err(format!("client: unexpected greeting {hello:?}"));
    }
    send(&mut out, &format!("LOGIN alice rid={}", v.request_id))?;
    let ok = read_line(&mut lines)?;
    let rest = ok
        .strip_prefix(&format!("+OK rid={} session=", v.request_id))
        .ok_or(format!("client: my request id is not in {ok:?}"))?;
    send(&mut out, &format!("GET greeting session={rest}"))?;
    for expected in ["$5", "hello"] {
        let line = read_line(&mut lines)?;
        if line != expected {
            return Err(format!("client: {line:?} instead of {expected:?}"));
        }
    }
    let stamp = read_line(&mut lines)?;
    if !stamp.starts_with("ts=") {
        return Err(format!("client: unexpected {stamp:?}"));
    }
    send(&mut out, "QUIT")?;
    let bye = read_line(&mut lines)?;
    if bye != "+BYE" {
        return Err(format!("client: unexpected {bye:?}"));
    }
    Ok(())
}

/// A real server thread for one connection.
fn real_server(v: &Values) -> (SocketAddr, thread::JoinHandle<Result<(), String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let v = v.clone();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        server(stream, &v)
    });
    (addr, handle)
}

/// Records one run through the proxy into `tape`.
fn record(v: &Values, tape: &Path, seed: u64) {
    let (upstream, server_thread) = real_server(v);
    let result = record_through_proxy(upstream, tape, |proxy| client(connect(proxy), v));
    assert_eq!(result, Ok(()), "seed {seed}: client through the proxy");
    assert_eq!(server_thread.join().unwrap(), Ok(()), "seed {seed}: server");
}

/// A new seed each run, or `TCPTAPE_SEED` to replay a failure.
fn seed() -> u64 {
    if let Some(seed) = std::env::var("TCPTAPE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// Two recorded runs and the learned tape.
fn learned(dir: &Path, runs: &[Values; 3], seed: u64) -> std::path::PathBuf {
    // Shown with any failure, those of the shared helpers too.
    eprintln!("TCPTAPE_SEED={seed}");
    let first = dir.join("run1.tape");
    let second = dir.join("run2.tape");
    record(&runs[0], &first, seed);
    record(&runs[1], &second, seed);
    let tape = dir.join("learned.txt");
    let text = learn(&[&first, &second], &tape);
    for needle in ["[capture ", "[echo ", "[vary "] {
        assert!(text.contains(needle), "seed {seed}: no {needle} in\n{text}");
    }
    tape
}

#[test]
fn a_tape_learned_from_two_proxied_runs_mocks_the_server_for_a_third() {
    let seed = seed();
    let runs = draw(seed);
    let dir = temp_dir("learn-live-server");
    let tape = learned(&dir, &runs, seed);

    // The recording as it is does not serve a run with new values.
    let mock = spawn(
        &[
            "server",
            "--once",
            "127.0.0.1:0",
            dir.join("run1.tape").to_str().unwrap(),
        ],
        true,
    );
    let _ = client(connect(mock.addr()), &runs[2]);
    let (code, _, stderr) = mock.finish();
    assert_eq!(
        code, 3,
        "seed {seed}: the raw recording should depart: {stderr}"
    );

    // The learned tape does: it echoes the third client's request id and
    // checks that the client brings back the session it handed out.
    let mock = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    let result = client(connect(mock.addr()), &runs[2]);
    let (code, _, stderr) = mock.finish();
    assert_eq!(result, Ok(()), "seed {seed}: third client: {stderr}");
    assert_eq!(code, 0, "seed {seed}: {stderr}");

    // A client that sends back some other session is caught.
    let mock = spawn(
        &["server", "--once", "127.0.0.1:0", tape.to_str().unwrap()],
        true,
    );
    let mut stream = connect(mock.addr());
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    read_line(&mut lines).unwrap();
    send(
        &mut stream,
        &format!("LOGIN alice rid={}", runs[2].request_id),
    )
    .unwrap();
    read_line(&mut lines).unwrap();
    send(&mut stream, "GET greeting session=somebody-elses").unwrap();
    drop(lines);
    drop(stream);
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 3, "seed {seed}: {stderr}");
}

#[test]
fn a_tape_learned_from_two_proxied_runs_mocks_the_client_for_a_third() {
    let seed = seed();
    let runs = draw(seed);
    let dir = temp_dir("learn-live-client");
    let tape = learned(&dir, &runs, seed);

    // The third server draws its own node, stamps and session; the mock
    // client must echo the session it hands out, or the server refuses.
    let (addr, server_thread) = real_server(&runs[2]);
    let (code, _, stderr) = run(&[
        "client",
        "--timeout",
        "10",
        &addr.to_string(),
        tape.to_str().unwrap(),
    ]);
    let served = server_thread.join().unwrap();
    assert_eq!(served, Ok(()), "seed {seed}: third server: {stderr}");
    assert_eq!(code, 0, "seed {seed}: {stderr}");

    // The raw recording sends the first run's session, which the third
    // server refuses.
    let (addr, server_thread) = real_server(&runs[2]);
    let (code, _, stderr) = run(&[
        "client",
        "--timeout",
        "10",
        &addr.to_string(),
        dir.join("run1.tape").to_str().unwrap(),
    ]);
    assert!(server_thread.join().unwrap().is_err(), "seed {seed}");
    assert_eq!(code, 3, "seed {seed}: {stderr}");
}
