//! MISP warninglists (FORMATS.md §2).

use std::path::Path;

use crate::indicator::Indicator;

/// A warninglist could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct WarninglistError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
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

/// A set of loaded warninglists.
#[derive(Debug, Default)]
pub struct Warninglists {}

impl Warninglists {
    /// Loads a `list.json`, or every `list.json` below a directory.
    pub fn load(_path: &Path) -> Result<Warninglists, WarninglistError> {
        Ok(Warninglists {})
    }

    /// Parses one `list.json` held in memory; `name` is used in errors.
    pub fn from_json(_name: &str, _bytes: &[u8]) -> Result<Warninglists, WarninglistError> {
        Ok(Warninglists {})
    }

    /// Adds every list of `other`.
    pub fn extend(&mut self, _other: Warninglists) {}

    /// Entries that could not be used (a regex the engine cannot run, a malformed CIDR), one
    /// line each naming list, entry and reason.
    pub fn problems(&self) -> &[String] {
        &[]
    }

    /// The first list (in load order) that suppresses the indicator.
    pub fn check(&self, _indicator: &Indicator) -> Option<Suppression<'_>> {
        None
    }
}
