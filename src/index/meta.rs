//! Per-indicator metadata, stored once per indicator in struct-of-arrays form, with every string
//! (ids, values, sources, origins, tags) stored once per set, and roaring bitmaps of ordinals
//! per TLP level, per source and per tag for set algebra (routing, `cwn compile --for`).
//!
//! Fixed cost per indicator: kind, TLP, flags, confidence (1 B each), id, value, context,
//! validity start and end, tag-list offset (4 B each) and a port constraint (2 B): 30 B.
//! The *context* is the combination (source, origin, distribution, sharing group), which is
//! shared by all indicators of one event or list, so it lives in a small side table.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use jiff::Timestamp;
use roaring::RoaringBitmap;

use super::{Arr, FormatError, SectionReader, SectionWriter, Sections};
use crate::indicator::{Direction, Indicator, IndicatorId, Kind, Tlp, Validity};

const STRUCTURE: &str = "metadata";
/// `valid_from` of an indicator with no lower bound.
const OPEN_FROM: u32 = 0;
/// `valid_until` of an indicator with no upper bound.
const OPEN_UNTIL: u32 = u32::MAX;
/// No such string (an absent origin or sharing group).
pub const NO_STRING: u32 = u32::MAX;

const FLAG_NO_ATTRIBUTION: u8 = 1;
const FLAG_DEFANGED: u8 = 2;
const FLAG_DIR_SRC: u8 = 4;
const FLAG_DIR_DST: u8 = 8;

/// Strings stored once: a blob and the end offset of each string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StringPool {
    blob: Arr<u8>,
    ends: Arr<u32>,
}

/// Interns strings into a [`StringPool`].
#[derive(Debug, Default)]
pub struct StringPoolBuilder {
    blob: Vec<u8>,
    ends: Vec<u32>,
    index: HashMap<Arc<str>, u32>,
}

impl StringPoolBuilder {
    /// The index of `s`, adding it if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.push_unique(s);
        self.index.insert(Arc::from(s), i);
        i
    }

    /// Adds `s` without looking for an earlier copy (for strings known to be unique, such as
    /// indicator ids, where the lookup table would cost more than it saves).
    pub fn push_unique(&mut self, s: &str) -> u32 {
        let i = self.ends.len() as u32;
        self.blob.extend_from_slice(s.as_bytes());
        self.ends.push(self.blob.len() as u32);
        i
    }

    /// The pool.
    pub fn build(self) -> StringPool {
        StringPool {
            blob: self.blob.into(),
            ends: self.ends.into(),
        }
    }
}

impl StringPool {
    /// The string with index `i`; `""` for an index out of range or a range that is not
    /// UTF-8 inside the blob (never after `validate`).
    pub fn get(&self, i: u32) -> &str {
        let (ends, i) = (&self.ends[..], i as usize);
        let Some(&end) = ends.get(i) else {
            return "";
        };
        let start = if i == 0 { 0 } else { ends[i - 1] };
        self.blob
            .get(start as usize..end as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The O(1) part of `validate`.
    fn check_shape(&self) -> Result<(), FormatError> {
        if self.ends.last().map_or(0, |&e| e as usize) != self.blob.len() {
            return Err(FormatError::new(
                STRUCTURE,
                "string blob length differs from the last string end",
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), FormatError> {
        let mut prev = 0u32;
        for &e in self.ends.iter() {
            if e < prev || e as usize > self.blob.len() {
                return Err(FormatError::new(
                    STRUCTURE,
                    "string offsets out of order or range",
                ));
            }
            prev = e;
        }
        if prev as usize != self.blob.len() {
            return Err(FormatError::new(
                STRUCTURE,
                "string blob longer than its strings",
            ));
        }
        std::str::from_utf8(&self.blob)
            .map_err(|_| FormatError::new(STRUCTURE, "string blob is not UTF-8"))?;
        // Every boundary must be a char boundary for `get` to succeed.
        let text = std::str::from_utf8(&self.blob).unwrap_or("");
        if self
            .ends
            .iter()
            .any(|&e| !text.is_char_boundary(e as usize))
        {
            return Err(FormatError::new(
                STRUCTURE,
                "string boundary inside a character",
            ));
        }
        Ok(())
    }

    fn heap_bytes(&self) -> usize {
        self.blob.len() + self.ends.len() * 4
    }
}

/// The context shared by many indicators: where they came from and who may see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Context {
    /// Source (event uuid, bundle id, list name): a string index.
    pub source: u32,
    /// Producing organisation, or [`NO_STRING`].
    pub origin: u32,
    /// Sharing group, or [`NO_STRING`].
    pub sharing_group: u32,
    /// MISP distribution 0–4, or 255 when the source has none.
    pub distribution: u8,
}

/// Per-indicator metadata of a compiled index, addressed by ordinal.
#[derive(Clone, Debug, Default)]
pub struct MetaTable {
    kind: Arr<u8>,
    tlp: Arr<u8>,
    flags: Arr<u8>,
    confidence: Arr<u8>,
    id: Arr<u32>,
    value: Arr<u32>,
    context: Arr<u32>,
    valid_from: Arr<u32>,
    valid_until: Arr<u32>,
    port: Arr<u16>,
    tag_ends: Arr<u32>,
    tag_ids: Arr<u32>,
    ctx_source: Arr<u32>,
    ctx_origin: Arr<u32>,
    ctx_sharing_group: Arr<u32>,
    ctx_distribution: Arr<u8>,
    strings: StringPool,
    by_tlp: Vec<RoaringBitmap>,
    by_source: Vec<(u32, RoaringBitmap)>,
    by_tag: Vec<(u32, RoaringBitmap)>,
}

fn kind_code(k: Kind) -> u8 {
    Kind::ALL.iter().position(|&x| x == k).unwrap_or(0) as u8
}

fn tlp_code(t: Tlp) -> u8 {
    Tlp::ALL.iter().position(|&x| x == t).unwrap_or(4) as u8
}

/// Event times are whole seconds, so rounding both bounds up keeps `[from, until)` exact: a
/// whole second s is >= from (or < until) exactly when it is >= ceil(from).
fn ceil_secs(t: Timestamp) -> i64 {
    t.as_second() + i64::from(t.subsec_nanosecond() > 0)
}

fn clamp_u32(s: i64) -> u32 {
    s.clamp(0, i64::from(u32::MAX)) as u32
}

/// The flags byte of an indicator as stored.
fn flags_of(ind: &Indicator) -> u8 {
    let mut flags = 0;
    if ind.no_attribution {
        flags |= FLAG_NO_ATTRIBUTION;
    }
    if ind.defanged {
        flags |= FLAG_DEFANGED;
    }
    match ind.direction {
        Some(Direction::Src) => flags |= FLAG_DIR_SRC,
        Some(Direction::Dst) => flags |= FLAG_DIR_DST,
        None => {}
    }
    flags
}

/// The confidence byte as stored (255: none).
fn confidence_code(ind: &Indicator) -> u8 {
    ind.confidence.map_or(255, |c| c.min(100))
}

/// The validity start as stored, to the second.
fn valid_from_code(v: &Validity) -> u32 {
    v.valid_from
        .map_or(OPEN_FROM, |v| clamp_u32(ceil_secs(v)).max(1))
}

/// The validity end as stored, to the second.
fn valid_until_code(v: &Validity) -> u32 {
    v.valid_until
        .map_or(OPEN_UNTIL, |v| clamp_u32(ceil_secs(v)).min(OPEN_UNTIL - 1))
}

/// The stored form of one indicator record, borrowed: what a [`MetaTable`] keeps of it, and
/// so what decides whether two records are the same (see [`Fingerprint`]).
struct Stored<'a, T: Iterator<Item = &'a str>> {
    kind: u8,
    tlp: u8,
    flags: u8,
    confidence: u8,
    id: &'a str,
    value: &'a str,
    source: &'a str,
    origin: Option<&'a str>,
    sharing_group: Option<&'a str>,
    distribution: u8,
    valid_from: u32,
    valid_until: u32,
    port: u16,
    tags: T,
}

impl<'a, T: Iterator<Item = &'a str>> Stored<'a, T> {
    fn fingerprint(self) -> Fingerprint {
        use xxhash_rust::xxh3::Xxh3;
        let mut h = Xxh3::new();
        let s = |h: &mut Xxh3, v: &str| {
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        };
        let o = |h: &mut Xxh3, v: Option<&str>| match v {
            None => h.update(&[0]),
            Some(v) => {
                h.update(&[1]);
                s(h, v);
            }
        };
        h.update(&[
            self.kind,
            self.tlp,
            self.flags,
            self.confidence,
            self.distribution,
        ]);
        h.update(&self.valid_from.to_le_bytes());
        h.update(&self.valid_until.to_le_bytes());
        h.update(&self.port.to_le_bytes());
        s(&mut h, self.id);
        s(&mut h, self.value);
        s(&mut h, self.source);
        o(&mut h, self.origin);
        o(&mut h, self.sharing_group);
        let mut n = 0u64;
        for t in self.tags {
            s(&mut h, t);
            n += 1;
        }
        h.update(&n.to_le_bytes());
        Fingerprint(h.digest128())
    }
}

/// A 128-bit hash of everything a [`MetaTable`] stores of one indicator: equal for two
/// records exactly when a compile would store them alike (up to a 2^-64 chance at a billion
/// records), so that a delta can tell kept, removed and changed indicators apart without
/// holding either set's strings twice. [`fingerprint_of`] and [`MetaTable::fingerprint`]
/// hash the same stored form, through the same code as [`MetaBuilder::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub u128);

/// The fingerprint of `ind` as [`MetaBuilder::push`] would store it with `port`.
pub fn fingerprint_of(ind: &Indicator, port: Option<u16>) -> Fingerprint {
    Stored {
        kind: kind_code(ind.kind),
        tlp: tlp_code(ind.tlp),
        flags: flags_of(ind),
        confidence: confidence_code(ind),
        id: &ind.id,
        value: &ind.value,
        source: &ind.source,
        origin: ind.origin.as_deref(),
        sharing_group: ind.sharing_group.as_deref(),
        distribution: ind.distribution.unwrap_or(255),
        valid_from: valid_from_code(&ind.validity),
        valid_until: valid_until_code(&ind.validity),
        port: port.unwrap_or(0),
        tags: ind.tags.iter().map(|t| &**t),
    }
    .fingerprint()
}

/// Shares the strings of rebuilt indicators ([`MetaTable::indicator`]): one `Arc` per distinct
/// source, origin, sharing group and tag, as ingest gives them.
#[derive(Debug, Default)]
pub struct Interner(HashMap<Box<str>, Arc<str>>);

impl Interner {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(s.into(), a.clone());
        a
    }
}

/// The columns of a [`MetaTable`] while it is built.
#[derive(Debug, Default)]
struct Columns {
    kind: Vec<u8>,
    tlp: Vec<u8>,
    flags: Vec<u8>,
    confidence: Vec<u8>,
    id: Vec<u32>,
    value: Vec<u32>,
    context: Vec<u32>,
    valid_from: Vec<u32>,
    valid_until: Vec<u32>,
    port: Vec<u16>,
    tag_ends: Vec<u32>,
    tag_ids: Vec<u32>,
    ctx_source: Vec<u32>,
    ctx_origin: Vec<u32>,
    ctx_sharing_group: Vec<u32>,
    ctx_distribution: Vec<u8>,
    by_tlp: Vec<RoaringBitmap>,
}

/// Builds a [`MetaTable`], one indicator at a time, in ordinal order.
#[derive(Debug, Default)]
pub struct MetaBuilder {
    t: Columns,
    strings: StringPoolBuilder,
    contexts: HashMap<Context, u32>,
    by_source: HashMap<u32, RoaringBitmap>,
    by_tag: HashMap<u32, RoaringBitmap>,
}

impl MetaBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        let mut b = Self::default();
        b.t.by_tlp = vec![RoaringBitmap::new(); Tlp::ALL.len()];
        b
    }

    /// Adds the next indicator; returns its ordinal.
    pub fn push(&mut self, ind: &Indicator, port: Option<u16>) -> u32 {
        let ord = self.t.kind.len() as u32;
        let t = &mut self.t;
        t.kind.push(kind_code(ind.kind));
        t.tlp.push(tlp_code(ind.tlp));
        t.flags.push(flags_of(ind));
        t.confidence.push(confidence_code(ind));
        t.id.push(self.strings.push_unique(&ind.id));
        t.value.push(self.strings.push_unique(&ind.value));
        let source = self.strings.intern(&ind.source);
        let ctx = Context {
            source,
            origin: ind
                .origin
                .as_deref()
                .map_or(NO_STRING, |o| self.strings.intern(o)),
            sharing_group: ind
                .sharing_group
                .as_deref()
                .map_or(NO_STRING, |g| self.strings.intern(g)),
            distribution: ind.distribution.unwrap_or(255),
        };
        let next_ctx = self.contexts.len() as u32;
        let ctx_id = *self.contexts.entry(ctx).or_insert_with(|| {
            t.ctx_source.push(ctx.source);
            t.ctx_origin.push(ctx.origin);
            t.ctx_sharing_group.push(ctx.sharing_group);
            t.ctx_distribution.push(ctx.distribution);
            next_ctx
        });
        t.context.push(ctx_id);
        t.valid_from.push(valid_from_code(&ind.validity));
        t.valid_until.push(valid_until_code(&ind.validity));
        t.port.push(port.unwrap_or(0));
        for tag in &ind.tags {
            let id = self.strings.intern(tag);
            t.tag_ids.push(id);
            self.by_tag.entry(id).or_default().insert(ord);
        }
        t.tag_ends.push(t.tag_ids.len() as u32);
        t.by_tlp[tlp_code(ind.tlp) as usize].insert(ord);
        self.by_source.entry(source).or_default().insert(ord);
        ord
    }

    /// The finished table.
    pub fn build(self) -> MetaTable {
        let mut by_source: Vec<_> = self.by_source.into_iter().collect();
        by_source.sort_by_key(|(k, _)| *k);
        let mut by_tag: Vec<_> = self.by_tag.into_iter().collect();
        by_tag.sort_by_key(|(k, _)| *k);
        let t = self.t;
        MetaTable {
            kind: t.kind.into(),
            tlp: t.tlp.into(),
            flags: t.flags.into(),
            confidence: t.confidence.into(),
            id: t.id.into(),
            value: t.value.into(),
            context: t.context.into(),
            valid_from: t.valid_from.into(),
            valid_until: t.valid_until.into(),
            port: t.port.into(),
            tag_ends: t.tag_ends.into(),
            tag_ids: t.tag_ids.into(),
            ctx_source: t.ctx_source.into(),
            ctx_origin: t.ctx_origin.into(),
            ctx_sharing_group: t.ctx_sharing_group.into(),
            ctx_distribution: t.ctx_distribution.into(),
            strings: self.strings.build(),
            by_tlp: t.by_tlp,
            by_source,
            by_tag,
        }
    }
}

impl MetaTable {
    /// How many sections [`Sections::write_sections`] writes (so that a loader can hand the
    /// metadata its own slice and read the rest in parallel).
    pub const SECTIONS: usize = 27;

    /// Number of indicators.
    pub fn len(&self) -> usize {
        self.kind.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.kind.is_empty()
    }

    /// Every ordinal of the table, ascending.
    pub fn ords(&self) -> impl ExactSizeIterator<Item = IndicatorId> + use<> {
        (0..self.len() as u32).map(IndicatorId::new)
    }

    /// The kind of indicator `ord` (the first kind for an unknown code, which `validate`
    /// refuses).
    ///
    /// # Panics
    /// This and every accessor taking an ordinal panic if `ord` is not below
    /// [`MetaTable::len`] (a caller bug: ordinals come from this index, and callers skip those
    /// at or past `len()`). Every column has `len()` entries once loaded; what the columns
    /// hold never makes an accessor panic.
    pub fn kind(&self, ord: IndicatorId) -> Kind {
        let code = self.kind[ord.as_usize()] as usize;
        Kind::ALL.get(code).copied().unwrap_or(Kind::ALL[0])
    }

    /// The TLP of indicator `ord` (the most restrictive level for an unknown code, which
    /// `validate` refuses).
    pub fn tlp(&self, ord: IndicatorId) -> Tlp {
        let code = self.tlp[ord.as_usize()] as usize;
        Tlp::ALL
            .get(code)
            .copied()
            .unwrap_or(Tlp::ALL[Tlp::ALL.len() - 1])
    }

    /// The id of indicator `ord`.
    pub fn id(&self, ord: IndicatorId) -> &str {
        self.strings.get(self.id[ord.as_usize()])
    }

    /// The canonical value of indicator `ord`.
    pub fn value(&self, ord: IndicatorId) -> &str {
        self.strings.get(self.value[ord.as_usize()])
    }

    /// The source of indicator `ord`.
    pub fn source(&self, ord: IndicatorId) -> &str {
        let s = self.ctx_column(&self.ctx_source, ord).unwrap_or(NO_STRING);
        self.strings.get(s)
    }

    /// Column `col` of the context table for indicator `ord`; `None` for a context id past
    /// the table (which `validate` refuses).
    #[inline]
    fn ctx_column<T: bytemuck::Pod>(&self, col: &Arr<T>, ord: IndicatorId) -> Option<T> {
        col.get(self.context[ord.as_usize()] as usize).copied()
    }

    /// The producing organisation of indicator `ord`, if known.
    pub fn origin(&self, ord: IndicatorId) -> Option<&str> {
        let o = self.ctx_column(&self.ctx_origin, ord)?;
        (o != NO_STRING).then(|| self.strings.get(o))
    }

    /// The MISP distribution of indicator `ord`, if its source has one.
    pub fn distribution(&self, ord: IndicatorId) -> Option<u8> {
        let d = self.ctx_column(&self.ctx_distribution, ord)?;
        (d != 255).then_some(d)
    }

    /// The sharing group of indicator `ord`, if any.
    pub fn sharing_group(&self, ord: IndicatorId) -> Option<&str> {
        let g = self.ctx_column(&self.ctx_sharing_group, ord)?;
        (g != NO_STRING).then(|| self.strings.get(g))
    }

    /// The tags of indicator `ord` (none where the tag offsets are out of order or range,
    /// which `validate` refuses).
    pub fn tags(&self, ord: IndicatorId) -> impl Iterator<Item = &str> {
        let i = ord.as_usize();
        let start = if i == 0 { 0 } else { self.tag_ends[i - 1] } as usize;
        let end = self.tag_ends[i] as usize;
        self.tag_ids
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|&t| self.strings.get(t))
    }

    /// The port the same event must show, for network indicators with a port constraint.
    pub fn port(&self, ord: IndicatorId) -> Option<u16> {
        let p = self.port[ord.as_usize()];
        (p != 0).then_some(p)
    }

    /// Confidence 0–100, where the source gave one.
    pub fn confidence(&self, ord: IndicatorId) -> Option<u8> {
        let c = self.confidence[ord.as_usize()];
        (c != 255).then_some(c)
    }

    /// Where in a flow the indicator was seen, where the source says.
    pub fn direction(&self, ord: IndicatorId) -> Option<Direction> {
        let f = self.flags[ord.as_usize()];
        if f & FLAG_DIR_SRC != 0 {
            Some(Direction::Src)
        } else if f & FLAG_DIR_DST != 0 {
            Some(Direction::Dst)
        } else {
            None
        }
    }

    /// Whether the source must not be named in anything sent out (`tlp:ex:chr`).
    pub fn no_attribution(&self, ord: IndicatorId) -> bool {
        self.flags[ord.as_usize()] & FLAG_NO_ATTRIBUTION != 0
    }

    /// The validity window of indicator `ord`, to the second.
    pub fn validity(&self, ord: IndicatorId) -> Validity {
        let from = self.valid_from[ord.as_usize()];
        let until = self.valid_until[ord.as_usize()];
        Validity {
            valid_from: (from != OPEN_FROM)
                .then(|| Timestamp::from_second(i64::from(from)).ok())
                .flatten(),
            valid_until: (until != OPEN_UNTIL)
                .then(|| Timestamp::from_second(i64::from(until)).ok())
                .flatten(),
        }
    }

    /// Whether indicator `ord` is valid at `unix_seconds` (`[from, until)`).
    #[inline]
    pub fn valid_at(&self, ord: IndicatorId, unix_seconds: i64) -> bool {
        let from = i64::from(self.valid_from[ord.as_usize()]);
        let until = self.valid_until[ord.as_usize()];
        (from == i64::from(OPEN_FROM) || unix_seconds >= from)
            && (until == OPEN_UNTIL || unix_seconds < i64::from(until))
    }

    /// Ordinals per TLP level, least restrictive first.
    pub fn by_tlp(&self, tlp: Tlp) -> &RoaringBitmap {
        // One bitmap per level, checked on load.
        &self.by_tlp[tlp_code(tlp) as usize]
    }

    /// Ordinals per source name.
    pub fn by_source(&self) -> impl Iterator<Item = (&str, &RoaringBitmap)> {
        self.by_source
            .iter()
            .map(|(s, b)| (self.strings.get(*s), b))
    }

    /// Ordinals per tag.
    pub fn by_tag(&self) -> impl Iterator<Item = (&str, &RoaringBitmap)> {
        self.by_tag.iter().map(|(s, b)| (self.strings.get(*s), b))
    }

    /// Bytes of fixed per-indicator arrays (excluding strings, tags and bitmaps).
    pub fn fixed_bytes(&self) -> usize {
        self.len() * (4 + 4 * 6 + 2)
    }

    /// Bytes of everything.
    pub fn heap_bytes(&self) -> usize {
        self.fixed_bytes()
            + self.tag_ids.len() * 4
            + self.ctx_source.len() * 13
            + self.strings.heap_bytes()
            + self
                .by_tlp
                .iter()
                .chain(self.by_source.iter().map(|(_, b)| b))
                .chain(self.by_tag.iter().map(|(_, b)| b))
                .map(|b| b.serialized_size())
                .sum::<usize>()
    }

    /// Whether the kind column is viewed in place in `backing` (for the alignment tests).
    #[cfg(test)]
    pub(crate) fn kinds_view_of(&self, backing: &bytes::Bytes) -> bool {
        self.kind.is_view_of(backing)
    }

    /// Checks every invariant (O(n)): codes known, strings and tags in range, contexts
    /// consistent, bitmaps agreeing with the columns.
    pub fn validate(&self) -> Result<(), FormatError> {
        self.check_shape()?;
        let n = self.kind.len();
        let nk = Kind::ALL.len() as u8;
        let nt = Tlp::ALL.len() as u8;
        if self.kind.iter().any(|&k| k >= nk) || self.tlp.iter().any(|&t| t >= nt) {
            return Err(FormatError::new(STRUCTURE, "unknown kind or TLP code"));
        }
        self.strings.validate()?;
        let ns = self.strings.len() as u32;
        let str_ok = |v: &[u32], allow_none: bool| {
            v.iter().all(|&s| s < ns || (allow_none && s == NO_STRING))
        };
        if !str_ok(&self.id, false) || !str_ok(&self.value, false) || !str_ok(&self.tag_ids, false)
        {
            return Err(FormatError::new(STRUCTURE, "string index out of range"));
        }
        let nc = self.ctx_source.len();
        if !str_ok(&self.ctx_source, false)
            || !str_ok(&self.ctx_origin, true)
            || !str_ok(&self.ctx_sharing_group, true)
            || self.context.iter().any(|&c| c as usize >= nc)
        {
            return Err(FormatError::new(STRUCTURE, "context table inconsistent"));
        }
        let mut prev = 0;
        for &e in self.tag_ends.iter() {
            if e < prev || e as usize > self.tag_ids.len() {
                return Err(FormatError::new(STRUCTURE, "tag offsets out of order"));
            }
            prev = e;
        }
        for (code, b) in self.by_tlp.iter().enumerate() {
            if b.max().is_some_and(|m| m as usize >= n) {
                return Err(FormatError::new(
                    STRUCTURE,
                    "TLP bitmap names an unknown ordinal",
                ));
            }
            if b.iter().any(|o| self.tlp[o as usize] as usize != code) {
                return Err(FormatError::new(
                    STRUCTURE,
                    "TLP bitmap disagrees with the column",
                ));
            }
        }
        if self.by_tlp.iter().map(|b| b.len()).sum::<u64>() != n as u64 {
            return Err(FormatError::new(
                STRUCTURE,
                "TLP bitmaps do not cover every indicator",
            ));
        }
        for (s, b) in self.by_source.iter().chain(self.by_tag.iter()) {
            if *s >= ns || b.max().is_some_and(|m| m as usize >= n) {
                return Err(FormatError::new(
                    STRUCTURE,
                    "source or tag bitmap out of range",
                ));
            }
        }
        Ok(())
    }

    /// What loading checks, in O(1): every column as long as the others, the context table's
    /// columns alike, the string and tag blobs as long as their last offsets say, one bitmap
    /// per TLP level. Accessors rely on nothing more.
    fn check_shape(&self) -> Result<(), FormatError> {
        let n = self.kind.len();
        let cols = [
            self.tlp.len(),
            self.flags.len(),
            self.confidence.len(),
            self.id.len(),
            self.value.len(),
            self.context.len(),
            self.valid_from.len(),
            self.valid_until.len(),
            self.port.len(),
            self.tag_ends.len(),
        ];
        if cols.iter().any(|&c| c != n) {
            return Err(FormatError::new(STRUCTURE, "columns of different lengths"));
        }
        let nc = self.ctx_source.len();
        if self.ctx_origin.len() != nc
            || self.ctx_sharing_group.len() != nc
            || self.ctx_distribution.len() != nc
        {
            return Err(FormatError::new(STRUCTURE, "context table inconsistent"));
        }
        self.strings.check_shape()?;
        if self.tag_ends.last().map_or(0, |&e| e as usize) != self.tag_ids.len() {
            return Err(FormatError::new(
                STRUCTURE,
                "tag list longer than its offsets",
            ));
        }
        if self.by_tlp.len() != Tlp::ALL.len() {
            return Err(FormatError::new(STRUCTURE, "TLP bitmaps missing"));
        }
        Ok(())
    }
}

impl MetaTable {
    /// Whether the value of indicator `ord` was written defanged in its source.
    pub fn defanged(&self, ord: IndicatorId) -> bool {
        self.flags[ord.as_usize()] & FLAG_DEFANGED != 0
    }

    /// The [`Fingerprint`] of indicator `ord`'s stored record.
    pub fn fingerprint(&self, ord: IndicatorId) -> Fingerprint {
        let ctx = |col: &Arr<u32>| self.ctx_column(col, ord).unwrap_or(NO_STRING);
        let opt = |s: u32| (s != NO_STRING).then(|| self.strings.get(s));
        let i = ord.as_usize();
        Stored {
            kind: self.kind[i],
            tlp: self.tlp[i],
            flags: self.flags[i],
            confidence: self.confidence[i],
            id: self.id(ord),
            value: self.value(ord),
            source: self.strings.get(ctx(&self.ctx_source)),
            origin: opt(ctx(&self.ctx_origin)),
            sharing_group: opt(ctx(&self.ctx_sharing_group)),
            distribution: self.ctx_column(&self.ctx_distribution, ord).unwrap_or(255),
            valid_from: self.valid_from[i],
            valid_until: self.valid_until[i],
            port: self.port[i],
            tags: self.tags(ord),
        }
        .fingerprint()
    }

    /// Indicator `ord` rebuilt from its record: what [`MetaBuilder::push`] stores of it
    /// again, with the same fingerprint (validity to the second; MISP `first_seen` and
    /// `last_seen`, which a compile does not keep, absent). Strings shared through `strings`.
    pub fn indicator(&self, ord: IndicatorId, strings: &mut Interner) -> Indicator {
        let kind = self.kind(ord);
        let mut ind = Indicator::new(
            self.id(ord),
            kind,
            self.value(ord),
            strings.get(self.source(ord)),
            self.tlp(ord),
        );
        ind.origin = self.origin(ord).map(|o| strings.get(o));
        ind.tags = self.tags(ord).map(|t| strings.get(t)).collect();
        ind.no_attribution = self.no_attribution(ord);
        ind.defanged = self.defanged(ord);
        ind.distribution = self.distribution(ord);
        ind.sharing_group = self.sharing_group(ord).map(|g| strings.get(g));
        ind.validity = self.validity(ord);
        ind.confidence = self.confidence(ord);
        ind.direction = self.direction(ord);
        // An ip:port carries its port in the value (the compile stores it in both).
        ind.port = if kind == Kind::IpPort {
            None
        } else {
            self.port(ord)
        };
        ind
    }
}

/// The metadata of a compiled index as matching and routing see it: one table, or a base
/// table with some of its ordinals removed and a table of added indicators whose ordinals
/// follow the base's (a snapshot with deltas applied, see [`delta`](super::delta)).
///
/// Ordinals are those of the index's lookups; every accessor taking one answers for the table
/// that holds it. A removed base ordinal still answers (lookups never return it).
#[derive(Clone, Copy, Debug)]
pub struct Meta<'a> {
    base: &'a MetaTable,
    layer: Option<(&'a RoaringBitmap, &'a MetaTable)>,
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident -> $ret:ty;)*) => {
        $(
            $(#[$doc])*
            #[inline]
            pub fn $name(&self, ord: IndicatorId) -> $ret {
                let (t, o) = self.at(ord);
                t.$name(o)
            }
        )*
    };
}

impl<'a> Meta<'a> {
    /// The view of one table.
    pub fn of(base: &'a MetaTable) -> Self {
        Meta { base, layer: None }
    }

    /// The view of `base` without `removed`, followed by `added`.
    pub fn layered(base: &'a MetaTable, removed: &'a RoaringBitmap, added: &'a MetaTable) -> Self {
        Meta {
            base,
            layer: Some((removed, added)),
        }
    }

    /// The table holding `ord`, and `ord` within it.
    #[inline]
    fn at(&self, ord: IndicatorId) -> (&'a MetaTable, IndicatorId) {
        let split = self.base.len() as u32;
        match self.layer {
            Some((_, added)) if ord.as_u32() >= split => {
                (added, IndicatorId::new(ord.as_u32() - split))
            }
            _ => (self.base, ord),
        }
    }

    /// One past the highest ordinal (removed base ordinals included): every ordinal a lookup
    /// returns is below it.
    #[inline]
    pub fn len(&self) -> usize {
        self.base.len() + self.layer.map_or(0, |(_, a)| a.len())
    }

    /// Whether there are no ordinals at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of indicators (removed ones not counted).
    pub fn live(&self) -> usize {
        self.len() - self.layer.map_or(0, |(r, _)| r.len() as usize)
    }

    /// The base ordinals removed by deltas (empty for a plain snapshot).
    pub fn removed(&self) -> Option<&'a RoaringBitmap> {
        self.layer.map(|(r, _)| r)
    }

    /// The ordinal where added indicators begin (the base table's length).
    pub fn split(&self) -> u32 {
        self.base.len() as u32
    }

    /// Every live ordinal, ascending.
    pub fn ords(&self) -> impl Iterator<Item = IndicatorId> + 'a {
        let (base, layer) = (self.base, self.layer);
        let split = base.len() as u32;
        (0..split)
            .filter(move |&o| layer.is_none_or(|(r, _)| !r.contains(o)))
            .chain(split..split + layer.map_or(0, |(_, a)| a.len() as u32))
            .map(IndicatorId::new)
    }

    forward! {
        /// The kind of indicator `ord` ([`MetaTable::kind`]).
        kind -> Kind;
        /// The TLP of indicator `ord`.
        tlp -> Tlp;
        /// The id of indicator `ord`.
        id -> &'a str;
        /// The canonical value of indicator `ord`.
        value -> &'a str;
        /// The source of indicator `ord`.
        source -> &'a str;
        /// The producing organisation of indicator `ord`, if known.
        origin -> Option<&'a str>;
        /// The MISP distribution of indicator `ord`, if its source has one.
        distribution -> Option<u8>;
        /// The sharing group of indicator `ord`, if any.
        sharing_group -> Option<&'a str>;
        /// The port constraint of indicator `ord`.
        port -> Option<u16>;
        /// Confidence 0–100, where the source gave one.
        confidence -> Option<u8>;
        /// Where in a flow the indicator was seen, where the source says.
        direction -> Option<Direction>;
        /// Whether the source must not be named in anything sent out.
        no_attribution -> bool;
        /// Whether the value was written defanged in its source.
        defanged -> bool;
        /// The validity window of indicator `ord`, to the second.
        validity -> Validity;
        /// The fingerprint of indicator `ord`'s stored record.
        fingerprint -> Fingerprint;
    }

    /// The tags of indicator `ord`.
    pub fn tags(&self, ord: IndicatorId) -> impl Iterator<Item = &'a str> + use<'a> {
        let (t, o) = self.at(ord);
        t.tags(o)
    }

    /// Whether indicator `ord` is valid at `unix_seconds`.
    #[inline]
    pub fn valid_at(&self, ord: IndicatorId, unix_seconds: i64) -> bool {
        let (t, o) = self.at(ord);
        t.valid_at(o, unix_seconds)
    }

    /// Indicator `ord` rebuilt ([`MetaTable::indicator`]).
    pub fn indicator(&self, ord: IndicatorId, strings: &mut Interner) -> Indicator {
        let (t, o) = self.at(ord);
        t.indicator(o, strings)
    }

    /// Live ordinals per TLP level.
    pub fn by_tlp(&self, tlp: Tlp) -> std::borrow::Cow<'a, RoaringBitmap> {
        let base = self.base.by_tlp(tlp);
        match self.layer {
            None => std::borrow::Cow::Borrowed(base),
            Some((removed, added)) => {
                let mut b = base - removed;
                let split = self.base.len() as u32;
                b.extend(added.by_tlp(tlp).iter().map(|o| o + split));
                std::borrow::Cow::Owned(b)
            }
        }
    }

    /// Number of distinct sources of live indicators.
    pub fn source_count(&self) -> usize {
        match self.layer {
            None => self.base.by_source.len(),
            Some((removed, added)) => {
                let mut names: std::collections::HashSet<&str> = self
                    .base
                    .by_source()
                    .filter(|(_, b)| !b.is_subset(removed))
                    .map(|(s, _)| s)
                    .collect();
                names.extend(added.by_source().map(|(s, _)| s));
                names.len()
            }
        }
    }
}

fn put_bitmaps(w: &mut SectionWriter, keys: &[u32], maps: &[&RoaringBitmap]) {
    w.put(keys);
    let mut ends = Vec::with_capacity(maps.len());
    let mut blob = Vec::new();
    for m in maps {
        // Writing into a Vec cannot fail.
        let _ = m.serialize_into(&mut blob);
        ends.push(blob.len() as u64);
    }
    w.put(&ends);
    w.put(&blob);
}

fn take_bitmaps(r: &mut SectionReader) -> Result<(Arr<u32>, Vec<RoaringBitmap>), FormatError> {
    let keys: Arr<u32> = r.take(STRUCTURE)?;
    let ends: Arr<u64> = r.take(STRUCTURE)?;
    let blob: Arr<u8> = r.take(STRUCTURE)?;
    if ends.len() != keys.len() {
        return Err(FormatError::new(STRUCTURE, "bitmap count mismatch"));
    }
    let mut maps = Vec::with_capacity(ends.len());
    let mut start = 0u64;
    for &end in ends.iter() {
        if end < start || end > blob.len() as u64 {
            return Err(FormatError::new(STRUCTURE, "bitmap offsets out of range"));
        }
        let bytes = &blob[start as usize..end as usize];
        let m = RoaringBitmap::deserialize_from(Cursor::new(bytes))
            .map_err(|e| FormatError::new(STRUCTURE, format!("bitmap: {e}")))?;
        maps.push(m);
        start = end;
    }
    if start != blob.len() as u64 {
        return Err(FormatError::new(STRUCTURE, "bytes after the last bitmap"));
    }
    Ok((keys, maps))
}

impl Sections for MetaTable {
    fn write_sections(&self, w: &mut SectionWriter) {
        w.put(&self.kind);
        w.put(&self.tlp);
        w.put(&self.flags);
        w.put(&self.confidence);
        w.put(&self.id);
        w.put(&self.value);
        w.put(&self.context);
        w.put(&self.valid_from);
        w.put(&self.valid_until);
        w.put(&self.port);
        w.put(&self.tag_ends);
        w.put(&self.tag_ids);
        w.put(&self.ctx_source);
        w.put(&self.ctx_origin);
        w.put(&self.ctx_sharing_group);
        w.put(&self.ctx_distribution);
        w.put(&self.strings.blob);
        w.put(&self.strings.ends);
        let tlp_keys: Vec<u32> = (0..self.by_tlp.len() as u32).collect();
        put_bitmaps(w, &tlp_keys, &self.by_tlp.iter().collect::<Vec<_>>());
        let (sk, sm): (Vec<u32>, Vec<&RoaringBitmap>) =
            self.by_source.iter().map(|(k, m)| (*k, m)).unzip();
        put_bitmaps(w, &sk, &sm);
        let (tk, tm): (Vec<u32>, Vec<&RoaringBitmap>) =
            self.by_tag.iter().map(|(k, m)| (*k, m)).unzip();
        put_bitmaps(w, &tk, &tm);
    }

    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        let mut t = MetaTable {
            kind: r.take(STRUCTURE)?,
            tlp: r.take(STRUCTURE)?,
            flags: r.take(STRUCTURE)?,
            confidence: r.take(STRUCTURE)?,
            id: r.take(STRUCTURE)?,
            value: r.take(STRUCTURE)?,
            context: r.take(STRUCTURE)?,
            valid_from: r.take(STRUCTURE)?,
            valid_until: r.take(STRUCTURE)?,
            port: r.take(STRUCTURE)?,
            tag_ends: r.take(STRUCTURE)?,
            tag_ids: r.take(STRUCTURE)?,
            ctx_source: r.take(STRUCTURE)?,
            ctx_origin: r.take(STRUCTURE)?,
            ctx_sharing_group: r.take(STRUCTURE)?,
            ctx_distribution: r.take(STRUCTURE)?,
            strings: StringPool {
                blob: r.take(STRUCTURE)?,
                ends: r.take(STRUCTURE)?,
            },
            ..Default::default()
        };
        t.by_tlp = take_bitmaps(r)?.1;
        let (sk, sm) = take_bitmaps(r)?;
        t.by_source = sk.iter().copied().zip(sm).collect();
        let (tk, tm) = take_bitmaps(r)?;
        t.by_tag = tk.iter().copied().zip(tm).collect();
        t.check_shape()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetaTable {
        let mut b = MetaBuilder::new();
        let src: Arc<str> = Arc::from("event-1");
        let mut a = Indicator::new("u1", Kind::Domain, "evil.example", src.clone(), Tlp::Amber);
        a.tags = vec![Arc::from("tlp:amber"), Arc::from("misp:type=domain")];
        a.origin = Some(Arc::from("CERT-A"));
        a.validity.valid_until = Some("2025-06-30T00:00:00Z".parse().unwrap());
        a.direction = Some(Direction::Dst);
        b.push(&a, None);
        let mut c = Indicator::new("u2", Kind::Cidr, "203.0.113.0/28", src, Tlp::AmberStrict);
        c.distribution = Some(4);
        c.sharing_group = Some(Arc::from("sg-1"));
        b.push(&c, Some(8443));
        b.push(
            &Indicator::new(
                "l:1",
                Kind::Ipv4,
                "198.51.100.1",
                Arc::from("list"),
                Tlp::Green,
            ),
            None,
        );
        b.build()
    }

    #[test]
    fn accessors_return_what_was_pushed() {
        let t = sample();
        t.validate().unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            (
                t.kind(IndicatorId::new(0)),
                t.value(IndicatorId::new(0)),
                t.id(IndicatorId::new(0))
            ),
            (Kind::Domain, "evil.example", "u1")
        );
        assert_eq!(
            t.tags(IndicatorId::new(0)).collect::<Vec<_>>(),
            ["tlp:amber", "misp:type=domain"]
        );
        assert_eq!(t.origin(IndicatorId::new(0)), Some("CERT-A"));
        assert_eq!(t.direction(IndicatorId::new(0)), Some(Direction::Dst));
        assert_eq!(t.port(IndicatorId::new(1)), Some(8443));
        assert_eq!(t.sharing_group(IndicatorId::new(1)), Some("sg-1"));
        assert_eq!(t.distribution(IndicatorId::new(1)), Some(4));
        assert_eq!(t.source(IndicatorId::new(2)), "list");
        assert_eq!(t.tags(IndicatorId::new(2)).count(), 0);
        let until = Timestamp::from_second(1_751_241_600).unwrap().as_second();
        assert!(t.valid_at(IndicatorId::new(0), until - 1));
        assert!(!t.valid_at(IndicatorId::new(0), until));
        assert!(t.valid_at(IndicatorId::new(2), 0));
        assert_eq!(t.by_tlp(Tlp::Green).iter().collect::<Vec<_>>(), [2]);
        assert_eq!(
            t.by_source().map(|(s, b)| (s, b.len())).collect::<Vec<_>>(),
            [("event-1", 2), ("list", 1)]
        );
    }

    #[test]
    fn sections_round_trip_and_corruption_is_refused() {
        let t = sample();
        let mut w = SectionWriter::new();
        t.write_sections(&mut w);
        assert_eq!(w.sections.len(), MetaTable::SECTIONS);
        let slices: Vec<&[u8]> = w.sections.iter().map(|s| s.as_slice()).collect();
        let back = MetaTable::read_sections(&mut SectionReader::new(&slices)).unwrap();
        assert_eq!(back.value(IndicatorId::new(1)), "203.0.113.0/28");
        assert_eq!(back.by_tlp(Tlp::AmberStrict).len(), 1);
        // A TLP code beyond the known levels: loads (an O(1) check cannot see it), reads as
        // the most restrictive level, and `validate` refuses it.
        let mut bad = w.sections.clone();
        bad[1][0] = 9;
        let slices: Vec<&[u8]> = bad.iter().map(|s| s.as_slice()).collect();
        let loaded = MetaTable::read_sections(&mut SectionReader::new(&slices)).unwrap();
        assert_eq!(loaded.tlp(IndicatorId::new(0)), Tlp::Red);
        assert!(loaded.validate().is_err());
        // A string index past the pool: reads as "", refused by `validate`.
        let mut bad = w.sections.clone();
        bad[5][0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let slices: Vec<&[u8]> = bad.iter().map(|s| s.as_slice()).collect();
        let loaded = MetaTable::read_sections(&mut SectionReader::new(&slices)).unwrap();
        assert_eq!(loaded.value(IndicatorId::new(0)), "");
        assert!(loaded.validate().is_err());
        // A context id past the table, tag offsets out of range: no panic.
        let mut bad = w.sections.clone();
        bad[6][0..4].copy_from_slice(&7u32.to_le_bytes());
        bad[10][0..4].copy_from_slice(&99u32.to_le_bytes());
        let slices: Vec<&[u8]> = bad.iter().map(|s| s.as_slice()).collect();
        let loaded = MetaTable::read_sections(&mut SectionReader::new(&slices)).unwrap();
        assert_eq!(
            (
                loaded.source(IndicatorId::new(0)),
                loaded.origin(IndicatorId::new(0))
            ),
            ("", None)
        );
        assert_eq!(loaded.tags(IndicatorId::new(0)).count(), 0);
        assert_eq!(loaded.tags(IndicatorId::new(1)).count(), 0);
        assert!(loaded.validate().is_err());
        // Columns of different lengths are refused on load.
        let mut bad = w.sections.clone();
        bad[3].pop();
        let slices: Vec<&[u8]> = bad.iter().map(|s| s.as_slice()).collect();
        assert!(MetaTable::read_sections(&mut SectionReader::new(&slices)).is_err());
    }
}
