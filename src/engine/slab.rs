//! Sessions by token: a `Vec` with a free list. Freed slots are reused,
//! so tokens stay small and the vector never grows past the peak load.

pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Head of the free list, if any slot is vacant.
    next_free: Option<usize>,
    len: usize,
}

/// Sessions at once that make a burst: when the last of them is gone,
/// the memory they used is given back (`Slab::remove` says when).
const BURST: usize = 64;

enum Entry<T> {
    Occupied(T),
    /// A vacant slot and the next vacant one after it.
    Vacant(Option<usize>),
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab::new()
    }
}

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            next_free: None,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key the next `insert` will return, so a value can be built
    /// knowing its own key (a session registers its tokens before insertion).
    pub fn vacant_key(&self) -> usize {
        self.next_free.unwrap_or(self.entries.len())
    }

    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.next_free {
            Some(key) => {
                self.next_free = match self.entries[key] {
                    Entry::Vacant(next) => next,
                    Entry::Occupied(_) => unreachable!("free list points at an occupied slot"),
                };
                self.entries[key] = Entry::Occupied(value);
                key
            }
            None => {
                self.entries.push(Entry::Occupied(value));
                self.entries.len() - 1
            }
        }
    }

    /// Replaces the value in `key` with what `f` makes of it, in place: the
    /// key, and every token and timer that names it, stays valid. False
    /// (and `f` not called) when the slot is vacant.
    pub fn transition(&mut self, key: usize, f: impl FnOnce(T) -> T) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        match std::mem::replace(entry, Entry::Vacant(None)) {
            Entry::Occupied(value) => {
                *entry = Entry::Occupied(f(value));
                true
            }
            vacant => {
                *entry = vacant;
                false
            }
        }
    }

    pub fn remove(&mut self, key: usize) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        if matches!(entry, Entry::Vacant(_)) {
            return None;
        }
        let old = std::mem::replace(entry, Entry::Vacant(self.next_free));
        self.next_free = Some(key);
        self.len -= 1;
        if self.len == 0 && self.entries.len() >= BURST {
            // The last of a burst left: its slots, and what the sessions
            // freed, go back to the system instead of staying resident.
            *self = Slab::new();
            crate::sys::release_free_memory();
        }
        match old {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }

    /// Every occupied slot with its key, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(key, e)| match e {
                Entry::Occupied(value) => Some((key, value)),
                Entry::Vacant(_) => None,
            })
    }

    /// The keys of every occupied slot, in slot order.
    pub fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Entry::Occupied(_)))
            .map(|(key, _)| key)
    }

    pub fn get(&self, key: usize) -> Option<&T> {
        match self.entries.get(key)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!((a, b), (0, 1));
        assert_eq!(slab.get(a), Some(&"a"));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None, "removing twice");
        assert_eq!(slab.get(a), None);
        assert!(slab.get(a).is_none() && slab.get(b).is_some());
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.keys().collect::<Vec<_>>(), vec![b]);
    }

    #[test]
    fn freed_keys_are_reused_last_in_first_out() {
        let mut slab = Slab::new();
        for i in 0..4 {
            slab.insert(i);
        }
        slab.remove(1);
        slab.remove(3);
        assert_eq!(slab.vacant_key(), 3);
        assert_eq!(slab.insert(30), 3);
        assert_eq!(slab.vacant_key(), 1);
        assert_eq!(slab.insert(10), 1);
        assert_eq!(slab.vacant_key(), 4);
        assert_eq!(slab.insert(40), 4);
        let all: Vec<_> = (0..5).map(|k| (k, *slab.get(k).unwrap())).collect();
        assert_eq!(all, vec![(0, 0), (1, 10), (2, 2), (3, 30), (4, 40)]);
    }

    #[test]
    fn a_transition_keeps_the_key_even_after_a_burst_drained() {
        let mut slab = Slab::new();
        let keys: Vec<usize> = (0..100).map(|i| slab.insert(i)).collect();
        let kept = keys[70];
        for &key in &keys {
            if key != kept {
                slab.remove(key);
            }
        }
        assert!(slab.transition(kept, |value| value * 10));
        assert_eq!(slab.get(kept), Some(&700));
        assert_eq!(slab.len(), 1);
        assert!(!slab.transition(keys[0], |value| value), "a vacant slot");
        assert_eq!(slab.get(keys[0]), None);
        assert_eq!(slab.insert(5), keys[99], "the free list is intact");
    }

    #[test]
    fn the_end_of_a_burst_gives_its_slots_back() {
        let mut slab = Slab::new();
        let keys: Vec<usize> = (0..BURST).map(|i| slab.insert(i)).collect();
        for key in keys {
            slab.remove(key);
        }
        assert!(slab.is_empty());
        assert_eq!(slab.entries.capacity(), 0);
        assert_eq!(slab.insert(7), 0, "starts over");
    }

    #[test]
    fn out_of_range_keys_are_absent() {
        let mut slab: Slab<u8> = Slab::new();
        assert_eq!(slab.get(7), None);
        assert_eq!(slab.get_mut(7), None);
        assert_eq!(slab.remove(7), None);
        assert!(slab.is_empty());
    }
}
