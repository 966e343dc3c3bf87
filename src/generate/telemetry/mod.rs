//! Synthetic partner telemetry with planted hits: Zeek, Suricata EVE or ECS rows written as
//! Parquet, Arrow IPC or JSON lines.
//!
//! A fraction `hit_rate` of rows carries a value drawn from a compiled index's indicators —
//! an address, an address inside a network, a subdomain of a domain, a URL, a digest, a
//! sender, a JA3 fingerprint, a User-Agent — valid at the row's time; every other value comes
//! from background pools checked to miss the index (see [`flow`]). So matching the output
//! with [`Preset::field_map`] hits exactly the planted rows, and
//! [`TelemetryReport::planted`] says how many that is.
//!
//! Rows are generated in batches of [`GEN_BATCH_ROWS`], each from its own random stream
//! derived from the seed and the batch number: batches are built in parallel and written in
//! order, memory stays bounded, and the bytes depend only on the options.

pub mod flow;
pub mod preset;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use jiff::Timestamp;
use rayon::prelude::*;
use serde::Serialize;

pub use self::flow::{App, Flow, FlowSource, NoBackground, PoolStats};
pub use self::preset::{Cell, ColType, Column, Preset};
use super::rng::Rng;
use crate::index::CompiledIndex;
use crate::indicator::Kind;
use crate::telemetry::FieldMap;

/// Rows per generated batch (and per Arrow record batch written).
pub const GEN_BATCH_ROWS: usize = 65_536;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 1_048_576;

/// The file format, decided by the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Apache Parquet (`.parquet`).
    Parquet,
    /// Arrow IPC file (`.arrow`, `.ipc`, `.feather`).
    Arrow,
    /// JSON lines (`.jsonl`, `.ndjson`, `.json`), gzip-compressed when the name ends in `.gz`.
    Jsonl {
        /// Compress with gzip.
        gzip: bool,
    },
}

impl OutputFormat {
    /// The format a file name asks for, or `None` for an unknown extension.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (name, gzip) = match name.strip_suffix(".gz") {
            Some(n) => (n.to_string(), true),
            None => (name, false),
        };
        let ext = Path::new(&name).extension()?.to_str()?;
        match (ext, gzip) {
            ("parquet", false) => Some(OutputFormat::Parquet),
            ("arrow" | "ipc" | "feather", false) => Some(OutputFormat::Arrow),
            ("jsonl" | "ndjson" | "json", gzip) => Some(OutputFormat::Jsonl { gzip }),
            _ => None,
        }
    }

    /// A name for reports.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "Parquet",
            OutputFormat::Arrow => "Arrow IPC",
            OutputFormat::Jsonl { gzip: false } => "JSON lines",
            OutputFormat::Jsonl { gzip: true } => "JSON lines (gzip)",
        }
    }
}

/// Column compression of Parquet and Arrow output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// zstd (level 1 for Parquet): small files, fast enough.
    #[default]
    Zstd,
    /// Snappy (Parquet only; Arrow IPC files are then uncompressed).
    Snappy,
    /// None.
    None,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct TelemetryOptions {
    /// The schema.
    pub preset: Preset,
    /// Rows to write.
    pub rows: u64,
    /// Fraction of rows (0–1) that carry an indicator value.
    pub hit_rate: f64,
    /// Seed: equal options and index give identical bytes.
    pub seed: u64,
    /// Time of the first row.
    pub start: Timestamp,
    /// Seconds the rows span.
    pub duration_secs: u64,
    /// Parquet / Arrow compression.
    pub compression: Compression,
    /// The networks the partner's own (victim-side) addresses are drawn from, e.g. the
    /// constituency prefixes of a registry, so that routing finds the victims; empty for the
    /// private ranges (`10/8`, `172.16/12`, `192.168/16`, `fd12:3456:789a::/48`).
    pub internal: Vec<ipnet::IpNet>,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        TelemetryOptions {
            preset: Preset::Zeek,
            rows: 10_000,
            hit_rate: 0.01,
            seed: 1,
            start: super::feed::default_now(),
            duration_secs: 86_400,
            compression: Compression::Zstd,
            internal: Vec::new(),
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TelemetryReport {
    /// Rows written.
    pub rows: u64,
    /// Rows that carry an indicator value.
    pub planted: u64,
    /// Rows drawn for planting that got background instead: no indicator valid at the row's
    /// time could be planted.
    pub plant_failures: u64,
    /// Planted rows by indicator kind.
    pub planted_by_kind: BTreeMap<Kind, u64>,
    /// Background values drawn for the pools.
    pub pool_values: u64,
    /// Pool values re-drawn because they hit the index.
    pub pool_redraws: u64,
}

/// Generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The Parquet writer refused.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The Arrow writer refused.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// No background values miss the index.
    #[error(transparent)]
    NoBackground(#[from] NoBackground),
    /// The options are unusable.
    #[error("{0}")]
    Options(String),
}

/// Generates rows for one set of options and one index.
#[derive(Debug)]
pub struct TelemetryGenerator<'i> {
    opts: TelemetryOptions,
    source: FlowSource<'i>,
    schema: SchemaRef,
}

/// The rows of one batch and what they hold.
struct BatchStats {
    planted: u64,
    failures: u64,
    by_kind: BTreeMap<Kind, u64>,
}

impl<'i> TelemetryGenerator<'i> {
    /// Prepares generation: draws the background pools and collects plantable indicators.
    /// `fields` must outlive the generator; [`Preset::field_map`] is the natural one.
    pub fn new(
        index: &'i CompiledIndex,
        fields: &'i FieldMap,
        opts: TelemetryOptions,
    ) -> Result<Self, GenError> {
        if !(0.0..=1.0).contains(&opts.hit_rate) || opts.hit_rate.is_nan() {
            return Err(GenError::Options(format!(
                "hit rate {} is not between 0 and 1",
                opts.hit_rate
            )));
        }
        if opts.duration_secs == 0 {
            return Err(GenError::Options("duration must be at least 1 s".into()));
        }
        let source = FlowSource::new(
            index,
            fields,
            opts.preset,
            opts.seed,
            opts.start.as_second(),
            &opts.internal,
        )?;
        let schema = schema(opts.preset);
        Ok(TelemetryGenerator {
            opts,
            source,
            schema,
        })
    }

    /// The Arrow schema of the output (all columns nullable).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The kinds that can be planted, with the number of indicators of each.
    pub fn plantable(&self) -> Vec<(Kind, usize)> {
        self.source.plantable()
    }

    fn batches(&self) -> u64 {
        self.opts.rows.div_ceil(GEN_BATCH_ROWS as u64)
    }

    /// The flows of batch `b`, in row order.
    fn flows(&self, b: u64) -> (Vec<Flow<'_>>, BatchStats) {
        let first = b * GEN_BATCH_ROWS as u64;
        let n = (self.opts.rows - first).min(GEN_BATCH_ROWS as u64);
        let mut rng = Rng::derive(self.opts.seed, 30, b);
        let start_us = self.opts.start.as_microsecond();
        let span_us = self.opts.duration_secs as f64 * 1e6;
        let step = span_us / self.opts.rows.max(1) as f64;
        let mut stats = BatchStats {
            planted: 0,
            failures: 0,
            by_kind: BTreeMap::new(),
        };
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let row = first + i;
            let ts = start_us + (row as f64 * step + rng.f64() * step) as i64;
            let plant = self.opts.hit_rate > 0.0 && rng.f64() < self.opts.hit_rate;
            let flow = if plant {
                match self.source.planted(&mut rng, ts) {
                    Some(f) => {
                        stats.planted += 1;
                        if let Some(k) = f.planted {
                            *stats.by_kind.entry(k).or_insert(0) += 1;
                        }
                        f
                    }
                    None => {
                        stats.failures += 1;
                        let app = FlowSource::background_app(&mut rng);
                        self.source.background(&mut rng, ts, app)
                    }
                }
            } else {
                let app = FlowSource::background_app(&mut rng);
                self.source.background(&mut rng, ts, app)
            };
            out.push(flow);
        }
        (out, stats)
    }

    fn record_batch(&self, flows: &[Flow<'_>]) -> Result<RecordBatch, GenError> {
        let cols = self.opts.preset.columns();
        let mut builders: Vec<ColBuilder> = cols.iter().map(|c| ColBuilder::new(c.ty)).collect();
        let mut row = Vec::with_capacity(cols.len());
        for f in flows {
            self.opts.preset.fill(f, &mut row);
            for (b, cell) in builders.iter_mut().zip(row.drain(..)) {
                b.push(cell);
            }
        }
        let arrays: Vec<ArrayRef> = builders.into_iter().map(ColBuilder::finish).collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), arrays)?)
    }

    fn json_bytes(&self, flows: &[Flow<'_>], tree: &JsonTree) -> Vec<u8> {
        let mut out = Vec::with_capacity(flows.len() * 512);
        let mut row = Vec::with_capacity(self.opts.preset.columns().len());
        for f in flows {
            self.opts.preset.fill(f, &mut row);
            tree.write(&row, &mut out);
            out.push(b'\n');
        }
        out
    }

    /// Generates batches a few at a time in parallel and hands each, in order, to `sink`.
    fn run<T: Send>(
        &self,
        make: impl Fn(&[Flow<'_>]) -> Result<T, GenError> + Sync,
        mut sink: impl FnMut(T) -> Result<(), GenError>,
        mut progress: impl FnMut(u64),
    ) -> Result<TelemetryReport, GenError> {
        let mut report = TelemetryReport {
            pool_values: self.source.pool_stats.drawn,
            pool_redraws: self.source.pool_stats.dropped,
            ..TelemetryReport::default()
        };
        let total = self.batches();
        let per_round = (rayon::current_num_threads() as u64).max(1) * 2;
        let mut b = 0;
        while b < total {
            let end = (b + per_round).min(total);
            let results: Vec<Result<(T, BatchStats, u64), GenError>> = (b..end)
                .into_par_iter()
                .map(|i| {
                    let (flows, stats) = self.flows(i);
                    let n = flows.len() as u64;
                    Ok((make(&flows)?, stats, n))
                })
                .collect();
            for r in results {
                let (item, stats, n) = r?;
                sink(item)?;
                report.rows += n;
                report.planted += stats.planted;
                report.plant_failures += stats.failures;
                for (k, v) in stats.by_kind {
                    *report.planted_by_kind.entry(k).or_insert(0) += v;
                }
                progress(report.rows);
            }
            b = end;
        }
        Ok(report)
    }

    /// Hands each generated record batch (up to [`GEN_BATCH_ROWS`] rows), in order, to
    /// `sink`; an error from `sink` stops generation and is returned.
    ///
    /// # Errors
    /// From `sink`, or building a batch.
    pub fn for_each_batch(
        &self,
        sink: impl FnMut(RecordBatch) -> Result<(), GenError>,
    ) -> Result<TelemetryReport, GenError> {
        self.run(|flows| self.record_batch(flows), sink, |_| {})
    }

    /// Writes Parquet: dictionary encoding on, row groups of [`ROW_GROUP_ROWS`].
    pub fn write_parquet<W: Write + Send>(
        &self,
        w: W,
        progress: impl FnMut(u64),
    ) -> Result<TelemetryReport, GenError> {
        use parquet::arrow::ArrowWriter;
        use parquet::basic::{Compression as PqCompression, ZstdLevel};
        use parquet::file::properties::WriterProperties;
        let compression = match self.opts.compression {
            Compression::Zstd => PqCompression::ZSTD(ZstdLevel::try_new(1)?),
            Compression::Snappy => PqCompression::SNAPPY,
            Compression::None => PqCompression::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(true)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("cwn {} gen telemetry", env!("CARGO_PKG_VERSION")))
            .build();
        let mut writer = ArrowWriter::try_new(w, Arc::clone(&self.schema), Some(props))?;
        let report = self.run(
            |flows| self.record_batch(flows),
            |batch| Ok(writer.write(&batch)?),
            progress,
        )?;
        writer.close()?;
        Ok(report)
    }

    /// Writes an Arrow IPC file.
    pub fn write_arrow<W: Write>(
        &self,
        w: W,
        progress: impl FnMut(u64),
    ) -> Result<TelemetryReport, GenError> {
        use arrow_ipc::CompressionType;
        use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
        let options = match self.opts.compression {
            Compression::Zstd => {
                IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD))?
            }
            Compression::Snappy | Compression::None => IpcWriteOptions::default(),
        };
        let mut writer = FileWriter::try_new_with_options(w, &self.schema, options)?;
        let report = self.run(
            |flows| self.record_batch(flows),
            |batch| Ok(writer.write(&batch)?),
            progress,
        )?;
        writer.finish()?;
        Ok(report)
    }

    /// Writes JSON lines (flat keys for Zeek, nested objects for Suricata and ECS), through
    /// gzip when asked.
    pub fn write_jsonl<W: Write>(
        &self,
        w: W,
        gzip: bool,
        progress: impl FnMut(u64),
    ) -> Result<TelemetryReport, GenError> {
        let tree = JsonTree::new(self.opts.preset);
        let mut w: Box<dyn Write + '_> = if gzip {
            Box::new(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::new(3),
            ))
        } else {
            Box::new(w)
        };
        let report = self.run(
            |flows| Ok(self.json_bytes(flows, &tree)),
            |bytes| Ok(w.write_all(&bytes)?),
            progress,
        )?;
        w.flush()?;
        drop(w);
        Ok(report)
    }

    /// Writes in `format`.
    pub fn write<W: Write + Send>(
        &self,
        format: OutputFormat,
        w: W,
        progress: impl FnMut(u64),
    ) -> Result<TelemetryReport, GenError> {
        match format {
            OutputFormat::Parquet => self.write_parquet(w, progress),
            OutputFormat::Arrow => self.write_arrow(w, progress),
            OutputFormat::Jsonl { gzip } => self.write_jsonl(w, gzip, progress),
        }
    }
}

/// The Arrow schema of a preset: its columns, all nullable.
pub fn schema(preset: Preset) -> SchemaRef {
    let fields: Vec<Field> = preset
        .columns()
        .iter()
        .map(|c| {
            let ty = match c.ty {
                ColType::Str => DataType::Utf8,
                ColType::I32 => DataType::Int32,
                ColType::I64 => DataType::Int64,
                ColType::F64 => DataType::Float64,
                ColType::StrList => {
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
                }
            };
            Field::new(c.name, ty, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

enum ColBuilder {
    Str(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    List(ListBuilder<StringBuilder>),
}

impl ColBuilder {
    fn new(ty: ColType) -> Self {
        match ty {
            ColType::Str => ColBuilder::Str(StringBuilder::new()),
            ColType::I32 => ColBuilder::I32(Int32Builder::new()),
            ColType::I64 => ColBuilder::I64(Int64Builder::new()),
            ColType::F64 => ColBuilder::F64(Float64Builder::new()),
            ColType::StrList => ColBuilder::List(ListBuilder::new(StringBuilder::new())),
        }
    }

    fn push(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (ColBuilder::Str(b), Cell::Str(s)) => b.append_value(s),
            (ColBuilder::Str(b), _) => b.append_null(),
            (ColBuilder::I32(b), Cell::Int(v)) => b.append_value(v as i32),
            (ColBuilder::I32(b), _) => b.append_null(),
            (ColBuilder::I64(b), Cell::Int(v)) => b.append_value(v),
            (ColBuilder::I64(b), _) => b.append_null(),
            (ColBuilder::F64(b), Cell::Float(v)) => b.append_value(v),
            (ColBuilder::F64(b), _) => b.append_null(),
            (ColBuilder::List(b), Cell::List(items)) => {
                for v in items {
                    b.values().append_value(v);
                }
                b.append(true);
            }
            (ColBuilder::List(b), _) => b.append(false),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColBuilder::Str(mut b) => Arc::new(b.finish()),
            ColBuilder::I32(mut b) => Arc::new(b.finish()),
            ColBuilder::I64(mut b) => Arc::new(b.finish()),
            ColBuilder::F64(mut b) => Arc::new(b.finish()),
            ColBuilder::List(mut b) => Arc::new(b.finish()),
        }
    }
}

/// How a row's cells nest into a JSON object.
#[derive(Debug)]
enum JsonNode {
    /// A cell.
    Leaf(usize),
    /// An object of named members.
    Object(Vec<(String, JsonNode)>),
    /// An array of objects whose members are the list cells of the named columns, zipped.
    Objects(Vec<(String, usize)>),
}

/// The JSON layout of a preset, computed once.
#[derive(Debug)]
struct JsonTree {
    root: Vec<(String, JsonNode)>,
}

impl JsonTree {
    fn new(preset: Preset) -> Self {
        let mut root: Vec<(String, JsonNode)> = Vec::new();
        for (i, c) in preset.columns().iter().enumerate() {
            if !preset.nested_json() {
                root.push((c.name.to_string(), JsonNode::Leaf(i)));
                continue;
            }
            let arrays = preset.object_arrays();
            if let Some(prefix) = arrays.iter().find(|p| {
                c.name
                    .strip_prefix(**p)
                    .is_some_and(|rest| rest.starts_with('.'))
            }) {
                let member = c.name[prefix.len() + 1..].to_string();
                let parts: Vec<&str> = prefix.split('.').collect();
                let (last, parents) = parts.split_last().expect("non-empty prefix");
                let obj = descend(&mut root, parents);
                match obj.iter_mut().find(|(k, _)| k == last) {
                    Some((_, JsonNode::Objects(members))) => members.push((member, i)),
                    _ => obj.push((last.to_string(), JsonNode::Objects(vec![(member, i)]))),
                }
                continue;
            }
            let parts: Vec<&str> = c.name.split('.').collect();
            let (last, parents) = parts.split_last().expect("non-empty name");
            descend(&mut root, parents).push((last.to_string(), JsonNode::Leaf(i)));
        }
        JsonTree { root }
    }

    fn write(&self, row: &[Cell<'_>], out: &mut Vec<u8>) {
        write_object(&self.root, row, out);
    }
}

fn descend<'t>(
    mut obj: &'t mut Vec<(String, JsonNode)>,
    path: &[&str],
) -> &'t mut Vec<(String, JsonNode)> {
    for seg in path {
        let pos = match obj.iter().position(|(k, _)| k == seg) {
            Some(p) => p,
            None => {
                obj.push((seg.to_string(), JsonNode::Object(Vec::new())));
                obj.len() - 1
            }
        };
        obj = match &mut obj[pos].1 {
            JsonNode::Object(children) => children,
            // Column names never make a leaf a parent; keep writing into a fresh object.
            other => {
                *other = JsonNode::Object(Vec::new());
                match other {
                    JsonNode::Object(c) => c,
                    _ => unreachable!("just set"),
                }
            }
        };
    }
    obj
}

fn node_empty(node: &JsonNode, row: &[Cell<'_>]) -> bool {
    match node {
        JsonNode::Leaf(i) => matches!(row[*i], Cell::Null),
        JsonNode::Object(children) => children.iter().all(|(_, n)| node_empty(n, row)),
        JsonNode::Objects(members) => members.iter().all(|(_, i)| match &row[*i] {
            Cell::List(v) => v.is_empty(),
            _ => true,
        }),
    }
}

fn write_object(members: &[(String, JsonNode)], row: &[Cell<'_>], out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for (key, node) in members {
        if node_empty(node, row) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(key, out);
        out.push(b':');
        match node {
            JsonNode::Leaf(i) => write_cell(&row[*i], out),
            JsonNode::Object(children) => write_object(children, row, out),
            JsonNode::Objects(cols) => {
                let n = cols
                    .iter()
                    .map(|(_, i)| match &row[*i] {
                        Cell::List(v) => v.len(),
                        _ => 0,
                    })
                    .max()
                    .unwrap_or(0);
                out.push(b'[');
                for k in 0..n {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.push(b'{');
                    let mut first_member = true;
                    for (name, i) in cols {
                        if let Cell::List(v) = &row[*i]
                            && let Some(x) = v.get(k)
                        {
                            if !first_member {
                                out.push(b',');
                            }
                            first_member = false;
                            write_str(name, out);
                            out.push(b':');
                            write_str(x, out);
                        }
                    }
                    out.push(b'}');
                }
                out.push(b']');
            }
        }
    }
    out.push(b'}');
}

fn write_cell(cell: &Cell<'_>, out: &mut Vec<u8>) {
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Str(s) => write_str(s, out),
        Cell::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::Float(v) if v.is_finite() => {
            // Always with a fraction, as Zeek writes times: readers see a float, not an int.
            let start = out.len();
            let _ = write!(out, "{v}");
            if !out[start..].contains(&b'.') {
                out.extend_from_slice(b".0");
            }
        }
        Cell::Float(_) => out.extend_from_slice(b"null"),
        Cell::List(items) => {
            out.push(b'[');
            for (k, s) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write_str(s, out);
            }
            out.push(b']');
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly as JSON requires; strings here are short.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests;
