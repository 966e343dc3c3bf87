//! Delivery targets of `cwn subscribe --deliver`: each reads the [`Spool`] on a thread of
//! its own, hands what it reads to its target, and moves its cursor only after the target
//! accepted; a refusal or an outage is retried with exponential back-off (capped at
//! [`MAX_BACKOFF`]), so a target that is down loses nothing and holds up no other.
//!
//! - `webhook:URL` — `POST` of one alert as a JSON object, or of several as a JSON array,
//!   `Content-Type: application/json`, signed: `X-Cwn-Timestamp: <unix seconds>` and
//!   `X-Cwn-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` under the secret;
//!   any 2xx is accepted.
//! - `smtp:HOST:PORT` — an e-mail (plain text and HTML, the TLP banner in the subject and
//!   first in the body) per alert, or with a digest interval one e-mail with every alert of
//!   the interval (up to [`DIGEST_MAX`] per message); STARTTLS when offered or required, AUTH
//!   PLAIN ([`super::smtp`]).
//! - `syslog:HOST:PORT` — RFC 5424 messages with structured data `[cwn@32473 …]`, or CEF,
//!   octet-counted over TCP or TLS ([`super::syslog`]). TCP has no acknowledgement: a write
//!   the kernel took counts as accepted, and a connection the server closed is noticed (a
//!   peek) and opened again before the next write.
//! - `stix:DIR` — a STIX 2.1 bundle of sightings per delivery ([`super::stix`]), written as
//!   `DIR/<unix ms>-<bundle uuid>.json` (fsynced, renamed into place).
//! - `jsonl:FILE` — the hub's notifications as `cwn subscribe -o FILE` writes them, each
//!   line fsynced before the cursor moves.
//!
//! A target marked `outside` (a third party, e.g. a SaaS ticket system) gets no alert above
//! TLP:GREEN unless `allow_amber` says the entity allowed it.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::spool::{Record, Spool};
use super::{Alert, TargetReport};
use crate::indicator::Tlp;

/// The longest wait between two attempts at a target that fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Alerts in one webhook `POST` at most.
pub const WEBHOOK_BATCH: usize = 200;
/// Alerts in one digest e-mail at most.
pub const DIGEST_MAX: usize = 1000;

/// One record of the spool: a hub notification as `cwn subscribe -o` writes it, or an alert.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outgoing {
    /// The hub's notification (`jsonl` targets).
    Raw(serde_json::Value),
    /// An alert (every other target).
    Alert(Box<Alert>),
}

/// Where a target delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `webhook:URL`.
    Webhook(String),
    /// `smtp:HOST:PORT`.
    Smtp(String),
    /// `syslog:HOST:PORT`.
    Syslog(String),
    /// `stix:DIR`.
    Stix(PathBuf),
    /// `taxii:URL` (a TAXII 2.1 collection's URL, ending in `collections/<id>/`).
    Taxii(String),
    /// `jsonl:FILE`.
    Jsonl(PathBuf),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            format!("{s:?}: a target is KIND:WHERE (webhook:URL, smtp:HOST:PORT, syslog:HOST:PORT, stix:DIR, taxii:URL, jsonl:FILE)")
        })?;
        match scheme {
            "webhook" => {
                let url = url::Url::parse(rest).map_err(|e| format!("{s:?}: {e}"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!("{s:?}: a webhook is an http or https URL"));
                }
                Ok(Target::Webhook(rest.to_string()))
            }
            "smtp" | "syslog" => match rest.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(if scheme == "smtp" {
                        Target::Smtp(rest.to_string())
                    } else {
                        Target::Syslog(rest.to_string())
                    })
                }
                _ => Err(format!(
                    "{s:?}: a target of this kind is {scheme}:HOST:PORT"
                )),
            },
            "stix" if !rest.is_empty() => Ok(Target::Stix(PathBuf::from(rest))),
            "taxii" => {
                let url = url::Url::parse(rest).map_err(|e| format!("{s:?}: {e}"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!("{s:?}: a TAXII collection is an http or https URL"));
                }
                if url.path().trim_end_matches('/').rsplit('/').nth(1) != Some("collections") {
                    return Err(format!(
                        "{s:?}: a TAXII target is the collection's URL, \
                         https://HOST/API-ROOT/collections/ID/"
                    ));
                }
                let mut u = rest.to_string();
                if !u.ends_with('/') {
                    u.push('/');
                }
                Ok(Target::Taxii(u))
            }
            "jsonl" if !rest.is_empty() => Ok(Target::Jsonl(PathBuf::from(rest))),
            _ => Err(format!(
                "{s:?}: unknown target kind {scheme:?} (webhook:URL, smtp:HOST:PORT, syslog:HOST:PORT, stix:DIR, taxii:URL, jsonl:FILE)"
            )),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Webhook(u) => write!(f, "webhook:{u}"),
            Target::Smtp(a) => write!(f, "smtp:{a}"),
            Target::Syslog(a) => write!(f, "syslog:{a}"),
            Target::Stix(d) => write!(f, "stix:{}", d.display()),
            Target::Taxii(u) => write!(f, "taxii:{u}"),
            Target::Jsonl(p) => write!(f, "jsonl:{}", p.display()),
        }
    }
}

/// A target and how it may be used.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Where it delivers.
    pub target: Target,
    /// The webhook's signing secret (the file's bytes, one trailing newline stripped).
    pub secret: Option<Vec<u8>>,
    /// Outside the entity (a third party): no TLP:AMBER or stricter unless `allow_amber`.
    pub outside: bool,
    /// The entity allowed AMBER alerts to this outside target.
    pub allow_amber: bool,
    /// Sender, recipients and credentials of an `smtp` target (its server is the target's).
    pub mail: Option<super::smtp::SmtpConfig>,
    /// An `smtp` target sends one digest per interval instead of a message per alert.
    pub digest_every: Option<Duration>,
    /// How a `syslog` target is reached and what it is sent.
    pub syslog: SyslogOptions,
    /// HTTP basic authentication (user, password) of a `taxii` target.
    pub taxii_auth: Option<(String, String)>,
}

/// The options of `syslog` targets.
#[derive(Clone, Debug, Default)]
pub struct SyslogOptions {
    /// Over TLS (RFC 5425).
    pub tls: bool,
    /// CA certificates (PEM) to trust instead of the web PKI's.
    pub ca: Option<Vec<u8>>,
    /// CEF in the message part instead of RFC 5424 structured data.
    pub cef: bool,
}

impl TargetConfig {
    /// `target` inside the entity, with no credentials or options set.
    pub fn new(target: Target) -> Self {
        TargetConfig {
            target,
            secret: None,
            outside: false,
            allow_amber: false,
            mail: None,
            digest_every: None,
            syslog: SyslogOptions::default(),
            taxii_auth: None,
        }
    }

    /// The name of its cursor in the spool: its kind and a digest of where it delivers, so
    /// the same target keeps its place across restarts and two targets never share one.
    pub fn cursor_name(&self) -> String {
        let kind = match self.target {
            Target::Webhook(_) => "webhook",
            Target::Smtp(_) => "smtp",
            Target::Syslog(_) => "syslog",
            Target::Stix(_) => "stix",
            Target::Taxii(_) => "taxii",
            Target::Jsonl(_) => "jsonl",
        };
        let h = xxhash_rust::xxh3::xxh3_64(self.target.to_string().as_bytes());
        format!("{kind}-{h:016x}")
    }

    /// Whether an alert of label `tlp` may go to this target.
    pub fn may_carry(&self, tlp: Tlp) -> bool {
        !self.outside || tlp <= Tlp::Green || (self.allow_amber && tlp <= Tlp::AmberStrict)
    }
}

/// Reads a secret file: its bytes, one trailing newline (`\n` or `\r\n`) stripped.
///
/// # Errors
/// The file cannot be read, or is empty.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.last() == Some(&b'\n') {
        b.pop();
        if b.last() == Some(&b'\r') {
            b.pop();
        }
    }
    if b.is_empty() {
        return Err(format!("{}: the secret is empty", path.display()));
    }
    Ok(b)
}

/// The `X-Cwn-Signature` value of `body` sent at `timestamp` (Unix seconds) under `secret`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut hex = String::with_capacity(64);
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("sha256={hex}")
}

/// How one target is doing, for the subscriber's log and summary.
#[derive(Debug, Default)]
pub struct TargetStatus {
    /// Alerts (or notifications) the target accepted.
    pub delivered: AtomicU64,
    /// Alerts held back by the TLP rule for outside targets.
    pub withheld: AtomicU64,
    /// Failed attempts since the last success (0: healthy).
    pub failing: AtomicU64,
    /// Unix milliseconds of the last accepted delivery.
    pub last_ok_ms: AtomicU64,
    /// Unix milliseconds of the first failure since the last success (0: none).
    pub failing_since_ms: AtomicU64,
    /// The last failure's reason.
    pub last_error: std::sync::Mutex<String>,
    /// The target's cursor in the spool: the last record it accepted.
    pub cursor: AtomicU64,
}

/// The directory in the spool where each target's [`TargetReport`] is kept.
pub const STATUS_DIR: &str = "status";

impl TargetStatus {
    /// Its report, with `pending` records left in the spool.
    pub fn report(&self, target: &Target, pending: u64) -> TargetReport {
        let nonzero = |v: u64| (v != 0).then_some(v);
        TargetReport {
            target: target.to_string(),
            delivered: self.delivered.load(Ordering::Relaxed),
            withheld: self.withheld.load(Ordering::Relaxed),
            pending,
            failing: self.failing.load(Ordering::Relaxed),
            failing_since_ms: nonzero(self.failing_since_ms.load(Ordering::Relaxed)),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
            last_ok_ms: nonzero(self.last_ok_ms.load(Ordering::Relaxed)),
        }
    }
}

/// Stores `report` as `STATUS_DIR/<cursor name>.json` in the spool (replaced whole; a status,
/// not data: not fsynced).
fn store_report(spool: &Spool, cfg: &TargetConfig, report: &TargetReport) {
    let dir = spool.dir().join(STATUS_DIR);
    let path = dir.join(format!("{}.json", cfg.cursor_name()));
    let r = std::fs::create_dir_all(&dir).and_then(|()| {
        let bytes = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
        crate::outfile::replace(&path, &bytes, false)
    });
    if let Err(e) = r {
        tracing::debug!("{}: {e}", path.display());
    }
}

/// The reports stored in the spool at `dir`, by target.
pub fn stored_reports(dir: &Path) -> Vec<TargetReport> {
    let mut v: Vec<TargetReport> = std::fs::read_dir(dir.join(STATUS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    v.sort_by(|a, b| a.target.cmp(&b.target));
    v
}

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeliverError(pub String);

/// One adapter: hands records to its target.
trait Adapter {
    /// Delivers `items` (already filtered for the target); Ok when the target accepted all.
    fn deliver(&mut self, items: &[Outgoing]) -> Result<(), DeliverError>;
    /// The most records to read at once.
    fn batch(&self) -> usize;
    /// Whether to deliver what is held now (the oldest held since `oldest`); a digest waits
    /// for its interval.
    fn ready(&self, _oldest: std::time::Instant) -> bool {
        true
    }
}

/// The alerts among `items`.
fn alerts_of(items: &[Outgoing]) -> Vec<&Alert> {
    items
        .iter()
        .filter_map(|i| match i {
            Outgoing::Alert(a) => Some(&**a),
            Outgoing::Raw(_) => None,
        })
        .collect()
}

struct Smtp {
    cfg: super::smtp::SmtpConfig,
    digest_every: Option<Duration>,
    last_sent: std::time::Instant,
}

impl Adapter for Smtp {
    fn deliver(&mut self, items: &[Outgoing]) -> Result<(), DeliverError> {
        let alerts: Vec<Alert> = alerts_of(items).into_iter().cloned().collect();
        let fail = |e: super::smtp::SmtpError| DeliverError(e.to_string());
        if self.digest_every.is_some() {
            for chunk in alerts.chunks(DIGEST_MAX) {
                super::smtp::send(&self.cfg, chunk).map_err(fail)?;
            }
        } else {
            // A retry after a failure in the middle sends the first ones again, with the
            // same Message-ID.
            for a in &alerts {
                super::smtp::send(&self.cfg, std::slice::from_ref(a)).map_err(fail)?;
            }
        }
        self.last_sent = std::time::Instant::now();
        Ok(())
    }

    fn batch(&self) -> usize {
        if self.digest_every.is_some() {
            DIGEST_MAX * 10
        } else {
            50
        }
    }

    fn ready(&self, _oldest: std::time::Instant) -> bool {
        self.digest_every
            .is_none_or(|every| self.last_sent.elapsed() >= every)
    }
}

struct Webhook {
    url: String,
    secret: Vec<u8>,
    agent: ureq::Agent,
}

impl Adapter for Webhook {
    fn deliver(&mut self, items: &[Outgoing]) -> Result<(), DeliverError> {
        let alerts = alerts_of(items);
        let body = match alerts.as_slice() {
            [] => return Ok(()),
            [one] => serde_json::to_vec(one),
            many => serde_json::to_vec(many),
        }
        .map_err(|e| DeliverError(e.to_string()))?;
        let ts = jiff::Timestamp::now().as_second().max(0) as u64;
        let resp = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Cwn-Timestamp", ts.to_string())
            .header("X-Cwn-Signature", signature(&self.secret, ts, &body))
            .send(&body[..])
            .map_err(|e| DeliverError(format!("{}: {e}", self.url)))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(DeliverError(format!("{}: HTTP {status}", self.url)))
        }
    }

    fn batch(&self) -> usize {
        WEBHOOK_BATCH
    }
}

trait Conn: std::io::Write + Send {
    /// Whether the server closed the connection (a non-blocking peek reads its end).
    fn closed(&self) -> bool;
}

fn peer_closed(s: &std::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let r = s.peek(&mut b);
    let _ = s.set_nonblocking(false);
    match r {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

impl Conn for std::net::TcpStream {
    fn closed(&self) -> bool {
        peer_closed(self)
    }
}

impl Conn for rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    fn closed(&self) -> bool {
        peer_closed(&self.sock)
    }
}

struct Syslog {
    server: String,
    options: SyslogOptions,
    hostname: String,
    conn: Option<Box<dyn Conn>>,
}

impl Syslog {
    fn connect(&self) -> Result<Box<dyn Conn>, String> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(self.server.as_str())
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        if !self.options.tls {
            return Ok(Box::new(tcp));
        }
        let config = super::smtp::tls_config(self.options.ca.as_deref())
            .map_err(|e| format!("--syslog-ca: {e}"))?;
        let host = self
            .server
            .rsplit_once(':')
            .map_or(self.server.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
    }
}

impl Adapter for Syslog {
    fn deliver(&mut self, items: &[Outgoing]) -> Result<(), DeliverError> {
        let alerts = alerts_of(items);
        if alerts.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for a in alerts {
            let msg = if self.options.cef {
                super::syslog::cef(a, &self.hostname)
            } else {
                super::syslog::rfc5424(a, &self.hostname)
            };
            buf.extend_from_slice(&super::syslog::framed(&msg));
        }
        if self.conn.as_ref().is_some_and(|c| c.closed()) {
            self.conn = None;
        }
        let fail = |e: String| DeliverError(format!("syslog:{}: {e}", self.server));
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().map_err(fail)?,
        };
        conn.write_all(&buf)
            .and_then(|()| conn.flush())
            .map_err(|e| fail(e.to_string()))?;
        self.conn = Some(conn);
        Ok(())
    }

    fn batch(&self) -> usize {
        500
    }
}

struct Stix {
    dir: PathBuf,
}

impl Adapter for Stix {
    fn deliver(&mut self, items: &[Outgoing]) -> Result<(), DeliverError> {
        let alerts: Vec<Alert> = alerts_of(items).into_iter().cloned().collect();
        if alerts.is_empty() {
            return Ok(());
        }
        let now = jiff::Timestamp::now();
        let bundle = super::stix::bundle(&alerts, now);
        if bundle["objects"].as_array().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        let id = bundle["id"]
            .as_str()
            .unwrap_or("bundle--")
            .trim_start_matches("bundle--");
        let path = self
            .dir
            .join(format!("{:013}-{id}.json", now.as_millisecond().max(0)));
        let bytes = serde_json::to_vec_pretty(&bundle).map_err(|e| DeliverError(e.to_string()))?;
        crate::outfile::replace(&path, &bytes, true)
            .map_err(|e| DeliverError(format!("{}: {e}", path.display())))
    }

    fn batch(&self) -> usize {
        500
    }
}

struct Taxii {
    /// The collection's `objects/` endpoint.
    objects: String,
    authorization: Option<String>,
    agent: ureq::Agent,
}

/// The TAXII 2.1 media type.
const TAXII: &str = "application/taxii+json;version=2.1";

impl Adapter for Taxii {
    fn deliver(&mut self, items: &[Outgoing]) -> Result<(), DeliverError> {
        let alerts: Vec<Alert> = alerts_of(items).into_iter().cloned().collect();
        if alerts.is_empty() {
            return Ok(());
        }
        let mut bundle = super::stix::bundle(&alerts, jiff::Timestamp::now());
        let objects = bundle["objects"].take();
        if objects.as_array().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        // TAXII 2.1 §5.5: objects are added in an envelope.
        let body = serde_json::to_vec(&serde_json::json!({ "objects": objects }))
            .map_err(|e| DeliverError(e.to_string()))?;
        let fail = |e: String| DeliverError(format!("{}: {e}", self.objects));
        let mut req = self
            .agent
            .post(&self.objects)
            .header("Content-Type", TAXII)
            .header("Accept", TAXII);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = req.send(&body[..]).map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        if !(200..300).contains(&status) {
            let why: String = text.chars().take(300).collect();
            return Err(fail(format!("HTTP {status} {why}")));
        }
        // A status resource (202). A server refuses an object it already holds in the same
        // version (a retry of a bundle it took in part), so failures are not errors here;
        // they are logged for the operator.
        if let Ok(st) = serde_json::from_str::<serde_json::Value>(&text) {
            let failed = st["failure_count"].as_u64().unwrap_or(0);
            if failed > 0 {
                tracing::debug!(
                    "{}: {failed} object(s) not added (already held, or refused: {})",
                    self.objects,
                    st["failures"]
                );
            }
        }
        Ok(())
    }

    fn batch(&self) -> usize {
        200
    }
}

struct Jsonl {
    path: PathBuf,
    file: File,
}

impl Adapter for Jsonl {
    fn deliver(&mut self, items: &[Outgoing]) -> Result<(), DeliverError> {
        let mut text = Vec::new();
        for i in items {
            if let Outgoing::Raw(v) = i {
                serde_json::to_writer(&mut text, v).map_err(|e| DeliverError(e.to_string()))?;
                text.push(b'\n');
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        let fail = |e: std::io::Error| DeliverError(format!("{}: {e}", self.path.display()));
        self.file.write_all(&text).map_err(fail)?;
        self.file.sync_data().map_err(fail)
    }

    fn batch(&self) -> usize {
        1024
    }
}

fn adapter(cfg: &TargetConfig) -> Result<Box<dyn Adapter + Send>, String> {
    Ok(match &cfg.target {
        Target::Webhook(url) => Box::new(Webhook {
            url: url.clone(),
            secret: cfg
                .secret
                .clone()
                .ok_or_else(|| format!("{}: a webhook needs --webhook-secret-file", cfg.target))?,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .http_status_as_error(false)
                .user_agent(concat!("cwn-subscribe/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
        }),
        Target::Smtp(server) => {
            let mut mail = cfg.mail.clone().ok_or_else(|| {
                format!(
                    "{}: an SMTP target needs --mail-from and --mail-to",
                    cfg.target
                )
            })?;
            mail.server = server.clone();
            Box::new(Smtp {
                cfg: mail,
                digest_every: cfg.digest_every,
                last_sent: std::time::Instant::now(),
            })
        }
        Target::Syslog(server) => Box::new(Syslog {
            server: server.clone(),
            options: cfg.syslog.clone(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "cwn".into()),
            conn: None,
        }),
        Target::Stix(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Box::new(Stix { dir: dir.clone() })
        }
        Target::Taxii(url) => Box::new(Taxii {
            objects: format!("{url}objects/"),
            authorization: cfg.taxii_auth.as_ref().map(|(user, pass)| {
                format!(
                    "Basic {}",
                    crate::ingest::stix::pattern::encode_base64(
                        format!("{user}:{pass}").as_bytes()
                    )
                )
            }),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(60)))
                .http_status_as_error(false)
                .user_agent(concat!("cwn-subscribe/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
        }),
        Target::Jsonl(path) => Box::new(Jsonl {
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            path: path.clone(),
        }),
    })
}

/// Whether a target of this kind takes the hub's notifications as they are (else alerts).
fn takes_raw(t: &Target) -> bool {
    matches!(t, Target::Jsonl(_))
}

/// A running target: see [`start`].
pub struct Running {
    /// The target.
    pub config: TargetConfig,
    /// How it is doing.
    pub status: Arc<TargetStatus>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Its report now, with what the spool holds for it.
    pub fn report(&self, spool: &Spool) -> TargetReport {
        self.status.report(
            &self.config.target,
            spool.pending_after(self.status.cursor.load(Ordering::Relaxed)),
        )
    }

    /// Waits for its thread (after the stop flag was set and the spool woken).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts `cfg`'s thread: it delivers what the spool holds after the target's cursor until
/// `stop` is set and it has nothing more it can deliver now.
///
/// # Errors
/// The target cannot be set up (a file that cannot be opened, a webhook without a secret) or
/// its cursor cannot be read.
pub fn start(
    spool: Arc<Spool>,
    cfg: TargetConfig,
    stop: Arc<AtomicBool>,
) -> Result<Running, String> {
    let mut adapter = adapter(&cfg)?;
    // Check the cursor now, so a broken one fails the start, not the thread.
    spool
        .reader(&cfg.cursor_name())
        .map_err(|e| e.to_string())?;
    let status = Arc::new(TargetStatus::default());
    let (c, st) = (cfg.clone(), status.clone());
    let thread = std::thread::Builder::new()
        .name(format!("cwn-deliver-{}", cfg.cursor_name()))
        .spawn(move || run(&spool, &c, &mut *adapter, &st, &stop))
        .map_err(|e| e.to_string())?;
    Ok(Running {
        config: cfg,
        status,
        thread,
    })
}

fn run(
    spool: &Spool,
    cfg: &TargetConfig,
    adapter: &mut dyn Adapter,
    status: &TargetStatus,
    stop: &AtomicBool,
) {
    let mut reader = match spool.reader(&cfg.cursor_name()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{}: {e}", cfg.target);
            return;
        }
    };
    status.cursor.store(reader.cursor(), Ordering::Relaxed);
    let raw = takes_raw(&cfg.target);
    let mut wait = Duration::from_millis(250);
    // What was read and not yet delivered (a digest waits for its interval), up to `held_to`.
    let mut held: Vec<Outgoing> = Vec::new();
    let mut held_to = reader.cursor();
    let mut withheld = 0u64;
    let mut oldest = None;
    loop {
        let room = adapter.batch().saturating_sub(held.len()).max(1);
        let records: Vec<Record> = match reader.next(room, Duration::from_millis(200)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{}: reading the spool: {e}", cfg.target);
                return;
            }
        };
        for r in &records {
            held_to = r.seq;
            match serde_json::from_slice::<Outgoing>(&r.body) {
                Ok(Outgoing::Raw(v)) if raw => held.push(Outgoing::Raw(v)),
                Ok(Outgoing::Alert(a)) if !raw => {
                    if cfg.may_carry(super::tlp_of(&a.tlp)) {
                        held.push(Outgoing::Alert(a));
                    } else {
                        withheld += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!("{}: spool record {}: {e}; skipped", cfg.target, r.seq),
            }
        }
        let stopping = stop.load(Ordering::Relaxed);
        if held_to == reader.cursor() {
            if stopping {
                return;
            }
            continue;
        }
        let since = *oldest.get_or_insert_with(std::time::Instant::now);
        if !stopping && held.len() < adapter.batch() && !adapter.ready(since) {
            continue;
        }
        loop {
            match adapter.deliver(&held) {
                Ok(()) => {
                    if let Err(e) = reader.delivered(held_to) {
                        tracing::error!("{}: storing the cursor: {e}", cfg.target);
                        return;
                    }
                    status
                        .delivered
                        .fetch_add(held.len() as u64, Ordering::Relaxed);
                    status.withheld.fetch_add(withheld, Ordering::Relaxed);
                    status.failing.store(0, Ordering::Relaxed);
                    status.failing_since_ms.store(0, Ordering::Relaxed);
                    status.cursor.store(held_to, Ordering::Relaxed);
                    status.last_ok_ms.store(
                        jiff::Timestamp::now().as_millisecond().max(0) as u64,
                        Ordering::Relaxed,
                    );
                    store_report(
                        spool,
                        cfg,
                        &status.report(&cfg.target, spool.pending_after(held_to)),
                    );
                    (held, withheld, oldest) = (Vec::new(), 0, None);
                    wait = Duration::from_millis(250);
                    break;
                }
                Err(e) => {
                    let n = status.failing.fetch_add(1, Ordering::Relaxed) + 1;
                    let _ = status.failing_since_ms.compare_exchange(
                        0,
                        jiff::Timestamp::now().as_millisecond().max(1) as u64,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    if let Ok(mut last) = status.last_error.lock() {
                        *last = e.to_string();
                    }
                    store_report(
                        spool,
                        cfg,
                        &status.report(&cfg.target, spool.pending_after(reader.cursor())),
                    );
                    if stop.load(Ordering::Relaxed) {
                        tracing::warn!(
                            "{}: {e}; stopping with {} record(s) undelivered (kept in the spool)",
                            cfg.target,
                            spool.pending_after(reader.cursor())
                        );
                        return;
                    }
                    // Jitter: up to a quarter of the wait, from the clock's low bits.
                    let jitter = (jiff::Timestamp::now().subsec_nanosecond().unsigned_abs() as u64)
                        % (wait.as_millis() as u64 / 4 + 1);
                    let sleep = wait + Duration::from_millis(jitter);
                    tracing::warn!(
                        "{}: {e} (attempt {n}); again in {:.1} s",
                        cfg.target,
                        sleep.as_secs_f64()
                    );
                    // Sleep in steps, to see the stop flag.
                    let until = std::time::Instant::now() + sleep;
                    while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed with Python's hmac module:
        // hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{}"),
            "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn targets_parse_and_outside_ones_carry_nothing_above_green_unless_allowed() {
        assert_eq!(
            "webhook:https://soc.example/hook"
                .parse::<Target>()
                .unwrap(),
            Target::Webhook("https://soc.example/hook".into())
        );
        assert!("webhook:ftp://x".parse::<Target>().is_err());
        assert!("carrier-pigeon:x".parse::<Target>().is_err());
        assert_eq!(
            "smtp:127.0.0.1:25".parse::<Target>().unwrap(),
            Target::Smtp("127.0.0.1:25".into())
        );
        assert!("smtp:mail.example".parse::<Target>().is_err());
        assert_eq!(
            "taxii:https://taxii.example/api1/collections/abc"
                .parse::<Target>()
                .unwrap(),
            Target::Taxii("https://taxii.example/api1/collections/abc/".into())
        );
        assert!(
            "taxii:https://taxii.example/api1/"
                .parse::<Target>()
                .is_err()
        );
        let mut c = TargetConfig::new("jsonl:/tmp/x".parse().unwrap());
        c.outside = true;
        assert!(c.may_carry(Tlp::Green) && !c.may_carry(Tlp::Amber));
        c.allow_amber = true;
        assert!(c.may_carry(Tlp::AmberStrict) && !c.may_carry(Tlp::Red));
    }
}
