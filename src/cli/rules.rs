//! The redaction rules of `proxy`, `auto` and `redact`: `--redact-env
//! NAME`, `--redact TEXT`, `--redact-hex HEX`, `--redact-after
//! PREFIX[..END]`, `--redact-file FILE`, each as often as wanted. Unlike
//! other options they are resolved as they are parsed (the variable's
//! value, the file's rules), so a bad rule is a usage error naming the
//! rule, or the file and line.

use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::Usage;
use super::args::{Command, lexopt_error, option_name, text};
use super::help::{REDACT_HELP, REDACT_USAGE, SCAN_HELP, SCAN_USAGE};
use crate::error::Error;
use crate::secrets::{self, Rule, Rules};

/// The flags that give rules.
pub(super) const FLAGS: [&str; 5] = [
    "--redact-env",
    "--redact",
    "--redact-hex",
    "--redact-after",
    "--redact-file",
];

/// The rules given so far.
#[derive(Debug, Default)]
pub(super) struct RuleFlags {
    rules: Vec<Rule>,
}

impl RuleFlags {
    /// Parses one rule flag; false when `name` is not one.
    pub(super) fn parse(
        &mut self,
        parser: &mut lexopt::Parser,
        name: &str,
        usage: &'static str,
    ) -> Result<bool, Usage> {
        if !FLAGS.contains(&name) {
            return Ok(false);
        }
        let value = text(parser, usage)?;
        let refused = |err: secrets::RuleError| Usage::new(err.0, usage);
        if name == "--redact-file" {
            // At most one byte past the limit is read: a device or a huge
            // file is refused, not read whole.
            let content = read_at_most(&value, 64 * 1024 + 1).map_err(|err| {
                let why = crate::error::os_reason(&err);
                Usage::new(
                    format!("--redact-file {value}: cannot read it: {why}"),
                    usage,
                )
            })?;
            // A rules file is small; a big one is a mistake.
            if content.len() > 64 * 1024 {
                return Err(Usage::new(
                    format!("--redact-file {value}: over 64 KiB, not a rules file"),
                    usage,
                ));
            }
            let content = String::from_utf8(content)
                .map_err(|_| Usage::new(format!("--redact-file {value}: not UTF-8 text"), usage))?;
            let rules = secrets::parse_file(&value, &content, &variable).map_err(refused)?;
            self.rules.extend(rules);
        } else {
            self.rules
                .push(secrets::parse_flag(name, &value, &variable).map_err(refused)?);
        }
        Ok(true)
    }

    pub(super) fn into_rules(self, usage: &'static str) -> Result<Rules, Usage> {
        Rules::new(self.rules).map_err(|err| Usage::new(err.0, usage))
    }
}

fn variable(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsStringExt::into_vec)
}

/// `tcptape redact RULES... TAPE|DIR/...`
#[derive(Debug, Clone)]
pub(crate) struct RedactArgs {
    pub rules: Rules,
    pub paths: Vec<PathBuf>,
}

/// `tcptape scan [--allow FILE] TAPE|DIR/...`
#[derive(Debug, Clone)]
pub(crate) struct ScanArgs {
    pub paths: Vec<PathBuf>,
    pub allow: Option<PathBuf>,
}

pub(super) fn parse_redact(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let usage = REDACT_USAGE;
    let mut rules = RuleFlags::default();
    let mut paths = Vec::new();
    while let Some(arg) = parser.next().map_err(lexopt_error(usage))? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                return Ok(Command::Help(REDACT_HELP));
            }
            lexopt::Arg::Value(value) => paths.push(PathBuf::from(value)),
            other => {
                let name = option_name(&other);
                if !rules.parse(parser, &name, usage)? {
                    return Err(Usage::new(format!("invalid option '{name}'"), usage));
                }
            }
        }
    }
    let rules = rules.into_rules(usage)?;
    if rules.is_empty() {
        return Err(Usage::new(
            "no rules: give --redact-env, --redact, --redact-hex, --redact-after or --redact-file",
            usage,
        ));
    }
    if paths.is_empty() {
        return Err(Usage::new("missing argument TAPE|DIR/", usage));
    }
    Ok(Command::Redact(RedactArgs { rules, paths }))
}

pub(super) fn parse_scan(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let usage = SCAN_USAGE;
    let mut paths = Vec::new();
    let mut allow = None;
    while let Some(arg) = parser.next().map_err(lexopt_error(usage))? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => {
                return Ok(Command::Help(SCAN_HELP));
            }
            lexopt::Arg::Long("allow") => {
                allow = Some(PathBuf::from(parser.value().map_err(lexopt_error(usage))?));
            }
            lexopt::Arg::Value(value) => paths.push(PathBuf::from(value)),
            other => {
                let name = option_name(&other);
                return Err(Usage::new(format!("invalid option '{name}'"), usage));
            }
        }
    }
    if paths.is_empty() {
        return Err(Usage::new("missing argument TAPE|DIR/", usage));
    }
    Ok(Command::Scan(ScanArgs { paths, allow }))
}

/// Redacts and says what each tape got.
pub(super) fn run_redact(args: &RedactArgs) -> Result<(), Error> {
    let done = crate::redact::run(&args.rules, &args.paths)?;
    let mut out = std::io::stdout().lock();
    for tape in &done {
        let _ = writeln!(
            out,
            "{}: {} secrets redacted",
            tape.tape.display(),
            tape.secrets
        );
    }
    let total: usize = done.iter().map(|t| t.secrets).sum();
    eprintln!(
        "tcptape: redact: {} tapes, {total} secrets redacted",
        done.len()
    );
    Ok(())
}

/// Scans; the exit code: 0 nothing found, 1 findings.
pub(super) fn run_scan(args: &ScanArgs) -> Result<i32, Error> {
    let allowed = match &args.allow {
        None => Vec::new(),
        Some(path) => {
            // An allow-list is small: a device or a huge file is refused.
            let limit = 1024 * 1024;
            let bytes = read_at_most(&path.to_string_lossy(), limit + 1)
                .map_err(|err| Error::file(path, "read allow-list", err))?;
            if bytes.len() as u64 > limit {
                return Err(Error::refused(
                    path,
                    format!("{}: over 1 MiB, not an allow-list", path.display()),
                ));
            }
            crate::scan::allow_list(&String::from_utf8_lossy(&bytes))
        }
    };
    let findings = crate::scan::run(&args.paths, &allowed)?;
    let mut out = std::io::stdout().lock();
    for f in &findings {
        let _ = writeln!(
            out,
            "{}: frame {}, {}: {}: {}",
            f.tape.display(),
            f.frame,
            f.place,
            f.what,
            f.preview
        );
    }
    if findings.is_empty() {
        eprintln!("tcptape: scan: no secret found");
        return Ok(super::EXIT_OK);
    }
    eprintln!(
        "tcptape: scan: {} findings (redact them with `tcptape redact`, or list what is no secret with --allow FILE)",
        findings.len()
    );
    Ok(super::EXIT_ERROR)
}

/// The first `limit` bytes of the file at `path` (all of a smaller one).
fn read_at_most(path: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut content = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut content)?;
    Ok(content)
}
