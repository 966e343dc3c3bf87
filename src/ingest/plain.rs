//! Plain lists (one value per line) and CSV lists.
//!
//! Plain lists are what maltrail, abuse.ch and most block lists publish: one value per line,
//! `#` starting a comment (at the start of a line or after white space, so that a URL fragment
//! survives), blank lines ignored. The kind is guessed per value ([`normalize::guess`]) unless
//! `--kind` fixes it. Each indicator's id is `<file name>:<canonical value>` — stable when
//! lines are added or removed around it, so that a changed list makes a small delta and its
//! sightings keep their indicator — and its source the list name.
//!
//! CSV lists have a header row; the value comes from the chosen column (`--column`, else a
//! column named `value`, `indicator`, `ioc`, `indicator_value`, else the first). Optional
//! columns `kind` (or `type`) and `tlp` refine each row.

use std::sync::Arc;

use crate::indicator::normalize::{self, NormalizeError, Normalized};
use crate::indicator::{Indicator, Kind, Tlp};

use super::{Batch, Category, Record, SourceOptions};

/// The category a normalisation failure is counted in.
pub(crate) fn category_of(e: &NormalizeError) -> Category {
    match e {
        NormalizeError::Pattern(_) => Category::Unsupported,
        _ => Category::Invalid,
    }
}

/// Strips a trailing `# comment` (a `#` at the start or after white space).
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for i in memchr::memchr_iter(b'#', b) {
        if i == 0 || b[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

fn normalise(kind: Option<Kind>, value: &str) -> Result<Normalized, NormalizeError> {
    match kind {
        Some(k) => normalize::indicator_value(k, value),
        None => normalize::guess(value),
    }
}

/// Parses a plain list. `list` is the list name used as every indicator's source.
pub fn parse_plain(
    bytes: &[u8],
    file: &Arc<str>,
    list: &str,
    opts: &SourceOptions,
    out: &mut Batch,
) {
    let source: Arc<str> = Arc::from(list);
    // Strip a UTF-8 byte-order mark.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    for (idx, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l,
            Err(e) => {
                out.reject(
                    file,
                    Record::Line(line_no as u64),
                    Category::Invalid,
                    format!("not valid UTF-8 (byte {})", e.valid_up_to()),
                );
                continue;
            }
        };
        let value = strip_comment(line).trim();
        if value.is_empty() {
            continue;
        }
        match normalise(opts.kind, value) {
            Ok(n) => {
                let mut ind = Indicator::new(
                    format!("{file}:{}", n.value),
                    n.kind,
                    n.value,
                    Arc::clone(&source),
                    opts.default_tlp,
                );
                ind.defanged = n.notes.contains(&normalize::Note::Refanged);
                out.accept(file, Record::Line(line_no as u64), ind, n.notes);
            }
            Err(e) => out.reject(
                file,
                Record::Line(line_no as u64),
                category_of(&e),
                format!("`{}`: {e}", shorten(value)),
            ),
        }
    }
}

/// Cuts a value for display in a reason (a 10 MB line must not become a 10 MB reason).
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

const VALUE_COLUMNS: [&str; 5] = ["value", "indicator", "ioc", "indicator_value", "observable"];

/// Parses a CSV list with a header row.
pub fn parse_csv(bytes: &[u8], file: &Arc<str>, opts: &SourceOptions, out: &mut Batch) {
    let source: Arc<str> = Arc::from(
        std::path::Path::new(file.as_ref())
            .with_extension("")
            .to_string_lossy()
            .as_ref(),
    );
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = match rdr.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            out.reject(
                file,
                "line 1",
                Category::Invalid,
                format!("CSV header: {e}"),
            );
            return;
        }
    };
    let names: Vec<String> = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_ascii_lowercase())
        .collect();
    let find = |want: &str| names.iter().position(|n| n == want);
    let col = match &opts.csv_column {
        Some(c) => match find(&c.to_ascii_lowercase()).or_else(|| c.parse::<usize>().ok()) {
            Some(i) if i < names.len() => i,
            _ => {
                out.reject(
                    file,
                    "line 1",
                    Category::Invalid,
                    format!("no column `{c}` in the header ({})", names.join(", ")),
                );
                return;
            }
        },
        None => VALUE_COLUMNS.iter().find_map(|c| find(c)).unwrap_or(0),
    };
    let kind_col = find("kind").or_else(|| find("type"));
    let tlp_col = find("tlp");
    let mut record = csv::ByteRecord::new();
    loop {
        let line_no = rdr.position().line();
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                out.reject(
                    file,
                    Record::Line(line_no),
                    Category::Invalid,
                    e.to_string(),
                );
                // A CSV error other than a bad record (I/O) cannot be skipped past.
                if !matches!(
                    e.kind(),
                    csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }
                ) {
                    break;
                }
                continue;
            }
        }
        let line_no = record.position().map_or(line_no, |p| p.line());
        let rec_name = Record::Line(line_no);
        let field = |i: Option<usize>| -> Result<Option<&str>, String> {
            match i.and_then(|i| record.get(i)) {
                None => Ok(None),
                Some(b) => std::str::from_utf8(b)
                    .map(|s| Some(s.trim()))
                    .map_err(|_| "not valid UTF-8".to_string()),
            }
        };
        let value = match field(Some(col)) {
            Ok(Some(v)) if !v.is_empty() => v,
            Ok(_) => {
                out.reject(
                    file,
                    rec_name,
                    Category::Invalid,
                    format!("column `{}` is empty", names[col]),
                );
                continue;
            }
            Err(e) => {
                out.reject(file, rec_name, Category::Invalid, e);
                continue;
            }
        };
        let kind = match (opts.kind, field(kind_col)) {
            (Some(k), _) => Some(k),
            (None, Ok(Some(k))) if !k.is_empty() => match k.parse::<Kind>() {
                Ok(k) => Some(k),
                Err(e) => {
                    out.reject(file, rec_name, Category::Unsupported, e);
                    continue;
                }
            },
            _ => None,
        };
        let tlp = match field(tlp_col) {
            Ok(Some(t)) if !t.is_empty() => match t.parse::<Tlp>() {
                Ok(t) => t,
                Err(e) => {
                    out.reject(file, rec_name, Category::Invalid, e);
                    continue;
                }
            },
            _ => opts.default_tlp,
        };
        match normalise(kind, value) {
            Ok(n) => {
                let mut ind = Indicator::new(
                    format!("{file}:{}", n.value),
                    n.kind,
                    n.value,
                    Arc::clone(&source),
                    tlp,
                );
                ind.defanged = n.notes.contains(&normalize::Note::Refanged);
                out.accept(file, rec_name, ind, n.notes);
            }
            Err(e) => out.reject(
                file,
                rec_name,
                category_of(&e),
                format!("`{}`: {e}", shorten(value)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Item;

    fn run_plain(text: &[u8]) -> Batch {
        let mut b = Batch::new();
        parse_plain(
            text,
            &Arc::from("t.txt"),
            "t",
            &SourceOptions::default(),
            &mut b,
        );
        b
    }

    #[test]
    fn comments_blank_lines_and_trailing_comments() {
        let b = run_plain(
            b"# header\n\nevil.example.com\n45.83.64.0/24 # scanner\nhttp://x.example.org/#frag\r\n",
        );
        let vals: Vec<_> = b
            .items
            .iter()
            .map(|i| match i {
                Item::Indicator { indicator, .. } => {
                    (indicator.id.clone(), indicator.value.clone())
                }
                Item::Rejected(r) => panic!("unexpected reject {r:?}"),
            })
            .collect();
        assert_eq!(
            vals,
            vec![
                (
                    "t.txt:evil.example.com".to_string(),
                    "evil.example.com".to_string()
                ),
                (
                    "t.txt:45.83.64.0/24".to_string(),
                    "45.83.64.0/24".to_string()
                ),
                (
                    "t.txt:http://x.example.org/".to_string(),
                    "http://x.example.org/".to_string()
                ),
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_with_line_numbers() {
        let b = run_plain(
            b"ok.example.com\n\xff\xfe\nbackdates[0-9]{1,2}\\.(com|net)\n1.2.3.4:99999\n",
        );
        let rejects: Vec<_> = b
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Rejected(r) => Some((r.record.as_str(), r.category)),
                _ => None,
            })
            .collect();
        assert_eq!(
            rejects,
            vec![
                ("line 2", Category::Invalid),
                ("line 3", Category::Unsupported),
                ("line 4", Category::Invalid),
            ]
        );
    }

    #[test]
    fn a_ten_megabyte_line_is_one_short_reject() {
        let mut text = b"ok.example.com\n".to_vec();
        text.extend(std::iter::repeat_n(b'a', 10 << 20));
        text.extend_from_slice(b".example.com\nfine.example.org\n");
        let b = run_plain(&text);
        assert_eq!(b.items.len(), 3);
        match &b.items[1] {
            Item::Rejected(r) => {
                assert_eq!(
                    (r.record.as_str(), r.category),
                    ("line 2", Category::Invalid)
                );
                assert!(r.reason.len() < 400, "reason of {} bytes", r.reason.len());
                assert!(r.reason.contains("bytes"), "{}", r.reason);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&b.items[2], Item::Indicator { indicator, .. } if indicator.value == "fine.example.org")
        );
    }

    #[test]
    fn csv_picks_value_column_and_tlp() {
        let mut b = Batch::new();
        parse_csv(
            b"comment,value,tlp\nfirst,198.51.100.23,green\nsecond,,\nthird,evil.example.com,\n",
            &Arc::from("l.csv"),
            &SourceOptions::default(),
            &mut b,
        );
        let mut got = Vec::new();
        for i in &b.items {
            match i {
                Item::Indicator {
                    indicator, record, ..
                } => got.push(format!(
                    "{record} {} {}",
                    indicator.value,
                    indicator.tlp.name()
                )),
                Item::Rejected(r) => got.push(format!("{} {}", r.record, r.category)),
            }
        }
        assert_eq!(
            got,
            vec![
                "line 2 198.51.100.23 GREEN",
                "line 3 invalid",
                "line 4 evil.example.com AMBER+STRICT"
            ]
        );
    }

    #[test]
    fn csv_unknown_column_is_reported() {
        let mut b = Batch::new();
        let opts = SourceOptions {
            csv_column: Some("nope".into()),
            ..Default::default()
        };
        parse_csv(b"a,b\n1,2\n", &Arc::from("l.csv"), &opts, &mut b);
        assert!(
            matches!(&b.items[..], [Item::Rejected(r)] if r.reason.contains("no column `nope`"))
        );
    }
}
