//! Arrow IPC input (file and stream format). The field map is resolved against the schema by
//! [`super::resolve`]; only the columns it names are decoded (files), or kept (streams).
//! Every message is checked by [`super::ipc_check`] before arrow-ipc reads it.
//!
//! Record batches are passed on as the file holds them, sliced into at most
//! [`BATCH_ROWS`](super::BATCH_ROWS) rows; memory is bounded by the largest record batch the writer produced.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};

use arrow_ipc::reader::{FileReaderBuilder, StreamReader};
use arrow_schema::{ArrowError, SchemaRef};

use super::resolve::{Batches, Place, resolve_all, top_projection};
use super::{BatchIter, FieldMap, TelemetryError, ipc_check};

fn format_error(path: &str, what: &str, e: ArrowError) -> TelemetryError {
    TelemetryError::Format {
        path: path.to_string(),
        reason: format!("not a readable Arrow IPC {what}: {e}"),
    }
}

/// Opens an Arrow IPC file (`ARROW1` magic, footer at the end), decoding only the mapped
/// columns.
pub(crate) fn open_file(
    file: File,
    path: &str,
    fields: &FieldMap,
) -> Result<BatchIter, TelemetryError> {
    let io_err = |e| TelemetryError::Io {
        path: path.to_string(),
        source: e,
    };
    // Every block is checked before arrow-ipc reads it (ipc_check): its buffers inside its
    // body, its decompressed size bounded.
    let mut file = file;
    ipc_check::check_file(&mut file, ipc_check::MAX_LOCAL_BATCH_BYTES).map_err(|reason| {
        TelemetryError::Format {
            path: path.to_string(),
            reason: format!("Arrow IPC file: {reason}"),
        }
    })?;
    // The schema decides the projection, which the reader takes when it is built: the footer
    // is read twice, which costs a few small reads.
    let probe = FileReaderBuilder::new()
        .build(BufReader::new(file.try_clone().map_err(io_err)?))
        .map_err(|e| format_error(path, "file", e))?;
    let schema: SchemaRef = probe.schema();
    drop(probe);
    let paths = resolve_all(&schema, fields, path)?;
    file.rewind().map_err(io_err)?;
    let r = BufReader::with_capacity(1 << 20, file);
    let reader = FileReaderBuilder::new()
        .with_projection(top_projection(&paths))
        .build(r)
        .map_err(|e| format_error(path, "file", e))?;
    Ok(fields.project_batches(Box::new(Batches::new(
        reader,
        path,
        paths,
        0,
        Place::IpcBatch,
    ))))
}

/// Reads an Arrow IPC stream from any reader: the stream format, or the file format read
/// front to back (as when it arrives compressed), whose magic is skipped.
pub(crate) fn open_stream(
    mut r: Box<dyn BufRead + Send>,
    path: &str,
    fields: &FieldMap,
) -> Result<BatchIter, TelemetryError> {
    let io_err = |e| TelemetryError::Io {
        path: path.to_string(),
        source: e,
    };
    if r.fill_buf().map_err(io_err)?.starts_with(b"ARROW1") {
        // The file format is the stream format between the magic with its padding (to 8
        // bytes by the spec, to 64 by arrow-rs) and the footer; the stream's end-of-stream
        // marker comes before the footer.
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(io_err)?;
        loop {
            let buf = r.fill_buf().map_err(io_err)?;
            if buf.len() >= 8 && buf[..8] == [0; 8] {
                r.consume(8);
            } else {
                break;
            }
        }
    }
    // Each message is read whole and checked before arrow-ipc sees it (ipc_check).
    let guarded = ipc_check::Guard::new(r, ipc_check::MAX_LOCAL_BATCH_BYTES);
    let probe =
        StreamReader::try_new(guarded, None).map_err(|e| format_error(path, "stream", e))?;
    let schema = probe.schema();
    let paths = resolve_all(&schema, fields, path)?;
    // The stream reader decodes every column of a batch; projecting after the fact keeps
    // only the mapped ones alive.
    Ok(Box::new(Batches::new(
        probe,
        path,
        paths,
        0,
        Place::IpcBatch,
    )))
}
