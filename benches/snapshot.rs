//! Compile and snapshot-load benchmarks on the full real maltrail set: building the index from
//! an ingested set, writing the snapshot, checking its container (digests, layout) alone, and a
//! full load (container plus every structure's validation).
//!
//! `cargo bench --bench snapshot`. Skipped, with a note, when `../shared/data/real/` is absent.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cwn::index::{CompiledIndex, IndexBuilder, snapshot};
use cwn::ingest::{self, Ingest, SourceOptions};

fn maltrail_set() -> Option<cwn::indicator::IndicatorSet> {
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/real/maltrail-trails-static.tar.gz");
    if !tarball.is_file() {
        eprintln!("skipping: {} not present", tarball.display());
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&tarball).expect("open"),
    ))
    .unpack(dir.path())
    .expect("unpack");
    let opts = SourceOptions::default();
    let files = ingest::expand_sources(&[dir.path().join("trails/static")], &opts).expect("expand");
    let mut driver = Ingest::new(None);
    ingest::read_all(&files, &opts, &mut driver, |_| {}).expect("read");
    Some(driver.finish().0)
}

fn benches(c: &mut Criterion) {
    let Some(set) = maltrail_set() else { return };
    let n = set.len() as u64;
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n));
    g.bench_function("compile/maltrail_1.64M", |b| {
        b.iter(|| black_box(IndexBuilder::new().build(&set).expect("build")))
    });
    let index = IndexBuilder::new().build(&set).expect("build");
    g.bench_function("write/maltrail_1.64M", |b| {
        b.iter(|| black_box(index.to_snapshot(None)))
    });
    let bytes = index.to_snapshot(None);
    eprintln!("snapshot of {n} indicators: {} bytes", bytes.len());
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("load_container_only/maltrail_1.64M", |b| {
        b.iter(|| black_box(snapshot::decode(&bytes, None).expect("decode").1.len()))
    });
    g.bench_function("load_full/maltrail_1.64M", |b| {
        b.iter(|| {
            black_box(
                CompiledIndex::from_snapshot(&bytes, None)
                    .expect("load")
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(snapshot_benches, benches);
criterion_main!(snapshot_benches);
