//! The values of one field known to resolve to nothing, remembered across dictionaries.
//!
//! Each Parquet row group brings new dictionaries, and each mostly holds the values of the
//! row groups before it (the same resolvers, addresses, names and URLs, again and again), almost
//! all of them concerning no indicator. Resolving each entry again costs a parse, a
//! normalisation and index probes that miss the cache (~150–450 ns an entry on the 10 M-row
//! workload); a memo probed entry by entry costs about as much, since the memo is as cold as
//! the index. So a new dictionary is resolved as a whole: the fingerprints of all its entries
//! are sorted and then probed in that order against a table ordered by the same bits, so that
//! the probes walk the table from its start to its end, as a merge does, and the processor
//! overlaps their cache misses instead of waiting for each.
//!
//! A fingerprint is 128 bits of a keyed hash (a random key per process, so that telemetry
//! cannot aim values at a fingerprint it does not know): the chance that some value of a
//! scan is taken for another already known dead is below 2⁻⁸⁰ even for billions of distinct
//! values. Only dead values are kept; a value that resolves to candidates is resolved again
//! in each dictionary (they are few).

/// The fingerprint of one value: `pos` orders the table, `check` tells values apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    pos: u64,
    /// Never 0, so that a free slot (all zero) is no fingerprint.
    check: u64,
}

impl Fingerprint {
    /// The fingerprint of `value` under `key`.
    #[inline]
    pub(super) fn of(key: u64, value: &[u8]) -> Self {
        let h = xxhash_rust::xxh3::xxh3_128_with_seed(value, key);
        Fingerprint {
            pos: (h >> 64) as u64,
            check: h as u64 | 1,
        }
    }

    /// The order in which a batch of fingerprints is best probed and inserted.
    #[inline]
    pub(super) fn order(&self) -> u64 {
        self.pos
    }
}

/// A set of fingerprints: open addressing with linear probing, the home slot of a fingerprint
/// being the top bits of its `pos`, so that fingerprints in ascending `pos` visit the slots in
/// ascending order. At most half full; bounded: a full table at its limit is emptied and
/// fills again.
#[derive(Debug, Default)]
pub(super) struct DeadSet {
    /// A power of two long, or empty.
    slots: Vec<Fingerprint>,
    used: usize,
}

const FREE: Fingerprint = Fingerprint { pos: 0, check: 0 };

impl DeadSet {
    /// Slots at most: 8 MiB, 256 Ki values.
    pub(super) const MAX_SLOTS: usize = 1 << 19;

    /// The home slot of `fp`.
    #[inline]
    fn home(&self, fp: Fingerprint) -> usize {
        // `slots.len()` is a power of two of at least 2 here.
        (fp.pos >> (64 - self.slots.len().trailing_zeros())) as usize
    }

    /// Whether `fp` is in the set.
    #[inline]
    pub(super) fn contains(&self, fp: Fingerprint) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(fp);
        loop {
            let s = self.slots[i];
            if s == fp {
                return true;
            }
            if s.check == 0 {
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `fp`, growing the table up to `max_slots` slots, or emptying it there.
    pub(super) fn insert(&mut self, fp: Fingerprint, max_slots: usize) {
        if self.contains(fp) {
            return;
        }
        if 2 * (self.used + 1) > self.slots.len() {
            if self.slots.len() >= max_slots {
                self.slots.fill(FREE);
                self.used = 0;
            } else {
                self.grow((2 * self.slots.len()).clamp(2, max_slots));
            }
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(fp);
        while self.slots[i].check != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = fp;
        self.used += 1;
    }

    /// Makes room for `additional` more values without growing in between (up to
    /// `max_slots`). To be called before inserting a sorted batch: grown half-way through
    /// one, the table would take the batch's lower part at the bottom of a small table and
    /// pile it up there.
    pub(super) fn reserve(&mut self, additional: usize, max_slots: usize) {
        let want = (2 * (self.used + additional))
            .next_power_of_two()
            .max(64)
            .min(max_slots)
            .max(2);
        if want > self.slots.len() {
            self.grow(want);
        }
    }

    /// Moves the values to a table of `n` slots, larger than the current one.
    fn grow(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.slots, vec![FREE; n]);
        self.used = 0;
        for fp in old.into_iter().filter(|s| s.check != 0) {
            self.insert(fp, n);
        }
    }

    /// Values in the set.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The set holds exactly what was inserted since it was last emptied, whatever the
        /// order of insertion, through growth and wrap-around.
        #[test]
        fn holds_what_was_inserted(
            values in proptest::collection::vec(0u16..2000, 0..3000),
            max_slots in proptest::sample::select(vec![2usize, 8, 64, 4096, 1 << 19]),
        ) {
            let key = 7;
            let mut set = DeadSet::default();
            let mut model: Vec<u16> = Vec::new();
            for v in &values {
                let fp = Fingerprint::of(key, &v.to_le_bytes());
                let new = !model.contains(v);
                set.insert(fp, max_slots);
                if new {
                    if set.len() != model.len() + 1 {
                        // Emptied at its limit, then `v` inserted.
                        proptest::prop_assert_eq!(set.len(), 1);
                        model.clear();
                    }
                    model.push(*v);
                }
                proptest::prop_assert_eq!(set.len(), model.len());
                proptest::prop_assert!(2 * set.len() <= max_slots.max(2));
            }
            for v in 0u16..2000 {
                let fp = Fingerprint::of(key, &v.to_le_bytes());
                proptest::prop_assert_eq!(set.contains(fp), model.contains(&v), "{}", v);
            }
        }
    }
}
