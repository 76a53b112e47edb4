//! Redaction rules and the matching of them against byte streams, without
//! I/O: what `proxy --redact...`, the library's `Recorder` and `tcptape
//! redact` keep off the tape.
//!
//! A rule is a literal value (`--redact-env NAME`: the variable's value;
//! `--redact TEXT`; `--redact-hex HEX`) or the bytes after a prefix up to
//! the end of the line or a given end (`--redact-after PREFIX[..END]`). A
//! rules file (`--redact-file`) holds one rule a line. [`Matcher`] finds
//! them in a stream fed in pieces of any size and says which bytes may go
//! (to the tape, and so to the peer) and which are secrets, holding back
//! only what a rule could still match.

mod finder;
mod matcher;
mod rules;

pub use finder::Finder;
pub use matcher::{Matcher, Piece, Release, Verdict};
pub use rules::{RuleError, parse_file, parse_flag};

/// The most rules a recording takes.
pub const MAX_RULES: usize = 64;
/// The longest literal, prefix or end: what the matcher holds back is
/// bounded by it.
pub const MAX_PATTERN: usize = 512;
/// The shortest literal value: a shorter one would match all over the
/// stream and tell little.
pub const MIN_SECRET: usize = 4;
/// The longest value after a prefix kept in one secret; a longer one goes
/// on in the next. Held back while its end has not come, so it bounds
/// what a direction holds (and it stays below the smallest ring).
pub const MAX_VALUE: usize = 8 * 1024;
/// The longest secret span the matcher makes (overlapping matches are one
/// secret up to this length).
pub const MAX_SECRET: usize = MAX_VALUE;
/// What a secret span is named when no variable names it.
pub const DEFAULT_NAME: &str = "REDACTED";

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The secret span's name: the variable a replay takes the value from.
    pub name: String,
    pub what: What,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// Every occurrence of these bytes.
    Literal(Vec<u8>),
    /// The bytes after `prefix` up to `end` (not included).
    After { prefix: Vec<u8>, end: End },
}

/// Where a value after a prefix ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At the line's end: before the first CR or LF.
    Line,
    /// Before the first occurrence of these bytes.
    Bytes(Vec<u8>),
}

/// A checked set of rules, ready to match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Checks the set: at most `MAX_RULES`, each pattern within bounds.
    pub fn new(rules: Vec<Rule>) -> Result<Rules, RuleError> {
        if rules.len() > MAX_RULES {
            return Err(RuleError(format!(
                "{} rules: at most {MAX_RULES} are taken",
                rules.len()
            )));
        }
        Ok(Rules { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The secret span name of rule `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.rules[index].name
    }

    /// The longest pattern: what the matcher holds back at most, beside a
    /// value after a prefix.
    pub fn longest(&self) -> usize {
        self.rules
            .iter()
            .map(|rule| match &rule.what {
                What::Literal(bytes) => bytes.len(),
                What::After { prefix, end } => match end {
                    End::Line => prefix.len(),
                    End::Bytes(end) => prefix.len().max(end.len()),
                },
            })
            .max()
            .unwrap_or(0)
    }
}

/// Names are those of spans: 1 to 32 ASCII letters, digits, `_`, `-`, `.`.
pub fn valid_name(name: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    !name.is_empty() && name.len() <= 32 && name.chars().all(plain)
}
