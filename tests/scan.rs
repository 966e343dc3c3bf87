//! Columnar telemetry and the parallel scan: Parquet (plain, dictionary-encoded, nested) and
//! Arrow IPC (file and stream) give the hits the JSON-lines version of the same rows gives and
//! the reference matcher expects; zstd input; thread counts; hit files round-trip; corrupt
//! files are refused with the file named.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, Fields};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp, normalize};
use cwn::matcher::Matcher;
use cwn::matcher::scan::{ScannedBatch, Scanner};
use cwn::telemetry::{self, FieldMap};

use crate::reference::{self, Row};

const NOW: i64 = 1_750_000_000;

/// Kind, value, TLP and validity window of a test indicator.
type Spec<'a> = (Kind, &'a str, Tlp, Option<(i64, i64)>);

fn indicators() -> IndicatorSet {
    let mut set = IndicatorSet::new();
    let specs: &[Spec<'_>] = &[
        (Kind::Ipv4, "198.51.100.23", Tlp::Amber, None),
        (Kind::Cidr, "203.0.113.0/28", Tlp::Green, None),
        (Kind::IpPort, "192.0.2.50:8443", Tlp::Green, None),
        (Kind::Domain, "evil.test", Tlp::Amber, None),
        (Kind::Hostname, "c2.bad.test", Tlp::Green, None),
        (Kind::Url, "http://evil.test/gate.php", Tlp::Amber, None),
        (Kind::Uri, "/gate", Tlp::Clear, None),
        (Kind::UserAgent, "Loader", Tlp::Clear, None),
        (Kind::Sha256, &"ab".repeat(32), Tlp::Amber, None),
        (
            Kind::Domain,
            "window.test",
            Tlp::Green,
            Some((NOW - 50, NOW + 50)),
        ),
        (Kind::Domain, "red.test", Tlp::Red, None),
    ];
    for (i, (kind, value, tlp, window)) in specs.iter().enumerate() {
        let n = normalize::normalize_as(*kind, value).unwrap();
        let mut ind = Indicator::new(format!("i{i}"), n.kind, n.value, Arc::from("src"), *tlp);
        if let Some((from, until)) = window {
            ind.validity.valid_from = Some(jiff::Timestamp::from_second(*from).unwrap());
            ind.validity.valid_until = Some(jiff::Timestamp::from_second(*until).unwrap());
        }
        set.insert(ind).unwrap();
    }
    set
}

fn field_map() -> FieldMap {
    FieldMap::from_specs(
        [
            "src=ip",
            "dst=ip",
            "dport=port@dst",
            "query=domain",
            "url=url",
            "ua=user-agent",
            "sha256=sha256",
            "answers=domain",
            "ts=time",
        ]
        .iter()
        .map(|s| s.parse().unwrap()),
    )
    .unwrap()
}

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        cwn::generate::rng::splitmix64(&mut self.0)
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// `n` rows over the field map's columns; an empty string is a null.
fn rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = Rng(seed);
    let sha = "AB".repeat(32);
    let other = "cd".repeat(32);
    (0..n)
        .map(|_| {
            let one = |s: &str| {
                if s.is_empty() {
                    vec![]
                } else {
                    vec![s.to_string()]
                }
            };
            let src = rng.pick(&[
                "192.0.2.10",
                "198.51.100.23",
                "::ffff:198.51.100.23",
                "10.0.0.1",
                "",
                "not an ip",
            ]);
            let dst = rng.pick(&[
                "203.0.113.7",
                "192.0.2.50",
                "192.0.2.51",
                "198.51.100.23",
                "",
            ]);
            let dport = rng.pick(&["80", "443", "8443", ""]);
            let query = rng.pick(&[
                "a.evil.test",
                "EVIL.TEST.",
                "notevil.test",
                "c2.bad.test",
                "x.c2.bad.test",
                "window.test",
                "red.test",
                "",
                "example.org",
            ]);
            let url = rng.pick(&[
                "http://EVIL.test/gate.php",
                "/gate?x=1",
                "https://ok.test/",
                "",
                "evil.test/other",
            ]);
            let ua = rng.pick(&["Mozilla/5.0", "SyntheticLoader/1.0", ""]);
            let hash = rng.pick(&[sha.as_str(), other.as_str(), ""]);
            let answers: Vec<String> = match rng.next() % 4 {
                0 => vec![],
                1 => vec!["ok.test".into()],
                2 => vec!["ok.test".into(), "b.evil.test".into()],
                _ => vec!["c2.bad.test".into(), "198.51.100.23".into()],
            };
            let ts = match rng.next() % 4 {
                0 => String::new(),
                1 => (NOW - 100).to_string(),
                2 => NOW.to_string(),
                _ => (NOW + 100).to_string(),
            };
            vec![
                one(src),
                one(dst),
                one(dport),
                one(query),
                one(url),
                one(ua),
                one(hash),
                answers,
                one(&ts),
            ]
        })
        .collect()
}

fn jsonl(rows: &[Row]) -> String {
    let names = field_map();
    let mut text = String::new();
    for row in rows {
        let mut obj = serde_json::Map::new();
        for (spec, vals) in names.fields().iter().zip(row) {
            let v: serde_json::Value = match (spec.name.as_str(), vals.len()) {
                (_, 0) => continue,
                ("answers", _) => vals.clone().into(),
                ("dport" | "ts", _) => vals[0].parse::<i64>().unwrap().into(),
                _ => vals[0].clone().into(),
            };
            obj.insert(spec.name.clone(), v);
        }
        text.push_str(&serde_json::Value::Object(obj).to_string());
        text.push('\n');
    }
    text
}

/// The rows as Arrow: strings, an Int64 port, a list of answers, a microsecond timestamp.
fn record_batch(rows: &[Row]) -> RecordBatch {
    let mut strings: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    let mut answers = ListBuilder::new(StringBuilder::new());
    let mut dport = Int64Builder::new();
    let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for row in rows {
        for (i, col) in [0usize, 1, 3, 4, 5, 6].iter().enumerate() {
            strings[i].append_option(row[*col].first());
        }
        dport.append_option(row[2].first().map(|p| p.parse::<i64>().unwrap()));
        for a in &row[7] {
            answers.values().append_value(a);
        }
        answers.append(!row[7].is_empty());
        ts.append_option(
            row[8]
                .first()
                .map(|t| t.parse::<i64>().unwrap() * 1_000_000),
        );
    }
    let mut s: Vec<ArrayRef> = strings
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("src", s.remove(0)),
        ("dst", s.remove(0)),
        ("dport", Arc::new(dport.finish())),
        ("query", s.remove(0)),
        ("url", s.remove(0)),
        ("ua", s.remove(0)),
        ("sha256", s.remove(0)),
        ("answers", Arc::new(answers.finish())),
        ("ts", Arc::new(ts.finish())),
    ];
    RecordBatch::try_from_iter(cols).unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch, dictionary: bool, row_group: usize) {
    let props = WriterProperties::builder()
        .set_dictionary_enabled(dictionary)
        .set_max_row_group_row_count(Some(row_group))
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    // Several writes, so that batches and row groups do not line up.
    for start in (0..batch.num_rows()).step_by(777) {
        w.write(&batch.slice(start, 777.min(batch.num_rows() - start)))
            .unwrap();
    }
    w.close().unwrap();
}

fn write_ipc_file(path: &Path, batch: &RecordBatch) {
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(File::create(path).unwrap(), &batch.schema())
            .unwrap();
    for start in (0..batch.num_rows()).step_by(1000) {
        w.write(&batch.slice(start, 1000.min(batch.num_rows() - start)))
            .unwrap();
    }
    w.finish().unwrap();
}

fn ipc_stream_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

/// Every hit as (row, field, indicator id, value, event time), in output order.
type Hits = Vec<(u64, usize, String, String, Option<i64>)>;

fn scan(index: &CompiledIndex, fields: &FieldMap, path: &Path, threads: usize) -> Hits {
    let m = Matcher::new(index, fields, NOW);
    let scanner = Scanner::new(threads).unwrap().with_in_flight(3);
    let mut out = Hits::new();
    let mut sink = |b: &ScannedBatch<'_>| -> std::io::Result<bool> {
        for h in b.hits {
            out.push((
                h.row,
                h.field,
                index.meta().id(h.ord).to_string(),
                h.value.clone(),
                h.event_time,
            ));
        }
        Ok(true)
    };
    scanner.scan_files(&m, &[path], None, &mut sink).unwrap();
    out
}

fn as_set(h: &Hits) -> reference::Expected {
    h.iter()
        .map(|(r, f, id, _, _)| (*r, *f, id.clone()))
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    rows: Vec<Row>,
    set: IndicatorSet,
    index: CompiledIndex,
    fields: FieldMap,
}

fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let set = indicators();
    Fixture {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        rows: rows(n, 7),
        index: IndexBuilder::new().build(&set).unwrap(),
        set,
        fields: field_map(),
    }
}

#[test]
fn parquet_and_arrow_inputs_give_the_hits_of_json_lines_and_the_reference() {
    let f = fixture(3000);
    let jl = f.dir.join("t.jsonl");
    std::fs::write(&jl, jsonl(&f.rows)).unwrap();
    let want = scan(&f.index, &f.fields, &jl, 2);
    assert_eq!(
        as_set(&want),
        reference::reference(&f.set, &f.fields, &f.rows, NOW, false)
    );
    assert!(want.len() > 1000, "a test that hits: {}", want.len());

    let batch = record_batch(&f.rows);
    let inputs: Vec<(&str, PathBuf)> = {
        let plain = f.dir.join("plain.parquet");
        write_parquet(&plain, &batch, false, 1000);
        let dict = f.dir.join("dict.parquet");
        write_parquet(&dict, &batch, true, 1000);
        let ipc = f.dir.join("t.arrow");
        write_ipc_file(&ipc, &batch);
        let stream = f.dir.join("t.arrows");
        std::fs::write(&stream, ipc_stream_bytes(&batch)).unwrap();
        let zst = f.dir.join("t.arrows.zst");
        std::fs::write(
            &zst,
            zstd::encode_all(&ipc_stream_bytes(&batch)[..], 3).unwrap(),
        )
        .unwrap();
        let ipc_zst = f.dir.join("t.arrow.zst");
        std::fs::write(
            &ipc_zst,
            zstd::encode_all(&std::fs::read(&ipc).unwrap()[..], 3).unwrap(),
        )
        .unwrap();
        vec![
            ("plain Parquet", plain),
            ("dictionary Parquet", dict),
            ("Arrow IPC file", ipc),
            ("Arrow IPC stream", stream),
            ("zstd Arrow IPC stream", zst),
            ("zstd Arrow IPC file", ipc_zst),
        ]
    };
    for (what, path) in &inputs {
        for threads in [1, 2] {
            assert_eq!(
                scan(&f.index, &f.fields, path, threads),
                want,
                "{what}, {threads} thread(s)"
            );
        }
    }
}

#[test]
fn zstd_json_lines_read_as_json_lines() {
    let f = fixture(500);
    let text = jsonl(&f.rows);
    let plain = f.dir.join("t.jsonl");
    std::fs::write(&plain, &text).unwrap();
    // Two frames, as `cat a.zst b.zst` makes.
    let half = text[..text.len() / 2].rfind('\n').unwrap() + 1;
    let mut z = zstd::encode_all(&text.as_bytes()[..half], 1).unwrap();
    z.extend(zstd::encode_all(&text.as_bytes()[half..], 19).unwrap());
    let zst = f.dir.join("t.log.zst");
    std::fs::write(&zst, z).unwrap();
    let want = scan(&f.index, &f.fields, &plain, 1);
    assert!(!want.is_empty());
    assert_eq!(scan(&f.index, &f.fields, &zst, 2), want);
}

#[test]
fn dictionary_columns_are_read_as_dictionaries_and_match_as_plain_ones() {
    let f = fixture(2000);
    let batch = record_batch(&f.rows);
    let dict = f.dir.join("dict.parquet");
    write_parquet(&dict, &batch, true, 100_000);
    let plain = f.dir.join("plain.parquet");
    write_parquet(&plain, &batch, false, 100_000);
    let first = |p: &Path| {
        telemetry::open(p, None, &f.fields)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    };
    let d = first(&dict);
    let q = d.batch.column_by_name("query").unwrap();
    assert!(
        matches!(q.data_type(), DataType::Dictionary(_, _)),
        "{}",
        q.data_type()
    );
    let p = first(&plain);
    assert_eq!(
        p.batch.column_by_name("query").unwrap().data_type(),
        &DataType::Utf8
    );
    // A list's values are read as a dictionary too.
    let answers = d.batch.column_by_name("answers").unwrap().data_type();
    assert!(
        matches!(answers, DataType::List(f) if matches!(f.data_type(), DataType::Dictionary(_, _))),
        "{answers}"
    );
    let want = scan(&f.index, &f.fields, &plain, 1);
    assert!(!want.is_empty());
    assert_eq!(scan(&f.index, &f.fields, &dict, 1), want);
    assert_eq!(scan(&f.index, &f.fields, &dict, 2), want);
}

/// A Suricata-like nested layout: `dns` is a struct with a name and a list of answer
/// structs; `id.orig_h` is a flat column whose name has a dot.
#[test]
fn nested_struct_fields_and_flat_dotted_names() {
    let dir = tempfile::tempdir().unwrap();
    let set = indicators();
    let index = IndexBuilder::new().build(&set).unwrap();
    let fields = FieldMap::from_specs(
        [
            "dns.rrname=domain",
            "dns.answers.rdata=domain",
            "id.orig_h=ip",
        ]
        .iter()
        .map(|s| s.parse().unwrap()),
    )
    .unwrap();
    let data: Vec<(Option<&str>, Vec<&str>, &str)> = vec![
        (Some("a.evil.test"), vec![], "10.0.0.1"),
        (
            Some("ok.test"),
            vec!["ok.test", "c2.bad.test"],
            "198.51.100.23",
        ),
        (None, vec!["198.51.100.23"], "10.0.0.2"),
        (Some("window.test"), vec!["x.evil.test"], "203.0.113.9"),
    ];
    // JSON lines: nested objects and a flat dotted key.
    let mut text = String::new();
    for (q, answers, orig) in &data {
        let answers: Vec<_> = answers
            .iter()
            .map(|a| serde_json::json!({"rdata": a}))
            .collect();
        let mut dns = serde_json::json!({ "answers": answers });
        if let Some(q) = q {
            dns["rrname"] = (*q).into();
        }
        text.push_str(&serde_json::json!({"dns": dns, "id.orig_h": orig}).to_string());
        text.push('\n');
    }
    let jl = dir.path().join("eve.jsonl");
    std::fs::write(&jl, text).unwrap();
    // The same as Arrow: dns: struct<rrname: utf8, answers: list<struct<rdata: utf8>>>.
    let rdata = Fields::from(vec![Field::new("rdata", DataType::Utf8, true)]);
    let mut answers = ListBuilder::new(arrow_array::builder::StructBuilder::from_fields(
        rdata.clone(),
        0,
    ));
    let mut rrname = StringBuilder::new();
    let mut orig = StringBuilder::new();
    for (q, ans, o) in &data {
        rrname.append_option(*q);
        for a in ans {
            let sb = answers.values();
            sb.field_builder::<StringBuilder>(0)
                .unwrap()
                .append_value(a);
            sb.append(true);
        }
        answers.append(true);
        orig.append_value(o);
    }
    let answers = answers.finish();
    let rrname: ArrayRef = Arc::new(rrname.finish());
    let dns = StructArray::from(vec![
        (Arc::new(Field::new("rrname", DataType::Utf8, true)), rrname),
        (
            Arc::new(Field::new("answers", answers.data_type().clone(), true)),
            Arc::new(answers) as ArrayRef,
        ),
    ]);
    let batch = RecordBatch::try_from_iter(vec![
        ("dns", Arc::new(dns) as ArrayRef),
        ("id.orig_h", Arc::new(orig.finish()) as ArrayRef),
    ])
    .unwrap();
    let pq = dir.path().join("eve.parquet");
    write_parquet(&pq, &batch, true, 2);
    let ipc = dir.path().join("eve.arrow");
    write_ipc_file(&ipc, &batch);
    let want = scan(&index, &fields, &jl, 1);
    let ids: Vec<(u64, &str)> = want.iter().map(|h| (h.0, h.2.as_str())).collect();
    assert_eq!(
        ids,
        [
            (0, "i3"),
            (1, "i4"),
            (1, "i0"),
            (2, "i0"),
            (3, "i9"),
            (3, "i3"),
            (3, "i1")
        ],
        "{want:?}"
    );
    assert_eq!(scan(&index, &fields, &pq, 2), want);
    assert_eq!(scan(&index, &fields, &ipc, 2), want);

    // Naming the struct itself is refused with a hint.
    let whole = FieldMap::from_specs(["dns=domain".parse().unwrap()]).unwrap();
    let err = telemetry::open(&pq, None, &whole)
        .err()
        .expect("a struct is refused")
        .to_string();
    assert!(
        err.contains("eve.parquet") && err.contains("dns.rrname"),
        "{err}"
    );
}

#[test]
fn thread_counts_give_identical_hits_in_input_order() {
    let f = fixture(20_000);
    let batch = record_batch(&f.rows);
    let pq = f.dir.join("many-groups.parquet");
    // 2,000-row groups: ten parts, each several batches' worth of bytes but under one batch.
    write_parquet(&pq, &batch, true, 2_000);
    let one = scan(&f.index, &f.fields, &pq, 1);
    assert!(one.windows(2).all(|w| w[0].0 <= w[1].0), "rows in order");
    assert!(
        one.last().unwrap().0 > 19_000,
        "hits up to the last row group"
    );
    for threads in [2, 3] {
        assert_eq!(
            scan(&f.index, &f.fields, &pq, threads),
            one,
            "{threads} threads"
        );
    }
    assert_eq!(
        as_set(&one),
        reference::reference(&f.set, &f.fields, &f.rows, NOW, false)
    );
}

#[test]
fn truncated_and_corrupt_parquet_are_refused_naming_the_file() {
    let f = fixture(3000);
    let batch = record_batch(&f.rows);
    let good = f.dir.join("good.parquet");
    write_parquet(&good, &batch, true, 1000);
    let bytes = std::fs::read(&good).unwrap();

    let cut = f.dir.join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = telemetry::open_parts(&cut, None, &f.fields)
        .expect_err("truncated")
        .to_string();
    assert!(
        err.contains("cut.parquet") && err.contains("Parquet"),
        "{err}"
    );

    // Overwrite the page headers of the second row group's `query` column.
    let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&good).unwrap())
        .unwrap()
        .metadata()
        .clone();
    let leaf = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "query")
        .unwrap();
    let col = meta.row_group(1).column(leaf);
    let start = col
        .dictionary_page_offset()
        .unwrap_or(col.data_page_offset()) as usize;
    let mut bad = bytes.clone();
    bad[start..start + 16].fill(0xff);
    let corrupt = f.dir.join("corrupt.parquet");
    std::fs::write(&corrupt, bad).unwrap();
    let m = Matcher::new(&f.index, &f.fields, NOW);
    let mut sink = |_: &ScannedBatch<'_>| -> std::io::Result<bool> { Ok(true) };
    let err = Scanner::new(2)
        .unwrap()
        .scan_files(&m, &[&corrupt], None, &mut sink)
        .expect_err("a corrupt page")
        .to_string();
    assert!(
        err.contains("corrupt.parquet") && err.contains("row group 1"),
        "{err}"
    );

    // Parquet needs its footer: compressed, it is refused with the reason.
    let zst = f.dir.join("good.parquet.zst");
    std::fs::write(&zst, zstd::encode_all(&bytes[..], 1).unwrap()).unwrap();
    let err = telemetry::open_parts(&zst, None, &f.fields)
        .expect_err("compressed Parquet")
        .to_string();
    assert!(
        err.contains("good.parquet.zst") && err.contains("decompress"),
        "{err}"
    );
}

// ---- the command ----------------------------------------------------------------------

fn cwn(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(args)
        .output()
        .expect("run cwn");
    assert!(
        out.status.success(),
        "cwn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Each row of a hit file as a JSON object, whatever its format.
fn read_hits(path: &Path) -> Vec<serde_json::Value> {
    let batches: Vec<RecordBatch> = match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap(),
        Some("arrow") => arrow_ipc::reader::FileReader::try_new(File::open(path).unwrap(), None)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap(),
        _ => {
            return std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        }
    };
    let mut out = Vec::new();
    for b in &batches {
        assert_eq!(b.schema().fields(), cwn::hits::hit_schema().fields());
        for r in 0..b.num_rows() {
            let mut obj = serde_json::Map::new();
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                let v: serde_json::Value = match c.data_type() {
                    _ if c.is_null(r) => serde_json::Value::Null,
                    DataType::UInt64 => c
                        .as_primitive::<arrow_array::types::UInt64Type>()
                        .value(r)
                        .into(),
                    DataType::List(_) => {
                        let l = c.as_list::<i32>().value(r);
                        let s = l.as_string::<i32>();
                        (0..s.len())
                            .map(|i| s.value(i).to_string())
                            .collect::<Vec<_>>()
                            .into()
                    }
                    _ => c.as_string::<i32>().value(r).into(),
                };
                obj.insert(f.name().clone(), v);
            }
            out.push(serde_json::Value::Object(obj));
        }
    }
    out
}

#[test]
fn match_command_writes_parquet_and_arrow_hits_and_sightings_per_partner_and_day() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = d.join("list.txt");
    std::fs::write(&list, "evil.test\n198.51.100.23\n203.0.113.0/28\n").unwrap();
    let snap = d.join("set.cwnsnap");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    cwn(&["compile", &s(&list), "-o", &s(&snap)]);
    let rows = rows(5000, 11);
    let pq = d.join("t.parquet");
    write_parquet(&pq, &record_batch(&rows), true, 1500);
    let base = [
        "match",
        "--index",
        &s(&snap),
        "--field",
        "src=ip",
        "--field",
        "dst=ip",
        "--field",
        "query=domain",
        "--field",
        "answers=domain",
        "--field",
        "ts=time",
    ]
    .map(String::from)
    .to_vec();
    let run = |extra: &[String]| {
        let mut a = base.clone();
        a.extend_from_slice(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        cwn(&a)
    };
    let o = |name: &str| s(&d.join(name));
    run(&[
        "--threads".into(),
        "1".into(),
        s(&pq),
        "-o".into(),
        o("one.jsonl"),
    ]);
    run(&[
        "--threads".into(),
        "2".into(),
        s(&pq),
        "-o".into(),
        o("two.jsonl"),
        "--sightings".into(),
        o("sightings.jsonl"),
        "--partner".into(),
        "msp-a".into(),
    ]);
    run(&[s(&pq), "-o".into(), o("hits.parquet")]);
    run(&[s(&pq), "-o".into(), o("hits.arrow")]);
    let one = std::fs::read(d.join("one.jsonl")).unwrap();
    assert!(!one.is_empty());
    assert_eq!(
        one,
        std::fs::read(d.join("two.jsonl")).unwrap(),
        "1 and 2 threads write the same bytes"
    );
    let want = read_hits(&d.join("one.jsonl"));
    assert_eq!(read_hits(&d.join("hits.parquet")), want);
    assert_eq!(read_hits(&d.join("hits.arrow")), want);
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");

    // Sightings: per indicator, partner and UTC day of the event time (of now without one).
    let sightings = read_hits(&d.join("sightings.jsonl"));
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let mut total = 0;
    for s in &sightings {
        for key in [
            "indicator_id",
            "kind",
            "indicator",
            "tlp",
            "source",
            "count",
        ] {
            assert!(!s[key].is_null(), "{key} in {s}");
        }
        assert_eq!(s["partner"], "msp-a");
        assert!(s["day"] == "2025-06-15" || s["day"] == today, "{s}");
        total += s["count"].as_u64().unwrap();
    }
    assert_eq!(total as usize, want.len());
    let mut per_day = std::collections::BTreeMap::new();
    for h in &want {
        let day = h["event_time"]
            .as_str()
            .map(|t| t[..10].to_string())
            .unwrap_or(today.clone());
        *per_day
            .entry((h["indicator_id"].as_str().unwrap().to_string(), day))
            .or_insert(0u64) += 1;
    }
    let got: std::collections::BTreeMap<_, _> = sightings
        .iter()
        .map(|s| {
            (
                (
                    s["indicator_id"].as_str().unwrap().to_string(),
                    s["day"].as_str().unwrap().to_string(),
                ),
                s["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, per_day);
}

#[test]
fn a_failed_match_keeps_the_previous_hit_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = d.join("list.txt");
    std::fs::write(&list, "evil.test\n").unwrap();
    let snap = d.join("set.cwnsnap");
    cwn(&[
        "compile",
        list.to_str().unwrap(),
        "-o",
        snap.to_str().unwrap(),
    ]);
    let bad = d.join("bad.parquet");
    let mut f = File::create(&bad).unwrap();
    f.write_all(b"PAR1 this is not parquet").unwrap();
    let hits = d.join("hits.parquet");
    std::fs::write(&hits, b"previous").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args([
            "match",
            "--index",
            snap.to_str().unwrap(),
            "--field",
            "q=domain",
            bad.to_str().unwrap(),
            "-o",
            hits.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.parquet"), "{err}");
    assert_eq!(std::fs::read(&hits).unwrap(), b"previous");
}

/// `cwn match --decode-only` (the scan's floor): the same rows read and counted, on one thread
/// and two, the same summary line, and nothing matched or written.
#[test]
fn decode_only_reads_every_row_and_matches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = d.join("list.txt");
    std::fs::write(&list, "evil.test\n198.51.100.23\n203.0.113.0/28\n").unwrap();
    let snap = d.join("set.cwnsnap");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    cwn(&["compile", &s(&list), "-o", &s(&snap)]);
    let pq = d.join("t.parquet");
    write_parquet(&pq, &record_batch(&rows(5000, 11)), true, 1500);
    let summary = |extra: &[&str]| -> (String, String) {
        let mut a = vec![
            "match",
            "--index",
            snap.to_str().unwrap(),
            "--field",
            "src=ip",
            "--field",
            "query=domain",
            "--field",
            "no_such_column=domain",
            pq.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        let o = cwn(&a);
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (hits, real) = summary(&["--threads", "1"]);
    assert!(!hits.is_empty(), "the real run finds hits: {real}");
    assert!(real.contains("scanned 5000 row(s)"), "{real}");
    for threads in ["1", "2"] {
        let (out, err) = summary(&["--threads", threads, "--decode-only"]);
        assert!(out.is_empty(), "nothing matched, nothing written: {out}");
        assert!(
            err.contains("scanned 5000 row(s) in ")
                && err.contains("rows/s")
                && err.contains(&format!("{threads} thread(s)"))
                && err.contains("decoded only, nothing matched"),
            "{err}"
        );
    }
}

/// A scan thread that panics (a decoder bug that some input triggers) stops the scan with an
/// error naming the input and where, on one thread and on two, instead of leaving the scan
/// waiting for ever for the batch that thread held.
#[test]
fn a_panicking_reader_fails_the_scan_naming_the_input_instead_of_hanging() {
    use cwn::matcher::scan::ScanError;
    use cwn::telemetry::{Part, TelemetryBatch};
    let fx = Arc::new(fixture(300));
    let batch = record_batch(&fx.rows);
    for threads in [1, 2] {
        let (tx, rx) = std::sync::mpsc::channel();
        let (fx, batch) = (fx.clone(), batch.clone());
        std::thread::spawn(move || {
            let m = Matcher::new(&fx.index, &fx.fields, NOW);
            let scanner = Scanner::new(threads).unwrap().with_in_flight(3);
            let mut n = 0u64;
            let batches = std::iter::from_fn(move || {
                n += 1;
                assert!(n < 5, "decoder bug at batch {n}");
                Some(Ok(TelemetryBatch {
                    batch: batch.clone(),
                    first_row: (n - 1) * 300,
                    errors: Vec::new(),
                }))
            });
            let mut seen = 0;
            let mut sink = |b: &ScannedBatch<'_>| -> std::io::Result<bool> {
                seen += b.rows;
                Ok(true)
            };
            let r = scanner.scan_parts(
                &m,
                "stream.jsonl",
                vec![Part::from_batches(Box::new(batches))],
                &mut sink,
            );
            let _ = tx.send(r.map(|_| seen));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{threads} thread(s): the scan hangs after a panic"));
        match r {
            Err(e @ ScanError::Panicked { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("stream.jsonl: ")
                        && msg.contains("while reading")
                        && msg.contains("decoder bug at batch 5"),
                    "{msg}"
                );
            }
            other => panic!("{threads} thread(s): expected the panic as an error, got {other:?}"),
        }
    }
}
