//! Substring patterns — URL fragments (`url-substring`), request paths (`uri`, `/gate.php`) and
//! User-Agent strings — found anywhere inside a telemetry field.
//!
//! Main types:
//! - [`SubstringBuilder`]: collects `(pattern, classes, ordinal)` triples and builds
//! - [`SubstringIndex`]: an immutable, `Send + Sync` matcher whose [`find`](SubstringIndex::find)
//!   appends the ordinal of every pattern that occurs in a haystack, each once, ascending.
//!
//! Each pattern carries a set of *classes* (a `u8` bit set, [`CLASS_URL`],
//! [`CLASS_USER_AGENT`]); a lookup names the classes its field may hold (a URL field
//! [`CLASS_URL`], a User-Agent field [`CLASS_USER_AGENT`], free text [`CLASS_ALL`]), and only
//! patterns of one of those classes are reported. Matching is case-sensitive on raw bytes.
//!
//! # How it is fast
//! A plain Aho-Corasick automaton over 100 k patterns spends its time in cache misses: its
//! transition table does not fit in cache. Here a pattern is instead represented by two
//! adjacent *windows* of it (at offsets `o` and `o + 1`), in one of three *tiers* by length:
//! [`WIDE_WINDOW`] bytes for patterns of at least [`WIDE_MIN_LEN`] bytes, [`NARROW_WINDOW`]
//! bytes from [`NARROW_MIN_LEN`], [`TINY_WINDOW`] bytes from [`TINY_MIN_LEN`] (unless those are
//! few: [`TINY_EXPANSION_LIMIT`]). The pair is chosen to be rare: few other patterns contain its
//! windows and their bytes are unusual in URL and User-Agent text. As one of two adjacent
//! windows always starts at an even position, the haystack is probed at every *second* position
//! only ([`STRIDE`]): the window under the cursor (one 8-byte load serves all tiers) is hashed
//! into its tier's blocked Bloom filter — two bits in one 64-bit word per window, 16 to 64 bits
//! per window, small enough to stay in cache. Only when the bits are set is the window looked up
//! in the tier's hash table — 8-byte fingerprint slots, at most half full, so that a miss costs
//! about one cache line — and each pattern with that window is compared at the start its window
//! offset implies, first against the pattern's first 8 bytes kept in the table entry, then
//! against the rest. Seven bytes of context make an accidental hit on ordinary text rare.
//! Patterns of at most [`SHORT_MAX_LEN`] bytes, rare in practice (none among the maltrail
//! paths), go to one small [`aho_corasick::AhoCorasick`] automaton; a set with many of them is
//! bounded by that automaton's speed.
//!
//! Measured (`cargo bench --bench index_substring`) on the 92.5 k maltrail request paths against
//! synthetic URLs: about 600 MiB/s per core, twice the 300 MB/s goal and 1.5× a contiguous
//! Aho-Corasick NFA over the same set (which is unusually fast here: every maltrail path starts
//! with `/`, so its start-byte prefilter skips from slash to slash); 250–360 MiB/s per core
//! with a million patterns.
//!
//! # Stored form
//! Everything is flat arrays ([`Sections`]), in this order: per tier (wide, narrow, tiny) the
//! filter words, the slots and the entries (window key and offset, pattern head, pattern index
//! and length); per pattern its blob range and classes; the pattern bytes; the ordinal lists in
//! CSR form with the classes of each ordinal. The short-pattern automaton is *not* stored: it is
//! built from the stored short patterns on the first search (it holds few, tiny patterns, so
//! this costs microseconds, and a load that never searches does not pay for it). The window hash ([`window_hash`]), the window choice's
//! constraints and the filter and table sizes are part of the format; `validate` recomputes the
//! filters and slots from the entries and refuses any difference. What `validate` cannot see —
//! another ordinal, another byte late in a long pattern, both consistent — is the snapshot
//! checksums' to catch.
//!
//! ```
//! use cwn::index::substring::{SubstringBuilder, CLASS_URL, CLASS_USER_AGENT};
//!
//! let mut b = SubstringBuilder::new();
//! b.add(b"/gate.php", CLASS_URL, 7).unwrap();
//! b.add(b"Mozilla/4.0 (compatible; EvilBot", CLASS_USER_AGENT, 9).unwrap();
//! b.add(b"/x", CLASS_URL, 3).unwrap();
//! assert!(b.add(b"", CLASS_URL, 4).is_err());
//! let index = b.build();
//!
//! let mut hits = Vec::new();
//! index.find(b"http://a.example/panel/gate.php?id=1&x=/x", CLASS_URL, &mut hits);
//! assert_eq!(hits, [3, 7]);
//! hits.clear();
//! index.find(b"/gate.php", CLASS_USER_AGENT, &mut hits);
//! assert!(hits.is_empty());
//! ```

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::{Arr, FormatError, SectionReader, SectionWriter, Sections};
use crate::indicator::Kind;

/// The haystack is probed at every `STRIDE`-th position; each pattern registers `STRIDE`
/// adjacent windows so that one of them is probed wherever the pattern occurs.
pub const STRIDE: usize = 2;
/// Window length of the wide tier.
pub const WIDE_WINDOW: usize = 7;
/// Patterns of at least this many bytes are in the wide tier.
pub const WIDE_MIN_LEN: usize = WIDE_WINDOW + STRIDE - 1;
/// Window length of the narrow tier.
pub const NARROW_WINDOW: usize = 4;
/// Patterns of `NARROW_MIN_LEN..WIDE_MIN_LEN` bytes are in the narrow tier.
pub const NARROW_MIN_LEN: usize = NARROW_WINDOW + STRIDE - 1;
/// Window length of the tiny tier.
pub const TINY_WINDOW: usize = 3;
/// Patterns of `TINY_MIN_LEN..NARROW_MIN_LEN` bytes are in the tiny tier (or, when few, the
/// narrow one: [`TINY_EXPANSION_LIMIT`]).
pub const TINY_MIN_LEN: usize = TINY_WINDOW + STRIDE - 1;
/// Patterns of at most this many bytes go to the small automaton.
pub const SHORT_MAX_LEN: usize = TINY_MIN_LEN - 1;
/// When at most this many patterns are [`TINY_MIN_LEN`] bytes long, the tiny tier is not
/// scanned at all: each of them joins the narrow tier as its own window (found at even
/// positions) plus the 256 windows that start one byte before it, whatever that byte is (found
/// at odd positions). A handful of such patterns (maltrail has 11) would otherwise cost a fifth
/// of the scan.
pub const TINY_EXPANSION_LIMIT: usize = 32;

/// Class of patterns searched in URL fields (`url-substring`, `uri`).
pub const CLASS_URL: u8 = 1;
/// Class of patterns searched in User-Agent fields.
pub const CLASS_USER_AGENT: u8 = 2;
/// Every class: what a free-text field is searched for.
pub const CLASS_ALL: u8 = u8::MAX;

/// The classes an indicator of `kind` belongs to (0 for kinds that are not substring kinds).
pub const fn classes_of(kind: Kind) -> u8 {
    match kind {
        Kind::UrlSubstring | Kind::Uri => CLASS_URL,
        Kind::UserAgent => CLASS_USER_AGENT,
        _ => 0,
    }
}

const STRUCTURE: &str = "substring index";

/// The hash of a window key (its bytes read little-endian, zero-extended): part of the snapshot
/// format. Its top bits pick the filter word and the home slot, bits 20..32 the filter bits,
/// bits 8..40 the slot fingerprint.
#[inline(always)]
pub fn window_hash(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The filter word of a hash: its top bits, `shift` being `64 - log2(filter words)`.
#[inline(always)]
fn filter_word(h: u64, shift: u32) -> usize {
    (h >> shift) as usize
}

/// The filter bits of a hash (one or two), as a mask of one filter word.
#[inline(always)]
fn filter_mask(h: u64, two: bool) -> u64 {
    let m = 1u64 << ((h >> 20) & 63);
    if two {
        m | (1u64 << ((h >> 26) & 63))
    } else {
        m
    }
}

/// Filter words for a table of `entries` entries.
fn filter_words(entries: usize, shape: TierShape) -> usize {
    (entries.saturating_mul(shape.filter_bits_per_key) / 64)
        .max(shape.min_filter_words)
        .next_power_of_two()
}

/// The little-endian key of the `width`-byte window of `bytes` at `at`.
#[inline(always)]
fn key_at(bytes: &[u8], at: usize, width: usize) -> u64 {
    let mut k = [0u8; 8];
    k[..width].copy_from_slice(&bytes[at..at + width]);
    u64::from_le_bytes(k)
}

/// Why a pattern was refused by [`SubstringBuilder::add`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubstringError {
    /// The empty pattern would match every field.
    #[error("empty substring pattern")]
    Empty,
    /// A pattern in no class could never be reported.
    #[error("substring pattern in no class")]
    NoClass,
    /// The pattern bytes (or the number of triples) would not fit the index's 32-bit offsets.
    #[error("substring patterns exceed 4 GiB in total")]
    TooLarge,
}

/// Collects patterns; [`build`](SubstringBuilder::build) turns them into a [`SubstringIndex`].
#[derive(Clone, Debug, Default)]
pub struct SubstringBuilder {
    bytes: Vec<u8>,
    /// (start in `bytes`, length, classes, ordinal)
    entries: Vec<(u32, u32, u8, u32)>,
}

/// A tier: its window width, the pattern lengths it holds and its filter's density.
#[derive(Clone, Copy, Debug)]
struct TierShape {
    name: &'static str,
    window: usize,
    /// Patterns shorter than this are in the tier only as expanded tiny patterns.
    min_len: usize,
    /// Whether a key sets two filter bits (else one).
    two_bits: bool,
    filter_bits_per_key: usize,
    min_filter_words: usize,
}

/// The tiers, widest window first.
const SHAPES: [TierShape; 3] = [
    TierShape {
        name: "wide",
        window: WIDE_WINDOW,
        min_len: WIDE_MIN_LEN,
        two_bits: true,
        filter_bits_per_key: 16,
        min_filter_words: 2,
    },
    TierShape {
        name: "narrow",
        window: NARROW_WINDOW,
        min_len: NARROW_MIN_LEN,
        two_bits: true,
        // Far fewer patterns are this short than longer: a sparser filter stays small and
        // saves probes of a table whose windows, only 4 bytes, hit ordinary text often enough.
        filter_bits_per_key: 64,
        min_filter_words: 2,
    },
    TierShape {
        name: "tiny",
        window: TINY_WINDOW,
        min_len: TINY_MIN_LEN,
        // Few patterns are this short: one bit per key in a sparse filter costs fewer
        // instructions per haystack position than two.
        two_bits: false,
        filter_bits_per_key: 256,
        min_filter_words: 64,
    },
];

/// The tier (index into [`SHAPES`]) of a pattern of `len` bytes; `None` for the automaton.
fn tier_of(len: usize, expand_tiny: bool) -> Option<usize> {
    match len {
        l if l >= WIDE_MIN_LEN => Some(0),
        l if l >= NARROW_MIN_LEN => Some(1),
        l if l >= TINY_MIN_LEN => Some(if expand_tiny { 1 } else { 2 }),
        _ => None,
    }
}

/// Whether the patterns of [`TINY_MIN_LEN`] bytes are few enough to join the narrow tier.
fn expand_tiny(patterns: &[[u32; 3]]) -> bool {
    let tiny = patterns
        .iter()
        .filter(|p| (p[1] - p[0]) as usize == TINY_MIN_LEN)
        .count();
    tiny <= TINY_EXPANSION_LIMIT
}

impl SubstringBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `pattern` in `classes` for indicator `ordinal`. The same pattern may be added with
    /// several ordinals and classes (the classes of one ordinal are merged); adding the same
    /// triple twice is harmless.
    ///
    /// Empty patterns and patterns in no class are refused, as is a total beyond 4 GiB.
    pub fn add(&mut self, pattern: &[u8], classes: u8, ordinal: u32) -> Result<(), SubstringError> {
        if pattern.is_empty() {
            return Err(SubstringError::Empty);
        }
        if classes == 0 {
            return Err(SubstringError::NoClass);
        }
        let start = u32::try_from(self.bytes.len()).map_err(|_| SubstringError::TooLarge)?;
        let len = u32::try_from(pattern.len()).map_err(|_| SubstringError::TooLarge)?;
        if start.checked_add(len).is_none() || self.entries.len() >= u32::MAX as usize {
            return Err(SubstringError::TooLarge);
        }
        self.bytes.extend_from_slice(pattern);
        self.entries.push((start, len, classes, ordinal));
        Ok(())
    }

    /// How many triples were added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Builds the index. Deterministic: the same triples, in any order, give the same arrays.
    pub fn build(self) -> SubstringIndex {
        let SubstringBuilder { bytes, mut entries } = self;
        let pat = |e: &(u32, u32, u8, u32)| &bytes[e.0 as usize..(e.0 + e.1) as usize];
        entries.sort_unstable_by(|a, b| pat(a).cmp(pat(b)).then(a.3.cmp(&b.3)));

        let mut index = Columns {
            patterns: Vec::new(),
            blob: Vec::with_capacity(bytes.len()),
            ord_start: vec![0],
            ords: Vec::with_capacity(entries.len()),
            ord_classes: Vec::with_capacity(entries.len()),
        };
        // Distinct patterns in byte order, each with its ordinals ascending, classes merged.
        let mut previous: Option<&[u8]> = None;
        for e in &entries {
            let p = pat(e);
            if previous != Some(p) {
                if previous.is_some() {
                    index.ord_start.push(index.ords.len() as u32);
                }
                let start = index.blob.len() as u32;
                index.blob.extend_from_slice(p);
                index.patterns.push([start, index.blob.len() as u32, 0]);
                previous = Some(p);
            } else if index.ords.last() == Some(&e.3) {
                *index.ord_classes.last_mut().expect("an ordinal") |= e.2;
                index.patterns.last_mut().expect("a pattern")[2] |= e.2 as u32;
                continue;
            }
            index.ords.push(e.3);
            index.ord_classes.push(e.2);
            index.patterns.last_mut().expect("a pattern")[2] |= e.2 as u32;
        }
        if previous.is_some() {
            index.ord_start.push(index.ords.len() as u32);
        }
        let expand = expand_tiny(&index.patterns);
        let tiers = [0, 1, 2].map(|t| Tier::build(&index.patterns, &index.blob, t, expand));
        let mut index = SubstringIndex {
            tiers,
            patterns: index.patterns.into(),
            blob: index.blob.into(),
            ord_start: index.ord_start.into(),
            ords: index.ords.into(),
            ord_classes: index.ord_classes.into(),
            derived: Derived::default(),
            short: OnceLock::new(),
        };
        index.derived = index.derive().expect("the builder's own arrays are valid");
        index.short();
        debug_assert_eq!(index.validate(), Ok(()));
        index
    }
}

/// The arrays of a [`SubstringIndex`] while it is built.
struct Columns {
    patterns: Vec<[u32; 3]>,
    blob: Vec<u8>,
    ord_start: Vec<u32>,
    ords: Vec<u32>,
    ord_classes: Vec<u8>,
}

/// A pattern of a tier while building: its index and bytes.
type Member<'a> = (usize, &'a [u8]);

/// The windows a pattern may be represented by: their offsets must fit a byte.
fn window_offsets(pattern: &[u8], window: usize) -> std::ops::RangeInclusive<usize> {
    0..=(pattern.len() - window).min(MAX_WINDOW_OFFSET)
}

/// For every window each member may be represented by ([`window_offsets`]), how many members
/// contain it: one that many patterns share is likely common in telemetry too (`/wp-content/`)
/// and would make long probes. The counts of member `m` are `counts[first[m]..first[m + 1]]`.
///
/// Sorting (key, member, position) triples, first partitioned by hash so that each part sorts
/// in cache, is several times faster than a hash map once the windows number in millions.
fn window_counts(members: &[Member<'_>], w: usize) -> (Vec<usize>, Vec<u32>) {
    let windows = || {
        members.iter().enumerate().flat_map(move |(m, &(_, b))| {
            window_offsets(b, w).map(move |i| (key_at(b, i, w), m as u32))
        })
    };
    let part_of = |key: u64| (window_hash(key) >> 56) as usize;
    let mut first = Vec::with_capacity(members.len() + 1);
    first.push(0);
    for &(_, b) in members {
        first.push(first[first.len() - 1] + window_offsets(b, w).count());
    }
    let total = first[first.len() - 1];
    let mut parts = [0usize; 257];
    for (key, _) in windows() {
        parts[part_of(key) + 1] += 1;
    }
    for i in 1..parts.len() {
        parts[i] += parts[i - 1];
    }
    // The total is at most the pattern bytes, which fit a u32.
    let mut items = vec![(0u64, 0u32, 0u32); total];
    let mut next = parts;
    for (position, (key, m)) in windows().enumerate() {
        let part = part_of(key);
        items[next[part]] = (key, m, position as u32);
        next[part] += 1;
    }
    let mut counts = vec![0u32; total];
    for part in parts.windows(2) {
        let part = &mut items[part[0]..part[1]];
        part.sort_unstable();
        for run in part.chunk_by(|a, b| a.0 == b.0) {
            let members = 1 + run.windows(2).filter(|x| x[0].1 != x[1].1).count() as u32;
            for item in run {
                counts[item.2 as usize] = members;
            }
        }
    }
    (first, counts)
}

/// How common a byte is in URL and User-Agent text, from 0 (everywhere) to 8 (rare).
const fn byte_commonness_cost(b: u8) -> u32 {
    match b {
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' | b'/' | b'.' => 0,
        b'h' | b'l' | b'd' | b'c' | b'u' | b'm' | b'p' | b'0'..=b'2' => 1,
        b'f' | b'g' | b'w' | b'y' | b'b' | b'v' | b'-' | b'_' | b'=' | b'&' | b'?' | b' ' => 2,
        b'3'..=b'9' | b'%' | b';' | b'(' | b')' | b',' | b':' => 3,
        b'k' | b'x' | b'j' | b'q' | b'z' => 4,
        b'A'..=b'Z' | b'+' | b'~' => 5,
        0x21..=0x7e => 6,
        _ => 8,
    }
}

/// Cost of looking for window `key` (lower is better): the log of how many patterns contain
/// it, minus how unusual its bytes are, in sixteenths of a bit.
fn window_cost(key: u64, width: usize, patterns_with_it: u32) -> i64 {
    let rarity: u32 = key.to_le_bytes()[..width]
        .iter()
        .map(|&b| byte_commonness_cost(b))
        .sum();
    log2_16(patterns_with_it) * 2 - (rarity as i64) * 16
}

/// `16 * log2(n)`, roughly (integer arithmetic keeps builds identical on every platform).
fn log2_16(n: u32) -> i64 {
    let n = n.max(1);
    let whole = 31 - n.leading_zeros();
    let frac = if whole >= 4 {
        (n >> (whole - 4)) & 15
    } else {
        (n << (4 - whole)) & 15
    };
    (whole * 16 + frac) as i64
}

/// The windows of one width: a blocked Bloom filter over their keys, and a hash table of
/// them (compact fingerprint slots in front of the entries).
#[derive(Clone, Debug, Default)]
struct Tier {
    /// [`filter_words`] words; word [`filter_word`] of every entry's hash has its
    /// [`filter_mask`] bits set.
    filter: Arr<u64>,
    /// [`table_slots`] slots, each [`EMPTY`] or `fingerprint << 32 | entry`: entry `e` sits
    /// at the first free slot at or after (cyclically) slot `hash >> (64 - log2(slots))`,
    /// entries inserted in order. Linear probing in a table at most half full, with 8-byte
    /// slots, keeps a lookup of an absent window to about one cache line.
    slots: Arr<u64>,
    /// The entries (see [`Entry`]), in ascending order: [`STRIDE`] (adjacent offsets) per
    /// pattern of the tier.
    entries: Arr<Entry>,
}

/// `[key | offset << 56 (low half, high half), head (low half, high half), pattern, pattern
/// length]`: a window key, its offset in the pattern, the pattern's first (up to) 8 bytes,
/// its index and length. The head settles most comparisons without touching the pattern bytes
/// (all of them for patterns of at most 8 bytes).
type Entry = [u32; 6];

/// A free slot.
const EMPTY: u64 = u64::MAX;

/// An entry's key and window offset.
#[inline(always)]
fn entry_key_offset(e: &Entry) -> (u64, usize) {
    let v = e[0] as u64 | (e[1] as u64) << 32;
    (v & KEY_MASK, (v >> 56) as usize)
}

/// An entry's head: the first `min(8, length)` bytes of its pattern.
#[inline(always)]
fn entry_head(e: &Entry) -> u64 {
    e[2] as u64 | (e[3] as u64) << 32
}

/// The entry for the window at `offset` of pattern `p`.
fn entry_of(pattern: &[u8], p: usize, offset: usize, window: usize) -> Entry {
    entry(pattern, p, key_at(pattern, offset, window), offset)
}

/// The entry for the narrow window of an expanded tiny pattern `p` that starts one byte, `x`,
/// before it.
fn entry_before(pattern: &[u8], p: usize, x: u8) -> Entry {
    let key = (key_at(pattern, 0, NARROW_WINDOW - 1) << 8 | x as u64) & NARROW_KEY_MASK;
    entry(pattern, p, key, BEFORE)
}

const NARROW_KEY_MASK: u64 = (1 << (8 * NARROW_WINDOW)) - 1;

fn entry(pattern: &[u8], p: usize, key: u64, offset: usize) -> Entry {
    let v = key | (offset as u64) << 56;
    let head = key_at(pattern, 0, pattern.len().min(8));
    [
        v as u32,
        (v >> 32) as u32,
        head as u32,
        (head >> 32) as u32,
        p as u32,
        pattern.len() as u32,
    ]
}

/// The fingerprint of a window hash in its slot (bits the slot index does not use).
#[inline(always)]
fn fingerprint(h: u64) -> u32 {
    (h >> 8) as u32
}

/// Window keys are at most 7 bytes; the top byte of an entry's first word is the offset.
const KEY_MASK: u64 = (1 << 56) - 1;
/// Windows are chosen among the first offsets of a pattern, so that the offset fits a byte.
const MAX_WINDOW_OFFSET: usize = 254;
/// The offset byte of a window that starts one byte before its (expanded tiny) pattern.
const BEFORE: usize = 255;

/// Slots for `entries` entries: a power of two, at most half full, at least one free.
fn table_slots(entries: usize) -> usize {
    (2 * entries + 1).next_power_of_two()
}

impl Tier {
    /// Chooses the windows of the patterns of tier `t` and builds its filter and table.
    fn build(patterns: &[[u32; 3]], blob: &[u8], t: usize, expand_tiny: bool) -> Tier {
        let shape = SHAPES[t];
        let w = shape.window;
        let (members, expanded): (Vec<Member<'_>>, Vec<Member<'_>>) = patterns
            .iter()
            .map(|p| &blob[p[0] as usize..p[1] as usize])
            .enumerate()
            .filter(|(_, b)| tier_of(b.len(), expand_tiny) == Some(t))
            .partition(|(_, b)| b.len() >= shape.min_len);
        let mut entries: Vec<Entry> = Vec::with_capacity(members.len() * STRIDE);
        for &(p, b) in &expanded {
            entries.push(entry_of(b, p, 0, w));
            entries.extend((0..=255).map(|x| entry_before(b, p, x)));
        }
        let (first, counts) = window_counts(&members, w);
        let mut costs: Vec<i64> = Vec::new();
        for (m, &(p, b)) in members.iter().enumerate() {
            costs.clear();
            costs.extend(
                counts[first[m]..first[m + 1]]
                    .iter()
                    .enumerate()
                    .map(|(i, &count)| window_cost(key_at(b, i, w), w, count)),
            );
            // The run of STRIDE adjacent windows whose worst window is cheapest.
            let offset = (0..=costs.len() - STRIDE)
                .min_by_key(|&o| {
                    let run = &costs[o..o + STRIDE];
                    (
                        *run.iter().max().expect("a run"),
                        run.iter().sum::<i64>(),
                        o,
                    )
                })
                .expect("a tier pattern holds STRIDE windows");
            entries.extend((offset..offset + STRIDE).map(|o| entry_of(b, p, o, w)));
        }
        entries.sort_unstable();
        let (filter, slots) = Tier::index(&entries, shape);
        debug_assert!(entries.windows(2).all(|e| e[0] < e[1]));
        Tier {
            filter: filter.into(),
            slots: slots.into(),
            entries: entries.into(),
        }
    }

    /// The filter and slots of `entries`.
    fn index(entries: &[Entry], shape: TierShape) -> (Vec<u64>, Vec<u64>) {
        let n = table_slots(entries.len());
        let shift = 64 - n.trailing_zeros();
        let words = filter_words(entries.len(), shape);
        let mut filter = vec![0u64; words];
        let mut slots = vec![EMPTY; n];
        for (i, e) in entries.iter().enumerate() {
            let h = window_hash(entry_key_offset(e).0);
            filter[filter_word(h, 64 - words.trailing_zeros())] |= filter_mask(h, shape.two_bits);
            let mut s = (h >> shift) as usize;
            while slots[s] != EMPTY {
                s = (s + 1) & (n - 1);
            }
            slots[s] = (fingerprint(h) as u64) << 32 | i as u64;
        }
        (filter, slots)
    }

    fn write(&self, w: &mut SectionWriter) {
        w.put(&self.filter);
        w.put(&self.slots);
        w.put(&self.entries);
    }

    fn read(r: &mut SectionReader) -> Result<Tier, FormatError> {
        Ok(Tier {
            filter: r.take(STRUCTURE)?,
            slots: r.take(STRUCTURE)?,
            entries: r.take(STRUCTURE)?,
        })
    }

    fn heap_bytes(&self) -> usize {
        self.filter.len() * 8 + self.slots.len() * 8 + self.entries.len() * size_of::<Entry>()
    }

    /// What a lookup needs to know beyond the arrays; checks only what computing it needs.
    fn shape(&self, shape: TierShape) -> Result<TierDerived, FormatError> {
        let n = self.entries.len();
        if self.filter.len() != filter_words(n, shape) || self.slots.len() != table_slots(n) {
            return Err(FormatError::new(
                STRUCTURE,
                format!("{} tier: array lengths do not fit {n} entries", shape.name),
            ));
        }
        Ok(TierDerived {
            word_shift: 64 - self.filter.len().trailing_zeros(),
            slot_shift: 64 - self.slots.len().trailing_zeros(),
            on: n > 0,
        })
    }

    /// Checks tier `t`'s table against the patterns: every entry is its pattern's window,
    /// every pattern of the tier has exactly its windows ([`STRIDE`] adjacent ones, or those of
    /// an expanded tiny pattern), and the filter and slots are exactly those the entries make.
    fn validate(
        &self,
        t: usize,
        expand_tiny: bool,
        patterns: &[[u32; 3]],
        blob: &[u8],
    ) -> Result<(), FormatError> {
        let shape = SHAPES[t];
        let err = |r: String| Err(FormatError::new(STRUCTURE, format!("{}: {r}", shape.name)));
        let w = shape.window;
        let mut windows: Vec<(usize, usize)> = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            let p = e[4] as usize;
            let Some(&[start, end, _]) = patterns.get(p) else {
                return err(format!("entry {i} names pattern {p} of {}", patterns.len()));
            };
            let Some(pattern) = blob.get(start as usize..end as usize) else {
                return err(format!("pattern {p} outside the blob"));
            };
            let (key, offset) = entry_key_offset(e);
            let expected = if pattern.len() < shape.min_len && offset == BEFORE {
                entry_before(pattern, p, key as u8)
            } else if offset != BEFORE && offset + w <= pattern.len() {
                entry_of(pattern, p, offset, w)
            } else {
                return err(format!("entry {i} lies outside pattern {p}"));
            };
            if tier_of(pattern.len(), expand_tiny) != Some(t) || *e != expected {
                return err(format!("entry {i} is not a window of pattern {p}"));
            }
            if i > 0 && self.entries[i - 1] >= *e {
                return err(format!("entry {i} out of order"));
            }
            windows.push((p, offset));
        }
        let (filter, slots) = Tier::index(&self.entries, shape);
        if slots[..] != self.slots[..] {
            return err("slots are not those the entries make".into());
        }
        if filter[..] != self.filter[..] {
            return err("filter is not the one the entries make".into());
        }
        // The windows of each pattern, against what the pattern's length requires.
        windows.sort_unstable();
        let mut runs = windows.chunk_by(|a, b| a.0 == b.0);
        let members = patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| tier_of((p[1] - p[0]) as usize, expand_tiny) == Some(t));
        for (p, range) in members {
            let Some(run) = runs.next() else {
                return err(format!("pattern {p} has no windows"));
            };
            let complete = if ((range[1] - range[0]) as usize) < shape.min_len {
                // Distinct entries, each checked above: 256 of them are every byte before.
                run.len() == 257 && run[0] == (p, 0) && run[1..].iter().all(|&w| w == (p, BEFORE))
            } else {
                run.len() == STRIDE
                    && run
                        .iter()
                        .enumerate()
                        .all(|(k, &(q, o))| q == p && o == run[0].1 + k)
            };
            if !complete {
                return err(format!("pattern {p} lacks some of its windows"));
            }
        }
        if runs.next().is_some() {
            return err("windows of patterns outside the tier".into());
        }
        Ok(())
    }
}

/// What a lookup in one tier needs beyond its arrays.
#[derive(Clone, Copy, Debug, Default)]
struct TierDerived {
    /// `64 - log2(filter words)`.
    word_shift: u32,
    /// `64 - log2(table slots)`.
    slot_shift: u32,
    /// Whether the tier has any entry.
    on: bool,
}

/// Values computed from the stored arrays' lengths when the index is built or read.
#[derive(Clone, Debug, Default)]
struct Derived {
    tiers: [TierDerived; 3],
}

/// The automaton over the patterns of at most [`SHORT_MAX_LEN`] bytes, built on first use
/// (a load does not pay for it) from the stored patterns.
#[derive(Clone, Debug, Default)]
struct Short {
    /// The patterns of the automaton, in its order.
    ids: Vec<u32>,
    /// Over the short patterns; `None` when there are none (or, for a snapshot that
    /// `validate` refuses, when they make no automaton).
    ac: Option<AhoCorasick>,
}

/// An immutable set of substring patterns; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct SubstringIndex {
    /// The windows of the patterns of each tier ([`SHAPES`]).
    tiers: [Tier; 3],
    /// Per pattern `[blob start, blob end, classes]`, distinct patterns in byte order; the
    /// classes are the union of those of its ordinals.
    patterns: Arr<[u32; 3]>,
    /// The pattern bytes, back to back.
    blob: Arr<u8>,
    /// CSR: the ordinals of pattern `p` are `ords[ord_start[p]..ord_start[p + 1]]`.
    ord_start: Arr<u32>,
    /// Ordinals, strictly ascending within each pattern.
    ords: Arr<u32>,
    /// The classes of each entry of `ords`.
    ord_classes: Arr<u8>,
    derived: Derived,
    short: OnceLock<Short>,
}

/// Pattern ids found so far, kept in `out[base..]` and compacted when they pile up (a pattern
/// may occur at many positions of a long haystack).
struct Found {
    base: usize,
    compact_at: usize,
}

impl Found {
    #[inline]
    fn push(&mut self, out: &mut Vec<u32>, pattern: u32) {
        if out.len() > self.base && out[out.len() - 1] == pattern {
            return;
        }
        out.push(pattern);
        if out.len() - self.base >= self.compact_at {
            sort_dedup_tail(out, self.base);
            self.compact_at = 2 * (out.len() - self.base) + 64;
        }
    }
}

/// Sorts `out[base..]` and removes its duplicates, leaving `out[..base]` alone.
fn sort_dedup_tail(out: &mut Vec<u32>, base: usize) {
    let tail = &mut out[base..];
    if tail.len() < 2 {
        return;
    }
    tail.sort_unstable();
    let mut w = 1;
    for r in 1..tail.len() {
        if tail[r] != tail[w - 1] {
            tail[w] = tail[r];
            w += 1;
        }
    }
    out.truncate(base + w);
}

/// Whether the filter passes the window `key`.
#[inline(always)]
fn passes(filter: &[u64], shift: u32, key: u64, two_bits: bool) -> bool {
    let h = window_hash(key);
    let m = filter_mask(h, two_bits);
    filter
        .get(filter_word(h, shift))
        .is_some_and(|&word| word & m == m)
}

/// The key of the `width`-byte window at the start of the 8-byte word `word`.
#[inline(always)]
fn key_in(word: u64, width: usize) -> u64 {
    word & ((1 << (8 * width)) - 1)
}

impl SubstringIndex {
    /// Appends to `out` the ordinal of every pattern in one of `classes` that occurs in
    /// `haystack`, each once, in ascending order (after whatever `out` already held).
    pub fn find(&self, haystack: &[u8], classes: u8, out: &mut Vec<u32>) {
        let mut found = Found {
            base: out.len(),
            compact_at: 64,
        };
        let (h, c, f, o) = (haystack, classes, &mut found, &mut *out);
        match self.derived.tiers.map(|t| t.on) {
            [true, true, true] => self.scan::<true, true, true>(h, c, f, o),
            [true, true, false] => self.scan::<true, true, false>(h, c, f, o),
            [true, false, true] => self.scan::<true, false, true>(h, c, f, o),
            [true, false, false] => self.scan::<true, false, false>(h, c, f, o),
            [false, true, true] => self.scan::<false, true, true>(h, c, f, o),
            [false, true, false] => self.scan::<false, true, false>(h, c, f, o),
            [false, false, true] => self.scan::<false, false, true>(h, c, f, o),
            [false, false, false] => {}
        }
        let short = self.short();
        if let Some(ac) = &short.ac {
            for m in ac.find_overlapping_iter(haystack) {
                let Some(&p) = short.ids.get(m.pattern().as_usize()) else {
                    continue;
                };
                if self
                    .patterns
                    .get(p as usize)
                    .is_some_and(|e| e[2] as u8 & classes != 0)
                {
                    found.push(out, p);
                }
            }
        }
        self.expand(found.base, classes, out);
    }

    /// Probes the tiers that are on at every [`STRIDE`]-th position of `hay`.
    #[inline(always)]
    fn scan<const WIDE_ON: bool, const NARROW_ON: bool, const TINY_ON: bool>(
        &self,
        hay: &[u8],
        classes: u8,
        found: &mut Found,
        out: &mut Vec<u32>,
    ) {
        let on = [WIDE_ON, NARROW_ON, TINY_ON];
        let filters =
            [0, 1, 2].map(|t| (&self.tiers[t].filter[..], self.derived.tiers[t].word_shift));
        let n = hay.len();
        let mut i = 0;
        // Eight bytes at a time while they fit, then the last windows one by one.
        while i + 8 <= n {
            let word = u64::from_le_bytes(hay[i..i + 8].try_into().expect("8 bytes"));
            for t in 0..3 {
                if on[t] {
                    let key = key_in(word, SHAPES[t].window);
                    if passes(filters[t].0, filters[t].1, key, SHAPES[t].two_bits) {
                        self.probe(t, key, i, hay, classes, found, out);
                    }
                }
            }
            i += STRIDE;
        }
        while i + TINY_WINDOW <= n {
            for t in 0..3 {
                if on[t] && i + SHAPES[t].window <= n {
                    let key = key_at(hay, i, SHAPES[t].window);
                    if passes(filters[t].0, filters[t].1, key, SHAPES[t].two_bits) {
                        self.probe(t, key, i, hay, classes, found, out);
                    }
                }
            }
            i += STRIDE;
        }
    }

    /// Looks `key`, the window at `at`, up in a tier's table and compares its patterns.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn probe(
        &self,
        tier: usize,
        key: u64,
        at: usize,
        hay: &[u8],
        classes: u8,
        found: &mut Found,
        out: &mut Vec<u32>,
    ) {
        let (Some(derived), Some(tier)) = (self.derived.tiers.get(tier), self.tiers.get(tier))
        else {
            return;
        };
        let h = window_hash(key);
        let fp = fingerprint(h);
        let (slots, entries) = (&tier.slots[..], &tier.entries[..]);
        let mask = slots.len().wrapping_sub(1);
        let mut s = h.checked_shr(derived.slot_shift).unwrap_or(0) as usize;
        // A valid table always has a free slot, which ends the walk; a crafted one without
        // is walked once round.
        let mut steps = slots.len();
        while let Some(&slot) = slots.get(s)
            && slot != EMPTY
            && steps > 0
        {
            steps -= 1;
            s = (s + 1) & mask;
            if (slot >> 32) as u32 != fp {
                continue;
            }
            let Some(e) = entries.get(slot as u32 as usize) else {
                continue;
            };
            let (k, offset) = entry_key_offset(e);
            if k != key {
                continue;
            }
            let start = if offset == BEFORE {
                at.checked_add(1)
            } else {
                at.checked_sub(offset)
            };
            let Some(window) = start.and_then(|start| hay.get(start..start + e[5] as usize)) else {
                continue;
            };
            let head = window.len().min(8);
            if key_at(window, 0, head) != entry_head(e) {
                continue;
            }
            let p = e[4] as usize;
            let Some(&[start, end, pattern_classes]) = self.patterns.get(p) else {
                continue;
            };
            if pattern_classes as u8 & classes == 0 {
                continue;
            }
            if head == window.len()
                || self.blob.get(start as usize + head..end as usize) == Some(&window[head..])
            {
                found.push(out, p as u32);
            }
        }
    }

    /// Replaces the pattern ids in `out[base..]` by their ordinals in `classes`.
    fn expand(&self, base: usize, classes: u8, out: &mut Vec<u32>) {
        sort_dedup_tail(out, base);
        let np = out.len() - base;
        if np == 0 {
            return;
        }
        let (ord_start, ords, ord_classes) =
            (&self.ord_start[..], &self.ords[..], &self.ord_classes[..]);
        for k in 0..np {
            let p = out[base + k] as usize;
            let lo = ord_start.get(p).copied().unwrap_or(0) as usize;
            let hi = ord_start.get(p + 1).copied().unwrap_or(0) as usize;
            // Out of order or range only in a file `validate` refuses: then nothing or the
            // part in range, never a walk over offsets that hold nothing.
            let (Some(ords), Some(ord_classes)) = (ords.get(lo..hi), ord_classes.get(lo..hi))
            else {
                continue;
            };
            for (&o, &c) in ords.iter().zip(ord_classes) {
                if c & classes != 0 {
                    out.push(o);
                }
            }
        }
        out.drain(base..base + np);
        if np > 1 {
            sort_dedup_tail(out, base);
        }
    }

    /// How many distinct patterns the index holds.
    pub fn patterns_len(&self) -> usize {
        self.patterns.len()
    }

    /// How many (pattern, ordinal) pairs the index holds.
    pub fn ordinals_len(&self) -> usize {
        self.ords.len()
    }

    /// Bytes of all arrays, the rebuilt short-pattern automaton included.
    pub fn heap_bytes(&self) -> usize {
        self.tiers.iter().map(Tier::heap_bytes).sum::<usize>()
            + self.patterns.len() * 12
            + self.blob.len()
            + self.ord_start.len() * 4
            + self.ords.len() * 4
            + self.ord_classes.len()
            + self.short().ids.len() * 4
            + self.short().ac.as_ref().map_or(0, |a| a.memory_usage())
    }

    /// Computes what lookups need beyond the arrays, from their lengths; checks only what
    /// that needs, and that the ordinal lists fit the patterns (O(1)).
    fn derive(&self) -> Result<Derived, FormatError> {
        let mut tiers = [TierDerived::default(); 3];
        for t in 0..3 {
            tiers[t] = self.tiers[t].shape(SHAPES[t])?;
        }
        if self.ord_start.len() != self.patterns.len() + 1
            || self.ord_start.first() != Some(&0)
            || self.ord_start.last().map(|&l| l as usize) != Some(self.ords.len())
            || self.ord_classes.len() != self.ords.len()
        {
            return Err(FormatError::new(
                STRUCTURE,
                "ordinal lists do not match the patterns",
            ));
        }
        Ok(Derived { tiers })
    }

    /// The short-pattern automaton, built on first use.
    fn short(&self) -> &Short {
        self.short
            .get_or_init(|| self.build_short().unwrap_or_default())
    }

    fn build_short(&self) -> Result<Short, FormatError> {
        let mut ids = Vec::new();
        let mut shorts: Vec<&[u8]> = Vec::new();
        for (p, &[start, end, _]) in self.patterns.iter().enumerate() {
            let bytes = self.blob.get(start as usize..end as usize).unwrap_or(&[]);
            if (1..=SHORT_MAX_LEN).contains(&bytes.len()) {
                ids.push(p as u32);
                shorts.push(bytes);
            }
        }
        let ac = if shorts.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&shorts)
                    .map_err(|e| FormatError::new(STRUCTURE, e))?,
            )
        };
        Ok(Short { ids, ac })
    }

    /// Checks every invariant [`find`](Self::find) relies on, and that the arrays are exactly
    /// what [`SubstringBuilder::build`] makes of their patterns; `Err` names the first broken
    /// one.
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), FormatError> {
        self.check().map(drop)
    }

    /// [`validate`](Self::validate), returning the derived values on success.
    fn check(&self) -> Result<Derived, FormatError> {
        let d = self.derive()?;
        let err = |r: String| Err(FormatError::new(STRUCTURE, r));
        // Patterns: contiguous, non-empty blob ranges covering the blob, strictly ascending.
        let mut at = 0u32;
        for (p, &[start, end, _]) in self.patterns.iter().enumerate() {
            if start != at || end <= start {
                return err(format!("pattern {p} does not follow its predecessor"));
            }
            at = end;
        }
        if at as usize != self.blob.len() {
            return err("pattern ranges do not cover the blob".into());
        }
        let bytes = |p: &[u32; 3]| &self.blob[p[0] as usize..p[1] as usize];
        if self
            .patterns
            .windows(2)
            .any(|w| bytes(&w[0]) >= bytes(&w[1]))
        {
            return err("patterns not distinct and in byte order".into());
        }
        // Ordinals: a non-empty, strictly ascending list per pattern, each in some class.
        if let Some(p) = self.ord_start.windows(2).position(|w| w[0] >= w[1]) {
            return err(format!("pattern {p} has no ordinal"));
        }
        for (p, w) in self.ord_start.windows(2).enumerate() {
            let ords = &self.ords[w[0] as usize..w[1] as usize];
            let classes = &self.ord_classes[w[0] as usize..w[1] as usize];
            if ords.windows(2).any(|o| o[0] >= o[1]) {
                return err(format!("ordinals of pattern {p} not strictly ascending"));
            }
            if classes.contains(&0) {
                return err(format!("an ordinal of pattern {p} is in no class"));
            }
            let union = classes.iter().fold(0u32, |u, &c| u | c as u32);
            if self.patterns[p][2] != union {
                return err(format!(
                    "classes of pattern {p} are not those of its ordinals"
                ));
            }
        }
        self.build_short()?;
        let expand = expand_tiny(&self.patterns);
        for (t, tier) in self.tiers.iter().enumerate() {
            tier.validate(t, expand, &self.patterns, &self.blob)?;
        }
        Ok(d)
    }
}

impl Sections for SubstringIndex {
    fn write_sections(&self, w: &mut SectionWriter) {
        for t in &self.tiers {
            t.write(w);
        }
        w.put(&self.patterns);
        w.put(&self.blob);
        w.put(&self.ord_start);
        w.put(&self.ords);
        w.put(&self.ord_classes);
    }

    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        let mut index = SubstringIndex {
            tiers: [Tier::read(r)?, Tier::read(r)?, Tier::read(r)?],
            patterns: r.take(STRUCTURE)?,
            blob: r.take(STRUCTURE)?,
            ord_start: r.take(STRUCTURE)?,
            ords: r.take(STRUCTURE)?,
            ord_classes: r.take(STRUCTURE)?,
            derived: Derived::default(),
            short: OnceLock::new(),
        };
        index.derived = index.derive()?;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obviously right answer: every added triple whose pattern occurs in the haystack and
    /// whose classes meet the query's, ordinals ascending and distinct.
    fn naive(triples: &[(Vec<u8>, u8, u32)], hay: &[u8], classes: u8) -> Vec<u32> {
        let mut out: Vec<u32> = triples
            .iter()
            .filter(|(p, c, _)| c & classes != 0 && hay.windows(p.len()).any(|w| w == &p[..]))
            .map(|t| t.2)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn build(triples: &[(Vec<u8>, u8, u32)]) -> SubstringIndex {
        let mut b = SubstringBuilder::new();
        for (p, c, o) in triples {
            b.add(p, *c, *o).expect("valid triple");
        }
        let index = b.build();
        index.validate().expect("built index is valid");
        index
    }

    fn find(index: &SubstringIndex, hay: &[u8], classes: u8) -> Vec<u32> {
        let mut out = Vec::new();
        index.find(hay, classes, &mut out);
        out
    }

    fn sections(index: &SubstringIndex) -> Vec<Vec<u8>> {
        let mut w = SectionWriter::new();
        index.write_sections(&mut w);
        w.sections
    }

    /// Loads the sections, searches whatever loads (which must not panic), then validates.
    fn read(sections: &[Vec<u8>]) -> Result<SubstringIndex, FormatError> {
        let slices: Vec<&[u8]> = sections.iter().map(|s| s.as_slice()).collect();
        let index = SubstringIndex::read_sections(&mut SectionReader::new(&slices))?;
        for h in [
            &b"/x1/gate7.php/abcdef"[..],
            b"/ab/abcd",
            b"/x59/gate413.php~01~",
        ] {
            find(&index, h, CLASS_ALL);
        }
        index.validate()?;
        Ok(index)
    }

    fn t(p: &[u8], c: u8, o: u32) -> (Vec<u8>, u8, u32) {
        (p.to_vec(), c, o)
    }

    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SubstringIndex>();
        assert_send_sync::<SubstringBuilder>();
    }

    #[test]
    fn refuses_empty_and_classless_patterns() {
        let mut b = SubstringBuilder::new();
        assert_eq!(b.add(b"", CLASS_URL, 1), Err(SubstringError::Empty));
        assert_eq!(b.add(b"/x", 0, 1), Err(SubstringError::NoClass));
        assert!(b.is_empty());
        let index = b.build();
        assert_eq!(index.patterns_len(), 0);
        assert_eq!(
            find(&index, b"anything at all", CLASS_ALL),
            Vec::<u32>::new()
        );
        assert_eq!(find(&index, b"", CLASS_ALL), Vec::<u32>::new());
    }

    #[test]
    fn classes_of_kinds() {
        assert_eq!(classes_of(Kind::Uri), CLASS_URL);
        assert_eq!(classes_of(Kind::UrlSubstring), CLASS_URL);
        assert_eq!(classes_of(Kind::UserAgent), CLASS_USER_AGENT);
        assert_eq!(classes_of(Kind::Domain), 0);
    }

    /// More 4-byte patterns than [`TINY_EXPANSION_LIMIT`], so that the tiny tier is used.
    fn many_tiny() -> Vec<(Vec<u8>, u8, u32)> {
        (0..40u32)
            .map(|i| t(format!("~{i:02}~").as_bytes(), CLASS_URL, 1000 + i))
            .collect()
    }

    #[test]
    fn adversarial_table_with_expanded_tiny_patterns() {
        adversarial_table(false);
    }

    #[test]
    fn adversarial_table_with_a_tiny_tier() {
        adversarial_table(true);
    }

    /// Table-driven adversarial cases: every tier, every position parity, both ends of the
    /// haystack, overlapping patterns, repeated windows, non-UTF-8 bytes.
    fn adversarial_table(tiny_tier: bool) {
        let long_ua: Vec<u8> = b"Mozilla/5.0 (X11; Linux) "
            .iter()
            .copied()
            .cycle()
            .take(700)
            .chain(*b"EvilBot/1.0")
            .collect();
        let triples = vec![
            t(b"/", CLASS_URL, 0),
            t(b"ab", CLASS_URL, 1),
            t(b"abc", CLASS_URL, 2),
            t(b"abcd", CLASS_URL, 3),
            t(b"abcde", CLASS_URL, 4),
            t(b"bcdef", CLASS_URL, 5),
            t(b"abcdefg", CLASS_URL, 6),
            t(b"abcdefgh", CLASS_URL, 7),
            t(b"abcdefghi", CLASS_URL | CLASS_USER_AGENT, 8),
            t(b"aaaaaaaaaaaa", CLASS_URL, 9),
            t(b"abababababab", CLASS_URL, 10),
            t(b"/gate.php", CLASS_URL, 11),
            t(b"/gate.php", CLASS_USER_AGENT, 12),
            t(b"/gate.php", CLASS_URL, 13),
            t(b"\xff\xfe\x00\x01", CLASS_URL, 14),
            t(b"\x00\x00\x00\x00\x00\x00\x00\x00", CLASS_URL, 15),
            t(&long_ua, CLASS_USER_AGENT, 16),
            t(b"EvilBot/1.0", CLASS_USER_AGENT, 17),
            t(b"/gate.php", CLASS_URL, 11),
            t(b"xyz", CLASS_URL, 6),
        ];
        let mut triples = triples;
        if tiny_tier {
            triples.extend(many_tiny());
        }
        let index = build(&triples);
        assert_eq!(index.derived.tiers[2].on, tiny_tier);
        let mut hays: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"ab".to_vec(),
            b"abc".to_vec(),
            b"abcd".to_vec(),
            b"xabcd".to_vec(),
            b"abcdefghi".to_vec(),
            b"xabcdefghi".to_vec(),
            b"xxabcdefghix".to_vec(),
            b"aaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
            b"bababababababab".to_vec(),
            b"http://h.example/x/gate.php?gate.php".to_vec(),
            b"/gate.ph".to_vec(),
            b"\xff\xfe\x00\x01\xff".to_vec(),
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
            long_ua.clone(),
            [b"x".as_slice(), &long_ua].concat(),
            long_ua[1..].to_vec(),
        ];
        // Every pattern at every offset 0..3 inside and at the end of some junk.
        for (p, _, _) in &triples {
            for pad in 0..4 {
                let mut h = vec![b'.'; pad];
                h.extend_from_slice(p);
                hays.push(h.clone());
                h.extend_from_slice(b"-tail");
                hays.push(h);
            }
        }
        for hay in &hays {
            for classes in [CLASS_URL, CLASS_USER_AGENT, CLASS_ALL, 4] {
                assert_eq!(
                    find(&index, hay, classes),
                    naive(&triples, hay, classes),
                    "haystack {:?} classes {classes}",
                    String::from_utf8_lossy(hay)
                );
            }
        }
    }

    #[test]
    fn appends_after_existing_output_and_reports_each_ordinal_once() {
        let index = build(&[t(b"ab", CLASS_URL, 5), t(b"/gate.php", CLASS_URL, 5)]);
        let mut out = vec![9, 1];
        index.find(b"ab ab ab /gate.php /gate.php", CLASS_URL, &mut out);
        assert_eq!(out, [9, 1, 5]);
        // Many occurrences of many patterns: the pile of found patterns is compacted.
        let triples: Vec<_> = (0..300u32)
            .map(|i| t(format!("<{i}>").as_bytes(), CLASS_URL, i))
            .collect();
        let index = build(&triples);
        let hay: Vec<u8> = (0..20)
            .flat_map(|_| (0..300).flat_map(|i| format!("<{i}>").into_bytes()))
            .collect();
        assert_eq!(find(&index, &hay, CLASS_URL), (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn build_is_deterministic_whatever_the_order() {
        let triples: Vec<_> = (0..200u32)
            .map(|i| {
                t(
                    format!("/p{}/x{}.php", i % 37, i % 11).as_bytes(),
                    1 + (i % 3) as u8,
                    i % 50,
                )
            })
            .chain((0..30u32).map(|i| t(&[b'a' + (i % 5) as u8; 3][..1 + (i % 3) as usize], 1, i)))
            .collect();
        let forward = sections(&build(&triples));
        let mut reversed = triples.clone();
        reversed.reverse();
        assert_eq!(forward, sections(&build(&reversed)));
    }

    #[test]
    fn sections_round_trip() {
        let triples = vec![
            t(b"/gate.php", CLASS_URL, 1),
            t(b"/a", CLASS_URL, 2),
            t(b"/abc", CLASS_URL, 3),
            t(b"/wp-x.php", CLASS_URL, 4),
            t(b"Mozilla/4.0 (evil)", CLASS_USER_AGENT, 5),
        ];
        let index = build(&triples);
        let copy = read(&sections(&index)).expect("round trip");
        assert_eq!(sections(&copy), sections(&index));
        assert_eq!(copy.heap_bytes(), index.heap_bytes());
        let hay = b"/a/abc/gate.php?ua=Mozilla/4.0 (evil)";
        assert_eq!(find(&copy, hay, CLASS_ALL), [1, 2, 3, 5]);
        let empty = build(&[]);
        assert_eq!(
            sections(&read(&sections(&empty)).expect("empty")),
            sections(&empty)
        );
    }

    /// Sections: 3 tiers × (filter, slots, entries), patterns, blob, ord_start, ords,
    /// ord_classes.
    const SECTIONS: usize = 14;

    fn corruption_fixture(tiny_tier: bool) -> SubstringIndex {
        let mut triples: Vec<_> = (0..60u32)
            .map(|i| {
                t(
                    format!("/x{i}/gate{}.php", i * 7).as_bytes(),
                    1 + (i % 2) as u8,
                    i,
                )
            })
            .collect();
        triples.extend([
            t(b"/abcd", CLASS_URL, 100),
            t(b"/ab", CLASS_URL, 101),
            t(b"abcd", CLASS_URL, 102),
            t(b"/abcdef", CLASS_URL, 103),
        ]);
        if tiny_tier {
            triples.extend(many_tiny());
        }
        build(&triples)
    }

    #[test]
    fn truncated_or_missing_sections_are_refused() {
        for tiny_tier in [false, true] {
            truncated_or_missing(tiny_tier);
        }
    }

    fn truncated_or_missing(tiny_tier: bool) {
        let good = sections(&corruption_fixture(tiny_tier));
        assert_eq!(good.len(), SECTIONS);
        for i in 0..SECTIONS {
            let size = [8, 8, 24, 8, 8, 24, 8, 8, 24, 12, 1, 4, 4, 1][i];
            let mut bad = good.clone();
            if bad[i].is_empty() {
                continue;
            }
            let len = bad[i].len();
            bad[i].truncate(len - size);
            assert!(read(&bad).is_err(), "section {i} one value short");
            let mut bad = good.clone();
            bad[i].pop();
            assert!(read(&bad).is_err(), "section {i} one byte short");
            let mut bad = good.clone();
            bad[i].extend(std::iter::repeat_n(0, size));
            assert!(read(&bad).is_err(), "section {i} one value long");
        }
        assert!(read(&good[..SECTIONS - 1]).is_err());
    }

    #[test]
    fn flipped_bytes_are_refused_or_harmless() {
        for tiny_tier in [false, true] {
            flipped_bytes(tiny_tier);
        }
    }

    fn flipped_bytes(tiny_tier: bool) {
        let index = corruption_fixture(tiny_tier);
        let good = sections(&index);
        let hays: [&[u8]; 3] = [b"/x1/gate7.php/abcdef", b"/ab/abcd", b"/x59/gate413.php"];
        let mut refused = 0;
        let mut tried = 0;
        for i in 0..SECTIONS {
            for at in 0..good[i].len() {
                for bit in [0, 5] {
                    let mut bad = good.clone();
                    bad[i][at] ^= 1 << bit;
                    tried += 1;
                    match read(&bad) {
                        Err(_) => refused += 1,
                        Ok(other) => {
                            // Accepted: a different but consistent index (another ordinal, a
                            // pattern's later byte), which the snapshot's checksums catch;
                            // the structural arrays never get here.
                            assert!(
                                matches!(i, 10..=13),
                                "flip in section {i} byte {at} accepted"
                            );
                            for h in hays {
                                find(&other, h, CLASS_ALL);
                            }
                        }
                    }
                }
            }
        }
        assert!(
            refused * 10 > tried * 9,
            "only {refused} of {tried} flips refused"
        );
    }

    #[test]
    fn validate_names_broken_invariants() {
        let index = corruption_fixture(false);
        let mut bad = index.clone();
        bad.tiers[0].filter.edit(|f| f[0] ^= 1);
        assert!(bad.validate().is_err());
        let mut bad = index.clone();
        let s = bad.tiers[0]
            .slots
            .iter()
            .position(|&s| s != EMPTY)
            .expect("a slot");
        let n = bad.tiers[0].slots.len();
        bad.tiers[0].slots.edit(|slots| slots.swap(s, (s + 1) % n));
        assert!(bad.validate().is_err());
        let mut bad = index.clone();
        bad.tiers[1].entries.edit(|e| {
            e.pop();
        });
        assert!(bad.validate().is_err());
        let mut bad = index.clone();
        bad.patterns.edit(|p| p[0][2] = 0);
        assert!(bad.validate().is_err());
        let mut bad = index.clone();
        bad.ord_classes.edit(|c| c[0] = 0);
        assert!(bad.validate().is_err());
        let mut bad = index.clone();
        bad.patterns.edit(|p| p.swap(0, 1));
        assert!(bad.validate().is_err());
    }

    /// Bytes that make patterns overlap and recur: a small alphabet with a separator and two
    /// bytes that are not UTF-8.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            6 => prop::sample::select(b"ab/.".to_vec()),
            1 => prop::sample::select(vec![0u8, 0xff, b'z']),
        ]
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(byte(), 0..=max)
    }

    /// Triples whose patterns are 1–20 bytes (most short), some the same, some prefixes and
    /// suffixes of others.
    fn triples() -> impl Strategy<Value = Vec<(Vec<u8>, u8, u32)>> {
        let one = (
            prop_oneof![3 => bytes(6), 2 => bytes(12), 1 => bytes(20)],
            1u8..=3,
            0u32..40,
        );
        prop::collection::vec(one, 0..24).prop_map(|mut ts| {
            ts.retain(|t| !t.0.is_empty());
            let extra: Vec<_> = ts
                .iter()
                .enumerate()
                .filter(|(i, t)| i % 3 == 0 && t.0.len() > 2)
                .map(|(i, t)| {
                    let cut = 1 + i % (t.0.len() - 1);
                    let part = if i % 2 == 0 { &t.0[..cut] } else { &t.0[cut..] };
                    (part.to_vec(), t.1, t.2 + 1)
                })
                .collect();
            ts.extend(extra);
            ts
        })
    }

    /// A haystack made of pieces of the patterns (so that they occur, at every parity)
    /// joined by junk.
    fn haystack(triples: &[(Vec<u8>, u8, u32)], junk: &[Vec<u8>], picks: &[usize]) -> Vec<u8> {
        let mut h = Vec::new();
        for (k, &i) in picks.iter().enumerate() {
            h.extend_from_slice(&junk[k % junk.len()]);
            if let Some((p, _, _)) = triples.get(i % triples.len().max(1)) {
                h.extend_from_slice(p);
            }
        }
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6_000))]

        #[test]
        fn finds_what_the_naive_scan_finds(
            triples in triples(),
            junk in prop::collection::vec(bytes(5), 1..4),
            picks in prop::collection::vec(0usize..64, 0..6),
            random in bytes(40),
            classes in prop_oneof![Just(CLASS_ALL), 1u8..=4],
        ) {
            let index = build(&triples);
            let hay = haystack(&triples, &junk, &picks);
            prop_assert_eq!(find(&index, &hay, classes), naive(&triples, &hay, classes));
            prop_assert_eq!(find(&index, &random, classes), naive(&triples, &random, classes));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_500))]

        /// Enough 4-byte patterns for the tiny tier, among shorter and longer ones.
        #[test]
        fn with_a_tiny_tier(
            tiny in prop::collection::vec(prop::collection::vec(byte(), 4), 33..60),
            others in triples(),
            hay in bytes(60),
            classes in prop_oneof![Just(CLASS_ALL), 1u8..=3],
        ) {
            let mut triples = others;
            triples.extend(tiny.into_iter().enumerate().map(|(i, p)| (p, 1 + (i % 3) as u8, i as u32)));
            let index = build(&triples);
            let pieces = haystack(&triples, std::slice::from_ref(&hay), &[3, 40, 7, 59]);
            prop_assert_eq!(find(&index, &hay, classes), naive(&triples, &hay, classes));
            prop_assert_eq!(find(&index, &pieces, classes), naive(&triples, &pieces, classes));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        /// Longer patterns over a wider alphabet (the wide tier, offsets far into patterns),
        /// through a round trip of the sections.
        #[test]
        fn long_patterns_after_a_round_trip(
            seeds in prop::collection::vec(
                (prop::collection::vec(prop::sample::select(b"abcdefgh/.?=&0123".to_vec()), 8..300), 1u8..=3, 0u32..1000),
                1..12,
            ),
            picks in prop::collection::vec((0usize..12, 0usize..300, 1usize..40), 0..6),
            junk in bytes(9),
            classes in prop_oneof![Just(CLASS_ALL), 1u8..=3],
        ) {
            let index = read(&sections(&build(&seeds))).expect("round trip");
            // Whole patterns and slices of them (near misses), at varied offsets.
            let mut hay = junk.clone();
            for &(i, from, len) in &picks {
                let p = &seeds[i % seeds.len()].0;
                hay.extend_from_slice(if len % 3 == 0 { p } else { &p[from.min(p.len() - 1)..(from + len).min(p.len())] });
                hay.extend_from_slice(&junk[..junk.len().min(len % 4)]);
            }
            prop_assert_eq!(find(&index, &hay, classes), naive(&seeds, &hay, classes));
        }
    }
}
