//! The redaction rules of `proxy`, `auto` and `redact`: `--redact-env
//! NAME`, `--redact TEXT`, `--redact-hex HEX`, `--redact-after
//! PREFIX[..END]`, `--redact-file FILE`, each as often as wanted. Unlike
//! other options they are resolved as they are parsed (the variable's
//! value, the file's rules), so a bad rule is a usage error naming the
//! rule, or the file and line.

use std::os::unix::ffi::OsStringExt;

use super::Usage;
use super::args::text;
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
            let content = std::fs::read(&value).map_err(|err| {
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
