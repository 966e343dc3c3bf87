//! Hit files: JSON lines, Parquet or an Arrow IPC file, with the same fields, written to a
//! temporary file beside the destination and renamed into place when complete.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{HitRecord, record};
use crate::index::CompiledIndex;
use crate::matcher::Hit;
use crate::outfile::{OutputFile, Pending};
use crate::telemetry::FieldMap;

/// Hits per record batch (and Parquet row group slice) in the columnar formats.
const HIT_BATCH: usize = 65_536;

/// The format of a hit file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HitFormat {
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC file format.
    Arrow,
}

impl HitFormat {
    /// The format a path's extension asks for: `.parquet`, `.arrow` (or `.arrows`, `.ipc`,
    /// `.feather`), anything else (and `-`) JSON lines.
    pub fn for_path(path: &Path) -> HitFormat {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("parquet") => HitFormat::Parquet,
            Some("arrow" | "arrows" | "ipc" | "feather") => HitFormat::Arrow,
            _ => HitFormat::Jsonl,
        }
    }
}

/// The Arrow schema of hits: the [`HitRecord`] fields, in order. `event_time` is RFC 3339
/// text, as in JSON lines, and null when the row had none.
pub fn hit_schema() -> SchemaRef {
    let s = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        s("indicator_id"),
        s("kind"),
        s("indicator"),
        s("field"),
        s("value"),
        Field::new("row", DataType::UInt64, false),
        s("input"),
        Field::new("event_time", DataType::Utf8, true),
        s("tlp"),
        s("source"),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
    ]))
}

/// Collects hit records into Arrow columns.
#[derive(Debug, Default)]
pub struct HitBatchBuilder {
    indicator_id: StringBuilder,
    kind: StringBuilder,
    indicator: StringBuilder,
    field: StringBuilder,
    value: StringBuilder,
    row: UInt64Builder,
    input: StringBuilder,
    event_time: StringBuilder,
    tlp: StringBuilder,
    source: StringBuilder,
    tags: ListBuilder<StringBuilder>,
    len: usize,
}

impl HitBatchBuilder {
    /// Appends one record.
    pub fn push(&mut self, r: &HitRecord<'_>) {
        self.indicator_id.append_value(r.indicator_id);
        self.kind.append_value(r.kind);
        self.indicator.append_value(r.indicator);
        self.field.append_value(r.field);
        self.value.append_value(r.value);
        self.row.append_value(r.row);
        self.input.append_value(r.input);
        self.event_time.append_option(r.event_time.as_deref());
        self.tlp.append_value(r.tlp);
        self.source.append_value(r.source);
        for t in &r.tags {
            self.tags.values().append_value(t);
        }
        self.tags.append(true);
        self.len += 1;
    }

    /// Number of records collected since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was collected since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The collected records as a batch of [`hit_schema`]; the builder starts over.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.indicator_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.indicator.finish()),
            Arc::new(self.field.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.row.finish()),
            Arc::new(self.input.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.tlp.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.tags.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(hit_schema(), columns).expect("hit columns match the hit schema")
    }
}

enum Sink {
    /// JSON lines to a stream the caller owns.
    Stream(BufWriter<Box<dyn Write + Send>>),
    Jsonl(BufWriter<File>),
    Parquet(Box<ArrowWriter<BufWriter<File>>>),
    Arrow(Box<arrow_ipc::writer::FileWriter<BufWriter<File>>>),
}

/// Writes hits to a file (or standard output) in one of the [`HitFormat`]s.
///
/// A file is written under a temporary name in the same directory and renamed into place by
/// [`finish`](Self::finish); dropped unfinished, the temporary file is removed and whatever
/// was at the destination stays.
pub struct HitWriter {
    sink: Sink,
    builder: HitBatchBuilder,
    /// The flush and rename still to do, for a file.
    pending: Option<Pending>,
}

impl std::fmt::Debug for HitWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HitWriter")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

fn to_io(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

impl HitWriter {
    /// Creates a hit file at `path` in the format its extension names ([`HitFormat::for_path`]);
    /// `-` is JSON lines on standard output.
    pub fn create(path: &Path) -> io::Result<HitWriter> {
        if path.as_os_str() == "-" {
            return Ok(Self::jsonl(Box::new(io::stdout())));
        }
        let (file, pending) = OutputFile::create(path, 0o644)?.into_parts();
        let w = BufWriter::with_capacity(1 << 20, file);
        let sink = match HitFormat::for_path(path) {
            HitFormat::Jsonl => Sink::Jsonl(w),
            HitFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                match ArrowWriter::try_new(w, hit_schema(), Some(props)) {
                    Ok(w) => Sink::Parquet(Box::new(w)),
                    Err(e) => return Err(to_io(e)),
                }
            }
            HitFormat::Arrow => match arrow_ipc::writer::FileWriter::try_new(w, &hit_schema()) {
                Ok(w) => Sink::Arrow(Box::new(w)),
                Err(e) => return Err(to_io(e)),
            },
        };
        Ok(HitWriter {
            sink,
            builder: HitBatchBuilder::default(),
            pending: Some(pending),
        })
    }

    /// JSON lines to any writer (not renamed into place: the caller owns it).
    pub fn jsonl(w: Box<dyn Write + Send>) -> HitWriter {
        HitWriter {
            sink: Sink::Stream(BufWriter::with_capacity(1 << 16, w)),
            builder: HitBatchBuilder::default(),
            pending: None,
        }
    }

    /// Writes the hits found in `input`.
    pub fn write(
        &mut self,
        index: &CompiledIndex,
        fields: &FieldMap,
        input: &str,
        hits: &[Hit],
    ) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stream(w) => super::write_jsonl(w, index, fields, input, hits),
            Sink::Jsonl(w) => super::write_jsonl(w, index, fields, input, hits),
            _ => {
                for h in hits {
                    self.builder.push(&record(index, fields, input, h));
                    if self.builder.len() >= HIT_BATCH {
                        self.flush_batch()?;
                    }
                }
                Ok(())
            }
        }
    }

    fn flush_batch(&mut self) -> io::Result<()> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let batch = self.builder.finish();
        match &mut self.sink {
            Sink::Stream(_) | Sink::Jsonl(_) => Ok(()),
            Sink::Parquet(w) => w.write(&batch).map_err(to_io),
            Sink::Arrow(w) => w.write(&batch).map_err(to_io),
        }
    }

    /// Completes the file: the last hits, the footer, a flush to disk, and the rename.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_batch()?;
        let empty = Sink::Stream(BufWriter::new(Box::new(io::sink())));
        let file = match std::mem::replace(&mut self.sink, empty) {
            Sink::Stream(mut w) => {
                w.flush()?;
                None
            }
            Sink::Jsonl(w) => Some(w),
            // Writes the footer.
            Sink::Parquet(w) => Some(w.into_inner().map_err(to_io)?),
            Sink::Arrow(mut w) => {
                w.finish().map_err(to_io)?;
                Some(w.into_inner().map_err(to_io)?)
            }
        };
        if let (Some(w), Some(pending)) = (file, self.pending.take()) {
            let file = w.into_inner().map_err(|e| e.into_error())?;
            pending.commit(&file)?;
        }
        Ok(())
    }
}
