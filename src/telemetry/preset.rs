//! Presets: the [`FieldMap`]s of the telemetry schemas partners stream (FORMATS.md §5) —
//! Zeek, Suricata EVE, the Elastic Common Schema and OCSF — and the choice of one from an
//! input's own columns (`--preset auto`).
//!
//! A preset is nothing but a field map, so every reader takes it as it takes a hand-written
//! one. It names every observable field of its schema, across all of the schema's logs or
//! event types; a field the input lacks is read as nulls (a Zeek `conn.log` has no `query`), so
//! one preset serves every log of its schema.
//!
//! - [`Preset`]: a schema. [`Preset::field_map`] is its map, [`Preset::with_overrides`] the map
//!   with `--field` entries added or replacing, [`Preset::detect`] the schema a list of column
//!   names or paths shows.
//! - [`PresetChoice`]: what `--preset` accepts, `auto` included; [`auto_field_map`] resolves
//!   `auto` for one file.
//! - [`file_columns`], [`head_columns`], [`schema_columns`]: an input's columns, for
//!   [`Preset::detect`] — from a file, from its first bytes, from an Arrow schema.
//! - Joined columns: the URL of a request is logged in two parts by Zeek (`host`, `uri`) and
//!   Suricata (`http.hostname`, `http.url`). A field named `HOST+TARGET` of kind `url` is that
//!   URL, joined row by row ([`join_url`]) after reading. [`FieldMap::input_columns`] are the
//!   columns a reader must read and [`FieldMap::project`] makes the mapped columns of a batch
//!   of them; every reader, row-wise or columnar, shares the two.
//!
//! ```
//! use cwn::telemetry::{FieldKind, Preset};
//!
//! let cols = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "query"];
//! assert_eq!(Preset::detect(&cols), Some(Preset::Zeek));
//! let map = Preset::Zeek
//!     .with_overrides(&["query=text".parse().unwrap()])
//!     .unwrap();
//! let query = map.fields().iter().find(|f| f.name == "query").unwrap();
//! assert_eq!(query.kind, FieldKind::Text);
//! assert!(map.fields().iter().any(|f| f.name == "host+uri" && f.kind == FieldKind::Url));
//! ```
//!
//! What a preset must not do: guess at values. It maps names; the matcher decides what a value
//! hits.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema};

use super::{
    BatchIter, FieldKind, FieldMap, FieldSpec, InputFormat, TelemetryError, detect, json,
    open_buffered, zeek,
};

/// A telemetry schema with a preset field map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Preset {
    /// Zeek logs, JSON (flat dotted keys, nested `id` objects or `id_orig_h`) or TSV.
    Zeek,
    /// Suricata EVE JSON, DNS in the version 2 and 3 layouts.
    Suricata,
    /// Elastic Common Schema, nested or with flattened dotted keys.
    Ecs,
    /// Open Cybersecurity Schema Framework, network activity classes.
    Ocsf,
}

/// Zeek: `conn`, `dns`, `http`, `ssl`, `x509`, `files` and `smtp` logs (FORMATS.md §5.1).
const ZEEK: &[&str] = &[
    "ts=time",
    "uid=uid",
    "id.orig_h=ip",
    "id.orig_p=port@id.orig_h",
    "id.resp_h=ip",
    "id.resp_p=port@id.resp_h",
    // Shippers that rename the dotted keys.
    "id_orig_h=ip",
    "id_orig_p=port@id_orig_h",
    "id_resp_h=ip",
    "id_resp_p=port@id_resp_h",
    // files.log before Zeek 5.
    "tx_hosts=ip",
    "rx_hosts=ip",
    // dns.log: `answers` mixes names and addresses; a name field looks addresses up as such.
    "query=domain",
    "answers=domain",
    // http.log: `host` may carry `:port`; `uri` is the decoded request target, no scheme.
    "host=domain",
    "host+uri=url",
    "user_agent=user-agent",
    // ssl.log; JA3/JA3S/JA4 come from add-on packages.
    "server_name=domain",
    "ja3=ja3",
    "ja3s=ja3s",
    "ja4=ja4",
    "cert_chain_fps=hash",
    "client_cert_chain_fps=hash",
    // x509.log.
    "fingerprint=hash",
    "san.dns=domain",
    "san.ip=ip",
    // files.log.
    "md5=md5",
    "sha1=sha1",
    "sha256=sha256",
    // smtp.log: envelope and header addresses (`Name <a@b>` is read as `a@b`).
    "mailfrom=email",
    "rcptto=email",
    "from=email",
    "to=email",
    "cc=email",
    "reply_to=email",
    "x_originating_ip=ip",
];

/// Suricata EVE (FORMATS.md §5.2).
const SURICATA: &[&str] = &[
    "timestamp=time",
    "flow_id=uid",
    "src_ip=ip",
    "src_port=port@src_ip",
    "dest_ip=ip",
    "dest_port=port@dest_ip",
    // DNS version 3 (Suricata 8) and version 2 (Suricata 7, and one-record-per-event v1).
    "dns.queries.rrname=domain",
    "dns.rrname=domain",
    "dns.answers.rdata=domain",
    "dns.rdata=domain",
    "dns.grouped.A=ip",
    "dns.grouped.AAAA=ip",
    "dns.grouped.CNAME=domain",
    "dns.grouped.PTR=domain",
    "dns.grouped.NS=domain",
    "dns.grouped.MX=domain",
    // HTTP: `url` is the request target as sent (absolute-form through proxies).
    "http.hostname=domain",
    "http.hostname+http.url=url",
    "http.http_user_agent=user-agent",
    // TLS and QUIC; `tls.fingerprint` is the server certificate's SHA-1 as `:`-hex.
    "tls.sni=domain",
    "tls.ja3.hash=ja3",
    "tls.ja3s.hash=ja3s",
    "tls.ja4=ja4",
    "tls.fingerprint=sha1",
    "quic.sni=domain",
    "quic.ja3.hash=ja3",
    "quic.ja4=ja4",
    "fileinfo.md5=md5",
    "fileinfo.sha1=sha1",
    "fileinfo.sha256=sha256",
    "smtp.mail_from=email",
    "smtp.rcpt_to=email",
    "email.from=email",
    "email.to=email",
    "email.cc=email",
    "email.url=url",
];

/// ECS (FORMATS.md §5.3). The `related.*` pivot arrays repeat the fields below and are left
/// out, so that a value is not reported twice; map them with `--field` where they are all a
/// pipeline fills.
const ECS: &[&str] = &[
    "@timestamp=time",
    "event.id=uid",
    "source.ip=ip",
    "source.port=port@source.ip",
    "destination.ip=ip",
    "destination.port=port@destination.ip",
    "client.ip=ip",
    "client.port=port@client.ip",
    "server.ip=ip",
    "server.port=port@server.ip",
    "source.domain=domain",
    "destination.domain=domain",
    "dns.question.name=domain",
    "dns.answers.data=domain",
    "dns.resolved_ip=ip",
    "url.full=url",
    "url.original=url",
    "url.domain=domain",
    "user_agent.original=user-agent",
    "tls.client.server_name=domain",
    "tls.client.ja3=ja3",
    "tls.server.ja3s=ja3s",
    "tls.server.hash.md5=md5",
    "tls.server.hash.sha1=sha1",
    "tls.server.hash.sha256=sha256",
    "file.hash.md5=md5",
    "file.hash.sha1=sha1",
    "file.hash.sha256=sha256",
    "file.hash.sha512=hash",
    "process.hash.md5=md5",
    "process.hash.sha1=sha1",
    "process.hash.sha256=sha256",
    "email.from.address=email",
    "email.sender.address=email",
    "email.to.address=email",
    "email.cc.address=email",
    "email.bcc.address=email",
    "email.reply_to.address=email",
];

/// OCSF network, HTTP, DNS, e-mail and file activity (FORMATS.md §5.4). `observables[]` is
/// left out: its values' kinds depend on a sibling `type_id`, which a field map cannot say.
const OCSF: &[&str] = &[
    "time=time",
    "metadata.uid=uid",
    "src_endpoint.ip=ip",
    "src_endpoint.port=port@src_endpoint.ip",
    "dst_endpoint.ip=ip",
    "dst_endpoint.port=port@dst_endpoint.ip",
    "src_endpoint.hostname=domain",
    "dst_endpoint.hostname=domain",
    "query.hostname=domain",
    "answers.rdata=domain",
    "http_request.url.url_string=url",
    "http_request.url.hostname=domain",
    "http_request.user_agent=user-agent",
    "tls.sni=domain",
    "tls.ja3_hash.value=ja3",
    "tls.ja3s_hash.value=ja3s",
    "tls.certificate.fingerprints.value=hash",
    "ja4_fingerprint_list.value=ja4",
    // `hashes[].algorithm_id` is not needed: a digest's length tells its algorithm.
    "file.hashes.value=hash",
    "email.from=email",
    "email.smtp_from=email",
    "email.to=email",
    "email.smtp_to=email",
    "email.cc=email",
    "email.reply_to=email",
];

/// Columns that show a schema, with their weight. Only `Preset::detect` reads these.
const SIGNS: &[(Preset, &[(&str, u32)])] = &[
    (
        Preset::Zeek,
        &[
            ("id.orig_h", 3),
            ("id.resp_h", 3),
            ("id_orig_h", 3),
            ("id_resp_h", 3),
            ("uid", 2),
            ("fuid", 2),
            ("tx_hosts", 2),
            ("certificate.subject", 2),
            ("ts", 1),
        ],
    ),
    (
        Preset::Suricata,
        &[
            ("event_type", 3),
            ("flow_id", 2),
            ("in_iface", 2),
            ("src_ip", 1),
            ("dest_ip", 1),
        ],
    ),
    (
        Preset::Ecs,
        &[
            ("ecs.version", 3),
            ("@timestamp", 1),
            ("event.kind", 1),
            ("event.category", 1),
            ("source.ip", 1),
            ("destination.ip", 1),
        ],
    ),
    (
        Preset::Ocsf,
        &[
            ("class_uid", 3),
            ("category_uid", 2),
            ("type_uid", 1),
            ("metadata.version", 1),
            ("src_endpoint.ip", 1),
            ("dst_endpoint.ip", 1),
        ],
    ),
];

/// The weight [`Preset::detect`] needs before it names a schema: one strong sign, or several.
const DETECT_MIN: u32 = 3;

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 4] = [Preset::Zeek, Preset::Suricata, Preset::Ecs, Preset::Ocsf];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Zeek => "zeek",
            Preset::Suricata => "suricata",
            Preset::Ecs => "ecs",
            Preset::Ocsf => "ocsf",
        }
    }

    /// The mappings as `NAME=KIND`, in map order.
    pub fn specs(self) -> &'static [&'static str] {
        match self {
            Preset::Zeek => ZEEK,
            Preset::Suricata => SURICATA,
            Preset::Ecs => ECS,
            Preset::Ocsf => OCSF,
        }
    }

    /// The preset's field map.
    pub fn field_map(self) -> FieldMap {
        FieldMap::from_specs(self.parsed()).expect("preset tables are valid field maps")
    }

    fn parsed(self) -> impl Iterator<Item = FieldSpec> {
        self.specs()
            .iter()
            .map(|s| s.parse().expect("preset tables parse"))
    }

    /// The preset's map with `overrides` applied (`--field` entries): an entry for a column
    /// the preset maps replaces its mapping, any other is added. A `time` override replaces
    /// the preset's time field, and a preset `port@ADDR` goes when an override makes `ADDR`
    /// something other than an address.
    pub fn with_overrides(self, overrides: &[FieldSpec]) -> Result<FieldMap, String> {
        merge(Some(self), overrides)
    }

    /// The schema whose columns `columns` (names or dotted paths, as [`file_columns`] lists
    /// them) show, or `None` when no schema's signs are strong enough or two tie.
    pub fn detect<S: AsRef<str>>(columns: &[S]) -> Option<Preset> {
        let have: HashSet<&str> = columns.iter().map(|c| c.as_ref()).collect();
        let mut scores: Vec<(u32, Preset)> = SIGNS
            .iter()
            .map(|(p, signs)| {
                let score = signs
                    .iter()
                    .filter(|(name, _)| have.contains(name))
                    .map(|(_, w)| w)
                    .sum();
                (score, *p)
            })
            .collect();
        scores.sort_by_key(|s| std::cmp::Reverse(s.0));
        match scores.as_slice() {
            [(best, p), (next, _), ..] if *best >= DETECT_MIN && best > next => Some(*p),
            _ => None,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown preset `{s}` (zeek, suricata, ecs, ocsf)"))
    }
}

/// What `--preset` accepts: a schema, or `auto` to choose one per input from its columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetChoice {
    /// Choose per input from its columns (the first JSON record's keys, the Zeek `#fields`
    /// header, the CSV header).
    Auto,
    /// Zeek logs (JSON or TSV).
    Zeek,
    /// Suricata EVE JSON.
    Suricata,
    /// Elastic Common Schema, nested or flattened.
    Ecs,
    /// OCSF network activity classes.
    Ocsf,
}

impl PresetChoice {
    /// The schema chosen, or `None` for `auto`.
    pub fn preset(self) -> Option<Preset> {
        match self {
            PresetChoice::Auto => None,
            PresetChoice::Zeek => Some(Preset::Zeek),
            PresetChoice::Suricata => Some(Preset::Suricata),
            PresetChoice::Ecs => Some(Preset::Ecs),
            PresetChoice::Ocsf => Some(Preset::Ocsf),
        }
    }
}

/// A preset's map (or none) with `overrides` applied as [`Preset::with_overrides`] says.
pub fn merge(preset: Option<Preset>, overrides: &[FieldSpec]) -> Result<FieldMap, String> {
    let user: HashSet<&str> = overrides.iter().map(|o| o.name.as_str()).collect();
    // The user's time or event id field replaces the preset's (a row has one of each).
    let user_time = overrides.iter().any(|o| o.kind == FieldKind::Time);
    let user_uid = overrides.iter().any(|o| o.kind == FieldKind::Uid);
    let mut m = FieldMap::new();
    for s in preset.into_iter().flat_map(Preset::parsed) {
        if !(user_time && s.kind == FieldKind::Time || user_uid && s.kind == FieldKind::Uid) {
            m.insert(s);
        }
    }
    for o in overrides {
        m.insert(o.clone());
    }
    // A preset port whose address was re-mapped has nothing left to pair with.
    let addrs: HashSet<String> = m
        .fields
        .iter()
        .filter(|f| f.kind == FieldKind::Ip)
        .map(|f| f.name.clone())
        .collect();
    m.fields.retain(|f| match &f.kind {
        FieldKind::Port(addr) => user.contains(f.name.as_str()) || addrs.contains(addr),
        _ => true,
    });
    m.check()?;
    Ok(m)
}

/// The field map of one input under `--preset auto`: the preset its columns show with
/// `overrides` applied, and that preset. An input whose schema is unclear is read with the
/// overrides alone when there are some, and is an error otherwise.
pub fn auto_field_map(
    path: &Path,
    format: Option<InputFormat>,
    overrides: &[FieldSpec],
) -> Result<(FieldMap, Option<Preset>), TelemetryError> {
    let name = path.display().to_string();
    let columns = file_columns(path, format)?;
    let preset = Preset::detect(&columns);
    if preset.is_none() && overrides.is_empty() {
        let mut shown: Vec<&str> = columns.iter().take(12).map(String::as_str).collect();
        if columns.len() > shown.len() {
            shown.push("…");
        }
        return Err(TelemetryError::Format {
            path: name,
            reason: format!(
                "--preset auto: its columns ({}) show none of zeek, suricata, ecs, ocsf; name the schema with --preset or map fields with --field",
                shown.join(", ")
            ),
        });
    }
    let map = merge(preset, overrides).map_err(|e| TelemetryError::Format {
        path: name,
        reason: match preset {
            Some(p) => format!("--field with the {p} preset chosen by --preset auto: {e}"),
            None => format!("--field: {e}"),
        },
    })?;
    Ok((map, preset))
}

/// How many bytes of an input [`file_columns`] reads.
const HEAD_BYTES: u64 = 1 << 20;

/// The columns of a telemetry file, from its first megabyte: see [`head_columns`]. Gzip is
/// unwrapped; `format` overrides detection.
pub fn file_columns(
    path: &Path,
    format: Option<InputFormat>,
) -> Result<Vec<String>, TelemetryError> {
    let name = path.display().to_string();
    let mut head = Vec::new();
    open_buffered(path)?
        .take(HEAD_BYTES)
        .read_to_end(&mut head)
        .map_err(|e| TelemetryError::Io {
            path: name.clone(),
            source: e,
        })?;
    let format = format.unwrap_or_else(|| detect(&head));
    match format {
        InputFormat::Parquet | InputFormat::Arrow => Err(TelemetryError::Format {
            path: name,
            reason: format!(
                "--preset auto reads the columns of {format} input from its schema, which this build does not read; name the preset"
            ),
        }),
        f => Ok(head_columns(&head, f)),
    }
}

/// The columns the start of an input shows: the paths of its first JSON object record (a
/// malformed first line is passed over), the Zeek `#fields` header, or the CSV header. Empty
/// when there are none, and for the columnar formats, whose columns are in their schema
/// ([`schema_columns`]).
pub fn head_columns(head: &[u8], format: InputFormat) -> Vec<String> {
    match format {
        InputFormat::Jsonl => head
            .split(|&b| b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .take(64)
            .find_map(|l| match serde_json::from_slice::<serde_json::Value>(l) {
                Ok(v @ serde_json::Value::Object(_)) => Some(json::paths(&v)),
                _ => None,
            })
            .unwrap_or_default(),
        InputFormat::Zeek => zeek::header_fields(head).unwrap_or_default(),
        InputFormat::Csv => csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(head)
            .headers()
            .map(|h| h.iter().map(|c| c.trim().to_string()).collect())
            .unwrap_or_default(),
        InputFormat::Parquet | InputFormat::Arrow => Vec::new(),
    }
}

/// The columns of an Arrow schema as field maps name them: struct members joined with dots
/// (`source.ip`), lists looked through (`dns.queries.rrname`). For the columnar readers.
pub fn schema_columns(schema: &Schema) -> Vec<String> {
    fn walk(name: &str, dt: &DataType, out: &mut Vec<String>) {
        match dt {
            DataType::Struct(fields) => {
                for f in fields {
                    walk(&format!("{name}.{}", f.name()), f.data_type(), out);
                }
            }
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::ListView(f)
            | DataType::LargeListView(f)
            | DataType::FixedSizeList(f, _) => walk(name, f.data_type(), out),
            _ => out.push(name.to_string()),
        }
    }
    let mut out = Vec::new();
    for f in schema.fields() {
        walk(f.name(), f.data_type(), &mut out);
    }
    out
}

impl FieldSpec {
    /// For a joined field (`host+uri`, `http.hostname+http.url`): its host column and its
    /// request-target column, whose values [`join_url`] makes one URL.
    pub fn joined(&self) -> Option<(&str, &str)> {
        let (host, target) = self.name.split_once('+')?;
        (!host.is_empty() && !target.is_empty() && !target.contains('+')).then_some((host, target))
    }
}

/// A joined field must name two columns and hold a URL.
pub(super) fn check_joined(f: &FieldSpec) -> Result<(), String> {
    if !f.name.contains('+') {
        return Ok(());
    }
    if f.joined().is_none() {
        return Err(format!(
            "`{}`: a joined field names two columns, HOST+TARGET (e.g. host+uri)",
            f.name
        ));
    }
    if f.kind != FieldKind::Url {
        return Err(format!(
            "`{}={}`: a joined field is a URL made from a host and a request target; its kind must be url",
            f.name, f.kind
        ));
    }
    Ok(())
}

/// The URL of an HTTP request logged as its Host and its request target (RFC 9112 §3.2):
/// an absolute-form target (a proxy request) is the URL itself; an origin-form one (`/path`)
/// follows the host; an authority-form (`CONNECT`) or asterisk-form target, or none, leaves
/// the host alone. `None` when both are absent or empty. No scheme is invented: URLs without
/// one are matched scheme-insensitively.
pub fn join_url(host: Option<&str>, target: Option<&str>) -> Option<String> {
    let host = host.map(str::trim).filter(|h| !h.is_empty());
    let target = target.map(str::trim).filter(|t| !t.is_empty());
    match (host, target) {
        (_, Some(t)) if has_scheme(t) => Some(t.to_string()),
        (Some(h), Some(t)) if t.starts_with('/') => Some(format!("{h}{t}")),
        (Some(h), _) => Some(h.to_string()),
        (None, Some(t)) => Some(t.to_string()),
        (None, None) => None,
    }
}

fn has_scheme(s: &str) -> bool {
    s.find("://").is_some_and(|i| {
        i > 0
            && s.as_bytes()[0].is_ascii_alphabetic()
            && s[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    })
}

/// The error for a command given neither `--preset` nor `--field`: without one, nothing
/// says which column holds what, and every input would silently match nothing.
pub fn need_a_map(preset: Option<PresetChoice>, fields: &[FieldSpec]) -> Result<(), String> {
    if preset.is_none() && fields.is_empty() {
        return Err(
            "say which columns hold what: --preset zeek|suricata|ecs|ocsf|auto, or \
                    --field NAME=KIND (e.g. --field id.resp_h=ip), or both"
                .into(),
        );
    }
    Ok(())
}

impl FieldMap {
    /// The columns a reader reads for this map: every mapped column, and the two parts of
    /// each joined one, without repeats.
    pub fn input_columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let parts = match f.joined() {
                Some((host, target)) => vec![host, target],
                None => vec![f.name.as_str()],
            };
            for p in parts {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Whether any field is joined from two columns.
    pub fn has_joins(&self) -> bool {
        self.fields.iter().any(|f| f.joined().is_some())
    }

    /// The mapped columns, in map order, of a batch of [input columns](Self::input_columns):
    /// joined fields are made, other columns passed on, and a column the batch lacks is all
    /// nulls.
    pub fn project(&self, batch: &RecordBatch) -> RecordBatch {
        let rows = batch.num_rows();
        let mut fields = Vec::with_capacity(self.fields.len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let col = match f.joined() {
                Some((host, target)) => join_column(
                    batch.column_by_name(host),
                    batch.column_by_name(target),
                    rows,
                ),
                None => match batch.column_by_name(&f.name) {
                    Some(c) => c.clone(),
                    None => arrow_array::new_null_array(&DataType::Utf8, rows),
                },
            };
            fields.push(Field::new(&f.name, col.data_type().clone(), true));
            columns.push(col);
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("every column has the batch's rows")
    }

    /// A reader's batches with [`project`](Self::project) applied (the batches themselves when
    /// nothing is joined).
    pub fn project_batches(&self, reader: BatchIter) -> BatchIter {
        if !self.has_joins() {
            return reader;
        }
        let map = self.clone();
        Box::new(reader.map(move |b| {
            b.map(|mut tb| {
                tb.batch = map.project(&tb.batch);
                tb
            })
        }))
    }
}

fn join_column(host: Option<&ArrayRef>, target: Option<&ArrayRef>, rows: usize) -> ArrayRef {
    if let Some(joined) = join_dictionaries(host, target, rows) {
        return joined;
    }
    let mut b = StringBuilder::with_capacity(rows, rows * 32);
    for r in 0..rows {
        let h = host.and_then(|a| super::cell::first_text(a.as_ref(), r));
        let t = target.and_then(|a| super::cell::first_text(a.as_ref(), r));
        b.append_option(join_url(h.as_deref(), t.as_deref()));
    }
    Arc::new(b.finish())
}

/// One side of a join read as a dictionary of strings: its keys, their nulls and its values;
/// `None` for a side that is absent (every row null).
type DictSide<'a> = Option<(
    &'a [i32],
    Option<&'a arrow_buffer::NullBuffer>,
    &'a arrow_array::StringArray,
)>;

/// The side's dictionary, or `Err(())` when it is not a dictionary of `Utf8` with `Int32` keys.
fn dict_side(a: Option<&ArrayRef>) -> Result<DictSide<'_>, ()> {
    use arrow_array::cast::AsArray;
    let Some(a) = a else { return Ok(None) };
    match a.data_type() {
        DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
            let d = a.as_dictionary::<arrow_array::types::Int32Type>();
            Ok(Some((
                d.keys().values(),
                d.keys().nulls(),
                d.values().as_string::<i32>(),
            )))
        }
        _ => Err(()),
    }
}

/// [`join_column`] of two dictionary-encoded columns (as Parquet row groups usually hold host
/// and request target) as a dictionary itself: each distinct (host, target) pair of the batch
/// is joined once, and the matcher resolves each distinct URL once instead of once per row.
/// `None` when a side is not such a dictionary.
fn join_dictionaries(
    host: Option<&ArrayRef>,
    target: Option<&ArrayRef>,
    rows: usize,
) -> Option<ArrayRef> {
    let (h, t) = (dict_side(host).ok()?, dict_side(target).ok()?);
    if h.is_none() && t.is_none() {
        return None;
    }
    // The value of row `r` of a side, as `first_text` reads it.
    let at = |side: &DictSide<'_>, r: usize| -> Option<usize> {
        let (keys, nulls, values) = side.as_ref()?;
        if nulls.is_some_and(|n| n.is_null(r)) {
            return None;
        }
        let k = usize::try_from(*keys.get(r)?).ok()?;
        (k < values.len() && !values.is_null(k)).then_some(k)
    };
    fn text<'a>(side: &DictSide<'a>, k: Option<usize>) -> Option<&'a str> {
        Some(side.as_ref()?.2.value(k?))
    }
    // Pair of keys (each + 1, 0 for none) -> key of the joined value (-1: no URL).
    // (The keys index the batch's dictionaries; the seeded hash keeps a file from aiming them
    // at one bucket. A streaming xxh3 here cost ~2 % of a scan. Sized for the few hundred
    // distinct pairs of a batch, not its rows: zeroing a table for 8 Ki pairs per batch cost
    // more than growing.)
    let mut pairs: std::collections::HashMap<u64, i32, crate::hash::SeededFastHash> =
        std::collections::HashMap::with_capacity_and_hasher(
            rows.min(1 << 10),
            crate::hash::SeededFastHash::new(),
        );
    let mut values = StringBuilder::new();
    let mut keys = arrow_array::builder::Int32Builder::with_capacity(rows);
    let mut next = 0i32;
    for r in 0..rows {
        let (hk, tk) = (at(&h, r), at(&t, r));
        if hk.is_none() && tk.is_none() {
            // Most rows of a flattened log: another log type, no URL, no probe.
            keys.append_null();
            continue;
        }
        let code = (hk.map_or(0, |k| k as u64 + 1) << 32) | tk.map_or(0, |k| k as u64 + 1);
        let key =
            *pairs
                .entry(code)
                .or_insert_with(|| match join_url(text(&h, hk), text(&t, tk)) {
                    Some(url) => {
                        values.append_value(url);
                        next += 1;
                        next - 1
                    }
                    None => -1,
                });
        if key < 0 {
            keys.append_null();
        } else {
            keys.append_value(key);
        }
    }
    let dict = arrow_array::DictionaryArray::<arrow_array::types::Int32Type>::try_new(
        keys.finish(),
        Arc::new(values.finish()),
    )
    .ok()?;
    Some(Arc::new(dict))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::read_all;
    use arrow_array::cast::AsArray;

    fn spec(s: &str) -> FieldSpec {
        s.parse().unwrap()
    }

    fn kind_of(m: &FieldMap, name: &str) -> Option<FieldKind> {
        m.fields()
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.kind.clone())
    }

    #[test]
    fn every_preset_is_a_valid_map_without_repeats() {
        for p in Preset::ALL {
            let m = p.field_map();
            assert_eq!(
                m.fields().len(),
                p.specs().len(),
                "{p}: a column mapped twice"
            );
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
            // Source and destination addresses come with their ports.
            let ports = m
                .fields()
                .iter()
                .filter(|f| matches!(f.kind, FieldKind::Port(_)))
                .count();
            assert!(ports >= 2, "{p}");
            let times = m.fields().iter().filter(|f| f.kind == FieldKind::Time);
            assert_eq!(times.count(), 1, "{p}");
        }
        assert!("nope".parse::<Preset>().is_err());
    }

    #[test]
    fn detection_from_columns() {
        let cases: &[(&[&str], Option<Preset>)] = &[
            // Zeek JSON (flat or nested keys give the same paths) and TSV `#fields`.
            (
                &["ts", "uid", "id.orig_h", "id.resp_h", "query"],
                Some(Preset::Zeek),
            ),
            (&["ts", "uid", "id_orig_h", "id_resp_h"], Some(Preset::Zeek)),
            (
                &["ts", "fuid", "tx_hosts", "rx_hosts", "md5"],
                Some(Preset::Zeek),
            ),
            (
                &["ts", "id", "certificate.subject", "san.dns"],
                Some(Preset::Zeek),
            ),
            (
                &["timestamp", "flow_id", "event_type", "src_ip", "dest_ip"],
                Some(Preset::Suricata),
            ),
            // EVE shipped through Logstash gains `@timestamp` and stays EVE.
            (
                &["@timestamp", "event_type", "src_ip", "dest_ip"],
                Some(Preset::Suricata),
            ),
            (
                &["@timestamp", "ecs.version", "source.ip"],
                Some(Preset::Ecs),
            ),
            (
                &["@timestamp", "event.kind", "source.ip", "destination.ip"],
                Some(Preset::Ecs),
            ),
            (
                &["class_uid", "category_uid", "src_endpoint.ip"],
                Some(Preset::Ocsf),
            ),
            // Too little to go on, or two schemas at once.
            (&["ts", "query"], None),
            (&["@timestamp", "message"], None),
            (&["src_ip", "dest_ip"], None),
            (&["event_type", "class_uid"], None),
            (&[], None),
        ];
        for (cols, want) in cases {
            assert_eq!(Preset::detect(cols), *want, "{cols:?}");
        }
    }

    #[test]
    fn the_example_telemetry_is_recognised_from_its_first_record() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/examples/telemetry");
        for (file, want) in [
            ("zeek-conn.ndjson", Preset::Zeek),
            ("zeek-dns.ndjson", Preset::Zeek),
            ("zeek-http.ndjson", Preset::Zeek),
            ("zeek-ssl.ndjson", Preset::Zeek),
            ("zeek-files.ndjson", Preset::Zeek),
            ("suricata-eve.ndjson", Preset::Suricata),
            ("ecs.ndjson", Preset::Ecs),
            ("ocsf.ndjson", Preset::Ocsf),
        ] {
            let cols = file_columns(&dir.join(file), None).unwrap();
            assert_eq!(Preset::detect(&cols), Some(want), "{file}: {cols:?}");
        }
    }

    #[test]
    fn head_columns_of_each_format() {
        let jsonl = b"\nnot json\n{\"id\":{\"orig_h\":\"192.0.2.1\"},\"dns\":{\"queries\":[{\"rrname\":\"a.example\"}]},\"answers\":[\"x\"],\"source.ip\":\"192.0.2.2\"}\n";
        assert_eq!(
            head_columns(jsonl, InputFormat::Jsonl),
            ["answers", "dns.queries.rrname", "id.orig_h", "source.ip"]
        );
        let tsv = b"#separator \\x09\n#set_separator\t,\n#fields\tts\tuid\tid.orig_h\n#types\ttime\tstring\taddr\n1.0\tC1\t192.0.2.1\n";
        assert_eq!(
            head_columns(tsv, InputFormat::Zeek),
            ["ts", "uid", "id.orig_h"]
        );
        assert_eq!(
            head_columns(b"ts, id.orig_h ,query\n1,2,3\n", InputFormat::Csv),
            ["ts", "id.orig_h", "query"]
        );
        assert!(head_columns(b"1.0\tx\n", InputFormat::Zeek).is_empty());
        let schema = Schema::new(vec![
            Field::new(
                "source",
                DataType::Struct(vec![Field::new("ip", DataType::Utf8, true)].into()),
                true,
            ),
            Field::new(
                "answers",
                DataType::new_list(
                    DataType::Struct(vec![Field::new("rdata", DataType::Utf8, true)].into()),
                    true,
                ),
                true,
            ),
            Field::new("ts", DataType::Float64, true),
        ]);
        assert_eq!(
            schema_columns(&schema),
            ["source.ip", "answers.rdata", "ts"]
        );
    }

    #[test]
    fn overrides_add_replace_and_take_their_dependants_along() {
        let base = Preset::Zeek.field_map();
        // Added.
        let m = Preset::Zeek
            .with_overrides(&[spec("service=text")])
            .unwrap();
        assert_eq!(m.fields().len(), base.fields().len() + 1);
        assert_eq!(kind_of(&m, "service"), Some(FieldKind::Text));
        // Replaced in place: the order of the map, and so of the hits, is kept.
        let m = Preset::Zeek.with_overrides(&[spec("query=text")]).unwrap();
        assert_eq!(m.fields().len(), base.fields().len());
        assert_eq!(kind_of(&m, "query"), Some(FieldKind::Text));
        assert_eq!(m.names(), base.names());
        // Another time field replaces the preset's.
        let m = Preset::Zeek.with_overrides(&[spec("ts2=time")]).unwrap();
        assert_eq!(kind_of(&m, "ts"), None);
        assert_eq!(kind_of(&m, "ts2"), Some(FieldKind::Time));
        // An address re-mapped as a name loses the preset's port pairing with it.
        let m = Preset::Zeek
            .with_overrides(&[spec("id.resp_h=domain")])
            .unwrap();
        assert_eq!(kind_of(&m, "id.resp_p"), None);
        assert_eq!(
            kind_of(&m, "id.orig_p"),
            Some(FieldKind::Port("id.orig_h".into()))
        );
        // A port the user pairs with an address the preset has is fine; with none, an error.
        let m = Preset::Suricata
            .with_overrides(&[spec("http.http_port=port@dest_ip")])
            .unwrap();
        assert_eq!(
            kind_of(&m, "http.http_port"),
            Some(FieldKind::Port("dest_ip".into()))
        );
        let e = Preset::Zeek
            .with_overrides(&[spec("p=port@nowhere")])
            .unwrap_err();
        assert!(e.contains("no field `nowhere`"), "{e}");
        // No preset: the overrides alone, as `--field` always was.
        let m = merge(None, &[spec("a=ip"), spec("b=port@a")]).unwrap();
        assert_eq!(m.names(), ["a", "b"]);
    }

    /// Dictionary-encoded host and target columns (as Parquet row groups hold them) join into
    /// a dictionary with the same value in every row as the row-by-row join, nulls and keys
    /// pointing at null values included.
    #[test]
    fn dictionary_columns_join_row_for_row() {
        use arrow_array::types::Int32Type;
        use arrow_array::{DictionaryArray, Int32Array, StringArray};
        let hosts = StringArray::from(vec![Some("a.example"), None, Some(" b.example:8080 ")]);
        let targets = StringArray::from(vec![Some("/x?q=1"), Some("http://p.example/"), Some("")]);
        let hk = Int32Array::from(vec![
            Some(0),
            Some(2),
            None,
            Some(1),
            Some(0),
            Some(2),
            None,
        ]);
        let tk = Int32Array::from(vec![
            Some(0),
            Some(2),
            Some(1),
            Some(0),
            Some(0),
            None,
            None,
        ]);
        let host: ArrayRef =
            Arc::new(DictionaryArray::<Int32Type>::try_new(hk, Arc::new(hosts)).unwrap());
        let target: ArrayRef =
            Arc::new(DictionaryArray::<Int32Type>::try_new(tk, Arc::new(targets)).unwrap());
        let rows = host.len();
        for (h, t) in [
            (Some(&host), Some(&target)),
            (Some(&host), None),
            (None, Some(&target)),
        ] {
            let joined = join_column(h, t, rows);
            assert!(
                matches!(joined.data_type(), DataType::Dictionary(_, _)),
                "{:?}",
                joined.data_type()
            );
            for r in 0..rows {
                let text = |a: Option<&ArrayRef>| {
                    a.and_then(|a| crate::telemetry::cell::first_text(a.as_ref(), r))
                        .map(|c| c.into_owned())
                };
                let want = join_url(text(h).as_deref(), text(t).as_deref());
                let got = crate::telemetry::cell::scalar_text(joined.as_ref(), r);
                assert_eq!(got.as_deref(), want.as_deref(), "row {r}");
            }
        }
        assert_eq!(join_column(None, None, 3).null_count(), 3);
    }

    #[test]
    fn joined_fields_must_be_urls_of_two_columns() {
        assert_eq!(spec("host+uri=url").joined(), Some(("host", "uri")));
        assert_eq!(spec("host=url").joined(), None);
        for bad in ["host+uri=domain", "a+b+c=url", "+uri=url", "host+=url"] {
            let e = FieldMap::from_specs([spec(bad)]).unwrap_err();
            assert!(e.contains("joined field"), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_join_by_the_form_of_the_request_target() {
        let cases = [
            (Some("a.example"), Some("/p?q=1"), Some("a.example/p?q=1")),
            (Some("a.example:8080"), Some("/p"), Some("a.example:8080/p")),
            // Absolute-form (through a proxy): the target is the URL.
            (
                Some("proxy.example"),
                Some("http://b.example/x"),
                Some("http://b.example/x"),
            ),
            // Authority-form (CONNECT) and asterisk-form: the host alone.
            (
                Some("b.example:443"),
                Some("b.example:443"),
                Some("b.example:443"),
            ),
            (Some("a.example"), Some("*"), Some("a.example")),
            (Some("a.example"), None, Some("a.example")),
            (Some(""), Some("/p"), Some("/p")),
            (None, Some("/p"), Some("/p")),
            (None, None, None),
            (Some(" "), Some(""), None),
        ];
        for (h, t, want) in cases {
            assert_eq!(join_url(h, t).as_deref(), want, "{h:?} {t:?}");
        }
    }

    #[test]
    fn absent_columns_are_nulls_in_every_format() {
        // A Zeek conn log, as TSV, JSON and CSV, read with the whole Zeek preset: the DNS,
        // HTTP, TLS, file and mail fields are all null, the joined URL too.
        let tsv = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n1741860000.1\tC1\t192.0.2.10\t50432\t198.51.100.23\t443\ttcp\n";
        let json = "{\"ts\":1741860000.1,\"uid\":\"C1\",\"id.orig_h\":\"192.0.2.10\",\"id.orig_p\":50432,\"id.resp_h\":\"198.51.100.23\",\"id.resp_p\":443,\"proto\":\"tcp\"}\n";
        let csv = "ts,uid,id.orig_h,id.orig_p,id.resp_h,id.resp_p,proto\n1741860000.1,C1,192.0.2.10,50432,198.51.100.23,443,tcp\n";
        let m = Preset::Zeek.field_map();
        for (format, text) in [
            (InputFormat::Zeek, tsv),
            (InputFormat::Jsonl, json),
            (InputFormat::Csv, csv),
        ] {
            let batches = read_all(std::io::Cursor::new(text), "conn.log", format, &m).unwrap();
            let b = &batches[0];
            assert!(b.errors.is_empty(), "{format}: {:?}", b.errors);
            assert_eq!(b.batch.num_rows(), 1);
            assert_eq!(b.batch.num_columns(), m.fields().len(), "{format}");
            for (i, f) in m.fields().iter().enumerate() {
                let present = matches!(
                    f.name.as_str(),
                    "ts" | "uid" | "id.orig_h" | "id.orig_p" | "id.resp_h" | "id.resp_p"
                );
                assert_eq!(
                    b.batch.column(i).is_valid(0),
                    present,
                    "{format}: {}",
                    f.name
                );
            }
            let resp_p = b.batch.column_by_name("id.resp_p").unwrap();
            assert_eq!(
                super::super::cell::first_text(resp_p.as_ref(), 0).as_deref(),
                Some("443"),
                "{format}"
            );
        }
    }

    #[test]
    fn joined_columns_in_every_format() {
        let m = FieldMap::from_specs([spec("host+uri=url"), spec("host=domain")]).unwrap();
        assert_eq!(m.input_columns(), ["host", "uri"]);
        let tsv = "#separator \\x09\n#unset_field\t-\n#empty_field\t(empty)\n#fields\thost\turi\n#types\tstring\tstring\na.example\t/x?y=1\n-\t/only-path\nb.example:8080\t-\n";
        let json = "{\"host\":\"a.example\",\"uri\":\"/x?y=1\"}\n{\"uri\":\"/only-path\"}\n{\"host\":\"b.example:8080\"}\n";
        let csv = "host,uri\na.example,/x?y=1\n,/only-path\nb.example:8080,\n";
        for (format, text) in [
            (InputFormat::Zeek, tsv),
            (InputFormat::Jsonl, json),
            (InputFormat::Csv, csv),
        ] {
            let b = &read_all(std::io::Cursor::new(text), "http.log", format, &m).unwrap()[0];
            assert_eq!(b.batch.schema().field(0).name(), "host+uri");
            assert_eq!(
                b.batch.num_columns(),
                2,
                "{format}: only the mapped columns"
            );
            let url = b.batch.column(0).as_string::<i32>();
            let got: Vec<&str> = (0..3).map(|r| url.value(r)).collect();
            assert_eq!(
                got,
                ["a.example/x?y=1", "/only-path", "b.example:8080"],
                "{format}"
            );
        }
    }
}
