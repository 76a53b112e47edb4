//! Recording throughput: a 1 GiB upload through `tcptape proxy` with the
//! tape written to a file on disk, against a direct loopback connection and
//! `socat` relays that record nothing (with their default 8 KiB blocks, and
//! with `-b 262144`), interleaved round by round; medians, every round
//! printed, and the relays' CPU seconds per GiB (steadier than throughput
//! on a shared machine). Also the proxy's peak RSS while recording.
//!
//! Two proxies record: one whose tapes are removed after each upload (the
//! page cache gets the same pages back), and one whose tapes stay on disk
//! until the end, as a user's recordings do (each upload writes into pages
//! the cache has not held before).
//!
//! A third records with 5 redaction rules (two variables' values, a
//! literal, two values after a prefix): the random upload matches none, so
//! every byte is looked through and recorded; its throughput and CPU per
//! GiB stand against the first's.
//!
//! `TCPTAPE_BENCH_BUFFERS=256K,2M` adds a proxy per `--buffer` value;
//! `TCPTAPE_BENCH_OTHER=PATH` adds a proxy run by another tcptape binary
//! (another build profile, an older version), with default options.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use common::*;

/// CPU seconds per GiB of each contender, by name, round by round.
type Cpu = RefCell<BTreeMap<String, Vec<f64>>>;

/// One upload through a proxy daemon recording to `dir`; checks the tape
/// holds the upload, and removes it unless `keep`. Notes the proxy's CPU.
fn through_proxy(
    proxy: &mut Running,
    (dir, keep): (&Path, bool),
    session: &mut u64,
    total: usize,
    cpu: (&Cpu, &str),
) -> f64 {
    *session += 1;
    let pid = proxy.child.id();
    let before = cpu_seconds(pid).unwrap_or(0.0);
    let elapsed = upload(proxy.addr(), total);
    proxy.wait_for_line(&format!("session {session}: closed"));
    let used = cpu_seconds(pid).unwrap_or(0.0) - before;
    note_cpu(cpu, per_gib(used, total));
    let tape = dir.join(format!("upload-{session}.tape"));
    let tape_len = std::fs::metadata(&tape).map(|m| m.len()).unwrap_or(0);
    assert!(
        tape_len >= total as u64,
        "tape holds {tape_len} bytes of {total}"
    );
    if !keep {
        let _ = std::fs::remove_file(&tape);
    }
    mib_per_s(total, elapsed)
}

fn note_cpu((cpu, name): (&Cpu, &str), value: f64) {
    cpu.borrow_mut()
        .entry(name.to_string())
        .or_default()
        .push(value);
}

/// One upload through a socat relay with `options`, and its CPU.
fn through_socat(
    upstream: SocketAddr,
    options: &[&str],
    total: usize,
    cpu: (&Cpu, &str),
) -> Option<f64> {
    let (child, listen) = socat_with(upstream, options)?;
    let rate = mib_per_s(total, upload(listen, total));
    // A relay whose connection ended is a zombie until waited for: its
    // CPU times are still there to read.
    note_cpu(cpu, per_gib(cpu_seconds(child.id()).unwrap_or(0.0), total));
    kill(child);
    Some(rate)
}

/// Five rules of the kinds a team would give.
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
    let cpu: Cpu = RefCell::new(BTreeMap::new());

    let dirs: Vec<_> = (0..6).map(|i| work_dir(&format!("record-{i}"))).collect();
    let mut default_proxy = proxy(upstream, &dirs[0], None, bin());
    let mut kept_proxy = proxy(upstream, &dirs[1], None, bin());
    let mut rules_proxy = proxy_with(upstream, &dirs[5], None, bin(), &RULES);
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
    extra.truncate(3);
    let mut extra_proxies: Vec<(Running, u64)> = extra
        .iter()
        .enumerate()
        .map(|(i, (_, buffer, program))| {
            (proxy(upstream, &dirs[i + 2], buffer.as_deref(), program), 0)
        })
        .collect();

    let (mut session, mut kept_session, mut rules_session) = (0, 0, 0);
    let mut direct = || Some(mib_per_s(total, upload(upstream, total)));
    let mut socat_default = || {
        socat
            .then(|| through_socat(upstream, &[], total, (&cpu, "socat")))
            .flatten()
    };
    let mut socat_big = || {
        socat
            .then(|| through_socat(upstream, &["-b", "262144"], total, (&cpu, "socat -b")))
            .flatten()
    };
    let mut tcptape_default = || {
        let dir = (dirs[0].as_path(), false);
        Some(through_proxy(
            &mut default_proxy,
            dir,
            &mut session,
            total,
            (&cpu, "tcptape"),
        ))
    };
    let mut tcptape_kept = || {
        let dir = (dirs[1].as_path(), true);
        let cpu = (&cpu, "tcptape kept");
        Some(through_proxy(
            &mut kept_proxy,
            dir,
            &mut kept_session,
            total,
            cpu,
        ))
    };
    let mut tcptape_rules = || {
        let dir = (dirs[5].as_path(), false);
        let cpu = (&cpu, "tcptape rules");
        Some(through_proxy(
            &mut rules_proxy,
            dir,
            &mut rules_session,
            total,
            cpu,
        ))
    };
    let extra_names: Vec<String> = extra.iter().map(|(name, _, _)| name.clone()).collect();
    let mut extra_measures: Vec<Box<dyn FnMut() -> Option<f64> + '_>> = extra_proxies
        .iter_mut()
        .enumerate()
        .map(|(i, (proxy, session))| {
            let dir = dirs[i + 2].as_path();
            let name = extra_names[i].clone();
            let cpu = &cpu;
            Box::new(move || {
                Some(through_proxy(
                    proxy,
                    (dir, false),
                    session,
                    total,
                    (cpu, &name),
                ))
            }) as Box<dyn FnMut() -> Option<f64>>
        })
        .collect();

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
            ("tcptape, tapes kept", &mut tcptape_kept),
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
    kept_proxy.kill();
    rules_proxy.kill();
    for (mut proxy, _) in extra_proxies {
        proxy.kill();
    }
    for dir in &dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    let cpu = cpu.into_inner();
    for (name, values) in &cpu {
        let each: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
        println!("  CPU s/GiB, {name}: {}", each.join(", "));
    }

    let median_of = |i: usize| (!values[i].is_empty()).then(|| median(&values[i]));
    let cpu_of = |name: &str| cpu.get(name).filter(|v| !v.is_empty()).map(|v| median(v));
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
        row("tcptape proxy, tapes kept", median_of(4), "MiB/s")
            .against("socat relay -b 262144 (no recording)")
            .note("every recording stays on disk"),
        row("socat CPU per GiB", cpu_of("socat"), "s"),
        row("socat -b 262144 CPU per GiB", cpu_of("socat -b"), "s"),
        row("tcptape CPU per GiB", cpu_of("tcptape"), "s").against("socat -b 262144 CPU per GiB"),
        row(
            "tcptape, tapes kept, CPU per GiB",
            cpu_of("tcptape kept"),
            "s",
        )
        .against("socat -b 262144 CPU per GiB"),
        row("tcptape proxy, 5 redaction rules", median_of(5), "MiB/s")
            .against("tcptape proxy, recording to disk")
            .note("target >= 0.9"),
        row(
            "tcptape, 5 rules, CPU per GiB",
            cpu_of("tcptape rules"),
            "s",
        )
        .against("tcptape CPU per GiB")
        .note("target <= 1.11"),
    ];
    for (i, name) in extra_names.iter().enumerate() {
        rows.push(
            row(&format!("tcptape proxy {name}"), median_of(6 + i), "MiB/s")
                .against("direct loopback"),
        );
        rows.push(row(
            &format!("tcptape {name} CPU per GiB"),
            cpu_of(name),
            "s",
        ));
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
