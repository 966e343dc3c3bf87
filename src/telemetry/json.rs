//! JSON lines: one object per line; a field is a dotted path that may be a flat key (`id.orig_h`
//! as Zeek writes it), nested objects (`dns.rrname`), or a mix; arrays along the way are
//! searched element by element (`dns.queries.rrname`).

use serde_json::Value;

use super::{BatchBuilder, LineFormat};

/// Collects the scalar values at `path` below `v`.
pub(crate) fn extract<'v>(v: &'v Value, path: &str, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(path) {
                leaves(x, out);
                return;
            }
            for (i, _) in path.match_indices('.') {
                if let Some(x) = m.get(&path[..i]) {
                    extract(x, &path[i + 1..], out);
                }
            }
        }
        Value::Array(a) => {
            for e in a {
                extract(e, path, out);
            }
        }
        _ => {}
    }
}

fn leaves<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Null | Value::Object(_) => {}
        Value::Array(a) => {
            for e in a {
                leaves(e, out);
            }
        }
        _ => out.push(v),
    }
}

/// Every path to a value in a record, written as fields name them: nested objects and flat
/// dotted keys alike (`id.orig_h`), arrays looked through (`dns.queries.rrname`). Sorted, no
/// duplicates. `--preset auto` decides the schema from these.
pub(crate) fn paths(v: &Value) -> Vec<String> {
    fn walk(v: &Value, prefix: &mut String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let len = prefix.len();
                    if len > 0 {
                        prefix.push('.');
                    }
                    prefix.push_str(k);
                    walk(x, prefix, out);
                    prefix.truncate(len);
                }
            }
            Value::Array(a) if a.iter().any(|e| e.is_object() || e.is_array()) => {
                for e in a {
                    walk(e, prefix, out);
                }
            }
            _ => out.push(prefix.clone()),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut String::new(), &mut out);
    out.sort();
    out.dedup();
    out
}

pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// JSON lines: one object per line, blank lines skipped.
pub(crate) struct JsonFormat {
    names: Vec<String>,
}

impl JsonFormat {
    pub(crate) fn new(names: Vec<String>) -> Self {
        JsonFormat { names }
    }

    fn push_record(&self, b: &mut BatchBuilder, v: &Value) {
        let mut vals = Vec::new();
        for (i, path) in self.names.iter().enumerate() {
            vals.clear();
            extract(v, path, &mut vals);
            let col = b.col(i);
            match (vals.len(), vals.first()) {
                (0, _) => col.push_null(),
                (1, Some(x)) if !is_array_at(v, path) => col.push_one(scalar_text(x)),
                _ => col.push_list(vals.iter().map(|x| scalar_text(x)).collect()),
            }
        }
        b.end_row();
    }
}

impl LineFormat for JsonFormat {
    fn line(&mut self, b: &mut BatchBuilder, row: u64, line_no: u64, text: &[u8]) -> bool {
        let text = text.trim_ascii();
        if text.is_empty() {
            return false;
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(v @ Value::Object(_)) => self.push_record(b, &v),
            Ok(_) => b.error_row(row, line_no, "not a JSON object".into()),
            Err(e) => b.error_row(
                row,
                line_no,
                format!("invalid JSON at column {}: {e}", e.column()),
            ),
        }
        true
    }
}

/// Whether the path leads through an array (so the column is a list even with one value).
fn is_array_at(v: &Value, path: &str) -> bool {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(path) {
                return x.is_array();
            }
            path.match_indices('.').any(|(i, _)| {
                m.get(&path[..i])
                    .is_some_and(|x| x.is_array() || is_array_at(x, &path[i + 1..]))
            })
        }
        Value::Array(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::telemetry::{FieldMap, InputFormat, read_all};
    use arrow_array::Array;
    use arrow_array::cast::AsArray;

    fn map(specs: &[&str]) -> FieldMap {
        FieldMap::from_specs(specs.iter().map(|s| s.parse().unwrap())).unwrap()
    }

    #[test]
    fn flat_nested_and_array_paths() {
        let text = concat!(
            r#"{"id.orig_h":"192.0.2.10","dns":{"queries":[{"rrname":"a.example"},{"rrname":"b.example"}]},"ts":1741860000.5}"#,
            "\n",
            r#"{"id":{"orig_h":"192.0.2.11"},"dns":{"rrname":"c.example"}}"#,
            "\nnot json\n\n",
            r#"{"id_orig_h":"x"}"#,
            "\n"
        );
        let m = map(&[
            "id.orig_h=ip",
            "dns.queries.rrname=domain",
            "dns.rrname=domain",
            "ts=time",
        ]);
        let batches = read_all(
            std::io::Cursor::new(text),
            "t.jsonl",
            InputFormat::Jsonl,
            &m,
        )
        .unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.batch.num_rows(), 4);
        assert_eq!(b.errors.len(), 1);
        assert_eq!((b.errors[0].row, b.errors[0].line), (2, 3));
        let ip = b.batch.column(0).as_string::<i32>();
        assert_eq!(ip.value(0), "192.0.2.10");
        assert_eq!(ip.value(1), "192.0.2.11");
        assert!(ip.is_null(2) && ip.is_null(3));
        let q = b.batch.column(1).as_list::<i32>();
        let first = q.value(0);
        let names = first.as_string::<i32>();
        assert_eq!((names.value(0), names.value(1)), ("a.example", "b.example"));
        assert!(q.is_null(1));
        assert_eq!(
            b.batch.column(3).as_string::<i32>().value(0),
            "1741860000.5"
        );
    }
}
