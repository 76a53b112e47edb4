//! Recording throughput: an upload through `tcptape proxy` with the tape
//! written to a file on disk, against a direct loopback connection and a
//! `socat` relay (which records nothing). Also the proxy's peak RSS.

mod common;

use common::*;

fn main() {
    let total = size(1024 * MIB, 16 * MIB);
    let upstream = sink();
    let mut rows = Vec::new();

    let direct = best_of(|| upload(upstream, total));
    rows.push(row(
        "direct loopback",
        Some(mib_per_s(total, direct)),
        "MiB/s",
    ));

    if socat_installed() {
        let elapsed = best_of(|| {
            let (child, listen) = socat(upstream).expect("socat starts");
            let elapsed = upload(listen, total);
            kill(child);
            elapsed
        });
        rows.push(
            row(
                "socat relay (no recording)",
                Some(mib_per_s(total, elapsed)),
                "MiB/s",
            )
            .against("direct loopback"),
        );
    } else {
        rows.push(row("socat relay (no recording)", None, "MiB/s").note("not installed"));
    }

    let dir = work_dir("record");
    let template = dir.join("upload-{n}.tape");
    let mut proxy = tcptape(&[
        "proxy",
        "127.0.0.1:0",
        &upstream.to_string(),
        template.to_str().unwrap(),
    ]);
    let mut session = 0;
    let elapsed = best_of(|| {
        session += 1;
        let elapsed = upload(proxy.addr(), total);
        proxy.wait_for_line(&format!("session {session}: closed"));
        let tape = dir.join(format!("upload-{session}.tape"));
        let tape_len = std::fs::metadata(&tape).map(|m| m.len()).unwrap_or(0);
        assert!(
            tape_len >= total as u64,
            "tape holds {tape_len} bytes of {total}"
        );
        let _ = std::fs::remove_file(&tape);
        elapsed
    });
    // The daemon is still up, so its peak RSS can be read before it goes.
    let rss = peak_rss_kib(proxy.child.id());
    proxy.kill();
    let _ = std::fs::remove_dir_all(&dir);
    rows.push(
        row(
            "tcptape proxy, recording to disk",
            Some(mib_per_s(total, elapsed)),
            "MiB/s",
        )
        .against("direct loopback"),
    );
    rows.push(
        row(
            "tcptape proxy vs socat",
            Some(mib_per_s(total, elapsed)),
            "MiB/s",
        )
        .against("socat relay (no recording)"),
    );
    rows.push(row(
        "tcptape proxy peak RSS",
        rss.map(|k| k as f64 / 1024.0),
        "MiB",
    ));
    print_table(&format!("record: {} MiB upload", total / MIB), &rows);
}
