//! MISP feed directories: `manifest.json` and the event files it lists (FORMATS.md §1.1–§1.2).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::fields::{self, describe, looks_like_uuid};
use crate::ingest::plain::shorten;
use crate::ingest::{Batch, Category, IngestError, Reject, read_file};

/// One event a feed's `manifest.json` lists, with its file present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The event uuid (the manifest key, lower-cased).
    pub uuid: String,
    /// `<dir>/<uuid>.json`.
    pub path: PathBuf,
    /// The manifest `timestamp` (Unix seconds), MISP's change-detection key, where readable.
    pub timestamp: Option<u64>,
}

/// A feed directory's manifest, checked against the directory.
#[derive(Clone, Debug, Default)]
pub struct FeedManifest {
    /// The events whose file exists, sorted by uuid.
    pub events: Vec<ManifestEntry>,
    /// Manifest entries that give no file to read: a key that is not a UUID, or an event file
    /// that is missing. Each is an `invalid` [`Reject`] whose source is the manifest and whose
    /// record is the key.
    pub problems: Vec<Reject>,
}

impl FeedManifest {
    /// The problems as a batch, so that the ingest report counts them.
    pub fn problem_batch(&self) -> Batch {
        let mut b = Batch::new();
        for p in &self.problems {
            b.reject(&p.source, p.record.clone(), p.category, p.reason.clone());
        }
        b
    }
}

/// Reads `<dir>/manifest.json` and checks each listed event file.
///
/// An unreadable manifest is an [`IngestError::Io`], one that is not a JSON object an
/// [`IngestError::Manifest`]; problems with single entries are [`FeedManifest::problems`].
pub fn feed_manifest(dir: &Path) -> Result<FeedManifest, IngestError> {
    let path = dir.join("manifest.json");
    let bytes = read_file(&path)?;
    let manifest_error = |reason: String| IngestError::Manifest {
        path: path.display().to_string(),
        reason,
    };
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| manifest_error(format!("not valid JSON: {e}")))?;
    let Value::Object(map) = doc else {
        return Err(manifest_error(format!(
            "expected a JSON object keyed by event uuid, found {}",
            describe(&doc)
        )));
    };
    let source = path.display().to_string();
    let mut out = FeedManifest::default();
    for (key, summary) in &map {
        if !looks_like_uuid(key) {
            out.problems.push(Reject {
                source: source.clone(),
                record: shorten(key),
                category: Category::Invalid,
                reason: format!(
                    "manifest key \"{}\" is not an event uuid; no event file read for it",
                    shorten(key).escape_debug()
                ),
            });
            continue;
        }
        let file = dir.join(format!("{key}.json"));
        if !file.is_file() {
            out.problems.push(Reject {
                source: source.clone(),
                record: key.to_ascii_lowercase(),
                category: Category::Invalid,
                reason: format!(
                    "event listed in the manifest, but {} does not exist",
                    file.display()
                ),
            });
            continue;
        }
        let timestamp = summary
            .as_object()
            .and_then(|o| fields::uint(o, "timestamp").ok().flatten());
        out.events.push(ManifestEntry {
            uuid: key.to_ascii_lowercase(),
            path: file,
            timestamp,
        });
    }
    out.events.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    Ok(out)
}

/// The event files of a feed directory, sorted by event uuid.
///
/// Entries without a readable file (see [`FeedManifest::problems`]) are left out, each with a
/// warning; call [`feed_manifest`] to have them as rejects.
pub fn feed_event_files(dir: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let manifest = feed_manifest(dir)?;
    for p in &manifest.problems {
        tracing::warn!(manifest = %p.source, entry = %p.record, "{}", p.reason);
    }
    Ok(manifest.events.into_iter().map(|e| e.path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "8682f757-5d7b-54e9-8c2c-af6bf330fd53";
    const B: &str = "5e3d3c80-eba8-5531-84db-fe0b24a2bbed";
    const C: &str = "00000000-0000-4000-8000-000000000000";

    fn feed(manifest: &str, events: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), manifest).unwrap();
        for e in events {
            std::fs::write(dir.path().join(format!("{e}.json")), "{}").unwrap();
        }
        dir
    }

    #[test]
    fn lists_existing_events_sorted_and_reports_the_rest() {
        let manifest = format!(
            r#"{{"{A}": {{"timestamp": "1743602400"}}, "{B}": {{"timestamp": 1741681800}},
                "{C}": {{}}, "../../etc/passwd": {{}}}}"#
        );
        let dir = feed(&manifest, &[A, B]);
        let m = feed_manifest(dir.path()).unwrap();
        let got: Vec<_> = m
            .events
            .iter()
            .map(|e| (e.uuid.as_str(), e.timestamp))
            .collect();
        assert_eq!(
            got,
            vec![(B, Some(1_741_681_800)), (A, Some(1_743_602_400))]
        );
        let problems: Vec<_> = m.problems.iter().map(|p| p.record.as_str()).collect();
        assert_eq!(problems, vec!["../../etc/passwd", C]);
        assert!(m.problems[1].reason.contains("does not exist"));
        assert!(m.problems.iter().all(|p| p.category == Category::Invalid));
        assert_eq!(m.problem_batch().items.len(), 2);
        let files = feed_event_files(dir.path()).unwrap();
        assert_eq!(
            files,
            vec![
                dir.path().join(format!("{B}.json")),
                dir.path().join(format!("{A}.json"))
            ]
        );
    }

    #[test]
    fn a_broken_manifest_is_an_error_naming_the_file() {
        let cases = [
            ("{\"a\": ", "not valid JSON: EOF while parsing"),
            (
                "[1, 2]",
                "expected a JSON object keyed by event uuid, found an array",
            ),
        ];
        for (text, want) in cases {
            let dir = feed(text, &[]);
            let err = feed_manifest(dir.path()).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, IngestError::Manifest { .. }), "{msg}");
            assert!(msg.contains("manifest.json: "), "{msg}");
            assert!(msg.contains(want), "{msg}");
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            feed_event_files(empty.path()),
            Err(IngestError::Io { .. })
        ));
    }
}
