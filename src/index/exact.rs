//! Exact-value lookup on raw bytes: fixed-width digests ([`ExactIndex`]: MD5, JA3/JA3S, SHA-1,
//! SHA-256, SHA-512) and variable-length keys ([`BytesIndex`]: e-mail addresses, JA4
//! fingerprints, URL match keys).
//!
//! Main types:
//! - [`ExactIndex<N>`] (built by [`ExactIndexBuilder<N>`]): the distinct digests sorted, a
//!   radix directory over their leading bits (digests are uniform, so each directory bucket
//!   holds a handful of keys and a lookup is one directory read plus one short search), the
//!   ordinals of each digest, and a blocked Bloom filter in front (measured: without it a
//!   miss costs three dependent DRAM reads, 1.7 M lookups/s; with it, 70–100 M/s); aliases [`Md5Index`], [`Sha1Index`], [`Sha256Index`],
//!   [`Sha512Index`];
//! - [`BytesIndex`] (built by [`BytesIndexBuilder`]): the open-addressing table of
//!   [`domain`](super::domain) without the suffix walk, behind the same cache-resident filter;
//! - [`parse_hex`]: hexadecimal text (either case) to a digest, for telemetry columns that
//!   carry digests as text.
//!
//! A lookup appends the matching ordinals, ascending and each once, to a caller's `Vec<u32>`
//! and never allocates beyond that vector's growth. This module knows nothing of indicator
//! kinds or telemetry formats: callers decide which table a value goes to.
//!
//! ```
//! use cwn::index::exact::{parse_hex, BytesIndexBuilder, Sha256Index, ExactIndexBuilder};
//!
//! let digest = parse_hex::<32>(b"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855").unwrap();
//! let mut b = ExactIndexBuilder::<32>::new();
//! b.add(digest, 7);
//! let sha256: Sha256Index = b.build();
//! let mut out = Vec::new();
//! sha256.lookup(&digest, &mut out);
//! assert_eq!(out, [7]);
//!
//! let mut b = BytesIndexBuilder::new();
//! b.add(b"ceo@evil.example", 3);
//! let emails = b.build();
//! out.clear();
//! emails.lookup(b"ceo@evil.example", &mut out);
//! assert_eq!(out, [3]);
//! ```

use super::domain::{Bloom, KeyTable, KeyTableBuilder};
use super::hash::hash64;
use super::{Arr, FormatError, SectionReader, SectionWriter, Sections};

/// The ordinals of each key, as compressed sparse rows: key `i` owns
/// `ords[ends[i - 1]..ends[i]]` (ascending, at least one). When every key has exactly one
/// ordinal (the usual case once indicators are de-duplicated) `ends` is empty and key `i` owns
/// `ords[i]`, which saves four bytes per key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Postings {
    ends: Arr<u32>,
    ords: Arr<u32>,
}

/// Builds [`Postings`].
#[derive(Debug, Default)]
pub(crate) struct PostingsBuilder {
    ends: Vec<u32>,
    ords: Vec<u32>,
}

impl PostingsBuilder {
    /// Appends `ord` to the group being built (callers push ascending, distinct ordinals).
    pub(crate) fn push(&mut self, ord: u32) {
        self.ords.push(ord);
    }

    /// Closes the group being built.
    pub(crate) fn close_group(&mut self) {
        let end = u32::try_from(self.ords.len()).expect("more than 2^32 ordinals in one index");
        self.ends.push(end);
    }

    /// The postings, without `ends` when every group holds exactly one ordinal.
    pub(crate) fn finish(mut self) -> Postings {
        if self.ends.len() == self.ords.len() {
            self.ends = Vec::new();
        }
        Postings {
            ends: self.ends.into(),
            ords: self.ords.into(),
        }
    }
}

impl Postings {
    /// The ordinals of key `i`; empty if `i` is out of range or the offsets are out of order
    /// (neither happens for `i` below the key count once `validate` accepted).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &[u32] {
        let (ends, ords) = (&self.ends[..], &self.ords[..]);
        let range = if ends.is_empty() {
            i..i + 1
        } else {
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            start..ends.get(i).map_or(0, |&e| e as usize)
        };
        ords.get(range).unwrap_or_default()
    }

    /// What loading checks, in O(1): one group per key (`ends` empty and one ordinal per
    /// key, or one end per key, the last at the end of the ordinals).
    pub(crate) fn check_shape(
        &self,
        keys: usize,
        structure: &'static str,
    ) -> Result<(), FormatError> {
        let ok = if self.ends.is_empty() {
            self.ords.len() == keys
        } else {
            self.ends.len() == keys
                && self.ends.last().map(|&e| e as usize) == Some(self.ords.len())
        };
        if !ok {
            return Err(FormatError::new(
                structure,
                "ordinal lists do not fit the keys",
            ));
        }
        Ok(())
    }

    /// Number of (key, ordinal) pairs.
    pub(crate) fn pairs(&self) -> usize {
        self.ords.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        (self.ends.len() + self.ords.len()) * 4
    }

    /// Checks that there are exactly `keys` groups, each non-empty and strictly ascending, in
    /// the canonical form (`ends` empty exactly when every group has one ordinal).
    pub(crate) fn validate(&self, keys: usize, structure: &'static str) -> Result<(), FormatError> {
        let err = |reason: &str| Err(FormatError::new(structure, reason));
        if self.ends.is_empty() {
            if self.ords.len() != keys {
                return err("one ordinal per key expected");
            }
            return Ok(());
        }
        if self.ends.len() != keys {
            return err("ordinal ends: one per key expected");
        }
        if self.ords.len() == keys {
            return err("ordinal ends stored although every key has one ordinal");
        }
        let mut start = 0usize;
        for &end in self.ends.iter() {
            let end = end as usize;
            if end <= start || end > self.ords.len() {
                return err("ordinal ends not strictly increasing within range");
            }
            if !self.ords[start..end].windows(2).all(|w| w[0] < w[1]) {
                return err("ordinals of a key not strictly ascending");
            }
            start = end;
        }
        if start != self.ords.len() {
            return err("ordinals beyond the last key");
        }
        Ok(())
    }

    pub(crate) fn write(&self, w: &mut SectionWriter) {
        w.put(&self.ends);
        w.put(&self.ords);
    }

    pub(crate) fn read(
        r: &mut SectionReader,
        structure: &'static str,
    ) -> Result<Self, FormatError> {
        Ok(Postings {
            ends: r.take(structure)?,
            ords: r.take(structure)?,
        })
    }
}

/// Sorts `out[first..]` and removes repeats, when several keys contributed to it.
#[inline]
pub(crate) fn sort_dedup_tail(out: &mut Vec<u32>, first: usize) {
    let tail = &mut out[first..];
    tail.sort_unstable();
    let mut kept = 0;
    for i in 0..tail.len() {
        if i == 0 || tail[i] != tail[kept - 1] {
            tail[kept] = tail[i];
            kept += 1;
        }
    }
    out.truncate(first + kept);
}

/// Parses `2 * N` hexadecimal digits (upper or lower case, nothing else) into `N` bytes.
///
/// ```
/// use cwn::index::exact::parse_hex;
/// assert_eq!(parse_hex::<2>(b"aBf0"), Some([0xab, 0xf0]));
/// assert_eq!(parse_hex::<2>(b"abf"), None);
/// assert_eq!(parse_hex::<2>(b"abfg"), None);
/// ```
pub fn parse_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

#[inline]
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Exact lookup of MD5, JA3 and JA3S digests (16 bytes).
pub type Md5Index = ExactIndex<16>;
/// Exact lookup of SHA-1 digests (20 bytes).
pub type Sha1Index = ExactIndex<20>;
/// Exact lookup of SHA-256 digests (32 bytes).
pub type Sha256Index = ExactIndex<32>;
/// Exact lookup of SHA-512 digests (64 bytes).
pub type Sha512Index = ExactIndex<64>;

const EXACT: &str = "exact index";
/// Filter bits per digest: about 1.7 % false positives, and SHA-256 stays under 40 B a digest.
const DIGEST_FILTER_BITS: usize = 10;
/// Filter bits per byte-string key (a false positive costs a probe in DRAM).
const BYTES_FILTER_BITS: usize = 12;

/// Collects `(digest, ordinal)` pairs for an [`ExactIndex`].
#[derive(Clone, Debug, Default)]
pub struct ExactIndexBuilder<const N: usize> {
    pairs: Vec<([u8; N], u32)>,
}

impl<const N: usize> ExactIndexBuilder<N> {
    /// An empty builder.
    pub fn new() -> Self {
        const { assert!(N > 0, "a digest has at least one byte") };
        ExactIndexBuilder { pairs: Vec::new() }
    }

    /// Adds `digest` with `ordinal`; the same digest may be added with several ordinals, and
    /// repeats of the same pair are kept once.
    pub fn add(&mut self, digest: [u8; N], ordinal: u32) {
        self.pairs.push((digest, ordinal));
    }

    /// Number of pairs added so far (repeats included).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The immutable index. The result depends only on the set of pairs added, not their
    /// order.
    ///
    /// # Panics
    /// If there are 2^32 or more distinct pairs.
    pub fn build(mut self) -> ExactIndex<N> {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        let mut keys: Vec<[u8; N]> = Vec::new();
        let mut postings = PostingsBuilder::default();
        for (i, (key, ord)) in self.pairs.iter().enumerate() {
            if i > 0 && self.pairs[i - 1].0 != *key {
                postings.close_group();
            }
            if keys.last() != Some(key) {
                keys.push(*key);
            }
            postings.push(*ord);
        }
        if !keys.is_empty() {
            postings.close_group();
        }
        assert!(u32::try_from(keys.len()).is_ok(), "more than 2^32 digests");
        let dir = directory(&keys);
        let filter = digest_filter(&keys);
        ExactIndex {
            keys: keys.into(),
            dir: dir.into(),
            postings: postings.finish(),
            filter,
        }
    }
}

/// An immutable set of fixed-width digests, each with the ordinals of the indicators that
/// carry it.
///
/// The directory has `2^b` buckets for `n` digests (`b = ⌊log2(n/4)⌋`, 0 below 8 digests):
/// bucket `j` holds the digests whose leading `b` bits are `j`, so with uniform digests a
/// bucket holds 4–8 of them and the whole directory costs under a byte per digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactIndex<const N: usize> {
    keys: Arr<[u8; N]>,
    /// `dir[j]` is the index of the first key whose bucket is `j` or above; `2^b + 1` entries.
    dir: Arr<u32>,
    postings: Postings,
    /// Blocked Bloom filter over the digests, so that a miss usually stays in cache.
    filter: Bloom,
}

/// Folds a digest into the 64 bits the filter uses: its first and last eight bytes, which are
/// uniform for real digests (skewed keys only make the filter less selective, never wrong).
#[inline]
fn digest_hash<const N: usize>(key: &[u8; N]) -> u64 {
    let mut tail = [0u8; 8];
    let k = N.min(8);
    tail[..k].copy_from_slice(&key[N - k..]);
    prefix(key) ^ u64::from_le_bytes(tail).rotate_left(32)
}

fn digest_filter<const N: usize>(keys: &[[u8; N]]) -> Bloom {
    Bloom::build(
        keys.iter().map(|k| (digest_hash(k), true)).collect(),
        DIGEST_FILTER_BITS,
    )
}

fn dir_bits(n: usize) -> u32 {
    if n < 8 { 0 } else { (n / 4).ilog2().min(30) }
}

#[inline]
fn prefix<const N: usize>(key: &[u8; N]) -> u64 {
    let mut b = [0u8; 8];
    let k = N.min(8);
    b[..k].copy_from_slice(&key[..k]);
    u64::from_be_bytes(b)
}

#[inline]
fn bucket(prefix: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (prefix >> (64 - bits)) as usize
    }
}

fn directory<const N: usize>(keys: &[[u8; N]]) -> Vec<u32> {
    let bits = dir_bits(keys.len());
    let buckets = 1usize << bits;
    let mut dir = Vec::with_capacity(buckets + 1);
    let mut i = 0usize;
    for j in 0..=buckets {
        while i < keys.len() && bucket(prefix(&keys[i]), bits) < j {
            i += 1;
        }
        dir.push(i as u32);
    }
    dir
}

impl<const N: usize> Default for ExactIndex<N> {
    /// An index without digests.
    fn default() -> Self {
        ExactIndexBuilder::new().build()
    }
}

impl<const N: usize> ExactIndex<N> {
    /// Appends the ordinals of `digest` (ascending, each once) to `out`.
    #[inline]
    pub fn lookup(&self, digest: &[u8; N], out: &mut Vec<u32>) {
        if let Some(i) = self.find(digest) {
            out.extend_from_slice(self.postings.get(i));
        }
    }

    /// The key index of `digest`. Whatever the arrays hold, a directory entry out of order or
    /// range finds nothing rather than panicking.
    #[inline]
    fn find(&self, digest: &[u8; N]) -> Option<usize> {
        if !self.filter.may_contain_entry(digest_hash(digest)) {
            return None;
        }
        let keys = &self.keys[..];
        let j = bucket(prefix(digest), dir_bits(keys.len()));
        let (lo, hi) = (*self.dir.get(j)? as usize, *self.dir.get(j + 1)? as usize);
        let i = keys.get(lo..hi)?.binary_search(digest).ok()?;
        Some(lo + i)
    }

    /// Whether `digest` is present.
    #[inline]
    pub fn contains(&self, digest: &[u8; N]) -> bool {
        self.find(digest).is_some()
    }

    /// Parses `hex` with [`parse_hex`] and looks it up; malformed text matches nothing.
    #[inline]
    pub fn lookup_hex(&self, hex: &[u8], out: &mut Vec<u32>) {
        if let Some(d) = parse_hex::<N>(hex) {
            self.lookup(&d, out);
        }
    }

    /// Number of distinct digests.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the index holds no digest.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of (digest, ordinal) pairs.
    pub fn pairs(&self) -> usize {
        self.postings.pairs()
    }

    /// Bytes of all arrays.
    pub fn heap_bytes(&self) -> usize {
        self.keys.len() * N
            + self.dir.len() * 4
            + self.postings.heap_bytes()
            + self.filter.heap_bytes()
    }

    /// Checks every invariant lookups rely on: digests strictly ascending, the directory
    /// exactly the one the digests imply, the ordinals well formed.
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), FormatError> {
        if u32::try_from(self.keys.len()).is_err() {
            return Err(FormatError::new(EXACT, "too many digests"));
        }
        if !self.keys.windows(2).all(|w| w[0] < w[1]) {
            return Err(FormatError::new(EXACT, "digests not strictly ascending"));
        }
        if self.dir[..] != directory(&self.keys)[..] {
            return Err(FormatError::new(
                EXACT,
                "directory inconsistent with the digests",
            ));
        }
        self.postings.validate(self.keys.len(), EXACT)?;
        if self.filter != digest_filter(&self.keys) {
            return Err(FormatError::new(
                EXACT,
                "filter inconsistent with the digests",
            ));
        }
        Ok(())
    }
}

impl<const N: usize> Sections for ExactIndex<N> {
    fn write_sections(&self, w: &mut SectionWriter) {
        w.put(&[N as u64]);
        w.put(self.keys.as_flattened());
        w.put(&self.dir);
        self.postings.write(w);
        self.filter.write(w);
    }

    /// Checks in O(1) the width, the directory's length for the key count and its first and
    /// last entries, and one ordinal group per key.
    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        const { assert!(N > 0, "a digest has at least one byte") };
        let width: Arr<u64> = r.take(EXACT)?;
        if width[..] != [N as u64] {
            return Err(FormatError::new(
                EXACT,
                format!("not a {N}-byte digest table"),
            ));
        }
        let idx = ExactIndex {
            keys: r.take(EXACT)?,
            dir: r.take(EXACT)?,
            postings: Postings::read(r, EXACT)?,
            filter: Bloom::read(r, EXACT)?,
        };
        let n = idx.keys.len();
        if u32::try_from(n).is_err()
            || idx.dir.len() != (1 << dir_bits(n)) + 1
            || idx.dir.first() != Some(&0)
            || idx.dir.last().map(|&d| d as usize) != Some(n)
        {
            return Err(FormatError::new(
                EXACT,
                "directory does not fit the digest count",
            ));
        }
        idx.postings.check_shape(n, EXACT)?;
        Ok(idx)
    }
}

const BYTES: &str = "bytes index";

/// Collects `(key, ordinal)` pairs for a [`BytesIndex`].
#[derive(Clone, Debug, Default)]
pub struct BytesIndexBuilder {
    keys: KeyTableBuilder,
}

impl BytesIndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` with `ordinal`; the same key may be added with several ordinals.
    ///
    /// # Panics
    /// If `key` is 4 GiB or longer.
    pub fn add(&mut self, key: &[u8], ordinal: u32) {
        self.keys.push(key, false, ordinal);
    }

    /// Number of pairs added so far (repeats included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The immutable index; it depends only on the set of pairs added.
    ///
    /// # Panics
    /// If the records (keys and their ordinals) total 4 GiB or more.
    pub fn build(self) -> BytesIndex {
        let table = self.keys.build();
        let filter = Bloom::build(bytes_filter_keys(&table), BYTES_FILTER_BITS);
        BytesIndex { table, filter }
    }
}

/// An immutable set of byte strings (e-mail addresses, JA4 fingerprints, URL match keys),
/// each with the ordinals of the indicators that carry it.
///
/// Layout (see [`domain`](super::domain) for the table): one record per key (length, key,
/// ordinals) in a byte blob, an open-addressing table of 8-byte slots (32-bit tag, 32-bit
/// record start) at 80 % load, and a blocked Bloom filter of 12 bits per key (six of them set)
/// in front of it, so that a miss usually costs one hash and one cache-resident word and a hit
/// two dependent memory accesses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BytesIndex {
    table: KeyTable,
    filter: Bloom,
}

fn bytes_filter_keys(table: &KeyTable) -> Vec<(u64, bool)> {
    table.texts().map(|key| (hash64(key), true)).collect()
}

impl Default for BytesIndex {
    /// An index without keys.
    fn default() -> Self {
        BytesIndexBuilder::new().build()
    }
}

impl BytesIndex {
    /// Appends the ordinals of `key` (ascending, each once) to `out`.
    #[inline]
    pub fn lookup(&self, key: &[u8], out: &mut Vec<u32>) {
        let h = hash64(key);
        if self.filter.may_contain_entry(h) {
            self.table.probe(key, h, true, out);
        }
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the index holds no key.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// Number of (key, ordinal) pairs.
    pub fn pairs(&self) -> usize {
        self.table.pairs()
    }

    /// Bytes of all arrays.
    pub fn heap_bytes(&self) -> usize {
        self.table.heap_bytes() + self.filter.heap_bytes()
    }

    /// Checks every invariant lookups rely on (those of the table, see
    /// [`DomainIndex::validate`](super::domain::DomainIndex::validate), no domain flags, and
    /// the filter exactly the one the keys imply).
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), FormatError> {
        self.table.validate(false, BYTES)?;
        self.validate_filter()
    }

    fn validate_filter(&self) -> Result<(), FormatError> {
        if self.filter != Bloom::build(bytes_filter_keys(&self.table), BYTES_FILTER_BITS) {
            return Err(FormatError::new(BYTES, "filter inconsistent with the keys"));
        }
        Ok(())
    }
}

impl Sections for BytesIndex {
    fn write_sections(&self, w: &mut SectionWriter) {
        self.table.write(w);
        self.filter.write(w);
    }

    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        Ok(BytesIndex {
            table: KeyTable::read(r, BYTES)?,
            filter: Bloom::read(r, BYTES)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive<K: PartialEq>(pairs: &[(K, u32)], key: &K) -> Vec<u32> {
        let mut out: Vec<u32> = pairs.iter().filter(|p| p.0 == *key).map(|p| p.1).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn build_exact<const N: usize>(pairs: &[([u8; N], u32)]) -> ExactIndex<N> {
        let mut b = ExactIndexBuilder::<N>::new();
        for (k, o) in pairs {
            b.add(*k, *o);
        }
        b.build()
    }

    fn build_bytes(pairs: &[(Vec<u8>, u32)]) -> BytesIndex {
        let mut b = BytesIndexBuilder::new();
        for (k, o) in pairs {
            b.add(k, *o);
        }
        b.build()
    }

    fn round_trip<T: Sections>(x: &T) -> Result<T, FormatError> {
        let mut w = SectionWriter::new();
        x.write_sections(&mut w);
        let slices: Vec<&[u8]> = w.sections.iter().map(Vec::as_slice).collect();
        T::read_sections(&mut SectionReader::new(&slices))
    }

    /// Loads the sections, looks `probe` up in whatever loads (it must not panic), then
    /// validates.
    fn load_exact(s: &[Vec<u8>], probe: &[u8; 20]) -> Result<ExactIndex<20>, FormatError> {
        let slices: Vec<&[u8]> = s.iter().map(Vec::as_slice).collect();
        let idx = ExactIndex::<20>::read_sections(&mut SectionReader::new(&slices))?;
        let mut out = Vec::new();
        idx.lookup(probe, &mut out);
        idx.lookup(&[0xff; 20], &mut out);
        idx.validate()?;
        Ok(idx)
    }

    /// [`load_exact`] for a [`BytesIndex`].
    fn load_bytes(s: &[Vec<u8>], probe: &[u8]) -> Result<BytesIndex, FormatError> {
        let slices: Vec<&[u8]> = s.iter().map(Vec::as_slice).collect();
        let idx = BytesIndex::read_sections(&mut SectionReader::new(&slices))?;
        let mut out = Vec::new();
        idx.lookup(probe, &mut out);
        let _ = (idx.len(), idx.pairs());
        idx.validate()?;
        Ok(idx)
    }

    /// 20-byte digests: uniform ones, and ones that share their leading bytes (so that one
    /// directory bucket holds many), or differ only in the last byte.
    fn digest20() -> impl Strategy<Value = [u8; 20]> {
        prop_oneof![
            any::<[u8; 20]>(),
            (0u8..3, any::<u8>()).prop_map(|(a, b)| {
                let mut d = [0u8; 20];
                d[0] = a;
                d[19] = b % 4;
                d
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2500))]
        #[test]
        fn exact_agrees_with_naive(
            pairs in prop::collection::vec((digest20(), 0u32..6), 0..80),
            extra in prop::collection::vec(digest20(), 0..20),
        ) {
            let index = build_exact(&pairs);
            prop_assert_eq!(index.validate(), Ok(()));
            for q in pairs.iter().map(|p| p.0).chain(extra) {
                let mut out = vec![u32::MAX];
                index.lookup(&q, &mut out);
                prop_assert_eq!(&out[1..], &naive(&pairs, &q)[..]);
                prop_assert_eq!(index.contains(&q), out.len() > 1);
            }
        }

        #[test]
        fn bytes_agree_with_naive(
            pairs in prop::collection::vec(("[ab@.]{0,4}|[a-z0-9@.]{0,40}", 0u32..6), 0..60),
            extra in prop::collection::vec("[ab@.]{0,5}", 0..20),
        ) {
            let pairs: Vec<(Vec<u8>, u32)> =
                pairs.into_iter().map(|(k, o)| (k.into_bytes(), o)).collect();
            let index = build_bytes(&pairs);
            prop_assert_eq!(index.validate(), Ok(()));
            for q in pairs.iter().map(|p| p.0.clone()).chain(extra.into_iter().map(String::into_bytes)) {
                let mut out = vec![u32::MAX];
                index.lookup(&q, &mut out);
                prop_assert_eq!(&out[1..], &naive(&pairs, &q)[..]);
            }
        }
    }

    #[test]
    fn parse_hex_accepts_both_cases_only() {
        assert_eq!(
            parse_hex::<16>(b"d41d8cd98f00b204e9800998ecf8427e"),
            parse_hex::<16>(b"D41D8CD98F00B204E9800998ECF8427E")
        );
        assert_eq!(parse_hex::<1>(b"0f"), Some([0x0f]));
        assert_eq!(parse_hex::<1>(b"g0"), None);
        assert_eq!(parse_hex::<1>(b" 0"), None);
        assert_eq!(parse_hex::<1>(b"0"), None);
        assert_eq!(parse_hex::<1>(b"000"), None);
        let index = build_exact(&[([0xab; 16], 5)]);
        let mut out = Vec::new();
        index.lookup_hex(b"ABABABABABABABABABABABABABABABAB", &mut out);
        index.lookup_hex(b"not hex", &mut out);
        assert_eq!(out, [5]);
    }

    #[test]
    fn sha256_memory_per_digest() {
        let mut b = ExactIndexBuilder::<32>::new();
        let mut x = 1u64;
        for i in 0..100_000u32 {
            let mut d = [0u8; 32];
            for c in d.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            b.add(d, i);
        }
        let index = b.build();
        index.validate().unwrap();
        let per = index.heap_bytes() as f64 / index.len() as f64;
        assert!(per <= 40.0, "{per} B per SHA-256");
    }

    #[test]
    fn exact_round_trip_and_corruption() {
        let pairs: Vec<([u8; 20], u32)> = (0..500u32)
            .map(|i| {
                let mut d = [0u8; 20];
                d[..8].copy_from_slice(
                    &(u64::from(i % 300).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes(),
                );
                (d, i)
            })
            .collect();
        let index = build_exact(&pairs);
        assert_eq!(index.len(), 300);
        assert_eq!(round_trip(&index).unwrap(), index);
        let mut w = SectionWriter::new();
        index.write_sections(&mut w);
        let good = w.sections;
        let read = |s: &[Vec<u8>]| load_exact(s, &pairs[7].0);
        // Sections: width, digests, directory, ordinal ends, ordinals, filter.
        for (s, section) in good.iter().enumerate() {
            for cut in [1, 4] {
                let mut bad = good.clone();
                bad[s].truncate(section.len() - cut);
                assert!(read(&bad).is_err(), "section {s} truncated by {cut}");
            }
            for pos in (0..section.len()).step_by(section.len().div_ceil(50)) {
                let mut bad = good.clone();
                bad[s][pos] ^= 0x80;
                let result = read(&bad);
                if s == 0 || s == 2 || s == 3 || s == 5 || (s == 1 && pos % 20 == 0) {
                    assert!(result.is_err(), "flip in section {s} at {pos} accepted");
                }
                if let Ok(idx) = result {
                    let mut out = Vec::new();
                    idx.lookup(&pairs[7].0, &mut out);
                }
            }
        }
        // Wrong width.
        assert!(
            ExactIndex::<16>::read_sections(&mut SectionReader::new(
                &good.iter().map(Vec::as_slice).collect::<Vec<_>>()
            ))
            .is_err()
        );
        // Two digests swapped.
        let mut swapped = index.clone();
        swapped.keys.edit(|k| k.swap(10, 11));
        assert!(swapped.validate().is_err());
    }

    #[test]
    fn bytes_round_trip_and_corruption() {
        let pairs: Vec<(Vec<u8>, u32)> = (0..400u32)
            .map(|i| {
                (
                    format!("user{}@d{}.example", i % 250, i % 9).into_bytes(),
                    i,
                )
            })
            .collect();
        let index = build_bytes(&pairs);
        let back = round_trip(&index).unwrap();
        assert_eq!(back, index);
        let mut w = SectionWriter::new();
        index.write_sections(&mut w);
        let good = w.sections;
        let read = |s: &[Vec<u8>]| load_bytes(s, b"user1@d1.example");
        // Sections: records, slots, filter.
        let texts: Vec<&[u8]> = index.table.texts().collect();
        for (s, section) in good.iter().enumerate() {
            let mut bad = good.clone();
            bad[s].truncate(section.len() - 1);
            assert!(read(&bad).is_err(), "section {s} truncated");
            for pos in (0..section.len()).step_by(section.len().div_ceil(40)) {
                let mut bad = good.clone();
                bad[s][pos] ^= 0x01;
                let result = read(&bad);
                if s > 0 {
                    assert!(result.is_err(), "flip in section {s} at {pos} accepted");
                }
                if let Ok(idx) = result {
                    // Only an ordinal can change unnoticed (the snapshot checksum catches it).
                    assert!(idx.table.texts().eq(texts.iter().copied()));
                    let mut out = Vec::new();
                    idx.lookup(b"user1@d1.example", &mut out);
                }
            }
        }
        // A domain flag in a bytes table is refused.
        let mut flagged = index.clone();
        let s = flagged.table.slots().iter().position(|&s| s != 0).unwrap();
        let mut w = SectionWriter::new();
        flagged.write_sections(&mut w);
        let mut bad = w.sections;
        bad[1][s * 8 + 4] |= 1;
        assert!(read(&bad).is_err());
        flagged.table.edit_slots(|slots| slots[s] |= 1 << 32);
        assert!(flagged.validate().is_err());
    }

    #[test]
    fn empty_indexes() {
        let e = ExactIndex::<32>::default();
        e.validate().unwrap();
        let mut out = Vec::new();
        e.lookup(&[0; 32], &mut out);
        let b = BytesIndex::default();
        b.validate().unwrap();
        b.lookup(b"", &mut out);
        assert!(out.is_empty());
        assert_eq!(round_trip(&e).unwrap(), e);
        assert_eq!(round_trip(&b).unwrap(), b);
    }
}
