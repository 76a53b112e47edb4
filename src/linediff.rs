//! A line diff for `--text-diff`: longest common subsequence over lines,
//! shown with a few lines of context. Inputs are bounded by the mismatch
//! report (a few KiB), so the quadratic table stays small.

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The edit script turning `old` into `new`.
pub fn diff<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Line<'a>> {
    // lcs[i][j]: length of the common subsequence of old[i..] and new[j..].
    let mut lcs = vec![vec![0u32; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::new();
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            lines.push(Line::Same(old[i]));
            i += 1;
            j += 1;
        } else if i < old.len() && (j == new.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals first, so a changed line reads as "-old" then "+new".
            lines.push(Line::Removed(old[i]));
            i += 1;
        } else {
            lines.push(Line::Added(new[j]));
            j += 1;
        }
    }
    lines
}

/// Renders a diff as `-`/`+`/` ` lines, keeping `context` unchanged lines
/// around each change and eliding the rest.
pub fn render(lines: &[Line<'_>], context: usize, indent: &str) -> String {
    let changed: Vec<usize> = (0..lines.len())
        .filter(|&i| !matches!(lines[i], Line::Same(_)))
        .collect();
    let near_change = |i: usize| changed.iter().any(|&c| c.abs_diff(i) <= context);
    let mut out = String::new();
    let mut elided = false;
    for (i, line) in lines.iter().enumerate() {
        if !near_change(i) {
            if !elided {
                out.push_str(indent);
                out.push_str("...\n");
                elided = true;
            }
            continue;
        }
        elided = false;
        let (mark, text) = match line {
            Line::Same(t) => (' ', t),
            Line::Removed(t) => ('-', t),
            Line::Added(t) => ('+', t),
        };
        out.push_str(&format!("{indent}{mark} {}\n", text.escape_debug()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_inputs_have_no_changes() {
        let a = ["x", "y"];
        assert_eq!(diff(&a, &a), vec![Line::Same("x"), Line::Same("y")]);
    }

    #[test]
    fn changed_line_is_removed_then_added() {
        let d = diff(&["EHLO a", "MAIL", "QUIT"], &["EHLO b", "MAIL", "QUIT"]);
        assert_eq!(
            d,
            vec![
                Line::Removed("EHLO a"),
                Line::Added("EHLO b"),
                Line::Same("MAIL"),
                Line::Same("QUIT")
            ]
        );
    }

    #[test]
    fn insertions_and_deletions() {
        let d = diff(&["a", "b", "c"], &["a", "c", "d"]);
        assert_eq!(
            d,
            vec![
                Line::Same("a"),
                Line::Removed("b"),
                Line::Same("c"),
                Line::Added("d")
            ]
        );
        assert_eq!(diff(&[], &["n"]), vec![Line::Added("n")]);
        assert_eq!(diff(&["o"], &[]), vec![Line::Removed("o")]);
    }

    #[test]
    fn render_elides_far_context() {
        let old: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let mut new = old.clone();
        new[10] = "changed\r".to_string();
        let old: Vec<&str> = old.iter().map(String::as_str).collect();
        let new: Vec<&str> = new.iter().map(String::as_str).collect();
        let text = render(&diff(&old, &new), 1, "  ");
        assert_eq!(
            text,
            "  ...\n    line 9\n  - line 10\n  + changed\\r\n    line 11\n  ...\n"
        );
    }
}
