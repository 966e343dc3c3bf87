//! The three telemetry schemas: which columns a preset has, how a generated [`Flow`] fills
//! them, and the field map that matches them.
//!
//! Column names are the field paths as `cwn match --field` names them (`id.orig_h`,
//! `source.ip`, `dns.queries.rrname`), so one field map works on the JSON lines, Parquet and
//! Arrow output of a preset. JSON lines are flat for Zeek (keys with dots, as Zeek writes
//! them) and nested for Suricata EVE and ECS.

use std::borrow::Cow;
use std::fmt::Write as _;

use jiff::Timestamp;

use super::flow::{App, Flow};
use crate::telemetry::{FieldMap, FieldSpec};

/// A telemetry schema to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Preset {
    /// Zeek JSON logs: conn, dns, http, ssl, files and smtp fields in one flattened log
    /// (`ts`, `uid`, `id.orig_h`, `id.resp_h`, `query`, `answers`, `host`, `server_name`, …).
    Zeek,
    /// Suricata EVE JSON (`timestamp`, `src_ip`, `dest_ip`, `event_type`, `dns`, `http`,
    /// `tls`, `fileinfo`, `smtp`), DNS in the version 3 layout.
    Suricata,
    /// Elastic Common Schema (`@timestamp`, `source.ip`, `destination.ip`,
    /// `dns.question.name`, `url.full`, …).
    Ecs,
}

/// The Arrow type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// `Utf8`.
    Str,
    /// `Int32` (ports, status codes).
    I32,
    /// `Int64` (byte counts, flow ids).
    I64,
    /// `Float64` (Zeek `ts`, durations).
    F64,
    /// `List<Utf8>` (Zeek vectors, JSON arrays).
    StrList,
}

/// One column of a preset.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// The flattened field path.
    pub name: &'static str,
    /// Its type.
    pub ty: ColType,
}

const fn c(name: &'static str, ty: ColType) -> Column {
    Column { name, ty }
}

use ColType::{F64, I32, I64, Str, StrList};

const ZEEK: &[Column] = &[
    c("ts", F64),
    c("uid", Str),
    c("id.orig_h", Str),
    c("id.orig_p", I32),
    c("id.resp_h", Str),
    c("id.resp_p", I32),
    c("proto", Str),
    c("service", Str),
    c("duration", F64),
    c("orig_bytes", I64),
    c("resp_bytes", I64),
    c("conn_state", Str),
    c("query", Str),
    c("qtype_name", Str),
    c("rcode_name", Str),
    c("answers", StrList),
    c("method", Str),
    c("host", Str),
    c("uri", Str),
    c("status_code", I32),
    c("user_agent", Str),
    c("version", Str),
    c("server_name", Str),
    c("ja3", Str),
    c("filename", Str),
    c("mime_type", Str),
    c("total_bytes", I64),
    c("md5", Str),
    c("sha1", Str),
    c("sha256", Str),
    c("mailfrom", Str),
    c("rcptto", StrList),
];

const SURICATA: &[Column] = &[
    c("timestamp", Str),
    c("flow_id", I64),
    c("in_iface", Str),
    c("event_type", Str),
    c("src_ip", Str),
    c("src_port", I32),
    c("dest_ip", Str),
    c("dest_port", I32),
    c("proto", Str),
    c("app_proto", Str),
    c("flow.bytes_toserver", I64),
    c("flow.bytes_toclient", I64),
    c("flow.state", Str),
    c("dns.version", I32),
    c("dns.type", Str),
    c("dns.rcode", Str),
    c("dns.queries.rrname", StrList),
    c("dns.queries.rrtype", StrList),
    c("dns.answers.rrname", StrList),
    c("dns.answers.rrtype", StrList),
    c("dns.answers.rdata", StrList),
    c("http.hostname", Str),
    c("http.url", Str),
    c("http.http_user_agent", Str),
    c("http.http_method", Str),
    c("http.status", I32),
    c("http.length", I64),
    c("tls.sni", Str),
    c("tls.version", Str),
    c("tls.ja3.hash", Str),
    c("fileinfo.filename", Str),
    c("fileinfo.size", I64),
    c("fileinfo.md5", Str),
    c("fileinfo.sha1", Str),
    c("fileinfo.sha256", Str),
    c("smtp.mail_from", Str),
    c("smtp.rcpt_to", StrList),
];

const ECS: &[Column] = &[
    c("@timestamp", Str),
    c("event.dataset", Str),
    c("source.ip", Str),
    c("source.port", I32),
    c("source.bytes", I64),
    c("destination.ip", Str),
    c("destination.port", I32),
    c("destination.bytes", I64),
    c("network.transport", Str),
    c("network.protocol", Str),
    c("dns.question.name", Str),
    c("dns.question.type", Str),
    c("dns.response_code", Str),
    c("dns.resolved_ip", StrList),
    c("url.full", Str),
    c("url.domain", Str),
    c("url.path", Str),
    c("http.request.method", Str),
    c("http.response.status_code", I32),
    c("user_agent.original", Str),
    c("tls.version", Str),
    c("tls.client.server_name", Str),
    c("tls.client.ja3", Str),
    c("file.name", Str),
    c("file.size", I64),
    c("file.hash.md5", Str),
    c("file.hash.sha1", Str),
    c("file.hash.sha256", Str),
    c("email.from.address", Str),
    c("email.to.address", StrList),
];

/// A value of one cell.
#[derive(Clone, Debug, Default)]
pub enum Cell<'a> {
    /// No value (JSON: the key is left out).
    #[default]
    Null,
    /// Text.
    Str(Cow<'a, str>),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A list of texts.
    List(Vec<Cow<'a, str>>),
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 3] = [Preset::Zeek, Preset::Suricata, Preset::Ecs];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Zeek => "zeek",
            Preset::Suricata => "suricata",
            Preset::Ecs => "ecs",
        }
    }

    /// The columns, in output order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Preset::Zeek => ZEEK,
            Preset::Suricata => SURICATA,
            Preset::Ecs => ECS,
        }
    }

    /// Whether JSON output nests dotted names into objects (Suricata, ECS) or keeps them as
    /// flat keys (Zeek).
    pub fn nested_json(self) -> bool {
        !matches!(self, Preset::Zeek)
    }

    /// JSON paths that are arrays of objects, whose member columns are lists of equal length
    /// (`dns.queries` → `[{"rrname": …, "rrtype": …}]`).
    pub fn object_arrays(self) -> &'static [&'static str] {
        match self {
            Preset::Suricata => &["dns.queries", "dns.answers"],
            _ => &[],
        }
    }

    /// Whether a URL indicator can be planted: Zeek logs the host and the request target
    /// apart, and no single field holds a URL to match.
    pub fn carries_urls(self) -> bool {
        !matches!(self, Preset::Zeek)
    }

    /// The `NAME=KIND` mappings that match every observable this preset carries (what
    /// `cwn match --field` takes).
    pub fn field_specs(self) -> &'static [&'static str] {
        match self {
            Preset::Zeek => &[
                "ts=time",
                "id.orig_h=ip",
                "id.orig_p=port@id.orig_h",
                "id.resp_h=ip",
                "id.resp_p=port@id.resp_h",
                "query=domain",
                "answers=ip",
                "host=domain",
                "server_name=domain",
                "user_agent=user-agent",
                "ja3=ja3",
                "md5=md5",
                "sha1=sha1",
                "sha256=sha256",
                "mailfrom=email",
            ],
            Preset::Suricata => &[
                "timestamp=time",
                "src_ip=ip",
                "src_port=port@src_ip",
                "dest_ip=ip",
                "dest_port=port@dest_ip",
                "dns.queries.rrname=domain",
                "dns.answers.rdata=ip",
                "http.hostname=domain",
                "http.url=url",
                "http.http_user_agent=user-agent",
                "tls.sni=domain",
                "tls.ja3.hash=ja3",
                "fileinfo.md5=md5",
                "fileinfo.sha1=sha1",
                "fileinfo.sha256=sha256",
                "smtp.mail_from=email",
            ],
            Preset::Ecs => &[
                "@timestamp=time",
                "source.ip=ip",
                "source.port=port@source.ip",
                "destination.ip=ip",
                "destination.port=port@destination.ip",
                "dns.question.name=domain",
                "dns.resolved_ip=ip",
                "url.full=url",
                "url.domain=domain",
                "user_agent.original=user-agent",
                "tls.client.server_name=domain",
                "tls.client.ja3=ja3",
                "file.hash.md5=md5",
                "file.hash.sha1=sha1",
                "file.hash.sha256=sha256",
                "email.from.address=email",
            ],
        }
    }

    /// [`Preset::field_specs`] as a [`FieldMap`].
    pub fn field_map(self) -> FieldMap {
        FieldMap::from_specs(
            self.field_specs()
                .iter()
                .map(|s| s.parse::<FieldSpec>().expect("static field spec")),
        )
        .expect("static field map")
    }

    /// Fills `row` (one cell per column, reset to null first) from a flow.
    pub fn fill<'a>(self, f: &'a Flow<'a>, row: &mut Vec<Cell<'a>>) {
        row.clear();
        row.resize(self.columns().len(), Cell::Null);
        match self {
            Preset::Zeek => zeek(f, row),
            Preset::Suricata => suricata(f, row),
            Preset::Ecs => ecs(f, row),
        }
    }
}

fn s<'a>(v: &'a Cow<'a, str>) -> Cell<'a> {
    Cell::Str(Cow::Borrowed(v.as_ref()))
}

fn st(v: &'static str) -> Cell<'static> {
    Cell::Str(Cow::Borrowed(v))
}

fn opt<'a>(v: &'a Option<Cow<'a, str>>) -> Cell<'a> {
    v.as_ref().map_or(Cell::Null, s)
}

fn list<'a>(v: &'a [Cow<'a, str>]) -> Cell<'a> {
    Cell::List(v.iter().map(|x| Cow::Borrowed(x.as_ref())).collect())
}

/// `2025-06-01T00:00:00.123456+0000`, as Suricata writes it.
fn suricata_time(us: i64) -> String {
    let t = Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut out = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let _ = write!(out, ".{:06}+0000", us.rem_euclid(1_000_000));
    out
}

/// `2025-06-01T00:00:00.123Z`, as Elastic writes it.
fn ecs_time(us: i64) -> String {
    let t = Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut out = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let _ = write!(out, ".{:03}Z", us.rem_euclid(1_000_000) / 1000);
    out
}

fn zeek<'a>(f: &'a Flow<'a>, r: &mut [Cell<'a>]) {
    r[0] = Cell::Float(f.ts_us as f64 / 1e6);
    r[1] = Cell::Str(Cow::Borrowed(&f.uid));
    r[2] = s(&f.src);
    r[3] = Cell::Int(f.src_port.into());
    r[4] = s(&f.dst);
    r[5] = Cell::Int(f.dst_port.into());
    r[6] = st(if f.udp { "udp" } else { "tcp" });
    r[7] = match f.app {
        App::Conn => f.service.map_or(Cell::Null, st),
        App::Dns => st("dns"),
        App::Http | App::File => st("http"),
        App::Tls => st("ssl"),
        App::Smtp => st("smtp"),
    };
    r[8] = Cell::Float(f.duration);
    r[9] = Cell::Int(f.orig_bytes);
    r[10] = Cell::Int(f.resp_bytes);
    r[11] = st(f.conn_state);
    match f.app {
        App::Dns => {
            r[12] = opt(&f.dns_query);
            r[13] = st(f.dns_qtype);
            r[14] = st(f.dns_rcode);
            if !f.answers.is_empty() {
                r[15] = list(&f.answers);
            }
        }
        App::Http | App::File => {
            r[16] = st(f.http_method);
            r[17] = opt(&f.http_host);
            r[18] = opt(&f.http_path);
            r[19] = Cell::Int(f.http_status.into());
            r[20] = opt(&f.user_agent);
            if f.app == App::File {
                r[24] = opt(&f.file_name);
                r[25] = st(f.mime);
                r[26] = Cell::Int(f.file_size);
                r[27] = opt(&f.md5);
                r[28] = opt(&f.sha1);
                r[29] = opt(&f.sha256);
            }
        }
        App::Tls => {
            r[21] = st(f.tls_version);
            r[22] = opt(&f.sni);
            r[23] = opt(&f.ja3);
        }
        App::Smtp => {
            r[30] = opt(&f.mail_from);
            r[31] = list(&f.rcpt_to);
        }
        App::Conn => {}
    }
}

fn suricata<'a>(f: &'a Flow<'a>, r: &mut [Cell<'a>]) {
    r[0] = Cell::Str(Cow::Owned(suricata_time(f.ts_us)));
    r[1] = Cell::Int(f.flow_id);
    r[2] = st("eth0");
    r[3] = st(match f.app {
        App::Conn => "flow",
        App::Dns => "dns",
        App::Http => "http",
        App::Tls => "tls",
        App::File => "fileinfo",
        App::Smtp => "smtp",
    });
    // In a DNS v3 response the responding server is the source.
    let response = f.app == App::Dns && !f.answers.is_empty();
    let (src, sp, dst, dp) = if response {
        (&f.dst, f.dst_port, &f.src, f.src_port)
    } else {
        (&f.src, f.src_port, &f.dst, f.dst_port)
    };
    r[4] = s(src);
    r[5] = Cell::Int(sp.into());
    r[6] = s(dst);
    r[7] = Cell::Int(dp.into());
    r[8] = st(if f.udp { "UDP" } else { "TCP" });
    match f.app {
        App::Conn => {
            if let Some(svc) = f.service {
                r[9] = st(svc);
            }
            r[10] = Cell::Int(f.orig_bytes);
            r[11] = Cell::Int(f.resp_bytes);
            r[12] = st(if f.conn_state == "SF" {
                "closed"
            } else {
                "new"
            });
        }
        App::Dns => {
            r[9] = st("dns");
            r[13] = Cell::Int(3);
            r[14] = st(if response { "response" } else { "request" });
            if let Some(q) = &f.dns_query {
                r[16] = Cell::List(vec![Cow::Borrowed(q.as_ref())]);
                r[17] = Cell::List(vec![Cow::Borrowed(f.dns_qtype)]);
                if response {
                    r[15] = st(f.dns_rcode);
                    r[18] = Cell::List(
                        f.answers
                            .iter()
                            .map(|_| Cow::Borrowed(q.as_ref()))
                            .collect(),
                    );
                    r[19] = Cell::List(
                        f.answers
                            .iter()
                            .map(|_| Cow::Borrowed(f.dns_qtype))
                            .collect(),
                    );
                    r[20] = list(&f.answers);
                }
            }
        }
        App::Http | App::File => {
            r[9] = st("http");
            r[21] = opt(&f.http_host);
            r[22] = match &f.http_url {
                // A proxy request carries the absolute URL as its target.
                Some(u) => s(u),
                None => opt(&f.http_path),
            };
            r[23] = opt(&f.user_agent);
            r[24] = st(f.http_method);
            r[25] = Cell::Int(f.http_status.into());
            r[26] = Cell::Int(f.resp_bytes);
            if f.app == App::File {
                r[30] = opt(&f.file_name);
                r[31] = Cell::Int(f.file_size);
                r[32] = opt(&f.md5);
                r[33] = opt(&f.sha1);
                r[34] = opt(&f.sha256);
            }
        }
        App::Tls => {
            r[9] = st("tls");
            r[27] = opt(&f.sni);
            r[28] = st(if f.tls_version == "TLSv13" {
                "TLS 1.3"
            } else {
                "TLS 1.2"
            });
            r[29] = opt(&f.ja3);
        }
        App::Smtp => {
            r[9] = st("smtp");
            r[35] = opt(&f.mail_from);
            r[36] = list(&f.rcpt_to);
        }
    }
}

fn ecs<'a>(f: &'a Flow<'a>, r: &mut [Cell<'a>]) {
    r[0] = Cell::Str(Cow::Owned(ecs_time(f.ts_us)));
    r[1] = st(match f.app {
        App::Conn => "synthetic.flow",
        App::Dns => "synthetic.dns",
        App::Http => "synthetic.proxy",
        App::Tls => "synthetic.tls",
        App::File => "synthetic.file",
        App::Smtp => "synthetic.email",
    });
    r[2] = s(&f.src);
    r[3] = Cell::Int(f.src_port.into());
    r[4] = Cell::Int(f.orig_bytes);
    r[5] = s(&f.dst);
    r[6] = Cell::Int(f.dst_port.into());
    r[7] = Cell::Int(f.resp_bytes);
    r[8] = st(if f.udp { "udp" } else { "tcp" });
    r[9] = match f.app {
        App::Conn => f.service.map_or(Cell::Null, st),
        App::Dns => st("dns"),
        App::Http | App::File => st("http"),
        App::Tls => st("tls"),
        App::Smtp => st("smtp"),
    };
    match f.app {
        App::Conn => {}
        App::Dns => {
            r[10] = opt(&f.dns_query);
            r[11] = st(f.dns_qtype);
            r[12] = st(f.dns_rcode);
            if !f.answers.is_empty() {
                r[13] = list(&f.answers);
            }
        }
        App::Http | App::File => {
            r[14] = opt(&f.http_url);
            r[15] = opt(&f.http_host);
            r[16] = opt(&f.http_path);
            r[17] = st(f.http_method);
            r[18] = Cell::Int(f.http_status.into());
            r[19] = opt(&f.user_agent);
            if f.app == App::File {
                r[23] = opt(&f.file_name);
                r[24] = Cell::Int(f.file_size);
                r[25] = opt(&f.md5);
                r[26] = opt(&f.sha1);
                r[27] = opt(&f.sha256);
            }
        }
        App::Tls => {
            r[20] = st(if f.tls_version == "TLSv13" {
                "1.3"
            } else {
                "1.2"
            });
            r[21] = opt(&f.sni);
            r[22] = opt(&f.ja3);
        }
        App::Smtp => {
            r[28] = opt(&f.mail_from);
            r[29] = list(&f.rcpt_to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_maps_name_existing_columns() {
        for p in Preset::ALL {
            let m = p.field_map();
            for f in m.fields() {
                assert!(
                    p.columns().iter().any(|c| c.name == f.name),
                    "{}: {} is no column",
                    p.name(),
                    f.name
                );
            }
        }
    }

    #[test]
    fn times_in_each_preset_format() {
        let us = 1_748_736_000_123_456;
        assert_eq!(suricata_time(us), "2025-06-01T00:00:00.123456+0000");
        assert_eq!(ecs_time(us), "2025-06-01T00:00:00.123Z");
        for t in [suricata_time(us), ecs_time(us)] {
            assert_eq!(crate::telemetry::parse_time(&t), Some(1_748_736_000));
        }
    }
}
