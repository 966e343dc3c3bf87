//! `sync.toml`: the sources `cwn sync` follows and what it does with them, parsed and checked
//! without I/O as `hub.toml` is (every problem at once, each naming the file, line and key,
//! an unknown key with the closest known one). Relative paths are taken relative to the
//! file's directory. `data/sync.example.toml` documents each key.
//!
//! ```
//! use cwn::sync::config::SyncConfig;
//!
//! let err = SyncConfig::from_toml(r#"
//! state_dir = "var/sync"
//! [[source]]
//! name = "circl"
//! kind = "misp-feed"
//! url = "https://www.circl.lu/doc/misp/feed-osint/"
//! timout = "30s"
//! "#, "sync.toml", "/etc/cwn".as_ref()).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "sync.toml:7: source.timout: unknown key (did you mean timeout?)"
//! );
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::indicator::{Kind, Tlp};
use crate::net::config::{
    ConfigError, ConfigProblem, KnownKeys, Problems, parse_checked, parse_duration, parse_size,
    read_config,
};

/// What a source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A MISP feed: `manifest.json` and one `<uuid>.json` per event, as MISP's own feed
    /// fetcher reads it.
    MispFeed,
    /// A TAXII 2.1 collection, read with `added_after` and paging.
    Taxii,
    /// A plain or CSV list: a URL, a local file or a directory of lists.
    List,
}

impl SourceKind {
    /// The name used in `sync.toml` (`kind = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::MispFeed => "misp-feed",
            SourceKind::Taxii => "taxii",
            SourceKind::List => "list",
        }
    }
}

/// One `[[source]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// Unique name: the directory of its state, and what logs and the status name it by.
    pub name: String,
    /// What it is.
    pub kind: SourceKind,
    /// Where: `http(s)://` for every kind; for a list also a local path or `file://`. For a
    /// MISP feed the directory holding `manifest.json`; for TAXII the discovery URL or an API
    /// root.
    pub url: String,
    /// TAXII: the collection to read, by id or title.
    pub collection: Option<String>,
    /// Longest a request may take, whole (default 60 s).
    pub timeout: Duration,
    /// Largest response accepted (default 256 MiB): a bigger one fails the source this cycle.
    pub max_size: u64,
    /// TLP of list indicators that carry none (default GREEN).
    pub tlp: Tlp,
    /// The kind of every value of a list (instead of guessing it per value).
    pub list_kind: Option<Kind>,
    /// HTTP basic authentication: the user.
    pub username: Option<String>,
    /// HTTP basic authentication: a file holding the password (a trailing newline is ignored).
    pub password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) to verify the server with, instead of the public web roots.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that require one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// `sync.toml`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// Where every source's last good state, the published chain and the status are kept.
    pub state_dir: PathBuf,
    /// Time between the start of two cycles (default 5 min).
    pub interval: Duration,
    /// After this many deltas a full snapshot is published and later deltas build on it
    /// (default 288: daily at the default interval).
    pub compact_every: u32,
    /// The Ed25519 key that signs every snapshot and delta.
    pub sign_key: Option<PathBuf>,
    /// Arm TLP:RED indicators.
    pub arm_red: bool,
    /// MISP warninglists (files or directories) whose entries are dropped, as `cwn ingest
    /// --warninglists`.
    pub warninglists: Vec<PathBuf>,
    /// The sources, in file order.
    pub sources: Vec<SourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    state_dir: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    compact_every: Option<Spanned<i64>>,
    #[serde(default)]
    sign_key: Option<Spanned<String>>,
    #[serde(default)]
    arm_red: bool,
    #[serde(default)]
    warninglists: Vec<Spanned<String>>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    kind: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    collection: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    max_size: Option<Spanned<String>>,
    #[serde(default)]
    tlp: Option<Spanned<String>>,
    #[serde(default)]
    list_kind: Option<Spanned<String>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    password_file: Option<Spanned<String>>,
    #[serde(default)]
    ca: Option<Spanned<String>>,
    #[serde(default)]
    client_cert: Option<Spanned<String>>,
    #[serde(default)]
    client_key: Option<Spanned<String>>,
}

const KEYS: KnownKeys = &[
    (
        "",
        &[
            "state_dir",
            "interval",
            "compact_every",
            "sign_key",
            "arm_red",
            "warninglists",
        ],
    ),
    (
        "source",
        &[
            "name",
            "kind",
            "url",
            "collection",
            "timeout",
            "max_size",
            "tlp",
            "list_kind",
            "username",
            "password_file",
            "ca",
            "client_cert",
            "client_key",
        ],
    ),
];

impl SyncConfig {
    /// Parses and checks `text`; `file` names it in messages and `base` is the directory
    /// relative paths are resolved against. Touches no file.
    ///
    /// # Errors
    /// Every problem found: TOML syntax, unknown or missing keys (with a suggestion), values
    /// of the wrong type, unknown kinds or TLP levels, URLs that are not `http(s)://` where
    /// one is needed, duplicate source names, a client certificate without its key.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<SyncConfig, ConfigError> {
        let (raw, mut p): (Raw, _) = parse_checked(text, file, KEYS)?;
        let path = |s: &Spanned<String>, key: &str, p: &mut Problems<'_>| {
            let v = s.get_ref().trim();
            if v.is_empty() {
                p.at(s.span(), key, "empty path");
            }
            base.join(v)
        };
        let state_dir = path(&raw.state_dir, "state_dir", &mut p);
        let mut interval = Duration::from_secs(300);
        if let Some(v) = &raw.interval {
            match parse_duration(v.get_ref()) {
                Ok(d) if d >= Duration::from_secs(1) => interval = d,
                Ok(_) => p.at(v.span(), "interval", "must be at least 1s"),
                Err(m) => p.at(v.span(), "interval", m),
            }
        }
        let mut compact_every = 288;
        if let Some(v) = &raw.compact_every {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if n >= 1 => compact_every = n,
                _ => p.at(v.span(), "compact_every", "must be at least 1"),
            }
        }
        let sign_key = raw.sign_key.as_ref().map(|s| path(s, "sign_key", &mut p));
        let warninglists = raw
            .warninglists
            .iter()
            .map(|s| path(s, "warninglists", &mut p))
            .collect();
        let mut sources: Vec<SourceConfig> = Vec::new();
        for s in &raw.source {
            let span = s.span();
            let s = s.get_ref();
            let name = s.name.get_ref().trim().to_string();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                || name.starts_with('.')
            {
                p.at(
                    s.name.span(),
                    "source.name",
                    "must be letters, digits, '-', '_' or '.' (it names a directory)",
                );
            } else if sources.iter().any(|o| o.name == name) {
                p.at(
                    s.name.span(),
                    "source.name",
                    format!("{name:?} is used twice"),
                );
            }
            let kind = match s.kind.get_ref().trim() {
                "misp-feed" => Some(SourceKind::MispFeed),
                "taxii" => Some(SourceKind::Taxii),
                "list" => Some(SourceKind::List),
                other => {
                    p.at(
                        s.kind.span(),
                        "source.kind",
                        format!("{other:?} is not a kind (misp-feed, taxii or list)"),
                    );
                    None
                }
            };
            let url = s.url.get_ref().trim().to_string();
            let web = url.starts_with("http://") || url.starts_with("https://");
            match kind {
                Some(SourceKind::List) if url.is_empty() => {
                    p.at(s.url.span(), "source.url", "empty")
                }
                Some(SourceKind::MispFeed | SourceKind::Taxii) if !web => p.at(
                    s.url.span(),
                    "source.url",
                    format!("{url:?} is not an http:// or https:// URL"),
                ),
                _ => {}
            }
            // A local list is a path relative to the file, like every other path.
            let url = if kind == Some(SourceKind::List) && !web {
                let local = url.strip_prefix("file://").unwrap_or(&url);
                base.join(local).display().to_string()
            } else {
                url
            };
            let collection = s
                .collection
                .as_ref()
                .map(|c| c.get_ref().trim().to_string());
            if kind == Some(SourceKind::Taxii) && collection.as_deref().is_none_or(str::is_empty) {
                p.at(
                    span.clone(),
                    "source.collection",
                    "a taxii source names its collection (id or title)",
                );
            }
            let mut timeout = Duration::from_secs(60);
            if let Some(v) = &s.timeout {
                match parse_duration(v.get_ref()) {
                    Ok(d) if !d.is_zero() => timeout = d,
                    Ok(_) => p.at(v.span(), "source.timeout", "must be more than zero"),
                    Err(m) => p.at(v.span(), "source.timeout", m),
                }
            }
            let mut max_size = 256 << 20;
            if let Some(v) = &s.max_size {
                match parse_size(v.get_ref()) {
                    Ok(n) if n >= 1 << 10 => max_size = n,
                    Ok(_) => p.at(v.span(), "source.max_size", "must be at least 1KiB"),
                    Err(m) => p.at(v.span(), "source.max_size", m),
                }
            }
            let tlp = match &s.tlp {
                None => Tlp::Green,
                Some(v) => v.get_ref().trim().parse::<Tlp>().unwrap_or_else(|m| {
                    p.at(v.span(), "source.tlp", m);
                    Tlp::Green
                }),
            };
            let list_kind = s.list_kind.as_ref().and_then(|v| {
                v.get_ref()
                    .trim()
                    .parse::<Kind>()
                    .map_err(|m| p.at(v.span(), "source.list_kind", m))
                    .ok()
            });
            let opt_path = |v: &Option<Spanned<String>>, key: &str, p: &mut Problems<'_>| {
                v.as_ref().map(|s| path(s, key, p))
            };
            let client_cert = match (
                opt_path(&s.client_cert, "source.client_cert", &mut p),
                opt_path(&s.client_key, "source.client_key", &mut p),
            ) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    p.at(
                        span.clone(),
                        "source.client_cert",
                        "client_cert and client_key go together",
                    );
                    None
                }
            };
            let password_file = opt_path(&s.password_file, "source.password_file", &mut p);
            let username = s.username.as_ref().map(|u| u.get_ref().clone());
            if username.is_some() != password_file.is_some() {
                p.at(
                    span.clone(),
                    "source.username",
                    "username and password_file go together",
                );
            }
            if let Some(kind) = kind {
                sources.push(SourceConfig {
                    name,
                    kind,
                    url,
                    collection,
                    timeout,
                    max_size,
                    tlp,
                    list_kind,
                    username,
                    password_file,
                    ca: opt_path(&s.ca, "source.ca", &mut p),
                    client_cert,
                });
            }
        }
        if raw.source.is_empty() {
            p.list.push(ConfigProblem {
                line: None,
                key: "source".into(),
                message: "no [[source]]: nothing to follow".into(),
            });
        }
        p.finish(file)?;
        Ok(SyncConfig {
            state_dir,
            interval,
            compact_every,
            sign_key,
            arm_red: raw.arm_red,
            warninglists,
            sources,
        })
    }

    /// Reads and checks a configuration file (relative paths against its directory).
    ///
    /// # Errors
    /// The file cannot be read, or [`from_toml`](Self::from_toml) finds problems.
    pub fn load(file: &Path) -> Result<SyncConfig, ConfigError> {
        let (text, name, base) = read_config(file)?;
        Self::from_toml(&text, &name, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_of_a_file_is_named_at_once() {
        let text = r#"
state_dir = "var"
interval = "soon"
[[source]]
name = "a"
kind = "misp-feed"
url = "ftp://x"
[[source]]
name = "a"
kind = "rss"
url = "https://x"
[[source]]
name = "t"
kind = "taxii"
url = "https://taxii.example/taxii2/"
client_cert = "c.pem"
"#;
        let e = SyncConfig::from_toml(text, "sync.toml", Path::new("/etc"))
            .unwrap_err()
            .to_string();
        for want in [
            "sync.toml:3: interval:",
            "sync.toml:7: source.url: \"ftp://x\" is not an http:// or https:// URL",
            "sync.toml:9: source.name: \"a\" is used twice",
            "sync.toml:10: source.kind: \"rss\" is not a kind",
            "source.collection: a taxii source names its collection",
            "source.client_cert: client_cert and client_key go together",
        ] {
            assert!(e.contains(want), "{want:?} missing from:\n{e}");
        }
    }

    #[test]
    fn a_good_file_resolves_paths_and_defaults() {
        let text = r#"
state_dir = "var/sync"
sign_key = "keys/cwn-signing.pem"
[[source]]
name = "maltrail"
kind = "list"
url = "trails/static"
tlp = "clear"
[[source]]
name = "ncsc"
kind = "taxii"
url = "https://taxii.example/taxii2/"
collection = "indicators"
username = "cwn"
password_file = "secrets/taxii"
"#;
        let c = SyncConfig::from_toml(text, "sync.toml", Path::new("/etc/cwn")).unwrap();
        assert_eq!(c.state_dir, Path::new("/etc/cwn/var/sync"));
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.sources[0].url, "/etc/cwn/trails/static");
        assert_eq!(c.sources[0].tlp, Tlp::Clear);
        assert_eq!(c.sources[1].collection.as_deref(), Some("indicators"));
        assert_eq!(
            c.sources[1].password_file.as_deref(),
            Some(Path::new("/etc/cwn/secrets/taxii"))
        );
    }

    #[test]
    fn the_annotated_example_is_a_valid_configuration() {
        let text = include_str!("../../data/sync.example.toml");
        let c = SyncConfig::from_toml(text, "sync.example.toml", Path::new("/srv/cwn")).unwrap();
        assert_eq!(c.sources.len(), 4);
        assert_eq!(c.sources[1].kind, SourceKind::Taxii);
        assert_eq!(c.sources[2].list_kind, Some(Kind::Ipv4));
    }
}
