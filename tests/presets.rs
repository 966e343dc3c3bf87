//! Presets (FORMATS.md §5): the example telemetry of §8, read with its schema's preset and
//! with `auto`, gives exactly the hits of §8.2 against the §8 MISP feed, STIX bundle and
//! warninglists; the other layouts the presets accept (flattened ECS, nested or renamed Zeek
//! keys, Suricata DNS v2 and grouped answers) give the same; a real Zeek TSV log is read and
//! matched with the Zeek preset; and `cwn match --preset` on the command line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::normalize;
use cwn::ingest::{self, Detected, Ingest, SourceOptions, Warninglists};
use cwn::matcher::Matcher;
use cwn::telemetry::{self, FieldMap, InputFormat, Preset, preset};
use serde_json::{Map, Value};

use crate::util;

// The indicators of FORMATS.md §8.1 by their ids.
const EV1_IP: &str = "90607b54-a99c-5686-a575-5a04d875aab1";
const EV1_DOMAIN: &str = "e618afd8-b4c5-5f68-ada8-67f1db5a86c1";
const EV1_URL: &str = "f095c097-796f-5724-99e9-aa27ea7bce90";
/// ev1 `domain|ip`: the domain part, then the address part.
const EV1_CDN: &str = "24d9ccba-bf46-54c1-ae33-e0c3e95e99e1";
const EV1_CDN_IP: &str = "24d9ccba-bf46-54c1-ae33-e0c3e95e99e1#2";
const EV1_SHA256: &str = "49093656-f65c-5bc5-b24b-8b205a0f8e82";
const EV1_MD5: &str = "849dd755-21f8-5632-8c19-2de879a1343f";
const EV2_CIDR: &str = "b14cee06-ff73-5e81-a6a1-16a9c6b01f21";
const EV2_IPV6: &str = "022579d7-5f49-5f8f-b9e3-0167b0105921";
const EV2_HOSTNAME: &str = "cee752da-4370-5f67-8fd7-d24eadf85653";
const EV2_SHA256: &str = "489732b4-e239-5e9f-8a2b-69903a80735d";
const EV2_JA3: &str = "45aae2e6-963a-5012-b7cc-3d692d6d7bb0";
const EV2_X509: &str = "1b6226d9-a591-50c2-8d8a-3884502f86ec";
const I1: &str = "indicator--9c1dcf07-c4b0-5d1c-b143-a2e5e81f4a99";
/// i2's two names, exact (`=`): bad-login.example.com and login-verify.example.net.
const I2_BAD_LOGIN: &str = "indicator--e39c0b2b-9c92-59ac-8ed4-8f69878e3763#1";
const I2_LOGIN_VERIFY: &str = "indicator--e39c0b2b-9c92-59ac-8ed4-8f69878e3763#2";
const I3_SHA256: &str = "indicator--425ee011-87c4-55d2-a273-c174fa8f09ff#1";
const I3_MD5: &str = "indicator--425ee011-87c4-55d2-a273-c174fa8f09ff#2";
const I3_URL_LOGIN: &str = "indicator--425ee011-87c4-55d2-a273-c174fa8f09ff#3";
const I3_URL_OBRIEN: &str = "indicator--425ee011-87c4-55d2-a273-c174fa8f09ff#4";
const I4: &str = "indicator--a13b2e3e-3ce5-5c86-b424-ad9cdfb3cd5f";

/// A hit as the tests compare them: indicator id, field, row.
type Hits = BTreeSet<(String, String, u64)>;

/// The §8 example MISP feed and STIX bundle with the example warninglists, compiled as the
/// demo compiles them (RED not armed).
fn index() -> &'static CompiledIndex {
    static INDEX: OnceLock<CompiledIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let lists = Warninglists::load(&util::data("examples/warninglists")).unwrap();
        let opts = SourceOptions::default();
        let sources = [
            util::data("examples/misp-feed"),
            util::data("examples/stix/bundle.json"),
        ];
        let mut driver = Ingest::new(Some(lists));
        for src in ingest::expand_sources(&sources, &opts).unwrap() {
            driver.add(ingest::read_source(&src, &opts).unwrap());
        }
        let (set, report, _) = driver.finish();
        assert_eq!(
            report.suppressed, 3,
            "the three warninglisted values of §8.1"
        );
        IndexBuilder::new()
            .created_at(1_741_860_000)
            .build(&set)
            .unwrap()
    })
}

/// Every example row has its own event time, which decides validity (i4 ends 2025-06-30).
const NOW: i64 = 1_741_860_000;

fn example(file: &str) -> PathBuf {
    util::data("examples/telemetry").join(file)
}

fn match_file(index: &CompiledIndex, path: &Path, fields: &FieldMap) -> Hits {
    let m = Matcher::new(index, fields, NOW);
    let mut hits = Vec::new();
    for b in telemetry::open(path, None, fields).unwrap() {
        let b = b.unwrap();
        assert!(b.errors.is_empty(), "{}: {:?}", path.display(), b.errors);
        m.match_batch(&b, &mut hits);
    }
    hits.iter()
        .map(|h| {
            (
                index.meta().id(h.ord).to_string(),
                fields.fields()[h.field].name.clone(),
                h.row,
            )
        })
        .collect()
}

fn match_text(text: &str, fields: &FieldMap) -> Hits {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ndjson");
    std::fs::write(&path, text).unwrap();
    match_file(index(), &path, fields)
}

fn set(hits: &[(&str, &str, u64)]) -> Hits {
    hits.iter()
        .map(|(i, f, r)| (i.to_string(), f.to_string(), *r))
        .collect()
}

/// FORMATS.md §8.2, row by row, as the presets name the fields. A value that a preset reads
/// through two fields (a host on its own and inside its URL; an answer in `dns.answers` and
/// in `dns.resolved_ip`) hits through both: the matcher reports each field that matched.
///
/// §8.2 leaves one thing unsaid: i2's `domain-name:value = 'bad-login.example.com'` is exact,
/// so it hits every exact `bad-login.example.com` (the HTTP hosts and the OCSF SNI), not only
/// the Zeek DNS query where the table names it. The table's HTTP rows list what goes into the
/// notification; the hits here are everything the index holds.
fn expected(file: &str) -> Hits {
    set(match file {
        // #1 192.0.2.10 → 198.51.100.23:443: ev1 ip-dst, i1. #2 → 203.0.113.5:8443: ev2's /28,
        // and i4, whose port constraint the paired `id.resp_p` meets.
        "zeek-conn.ndjson" => &[
            (EV1_IP, "id.resp_h", 0),
            (I1, "id.resp_h", 0),
            (EV2_CIDR, "id.resp_h", 1),
            (I4, "id.resp_h", 1),
        ],
        // The resolver 198.51.100.53 is warninglisted; the answer 198.51.100.99 is no one's.
        "zeek-dns.ndjson" => &[(EV1_DOMAIN, "query", 0), (I2_BAD_LOGIN, "query", 0)],
        // #1: ev1 url and i3 url through host+uri (K2, Zeek's decoded URI), ev1 domain.
        // #2: update.example.net/check.php is suppressed: nothing.
        "zeek-http.ndjson" => &[
            (EV1_DOMAIN, "host", 0),
            (I2_BAD_LOGIN, "host", 0),
            (EV1_URL, "host+uri", 0),
            (I3_URL_LOGIN, "host+uri", 0),
            (EV1_DOMAIN, "host+uri", 0),
            (I2_BAD_LOGIN, "host+uri", 0),
        ],
        // ev2 hostname (SNI in any case), JA3, x509 SHA-256 and /28; not i4 (port 443).
        "zeek-ssl.ndjson" => &[
            (EV2_CIDR, "id.resp_h", 0),
            (EV2_HOSTNAME, "server_name", 0),
            (EV2_JA3, "ja3", 0),
            (EV2_X509, "cert_chain_fps", 0),
        ],
        // ev1 file digests, i3's (both), and the address part of ev1 domain|ip.
        "zeek-files.ndjson" => &[
            (EV1_CDN_IP, "id.resp_h", 0),
            (EV1_MD5, "md5", 0),
            (I3_MD5, "md5", 0),
            (EV1_SHA256, "sha256", 0),
            (I3_SHA256, "sha256", 0),
        ],
        "suricata-eve.ndjson" => &[
            // dns v3 LOGIN-VERIFY.example.NET.: i2; ev2's RED domain is not armed.
            (I2_LOGIN_VERIFY, "dns.queries.rrname", 0),
            // http BAD-LOGIN.example.com:8080 /owa/%61uth.php?id=1: ev1 url, i3 url, ev1 domain.
            (EV1_DOMAIN, "http.hostname", 1),
            (I2_BAD_LOGIN, "http.hostname", 1),
            (EV1_URL, "http.hostname+http.url", 1),
            (I3_URL_LOGIN, "http.hostname+http.url", 1),
            (EV1_DOMAIN, "http.hostname+http.url", 1),
            (I2_BAD_LOGIN, "http.hostname+http.url", 1),
            // tls: ev2 hostname, JA3, /28; the SHA-1 certificate digest is no indicator.
            (EV2_CIDR, "dest_ip", 2),
            (EV2_HOSTNAME, "tls.sni", 2),
            (EV2_JA3, "tls.ja3.hash", 2),
            // fileinfo: ev2 filename|sha256, both parts of ev1 domain|ip.
            (EV1_CDN_IP, "src_ip", 3),
            (EV1_CDN, "http.hostname", 3),
            (EV1_CDN, "http.hostname+http.url", 3),
            (EV2_SHA256, "fileinfo.sha256", 3),
            // flow from 2001:db8:bad::10: ev2 ip-src.
            (EV2_IPV6, "src_ip", 4),
        ],
        "ecs.ndjson" => &[
            // dns: ev2 hostname, and the resolved address in ev2's /28.
            (EV2_HOSTNAME, "dns.question.name", 0),
            (EV2_CIDR, "dns.answers.data", 0),
            (EV2_CIDR, "dns.resolved_ip", 0),
            // proxy: i3 url (o'brien, as url.full and as url.original's %27), the upper-case
            // SHA-256 for i3 and ev1.
            (I3_URL_OBRIEN, "url.full", 1),
            (I3_URL_OBRIEN, "url.original", 1),
            (EV1_SHA256, "file.hash.sha256", 1),
            (I3_SHA256, "file.hash.sha256", 1),
        ],
        "ocsf.ndjson" => &[
            // dns www.bad-login.example.com.: ev1 domain (subdomain); not i2 (exact).
            (EV1_DOMAIN, "query.hostname", 0),
            // http: ev1 ip, i1, ev1 url, i3 url, ev1 domain, ev2 ja3.
            (EV1_IP, "dst_endpoint.ip", 1),
            (I1, "dst_endpoint.ip", 1),
            (EV1_DOMAIN, "dst_endpoint.hostname", 1),
            (I2_BAD_LOGIN, "dst_endpoint.hostname", 1),
            (EV1_URL, "http_request.url.url_string", 1),
            (I3_URL_LOGIN, "http_request.url.url_string", 1),
            (EV1_DOMAIN, "http_request.url.url_string", 1),
            (I2_BAD_LOGIN, "http_request.url.url_string", 1),
            (EV1_DOMAIN, "http_request.url.hostname", 1),
            (I2_BAD_LOGIN, "http_request.url.hostname", 1),
            (EV1_DOMAIN, "tls.sni", 1),
            (I2_BAD_LOGIN, "tls.sni", 1),
            (EV2_JA3, "tls.ja3_hash.value", 1),
        ],
        other => panic!("no expectation for {other}"),
    })
}

const EXAMPLES: [(&str, Preset); 8] = [
    ("zeek-conn.ndjson", Preset::Zeek),
    ("zeek-dns.ndjson", Preset::Zeek),
    ("zeek-http.ndjson", Preset::Zeek),
    ("zeek-ssl.ndjson", Preset::Zeek),
    ("zeek-files.ndjson", Preset::Zeek),
    ("suricata-eve.ndjson", Preset::Suricata),
    ("ecs.ndjson", Preset::Ecs),
    ("ocsf.ndjson", Preset::Ocsf),
];

#[test]
fn each_example_with_its_preset_gives_the_hits_of_formats_8_2() {
    for (file, p) in EXAMPLES {
        let got = match_file(index(), &example(file), &p.field_map());
        assert_eq!(got, expected(file), "{file} with --preset {p}");
    }
}

#[test]
fn auto_chooses_each_examples_schema_and_finds_the_same_hits() {
    for (file, p) in EXAMPLES {
        let (map, chosen) = preset::auto_field_map(&example(file), None, &[]).unwrap();
        assert_eq!(chosen, Some(p), "{file}");
        assert_eq!(map, p.field_map(), "{file}");
        assert_eq!(
            match_file(index(), &example(file), &map),
            expected(file),
            "{file} with --preset auto"
        );
    }
}

#[test]
fn auto_refuses_an_unknown_schema_unless_fields_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.ndjson");
    std::fs::write(&path, "{\"when\":1,\"peer\":\"198.51.100.23\"}\n").unwrap();
    let e = preset::auto_field_map(&path, None, &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("odd.ndjson") && e.contains("peer") && e.contains("--preset"),
        "{e}"
    );
    let (map, chosen) = preset::auto_field_map(&path, None, &["peer=ip".parse().unwrap()]).unwrap();
    assert_eq!((chosen, map.names()), (None, vec!["peer"]));
    let hits = match_file(index(), &path, &map);
    assert_eq!(hits, set(&[(EV1_IP, "peer", 0), (I1, "peer", 0)]));
}

/// Objects folded into dotted keys, as some pipelines write ECS and Zeek: `{"a":{"b":1}}` →
/// `{"a.b":1}`; arrays are kept.
fn flatten(v: &Value) -> Value {
    fn walk(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = Map::new();
    walk("", v, &mut out);
    Value::Object(out)
}

/// Rewrites each line of an example file.
fn rewrite(file: &str, f: impl Fn(&Value) -> Value) -> String {
    std::fs::read_to_string(example(file))
        .unwrap()
        .lines()
        .map(|l| f(&serde_json::from_str(l).unwrap()).to_string() + "\n")
        .collect()
}

#[test]
fn flattened_ecs_reads_like_nested_ecs() {
    let flat = rewrite("ecs.ndjson", flatten);
    assert!(flat.contains("\"source.ip\":\"192.0.2.10\""), "{flat}");
    let cols = preset::head_columns(flat.as_bytes(), InputFormat::Jsonl);
    assert_eq!(Preset::detect(&cols), Some(Preset::Ecs));
    assert_eq!(
        match_text(&flat, &Preset::Ecs.field_map()),
        expected("ecs.ndjson")
    );
}

#[test]
fn zeek_with_nested_or_renamed_id_keys() {
    // `{"id": {"resp_h": …}}` names the same paths as `"id.resp_h"`.
    let nested = rewrite("zeek-conn.ndjson", |v| {
        let mut m = v.as_object().unwrap().clone();
        let mut id = Map::new();
        for k in ["orig_h", "orig_p", "resp_h", "resp_p"] {
            id.insert(k.into(), m.remove(&format!("id.{k}")).unwrap());
        }
        m.insert("id".into(), Value::Object(id));
        Value::Object(m)
    });
    let cols = preset::head_columns(nested.as_bytes(), InputFormat::Jsonl);
    assert_eq!(Preset::detect(&cols), Some(Preset::Zeek));
    let map = Preset::Zeek.field_map();
    assert_eq!(match_text(&nested, &map), expected("zeek-conn.ndjson"));
    // `id_resp_h`, with its own port pairing: i4's port 8443 is still checked.
    let renamed = rewrite("zeek-conn.ndjson", |v| {
        let m = v.as_object().unwrap();
        Value::Object(
            m.iter()
                .map(|(k, x)| (k.replace("id.", "id_"), x.clone()))
                .collect(),
        )
    });
    let cols = preset::head_columns(renamed.as_bytes(), InputFormat::Jsonl);
    assert_eq!(Preset::detect(&cols), Some(Preset::Zeek));
    assert_eq!(
        match_text(&renamed, &map),
        set(&[
            (EV1_IP, "id_resp_h", 0),
            (I1, "id_resp_h", 0),
            (EV2_CIDR, "id_resp_h", 1),
            (I4, "id_resp_h", 1),
        ])
    );
    // The same with port 443: i4 is not met.
    let other_port = renamed.replace("\"id_resp_p\":8443", "\"id_resp_p\":443");
    assert!(!match_text(&other_port, &map).contains(&(I4.into(), "id_resp_h".into(), 1)));
}

#[test]
fn suricata_dns_v2_detailed_and_grouped_answers() {
    let text = concat!(
        // v2 query: top-level rrname.
        r#"{"timestamp":"2025-03-13T10:05:00.000100+0000","event_type":"dns","src_ip":"192.0.2.12","src_port":53100,"dest_ip":"192.0.2.53","dest_port":53,"proto":"UDP","dns":{"type":"query","id":1,"rrname":"c2.malware.test","rrtype":"A","tx_id":0}}"#,
        "\n",
        // v2 answer, detailed: rrname and answers[].rdata.
        r#"{"timestamp":"2025-03-13T10:05:00.000200+0000","event_type":"dns","src_ip":"192.0.2.53","src_port":53,"dest_ip":"192.0.2.12","dest_port":53100,"proto":"UDP","dns":{"version":2,"type":"answer","id":1,"rrname":"c2.malware.test","rrtype":"A","rcode":"NOERROR","answers":[{"rrname":"c2.malware.test","rrtype":"A","ttl":60,"rdata":"203.0.113.9"}]}}"#,
        "\n",
        // v3 response, grouped only: A addresses and CNAME names.
        r#"{"timestamp":"2025-03-13T10:05:00.000300+0000","event_type":"dns","src_ip":"192.0.2.53","src_port":53,"dest_ip":"192.0.2.12","dest_port":53100,"proto":"UDP","dns":{"version":3,"type":"response","queries":[{"rrname":"www.example.org","rrtype":"A"}],"grouped":{"CNAME":["c2.malware.test"],"A":["203.0.113.9"]}}}"#,
        "\n",
    );
    let cols = preset::head_columns(text.as_bytes(), InputFormat::Jsonl);
    assert_eq!(Preset::detect(&cols), Some(Preset::Suricata));
    assert_eq!(
        match_text(text, &Preset::Suricata.field_map()),
        set(&[
            (EV2_HOSTNAME, "dns.rrname", 0),
            (EV2_HOSTNAME, "dns.rrname", 1),
            (EV2_CIDR, "dns.answers.rdata", 1),
            (EV2_CIDR, "dns.grouped.A", 2),
            (EV2_HOSTNAME, "dns.grouped.CNAME", 2),
        ])
    );
}

#[test]
fn mail_addresses_and_proxy_urls() {
    // Zeek smtp.log: envelope and header addresses, display names stripped.
    let smtp = concat!(
        r#"{"ts":1741860500.0,"uid":"C1","id.orig_h":"192.0.2.10","id.orig_p":50000,"id.resp_h":"192.0.2.25","id.resp_p":25,"mailfrom":"<Phisher@Example.org>","rcptto":["user@example.com"],"from":"\"Helpdesk\" <phisher@example.org>","to":["user@example.com"]}"#,
        "\n",
        // http.log through a proxy: the request target is absolute.
        r#"{"ts":1741860600.0,"uid":"C2","id.orig_h":"192.0.2.10","id.orig_p":50001,"id.resp_h":"192.0.2.80","id.resp_p":3128,"host":"proxy.example.com","uri":"http://bad-login.example.com/owa/auth.php?id=1"}"#,
        "\n",
    );
    let hits = match_text(smtp, &Preset::Zeek.field_map());
    assert_eq!(
        hits,
        set(&[
            ("03b41bc5-0a2f-5a70-a54b-8720557de249", "mailfrom", 0),
            ("03b41bc5-0a2f-5a70-a54b-8720557de249", "from", 0),
            (EV1_URL, "host+uri", 1),
            (I3_URL_LOGIN, "host+uri", 1),
            (EV1_DOMAIN, "host+uri", 1),
            (I2_BAD_LOGIN, "host+uri", 1),
        ])
    );
}

/// The values of a batch column at a row as text (`None`: null).
fn texts(col: &dyn arrow_array::Array, r: usize) -> Vec<String> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    if col.is_null(r) {
        return Vec::new();
    }
    match col.data_type() {
        arrow_schema::DataType::Utf8 => vec![col.as_string::<i32>().value(r).to_string()],
        arrow_schema::DataType::List(_) => {
            let l = col.as_list::<i32>().value(r);
            let s = l.as_string::<i32>();
            (0..s.len()).map(|i| s.value(i).to_string()).collect()
        }
        other => panic!("unexpected column type {other}"),
    }
}

/// One row of a Zeek log as the preset reads it: field name → values.
type Row = std::collections::HashMap<String, Vec<String>>;

fn read_rows(path: &Path, map: &FieldMap) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in telemetry::open(path, None, map).unwrap() {
        let b = b.unwrap();
        assert!(b.errors.is_empty(), "{:?}", &b.errors[..1]);
        assert_eq!(b.first_row, rows.len() as u64);
        for r in 0..b.batch.num_rows() {
            rows.push(
                map.fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f.name.clone(), texts(b.batch.column(i).as_ref(), r)))
                    .collect(),
            );
        }
    }
    rows
}

/// The first value of `field` at or after `row`.
fn pick(rows: &[Row], row: usize, field: &str, ok: impl Fn(&str) -> bool) -> String {
    rows[row..]
        .iter()
        .flat_map(|r| r[field].iter())
        .find(|v| ok(v))
        .unwrap_or_else(|| panic!("no {field} after row {row}"))
        .clone()
}

/// Whether a logged name falls under a domain indicator (itself or a subdomain).
fn under(name: &str, domain: &str) -> bool {
    normalize::domain(name).is_ok_and(|n| n == domain || n.ends_with(&format!(".{domain}")))
}

/// Compiles a plain list and matches a log with the Zeek preset: `(row, field, indicator)`.
fn match_zeek_log(path: &Path, list: &str) -> BTreeSet<(u64, String, String)> {
    let batch = ingest::parse_bytes(
        Detected::Plain,
        "picked.txt",
        list.as_bytes(),
        &SourceOptions::default(),
    );
    let mut driver = Ingest::new(None);
    driver.add(batch);
    let (set, report, _) = driver.finish();
    assert_eq!(report.accepted as usize, list.lines().count(), "{list}");
    let index = IndexBuilder::new().build(&set).unwrap();
    let map = Preset::Zeek.field_map();
    let m = Matcher::new(&index, &map, NOW);
    let mut hits = Vec::new();
    for b in telemetry::open(path, None, &map).unwrap() {
        m.match_batch(&b.unwrap(), &mut hits);
    }
    hits.iter()
        .map(|h| {
            (
                h.row,
                map.fields()[h.field].name.clone(),
                index.meta().value(h.ord).to_string(),
            )
        })
        .collect()
}

#[test]
fn real_zeek_dns_tsv_with_the_zeek_preset() {
    let Some(path) = util::shared_real("zeek-dns.log.gz") else {
        return;
    };
    assert_eq!(
        Preset::detect(&preset::file_columns(&path, None).unwrap()),
        Some(Preset::Zeek)
    );
    let map = Preset::Zeek.field_map();
    let rows = read_rows(&path, &map);
    assert_eq!(
        rows.len(),
        53_615,
        "every record of the log, no header line"
    );
    // The conn/http/ssl/files/smtp fields the log lacks are null on every row.
    for absent in ["host+uri", "server_name", "sha256", "mailfrom"] {
        assert!(rows.iter().all(|r| r[absent].is_empty()), "{absent}");
    }
    // The first record as the TSV has it: ports as text, `answers` a vector.
    assert_eq!(rows[0]["id.resp_h"], ["10.0.0.100"]);
    assert_eq!(rows[0]["id.resp_p"], ["53"]);
    assert_eq!(rows[0]["query"], ["ise.wrccdc.org"]);
    assert_eq!(rows[0]["answers"], ["ise.wrccdc.cpp.edu", "134.71.3.16"]);
    assert_eq!(rows[0]["ts"], ["1521911720.865716"]);

    // Indicators picked from the log itself; the expected hits are computed from the rows.
    let is_name = |v: &str| v.parse::<std::net::IpAddr>().is_err() && normalize::domain(v).is_ok();
    let is_ip = |v: &str| v.parse::<std::net::IpAddr>().is_ok();
    let domains: Vec<String> = [9_000, 27_000, 45_000]
        .iter()
        .map(|&r| normalize::domain(&pick(&rows, r, "query", is_name)).unwrap())
        .collect();
    let answer_ip = pick(&rows, 30_000, "answers", is_ip);
    let resolver = pick(&rows, 100, "id.resp_h", is_ip);
    let list = format!(
        "{}\n{}\n{}\n{answer_ip}\n{resolver}:53\n",
        domains[0], domains[1], domains[2]
    );
    let got = match_zeek_log(&path, &list);
    let mut want = BTreeSet::new();
    for (i, r) in rows.iter().enumerate() {
        let row = i as u64;
        for field in ["query", "answers"] {
            for v in &r[field] {
                for d in &domains {
                    if under(v, d) {
                        want.insert((row, field.to_string(), d.clone()));
                    }
                }
                if *v == answer_ip {
                    want.insert((row, field.to_string(), answer_ip.clone()));
                }
            }
        }
        for (addr, port) in [("id.orig_h", "id.orig_p"), ("id.resp_h", "id.resp_p")] {
            if r[addr].contains(&answer_ip) {
                want.insert((row, addr.to_string(), answer_ip.clone()));
            }
            if r[addr].contains(&resolver) && r[port] == ["53"] {
                want.insert((row, addr.to_string(), format!("{resolver}:53")));
            }
        }
    }
    let per_kind = |sub: &str| got.iter().filter(|(_, _, v)| v.contains(sub)).count();
    assert!(
        per_kind(":53") > 100,
        "the resolver with its port is common"
    );
    assert!(got.iter().any(|(_, f, _)| f == "answers"));
    assert_eq!(got, want);
    eprintln!(
        "zeek dns.log with --preset zeek: {} hits ({} on the resolver:53)",
        got.len(),
        per_kind(":53")
    );
}

#[test]
fn real_zeek_ssl_tsv_with_the_zeek_preset() {
    let Some(path) = util::shared_real("zeek-ssl.log.gz") else {
        return;
    };
    let map = Preset::Zeek.field_map();
    let rows = read_rows(&path, &map);
    assert!(
        rows.iter()
            .all(|r| r["query"].is_empty() && r["md5"].is_empty())
    );
    let sni = normalize::domain(&pick(&rows, 10_000, "server_name", |v| {
        normalize::domain(v).is_ok()
    }))
    .unwrap();
    let cert = pick(&rows, 2_000, "cert_chain_fps", |v| v.len() == 64);
    let server = pick(&rows, 20_000, "id.resp_h", |_| true);
    let server_port = rows
        .iter()
        .find(|r| r["id.resp_h"] == [server.clone()])
        .map(|r| r["id.resp_p"][0].clone())
        .unwrap();
    let list = format!("{sni}\n{cert}\n{server}:{server_port}\n");
    let got = match_zeek_log(&path, &list);
    let mut want = BTreeSet::new();
    let pair = format!("{server}:{server_port}");
    for (i, r) in rows.iter().enumerate() {
        let row = i as u64;
        if r["server_name"].iter().any(|v| under(v, &sni)) {
            want.insert((row, "server_name".to_string(), sni.clone()));
        }
        if r["cert_chain_fps"].contains(&cert) {
            want.insert((row, "cert_chain_fps".to_string(), cert.clone()));
        }
        for (addr, port) in [("id.orig_h", "id.orig_p"), ("id.resp_h", "id.resp_p")] {
            if r[addr] == [server.clone()] && r[port] == [server_port.clone()] {
                want.insert((row, addr.to_string(), pair.clone()));
            }
        }
    }
    for field in ["server_name", "cert_chain_fps", "id.resp_h"] {
        assert!(got.iter().any(|(_, f, _)| f == field), "no hit on {field}");
    }
    assert_eq!(got, want);
    eprintln!("zeek ssl.log with --preset zeek: {} hits", got.len());
}

fn cwn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(args)
        .output()
        .expect("run cwn")
}

/// Compiles the §8 examples into a snapshot in `dir`.
fn compile_examples(dir: &Path) -> String {
    let snap = dir.join("examples.snap");
    let out = cwn(&[
        "compile",
        "--warninglists",
        util::data("examples/warninglists").to_str().unwrap(),
        util::data("examples/misp-feed").to_str().unwrap(),
        util::data("examples/stix/bundle.json").to_str().unwrap(),
        "--created-at",
        "1741860000",
        "-o",
        snap.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    snap.display().to_string()
}

fn hit_lines(stdout: &[u8]) -> Hits {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let input = v["input"].as_str().unwrap();
            let file = Path::new(input).file_name().unwrap().to_str().unwrap();
            (
                format!("{file} {}", v["indicator_id"].as_str().unwrap()),
                v["field"].as_str().unwrap().to_string(),
                v["row"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn cli_match_with_preset_auto_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let snap = compile_examples(dir.path());
    let files: Vec<String> = EXAMPLES
        .iter()
        .map(|(f, _)| example(f).display().to_string())
        .collect();
    let mut args = vec!["match", "--index", snap.as_str(), "--preset", "auto"];
    args.extend(files.iter().map(String::as_str));
    let out = cwn(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let mut want = Hits::new();
    for (file, p) in EXAMPLES {
        assert!(
            err.contains(&format!("{file}: {p}")),
            "the choice for {file} is on stderr: {err}"
        );
        want.extend(
            expected(file)
                .into_iter()
                .map(|(i, f, r)| (format!("{file} {i}"), f, r)),
        );
    }
    assert_eq!(hit_lines(&out.stdout), want);

    // An override: the SNI read as text finds no name indicator; the rest is unchanged.
    let eve = example("suricata-eve.ndjson");
    let eve = eve.to_str().unwrap();
    let out = cwn(&[
        "match",
        "--index",
        &snap,
        "--preset",
        "suricata",
        "--field",
        "tls.sni=text",
        eve,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = hit_lines(&out.stdout);
    let want: Hits = expected("suricata-eve.ndjson")
        .into_iter()
        .filter(|(_, f, _)| f != "tls.sni")
        .map(|(i, f, r)| (format!("suricata-eve.ndjson {i}"), f, r))
        .collect();
    assert_eq!(got, want);

    // Neither a preset nor a field: a usage error.
    let out = cwn(&["match", "--index", &snap, eve]);
    assert_eq!(out.status.code(), Some(2));
    // A joined field must be a URL.
    let out = cwn(&[
        "match",
        "--index",
        &snap,
        "--preset",
        "zeek",
        "--field",
        "host+uri=domain",
        eve,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kind must be url"));
}

#[test]
fn the_demo_reads_each_example_with_its_preset() {
    let out = cwn(&["demo", "--json", "--no-hub"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let telemetry = v["telemetry"].as_array().unwrap();
    assert_eq!(telemetry.len(), EXAMPLES.len());
    for (t, (file, p)) in telemetry.iter().zip(EXAMPLES) {
        assert_eq!(t["input"], file);
        assert_eq!(t["preset"], p.name(), "{file}");
        // The demo's index adds maltrail lists, which none of the examples hit.
        assert_eq!(
            t["hits"].as_u64().unwrap() as usize,
            expected(file).len(),
            "{file}"
        );
    }
}
