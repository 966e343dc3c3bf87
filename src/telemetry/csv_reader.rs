//! CSV telemetry with a header row; a field is a column name.

use std::io::BufRead;

use super::{BATCH_ROWS, BatchBuilder, TelemetryBatch, TelemetryError};

/// Streams a CSV file.
pub(crate) struct CsvReader {
    rdr: csv::Reader<Box<dyn BufRead + Send>>,
    name: String,
    cols: Vec<Option<usize>>,
    b: BatchBuilder,
    row: u64,
    done: bool,
    rec: csv::ByteRecord,
}

impl CsvReader {
    pub(crate) fn new(
        r: Box<dyn BufRead + Send>,
        name: &str,
        names: Vec<String>,
    ) -> Result<Self, TelemetryError> {
        let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(r);
        let headers = rdr.byte_headers().map_err(|e| TelemetryError::Format {
            path: name.to_string(),
            reason: format!("CSV header: {e}"),
        })?;
        let headers: Vec<String> = headers
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_string())
            .collect();
        let cols = names
            .iter()
            .map(|n| headers.iter().position(|h| h == n))
            .collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        Ok(CsvReader {
            rdr,
            name: name.to_string(),
            cols,
            b: BatchBuilder::new(&refs),
            row: 0,
            done: false,
            rec: csv::ByteRecord::new(),
        })
    }
}

impl Iterator for CsvReader {
    type Item = Result<TelemetryBatch, TelemetryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let first = self.row;
        while self.b.len() < BATCH_ROWS {
            let line = self.rdr.position().line();
            match self.rdr.read_byte_record(&mut self.rec) {
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Ok(true) => {
                    for (i, c) in self.cols.iter().enumerate() {
                        let col = self.b.col(i);
                        match c.and_then(|c| self.rec.get(c)) {
                            Some(v) if !v.is_empty() => {
                                col.push_one(String::from_utf8_lossy(v).into_owned())
                            }
                            _ => col.push_null(),
                        }
                    }
                    self.b.end_row();
                }
                Err(e) if e.is_io_error() => {
                    self.done = true;
                    return Some(Err(TelemetryError::Format {
                        path: self.name.clone(),
                        reason: e.to_string(),
                    }));
                }
                Err(e) => self.b.error_row(self.row, line, e.to_string()),
            }
            self.row += 1;
        }
        if self.b.len() == 0 {
            return None;
        }
        Some(Ok(self.b.finish(first)))
    }
}
