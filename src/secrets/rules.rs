//! Rules as the command line and a rules file write them.
//!
//! Flags: `--redact-env NAME`, `--redact TEXT`, `--redact-hex HEX`,
//! `--redact-after PREFIX` (to the line's end) or `PREFIX..END`. TEXT,
//! PREFIX and END take the escapes `\\`, `\r`, `\n`, `\t`, `\xHH` (so a
//! prefix holding `..` writes one dot as `\x2e`).
//!
//! A rules file: one rule a line, `env NAME`, `text TEXT`, `hex HEX`,
//! `after PREFIX[..END]`; blank lines and lines starting with `#` are
//! skipped. A value in double quotes keeps its spaces (`after "AUTH "`);
//! one without is trimmed.

use std::fmt;

use super::{DEFAULT_NAME, End, MAX_PATTERN, MAX_RULES, MIN_SECRET, Rule, What, valid_name};

/// Why a rule is refused: the whole message, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rule of one flag (`--redact-env` and the rest, without `--redact-file`);
/// `env` looks a variable up.
pub fn parse_flag(
    flag: &str,
    value: &str,
    env: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Rule, RuleError> {
    let kind = match flag {
        "--redact-env" => "env",
        "--redact" => "text",
        "--redact-hex" => "hex",
        "--redact-after" => "after",
        _ => return Err(RuleError(format!("{flag}: not a redaction rule"))),
    };
    rule(kind, value, env).map_err(|why| RuleError(format!("{flag} {value}: {why}")))
}

/// The rules of a rules file's `text`; `path` names it in errors, with
/// the line.
pub fn parse_file(
    path: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: String| RuleError(format!("{path}:{}: {why}", i + 1));
        if rules.len() == MAX_RULES {
            return Err(at(format!("more than {MAX_RULES} rules")));
        }
        let (kind, value) = line.split_once([' ', '\t']).unwrap_or((line, ""));
        let value = value.trim();
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(quoted) if value.len() >= 2 => quoted,
            _ => value,
        };
        if !matches!(kind, "env" | "text" | "hex" | "after") {
            return Err(at(format!(
                "'{kind}' is not a rule: env NAME, text TEXT, hex HEX or after PREFIX[..END]"
            )));
        }
        rules.push(rule(kind, value, env).map_err(at)?);
    }
    Ok(rules)
}

fn rule(kind: &str, value: &str, env: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<Rule, String> {
    let named = |what| Rule {
        name: DEFAULT_NAME.to_string(),
        what,
    };
    match kind {
        "env" => {
            if !valid_name(value) {
                return Err(
                    "a variable's name here is 1 to 32 letters, digits, '_', '-' or '.'".into(),
                );
            }
            let secret = env(value)
                .filter(|v| !v.is_empty())
                .ok_or("the variable is not set (or empty): there is nothing to redact")?;
            literal(&secret).map_err(|why| format!("its value {why}"))?;
            Ok(Rule {
                name: value.to_string(),
                what: What::Literal(secret),
            })
        }
        "text" => {
            let bytes = unescape(value)?;
            literal(&bytes)?;
            Ok(named(What::Literal(bytes)))
        }
        "hex" => {
            let bytes = hex(value)?;
            literal(&bytes)?;
            Ok(named(What::Literal(bytes)))
        }
        _ => {
            let (prefix, end) = match value.split_once("..") {
                Some((prefix, end)) => (unescape(prefix)?, End::Bytes(unescape(end)?)),
                None => (unescape(value)?, End::Line),
            };
            if prefix.len() < 2 || prefix.len() > MAX_PATTERN {
                return Err(format!("a prefix has 2 to {MAX_PATTERN} bytes"));
            }
            if let End::Bytes(end) = &end
                && (end.is_empty() || end.len() > MAX_PATTERN)
            {
                return Err(format!("an end has 1 to {MAX_PATTERN} bytes"));
            }
            Ok(named(What::After { prefix, end }))
        }
    }
}

fn literal(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < MIN_SECRET || bytes.len() > MAX_PATTERN {
        return Err(format!(
            "is {} bytes long; a secret to redact has {MIN_SECRET} to {MAX_PATTERN}",
            bytes.len()
        ));
    }
    Ok(())
}

/// `\\`, `\r`, `\n`, `\t` and `\xHH`; other text as its UTF-8 bytes.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        let Some((&escape, tail)) = rest.split_first() else {
            return Err("a '\\' ends it: write '\\\\' for a backslash".into());
        };
        rest = tail;
        out.push(match escape {
            b'\\' => b'\\',
            b'r' => b'\r',
            b'n' => b'\n',
            b't' => b'\t',
            b'x' if rest.len() >= 2 => {
                let digits = std::str::from_utf8(&rest[..2]).unwrap_or("");
                rest = &rest[2..];
                u8::from_str_radix(digits, 16)
                    .map_err(|_| format!("'\\x{digits}' is not a byte: \\x takes two hex digits"))?
            }
            other => {
                return Err(format!(
                    "'\\{}' is not an escape: \\\\, \\r, \\n, \\t or \\xHH",
                    char::from(other).escape_default()
                ));
            }
        });
    }
    Ok(out)
}

/// Hex digits, spaces between bytes allowed (`de ad be ef`, `deadbeef`).
fn hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err("expected hex digits, two a byte".into());
    }
    Ok(digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).unwrap_or("00");
            u8::from_str_radix(text, 16).unwrap_or(0)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<Vec<u8>> {
        match name {
            "PW" => Some(b"hunter22".to_vec()),
            "SHORT" => Some(b"abc".to_vec()),
            "EMPTY" => Some(Vec::new()),
            _ => None,
        }
    }

    fn flag(flag: &str, value: &str) -> Result<Rule, String> {
        parse_flag(flag, value, &env).map_err(|e| e.0)
    }

    #[test]
    fn each_flag_makes_its_rule() {
        assert_eq!(
            flag("--redact-env", "PW").unwrap(),
            Rule {
                name: "PW".into(),
                what: What::Literal(b"hunter22".to_vec())
            }
        );
        let text = flag("--redact", "tok\\x00en\\n").unwrap();
        assert_eq!(text.what, What::Literal(b"tok\0en\n".to_vec()));
        assert_eq!(text.name, "REDACTED");
        let hex = flag("--redact-hex", "de ad BE ef").unwrap();
        assert_eq!(hex.what, What::Literal(vec![0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(
            flag("--redact-after", "AUTH ").unwrap().what,
            What::After {
                prefix: b"AUTH ".to_vec(),
                end: End::Line
            }
        );
        assert_eq!(
            flag("--redact-after", "\"password\":\"..\"").unwrap().what,
            What::After {
                prefix: b"\"password\":\"".to_vec(),
                end: End::Bytes(b"\"".to_vec())
            }
        );
    }

    #[test]
    fn a_bad_flag_says_which_and_why() {
        let cases = [
            (
                "--redact-env",
                "NOPE",
                "--redact-env NOPE: the variable is not set",
            ),
            (
                "--redact-env",
                "EMPTY",
                "the variable is not set (or empty)",
            ),
            (
                "--redact-env",
                "SHORT",
                "--redact-env SHORT: its value is 3 bytes long",
            ),
            ("--redact-env", "A B", "a variable's name here is 1 to 32"),
            (
                "--redact",
                "abc",
                "--redact abc: is 3 bytes long; a secret to redact has 4 to 512",
            ),
            ("--redact", "abcd\\q", "'\\q' is not an escape"),
            ("--redact", "abcd\\", "a '\\' ends it"),
            ("--redact", "abcd\\xzz", "'\\xzz' is not a byte"),
            ("--redact-hex", "abc", "expected hex digits, two a byte"),
            ("--redact-hex", "zzzz", "expected hex digits"),
            ("--redact-after", "A", "a prefix has 2 to 512 bytes"),
            ("--redact-after", "AUTH ..", "an end has 1 to 512 bytes"),
        ];
        for (name, value, want) in cases {
            let err = flag(name, value).unwrap_err();
            assert!(err.contains(want), "{name} {value}: {err}");
        }
        let long = "x".repeat(MAX_PATTERN + 1);
        assert!(
            flag("--redact", &long)
                .unwrap_err()
                .contains("513 bytes long")
        );
    }

    #[test]
    fn a_rules_file_takes_a_rule_a_line_and_names_the_line_at_fault() {
        let text = "# the team's rules\n\nenv PW\ntext  s3cr3t-token  \nafter \"AUTH \"\nhex 00112233\n  # indented comment\nafter Bearer ..;\n";
        let rules = parse_file("rules.txt", text, &env).unwrap();
        assert_eq!(rules.len(), 5);
        assert_eq!(rules[1].what, What::Literal(b"s3cr3t-token".to_vec()));
        assert_eq!(
            rules[2].what,
            What::After {
                prefix: b"AUTH ".to_vec(),
                end: End::Line
            }
        );
        assert_eq!(
            rules[4].what,
            What::After {
                prefix: b"Bearer ".to_vec(),
                end: End::Bytes(b";".to_vec())
            }
        );
        let err = parse_file("rules.txt", "env PW\nsecret abc\n", &env).unwrap_err();
        assert_eq!(
            err.0,
            "rules.txt:2: 'secret' is not a rule: env NAME, text TEXT, hex HEX or after PREFIX[..END]"
        );
        let err = parse_file("rules.txt", "\n\nenv NOPE\n", &env).unwrap_err();
        assert!(
            err.0.starts_with("rules.txt:3: the variable is not set"),
            "{err}"
        );
        let many = "text abcdefgh\n".repeat(MAX_RULES + 1);
        let err = parse_file("r", &many, &env).unwrap_err();
        assert_eq!(err.0, format!("r:{}: more than 64 rules", MAX_RULES + 1));
    }
}
