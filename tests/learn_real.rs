//! `learn` from clients and servers nobody here wrote, each recorded
//! through the proxy, learned and replayed: dig against dnsmasq (DNS over
//! TCP: a 2-byte query id the server echoes), python-binary-memcached
//! against memcached (the binary protocol: a CAS that ends a turn), psql
//! against PostgreSQL with an md5 password (a salt that ends a turn) and a
//! SCRAM one (a nonce the server echoes). Each test skips, saying why,
//! where its programs are not installed.

mod common;
mod peers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use peers::*;

/// Records `runs` sessions of `client` with the server at `upstream`
/// through the proxy, into `dir/NAME<i>.tape`; each must succeed.
fn record_runs<T: std::fmt::Debug>(
    dir: &Path,
    name: &str,
    runs: usize,
    upstream: SocketAddr,
    client: impl Fn(SocketAddr, usize) -> Result<T, String>,
) -> Vec<PathBuf> {
    (0..runs)
        .map(|run| {
            let tape = dir.join(format!("{name}{run}.tape"));
            let result = record_through_proxy(upstream, &tape, |proxy| client(proxy, run));
            assert!(result.is_ok(), "run {run}: {result:?}");
            tape
        })
        .collect()
}

fn learned(tapes: &[PathBuf], out: &Path) -> String {
    let tapes: Vec<&Path> = tapes.iter().map(PathBuf::as_path).collect();
    learn(&tapes, out)
}

/// dig's query for example.test over TCP to `addr`: the address it
/// printed, or what went wrong (dig's own output).
fn dig(addr: SocketAddr) -> Result<String, String> {
    let out = Command::new("dig")
        .args(["+tcp", "+tries=1", "+time=10", "@127.0.0.1", "-p"])
        .arg(addr.port().to_string())
        .arg("example.test")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = printed
        .lines()
        .find(|l| l.starts_with("example.test.") && l.contains("\tIN\tA\t"))
        .and_then(|l| l.split('\t').next_back());
    match answer {
        Some(address) if out.status.success() && !printed.contains("ID mismatch") => {
            Ok(address.to_string())
        }
        _ => Err(printed),
    }
}

#[test]
fn dig_gets_its_own_query_id_back_from_a_mock_learned_from_dnsmasq() {
    if !installed("dig", &["-v"]) || !installed("dnsmasq", &["--version"]) {
        eprintln!("skipped: needs dig (bind9-dnsutils) and dnsmasq (dnsmasq-base)");
        return;
    }
    let dir = temp_dir("learn-real-dns");
    let addr = dead_addr();
    let dnsmasq = start_peer(
        Command::new("dnsmasq")
            .args(["--no-daemon", "--conf-file=/dev/null", "--pid-file"])
            .arg(format!("--port={}", addr.port()))
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .args([
                "--no-resolv",
                "--no-hosts",
                "--address=/example.test/10.1.2.3",
            ]),
        addr,
    );
    // Each dig draws its query id and its EDNS cookie.
    let tapes = record_runs(&dir, "dig", 3, addr, |proxy, _| dig(proxy));
    drop(dnsmasq);
    let out = dir.join("dns.txt");
    let text = learned(&tapes, &out);
    assert!(
        text.contains("> [capture ") && text.contains("< [echo "),
        "the query id is echoed:\n{text}"
    );
    // A new dig, a new id: the mock answers with it.
    let (answer, code, stderr) = mock_once(out.to_str().unwrap(), dig);
    assert_eq!(answer, Ok("10.1.2.3".to_string()), "{stderr}\n{text}");
    assert_eq!(code, 0, "{stderr}");
}

/// python-binary-memcached sets and gets back a value of 8 letters drawn
/// from `seed`.
fn bmemcached(addr: SocketAddr, seed: usize) -> Result<(), String> {
    let args = [addr.port().to_string(), "8".into(), seed.to_string()];
    python_peer("memcached_binary.py", &args)
}

#[test]
fn memcached_binary_protocol_learned_from_three_runs_replays_both_roles() {
    if !installed("memcached", &["-h"]) || !python_has("bmemcached") {
        eprintln!(
            "skipped: needs memcached and python-binary-memcached (the bmemcached Python package)"
        );
        return;
    }
    let dir = temp_dir("learn-real-memcached");
    let addr = dead_addr();
    let mut command = Command::new("memcached");
    command.args(["-l", "127.0.0.1", "-p", &addr.port().to_string()]);
    if is_root() {
        command.args(["-u", "nobody"]);
    }
    let memcached = start_peer(&mut command, addr);
    // Every run sets the key anew: its CAS, which ends the SET reply,
    // grows; the value differs too.
    let tapes = record_runs(&dir, "mc", 3, addr, bmemcached);
    let out = dir.join("memcached.txt");
    let text = learned(&tapes, &out);
    assert!(
        text.contains("> [capture ") && text.contains("< [echo "),
        "the value set comes back:\n{text}"
    );
    let out = out.to_str().unwrap();
    // As the client, against memcached a fourth time (a new CAS).
    let (code, _, stderr) = run(&["client", &addr.to_string(), out]);
    assert_eq!(code, 0, "{stderr}\n{text}");
    drop(memcached);
    // As the server, to a client setting a value of its own.
    let (result, code, stderr) = mock_once(out, |mock| bmemcached(mock, 99));
    assert_eq!(result, Ok(()), "{stderr}\n{text}");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn psql_with_md5_and_scram_passwords_learned_from_postgresql() {
    let Some(bin) = postgres_bin().filter(|_| installed("psql", &["--version"])) else {
        eprintln!("skipped: needs PostgreSQL's server and psql");
        return;
    };
    let dir = temp_dir("learn-real-postgres");
    let addr = dead_addr();
    let server = postgres(&bin, &dir, &["--auth-local=trust", "--auth-host=md5"], addr);
    // Over the socket (trust): a user with an md5 password, one with a
    // SCRAM one (the md5 method takes SCRAM for those).
    let setup = Command::new("psql")
        .arg("-h")
        .arg(&server.socket_dir)
        .args(["-p", &addr.port().to_string(), "-U", "postgres", "-X", "-q"])
        .args(["-c", "set password_encryption = 'md5'"])
        .args(["-c", "create role md5user login password 'secret5'"])
        .args(["-c", "set password_encryption = 'scram-sha-256'"])
        .args(["-c", "create role scramuser login password 'secret6'"])
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );

    // md5: the server's salt, new each connection, ends its turn; the
    // client's answer depends on it.
    let md5 = |proxy, _| psql(proxy, "md5user", "secret5");
    let tapes = record_runs(&dir, "md5-", 3, addr, md5);
    let out = dir.join("md5.txt");
    let text = learned(&tapes, &out);
    let out = out.to_str().unwrap();
    // As the client, the recorded answer to another salt: refused.
    let (code, _, stderr) = run(&["client", &addr.to_string(), out]);
    assert_eq!(code, 3, "{stderr}\n{text}");
    // SCRAM: the client's nonce, which the server's first message starts
    // with, is captured and echoed, its span no longer reaching into the
    // client's next message.
    let scram = |proxy, _| psql(proxy, "scramuser", "secret6");
    let tapes = record_runs(&dir, "scram-", 3, addr, scram);
    let scram_text = learned(&tapes, &dir.join("scram.txt"));
    assert!(
        scram_text.contains("> [capture r ") && scram_text.contains("< [echo r "),
        "{scram_text}"
    );
    // No span for bytes that were the same in every recording (the
    // one-letter `r` before the nonce, matched elsewhere by the alignment).
    assert!(!scram_text.contains("varies in 1 of"), "{scram_text}");
    drop(server);

    // As the server, to psql, with no PostgreSQL running: psql answers the
    // recorded salt as it did then.
    let (answer, code, stderr) = mock_once(out, |mock| psql(mock, "md5user", "secret5"));
    assert_eq!(answer, Ok("42".into()), "{stderr}\n{text}");
    assert_eq!(code, 0, "{stderr}");
}
