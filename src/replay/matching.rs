//! Which tape a deciding connection may take without leaving another
//! undecided connection with none: a bipartite matching of connections to
//! the tapes they may still be (Kuhn's augmenting paths; pools are small).

use std::collections::{HashMap, HashSet};

/// True when, with `taken` gone, each of the `others` (undecided
/// connections, by the entries they may still be) can still get an entry
/// no other one gets.
pub fn has_distinct_tapes(others: &[Vec<usize>], taken: usize) -> bool {
    let mut owner: HashMap<usize, usize> = HashMap::new();
    (0..others.len()).all(|pool| {
        let mut seen = HashSet::new();
        augment(pool, others, taken, &mut owner, &mut seen)
    })
}

/// Finds an entry for `pool`, moving earlier pools to other entries if
/// need be.
fn augment(
    pool: usize,
    others: &[Vec<usize>],
    taken: usize,
    owner: &mut HashMap<usize, usize>,
    seen: &mut HashSet<usize>,
) -> bool {
    for &entry in &others[pool] {
        if entry == taken || !seen.insert(entry) {
            continue;
        }
        let free = match owner.get(&entry) {
            None => true,
            Some(&holder) => augment(holder, others, taken, owner, seen),
        };
        if free {
            owner.insert(entry, pool);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tape_is_taken_only_if_the_others_keep_one_each() {
        // Another connection can only be tape 1: taking 1 would strand it.
        assert!(!has_distinct_tapes(&[vec![1]], 1));
        assert!(has_distinct_tapes(&[vec![1]], 2));
        // Two others share 2 and 3: taking 1 leaves them one each.
        assert!(has_distinct_tapes(&[vec![1, 2], vec![2, 3]], 1));
        // ...but taking 2 leaves them fighting over 1 and 3: still fine.
        assert!(has_distinct_tapes(&[vec![1, 2], vec![2, 3]], 2));
        // Three others on two tapes can never all be served.
        assert!(!has_distinct_tapes(
            &[vec![1, 2], vec![1, 2], vec![1, 2]],
            9
        ));
        assert!(has_distinct_tapes(&[], 1));
    }
}
