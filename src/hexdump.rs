//! Hexdump lines in the style of `hexdump -C`, for `describe -v` and
//! mismatch reports:
//!
//! ```text
//! 00000010  71 71 71 0a 77 77 77 0a  71 71 71 0a 77 77 77 0a  |qqq.www.qqq.www.|
//! ```

use std::fmt::Write as _;
use std::io::{self, Write};

pub const BYTES_PER_LINE: usize = 16;

/// One line for up to 16 bytes that start at `offset`.
pub fn line(offset: u64, bytes: &[u8]) -> String {
    debug_assert!(bytes.len() <= BYTES_PER_LINE);
    let mut out = String::with_capacity(80);
    let _ = write!(out, "{offset:08x}  ");
    for i in 0..BYTES_PER_LINE {
        match bytes.get(i) {
            Some(b) => {
                let _ = write!(out, "{b:02x} ");
            }
            None => out.push_str("   "),
        }
        if i == 7 {
            out.push(' ');
        }
    }
    out.push(' ');
    out.push('|');
    out.extend(bytes.iter().map(|&b| printable(b)));
    out.push('|');
    out
}

fn printable(b: u8) -> char {
    if (0x20..=0x7e).contains(&b) {
        b as char
    } else {
        '.'
    }
}

/// Writes `bytes` as hexdump lines, numbered from `base`, each after `indent`.
pub fn dump(base: u64, bytes: &[u8], out: &mut impl Write, indent: &str) -> io::Result<()> {
    for (i, chunk) in bytes.chunks(BYTES_PER_LINE).enumerate() {
        let offset = base + (i * BYTES_PER_LINE) as u64;
        writeln!(out, "{indent}{}", line(offset, chunk))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_line() {
        assert_eq!(
            line(0x10, b"qqq\nwww\nqqq\nwww\n"),
            "00000010  71 71 71 0a 77 77 77 0a  71 71 71 0a 77 77 77 0a  |qqq.www.qqq.www.|"
        );
    }

    #[test]
    fn short_line_keeps_the_ascii_column_aligned() {
        let short = line(0, b"hi\x00");
        let full = line(0, &[b'x'; 16]);
        assert_eq!(short.find('|'), full.find('|'));
        assert!(short.ends_with("|hi.|"), "{short}");
    }

    #[test]
    fn dump_numbers_lines_from_base() {
        let mut out = Vec::new();
        dump(100, &[0u8; 20], &mut out, "  ").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("  00000064  00"));
        assert!(lines[1].starts_with("  00000074  00 00 00 00   "));
    }
}
