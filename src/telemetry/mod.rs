//! Telemetry: reading partner logs into Arrow record batches, and the [`FieldMap`] that says
//! which column holds which observable.
//!
//! Readers stream any input in bounded batches of [`BATCH_ROWS`] rows and keep only the mapped
//! columns, as `Utf8` (one value per row) or `List<Utf8>` (Zeek vectors, JSON arrays). A
//! malformed record becomes an all-null row, so that row numbers stay the 0-based position of
//! the record in its file, and is reported as a [`RowError`]. Formats are detected from the
//! content ([`detect`]); gzip and zstd are unwrapped by their magic bytes. A column the input lacks is read
//! as nulls, so one map serves every log of a schema; [`preset`] has the maps of the schemas
//! partners stream and picks one from an input's columns.
//!
//! Parquet and Arrow IPC keep their own column types: a dictionary-encoded Parquet string
//! column arrives as a `DictionaryArray`, numbers and timestamps as themselves. A file splits
//! into [`Part`]s that can be decoded on different threads ([`open_parts`]): one per Parquet
//! row group, the whole file for the other formats.
//!
//! This module knows nothing about indicators: it only produces columns.

mod arrow_ipc;
pub mod cell;
mod csv_reader;
pub mod ipc_check;
mod json;
mod parquet;
pub mod preset;
mod resolve;
mod zeek;

pub use preset::{Preset, PresetChoice};

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

/// Rows per batch: large enough to amortise per-batch work, small enough to bound memory.
pub const BATCH_ROWS: usize = 8192;

/// What a telemetry column holds, and so which indicators it is matched against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// An IPv4 or IPv6 address: IP, CIDR and (with its port field) `ip:port` indicators.
    Ip,
    /// A DNS or host name: domain and hostname indicators.
    Domain,
    /// A URL or request target: URL and substring indicators, and on its host domain and
    /// hostname indicators.
    Url,
    /// An MD5 digest.
    Md5,
    /// A SHA-1 digest.
    Sha1,
    /// A SHA-256 digest.
    Sha256,
    /// A digest whose algorithm its length decides.
    Hash,
    /// An e-mail address.
    Email,
    /// A JA3 fingerprint.
    Ja3,
    /// A JA3S fingerprint.
    Ja3s,
    /// A JA4 fingerprint.
    Ja4,
    /// A User-Agent: user-agent and substring indicators.
    UserAgent,
    /// Free text: substring indicators.
    Text,
    /// The event time (RFC 3339 or epoch seconds).
    Time,
    /// The event's identifier (Zeek `uid`, Suricata `flow_id`): never matched; a victim's
    /// notification names it, so that the victim can find the connection in its own records.
    Uid,
    /// The port of the address column named here (`port@dst`).
    Port(String),
}

impl FieldKind {
    /// The name used on the command line.
    pub fn name(&self) -> String {
        match self {
            FieldKind::Ip => "ip".into(),
            FieldKind::Domain => "domain".into(),
            FieldKind::Url => "url".into(),
            FieldKind::Md5 => "md5".into(),
            FieldKind::Sha1 => "sha1".into(),
            FieldKind::Sha256 => "sha256".into(),
            FieldKind::Hash => "hash".into(),
            FieldKind::Email => "email".into(),
            FieldKind::Ja3 => "ja3".into(),
            FieldKind::Ja3s => "ja3s".into(),
            FieldKind::Ja4 => "ja4".into(),
            FieldKind::UserAgent => "user-agent".into(),
            FieldKind::Text => "text".into(),
            FieldKind::Time => "time".into(),
            FieldKind::Uid => "uid".into(),
            FieldKind::Port(a) => format!("port@{a}"),
        }
    }

    /// Whether values of this kind are looked up in the index (not a time, an event id or a
    /// port, which only qualify the row).
    pub fn can_match(&self) -> bool {
        !matches!(self, FieldKind::Time | FieldKind::Uid | FieldKind::Port(_))
    }
}

impl FromStr for FieldKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let k = s.trim().to_ascii_lowercase();
        if let Some(addr) = k.strip_prefix("port@") {
            if addr.is_empty() {
                return Err("`port@` needs the name of an address field, e.g. port@dst".into());
            }
            // Keep the field name's case as written.
            return Ok(FieldKind::Port(s.trim()[5..].to_string()));
        }
        Ok(match k.as_str() {
            "ip" | "addr" | "address" => FieldKind::Ip,
            "domain" | "hostname" | "host" => FieldKind::Domain,
            "url" | "uri" => FieldKind::Url,
            "md5" => FieldKind::Md5,
            "sha1" => FieldKind::Sha1,
            "sha256" => FieldKind::Sha256,
            "hash" => FieldKind::Hash,
            "email" => FieldKind::Email,
            "ja3" => FieldKind::Ja3,
            "ja3s" => FieldKind::Ja3s,
            "ja4" => FieldKind::Ja4,
            "user-agent" | "useragent" | "user_agent" => FieldKind::UserAgent,
            "text" => FieldKind::Text,
            "time" | "ts" | "timestamp" => FieldKind::Time,
            "uid" | "event-id" | "flow-id" => FieldKind::Uid,
            _ => {
                return Err(format!(
                    "unknown field kind `{s}` (ip, domain, url, md5, sha1, sha256, hash, email, ja3, ja3s, ja4, user-agent, text, time, uid, port@FIELD)"
                ));
            }
        })
    }
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One mapping: column `name` holds `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The column (a JSON path with dots, a Zeek or CSV column name), or `HOST+TARGET`: the
    /// URL joined from a host column and a request-target column ([`FieldSpec::joined`]).
    pub name: String,
    /// What it holds.
    pub kind: FieldKind,
}

impl FromStr for FieldSpec {
    type Err = String;

    /// Parses `NAME=KIND` (`--field id.resp_h=ip`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, kind) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("`{s}`: expected NAME=KIND, e.g. id.resp_h=ip"))?;
        if name.trim().is_empty() {
            return Err(format!("`{s}`: empty field name"));
        }
        Ok(FieldSpec {
            name: name.trim().to_string(),
            kind: kind.parse()?,
        })
    }
}

/// Which columns hold which observables. Order is kept; a later entry for the same column
/// replaces an earlier one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldMap {
    fields: Vec<FieldSpec>,
}

impl FieldMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a mapping.
    pub fn insert(&mut self, spec: FieldSpec) {
        match self.fields.iter_mut().find(|f| f.name == spec.name) {
            Some(f) => *f = spec,
            None => self.fields.push(spec),
        }
    }

    /// Builds a map from specs, checking that every `port@ADDR` names an `ip` field.
    pub fn from_specs(specs: impl IntoIterator<Item = FieldSpec>) -> Result<Self, String> {
        let mut m = FieldMap::new();
        for s in specs {
            m.insert(s);
        }
        m.check()?;
        Ok(m)
    }

    /// The map without its event-id field: matching on this machine has no use for it (it
    /// is for a victim's notification, which only the hub writes), and a unique string per
    /// row is costly to decode from a columnar file.
    pub fn for_local_match(&self) -> FieldMap {
        FieldMap {
            fields: self
                .fields
                .iter()
                .filter(|f| f.kind != FieldKind::Uid)
                .cloned()
                .collect(),
        }
    }

    fn check(&self) -> Result<(), String> {
        for f in &self.fields {
            preset::check_joined(f)?;
            if let FieldKind::Port(addr) = &f.kind
                && !self
                    .fields
                    .iter()
                    .any(|g| &g.name == addr && g.kind == FieldKind::Ip)
            {
                return Err(format!(
                    "`{}=port@{addr}`: there is no field `{addr}` of kind ip",
                    f.name
                ));
            }
        }
        for kind in [FieldKind::Time, FieldKind::Uid] {
            if self.fields.iter().filter(|f| f.kind == kind).count() > 1 {
                return Err(format!("more than one field of kind {kind}"));
            }
        }
        Ok(())
    }

    /// The mappings, in order.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The column names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }
}

/// Telemetry file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// One JSON object per line.
    Jsonl,
    /// Zeek TSV log with `#fields` header.
    Zeek,
    /// CSV with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC file or stream.
    Arrow,
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::Jsonl => "JSON lines",
            InputFormat::Zeek => "Zeek TSV",
            InputFormat::Csv => "CSV",
            InputFormat::Parquet => "Parquet",
            InputFormat::Arrow => "Arrow IPC",
        })
    }
}

/// Decides the format from the first bytes (already un-gzipped).
pub fn detect(head: &[u8]) -> InputFormat {
    if head.starts_with(b"PAR1") {
        return InputFormat::Parquet;
    }
    if head.starts_with(b"ARROW1") || head.starts_with(&[0xff, 0xff, 0xff, 0xff]) {
        return InputFormat::Arrow;
    }
    // The first lines, not the first byte: a torn first line (a partial write, a file cut
    // from the middle of a log) must not turn JSON lines into CSV with no mapped column.
    let lines: Vec<&[u8]> = head
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii_start())
        .filter(|l| !l.is_empty())
        .take(DETECT_LINES)
        .collect();
    if lines
        .iter()
        .any(|l| l.starts_with(b"#separator") || l.starts_with(b"#fields\t"))
    {
        return InputFormat::Zeek;
    }
    // `[` too: a JSON array is no CSV, and as JSON lines each record that is not an object
    // is reported instead of read as empty columns.
    let json = lines
        .iter()
        .filter(|l| l.starts_with(b"{") || l.starts_with(b"["))
        .count();
    if json > 0 && 2 * json >= lines.len() {
        return InputFormat::Jsonl;
    }
    InputFormat::Csv
}

/// Lines [`detect`] looks at.
const DETECT_LINES: usize = 16;

/// Which mapped fields an input holds: a field is present once a batch has its column with a
/// value in it. Readers give every mapped column, all nulls where the input lacks it; this
/// is how a run tells "the input has no such field" from "no row had a value", whatever
/// the format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPresence {
    present: Vec<bool>,
    rows: u64,
}

impl FieldPresence {
    /// Nothing seen yet, for the fields of `fields`.
    pub fn new(fields: &FieldMap) -> Self {
        FieldPresence {
            present: vec![false; fields.fields().len()],
            rows: 0,
        }
    }

    /// Notes the columns of one batch of `fields`' mapped columns.
    pub fn observe(&mut self, fields: &FieldMap, batch: &RecordBatch) {
        self.rows += batch.num_rows() as u64;
        for (i, f) in fields.fields().iter().enumerate() {
            if !self.present[i]
                && let Some(c) = batch.column_by_name(&f.name)
                && arrow_array::Array::null_count(c.as_ref()) < c.len()
            {
                self.present[i] = true;
            }
        }
    }

    /// Adds what `other` (of the same map) saw.
    pub fn merge(&mut self, other: &FieldPresence) {
        self.rows += other.rows;
        for (a, b) in self.present.iter_mut().zip(&other.present) {
            *a |= *b;
        }
    }

    /// Rows seen.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether field `i` was seen.
    pub fn is_present(&self, i: usize) -> bool {
        self.present.get(i).copied().unwrap_or(false)
    }

    /// Whether any field that can match (not a time or a port) was seen.
    pub fn any_matchable(&self, fields: &FieldMap) -> bool {
        fields
            .fields()
            .iter()
            .zip(&self.present)
            .any(|(f, &p)| p && f.kind.can_match())
    }

    /// The names of the fields never seen.
    pub fn absent<'f>(&self, fields: &'f FieldMap) -> Vec<&'f str> {
        fields
            .fields()
            .iter()
            .zip(&self.present)
            .filter(|(_, p)| !**p)
            .map(|(f, _)| f.name.as_str())
            .collect()
    }

    /// The error for an input with rows of which no field that can match has a value:
    /// nothing in it can ever hit, which is never what was meant.
    pub fn check(&self, input: &str, fields: &FieldMap) -> Result<(), TelemetryError> {
        if self.rows == 0 || self.any_matchable(fields) {
            return Ok(());
        }
        let names: Vec<&str> = fields
            .fields()
            .iter()
            .filter(|f| f.kind.can_match())
            .map(|f| f.name.as_str())
            .collect();
        Err(TelemetryError::Format {
            path: input.to_string(),
            reason: format!(
                "{} row(s) but none of the mapped fields ({}) in any of them, so nothing can \
                 match; check --preset/--field against the input's columns, or its format \
                 (--input-format)",
                self.rows,
                names.join(", ")
            ),
        })
    }
}

/// A telemetry file that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// I/O error reading the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file's structure is unusable (no header, an unknown column).
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A record that could not be read; its row is all nulls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// 0-based data row.
    pub row: u64,
    /// 1-based line in the file.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// One batch of telemetry.
#[derive(Clone, Debug)]
pub struct TelemetryBatch {
    /// The mapped columns, named as in the field map.
    pub batch: RecordBatch,
    /// Row number (0-based, within the file) of the batch's first row.
    pub first_row: u64,
    /// Records in this batch that could not be read.
    pub errors: Vec<RowError>,
}

/// Values of one column for the rows of a batch being built.
#[derive(Debug, Default)]
pub(crate) struct ColumnBuf {
    /// Per row: `None` (null) or the values (one for a scalar).
    rows: Vec<Option<Vec<String>>>,
    list: bool,
}

impl ColumnBuf {
    pub(crate) fn push_null(&mut self) {
        self.rows.push(None);
    }

    pub(crate) fn push_one(&mut self, v: String) {
        self.rows.push(Some(vec![v]));
    }

    pub(crate) fn push_list(&mut self, vs: Vec<String>) {
        self.list = true;
        self.rows.push(Some(vs));
    }

    fn finish(&mut self) -> (DataType, ArrayRef) {
        let rows = std::mem::take(&mut self.rows);
        // Each batch decides afresh whether the column is a list.
        if std::mem::take(&mut self.list) {
            let mut b = ListBuilder::new(StringBuilder::new());
            for r in rows {
                match r {
                    None => b.append(false),
                    Some(vs) => {
                        for v in vs {
                            b.values().append_value(v);
                        }
                        b.append(true);
                    }
                }
            }
            let a = b.finish();
            (arrow_array::Array::data_type(&a).clone(), Arc::new(a))
        } else {
            let mut b = StringBuilder::new();
            for r in rows {
                match r.and_then(|mut v| v.pop()) {
                    Some(v) => b.append_value(v),
                    None => b.append_null(),
                }
            }
            (DataType::Utf8, Arc::new(b.finish()))
        }
    }
}

/// Collects rows into a record batch of the mapped columns.
#[derive(Debug)]
pub(crate) struct BatchBuilder {
    names: Vec<String>,
    cols: Vec<ColumnBuf>,
    rows: usize,
    errors: Vec<RowError>,
}

impl BatchBuilder {
    pub(crate) fn new(names: &[&str]) -> Self {
        BatchBuilder {
            names: names.iter().map(|s| s.to_string()).collect(),
            cols: names.iter().map(|_| ColumnBuf::default()).collect(),
            rows: 0,
            errors: Vec::new(),
        }
    }

    pub(crate) fn col(&mut self, i: usize) -> &mut ColumnBuf {
        &mut self.cols[i]
    }

    pub(crate) fn end_row(&mut self) {
        self.rows += 1;
    }

    pub(crate) fn error_row(&mut self, row: u64, line: u64, reason: String) {
        for c in &mut self.cols {
            c.push_null();
        }
        self.errors.push(RowError { row, line, reason });
        self.rows += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    pub(crate) fn finish(&mut self, first_row: u64) -> TelemetryBatch {
        let mut fields = Vec::with_capacity(self.cols.len());
        let mut arrays = Vec::with_capacity(self.cols.len());
        for (name, col) in self.names.iter().zip(&mut self.cols) {
            let (dt, a) = col.finish();
            fields.push(Field::new(name, dt, true));
            arrays.push(a);
        }
        let rows = std::mem::take(&mut self.rows);
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("columns built with one entry per row");
        TelemetryBatch {
            batch,
            first_row,
            errors: std::mem::take(&mut self.errors),
        }
    }
}

/// One line-oriented format (JSON lines, Zeek TSV): what to do with each line.
pub(crate) trait LineFormat {
    /// Handles one line (terminator removed); returns whether it was a data record, which
    /// takes a row number, rather than a header or blank line.
    fn line(&mut self, b: &mut BatchBuilder, row: u64, line_no: u64, text: &[u8]) -> bool;
}

/// Streams a line-oriented format in batches of at most [`BATCH_ROWS`] rows.
pub(crate) struct LineReader<F> {
    r: Box<dyn BufRead + Send>,
    name: String,
    format: F,
    b: BatchBuilder,
    row: u64,
    line: u64,
    done: bool,
    buf: Vec<u8>,
}

impl<F: LineFormat> LineReader<F> {
    pub(crate) fn new(r: Box<dyn BufRead + Send>, name: &str, names: &[String], format: F) -> Self {
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        LineReader {
            r,
            name: name.to_string(),
            format,
            b: BatchBuilder::new(&refs),
            row: 0,
            line: 0,
            done: false,
            buf: Vec::new(),
        }
    }
}

impl<F: LineFormat> Iterator for LineReader<F> {
    type Item = Result<TelemetryBatch, TelemetryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let first = self.row;
        while self.b.len() < BATCH_ROWS {
            self.buf.clear();
            match self.r.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(TelemetryError::Io {
                        path: self.name.clone(),
                        source: e,
                    }));
                }
            }
            self.line += 1;
            let mut text = self.buf.as_slice();
            while let [rest @ .., b'\n' | b'\r'] = text {
                text = rest;
            }
            if self.format.line(&mut self.b, self.row, self.line, text) {
                self.row += 1;
            }
        }
        if self.b.len() == 0 {
            return None;
        }
        Some(Ok(self.b.finish(first)))
    }
}

/// A streaming reader over one telemetry file.
pub type BatchIter = Box<dyn Iterator<Item = Result<TelemetryBatch, TelemetryError>> + Send>;

/// gzip and zstd streams are recognised by their first bytes.
fn is_compressed(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&ZSTD_MAGIC)
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn open_buffered(path: &Path) -> Result<Box<dyn BufRead + Send>, TelemetryError> {
    let io_err = |e| TelemetryError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut f = BufReader::with_capacity(1 << 20, File::open(path).map_err(io_err)?);
    let head = f.fill_buf().map_err(io_err)?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(f),
        ))
    } else if head.starts_with(&ZSTD_MAGIC) {
        // Reads every frame of a multi-frame file (as `zstd` and `cat a.zst b.zst` write).
        let d = zstd::stream::read::Decoder::with_buffer(f).map_err(io_err)?;
        Box::new(BufReader::with_capacity(1 << 20, d))
    } else {
        Box::new(f)
    })
}

/// A piece of a telemetry file that can be read on its own: one Parquet row group, or the
/// whole file for formats read front to back.
pub struct Part {
    inner: PartInner,
}

enum PartInner {
    Whole(BatchIter),
    RowGroup(Arc<parquet::ParquetInput>, usize),
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            PartInner::Whole(_) => f.write_str("Part(whole file)"),
            PartInner::RowGroup(_, g) => write!(f, "Part(row group {g})"),
        }
    }
}

impl Part {
    /// A part read from any stream of batches (one the caller decodes itself).
    pub fn from_batches(batches: BatchIter) -> Part {
        Part {
            inner: PartInner::Whole(batches),
        }
    }

    /// Row number (0-based, within the file) of the part's first row.
    pub fn first_row(&self) -> u64 {
        match &self.inner {
            PartInner::Whole(_) => 0,
            PartInner::RowGroup(p, g) => p.first_row(*g),
        }
    }

    /// Number of rows, when the file says so without reading them (Parquet).
    pub fn rows(&self) -> Option<u64> {
        match &self.inner {
            PartInner::Whole(_) => None,
            PartInner::RowGroup(p, g) => Some(p.rows(*g)),
        }
    }

    /// Starts reading the part.
    pub fn open(self) -> Result<BatchIter, TelemetryError> {
        match self.inner {
            PartInner::Whole(it) => Ok(it),
            PartInner::RowGroup(p, g) => p.read_row_group(g),
        }
    }
}

/// Reads parts one after the other.
struct PartsIter {
    parts: std::vec::IntoIter<Part>,
    current: Option<BatchIter>,
}

impl Iterator for PartsIter {
    type Item = Result<TelemetryBatch, TelemetryError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(it) = &mut self.current {
                if let Some(b) = it.next() {
                    return Some(b);
                }
                self.current = None;
            }
            match self.parts.next()?.open() {
                Ok(it) => self.current = Some(it),
                Err(e) => {
                    self.parts = Vec::new().into_iter();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Opens a telemetry file and streams its mapped columns. `format` overrides detection.
pub fn open(
    path: &Path,
    format: Option<InputFormat>,
    fields: &FieldMap,
) -> Result<BatchIter, TelemetryError> {
    let mut parts = open_parts(path, format, fields)?;
    if parts.len() == 1 {
        return parts.pop().expect("one part").open();
    }
    Ok(Box::new(PartsIter {
        parts: parts.into_iter(),
        current: None,
    }))
}

/// Opens a telemetry file as parts that may be read concurrently, in file order: a Parquet
/// file gives one per row group (none when it has no rows), any other file one.
pub fn open_parts(
    path: &Path,
    format: Option<InputFormat>,
    fields: &FieldMap,
) -> Result<Vec<Part>, TelemetryError> {
    let name = path.display().to_string();
    let io_err = |e| TelemetryError::Io {
        path: name.clone(),
        source: e,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut head = Vec::with_capacity(8);
    (&mut file).take(8).read_to_end(&mut head).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    if !is_compressed(&head) {
        let columnar = format.or_else(|| match detect(&head) {
            f @ (InputFormat::Parquet | InputFormat::Arrow) => Some(f),
            _ => None,
        });
        match columnar {
            Some(InputFormat::Parquet) => {
                let p = Arc::new(parquet::ParquetInput::open(path, fields)?);
                return Ok((0..p.row_groups())
                    .map(|g| Part {
                        inner: PartInner::RowGroup(p.clone(), g),
                    })
                    .collect());
            }
            // The file format has a footer to read; a stream is read as any other stream.
            Some(InputFormat::Arrow) if head.starts_with(b"ARROW1") => {
                let it = arrow_ipc::open_file(file, &name, fields)?;
                return Ok(vec![Part {
                    inner: PartInner::Whole(it),
                }]);
            }
            _ => {}
        }
    }
    drop(file);
    let mut r = open_buffered(path)?;
    let format = match format {
        Some(f) => f,
        None => {
            let head = r.fill_buf().map_err(io_err)?;
            detect(head)
        }
    };
    Ok(vec![Part {
        inner: PartInner::Whole(from_reader(r, &name, format, fields)?),
    }])
}

/// Streams telemetry from any reader (standard input, a decompressed stream).
pub fn from_reader(
    r: Box<dyn BufRead + Send>,
    name: &str,
    format: InputFormat,
    fields: &FieldMap,
) -> Result<BatchIter, TelemetryError> {
    // Readers read the input columns; joined columns are made from them afterwards.
    let names: Vec<String> = fields
        .input_columns()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let reader: Result<BatchIter, TelemetryError> = match format {
        InputFormat::Jsonl => Ok(Box::new(LineReader::new(
            r,
            name,
            &names,
            json::JsonFormat::new(names.clone()),
        ))),
        InputFormat::Zeek => Ok(Box::new(LineReader::new(
            r,
            name,
            &names,
            zeek::ZeekFormat::new(names.clone()),
        ))),
        InputFormat::Csv => Ok(Box::new(csv_reader::CsvReader::new(r, name, names)?)),
        InputFormat::Arrow => arrow_ipc::open_stream(r, name, fields),
        InputFormat::Parquet => Err(TelemetryError::Format {
            path: name.to_string(),
            reason: "Parquet is read from its footer and needs an uncompressed file; decompress it first (its pages are compressed already)".into(),
        }),
    };
    reader.map(|reader| fields.project_batches(reader))
}

/// Reads every batch of a small input (tests, examples).
pub fn read_all(
    r: impl Read + Send + 'static,
    name: &str,
    format: InputFormat,
    fields: &FieldMap,
) -> Result<Vec<TelemetryBatch>, TelemetryError> {
    from_reader(Box::new(BufReader::new(r)), name, format, fields)?.collect()
}

/// Parses an event time: RFC 3339 (a `+0000` offset without colon accepted, as Suricata
/// writes it) or epoch seconds, integer or fractional (integers of 10^11 and more are read as
/// milliseconds, microseconds or nanoseconds by size). Returns Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    if b[0].is_ascii_digit() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        let whole = s.split('.').next()?.parse::<i64>().ok()?;
        // Integers too large to be seconds are milliseconds, microseconds or nanoseconds
        // (OCSF and many shippers write epoch milliseconds): 10^11 s is the year 5138.
        return Some(match whole {
            w if w >= 100_000_000_000_000_000 => w / 1_000_000_000,
            w if w >= 100_000_000_000_000 => w / 1_000_000,
            w if w >= 100_000_000_000 => w / 1_000,
            w => w,
        });
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t.as_second());
    }
    // `2025-03-13T10:05:00.000100+0000`: insert the colon jiff wants.
    let n = s.len();
    if n > 5 {
        let (head, off) = s.split_at(n - 5);
        if (off.starts_with('+') || off.starts_with('-'))
            && off[1..].bytes().all(|c| c.is_ascii_digit())
        {
            let fixed = format!("{head}{}:{}", &off[..3], &off[3..]);
            return fixed.parse::<jiff::Timestamp>().ok().map(|t| t.as_second());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_match_drops_only_the_event_id() {
        let full = preset::Preset::Zeek.field_map();
        let local = full.for_local_match();
        assert!(full.fields().iter().any(|f| f.kind == FieldKind::Uid));
        assert!(!local.fields().iter().any(|f| f.kind == FieldKind::Uid));
        assert_eq!(local.fields().len(), full.fields().len() - 1);
    }

    #[test]
    fn field_specs_parse() {
        let f: FieldSpec = "id.resp_h=ip".parse().unwrap();
        assert_eq!((f.name.as_str(), f.kind), ("id.resp_h", FieldKind::Ip));
        let p: FieldSpec = "dport=port@dst".parse().unwrap();
        assert_eq!(p.kind, FieldKind::Port("dst".into()));
        assert!("x".parse::<FieldSpec>().is_err());
        assert!("x=banana".parse::<FieldSpec>().is_err());
        let err = FieldMap::from_specs(["p=port@dst".parse().unwrap()]).unwrap_err();
        assert!(err.contains("no field `dst`"), "{err}");
        assert!(
            FieldMap::from_specs(["dst=ip".parse().unwrap(), "p=port@dst".parse().unwrap()])
                .is_ok()
        );
    }

    #[test]
    fn detects_formats() {
        assert_eq!(detect(b"PAR1\x15"), InputFormat::Parquet);
        assert_eq!(detect(b"ARROW1\0\0"), InputFormat::Arrow);
        assert_eq!(detect(b"#separator \\x09\n"), InputFormat::Zeek);
        assert_eq!(detect(b"  {\"a\":1}\n"), InputFormat::Jsonl);
        assert_eq!(detect(b"ts,query\n"), InputFormat::Csv);
        // A torn first line, and a JSON array, are not CSV.
        assert_eq!(
            detect(b"ery\":\"x.test\"}\n{\"query\":\"a.test\"}\n{\"query\":\"b.test\"}\n"),
            InputFormat::Jsonl
        );
        assert_eq!(detect(b"[{\"query\":\"a.test\"}]\n"), InputFormat::Jsonl);
        assert_eq!(
            detect(b"#close\tx\n#fields\tts\tquery\n"),
            InputFormat::Zeek
        );
        assert_eq!(
            detect(b"ts,query\n1,{weird}\n2,a.test\n3,b.test\n"),
            InputFormat::Csv
        );
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1741860000.123456"), Some(1_741_860_000));
        assert_eq!(parse_time("1741860000"), Some(1_741_860_000));
        assert_eq!(parse_time("1741863600000"), Some(1_741_863_600));
        assert_eq!(parse_time("1741863600000000"), Some(1_741_863_600));
        assert_eq!(parse_time("2025-03-13T10:05:00Z"), Some(1_741_860_300));
        assert_eq!(
            parse_time("2025-03-13T10:05:00.000100+0000"),
            Some(1_741_860_300)
        );
        assert_eq!(parse_time("2025-03-13T11:05:00+01:00"), Some(1_741_860_300));
        assert_eq!(parse_time("yesterday"), None);
    }
}
