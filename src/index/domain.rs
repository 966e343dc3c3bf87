//! Domain and host-name lookup with subdomain semantics on label boundaries.
//!
//! A *domain* entry `evil.example` matches `evil.example` and every name below it
//! (`a.evil.example`, `a.b.evil.example`), never `notevil.example` nor `example`; a *host name*
//! entry matches exactly itself. Names are bytes, already canonical (lower-case ASCII, no
//! trailing dot) — this module compares bytes and knows nothing of IDNA or case.
//!
//! Main types: [`DomainIndex`], built by [`DomainIndexBuilder`].
//!
//! # Layout
//! - one byte blob of *records*, one per entry, sorted by (name, flag): the name's length
//!   (LEB128), the name, the ordinal count (LEB128), the ordinals (`u32`, ascending). Keeping
//!   a name and its ordinals together makes a hit cost one dependent memory access after the
//!   slot (separate offset and CSR arrays cost three; measured: that design spent ~500 ns per
//!   hit out of cache), and saves the offset arrays (~6 B per name instead of ~12);
//! - an open-addressing table with linear probing at 80 % load, keyed by [`hash64`] of the
//!   name: each 8-byte slot holds a 32-bit tag (the high half of the hash, whose two low bits
//!   are replaced by the *domain* flag and a *twin* flag telling that the same name is also
//!   stored with the other flag) and `record start + 1` (0 marks an empty slot); the home slot
//!   is the low half of the hash scaled to the table length, so the table needs no power-of-two
//!   size;
//! - a blocked Bloom filter (one `u64` word per key, 14 bits per key, about 2 MB for the
//!   1.16 M distinct maltrail names) over the *suffix closure*: every suffix of two or more
//!   labels of every entry. Each key sets three "closure" bits, and an entry three more
//!   "entry" bits, in one word. A false "entry" costs a table probe in DRAM, so the filter is
//!   sized to keep those rare rather than to fit in L2 (measured: 7 bits per key halves the
//!   throughput on a miss-heavy column, 14 beats 10 by about 15 %).
//!
//! # Lookup
//! The query's suffixes are visited from the shortest of two labels (`evil.example` of
//! `a.b.evil.example`) to the whole name. A suffix absent from the closure filter ends the walk:
//! no longer suffix can be an entry, since every suffix of an entry is in the closure. So a
//! query under a second-level domain that no indicator mentions costs one short hash and one
//! word of a cache-resident filter. A suffix whose entry bits are set is probed in the table;
//! shorter suffixes than the whole query only match domain entries, which the slot flag tells
//! without touching the text. Single-label suffixes (top-level domains) are only probed when
//! the index holds a single-label entry.
//!
//! ```
//! use cwn::index::domain::DomainIndexBuilder;
//!
//! let mut b = DomainIndexBuilder::new();
//! b.add_domain(b"evil.example", 1);
//! b.add_hostname(b"mail.evil.example", 2);
//! let index = b.build();
//! let mut out = Vec::new();
//! index.lookup(b"a.mail.evil.example", &mut out);
//! assert_eq!(out, [1]);
//! out.clear();
//! index.lookup(b"mail.evil.example", &mut out);
//! assert_eq!(out, [1, 2]);
//! out.clear();
//! index.lookup(b"notevil.example", &mut out);
//! assert!(out.is_empty());
//! ```

use super::exact::sort_dedup_tail;
use super::hash::hash64;
use super::{Arr, FormatError, SectionReader, SectionWriter, Sections};

const DOMAIN_INDEX: &str = "domain index";

/// Slot flag: the entry is a domain (matches its subdomains); clear for a host name.
const DOMAIN: u32 = 1;
/// Slot flag: the same text is also stored as an entry with the other domain flag.
const TWIN: u32 = 2;
/// The tag bits a probe compares. Test builds keep only two, so that different names often
/// share a tag and the text comparison behind it is exercised.
const TAG_MASK: u32 = if cfg!(test) { 0b1100 } else { !(DOMAIN | TWIN) };

/// Table length for `n` entries: 80 % load, and always at least one empty slot, which ends
/// every probe.
fn table_len(n: usize) -> usize {
    n + n / 4 + 1
}

/// The home slot of hash `h` in a table of `len` slots (`len` ≤ 2^32).
#[inline]
fn home(h: u64, len: usize) -> usize {
    (((h & 0xFFFF_FFFF) * len as u64) >> 32) as usize
}

#[inline]
fn tag_of(h: u64) -> u32 {
    (h >> 32) as u32 & !(DOMAIN | TWIN)
}

/// Collects `(key, domain flag, ordinal)` triples for a [`KeyTable`].
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyTableBuilder {
    text: Vec<u8>,
    items: Vec<Item>,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    start: usize,
    len: u32,
    ord: u32,
    domain: bool,
}

/// Appends `v` in LEB128 (seven bits a byte, low bits first).
fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 number at `pos`; returns it and the position after it, or `None` where the
/// blob ends first (never in a blob that `KeyTable::scan` accepted). At most five bytes are
/// read, so the value fits 35 bits.
#[inline]
fn varint(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let b = *buf.get(pos)?;
    if b < 0x80 {
        return Some((usize::from(b), pos + 1));
    }
    let mut v = usize::from(b & 0x7f);
    let mut p = pos + 1;
    for shift in [7, 14, 21, 28] {
        let b = *buf.get(p)?;
        p += 1;
        v |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
    }
    Some((v, p))
}

/// The text of the record at `start`, its ordinals (as little-endian bytes) and the position
/// after it; `None` where the blob ends first.
#[inline]
fn record_at(records: &[u8], start: usize) -> Option<(&[u8], &[u8], usize)> {
    let (len, p) = varint(records, start)?;
    let text = records.get(p..p.checked_add(len)?)?;
    let (count, q) = varint(records, p + len)?;
    let end = q.checked_add(count.checked_mul(4)?)?;
    Some((text, records.get(q..end)?, end))
}

/// The record count whose table length ([`table_len`]) is `slots`, if any.
fn count_for_table_len(slots: usize) -> Option<usize> {
    let guess = slots.checked_sub(1)? / 5 * 4;
    (guess.saturating_sub(4)..=guess + 4).find(|&n| table_len(n) == slots)
}

/// Reads a LEB128 `u32` at `pos`, refusing truncated, overlong and out-of-range encodings.
fn checked_varint(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let mut v = 0u64;
    for i in 0..5 {
        let b = *buf.get(pos + i)?;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if i > 0 && b == 0 {
                return None;
            }
            let v = u32::try_from(v).ok()?;
            return Some((v as usize, pos + i + 1));
        }
    }
    None
}

impl KeyTableBuilder {
    pub(crate) fn push(&mut self, key: &[u8], domain: bool, ord: u32) {
        let len = u32::try_from(key.len()).expect("key of 4 GiB or more");
        self.items.push(Item {
            start: self.text.len(),
            len,
            ord,
            domain,
        });
        self.text.extend_from_slice(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn build(mut self) -> KeyTable {
        let text = &self.text;
        let key = |it: &Item| &text[it.start..it.start + it.len as usize];
        self.items.sort_unstable_by(|a, b| {
            key(a)
                .cmp(key(b))
                .then(a.domain.cmp(&b.domain))
                .then(a.ord.cmp(&b.ord))
        });
        self.items
            .dedup_by(|b, a| a.domain == b.domain && a.ord == b.ord && key(a) == key(b));

        // One record per (text, flag): its text, then its ordinals.
        let mut records = Vec::new();
        let mut entries: Vec<(usize, u32)> = Vec::new(); // (record start, flags)
        let mut i = 0;
        while i < self.items.len() {
            let it = self.items[i];
            let mut j = i + 1;
            while j < self.items.len()
                && self.items[j].domain == it.domain
                && key(&self.items[j]) == key(&it)
            {
                j += 1;
            }
            entries.push((records.len(), if it.domain { DOMAIN } else { 0 }));
            put_varint(&mut records, it.len);
            records.extend_from_slice(key(&it));
            put_varint(&mut records, (j - i) as u32);
            for o in &self.items[i..j] {
                records.extend_from_slice(&o.ord.to_le_bytes());
            }
            i = j;
        }
        assert!(
            records.len() < u32::MAX as usize,
            "records of 4 GiB or more"
        );
        // Entries are sorted by (text, flag), so a twin is the neighbour.
        for e in 1..entries.len() {
            let (a, b) = (entries[e - 1].0, entries[e].0);
            if record_text(&records, a) == record_text(&records, b) {
                entries[e - 1].1 |= TWIN;
                entries[e].1 |= TWIN;
            }
        }
        let len = table_len(entries.len());
        let mut slots = vec![0u64; len];
        for &(start, flags) in &entries {
            let h = hash64(record_text(&records, start));
            let mut i = home(h, len);
            while slots[i] != 0 {
                i = if i + 1 == len { 0 } else { i + 1 };
            }
            slots[i] = (u64::from(tag_of(h) | flags) << 32) | (start as u64 + 1);
        }
        KeyTable {
            records: records.into(),
            slots: slots.into(),
            len: entries.len(),
        }
    }
}

/// The text of the record at `start` (empty where the blob ends first, which `scan` refuses).
#[inline]
fn record_text(records: &[u8], start: usize) -> &[u8] {
    record_at(records, start).map_or(&[], |r| r.0)
}

/// Byte strings with flags and ordinals in an open-addressing table (see the module docs);
/// shared by [`DomainIndex`] and [`BytesIndex`](super::exact::BytesIndex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyTable {
    /// One record per entry, sorted by (text, domain flag): LEB128 text length, text, LEB128
    /// ordinal count (at least one), the ordinals as little-endian `u32`s, strictly ascending.
    records: Arr<u8>,
    /// `tag << 32 | (record start + 1)`, or 0 for an empty slot.
    slots: Arr<u64>,
    /// Number of records; derived from the table length, not stored.
    len: usize,
}

impl KeyTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The records in order, as (text, ordinal bytes); ends early at a malformed record
    /// (which `scan` refuses).
    fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let records = &self.records[..];
        let mut pos = 0;
        std::iter::from_fn(move || {
            let (text, ords, end) = record_at(records, pos)?;
            pos = end;
            Some((text, ords))
        })
    }

    /// The texts of the entries, in order.
    pub(crate) fn texts(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.records().map(|r| r.0)
    }

    /// Number of (entry, ordinal) pairs.
    pub(crate) fn pairs(&self) -> usize {
        self.records().map(|r| r.1.len() / 4).sum()
    }

    /// Replaces the slots by `f` of a copy, for corruption tests.
    #[cfg(test)]
    pub(crate) fn edit_slots(&mut self, f: impl FnOnce(&mut Vec<u64>)) {
        self.slots.edit(f);
    }

    /// The slots, for corruption tests.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> &[u64] {
        &self.slots
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.records.len() + self.slots.len() * 8
    }

    /// Appends the ordinals of the entries whose text is `key` (with hash `h`): all of them
    /// when `full`, else only the domain entry. Returns how many entries matched (0–2).
    ///
    /// Whatever the arrays hold, this visits at most every slot once and reads nothing out of
    /// bounds: a malformed record matches nothing.
    #[inline]
    pub(crate) fn probe(&self, key: &[u8], h: u64, full: bool, out: &mut Vec<u32>) -> u32 {
        let want = tag_of(h) & TAG_MASK;
        let need = if full { 0 } else { DOMAIN };
        let (slots, records) = (&self.slots[..], &self.records[..]);
        let len = slots.len();
        let mut i = home(h, len);
        let mut found = 0;
        for _ in 0..len {
            let Some(&slot) = slots.get(i) else {
                return found;
            };
            let record = slot as u32;
            if record == 0 {
                return found;
            }
            let tag = (slot >> 32) as u32;
            if tag & TAG_MASK == want
                && tag & need == need
                && let Some((text, ords, _)) = record_at(records, (record - 1) as usize)
                && text == key
            {
                out.extend(
                    ords.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
                found += 1;
                if !full || tag & TWIN == 0 || found == 2 {
                    return found;
                }
            }
            i = if i + 1 == len { 0 } else { i + 1 };
        }
        found
    }

    /// Parses the record blob, checking every length against its end, canonical LEB128,
    /// at least one ordinal per record and ordinals strictly ascending; returns the record
    /// starts.
    fn scan(records: &[u8], structure: &'static str) -> Result<Vec<u32>, FormatError> {
        let err = |reason: &str| Err(FormatError::new(structure, reason));
        if records.len() >= u32::MAX as usize {
            return err("records of 4 GiB or more");
        }
        let mut starts = Vec::new();
        let mut pos = 0;
        while pos < records.len() {
            starts.push(pos as u32);
            let Some((len, p)) = checked_varint(records, pos) else {
                return err("bad text length");
            };
            let Some((count, q)) = p.checked_add(len).and_then(|t| checked_varint(records, t))
            else {
                return err("bad ordinal count");
            };
            let Some(end) = q.checked_add(count * 4).filter(|&e| e <= records.len()) else {
                return err("record runs past the end");
            };
            if count == 0 {
                return err("record without ordinals");
            }
            let mut prev = None;
            for c in records[q..end].chunks_exact(4) {
                let o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if prev.is_some_and(|p| p >= o) {
                    return err("ordinals of a record not strictly ascending");
                }
                prev = Some(o);
            }
            pos = end;
        }
        Ok(starts)
    }

    /// Checks every invariant `probe` relies on: well-formed records (see `scan`), the table
    /// length the record count implies, every record in exactly one slot with the tag of its
    /// text's hash and reachable from its home slot without crossing an empty slot, no slot
    /// pointing elsewhere than a record start, records strictly sorted by (text, flag), twin
    /// flags exactly on pairs of equal texts, domain flags only where `domains` allows them.
    pub(crate) fn validate(
        &self,
        domains: bool,
        structure: &'static str,
    ) -> Result<(), FormatError> {
        let err = |reason: &str| Err(FormatError::new(structure, reason));
        let starts = Self::scan(&self.records, structure)?;
        let n = starts.len();
        if n != self.len {
            return err("record count inconsistent");
        }
        let len = self.slots.len();
        if len != table_len(n) {
            return err("table length inconsistent with the record count");
        }
        // An empty slot ends every probe sequence, so the walks below terminate.
        if !self.slots.iter().any(|&s| s as u32 == 0) {
            return err("table without an empty slot");
        }
        let text = |e: usize| record_text(&self.records, starts[e] as usize);
        let slots = &self.slots[..];
        // Every slot is empty (0) or names a record; an empty slot carries no tag.
        let mut occupied = 0usize;
        for &slot in slots {
            if slot as u32 == 0 {
                if slot != 0 {
                    return err("empty slot with a tag");
                }
            } else {
                occupied += 1;
            }
        }
        if occupied != n {
            return err("slot count differs from the record count");
        }
        // Walk each record's probe sequence from its home slot, in record order (sequential over
        // the records, one random probe into the table each): it must be found before an empty
        // slot (so a lookup reaches it) with the tag of its text's hash. Records have distinct
        // starts, so n records found in n occupied slots is a bijection: no slot names a
        // non-record, and none is shared.
        let mut flags = vec![u32::MAX; n];
        for (e, &start) in starts.iter().enumerate() {
            let h = hash64(text(e));
            let want = start + 1;
            let mut p = home(h, len);
            let slot = loop {
                let slot = slots[p];
                if slot as u32 == 0 {
                    return err("record not reachable from its home slot");
                }
                if slot as u32 == want {
                    break slot;
                }
                p = if p + 1 == len { 0 } else { p + 1 };
            };
            let tag = (slot >> 32) as u32;
            let f = tag & (DOMAIN | TWIN);
            if !domains && f != 0 {
                return err("domain or twin flag in a table without domains");
            }
            if tag & !(DOMAIN | TWIN) != tag_of(h) {
                return err("slot tag inconsistent with the hash of its record's text");
            }
            flags[e] = f;
        }
        if flags.contains(&u32::MAX) {
            return err("record missing from the table");
        }
        for e in 1..n {
            if (text(e - 1), flags[e - 1] & DOMAIN) >= (text(e), flags[e] & DOMAIN) {
                return err("records not strictly sorted by (text, flag)");
            }
        }
        for (e, f) in flags.iter().enumerate() {
            let twin = (e > 0 && text(e - 1) == text(e)) || (e + 1 < n && text(e + 1) == text(e));
            if twin != (f & TWIN != 0) {
                return err("twin flag inconsistent with the records");
            }
        }
        Ok(())
    }

    pub(crate) fn write(&self, w: &mut SectionWriter) {
        w.put(&self.records);
        w.put(&self.slots);
    }

    /// Takes the arrays and checks what is O(1): the record blob under 4 GiB, a table length
    /// that some record count implies (which gives the count), and records exactly when
    /// there are entries. `validate` checks the rest; `probe` relies on none of it.
    pub(crate) fn read(
        r: &mut SectionReader,
        structure: &'static str,
    ) -> Result<Self, FormatError> {
        let records: Arr<u8> = r.take(structure)?;
        let slots: Arr<u64> = r.take(structure)?;
        if records.len() >= u32::MAX as usize {
            return Err(FormatError::new(structure, "records of 4 GiB or more"));
        }
        let Some(len) = count_for_table_len(slots.len()) else {
            return Err(FormatError::new(
                structure,
                format!("no record count gives a table of {} slots", slots.len()),
            ));
        };
        if (len == 0) != records.is_empty() {
            return Err(FormatError::new(
                structure,
                "records without entries or entries without records",
            ));
        }
        Ok(KeyTable {
            records,
            slots,
            len,
        })
    }
}

/// Filter bits per distinct suffix of the domain index (see the module docs).
pub(crate) const DOMAIN_FILTER_BITS: usize = 14;
const FILTER_MIX: u64 = 0x9E37_79B9_7F4A_7C15;
const FILTER_MIX2: u64 = 0xBF58_476D_1CE4_E5B9;
const K_CLOSURE: u32 = 3;
const K_ENTRY: u32 = 3;

/// A blocked Bloom filter: each key owns one `u64` word, in which it sets three "closure" bits
/// and, if it is an entry, two "entry" bits. Derived from the hashes the table uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bloom {
    words: Arr<u64>,
}

/// The word of `h` among `nwords`, and its closure and entry masks.
#[inline]
fn filter_bits(h: u64, nwords: usize) -> (usize, u64, u64) {
    let g = h.wrapping_mul(FILTER_MIX);
    let g2 = h.rotate_left(21).wrapping_mul(FILTER_MIX2);
    let w = (((g >> 32) * nwords as u64) >> 32) as usize;
    let bit = |i: u32| {
        let src = if i < 5 {
            g >> (6 * i)
        } else {
            g2 >> (6 * (i - 5))
        };
        1u64 << (src & 63)
    };
    let mut closure = 0;
    for i in 0..K_CLOSURE {
        closure |= bit(i);
    }
    let mut entry = 0;
    for i in K_CLOSURE..K_CLOSURE + K_ENTRY {
        entry |= bit(i);
    }
    (w, closure, entry)
}

impl Bloom {
    /// A filter over `keys` (hash, is-entry) of `bits_per_key` bits per distinct hash.
    pub(crate) fn build(mut keys: Vec<(u64, bool)>, bits_per_key: usize) -> Self {
        keys.sort_unstable();
        keys.dedup();
        let distinct = keys.len() - keys.windows(2).filter(|w| w[0].0 == w[1].0).count();
        let nwords = (distinct * bits_per_key).div_ceil(64).max(1);
        let mut words = vec![0u64; nwords];
        for (h, entry) in keys {
            let (w, closure, entry_bits) = filter_bits(h, nwords);
            words[w] |= closure | if entry { entry_bits } else { 0 };
        }
        Bloom {
            words: words.into(),
        }
    }

    /// Whether `h` may be in the suffix closure, and whether it may be an entry.
    #[inline]
    fn check(&self, h: u64) -> (bool, bool) {
        let (w, closure, entry) = filter_bits(h, self.words.len());
        // `w` is below the length (up to 2^32 words); a word past it would be absent.
        let word = self.words.get_value(w).unwrap_or(0);
        (word & closure == closure, word & entry == entry)
    }

    /// Whether `h` may be an entry.
    #[inline]
    pub(crate) fn may_contain_entry(&self, h: u64) -> bool {
        let (w, closure, entry) = filter_bits(h, self.words.len());
        let mask = closure | entry;
        self.words
            .get_value(w)
            .is_some_and(|word| word & mask == mask)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.len() * 8
    }

    pub(crate) fn write(&self, w: &mut SectionWriter) {
        w.put(&self.words);
    }

    pub(crate) fn read(
        r: &mut SectionReader,
        structure: &'static str,
    ) -> Result<Self, FormatError> {
        let words: Arr<u64> = r.take(structure)?;
        if words.is_empty() {
            return Err(FormatError::new(structure, "empty filter"));
        }
        Ok(Bloom { words })
    }
}

/// Collects domains and host names, each with an indicator ordinal, for a [`DomainIndex`].
#[derive(Clone, Debug, Default)]
pub struct DomainIndexBuilder {
    keys: KeyTableBuilder,
}

impl DomainIndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a domain: it will match `name` itself and every name that ends with `.` + `name`.
    ///
    /// # Panics
    /// If `name` is 4 GiB or longer.
    pub fn add_domain(&mut self, name: &[u8], ordinal: u32) {
        self.keys.push(name, true, ordinal);
    }

    /// Adds a host name: it will match exactly `name`.
    ///
    /// # Panics
    /// If `name` is 4 GiB or longer.
    pub fn add_hostname(&mut self, name: &[u8], ordinal: u32) {
        self.keys.push(name, false, ordinal);
    }

    /// Number of names added so far (repeats included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The immutable index; it depends only on the set of names and ordinals added, not on
    /// their order.
    ///
    /// # Panics
    /// If the records (names and their ordinals) total 4 GiB or more.
    pub fn build(self) -> DomainIndex {
        let table = self.keys.build();
        let filter = Bloom::build(closure_keys(&table), DOMAIN_FILTER_BITS);
        let single_label = has_single_label(&table);
        DomainIndex {
            table,
            filter,
            single_label,
        }
    }
}

/// The position of the last `.` in `name`. Labels are short, so a plain backwards scan beats
/// a vectorised search and its call.
#[inline]
fn last_dot(name: &[u8]) -> Option<usize> {
    name.iter().rposition(|&c| c == b'.')
}

/// The filter keys of a domain table: every entry, and every suffix of two or more labels of
/// every entry.
fn closure_keys(table: &KeyTable) -> Vec<(u64, bool)> {
    let mut keys = Vec::with_capacity(table.len() * 3 / 2);
    for name in table.texts() {
        keys.push((hash64(name), true));
        // The suffixes after each dot that still contain a dot.
        let mut dots = memchr::memchr_iter(b'.', name);
        dots.next_back();
        for p in dots {
            keys.push((hash64(&name[p + 1..]), false));
        }
    }
    keys
}

fn has_single_label(table: &KeyTable) -> bool {
    table.texts().any(|name| !name.contains(&b'.'))
}

/// An immutable set of domains (matching themselves and their subdomains) and host names
/// (matching exactly), each with the ordinals of its indicators. See the module docs for the
/// layout and the lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainIndex {
    table: KeyTable,
    filter: Bloom,
    /// Whether some entry has a single label (no dot), so single-label suffixes need a probe.
    single_label: bool,
}

impl Default for DomainIndex {
    /// An index without entries.
    fn default() -> Self {
        DomainIndexBuilder::new().build()
    }
}

impl DomainIndex {
    /// Appends to `out` the ordinals of every entry that matches `name`: host names equal to
    /// it, domains equal to it or to one of its suffixes on a label boundary. Ascending, each
    /// once.
    #[inline]
    pub fn lookup(&self, name: &[u8], out: &mut Vec<u32>) {
        let first = out.len();
        let mut matched = 0;
        let Some(last) = last_dot(name) else {
            if self.single_label {
                matched += self.check_and_probe(name, true, out);
            }
            if matched > 1 {
                sort_dedup_tail(out, first);
            }
            return;
        };
        if self.single_label {
            matched += self.check_and_probe(&name[last + 1..], false, out);
        }
        let mut end = last;
        loop {
            let (suffix, full) = match last_dot(&name[..end]) {
                Some(p) => {
                    end = p;
                    (&name[p + 1..], false)
                }
                None => (name, true),
            };
            let h = hash64(suffix);
            let (closure, entry) = self.filter.check(h);
            if !closure {
                break;
            }
            if entry {
                matched += self.table.probe(suffix, h, full, out);
            }
            if full {
                break;
            }
        }
        if matched > 1 {
            sort_dedup_tail(out, first);
        }
    }

    #[inline]
    fn check_and_probe(&self, suffix: &[u8], full: bool, out: &mut Vec<u32>) -> u32 {
        let h = hash64(suffix);
        if self.filter.may_contain_entry(h) {
            self.table.probe(suffix, h, full, out)
        } else {
            0
        }
    }

    /// Whether any entry matches `name`.
    pub fn matches(&self, name: &[u8], scratch: &mut Vec<u32>) -> bool {
        scratch.clear();
        self.lookup(name, scratch);
        !scratch.is_empty()
    }

    /// Number of distinct entries (a name added both as a domain and as a host name counts
    /// twice).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// Number of (entry, ordinal) pairs.
    pub fn pairs(&self) -> usize {
        self.table.pairs()
    }

    /// Bytes of all arrays.
    pub fn heap_bytes(&self) -> usize {
        self.table.heap_bytes() + self.filter.heap_bytes()
    }

    /// Bytes of the filter alone (it should stay cache-resident).
    pub fn filter_bytes(&self) -> usize {
        self.filter.heap_bytes()
    }

    /// Checks every invariant lookups rely on: text ends ascending and within the blob; the
    /// table length the entry count implies (80 % load, an empty slot); every entry in exactly
    /// one slot, with the tag of its text's hash, reachable from its home slot; entries
    /// strictly sorted by (text, flag) with twin flags exactly on equal texts; ordinals
    /// well formed; the filter and the single-label flag exactly those the entries imply.
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), FormatError> {
        self.table.validate(true, DOMAIN_INDEX)?;
        self.validate_derived()
    }

    /// The part of `validate` that assumes a valid table.
    fn validate_derived(&self) -> Result<(), FormatError> {
        if self.single_label != has_single_label(&self.table) {
            return Err(FormatError::new(
                DOMAIN_INDEX,
                "single-label flag inconsistent",
            ));
        }
        if self.filter != Bloom::build(closure_keys(&self.table), DOMAIN_FILTER_BITS) {
            return Err(FormatError::new(
                DOMAIN_INDEX,
                "filter inconsistent with the entries",
            ));
        }
        Ok(())
    }
}

impl DomainIndex {
    /// How many sections [`Sections::write_sections`] writes (records, slots, filter words,
    /// flags).
    pub const SECTIONS: usize = 4;
}

/// Flag word bit: some entry has a single label.
const SINGLE_LABEL: u64 = 1;

impl Sections for DomainIndex {
    fn write_sections(&self, w: &mut SectionWriter) {
        self.table.write(w);
        self.filter.write(w);
        w.put(&[if self.single_label { SINGLE_LABEL } else { 0 }]);
    }

    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        let table = KeyTable::read(r, DOMAIN_INDEX)?;
        let filter = Bloom::read(r, DOMAIN_INDEX)?;
        // Stored, since deriving it means reading every record.
        let flags: Arr<u64> = r.take(DOMAIN_INDEX)?;
        let single_label = match flags[..] {
            [0] => false,
            [SINGLE_LABEL] => true,
            _ => return Err(FormatError::new(DOMAIN_INDEX, "bad flag word")),
        };
        Ok(DomainIndex {
            table,
            filter,
            single_label,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One added name: (text, ordinal, is a domain).
    type Entry = (Vec<u8>, u32, bool);

    /// The obviously right matcher: a linear scan with the definition of a match.
    fn naive(entries: &[Entry], query: &[u8]) -> Vec<u32> {
        let mut out: Vec<u32> = entries
            .iter()
            .filter(|(name, _, is_domain)| {
                let mut dotted = b".".to_vec();
                dotted.extend_from_slice(name);
                query == &name[..] || (*is_domain && query.ends_with(&dotted))
            })
            .map(|e| e.1)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn build(entries: &[Entry]) -> DomainIndex {
        let mut b = DomainIndexBuilder::new();
        for (name, ord, is_domain) in entries {
            if *is_domain {
                b.add_domain(name, *ord);
            } else {
                b.add_hostname(name, *ord);
            }
        }
        b.build()
    }

    fn lookup(index: &DomainIndex, query: &[u8]) -> Vec<u32> {
        // Something already in `out` must be left alone.
        let mut out = vec![u32::MAX];
        index.lookup(query, &mut out);
        assert_eq!(out[0], u32::MAX);
        out.remove(0);
        out
    }

    /// Queries worth asking of `entries`: each name, its subdomains, look-alikes, its parent,
    /// its top-level label, plus `extra`.
    fn queries(entries: &[Entry], extra: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut qs: Vec<Vec<u8>> = extra.to_vec();
        for (name, _, _) in entries {
            let n = name.clone();
            qs.push(n.clone());
            qs.push([b"a.".as_slice(), &n].concat());
            qs.push([b"x.y.".as_slice(), &n].concat());
            qs.push([b"not".as_slice(), &n].concat());
            qs.push([b"-".as_slice(), &n].concat());
            qs.push([b".".as_slice(), &n].concat());
            qs.push([n.as_slice(), b"."].concat());
            qs.push([n.as_slice(), b".x"].concat());
            if let Some(p) = n.iter().position(|&c| c == b'.') {
                qs.push(n[p + 1..].to_vec());
                qs.push(n[..p].to_vec());
            }
            if let Some(p) = n.iter().rposition(|&c| c == b'.') {
                qs.push(n[p + 1..].to_vec());
                qs.push(n[..p].to_vec());
            }
            if n.len() > 1 {
                qs.push(n[1..].to_vec());
            }
        }
        qs.push(Vec::new());
        qs.push(b".".to_vec());
        qs
    }

    fn check(entries: &[Entry], extra: &[Vec<u8>]) -> Result<(), TestCaseError> {
        let index = build(entries);
        prop_assert_eq!(index.validate(), Ok(()));
        for q in queries(entries, extra) {
            prop_assert_eq!(
                lookup(&index, &q),
                naive(entries, &q),
                "query {:?}",
                String::from_utf8_lossy(&q)
            );
        }
        Ok(())
    }

    fn label() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("evil".to_owned()),
            Just("notevil".to_owned()),
            Just("example".to_owned()),
            Just("com".to_owned()),
            Just("a".to_owned()),
            Just(String::new()),
            "[ab]{1,2}",
            "[a-z0-9-]{1,10}",
        ]
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(label(), 0..6).prop_map(|ls| ls.join(".").into_bytes())
    }

    fn entries(max: usize) -> impl Strategy<Value = Vec<Entry>> {
        prop::collection::vec((name(), 0u32..16, any::<bool>()), 0..max).prop_map(|mut es| {
            // Make the same name appear as both a domain and a host name, with another ordinal.
            if let Some((n, o, d)) = es.first().cloned() {
                es.push((n, o + 100, !d));
            }
            es
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn lookups_agree_with_naive(es in entries(24), extra in prop::collection::vec(name(), 0..12)) {
            check(&es, &extra)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Deep names and long labels (up to the 253-byte limit and past it).
        #[test]
        fn deep_and_long_names_agree_with_naive(
            es in prop::collection::vec(
                (prop::collection::vec("[a-c]{1,63}", 1..12), 0u32..8, any::<bool>()),
                1..12,
            ),
            extra in prop::collection::vec(prop::collection::vec("[a-c]{1,63}", 1..12), 0..8),
        ) {
            let es: Vec<Entry> = es
                .into_iter()
                .map(|(ls, o, d)| (ls.join(".").into_bytes(), o, d))
                .collect();
            let extra: Vec<Vec<u8>> = extra.into_iter().map(|ls| ls.join(".").into_bytes()).collect();
            check(&es, &extra)?;
        }
    }

    /// Many names: a filter that is not saturated, so the closure walk really stops early.
    #[test]
    fn thousands_of_names_agree_with_naive() {
        let mut es: Vec<Entry> = Vec::new();
        let mut queries = Vec::new();
        for i in 0..3000u32 {
            let name = format!("d{}.z{}.example", i, i % 17);
            match i % 5 {
                0 => es.push((name.clone().into_bytes(), i, false)),
                1 => es.push((format!("z{}.example", i % 17).into_bytes(), i, true)),
                _ => es.push((name.clone().into_bytes(), i, true)),
            }
            queries.push(format!("www.{name}").into_bytes());
            queries.push(format!("www.not{name}").into_bytes());
            queries.push(format!("q{i}.example").into_bytes());
            queries.push(name.into_bytes());
        }
        let index = build(&es);
        index.validate().unwrap();
        assert!(index.filter_bytes() > 64);
        for q in &queries {
            assert_eq!(
                lookup(&index, q),
                naive(&es, q),
                "{}",
                String::from_utf8_lossy(q)
            );
        }
    }

    #[test]
    fn label_boundaries_and_kinds() {
        let es: Vec<Entry> = vec![
            (b"evil.example".to_vec(), 1, true),
            (b"host.example".to_vec(), 2, false),
            (b"host.example".to_vec(), 3, true),
            (b"host.example".to_vec(), 4, false),
            (b"evil.example".to_vec(), 1, true),
        ];
        let index = build(&es);
        index.validate().unwrap();
        assert_eq!(index.len(), 3);
        assert_eq!(index.pairs(), 4);
        let cases: [(&[u8], &[u32]); 9] = [
            (b"evil.example", &[1]),
            (b"a.evil.example", &[1]),
            (b"a.b.evil.example", &[1]),
            (b"notevil.example", &[]),
            (b"example", &[]),
            (b"host.example", &[2, 3, 4]),
            (b"a.host.example", &[3]),
            (b"", &[]),
            (b"evil.example.com", &[]),
        ];
        for (q, want) in cases {
            assert_eq!(lookup(&index, q), want, "{}", String::from_utf8_lossy(q));
        }
    }

    #[test]
    fn single_label_and_empty_entries() {
        let es: Vec<Entry> = vec![
            (b"localhost".to_vec(), 1, false),
            (b"internal".to_vec(), 2, true),
            (b"".to_vec(), 3, false),
            (b"".to_vec(), 4, true),
        ];
        let index = build(&es);
        index.validate().unwrap();
        for q in [
            &b"localhost"[..],
            b"a.localhost",
            b"internal",
            b"x.internal",
            b"",
            b"a.",
            b".",
            b"a.b.internal",
        ] {
            assert_eq!(
                lookup(&index, q),
                naive(&es, q),
                "{}",
                String::from_utf8_lossy(q)
            );
        }
    }

    #[test]
    fn indexes_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<DomainIndex>();
        assert_send_sync::<crate::index::exact::BytesIndex>();
        assert_send_sync::<crate::index::exact::Sha256Index>();
    }

    #[test]
    fn longest_dns_names() {
        // 253 bytes: four labels of 63 and one of one... and look-alikes one byte longer.
        let l63 = "a".repeat(63);
        let name = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(name.len(), 253);
        let parent = name[64..].to_owned();
        let es: Vec<Entry> = vec![
            (name.clone().into_bytes(), 1, false),
            (parent.clone().into_bytes(), 2, true),
        ];
        let index = build(&es);
        index.validate().unwrap();
        for q in [
            name.clone(),
            parent.clone(),
            format!("x.{name}"),
            format!("x{name}"),
            format!("a{parent}"),
            name[1..].to_owned(),
        ] {
            assert_eq!(
                lookup(&index, q.as_bytes()),
                naive(&es, q.as_bytes()),
                "{q}"
            );
        }
        assert_eq!(lookup(&index, name.as_bytes()), [1, 2]);
    }

    #[test]
    fn empty_index() {
        let index = DomainIndex::default();
        index.validate().unwrap();
        assert!(index.is_empty());
        assert_eq!(lookup(&index, b"a.example"), Vec::<u32>::new());
        assert_eq!(lookup(&index, b""), Vec::<u32>::new());
    }

    #[test]
    fn build_ignores_insertion_order() {
        let es: Vec<Entry> = (0..200u32)
            .map(|i| (format!("n{}.example", i % 50).into_bytes(), i, i % 3 == 0))
            .collect();
        let mut reversed = es.clone();
        reversed.reverse();
        assert_eq!(build(&es), build(&reversed));
    }

    fn sample_index() -> (Vec<Entry>, DomainIndex) {
        let es: Vec<Entry> = (0..300u32)
            .map(|i| {
                let name = format!("h{}.s{}.example", i % 97, i % 7);
                (name.into_bytes(), i, i % 4 != 0)
            })
            .chain([(b"solo".to_vec(), 999, true)])
            .collect();
        let index = build(&es);
        (es, index)
    }

    fn sections(index: &DomainIndex) -> Vec<Vec<u8>> {
        let mut w = SectionWriter::new();
        index.write_sections(&mut w);
        w.sections
    }

    /// Loads the sections, runs a lookup on whatever loads (it must not panic), then
    /// validates.
    fn read(sections: &[Vec<u8>]) -> Result<DomainIndex, FormatError> {
        let slices: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
        let idx = DomainIndex::read_sections(&mut SectionReader::new(&slices))?;
        let mut out = Vec::new();
        for q in [
            &b"www.h1.s1.example"[..],
            b"solo",
            b"x.solo",
            b"h2.s2.example",
        ] {
            idx.lookup(q, &mut out);
        }
        let _ = (idx.len(), idx.pairs(), idx.table.texts().count());
        idx.validate()?;
        Ok(idx)
    }

    #[test]
    fn sections_round_trip() {
        let (es, index) = sample_index();
        let back = read(&sections(&index)).unwrap();
        assert_eq!(back, index);
        for q in queries(&es, &[]) {
            assert_eq!(lookup(&back, &q), naive(&es, &q));
        }
    }

    #[test]
    fn corrupted_sections_are_refused() {
        let (_, index) = sample_index();
        let good = sections(&index);
        // Sections: records, slots, filter, flags.
        let texts: Vec<&[u8]> = index.table.texts().collect();
        for (s, section) in good.iter().enumerate() {
            // Truncation by one byte and by one value.
            for cut in [1, 8.min(section.len())] {
                let mut bad = good.clone();
                bad[s].truncate(section.len() - cut);
                assert!(read(&bad).is_err(), "section {s} truncated by {cut}");
            }
            for pos in (0..section.len()).step_by(section.len().div_ceil(40)) {
                let mut bad = good.clone();
                bad[s][pos] ^= 0x10;
                let result = read(&bad);
                if s > 0 {
                    assert!(result.is_err(), "flip in section {s} at {pos} accepted");
                }
                if let Ok(idx) = result {
                    // Only an ordinal can change unnoticed (the snapshot checksum catches it);
                    // lookups still must not panic.
                    assert!(idx.table.texts().eq(texts.iter().copied()));
                    let mut out = Vec::new();
                    idx.lookup(b"www.h1.s1.example", &mut out);
                }
            }
        }
        let mut missing = good.clone();
        missing.pop();
        assert!(read(&missing).is_err());
        // Twin flag dropped.
        let mut untwinned = build(&[
            (b"a.example".to_vec(), 1, true),
            (b"a.example".to_vec(), 2, false),
        ]);
        untwinned.table.edit_slots(|slots| {
            let s = slots.iter_mut().find(|s| **s != 0).unwrap();
            *s &= !(u64::from(TWIN) << 32);
        });
        assert!(untwinned.validate().is_err());
    }

    #[test]
    fn slot_moved_out_of_reach_is_refused() {
        let (_, index) = sample_index();
        let slots = index.table.slots();
        let len = slots.len();
        // An occupied slot right after an empty one, moved to an empty slot before its home.
        let mut bad = index.clone();
        for p in 0..len {
            if slots[p] != 0 && slots[(p + len - 1) % len] == 0 {
                let start = (slots[p] as u32 - 1) as usize;
                let h = hash64(record_text(&index.table.records, start));
                let target = (home(h, len) + len - 1) % len;
                if slots[target] == 0 {
                    bad.table.edit_slots(|s| s.swap(p, target));
                    assert!(bad.validate().is_err());
                    return;
                }
            }
        }
        panic!("no slot to move");
    }
}
