//! Refreshing one source into its last good state on disk.
//!
//! Every source keeps `<state_dir>/sources/<name>/`: `state.json` (validators, TAXII cursor,
//! last success and error) and `data/`, which `cwn ingest` reads as it is — a MISP feed
//! directory (`manifest.json` and the event files), a STIX bundle of every object the
//! collection has given, or the list files. A refresh writes new files only after the
//! content they replace arrived whole and parsed, each by an atomic rename, so that a source
//! that fails (timeout, 5xx, invalid content) keeps exactly what it had.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{SourceConfig, SourceKind};
use super::fetch::{Fetched, Fetcher, Validators};

/// What a source remembers between cycles (`state.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// Validators per URL fetched.
    #[serde(default)]
    pub validators: BTreeMap<String, Validators>,
    /// TAXII: the resolved `objects/` URL of the collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_url: Option<String>,
    /// TAXII: the newest `X-TAXII-Date-Added-Last` seen (the next `added_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Unix seconds of the last refresh that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<i64>,
    /// Unix seconds of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<i64>,
    /// Why the last attempt failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
}

/// The directory of source `name` under `state_dir`.
pub fn source_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("sources").join(name)
}

/// Reads `state.json` of a source (the default when there is none yet).
pub fn load_state(dir: &Path) -> SourceState {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `state.json` of a source.
///
/// # Errors
/// The file cannot be written.
pub fn save_state(dir: &Path, st: &SourceState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(st).map_err(std::io::Error::other)?;
    write_file(&dir.join("state.json"), &bytes)
}

/// Writes `path` durably through a temporary file and a rename (its folder created).
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::outfile::replace(path, bytes, true)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// Brings the source's `data/` up to date. `Ok(true)` when its content changed.
///
/// # Errors
/// Why the source could not be refreshed; what `data/` held is then unchanged (a MISP feed
/// may have some event files replaced by newer ones, never by anything broken).
pub fn refresh(
    src: &SourceConfig,
    fetcher: &Fetcher,
    dir: &Path,
    st: &mut SourceState,
) -> Result<bool, String> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(io(&data))?;
    match src.kind {
        SourceKind::MispFeed => refresh_misp(fetcher, &src.url, &data, st),
        SourceKind::Taxii => refresh_taxii(src, fetcher, &data, st),
        SourceKind::List => refresh_list(src, fetcher, &data, st),
    }
}

fn get_json(f: &Fetcher, url: &str, accept: &str) -> Result<Value, String> {
    match f
        .get(url, Some(accept), &Validators::default())
        .map_err(|e| e.to_string())?
    {
        Fetched::Body { bytes, .. } => {
            serde_json::from_slice(&bytes).map_err(|e| format!("{url}: not JSON: {e}"))
        }
        Fetched::NotModified => Err(format!("{url}: 304 to an unconditional request")),
    }
}

/// An event's `timestamp` in the manifest (a string or a number in the feeds seen).
fn timestamp(entry: &Value) -> Option<String> {
    match entry.get("timestamp")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A MISP feed: the manifest (conditionally), then each event whose `timestamp` changed or
/// whose file is missing; events gone from the manifest are removed. The manifest is written
/// last, so that a failed cycle is retried whole.
fn refresh_misp(f: &Fetcher, url: &str, data: &Path, st: &mut SourceState) -> Result<bool, String> {
    let base = url.trim_end_matches('/');
    let man_url = format!("{base}/manifest.json");
    let man_path = data.join("manifest.json");
    let old: serde_json::Map<String, Value> = std::fs::read(&man_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let cond = st.validators.get(&man_url).cloned().unwrap_or_default();
    let (bytes, validators) = match f
        .get(&man_url, Some("application/json"), &cond)
        .map_err(|e| e.to_string())?
    {
        Fetched::NotModified => return Ok(false),
        Fetched::Body {
            bytes, validators, ..
        } => (bytes, validators),
    };
    let manifest: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{man_url}: not a MISP feed manifest: {e}"))?;
    let mut changed = false;
    for (uuid, entry) in &manifest {
        if uuid.is_empty() || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(format!("{man_url}: {uuid:?} is not an event uuid"));
        }
        let path = data.join(format!("{uuid}.json"));
        if timestamp(entry).is_some()
            && timestamp(entry) == old.get(uuid).and_then(timestamp)
            && path.is_file()
        {
            continue;
        }
        let ev_url = format!("{base}/{uuid}.json");
        let Fetched::Body { bytes, .. } = f
            .get(&ev_url, Some("application/json"), &Validators::default())
            .map_err(|e| e.to_string())?
        else {
            return Err(format!("{ev_url}: 304 to an unconditional request"));
        };
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{ev_url}: not JSON: {e}"))?;
        if doc.get("Event").is_none_or(|e| !e.is_object()) {
            return Err(format!("{ev_url}: not a MISP event (no \"Event\" object)"));
        }
        write_file(&path, &bytes).map_err(io(&path))?;
        changed = true;
    }
    for gone in old.keys().filter(|k| !manifest.contains_key(*k)) {
        if gone.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            let _ = std::fs::remove_file(data.join(format!("{gone}.json")));
            changed = true;
        }
    }
    write_file(&man_path, &bytes).map_err(io(&man_path))?;
    st.validators.insert(man_url, validators);
    Ok(changed || manifest != old)
}

const TAXII: &str = "application/taxii+json;version=2.1";

/// Joins a possibly relative URL to `base`.
fn join_url(base: &str, rel: &str) -> String {
    if rel.starts_with("http://") || rel.starts_with("https://") {
        return rel.to_string();
    }
    match url::Url::parse(base).and_then(|b| b.join(rel)) {
        Ok(u) => u.to_string(),
        Err(_) => rel.to_string(),
    }
}

fn slash(mut s: String) -> String {
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

/// The `objects/` URL of the configured collection: from a discovery URL its default (or
/// first) API root, from an API root itself, then the collection by id or title.
fn resolve_collection(f: &Fetcher, src: &SourceConfig) -> Result<String, String> {
    let want = src.collection.as_deref().unwrap_or_default();
    let url = slash(src.url.clone());
    let first = get_json(f, &url, TAXII)?;
    let root = if let Some(roots) = first.get("api_roots") {
        let r = first
            .get("default")
            .and_then(Value::as_str)
            .or_else(|| roots.as_array()?.first()?.as_str())
            .ok_or_else(|| format!("{url}: discovery lists no API root"))?;
        slash(join_url(&url, r))
    } else {
        url
    };
    let cols_url = format!("{root}collections/");
    let cols = get_json(f, &cols_url, TAXII)?;
    let col = cols
        .get("collections")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| {
            c.get("id").and_then(Value::as_str) == Some(want)
                || c.get("title").and_then(Value::as_str) == Some(want)
        })
        .ok_or_else(|| format!("{cols_url}: no collection {want:?}"))?;
    if col.get("can_read") == Some(&Value::Bool(false)) {
        return Err(format!(
            "{cols_url}: collection {want:?} cannot be read with these credentials"
        ));
    }
    let id = col
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{cols_url}: collection {want:?} has no id"))?;
    Ok(format!("{root}collections/{id}/objects/"))
}

/// Newer of two STIX versions of one object (by `modified`, then the later one seen).
fn newer(old: &Value, new: &Value) -> bool {
    let m = |v: &Value| {
        v.get("modified")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    m(new) >= m(old)
}

/// The bundle id of a source: fixed per name, so that its indicators keep their source.
fn bundle_id(name: &str) -> String {
    let h = blake3::hash(format!("cwn-sync:{name}").as_bytes());
    let b = h.as_bytes();
    let hex: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "bundle--{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A TAXII 2.1 collection: objects added after the cursor, page by page (`next`, or the
/// `X-TAXII-Date-Added-Last` of the page where a server pages by date), merged by id into
/// every object seen (the newest version of each), written as one bundle.
fn refresh_taxii(
    src: &SourceConfig,
    f: &Fetcher,
    data: &Path,
    st: &mut SourceState,
) -> Result<bool, String> {
    let objects_url = match &st.objects_url {
        Some(u) => u.clone(),
        None => resolve_collection(f, src)?,
    };
    let store_path = data.join("objects.json");
    let mut store: BTreeMap<String, Value> = std::fs::read(&store_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut cursor = st.cursor.clone();
    let mut next: Option<String> = None;
    let mut changed = false;
    for page in 0.. {
        if page == 100_000 {
            return Err(format!("{objects_url}: more than 100,000 pages"));
        }
        let mut u = url::Url::parse(&objects_url).map_err(|e| format!("{objects_url}: {e}"))?;
        {
            let mut q = u.query_pairs_mut();
            // The page size asked (servers cap it); some servers also need it on every
            // `next` request to recognise the paging.
            q.append_pair("limit", "1000");
            if let Some(c) = &cursor {
                q.append_pair("added_after", c);
            }
            if let Some(n) = &next {
                q.append_pair("next", n);
            }
        }
        let page_url = u.to_string();
        let (bytes, headers) = match f
            .get(&page_url, Some(TAXII), &Validators::default())
            .map_err(|e| e.to_string())?
        {
            Fetched::Body { bytes, headers, .. } => (bytes, headers),
            Fetched::NotModified => break,
        };
        let env: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{page_url}: not a TAXII envelope: {e}"))?;
        if !env.is_object() {
            return Err(format!("{page_url}: not a TAXII envelope"));
        }
        for o in env
            .get("objects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(id) = o.get("id").and_then(Value::as_str) else {
                continue;
            };
            if store.get(id).is_none_or(|old| newer(old, o) && old != o) {
                store.insert(id.to_string(), o.clone());
                changed = true;
            }
        }
        let last = headers.get("x-taxii-date-added-last").cloned();
        next = env.get("next").and_then(Value::as_str).map(str::to_string);
        if env.get("more") != Some(&Value::Bool(true)) {
            cursor = last.or(cursor);
            break;
        }
        if next.is_none() {
            // Without `next` a server pages by date: the next page starts after this one.
            match last {
                Some(l) if Some(&l) != cursor.as_ref() => cursor = Some(l),
                _ => break,
            }
        }
    }
    if changed || !data.join("bundle.json").is_file() {
        let bundle = serde_json::json!({
            "type": "bundle",
            "id": bundle_id(&src.name),
            "objects": store.values().collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&bundle).map_err(|e| e.to_string())?;
        let path = data.join("bundle.json");
        write_file(&path, &bytes).map_err(io(&path))?;
        let all = serde_json::to_vec(&store).map_err(|e| e.to_string())?;
        write_file(&store_path, &all).map_err(io(&store_path))?;
    }
    st.objects_url = Some(objects_url);
    st.cursor = cursor;
    Ok(changed)
}

/// A list: over HTTP(S) conditionally, into `data/<name>/<file name>`; a local file or
/// directory copied into `data/<name>/` (files no longer there removed), so that a path that
/// disappears keeps its last copy.
fn refresh_list(
    src: &SourceConfig,
    f: &Fetcher,
    data: &Path,
    st: &mut SourceState,
) -> Result<bool, String> {
    let into = data.join(&src.name);
    let web = src.url.starts_with("http://") || src.url.starts_with("https://");
    if web {
        let file = url::Url::parse(&src.url)
            .ok()
            .and_then(|u| {
                u.path_segments()?
                    .rfind(|s| !s.is_empty())
                    .map(str::to_string)
            })
            .filter(|s| !s.starts_with('.') && !s.contains(['/', '\\']))
            .unwrap_or_else(|| "list.txt".into());
        let cond = st.validators.get(&src.url).cloned().unwrap_or_default();
        let (bytes, validators) = match f.get(&src.url, None, &cond).map_err(|e| e.to_string())? {
            Fetched::NotModified => return Ok(false),
            Fetched::Body {
                bytes, validators, ..
            } => (bytes, validators),
        };
        let path = into.join(file);
        let same = std::fs::read(&path).is_ok_and(|old| old == bytes);
        if !same {
            write_file(&path, &bytes).map_err(io(&path))?;
        }
        st.validators.insert(src.url.clone(), validators);
        return Ok(!same);
    }
    let from = PathBuf::from(&src.url);
    let meta = std::fs::metadata(&from).map_err(io(&from))?;
    let mut wanted: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    if meta.is_dir() {
        collect(&from, Path::new(""), &mut wanted).map_err(io(&from))?;
    } else {
        let name = from
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| "list.txt".into());
        wanted.insert(name, from.clone());
    }
    let mut have = BTreeMap::new();
    if into.is_dir() {
        collect(&into, Path::new(""), &mut have).map_err(io(&into))?;
    }
    let mut changed = false;
    for (rel, src_path) in &wanted {
        let bytes = std::fs::read(src_path).map_err(io(src_path))?;
        let dst = into.join(rel);
        if std::fs::read(&dst).is_ok_and(|old| old == bytes) {
            continue;
        }
        write_file(&dst, &bytes).map_err(io(&dst))?;
        changed = true;
    }
    for rel in have.keys().filter(|r| !wanted.contains_key(*r)) {
        let _ = std::fs::remove_file(into.join(rel));
        changed = true;
    }
    Ok(changed)
}

/// Every regular, non-hidden file below `dir`, by path relative to it.
fn collect(dir: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir.join(rel))? {
        let e = e?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let r = rel.join(&name);
        let t = e.file_type()?;
        if t.is_dir() {
            collect(dir, &r, out)?;
        } else if t.is_file() {
            out.insert(r, e.path());
        }
    }
    Ok(())
}
