//! The compiled index of every loaded list: exact strings and hosts by hashed key, networks
//! as range tables, substrings in one Aho-Corasick pass with a gram prefilter, regexes last.

use super::*;
use crate::hash::FastHasher;

/// A list entry: list ordinal (load order) and entry ordinal within the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Hit {
    pub(super) list: u32,
    pub(super) entry: u32,
}

/// Which entries of the key map a probe may hit.
#[derive(Clone, Copy)]
pub(super) struct Accept {
    /// String entries.
    pub(super) string: bool,
    /// Hostname entries.
    pub(super) host: bool,
    /// The probe is case-sensitive: a string entry must equal it byte for byte.
    pub(super) exact: bool,
}

impl Accept {
    /// A host or address probe (case-insensitive).
    pub(super) fn host(string: bool, host: bool) -> Self {
        Accept {
            string,
            host,
            exact: false,
        }
    }

    /// A probe of string entries only.
    pub(super) fn string(string: bool, exact: bool) -> Self {
        Accept {
            string,
            host: false,
            exact,
        }
    }
}

/// The best (first in load order) hit found so far.
#[derive(Default)]
pub(super) struct Best(pub(super) Option<Hit>);

impl Best {
    pub(super) fn offer(&mut self, hit: Hit) {
        if self.0.is_none_or(|b| hit.list < b.list) {
            self.0 = Some(hit);
        }
    }

    /// Lists at or after this ordinal cannot improve the result.
    pub(super) fn bound(&self) -> u32 {
        self.0.map_or(u32::MAX, |b| b.list)
    }
}

pub(super) type KeyMap = HashMap<Box<str>, HitList, BuildHasherDefault<FastHasher>>;

/// Gram key → occurrences, for choosing rare grams.
pub(super) type GramCounts = HashMap<u64, u32, BuildHasherDefault<FastHasher>>;

/// The entries of one key, one per list, in load order. Nearly every key has one entry, which
/// is then stored without an allocation of its own.
#[derive(Debug)]
pub(super) enum HitList {
    One(Hit),
    Many(Vec<Hit>),
}

impl HitList {
    /// Adds an entry of a list at or after those present; a later entry of the same list
    /// is dropped (the first one is reported).
    pub(super) fn push(&mut self, hit: Hit) {
        match self {
            HitList::One(first) if first.list == hit.list => {}
            HitList::One(first) => *self = HitList::Many(vec![*first, hit]),
            HitList::Many(v) => {
                if v.last().is_none_or(|l| l.list != hit.list) {
                    v.push(hit);
                }
            }
        }
    }

    pub(super) fn as_slice(&self) -> &[Hit] {
        match self {
            HitList::One(h) => std::slice::from_ref(h),
            HitList::Many(v) => v,
        }
    }
}

/// A blocked Bloom filter over the keys of the [`KeyMap`]: each key sets two bits of one
/// 64-bit word, about sixteen bits per key, some 2 % false positives. Nearly every probe of
/// a name and its parents misses, and the filter answers those with one memory access
/// instead of two cache misses in the map.
#[derive(Default)]
pub(super) struct KeyFilter {
    pub(super) words: Box<[u64]>,
    pub(super) mask: u64,
}

impl KeyFilter {
    pub(super) fn new<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let len = (keys.len() / 4).next_power_of_two().max(1);
        let mut f = KeyFilter {
            words: vec![0; len].into_boxed_slice(),
            mask: len as u64 - 1,
        };
        for k in keys {
            let (w, bits) = f.position(k);
            f.words[w] |= bits;
        }
        f
    }

    /// The word and the bits of a key.
    pub(super) fn position(&self, key: &str) -> (usize, u64) {
        let h = std::hash::BuildHasher::hash_one(&BuildHasherDefault::<FastHasher>::default(), key);
        let bits = (1 << ((h >> 52) & 63)) | (1 << ((h >> 58) & 63));
        ((h & self.mask) as usize, bits)
    }

    /// Whether the key may be in the map (no false negatives).
    pub(super) fn may_contain(&self, key: &str) -> bool {
        if self.words.is_empty() {
            return false;
        }
        let (w, bits) = self.position(key);
        self.words[w] & bits == bits
    }
}

/// Values of unsigned integer type that address ranges are kept in (`u32` for IPv4, `u128`
/// for IPv6).
pub(super) trait Addr: Copy + Ord + fmt::Debug {
    const MAX: Self;
    fn succ(self) -> Self;
    fn pred(self) -> Self;
    /// The top 16 bits, which index the table's directory.
    fn bucket(self) -> usize;
}

/// Entries in a [`RangeTable`] directory (one per value of the top 16 bits).
pub(super) const BUCKETS: usize = 1 << 16;

impl Addr for u32 {
    const MAX: Self = u32::MAX;
    fn succ(self) -> Self {
        self + 1
    }
    fn pred(self) -> Self {
        self - 1
    }
    fn bucket(self) -> usize {
        (self >> 16) as usize
    }
}

impl Addr for u128 {
    const MAX: Self = u128::MAX;
    fn succ(self) -> Self {
        self + 1
    }
    fn pred(self) -> Self {
        self - 1
    }
    fn bucket(self) -> usize {
        (self >> 112) as usize
    }
}

/// Disjoint address segments, each with every list entry covering it (at most one per list,
/// the one reaching furthest, sorted by list). A directory over the top 16 bits narrows the
/// binary search to the few segments starting in the address's bucket.
#[derive(Debug)]
pub(super) struct RangeTable<T> {
    /// `dir[b]`: the number of segments starting in a bucket below `b` (`BUCKETS + 1` entries;
    /// empty while the table is).
    pub(super) dir: Vec<u32>,
    pub(super) starts: Vec<T>,
    pub(super) ends: Vec<T>,
    /// Segment `i` owns `hits[offsets[i]..offsets[i + 1]]`.
    pub(super) offsets: Vec<u32>,
    /// A covering entry and the last address of its network.
    pub(super) hits: Vec<(Hit, T)>,
}

impl<T: Addr> Default for RangeTable<T> {
    fn default() -> Self {
        RangeTable {
            dir: Vec::new(),
            starts: Vec::new(),
            ends: Vec::new(),
            offsets: vec![0],
            hits: Vec::new(),
        }
    }
}

impl<T: Addr> RangeTable<T> {
    /// Builds the table from inclusive ranges `(first, last, hit)`.
    pub(super) fn build(mut ranges: Vec<(T, T, Hit)>) -> Self {
        let mut table = RangeTable::default();
        if ranges.is_empty() {
            return table;
        }
        ranges.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
        let mut bounds: Vec<T> = Vec::with_capacity(ranges.len() * 2);
        for &(first, last, _) in &ranges {
            bounds.push(first);
            if last < T::MAX {
                bounds.push(last.succ());
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut active: Vec<(Hit, T)> = Vec::new();
        let mut next = 0;
        let mut seg: Vec<(Hit, T)> = Vec::new();
        for (k, &b) in bounds.iter().enumerate() {
            while next < ranges.len() && ranges[next].0 <= b {
                active.push((ranges[next].2, ranges[next].1));
                next += 1;
            }
            active.retain(|&(_, last)| last >= b);
            if active.is_empty() {
                continue;
            }
            let seg_end = bounds.get(k + 1).map_or(T::MAX, |n| n.pred());
            // One hit per list: the entry whose network reaches furthest (so that a network
            // indicator inside it is found), the earliest entry among equals.
            seg.clear();
            seg.extend_from_slice(&active);
            seg.sort_unstable_by(|a, b| {
                a.0.list
                    .cmp(&b.0.list)
                    .then(b.1.cmp(&a.1))
                    .then(a.0.entry.cmp(&b.0.entry))
            });
            seg.dedup_by_key(|h| h.0.list);
            let n = table.starts.len();
            let same_as_prev = n > 0
                && table.ends[n - 1].succ() == b
                && table.hits[table.offsets[n - 1] as usize..] == seg[..];
            if same_as_prev {
                table.ends[n - 1] = seg_end;
            } else {
                table.starts.push(b);
                table.ends.push(seg_end);
                table.hits.extend_from_slice(&seg);
                table.offsets.push(table.hits.len() as u32);
            }
        }
        table.dir = Vec::with_capacity(BUCKETS + 1);
        let mut i = 0;
        for b in 0..=BUCKETS {
            while i < table.starts.len() && table.starts[i].bucket() < b {
                i += 1;
            }
            table.dir.push(i as u32);
        }
        table
    }

    /// The segment holding `x`.
    pub(super) fn segment(&self, x: T) -> Option<usize> {
        if self.starts.is_empty() {
            return None;
        }
        let b = x.bucket();
        // The segment holding `x` starts in its bucket, or is the last one before it.
        let lo = (self.dir[b] as usize).saturating_sub(1);
        let hi = self.dir[b + 1] as usize;
        let i = (lo + self.starts[lo..hi].partition_point(|&s| s <= x)).checked_sub(1)?;
        (x <= self.ends[i]).then_some(i)
    }

    /// The entries covering `[first, last]` entirely, sorted by list.
    pub(super) fn covering(&self, first: T, last: T) -> impl Iterator<Item = Hit> + '_ {
        let hits: &[(Hit, T)] = match self.segment(first) {
            Some(i) => &self.hits[self.offsets[i] as usize..self.offsets[i + 1] as usize],
            None => &[],
        };
        hits.iter().filter(move |h| h.1 >= last).map(|h| h.0)
    }

    pub(super) fn validate(&self) {
        assert_eq!(self.starts.len(), self.ends.len());
        if !self.starts.is_empty() {
            assert_eq!(self.dir.len(), BUCKETS + 1);
            for (b, &d) in self.dir.iter().enumerate() {
                assert_eq!(d as usize, self.starts.partition_point(|s| s.bucket() < b));
            }
        }
        assert_eq!(self.offsets.len(), self.starts.len() + 1);
        for i in 0..self.starts.len() {
            assert!(self.starts[i] <= self.ends[i], "segment {i} is empty");
            if i > 0 {
                assert!(self.ends[i - 1] < self.starts[i], "segments {i} overlap");
            }
            let hits = &self.hits[self.offsets[i] as usize..self.offsets[i + 1] as usize];
            assert!(!hits.is_empty(), "segment {i} has no hit");
            assert!(
                hits.windows(2).all(|w| w[0].0.list < w[1].0.list),
                "segment {i}: hits not one per list in order"
            );
            assert!(
                hits.iter().all(|h| h.1 >= self.ends[i]),
                "segment {i}: hit ends early"
            );
        }
    }
}

/// Everything [`Warninglists::check`] needs, built from the lists in load order.
#[derive(Default)]
pub(super) struct Index {
    /// Per list: the kinds it applies to.
    pub(super) applies: Vec<u32>,
    /// Per list: its type.
    pub(super) types: Vec<ListType>,
    /// Per list type: the kinds at least one list of that type applies to.
    pub(super) kinds_by_type: [u32; 5],
    /// The kinds at least one list applies to.
    pub(super) kinds_any: u32,
    /// String entries (folded) and hostname entries (normalised) → hits, sorted by list.
    pub(super) keys: KeyMap,
    /// Bloom filter over `keys`.
    pub(super) key_filter: KeyFilter,
    /// Substring automatons, one per group of kinds with the same substring lists.
    pub(super) substrings: Vec<SubstringSet>,
    /// Per kind: its index into `substrings`, or [`NO_SET`].
    pub(super) substring_for: [u8; 32],
    pub(super) cidr_v4: RangeTable<u32>,
    pub(super) cidr_v6: RangeTable<u128>,
    /// Regex entries in load order.
    pub(super) regexes: Vec<(Hit, Regex)>,
}

/// Marks a kind without substring lists in [`Index::substring_for`].
pub(super) const NO_SET: u8 = u8::MAX;

/// Hits of one key, pushed in load order: the first entry of each list.
pub(super) fn first_per_list(mut v: Vec<Hit>) -> Box<[Hit]> {
    v.dedup_by_key(|h| h.list);
    v.into_boxed_slice()
}

/// Substring automatons whose patterns total at most this many bytes are built as DFAs:
/// about 150 bytes of DFA per pattern byte, and several times faster than the NFA on values
/// that contain no pattern, which is nearly all of them.
pub(super) const DFA_PATTERN_BYTES: usize = 256 * 1024;

/// Length of the grams of the [`GramSet`] prefilter.
pub(super) const GRAM: usize = 5;

/// The key of the gram at the start of `w` (`w.len() >= GRAM`); a marker bit keeps it
/// non-zero, zero being the empty slot.
pub(super) fn gram_key(w: &[u8]) -> u64 {
    w[..GRAM]
        .iter()
        .enumerate()
        .fold(1 << 63, |k, (i, &b)| k | u64::from(b) << (8 * i))
}

/// Bits in the first level of a [`GramSet`]: 32 KiB, the size of an L1 data cache.
pub(super) const GRAM_FILTER_BITS: u32 = 18;

/// An open-addressing set of gram keys behind a one-bit-per-hash filter; most windows of a
/// value are answered by the filter from L1.
pub(super) struct GramSet {
    pub(super) filter: Box<[u64]>,
    pub(super) slots: Box<[u64]>,
    pub(super) mask: usize,
}

impl GramSet {
    pub(super) fn new(keys: &[u64]) -> Self {
        let len = (keys.len() * 2).next_power_of_two().max(16);
        let mut set = GramSet {
            filter: vec![0; 1 << (GRAM_FILTER_BITS - 6)].into_boxed_slice(),
            slots: vec![0; len].into_boxed_slice(),
            mask: len - 1,
        };
        for &k in keys {
            let f = Self::filter_bit(k);
            set.filter[f >> 6] |= 1 << (f & 63);
            let mut i = Self::slot(k) & set.mask;
            while set.slots[i] != 0 && set.slots[i] != k {
                i = (i + 1) & set.mask;
            }
            set.slots[i] = k;
        }
        set
    }

    pub(super) fn slot(k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) as usize
    }

    pub(super) fn filter_bit(k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - GRAM_FILTER_BITS)) as usize
    }

    pub(super) fn contains(&self, k: u64) -> bool {
        let f = Self::filter_bit(k);
        if self.filter[f >> 6] & (1 << (f & 63)) == 0 {
            return false;
        }
        let mut i = Self::slot(k) & self.mask;
        loop {
            match self.slots[i] {
                0 => return false,
                s if s == k => return true,
                _ => i = (i + 1) & self.mask,
            }
        }
    }
}

/// The substring entries of the lists that apply to one group of kinds, searched in one
/// Aho-Corasick pass over the ASCII-lower-cased value.
///
/// Nearly no value contains a pattern, and walking a large automaton costs a cache miss per
/// byte; so each pattern is represented by its rarest gram (rarity counted over the
/// patterns and a sample of the string and hostname entries, which look like the names
/// being checked), and a value whose grams include none of them skips the automaton.
pub(super) struct SubstringSet {
    /// The kinds this set serves.
    pub(super) kinds: u32,
    pub(super) ac: AhoCorasick,
    /// Per pattern: its entries (one per list, in load order).
    pub(super) hits: Vec<Box<[Hit]>>,
    /// The prefilter; `None` when a pattern is shorter than [`GRAM`] bytes.
    pub(super) grams: Option<GramSet>,
}

impl SubstringSet {
    pub(super) fn build(
        lists: &[List],
        members: &[usize],
        kinds: u32,
        freq: &GramCounts,
    ) -> Result<Self, aho_corasick::BuildError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut hits: Vec<Vec<Hit>> = Vec::new();
        for &li in members {
            for (ei, e) in lists[li].entries.iter().enumerate() {
                let hit = Hit {
                    list: li as u32,
                    entry: ei as u32,
                };
                let id = *ids
                    .entry(e.text.to_ascii_lowercase())
                    .or_insert_with_key(|p| {
                        patterns.push(p.clone());
                        hits.push(Vec::new());
                        patterns.len() - 1
                    });
                hits[id].push(hit);
            }
        }
        let bytes: usize = patterns.iter().map(String::len).sum();
        let kind = if bytes <= DFA_PATTERN_BYTES {
            aho_corasick::AhoCorasickKind::DFA
        } else {
            aho_corasick::AhoCorasickKind::ContiguousNFA
        };
        let ac = AhoCorasick::builder().kind(Some(kind)).build(&patterns)?;
        let grams = patterns
            .iter()
            .all(|p| p.len() >= GRAM)
            .then(|| Self::rare_grams(&patterns, freq));
        Ok(SubstringSet {
            kinds,
            ac,
            hits: hits.into_iter().map(first_per_list).collect(),
            grams,
        })
    }

    /// How often each gram of the substring entries occurs in those entries and in a sample
    /// of the string and hostname keys, which say what names look like (`mail.`, `.com` are
    /// common). Only the grams of patterns are counted, which keeps it cheap.
    pub(super) fn gram_counts(
        lists: &[List],
        substring_lists: &[usize],
        keys: &KeyMap,
    ) -> GramCounts {
        let mut freq = GramCounts::default();
        for &li in substring_lists {
            for e in &lists[li].entries {
                for w in e.text.to_ascii_lowercase().as_bytes().windows(GRAM) {
                    *freq.entry(gram_key(w)).or_insert(0) += 1;
                }
            }
        }
        for key in keys.keys().step_by(4) {
            for w in key.as_bytes().windows(GRAM) {
                if let Some(n) = freq.get_mut(&gram_key(w)) {
                    *n += 1;
                }
            }
        }
        freq
    }

    /// The rarest gram of each pattern.
    pub(super) fn rare_grams(patterns: &[String], freq: &GramCounts) -> GramSet {
        let chosen: Vec<u64> = patterns
            .iter()
            .filter_map(|p| {
                p.as_bytes()
                    .windows(GRAM)
                    .map(gram_key)
                    .min_by_key(|k| (freq.get(k).copied().unwrap_or(0), *k))
            })
            .collect();
        GramSet::new(&chosen)
    }

    /// Whether some pattern may occur in the (lower-cased) value; no false negatives.
    pub(super) fn may_match(&self, value: &str) -> bool {
        let Some(g) = &self.grams else {
            return true;
        };
        let b = value.as_bytes();
        if b.len() < GRAM {
            return false;
        }
        // Roll the key along instead of rebuilding it per window.
        let mut k = gram_key(b);
        if g.contains(k) {
            return true;
        }
        for &next in &b[GRAM..] {
            k = (1 << 63) | ((k & 0xFF_FFFF_FFFF) >> 8) | u64::from(next) << (8 * (GRAM - 1));
            if g.contains(k) {
                return true;
            }
        }
        false
    }
}

pub(super) fn v4_range(n: &ipnet::Ipv4Net) -> (u32, u32) {
    (u32::from(n.network()), u32::from(n.broadcast()))
}

pub(super) fn v6_range(n: &ipnet::Ipv6Net) -> (u128, u128) {
    (u128::from(n.network()), u128::from(n.broadcast()))
}

impl Index {
    pub(super) fn build(lists: &[List], problems: &mut Vec<String>) -> Index {
        let mut ix = Index {
            applies: lists.iter().map(|l| l.applies).collect(),
            types: lists.iter().map(|l| l.list_type).collect(),
            ..Index::default()
        };
        for l in lists {
            ix.kinds_by_type[l.list_type.index()] |= l.applies;
            ix.kinds_any |= l.applies;
        }
        let mut keys = KeyMap::default();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (li, l) in lists.iter().enumerate() {
            for (ei, e) in l.entries.iter().enumerate() {
                let hit = Hit {
                    list: li as u32,
                    entry: ei as u32,
                };
                match &e.form {
                    Form::Key(key) => {
                        let key = key.as_deref().unwrap_or(&e.text);
                        match keys.get_mut(key) {
                            Some(v) => v.push(hit),
                            None => {
                                keys.insert(key.into(), HitList::One(hit));
                            }
                        }
                    }
                    // Grouped by kind below.
                    Form::Substring => {}
                    Form::Net(IpNet::V4(n)) => {
                        let (a, b) = v4_range(n);
                        v4.push((a, b, hit));
                    }
                    Form::Net(IpNet::V6(n)) => {
                        let (a, b) = v6_range(n);
                        v6.push((a, b, hit));
                    }
                    Form::Regex(re) => ix.regexes.push((hit, re.clone())),
                }
            }
        }
        keys.shrink_to_fit();
        ix.keys = keys;
        ix.key_filter = KeyFilter::new(ix.keys.keys().map(|k| &**k));
        ix.build_substrings(lists, problems);
        ix.cidr_v4 = RangeTable::build(v4);
        ix.cidr_v6 = RangeTable::build(v6);
        ix
    }

    /// One [`SubstringSet`] per group of kinds to which the same substring lists apply, so
    /// that (say) IP kinds do not walk an automaton of disposable e-mail domains.
    pub(super) fn build_substrings(&mut self, lists: &[List], problems: &mut Vec<String>) {
        self.substring_for = [NO_SET; 32];
        let substring_lists: Vec<usize> = (0..lists.len())
            .filter(|&i| lists[i].list_type == ListType::Substring && !lists[i].entries.is_empty())
            .collect();
        if substring_lists.is_empty() {
            return;
        }
        let freq = SubstringSet::gram_counts(lists, &substring_lists, &self.keys);
        let mut groups: Vec<(Vec<usize>, u32)> = Vec::new();
        for kind in Kind::ALL {
            let bit = kind_bit(kind);
            let members: Vec<usize> = substring_lists
                .iter()
                .copied()
                .filter(|&i| lists[i].applies & bit != 0)
                .collect();
            if members.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|g| g.0 == members) {
                Some(g) => g.1 |= bit,
                None => groups.push((members, bit)),
            }
        }
        for (members, kinds) in groups {
            match SubstringSet::build(lists, &members, kinds, &freq) {
                Ok(set) => {
                    for kind in Kind::ALL {
                        if kinds & kind_bit(kind) != 0 {
                            self.substring_for[kind as usize] = self.substrings.len() as u8;
                        }
                    }
                    self.substrings.push(set);
                }
                Err(e) => {
                    // Only reachable when the patterns exceed the automaton's size limits.
                    let names: Vec<&str> =
                        members.iter().map(|&i| lists[i].name.as_str()).collect();
                    problems.push(format!(
                        "substring lists {names:?} could not be compiled together ({e}); they are not applied"
                    ));
                }
            }
        }
    }

    pub(super) fn applies(&self, hit: Hit, bit: u32) -> bool {
        self.applies[hit.list as usize] & bit != 0
    }

    pub(super) fn wants(&self, ty: ListType, bit: u32) -> bool {
        self.kinds_by_type[ty.index()] & bit != 0
    }

    /// Probes the key map with `key` for the entry types `accept` allows.
    pub(super) fn probe(
        &self,
        lists: &[List],
        key: &str,
        accept: Accept,
        bit: u32,
        best: &mut Best,
    ) {
        if !accept.string && !accept.host {
            return;
        }
        let key_folded = fold(key);
        if !self.key_filter.may_contain(&key_folded) {
            return;
        }
        let Some(hits) = self.keys.get(key_folded.as_ref()) else {
            return;
        };
        let bound = best.bound();
        for &h in hits.as_slice().iter().take_while(|h| h.list < bound) {
            if !self.applies(h, bit) {
                continue;
            }
            let ok = match self.types[h.list as usize] {
                ListType::String => {
                    accept.string
                        && (!accept.exact
                            || *lists[h.list as usize].entries[h.entry as usize].text == *key)
                }
                ListType::Hostname => accept.host,
                _ => false,
            };
            if ok {
                best.offer(h);
                return;
            }
        }
    }

    /// Probes a host name and each of its parents (`a.b.example.net`, `b.example.net`, …,
    /// `net`) against hostname entries; the full name also against string entries when
    /// `string` is set.
    pub(super) fn probe_host(
        &self,
        lists: &[List],
        host: &str,
        string: bool,
        bit: u32,
        best: &mut Best,
    ) {
        let host = host.trim_end_matches('.');
        let hostnames = self.wants(ListType::Hostname, bit);
        if host.is_empty() || (!hostnames && !string) {
            return;
        }
        self.probe(lists, host, Accept::host(string, hostnames), bit, best);
        if !hostnames {
            return;
        }
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if rest.is_empty() {
                break;
            }
            self.probe(lists, rest, Accept::host(false, true), bit, best);
        }
    }

    /// Probes an address or network against the cidr entries.
    pub(super) fn probe_net(&self, net: IpNet, bit: u32, best: &mut Best) {
        if !self.wants(ListType::Cidr, bit) {
            return;
        }
        let bound = best.bound();
        let found = match net {
            IpNet::V4(n) => {
                let (a, b) = v4_range(&n);
                self.cidr_v4
                    .covering(a, b)
                    .take_while(|h| h.list < bound)
                    .find(|&h| self.applies(h, bit))
            }
            IpNet::V6(n) => {
                let (a, b) = v6_range(&n);
                self.cidr_v6
                    .covering(a, b)
                    .take_while(|h| h.list < bound)
                    .find(|&h| self.applies(h, bit))
            }
        };
        if let Some(h) = found {
            best.offer(h);
        }
    }

    /// Searches the value for every substring entry in one pass.
    pub(super) fn probe_substrings(
        &self,
        lists: &[List],
        value: &str,
        exact: bool,
        bit: u32,
        best: &mut Best,
    ) {
        if !self.wants(ListType::Substring, bit) {
            return;
        }
        let Some(set) = self
            .substrings
            .get(self.substring_for[(bit.trailing_zeros()) as usize] as usize)
        else {
            return;
        };
        // Patterns are lower case; values of most kinds already are.
        let folded = if value.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(value.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(value)
        };
        if !set.may_match(&folded) || !set.ac.is_match(folded.as_ref()) {
            return;
        }
        for m in set.ac.find_overlapping_iter(folded.as_ref()) {
            let bound = best.bound();
            let found = set.hits[m.pattern().as_usize()]
                .iter()
                .take_while(|h| h.list < bound)
                .find(|&&h| {
                    self.applies(h, bit)
                        && (!exact
                            // Lower-casing kept every byte offset, so the range fits `value`.
                            || value.get(m.range())
                                == Some(&*lists[h.list as usize].entries[h.entry as usize].text))
                });
            if let Some(&h) = found {
                best.offer(h);
            }
        }
    }

    /// Runs the regex entries of the lists that apply, in load order, on each value.
    pub(super) fn probe_regexes(&self, values: &[&str], bit: u32, best: &mut Best) {
        if !self.wants(ListType::Regex, bit) {
            return;
        }
        let bound = best.bound();
        let found = self
            .regexes
            .iter()
            .take_while(|(h, _)| h.list < bound)
            .find(|(h, re)| self.applies(*h, bit) && values.iter().any(|v| re.is_match(v)));
        if let Some((h, _)) = found {
            best.offer(*h);
        }
    }

    pub(super) fn check(&self, lists: &[List], kind: Kind, value: &str) -> Option<Hit> {
        let bit = kind_bit(kind);
        if self.kinds_any & bit == 0 {
            return None;
        }
        let mut best = Best::default();
        let strings = self.wants(ListType::String, bit);
        let hostnames = self.wants(ListType::Hostname, bit);
        // Values of these kinds keep their case (paths, queries, User-Agents).
        let exact = matches!(
            kind,
            Kind::Url | Kind::UrlSubstring | Kind::Uri | Kind::UserAgent
        );
        let mut address = None;
        match kind {
            Kind::Ipv4 | Kind::Ipv6 => {
                if let Ok(ip) = value.parse::<IpAddr>() {
                    self.probe_net(IpNet::from(ip), bit, &mut best);
                }
                self.probe(
                    lists,
                    value,
                    Accept::host(strings, hostnames),
                    bit,
                    &mut best,
                );
            }
            Kind::Cidr => {
                if let Ok(net) = value.parse::<IpNet>() {
                    self.probe_net(net.trunc(), bit, &mut best);
                }
                self.probe(lists, value, Accept::host(strings, false), bit, &mut best);
            }
            Kind::IpPort => {
                if let Some((addr, ip)) = ip_port_address(value) {
                    self.probe_net(IpNet::from(ip), bit, &mut best);
                    self.probe(
                        lists,
                        addr,
                        Accept::host(strings, hostnames),
                        bit,
                        &mut best,
                    );
                    address = Some(addr);
                }
                self.probe(lists, value, Accept::host(strings, false), bit, &mut best);
            }
            Kind::Domain | Kind::Hostname => self.probe_host(lists, value, strings, bit, &mut best),
            Kind::Email => {
                self.probe(lists, value, Accept::host(strings, false), bit, &mut best);
                if let Some((_, domain)) = value.rsplit_once('@') {
                    self.probe_host(lists, domain, false, bit, &mut best);
                }
            }
            Kind::Url => self.check_url(lists, value, strings, bit, &mut best),
            _ => self.probe(lists, value, Accept::string(strings, exact), bit, &mut best),
        }
        self.probe_substrings(lists, value, exact, bit, &mut best);
        match address {
            Some(a) => self.probe_regexes(&[value, a], bit, &mut best),
            None => self.probe_regexes(&[value], bit, &mut best),
        }
        best.0
    }

    pub(super) fn check_url(
        &self,
        lists: &[List],
        value: &str,
        strings: bool,
        bit: u32,
        best: &mut Best,
    ) {
        // The canonical URL, and the URL without its scheme (MISP values often have none).
        self.probe(lists, value, Accept::string(strings, true), bit, best);
        if let Some((_, rest)) = value.split_once("://") {
            self.probe(lists, rest, Accept::string(strings, true), bit, best);
        }
        let hostnames = self.wants(ListType::Hostname, bit);
        let cidrs = self.wants(ListType::Cidr, bit);
        if !strings && !hostnames && !cidrs {
            return;
        }
        let Some(parts) = url_parts(value) else {
            return;
        };
        let host = parts.host.trim_start_matches('[').trim_end_matches(']');
        let string = strings && parts.host_only;
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                self.probe_net(IpNet::from(ip), bit, best);
                let addr = ip.to_string();
                self.probe(lists, &addr, Accept::host(string, hostnames), bit, best);
            }
            Err(_) => self.probe_host(lists, host, string, bit, best),
        }
    }

    pub(super) fn validate(&self, lists: &[List]) {
        assert_eq!(self.applies.len(), lists.len());
        assert_eq!(self.types.len(), lists.len());
        self.cidr_v4.validate();
        self.cidr_v6.validate();
        let check_hits = |hits: &[Hit]| {
            assert!(!hits.is_empty());
            assert!(hits.windows(2).all(|w| w[0].list < w[1].list));
            for h in hits {
                let l = &lists[h.list as usize];
                assert!((h.entry as usize) < l.entries.len());
            }
        };
        for (k, hits) in &self.keys {
            let hits = hits.as_slice();
            check_hits(hits);
            assert!(
                self.key_filter.may_contain(k),
                "the key filter rejects `{k}`"
            );
            for h in hits.iter() {
                let e = &lists[h.list as usize].entries[h.entry as usize];
                match &e.form {
                    Form::Key(key) => assert_eq!(key.as_deref().unwrap_or(&e.text), &**k),
                    f => panic!("key `{k}` points at a {f:?} entry"),
                }
            }
        }
        for set in &self.substrings {
            assert_eq!(set.ac.patterns_len(), set.hits.len());
            set.hits.iter().for_each(|h| check_hits(h));
            for (id, hits) in set.hits.iter().enumerate() {
                let text = &lists[hits[0].list as usize].entries[hits[0].entry as usize].text;
                assert!(
                    set.may_match(&text.to_ascii_lowercase()),
                    "the prefilter rejects pattern {id} `{text}`"
                );
                for h in hits.iter() {
                    assert!(set.kinds & self.applies[h.list as usize] != 0);
                }
            }
        }
        assert!(self.regexes.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

/// The address of a canonical `ip:port` value (`198.51.100.7:80`, `[2001:db8::1]:443`), as
/// text and parsed.
pub(super) fn ip_port_address(value: &str) -> Option<(&str, IpAddr)> {
    let (addr, _) = value.rsplit_once(':')?;
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    Some((addr, addr.parse().ok()?))
}

/// The parts of a URL value the lists look at.
pub(super) struct UrlParts<'a> {
    /// Host: a name, a dotted quad or `[v6]`.
    pub(super) host: std::borrow::Cow<'a, str>,
    /// Nothing but the host: path `/` or empty, no query, no port.
    pub(super) host_only: bool,
}

/// Splits a URL value. Canonical values (`scheme://host[:port]/path?query`) are sliced; any
/// other form goes through [`normalize::url`].
pub(super) fn url_parts(value: &str) -> Option<UrlParts<'_>> {
    if let Some((_, rest)) = value.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let tail = &rest[end..];
        if !authority.contains('@') && !authority.is_empty() {
            let (host, port) = if authority.starts_with('[') {
                match authority.find(']') {
                    Some(i) => (&authority[..=i], &authority[i + 1..]),
                    None => (authority, ""),
                }
            } else {
                match authority.rsplit_once(':') {
                    Some((h, p)) => (h, p),
                    None => (authority, ""),
                }
            };
            if !host.bytes().any(|b| b.is_ascii_uppercase()) {
                return Some(UrlParts {
                    host: std::borrow::Cow::Borrowed(host),
                    host_only: port.is_empty() && (tail.is_empty() || tail == "/"),
                });
            }
        }
    }
    let u = normalize::url(value).ok()?;
    let host_only = u.port.is_none() && u.path == "/" && u.query.is_none();
    Some(UrlParts {
        host: std::borrow::Cow::Owned(u.host),
        host_only,
    })
}
