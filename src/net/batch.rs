//! Arrow IPC payloads of the wire: telemetry batches (with their field map and origin in the
//! schema metadata, so that the hub matches them exactly as `cwn match` would) and hit
//! batches sent back to the partner.

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::Schema;

use crate::telemetry::ipc_check::{self, Refusal};
use crate::telemetry::{FieldMap, FieldSpec};

/// Schema metadata key: the field map as a JSON array of `NAME=KIND`.
pub const META_FIELDS: &str = "cwn.fields";
/// Schema metadata key: the input file's name.
pub const META_INPUT: &str = "cwn.input";
/// The longest input name a telemetry batch may carry (it is echoed in hits and logs).
pub const MAX_INPUT_NAME: usize = 1024;
/// Schema metadata key: row number of the batch's first row within its input.
pub const META_FIRST_ROW: &str = "cwn.first_row";

/// A payload could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Arrow refused it.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Metadata missing or wrong.
    #[error("{0}")]
    Meta(String),
    /// The batch would expand past the limit (a decompression bomb, or simply too large).
    #[error(
        "the batch expands to {expanded} bytes, over the limit of {limit}; send smaller batches"
    )]
    TooLarge {
        /// Bytes the batch's buffers would take once decompressed (at least; counting stops
        /// past the limit).
        expanded: u64,
        /// The limit.
        limit: u64,
    },
}

/// The bytes an Arrow IPC stream's record and dictionary batches take once their buffers are
/// decompressed, read from the message headers and each compressed buffer's length prefix
/// without decompressing anything. Stops counting past `limit`.
///
/// # Errors
/// A stream whose framing or headers are malformed, or whose expansion is over `limit`.
pub fn expanded_size(bytes: &[u8], limit: u64) -> Result<u64, BatchError> {
    ipc_check::stream_expanded_size(bytes, limit).map_err(|r| match r {
        Refusal::Malformed(m) => BatchError::Meta(format!("Arrow IPC stream: {m}")),
        Refusal::TooLarge { expanded, limit } => BatchError::TooLarge { expanded, limit },
    })
}

/// A telemetry batch as the hub receives it.
#[derive(Debug)]
pub struct Telemetry {
    /// The mapped columns.
    pub batch: RecordBatch,
    /// Which column holds what.
    pub fields: FieldMap,
    /// The input file's name, for the hit records.
    pub input: String,
    /// Row number of the first row within the input.
    pub first_row: u64,
}

/// Encodes a telemetry batch with its field map and origin.
pub fn encode_telemetry(
    batch: &RecordBatch,
    fields: &FieldMap,
    input: &str,
    first_row: u64,
) -> Result<Vec<u8>, BatchError> {
    let specs: Vec<String> = fields
        .fields()
        .iter()
        .map(|f| format!("{}={}", f.name, f.kind))
        .collect();
    let mut meta = batch.schema().metadata().clone();
    meta.insert(
        META_FIELDS,
        serde_json::to_string(&specs).map_err(|e| BatchError::Meta(e.to_string()))?,
    );
    // The hub takes names up to MAX_INPUT_NAME: keep the end, which names the file.
    let mut from = input.len().saturating_sub(MAX_INPUT_NAME);
    while !input.is_char_boundary(from) {
        from += 1;
    }
    meta.insert(META_INPUT.to_string(), input[from..].to_string());
    meta.insert(META_FIRST_ROW, first_row.to_string());
    let schema = Arc::new(batch.schema().as_ref().clone().with_metadata(meta));
    let batch = batch.clone().with_schema(schema.clone())?;
    write_ipc(&schema, &[batch])
}

fn write_ipc(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(out)
}

fn read_ipc(bytes: &[u8]) -> Result<(Arc<Schema>, Vec<RecordBatch>), BatchError> {
    let r = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = r.schema();
    let batches = r.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Decodes a telemetry batch (several IPC batches are concatenated), refusing one whose
/// buffers would expand past `max_expanded` bytes before expanding any of them.
pub fn decode_telemetry(bytes: &[u8], max_expanded: u64) -> Result<Telemetry, BatchError> {
    expanded_size(bytes, max_expanded)?;
    let (schema, batches) = read_ipc(bytes)?;
    telemetry_of(&schema, &batches)
}

/// A telemetry batch from its schema (the metadata [`encode_telemetry`] writes: field map,
/// input name, first row) and its record batches (one at most), as decoded from a frame or
/// read back from where the hub keeps batches.
///
/// # Errors
/// Missing or malformed metadata, or more than one record batch.
pub fn telemetry_of(
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<Telemetry, BatchError> {
    let meta = schema.metadata();
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| BatchError::Meta(format!("telemetry batch without {k} metadata")))
    };
    let specs: Vec<String> = serde_json::from_str(get(META_FIELDS)?)
        .map_err(|e| BatchError::Meta(format!("{META_FIELDS}: {e}")))?;
    let specs = specs
        .iter()
        .map(|s| s.parse::<FieldSpec>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(BatchError::Meta)?;
    let fields = FieldMap::from_specs(specs).map_err(BatchError::Meta)?;
    let input = get(META_INPUT)?.clone();
    if input.len() > MAX_INPUT_NAME {
        return Err(BatchError::Meta(format!(
            "{META_INPUT}: an input name of {} bytes; at most {MAX_INPUT_NAME}",
            input.len()
        )));
    }
    let first_row = get(META_FIRST_ROW)?
        .parse()
        .map_err(|_| BatchError::Meta(format!("{META_FIRST_ROW}: not a number")))?;
    let batch = arrow_select_concat(schema, batches)?;
    Ok(Telemetry {
        batch,
        fields,
        input,
        first_row,
    })
}

fn arrow_select_concat(
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<RecordBatch, BatchError> {
    match batches {
        [] => Ok(RecordBatch::new_empty(schema.clone())),
        [one] => Ok(one.clone()),
        _ => Err(BatchError::Meta(
            "one record batch per telemetry frame expected".into(),
        )),
    }
}

pub use crate::hits::HitLine;

fn str_col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a arrow_array::StringArray, BatchError> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| BatchError::Meta(format!("hit batch without a string column {name}")))
}

const HIT_STRINGS: [&str; 9] = [
    "indicator_id",
    "kind",
    "indicator",
    "field",
    "value",
    "input",
    "event_time",
    "tlp",
    "source",
];

/// Encodes hits as an Arrow IPC stream of the one hit schema ([`crate::hits::hit_schema`]),
/// as `cwn match` writes hits to Arrow and Parquet.
pub fn encode_hits(hits: &[HitLine]) -> Result<Vec<u8>, BatchError> {
    let mut b = crate::hits::writer::HitBatchBuilder::default();
    for h in hits {
        b.push(&h.as_record());
    }
    write_ipc(&crate::hits::hit_schema(), &[b.finish()])
}

/// Decodes hits encoded by [`encode_hits`].
pub fn decode_hits(bytes: &[u8]) -> Result<Vec<HitLine>, BatchError> {
    let (_, batches) = read_ipc(bytes)?;
    let mut out = Vec::new();
    for b in &batches {
        let s: Vec<&arrow_array::StringArray> = HIT_STRINGS
            .iter()
            .map(|n| str_col(b, n))
            .collect::<Result<_, _>>()?;
        let rows = b
            .column_by_name("row")
            .and_then(|c| c.as_primitive_opt::<arrow_array::types::UInt64Type>())
            .ok_or_else(|| BatchError::Meta("hit batch without rows".into()))?;
        let tags = b
            .column_by_name("tags")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| BatchError::Meta("hit batch without tags".into()))?;
        for r in 0..b.num_rows() {
            let t = tags.value(r);
            let t = t.as_string::<i32>();
            out.push(HitLine {
                indicator_id: s[0].value(r).into(),
                kind: s[1].value(r).into(),
                indicator: s[2].value(r).into(),
                field: s[3].value(r).into(),
                value: s[4].value(r).into(),
                input: s[5].value(r).into(),
                event_time: (!s[6].is_null(r)).then(|| s[6].value(r).to_string()),
                tlp: s[7].value(r).into(),
                source: s[8].value(r).into(),
                row: rows.value(r),
                tags: (0..t.len()).map(|i| t.value(i).to_string()).collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_round_trip() {
        let h = HitLine {
            indicator_id: "a".into(),
            kind: "domain".into(),
            indicator: "evil.example".into(),
            field: "query".into(),
            value: "www.evil.example".into(),
            row: 7,
            input: "dns.log".into(),
            event_time: None,
            tlp: "TLP:GREEN".into(),
            source: "s".into(),
            tags: vec!["x".into(), "y".into()],
        };
        let bytes = encode_hits(&[h.clone(), h.clone()]).unwrap();
        assert_eq!(decode_hits(&bytes).unwrap(), vec![h.clone(), h]);
        assert!(decode_hits(&encode_hits(&[]).unwrap()).unwrap().is_empty());
    }
}
