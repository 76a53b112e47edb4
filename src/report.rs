//! What a run did: each session's outcome and the verdict over all of them,
//! for the library's callers, the command line's exit code and summary line,
//! and `--report FILE` (JSON, written by hand).

use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::engine::event_loop::Service;
use crate::engine::net::Address;

/// What a service gives back when its loop is over: every service reports
/// what its run did.
pub(crate) trait Finish: Service {
    /// The address it listens on, when it listens.
    fn local_addr(&self) -> Option<&Address>;
    /// The run's report.
    fn finish(self) -> Report;
}

/// The verdict of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Every session played its tape to the end and matched it (replay), or
    /// was recorded whole (proxy).
    Passed,
    /// With `--update`: peers departed from their tapes, and new tapes are
    /// written beside them for review (`tcptape review`).
    Pending,
    /// A peer departed from a tape, a connection matched no tape, a session
    /// was cut short by a stop, or a tape that had to be played never was.
    Mismatch,
    /// Something failed: a tape that could not be read or written, a peer
    /// that could not be reached, a timeout.
    Error,
}

impl Verdict {
    /// The word used in logs and in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Pending => "pending",
            Verdict::Mismatch => "mismatch",
            Verdict::Error => "error",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Replay: the tape was played to its end and the peer matched it.
    Passed,
    /// Proxy: the session was recorded whole.
    Recorded,
    /// Replay with `--update`: the peer departed from the tape; the session
    /// was recorded, and its new tape waits for review.
    Updated,
    /// Replay: the peer departed from the tape.
    Mismatch,
    /// Replay: the session was still running when the run was stopped,
    /// before the tape's end.
    Cut,
    /// Proxy: the session was still running when the recording stopped;
    /// its tape ends with a CUT frame.
    RecordedCut,
    /// The session failed (see its message).
    Error,
    /// A fault the run injected ended the session (a reset, a close), or
    /// the peer gave up after one (it closed, reset, or kept the session
    /// waiting past `--timeout`): what a fault is for, so not a failure.
    /// A peer that sends other bytes than the tape's is still a mismatch.
    Faulted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Recorded => "recorded",
            Outcome::Updated => "updated",
            Outcome::Mismatch => "mismatch",
            Outcome::Cut | Outcome::RecordedCut => "cut",
            Outcome::Error => "error",
            Outcome::Faulted => "faulted",
        }
    }

    /// What this outcome makes of the run's verdict.
    fn verdict(self) -> Verdict {
        match self {
            Outcome::Passed | Outcome::Recorded | Outcome::Faulted => Verdict::Passed,
            Outcome::Updated => Verdict::Pending,
            Outcome::Mismatch | Outcome::Cut => Verdict::Mismatch,
            Outcome::RecordedCut | Outcome::Error => Verdict::Error,
        }
    }
}

/// One session of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionReport {
    /// 1 for the first connection of the run, 2 for the next...
    pub number: u64,
    /// The peer's address (for a UNIX socket, the socket path).
    pub peer: String,
    /// The tape played or recorded, when there is one.
    pub tape: Option<PathBuf>,
    pub outcome: Outcome,
    /// One line saying what went wrong; `None` when nothing did.
    pub message: Option<String>,
    /// The full mismatch report (hexdumps of both sides), as the command
    /// line prints it.
    pub details: Option<String>,
    /// Bytes from client to server and from server to client: checked and
    /// sent in a replay, recorded by the proxy.
    pub bytes: [u64; 2],
    /// The faults injected into the session (`--fault`), as their SPECs,
    /// in the order they fired.
    pub faults: Vec<String>,
}

/// What a run did: its sessions and its verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub(crate) sessions: Vec<SessionReport>,
    /// Failures of the run itself, not tied to one session.
    pub(crate) failures: Vec<(Verdict, String)>,
    /// Cassette tapes that were never served.
    pub(crate) unused: Vec<String>,
    /// Connections that closed without a byte where the tape expected
    /// some: readiness probes, not sessions.
    pub(crate) probes: u64,
    /// With `--update`: the new tapes written for review.
    pub(crate) pending: Vec<PathBuf>,
}

impl Report {
    /// Every session, in the order they started.
    pub fn sessions(&self) -> &[SessionReport] {
        &self.sessions
    }

    /// The verdict over the run: an error if anything failed, else a
    /// mismatch if anything departed, else passed.
    pub fn verdict(&self) -> Verdict {
        let sessions = self.sessions.iter().map(|s| s.outcome.verdict());
        let failures = self.failures.iter().map(|(verdict, _)| *verdict);
        sessions.chain(failures).max().unwrap_or(Verdict::Passed)
    }

    /// True when the verdict is `Passed`.
    pub fn passed(&self) -> bool {
        self.verdict() == Verdict::Passed
    }

    /// Sessions that ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.outcome == outcome)
            .count()
    }

    /// Failures of the run itself, not tied to a session: a tape never
    /// played, nothing recorded, a timeout waiting for a connection.
    pub fn failures(&self) -> impl Iterator<Item = &String> {
        self.failures.iter().map(|(_, message)| message)
    }

    /// Cassette tapes no connection was served with.
    pub fn unused_tapes(&self) -> &[String] {
        &self.unused
    }

    /// Connections that closed without sending anything (readiness probes).
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// With `--update`: the new tapes written beside the old ones, waiting
    /// for `tcptape review`.
    pub fn pending(&self) -> &[PathBuf] {
        &self.pending
    }

    /// Tapes recorded or played, in session order.
    pub fn tapes(&self) -> impl Iterator<Item = &Path> {
        self.sessions.iter().filter_map(|s| s.tape.as_deref())
    }

    pub(crate) fn push(&mut self, session: SessionReport) {
        // Sessions end in any order; the report lists them as they started.
        let at = self.sessions.partition_point(|s| s.number < session.number);
        self.sessions.insert(at, session);
    }

    pub(crate) fn fail(&mut self, verdict: Verdict, message: impl Into<String>) {
        self.failures.push((verdict, message.into()));
    }

    /// The one-line summary printed when a command ends.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} {}",
            self.sessions.len(),
            plural(self.sessions.len(), "session")
        );
        let parts = [
            (Outcome::Passed, "passed"),
            (Outcome::Recorded, "recorded"),
            (Outcome::Updated, "updated"),
            (Outcome::Mismatch, "mismatched"),
            (Outcome::Cut, "cut short"),
            (Outcome::RecordedCut, "cut short"),
            (Outcome::Error, "failed"),
            (Outcome::Faulted, "ended by a fault"),
        ];
        let counts: Vec<String> = parts
            .iter()
            .filter(|(outcome, _)| self.count(*outcome) > 0)
            .map(|(outcome, word)| format!("{} {word}", self.count(*outcome)))
            .collect();
        if !counts.is_empty() {
            let _ = write!(line, ": {}", counts.join(", "));
        }
        let faults: usize = self.sessions.iter().map(|s| s.faults.len()).sum();
        if faults > 0 {
            let _ = write!(line, "; {faults} {} injected", plural(faults, "fault"));
        }
        if self.probes > 0 {
            let _ = write!(
                line,
                "; {} {}",
                self.probes,
                plural(self.probes as usize, "probe")
            );
        }
        if !self.unused.is_empty() {
            let _ = write!(line, "; {} tapes never served", self.unused.len());
        }
        if !self.pending.is_empty() {
            let n = self.pending.len();
            let _ = write!(
                line,
                "; {n} {} pending review (tcptape review)",
                plural(n, "tape")
            );
        }
        let _ = write!(line, "; verdict: {}", self.verdict());
        line
    }

    /// The first thing that went wrong, in one line; `None` when passed.
    pub fn first_failure(&self) -> Option<String> {
        let verdict = self.verdict();
        if matches!(verdict, Verdict::Passed | Verdict::Pending) {
            return None;
        }
        let from_sessions = self
            .sessions
            .iter()
            .filter(|s| s.outcome.verdict() == verdict)
            .find_map(|s| s.message.clone());
        from_sessions.or_else(|| {
            self.failures
                .iter()
                .find(|(v, _)| *v == verdict)
                .map(|(_, message)| message.clone())
        })
    }

    /// The report as a JSON document: the verdict, every session with its
    /// peer, tape, outcome, message, byte counts, mismatch report and the
    /// faults injected, and the run's own failures.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\n");
        let _ = writeln!(
            out,
            "  \"verdict\": {},",
            json_string(self.verdict().as_str())
        );
        let _ = writeln!(out, "  \"summary\": {},", json_string(&self.summary()));
        out.push_str("  \"sessions\": [");
        for (i, s) in self.sessions.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            let _ = write!(
                out,
                "    {{\"number\": {}, \"peer\": {}, \"tape\": {}, \"verdict\": {}, \"message\": {}, \"client_bytes\": {}, \"server_bytes\": {}, \"report\": {}, \"faults\": [{}]}}",
                s.number,
                json_string(&s.peer),
                json_option(s.tape.as_ref().map(|p| p.to_string_lossy())),
                json_string(s.outcome.as_str()),
                json_option(s.message.as_deref()),
                s.bytes[0],
                s.bytes[1],
                json_option(s.details.as_deref()),
                s.faults
                    .iter()
                    .map(|f| json_string(f))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        if !self.sessions.is_empty() {
            out.push_str("\n  ");
        }
        out.push_str("],\n");
        let errors: Vec<String> = self.failures.iter().map(|(_, m)| json_string(m)).collect();
        let _ = writeln!(out, "  \"errors\": [{}],", errors.join(", "));
        let unused: Vec<String> = self.unused.iter().map(|t| json_string(t)).collect();
        let _ = writeln!(out, "  \"unused_tapes\": [{}],", unused.join(", "));
        let pending: Vec<String> = self
            .pending
            .iter()
            .map(|t| json_string(&t.to_string_lossy()))
            .collect();
        let _ = writeln!(out, "  \"pending_tapes\": [{}],", pending.join(", "));
        let _ = writeln!(out, "  \"probes\": {}", self.probes);
        out.push_str("}\n");
        out
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

fn json_option<S: AsRef<str>>(value: Option<S>) -> String {
    value.map_or_else(|| "null".to_string(), |v| json_string(v.as_ref()))
}

/// A JSON string literal: quotes, backslashes and control characters
/// escaped (RFC 8259); everything else, UTF-8 included, as is.
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(number: u64, outcome: Outcome) -> SessionReport {
        SessionReport {
            number,
            peer: "127.0.0.1:5000".into(),
            tape: Some("t.tape".into()),
            outcome,
            message: (outcome != Outcome::Passed).then(|| format!("session {number} went wrong")),
            details: None,
            bytes: [3, 4],
            faults: Vec::new(),
        }
    }

    #[test]
    fn verdict_is_the_worst_outcome() {
        let mut report = Report::default();
        assert_eq!(report.verdict(), Verdict::Passed);
        report.push(session(2, Outcome::Passed));
        assert!(report.passed());
        report.push(session(1, Outcome::Cut));
        assert_eq!(report.verdict(), Verdict::Mismatch);
        assert_eq!(
            report.first_failure().as_deref(),
            Some("session 1 went wrong")
        );
        report.fail(Verdict::Error, "cannot poll");
        assert_eq!(report.verdict(), Verdict::Error);
        assert_eq!(report.first_failure().as_deref(), Some("cannot poll"));
    }

    #[test]
    fn sessions_are_listed_in_start_order() {
        let mut report = Report::default();
        for n in [3, 1, 2] {
            report.push(session(n, Outcome::Passed));
        }
        let numbers: Vec<u64> = report.sessions().iter().map(|s| s.number).collect();
        assert_eq!(numbers, vec![1, 2, 3]);
    }

    #[test]
    fn summary_counts_each_outcome() {
        let mut report = Report::default();
        report.push(session(1, Outcome::Passed));
        report.push(session(2, Outcome::Mismatch));
        report.probes = 2;
        assert_eq!(
            report.summary(),
            "2 sessions: 1 passed, 1 mismatched; 2 probes; verdict: mismatch"
        );
    }

    #[test]
    fn faults_count_in_the_summary_and_a_faulted_session_passes() {
        let mut report = Report::default();
        report.push(session(1, Outcome::Faulted));
        let mut passed = session(2, Outcome::Passed);
        passed.faults = vec!["slice=1".into(), "latency=5".into()];
        report.push(passed);
        report.sessions[0].faults = vec!["reset,at=byte:3,conn=1".into()];
        assert!(report.passed());
        assert_eq!(
            report.summary(),
            "2 sessions: 1 passed, 1 ended by a fault; 3 faults injected; verdict: passed"
        );
        let json = report.to_json();
        assert!(
            json.contains("\"verdict\": \"faulted\",")
                && json.contains("\"faults\": [\"reset,at=byte:3,conn=1\"]}")
                && json.contains("\"faults\": [\"slice=1\", \"latency=5\"]}"),
            "{json}"
        );
    }

    #[test]
    fn json_escapes_strings() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
        let mut report = Report::default();
        report.push(session(1, Outcome::Mismatch));
        let json = report.to_json();
        assert!(
            json.starts_with("{\n  \"verdict\": \"mismatch\",\n"),
            "{json}"
        );
        assert!(
            json.contains("\"number\": 1, \"peer\": \"127.0.0.1:5000\", \"tape\": \"t.tape\", \"verdict\": \"mismatch\", \"message\": \"session 1 went wrong\", \"client_bytes\": 3, \"server_bytes\": 4, \"report\": null, \"faults\": []}"),
            "{json}"
        );
        assert!(json.ends_with("  \"probes\": 0\n}\n"), "{json}");
    }
}
