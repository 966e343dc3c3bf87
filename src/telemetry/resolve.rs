//! Field maps resolved against an Arrow schema, for every reader that decodes columns (Parquet,
//! Arrow IPC): which column, or which child of a struct, holds each mapped field; the
//! projection of a decoded batch onto the map; and the cutting of decoded record batches into
//! telemetry batches.
//!
//! A field name is resolved against the schema the way JSON paths are: a column whose name is
//! the whole field name wins (`id.orig_h` as Zeek writes it), otherwise the name is split at a
//! dot into a struct column and the rest (`dns.rrname`), through lists of structs
//! (`dns.answers.rdata` becomes one list of every answer's `rdata`). Joined fields
//! (`host+uri=url`) resolve each of their input columns ([`FieldMap::input_columns`]) and
//! are joined after projection ([`FieldMap::project_batches`]), the same way for every reader.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, GenericListArray, OffsetSizeTrait, RecordBatch, make_array};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema};

use super::{BATCH_ROWS, FieldMap, TelemetryBatch, TelemetryError};

/// Where one mapped field lives in an Arrow schema.
#[derive(Clone, Debug)]
pub(crate) struct FieldPath {
    /// The field map's name for it (the output column's name).
    pub(crate) name: String,
    /// Column names from the top level down (`["dns", "rrname"]`, or `["id.orig_h"]`).
    pub(crate) segments: Vec<String>,
    /// Index of the top-level column.
    pub(crate) top: usize,
    /// The leaf columns below it, numbered depth first over the whole schema (as Parquet
    /// numbers its columns).
    pub(crate) leaves: Range<usize>,
}

/// Number of leaf (non-nested) columns under a data type.
pub(crate) fn count_leaves(dt: &DataType) -> usize {
    match dt {
        DataType::Struct(fs) => fs.iter().map(|f| count_leaves(f.data_type())).sum(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => count_leaves(f.data_type()),
        _ => 1,
    }
}

/// The children of a struct, or of the structs in a list.
fn struct_children(dt: &DataType) -> Option<&Fields> {
    match dt {
        DataType::Struct(fs) => Some(fs),
        DataType::List(f) | DataType::LargeList(f) => struct_children(f.data_type()),
        _ => None,
    }
}

fn find(
    fields: &Fields,
    name: &str,
    base: usize,
    segs: &mut Vec<String>,
) -> Option<(usize, Range<usize>, DataType)> {
    let mut offsets = Vec::with_capacity(fields.len());
    let mut off = base;
    for f in fields.iter() {
        offsets.push(off);
        off += count_leaves(f.data_type());
    }
    let leaves = |i: usize| offsets[i]..offsets[i] + count_leaves(fields[i].data_type());
    if let Some(i) = fields.iter().position(|f| f.name() == name) {
        segs.push(name.to_string());
        return Some((i, leaves(i), fields[i].data_type().clone()));
    }
    for (dot, _) in name.match_indices('.') {
        let head = &name[..dot];
        let Some(i) = fields.iter().position(|f| f.name() == head) else {
            continue;
        };
        let Some(children) = struct_children(fields[i].data_type()) else {
            continue;
        };
        segs.push(head.to_string());
        if let Some((_, r, dt)) = find(children, &name[dot + 1..], offsets[i], segs) {
            return Some((i, r, dt));
        }
        segs.pop();
    }
    None
}

/// Resolves a field name against a schema: `Ok(None)` when there is no such column, an error
/// when it names a struct rather than a value in it.
pub(crate) fn resolve(schema: &Schema, name: &str) -> Result<Option<FieldPath>, String> {
    let mut segments = Vec::new();
    let Some((top, leaves, dt)) = find(schema.fields(), name, 0, &mut segments) else {
        return Ok(None);
    };
    if let Some(children) = struct_children(&dt) {
        let names: Vec<String> = children
            .iter()
            .take(5)
            .map(|c| format!("{name}.{}", c.name()))
            .collect();
        return Err(format!(
            "field `{name}` is a struct; map one of its fields instead (e.g. {})",
            names.join(", ")
        ));
    }
    Ok(Some(FieldPath {
        name: name.to_string(),
        segments,
        top,
        leaves,
    }))
}

/// Resolves every field of the map; fields with no column are reported and left out (their
/// values are empty, as a missing key is in JSON lines).
pub(crate) fn resolve_all(
    schema: &Schema,
    fields: &FieldMap,
    path: &str,
) -> Result<Vec<FieldPath>, TelemetryError> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for name in fields.input_columns() {
        match resolve(schema, name) {
            Ok(Some(p)) => out.push(p),
            Ok(None) => missing.push(name),
            Err(reason) => {
                return Err(TelemetryError::Format {
                    path: path.to_string(),
                    reason,
                });
            }
        }
    }
    // A preset maps every field its schema may have and a file holds some of them: one line
    // for all that are absent, a warning only when nothing mapped is there at all.
    if !missing.is_empty() {
        let list = missing.join(", ");
        if out.is_empty() {
            // The run reports it as an error once it has seen the rows (FieldPresence).
            tracing::debug!("{path}: none of the mapped fields is a column here ({list})");
        } else {
            tracing::info!(
                "{path}: {} mapped fields have no column and read as empty: {list}",
                missing.len()
            );
        }
    }
    Ok(out)
}

/// A child array with its parent struct's nulls added (a null struct has null fields), when
/// the writer did not already do so.
fn with_parent_nulls(
    child: &ArrayRef,
    parent: Option<&NullBuffer>,
) -> Result<ArrayRef, ArrowError> {
    let Some(parent) = parent.filter(|p| p.null_count() > 0) else {
        return Ok(child.clone());
    };
    let union = NullBuffer::union(Some(parent), child.logical_nulls().as_ref())
        .expect("union of a present buffer");
    if child.null_count() == union.null_count() {
        return Ok(child.clone());
    }
    let data = child.to_data().into_builder().nulls(Some(union)).build()?;
    Ok(make_array(data))
}

fn list_values<O: OffsetSizeTrait>(
    l: &GenericListArray<O>,
    segs: &[String],
) -> Result<ArrayRef, ArrowError> {
    let inner = extract(l.values(), segs)?;
    let offsets = l.offsets();
    let nulls = l.nulls().cloned();
    // A list of lists (a list inside a list of structs) becomes one list per row.
    let (values, offsets) = match inner.data_type() {
        DataType::List(_) => flatten(offsets, inner.as_list::<i32>()),
        DataType::LargeList(_) => flatten(offsets, inner.as_list::<i64>()),
        _ => (inner, offsets.clone()),
    };
    let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
    Ok(Arc::new(GenericListArray::<O>::try_new(
        field, offsets, values, nulls,
    )?))
}

/// A list (`outer`) of lists (`inner`) as one list per outer row: the inner values, with the
/// outer offsets carried through the inner ones.
fn flatten<O: OffsetSizeTrait, I: OffsetSizeTrait>(
    outer: &OffsetBuffer<O>,
    inner: &GenericListArray<I>,
) -> (ArrayRef, OffsetBuffer<O>) {
    let io = inner.offsets();
    let flat: Vec<O> = outer
        .iter()
        .map(|&o| O::usize_as(io[o.as_usize()].as_usize()))
        .collect();
    (
        inner.values().clone(),
        OffsetBuffer::new(ScalarBuffer::from(flat)),
    )
}

/// The values at `segs` below `array`: a struct's child, or a list of them.
pub(crate) fn extract(array: &ArrayRef, segs: &[String]) -> Result<ArrayRef, ArrowError> {
    let Some((first, rest)) = segs.split_first() else {
        return Ok(array.clone());
    };
    match array.data_type() {
        DataType::Struct(_) => {
            let s = array.as_struct();
            let child = s.column_by_name(first).ok_or_else(|| {
                ArrowError::SchemaError(format!("no struct field `{first}` in the batch"))
            })?;
            let child = with_parent_nulls(child, s.nulls())?;
            extract(&child, rest)
        }
        DataType::List(_) => list_values(array.as_list::<i32>(), segs),
        DataType::LargeList(_) => list_values(array.as_list::<i64>(), segs),
        other => Err(ArrowError::SchemaError(format!(
            "`{first}` is below a column of type {other}, which has no fields"
        ))),
    }
}

/// Builds a batch of the mapped columns, named as in the field map, from a decoded batch.
pub(crate) fn project(batch: &RecordBatch, paths: &[FieldPath]) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::with_capacity(paths.len());
    let mut arrays = Vec::with_capacity(paths.len());
    for p in paths {
        let top = batch.column_by_name(&p.segments[0]).ok_or_else(|| {
            ArrowError::SchemaError(format!("column `{}` missing from a batch", p.segments[0]))
        })?;
        let a = extract(top, &p.segments[1..])?;
        fields.push(Field::new(&p.name, a.data_type().clone(), true));
        arrays.push(a);
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// Cuts decoded record batches into telemetry batches of at most [`BATCH_ROWS`] rows,
/// numbering rows from `first_row`.
pub(crate) struct Batches<I> {
    inner: I,
    path: String,
    paths: Vec<FieldPath>,
    pending: Option<RecordBatch>,
    offset: usize,
    row: u64,
    place: Place,
    /// Record batches taken from `inner` so far.
    decoded: u64,
    done: bool,
}

/// What an error message names as the place of a decode error.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Place {
    /// A Parquet row group.
    RowGroup(usize),
    /// The n-th record batch of an Arrow IPC file or stream.
    IpcBatch,
}

impl<I> Batches<I>
where
    I: Iterator<Item = Result<RecordBatch, ArrowError>>,
{
    pub(crate) fn new(
        inner: I,
        path: &str,
        paths: Vec<FieldPath>,
        first_row: u64,
        place: Place,
    ) -> Self {
        Batches {
            inner,
            path: path.to_string(),
            paths,
            pending: None,
            offset: 0,
            row: first_row,
            place,
            decoded: 0,
            done: false,
        }
    }

    fn error(&mut self, e: ArrowError) -> TelemetryError {
        self.done = true;
        let place = match self.place {
            Place::RowGroup(g) => format!("row group {g}"),
            Place::IpcBatch => format!("record batch {}", self.decoded),
        };
        TelemetryError::Format {
            path: self.path.clone(),
            reason: format!("{place}, near row {}: {e}", self.row),
        }
    }
}

impl<I> Iterator for Batches<I>
where
    I: Iterator<Item = Result<RecordBatch, ArrowError>>,
{
    type Item = Result<TelemetryBatch, TelemetryError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if let Some(b) = &self.pending {
                if self.offset < b.num_rows() {
                    let n = (b.num_rows() - self.offset).min(BATCH_ROWS);
                    let slice = b.slice(self.offset, n);
                    self.offset += n;
                    let first_row = self.row;
                    self.row += n as u64;
                    return Some(match project(&slice, &self.paths) {
                        Ok(batch) => Ok(TelemetryBatch {
                            batch,
                            first_row,
                            errors: Vec::new(),
                        }),
                        Err(e) => {
                            self.row = first_row;
                            Err(self.error(e))
                        }
                    });
                }
                self.pending = None;
            }
            match self.inner.next() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(b)) => {
                    self.decoded += 1;
                    self.pending = Some(b);
                    self.offset = 0;
                }
                Some(Err(e)) => return Some(Err(self.error(e))),
            }
        }
    }
}

/// The top-level columns the paths need, for a reader's projection.
pub(crate) fn top_projection(paths: &[FieldPath]) -> Vec<usize> {
    let mut tops: Vec<usize> = paths.iter().map(|p| p.top).collect();
    tops.sort_unstable();
    tops.dedup();
    tops
}
