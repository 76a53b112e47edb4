//! The main job end to end, in one process, on the library API: a small
//! mail server, one session recorded through a `Recorder`, the tape as
//! text, then replayed both ways: a `MockServer` for the mail client, a
//! `MockClient` against the real server.
//!
//!     cargo run --release --example roundtrip

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;

use tcptape::{MockClient, MockServer, Recorder};

fn main() -> Result<(), tcptape::Error> {
    let dir = std::env::temp_dir().join(format!("tcptape-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tape = dir.join("mail.tape");

    // 1. A real server: greets, answers each command, says bye.
    let upstream = TcpListener::bind("127.0.0.1:0").expect("bind the mail server");
    let upstream_addr = upstream.local_addr().unwrap();
    let server = thread::spawn(move || {
        for stream in upstream.incoming().take(2) {
            mail_server(stream.unwrap());
        }
    });

    // 2. Record one session through the proxy: it listens before start
    //    returns, so the client connects at once.
    let recorder = Recorder::start(upstream_addr, &tape)?;
    let transcript = mail_client(recorder.addr());
    let recorded = recorder.finish()?;
    println!("recorded through the proxy: {}", recorded.summary());
    print!("{transcript}");

    // 3. The tape as text, as it would be reviewed.
    let mut text = Vec::new();
    let mut reader = tcptape::tape::Reader::new(std::fs::File::open(&tape).unwrap());
    tcptape::tape::text::print(&mut reader, &mut text).expect("print the tape");
    println!("\n{}", String::from_utf8_lossy(&text));

    // 4. The mail server from tape: every byte the client sends is checked.
    let mock = MockServer::start(&tape)?;
    let replayed = mail_client(mock.addr());
    let report = mock.finish()?;
    println!("mock server: {}", report.summary());
    assert_eq!(replayed, transcript, "the mock answered differently");

    // 5. The mail client from tape, against the real server.
    let report = MockClient::run(upstream_addr, &tape)?;
    println!("mock client: {}", report.summary());

    server.join().unwrap();
    std::fs::remove_dir_all(&dir).expect("remove the example's files");
    Ok(())
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

/// Speaks SMTP's client side as real clients do: waits for the greeting,
/// then sends each command after the reply to the one before. Returns
/// what the server said.
fn mail_client(server: SocketAddr) -> String {
    let stream = TcpStream::connect(server).expect("connect");
    let mut writer = stream.try_clone().unwrap();
    let mut replies = BufReader::new(stream);
    let mut transcript = String::new();
    let mut read_reply = |transcript: &mut String| {
        let mut line = String::new();
        replies.read_line(&mut line).expect("a reply");
        transcript.push_str(&line);
    };
    read_reply(&mut transcript);
    for command in ["EHLO client\r\n", "MAIL FROM:<a@b>\r\n", "QUIT\r\n"] {
        writer.write_all(command.as_bytes()).unwrap();
        read_reply(&mut transcript);
    }
    writer.shutdown(Shutdown::Write).unwrap();
    transcript
}
