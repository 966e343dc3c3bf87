//! The hub's configuration file (`hub.toml`): parsing and validation, with no I/O and no async
//! runtime, so that `cwn config check` and tests use exactly what `cwn serve` uses.
//!
//! Every problem names the file, the line and the key path, and an unknown key suggests the
//! closest known one: `hub.toml:7: limits.max_conections: unknown key (did you mean
//! max_connections?)`. All problems of a file are reported at once. Relative paths are taken
//! relative to the directory of the configuration file. `data/hub.example.toml` documents each
//! key.
//!
//! ```
//! use cwn::net::config::HubConfig;
//!
//! let cfg = HubConfig::from_toml(r#"
//! listen = "127.0.0.1:4433"
//! registry = "registry.toml"
//! data_dir = "var"
//! [tls]
//! cert = "pki/hub.pem"
//! key = "pki/hub.key"
//! ca = "pki/ca.pem"
//! [snapshot]
//! verify_key = "keys/cwn-verify.pem"
//! [limits]
//! max_conections = 10
//! "#, "hub.toml", "/etc/cwn".as_ref()).unwrap_err();
//! assert_eq!(
//!     cfg.to_string(),
//!     "hub.toml:12: limits.max_conections: unknown key (did you mean max_connections?)"
//! );
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path, e.g. `limits.max_connections` (empty for the whole file).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as named by the caller.
    pub file: String,
    /// The problems, in file order.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match p.line {
                Some(l) => write!(f, "{}:{l}: ", self.file)?,
                None => write!(f, "{}: ", self.file)?,
            }
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// TLS identity of the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The hub's certificate (PEM, may hold the chain).
    pub cert: PathBuf,
    /// The hub's private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The network CA: client certificates must chain to it.
    pub ca: PathBuf,
}

/// Which snapshot the hub matches with and how pushed ones are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// The snapshot loaded at start and replaced by accepted pushes (optional: a hub may start
    /// empty and wait for a publisher).
    pub path: Option<PathBuf>,
    /// The publisher's Ed25519 public key: every snapshot, loaded or pushed, must verify.
    pub verify_key: PathBuf,
    /// The hub's own Ed25519 signing key for the clearance cuts partners pull; unsigned cuts
    /// when absent.
    pub sign_key: Option<PathBuf>,
}

/// Limits and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are refused.
    pub max_connections: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// QUIC keep-alive interval (below the idle timeout).
    pub keep_alive_interval: Duration,
    /// Notifications sent to one subscriber and not yet acknowledged.
    pub queue_size: usize,
    /// Per-connection QUIC send window, bytes.
    pub send_window: u64,
    /// Notifications older than this are deleted from the logs even if unacknowledged.
    pub retention_age: Duration,
    /// Bytes kept per entity log; the oldest segments go first.
    pub retention_bytes: u64,
    /// Decompressed bytes of one telemetry batch (its Arrow buffers after zstd or LZ4); a
    /// batch that would expand past it is refused before it is expanded.
    pub max_batch_bytes: u64,
    /// Connections one entity (one certificate) may hold at once; more are refused, so that
    /// no one participant can take every slot.
    pub max_connections_per_entity: usize,
    /// A connection that has not sent its first request (`Hello`) within this is closed;
    /// keep-alives do not count.
    pub first_request_timeout: Duration,
    /// How often the hits of partners' telemetry go to the publisher as aggregated
    /// sightings (counts per indicator, partner and UTC day; never rows).
    pub sightings_interval: Duration,
    /// Distinct indicators a partner may learn of through its own telemetry per UTC day;
    /// further hits are withheld from it (not from victims) and audited.
    pub max_indicators_per_partner_day: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(10),
            queue_size: 1024,
            send_window: 1 << 20,
            retention_age: Duration::from_secs(30 * 86_400),
            retention_bytes: 1 << 30,
            max_batch_bytes: 64 << 20,
            max_connections_per_entity: 8,
            first_request_timeout: Duration::from_secs(10),
            sightings_interval: Duration::from_secs(60),
            max_indicators_per_partner_day: 50_000,
        }
    }
}

/// A validated hub configuration, paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// The entity registry (TOML).
    pub registry: PathBuf,
    /// Where notification logs and offsets live.
    pub data_dir: PathBuf,
    /// Arm TLP:RED indicators for routing (FORMATS.md §4.4; default off).
    pub arm_red: bool,
    /// TCP address of the HTTP status page, if any.
    pub status_listen: Option<SocketAddr>,
    /// The hub's TLS identity.
    pub tls: TlsConfig,
    /// Snapshot handling.
    pub snapshot: SnapshotConfig,
    /// Limits and timers.
    pub limits: Limits,
    /// The disclosure audit log (JSON lines); `DATA_DIR/audit.jsonl` by default.
    pub audit_log: PathBuf,
    /// Run with a registry that names no publisher. Internal cases (TLP:AMBER+STRICT, MISP
    /// distribution 0/1, hits that reach nobody) then go to nobody and are only written to
    /// the audit log. Off by default: such a registry is refused.
    pub allow_no_publisher: bool,
    /// `[cluster]`: the hub's notifications, acked offsets and numbering on NATS JetStream
    /// (this process one edge of many); `None`: the embedded file store in `data_dir`.
    pub cluster: Option<ClusterConfig>,
    /// `[retro]`: partner batches kept for retro-hunts when a delta adds indicators; `None`:
    /// nothing kept.
    pub retro: Option<RetroConfig>,
}

/// `[retro]` of `hub.toml`: partner telemetry kept for retro-hunts (off without the table:
/// keeping partners' telemetry is a decision for the operator and the partners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetroConfig {
    /// How long each batch is kept after it came (`keep`, e.g. "7d").
    pub keep: Duration,
    /// Bytes kept at most (`max_size`, e.g. "10GiB"); the oldest batches go first.
    pub max_bytes: u64,
}

impl Default for RetroConfig {
    fn default() -> Self {
        RetroConfig {
            keep: Duration::from_secs(7 * 86_400),
            max_bytes: 10 << 30,
        }
    }
}

/// `[cluster]` of `hub.toml`: where the hub's store lives on NATS JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://HOST:PORT`), tried in turn and failed over between.
    pub nats: Vec<String>,
    /// Replicas of the stream and buckets: 3 in production (1 for a single test server).
    pub replicas: usize,
    /// The notification stream (`CWN_N`).
    pub stream: String,
    /// Notification subjects are `PREFIX.<entity number>` (`cwn.n`).
    pub subject_prefix: String,
    /// KV bucket of acked offsets (`CWN_ACKED`).
    pub acked_bucket: String,
    /// KV bucket of entity numbers (`CWN_ENTITIES`).
    pub entities_bucket: String,
    /// A NATS credentials file (JWT and NKey seed, as `nsc` writes it) to authenticate with.
    pub credentials: Option<PathBuf>,
    /// CA certificate (PEM) that NATS servers' TLS certificates are checked against; given,
    /// TLS is required.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that verify clients (`tls { verify: true }`).
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Spanned<String>,
    registry: Spanned<String>,
    data_dir: Spanned<String>,
    #[serde(default)]
    arm_red: bool,
    #[serde(default)]
    allow_no_publisher: bool,
    #[serde(default)]
    status_listen: Option<Spanned<String>>,
    #[serde(default)]
    audit_log: Option<Spanned<String>>,
    tls: RawTls,
    snapshot: RawSnapshot,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    cluster: Option<RawCluster>,
    #[serde(default)]
    retro: Option<RawRetro>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetro {
    #[serde(default)]
    keep: Option<Spanned<String>>,
    #[serde(default)]
    max_size: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    nats: Spanned<Vec<String>>,
    #[serde(default)]
    replicas: Option<Spanned<i64>>,
    #[serde(default)]
    stream: Option<Spanned<String>>,
    #[serde(default)]
    subject_prefix: Option<Spanned<String>>,
    #[serde(default)]
    acked_bucket: Option<Spanned<String>>,
    #[serde(default)]
    credentials: Option<Spanned<String>>,
    #[serde(default)]
    tls_ca: Option<Spanned<String>>,
    #[serde(default)]
    tls_cert: Option<Spanned<String>>,
    #[serde(default)]
    tls_key: Option<Spanned<String>>,
    #[serde(default)]
    entities_bucket: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
    ca: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshot {
    #[serde(default)]
    path: Option<Spanned<String>>,
    verify_key: Spanned<String>,
    #[serde(default)]
    sign_key: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
    keep_alive_interval: Option<Spanned<String>>,
    queue_size: Option<Spanned<i64>>,
    send_window: Option<Spanned<String>>,
    retention_age: Option<Spanned<String>>,
    retention_size: Option<Spanned<String>>,
    max_batch_size: Option<Spanned<String>>,
    max_connections_per_entity: Option<Spanned<i64>>,
    first_request_timeout: Option<Spanned<String>>,
    sightings_interval: Option<Spanned<String>>,
    max_indicators_per_partner_day: Option<Spanned<i64>>,
}

/// Keys known per table, for "did you mean".
const KEYS: KnownKeys = &[
    (
        "",
        &[
            "listen",
            "registry",
            "data_dir",
            "arm_red",
            "allow_no_publisher",
            "status_listen",
            "audit_log",
            "tls",
            "snapshot",
            "limits",
            "cluster",
            "retro",
        ],
    ),
    ("retro", &["keep", "max_size"]),
    ("tls", &["cert", "key", "ca"]),
    ("snapshot", &["path", "verify_key", "sign_key"]),
    (
        "limits",
        &[
            "max_connections",
            "idle_timeout",
            "keep_alive_interval",
            "queue_size",
            "send_window",
            "retention_age",
            "retention_size",
            "max_batch_size",
            "max_connections_per_entity",
            "first_request_timeout",
            "sightings_interval",
            "max_indicators_per_partner_day",
        ],
    ),
    (
        "cluster",
        &[
            "nats",
            "replicas",
            "stream",
            "subject_prefix",
            "acked_bucket",
            "entities_bucket",
            "credentials",
            "tls_ca",
            "tls_cert",
            "tls_key",
        ],
    ),
];

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Every key of `text` that its table does not know, with line and suggestion (a line-based
/// reading of the simple TOML a hub configuration is; anything it cannot read is left to the
/// parser).
/// The keys of each table a configuration file knows: `(table, keys)`, `""` for the top
/// level; an array of tables (`[[source]]`) by its name.
pub(crate) type KnownKeys = &'static [(&'static str, &'static [&'static str])];

/// Every key and table of `text` that `keys` does not know, each with the closest known one.
pub(crate) fn unknown_keys(text: &str, keys: KnownKeys) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(rest) = l.strip_prefix('[') {
            let rest = rest.strip_prefix('[').unwrap_or(rest);
            let name = rest.split(']').next().unwrap_or("").trim().to_string();
            if !keys.iter().any(|(t, _)| *t == name) {
                out.push(ConfigProblem {
                    line: Some(i + 1),
                    key: name.clone(),
                    message: "unknown table".into(),
                });
            }
            table = name;
            continue;
        }
        let Some((key, _)) = l.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        let Some((_, known)) = keys.iter().find(|(t, _)| *t == table) else {
            continue;
        };
        if !known.contains(&key) {
            out.push(ConfigProblem {
                line: Some(i + 1),
                key: join(&table, key),
                message: match suggest(keys, &table, key) {
                    Some(s) => format!("unknown key (did you mean {s}?)"),
                    None => "unknown key".into(),
                },
            });
        }
    }
    out
}

/// Checks `[cluster]`: at least one `nats://` or `tls://` URL with a host and port, 1 to 5
/// replicas, names JetStream accepts, a TLS client certificate with its key; paths are taken
/// relative to `base`.
fn cluster_config(c: &RawCluster, base: &Path, p: &mut Problems<'_>) -> ClusterConfig {
    let path = |v: &Option<Spanned<String>>, key: &str, p: &mut Problems<'_>| {
        let v = v.as_ref()?;
        let s = v.get_ref().trim();
        if s.is_empty() {
            p.at(v.span(), key, "empty path");
            return None;
        }
        Some(base.join(s))
    };
    let credentials = path(&c.credentials, "cluster.credentials", p);
    let tls_ca = path(&c.tls_ca, "cluster.tls_ca", p);
    let tls_client = match (
        path(&c.tls_cert, "cluster.tls_cert", p),
        path(&c.tls_key, "cluster.tls_key", p),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            let span = c.tls_cert.as_ref().map(Spanned::span).unwrap_or_default();
            p.at(span, "cluster.tls_cert", "needs cluster.tls_key beside it");
            None
        }
        (None, Some(_)) => {
            let span = c.tls_key.as_ref().map(Spanned::span).unwrap_or_default();
            p.at(span, "cluster.tls_key", "needs cluster.tls_cert beside it");
            None
        }
    };
    if c.nats.get_ref().is_empty() {
        p.at(c.nats.span(), "cluster.nats", "names no server");
    }
    for u in c.nats.get_ref() {
        let rest = u
            .strip_prefix("nats://")
            .or_else(|| u.strip_prefix("tls://"));
        let ok = rest.is_some_and(|r| {
            r.rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
        });
        if !ok {
            p.at(
                c.nats.span(),
                "cluster.nats",
                format!("{u:?} is not a NATS URL (e.g. \"nats://10.0.0.5:4222\")"),
            );
        }
    }
    let replicas = match &c.replicas {
        None => 3,
        Some(v) => match usize::try_from(*v.get_ref()) {
            Ok(n) if (1..=5).contains(&n) => n,
            _ => {
                p.at(
                    v.span(),
                    "cluster.replicas",
                    "must be 1 to 5 (JetStream's range)",
                );
                3
            }
        },
    };
    let name = |v: &Option<Spanned<String>>,
                key: &str,
                default: &str,
                dots: bool,
                p: &mut Problems<'_>| {
        let Some(v) = v else {
            return default.to_string();
        };
        let s = v.get_ref().trim();
        let valid = !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (dots && b == b'.')
            })
            && !s.starts_with('.')
            && !s.ends_with('.');
        if !valid {
            p.at(
                v.span(),
                key,
                if dots {
                    "letters, digits, `_`, `-` and inner `.` only"
                } else {
                    "letters, digits, `_` and `-` only"
                },
            );
        }
        s.to_string()
    };
    ClusterConfig {
        nats: c.nats.get_ref().clone(),
        replicas,
        stream: name(&c.stream, "cluster.stream", "CWN_N", false, p),
        subject_prefix: name(
            &c.subject_prefix,
            "cluster.subject_prefix",
            "cwn.n",
            true,
            p,
        ),
        acked_bucket: name(
            &c.acked_bucket,
            "cluster.acked_bucket",
            "CWN_ACKED",
            false,
            p,
        ),
        entities_bucket: name(
            &c.entities_bucket,
            "cluster.entities_bucket",
            "CWN_ENTITIES",
            false,
            p,
        ),
        credentials,
        tls_ca,
        tls_client,
    }
}

/// Edit distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggest(keys: KnownKeys, table: &str, key: &str) -> Option<&'static str> {
    let known = keys.iter().find(|(t, _)| *t == table)?.1;
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k)
}

/// The dotted path of the key or value at `offset`: the enclosing `[table]` header (the last
/// one before it) and the key on its line.
fn key_path_at(text: &str, offset: usize) -> (String, String) {
    let before = &text[..offset.min(text.len())];
    let table = before
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.starts_with('[')
                .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        })
        .next_back()
        .unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"')
        .to_string();
    (table, key)
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else if key.is_empty() {
        table.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// A serde error of `text` as a problem naming its line and key path.
pub(crate) fn serde_problem(text: &str, e: &toml::de::Error, keys: KnownKeys) -> ConfigProblem {
    let msg = e.message().trim_end().to_string();
    let Some(span) = e.span() else {
        return ConfigProblem {
            line: None,
            key: String::new(),
            message: msg,
        };
    };
    let line = Some(line_of(text, span.start));
    let (table, key) = key_path_at(text, span.start);
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or("");
        let message = match suggest(keys, &table, unknown) {
            Some(s) => format!("unknown key (did you mean {s}?)"),
            None => "unknown key".to_string(),
        };
        return ConfigProblem {
            line,
            key: join(&table, unknown),
            message,
        };
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let missing = rest.split('`').next().unwrap_or("");
        // The span of a missing field is its table; name the table, not a key on that line.
        let table = if span.start == 0 && span.end >= text.len().saturating_sub(1) {
            String::new()
        } else {
            table
        };
        return ConfigProblem {
            line: if table.is_empty() { None } else { line },
            key: join(&table, missing),
            message: "missing (required)".to_string(),
        };
    }
    ConfigProblem {
        line,
        key: join(&table, &key),
        message: msg,
    }
}

/// Parses a duration: a number and a unit, `ms`, `s`, `m`, `h` or `d` (`30s`, `7d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: a duration needs a unit (ms, s, m, h, d)"))?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. \"30s\", \"7d\")"))?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit (ms, s, m, h, d)")),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Parses a size: a number with an optional unit `B`, `KiB`, `MiB`, `GiB`, `TiB` (`1MiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. \"512KiB\", \"1GiB\")"))?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit (B, KiB, MiB, GiB, TiB)")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A configuration file's text, its name for messages, and the directory its relative paths
/// are taken against.
pub(crate) fn read_config(file: &Path) -> Result<(String, String, &Path), ConfigError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: name.clone(),
        problems: vec![ConfigProblem {
            line: None,
            key: String::new(),
            message: e.to_string(),
        }],
    })?;
    Ok((text, name, file.parent().unwrap_or(Path::new("."))))
}

/// `text` deserialised, after every unknown key of it was reported at once (not only the
/// first one serde stops at), with an empty list for the checks that follow.
pub(crate) fn parse_checked<'t, T: serde::de::DeserializeOwned>(
    text: &'t str,
    file: &str,
    keys: KnownKeys,
) -> Result<(T, Problems<'t>), ConfigError> {
    let fail = |problems| ConfigError {
        file: file.to_string(),
        problems,
    };
    let unknown = unknown_keys(text, keys);
    if !unknown.is_empty() {
        return Err(fail(unknown));
    }
    let raw = toml::from_str(text).map_err(|e| fail(vec![serde_problem(text, &e, keys)]))?;
    Ok((
        raw,
        Problems {
            text,
            list: Vec::new(),
        },
    ))
}

/// Problems collected while a file is checked.
pub(crate) struct Problems<'t> {
    pub(crate) text: &'t str,
    pub(crate) list: Vec<ConfigProblem>,
}

impl Problems<'_> {
    /// Every problem found, in file order, as the error of `file`; `Ok` when there is none.
    pub(crate) fn finish(mut self, file: &str) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|x| x.line);
        Err(ConfigError {
            file: file.to_string(),
            problems: self.list,
        })
    }

    pub(crate) fn at(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.list.push(ConfigProblem {
            line: Some(line_of(self.text, span.start)),
            key: key.to_string(),
            message: message.into(),
        });
    }
}

impl HubConfig {
    /// Parses and validates `text`; `file` names it in messages and `base` is the directory
    /// relative paths are resolved against. Touches no file.
    ///
    /// # Errors
    /// Every problem found: TOML syntax, unknown or missing keys (with a suggestion), values of
    /// the wrong type, unparsable addresses, durations or sizes, and limits out of range.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<HubConfig, ConfigError> {
        let (raw, mut p): (Raw, _) = parse_checked(text, file, KEYS)?;
        let path = |s: &Spanned<String>| base.join(s.get_ref().trim());
        let addr = |s: &Spanned<String>, key: &str, p: &mut Problems<'_>| {
            s.get_ref().trim().parse::<SocketAddr>().map_or_else(
                |_| {
                    p.at(
                        s.span(),
                        key,
                        format!(
                            "{:?} is not an address (e.g. \"0.0.0.0:4433\")",
                            s.get_ref()
                        ),
                    );
                    None
                },
                Some,
            )
        };
        let listen = addr(&raw.listen, "listen", &mut p);
        let status_listen = raw
            .status_listen
            .as_ref()
            .map(|s| addr(s, "status_listen", &mut p));
        for (s, key) in [
            (&raw.registry, "registry"),
            (&raw.data_dir, "data_dir"),
            (&raw.tls.cert, "tls.cert"),
            (&raw.tls.key, "tls.key"),
            (&raw.tls.ca, "tls.ca"),
            (&raw.snapshot.verify_key, "snapshot.verify_key"),
        ] {
            if s.get_ref().trim().is_empty() {
                p.at(s.span(), key, "empty path");
            }
        }
        let mut limits = Limits::default();
        let l = &raw.limits;
        if let Some(v) = &l.max_connections {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if (1..=1_000_000).contains(&n) => limits.max_connections = n,
                _ => p.at(v.span(), "limits.max_connections", "must be 1 to 1000000"),
            }
        }
        if let Some(v) = &l.queue_size {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if (1..=1 << 20).contains(&n) => limits.queue_size = n,
                _ => p.at(v.span(), "limits.queue_size", "must be 1 to 1048576"),
            }
        }
        let dur =
            |v: &Option<Spanned<String>>, key: &str, slot: &mut Duration, p: &mut Problems<'_>| {
                if let Some(v) = v {
                    match parse_duration(v.get_ref()) {
                        Ok(d) if !d.is_zero() => *slot = d,
                        Ok(_) => p.at(v.span(), key, "must be more than zero"),
                        Err(m) => p.at(v.span(), key, m),
                    }
                }
            };
        dur(
            &l.idle_timeout,
            "limits.idle_timeout",
            &mut limits.idle_timeout,
            &mut p,
        );
        dur(
            &l.keep_alive_interval,
            "limits.keep_alive_interval",
            &mut limits.keep_alive_interval,
            &mut p,
        );
        dur(
            &l.sightings_interval,
            "limits.sightings_interval",
            &mut limits.sightings_interval,
            &mut p,
        );
        dur(
            &l.first_request_timeout,
            "limits.first_request_timeout",
            &mut limits.first_request_timeout,
            &mut p,
        );
        if let Some(v) = &l.max_indicators_per_partner_day {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if n >= 1 => limits.max_indicators_per_partner_day = n,
                _ => p.at(
                    v.span(),
                    "limits.max_indicators_per_partner_day",
                    "must be at least 1",
                ),
            }
        }
        if let Some(v) = &l.max_connections_per_entity {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if (1..=1_000_000).contains(&n) => limits.max_connections_per_entity = n,
                _ => p.at(
                    v.span(),
                    "limits.max_connections_per_entity",
                    "must be 1 to 1000000",
                ),
            }
        }
        dur(
            &l.retention_age,
            "limits.retention_age",
            &mut limits.retention_age,
            &mut p,
        );
        if limits.keep_alive_interval >= limits.idle_timeout {
            let span = l
                .keep_alive_interval
                .as_ref()
                .or(l.idle_timeout.as_ref())
                .map_or(0..0, |s| s.span());
            p.at(
                span,
                "limits.keep_alive_interval",
                format!(
                    "must be shorter than limits.idle_timeout ({:?}), or idle connections drop",
                    limits.idle_timeout
                ),
            );
        }
        if let Some(v) = &l.send_window {
            match parse_size(v.get_ref()) {
                Ok(n) if ((256 << 10)..=(1 << 20)).contains(&n) => limits.send_window = n,
                Ok(_) => p.at(
                    v.span(),
                    "limits.send_window",
                    "must be 256KiB to 1MiB (larger windows do not fit thousands of subscribers)",
                ),
                Err(m) => p.at(v.span(), "limits.send_window", m),
            }
        }
        if let Some(v) = &l.retention_size {
            match parse_size(v.get_ref()) {
                Ok(n) if n >= 1 << 20 => limits.retention_bytes = n,
                Ok(_) => p.at(v.span(), "limits.retention_size", "must be at least 1MiB"),
                Err(m) => p.at(v.span(), "limits.retention_size", m),
            }
        }
        if let Some(v) = &l.max_batch_size {
            match parse_size(v.get_ref()) {
                Ok(n) if ((1 << 20)..=(1 << 32)).contains(&n) => limits.max_batch_bytes = n,
                Ok(_) => p.at(v.span(), "limits.max_batch_size", "must be 1MiB to 4GiB"),
                Err(m) => p.at(v.span(), "limits.max_batch_size", m),
            }
        }
        let cluster = raw
            .cluster
            .as_ref()
            .map(|c| cluster_config(c, base, &mut p));
        let retro = raw.retro.as_ref().map(|r| {
            let mut cfg = RetroConfig::default();
            dur(&r.keep, "retro.keep", &mut cfg.keep, &mut p);
            if let Some(v) = &r.max_size {
                match parse_size(v.get_ref()) {
                    Ok(n) if n >= 1 << 20 => cfg.max_bytes = n,
                    Ok(_) => p.at(v.span(), "retro.max_size", "must be at least 1MiB"),
                    Err(m) => p.at(v.span(), "retro.max_size", m),
                }
            }
            cfg
        });
        p.finish(file)?;
        let data_dir = path(&raw.data_dir);
        Ok(HubConfig {
            listen: listen.expect("checked above"),
            registry: path(&raw.registry),
            audit_log: raw
                .audit_log
                .as_ref()
                .map_or_else(|| data_dir.join("audit.jsonl"), path),
            data_dir,
            arm_red: raw.arm_red,
            allow_no_publisher: raw.allow_no_publisher,
            status_listen: status_listen.flatten(),
            tls: TlsConfig {
                cert: path(&raw.tls.cert),
                key: path(&raw.tls.key),
                ca: path(&raw.tls.ca),
            },
            snapshot: SnapshotConfig {
                path: raw.snapshot.path.as_ref().map(path),
                verify_key: path(&raw.snapshot.verify_key),
                sign_key: raw.snapshot.sign_key.as_ref().map(path),
            },
            limits,
            cluster,
            retro,
        })
    }

    /// Reads and validates a configuration file (relative paths against its directory).
    ///
    /// # Errors
    /// The file cannot be read, or [`from_toml`](Self::from_toml) finds problems.
    pub fn load(file: &Path) -> Result<HubConfig, ConfigError> {
        let (text, name, base) = read_config(file)?;
        HubConfig::from_toml(&text, &name, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"listen = "127.0.0.1:4433"
registry = "registry.toml"
data_dir = "var"
[tls]
cert = "hub.pem"
key = "hub.key"
ca = "ca.pem"
[snapshot]
verify_key = "verify.pem"
"#;

    fn err(extra: &str) -> String {
        HubConfig::from_toml(&format!("{GOOD}{extra}"), "hub.toml", Path::new("/c"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_paths() {
        let c = HubConfig::from_toml(GOOD, "hub.toml", Path::new("/c")).unwrap();
        assert_eq!(c.registry, Path::new("/c/registry.toml"));
        assert_eq!(c.audit_log, Path::new("/c/var/audit.jsonl"));
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn problems_name_line_and_key() {
        let cases = [
            (
                "[limits]\nmax_conections = 3\n",
                "hub.toml:11: limits.max_conections: unknown key (did you mean max_connections?)",
            ),
            (
                "[limits]\nidle_timeout = \"3 parsecs\"\n",
                "hub.toml:11: limits.idle_timeout: \"3 parsecs\": unknown unit (ms, s, m, h, d)",
            ),
            (
                "[limits]\nsend_window = \"64MiB\"\n",
                "hub.toml:11: limits.send_window: must be 256KiB to 1MiB (larger windows do not fit thousands of subscribers)",
            ),
            (
                "[limits]\nmax_connections = \"many\"\n",
                "hub.toml:11: limits.max_connections: invalid type: string \"many\", expected i64",
            ),
            (
                "verify_kye = \"v.pem\"\n",
                "hub.toml:10: snapshot.verify_kye: unknown key (did you mean verify_key?)",
            ),
            (
                "[limits]\nkeep_alive_interval = \"1m\"\n",
                "hub.toml:11: limits.keep_alive_interval: must be shorter than limits.idle_timeout (30s), or idle connections drop",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(err(extra), want, "{extra}");
        }
        let top = format!("arm_rde = true\n{GOOD}");
        assert_eq!(
            HubConfig::from_toml(&top, "hub.toml", Path::new("/"))
                .unwrap_err()
                .to_string(),
            "hub.toml:1: arm_rde: unknown key (did you mean arm_red?)"
        );
        let e = HubConfig::from_toml("listen = \"nowhere\"\n", "hub.toml", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing (required)"), "{e}");
        // Every unknown key at once, each with its line.
        let many = format!("arm_rde = true\n{GOOD}[limits]\nmax_conections = 3\nqueue = 4\n");
        let e = HubConfig::from_toml(&many, "hub.toml", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e.lines().collect::<Vec<_>>(),
            [
                "hub.toml:1: arm_rde: unknown key (did you mean arm_red?)",
                "hub.toml:12: limits.max_conections: unknown key (did you mean max_connections?)",
                "hub.toml:13: limits.queue: unknown key",
            ],
            "{e}"
        );
    }

    #[test]
    fn retro_section() {
        let plain = HubConfig::from_toml(GOOD, "hub.toml", Path::new("/c")).unwrap();
        assert_eq!(plain.retro, None, "no [retro]: no telemetry kept");
        let c =
            HubConfig::from_toml(&format!("{GOOD}[retro]\n"), "hub.toml", Path::new("/c")).unwrap();
        assert_eq!(c.retro, Some(RetroConfig::default()));
        let text = format!("{GOOD}[retro]\nkeep = \"1d\"\nmax_size = \"2GiB\"\n");
        let c = HubConfig::from_toml(&text, "hub.toml", Path::new("/c")).unwrap();
        assert_eq!(
            c.retro,
            Some(RetroConfig {
                keep: Duration::from_secs(86_400),
                max_bytes: 2 << 30
            })
        );
        let text = format!("{GOOD}[retro]\nkep = \"1d\"\nmax_size = \"1KiB\"\n");
        let e = HubConfig::from_toml(&text, "hub.toml", Path::new("/c"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("retro.kep: unknown key (did you mean keep?)"),
            "{e}"
        );
    }

    #[test]
    fn cluster_section() {
        let plain = HubConfig::from_toml(GOOD, "hub.toml", Path::new("/c")).unwrap();
        assert_eq!(plain.cluster, None, "no [cluster]: the embedded file store");
        let text = format!(
            "{GOOD}[cluster]\nnats = [\"nats://10.0.0.5:4222\", \"tls://nats-2.example:4222\"]\n"
        );
        let c = HubConfig::from_toml(&text, "hub.toml", Path::new("/c"))
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(
            c,
            ClusterConfig {
                nats: vec![
                    "nats://10.0.0.5:4222".into(),
                    "tls://nats-2.example:4222".into()
                ],
                replicas: 3,
                stream: "CWN_N".into(),
                subject_prefix: "cwn.n".into(),
                acked_bucket: "CWN_ACKED".into(),
                entities_bucket: "CWN_ENTITIES".into(),
                credentials: None,
                tls_ca: None,
                tls_client: None,
            }
        );
        // NATS authentication and TLS, relative to the configuration's folder.
        let text = format!(
            "{GOOD}[cluster]\nnats = [\"tls://n1:4222\"]\ncredentials = \"edge.creds\"\ntls_ca = \"nats/ca.pem\"\ntls_cert = \"nats/edge.pem\"\ntls_key = \"nats/edge.key\"\n"
        );
        let c = HubConfig::from_toml(&text, "hub.toml", Path::new("/c"))
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.credentials, Some(PathBuf::from("/c/edge.creds")));
        assert_eq!(c.tls_ca, Some(PathBuf::from("/c/nats/ca.pem")));
        assert_eq!(
            c.tls_client,
            Some((
                PathBuf::from("/c/nats/edge.pem"),
                PathBuf::from("/c/nats/edge.key")
            ))
        );
        let cases = [
            (
                "nats = [\"nats://a:1\"]\ntls_cert = \"e.pem\"\n",
                "hub.toml:12: cluster.tls_cert: needs cluster.tls_key beside it",
            ),
            ("nats = []\n", "hub.toml:11: cluster.nats: names no server"),
            (
                "nats = [\"http://x:1\"]\n",
                "hub.toml:11: cluster.nats: \"http://x:1\" is not a NATS URL (e.g. \"nats://10.0.0.5:4222\")",
            ),
            (
                "nats = [\"nats://a:1\"]\nreplicas = 7\n",
                "hub.toml:12: cluster.replicas: must be 1 to 5 (JetStream's range)",
            ),
            (
                "nats = [\"nats://a:1\"]\nstream = \"a.b\"\n",
                "hub.toml:12: cluster.stream: letters, digits, `_` and `-` only",
            ),
            (
                "nats = [\"nats://a:1\"]\nreplica = 3\n",
                "hub.toml:12: cluster.replica: unknown key (did you mean replicas?)",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(err(&format!("[cluster]\n{extra}")), want, "{extra}");
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("30").is_err());
        assert_eq!(parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1 PB").is_err());
    }
}
