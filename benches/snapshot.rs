//! Compile and snapshot-load benchmarks on the full real maltrail set: building the index from
//! an ingested set, writing the snapshot, checking its container (digests, layout) alone, a
//! load from memory (one aligned copy, the container, each structure's O(1) checks), the two
//! ways to load from disk (`read_and_load`: read the file, then load; `open`: map it), and the
//! full O(n) `validate()` that `cwn inspect --check` adds.
//!
//! `cargo bench --bench snapshot`. Skipped, with a note, when `../shared/data/real/` is absent.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cwn::index::{CompiledIndex, IndexBuilder, snapshot};

fn benches(c: &mut Criterion) {
    let Some(set) = common::maltrail_set() else {
        return;
    };
    let n = set.len() as u64;
    let index = IndexBuilder::new().build(&set).expect("build");
    // URL lookups as the matcher does them: canonicalise the telemetry value, then probe K2d.
    // Half the column is maltrail URL indicators written differently (upper-case host, no
    // scheme), half are misses.
    let urls: Vec<String> = set
        .iter()
        .filter(|(_, i)| i.kind == cwn::indicator::Kind::Url)
        .take(20_000)
        .flat_map(|(_, i)| {
            let hit = i.value.replacen("http://", "", 1).to_uppercase();
            [
                hit,
                format!("http://miss-{}.example/{}", i.value.len(), i.id),
            ]
        })
        .collect();
    {
        let mut g = c.benchmark_group("url_lookup");
        g.throughput(Throughput::Elements(urls.len() as u64));
        g.bench_function("maltrail_73k/half_hits_with_canonicalisation", |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                for u in &urls {
                    if let Ok(c) = cwn::indicator::normalize::url(u) {
                        index.lookup_url(&c, &mut out);
                    }
                }
                black_box(out.len())
            })
        });
        g.finish();
    }
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n));
    g.bench_function("compile/maltrail_1.64M", |b| {
        b.iter(|| black_box(IndexBuilder::new().build(&set).expect("build")))
    });
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
    // From disk (the page cache, after the first run): read then load, against map and load.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("maltrail.cwnsnap");
    std::fs::write(&path, &bytes).expect("write snapshot");
    g.bench_function("load_from_disk/read_and_load/maltrail_1.64M", |b| {
        b.iter(|| {
            let file = std::fs::read(&path).expect("read");
            black_box(
                CompiledIndex::from_snapshot(&file, None)
                    .expect("load")
                    .len(),
            )
        })
    });
    g.bench_function("load_from_disk/open/maltrail_1.64M", |b| {
        b.iter(|| black_box(CompiledIndex::open(&path, None).expect("open").len()))
    });
    let loaded = CompiledIndex::open(&path, None).expect("open");
    g.bench_function("validate/maltrail_1.64M", |b| {
        b.iter(|| loaded.validate().expect("valid"))
    });
    g.finish();
}

criterion_group!(snapshot_benches, benches);
criterion_main!(snapshot_benches);
