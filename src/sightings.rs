//! Sightings back to the publisher, in the forms its analysts already use.
//!
//! The hub counts hits per indicator, partner and UTC day ([`SightingsAggregator`]) and hands
//! the counts to the publisher's log every `sightings_interval`. Each batch it hands over is
//! also appended to a **ledger** in the data directory (`sightings/<UTC day of the
//! hand-over>.jsonl`, one JSON line per row: `at` (Unix ms of the hand-over),
//! `indicator_id`, `partner`, `day`, `count`; fsynced), which `cwn sightings export` reads:
//! rows handed over since a time, summed per (indicator, partner, day), rendered as MISP
//! `/sightings/add` payloads or a STIX 2.1 bundle of `sighting` objects. Only counts leave,
//! never telemetry rows, and each keeps its indicator's TLP.
//!
//! [`SightingsAggregator`]: crate::route::SightingsAggregator

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::index::CompiledIndex;
use crate::indicator::{IndicatorId, Tlp};
use crate::route::Sighting;
use crate::route::registry::Registry;

/// The ledger's directory inside the hub's data directory.
pub const LEDGER_DIR: &str = "sightings";

/// One line of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    /// When the hub handed the row to the publisher (Unix milliseconds).
    pub at: u64,
    /// The indicator's id (the MISP attribute uuid, the STIX indicator id, `list:value`).
    pub indicator_id: String,
    /// The partner whose telemetry matched (its registry id).
    pub partner: String,
    /// The UTC day of the events.
    pub day: jiff::civil::Date,
    /// Hits that day.
    pub count: u64,
}

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not a ledger row.
    #[error("{}:{line}: {reason}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// Why.
        reason: String,
    },
}

fn day_of_ms(ms: u64) -> jiff::civil::Date {
    jiff::Timestamp::from_millisecond(ms as i64)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// Appends `rows` handed over at `at_ms` to the ledger in `data_dir`, fsynced.
///
/// # Errors
/// The directory or file cannot be created or written.
///
/// # Panics
/// If a partner is not in `registry`.
pub fn append(
    data_dir: &Path,
    rows: &[Sighting],
    registry: &Registry,
    at_ms: u64,
) -> Result<(), LedgerError> {
    let dir = data_dir.join(LEDGER_DIR);
    let path = dir.join(format!("{}.jsonl", day_of_ms(at_ms)));
    let io = |source| LedgerError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut text = Vec::new();
    for s in rows {
        let row = LedgerRow {
            at: at_ms,
            indicator_id: s.indicator_id.clone(),
            partner: registry.entity(s.partner).id.clone(),
            day: s.day,
            count: s.count,
        };
        serde_json::to_writer(&mut text, &row).expect("plain data");
        text.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_data().map_err(io)
}

/// A row of an export: hits of one indicator by one partner on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Counted {
    /// The indicator's id.
    pub indicator_id: String,
    /// The partner.
    pub partner: String,
    /// The UTC day of the events.
    pub day: jiff::civil::Date,
    /// Hits.
    pub count: u64,
}

/// The rows handed over in `[since_ms, until_ms)` (Unix ms), summed per (indicator, partner,
/// day), in that order: consecutive windows count every hit once. A torn last line (a crash
/// in the middle of an append) is skipped.
///
/// # Errors
/// A file cannot be read, or a complete line is not a ledger row.
pub fn read(data_dir: &Path, since_ms: u64, until_ms: u64) -> Result<Vec<Counted>, LedgerError> {
    let dir = data_dir.join(LEDGER_DIR);
    let first = day_of_ms(since_ms).to_string();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(d) => d
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "jsonl")
                    && p.file_stem()
                        .and_then(|s| s.to_str())
                        .is_some_and(|s| s >= first.as_str())
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(LedgerError::Io { path: dir, source }),
    };
    files.sort();
    let mut sum: BTreeMap<(String, String, jiff::civil::Date), u64> = BTreeMap::new();
    for path in files {
        let bytes = std::fs::read(&path).map_err(|source| LedgerError::Io {
            path: path.clone(),
            source,
        })?;
        let complete = bytes.ends_with(b"\n");
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        let n = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            if line.is_empty() || (i + 1 == n && !complete) {
                continue;
            }
            let row: LedgerRow = serde_json::from_slice(line).map_err(|e| LedgerError::Bad {
                path: path.clone(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            if (since_ms..until_ms).contains(&row.at) {
                *sum.entry((row.indicator_id, row.partner, row.day))
                    .or_insert(0) += row.count;
            }
        }
    }
    Ok(sum
        .into_iter()
        .map(|((indicator_id, partner, day), count)| Counted {
            indicator_id,
            partner,
            day,
            count,
        })
        .collect())
}

/// What an export knows of an indicator, from the hub's current set.
#[derive(Clone, Debug)]
pub struct Known {
    /// Its kind, as named in notifications (`domain`, `ipv4`, …).
    pub kind: String,
    /// Its canonical value.
    pub value: String,
    /// Its TLP.
    pub tlp: Tlp,
}

/// What `index` holds of each indicator id in `rows` (ids no longer in the set are absent).
pub fn lookup(index: &CompiledIndex, rows: &[Counted]) -> BTreeMap<String, Known> {
    let wanted: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.indicator_id.as_str()).collect();
    let meta = index.meta();
    let mut out = BTreeMap::new();
    for ord in 0..index.len() {
        let ord = IndicatorId::new(ord as u32);
        let id = meta.id(ord);
        if wanted.contains(id) {
            out.insert(
                id.to_string(),
                Known {
                    kind: meta.kind(ord).to_string(),
                    value: meta.value(ord).to_string(),
                    tlp: meta.tlp(ord),
                },
            );
        }
    }
    out
}

/// Whether `s` is a UUID in its text form (a MISP attribute's id).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The TLP an export gives a row: its indicator's, or for one no longer in the set the most
/// restrictive the hub routes (TLP:AMBER+STRICT), never less.
fn tlp_for(known: Option<&Known>) -> Tlp {
    known.map_or(Tlp::AmberStrict, |k| k.tlp)
}

/// MISP `/sightings/add` payloads, one per row: type `"0"` (a sighting), the attribute by
/// `uuid` when the indicator came from MISP (else by `values`, which MISP matches against
/// every attribute with that value), `source` naming the partner, `date`/`time` at the start
/// of the day of the events. MISP has no count: `count` (and `tlp`, `day`) ride along for
/// tools that read them, and a script that wants one MISP sighting per hit posts a payload
/// `count` times. Rows MISP cannot address (no uuid, indicator no longer in the set) are
/// left out and counted in the second value.
pub fn misp(rows: &[Counted], known: &BTreeMap<String, Known>) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for r in rows {
        let k = known.get(&r.indicator_id);
        let mut p = json!({
            "type": "0",
            "source": format!("cwn:{}", r.partner),
            "date": r.day.to_string(),
            "time": "00:00:00",
            "timestamp": r.day.to_zoned(jiff::tz::TimeZone::UTC).map_or(0, |z| z.timestamp().as_second()).to_string(),
            "count": r.count,
            "day": r.day.to_string(),
            "tlp": format!("TLP:{}", tlp_for(k).name()),
        });
        if is_uuid(&r.indicator_id) {
            p["uuid"] = json!(r.indicator_id);
        } else if let Some(k) = k {
            p["values"] = json!([k.value]);
        } else {
            skipped += 1;
            continue;
        }
        out.push(p);
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_recognised() {
        assert!(is_uuid("575c8598-f1f0-4c16-a94a-0612c0a83866"));
        assert!(!is_uuid("indicator--575c8598-f1f0-4c16-a94a-0612c0a83866"));
        assert!(!is_uuid("maltrail:evil.example"));
    }

    #[test]
    fn the_ledger_sums_rows_since_a_time_and_skips_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::from_toml(
            "[[entities]]\nid = \"msp\"\nname = \"MSP\"\nroles = [\"partner\"]\n",
            "registry.toml",
        )
        .unwrap();
        let msp = reg.by_id("msp").unwrap();
        let day: jiff::civil::Date = "2026-12-06".parse().unwrap();
        let row = |id: &str, count| Sighting {
            indicator_id: id.into(),
            partner: msp,
            day,
            count,
        };
        let t0 = 1_796_000_000_000;
        append(dir.path(), &[row("a", 2), row("b", 1)], &reg, t0).unwrap();
        append(dir.path(), &[row("a", 5)], &reg, t0 + 60_000).unwrap();
        let all = read(dir.path(), 0, u64::MAX).unwrap();
        assert_eq!(
            all.iter()
                .map(|c| (c.indicator_id.as_str(), c.count))
                .collect::<Vec<_>>(),
            [("a", 7), ("b", 1)]
        );
        let later = read(dir.path(), t0 + 1, u64::MAX).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].count, 5);
        assert!(read(dir.path(), 0, t0).unwrap().is_empty());
        // A crash in the middle of an append leaves a line without its newline.
        let file = dir
            .path()
            .join(LEDGER_DIR)
            .join(format!("{}.jsonl", day_of_ms(t0)));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(b"{\"at\":1796000120000,\"indic").unwrap();
        assert_eq!(read(dir.path(), 0, u64::MAX).unwrap(), all);
        // A complete line that is not a row is an error naming the file and line.
        f.write_all(b"\n").unwrap();
        let e = read(dir.path(), 0, u64::MAX).unwrap_err().to_string();
        assert!(e.contains(".jsonl:4:"), "{e}");
    }
}
