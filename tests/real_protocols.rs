//! Real clients and servers nobody here wrote, recorded and replayed: a
//! redis-py connection pool against redis-server, concurrent smtplib
//! senders against aiosmtpd. Each test skips, saying why, where its
//! server or client library is not installed (`.ci/run` installs them).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A peer program running for the length of a test.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python_has(module: &str) -> bool {
    installed("python3", &["-c", &format!("import {module}")])
}

/// Starts `command` and waits until `addr` accepts connections.
fn start_peer(command: &mut Command, addr: SocketAddr) -> Peer {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the peer");
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the peer did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Peer(child)
}

/// Runs a client script from tests/fixtures/peers against `port`.
fn client_script(script: &str, port: u16) {
    let out = Command::new("python3")
        .arg(fixture("peers").join(script))
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Records `script`'s sessions with the server at `upstream` into a cassette.
fn record(cassette: &Path, upstream: SocketAddr, script: &str) {
    let cassette = format!("{}/", cassette.display());
    let proxy = spawn(
        &["proxy", "127.0.0.1:0", &upstream.to_string(), &cassette],
        true,
    );
    client_script(script, proxy.addr().port());
    proxy.signal("TERM");
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "{stderr}");
}

/// Replays the cassette to `script` `runs` times; every run must pass.
fn replay(cassette: &Path, script: &str, runs: usize) {
    let cassette = format!("{}/", cassette.display());
    for run in 0..runs {
        let mock = spawn(&["server", "--once", "127.0.0.1:0", &cassette], true);
        client_script(script, mock.addr().port());
        let (code, _, stderr) = mock.finish();
        assert_eq!(code, 0, "run {run}: {stderr}");
    }
}

#[test]
fn a_redis_py_pool_replays_in_any_order_every_run() {
    if !installed("redis-server", &["--version"]) || !python_has("redis") {
        eprintln!(
            "skipped: needs redis-server and the redis Python package (.ci/run installs them)"
        );
        return;
    }
    let dir = temp_dir("real-redis");
    let addr = dead_addr();
    let port = addr.port().to_string();
    let redis = start_peer(
        Command::new("redis-server").args(["--port", &port, "--save", "", "--appendonly", "no"]),
        addr,
    );
    record(&dir.join("pool"), addr, "redis_pool.py");
    drop(redis);
    assert_eq!(
        std::fs::read_dir(dir.join("pool")).unwrap().count(),
        5,
        "4 tapes and the index"
    );
    // The threads take the pool's connections in a different order each
    // run; each connection's handshake answer (its id) differs by tape.
    replay(&dir.join("pool"), "redis_pool.py", 5);
}

#[test]
fn concurrent_smtplib_senders_replay_against_an_aiosmtpd_recording() {
    if !python_has("aiosmtpd") {
        eprintln!("skipped: needs the aiosmtpd Python package (.ci/run installs it)");
        return;
    }
    let dir = temp_dir("real-smtp");
    let addr = dead_addr();
    let server = start_peer(
        Command::new("python3").args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string()]),
        addr,
    );
    record(&dir.join("mail"), addr, "smtp_senders.py");
    drop(server);
    replay(&dir.join("mail"), "smtp_senders.py", 4);
}
