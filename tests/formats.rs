//! The same rows in every input format give the same hits and the same notifications.
//!
//! One set of Zeek-shaped rows (a connection, a DNS query, an HTTP request with its host and
//! request target in two columns) is written as JSON lines (flat and nested), Zeek TSV, CSV,
//! Parquet (plain and dictionary-encoded, flat and nested), Arrow IPC (file and stream) and
//! gzip/zstd of the row formats. Every copy must give identical hits — with the Zeek preset
//! and with an explicit field map holding a joined URL field and port pairs — and identical
//! routing: the same victims notified about the same hits, naming the same victim-side
//! observables. The same rows under the column names of the Suricata, ECS and OCSF presets
//! (nested at every dot) must agree the same way. A column type one reader produces and
//! another code path skips is a silent miss; this is the test that finds it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, Fields};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;

use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp, normalize};
use cwn::matcher::Matcher;
use cwn::route::registry::Registry;
use cwn::route::{BatchParties, MatchedBatch, RoutePolicy, Router, route_batch};
use cwn::telemetry::{self, FieldMap, Preset};

const NOW: i64 = 1_750_000_000;

/// One Zeek-shaped row; `None` is an absent value.
#[derive(Clone, Debug)]
struct Row {
    ts: i64,
    uid: String,
    orig_h: String,
    orig_p: i64,
    resp_h: String,
    resp_p: i64,
    query: Option<String>,
    host: Option<String>,
    uri: Option<String>,
    user_agent: Option<String>,
}

/// The flat column names, in order.
const COLUMNS: [&str; 10] = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "query",
    "host",
    "uri",
    "user_agent",
];

/// The same ten columns as Suricata EVE names them (`http.hostname+http.url` is its URL).
const SURICATA_COLUMNS: [&str; 10] = [
    "timestamp",
    "flow_id",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "dns.rrname",
    "http.hostname",
    "http.url",
    "http.http_user_agent",
];

/// ... as ECS names them (no joined URL: `url.original` alone holds the request target).
const ECS_COLUMNS: [&str; 10] = [
    "@timestamp",
    "event.id",
    "source.ip",
    "source.port",
    "destination.ip",
    "destination.port",
    "dns.question.name",
    "url.domain",
    "url.original",
    "user_agent.original",
];

/// ... as OCSF names them (three levels deep when nested).
const OCSF_COLUMNS: [&str; 10] = [
    "time",
    "metadata.uid",
    "src_endpoint.ip",
    "src_endpoint.port",
    "dst_endpoint.ip",
    "dst_endpoint.port",
    "query.hostname",
    "http_request.url.hostname",
    "http_request.url.url_string",
    "http_request.user_agent",
];

/// Which of the ten columns hold integers (the time and the ports).
const INT_COLUMNS: [usize; 3] = [0, 3, 5];

impl Row {
    /// The values as text, by [`COLUMNS`].
    fn cells(&self) -> [Option<String>; 10] {
        [
            Some(self.ts.to_string()),
            Some(self.uid.clone()),
            Some(self.orig_h.clone()),
            Some(self.orig_p.to_string()),
            Some(self.resp_h.clone()),
            Some(self.resp_p.to_string()),
            self.query.clone(),
            self.host.clone(),
            self.uri.clone(),
            self.user_agent.clone(),
        ]
    }
}

fn indicators() -> CompiledIndex {
    IndexBuilder::new().build(&indicator_set()).unwrap()
}

fn indicator_set() -> IndicatorSet {
    let mut set = IndicatorSet::new();
    let specs: &[(Kind, &str, Tlp)] = &[
        (Kind::Ipv4, "203.0.113.7", Tlp::Amber),
        (Kind::IpPort, "192.0.2.50:8443", Tlp::Green),
        (Kind::Domain, "evil.test", Tlp::Amber),
        (Kind::Url, "http://cdn.test/gate.php", Tlp::Amber),
        (Kind::UserAgent, "Loader", Tlp::Green),
        (Kind::Ipv4, "198.51.100.99", Tlp::AmberStrict),
    ];
    for (i, (kind, value, tlp)) in specs.iter().enumerate() {
        let n = normalize::normalize_as(*kind, value).unwrap();
        let ind = Indicator::new(format!("i{i}"), n.kind, n.value, Arc::from("src"), *tlp);
        set.insert(ind).unwrap();
    }
    set
}

const REGISTRY: &str = r#"
[[entities]]
id = "ncsc"
name = "NCSC"
roles = ["publisher"]

[[entities]]
id = "msp"
name = "MSP"
roles = ["partner"]
on_behalf_of = ["hospital", "shop"]

[[entities]]
id = "hospital"
name = "Hospital"
roles = ["subscriber"]
prefixes = ["10.1.0.0/16"]

[[entities]]
id = "shop"
name = "Shop"
roles = ["subscriber"]
domains = ["shop.example"]
"#;

/// Rows that exercise every kind of hit: an AMBER address with a victim address beside it,
/// an address with its port, a DNS query under a bad domain, a URL joined from host and
/// target (absolute-form too), a user agent, and rows that must not hit.
fn fixed_rows() -> Vec<Row> {
    let r = |i: i64,
             orig: &str,
             resp: &str,
             resp_p: i64,
             query: Option<&str>,
             host: Option<&str>,
             uri: Option<&str>,
             ua: Option<&str>| Row {
        ts: NOW - 60 + i,
        uid: format!("C{i:04}"),
        orig_h: orig.into(),
        orig_p: 40_000 + i,
        resp_h: resp.into(),
        resp_p,
        query: query.map(Into::into),
        host: host.map(Into::into),
        uri: uri.map(Into::into),
        user_agent: ua.map(Into::into),
    };
    vec![
        r(0, "10.1.2.3", "203.0.113.7", 443, None, None, None, None),
        r(1, "10.9.9.9", "192.0.2.50", 8443, None, None, None, None),
        r(2, "10.1.0.5", "192.0.2.50", 443, None, None, None, None),
        r(
            3,
            "10.1.7.7",
            "198.51.100.1",
            53,
            Some("a.evil.test"),
            None,
            None,
            None,
        ),
        r(
            4,
            "10.1.8.8",
            "198.51.100.2",
            80,
            None,
            Some("cdn.test"),
            Some("/gate.php"),
            Some("Mozilla/5.0"),
        ),
        r(
            5,
            "172.16.0.1",
            "198.51.100.3",
            80,
            None,
            Some("www.shop.example"),
            Some("/"),
            Some("SyntheticLoader/2"),
        ),
        r(
            6,
            "10.1.1.1",
            "198.51.100.4",
            3128,
            None,
            None,
            Some("http://cdn.test/gate.php"),
            None,
        ),
        r(
            7,
            "192.168.1.1",
            "198.51.100.5",
            443,
            Some("benign.example"),
            Some("ok.test"),
            Some("/x"),
            None,
        ),
        r(8, "10.1.4.4", "198.51.100.99", 443, None, None, None, None),
    ]
}

fn explicit_map() -> FieldMap {
    FieldMap::from_specs(
        [
            "ts=time",
            "uid=event-id",
            "id.orig_h=ip",
            "id.orig_p=port@id.orig_h",
            "id.resp_h=ip",
            "id.resp_p=port@id.resp_h",
            "query=domain",
            "host=domain",
            "host+uri=url",
            "user_agent=user-agent",
        ]
        .iter()
        .map(|s| s.parse().unwrap()),
    )
    .unwrap()
}

fn zeek_map() -> FieldMap {
    Preset::Zeek.field_map()
}

// ---- writers ---------------------------------------------------------------------------

fn json_value(i: usize, v: &str) -> serde_json::Value {
    if INT_COLUMNS.contains(&i) {
        v.parse::<i64>().unwrap().into()
    } else {
        v.into()
    }
}

/// Puts `v` at the dotted path `name` of `obj`, one object per segment.
fn insert_nested(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    v: serde_json::Value,
) {
    match name.split_once('.') {
        None => {
            obj.insert(name.to_string(), v);
        }
        Some((head, rest)) => {
            let inner = obj
                .entry(head.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            insert_nested(inner.as_object_mut().unwrap(), rest, v);
        }
    }
}

/// JSON lines with flat dotted keys, or nested objects at every dot.
fn jsonl(rows: &[Row], names: &[&str; 10], nested: bool) -> String {
    let mut out = String::new();
    for row in rows {
        let mut obj = serde_json::Map::new();
        for (i, (col, v)) in names.iter().zip(row.cells()).enumerate() {
            let Some(v) = v else { continue };
            if nested {
                insert_nested(&mut obj, col, json_value(i, &v));
            } else {
                obj.insert(col.to_string(), json_value(i, &v));
            }
        }
        out.push_str(&serde_json::Value::Object(obj).to_string());
        out.push('\n');
    }
    out
}

fn zeek_tsv(rows: &[Row], names: &[&str; 10]) -> String {
    let mut out = String::from(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tmixed\n",
    );
    out.push_str(&format!("#fields\t{}\n", names.join("\t")));
    out.push_str("#types\ttime\tstring\taddr\tport\taddr\tport\tstring\tstring\tstring\tstring\n");
    for row in rows {
        let cells: Vec<String> = row
            .cells()
            .into_iter()
            .map(|c| c.unwrap_or_else(|| "-".into()))
            .collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    out.push_str("#close\t2025-06-15-00-00-00\n");
    out
}

fn csv(rows: &[Row], names: &[&str; 10]) -> String {
    let mut out = names.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .cells()
            .into_iter()
            .map(|c| {
                let c = c.unwrap_or_default();
                if c.contains([',', '"']) {
                    format!("\"{}\"", c.replace('"', "\"\""))
                } else {
                    c
                }
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// A string column, plain or dictionary-encoded in Arrow itself.
fn strings(vals: impl Iterator<Item = Option<String>>, dictionary: bool) -> ArrayRef {
    if dictionary {
        let mut b = StringDictionaryBuilder::<Int32Type>::new();
        for v in vals {
            b.append_option(v);
        }
        Arc::new(b.finish())
    } else {
        let mut b = StringBuilder::new();
        for v in vals {
            b.append_option(v);
        }
        Arc::new(b.finish())
    }
}

fn ints(vals: impl Iterator<Item = i64>) -> ArrayRef {
    let mut b = Int64Builder::new();
    for v in vals {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

/// A column by its path of names.
type PathColumn = (Vec<String>, ArrayRef);

/// Columns named by dotted paths, as structs nested at every dot (grouped in first-seen
/// order).
fn nest(cols: Vec<PathColumn>) -> Vec<(String, ArrayRef)> {
    let mut groups: Vec<(String, Vec<PathColumn>)> = Vec::new();
    for (mut path, a) in cols {
        let head = path.remove(0);
        match groups.iter_mut().find(|(h, _)| *h == head) {
            Some((_, g)) => g.push((path, a)),
            None => groups.push((head, vec![(path, a)])),
        }
    }
    groups
        .into_iter()
        .map(|(head, g)| {
            if g.len() == 1 && g[0].0.is_empty() {
                return (head, g.into_iter().next().unwrap().1);
            }
            let children = nest(g);
            let fields: Fields = children
                .iter()
                .map(|(n, a)| Field::new(n, a.data_type().clone(), true))
                .collect();
            let arrays: Vec<ArrayRef> = children.into_iter().map(|(_, a)| a).collect();
            (
                head,
                Arc::new(StructArray::new(fields, arrays, None)) as ArrayRef,
            )
        })
        .collect()
}

/// The rows as one Arrow batch: flat dotted column names, or structs nested at every dot;
/// strings as dictionaries when `dictionary` (what pyarrow and Spark read back from Parquet).
fn record_batch(rows: &[Row], names: &[&str; 10], nested: bool, dictionary: bool) -> RecordBatch {
    let cells: Vec<[Option<String>; 10]> = rows.iter().map(Row::cells).collect();
    let cols: Vec<PathColumn> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let a = if INT_COLUMNS.contains(&i) {
                ints(
                    cells
                        .iter()
                        .map(|c| c[i].as_deref().unwrap().parse().unwrap()),
                )
            } else {
                strings(cells.iter().map(|c| c[i].clone()), dictionary)
            };
            let path = if nested {
                name.split('.').map(str::to_string).collect()
            } else {
                vec![name.to_string()]
            };
            (path, a)
        })
        .collect();
    RecordBatch::try_from_iter(nest(cols)).unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch, dictionary: bool) {
    let props = WriterProperties::builder()
        .set_dictionary_enabled(dictionary)
        .set_max_row_group_row_count(Some(4))
        .build();
    // Parquet stores strings plainly whatever the Arrow type; the reader decides.
    let batch = if dictionary {
        batch.clone()
    } else {
        let cols: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Dictionary(_, _) => arrow_cast_to_utf8(c),
                _ => c.clone(),
            })
            .collect();
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .zip(&cols)
            .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols).unwrap()
    };
    let mut w =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn arrow_cast_to_utf8(c: &ArrayRef) -> ArrayRef {
    let mut v = Vec::new();
    for r in 0..c.len() {
        v.push(cwn::telemetry::cell::scalar_text(c.as_ref(), r).map(|s| s.into_owned()));
    }
    strings(v.into_iter(), false)
}

fn write_ipc_file(path: &Path, batch: &RecordBatch) {
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(File::create(path).unwrap(), &batch.schema())
            .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

fn write_ipc_stream(path: &Path, batch: &RecordBatch) {
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new(File::create(path).unwrap(), &batch.schema())
            .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

fn gzip(path: &Path, text: &str) {
    let mut e = flate2::write::GzEncoder::new(File::create(path).unwrap(), Default::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
}

fn zstd_file(path: &Path, text: &str) {
    std::fs::write(path, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
}

/// Writes `rows` in every input format into `dir`; returns each file with a label.
/// The rows in every input format, columns named by `names`.
fn write_all_formats(dir: &Path, rows: &[Row], names: &[&str; 10]) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    let mut put = |label: &'static str, name: &str, f: &dyn Fn(&Path)| {
        let p = dir.join(name);
        f(&p);
        out.push((label, p));
    };
    put("JSON lines", "rows.jsonl", &|p| {
        std::fs::write(p, jsonl(rows, names, false)).unwrap()
    });
    put("nested JSON lines", "nested.jsonl", &|p| {
        std::fs::write(p, jsonl(rows, names, true)).unwrap()
    });
    put("Zeek TSV", "conn.log", &|p| {
        std::fs::write(p, zeek_tsv(rows, names)).unwrap()
    });
    put("CSV", "rows.csv", &|p| {
        std::fs::write(p, csv(rows, names)).unwrap()
    });
    put("gzip JSON lines", "rows.jsonl.gz", &|p| {
        gzip(p, &jsonl(rows, names, false))
    });
    put("zstd Zeek TSV", "conn.log.zst", &|p| {
        zstd_file(p, &zeek_tsv(rows, names))
    });
    put("Parquet", "plain.parquet", &|p| {
        write_parquet(p, &record_batch(rows, names, false, false), false)
    });
    put("dictionary Parquet", "dict.parquet", &|p| {
        write_parquet(p, &record_batch(rows, names, false, true), true)
    });
    put("nested dictionary Parquet", "nested.parquet", &|p| {
        write_parquet(p, &record_batch(rows, names, true, true), true)
    });
    put("Arrow IPC file", "rows.arrow", &|p| {
        write_ipc_file(p, &record_batch(rows, names, false, true))
    });
    put("Arrow IPC stream", "rows.arrows", &|p| {
        write_ipc_stream(p, &record_batch(rows, names, true, false))
    });
    out
}

// ---- what each copy gives --------------------------------------------------------------

/// A hit as (row, field name, indicator id, value).
type HitKey = (u64, String, String, String);
/// A notification as (recipient, indicator id, row, victim observables as `field=value`, the
/// event's uid).
type NoteKey = (String, String, u64, Vec<String>, Option<String>);

/// A notification body as its [`NoteKey`] for `recipient`.
fn note_key(recipient: &str, v: &serde_json::Value) -> NoteKey {
    let mut victim: Vec<String> = v["victim"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}={}",
                o["field"].as_str().unwrap(),
                o["value"].as_str().unwrap()
            )
        })
        .collect();
    victim.sort();
    (
        recipient.to_string(),
        v["indicator_id"].as_str().unwrap().to_string(),
        v["row"].as_u64().unwrap(),
        victim,
        v["uid"].as_str().map(str::to_string),
    )
}

fn hits_and_notes(
    index: &CompiledIndex,
    router: &Router,
    fields: &FieldMap,
    path: &Path,
) -> (BTreeSet<HitKey>, BTreeSet<NoteKey>) {
    let reg = router.registry();
    let parties = BatchParties {
        partner: reg.by_id("msp").unwrap(),
        publisher: reg.by_id("ncsc"),
    };
    let matcher = Matcher::new(index, fields, NOW);
    let mut hits = BTreeSet::new();
    let mut notes = BTreeSet::new();
    for b in telemetry::open(path, None, fields).unwrap() {
        let b = b.unwrap();
        assert!(b.errors.is_empty(), "{}: {:?}", path.display(), b.errors);
        let mut found = Vec::new();
        matcher.match_batch(&b, &mut found);
        for h in &found {
            hits.insert((
                h.row,
                fields.fields()[h.field].name.clone(),
                index.meta().id(h.ord).to_string(),
                h.value.clone(),
            ));
        }
        let routed = route_batch(
            router,
            &MatchedBatch {
                index,
                fields,
                batch: &b.batch,
                first_row: b.first_row,
                input: "whatever",
                hits: &found,
                digest: 1,
                retro: false,
            },
            parties,
            0,
            jiff::Timestamp::from_second(NOW).unwrap(),
        );
        for n in &routed.notifications {
            let v: serde_json::Value = serde_json::from_slice(&n.notification.payload).unwrap();
            assert!(
                v.get("input").is_none(),
                "a partner's input name reached a victim: {v}"
            );
            notes.insert(note_key(&reg.entity(n.recipient).id, &v));
        }
    }
    (hits, notes)
}

fn router() -> Router {
    Router::new(
        Registry::from_toml(REGISTRY, "registry.toml").unwrap(),
        RoutePolicy::default(),
    )
}

/// Every copy of `rows` gives what the flat JSON-lines copy gives, under `fields`.
fn assert_same_everywhere(
    dir: &Path,
    rows: &[Row],
    names: &[&str; 10],
    fields: &FieldMap,
) -> (BTreeSet<HitKey>, BTreeSet<NoteKey>) {
    let index = indicators();
    let router = router();
    let files = write_all_formats(dir, rows, names);
    let want = hits_and_notes(&index, &router, fields, &files[0].1);
    for (label, path) in &files[1..] {
        let got = hits_and_notes(&index, &router, fields, path);
        assert_eq!(
            got.0,
            want.0,
            "hits of {label} ({}) differ from JSON lines",
            path.display()
        );
        assert_eq!(
            got.1,
            want.1,
            "notifications of {label} ({}) differ from JSON lines",
            path.display()
        );
    }
    want
}

#[test]
fn every_input_format_gives_the_same_hits_and_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let rows = fixed_rows();
    for (name, fields) in [
        ("zeek preset", zeek_map()),
        ("explicit map", explicit_map()),
    ] {
        let (hits, notes) = assert_same_everywhere(dir.path(), &rows, &COLUMNS, &fields);
        let ids: BTreeSet<&str> = hits.iter().map(|h| h.2.as_str()).collect();
        // Every indicator kind in the fixture hit: the address, the address with its port,
        // the domain, the joined URL (origin-form and absolute-form), the user agent.
        for want in ["i0", "i1", "i2", "i3", "i4", "i5"] {
            assert!(ids.contains(want), "{name}: no hit of {want}: {hits:?}");
        }
        // The port pair holds: 192.0.2.50 on 443 (row 2) is no hit of 192.0.2.50:8443.
        assert!(!hits.iter().any(|h| h.0 == 2), "{name}: {hits:?}");
        let url_rows: BTreeSet<u64> = hits.iter().filter(|h| h.2 == "i3").map(|h| h.0).collect();
        assert_eq!(url_rows, BTreeSet::from([4, 6]), "{name}");
        // The victims hear of it, with their own host and the connection's uid named; an
        // internal case names no uid.
        let has = |who: &str, ind: &str, row: u64, victim: &[&str]| {
            notes.contains(&(
                who.to_string(),
                ind.to_string(),
                row,
                victim.iter().map(|s| s.to_string()).collect(),
                (!victim.is_empty()).then(|| format!("C{row:04}")),
            ))
        };
        assert!(
            has("hospital", "i0", 0, &["id.orig_h=10.1.2.3"]),
            "{name}: {notes:?}"
        );
        assert!(
            has("hospital", "i2", 3, &["id.orig_h=10.1.7.7"]),
            "{name}: {notes:?}"
        );
        assert!(
            has("hospital", "i3", 4, &["id.orig_h=10.1.8.8"]),
            "{name}: {notes:?}"
        );
        // Its host, and the URL of the request, are both its own.
        let shop = ["host+uri=www.shop.example/", "host=www.shop.example"];
        assert!(has("shop", "i4", 5, &shop), "{name}: {notes:?}");
        // AMBER+STRICT reaches no victim, only the publisher's internal case.
        assert!(has("ncsc", "i5", 8, &[]), "{name}: {notes:?}");
        assert!(
            !notes.iter().any(|n| n.1 == "i5" && n.0 != "ncsc"),
            "{name}: {notes:?}"
        );
    }
}

/// The same rows under the names of every other preset, in every format: identical hits and
/// notifications per preset, and the victims told with their own host and the uid named.
#[test]
fn every_preset_gives_the_same_hits_and_notifications_in_every_format() {
    let rows = fixed_rows();
    for (preset, names, src) in [
        (Preset::Suricata, SURICATA_COLUMNS, "src_ip"),
        (Preset::Ecs, ECS_COLUMNS, "source.ip"),
        (Preset::Ocsf, OCSF_COLUMNS, "src_endpoint.ip"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (hits, notes) = assert_same_everywhere(dir.path(), &rows, &names, &preset.field_map());
        let ids: BTreeSet<&str> = hits.iter().map(|h| h.2.as_str()).collect();
        // Every kind hits under every preset: the address, with its port, the domain, the
        // URL (joined from host and target in EVE; the absolute-form target elsewhere), the
        // user agent.
        for want in ["i0", "i1", "i2", "i3", "i4", "i5"] {
            assert!(ids.contains(want), "{preset:?}: no hit of {want}: {hits:?}");
        }
        assert!(!hits.iter().any(|h| h.0 == 2), "{preset:?}: {hits:?}");
        let told = |ind: &str, row: u64, host: &str| {
            notes.contains(&(
                "hospital".to_string(),
                ind.to_string(),
                row,
                vec![format!("{src}={host}")],
                Some(format!("C{row:04}")),
            ))
        };
        assert!(told("i0", 0, "10.1.2.3"), "{preset:?}: {notes:?}");
        assert!(told("i2", 3, "10.1.7.7"), "{preset:?}: {notes:?}");
        let url_rows: BTreeSet<u64> = hits.iter().filter(|h| h.2 == "i3").map(|h| h.0).collect();
        let want: BTreeSet<u64> = if preset == Preset::Suricata {
            BTreeSet::from([4, 6])
        } else {
            BTreeSet::from([6])
        };
        assert_eq!(url_rows, want, "{preset:?}");
    }
}

#[test]
fn cwn_match_gives_the_same_hits_for_every_input_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = fixed_rows();
    let files = write_all_formats(d, &rows, &COLUMNS);
    // A snapshot of the fixture's indicators, through the command line.
    let list = d.join("list.csv");
    std::fs::write(
        &list,
        "value,type\n203.0.113.7,ip\n192.0.2.50:8443,ip:port\nevil.test,domain\nhttp://cdn.test/gate.php,url\n",
    )
    .unwrap();
    let snap = d.join("set.cwnsnap");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cwn"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cwn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(&[
        "compile",
        &list.display().to_string(),
        "--column",
        "value",
        "--default-tlp",
        "GREEN",
        "-o",
        &snap.display().to_string(),
    ]);
    let mut want: Option<BTreeSet<(u64, String, String)>> = None;
    for (label, path) in &files {
        for map in [
            vec!["--preset", "zeek"],
            vec![
                "--field",
                "id.orig_h=ip",
                "--field",
                "id.resp_h=ip",
                "--field",
                "id.resp_p=port@id.resp_h",
                "--field",
                "query=domain",
                "--field",
                "host+uri=url",
            ],
        ] {
            let mut args = vec!["match", "--index", snap.to_str().unwrap()];
            args.extend(map.iter().copied());
            args.extend([path.to_str().unwrap(), "-o", "-"]);
            let out = run(&args);
            let got: BTreeSet<(u64, String, String)> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    (
                        v["row"].as_u64().unwrap(),
                        v["field"].as_str().unwrap().to_string(),
                        v["indicator"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let kinds: BTreeSet<&str> = got.iter().map(|h| h.1.as_str()).collect();
            assert!(
                kinds.contains("host+uri"),
                "{label} {map:?}: no URL hit: {got:?}"
            );
            match &want {
                None => want = Some(got),
                Some(w) => assert_eq!(&got, w, "{label} ({}) with {map:?}", path.display()),
            }
        }
    }
}

fn row_strategy() -> impl Strategy<Value = Row> {
    let addr = prop::sample::select(vec![
        "10.1.2.3",
        "10.1.0.9",
        "10.2.0.1",
        "203.0.113.7",
        "192.0.2.50",
        "198.51.100.99",
        "2001:db8::1",
    ]);
    let port = prop::sample::select(vec![53i64, 80, 443, 8443]);
    let name = prop::option::of(prop::sample::select(vec![
        "evil.test",
        "a.evil.test",
        "notevil.test",
        "www.shop.example",
        "cdn.test",
        "CDN.test",
    ]));
    let uri = prop::option::of(prop::sample::select(vec![
        "/gate.php",
        "/",
        "http://cdn.test/gate.php",
        "/gate.php?x=1",
        "*",
    ]));
    let ua = prop::option::of(prop::sample::select(vec![
        "Loader",
        "Mozilla/5.0 Loader x",
        "curl",
    ]));
    (
        addr.clone(),
        addr,
        port,
        name.clone(),
        name,
        uri,
        ua,
        0i64..120,
    )
        .prop_map(|(o, r, rp, q, h, u, ua, dt)| Row {
            ts: NOW - 60 + dt,
            uid: format!("C{dt}"),
            orig_h: o.into(),
            orig_p: 50_000,
            resp_h: r.into(),
            resp_p: rp,
            query: q.map(Into::into),
            host: h.map(Into::into),
            uri: u.map(Into::into),
            user_agent: ua.map(Into::into),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn generated_rows_give_the_same_hits_in_every_format(rows in prop::collection::vec(row_strategy(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        assert_same_everywhere(dir.path(), &rows, &COLUMNS, &zeek_map());
        assert_same_everywhere(dir.path(), &rows, &COLUMNS, &explicit_map());
    }
}

#[test]
fn a_huge_value_in_a_row_makes_a_bounded_notification() {
    let dir = tempfile::tempdir().unwrap();
    let mut row = fixed_rows()[5].clone(); // the shop's row, a user-agent hit
    row.user_agent = Some(format!("Loader {}", "é".repeat(100_000)));
    row.uri = Some(format!("/{}", "a".repeat(200_000)));
    let files = write_all_formats(dir.path(), &[row], &COLUMNS);
    let index = indicators();
    let router = router();
    let fields = zeek_map();
    let reg = router.registry();
    for b in telemetry::open(&files[0].1, None, &fields).unwrap() {
        let b = b.unwrap();
        let mut found = Vec::new();
        Matcher::new(&index, &fields, NOW).match_batch(&b, &mut found);
        let routed = route_batch(
            &router,
            &MatchedBatch {
                index: &index,
                fields: &fields,
                batch: &b.batch,
                first_row: b.first_row,
                input: "x",
                hits: &found,
                digest: 7,
                retro: false,
            },
            BatchParties {
                partner: reg.by_id("msp").unwrap(),
                publisher: reg.by_id("ncsc"),
            },
            0,
            jiff::Timestamp::from_second(NOW).unwrap(),
        );
        assert!(!routed.notifications.is_empty());
        for n in &routed.notifications {
            assert!(
                n.notification.payload.len() < 8 << 10,
                "{} bytes",
                n.notification.payload.len()
            );
            let v: serde_json::Value = serde_json::from_slice(&n.notification.payload).unwrap();
            assert!(v["value"].as_str().unwrap().ends_with('…'), "{v}");
        }
    }
}

/// Through the real hub: a partner streams each copy with `cwn stream`'s client (dictionary
/// Parquet as pyarrow writes it by default among them), and the subscribers receive the same
/// notifications for every copy as for the JSON-lines one.
#[cfg(feature = "net")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_through_the_hub_every_format_notifies_the_same_victims() {
    use cwn::hub::StartFrom;
    use cwn::net::client::{Client, Subscription, stream_files};
    use cwn::net::server::Server;
    use std::time::Duration;

    let net = crate::net::Net::new();
    let p = net.dir.path();
    std::fs::write(p.join("registry.toml"), REGISTRY).unwrap();
    let snapshot = IndexBuilder::new()
        .set_version(1)
        .created_at(1_700_000_000)
        .build(&indicator_set())
        .unwrap()
        .to_snapshot(Some(&net.signing));
    std::fs::write(p.join("set.cwnsnap"), snapshot).unwrap();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let mut subs: Vec<(&str, Subscription)> = Vec::new();
    for who in ["hospital", "shop", "ncsc"] {
        let sub = Client::connect(&hub, &net.id(who))
            .await
            .unwrap()
            .subscribe(StartFrom::Acked)
            .await
            .unwrap();
        subs.push((who, sub));
    }
    let dir = tempfile::tempdir().unwrap();
    let files = write_all_formats(dir.path(), &fixed_rows(), &COLUMNS);
    let fields = zeek_map();
    let mut want: Option<BTreeSet<NoteKey>> = None;
    for (label, path) in &files {
        let streamed = stream_files(
            &hub,
            &net.id("msp"),
            &fields,
            None,
            std::slice::from_ref(path),
        )
        .await
        .unwrap();
        assert!(!streamed.hits.is_empty(), "{label}: no hits back");
        // Everything this copy caused, until the subscribers fall quiet.
        let mut got = BTreeSet::new();
        for (who, sub) in subs.iter_mut() {
            while let Ok(next) = tokio::time::timeout(Duration::from_millis(700), sub.next()).await
            {
                let (offset, note) = next.unwrap().expect("subscription open");
                sub.ack(offset).await.unwrap();
                let v: serde_json::Value = serde_json::from_slice(&note.payload).unwrap();
                if v.get("sightings").is_some() {
                    continue; // the publisher's aggregated counts, not a hit
                }
                got.insert(note_key(who, &v));
            }
        }
        match &want {
            None => {
                // The JSON-lines copy notifies the hospital and the shop of their hits.
                assert!(
                    got.iter().any(|n| n.0 == "hospital") && got.iter().any(|n| n.0 == "shop"),
                    "{label}: {got:?}"
                );
                want = Some(got);
            }
            Some(w) => assert_eq!(&got, w, "{label} ({}) notified otherwise", path.display()),
        }
    }
    server.shutdown().await;
}
