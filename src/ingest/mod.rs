//! Ingest: turning indicator sources into an [`IndicatorSet`] with a full account of every
//! record read.
//!
//! Parsers ([`misp`], [`stix`], [`plain`]) read bytes and emit a [`Batch`] of [`Item`]s in
//! input order: each item is either a normalised [`Indicator`] or a [`Reject`] saying why a
//! record produced none. The [`Ingest`] driver then applies the [`Warninglists`]
//! (suppression), removes duplicates, and counts every item in exactly one category of the
//! [`IngestReport`]. A record that yields several indicators (a MISP `domain|ip`, a STIX
//! pattern with several disjuncts) counts once per indicator.
//!
//! Nothing here matches telemetry or writes snapshots; that is `index` and `matcher`.

pub mod misp;
pub mod plain;
pub mod stix;
pub mod warninglist;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::indicator::normalize::Note;
use crate::indicator::{Indicator, IndicatorSet, Kind, Tlp};
pub use warninglist::Warninglists;

/// Why a record produced no indicator. The names are those of the `--rejects` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Malformed: bad syntax, a value that does not normalise, a wrong type in a field.
    Invalid,
    /// Well-formed but outside what cwn can match (an unknown MISP type, a STIX `FOLLOWEDBY`).
    Unsupported,
    /// Deliberately not armed: `to_ids = false`, deleted or revoked, a reference link.
    Skipped,
    /// On a warninglist.
    Suppressed,
    /// The same source already gave the same kind and value.
    Duplicate,
}

impl Category {
    /// The name used in reports and the `--rejects` file.
    pub const fn name(self) -> &'static str {
        match self {
            Category::Invalid => "invalid",
            Category::Unsupported => "unsupported",
            Category::Skipped => "skipped",
            Category::Suppressed => "suppressed",
            Category::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record that did not become an indicator, with where it was and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reject {
    /// The file (or `-` for standard input) the record came from.
    pub source: String,
    /// The STIX indicator id or MISP attribute uuid where there is one, else `line N`.
    pub record: String,
    /// Which of the report's categories it is counted in.
    pub category: Category,
    /// What is wrong, in words a feed owner can act on.
    pub reason: String,
}

/// How a record is named in reports: a line number, or the id the source gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The 1-based line of a list or CSV file.
    Line(u64),
    /// A MISP attribute uuid, a STIX indicator id, or another name.
    Named(String),
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Line(n) => write!(f, "line {n}"),
            Record::Named(s) => f.write_str(s),
        }
    }
}

impl From<String> for Record {
    fn from(s: String) -> Self {
        Record::Named(s)
    }
}

impl From<&str> for Record {
    fn from(s: &str) -> Self {
        Record::Named(s.to_string())
    }
}

impl From<&String> for Record {
    fn from(s: &String) -> Self {
        Record::Named(s.clone())
    }
}

/// One outcome of reading a record.
// Nearly every item is an indicator, so boxing the large variant would add an allocation per
// item to save space only on the rare rejects.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Item {
    /// A normalised indicator, ready for warninglists and de-duplication.
    Indicator {
        /// The file it came from (for reports).
        file: Arc<str>,
        /// Its record name (uuid, STIX id or line), for reports.
        record: Record,
        /// The indicator.
        indicator: Indicator,
        /// What normalisation changed.
        notes: Vec<Note>,
    },
    /// A record that produced no indicator.
    Rejected(Reject),
}

/// The items a parser produced from one source, in input order.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The items.
    pub items: Vec<Item>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an indicator.
    pub fn accept(
        &mut self,
        file: &Arc<str>,
        record: impl Into<Record>,
        indicator: Indicator,
        notes: Vec<Note>,
    ) {
        self.items.push(Item::Indicator {
            file: Arc::clone(file),
            record: record.into(),
            indicator,
            notes,
        });
    }

    /// Adds a rejected record.
    pub fn reject(
        &mut self,
        file: &str,
        record: impl Into<Record>,
        category: Category,
        reason: impl Into<String>,
    ) {
        self.items.push(Item::Rejected(Reject {
            source: file.to_string(),
            record: record.into().to_string(),
            category,
            reason: reason.into(),
        }));
    }
}

/// Input formats `cwn ingest --format` understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Decide per source (see [`detect`]).
    #[default]
    Auto,
    /// MISP feed directory, event file or list of events.
    Misp,
    /// STIX 2.1 bundle.
    Stix,
    /// One value per line, `#` comments.
    Plain,
    /// CSV with a header row.
    Csv,
}

/// Options that apply to every source of one ingest run.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// The format, or [`Format::Auto`].
    pub format: Format,
    /// TLP given to indicators whose source carries no label (FORMATS.md §4.3 step 4).
    pub default_tlp: Tlp,
    /// CSV: the column holding the value (default: `value`, `indicator`, `ioc`, else the first).
    pub csv_column: Option<String>,
    /// Plain and CSV lists: the kind of every value, instead of guessing it per value.
    pub kind: Option<Kind>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            format: Format::Auto,
            default_tlp: Tlp::AmberStrict,
            csv_column: None,
            kind: None,
        }
    }
}

/// An error that stops a source from being read at all (as opposed to a [`Reject`]).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A MISP feed's `manifest.json` is not a JSON object keyed by event uuid.
    #[error("{path}: {reason}")]
    Manifest {
        /// The manifest's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A warninglist could not be loaded.
    #[error(transparent)]
    Warninglist(#[from] warninglist::WarninglistError),
}

impl IngestError {
    pub(crate) fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        IngestError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Counts of one ingest run. Every item read is counted in exactly one of `accepted`,
/// `rejected`, `unsupported`, `skipped`, `suppressed`, `duplicates`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Indicators added to the set.
    pub accepted: u64,
    /// Records that were malformed (`invalid` in the rejects file).
    pub rejected: u64,
    /// Records outside what cwn matches.
    pub unsupported: u64,
    /// Records deliberately not armed.
    pub skipped: u64,
    /// Indicators on a warninglist.
    pub suppressed: u64,
    /// Indicators the same source had already given.
    pub duplicates: u64,
    /// Accepted indicators per kind.
    pub by_kind: BTreeMap<Kind, u64>,
    /// Accepted indicators per TLP level.
    pub by_tlp: BTreeMap<Tlp, u64>,
    /// Suppressions per warninglist, keyed by `name (version N)`.
    pub suppressed_by_list: BTreeMap<String, u64>,
    /// Accepted values that normalisation changed, per change.
    pub normalized: BTreeMap<String, u64>,
    /// Sources (files) read.
    pub files: u64,
}

impl IngestReport {
    /// Every item counted.
    pub fn total(&self) -> u64 {
        self.accepted
            + self.rejected
            + self.unsupported
            + self.skipped
            + self.suppressed
            + self.duplicates
    }

    /// Records not accepted for a reason other than being suppressed or duplicated.
    pub fn not_accepted(&self) -> u64 {
        self.total() - self.accepted
    }

    fn count(&mut self, category: Category) {
        match category {
            Category::Invalid => self.rejected += 1,
            Category::Unsupported => self.unsupported += 1,
            Category::Skipped => self.skipped += 1,
            Category::Suppressed => self.suppressed += 1,
            Category::Duplicate => self.duplicates += 1,
        }
    }
}

/// What [`detect`] decided a source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A MISP feed directory (has `manifest.json`).
    MispFeed,
    /// A directory of lists and events, read file by file.
    Directory,
    /// A MISP event (or list of events) in JSON.
    Misp,
    /// A STIX 2.1 bundle.
    Stix,
    /// A CSV list.
    Csv,
    /// A plain list.
    Plain,
}

/// Decides what a file holds from its name and first bytes: JSON with `"type": "bundle"` is
/// STIX, JSON with `Event` or `response` is MISP, `.csv` is CSV, the rest a plain list.
pub fn detect_bytes(name: &str, bytes: &[u8]) -> Detected {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        let text = String::from_utf8_lossy(head);
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("\"type\":\"bundle\"") {
            return Detected::Stix;
        }
        if compact.contains("\"Event\":") || compact.contains("\"response\":") {
            return Detected::Misp;
        }
        // JSON that is neither: let the MISP reader say precisely what is missing.
        if name.ends_with(".json") {
            return if compact.contains("\"objects\":") {
                Detected::Stix
            } else {
                Detected::Misp
            };
        }
    }
    if name.to_ascii_lowercase().ends_with(".csv") {
        return Detected::Csv;
    }
    Detected::Plain
}

/// Decides what a path holds (see [`detect_bytes`] for files).
pub fn detect(path: &Path) -> io::Result<Detected> {
    if path.is_dir() {
        return Ok(if path.join("manifest.json").is_file() {
            Detected::MispFeed
        } else {
            Detected::Directory
        });
    }
    let mut head = Vec::with_capacity(4096);
    fs::File::open(path)?
        .take(64 * 1024)
        .read_to_end(&mut head)?;
    Ok(detect_bytes(&path.to_string_lossy(), &head))
}

/// Reads a whole file, transparently un-gzipping `*.gz` or gzip-magic content.
pub fn read_file(path: &Path) -> Result<Vec<u8>, IngestError> {
    let bytes = fs::read(path).map_err(|e| IngestError::io(path, e))?;
    maybe_gunzip(bytes).map_err(|e| IngestError::io(path, e))
}

fn maybe_gunzip(bytes: Vec<u8>) -> io::Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses one in-memory source of a known format into a batch.
pub fn parse_bytes(detected: Detected, name: &str, bytes: &[u8], opts: &SourceOptions) -> Batch {
    let mut batch = Batch::new();
    let file: Arc<str> = Arc::from(name);
    match detected {
        Detected::Stix => stix::parse_bundle(bytes, &file, opts, &mut batch),
        Detected::Misp | Detected::MispFeed => misp::parse_events(bytes, &file, opts, &mut batch),
        Detected::Csv => plain::parse_csv(bytes, &file, opts, &mut batch),
        Detected::Plain | Detected::Directory => {
            plain::parse_plain(bytes, &file, &list_name(name), opts, &mut batch)
        }
    }
    batch
}

/// The list name of a plain list: its path without the extension.
fn list_name(name: &str) -> String {
    let p = Path::new(name);
    match p.extension() {
        Some(ext) if ext != "gz" => p.with_extension("").to_string_lossy().into_owned(),
        Some(_) => Path::new(&p.with_extension(""))
            .with_extension("")
            .to_string_lossy()
            .into_owned(),
        None => name.to_string(),
    }
}

/// Collects the files below a directory, sorted, skipping hidden files and obvious non-lists.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IngestError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| IngestError::io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| IngestError::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with("__") {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if !matches!(
            path.extension().and_then(|x| x.to_str()),
            Some("py" | "md" | "asc" | "sig" | "pyc")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// One unit of work for the driver: a named source of known format.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path to read, or `None` for standard input (or for `problems` alone).
    pub path: Option<PathBuf>,
    /// Records already known to be bad before reading anything (a MISP manifest entry whose
    /// event file is missing); reported as they are.
    pub problems: Vec<Reject>,
    /// The name used in ids and reports (relative to the directory given, where there is one).
    pub name: String,
    /// What it holds.
    pub detected: Detected,
}

/// Expands the command-line sources into files: a MISP feed directory into its events, another
/// directory into every file below it, `-` into standard input.
pub fn expand_sources(
    sources: &[PathBuf],
    opts: &SourceOptions,
) -> Result<Vec<SourceFile>, IngestError> {
    let mut out = Vec::new();
    for src in sources {
        if src.as_os_str() == "-" {
            out.push(SourceFile {
                path: None,
                problems: Vec::new(),
                name: "-".into(),
                detected: forced(opts.format).unwrap_or(Detected::Plain),
            });
            continue;
        }
        let detected = detect(src).map_err(|e| IngestError::io(src, e))?;
        match detected {
            Detected::MispFeed => {
                let manifest = misp::feed_manifest(src)?;
                if !manifest.problems.is_empty() {
                    out.push(SourceFile {
                        path: None,
                        problems: manifest.problems,
                        name: src.join("manifest.json").display().to_string(),
                        detected: Detected::MispFeed,
                    });
                }
                for e in manifest.events {
                    out.push(SourceFile {
                        name: e.path.display().to_string(),
                        path: Some(e.path),
                        problems: Vec::new(),
                        detected: Detected::Misp,
                    });
                }
            }
            Detected::Directory => {
                let mut files = Vec::new();
                walk(src, &mut files)?;
                for path in files {
                    let name = path
                        .strip_prefix(src)
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    let detected = match forced(opts.format) {
                        Some(d) => d,
                        None => detect(&path).map_err(|e| IngestError::io(&path, e))?,
                    };
                    out.push(SourceFile {
                        path: Some(path),
                        problems: Vec::new(),
                        name,
                        detected,
                    });
                }
            }
            d => out.push(SourceFile {
                path: Some(src.clone()),
                problems: Vec::new(),
                name: src.display().to_string(),
                detected: forced(opts.format).unwrap_or(d),
            }),
        }
    }
    Ok(out)
}

fn forced(format: Format) -> Option<Detected> {
    match format {
        Format::Auto => None,
        Format::Misp => Some(Detected::Misp),
        Format::Stix => Some(Detected::Stix),
        Format::Plain => Some(Detected::Plain),
        Format::Csv => Some(Detected::Csv),
    }
}

/// Reads and parses one source file into a batch. Unreadable input is an error; everything
/// else, malformed content included, is reported in the batch.
pub fn read_source(src: &SourceFile, opts: &SourceOptions) -> Result<Batch, IngestError> {
    if !src.problems.is_empty() {
        return Ok(Batch {
            items: src.problems.iter().cloned().map(Item::Rejected).collect(),
        });
    }
    let bytes = match &src.path {
        Some(p) => read_file(p)?,
        None => {
            let mut buf = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| IngestError::io("-", e))?;
            let buf = maybe_gunzip(buf).map_err(|e| IngestError::io("-", e))?;
            // Standard input in auto mode: decide from the content.
            return Ok(parse_bytes(
                if opts.format == Format::Auto {
                    detect_bytes("-", &buf)
                } else {
                    src.detected
                },
                "-",
                &buf,
                opts,
            ));
        }
    };
    Ok(parse_bytes(src.detected, &src.name, &bytes, opts))
}

/// Reads every file into `driver`, parsing up to `chunk` files at a time in parallel (rayon)
/// and folding their batches in input order, so that results are the same whatever the
/// number of threads. `on_file` is called after each file is folded (for progress).
pub fn read_all(
    files: &[SourceFile],
    opts: &SourceOptions,
    driver: &mut Ingest,
    mut on_file: impl FnMut(&Ingest),
) -> Result<(), IngestError> {
    use rayon::prelude::*;
    // Chunks bound the memory held in parsed-but-not-folded batches.
    for chunk in files.chunks(64) {
        let lists = driver.warninglists.clone();
        // Warninglist checks run in the parallel part too: they are the costliest step after
        // parsing, and their verdicts do not depend on the fold order.
        type Checked = (Batch, Vec<Option<Verdict>>);
        let batches: Vec<Result<Checked, IngestError>> = chunk
            .par_iter()
            .map(|f| {
                let b = read_source(f, opts)?;
                let v = lists
                    .as_deref()
                    .map(|l| precheck(l, &b))
                    .unwrap_or_default();
                Ok((b, v))
            })
            .collect();
        for b in batches {
            let (batch, verdicts) = b?;
            driver.add_prechecked(batch, verdicts);
            on_file(driver);
        }
    }
    Ok(())
}

/// A warninglist hit computed ahead of the fold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The list's name.
    pub list: String,
    /// The list's version.
    pub version: u64,
    /// The entry that matched.
    pub entry: String,
}

/// The warninglist verdict of every item of a batch (`None` for rejects and clean values).
pub fn precheck(lists: &Warninglists, batch: &Batch) -> Vec<Option<Verdict>> {
    batch
        .items
        .iter()
        .map(|item| match item {
            Item::Indicator { indicator, .. } => lists.check(indicator).map(|h| Verdict {
                list: h.list.to_string(),
                version: h.version,
                entry: h.entry.to_string(),
            }),
            Item::Rejected(_) => None,
        })
        .collect()
}

/// The ingest driver: folds parser batches into an [`IndicatorSet`], applying warninglists and
/// de-duplication, and keeps the report and the list of rejects.
#[derive(Debug, Default)]
pub struct Ingest {
    set: IndicatorSet,
    report: IngestReport,
    rejects: Vec<Reject>,
    warninglists: Option<Arc<Warninglists>>,
}

impl Ingest {
    /// A driver that suppresses indicators found on `warninglists`.
    pub fn new(warninglists: Option<Warninglists>) -> Self {
        Self::with_shared(warninglists.map(Arc::new))
    }

    /// [`new`](Self::new) with lists shared with other drivers (`cwn sync` loads them once).
    pub fn with_shared(warninglists: Option<Arc<Warninglists>>) -> Self {
        Ingest {
            warninglists,
            ..Default::default()
        }
    }

    /// Folds one batch in, in order.
    pub fn add(&mut self, batch: Batch) {
        let verdicts = match &self.warninglists {
            Some(l) => precheck(l, &batch),
            None => Vec::new(),
        };
        self.add_prechecked(batch, verdicts);
    }

    /// Folds one batch in with warninglist verdicts already computed by [`precheck`] (an
    /// empty `verdicts` means none suppressed).
    pub fn add_prechecked(&mut self, batch: Batch, verdicts: Vec<Option<Verdict>>) {
        self.report.files += 1;
        let mut verdicts = verdicts.into_iter();
        for item in batch.items {
            let verdict = verdicts.next().flatten();
            match item {
                Item::Rejected(r) => self.reject(r),
                Item::Indicator {
                    file,
                    record,
                    indicator,
                    notes,
                } => self.offer(&file, record, indicator, &notes, verdict),
            }
        }
    }

    fn reject(&mut self, r: Reject) {
        self.report.count(r.category);
        self.rejects.push(r);
    }

    fn offer(
        &mut self,
        file: &str,
        record: Record,
        indicator: Indicator,
        notes: &[Note],
        verdict: Option<Verdict>,
    ) {
        if let Some(hit) = verdict {
            let key = format!("{} (version {})", hit.list, hit.version);
            *self.report.suppressed_by_list.entry(key).or_insert(0) += 1;
            let reason = format!(
                "{} `{}` is on warninglist `{}` (version {}), entry `{}`",
                indicator.kind, indicator.value, hit.list, hit.version, hit.entry
            );
            self.reject(Reject {
                source: file.to_string(),
                record: record.to_string(),
                category: Category::Suppressed,
                reason,
            });
            return;
        }
        let (kind, tlp) = (indicator.kind, indicator.tlp);
        match self.set.insert(indicator) {
            Ok(_) => {
                self.report.accepted += 1;
                *self.report.by_kind.entry(kind).or_insert(0) += 1;
                *self.report.by_tlp.entry(tlp).or_insert(0) += 1;
                for n in notes {
                    *self.report.normalized.entry(n.to_string()).or_insert(0) += 1;
                }
            }
            Err(first) => {
                // The duplicate has the same kind and value as the indicator it repeats.
                let reason = match self.set.get(first) {
                    Some(f) => format!(
                        "{kind} `{}` was already given by `{}` of the same source",
                        f.value, f.id
                    ),
                    None => format!("{kind} value was already given by the same source"),
                };
                self.reject(Reject {
                    source: file.to_string(),
                    record: record.to_string(),
                    category: Category::Duplicate,
                    reason,
                });
            }
        }
    }

    /// The report so far.
    pub fn report(&self) -> &IngestReport {
        &self.report
    }

    /// The rejects so far.
    pub fn rejects(&self) -> &[Reject] {
        &self.rejects
    }

    /// The set so far.
    pub fn set(&self) -> &IndicatorSet {
        &self.set
    }

    /// Ends the run.
    pub fn finish(self) -> (IndicatorSet, IngestReport, Vec<Reject>) {
        (self.set, self.report, self.rejects)
    }
}

/// What a JSON value is, for messages (`a string`, `an array`, …).
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_from_content() {
        let cases: [(&str, &[u8], Detected); 6] = [
            (
                "a.json",
                br#"{"type": "bundle", "id": "bundle--1"}"#,
                Detected::Stix,
            ),
            ("a.json", br#"{"Event": {"uuid": "x"}}"#, Detected::Misp),
            (
                "a.json",
                br#"{"response": [{"Event": {}}]}"#,
                Detected::Misp,
            ),
            ("x.csv", b"value,comment\n1.2.3.4,x\n", Detected::Csv),
            ("x.txt", b"# c\nexample.com\n", Detected::Plain),
            ("x", b"  \n{\"type\":\"bundle\"}", Detected::Stix),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(detect_bytes(name, bytes), want, "{name}");
        }
    }

    #[test]
    fn list_names_drop_extensions() {
        assert_eq!(list_name("malware/apt_x.txt"), "malware/apt_x");
        assert_eq!(list_name("feed.txt.gz"), "feed");
        assert_eq!(list_name("noext"), "noext");
    }
}
