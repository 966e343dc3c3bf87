//! Matching: telemetry batches against a [`CompiledIndex`], one batch at a time, purely.
//!
//! A [`Matcher`] resolves a [`FieldMap`] against a batch's columns, normalises each value with
//! the same functions as indicators (FORMATS.md §6), looks it up by the field's kind, and keeps
//! the hits whose indicator is valid at the event's own time (at match time when the row has
//! none) and whose port constraint the row meets. What a field kind is compared with:
//!
//! | field kind | indicators |
//! |---|---|
//! | `ip` | ipv4, ipv6, cidr (every covering network), `ip:port` with the field's port |
//! | `domain` | domain (itself and subdomains), hostname (exact); an IP literal as `ip` |
//! | `url` | url (scheme-insensitive `K2`, and `K2d` for decoded logs), url-substring and uri as substrings; its host as `domain` |
//! | `md5` `sha1` `sha256` `hash` | the digest kinds (`hash`: by length) |
//! | `email`, `ja3`, `ja3s`, `ja4` | exact |
//! | `user-agent` | user-agent substrings |
//! | `text` | every substring kind |
//!
//! Matching itself does no I/O. [`scan`] drives readers and matching over a thread pool and
//! hands hits, in input order, to a sink (the writers live in `hits`).

mod dead;
pub mod scan;
pub mod summary;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt16Type, UInt32Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::index::CompiledIndex;
use crate::index::substring::{CLASS_ALL, CLASS_URL, CLASS_USER_AGENT};
use crate::indicator::normalize;
use crate::indicator::{IndicatorId, Kind};
use crate::telemetry::cell::{self, scalar_text, timestamp_seconds};
use crate::telemetry::{FieldKind, FieldMap, TelemetryBatch, parse_time};
use dead::{DeadSet, Fingerprint};

/// One match of an indicator in a telemetry row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Ordinal of the indicator in the index.
    pub ord: IndicatorId,
    /// Index of the field in the [`FieldMap`].
    pub field: usize,
    /// The telemetry value as seen.
    pub value: String,
    /// 0-based data row within its input file.
    pub row: u64,
    /// Event time of the row (Unix seconds), when the map names a time field and it parsed.
    pub event_time: Option<i64>,
}

/// Matches batches against one index with one field map.
#[derive(Debug)]
pub struct Matcher<'a> {
    index: &'a CompiledIndex,
    fields: &'a FieldMap,
    now: i64,
    /// Lookups per dictionary entry, kept across batches: the batches of one Parquet row group
    /// share their dictionaries, so each distinct value is resolved once per row group rather
    /// than once per batch — also when two threads match batches of the same row group at
    /// once, since they share one cache.
    dicts: Mutex<Vec<Arc<DictCache>>>,
    /// Per field of a kind whose lookup costs more than a probe, resolutions of its plain (not
    /// dictionary-encoded) values for the whole scan; see [`Memo`].
    memos: Vec<Option<Memo>>,
    /// Per field, the values known to resolve to nothing, so that the dictionaries of later
    /// row groups (and the joined `host+uri` of later batches) resolve mostly by a probe in
    /// order; see [`dead`].
    dead: Vec<RwLock<DeadSet>>,
    /// The key of the fingerprints in `dead`, random per process.
    seed: u64,
}

/// Resolutions of one field's plain values, kept across batches and threads. Telemetry
/// repeats its values row after row (the same URLs, agents, e-mail addresses), so a column
/// that is not dictionary-encoded (JSON lines, CSV, Zeek logs) is parsed and normalised once
/// per distinct value instead of once per row. (Dictionary columns are resolved once per
/// dictionary instead, with the values known dead remembered in a [`DeadSet`].)
///
/// A flat open-addressed table per shard: each slot is one cache line holding the value's
/// 64-bit hash, the value itself when it is short (most e-mail addresses, many URLs; slots of
/// two lines, for longer URLs, measured no faster) and what it resolved to, so that a hit on a
/// value no indicator concerns — almost every hit — costs one hash and one cache line. Longer
/// values live in the shard's arena. Keyed with a random seed, so that hostile telemetry cannot
/// aim values at one run of slots; bounded: a shard that is full is emptied and fills again.
struct Memo {
    seed: u64,
    shards: Box<[Mutex<MemoShard>]>,
    /// Per shard: slots (a power of two) and bytes of long values at most.
    max_slots: usize,
    max_long: usize,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// One slot of a [`MemoShard`]: a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct MemoSlot {
    hash: u64,
    /// The value's length; [`MemoSlot::EMPTY`] for a free slot.
    len: u32,
    /// What the value resolved to: a number in [`MemoShard::live`], or
    /// [`MemoSlot::DEAD`] for nothing.
    res: u32,
    /// The value when it fits; otherwise its offset in [`MemoShard::long`] (first four bytes).
    bytes: [u8; MemoSlot::INLINE],
}

impl MemoSlot {
    const INLINE: usize = 48;
    const EMPTY: u32 = u32::MAX;
    const DEAD: u32 = u32::MAX;
    const FREE: MemoSlot = MemoSlot {
        hash: 0,
        len: MemoSlot::EMPTY,
        res: MemoSlot::DEAD,
        bytes: [0; MemoSlot::INLINE],
    };
}

/// One shard of a [`Memo`].
#[derive(Default)]
struct MemoShard {
    /// A power of two long (or empty), at most three quarters used.
    slots: Vec<MemoSlot>,
    used: usize,
    /// Values longer than [`MemoSlot::INLINE`].
    long: Vec<u8>,
    /// The resolutions of live values.
    live: Resolutions,
}

impl MemoShard {
    /// The value slot `s` holds.
    #[inline]
    fn value<'s>(&'s self, s: &'s MemoSlot) -> &'s [u8] {
        let len = s.len as usize;
        if len <= MemoSlot::INLINE {
            &s.bytes[..len]
        } else {
            let off = u32::from_le_bytes([s.bytes[0], s.bytes[1], s.bytes[2], s.bytes[3]]);
            &self.long[off as usize..off as usize + len]
        }
    }

    /// The slot holding `v` (`Ok`), or the free slot where it belongs (`Err`); the table must
    /// have a free slot.
    #[inline]
    fn find(&self, hash: u64, v: &[u8]) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.len == MemoSlot::EMPTY {
                return Err(i);
            }
            if s.hash == hash && s.len as usize == v.len() && self.value(s) == v {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// What `v` resolved to, if known: its candidates appended to `out`, and its address to
    /// look up with the row's port.
    #[inline]
    fn get(&self, hash: u64, v: &[u8], out: &mut Vec<u32>) -> Option<Option<IpAddr>> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.find(hash, v).ok()?;
        let res = self.slots[i].res;
        if res == MemoSlot::DEAD {
            return Some(None);
        }
        Some(self.live.append(res, out))
    }

    /// Records what `v` resolved to (a value another thread recorded first is kept). A shard
    /// that would outgrow `max_slots` slots or `max_long` bytes of long values is emptied
    /// first.
    fn insert(
        &mut self,
        hash: u64,
        v: &[u8],
        cands: &[u32],
        ip: Option<IpAddr>,
        (max_slots, max_long): (usize, usize),
    ) {
        if v.len() > MemoSlot::INLINE && self.long.len() + v.len() > max_long {
            *self = MemoShard::default();
        }
        if 4 * (self.used + 1) > 3 * self.slots.len() {
            if self.slots.len() >= max_slots {
                *self = MemoShard::default();
            }
            self.grow(max_slots);
        }
        let Err(i) = self.find(hash, v) else {
            return;
        };
        let mut slot = MemoSlot {
            hash,
            len: v.len() as u32,
            res: MemoSlot::DEAD,
            bytes: [0; MemoSlot::INLINE],
        };
        if v.len() <= MemoSlot::INLINE {
            slot.bytes[..v.len()].copy_from_slice(v);
        } else {
            slot.bytes[..4].copy_from_slice(&(self.long.len() as u32).to_le_bytes());
            self.long.extend_from_slice(v);
        }
        if !cands.is_empty() || ip.is_some() {
            slot.res = self.live.push(cands, ip);
        }
        self.slots[i] = slot;
        self.used += 1;
    }

    /// Doubles the slots (the first time, allocates a few), up to `max_slots`.
    fn grow(&mut self, max_slots: usize) {
        let n = (2 * self.slots.len()).clamp(256.min(max_slots), max_slots);
        let old = std::mem::replace(&mut self.slots, vec![MemoSlot::FREE; n]);
        let mask = n - 1;
        for s in old.into_iter().filter(|s| s.len != MemoSlot::EMPTY) {
            let mut i = s.hash as usize & mask;
            while self.slots[i].len != MemoSlot::EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }
}

impl Memo {
    const SHARDS: usize = 16;
    /// Values longer than this are resolved each time (a long value is rarely repeated, and
    /// the arena would hold few of them).
    const MAX_LEN: usize = 512;

    /// Slots per shard at most (512 KiB, 6 Ki values; 8 MiB and 96 Ki values per field).
    const MAX_SLOTS: usize = 1 << 13;
    /// Bytes of long values per shard at most (16 MiB per field).
    const MAX_LONG: usize = 1 << 20;

    fn new() -> Self {
        Self::with_limits(Self::MAX_SLOTS, Self::MAX_LONG)
    }

    fn with_limits(max_slots: usize, max_long: usize) -> Self {
        Memo {
            seed: crate::hash::process_seed(),
            shards: (0..Self::SHARDS)
                .map(|_| Mutex::new(MemoShard::default()))
                .collect(),
            max_slots,
            max_long,
        }
    }

    /// Appends `v`'s port-independent candidates to `out` and returns its address to look up
    /// with the row's port, from the memo or from `resolve`.
    #[inline]
    fn resolve(
        &self,
        v: &str,
        out: &mut Vec<u32>,
        resolve: impl FnOnce(&str, &mut Vec<u32>) -> Option<IpAddr>,
    ) -> Option<IpAddr> {
        if v.len() > Self::MAX_LEN {
            return resolve(v, out);
        }
        let b = v.as_bytes();
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(b, self.seed);
        // The top bits pick the shard, the low ones the slot.
        let shard = &self.shards[(hash >> 60) as usize % Self::SHARDS];
        if let Some(ip) = shard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash, b, out)
        {
            return ip;
        }
        let start = out.len();
        let ip = resolve(v, out);
        shard.lock().unwrap_or_else(|e| e.into_inner()).insert(
            hash,
            b,
            &out[start..],
            ip,
            (self.max_slots, self.max_long),
        );
        ip
    }
}

enum Column<'b> {
    Missing,
    Scalar(&'b ArrayRef),
    /// A dictionary-encoded column: each distinct value is resolved once per dictionary.
    Dict(&'b ArrayRef),
    List(&'b ArrayRef),
}

/// What one value resolved to.
#[derive(Clone, Copy, Debug)]
struct Resolved {
    /// Candidates that do not depend on the row's port: `ords[start..end]`.
    start: u32,
    end: u32,
    /// An address still to look up with the row's port.
    ip: Option<IpAddr>,
}

/// The resolutions of live values (something to look at), by number, with the candidates
/// they point at: the side table of a [`MemoShard`] and of [`DictEntries`].
#[derive(Debug, Default)]
struct Resolutions {
    resolved: Vec<Resolved>,
    ords: Vec<u32>,
}

impl Resolutions {
    /// Records a value that resolved to `cands`, the candidates that do not depend on the
    /// row's port, and `ip`, an address to look up with it; returns its number.
    fn push(&mut self, cands: &[u32], ip: Option<IpAddr>) -> u32 {
        let start = self.ords.len() as u32;
        self.ords.extend_from_slice(cands);
        self.resolved.push(Resolved {
            start,
            end: self.ords.len() as u32,
            ip,
        });
        (self.resolved.len() - 1) as u32
    }

    /// Resolution `i`'s candidates appended to `out`, and its address to look up with the
    /// row's port.
    #[inline]
    fn append(&self, i: u32, out: &mut Vec<u32>) -> Option<IpAddr> {
        let r = self.resolved[i as usize];
        out.extend_from_slice(&self.ords[r.start as usize..r.end as usize]);
        r.ip
    }
}

/// Resolutions of the entries of one dictionary for one field, shared by every batch (and
/// thread) reading that dictionary: all entries are resolved when the first batch meets the
/// dictionary ([`Matcher::resolve_dictionary`]), and then only read.
#[derive(Debug)]
struct DictCache {
    field: usize,
    /// The dictionary itself: its buffers' addresses are the cache key, and holding them
    /// keeps those addresses from being reused by another dictionary while cached (buffers
    /// that are shared are never written).
    values: arrow_data::ArrayData,
    entries: OnceLock<Arc<DictEntries>>,
}

/// What each entry of a dictionary resolved to.
///
/// Almost every entry resolves to nothing, so what each row touches is one bit per entry
/// (live: something to look at), cache-resident even for dictionaries of a hundred thousand
/// entries; the few live entries keep their [`Resolved`] in a side table.
#[derive(Debug)]
struct DictEntries {
    /// Bit `k`: entry `k` is live.
    live: Vec<u64>,
    /// Live entry -> its number in `resolutions`.
    map: std::collections::HashMap<usize, u32, crate::hash::SeededFastHash>,
    resolutions: Resolutions,
}

impl DictEntries {
    fn new(len: usize) -> Self {
        DictEntries {
            live: vec![0; len.div_ceil(64)],
            map: std::collections::HashMap::with_hasher(crate::hash::SeededFastHash::new()),
            resolutions: Resolutions::default(),
        }
    }

    /// Records that entry `key` resolved to `cands`, the candidates that do not depend on the
    /// row's port, and `ip`, an address to look up with it (nothing if both are empty).
    fn set(&mut self, key: usize, cands: &[u32], ip: Option<IpAddr>) {
        if cands.is_empty() && ip.is_none() {
            return;
        }
        let Some(w) = self.live.get_mut(key / 64) else {
            return;
        };
        *w |= 1 << (key % 64);
        let i = self.resolutions.push(cands, ip);
        self.map.insert(key, i);
    }

    /// A live entry's candidates appended to `out`, and its address to look up with the
    /// row's port; `None` if the entry is not live.
    #[inline]
    fn live_into(&self, key: usize, out: &mut Vec<u32>) -> Option<Option<IpAddr>> {
        let i = *self.map.get(&key)?;
        Some(self.resolutions.append(i, out))
    }
}

/// Typed access to a column of text, so that the type is matched once per column, not per
/// value.
enum TextCol<'b> {
    Utf8(&'b arrow_array::StringArray),
    LargeUtf8(&'b arrow_array::LargeStringArray),
    Utf8View(&'b arrow_array::StringViewArray),
    Other(&'b dyn Array),
}

impl<'b> TextCol<'b> {
    fn new(a: &'b dyn Array) -> Self {
        match a.data_type() {
            DataType::Utf8 => TextCol::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => TextCol::LargeUtf8(a.as_string::<i64>()),
            DataType::Utf8View => TextCol::Utf8View(a.as_string_view()),
            _ => TextCol::Other(a),
        }
    }

    /// Value `i` as [`scalar_text`] gives it.
    #[inline]
    fn get(&self, i: usize) -> Option<Cow<'b, str>> {
        match *self {
            TextCol::Utf8(a) => (!a.is_null(i)).then(|| Cow::Borrowed(a.value(i))),
            TextCol::LargeUtf8(a) => (!a.is_null(i)).then(|| Cow::Borrowed(a.value(i))),
            TextCol::Utf8View(a) => (!a.is_null(i)).then(|| Cow::Borrowed(a.value(i))),
            TextCol::Other(a) => scalar_text(a, i),
        }
    }
}

/// The keys of a dictionary column, typed once per batch, with its key nulls.
enum DictKeys<'b> {
    Int32(&'b [i32], Option<&'b arrow_buffer::NullBuffer>),
    Other(Vec<usize>, Option<&'b arrow_buffer::NullBuffer>),
}

impl<'b> DictKeys<'b> {
    fn new(a: &'b dyn Array, d: &'b dyn arrow_array::AnyDictionaryArray) -> Self {
        match a.data_type() {
            DataType::Dictionary(k, _) if **k == DataType::Int32 => {
                let keys = a.as_dictionary::<Int32Type>().keys();
                DictKeys::Int32(keys.values(), keys.nulls())
            }
            _ => DictKeys::Other(d.normalized_keys(), d.keys().nulls()),
        }
    }

    fn len(&self) -> usize {
        match self {
            DictKeys::Int32(k, _) => k.len(),
            DictKeys::Other(k, _) => k.len(),
        }
    }

    /// The keys' nulls.
    fn nulls(&self) -> Option<&'b arrow_buffer::NullBuffer> {
        match *self {
            DictKeys::Int32(_, n) | DictKeys::Other(_, n) => n,
        }
    }

    /// The key of row `r`, or `None` when the row is null.
    #[inline]
    fn get(&self, r: usize) -> Option<usize> {
        let (key, nulls) = match self {
            DictKeys::Int32(k, n) => (usize::try_from(k[r]).ok()?, n),
            DictKeys::Other(k, n) => (k[r], n),
        };
        match nulls {
            Some(n) if n.is_null(r) => None,
            _ => Some(key),
        }
    }
}

/// A dictionary column (or a list's dictionary values) ready for the row loops: its keys,
/// its values as text, and what each entry resolved to.
struct DictCol<'b> {
    keys: DictKeys<'b>,
    text: TextCol<'b>,
    entries: Arc<DictEntries>,
}

impl DictCol<'_> {
    /// Appends the rows (or list elements) of `range` whose entry is live, ascending. One bit
    /// to test per row, in a loop without calls, so that the rows no indicator concerns —
    /// almost all — cost a load or two (a mostly-null column walked by its valid bits, as
    /// [`each_row`] does). A null row may be among those appended (its key can be anything):
    /// the caller checks.
    fn live(&self, range: std::ops::Range<usize>, out: &mut Vec<usize>) {
        let end = range.end.min(self.keys.len());
        let range = range.start.min(end)..end;
        if self.entries.map.is_empty() || range.is_empty() {
            return;
        }
        let live = &self.entries.live[..];
        let is_live = |k: usize| live.get(k / 64).is_some_and(|w| (w >> (k % 64)) & 1 != 0);
        let nulls = self
            .keys
            .nulls()
            .map(|nb| nb.slice(range.start, range.len()));
        match &self.keys {
            DictKeys::Int32(keys, _) => {
                let keys = &keys[range.clone()];
                each_row(keys.len(), nulls.as_ref(), |i| {
                    // A negative key becomes one past every entry: dead.
                    if is_live(keys[i] as u32 as usize) {
                        out.push(range.start + i);
                    }
                });
            }
            DictKeys::Other(keys, _) => {
                let keys = &keys[range.clone()];
                each_row(keys.len(), nulls.as_ref(), |i| {
                    if is_live(keys[i]) {
                        out.push(range.start + i);
                    }
                });
            }
        }
    }
}

/// Typed access to a port column.
enum PortCol<'c, 'b> {
    None,
    Int64(&'b arrow_array::Int64Array),
    Int32(&'b arrow_array::Int32Array),
    UInt16(&'b arrow_array::UInt16Array),
    UInt32(&'b arrow_array::UInt32Array),
    Other(&'c Column<'b>),
}

impl<'c, 'b> PortCol<'c, 'b> {
    fn new(col: Option<&'c Column<'b>>) -> Self {
        let Some(col) = col else {
            return PortCol::None;
        };
        match col {
            Column::Scalar(a) => match a.data_type() {
                DataType::Int64 => PortCol::Int64(a.as_primitive()),
                DataType::Int32 => PortCol::Int32(a.as_primitive()),
                DataType::UInt16 => PortCol::UInt16(a.as_primitive()),
                DataType::UInt32 => PortCol::UInt32(a.as_primitive()),
                _ => PortCol::Other(col),
            },
            _ => PortCol::Other(col),
        }
    }

    /// The port in row `r`, as [`row_port`] reads it.
    #[inline]
    fn get(&self, r: usize) -> Option<u16> {
        fn num<T: arrow_array::ArrowPrimitiveType>(
            a: &arrow_array::PrimitiveArray<T>,
            r: usize,
        ) -> Option<u16>
        where
            T::Native: TryInto<u16>,
        {
            if a.is_null(r) {
                return None;
            }
            a.value(r).try_into().ok()
        }
        match *self {
            PortCol::None => None,
            PortCol::Int64(a) => num(a, r),
            PortCol::Int32(a) => num(a, r),
            PortCol::UInt16(a) => num(a, r),
            PortCol::UInt32(a) => num(a, r),
            PortCol::Other(c) => row_port(c, r),
        }
    }
}

/// A row's field with candidates, before validity and port checks.
struct Cand<'b> {
    row: usize,
    field: usize,
    value: Cow<'b, str>,
    port: Option<u16>,
    /// The candidate ordinals: `ords[start..end]`.
    start: usize,
    end: usize,
}

/// Per-row state while a row's hits are collected.
struct RowHits<'m, 'o> {
    meta: crate::index::meta::Meta<'m>,
    now: i64,
    row: u64,
    /// The row's event time, computed on the first candidate (most rows have none).
    event_time: Option<Option<i64>>,
    out: &'o mut Vec<Hit>,
}

impl RowHits<'_, '_> {
    /// Keeps the candidates valid at the row's time whose port constraint the row meets.
    fn keep(
        &mut self,
        field: usize,
        value: &str,
        port: Option<u16>,
        cands: &[u32],
        seen: &mut Vec<u32>,
        time: &dyn Fn() -> Option<i64>,
    ) {
        for &o in cands {
            if o as usize >= self.meta.len() || seen.contains(&o) {
                continue;
            }
            let ord = IndicatorId::new(o);
            let event_time = *self.event_time.get_or_insert_with(time);
            if !self.meta.valid_at(ord, event_time.unwrap_or(self.now)) {
                continue;
            }
            if let Some(p) = self.meta.port(ord)
                && port != Some(p)
            {
                continue;
            }
            seen.push(o);
            self.out.push(Hit {
                ord,
                field,
                value: value.to_string(),
                row: self.row,
                event_time,
            });
        }
    }
}

impl<'a> Matcher<'a> {
    /// A matcher; `now` (Unix seconds) is the validity instant for rows without an event time.
    pub fn new(index: &'a CompiledIndex, fields: &'a FieldMap, now: i64) -> Self {
        let memos = fields
            .fields()
            .iter()
            .map(|f| {
                // The kinds whose lookup costs several times a probe: an address, a name or a
                // digest looks up about as fast as a probe that misses the cache (measured:
                // a memo in front of them made dictionary entries slower, 150-250 ns against
                // 250-360 ns each, while URLs went from 455 to 273 ns).
                matches!(
                    f.kind,
                    FieldKind::Url | FieldKind::UserAgent | FieldKind::Text | FieldKind::Email
                )
                .then(Memo::new)
            })
            .collect();
        Matcher {
            index,
            fields,
            now,
            dicts: Mutex::new(Vec::new()),
            memos,
            dead: fields.fields().iter().map(|_| RwLock::default()).collect(),
            seed: crate::hash::process_seed(),
        }
    }

    /// The field map it matches with.
    pub fn fields(&self) -> &'a FieldMap {
        self.fields
    }

    /// The index it matches against.
    pub fn index(&self) -> &'a CompiledIndex {
        self.index
    }

    /// Matches one batch, appending hits in row order (within a row, in field order).
    pub fn match_batch(&self, tb: &TelemetryBatch, out: &mut Vec<Hit>) {
        self.match_record_batch(&tb.batch, tb.first_row, out)
    }

    /// The cache for `values` as field `field`'s dictionary, or a new one, kept among the
    /// field's most recent `keep` (a row group's dictionaries are not seen again once it is
    /// done). Per field, so that a field whose dictionary is new in every batch (a joined
    /// `host+uri`) does not push out the row group's dictionaries of the others.
    ///
    /// A dictionary is known by its buffers, not by its `Arc`: the Parquet reader hands each
    /// batch of a list column (`answers`) a new array over the same row group's dictionary.
    fn dict_cache(&self, field: usize, values: &ArrayRef, keep: usize) -> Arc<DictCache> {
        let data = values.to_data();
        let mut pool = self.dicts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = pool
            .iter()
            .find(|c| c.field == field && c.values.ptr_eq(&data))
        {
            return c.clone();
        }
        let c = Arc::new(DictCache {
            field,
            values: data,
            entries: OnceLock::new(),
        });
        if pool.iter().filter(|c| c.field == field).count() >= keep
            && let Some(oldest) = pool.iter().position(|c| c.field == field)
        {
            pool.remove(oldest);
        }
        pool.push(c.clone());
        c
    }

    /// Matches one record batch whose first row is `first_row` of its file.
    ///
    /// Columns may be `Utf8` (and its large and view forms), UTF-8 `Binary`, numbers,
    /// timestamps (for the time field), lists of these (each element matched), or
    /// dictionaries of strings, whose distinct values are each looked up once per dictionary
    /// (which the batches of a Parquet row group share) and the result shared by every row that
    /// points at them.
    ///
    /// Each column is matched on its own, top to bottom, collecting the few rows with
    /// candidates; only those are then checked for validity and ports, in row order.
    pub fn match_record_batch(&self, batch: &RecordBatch, first_row: u64, out: &mut Vec<Hit>) {
        let specs = self.fields.fields();
        let cols: Vec<Column<'_>> = specs
            .iter()
            .map(|f| match batch.column_by_name(&f.name) {
                // A column with no value in the batch (as a preset's columns that the input
                // lacks arrive): nothing to walk row by row.
                None => Column::Missing,
                Some(c) if c.null_count() == c.len() || c.data_type() == &DataType::Null => {
                    Column::Missing
                }
                Some(c) => match c.data_type() {
                    DataType::List(_) | DataType::LargeList(_) => Column::List(c),
                    DataType::Dictionary(_, _) => Column::Dict(c),
                    _ => Column::Scalar(c),
                },
            })
            .collect();
        let time_col = specs.iter().position(|f| f.kind == FieldKind::Time);
        let n = batch.num_rows();
        let mut cands: Vec<Cand<'_>> = Vec::new();
        let mut ords: Vec<u32> = Vec::new();
        let mut live: Vec<usize> = Vec::new();
        // Dictionaries kept per field: those of the last few row groups (threads work on
        // neighbouring row groups at once).
        let keep_dicts = 4;
        for (fi, spec) in specs.iter().enumerate() {
            if !spec.kind.can_match() {
                continue;
            }
            // The column of the field's port (`port@ADDR`), if any.
            let port_col = specs
                .iter()
                .position(|p| matches!(&p.kind, FieldKind::Port(addr) if *addr == spec.name))
                .map(|p| &cols[p]);
            let port_col = PortCol::new(port_col);
            let kind = &spec.kind;
            match cols[fi] {
                Column::Missing => {}
                Column::Scalar(a) => {
                    let t = TextCol::new(a.as_ref());
                    let memo = self.memos.get(fi).and_then(Option::as_ref);
                    each_row(n, a.nulls(), |r| {
                        if let Some(v) = t.get(r) {
                            let port = port_col.get(r);
                            let start = ords.len();
                            match memo {
                                Some(m) => {
                                    let ip = m.resolve(&v, &mut ords, |v, out| {
                                        self.resolve(kind, v, out)
                                    });
                                    if let (Some(ip), Some(p)) = (ip, port) {
                                        self.index.lookup_ip_port(ip, p, &mut ords);
                                    }
                                }
                                None => self.lookup(kind, &v, port, &mut ords),
                            }
                            push_cand(&mut cands, r, fi, v, port, start, &ords);
                        }
                    });
                }
                Column::Dict(a) => {
                    let Some(dict) = self.dict_col(fi, a, keep_dicts) else {
                        continue;
                    };
                    live.clear();
                    dict.live(0..n, &mut live);
                    for &r in &live {
                        let port = port_col.get(r);
                        self.dict_hit(fi, &dict, r, r, port, &mut ords, &mut cands);
                    }
                }
                Column::List(a) => {
                    let (values, offsets): (&ArrayRef, Vec<usize>) = match a.data_type() {
                        DataType::List(_) => {
                            let l = a.as_list::<i32>();
                            let o = l.value_offsets().iter().map(|&o| o as usize).collect();
                            (l.values(), o)
                        }
                        DataType::LargeList(_) => {
                            let l = a.as_list::<i64>();
                            let o = l.value_offsets().iter().map(|&o| o as usize).collect();
                            (l.values(), o)
                        }
                        _ => continue,
                    };
                    // Values of a dictionary (a Parquet list column read as one) are resolved
                    // once per distinct value, as in a dictionary column.
                    let dict = match values.data_type() {
                        DataType::Dictionary(_, _) => self.dict_col(fi, values, keep_dicts),
                        _ => None,
                    };
                    let rows = n.min(offsets.len().saturating_sub(1));
                    if let Some(dict) = &dict {
                        // The live elements, then the row of each (they are few).
                        let Some(offsets) = offsets.get(..=rows) else {
                            continue;
                        };
                        live.clear();
                        dict.live(offsets[0]..offsets[rows], &mut live);
                        for &i in &live {
                            let r = offsets.partition_point(|&o| o <= i) - 1;
                            if a.is_null(r) {
                                continue;
                            }
                            let port = port_col.get(r);
                            self.dict_hit(fi, dict, i, r, port, &mut ords, &mut cands);
                        }
                        continue;
                    }
                    let t = TextCol::new(values.as_ref());
                    each_row(rows, a.nulls(), |r| {
                        let w = &offsets[r..r + 2];
                        if a.is_null(r) || w[0] >= w[1] {
                            return;
                        }
                        let port = port_col.get(r);
                        for i in w[0]..w[1] {
                            let start = ords.len();
                            if let Some(v) = t.get(i) {
                                self.lookup(kind, &v, port, &mut ords);
                                push_cand(&mut cands, r, fi, v, port, start, &ords);
                            }
                        }
                    });
                }
            }
        }
        if cands.is_empty() {
            return;
        }
        // Stable: within a row, fields stay in map order and list elements in list order.
        cands.sort_by_key(|c| c.row);
        let meta = self.index.meta();
        let mut seen = Vec::new();
        for group in cands.chunk_by(|a, b| a.row == b.row) {
            let r = group[0].row;
            let time = || time_col.and_then(|t| row_time(&cols[t], r));
            let mut row = RowHits {
                meta,
                now: self.now,
                row: first_row + r as u64,
                event_time: None,
                out: &mut *out,
            };
            for (i, c) in group.iter().enumerate() {
                if i == 0 || group[i - 1].field != c.field {
                    seen.clear();
                }
                row.keep(
                    c.field,
                    &c.value,
                    c.port,
                    &ords[c.start..c.end],
                    &mut seen,
                    &time,
                );
            }
        }
    }

    /// Field `field`'s dictionary array `a`, typed for the row loops, with what each of its
    /// entries resolved to.
    fn dict_col<'b>(&'b self, field: usize, a: &'b ArrayRef, keep: usize) -> Option<DictCol<'b>> {
        let d = a.as_any_dictionary_opt()?;
        let values = d.values();
        let cache = self.dict_cache(field, values, keep);
        let entries = cache
            .entries
            .get_or_init(|| Arc::new(self.resolve_dictionary(field, values)))
            .clone();
        Some(DictCol {
            keys: DictKeys::new(a.as_ref(), d),
            text: TextCol::new(values.as_ref()),
            entries,
        })
    }

    /// The candidates of element `i` of dictionary column `dict` (a row, or an element of a
    /// list in row `row`) appended to `ords` and, if any, recorded as field `field`'s in
    /// `cands`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn dict_hit<'b>(
        &self,
        field: usize,
        dict: &DictCol<'b>,
        i: usize,
        row: usize,
        port: Option<u16>,
        ords: &mut Vec<u32>,
        cands: &mut Vec<Cand<'b>>,
    ) {
        let start = ords.len();
        let Some(key) = dict.keys.get(i) else {
            return;
        };
        let Some(ip) = dict.entries.live_into(key, ords) else {
            return;
        };
        if let (Some(ip), Some(p)) = (ip, port) {
            self.index.lookup_ip_port(ip, p, ords);
        }
        if ords.len() > start
            && let Some(v) = dict.text.get(key)
        {
            push_cand(cands, row, field, v, port, start, ords);
        }
    }

    /// Resolves every entry of `values`, field `field`'s dictionary. Entries the field's
    /// [`DeadSet`] holds are dead at once, probed in the set's order (see [`dead`]); the others
    /// are resolved, and those that resolve to nothing join the set.
    fn resolve_dictionary(&self, field: usize, values: &ArrayRef) -> DictEntries {
        let kind = &self.fields.fields()[field].kind;
        let text = TextCol::new(values.as_ref());
        let mut entries = DictEntries::new(values.len());
        let mut scratch = Vec::new();
        // Resolves entry `k`; `true` if it resolved to nothing.
        let mut resolve = |entries: &mut DictEntries, k: usize, v: &str| {
            scratch.clear();
            let ip = self.resolve(kind, v, &mut scratch);
            entries.set(k, &scratch, ip);
            scratch.is_empty() && ip.is_none()
        };
        let mut probes: Vec<(Fingerprint, usize)> = Vec::with_capacity(values.len());
        for k in 0..values.len() {
            match text.get(k) {
                None => {}
                // A long value is rarely repeated: resolved each time, not remembered.
                Some(v) if v.len() > Memo::MAX_LEN => {
                    resolve(&mut entries, k, &v);
                }
                Some(v) => probes.push((Fingerprint::of(self.seed, v.as_bytes()), k)),
            }
        }
        probes.sort_unstable_by_key(|p| p.0.order());
        let dead = &self.dead[field];
        {
            // Shared: threads matching other row groups probe the same field's set at once.
            let set = dead.read().unwrap_or_else(|e| e.into_inner());
            probes.retain(|p| !set.contains(p.0));
        }
        let mut new_dead = Vec::new();
        for (fp, k) in probes {
            if let Some(v) = text.get(k)
                && resolve(&mut entries, k, &v)
            {
                new_dead.push(fp);
            }
        }
        if new_dead.is_empty() {
            return entries;
        }
        let mut set = dead.write().unwrap_or_else(|e| e.into_inner());
        set.reserve(new_dead.len(), DeadSet::MAX_SLOTS);
        for fp in new_dead {
            set.insert(fp, DeadSet::MAX_SLOTS);
        }
        entries
    }

    /// Resolves one value of a field as far as it can without the row's port: appends the
    /// candidates that do not depend on the port, and returns the address when `ip:port`
    /// indicators with that address exist, to be looked up again with each row's port.
    fn resolve(&self, kind: &FieldKind, v: &str, out: &mut Vec<u32>) -> Option<IpAddr> {
        let ip = match kind {
            FieldKind::Ip => parse_ip(v),
            FieldKind::Domain => self.resolve_host(v, out),
            _ => {
                self.lookup(kind, v, None, out);
                None
            }
        }?;
        self.index.lookup_ip(ip, None, out);
        self.index.has_port_pairs(ip).then_some(ip)
    }

    /// Looks one value of a field up; appends candidate ordinals (validity not yet checked).
    #[inline]
    pub fn lookup(&self, kind: &FieldKind, v: &str, port: Option<u16>, out: &mut Vec<u32>) {
        lookup_with(self.index, kind, v, port, out);
    }

    /// A DNS or host name as logged: a trailing `:port` (HTTP Host headers) is removed, and an
    /// IP literal is returned to be looked up as an address; names are looked up here.
    #[inline]
    fn resolve_host(&self, v: &str, out: &mut Vec<u32>) -> Option<IpAddr> {
        resolve_host_with(self.index, v, out)
    }
}

/// The lookups a field value resolves to, as [`CompiledIndex`] answers them; also recorded,
/// instead of answered, for a batch's retro-hunt summary ([`summary`]).
pub(crate) trait Lookups {
    /// Address (and with `port`, `ip:port`) indicators covering `ip`.
    fn lookup_ip(&self, ip: IpAddr, port: Option<u16>, out: &mut Vec<u32>);
    /// Domain indicators equal to or a parent of `name`, and hostname indicators equal to it.
    fn lookup_name(&self, name: &[u8], out: &mut Vec<u32>);
    /// URL indicators with `url`'s key.
    fn lookup_url(&self, url: &normalize::CanonicalUrl, out: &mut Vec<u32>);
    /// Digest indicators of `kind` equal to `hex`.
    fn lookup_digest(&self, kind: Kind, hex: &str, out: &mut Vec<u32>);
    /// E-mail or JA4 indicators equal to `key`.
    fn lookup_bytes(&self, kind: Kind, key: &[u8], out: &mut Vec<u32>);
    /// Substring indicators of `classes` in `text`.
    fn find_substrings(&self, text: &[u8], classes: u8, out: &mut Vec<u32>);
}

impl Lookups for CompiledIndex {
    #[inline]
    fn lookup_ip(&self, ip: IpAddr, port: Option<u16>, out: &mut Vec<u32>) {
        CompiledIndex::lookup_ip(self, ip, port, out);
    }
    #[inline]
    fn lookup_name(&self, name: &[u8], out: &mut Vec<u32>) {
        CompiledIndex::lookup_name(self, name, out);
    }
    #[inline]
    fn lookup_url(&self, url: &normalize::CanonicalUrl, out: &mut Vec<u32>) {
        CompiledIndex::lookup_url(self, url, out);
    }
    #[inline]
    fn lookup_digest(&self, kind: Kind, hex: &str, out: &mut Vec<u32>) {
        CompiledIndex::lookup_digest(self, kind, hex, out);
    }
    #[inline]
    fn lookup_bytes(&self, kind: Kind, key: &[u8], out: &mut Vec<u32>) {
        CompiledIndex::lookup_bytes(self, kind, key, out);
    }
    #[inline]
    fn find_substrings(&self, text: &[u8], classes: u8, out: &mut Vec<u32>) {
        CompiledIndex::find_substrings(self, text, classes, out);
    }
}

/// Looks one value of a field of `kind` up in `idx`: how each field kind is normalised and
/// which lookups it makes (the table in the module's documentation).
#[inline]
pub(crate) fn lookup_with<L: Lookups + ?Sized>(
    idx: &L,
    kind: &FieldKind,
    v: &str,
    port: Option<u16>,
    out: &mut Vec<u32>,
) {
    match kind {
        FieldKind::Ip => {
            if let Some(ip) = parse_ip(v) {
                idx.lookup_ip(ip, port, out);
            }
        }
        FieldKind::Domain => {
            if let Some(ip) = resolve_host_with(idx, v, out) {
                idx.lookup_ip(ip, port, out);
            }
        }
        FieldKind::Url => {
            let t = v.trim();
            if !t.starts_with('/')
                && let Ok(u) = normalize::url(t)
            {
                idx.lookup_url(&u, out);
                match u.host.parse::<IpAddr>() {
                    Ok(ip) => idx.lookup_ip(ip, None, out),
                    Err(_) => match u.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                        Some(v6) => {
                            if let Ok(ip) = v6.parse::<IpAddr>() {
                                idx.lookup_ip(ip, None, out);
                            }
                        }
                        None => idx.lookup_name(u.host.as_bytes(), out),
                    },
                }
            }
            idx.find_substrings(t.as_bytes(), CLASS_URL, out);
        }
        FieldKind::Md5 => digest_with(idx, Kind::Md5, v, out),
        FieldKind::Sha1 => digest_with(idx, Kind::Sha1, v, out),
        FieldKind::Sha256 => digest_with(idx, Kind::Sha256, v, out),
        FieldKind::Hash => {
            if let Ok(n) = normalize::hash_by_length(v) {
                idx.lookup_digest(n.kind, &n.value, out);
                // A 32-digit value may equally be a JA3 fingerprint or an x509 MD5:
                // only the digest kinds are consulted for `hash`.
            }
        }
        FieldKind::Ja3 => digest_with(idx, Kind::Ja3, v, out),
        FieldKind::Ja3s => digest_with(idx, Kind::Ja3s, v, out),
        FieldKind::Email => {
            if let Ok(e) = normalize::email(v) {
                idx.lookup_bytes(Kind::Email, e.as_bytes(), out);
            }
        }
        FieldKind::Ja4 => {
            if let Ok(j) = normalize::ja4(v) {
                idx.lookup_bytes(Kind::Ja4, j.as_bytes(), out);
            }
        }
        FieldKind::UserAgent => idx.find_substrings(v.trim().as_bytes(), CLASS_USER_AGENT, out),
        FieldKind::Text => idx.find_substrings(v.as_bytes(), CLASS_ALL, out),
        FieldKind::Time | FieldKind::Uid | FieldKind::Port(_) => {}
    }
}

#[inline]
fn digest_with<L: Lookups + ?Sized>(idx: &L, kind: Kind, v: &str, out: &mut Vec<u32>) {
    if let Some(h) = normalize::hash_fast(kind, v) {
        idx.lookup_digest(kind, h, out);
    } else if let Ok(h) = normalize::hash(kind, v) {
        idx.lookup_digest(kind, &h, out);
    }
}

/// A DNS or host name as logged: a trailing `:port` (HTTP Host headers) is removed, and an IP
/// literal is returned to be looked up as an address; names are looked up here.
#[inline]
fn resolve_host_with<L: Lookups + ?Sized>(idx: &L, v: &str, out: &mut Vec<u32>) -> Option<IpAddr> {
    let b = v.as_bytes();
    // The common case, a bare name or address: nothing to trim or strip.
    if normalize::untrimmed(b) && !b.iter().any(|&c| c == b':' || c == b'[') {
        if let Some(ip) = normalize::ipv4_fast(b) {
            return Some(IpAddr::V4(ip));
        }
        // Without a `:`, only digits and dots can make an address.
        if b.iter().all(|&c| c.is_ascii_digit() || c == b'.')
            && let Ok(ip) = normalize::ip(v)
        {
            return Some(ip);
        }
        if let Some(d) = normalize::domain_fast(v) {
            idx.lookup_name(d.as_bytes(), out);
        } else if let Ok(d) = normalize::domain(v) {
            idx.lookup_name(d.as_bytes(), out);
        }
        return None;
    }
    let t = v.trim();
    let host = match t.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => t,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Some(ip) = normalize::ip_parsed(host) {
        return Some(ip);
    } else if let Ok(d) = normalize::domain(host) {
        idx.lookup_name(d.as_bytes(), out);
    }
    None
}

/// Calls `f` with each row of `0..rows` that `nulls` does not mark null (and maybe with some
/// it does: `f` checks). When most rows are null — a flattened log's columns of the other log
/// types — by walking the valid bits rather than every row.
#[inline]
fn each_row(rows: usize, nulls: Option<&arrow_buffer::NullBuffer>, mut f: impl FnMut(usize)) {
    match nulls {
        Some(nb) if nb.null_count() > rows / 2 => {
            for r in nb.valid_indices() {
                if r >= rows {
                    break;
                }
                f(r);
            }
        }
        _ => (0..rows).for_each(f),
    }
}

/// Records the candidates `ords[start..]` of one value, if any.
fn push_cand<'b>(
    cands: &mut Vec<Cand<'b>>,
    row: usize,
    field: usize,
    value: Cow<'b, str>,
    port: Option<u16>,
    start: usize,
    ords: &[u32],
) {
    if ords.len() > start {
        cands.push(Cand {
            row,
            field,
            value,
            port,
            start,
            end: ords.len(),
        });
    }
}

/// An address field's value as [`normalize::ip`] reads it, dotted quads without its help.
#[inline]
fn parse_ip(v: &str) -> Option<IpAddr> {
    match normalize::ipv4_fast(v.as_bytes()) {
        Some(ip) => Some(IpAddr::V4(ip)),
        None => normalize::ip_parsed(v),
    }
}

fn first_text<'b>(col: &Column<'b>, r: usize) -> Option<Cow<'b, str>> {
    match *col {
        Column::Missing => None,
        Column::Scalar(a) | Column::Dict(a) | Column::List(a) => cell::first_text(a.as_ref(), r),
    }
}

/// The event time of row `r`: a timestamp column directly, anything else as text.
fn row_time(col: &Column<'_>, r: usize) -> Option<i64> {
    if let Column::Scalar(a) = col
        && let DataType::Timestamp(unit, _) = a.data_type()
    {
        if a.is_null(r) {
            return None;
        }
        return Some(timestamp_seconds(a.as_ref(), unit, r));
    }
    first_text(col, r).and_then(|s| parse_time(&s))
}

/// The port in row `r`: integer columns directly, anything else parsed from its text.
fn row_port(col: &Column<'_>, r: usize) -> Option<u16> {
    if let Column::Scalar(a) = col {
        if a.is_null(r) {
            return None;
        }
        let v: Option<i64> = match a.data_type() {
            DataType::Int64 => Some(a.as_primitive::<Int64Type>().value(r)),
            DataType::Int32 => Some(a.as_primitive::<Int32Type>().value(r).into()),
            DataType::UInt16 => Some(a.as_primitive::<UInt16Type>().value(r).into()),
            DataType::UInt32 => Some(a.as_primitive::<UInt32Type>().value(r).into()),
            _ => None,
        };
        if let Some(v) = v {
            return u16::try_from(v).ok();
        }
    }
    first_text(col, r).and_then(|p| p.trim().parse::<u16>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A resolution that depends on every byte of the value, as the index's do.
    fn naive(v: &str, out: &mut Vec<u32>) -> Option<IpAddr> {
        let sum: u32 = v.bytes().map(u32::from).sum();
        for i in 0..(sum % 3) {
            out.push(sum + i);
        }
        (v.len() % 4 == 1).then(|| IpAddr::from([10, 0, 0, sum as u8]))
    }

    #[test]
    fn memo_tells_apart_values_with_the_same_hash() {
        let mut shard = MemoShard::default();
        let limits = (1 << 10, 1 << 10);
        let long = "x".repeat(MemoSlot::INLINE + 1);
        let other = "y".repeat(MemoSlot::INLINE + 1);
        shard.insert(7, b"a", &[1], None, limits);
        shard.insert(
            7,
            long.as_bytes(),
            &[2, 3],
            Some(IpAddr::from([1, 2, 3, 4])),
            limits,
        );
        let mut out = Vec::new();
        assert_eq!(shard.get(7, b"a", &mut out), Some(None));
        assert_eq!(shard.get(7, b"b", &mut out), None);
        assert_eq!(shard.get(7, other.as_bytes(), &mut out), None);
        assert_eq!(
            shard.get(7, long.as_bytes(), &mut out),
            Some(Some(IpAddr::from([1, 2, 3, 4])))
        );
        assert_eq!(out, [1, 2, 3]);
    }

    /// What the dictionary tests look values up in: names, addresses with and without ports.
    fn dictionary_index() -> CompiledIndex {
        crate::index::test_index(&[
            (Kind::Domain, "evil.example"),
            (Kind::Hostname, "c2.bad.test"),
            (Kind::Ipv4, "192.0.2.1"),
            (Kind::IpPort, "198.51.100.7:443"),
        ])
    }

    /// Values of the dictionary tests: hits, near misses and plain misses.
    const POOL: [&str; 10] = [
        "evil.example",
        "www.evil.example",
        "c2.bad.test",
        "bad.test",
        "192.0.2.1",
        "198.51.100.7",
        "198.51.100.8",
        "example.org",
        "EVIL.example.",
        "",
    ];

    /// The batches of `rows` (a name, a port, a list of names per row) cut at `cuts`: with
    /// plain string columns, or with dictionary columns whose dictionaries are shared by the
    /// batches of one row group (a new one every `group` batches, its entries in another
    /// order) and, for the list, handed to each batch as a new array over the same buffers,
    /// as the Parquet reader does.
    fn dictionary_batches(
        rows: &[(Option<usize>, Option<i64>, Vec<usize>)],
        cuts: &[usize],
        group: usize,
        dictionary: bool,
    ) -> Vec<RecordBatch> {
        use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
        use arrow_array::{DictionaryArray, Int32Array, ListArray, StringArray};
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (rows.len() + 1)).collect();
        bounds.extend([0, rows.len()]);
        bounds.sort_unstable();
        bounds.dedup();
        let mut batches = Vec::new();
        let mut dict: Option<ArrayRef> = None;
        for (b, w) in bounds.windows(2).enumerate() {
            let part = &rows[w[0]..w[1]];
            if b % group == 0 {
                // Entries in an order of their own per row group.
                let mut entries: Vec<&str> = POOL.to_vec();
                entries.rotate_left(b % POOL.len());
                dict = Some(Arc::new(StringArray::from(entries.clone())));
            }
            let values = dict.clone().unwrap();
            let key = |i: usize| {
                (0..values.len())
                    .find(|&k| values.as_string::<i32>().value(k) == POOL[i])
                    .unwrap() as i32
            };
            let mut ports = Int64Builder::new();
            for r in part {
                ports.append_option(r.1);
            }
            let (name, list): (ArrayRef, ArrayRef) = if dictionary {
                let keys: Int32Array = part.iter().map(|r| r.0.map(key)).collect();
                let name = DictionaryArray::try_new(keys, values.clone()).unwrap();
                // The list's dictionary: a new array over the same buffers in every batch.
                let same = arrow_array::make_array(values.to_data());
                let elems: Int32Array = part
                    .iter()
                    .flat_map(|r| r.2.iter().map(|&i| key(i)))
                    .collect();
                let elems = DictionaryArray::try_new(elems, same).unwrap();
                let mut offsets = vec![0i32];
                for r in part {
                    offsets.push(offsets.last().unwrap() + r.2.len() as i32);
                }
                let field = Arc::new(arrow_schema::Field::new(
                    "item",
                    elems.data_type().clone(),
                    true,
                ));
                let list = ListArray::try_new(
                    field,
                    arrow_buffer::OffsetBuffer::new(offsets.into()),
                    Arc::new(elems),
                    None,
                )
                .unwrap();
                (Arc::new(name), Arc::new(list))
            } else {
                let name: StringArray = part.iter().map(|r| r.0.map(|i| POOL[i])).collect();
                let mut list = ListBuilder::new(StringBuilder::new());
                for r in part {
                    for &i in &r.2 {
                        list.values().append_value(POOL[i]);
                    }
                    list.append(true);
                }
                (Arc::new(name), Arc::new(list.finish()))
            };
            batches.push(
                RecordBatch::try_from_iter([
                    ("name", name),
                    ("port", Arc::new(ports.finish()) as ArrayRef),
                    ("names", list),
                ])
                .unwrap(),
            );
        }
        batches
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Through the memo — with repeats, long values, values too long to keep, and shards
        /// emptied when full — every value resolves as it does without it.
        #[test]
        fn memo_resolves_as_without_it(
            values in prop::collection::vec(
                prop_oneof![
                    "[a-c]{0,3}",
                    "[a-b]{45,52}",
                    "[a-z]{500,520}",
                ],
                1..300,
            ),
            small in any::<bool>(),
        ) {
            let memo = if small { Memo::with_limits(4, 128) } else { Memo::new() };
            for v in values.iter().chain(&values) {
                let (mut got, mut want) = (vec![99], vec![99]);
                let ip = memo.resolve(v, &mut got, naive);
                prop_assert_eq!(ip, naive(v, &mut want));
                prop_assert_eq!(&got, &want, "value {:?}", v);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Dictionary columns — shared by a row group's batches, handed anew to each batch of
        /// a list, resolved once per dictionary and remembered dead across row groups — give
        /// exactly the hits of plain string columns.
        #[test]
        fn dictionaries_match_as_plain_columns(
            rows in prop::collection::vec(
                (
                    prop::option::of(0..POOL.len()),
                    prop::option::of(prop_oneof![Just(443i64), Just(80)]),
                    prop::collection::vec(0..POOL.len(), 0..4),
                ),
                0..60,
            ),
            cuts in prop::collection::vec(0usize..100, 0..6),
            group in 1usize..4,
        ) {
            let index = dictionary_index();
            let fields = FieldMap::from_specs(
                ["name=ip", "port=port@name", "names=domain"]
                    .iter()
                    .map(|s| s.parse().unwrap()),
            )
            .unwrap();
            let run = |dictionary: bool| {
                let m = Matcher::new(&index, &fields, 0);
                let mut hits = Vec::new();
                let mut first = 0;
                for b in dictionary_batches(&rows, &cuts, group, dictionary) {
                    m.match_record_batch(&b, first, &mut hits);
                    first += b.num_rows() as u64;
                }
                hits
            };
            let want = run(false);
            prop_assert_eq!(run(true), want);
        }
    }
}
