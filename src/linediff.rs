//! A line diff for `--text-diff`: longest common subsequence over lines,
//! shown with a few lines of context.
//!
//! Its cost is bounded whatever the input, as a mismatch report must not
//! hang or exhaust memory on a peer's megabytes: the common head and tail
//! are matched in linear time, and the LCS table over what is left has at
//! most `MAX_CELLS` cells; a larger middle is shown as removed, then added,
//! without aligning its lines. Rendering is linear and at most `MAX_SHOWN`
//! lines long.

use std::collections::HashMap;

/// Cells of the LCS table at most (4 bytes each: 1 MiB).
const MAX_CELLS: usize = 256 * 1024;
/// Lines `render` shows at most.
pub const MAX_SHOWN: usize = 400;

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The edit script turning `old` into `new`.
pub fn diff<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Line<'a>> {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let (old_rest, new_rest) = (&old[head..], &new[head..]);
    let tail = old_rest
        .iter()
        .rev()
        .zip(new_rest.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_mid = &old_rest[..old_rest.len() - tail];
    let new_mid = &new_rest[..new_rest.len() - tail];

    let mut lines: Vec<Line<'a>> = old[..head].iter().map(|&l| Line::Same(l)).collect();
    if (old_mid.len() + 1).saturating_mul(new_mid.len() + 1) <= MAX_CELLS {
        lcs_diff(old_mid, new_mid, &mut lines);
    } else {
        lines.extend(old_mid.iter().map(|&l| Line::Removed(l)));
        lines.extend(new_mid.iter().map(|&l| Line::Added(l)));
    }
    lines.extend(
        old_rest[old_rest.len() - tail..]
            .iter()
            .map(|&l| Line::Same(l)),
    );
    lines
}

/// The LCS edit script of inputs small enough for the table.
fn lcs_diff<'a>(old: &[&'a str], new: &[&'a str], lines: &mut Vec<Line<'a>>) {
    // Lines as numbers, so that a cell costs one comparison whatever the
    // lines' length.
    let mut ids = HashMap::new();
    let mut id = |line: &'a str| {
        let next = ids.len();
        *ids.entry(line).or_insert(next)
    };
    let old_ids: Vec<usize> = old.iter().map(|&l| id(l)).collect();
    let new_ids: Vec<usize> = new.iter().map(|&l| id(l)).collect();
    // lcs[i * width + j]: length of the common subsequence of old[i..] and
    // new[j..].
    let width = new.len() + 1;
    let mut lcs = vec![0u32; (old.len() + 1) * width];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lcs[i * width + j] = if old_ids[i] == new_ids[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old_ids[i] == new_ids[j] {
            lines.push(Line::Same(old[i]));
            i += 1;
            j += 1;
        } else if i < old.len()
            && (j == new.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
        {
            // Removals first, so a changed line reads as "-old" then "+new".
            lines.push(Line::Removed(old[i]));
            i += 1;
        } else {
            lines.push(Line::Added(new[j]));
            j += 1;
        }
    }
}

/// Renders a diff as `-`/`+`/` ` lines, keeping `context` unchanged lines
/// around each change and eliding the rest; after `MAX_SHOWN` lines, says
/// how many more were left out.
pub fn render(lines: &[Line<'_>], context: usize, indent: &str) -> String {
    // Distance from each line to the nearest change, before and after it,
    // in two linear passes.
    let mut near = vec![false; lines.len()];
    let mut since_change = usize::MAX;
    for (i, line) in lines.iter().enumerate() {
        since_change = match line {
            Line::Same(_) => since_change.saturating_add(1),
            _ => 0,
        };
        near[i] = since_change <= context;
    }
    let mut until_change = usize::MAX;
    for (i, line) in lines.iter().enumerate().rev() {
        until_change = match line {
            Line::Same(_) => until_change.saturating_add(1),
            _ => 0,
        };
        near[i] |= until_change <= context;
    }
    let mut out = String::new();
    let mut shown = 0;
    let mut elided = false;
    for (i, line) in lines.iter().enumerate() {
        if !near[i] {
            if !elided {
                out.push_str(indent);
                out.push_str("...\n");
                elided = true;
            }
            continue;
        }
        if shown == MAX_SHOWN {
            let left = (i..lines.len()).filter(|&k| near[k]).count();
            out.push_str(&format!(
                "{indent}... {left} more lines of the diff not shown\n"
            ));
            break;
        }
        shown += 1;
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

    fn numbered(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix} {i}\n")).collect()
    }

    fn refs(lines: &[String]) -> Vec<&str> {
        lines.iter().map(String::as_str).collect()
    }

    #[test]
    fn huge_inputs_are_diffed_fast_and_rendered_short() {
        let start = std::time::Instant::now();
        // Nothing in common: the middle is too large to align.
        let old = numbered("old", 100_000);
        let new = numbered("new", 100_000);
        let d = diff(&refs(&old), &refs(&new));
        assert_eq!(d.len(), 200_000);
        assert_eq!(
            (d[0], d[100_000]),
            (Line::Removed("old 0\n"), Line::Added("new 0\n"))
        );
        let text = render(&d, 2, "  ");
        assert!(
            text.lines().count() <= MAX_SHOWN + 2,
            "{}",
            text.lines().count()
        );
        assert!(
            text.ends_with("  ... 199600 more lines of the diff not shown\n"),
            "{text}"
        );

        // One line changed in the middle: head and tail match in linear time.
        let old = numbered("line", 100_000);
        let mut new = old.clone();
        new[50_000] = "changed\n".to_string();
        let d = diff(&refs(&old), &refs(&new));
        assert_eq!(d.len(), 100_001);
        let text = render(&d, 2, "  ");
        assert_eq!(
            text,
            "  ...\n    line 49998\\n\n    line 49999\\n\n  - line 50000\\n\n  + changed\\n\n    line 50001\\n\n    line 50002\\n\n  ...\n"
        );

        // Changes at both ends leave a middle too large to align: it is
        // shown removed, then added, and the rendering is cut.
        let mut new = old.clone();
        new[0] = "first\n".to_string();
        new[99_999] = "last\n".to_string();
        let d = diff(&refs(&old), &refs(&new));
        assert_eq!(d.len(), 200_000);
        assert!(render(&d, 2, "  ").lines().count() <= MAX_SHOWN + 2);

        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn small_middles_are_aligned() {
        let old = numbered("line", 400);
        let mut new = old.clone();
        new.remove(100);
        new.insert(300, "inserted\n".to_string());
        new[0] = "first\n".to_string();
        let d = diff(&refs(&old), &refs(&new));
        let changed: Vec<&Line> = d.iter().filter(|l| !matches!(l, Line::Same(_))).collect();
        assert_eq!(
            changed,
            [
                &Line::Removed("line 0\n"),
                &Line::Added("first\n"),
                &Line::Removed("line 100\n"),
                &Line::Added("inserted\n")
            ]
        );
    }
}
