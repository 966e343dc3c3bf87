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
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use ipnet::IpNet;
use rayon::prelude::*;
use regex::Regex;
use serde_json::Value;

mod index;
mod parse;
mod pcre;
#[cfg(test)]
mod tests;

use index::*;
use parse::*;
use pcre::*;

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
