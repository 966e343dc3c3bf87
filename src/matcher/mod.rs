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
//! The scan driver that spreads batches over threads and the writers live elsewhere; nothing
//! here does I/O.

use std::borrow::Cow;
use std::net::IpAddr;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

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
    List(&'b ArrayRef),
}

impl<'a> Matcher<'a> {
    /// A matcher; `now` (Unix seconds) is the validity instant for rows without an event time.
    pub fn new(index: &'a CompiledIndex, fields: &'a FieldMap, now: i64) -> Self {
        Matcher { index, fields, now }
    }

    /// Matches one batch, appending hits in row order (within a row, in field order).
    pub fn match_batch(&self, tb: &TelemetryBatch, out: &mut Vec<Hit>) {
        self.match_record_batch(&tb.batch, tb.first_row, out)
    }

    /// Matches one record batch whose first row is `first_row` of its file.
    pub fn match_record_batch(&self, batch: &RecordBatch, first_row: u64, out: &mut Vec<Hit>) {
        let specs = self.fields.fields();
        let cols: Vec<Column<'_>> = specs
            .iter()
            .map(|f| match batch.column_by_name(&f.name) {
                None => Column::Missing,
                Some(c) => match c.data_type() {
                    DataType::List(_) | DataType::LargeList(_) => Column::List(c),
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
        let mut ords = Vec::new();
        let mut seen = Vec::new();
        // Values borrow from the batch: no allocation per row, only per hit.
        let mut vals: Vec<Cow<'_, str>> = Vec::new();
        for r in 0..batch.num_rows() {
            let row = first_row + r as u64;
            let event_time =
                time_col.and_then(|t| first_text(&cols[t], r).and_then(|s| parse_time(&s)));
            let at = event_time.unwrap_or(self.now);
            for (fi, spec) in specs.iter().enumerate() {
                if matches!(spec.kind, FieldKind::Time | FieldKind::Port(_)) {
                    continue;
                }
                vals.clear();
                texts(&cols[fi], r, &mut vals);
                if vals.is_empty() {
                    continue;
                }
                let port = port_of[fi]
                    .and_then(|p| first_text(&cols[p], r))
                    .and_then(|p| p.trim().parse::<u16>().ok());
                seen.clear();
                for v in &vals {
                    ords.clear();
                    self.lookup(&spec.kind, v, port, &mut ords);
                    let meta = self.index.meta();
                    for &ord in &ords {
                        if ord as usize >= meta.len() || seen.contains(&ord) {
                            continue;
                        }
                        if !meta.valid_at(ord, at) {
                            continue;
                        }
                        if let Some(p) = meta.port(ord)
                            && port != Some(p)
                        {
                            continue;
                        }
                        seen.push(ord);
                        out.push(Hit {
                            ord,
                            field: fi,
                            value: v.to_string(),
                            row,
                            event_time,
                        });
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
        Column::Scalar(a) => scalar_text(a.as_ref(), r),
        Column::List(_) => {
            let mut v = Vec::new();
            texts(col, r, &mut v);
            v.into_iter().next()
        }
    }
}

/// The values of row `r` as text: one for a scalar, each element for a list. Strings are
/// borrowed from the array; only numbers are formatted.
fn texts<'b>(col: &Column<'b>, r: usize, out: &mut Vec<Cow<'b, str>>) {
    match *col {
        Column::Missing => {}
        Column::Scalar(a) => out.extend(scalar_text(a.as_ref(), r)),
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

fn scalar_text(a: &dyn Array, r: usize) -> Option<Cow<'_, str>> {
    if a.is_null(r) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => Cow::Borrowed(a.as_string::<i32>().value(r)),
        DataType::LargeUtf8 => Cow::Borrowed(a.as_string::<i64>().value(r)),
        DataType::Utf8View => Cow::Borrowed(a.as_string_view().value(r)),
        DataType::Int64 => Cow::Owned(
            a.as_primitive::<arrow_array::types::Int64Type>()
                .value(r)
                .to_string(),
        ),
        DataType::Int32 => Cow::Owned(
            a.as_primitive::<arrow_array::types::Int32Type>()
                .value(r)
                .to_string(),
        ),
        DataType::UInt16 => Cow::Owned(
            a.as_primitive::<arrow_array::types::UInt16Type>()
                .value(r)
                .to_string(),
        ),
        DataType::Float64 => Cow::Owned(
            a.as_primitive::<arrow_array::types::Float64Type>()
                .value(r)
                .to_string(),
        ),
        _ => return None,
    })
}
