//! Recording throughput: a 1 GiB upload through `tcptape proxy` with the
//! tape written to a file on disk, against a direct loopback connection and
//! `socat` relays that record nothing (with their default 8 KiB blocks, and
//! with `-b 262144`), interleaved round by round; medians, every round
//! printed. Also the proxy's peak RSS while recording, and the proxy
//! recording with 5 redaction rules (two variables' values, a literal, two
//! values after a prefix), which every byte goes through.
//!
//! `TCPTAPE_BENCH_BUFFERS=256K,2M` adds a proxy per `--buffer` value;
//! `TCPTAPE_BENCH_OTHER=PATH` adds a proxy run by another tcptape binary
//! (another build profile, an older version), with default options.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::*;

/// One upload through a proxy daemon recording to `dir`; checks the tape
/// holds the upload, then removes it.
fn through_proxy(proxy: &mut Running, dir: &Path, session: &mut u64, total: usize) -> f64 {
    *session += 1;
    let elapsed = upload(proxy.addr(), total);
    proxy.wait_for_line(&format!("session {session}: closed"));
    let tape = dir.join(format!("upload-{session}.tape"));
    let tape_len = std::fs::metadata(&tape).map(|m| m.len()).unwrap_or(0);
    assert!(
        tape_len >= total as u64,
        "tape holds {tape_len} bytes of {total}"
    );
    let _ = std::fs::remove_file(&tape);
    mib_per_s(total, elapsed)
}

/// Five rules of the kinds a team would give: no byte of the random
/// upload matches them, so all of it is looked through and recorded.
const RULES: [&str; 10] = [
    "--redact-env",
    "BENCH_PASSWORD",
    "--redact-env",
    "BENCH_TOKEN",
    "--redact",
    "sk_live_0123456789abcdef",
    "--redact-after",
    "Authorization: Bearer ",
    "--redact-after",
    "password=..&",
];

fn proxy(upstream: SocketAddr, dir: &Path, buffer: Option<&str>, program: &str) -> Running {
    proxy_with(upstream, dir, buffer, program, &[])
}

fn proxy_with(
    upstream: SocketAddr,
    dir: &Path,
    buffer: Option<&str>,
    program: &str,
    rules: &[&str],
) -> Running {
    let template = dir.join("upload-{n}.tape");
    let mut command = std::process::Command::new(program);
    command
        .args(["proxy", "127.0.0.1:0", &upstream.to_string()])
        .arg(template)
        .args(rules)
        .env("BENCH_PASSWORD", "correct-horse-battery-staple")
        .env("BENCH_TOKEN", "ghp_0123456789abcdefABCDEF0123456789ab")
        .env("RUST_LOG", "info");
    if let Some(buffer) = buffer {
        command.args(["--buffer", buffer]);
    }
    harness::start_command(command)
}

fn main() {
    let total = size(1024 * MIB, 16 * MIB);
    let rounds = size(5, 1);
    let upstream = sink();
    let socat = socat_installed();

    let dirs: Vec<_> = (0..5).map(|i| work_dir(&format!("record-{i}"))).collect();
    let mut default_proxy = proxy(upstream, &dirs[0], None, bin());
    let mut rules_proxy = proxy_with(upstream, &dirs[4], None, bin(), &RULES);
    let mut rules_session = 0;
    // Extra contenders: (name, buffer, program).
    let mut extra: Vec<(String, Option<String>, String)> = std::env::var("TCPTAPE_BENCH_BUFFERS")
        .map(|v| {
            v.split(',')
                .take(2)
                .map(|b| {
                    (
                        format!("--buffer {b}"),
                        Some(b.to_string()),
                        bin().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if let Ok(other) = std::env::var("TCPTAPE_BENCH_OTHER") {
        extra.push(("other binary".to_string(), None, other));
    }
    let mut extra_proxies: Vec<(Running, u64)> = extra
        .iter()
        .enumerate()
        .map(|(i, (_, buffer, program))| {
            (proxy(upstream, &dirs[i + 1], buffer.as_deref(), program), 0)
        })
        .collect();

    let mut session = 0;
    let mut direct = || Some(mib_per_s(total, upload(upstream, total)));
    let mut socat_default = || {
        let (child, listen) = socat_with(upstream, &[]).filter(|_| socat)?;
        let rate = mib_per_s(total, upload(listen, total));
        kill(child);
        Some(rate)
    };
    let mut socat_big = || {
        let (child, listen) = socat_with(upstream, &["-b", "262144"]).filter(|_| socat)?;
        let rate = mib_per_s(total, upload(listen, total));
        kill(child);
        Some(rate)
    };
    let mut tcptape_default = || {
        Some(through_proxy(
            &mut default_proxy,
            &dirs[0],
            &mut session,
            total,
        ))
    };
    let mut tcptape_rules = || {
        Some(through_proxy(
            &mut rules_proxy,
            &dirs[4],
            &mut rules_session,
            total,
        ))
    };
    let mut extra_measures: Vec<Box<dyn FnMut() -> Option<f64> + '_>> = extra_proxies
        .iter_mut()
        .enumerate()
        .map(|(i, (proxy, session))| {
            let dir = &dirs[i + 1];
            Box::new(move || Some(through_proxy(proxy, dir, session, total)))
                as Box<dyn FnMut() -> Option<f64>>
        })
        .collect();
    let extra_names: Vec<String> = extra.iter().map(|(name, _, _)| name.clone()).collect();

    println!(
        "record: {} MiB uploads, {rounds} interleaved rounds (MiB/s)",
        total / MIB
    );
    let values = {
        let mut contenders: Vec<(&str, &mut dyn FnMut() -> Option<f64>)> = vec![
            ("direct", &mut direct),
            ("socat", &mut socat_default),
            ("socat -b 262144", &mut socat_big),
            ("tcptape", &mut tcptape_default),
            ("tcptape, 5 rules", &mut tcptape_rules),
        ];
        for (name, measure) in extra_names.iter().zip(extra_measures.iter_mut()) {
            contenders.push((name.as_str(), measure.as_mut()));
        }
        interleaved(rounds, "MiB/s", &mut contenders)
    };
    drop(extra_measures);
    let rss = peak_rss_kib(default_proxy.child.id());
    default_proxy.kill();
    rules_proxy.kill();
    for (mut proxy, _) in extra_proxies {
        proxy.kill();
    }
    for dir in &dirs {
        let _ = std::fs::remove_dir_all(dir);
    }

    let median_of = |i: usize| (!values[i].is_empty()).then(|| median(&values[i]));
    let mut rows = vec![
        row("direct loopback", median_of(0), "MiB/s"),
        row(
            "socat relay, defaults (no recording)",
            median_of(1),
            "MiB/s",
        )
        .against("direct loopback")
        .note(if socat { "" } else { "not installed" }),
        row(
            "socat relay -b 262144 (no recording)",
            median_of(2),
            "MiB/s",
        )
        .against("direct loopback"),
        row("tcptape proxy, recording to disk", median_of(3), "MiB/s").against("direct loopback"),
        row("tcptape proxy vs socat defaults", median_of(3), "MiB/s")
            .against("socat relay, defaults (no recording)"),
        row("tcptape proxy vs socat -b 262144", median_of(3), "MiB/s")
            .against("socat relay -b 262144 (no recording)"),
    ];
    rows.push(
        row("tcptape proxy, 5 redaction rules", median_of(4), "MiB/s")
            .against("tcptape proxy, recording to disk")
            .note("target >= 0.9"),
    );
    for (i, name) in extra_names.iter().enumerate() {
        rows.push(
            row(&format!("tcptape proxy {name}"), median_of(5 + i), "MiB/s")
                .against("direct loopback"),
        );
    }
    rows.push(row(
        "tcptape proxy peak RSS",
        rss.map(|k| k as f64 / 1024.0),
        "MiB",
    ));
    print_table(
        &format!("record: {} MiB upload, medians", total / MIB),
        &rows,
    );
}
