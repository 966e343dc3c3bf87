//! The retro-hunt on a day of stored telemetry, the figure of issue 20: how many of the
//! batches that cannot hit the indicators a delta adds are skipped on their summaries alone,
//! and what the hunt costs with and without them.
//!
//! A day of Zeek-like telemetry (1,440 batches of 2,000 rows, one a minute, as Parquet files
//! with a summary each, as the hub keeps them) whose names and servers include maltrail
//! indicators of the base set; a delta adds 400 other maltrail indicators (domains and
//! addresses), 15 batches of the day hold one row each with one of them.
//!
//! `cargo bench --bench retro`

mod common;

use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{Int64Builder, StringDictionaryBuilder, TimestampMicrosecondBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use common::zeek::{NOW, Rng, benign_names, server_pool, zeek_fields};
use cwn::index::IndexBuilder;
use cwn::indicator::{IndicatorId, IndicatorSet, Kind};
use cwn::matcher::Matcher;
use cwn::matcher::summary::{BatchSummary, Probes};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

const BATCHES: usize = 1_440;
const ROWS: usize = 2_000;
const ADDED: usize = 400;
const PLANTED: usize = 15;

/// One minute of telemetry: clients of a /14, servers from a pool (a few base indicators),
/// 2 % of the names base indicators, the rest benign; `planted` rows carry a new indicator.
fn batch(
    rng: &mut Rng,
    minute: usize,
    pools: &Pools,
    planted: Option<&(Kind, String)>,
) -> RecordBatch {
    let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut orig = Vec::with_capacity(ROWS);
    let mut resp = Vec::with_capacity(ROWS);
    let mut resp_p = Int64Builder::new();
    let mut query = StringDictionaryBuilder::<Int32Type>::new();
    for i in 0..ROWS {
        ts.append_value((NOW - 86_400 + minute as i64 * 60) * 1_000_000 + i as i64);
        orig.push(format!(
            "10.{}.{}.{}",
            rng.below(4),
            rng.below(256),
            1 + rng.below(254)
        ));
        let mut server = pools.servers[rng.below(pools.servers.len())].clone();
        resp_p.append_value([53, 443, 80, 8080][rng.below(4)]);
        let mut name = if rng.below(50) == 0 {
            pools.bad_names[rng.below(pools.bad_names.len())].clone()
        } else {
            pools.benign[rng.below(pools.benign.len())].clone()
        };
        if i == ROWS / 2 {
            match planted {
                Some((Kind::Domain, v)) => name = format!("www.{v}"),
                Some((_, v)) => server = v.clone(),
                None => {}
            }
        }
        resp.push(server);
        query.append_value(name);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("ts", Arc::new(ts.finish())),
        ("id.orig_h", Arc::new(StringArray::from(orig))),
        ("id.resp_h", Arc::new(StringArray::from(resp))),
        ("id.resp_p", Arc::new(resp_p.finish())),
        ("query", Arc::new(query.finish())),
    ];
    RecordBatch::try_from_iter(columns).expect("batch")
}

struct Pools {
    benign: Vec<String>,
    servers: Vec<String>,
    bad_names: Vec<String>,
}

fn read(path: &std::path::Path) -> RecordBatch {
    let f = std::fs::File::open(path).expect("open");
    let r = ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .with_batch_size(ROWS)
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = r.collect::<Result<_, _>>().expect("read");
    batches.into_iter().next().expect("one batch")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(set) = common::maltrail_set() else {
        return;
    };
    let mut rng = Rng(2026);
    // Base indicators in the telemetry; 400 others are the delta's additions.
    let inds = set.as_slice();
    let pick = |kind: Kind, n: usize, rng: &mut Rng| -> Vec<String> {
        let of_kind: Vec<&str> = inds
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| i.value.as_str())
            .collect();
        (0..n)
            .map(|_| of_kind[rng.below(of_kind.len())].to_string())
            .collect()
    };
    let bad_names = pick(Kind::Domain, 2_000, &mut rng);
    let bad_ips = pick(Kind::Ipv4, 20, &mut rng);
    let mut added: Vec<(Kind, String)> = pick(Kind::Domain, ADDED * 3 / 4, &mut rng)
        .into_iter()
        .filter(|d| {
            !bad_names
                .iter()
                .any(|b| b == d || b.ends_with(&format!(".{d}")))
        })
        .map(|d| (Kind::Domain, d))
        .collect();
    added.extend(
        pick(Kind::Ipv4, ADDED / 4, &mut rng)
            .into_iter()
            .filter(|ip| !bad_ips.contains(ip))
            .map(|ip| (Kind::Ipv4, ip)),
    );
    drop(set);
    let pools = Pools {
        benign: benign_names(),
        servers: server_pool(&bad_ips),
        bad_names,
    };
    let mut new_set = IndicatorSet::new();
    for (i, (kind, v)) in added.iter().enumerate() {
        let _ = new_set.insert(cwn::indicator::Indicator::new(
            format!("new-{i}"),
            *kind,
            v.as_str(),
            Arc::<str>::from("bench"),
            cwn::indicator::Tlp::Green,
        ));
    }
    let new_index = IndexBuilder::new().build(&new_set).expect("build");
    let probes = Probes::of(
        new_index.meta(),
        (0..new_index.len() as u32).map(IndicatorId::new),
    );
    let fields = zeek_fields();

    // The day, kept as the hub keeps it: Parquet (zstd) and a summary per batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let planted_at: Vec<usize> = (0..PLANTED).map(|i| (i * 97 + 13) % BATCHES).collect();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let (mut summarise, mut parquet_bytes, mut summary_bytes) = (0.0, 0u64, 0u64);
    for m in 0..BATCHES {
        let planted = planted_at
            .iter()
            .position(|&p| p == m)
            .map(|i| &added[i * 7 % added.len()]);
        let b = batch(&mut rng, m, &pools, planted);
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, b.schema(), Some(props.clone())).expect("w");
        w.write(&b).expect("write");
        w.close().expect("close");
        let t = Instant::now();
        let s = BatchSummary::of(&b, &fields).to_bytes();
        summarise += t.elapsed().as_secs_f64();
        parquet_bytes += buf.len() as u64;
        summary_bytes += s.len() as u64;
        std::fs::write(dir.path().join(format!("{m:05}.parquet")), &buf).expect("write");
        std::fs::write(dir.path().join(format!("{m:05}.sum")), &s).expect("write");
    }
    let now = NOW;
    let hits_of = |b: &RecordBatch| {
        let mut hits = Vec::new();
        Matcher::new(&new_index, &fields, now).match_record_batch(b, 0, &mut hits);
        hits.len()
    };
    // Without summaries: every batch read and matched.
    let t = Instant::now();
    let truth: Vec<usize> = (0..BATCHES)
        .map(|m| hits_of(&read(&dir.path().join(format!("{m:05}.parquet")))))
        .collect();
    let all = t.elapsed().as_secs_f64();
    // With them: summaries first, the candidates read and matched.
    let t = Instant::now();
    let mut skipped = vec![false; BATCHES];
    let mut found = vec![0; BATCHES];
    for m in 0..BATCHES {
        let s = std::fs::read(dir.path().join(format!("{m:05}.sum"))).expect("read");
        if !BatchSummary::from_bytes(&s)
            .expect("summary")
            .may_hit(&probes)
        {
            skipped[m] = true;
            continue;
        }
        found[m] = hits_of(&read(&dir.path().join(format!("{m:05}.parquet"))));
    }
    let hunt = t.elapsed().as_secs_f64();
    let hitting = truth.iter().filter(|&&h| h > 0).count();
    let cannot = BATCHES - hitting;
    let skipped_cannot = (0..BATCHES)
        .filter(|&m| skipped[m] && truth[m] == 0)
        .count();
    let missed = (0..BATCHES).filter(|&m| skipped[m] && truth[m] > 0).count();
    assert_eq!(missed, 0, "a batch that hits was skipped");
    assert_eq!(
        found,
        truth
            .iter()
            .enumerate()
            .map(|(m, &h)| if skipped[m] { 0 } else { h })
            .collect::<Vec<_>>()
    );
    println!(
        "retro: a day of {BATCHES} batches x {ROWS} rows ({:.1} MB Parquet, summaries {:.1} MB = {:.0} KB/batch, built in {:.2} ms/batch); delta of {} new indicators",
        parquet_bytes as f64 / 1e6,
        summary_bytes as f64 / 1e6,
        summary_bytes as f64 / BATCHES as f64 / 1e3,
        summarise * 1e3 / BATCHES as f64,
        added.len()
    );
    println!(
        "  batches that hit: {hitting} ({} hits), that cannot: {cannot}; skipped on the summary: {skipped_cannot} of {cannot} = {:.1} % (goal >= 90 %), hitting batches skipped: {missed}",
        truth.iter().sum::<usize>(),
        100.0 * skipped_cannot as f64 / cannot as f64
    );
    println!(
        "  hunt with summaries {:.0} ms vs reading and matching every batch {:.0} ms ({:.1}x)",
        hunt * 1e3,
        all * 1e3,
        all / hunt
    );
}
