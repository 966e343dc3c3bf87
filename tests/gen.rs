//! `cwn gen`: the feed round-trips through ingest and compile with nothing rejected, and
//! telemetry hits exactly the rows it planted, in every output format.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use cwn::generate::telemetry::Preset;
use serde_json::Value;

fn cwn(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(args)
        .output()
        .expect("run cwn");
    assert!(
        out.status.success(),
        "cwn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_out(args: &[&str]) -> Value {
    let out = cwn(args);
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file of a directory, by name, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A feed and its snapshot, made once for the telemetry tests.
struct Fixture {
    root: PathBuf,
    snapshot: PathBuf,
}

/// The fixture lives under cargo's target tmp dir, not in a `TempDir`: a static is never
/// dropped, so a `TempDir` here left ~80 MB in /tmp after every test run. Cleared when made.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-fixture");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let feed = root.join("feed");
        let snapshot = root.join("set.cwnsnap");
        cwn(&[
            "gen",
            "indicators",
            "--count",
            "4000",
            "--seed",
            "21",
            "-o",
            s(&feed),
        ]);
        cwn(&["compile", "--strict", s(&feed), "-o", s(&snapshot)]);
        Fixture { root, snapshot }
    })
}

#[test]
fn feed_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    cwn(&[
        "gen",
        "indicators",
        "--count",
        "1500",
        "--seed",
        "9",
        "-o",
        s(&a),
    ]);
    cwn(&[
        "gen",
        "indicators",
        "--count",
        "1500",
        "--seed",
        "9",
        "-o",
        s(&b),
    ]);
    cwn(&[
        "gen",
        "indicators",
        "--count",
        "1500",
        "--seed",
        "10",
        "-o",
        s(&c),
    ]);
    let fa = files(&a);
    assert!(fa.len() > 3);
    assert_eq!(fa, files(&b), "same seed, different bytes");
    assert_ne!(fa, files(&c), "different seed, same bytes");
    // An existing non-empty directory is only replaced with --force.
    let out = Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["gen", "indicators", "--count", "10", "-o", s(&a)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    cwn(&[
        "gen",
        "indicators",
        "--count",
        "1500",
        "--seed",
        "10",
        "--force",
        "-o",
        s(&a),
    ]);
    assert_eq!(files(&a), files(&c));
}

#[test]
fn feed_ingests_with_zero_rejects_and_the_predicted_mix() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed");
    let report = json_out(&[
        "gen",
        "indicators",
        "--count",
        "6000",
        "--seed",
        "4",
        "--json",
        "-o",
        s(&feed),
    ]);
    let ingest = json_out(&["ingest", "--json", "--strict", s(&feed)]);
    for zero in ["rejected", "unsupported", "duplicates", "suppressed"] {
        assert_eq!(ingest[zero], 0, "{zero}: {ingest}");
    }
    // The generator predicts ingest exactly: count, kinds and TLP levels.
    assert_eq!(
        ingest["accepted"], report["indicators"],
        "{ingest}\n{report}"
    );
    assert_eq!(ingest["by_kind"], report["by_kind"]);
    assert_eq!(ingest["by_tlp"], report["by_tlp"]);
    assert_eq!(report["attributes"], 6000);
    // Revoked and context-only attributes are skipped, not rejected.
    let skipped = ingest["skipped"].as_u64().unwrap();
    let revoked = report["revoked"].as_u64().unwrap();
    let context = report["context_only"].as_u64().unwrap();
    assert_eq!(skipped, revoked + context);
    assert!(revoked > 0 && context > 0);

    let by_kind = ingest["by_kind"].as_object().unwrap();
    for k in [
        "ipv4",
        "ipv6",
        "cidr",
        "ip:port",
        "domain",
        "hostname",
        "url",
        "md5",
        "sha1",
        "sha256",
        "email",
        "ja3",
        "user-agent",
    ] {
        assert!(
            by_kind.get(k).and_then(Value::as_u64).unwrap_or(0) > 0,
            "no {k}"
        );
    }
    let accepted = ingest["accepted"].as_u64().unwrap() as f64;
    let tlp = |t: &str| ingest["by_tlp"][t].as_u64().unwrap_or(0) as f64;
    for t in ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"] {
        assert!(tlp(t) > 0.0, "no {t}");
    }
    assert!(
        (tlp("GREEN") + tlp("AMBER")) / accepted > 0.6,
        "mostly GREEN/AMBER"
    );

    // And compile takes it as it is.
    let snap = dir.path().join("set.cwnsnap");
    cwn(&["compile", "--strict", s(&feed), "-o", s(&snap)]);
}

#[test]
fn feed_files_follow_the_misp_layout() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed");
    cwn(&[
        "gen",
        "indicators",
        "--count",
        "5000",
        "--seed",
        "2",
        "-o",
        s(&feed),
    ]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(feed.join("manifest.json")).unwrap()).unwrap();
    let manifest = manifest.as_object().unwrap();
    let hashes = std::fs::read_to_string(feed.join("hashes.csv")).unwrap();
    let hash_lines: BTreeSet<&str> = hashes.lines().collect();
    let mut events = 0;
    let (mut cidrs, mut hosts) = (Vec::new(), Vec::new());
    let (mut deleted, mut not_ids, mut seen, mut sharing, mut objects) = (0, 0, 0, 0, 0);
    let mut sizes = Vec::new();
    for e in std::fs::read_dir(&feed).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let Some(uuid) = name.strip_suffix(".json") else {
            continue;
        };
        if uuid == "manifest" {
            continue;
        }
        events += 1;
        let doc: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let ev = &doc["Event"];
        assert_eq!(ev["uuid"], uuid);
        let entry = &manifest[uuid];
        assert_eq!(entry["info"], ev["info"]);
        assert_eq!(
            entry["timestamp"].as_i64().unwrap().to_string(),
            ev["timestamp"].as_str().unwrap()
        );
        if ev["distribution"] == "4" {
            sharing += 1;
            assert!(ev["SharingGroup"]["uuid"].is_string());
        }
        let mut attrs: Vec<&Value> = ev["Attribute"].as_array().unwrap().iter().collect();
        for o in ev["Object"].as_array().into_iter().flatten() {
            objects += 1;
            attrs.extend(o["Attribute"].as_array().unwrap());
        }
        sizes.push(attrs.len());
        for a in attrs {
            let v = a["value"].as_str().unwrap();
            let t = a["type"].as_str().unwrap();
            for part in v.split('|') {
                let line = format!("{},{uuid}", cwn::generate::md5::md5_hex(part.as_bytes()));
                assert!(hash_lines.contains(line.as_str()), "{line} missing");
            }
            deleted += usize::from(a["deleted"] == true);
            not_ids += usize::from(a["to_ids"] == false);
            seen += usize::from(a["first_seen"].is_string());
            if t == "ip-dst" {
                if v.contains('/') {
                    cidrs.push(v.parse::<ipnet::IpNet>().unwrap());
                } else {
                    hosts.push(v.parse::<std::net::IpAddr>().unwrap());
                }
            }
        }
    }
    assert_eq!(events, manifest.len());
    assert!(deleted > 0 && not_ids > 0 && seen > 0 && sharing > 0 && objects > 0);
    // Many small events and at least one large one.
    sizes.sort_unstable();
    assert!(
        sizes[sizes.len() / 2] <= 20,
        "median event size {}",
        sizes[sizes.len() / 2]
    );
    assert!(*sizes.last().unwrap() >= 150);
    // Nested networks: a /16 with a /24 inside, and a listed host inside that.
    let nested = cidrs.iter().any(|outer| {
        outer.prefix_len() == 16
            && cidrs.iter().any(|inner| {
                inner.prefix_len() == 24
                    && outer.contains(inner)
                    && hosts.iter().any(|h| inner.contains(h))
            })
    });
    assert!(nested, "no /16 with a /24 and a host inside");
}

/// The `--field` flags of a preset.
fn field_flags(preset: Preset) -> Vec<String> {
    preset
        .field_specs()
        .iter()
        .flat_map(|f| ["--field".to_string(), f.to_string()])
        .collect()
}

/// Rows with at least one hit, from `cwn match`'s JSON lines.
fn hit_rows(telemetry: &Path, preset: Preset) -> BTreeSet<u64> {
    let f = fixture();
    let hits = telemetry.with_extension("hits");
    let mut args: Vec<String> = vec![
        "match".into(),
        "--index".into(),
        s(&f.snapshot).into(),
        "-o".into(),
        s(&hits).into(),
    ];
    args.extend(field_flags(preset));
    args.push(s(telemetry).into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cwn(&args);
    std::fs::read_to_string(&hits)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["row"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn gen_telemetry(preset: Preset, rows: u64, rate: &str, seed: u64, out: &Path) -> Value {
    let f = fixture();
    json_out(&[
        "gen",
        "telemetry",
        "--preset",
        preset.name(),
        "--rows",
        &rows.to_string(),
        "--hit-rate",
        rate,
        "--seed",
        &seed.to_string(),
        "--index",
        s(&f.snapshot),
        "--json",
        "-o",
        s(out),
    ])
}

#[test]
fn planted_hit_rate_is_what_cwn_match_finds() {
    let f = fixture();
    for preset in Preset::ALL {
        let out = f.root.join(format!("rate-{}.jsonl", preset.name()));
        let rows = 20_000;
        let r = gen_telemetry(preset, rows, "0.02", 3, &out);
        assert_eq!(r["rows"], rows);
        assert_eq!(r["plant_failures"], 0);
        let planted = r["planted"].as_u64().unwrap();
        let rate = planted as f64 / rows as f64;
        // Binomial(20000, 0.02): sigma is 0.1 percentage points.
        assert!(
            (rate - 0.02).abs() < 0.005,
            "{preset:?}: planted rate {rate}"
        );
        let hit = hit_rows(&out, preset);
        assert_eq!(
            hit.len() as u64,
            planted,
            "{preset:?}: hit rows != planted rows"
        );
        let kinds = r["planted_by_kind"].as_object().unwrap();
        assert!(
            kinds.len() >= 10,
            "{preset:?}: few kinds planted: {kinds:?}"
        );
    }
}

#[test]
fn hit_rate_zero_gives_zero_hits() {
    let f = fixture();
    for preset in Preset::ALL {
        let out = f.root.join(format!("zero-{}.ndjson.gz", preset.name()));
        let r = gen_telemetry(preset, 10_000, "0", 8, &out);
        assert_eq!(r["planted"], 0);
        assert!(hit_rows(&out, preset).is_empty(), "{preset:?}");
    }
}

#[test]
fn telemetry_is_deterministic_per_seed() {
    let f = fixture();
    for ext in ["jsonl", "parquet", "arrow"] {
        let p = |n: &str| f.root.join(format!("det-{n}.{ext}"));
        gen_telemetry(Preset::Suricata, 5_000, "0.01", 1, &p("a"));
        gen_telemetry(Preset::Suricata, 5_000, "0.01", 1, &p("b"));
        gen_telemetry(Preset::Suricata, 5_000, "0.01", 2, &p("c"));
        let a = std::fs::read(p("a")).unwrap();
        assert_eq!(a, std::fs::read(p("b")).unwrap(), "{ext}: same seed");
        assert_ne!(a, std::fs::read(p("c")).unwrap(), "{ext}: different seed");
    }
}

#[test]
fn parquet_reads_back_with_dictionary_encoding_and_the_same_hits() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let f = fixture();
    for preset in Preset::ALL {
        let pq = f.root.join(format!("rt-{}.parquet", preset.name()));
        let js = f.root.join(format!("rt-{}.jsonl", preset.name()));
        let rows = 30_000u64;
        let r = gen_telemetry(preset, rows, "0.03", 6, &pq);
        let rj = gen_telemetry(preset, rows, "0.03", 6, &js);
        assert_eq!(r["planted"], rj["planted"], "same rows in both formats");

        let reader = SerializedFileReader::new(File::open(&pq).unwrap()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows() as u64, rows);
        let names: Vec<String> = meta
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let want: Vec<&str> = preset.columns().iter().map(|c| c.name).collect();
        assert_eq!(names, want);
        let rg = meta.row_group(0);
        for c in rg.columns() {
            assert!(
                c.encodings().any(|e| e == Encoding::RLE_DICTIONARY),
                "{}: no dictionary",
                c.column_path()
            );
        }

        // The flat column names are the field paths: the same field map finds the same rows.
        let fields = preset.field_map();
        let bytes = std::fs::read(&f.snapshot).unwrap();
        let index = cwn::index::CompiledIndex::from_snapshot(&bytes, None).unwrap();
        let matcher = cwn::matcher::Matcher::new(&index, &fields, 0);
        let batches = ParquetRecordBatchReaderBuilder::try_new(File::open(&pq).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut first = 0u64;
        let mut hit = BTreeSet::new();
        for b in batches {
            let b = b.unwrap();
            let mut hits = Vec::new();
            matcher.match_record_batch(&b, first, &mut hits);
            hit.extend(hits.iter().map(|h| h.row));
            first += b.num_rows() as u64;
        }
        assert_eq!(first, rows);
        assert_eq!(
            hit.len() as u64,
            r["planted"].as_u64().unwrap(),
            "{preset:?}"
        );
        assert_eq!(
            hit,
            hit_rows(&js, preset),
            "{preset:?}: Parquet and JSON rows differ"
        );
    }
}

#[test]
fn arrow_ipc_reads_back() {
    let f = fixture();
    let out = f.root.join("ipc.arrow");
    gen_telemetry(Preset::Ecs, 70_000, "0.01", 3, &out);
    let reader = arrow_ipc::reader::FileReader::try_new(File::open(&out).unwrap(), None).unwrap();
    let schema = reader.schema();
    assert!(schema.field_with_name("source.ip").is_ok());
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 70_000);
}
