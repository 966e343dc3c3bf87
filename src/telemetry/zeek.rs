//! Zeek TSV logs: `#separator`, `#set_separator`, `#empty_field`, `#unset_field`, `#fields` and
//! `#types` headers; `-` is unset (null), `(empty)` an empty value; `set[…]` and `vector[…]`
//! columns become lists. A log may repeat its header (concatenated logs); it is re-read.

use super::{BatchBuilder, LineFormat};

fn unescape_sep(s: &str) -> Vec<u8> {
    // `#separator \x09`
    if let Some(hex) = s.strip_prefix("\\x")
        && let Ok(b) = u8::from_str_radix(hex, 16)
    {
        return vec![b];
    }
    s.as_bytes().to_vec()
}

struct Header {
    sep: Vec<u8>,
    set_sep: Vec<u8>,
    empty: Vec<u8>,
    unset: Vec<u8>,
    /// For each mapped field: its column index and whether it is a set/vector.
    cols: Vec<Option<(usize, bool)>>,
    ncols: usize,
}

/// Zeek TSV: header lines start with `#`; every other non-empty line is a record.
pub(crate) struct ZeekFormat {
    names: Vec<String>,
    h: Header,
    types: Vec<String>,
    fields: Vec<String>,
}

impl ZeekFormat {
    pub(crate) fn new(names: Vec<String>) -> Self {
        ZeekFormat {
            h: Header {
                sep: b"\t".to_vec(),
                set_sep: b",".to_vec(),
                empty: b"(empty)".to_vec(),
                unset: b"-".to_vec(),
                cols: vec![None; names.len()],
                ncols: 0,
            },
            names,
            types: Vec::new(),
            fields: Vec::new(),
        }
    }

    fn header_line(&mut self, line: &str) {
        let (key, rest) = match line.split_once([' ', '\t']) {
            Some(kv) => kv,
            None => (line, ""),
        };
        let sep = String::from_utf8_lossy(&self.h.sep).into_owned();
        match key {
            "#separator" => self.h.sep = unescape_sep(rest.trim()),
            "#set_separator" => self.h.set_sep = unescape_sep(rest),
            "#empty_field" => self.h.empty = rest.as_bytes().to_vec(),
            "#unset_field" => self.h.unset = rest.as_bytes().to_vec(),
            "#fields" => {
                self.fields = rest.split(sep.as_str()).map(str::to_string).collect();
                self.resolve();
            }
            "#types" => {
                self.types = rest.split(sep.as_str()).map(str::to_string).collect();
                self.resolve();
            }
            _ => {}
        }
    }

    fn resolve(&mut self) {
        self.h.ncols = self.fields.len();
        for (i, name) in self.names.iter().enumerate() {
            self.h.cols[i] = self.fields.iter().position(|f| f == name).map(|c| {
                let t = self.types.get(c).map(String::as_str).unwrap_or("");
                (c, t.starts_with("set[") || t.starts_with("vector["))
            });
        }
    }

    fn data_line(&mut self, b: &mut BatchBuilder, row: u64, line_no: u64, line: &[u8]) {
        let sep = &self.h.sep;
        let parts: Vec<&[u8]> = split(line, sep);
        if self.fields.is_empty() {
            b.error_row(row, line_no, "data before the #fields header".into());
            return;
        }
        if parts.len() != self.h.ncols {
            let reason = format!(
                "{} columns, the #fields header has {}",
                parts.len(),
                self.h.ncols
            );
            b.error_row(row, line_no, reason);
            return;
        }
        for i in 0..self.names.len() {
            let col = b.col(i);
            let Some((c, is_list)) = self.h.cols[i] else {
                col.push_null();
                continue;
            };
            let v = parts[c];
            if v == self.h.unset.as_slice() {
                col.push_null();
            } else if is_list {
                if v == self.h.empty.as_slice() {
                    col.push_list(Vec::new());
                } else {
                    let items = split(v, &self.h.set_sep)
                        .into_iter()
                        .map(|x| String::from_utf8_lossy(x).into_owned())
                        .collect();
                    col.push_list(items);
                }
            } else if v == self.h.empty.as_slice() {
                col.push_one(String::new());
            } else {
                col.push_one(String::from_utf8_lossy(v).into_owned());
            }
        }
        b.end_row();
    }
}

impl LineFormat for ZeekFormat {
    fn line(&mut self, b: &mut BatchBuilder, row: u64, line_no: u64, text: &[u8]) -> bool {
        if text.first() == Some(&b'#') {
            let header = String::from_utf8_lossy(text).into_owned();
            self.header_line(&header);
            return false;
        }
        if text.is_empty() {
            return false;
        }
        self.data_line(b, row, line_no, text);
        true
    }
}

/// The `#fields` of the first header in `head` (the start of a log), read with the header's
/// own separator; `None` when `head` has none.
pub(crate) fn header_fields(head: &[u8]) -> Option<Vec<String>> {
    let mut f = ZeekFormat::new(Vec::new());
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() != Some(&b'#') {
            // Headers come first: past them, there is nothing more to learn.
            if !line.is_empty() {
                break;
            }
            continue;
        }
        f.header_line(&String::from_utf8_lossy(line));
        if !f.fields.is_empty() {
            return Some(f.fields);
        }
    }
    None
}

fn split<'a>(s: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    // A header may declare an empty separator (`#set_separator` with nothing after it):
    // nothing then splits, rather than an endless run of empty pieces.
    if sep.is_empty() {
        return vec![s];
    }
    if sep.len() == 1 {
        return s.split(|&b| b == sep[0]).collect();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= s.len() {
        if &s[i..i + sep.len()] == sep {
            out.push(&s[start..i]);
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_empty_separator_splits_nothing() {
        // Found by the telemetry fuzz target: this looped, allocating without end.
        assert_eq!(super::split(b"a,b", b""), vec![&b"a,b"[..]]);
        assert_eq!(super::split(b"a::b", b"::"), vec![&b"a"[..], &b"b"[..]]);
    }

    use crate::telemetry::{FieldMap, InputFormat, read_all};
    use arrow_array::Array;
    use arrow_array::cast::AsArray;

    #[test]
    fn reads_fields_unset_empty_and_vectors() {
        let text = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#fields\tts\tquery\tanswers\n#types\ttime\tstring\tvector[string]\n1.5\tA.example\tx.example,192.0.2.1\n2.5\t-\t(empty)\nbad line\n#close\t2024\n";
        let m = FieldMap::from_specs([
            "query=domain".parse().unwrap(),
            "answers=domain".parse().unwrap(),
            "ts=time".parse().unwrap(),
        ])
        .unwrap();
        let b = &read_all(std::io::Cursor::new(text), "dns.log", InputFormat::Zeek, &m).unwrap()[0];
        assert_eq!(b.batch.num_rows(), 3);
        assert_eq!(b.errors.len(), 1);
        assert_eq!((b.errors[0].row, b.errors[0].line), (2, 9));
        let q = b.batch.column(0).as_string::<i32>();
        assert_eq!(q.value(0), "A.example");
        assert!(q.is_null(1));
        let a = b.batch.column(1).as_list::<i32>();
        assert_eq!(a.value(0).len(), 2);
        assert_eq!(a.value(1).len(), 0);
        assert_eq!(b.batch.column(2).as_string::<i32>().value(1), "2.5");
    }
}
