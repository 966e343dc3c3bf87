//! MISP feeds and event files (FORMATS.md §1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Batch, Category, IngestError, SourceOptions};

/// The event files a feed directory's `manifest.json` lists, in manifest order.
pub fn feed_event_files(dir: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let manifest = dir.join("manifest.json");
    let bytes = std::fs::read(&manifest).map_err(|e| IngestError::io(&manifest, e))?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(map.keys().map(|k| dir.join(format!("{k}.json"))).collect())
}

/// Parses a MISP event document, a `response` list of them, or a JSON array of events.
pub fn parse_events(_bytes: &[u8], file: &Arc<str>, _opts: &SourceOptions, out: &mut Batch) {
    out.reject(
        file,
        "file",
        Category::Unsupported,
        "MISP reader not yet built",
    );
}
