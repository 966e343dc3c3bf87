//! Parquet input: each row group is a [`Part`](super::Part) that can be decoded on its own
//! thread, and only the leaf columns the field map names are decoded.
//!
//! Field names resolve as for Arrow IPC (`dns.rrname` in a struct, `id.orig_h` as a flat
//! column; see [`arrow_ipc`](super::arrow_ipc)). A string column (also one inside lists) that
//! is dictionary-encoded in every row group is read as an Arrow `DictionaryArray`, so that the
//! matcher looks each distinct value up once rather than once per row. Pages are read from the file as they are
//! needed: memory is bounded by a page per column and one batch, whatever the file's size.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::Encoding;
use parquet::file::metadata::ColumnChunkMetaData;

use super::resolve::{Batches, FieldPath, Place, resolve_all};
use super::{BATCH_ROWS, BatchIter, FieldMap, TelemetryError};

/// An opened Parquet file: its metadata, the columns to decode, and where each row group's
/// rows start.
#[derive(Debug)]
pub(crate) struct ParquetInput {
    path: PathBuf,
    name: String,
    meta: ArrowReaderMetadata,
    mask: ProjectionMask,
    paths: Vec<FieldPath>,
    row_starts: Vec<u64>,
    /// To make the joined columns of each batch.
    fields: FieldMap,
}

fn all_dictionary(c: &ColumnChunkMetaData) -> bool {
    c.dictionary_page_offset().is_some()
        && c.page_encoding_stats_mask().is_none_or(|m| {
            m.is_only(Encoding::RLE_DICTIONARY) || m.is_only(Encoding::PLAIN_DICTIONARY)
        })
}

fn is_byte_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
    )
}

/// The fields with the leaf at `segs` replaced by a dictionary of its type.
fn with_dictionary_leaf(fields: &Fields, segs: &[String]) -> Fields {
    fields
        .iter()
        .map(|f| {
            if f.name() != &segs[0] {
                return f.clone();
            }
            let dt = dictionary_leaf(f.data_type(), &segs[1..]);
            Arc::new(Field::new(f.name(), dt, f.is_nullable()).with_metadata(f.metadata().clone()))
        })
        .collect()
}

/// `dt` with its string leaf at `rest` (below any lists, which field paths pass through
/// unnamed) replaced by a dictionary of its type.
fn dictionary_leaf(dt: &DataType, rest: &[String]) -> DataType {
    let item = |f: &Arc<Field>| {
        Arc::new(
            Field::new(
                f.name(),
                dictionary_leaf(f.data_type(), rest),
                f.is_nullable(),
            )
            .with_metadata(f.metadata().clone()),
        )
    };
    match dt {
        dt if rest.is_empty() && is_byte_type(dt) => {
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(dt.clone()))
        }
        DataType::List(f) => DataType::List(item(f)),
        DataType::LargeList(f) => DataType::LargeList(item(f)),
        DataType::Struct(children) if !rest.is_empty() => {
            DataType::Struct(with_dictionary_leaf(children, rest))
        }
        dt => dt.clone(),
    }
}

fn format_error(name: &str, reason: String) -> TelemetryError {
    TelemetryError::Format {
        path: name.to_string(),
        reason,
    }
}

impl ParquetInput {
    /// Reads the footer and plans which columns to decode, and how.
    pub(crate) fn open(path: &Path, fields: &FieldMap) -> Result<Self, TelemetryError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| TelemetryError::Io {
            path: name.clone(),
            source: e,
        })?;
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| format_error(&name, format!("not a readable Parquet file: {e}")))?;
        let paths = resolve_all(meta.schema(), fields, &name)?;
        let md = meta.metadata().clone();
        let groups = md.row_groups();
        // Dictionary-encoded string columns stay dictionaries (one lookup per distinct value),
        // also inside lists (a DNS answer list holds few distinct names and addresses).
        let mut schema_fields = meta.schema().fields().clone();
        let mut hinted = false;
        for p in &paths {
            let leaf = p.leaves.start;
            if p.leaves.len() != 1 || groups.is_empty() {
                continue;
            }
            if groups.iter().all(|g| all_dictionary(g.column(leaf))) {
                let changed = with_dictionary_leaf(&schema_fields, &p.segments);
                if changed != schema_fields {
                    tracing::debug!("{name}: `{}` is read as a dictionary", p.segments.join("."));
                    hinted = true;
                }
                schema_fields = changed;
            }
        }
        let meta = if hinted {
            let hint = Arc::new(Schema::new_with_metadata(
                schema_fields,
                meta.schema().metadata().clone(),
            ));
            ArrowReaderMetadata::try_new(md.clone(), ArrowReaderOptions::new().with_schema(hint))
                .map_err(|e| format_error(&name, format!("Parquet schema: {e}")))?
        } else {
            meta
        };
        let leaves: Vec<usize> = paths.iter().flat_map(|p| p.leaves.clone()).collect();
        let mask = ProjectionMask::leaves(meta.parquet_schema(), leaves);
        let mut row_starts = Vec::with_capacity(groups.len());
        let mut at = 0u64;
        for g in groups {
            row_starts.push(at);
            at += g.num_rows().max(0) as u64;
        }
        Ok(ParquetInput {
            path: path.to_path_buf(),
            name,
            meta,
            mask,
            paths,
            row_starts,
            fields: fields.clone(),
        })
    }

    /// Number of row groups.
    pub(crate) fn row_groups(&self) -> usize {
        self.row_starts.len()
    }

    /// The file's row number of the first row of row group `g`.
    pub(crate) fn first_row(&self, g: usize) -> u64 {
        self.row_starts[g]
    }

    /// Rows in row group `g`.
    pub(crate) fn rows(&self, g: usize) -> u64 {
        self.meta.metadata().row_group(g).num_rows().max(0) as u64
    }

    /// Streams row group `g` in batches of at most [`BATCH_ROWS`] rows. Each call opens the
    /// file anew, so that row groups read on different threads never share a file offset.
    pub(crate) fn read_row_group(&self, g: usize) -> Result<BatchIter, TelemetryError> {
        let file = File::open(&self.path).map_err(|e| TelemetryError::Io {
            path: self.name.clone(),
            source: e,
        })?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
            .with_row_groups(vec![g])
            .with_projection(self.mask.clone())
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| format_error(&self.name, format!("row group {g}: {e}")))?;
        Ok(self.fields.project_batches(Box::new(Batches::new(
            reader,
            &self.name,
            self.paths.clone(),
            self.first_row(g),
            Place::RowGroup(g),
        ))))
    }
}
