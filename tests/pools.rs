//! Cassettes of connection pools replay in any order: connections that
//! start alike (a driver's handshake, a mail server's greeting) are played
//! side by side against every tape that fits until they differ.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread;

use common::*;
use tcptape::tape::{Direction, Writer};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

/// A tape of exchanges: `(client, server)` in turn, then both sides close.
fn exchanges(path: &Path, banner: Option<&[u8]>, turns: &[(&[u8], &[u8])]) {
    let mut w = Writer::new(std::fs::File::create(path).unwrap()).unwrap();
    if let Some(banner) = banner {
        w.data(S2C, banner).unwrap();
    }
    for (request, answer) in turns {
        w.data(C2S, request).unwrap();
        w.data(S2C, answer).unwrap();
    }
    w.eof(C2S).unwrap();
    w.eof(S2C).unwrap();
}

/// A client that says each request and checks each answer, line by line.
fn talk(addr: SocketAddr, banner: Option<&str>, turns: &[(String, String)]) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if let Some(banner) = banner {
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, banner);
    }
    for (request, answer) in turns {
        writer.write_all(request.as_bytes()).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(&line, answer, "answer to {request:?}");
    }
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    line.clear();
    assert_eq!(reader.read_line(&mut line).unwrap(), 0, "{line:?}");
}

/// A permutation of `0..n` from `seed`.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let noise = random_bytes(n, seed);
    for i in (1..n).rev() {
        order.swap(i, noise[i] as usize % (i + 1));
    }
    order
}

/// What redis-py's pool connections say: the same handshake, then each
/// thread its own commands.
fn redis_turns(i: usize) -> Vec<(String, String)> {
    vec![
        (
            "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$8\r\nLIB-NAME\r\n".to_string(),
            "+OK\r\n".to_string(),
        ),
        (format!("SET key{i} value{i}\r\n"), "+OK\r\n".to_string()),
        (format!("GET key{i}\r\n"), format!("$value{i}\r\n")),
    ]
}

fn as_bytes(turns: &[(String, String)]) -> Vec<(&[u8], &[u8])> {
    turns
        .iter()
        .map(|(a, b)| (a.as_bytes(), b.as_bytes()))
        .collect()
}

#[test]
fn a_pool_whose_connections_start_alike_replays_in_any_order() {
    let dir = temp_dir("pools-redis");
    for i in 0..4 {
        exchanges(
            &dir.join(format!("{:04}.tape", i + 1)),
            None,
            &as_bytes(&redis_turns(i)),
        );
    }
    let cassette = format!("{}/", dir.display());
    for run in 0..5 {
        let mock = spawn(&["server", "--once", "127.0.0.1:0", &cassette], true);
        let addr = mock.addr();
        let clients: Vec<_> = shuffled(4, run + 1)
            .into_iter()
            .map(|i| thread::spawn(move || talk(addr, None, &redis_turns(i))))
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        let (code, _, stderr) = mock.finish();
        assert_eq!(code, 0, "run {run}: {stderr}");
        assert!(stderr.contains("4 sessions: 4 passed"), "{stderr}");
    }
}

fn smtp_turns(sender: &str) -> Vec<(String, String)> {
    vec![
        ("EHLO client\r\n".to_string(), "250 hello\r\n".to_string()),
        (
            format!("MAIL FROM:<{sender}>\r\n"),
            format!("250 ok {sender}\r\n"),
        ),
        ("QUIT\r\n".to_string(), "221 bye\r\n".to_string()),
    ]
}

#[test]
fn concurrent_mail_senders_replay_in_any_accept_order() {
    let dir = temp_dir("pools-smtp");
    let senders = ["alice@a", "bob@b", "carol@c"];
    for (i, sender) in senders.iter().enumerate() {
        exchanges(
            &dir.join(format!("{:04}.tape", i + 1)),
            Some(b"220 mail ESMTP\r\n"),
            &as_bytes(&smtp_turns(sender)),
        );
    }
    let cassette = format!("{}/", dir.display());
    for run in 0..5 {
        let mock = spawn(&["server", "--once", "127.0.0.1:0", &cassette], true);
        let addr = mock.addr();
        let clients: Vec<_> = shuffled(3, run + 10)
            .into_iter()
            .map(|i| {
                let sender = senders[i];
                thread::spawn(move || talk(addr, Some("220 mail ESMTP\r\n"), &smtp_turns(sender)))
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        let (code, _, stderr) = mock.finish();
        assert_eq!(code, 0, "run {run}: {stderr}");
    }
}

#[test]
fn the_same_request_with_different_answers_is_served_in_recorded_order() {
    let dir = temp_dir("pools-counter");
    for i in 1..=2 {
        exchanges(
            &dir.join(format!("{i:04}.tape")),
            None,
            &[(b"INCR hits\r\n", format!(":{i}\r\n").as_bytes())],
        );
    }
    let cassette = format!("{}/", dir.display());
    let mock = spawn(&["server", "--once", "127.0.0.1:0", &cassette], true);
    for i in 1..=2 {
        talk(
            mock.addr(),
            None,
            &[("INCR hits\r\n".to_string(), format!(":{i}\r\n"))],
        );
    }
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_connection_that_leaves_every_candidate_is_reported_against_the_closest() {
    let dir = temp_dir("pools-nomatch");
    for i in 0..2 {
        exchanges(
            &dir.join(format!("{:04}.tape", i + 1)),
            None,
            &as_bytes(&redis_turns(i)),
        );
    }
    let cassette = format!("{}/", dir.display());
    let mock = spawn(
        &[
            "server",
            "--once",
            "--timeout",
            "5",
            "127.0.0.1:0",
            &cassette,
        ],
        true,
    );
    let stream = TcpStream::connect(mock.addr()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer.write_all(redis_turns(0)[0].0.as_bytes()).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(
        line, "+OK\r\n",
        "the shared answer comes before any decision"
    );
    writer.write_all(b"SET key9 value9\r\n").unwrap();
    line.clear();
    let _ = reader.read_line(&mut line);
    drop(writer);
    drop(reader);
    mock.signal("TERM");
    let (code, _, stderr) = mock.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("differs from the tape"), "{stderr}");
}

#[test]
fn a_cassette_replays_as_a_mock_client_connecting_when_it_did() {
    let dir = temp_dir("pools-client-cassette");
    for i in 0..3 {
        exchanges(
            &dir.join(format!("{:04}.tape", i + 1)),
            None,
            &[(
                format!("HELLO {i}\n").as_bytes(),
                format!("hi {i}\n").as_bytes(),
            )],
        );
    }
    std::fs::write(
        dir.join("index"),
        "# tcptape cassette index\n# tape order start_ms client_bytes server_bytes first_speaker status\n\
         0001.tape 1 0 8 5 client whole\n0002.tape 2 300 8 5 client whole\n0003.tape 3 600 8 5 client whole\n",
    )
    .unwrap();
    let (listener, addr) = listener();
    let server = thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut arrivals = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..3 {
            let (stream, _) = listener.accept().unwrap();
            arrivals.push(started.elapsed());
            handles.push(thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let n = line.trim().strip_prefix("HELLO ").unwrap().to_string();
                writer.write_all(format!("hi {n}\n").as_bytes()).unwrap();
                line.clear();
                assert_eq!(reader.read_line(&mut line).unwrap(), 0);
                writer.shutdown(std::net::Shutdown::Write).unwrap();
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        arrivals
    });
    let cassette = format!("{}/", dir.display());
    let (code, _, stderr) = run(&["client", &addr.to_string(), &cassette]);
    let arrivals = server.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("3 sessions: 3 passed"), "{stderr}");
    // Opened as they were recorded: 300 ms apart (generously checked).
    assert!(
        arrivals[2] >= std::time::Duration::from_millis(550),
        "{arrivals:?}"
    );

    // --speed 10: ten times as fast.
    let (listener, addr) = common::listener();
    let server = thread::spawn(move || {
        for _ in 0..3 {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = [0u8; 8];
            std::io::Read::read_exact(&mut s, &mut request).unwrap();
            // A server that answers something else: a mismatch.
            s.write_all(b"no\n").unwrap();
        }
    });
    let (code, _, stderr) = run(&["client", "--speed", "10", &addr.to_string(), &cassette]);
    server.join().unwrap();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("3 mismatched"), "{stderr}");
}
