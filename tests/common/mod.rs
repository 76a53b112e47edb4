//! Helpers for end-to-end tests: the real binary, real files, real sockets on
//! loopback. Nothing here sleeps to wait for something; it waits on events
//! (a log line, a connection, a process exit) with generous deadlines.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for a loaded CI machine; tests never wait this long when
/// things work.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tcptape")
}

/// A command for the binary, isolated from the caller's environment.
pub fn tcptape() -> Command {
    let mut command = Command::new(bin());
    isolate(&mut command);
    command
}

/// Clears what would change tcptape's behaviour under a test: `CI`
/// (set on CI machines, where `auto` refuses to record) and `TCPTAPE_MODE`,
/// unless the test set them itself.
pub fn isolate(command: &mut Command) {
    for key in ["CI", "TCPTAPE_MODE"] {
        if !command.get_envs().any(|(set, _)| set == key) {
            command.env_remove(key);
        }
    }
}

/// A fresh folder for one test's files, removed with everything in it
/// when the test is over.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("tcptape-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A tape written by hand, as text, into `dir`: its path.
pub fn text_tape(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs the binary to completion: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = tcptape()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tcptape");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running tcptape whose stderr is collected in the background.
pub struct Running {
    pub child: Child,
    pub addr: Option<SocketAddr>,
    /// The address of the ready line, as printed (`unix:/path` included).
    pub address: String,
    stderr: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
    /// Lines of stdout after the ready line.
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

/// Starts tcptape; when `listens`, waits for its ready line on stdout,
/// `listening on ADDR`.
pub fn spawn(args: &[&str], listens: bool) -> Running {
    spawn_logged(args, listens, "debug")
}

/// `spawn` with a log level of choice (benches keep logging quiet).
pub fn spawn_logged(args: &[&str], listens: bool, level: &str) -> Running {
    let mut command = tcptape();
    command.args(args).env("RUST_LOG", level);
    start(command, listens)
}

/// Runs a shell command line that ends by exec-ing tcptape (for `ulimit`).
pub fn spawn_shell(script: &str) -> Running {
    let mut command = Command::new("sh");
    command.args(["-c", script]).env("RUST_LOG", "info");
    start(command, true)
}

/// Starts a prepared command (args and environment set); when `listens`,
/// waits for its ready line.
pub fn start_command(command: Command) -> Running {
    start(command, true)
}

/// `spawn` with extra environment variables.
pub fn spawn_env(args: &[&str], env: &[(&str, &str)], listens: bool) -> Running {
    let mut command = tcptape();
    command.args(args).env("RUST_LOG", "debug");
    for (key, value) in env {
        command.env(key, value);
    }
    start(command, listens)
}

fn start(mut command: Command, listens: bool) -> Running {
    isolate(&mut command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcptape");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, lines) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
            let _ = tx.send(line);
        }
    });
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut running = Running {
        child,
        addr: None,
        address: String::new(),
        stderr,
        lines,
        stdout: Some(stdout),
    };
    if listens {
        let line = running.ready_line();
        let address = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("not a ready line: {line:?}"))
            .trim_end()
            .to_string();
        // A `unix:` address has no SocketAddr; tests know its path.
        running.addr = address.parse().ok();
        running.address = address;
    }
    running
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("not listening")
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {needle:?} within {PATIENCE:?}; stderr so far:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// Waits until `count` more stderr lines contain `needle`; returns the
    /// last.
    pub fn wait_for_lines(&mut self, needle: &str, count: usize) -> String {
        let mut last = String::new();
        for _ in 0..count {
            last = self.wait_for_line(needle);
        }
        last
    }

    /// The process id, to look at it in /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the first line on stdout (the ready line). Reading is
    /// blocking, so a thread does it and the wait has a deadline.
    fn ready_line(&mut self) -> String {
        let mut stdout = self.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send((line, stdout));
        });
        match rx.recv_timeout(PATIENCE) {
            Ok((line, stdout)) if !line.is_empty() => {
                self.stdout = Some(stdout);
                line
            }
            _ => panic!(
                "no ready line on stdout within {PATIENCE:?}; stderr so far:\n{}",
                self.stderr()
            ),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the process to exit; returns (code, stdout, stderr).
    pub fn finish(mut self) -> (i32, String, String) {
        let status = wait_with_deadline(&mut self.child);
        let mut stdout = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        // Let the stderr thread drain what is left.
        while self.lines.recv_timeout(Duration::from_secs(5)).is_ok() {}
        (status.code().unwrap_or(-1), stdout, self.stderr())
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_deadline(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tcptape did not exit within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A listener on an ephemeral loopback port.
pub fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A loopback address where nothing listens (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let (listener, addr) = listener();
    drop(listener);
    addr
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads exactly `n` bytes.
pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Reads until EOF.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).unwrap();
    buf
}

pub fn write_all(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
}

pub fn half_close(stream: &TcpStream) {
    stream.shutdown(Shutdown::Write).unwrap();
}

/// A server thread that serves one connection with `script`.
pub fn serve_once<F>(script: F) -> (SocketAddr, thread::JoinHandle<()>)
where
    F: FnOnce(TcpStream) + Send + 'static,
{
    let (listener, addr) = listener();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        script(stream);
    });
    (addr, handle)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tape's frames as (opcode, length, payload), read with the library.
pub fn tape_frames(path: &Path) -> Vec<(u8, u32, Vec<u8>)> {
    use tcptape::tape::Reader;
    let mut reader = Reader::new(std::fs::File::open(path).unwrap());
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        let mut payload = Vec::new();
        if frame.kind.has_payload() {
            reader.read_payload_into(&mut payload).unwrap();
        }
        frames.push((frame.kind.opcode(), frame.len, payload));
    }
    frames
}

/// The bytes a tape holds for one direction (opcode 1 or 2), concatenated.
pub fn tape_stream(path: &Path, opcode: u8) -> Vec<u8> {
    tape_frames(path)
        .into_iter()
        .filter(|(op, _, _)| *op == opcode)
        .flat_map(|(_, _, payload)| payload)
        .collect()
}

/// Records one session through a proxy to `upstream` into `tape`: `client`
/// is run against the proxy's address, and its result returned once the
/// proxy has written the tape and exited cleanly.
pub fn record_through_proxy<T>(
    upstream: SocketAddr,
    tape: &Path,
    client: impl FnOnce(SocketAddr) -> T,
) -> T {
    let proxy = spawn(
        &[
            "proxy",
            "127.0.0.1:0",
            &upstream.to_string(),
            tape.to_str().unwrap(),
        ],
        true,
    );
    let result = client(proxy.addr());
    let (code, _, stderr) = proxy.finish();
    assert_eq!(code, 0, "proxy: {stderr}");
    result
}

/// `tcptape learn` from `recordings` into `out`: the learned text (the
/// test fails where learn does).
pub fn learn(recordings: &[&Path], out: &Path) -> String {
    let mut args = vec!["learn"];
    args.extend(recordings.iter().map(|p| p.to_str().unwrap()));
    args.extend(["-o", out.to_str().unwrap()]);
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "learn: {stderr}");
    std::fs::read_to_string(out).unwrap()
}

/// Serves `tape` once as the mock server to `client`, run against its
/// address: the client's result, then the mock's exit code and stderr.
pub fn mock_once<T>(tape: &str, client: impl FnOnce(SocketAddr) -> T) -> (T, i32, String) {
    let mock = spawn(&["server", "--once", "127.0.0.1:0", tape], true);
    let result = client(mock.addr());
    let (code, _, stderr) = mock.finish();
    (result, code, stderr)
}
