//! `tcptape scan TAPE|DIR/...`: a gate for CI that looks through tapes for
//! what looks like a secret left in clear: the shapes people leak most
//! (an `Authorization:` header, `password=` and `"password":`, an AWS
//! access key, a private key's PEM block, a JWT, Redis `AUTH`, NATS
//! `"pass"`) and long high-entropy tokens. Bytes a secret span covers are
//! placeholders, no finding; an allow-list names strings that are no
//! secret. Each data frame is looked at on its own.

use std::path::{Path, PathBuf};

use crate::cassette;
use crate::error::Error;
use crate::tape::text::{self, LineMap};
use crate::tape::{Kind, Reader, SpanKind, TapeError};

/// The shortest token the entropy test looks at.
const MIN_TOKEN: usize = 32;
/// Bits per character above which a token looks random (hex tops out at 4).
const MIN_ENTROPY: f64 = 4.2;

/// Something that looks like a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub tape: PathBuf,
    pub frame: u64,
    /// `line 12` in a text tape, `tape offset 196` in a binary one.
    pub place: String,
    pub what: &'static str,
    /// The first bytes of the value, the rest starred: enough to find it,
    /// not enough to use it.
    pub preview: String,
}

/// Scans every tape of `paths` (tapes, and the tapes and pending tapes of
/// cassette folders); `allowed` are strings that are no secret.
pub(crate) fn run(paths: &[PathBuf], allowed: &[String]) -> Result<Vec<Finding>, Error> {
    let mut findings = Vec::new();
    for path in paths {
        let tapes = if path.is_dir() {
            let mut tapes = cassette::tapes(path)?;
            tapes.extend(pending(path)?);
            tapes
        } else {
            vec![path.clone()]
        };
        for tape in tapes {
            findings.extend(scan_tape(&tape, allowed)?);
        }
    }
    Ok(findings)
}

/// The pending tapes of a cassette (`client --update`), which hold what a
/// server said.
fn pending(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|err| Error::file(dir, "read cassette", err))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "pending") && path.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// An allow-list file's strings: one a line, `#` comments and blank lines
/// skipped.
pub(crate) fn allow_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn scan_tape(path: &Path, allowed: &[String]) -> Result<Vec<Finding>, Error> {
    let content = std::fs::read(path).map_err(|err| Error::file(path, "read tape", err))?;
    let (binary, lines): (Vec<u8>, Option<LineMap>) =
        if text::looks_like_text(&content[..content.len().min(512)]) {
            let source = String::from_utf8_lossy(&content);
            let built = text::build(&source).map_err(|source| Error::Text {
                path: path.to_path_buf(),
                source,
            })?;
            (built.bytes, Some(built.lines))
        } else {
            (content, None)
        };
    scan_binary(&binary, lines.as_ref(), path, allowed).map_err(|err| Error::tape(path, err))
}

fn scan_binary(
    binary: &[u8],
    lines: Option<&LineMap>,
    path: &Path,
    allowed: &[String],
) -> Result<Vec<Finding>, TapeError> {
    let mut findings = Vec::new();
    let mut reader = Reader::new(binary);
    // Bytes of each direction a secret span covers, still to come.
    let mut secret = [0u32; 2];
    let mut payload = Vec::new();
    while let Some(frame) = reader.next_frame()? {
        match frame.kind {
            Kind::Span(dir) => {
                let span = reader.read_span()?;
                if matches!(span.kind, SpanKind::Secret(_)) {
                    secret[dir.index()] = span.len;
                }
            }
            Kind::Data(dir) => {
                payload.clear();
                reader.read_payload_into(&mut payload)?;
                let skip = (secret[dir.index()] as usize).min(payload.len());
                secret[dir.index()] -= skip as u32;
                for (at, what, value) in look(&payload[skip..]) {
                    let text = String::from_utf8_lossy(value);
                    if allowed.iter().any(|a| text.contains(a.as_str())) {
                        continue;
                    }
                    let offset = frame.offset + 4 + (skip + at) as u64;
                    let place = match lines.and_then(|map| map.line_at(offset)) {
                        Some(line) => format!("line {line}"),
                        None => format!("tape offset {offset}"),
                    };
                    findings.push(Finding {
                        tape: path.to_path_buf(),
                        frame: frame.index,
                        place,
                        what,
                        preview: preview(value),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(findings)
}

/// Up to 3 characters of the value, then as many stars as it has more.
fn preview(value: &[u8]) -> String {
    let shown: String = value
        .iter()
        .take(3)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect();
    format!(
        "{shown}{} ({} bytes)",
        "*".repeat(value.len().saturating_sub(3).min(20)),
        value.len()
    )
}

/// What looks like a secret in `data`: where its value starts, what it
/// is, and the value.
fn look(data: &[u8]) -> Vec<(usize, &'static str, &[u8])> {
    let mut out = Vec::new();
    let lower: Vec<u8> = data.to_ascii_lowercase();
    // A value after a key, up to the end of its line (or a delimiter).
    let keyed: [(&[u8], &'static str, &[u8]); 8] = [
        (b"authorization:", "an Authorization header", b"\r\n"),
        (b"password=", "a password= value", b"&\r\n \"';"),
        (b"passwd=", "a password= value", b"&\r\n \"';"),
        (b"\"password\":", "a \"password\" value", b",}\r\n"),
        (b"\"pass\":", "a NATS \"pass\" value", b",}\r\n"),
        (b"\"auth_token\":", "a NATS \"auth_token\" value", b",}\r\n"),
        (b"\"secret\":", "a \"secret\" value", b",}\r\n"),
        (b"\"token\":", "a \"token\" value", b",}\r\n"),
    ];
    for (key, what, ends) in keyed {
        for at in find_all(&lower, key) {
            let start = at + key.len();
            let value = value_at(data, start, ends);
            if worth_reporting(value) {
                out.push((start, what, value));
            }
        }
    }
    // Redis AUTH, inline or as a RESP array's argument.
    for at in find_all(&lower, b"auth") {
        let line_start = at == 0 || data[at - 1] == b'\n';
        if line_start && data.get(at + 4) == Some(&b' ') {
            let value = value_at(data, at + 5, b"\r\n");
            if worth_reporting(value) {
                out.push((at + 5, "a Redis AUTH password", value));
            }
        }
        if lower[at..].starts_with(b"auth\r\n$") {
            // `$N\r\n` then the password (and maybe a user before it).
            let mut start = at + 6;
            let mut value: &[u8] = &[];
            for _ in 0..2 {
                let Some(digits) = data[start..].iter().position(|&b| b == b'\n') else {
                    break;
                };
                start += digits + 1;
                value = value_at(data, start, b"\r\n");
                start += value.len() + 2;
                if !data[start.min(data.len())..].starts_with(b"$") {
                    break;
                }
            }
            if worth_reporting(value) {
                out.push((
                    start.saturating_sub(value.len() + 2),
                    "a Redis AUTH password",
                    value,
                ));
            }
        }
    }
    for at in find_all(data, b"-----BEGIN ") {
        let head = value_at(data, at, b"\n");
        if head.windows(11).any(|w| w == b"PRIVATE KEY") {
            out.push((at, "a private key (PEM)", head));
        }
    }
    for prefix in [&b"AKIA"[..], b"ASIA"] {
        for at in find_all(data, prefix) {
            let key = &data[at..(at + 20).min(data.len())];
            let shaped = key.len() == 20
                && key
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                && !data.get(at + 20).is_some_and(u8::is_ascii_alphanumeric);
            if shaped {
                out.push((at, "an AWS access key id", key));
            }
        }
    }
    for (at, token) in tokens(data) {
        if let Some(what) = token_kind(token) {
            out.push((at, what, token));
        }
    }
    out.sort_by_key(|f| f.0);
    out.dedup_by_key(|f| f.0);
    out
}

/// The bytes from `start` up to the first of `ends` (or the data's end),
/// without quotes around them.
fn value_at<'a>(data: &'a [u8], start: usize, ends: &[u8]) -> &'a [u8] {
    let rest = &data[start.min(data.len())..];
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let rest = rest.strip_prefix(b"\"").unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| ends.contains(b) || *b == b'"')
        .unwrap_or(rest.len());
    &rest[..end.min(4096)]
}

/// A value worth reporting: not empty, not a placeholder, not `null`.
fn worth_reporting(value: &[u8]) -> bool {
    !value.is_empty() && !value.iter().all(|&b| b == b'*') && value != b"null"
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Runs of token characters (letters, digits, `+/=_-.`) of at least 20.
fn tokens(data: &[u8]) -> Vec<(usize, &[u8])> {
    let token_char = |b: &u8| b.is_ascii_alphanumeric() || b"+/=_-.".contains(b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if !token_char(&data[i]) {
            i += 1;
            continue;
        }
        let len = data[i..].iter().take_while(|b| token_char(b)).count();
        if len >= 20 {
            out.push((i, &data[i..i + len]));
        }
        i += len;
    }
    out
}

/// What a token is, if it looks like a secret.
fn token_kind(token: &[u8]) -> Option<&'static str> {
    let parts: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    if parts.len() == 3 && parts[0].starts_with(b"eyJ") && parts.iter().all(|p| p.len() >= 10) {
        return Some("a JWT");
    }
    let classes = [
        token.iter().any(u8::is_ascii_uppercase),
        token.iter().any(u8::is_ascii_lowercase),
        token.iter().any(u8::is_ascii_digit),
    ];
    if token.len() >= MIN_TOKEN && classes.iter().all(|&c| c) && entropy(token) >= MIN_ENTROPY {
        return Some("a high-entropy token");
    }
    None
}

/// Shannon entropy in bits per byte.
fn entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(data: &[u8]) -> Vec<&'static str> {
        look(data).into_iter().map(|(_, what, _)| what).collect()
    }

    #[test]
    fn each_shape_is_found() {
        let cases: [(&[u8], &str); 10] = [
            (b"GET / HTTP/1.1\r\nAuthorization: Bearer abc.def\r\n", "an Authorization header"),
            (b"user=bob&password=hunter2&x=1", "a password= value"),
            (b"{\"user\":\"bob\",\"password\":\"hunter2\"}", "a \"password\" value"),
            (b"CONNECT {\"user\":\"a\",\"pass\":\"s3cret\"}\r\n", "a NATS \"pass\" value"),
            (b"key=AKIAIOSFODNN7EXAMPLE;", "an AWS access key id"),
            (b"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n", "a private key (PEM)"),
            (
                b"token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
                "a JWT",
            ),
            (b"*2\r\n$4\r\nAUTH\r\n$7\r\nhunter2\r\n", "a Redis AUTH password"),
            (b"AUTH hunter2\r\n", "a Redis AUTH password"),
            (b"x-api-key: Zq8vN2kLp4RtY7wXc1BmA9sD3fGhJ6uE0iOyT5\r\n", "a high-entropy token"),
        ];
        for (data, want) in cases {
            assert!(
                kinds(data).contains(&want),
                "{}: {:?}",
                String::from_utf8_lossy(data),
                kinds(data)
            );
        }
    }

    #[test]
    fn placeholders_hex_and_words_are_no_finding() {
        for data in [
            &b"{\"password\":\"********\"}"[..],
            b"AUTH ********\r\n",
            b"sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709 ok",
            b"the_quick_brown_fox_jumps_over_the_lazy_dog",
            b"{\"password\":null}",
        ] {
            assert!(
                kinds(data).is_empty(),
                "{}: {:?}",
                String::from_utf8_lossy(data),
                kinds(data)
            );
        }
        assert_eq!(preview(b"hunter2"), "hun**** (7 bytes)");
    }
}
