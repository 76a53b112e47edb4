//! The main job end to end, in one process: a small mail-like server, one
//! session recorded through the proxy, the tape listed, then replayed both
//! ways (a mock server for a client, a mock client against the server).
//!
//!     cargo run --release --example roundtrip

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use tcptape::addr::Endpoint;
use tcptape::cli::{ClientArgs, Command, DescribeArgs, ProxyArgs, ReplayOptions, ServerArgs};
use tcptape::commands;

fn main() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let dir = std::env::temp_dir().join(format!("tcptape-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tape = dir.join("mail.tape");

    // 1. A real server: greets, answers each line, says bye.
    let upstream = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let upstream_addr = upstream.local_addr().unwrap();
    let server = thread::spawn(move || {
        for _ in 0..2 {
            let (stream, _) = upstream.accept().unwrap();
            mail_server(stream);
        }
    });

    // 2. Record one session through the proxy.
    let proxy_addr = free_addr();
    let proxy = spawn_command(Command::Proxy(ProxyArgs {
        listen: endpoint(proxy_addr),
        connect: endpoint(upstream_addr),
        tape: tape.clone(),
        buffer: tcptape::cli::DEFAULT_BUFFER,
        max_sessions: None,
        idle_timeout: None,
    }));
    let transcript = mail_client(connect_retrying(proxy_addr));
    proxy.join().unwrap().expect("proxy");
    println!("recorded through the proxy:\n{transcript}");

    // 3. The tape, frame by frame.
    println!("tcptape describe {}:", tape.display());
    commands::run(Command::Describe(DescribeArgs {
        tape: tape.clone(),
        verbose: false,
    }))
    .expect("describe");

    // 4. Replay the server to a client: every byte it sends is checked.
    let mock_addr = free_addr();
    let mock = spawn_command(Command::Server(ServerArgs {
        listen: endpoint(mock_addr),
        tape: tape.clone(),
        replay: options(),
        abort: false,
        once: true,
        reuse: false,
    }));
    let replayed = mail_client(connect_retrying(mock_addr));
    let verdict = mock.join().unwrap();
    println!("\nmock server: {}", verdict_text(&verdict));
    assert_eq!(replayed, transcript, "the mock answered differently");

    // 5. Replay the client against the real server.
    let verdict = commands::run(Command::Client(ClientArgs {
        connect: endpoint(upstream_addr),
        tape: tape.clone(),
        replay: options(),
    }));
    println!("mock client: {}", verdict_text(&verdict));
    server.join().unwrap();
    cleanup(&dir, &tape);
}

fn mail_server(stream: TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    writer.write_all(b"220 mail.example ESMTP\r\n").unwrap();
    for line in BufReader::new(stream).lines() {
        let line = line.unwrap();
        let reply = match line.split(' ').next().unwrap_or("") {
            "QUIT" => {
                writer.write_all(b"221 bye\r\n").unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
                continue;
            }
            "EHLO" => "250 hello\r\n",
            _ => "250 ok\r\n",
        };
        writer.write_all(reply.as_bytes()).unwrap();
    }
}

/// Speaks the client side; returns what the server said.
fn mail_client(mut stream: TcpStream) -> String {
    for command in ["EHLO client\r\n", "MAIL FROM:<a@b>\r\n", "QUIT\r\n"] {
        stream.write_all(command.as_bytes()).unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn options() -> ReplayOptions {
    ReplayOptions {
        no_assert: false,
        speed: None,
        timeout: Some(Duration::from_secs(10)),
        text_diff: true,
    }
}

fn spawn_command(command: Command) -> thread::JoinHandle<Result<(), tcptape::error::Error>> {
    thread::spawn(move || commands::run(command))
}

fn verdict_text(verdict: &Result<(), tcptape::error::Error>) -> String {
    match verdict {
        Ok(()) => "passed: everything matched the tape".to_string(),
        Err(err) => format!("failed (exit {}): {err}", err.exit_code()),
    }
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::parse(&addr.to_string()).unwrap()
}

/// A loopback port that was free a moment ago.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Connects once the command in the other thread listens.
fn connect_retrying(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => return stream,
            Err(err) if Instant::now() > deadline => panic!("connect to {addr}: {err}"),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn cleanup(dir: &Path, tape: &PathBuf) {
    let _ = std::fs::remove_file(tape);
    let _ = std::fs::remove_dir(dir);
}
