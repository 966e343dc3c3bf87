//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/`), run on stable as regression
//! tests through the same entry points the fuzzers use.

use std::path::Path;

fn run(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let data = std::fs::read(&p).unwrap();
        let result = std::panic::catch_unwind(|| f(&data));
        assert!(result.is_ok(), "{target}: seed {} fails", p.display());
        n += 1;
    }
    assert!(n > 0, "{target}: empty corpus");
}

#[test]
fn plain_list_corpus() {
    run("plain_list", cwn::fuzzing::plain_list);
}

#[test]
fn csv_list_corpus() {
    run("csv_list", cwn::fuzzing::csv_list);
}

#[test]
fn normalize_corpus() {
    run("normalize", cwn::fuzzing::normalize_value);
}

#[test]
fn misp_event_corpus() {
    run("misp_event", cwn::fuzzing::misp_event);
}

#[test]
fn stix_pattern_corpus() {
    run("stix_pattern", cwn::fuzzing::stix_pattern);
}

#[test]
fn stix_bundle_corpus() {
    run("stix_bundle", cwn::fuzzing::stix_bundle);
}

#[test]
fn warninglist_corpus() {
    run("warninglist", cwn::fuzzing::warninglist);
}

#[test]
fn snapshot_corpus() {
    run("snapshot", cwn::fuzzing::snapshot);
}

#[test]
fn telemetry_corpus() {
    run("telemetry", cwn::fuzzing::telemetry);
}

#[test]
fn snapshot_sections_corpus() {
    run("snapshot_sections", cwn::fuzzing::snapshot_sections);
}

#[test]
fn frame_corpus() {
    run("frame", cwn::fuzzing::frame);
}

#[test]
fn hub_files_corpus() {
    run("hub_files", cwn::fuzzing::hub_files);
    // The seeds reach the paths that matter: intact files parse whole, damage is caught.
    let seed = |name: &str| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/hub_files")
            .join(name);
        std::fs::read(p).unwrap()[1..].to_vec()
    };
    let mut records = Vec::new();
    assert_eq!(
        cwn::hub::journal::parse(&seed("journal-two-records"), &mut records),
        None
    );
    assert_eq!(records.len(), 2);
    records.clear();
    assert_eq!(
        cwn::hub::journal::parse(&seed("journal-torn-tail"), &mut records),
        Some(8 + 32 + 27 + 32 + 6)
    );
    assert_eq!(records.len(), 2);
    records.clear();
    assert_eq!(
        cwn::hub::journal::parse(&seed("journal-flipped"), &mut records),
        Some(8)
    );
    let table = |name| cwn::hub::offsets::parse_table(&seed(name), Path::new(name));
    assert_eq!(table("table-three").unwrap().len(), 3);
    assert_eq!(table("table-empty").unwrap(), vec![]);
    assert!(table("table-short-count").is_err());
}

/// Telemetry batches as a partner's client encodes them, and hostile ones: a zstd bomb, a
/// long input name, bytes cut short.
fn telemetry_batch_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use arrow_array::builder::StringBuilder;
    use cwn::telemetry::FieldMap;
    let fields = FieldMap::from_specs(
        ["query=domain", "client=ip"]
            .iter()
            .map(|s| s.parse().unwrap()),
    )
    .unwrap();
    let col = |vals: &[&str]| -> arrow_array::ArrayRef {
        let mut b = StringBuilder::new();
        vals.iter().for_each(|v| b.append_value(v));
        std::sync::Arc::new(b.finish())
    };
    let batch = arrow_array::RecordBatch::try_from_iter([
        ("query", col(&["www.evil.test", "ok.test"])),
        ("client", col(&["10.0.0.5", "192.0.2.1"])),
    ])
    .unwrap();
    let good = cwn::net::batch::encode_telemetry(&batch, &fields, "dns.jsonl", 0).unwrap();
    let long = cwn::net::batch::encode_telemetry(&batch, &fields, &"x".repeat(5000), 7).unwrap();
    let bomb = {
        use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
        let big =
            arrow_array::RecordBatch::try_from_iter([("query", col(&[&"a".repeat(8 << 20)]))])
                .unwrap();
        let mut meta = std::collections::HashMap::new();
        meta.insert("cwn.fields".to_string(), "[\"query=domain\"]".to_string());
        meta.insert("cwn.input".to_string(), "bomb".to_string());
        meta.insert("cwn.first_row".to_string(), "0".to_string());
        let schema = std::sync::Arc::new(big.schema().as_ref().clone().with_metadata(meta));
        let big = big.with_schema(schema.clone()).unwrap();
        let opts = IpcWriteOptions::default()
            .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
            .unwrap();
        let mut out = Vec::new();
        let mut w = StreamWriter::try_new_with_options(&mut out, &schema, opts).unwrap();
        w.write(&big).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    };
    let cut = good[..good.len() / 2].to_vec();
    vec![
        ("good", good),
        ("long-input-name", long),
        ("zstd-bomb", bomb),
        ("cut", cut),
    ]
}

#[test]
fn telemetry_batch_corpus() {
    // `CWN_WRITE_FUZZ_SEEDS=1 cargo test telemetry_batch_corpus` writes the generated seeds
    // into the corpus directory.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/telemetry_batch");
    for (name, bytes) in telemetry_batch_seeds() {
        if std::env::var("CWN_WRITE_FUZZ_SEEDS").is_ok_and(|v| v == "1") {
            std::fs::write(dir.join(name), &bytes).unwrap();
        }
        cwn::fuzzing::telemetry_batch(&bytes);
    }
    run("telemetry_batch", cwn::fuzzing::telemetry_batch);
    // The seeds reach what matters: the good batch decodes, the bomb and the long name do not.
    let seeds = telemetry_batch_seeds();
    assert!(cwn::net::batch::decode_telemetry(&seeds[0].1, 4 << 20).is_ok());
    assert!(cwn::net::batch::decode_telemetry(&seeds[1].1, 4 << 20).is_ok());
    assert!(cwn::net::batch::decode_telemetry(&seeds[2].1, 4 << 20).is_err());
}

#[test]
fn http_request_corpus() {
    run("http_request", cwn::fuzzing::http_request);
}

#[test]
fn certificate_corpus() {
    run("certificate", cwn::fuzzing::certificate);
    let der = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/certificate/hospital.der"),
    )
    .unwrap();
    let id = cwn::net::der::identity(&der).unwrap();
    assert!(id.subject.contains("CN=hospital"), "{}", id.subject);
}

#[test]
fn matcher_vs_naive_corpus() {
    run("matcher_vs_naive", cwn::fuzzing::matcher_vs_naive);
}

#[test]
fn batch_summary_corpus() {
    run("batch_summary", cwn::fuzzing::batch_summary);
}

#[test]
fn delta_sections_corpus() {
    run("delta_sections", cwn::fuzzing::delta_sections);
}
