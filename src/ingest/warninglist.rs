//! MISP warninglists (FORMATS.md §2): lists of values that are known to be benign or useless as
//! indicators (public resolvers, RFC 1918 networks, hashes of the empty file, popular domains).
//! An indicator found on a loaded list is *suppressed* at ingest: the [`Ingest`] driver reports
//! it with the list's name and version instead of arming it.
//!
//! This module owns reading `list.json` files and answering "is this indicator on a list?"; it
//! does not decide policy (which lists to load, what to do with a hit) and never touches
//! telemetry by itself.
//!
//! Main types:
//! - [`Warninglists`]: every loaded list, compiled into one lookup structure; [`Warninglists::check`]
//!   answers for one [`Indicator`];
//! - [`Suppression`]: the list (name, version) and entry that matched;
//! - [`ListSummary`]: what was loaded, for reports;
//! - [`WarninglistError`]: a list file that could not be used at all.
//!
//! ```
//! use std::sync::Arc;
//! use cwn::indicator::{Indicator, Kind, Tlp};
//! use cwn::ingest::Warninglists;
//!
//! let json = br#"{"name": "Resolvers", "version": 2, "description": "", "type": "cidr",
//!                 "matching_attributes": ["ip-dst"], "list": ["198.51.100.0/24"]}"#;
//! let lists = Warninglists::parse("resolvers/list.json", json).unwrap();
//! let ind = Indicator::new("1", Kind::Ipv4, "198.51.100.53", Arc::from("feed"), Tlp::Green);
//! let hit = lists.check(&ind).unwrap();
//! assert_eq!((hit.list, hit.version, hit.entry), ("Resolvers", 2, "198.51.100.0/24"));
//! ```
//!
//! # Matching
//!
//! A list applies to an indicator when one of the MISP attribute types of its kind
//! ([`Kind::misp_types`]) is in the list's `matching_attributes` (absent or empty: every kind).
//! Of all lists that apply and match, the first in load order is reported. Per list type:
//!
//! - `string`: the value equals an entry. Kinds whose canonical value is lower case (addresses,
//!   names, digests, e-mail addresses) compare case-insensitively and ignore leading and
//!   trailing dots of the entry (upstream `tlds` is upper case, `google` writes `.google.ad`);
//!   URLs, URL fragments, paths and User-Agents compare exactly. An `ip:port` value is also
//!   tested by its address. A URL is tested as its canonical form and without its scheme, and
//!   by its host only when it names nothing but the host (`http://example.com/`): a URL with
//!   a path on a popular site is not benign because the site is popular (FORMATS.md §6.4).
//! - `substring`: an entry occurs anywhere in the value (case-insensitive under the same rule
//!   as `string`). All substring entries are searched in one Aho-Corasick pass.
//! - `hostname`: the host of the value (a domain or host name itself, the host of a URL, the
//!   domain of an e-mail address, an address of an IP kind) or any parent of it on a label
//!   boundary equals an entry. Entries are lower-cased, stripped of dots at either end and
//!   converted to A-labels.
//! - `cidr`: the address (of an IP, `ip:port`, or a URL whose host is an address) lies in a
//!   listed network; a network indicator is suppressed when it lies entirely inside one.
//! - `regex`: the PCRE entry (`/…/flags`) matches the value (or the address of an `ip:port`).
//!   Delimiters are removed and the `i`, `m`, `s`, `x` and `U` flags become inline flags; `g`,
//!   `u`, `D`, `S`, `X` and `n` change nothing for a yes/no match and are ignored; `A` anchors
//!   at the start. Patterns the `regex` crate cannot run (look-around, back-references) are
//!   skipped and reported as `E_WL_REGEX` problems. An entry without delimiters is used as
//!   it is.
//!
//! A malformed list *file* fails the load (the user asked for it); a malformed *entry* is
//! skipped and reported in [`Warninglists::problems`]. When two loaded lists share a name, the
//! higher version replaces the lower (FORMATS.md §2.1) and that, too, is reported.
//!
//! [`Ingest`]: super::Ingest

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use ipnet::IpNet;
use rayon::prelude::*;
use regex::Regex;
use serde_json::Value;

use super::plain::shorten;
use crate::indicator::normalize;
use crate::indicator::{Indicator, Kind};

/// A warninglist could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct WarninglistError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl WarninglistError {
    fn new(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        WarninglistError {
            path: path.as_ref().display().to_string(),
            reason: reason.into(),
        }
    }
}

/// Where an indicator was found on a warninglist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suppression<'a> {
    /// The list's `name`.
    pub list: &'a str,
    /// The list's `version`.
    pub version: u64,
    /// The list entry that matched.
    pub entry: &'a str,
}

/// How a list's entries are compared with values (the list's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListType {
    /// Exact equality.
    String,
    /// The entry occurs anywhere in the value.
    Substring,
    /// The value's host or one of its parent domains equals the entry.
    Hostname,
    /// The address or network lies inside the entry's network.
    Cidr,
    /// The entry is a PCRE pattern that matches the value.
    Regex,
}

impl ListType {
    /// Every type, in the order used for per-type tables.
    pub const ALL: [ListType; 5] = [
        ListType::String,
        ListType::Substring,
        ListType::Hostname,
        ListType::Cidr,
        ListType::Regex,
    ];

    /// The name used in `list.json`.
    pub const fn name(self) -> &'static str {
        match self {
            ListType::String => "string",
            ListType::Substring => "substring",
            ListType::Hostname => "hostname",
            ListType::Cidr => "cidr",
            ListType::Regex => "regex",
        }
    }

    fn from_name(s: &str) -> Option<ListType> {
        ListType::ALL.into_iter().find(|t| t.name() == s)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ListType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One loaded list, as [`Warninglists::lists`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListSummary<'a> {
    /// The list's `name`.
    pub name: &'a str,
    /// The list's `version`.
    pub version: u64,
    /// The list's `type`.
    pub list_type: ListType,
    /// The list's `description`.
    pub description: &'a str,
    /// The file it was read from.
    pub path: &'a str,
    /// The list's `matching_attributes` (empty: every kind).
    pub matching_attributes: &'a [String],
    /// Entries in use.
    pub entries: usize,
    /// Entries skipped (each reported in [`Warninglists::problems`]).
    pub skipped: usize,
}

/// What an entry is compiled into.
#[derive(Clone, Debug)]
enum Form {
    /// A key of the string/hostname map (`None`: the entry text itself is the key).
    Key(Option<Box<str>>),
    /// A substring pattern (the entry text).
    Substring,
    /// A network.
    Net(IpNet),
    /// A compiled pattern.
    Regex(Regex),
}

#[derive(Clone, Debug)]
struct Entry {
    /// The entry as written (trimmed), for reports.
    text: Box<str>,
    form: Form,
}

#[derive(Clone, Debug)]
struct List {
    name: String,
    version: u64,
    description: String,
    list_type: ListType,
    path: String,
    matching_attributes: Vec<String>,
    /// Bit `k` set: the list applies to [`Kind`] `k` (see [`kind_bit`]).
    applies: u32,
    entries: Vec<Entry>,
    skipped: usize,
}

impl List {
    fn label(&self) -> String {
        format!("list {} (version {})", self.name, self.version)
    }
}

/// A set of loaded warninglists.
///
/// Build it with [`Warninglists::load`] or [`Warninglists::parse`], combine sets with
/// [`Warninglists::extend`], then ask [`Warninglists::check`] for each indicator. The lookup
/// structure is rebuilt on every load or extend, so that `check` costs a few hash probes, one
/// Aho-Corasick pass, one binary search per address family and the regexes of the lists that
/// apply, whatever the number of lists.
#[derive(Default)]
pub struct Warninglists {
    lists: Vec<List>,
    problems: Vec<String>,
    index: Index,
}

impl fmt::Debug for Warninglists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warninglists")
            .field("lists", &self.lists.len())
            .field(
                "entries",
                &self.lists.iter().map(|l| l.entries.len()).sum::<usize>(),
            )
            .field("problems", &self.problems.len())
            .finish()
    }
}

impl Warninglists {
    /// Loads a `list.json`, or every `list.json` below a directory (searched recursively in
    /// name order, as the upstream repository lays them out in `lists/<name>/list.json`).
    ///
    /// A file that cannot be read, is not JSON, or lacks or mistypes `name`, `version` or
    /// `list` is an error naming the file; so is a directory holding no `list.json`.
    pub fn load(path: &Path) -> Result<Warninglists, WarninglistError> {
        let meta = fs::metadata(path).map_err(|e| WarninglistError::new(path, e.to_string()))?;
        let files = if meta.is_dir() {
            let mut files = Vec::new();
            find_lists(path, &mut files)?;
            if files.is_empty() {
                return Err(WarninglistError::new(
                    path,
                    "no `list.json` below this directory",
                ));
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        let parsed: Vec<Result<(List, Vec<String>), WarninglistError>> = files
            .par_iter()
            .map(|f| {
                let bytes = fs::read(f).map_err(|e| WarninglistError::new(f, e.to_string()))?;
                parse_list(&f.display().to_string(), &bytes)
            })
            .collect();
        let mut out = Warninglists::default();
        for p in parsed {
            let (list, problems) = p?;
            out.problems.extend(problems);
            out.push(list);
        }
        out.rebuild();
        Ok(out)
    }

    /// Reads one `list.json` from memory; `origin` names it in errors and reports.
    pub fn parse(origin: &str, json: &[u8]) -> Result<Warninglists, WarninglistError> {
        let (list, problems) = parse_list(origin, json)?;
        let mut out = Warninglists {
            problems,
            ..Warninglists::default()
        };
        out.push(list);
        out.rebuild();
        Ok(out)
    }

    /// Adds every list of `other`, after the lists already loaded. A list whose name is
    /// already loaded replaces it only with a higher version.
    pub fn extend(&mut self, other: Warninglists) {
        if self.lists.is_empty() && self.problems.is_empty() {
            *self = other;
            return;
        }
        self.problems.extend(other.problems);
        for list in other.lists {
            self.push(list);
        }
        self.rebuild();
    }

    /// Adds a list, resolving a name clash by version; the index is not rebuilt.
    fn push(&mut self, list: List) {
        let Some(pos) = self.lists.iter().position(|l| l.name == list.name) else {
            self.lists.push(list);
            return;
        };
        let old = &self.lists[pos];
        if list.version > old.version {
            self.problems.push(format!(
                "{} from {} replaced by version {} from {}",
                old.label(),
                old.path,
                list.version,
                list.path
            ));
            self.lists[pos] = list;
        } else {
            self.problems.push(format!(
                "{} from {} ignored: version {} is already loaded from {}",
                list.label(),
                list.path,
                old.version,
                old.path
            ));
        }
    }

    fn rebuild(&mut self) {
        self.index = Index::build(&self.lists, &mut self.problems);
    }

    /// Entries that could not be used (a regex the engine cannot run, a malformed CIDR), one
    /// line each naming list, entry and reason; also lists replaced by a higher version.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Number of lists loaded.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether no list is loaded.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The loaded lists, in load order.
    pub fn lists(&self) -> impl ExactSizeIterator<Item = ListSummary<'_>> {
        self.lists.iter().map(|l| ListSummary {
            name: &l.name,
            version: l.version,
            list_type: l.list_type,
            description: &l.description,
            path: &l.path,
            matching_attributes: &l.matching_attributes,
            entries: l.entries.len(),
            skipped: l.skipped,
        })
    }

    /// The first list (in load order) that suppresses the indicator.
    pub fn check(&self, indicator: &Indicator) -> Option<Suppression<'_>> {
        let hit = self
            .index
            .check(&self.lists, indicator.kind, &indicator.value)?;
        let list = &self.lists[hit.list as usize];
        Some(Suppression {
            list: &list.name,
            version: list.version,
            entry: &list.entries[hit.entry as usize].text,
        })
    }

    /// Checks the compiled index against the lists it was built from (for tests and fuzzers).
    ///
    /// # Panics
    ///
    /// When the index is inconsistent: a bug in this module, never a property of the input.
    #[doc(hidden)]
    pub fn validate(&self) {
        self.index.validate(&self.lists);
    }
}

/// Collects `list.json` files below `dir`, sorted by name at each level, skipping hidden
/// directories (`.git`) and not following directory symlinks (no loops).
fn find_lists(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), WarninglistError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .and_then(|rd| rd.collect::<Result<Vec<_>, _>>())
        .map_err(|e| WarninglistError::new(dir, e.to_string()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = e
            .file_type()
            .map_err(|err| WarninglistError::new(e.path(), err.to_string()))?;
        if ty.is_dir() {
            find_lists(&e.path(), out)?;
        } else if name == "list.json" {
            out.push(e.path());
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one list file into a list and its entry problems.
fn parse_list(path: &str, bytes: &[u8]) -> Result<(List, Vec<String>), WarninglistError> {
    let err = |reason: String| WarninglistError::new(path, reason);
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| err(format!("not a JSON document: {e}")))?;
    let Value::Object(mut doc) = doc else {
        return Err(err(format!(
            "a warninglist is a JSON object, found {}",
            json_type(&doc)
        )));
    };
    let name = match doc.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) => return Err(err("`name` is empty".into())),
        Some(v) => {
            return Err(err(format!(
                "`name` must be a string, found {}",
                json_type(v)
            )));
        }
        None => return Err(err("no `name`".into())),
    };
    let version = match doc.get("version") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            err(format!(
                "`version` must be a non-negative integer, found {n}"
            ))
        })?,
        // PyMISPWarningLists reads it with int(): accept a numeric string too.
        Some(Value::String(s)) => s.trim().parse().map_err(|_| {
            err(format!(
                "`version` must be a non-negative integer, found \"{}\"",
                shorten(s)
            ))
        })?,
        Some(v) => {
            return Err(err(format!(
                "`version` must be an integer, found {}",
                json_type(v)
            )));
        }
        None => return Err(err("no `version`".into())),
    };
    let description = match doc.get("description") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => {
            return Err(err(format!(
                "`description` must be a string, found {}",
                json_type(v)
            )));
        }
    };
    let list_type = match doc.get("type") {
        // MISP treats a list without a type as a string list.
        None | Some(Value::Null) => ListType::String,
        Some(Value::String(s)) => ListType::from_name(s.trim()).ok_or_else(|| {
            err(format!(
                "unknown `type` \"{}\" (expected string, substring, hostname, cidr or regex)",
                shorten(s)
            ))
        })?,
        Some(v) => {
            return Err(err(format!(
                "`type` must be a string, found {}",
                json_type(v)
            )));
        }
    };
    let matching_attributes = match doc.get("matching_attributes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_string()),
                v => Err(err(format!(
                    "`matching_attributes` must hold strings, found {}",
                    json_type(v)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(err(format!(
                "`matching_attributes` must be an array, found {}",
                json_type(v)
            )));
        }
    };
    let raw_entries: Vec<Value> = match doc.remove("list") {
        Some(Value::Array(a)) => a,
        // MISP also accepts an object value → comment.
        Some(Value::Object(o)) => o.into_iter().map(|(k, _)| Value::String(k)).collect(),
        Some(v) => {
            return Err(err(format!(
                "`list` must be an array of strings or an object, found {}",
                json_type(&v)
            )));
        }
        None => return Err(err("no `list`".into())),
    };

    let mut list = List {
        name,
        version,
        description,
        list_type,
        path: path.to_string(),
        applies: kind_mask(&matching_attributes),
        matching_attributes,
        entries: Vec::with_capacity(raw_entries.len()),
        skipped: 0,
    };
    let mut problems = Vec::new();
    for raw in raw_entries {
        let text = match raw {
            Value::String(s) => s,
            v => {
                list.skipped += 1;
                problems.push(format!(
                    "{}: entry `{}`: not a string",
                    list.label(),
                    shorten(&v.to_string())
                ));
                continue;
            }
        };
        let text = text.trim();
        match compile_entry(list_type, text) {
            Ok(form) => list.entries.push(Entry {
                text: text.into(),
                form,
            }),
            Err(reason) => {
                list.skipped += 1;
                problems.push(format!(
                    "{}: entry `{}`: {reason}",
                    list.label(),
                    shorten(text)
                ));
            }
        }
    }
    Ok((list, problems))
}

/// The kinds a list applies to, as a bit mask over [`kind_bit`].
fn kind_mask(matching_attributes: &[String]) -> u32 {
    if matching_attributes.is_empty() {
        return Kind::ALL.iter().fold(0, |m, &k| m | kind_bit(k));
    }
    Kind::ALL
        .iter()
        .filter(|k| {
            k.misp_types()
                .iter()
                .any(|t| matching_attributes.iter().any(|a| a == t))
        })
        .fold(0, |m, &k| m | kind_bit(k))
}

const fn kind_bit(kind: Kind) -> u32 {
    1 << (kind as u32)
}

/// The lower-cased, dot-trimmed form under which string entries are indexed.
fn fold(s: &str) -> std::borrow::Cow<'_, str> {
    let t = s.trim_matches('.');
    if t.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(t.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(t)
    }
}

/// Compiles one entry of a list of type `ty`, or says why it cannot be used.
fn compile_entry(ty: ListType, text: &str) -> Result<Form, String> {
    if text.is_empty() {
        return Err("empty entry".into());
    }
    match ty {
        ListType::String => {
            let key = fold(text);
            if key.is_empty() {
                return Err("nothing but dots".into());
            }
            Ok(Form::Key((key != text).then(|| key.into())))
        }
        ListType::Substring => Ok(Form::Substring),
        ListType::Hostname => host_entry(text).map(|h| Form::Key((h != text).then(|| h.into()))),
        ListType::Cidr => parse_net(text).map(Form::Net),
        ListType::Regex => {
            let pattern = translate_pcre(text)?;
            Regex::new(&pattern).map(Form::Regex).map_err(|e| {
                format!(
                    "E_WL_REGEX: the regex engine cannot run this pattern: {}",
                    regex_reason(&e)
                )
            })
        }
    }
}

/// A `hostname` entry in the form hosts are compared in: lower case, no dots at either end,
/// A-labels. Single labels (`com`, `local`) and addresses are kept as they are.
fn host_entry(text: &str) -> Result<String, String> {
    let t = text.trim_matches('.');
    if t.is_empty() {
        return Err("nothing but dots".into());
    }
    if let Ok(ip) = normalize::ip(t) {
        return Ok(ip.to_string());
    }
    match normalize::domain(t) {
        Ok(d) => Ok(d),
        Err(e) => {
            // A single label (`com`, `local`, `рф`), which `domain` refuses as an indicator.
            let lower = idna::domain_to_ascii(t).unwrap_or_else(|_| t.to_ascii_lowercase());
            let single_label = !lower.contains('.')
                && !lower.is_empty()
                && lower.len() <= 63
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if single_label {
                Ok(lower)
            } else {
                Err(format!("not a host name: {e}"))
            }
        }
    }
}

/// A `cidr` entry: a network or a single address; host bits are ignored, IPv4-mapped IPv6
/// networks become IPv4 networks.
fn parse_net(text: &str) -> Result<IpNet, String> {
    let net = if text.contains('/') {
        text.parse::<IpNet>()
            .map_err(|_| "not a network in CIDR notation".to_string())?
    } else {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| "not an IP address or network".to_string())?;
        IpNet::from(ip)
    };
    let net = match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    };
    Ok(net.trunc())
}

/// The useful line of a `regex` error (the full text draws the pattern with a caret).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| {
            l.trim()
                .strip_prefix("error:")
                .map(|r| r.trim().to_string())
        })
        .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string())
}

/// Turns a PHP/PCRE pattern with delimiters (`/^(abuse|noc)@/i`, `#a/b#`, `{x}`) into the
/// `regex` crate's syntax: the body with the flags as an inline group.
fn translate_pcre(entry: &str) -> Result<String, String> {
    let mut chars = entry.char_indices();
    let Some((_, open)) = chars.next() else {
        return Err("empty entry".into());
    };
    if open.is_alphanumeric() || open == '\\' || open.is_whitespace() {
        // No delimiters: the entry is the pattern.
        return Ok(translate_escapes(entry));
    }
    let close = match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        '<' => '>',
        c => c,
    };
    // The body ends at the first unescaped closing delimiter (nesting for bracket pairs).
    let mut depth = 0usize;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in chars {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == close && depth == 0 {
            end = Some(i);
            break;
        } else if close != open && c == open {
            depth += 1;
        } else if close != open && c == close {
            depth -= 1;
        }
    }
    let Some(end) = end else {
        // `^abc$` has no delimiters at all; `/abc` has lost its closing one.
        if "/#~@!%;,=+".contains(open) {
            return Err(format!("no ending delimiter `{close}`"));
        }
        return Ok(translate_escapes(entry));
    };
    let body = &entry[open.len_utf8()..end];
    let mut inline = String::new();
    let mut anchored = false;
    for flag in entry[end + close.len_utf8()..].chars() {
        match flag {
            'i' | 'm' | 's' | 'x' | 'U' => {
                if !inline.contains(flag) {
                    inline.push(flag);
                }
            }
            'A' => anchored = true,
            // Global (JavaScript habit), Unicode, dollar-end-only, study, extra, no auto
            // capture: none changes whether a value matches.
            'g' | 'u' | 'D' | 'S' | 'X' | 'n' => {}
            c if c.is_whitespace() => {}
            c => return Err(format!("unknown pattern flag `{c}`")),
        }
    }
    let body = translate_escapes(body);
    let mut out = String::with_capacity(body.len() + 12);
    if !inline.is_empty() {
        out.push_str("(?");
        out.push_str(&inline);
        out.push(')');
    }
    if anchored {
        out.push_str("\\A(?:");
        out.push_str(&body);
        out.push(')');
    } else {
        out.push_str(&body);
    }
    Ok(out)
}

/// Rewrites the PCRE escapes whose meaning differs in the `regex` crate: `\<` and `\>` are
/// literal in PCRE but word boundaries in `regex`; `\Z` (end, or before a final newline) has
/// no `regex` equivalent and becomes `\z` (values never end in a newline). Every other escape
/// is kept; `regex` accepts escaped punctuation such as `\/` and `\@` and refuses the PCRE-only
/// ones, which then become `E_WL_REGEX` problems.
fn translate_escapes(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(c @ ('<' | '>')) => out.push(c),
            Some('Z') => out.push_str("\\z"),
            Some(n) => {
                out.push('\\');
                out.push(n);
            }
            None => out.push('\\'),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The compiled index.

/// A list entry: list ordinal (load order) and entry ordinal within the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    list: u32,
    entry: u32,
}

/// Which entries of the key map a probe may hit.
#[derive(Clone, Copy)]
struct Accept {
    /// String entries.
    string: bool,
    /// Hostname entries.
    host: bool,
    /// The probe is case-sensitive: a string entry must equal it byte for byte.
    exact: bool,
}

impl Accept {
    /// A host or address probe (case-insensitive).
    fn host(string: bool, host: bool) -> Self {
        Accept {
            string,
            host,
            exact: false,
        }
    }

    /// A probe of string entries only.
    fn string(string: bool, exact: bool) -> Self {
        Accept {
            string,
            host: false,
            exact,
        }
    }
}

/// The best (first in load order) hit found so far.
#[derive(Default)]
struct Best(Option<Hit>);

impl Best {
    fn offer(&mut self, hit: Hit) {
        if self.0.is_none_or(|b| hit.list < b.list) {
            self.0 = Some(hit);
        }
    }

    /// Lists at or after this ordinal cannot improve the result.
    fn bound(&self) -> u32 {
        self.0.map_or(u32::MAX, |b| b.list)
    }
}

/// FxHash-style hasher for the key map: keys come from list files and probes never insert,
/// so flooding is not a concern, and SipHash would dominate the cost of a domain check.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // Final avalanche so that the low bits (bucket) and high bits (tag) both vary.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

type KeyMap = HashMap<Box<str>, HitList, BuildHasherDefault<KeyHasher>>;

/// Gram key → occurrences, for choosing rare grams.
type GramCounts = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

/// The entries of one key, one per list, in load order. Nearly every key has one entry, which
/// is then stored without an allocation of its own.
#[derive(Debug)]
enum HitList {
    One(Hit),
    Many(Vec<Hit>),
}

impl HitList {
    /// Adds an entry of a list at or after those present; a later entry of the same list
    /// is dropped (the first one is reported).
    fn push(&mut self, hit: Hit) {
        match self {
            HitList::One(first) if first.list == hit.list => {}
            HitList::One(first) => *self = HitList::Many(vec![*first, hit]),
            HitList::Many(v) => {
                if v.last().is_none_or(|l| l.list != hit.list) {
                    v.push(hit);
                }
            }
        }
    }

    fn as_slice(&self) -> &[Hit] {
        match self {
            HitList::One(h) => std::slice::from_ref(h),
            HitList::Many(v) => v,
        }
    }
}

/// A blocked Bloom filter over the keys of the [`KeyMap`]: each key sets two bits of one
/// 64-bit word, about sixteen bits per key, some 2 % false positives. Nearly every probe of
/// a name and its parents misses, and the filter answers those with one memory access
/// instead of two cache misses in the map.
#[derive(Default)]
struct KeyFilter {
    words: Box<[u64]>,
    mask: u64,
}

impl KeyFilter {
    fn new<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let len = (keys.len() / 4).next_power_of_two().max(1);
        let mut f = KeyFilter {
            words: vec![0; len].into_boxed_slice(),
            mask: len as u64 - 1,
        };
        for k in keys {
            let (w, bits) = f.position(k);
            f.words[w] |= bits;
        }
        f
    }

    /// The word and the bits of a key.
    fn position(&self, key: &str) -> (usize, u64) {
        let h = std::hash::BuildHasher::hash_one(&BuildHasherDefault::<KeyHasher>::default(), key);
        let bits = (1 << ((h >> 52) & 63)) | (1 << ((h >> 58) & 63));
        ((h & self.mask) as usize, bits)
    }

    /// Whether the key may be in the map (no false negatives).
    fn may_contain(&self, key: &str) -> bool {
        if self.words.is_empty() {
            return false;
        }
        let (w, bits) = self.position(key);
        self.words[w] & bits == bits
    }
}

/// Values of unsigned integer type that address ranges are kept in (`u32` for IPv4, `u128`
/// for IPv6).
trait Addr: Copy + Ord + fmt::Debug {
    const MAX: Self;
    fn succ(self) -> Self;
    fn pred(self) -> Self;
    /// The top 16 bits, which index the table's directory.
    fn bucket(self) -> usize;
}

/// Entries in a [`RangeTable`] directory (one per value of the top 16 bits).
const BUCKETS: usize = 1 << 16;

impl Addr for u32 {
    const MAX: Self = u32::MAX;
    fn succ(self) -> Self {
        self + 1
    }
    fn pred(self) -> Self {
        self - 1
    }
    fn bucket(self) -> usize {
        (self >> 16) as usize
    }
}

impl Addr for u128 {
    const MAX: Self = u128::MAX;
    fn succ(self) -> Self {
        self + 1
    }
    fn pred(self) -> Self {
        self - 1
    }
    fn bucket(self) -> usize {
        (self >> 112) as usize
    }
}

/// Disjoint address segments, each with every list entry covering it (at most one per list,
/// the one reaching furthest, sorted by list). A directory over the top 16 bits narrows the
/// binary search to the few segments starting in the address's bucket.
#[derive(Debug)]
struct RangeTable<T> {
    /// `dir[b]`: the number of segments starting in a bucket below `b` (`BUCKETS + 1` entries;
    /// empty while the table is).
    dir: Vec<u32>,
    starts: Vec<T>,
    ends: Vec<T>,
    /// Segment `i` owns `hits[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    /// A covering entry and the last address of its network.
    hits: Vec<(Hit, T)>,
}

impl<T: Addr> Default for RangeTable<T> {
    fn default() -> Self {
        RangeTable {
            dir: Vec::new(),
            starts: Vec::new(),
            ends: Vec::new(),
            offsets: vec![0],
            hits: Vec::new(),
        }
    }
}

impl<T: Addr> RangeTable<T> {
    /// Builds the table from inclusive ranges `(first, last, hit)`.
    fn build(mut ranges: Vec<(T, T, Hit)>) -> Self {
        let mut table = RangeTable::default();
        if ranges.is_empty() {
            return table;
        }
        ranges.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
        let mut bounds: Vec<T> = Vec::with_capacity(ranges.len() * 2);
        for &(first, last, _) in &ranges {
            bounds.push(first);
            if last < T::MAX {
                bounds.push(last.succ());
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut active: Vec<(Hit, T)> = Vec::new();
        let mut next = 0;
        let mut seg: Vec<(Hit, T)> = Vec::new();
        for (k, &b) in bounds.iter().enumerate() {
            while next < ranges.len() && ranges[next].0 <= b {
                active.push((ranges[next].2, ranges[next].1));
                next += 1;
            }
            active.retain(|&(_, last)| last >= b);
            if active.is_empty() {
                continue;
            }
            let seg_end = bounds.get(k + 1).map_or(T::MAX, |n| n.pred());
            // One hit per list: the entry whose network reaches furthest (so that a network
            // indicator inside it is found), the earliest entry among equals.
            seg.clear();
            seg.extend_from_slice(&active);
            seg.sort_unstable_by(|a, b| {
                a.0.list
                    .cmp(&b.0.list)
                    .then(b.1.cmp(&a.1))
                    .then(a.0.entry.cmp(&b.0.entry))
            });
            seg.dedup_by_key(|h| h.0.list);
            let n = table.starts.len();
            let same_as_prev = n > 0
                && table.ends[n - 1].succ() == b
                && table.hits[table.offsets[n - 1] as usize..] == seg[..];
            if same_as_prev {
                table.ends[n - 1] = seg_end;
            } else {
                table.starts.push(b);
                table.ends.push(seg_end);
                table.hits.extend_from_slice(&seg);
                table.offsets.push(table.hits.len() as u32);
            }
        }
        table.dir = Vec::with_capacity(BUCKETS + 1);
        let mut i = 0;
        for b in 0..=BUCKETS {
            while i < table.starts.len() && table.starts[i].bucket() < b {
                i += 1;
            }
            table.dir.push(i as u32);
        }
        table
    }

    /// The segment holding `x`.
    fn segment(&self, x: T) -> Option<usize> {
        if self.starts.is_empty() {
            return None;
        }
        let b = x.bucket();
        // The segment holding `x` starts in its bucket, or is the last one before it.
        let lo = (self.dir[b] as usize).saturating_sub(1);
        let hi = self.dir[b + 1] as usize;
        let i = (lo + self.starts[lo..hi].partition_point(|&s| s <= x)).checked_sub(1)?;
        (x <= self.ends[i]).then_some(i)
    }

    /// The entries covering `[first, last]` entirely, sorted by list.
    fn covering(&self, first: T, last: T) -> impl Iterator<Item = Hit> + '_ {
        let hits: &[(Hit, T)] = match self.segment(first) {
            Some(i) => &self.hits[self.offsets[i] as usize..self.offsets[i + 1] as usize],
            None => &[],
        };
        hits.iter().filter(move |h| h.1 >= last).map(|h| h.0)
    }

    fn validate(&self) {
        assert_eq!(self.starts.len(), self.ends.len());
        if !self.starts.is_empty() {
            assert_eq!(self.dir.len(), BUCKETS + 1);
            for (b, &d) in self.dir.iter().enumerate() {
                assert_eq!(d as usize, self.starts.partition_point(|s| s.bucket() < b));
            }
        }
        assert_eq!(self.offsets.len(), self.starts.len() + 1);
        for i in 0..self.starts.len() {
            assert!(self.starts[i] <= self.ends[i], "segment {i} is empty");
            if i > 0 {
                assert!(self.ends[i - 1] < self.starts[i], "segments {i} overlap");
            }
            let hits = &self.hits[self.offsets[i] as usize..self.offsets[i + 1] as usize];
            assert!(!hits.is_empty(), "segment {i} has no hit");
            assert!(
                hits.windows(2).all(|w| w[0].0.list < w[1].0.list),
                "segment {i}: hits not one per list in order"
            );
            assert!(
                hits.iter().all(|h| h.1 >= self.ends[i]),
                "segment {i}: hit ends early"
            );
        }
    }
}

/// Everything [`Warninglists::check`] needs, built from the lists in load order.
#[derive(Default)]
struct Index {
    /// Per list: the kinds it applies to.
    applies: Vec<u32>,
    /// Per list: its type.
    types: Vec<ListType>,
    /// Per list type: the kinds at least one list of that type applies to.
    kinds_by_type: [u32; 5],
    /// The kinds at least one list applies to.
    kinds_any: u32,
    /// String entries (folded) and hostname entries (normalised) → hits, sorted by list.
    keys: KeyMap,
    /// Bloom filter over `keys`.
    key_filter: KeyFilter,
    /// Substring automatons, one per group of kinds with the same substring lists.
    substrings: Vec<SubstringSet>,
    /// Per kind: its index into `substrings`, or [`NO_SET`].
    substring_for: [u8; 32],
    cidr_v4: RangeTable<u32>,
    cidr_v6: RangeTable<u128>,
    /// Regex entries in load order.
    regexes: Vec<(Hit, Regex)>,
}

/// Marks a kind without substring lists in [`Index::substring_for`].
const NO_SET: u8 = u8::MAX;

/// Hits of one key, pushed in load order: the first entry of each list.
fn first_per_list(mut v: Vec<Hit>) -> Box<[Hit]> {
    v.dedup_by_key(|h| h.list);
    v.into_boxed_slice()
}

/// Substring automatons whose patterns total at most this many bytes are built as DFAs:
/// about 150 bytes of DFA per pattern byte, and several times faster than the NFA on values
/// that contain no pattern, which is nearly all of them.
const DFA_PATTERN_BYTES: usize = 256 * 1024;

/// Length of the grams of the [`GramSet`] prefilter.
const GRAM: usize = 5;

/// The key of the gram at the start of `w` (`w.len() >= GRAM`); a marker bit keeps it
/// non-zero, zero being the empty slot.
fn gram_key(w: &[u8]) -> u64 {
    w[..GRAM]
        .iter()
        .enumerate()
        .fold(1 << 63, |k, (i, &b)| k | u64::from(b) << (8 * i))
}

/// Bits in the first level of a [`GramSet`]: 32 KiB, the size of an L1 data cache.
const GRAM_FILTER_BITS: u32 = 18;

/// An open-addressing set of gram keys behind a one-bit-per-hash filter; most windows of a
/// value are answered by the filter from L1.
struct GramSet {
    filter: Box<[u64]>,
    slots: Box<[u64]>,
    mask: usize,
}

impl GramSet {
    fn new(keys: &[u64]) -> Self {
        let len = (keys.len() * 2).next_power_of_two().max(16);
        let mut set = GramSet {
            filter: vec![0; 1 << (GRAM_FILTER_BITS - 6)].into_boxed_slice(),
            slots: vec![0; len].into_boxed_slice(),
            mask: len - 1,
        };
        for &k in keys {
            let f = Self::filter_bit(k);
            set.filter[f >> 6] |= 1 << (f & 63);
            let mut i = Self::slot(k) & set.mask;
            while set.slots[i] != 0 && set.slots[i] != k {
                i = (i + 1) & set.mask;
            }
            set.slots[i] = k;
        }
        set
    }

    fn slot(k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) as usize
    }

    fn filter_bit(k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - GRAM_FILTER_BITS)) as usize
    }

    fn contains(&self, k: u64) -> bool {
        let f = Self::filter_bit(k);
        if self.filter[f >> 6] & (1 << (f & 63)) == 0 {
            return false;
        }
        let mut i = Self::slot(k) & self.mask;
        loop {
            match self.slots[i] {
                0 => return false,
                s if s == k => return true,
                _ => i = (i + 1) & self.mask,
            }
        }
    }
}

/// The substring entries of the lists that apply to one group of kinds, searched in one
/// Aho-Corasick pass over the ASCII-lower-cased value.
///
/// Nearly no value contains a pattern, and walking a large automaton costs a cache miss per
/// byte; so each pattern is represented by its rarest gram (rarity counted over the
/// patterns and a sample of the string and hostname entries, which look like the names
/// being checked), and a value whose grams include none of them skips the automaton.
struct SubstringSet {
    /// The kinds this set serves.
    kinds: u32,
    ac: AhoCorasick,
    /// Per pattern: its entries (one per list, in load order).
    hits: Vec<Box<[Hit]>>,
    /// The prefilter; `None` when a pattern is shorter than [`GRAM`] bytes.
    grams: Option<GramSet>,
}

impl SubstringSet {
    fn build(
        lists: &[List],
        members: &[usize],
        kinds: u32,
        freq: &GramCounts,
    ) -> Result<Self, aho_corasick::BuildError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut hits: Vec<Vec<Hit>> = Vec::new();
        for &li in members {
            for (ei, e) in lists[li].entries.iter().enumerate() {
                let hit = Hit {
                    list: li as u32,
                    entry: ei as u32,
                };
                let id = *ids
                    .entry(e.text.to_ascii_lowercase())
                    .or_insert_with_key(|p| {
                        patterns.push(p.clone());
                        hits.push(Vec::new());
                        patterns.len() - 1
                    });
                hits[id].push(hit);
            }
        }
        let bytes: usize = patterns.iter().map(String::len).sum();
        let kind = if bytes <= DFA_PATTERN_BYTES {
            aho_corasick::AhoCorasickKind::DFA
        } else {
            aho_corasick::AhoCorasickKind::ContiguousNFA
        };
        let ac = AhoCorasick::builder().kind(Some(kind)).build(&patterns)?;
        let grams = patterns
            .iter()
            .all(|p| p.len() >= GRAM)
            .then(|| Self::rare_grams(&patterns, freq));
        Ok(SubstringSet {
            kinds,
            ac,
            hits: hits.into_iter().map(first_per_list).collect(),
            grams,
        })
    }

    /// How often each gram of the substring entries occurs in those entries and in a sample
    /// of the string and hostname keys, which say what names look like (`mail.`, `.com` are
    /// common). Only the grams of patterns are counted, which keeps it cheap.
    fn gram_counts(lists: &[List], substring_lists: &[usize], keys: &KeyMap) -> GramCounts {
        let mut freq = GramCounts::default();
        for &li in substring_lists {
            for e in &lists[li].entries {
                for w in e.text.to_ascii_lowercase().as_bytes().windows(GRAM) {
                    *freq.entry(gram_key(w)).or_insert(0) += 1;
                }
            }
        }
        for key in keys.keys().step_by(4) {
            for w in key.as_bytes().windows(GRAM) {
                if let Some(n) = freq.get_mut(&gram_key(w)) {
                    *n += 1;
                }
            }
        }
        freq
    }

    /// The rarest gram of each pattern.
    fn rare_grams(patterns: &[String], freq: &GramCounts) -> GramSet {
        let chosen: Vec<u64> = patterns
            .iter()
            .filter_map(|p| {
                p.as_bytes()
                    .windows(GRAM)
                    .map(gram_key)
                    .min_by_key(|k| (freq.get(k).copied().unwrap_or(0), *k))
            })
            .collect();
        GramSet::new(&chosen)
    }

    /// Whether some pattern may occur in the (lower-cased) value; no false negatives.
    fn may_match(&self, value: &str) -> bool {
        let Some(g) = &self.grams else {
            return true;
        };
        let b = value.as_bytes();
        if b.len() < GRAM {
            return false;
        }
        // Roll the key along instead of rebuilding it per window.
        let mut k = gram_key(b);
        if g.contains(k) {
            return true;
        }
        for &next in &b[GRAM..] {
            k = (1 << 63) | ((k & 0xFF_FFFF_FFFF) >> 8) | u64::from(next) << (8 * (GRAM - 1));
            if g.contains(k) {
                return true;
            }
        }
        false
    }
}

fn v4_range(n: &ipnet::Ipv4Net) -> (u32, u32) {
    (u32::from(n.network()), u32::from(n.broadcast()))
}

fn v6_range(n: &ipnet::Ipv6Net) -> (u128, u128) {
    (u128::from(n.network()), u128::from(n.broadcast()))
}

impl Index {
    fn build(lists: &[List], problems: &mut Vec<String>) -> Index {
        let mut ix = Index {
            applies: lists.iter().map(|l| l.applies).collect(),
            types: lists.iter().map(|l| l.list_type).collect(),
            ..Index::default()
        };
        for l in lists {
            ix.kinds_by_type[l.list_type.index()] |= l.applies;
            ix.kinds_any |= l.applies;
        }
        let mut keys = KeyMap::default();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (li, l) in lists.iter().enumerate() {
            for (ei, e) in l.entries.iter().enumerate() {
                let hit = Hit {
                    list: li as u32,
                    entry: ei as u32,
                };
                match &e.form {
                    Form::Key(key) => {
                        let key = key.as_deref().unwrap_or(&e.text);
                        match keys.get_mut(key) {
                            Some(v) => v.push(hit),
                            None => {
                                keys.insert(key.into(), HitList::One(hit));
                            }
                        }
                    }
                    // Grouped by kind below.
                    Form::Substring => {}
                    Form::Net(IpNet::V4(n)) => {
                        let (a, b) = v4_range(n);
                        v4.push((a, b, hit));
                    }
                    Form::Net(IpNet::V6(n)) => {
                        let (a, b) = v6_range(n);
                        v6.push((a, b, hit));
                    }
                    Form::Regex(re) => ix.regexes.push((hit, re.clone())),
                }
            }
        }
        keys.shrink_to_fit();
        ix.keys = keys;
        ix.key_filter = KeyFilter::new(ix.keys.keys().map(|k| &**k));
        ix.build_substrings(lists, problems);
        ix.cidr_v4 = RangeTable::build(v4);
        ix.cidr_v6 = RangeTable::build(v6);
        ix
    }

    /// One [`SubstringSet`] per group of kinds to which the same substring lists apply, so
    /// that (say) IP kinds do not walk an automaton of disposable e-mail domains.
    fn build_substrings(&mut self, lists: &[List], problems: &mut Vec<String>) {
        self.substring_for = [NO_SET; 32];
        let substring_lists: Vec<usize> = (0..lists.len())
            .filter(|&i| lists[i].list_type == ListType::Substring && !lists[i].entries.is_empty())
            .collect();
        if substring_lists.is_empty() {
            return;
        }
        let freq = SubstringSet::gram_counts(lists, &substring_lists, &self.keys);
        let mut groups: Vec<(Vec<usize>, u32)> = Vec::new();
        for kind in Kind::ALL {
            let bit = kind_bit(kind);
            let members: Vec<usize> = substring_lists
                .iter()
                .copied()
                .filter(|&i| lists[i].applies & bit != 0)
                .collect();
            if members.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|g| g.0 == members) {
                Some(g) => g.1 |= bit,
                None => groups.push((members, bit)),
            }
        }
        for (members, kinds) in groups {
            match SubstringSet::build(lists, &members, kinds, &freq) {
                Ok(set) => {
                    for kind in Kind::ALL {
                        if kinds & kind_bit(kind) != 0 {
                            self.substring_for[kind as usize] = self.substrings.len() as u8;
                        }
                    }
                    self.substrings.push(set);
                }
                Err(e) => {
                    // Only reachable when the patterns exceed the automaton's size limits.
                    let names: Vec<&str> =
                        members.iter().map(|&i| lists[i].name.as_str()).collect();
                    problems.push(format!(
                        "substring lists {names:?} could not be compiled together ({e}); they are not applied"
                    ));
                }
            }
        }
    }

    fn applies(&self, hit: Hit, bit: u32) -> bool {
        self.applies[hit.list as usize] & bit != 0
    }

    fn wants(&self, ty: ListType, bit: u32) -> bool {
        self.kinds_by_type[ty.index()] & bit != 0
    }

    /// Probes the key map with `key` for the entry types `accept` allows.
    fn probe(&self, lists: &[List], key: &str, accept: Accept, bit: u32, best: &mut Best) {
        if !accept.string && !accept.host {
            return;
        }
        let key_folded = fold(key);
        if !self.key_filter.may_contain(&key_folded) {
            return;
        }
        let Some(hits) = self.keys.get(key_folded.as_ref()) else {
            return;
        };
        let bound = best.bound();
        for &h in hits.as_slice().iter().take_while(|h| h.list < bound) {
            if !self.applies(h, bit) {
                continue;
            }
            let ok = match self.types[h.list as usize] {
                ListType::String => {
                    accept.string
                        && (!accept.exact
                            || *lists[h.list as usize].entries[h.entry as usize].text == *key)
                }
                ListType::Hostname => accept.host,
                _ => false,
            };
            if ok {
                best.offer(h);
                return;
            }
        }
    }

    /// Probes a host name and each of its parents (`a.b.example.net`, `b.example.net`, …,
    /// `net`) against hostname entries; the full name also against string entries when
    /// `string` is set.
    fn probe_host(&self, lists: &[List], host: &str, string: bool, bit: u32, best: &mut Best) {
        let host = host.trim_end_matches('.');
        let hostnames = self.wants(ListType::Hostname, bit);
        if host.is_empty() || (!hostnames && !string) {
            return;
        }
        self.probe(lists, host, Accept::host(string, hostnames), bit, best);
        if !hostnames {
            return;
        }
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if rest.is_empty() {
                break;
            }
            self.probe(lists, rest, Accept::host(false, true), bit, best);
        }
    }

    /// Probes an address or network against the cidr entries.
    fn probe_net(&self, net: IpNet, bit: u32, best: &mut Best) {
        if !self.wants(ListType::Cidr, bit) {
            return;
        }
        let bound = best.bound();
        let found = match net {
            IpNet::V4(n) => {
                let (a, b) = v4_range(&n);
                self.cidr_v4
                    .covering(a, b)
                    .take_while(|h| h.list < bound)
                    .find(|&h| self.applies(h, bit))
            }
            IpNet::V6(n) => {
                let (a, b) = v6_range(&n);
                self.cidr_v6
                    .covering(a, b)
                    .take_while(|h| h.list < bound)
                    .find(|&h| self.applies(h, bit))
            }
        };
        if let Some(h) = found {
            best.offer(h);
        }
    }

    /// Searches the value for every substring entry in one pass.
    fn probe_substrings(
        &self,
        lists: &[List],
        value: &str,
        exact: bool,
        bit: u32,
        best: &mut Best,
    ) {
        if !self.wants(ListType::Substring, bit) {
            return;
        }
        let Some(set) = self
            .substrings
            .get(self.substring_for[(bit.trailing_zeros()) as usize] as usize)
        else {
            return;
        };
        // Patterns are lower case; values of most kinds already are.
        let folded = if value.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(value.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(value)
        };
        if !set.may_match(&folded) || !set.ac.is_match(folded.as_ref()) {
            return;
        }
        for m in set.ac.find_overlapping_iter(folded.as_ref()) {
            let bound = best.bound();
            let found = set.hits[m.pattern().as_usize()]
                .iter()
                .take_while(|h| h.list < bound)
                .find(|&&h| {
                    self.applies(h, bit)
                        && (!exact
                            // Lower-casing kept every byte offset, so the range fits `value`.
                            || value.get(m.range())
                                == Some(&*lists[h.list as usize].entries[h.entry as usize].text))
                });
            if let Some(&h) = found {
                best.offer(h);
            }
        }
    }

    /// Runs the regex entries of the lists that apply, in load order, on each value.
    fn probe_regexes(&self, values: &[&str], bit: u32, best: &mut Best) {
        if !self.wants(ListType::Regex, bit) {
            return;
        }
        let bound = best.bound();
        let found = self
            .regexes
            .iter()
            .take_while(|(h, _)| h.list < bound)
            .find(|(h, re)| self.applies(*h, bit) && values.iter().any(|v| re.is_match(v)));
        if let Some((h, _)) = found {
            best.offer(*h);
        }
    }

    fn check(&self, lists: &[List], kind: Kind, value: &str) -> Option<Hit> {
        let bit = kind_bit(kind);
        if self.kinds_any & bit == 0 {
            return None;
        }
        let mut best = Best::default();
        let strings = self.wants(ListType::String, bit);
        let hostnames = self.wants(ListType::Hostname, bit);
        // Values of these kinds keep their case (paths, queries, User-Agents).
        let exact = matches!(
            kind,
            Kind::Url | Kind::UrlSubstring | Kind::Uri | Kind::UserAgent
        );
        let mut address = None;
        match kind {
            Kind::Ipv4 | Kind::Ipv6 => {
                if let Ok(ip) = value.parse::<IpAddr>() {
                    self.probe_net(IpNet::from(ip), bit, &mut best);
                }
                self.probe(
                    lists,
                    value,
                    Accept::host(strings, hostnames),
                    bit,
                    &mut best,
                );
            }
            Kind::Cidr => {
                if let Ok(net) = value.parse::<IpNet>() {
                    self.probe_net(net.trunc(), bit, &mut best);
                }
                self.probe(lists, value, Accept::host(strings, false), bit, &mut best);
            }
            Kind::IpPort => {
                if let Some((addr, ip)) = ip_port_address(value) {
                    self.probe_net(IpNet::from(ip), bit, &mut best);
                    self.probe(
                        lists,
                        addr,
                        Accept::host(strings, hostnames),
                        bit,
                        &mut best,
                    );
                    address = Some(addr);
                }
                self.probe(lists, value, Accept::host(strings, false), bit, &mut best);
            }
            Kind::Domain | Kind::Hostname => self.probe_host(lists, value, strings, bit, &mut best),
            Kind::Email => {
                self.probe(lists, value, Accept::host(strings, false), bit, &mut best);
                if let Some((_, domain)) = value.rsplit_once('@') {
                    self.probe_host(lists, domain, false, bit, &mut best);
                }
            }
            Kind::Url => self.check_url(lists, value, strings, bit, &mut best),
            _ => self.probe(lists, value, Accept::string(strings, exact), bit, &mut best),
        }
        self.probe_substrings(lists, value, exact, bit, &mut best);
        match address {
            Some(a) => self.probe_regexes(&[value, a], bit, &mut best),
            None => self.probe_regexes(&[value], bit, &mut best),
        }
        best.0
    }

    fn check_url(&self, lists: &[List], value: &str, strings: bool, bit: u32, best: &mut Best) {
        // The canonical URL, and the URL without its scheme (MISP values often have none).
        self.probe(lists, value, Accept::string(strings, true), bit, best);
        if let Some((_, rest)) = value.split_once("://") {
            self.probe(lists, rest, Accept::string(strings, true), bit, best);
        }
        let hostnames = self.wants(ListType::Hostname, bit);
        let cidrs = self.wants(ListType::Cidr, bit);
        if !strings && !hostnames && !cidrs {
            return;
        }
        let Some(parts) = url_parts(value) else {
            return;
        };
        let host = parts.host.trim_start_matches('[').trim_end_matches(']');
        let string = strings && parts.host_only;
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                self.probe_net(IpNet::from(ip), bit, best);
                let addr = ip.to_string();
                self.probe(lists, &addr, Accept::host(string, hostnames), bit, best);
            }
            Err(_) => self.probe_host(lists, host, string, bit, best),
        }
    }

    fn validate(&self, lists: &[List]) {
        assert_eq!(self.applies.len(), lists.len());
        assert_eq!(self.types.len(), lists.len());
        self.cidr_v4.validate();
        self.cidr_v6.validate();
        let check_hits = |hits: &[Hit]| {
            assert!(!hits.is_empty());
            assert!(hits.windows(2).all(|w| w[0].list < w[1].list));
            for h in hits {
                let l = &lists[h.list as usize];
                assert!((h.entry as usize) < l.entries.len());
            }
        };
        for (k, hits) in &self.keys {
            let hits = hits.as_slice();
            check_hits(hits);
            assert!(
                self.key_filter.may_contain(k),
                "the key filter rejects `{k}`"
            );
            for h in hits.iter() {
                let e = &lists[h.list as usize].entries[h.entry as usize];
                match &e.form {
                    Form::Key(key) => assert_eq!(key.as_deref().unwrap_or(&e.text), &**k),
                    f => panic!("key `{k}` points at a {f:?} entry"),
                }
            }
        }
        for set in &self.substrings {
            assert_eq!(set.ac.patterns_len(), set.hits.len());
            set.hits.iter().for_each(|h| check_hits(h));
            for (id, hits) in set.hits.iter().enumerate() {
                let text = &lists[hits[0].list as usize].entries[hits[0].entry as usize].text;
                assert!(
                    set.may_match(&text.to_ascii_lowercase()),
                    "the prefilter rejects pattern {id} `{text}`"
                );
                for h in hits.iter() {
                    assert!(set.kinds & self.applies[h.list as usize] != 0);
                }
            }
        }
        assert!(self.regexes.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

/// The address of a canonical `ip:port` value (`198.51.100.7:80`, `[2001:db8::1]:443`), as
/// text and parsed.
fn ip_port_address(value: &str) -> Option<(&str, IpAddr)> {
    let (addr, _) = value.rsplit_once(':')?;
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    Some((addr, addr.parse().ok()?))
}

/// The parts of a URL value the lists look at.
struct UrlParts<'a> {
    /// Host: a name, a dotted quad or `[v6]`.
    host: std::borrow::Cow<'a, str>,
    /// Nothing but the host: path `/` or empty, no query, no port.
    host_only: bool,
}

/// Splits a URL value. Canonical values (`scheme://host[:port]/path?query`) are sliced; any
/// other form goes through [`normalize::url`].
fn url_parts(value: &str) -> Option<UrlParts<'_>> {
    if let Some((_, rest)) = value.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let tail = &rest[end..];
        if !authority.contains('@') && !authority.is_empty() {
            let (host, port) = if authority.starts_with('[') {
                match authority.find(']') {
                    Some(i) => (&authority[..=i], &authority[i + 1..]),
                    None => (authority, ""),
                }
            } else {
                match authority.rsplit_once(':') {
                    Some((h, p)) => (h, p),
                    None => (authority, ""),
                }
            };
            if !host.bytes().any(|b| b.is_ascii_uppercase()) {
                return Some(UrlParts {
                    host: std::borrow::Cow::Borrowed(host),
                    host_only: port.is_empty() && (tail.is_empty() || tail == "/"),
                });
            }
        }
    }
    let u = normalize::url(value).ok()?;
    let host_only = u.port.is_none() && u.path == "/" && u.query.is_none();
    Some(UrlParts {
        host: std::borrow::Cow::Owned(u.host),
        host_only,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::indicator::Tlp;

    fn ind(kind: Kind, value: &str) -> Indicator {
        Indicator::new("t", kind, value, Arc::from("test"), Tlp::Green)
    }

    fn list(name: &str, ty: &str, attrs: &[&str], entries: &[&str]) -> String {
        serde_json::json!({
            "name": name, "version": 7, "description": "test", "type": ty,
            "matching_attributes": attrs, "list": entries,
        })
        .to_string()
    }

    fn lists(docs: &[String]) -> Warninglists {
        lists_of(docs)
    }

    fn lists_of(docs: &[String]) -> Warninglists {
        let mut all = Warninglists::default();
        for (i, d) in docs.iter().enumerate() {
            all.extend(Warninglists::parse(&format!("l{i}/list.json"), d.as_bytes()).unwrap());
        }
        all.validate();
        all
    }

    fn hit(wl: &Warninglists, kind: Kind, value: &str) -> Option<(String, String)> {
        wl.check(&ind(kind, value))
            .map(|s| (s.list.to_string(), s.entry.to_string()))
    }

    /// Kind, value, and the expected (list, entry).
    type Case = (Kind, &'static str, Option<(String, String)>);

    fn yes(list: &str, entry: &str) -> Option<(String, String)> {
        Some((list.to_string(), entry.to_string()))
    }

    #[test]
    fn kinds_fit_in_the_mask() {
        for k in Kind::ALL {
            assert!((k as u32) < 32, "{k}");
        }
        assert_eq!(kind_mask(&[]).count_ones() as usize, Kind::ALL.len());
    }

    #[test]
    fn matching_attributes_select_kinds() {
        let attrs = |a: &[&str]| kind_mask(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let cases: [(&[&str], &[Kind], &[Kind]); 4] = [
            (
                &["ip-dst"],
                &[Kind::Ipv4, Kind::Ipv6, Kind::Cidr, Kind::IpPort],
                &[Kind::Domain, Kind::Url],
            ),
            (&["md5"], &[Kind::Md5], &[Kind::Sha1, Kind::Ja3]),
            (&["email-src"], &[Kind::Email], &[Kind::Domain]),
            (
                &["url"],
                &[Kind::Url, Kind::UrlSubstring, Kind::Uri],
                &[Kind::Domain, Kind::Hostname],
            ),
        ];
        for (a, inside, outside) in cases {
            let m = attrs(a);
            for k in inside {
                assert!(m & kind_bit(*k) != 0, "{a:?} should apply to {k}");
            }
            for k in outside {
                assert!(m & kind_bit(*k) == 0, "{a:?} should not apply to {k}");
            }
        }
        // The filter in action: the same value passes when the kind is not listed.
        let wl = lists(&[list(
            "hashes",
            "string",
            &["sha1"],
            &["d41d8cd98f00b204e9800998ecf8427e"],
        )]);
        assert_eq!(
            hit(&wl, Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            None
        );
        let wl = lists(&[list(
            "hashes",
            "string",
            &[],
            &["d41d8cd98f00b204e9800998ecf8427e"],
        )]);
        assert_eq!(
            hit(&wl, Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            yes("hashes", "d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            hit(&wl, Kind::Ja3, "d41d8cd98f00b204e9800998ecf8427e"),
            yes("hashes", "d41d8cd98f00b204e9800998ecf8427e")
        );
    }

    #[test]
    fn string_lists() {
        let wl = lists(&[
            list(
                "tlds",
                "string",
                &[],
                &["COM", ".google.ad", "Mozilla/5.0 X", "http://example.com/A"],
            ),
            list(
                "top",
                "string",
                &["domain", "url", "ip-dst|port", "ip-dst"],
                &["popular.example", "198.51.100.7"],
            ),
        ]);
        let cases: [Case; 12] = [
            (Kind::Domain, "google.ad", yes("tlds", ".google.ad")),
            (Kind::Domain, "www.google.ad", None),
            (
                Kind::Domain,
                "popular.example",
                yes("top", "popular.example"),
            ),
            (Kind::Domain, "sub.popular.example", None),
            (
                Kind::UserAgent,
                "Mozilla/5.0 X",
                yes("tlds", "Mozilla/5.0 X"),
            ),
            (Kind::UserAgent, "mozilla/5.0 x", None),
            (
                Kind::Url,
                "http://example.com/A",
                yes("tlds", "http://example.com/A"),
            ),
            (Kind::Url, "http://example.com/a", None),
            // The host of a URL counts only when the URL is just the host.
            (
                Kind::Url,
                "https://popular.example/",
                yes("top", "popular.example"),
            ),
            (Kind::Url, "https://popular.example/malware.exe", None),
            (Kind::IpPort, "198.51.100.7:443", yes("top", "198.51.100.7")),
            (Kind::Ipv4, "198.51.100.7", yes("top", "198.51.100.7")),
        ];
        for (k, v, want) in cases {
            assert_eq!(hit(&wl, k, v), want, "{k} {v}");
        }
    }

    #[test]
    fn substring_lists() {
        let wl = lists(&[
            list(
                "disposable",
                "substring",
                &["email-src", "domain"],
                &["0-mail.com", "Trash"],
            ),
            list("ua", "substring", &["user-agent"], &["Python-urllib"]),
        ]);
        let cases: [Case; 8] = [
            (
                Kind::Email,
                "someone@0-mail.com",
                yes("disposable", "0-mail.com"),
            ),
            (Kind::Domain, "x0-mail.com", yes("disposable", "0-mail.com")),
            (
                Kind::Domain,
                "trashmail.example",
                yes("disposable", "Trash"),
            ),
            (Kind::Url, "http://0-mail.com/", None),
            (
                Kind::UserAgent,
                "Python-urllib/3.11",
                yes("ua", "Python-urllib"),
            ),
            // User-Agents keep their case.
            (Kind::UserAgent, "python-urllib/3.11", None),
            (Kind::UserAgent, "curl/8", None),
            (Kind::Domain, "0-mail.co", None),
        ];
        for (k, v, want) in cases {
            assert_eq!(hit(&wl, k, v), want, "{k} {v}");
        }
    }

    #[test]
    fn hostname_lists() {
        let wl = lists(&[list(
            "hosts",
            "hostname",
            &["domain", "hostname", "url", "email-src"],
            &[
                ".Update.Example.NET.",
                "bücher.example",
                "local",
                "рф",
                "corona helden",
            ],
        )]);
        assert_eq!(wl.problems().len(), 1, "{:?}", wl.problems());
        assert!(
            wl.problems()[0].contains("entry `corona helden`: not a host name"),
            "{:?}",
            wl.problems()
        );
        let cases: [Case; 11] = [
            (Kind::Domain, "shop.xn--p1ai", yes("hosts", "рф")),
            (
                Kind::Domain,
                "update.example.net",
                yes("hosts", ".Update.Example.NET."),
            ),
            (
                Kind::Hostname,
                "a.b.update.example.net",
                yes("hosts", ".Update.Example.NET."),
            ),
            (Kind::Domain, "xupdate.example.net", None),
            (Kind::Domain, "example.net", None),
            (
                Kind::Domain,
                "shop.xn--bcher-kva.example",
                yes("hosts", "bücher.example"),
            ),
            (Kind::Hostname, "printer.local", yes("hosts", "local")),
            (
                Kind::Url,
                "http://update.example.net/check.php",
                yes("hosts", ".Update.Example.NET."),
            ),
            (
                Kind::Url,
                "https://cdn.update.example.net:8443/x?y=1",
                yes("hosts", ".Update.Example.NET."),
            ),
            (
                Kind::Email,
                "ops@mail.update.example.net",
                yes("hosts", ".Update.Example.NET."),
            ),
            (Kind::Ipv4, "198.51.100.1", None),
        ];
        for (k, v, want) in cases {
            assert_eq!(hit(&wl, k, v), want, "{k} {v}");
        }
    }

    #[test]
    fn cidr_lists() {
        let wl = lists(&[
            list(
                "resolvers",
                "cidr",
                &["ip-dst", "ip-dst|port"],
                &[
                    "198.51.100.53",
                    "2001:db8:53::/48",
                    "not-an-ip",
                    "10.0.0.0/33",
                ],
            ),
            list(
                "wide",
                "cidr",
                &["ip-src", "ip-dst", "url"],
                &["198.51.100.0/24", "203.0.113.0/28", "::ffff:192.0.2.0/120"],
            ),
            list("src-only", "cidr", &["ip-src|port"], &["192.0.2.0/24"]),
        ]);
        assert_eq!(wl.problems().len(), 2, "{:?}", wl.problems());
        assert!(wl.problems()[0].starts_with("list resolvers (version 7): entry `not-an-ip`: "));
        let cases: [Case; 13] = [
            (
                Kind::Ipv4,
                "198.51.100.53",
                yes("resolvers", "198.51.100.53"),
            ),
            (Kind::Ipv4, "198.51.100.54", yes("wide", "198.51.100.0/24")),
            (
                Kind::IpPort,
                "198.51.100.53:53",
                yes("resolvers", "198.51.100.53"),
            ),
            (
                Kind::IpPort,
                "[2001:db8:53::1]:53",
                yes("resolvers", "2001:db8:53::/48"),
            ),
            (
                Kind::Ipv6,
                "2001:db8:53:ffff::1",
                yes("resolvers", "2001:db8:53::/48"),
            ),
            (Kind::Ipv6, "2001:db8:54::1", None),
            (
                Kind::Cidr,
                "198.51.100.0/25",
                yes("wide", "198.51.100.0/24"),
            ),
            (Kind::Cidr, "203.0.113.0/24", None),
            (
                Kind::Cidr,
                "2001:db8:53:1::/64",
                yes("resolvers", "2001:db8:53::/48"),
            ),
            (Kind::Ipv4, "192.0.2.9", yes("wide", "::ffff:192.0.2.0/120")),
            (
                Kind::Url,
                "http://198.51.100.9/x",
                yes("wide", "198.51.100.0/24"),
            ),
            (Kind::Ipv4, "203.0.113.16", None),
            (Kind::Domain, "198.51.100.53.example", None),
        ];
        for (k, v, want) in cases {
            assert_eq!(hit(&wl, k, v), want, "{k} {v}");
        }
    }

    #[test]
    fn pcre_patterns_translate() {
        let cases: [(&str, Result<&str, &str>); 11] = [
            (
                r"/^(abuse|noc)@example\.(com|org)$/i",
                Ok(r"(?i)^(abuse|noc)@example\.(com|org)$"),
            ),
            (
                r"/((?:\+|00)1)?55501([0-9]{2})/g",
                Ok(r"((?:\+|00)1)?55501([0-9]{2})"),
            ),
            (r"#a/b#ms", Ok("(?ms)a/b")),
            (r"/a\/b/", Ok(r"a\/b")),
            (r"/\<a\>\Z/", Ok(r"<a>\z")),
            (r"{a{1,2}}x", Ok("(?x)a{1,2}")),
            (r"/abc/A", Ok(r"\A(?:abc)")),
            (r"^bare$", Ok("^bare$")),
            (r"abc", Ok("abc")),
            (r"/abc", Err("no ending delimiter `/`")),
            (r"/abc/q", Err("unknown pattern flag `q`")),
        ];
        for (input, want) in cases {
            assert_eq!(
                translate_pcre(input).as_deref(),
                want.map_err(|e| e.to_string()).as_deref(),
                "{input}"
            );
        }
    }

    #[test]
    fn regex_lists() {
        let wl = lists(&[list(
            "roles",
            "regex",
            &["email-src", "email-dst"],
            &[
                r"/^(abuse|noc|security|postmaster)@example\.(com|net|org)$/i",
                r"/^(security|noc|soc|abuse)\@.*\..*$/i",
                r"/^(?=admin)admin@/",
                r"/(a)\1/",
            ],
        )]);
        assert_eq!(wl.problems().len(), 2, "{:?}", wl.problems());
        assert!(
            wl.problems().iter().all(|p| p.contains("E_WL_REGEX")),
            "{:?}",
            wl.problems()
        );
        assert!(
            wl.problems()[0].starts_with("list roles (version 7): entry `/^(?=admin)admin@/`: ")
        );
        assert_eq!(
            wl.lists().next().map(|l| (l.entries, l.skipped)),
            Some((2, 2))
        );
        let cases: [Case; 5] = [
            (
                Kind::Email,
                "abuse@example.com",
                yes(
                    "roles",
                    r"/^(abuse|noc|security|postmaster)@example\.(com|net|org)$/i",
                ),
            ),
            (
                Kind::Email,
                "SOC@corp.example",
                yes("roles", r"/^(security|noc|soc|abuse)\@.*\..*$/i"),
            ),
            (Kind::Email, "phisher@example.org", None),
            // Not an e-mail kind: the list does not apply.
            (Kind::UserAgent, "abuse@example.com", None),
            (
                Kind::Email,
                "noc@example.net",
                yes(
                    "roles",
                    r"/^(abuse|noc|security|postmaster)@example\.(com|net|org)$/i",
                ),
            ),
        ];
        for (k, v, want) in cases {
            assert_eq!(hit(&wl, k, v), want, "{k} {v}");
        }
    }

    #[test]
    fn first_list_in_load_order_wins() {
        let wl = lists(&[
            list("a-hostname", "hostname", &[], &["example.net"]),
            list("b-string", "string", &[], &["www.example.net"]),
            list("c-cidr", "cidr", &[], &["198.51.100.0/24"]),
            list("d-cidr", "cidr", &[], &["198.51.100.0/28"]),
            list("e-substring", "substring", &[], &["example"]),
        ]);
        assert_eq!(
            hit(&wl, Kind::Domain, "www.example.net"),
            yes("a-hostname", "example.net")
        );
        assert_eq!(
            hit(&wl, Kind::Ipv4, "198.51.100.1"),
            yes("c-cidr", "198.51.100.0/24")
        );
        assert_eq!(
            hit(&wl, Kind::Domain, "example.org"),
            yes("e-substring", "example")
        );
        let wl = lists(&[
            list("d-cidr", "cidr", &[], &["198.51.100.0/28"]),
            list("c-cidr", "cidr", &[], &["198.51.100.0/24"]),
        ]);
        assert_eq!(
            hit(&wl, Kind::Ipv4, "198.51.100.1"),
            yes("d-cidr", "198.51.100.0/28")
        );
        // The /24 network lies in c-cidr only.
        assert_eq!(
            hit(&wl, Kind::Cidr, "198.51.100.0/24"),
            yes("c-cidr", "198.51.100.0/24")
        );
    }

    #[test]
    fn list_files_are_validated() {
        let cases: [(&str, &str); 9] = [
            ("not json", "not a JSON document"),
            ("[]", "a warninglist is a JSON object, found an array"),
            (r#"{"version": 1, "list": []}"#, "no `name`"),
            (r#"{"name": "x", "list": []}"#, "no `version`"),
            (
                r#"{"name": "x", "version": "v2", "list": []}"#,
                "`version` must be a non-negative integer",
            ),
            (r#"{"name": "x", "version": 1}"#, "no `list`"),
            (
                r#"{"name": "x", "version": 1, "list": "a"}"#,
                "`list` must be an array of strings or an object, found a string",
            ),
            (
                r#"{"name": "x", "version": 1, "type": "glob", "list": []}"#,
                "unknown `type` \"glob\"",
            ),
            (
                r#"{"name": "x", "version": 1, "matching_attributes": "md5", "list": []}"#,
                "`matching_attributes` must be an array",
            ),
        ];
        for (json, want) in cases {
            let e = Warninglists::parse("bad/list.json", json.as_bytes()).unwrap_err();
            assert_eq!(e.path, "bad/list.json");
            assert!(e.reason.contains(want), "{json}: {e}");
            assert!(e.to_string().starts_with("bad/list.json: "), "{e}");
        }
    }

    #[test]
    fn lenient_forms_are_accepted() {
        // No type (string), an object list, a numeric-string version, a non-string entry.
        let wl = Warninglists::parse(
            "x/list.json",
            br#"{"name": "x", "version": "3", "list": {"a.example": "comment", "b.example": ""}}"#,
        )
        .unwrap();
        let s: Vec<_> = wl.lists().collect();
        assert_eq!(
            (s[0].version, s[0].list_type, s[0].entries),
            (3, ListType::String, 2)
        );
        assert_eq!(hit(&wl, Kind::Domain, "b.example"), yes("x", "b.example"));
        let wl = Warninglists::parse(
            "y/list.json",
            br#"{"name": "y", "version": 1, "list": ["a", 5, ""]}"#,
        )
        .unwrap();
        assert_eq!(
            wl.problems(),
            [
                "list y (version 1): entry `5`: not a string",
                "list y (version 1): entry ``: empty entry"
            ]
        );
    }

    #[test]
    fn higher_version_replaces_lower() {
        let v = |n: u64, entry: &str| {
            serde_json::json!({"name": "dup", "version": n, "type": "string", "list": [entry]})
                .to_string()
        };
        let mut wl = Warninglists::parse("a/list.json", v(2, "a.example").as_bytes()).unwrap();
        wl.extend(Warninglists::parse("b/list.json", v(1, "b.example").as_bytes()).unwrap());
        wl.extend(Warninglists::parse("c/list.json", v(3, "c.example").as_bytes()).unwrap());
        assert_eq!(wl.len(), 1);
        assert_eq!(
            wl.lists().next().map(|l| (l.version, l.path)),
            Some((3, "c/list.json"))
        );
        assert_eq!(hit(&wl, Kind::Domain, "a.example"), None);
        assert_eq!(hit(&wl, Kind::Domain, "c.example"), yes("dup", "c.example"));
        assert_eq!(wl.problems().len(), 2, "{:?}", wl.problems());
        assert!(
            wl.problems()[0].contains("(version 1) from b/list.json ignored"),
            "{:?}",
            wl.problems()
        );
    }

    #[test]
    fn empty_set_suppresses_nothing() {
        let wl = Warninglists::default();
        assert!(wl.is_empty());
        assert_eq!(wl.check(&ind(Kind::Ipv4, "198.51.100.1")), None);
        wl.validate();
    }

    #[test]
    fn range_table_handles_the_whole_address_space() {
        let h = |list| Hit { list, entry: 0 };
        let t = RangeTable::build(vec![
            (0, u32::MAX, h(1)),
            (u32::MAX - 1, u32::MAX, h(0)),
            (0, 0, h(2)),
        ]);
        t.validate();
        let lists = |a, b| t.covering(a, b).map(|h| h.list).collect::<Vec<_>>();
        assert_eq!(lists(0, 0), [1, 2]);
        assert_eq!(lists(0, 1), [1]);
        assert_eq!(lists(0x8000_0000, 0x8000_0000), [1]);
        assert_eq!(lists(u32::MAX, u32::MAX), [0, 1]);
        assert_eq!(lists(u32::MAX - 2, u32::MAX), [1]);
        let t6 = RangeTable::build(vec![(u128::MAX, u128::MAX, h(3))]);
        t6.validate();
        assert_eq!(t6.covering(u128::MAX, u128::MAX).count(), 1);
        assert_eq!(t6.covering(u128::MAX - 1, u128::MAX - 1).count(), 0);
    }

    /// Whether a list entry of type `ty` covers a (lower-case) domain, by the definitions of
    /// FORMATS.md §2.2.
    fn naive_covers(ty: &str, entry: &str, value: &str) -> bool {
        let host = entry.trim_matches('.').to_ascii_lowercase();
        match ty {
            "string" => value == host,
            "substring" => value.contains(&entry.to_ascii_lowercase()),
            "hostname" => value == host || value.ends_with(&format!(".{host}")),
            _ => false,
        }
    }

    proptest::proptest! {
        /// Domains against string, substring and hostname lists agree with the definitions,
        /// prefilters (key filter, gram set) notwithstanding.
        #[test]
        fn domain_checks_match_naive(
            order in proptest::sample::select(vec![
                ["string", "substring", "hostname"],
                ["hostname", "string", "substring"],
                ["substring", "hostname", "string"],
            ]),
            entries in proptest::collection::vec(
                proptest::collection::vec("[ab]{1,3}(\\.[ab]{1,3}){0,2}", 1..6), 3),
            long_substrings in proptest::bool::ANY,
            values in proptest::collection::vec("[ab]{1,3}(\\.[ab]{1,3}){1,3}", 1..24),
        ) {
            let lists: Vec<(&str, Vec<String>)> = order
                .iter()
                .zip(entries)
                .map(|(ty, mut es)| {
                    if *ty == "substring" && long_substrings {
                        // At least GRAM bytes: the gram prefilter is in play.
                        es.iter_mut().for_each(|e| while e.len() < GRAM { e.push('a') });
                    }
                    if *ty != "substring" {
                        es.iter_mut().for_each(|e| if e.len() % 2 == 0 { *e = e.to_uppercase() });
                    }
                    (*ty, es)
                })
                .collect();
            let docs: Vec<String> = lists
                .iter()
                .map(|(ty, es)| {
                    let es: Vec<&str> = es.iter().map(String::as_str).collect();
                    list(ty, ty, &["domain"], &es)
                })
                .collect();
            let wl = lists_of(&docs);
            for v in values {
                // The first list in load order with a covering entry; which of its entries
                // is reported is the index's choice, but it must cover the value.
                let want = lists
                    .iter()
                    .find(|(ty, es)| es.iter().any(|e| naive_covers(ty, e, &v)))
                    .map(|(ty, _)| *ty);
                let got = hit(&wl, Kind::Domain, &v);
                proptest::prop_assert_eq!(got.as_ref().map(|g| g.0.as_str()), want, "{}", v);
                if let (Some((_, entry)), Some(ty)) = (&got, want) {
                    proptest::prop_assert!(naive_covers(ty, entry, &v), "{} by {}", v, entry);
                }
            }
        }

        /// The segment table agrees with a linear scan over the ranges, at scales that keep
        /// everything in one directory bucket or spread it over many.
        #[test]
        fn range_table_matches_naive(
            scale in proptest::sample::select(vec![1u32, 16_383, 0x0100_0001]),
            ranges in proptest::collection::vec((0u32..64, 0u32..16, 0u32..4), 0..24),
            probes in proptest::collection::vec((0u32..80, 0u32..8), 1..32),
        ) {
            let ranges: Vec<(u32, u32, Hit)> = ranges
                .iter()
                .enumerate()
                .map(|(i, &(a, len, list))| {
                    (a * scale, (a + len) * scale, Hit { list, entry: i as u32 })
                })
                .collect();
            let table = RangeTable::build(ranges.clone());
            table.validate();
            for (a, len) in probes {
                let (a, b) = (a * scale, (a + len) * scale);
                let got: Vec<u32> = table.covering(a, b).map(|h| h.list).collect();
                let mut want: Vec<u32> = ranges
                    .iter()
                    .filter(|r| r.0 <= a && r.1 >= b)
                    .map(|r| r.2.list)
                    .collect();
                want.sort_unstable();
                want.dedup();
                proptest::prop_assert_eq!(got, want, "[{}, {}]", a, b);
            }
        }
    }
}
