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
