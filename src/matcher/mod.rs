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

pub mod scan;

use std::borrow::Cow;
use std::net::IpAddr;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::ArrowNativeType;
use arrow_schema::{DataType, TimeUnit};

use crate::index::CompiledIndex;
use crate::index::substring::{CLASS_ALL, CLASS_URL, CLASS_USER_AGENT};
use crate::indicator::Kind;
use crate::indicator::normalize;
use crate::telemetry::{FieldKind, FieldMap, TelemetryBatch, parse_time};

/// One match of an indicator in a telemetry row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Ordinal of the indicator in the index.
    pub ord: u32,
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
}

enum Column<'b> {
    Missing,
    Scalar(&'b ArrayRef),
    /// A dictionary-encoded column: each distinct value is looked up once per batch.
    Dict(&'b ArrayRef),
    List(&'b ArrayRef),
}

/// Lookup results per dictionary entry of one column in one batch: candidate ordinals
/// before the per-row validity and port checks.
#[derive(Default)]
struct DictCache {
    /// Per key: `u32::MAX` when not looked up yet, else the index of its span.
    slots: Vec<u32>,
    /// Per (key, port) when the field has a port, whose value changes the lookup.
    by_port: std::collections::HashMap<u64, u32, std::hash::BuildHasherDefault<KeyHasher>>,
    spans: Vec<(u32, u32)>,
    ords: Vec<u32>,
}

impl DictCache {
    /// The candidates for `key`, computing them with `lookup` the first time.
    fn get(
        &mut self,
        key: usize,
        port: Option<u16>,
        with_port: bool,
        lookup: impl FnOnce(&mut Vec<u32>),
    ) -> &[u32] {
        let slot = if with_port {
            self.by_port.get(&port_key(key, port)).copied()
        } else {
            self.slots.get(key).copied().filter(|&s| s != u32::MAX)
        };
        let span = match slot {
            Some(s) => s,
            None => {
                let start = self.ords.len();
                lookup(&mut self.ords);
                let s = self.spans.len() as u32;
                self.spans.push((start as u32, self.ords.len() as u32));
                if with_port {
                    self.by_port.insert(port_key(key, port), s);
                } else {
                    if self.slots.len() <= key {
                        self.slots.resize(key + 1, u32::MAX);
                    }
                    self.slots[key] = s;
                }
                s
            }
        };
        let (a, b) = self.spans[span as usize];
        &self.ords[a as usize..b as usize]
    }
}

/// One `u64` for a dictionary key and an optional port.
fn port_key(key: usize, port: Option<u16>) -> u64 {
    ((key as u64) << 17) | port.map_or(0, |p| (1 << 16) | u64::from(p))
}

/// A hasher for small integer keys that we make ourselves (no untrusted input chooses them):
/// one multiplication instead of SipHash's rounds.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        // The table takes low bits for the bucket, high bits for the tag: fold them together.
        let x = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 32);
    }
}

/// Per-row state while a row's hits are collected.
struct RowHits<'m, 'o> {
    meta: &'m crate::index::meta::MetaTable,
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
        for &ord in cands {
            if ord as usize >= self.meta.len() || seen.contains(&ord) {
                continue;
            }
            let event_time = *self.event_time.get_or_insert_with(time);
            if !self.meta.valid_at(ord, event_time.unwrap_or(self.now)) {
                continue;
            }
            if let Some(p) = self.meta.port(ord)
                && port != Some(p)
            {
                continue;
            }
            seen.push(ord);
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
        Matcher { index, fields, now }
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

    /// Matches one record batch whose first row is `first_row` of its file.
    ///
    /// Columns may be `Utf8` (and its large and view forms), UTF-8 `Binary`, numbers,
    /// timestamps (for the time field), lists of these (each element matched), or
    /// dictionaries of strings, whose distinct values are each looked up once per batch and
    /// the result shared by every row that points at them.
    pub fn match_record_batch(&self, batch: &RecordBatch, first_row: u64, out: &mut Vec<Hit>) {
        let specs = self.fields.fields();
        let cols: Vec<Column<'_>> = specs
            .iter()
            .map(|f| match batch.column_by_name(&f.name) {
                None => Column::Missing,
                Some(c) => match c.data_type() {
                    DataType::List(_) | DataType::LargeList(_) => Column::List(c),
                    DataType::Dictionary(_, _) => Column::Dict(c),
                    _ => Column::Scalar(c),
                },
            })
            .collect();
        let time_col = specs.iter().position(|f| f.kind == FieldKind::Time);
        // For each address field, the column of its port (`port@ADDR`).
        let port_of: Vec<Option<usize>> = specs
            .iter()
            .map(|f| {
                specs
                    .iter()
                    .position(|p| matches!(&p.kind, FieldKind::Port(addr) if *addr == f.name))
            })
            .collect();
        let matched = |f: &crate::telemetry::FieldSpec| {
            !matches!(f.kind, FieldKind::Time | FieldKind::Port(_))
        };
        // Dictionary keys, resolved once per batch, and the lookups per distinct value.
        let mut dicts: Vec<Option<(Vec<usize>, DictCache)>> = cols
            .iter()
            .zip(specs)
            .map(|(c, f)| match c {
                Column::Dict(a) if matched(f) => a
                    .as_any_dictionary_opt()
                    .map(|d| (d.normalized_keys(), DictCache::default())),
                _ => None,
            })
            .collect();
        let meta = self.index.meta();
        let mut ords = Vec::new();
        let mut seen = Vec::new();
        // Values borrow from the batch: no allocation per row, only per hit.
        let mut vals: Vec<Cow<'_, str>> = Vec::new();
        for r in 0..batch.num_rows() {
            let time = || time_col.and_then(|t| row_time(&cols[t], r));
            let mut row = RowHits {
                meta,
                now: self.now,
                row: first_row + r as u64,
                event_time: None,
                out: &mut *out,
            };
            for (fi, spec) in specs.iter().enumerate() {
                if !matched(spec) {
                    continue;
                }
                let port = || port_of[fi].and_then(|p| row_port(&cols[p], r));
                seen.clear();
                if let (Column::Dict(a), Some((keys, cache))) = (&cols[fi], &mut dicts[fi]) {
                    if a.is_null(r) {
                        continue;
                    }
                    let values = a.as_any_dictionary().values();
                    let key = keys[r];
                    let Some(v) = scalar_text(values.as_ref(), key) else {
                        continue;
                    };
                    let port = port();
                    let cands = cache.get(key, port, port_of[fi].is_some(), |o| {
                        self.lookup(&spec.kind, &v, port, o)
                    });
                    if !cands.is_empty() {
                        row.keep(fi, &v, port, cands, &mut seen, &time);
                    }
                    continue;
                }
                vals.clear();
                texts(&cols[fi], r, &mut vals);
                if vals.is_empty() {
                    continue;
                }
                let port = port();
                for v in &vals {
                    ords.clear();
                    self.lookup(&spec.kind, v, port, &mut ords);
                    if !ords.is_empty() {
                        row.keep(fi, v, port, &ords, &mut seen, &time);
                    }
                }
            }
        }
    }

    /// Looks one value of a field up; appends candidate ordinals (validity not yet checked).
    pub fn lookup(&self, kind: &FieldKind, v: &str, port: Option<u16>, out: &mut Vec<u32>) {
        let idx = self.index;
        match kind {
            FieldKind::Ip => {
                if let Ok(ip) = normalize::ip(v) {
                    idx.lookup_ip(ip, port, out);
                }
            }
            FieldKind::Domain => self.lookup_host(v, port, out),
            FieldKind::Url => {
                let t = v.trim();
                if !t.starts_with('/')
                    && let Ok(u) = normalize::url(t)
                {
                    idx.lookup_url(&u, out);
                    match u.host.parse::<IpAddr>() {
                        Ok(ip) => idx.lookup_ip(ip, None, out),
                        Err(_) => {
                            match u.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                                Some(v6) => {
                                    if let Ok(ip) = v6.parse::<IpAddr>() {
                                        idx.lookup_ip(ip, None, out);
                                    }
                                }
                                None => idx.lookup_name(u.host.as_bytes(), out),
                            }
                        }
                    }
                }
                idx.find_substrings(t.as_bytes(), CLASS_URL, out);
            }
            FieldKind::Md5 => self.digest(Kind::Md5, v, out),
            FieldKind::Sha1 => self.digest(Kind::Sha1, v, out),
            FieldKind::Sha256 => self.digest(Kind::Sha256, v, out),
            FieldKind::Hash => {
                if let Ok(n) = normalize::hash_by_length(v) {
                    idx.lookup_digest(n.kind, &n.value, out);
                    // A 32-digit value may equally be a JA3 fingerprint or an x509 MD5:
                    // only the digest kinds are consulted for `hash`.
                }
            }
            FieldKind::Ja3 => self.digest(Kind::Ja3, v, out),
            FieldKind::Ja3s => self.digest(Kind::Ja3s, v, out),
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
            FieldKind::Time | FieldKind::Port(_) => {}
        }
    }

    fn digest(&self, kind: Kind, v: &str, out: &mut Vec<u32>) {
        if let Ok(h) = normalize::hash(kind, v) {
            self.index.lookup_digest(kind, &h, out);
        }
    }

    /// A DNS or host name as logged: a trailing `:port` (HTTP Host headers) is removed, and an
    /// IP literal is looked up as an address.
    fn lookup_host(&self, v: &str, port: Option<u16>, out: &mut Vec<u32>) {
        let t = v.trim();
        let host = match t.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => t,
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = normalize::ip(host) {
            self.index.lookup_ip(ip, port, out);
        } else if let Ok(d) = normalize::domain(host) {
            self.index.lookup_name(d.as_bytes(), out);
        }
    }
}

fn first_text<'b>(col: &Column<'b>, r: usize) -> Option<Cow<'b, str>> {
    match *col {
        Column::Missing => None,
        Column::Scalar(a) | Column::Dict(a) => scalar_text(a.as_ref(), r),
        Column::List(_) => {
            let mut v = Vec::new();
            texts(col, r, &mut v);
            v.into_iter().next()
        }
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

/// Unix seconds of a timestamp array's row `r` (not null), rounded down.
fn timestamp_seconds(a: &dyn Array, unit: &TimeUnit, r: usize) -> i64 {
    match unit {
        TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(r),
        TimeUnit::Millisecond => a
            .as_primitive::<TimestampMillisecondType>()
            .value(r)
            .div_euclid(1_000),
        TimeUnit::Microsecond => a
            .as_primitive::<TimestampMicrosecondType>()
            .value(r)
            .div_euclid(1_000_000),
        TimeUnit::Nanosecond => a
            .as_primitive::<TimestampNanosecondType>()
            .value(r)
            .div_euclid(1_000_000_000),
    }
}

/// The values of row `r` as text: one for a scalar, each element for a list. Strings are
/// borrowed from the array; only numbers are formatted.
fn texts<'b>(col: &Column<'b>, r: usize, out: &mut Vec<Cow<'b, str>>) {
    match *col {
        Column::Missing => {}
        Column::Scalar(a) | Column::Dict(a) => out.extend(scalar_text(a.as_ref(), r)),
        Column::List(a) => {
            if a.is_null(r) {
                return;
            }
            let (values, range) = match a.data_type() {
                DataType::List(_) => {
                    let l = a.as_list::<i32>();
                    let o = l.value_offsets();
                    (l.values(), o[r] as usize..o[r + 1] as usize)
                }
                DataType::LargeList(_) => {
                    let l = a.as_list::<i64>();
                    let o = l.value_offsets();
                    (l.values(), o[r] as usize..o[r + 1] as usize)
                }
                _ => return,
            };
            for i in range {
                out.extend(scalar_text(values.as_ref(), i));
            }
        }
    }
}

/// The key of row `r` of a dictionary array, whatever its key type.
fn dict_key(a: &dyn Array, r: usize) -> Option<usize> {
    let DataType::Dictionary(k, _) = a.data_type() else {
        return None;
    };
    Some(match k.as_ref() {
        DataType::Int8 => a.as_dictionary::<Int8Type>().keys().value(r).as_usize(),
        DataType::Int16 => a.as_dictionary::<Int16Type>().keys().value(r).as_usize(),
        DataType::Int32 => a.as_dictionary::<Int32Type>().keys().value(r).as_usize(),
        DataType::Int64 => a.as_dictionary::<Int64Type>().keys().value(r).as_usize(),
        DataType::UInt8 => a.as_dictionary::<UInt8Type>().keys().value(r).as_usize(),
        DataType::UInt16 => a.as_dictionary::<UInt16Type>().keys().value(r).as_usize(),
        DataType::UInt32 => a.as_dictionary::<UInt32Type>().keys().value(r).as_usize(),
        DataType::UInt64 => a.as_dictionary::<UInt64Type>().keys().value(r).as_usize(),
        _ => return None,
    })
}

fn number<T>(a: &dyn Array, r: usize) -> Cow<'_, str>
where
    T: arrow_array::ArrowPrimitiveType,
    T::Native: ToString,
{
    Cow::Owned(a.as_primitive::<T>().value(r).to_string())
}

fn scalar_text(a: &dyn Array, r: usize) -> Option<Cow<'_, str>> {
    if a.is_null(r) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => Cow::Borrowed(a.as_string::<i32>().value(r)),
        DataType::LargeUtf8 => Cow::Borrowed(a.as_string::<i64>().value(r)),
        DataType::Utf8View => Cow::Borrowed(a.as_string_view().value(r)),
        // Parquet strings written without the UTF8 annotation arrive as bytes.
        DataType::Binary => Cow::Borrowed(std::str::from_utf8(a.as_binary::<i32>().value(r)).ok()?),
        DataType::LargeBinary => {
            Cow::Borrowed(std::str::from_utf8(a.as_binary::<i64>().value(r)).ok()?)
        }
        DataType::BinaryView => {
            Cow::Borrowed(std::str::from_utf8(a.as_binary_view().value(r)).ok()?)
        }
        DataType::Dictionary(_, _) => {
            let values = a.as_any_dictionary().values();
            return scalar_text(values.as_ref(), dict_key(a, r)?);
        }
        DataType::Int8 => number::<Int8Type>(a, r),
        DataType::Int16 => number::<Int16Type>(a, r),
        DataType::Int32 => number::<Int32Type>(a, r),
        DataType::Int64 => number::<Int64Type>(a, r),
        DataType::UInt8 => number::<UInt8Type>(a, r),
        DataType::UInt16 => number::<UInt16Type>(a, r),
        DataType::UInt32 => number::<UInt32Type>(a, r),
        DataType::UInt64 => number::<UInt64Type>(a, r),
        DataType::Float32 => number::<Float32Type>(a, r),
        DataType::Float64 => number::<Float64Type>(a, r),
        DataType::Timestamp(unit, _) => Cow::Owned(timestamp_seconds(a, unit, r).to_string()),
        _ => return None,
    })
}
