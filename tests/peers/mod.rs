//! Peer programs nobody here wrote, for tests that record and replay them:
//! whether one is installed, starting one and stopping it with the test,
//! a PostgreSQL cluster of the test's own.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use super::common::{PATIENCE, dead_addr, fixture};

/// A peer program running for the length of a test.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True when `program args` runs and succeeds.
pub fn installed(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn python_has(module: &str) -> bool {
    installed("python3", &["-c", &format!("import {module}")])
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// Starts `command` and waits until `addr` accepts connections (the peer
/// is another program: there is no event to wait on but its port).
pub fn start_peer(command: &mut Command, addr: SocketAddr) -> Peer {
    let peer = Peer(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the peer"),
    );
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the peer did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    peer
}

/// Runs the script `script` of tests/fixtures/peers with python3 and
/// `args`: `Ok`, or what it said on stderr.
pub fn python_peer(script: &str, args: &[String]) -> Result<(), String> {
    let mut python = Command::new("python3");
    answer(python.arg(fixture("peers").join(script)).args(args)).map(drop)
}

/// Runs a client program to its end: what it printed (trimmed), or what
/// it said on stderr when it failed.
pub fn answer(command: &mut Command) -> Result<String, String> {
    let out = command.stdin(Stdio::null()).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A redis-server of the test's own, or None (with a message) where it
/// or redis-py is not installed.
pub fn redis_server() -> Option<(Peer, SocketAddr)> {
    if !installed("redis-server", &["--version"]) || !python_has("redis") {
        eprintln!(
            "skipped: needs redis-server and the redis Python package (.ci/run installs them)"
        );
        return None;
    }
    let addr = dead_addr();
    let port = addr.port().to_string();
    let redis = start_peer(
        Command::new("redis-server").args(["--port", &port, "--save", "", "--appendonly", "no"]),
        addr,
    );
    Some((redis, addr))
}

/// psql's one query against `addr` as `user` with `password`, without TLS
/// (the mock does not speak it): what it printed, or its error.
pub fn psql(addr: SocketAddr, user: &str, password: &str) -> Result<String, String> {
    answer(
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
            .args(["-U", user, "-d", "postgres", "-X", "-A", "-t"])
            .args(["-c", "select 41 + 1 as answer"])
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10"),
    )
}

/// The bin folder of the newest PostgreSQL server installed, if any.
pub fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// `program` as the `postgres` account when we are root (PostgreSQL will
/// not run as root), as ourselves otherwise. The account is switched in the
/// child itself, so the process we hold is the server and not a wrapper
/// that would leave it running.
pub fn as_postgres(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .ok()
    };
    let mut command = Command::new(program);
    if let (true, Some(uid), Some(gid)) = (is_root(), id("-u"), id("-g")) {
        command.uid(uid).gid(gid);
    }
    command
}

/// A PostgreSQL server of the test's own in `dir`, shut down (fast:
/// SIGINT) when dropped, so its helper processes go with it.
pub struct Postgres {
    server: Option<Peer>,
    pub addr: SocketAddr,
    /// The folder of its UNIX socket.
    pub socket_dir: PathBuf,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(Peer(child)) = &mut self.server {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Starts a cluster in `dir/data` with `initdb`'s `auth` options, on a
/// free port of 127.0.0.1, its socket in `dir`.
pub fn postgres(bin: &Path, dir: &Path, auth: &[&str], addr: SocketAddr) -> Postgres {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    // The server runs as `postgres` when we are root: it owns its files.
    let _ = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir)
        .status();
    let init = as_postgres(&bin.join("initdb"))
        .args(auth)
        .args(["-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let server = start_peer(
        as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &addr.port().to_string(), "-k"])
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
        addr,
    );
    Postgres {
        server: Some(server),
        addr,
        socket_dir: dir.to_path_buf(),
    }
}
