//! The Zeek-like Parquet telemetry of the scan and delta benches.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringDictionaryBuilder, TimestampMicrosecondBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// The "now" of the benches: event times fall in the day before it.
pub const NOW: i64 = 1_750_000_000;

/// Deterministic pseudo-random numbers (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        cwn::generate::rng::splitmix64(&mut self.0)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Writes `rows` Zeek conn+dns-like rows: 2 % of the names are maltrail domains (or below
/// them), the rest from a pool of 5,000 benign names; client addresses from a /16, server
/// addresses from 20,000, a few of them maltrail IPs.
pub fn write_zeek_parquet(path: &Path, rows: usize, bad_names: &[String], bad_ips: &[String]) {
    let mut rng = Rng(42);
    let benign = benign_names();
    let servers = server_pool(bad_ips);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .build();
    let mut writer: Option<ArrowWriter<File>> = None;
    let chunk = 65_536;
    let mut done = 0;
    while done < rows {
        let n = chunk.min(rows - done);
        let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut uid = Vec::with_capacity(n);
        let mut orig = Vec::with_capacity(n);
        let mut orig_p = Int64Builder::new();
        let mut resp = Vec::with_capacity(n);
        let mut resp_p = Int64Builder::new();
        let mut proto = StringDictionaryBuilder::<Int32Type>::new();
        let mut query = StringDictionaryBuilder::<Int32Type>::new();
        for i in done..done + n {
            ts.append_value((NOW - 86_400 + i as i64 / 10) * 1_000_000 + (i as i64 % 1_000_000));
            uid.push(format!("C{:016x}", rng.next()));
            orig.push(format!(
                "10.{}.{}.{}",
                rng.below(4),
                rng.below(256),
                1 + rng.below(254)
            ));
            orig_p.append_value(1024 + rng.below(60_000) as i64);
            resp.push(servers[rng.below(servers.len())].clone());
            resp_p.append_value([53, 443, 80, 8080][rng.below(4)]);
            proto.append_value(["udp", "tcp"][rng.below(2)]);
            let name = if rng.below(50) == 0 && !bad_names.is_empty() {
                let d = &bad_names[rng.below(bad_names.len())];
                if rng.below(2) == 0 {
                    d.clone()
                } else {
                    format!("www.{d}")
                }
            } else {
                benign[rng.below(benign.len())].clone()
            };
            query.append_value(name);
        }
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("ts", Arc::new(ts.finish())),
            ("uid", Arc::new(StringArray::from(uid))),
            ("id.orig_h", Arc::new(StringArray::from(orig))),
            ("id.orig_p", Arc::new(orig_p.finish())),
            ("id.resp_h", Arc::new(StringArray::from(resp))),
            ("id.resp_p", Arc::new(resp_p.finish())),
            ("proto", Arc::new(proto.finish())),
            ("query", Arc::new(query.finish())),
        ];
        let batch = RecordBatch::try_from_iter(columns).expect("batch");
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(
                File::create(path).expect("create"),
                batch.schema(),
                Some(props.clone()),
            )
            .expect("writer")
        });
        w.write(&batch).expect("write");
        done += n;
    }
    writer.expect("rows").close().expect("close");
}

/// 5,000 benign DNS names.
pub fn benign_names() -> Vec<String> {
    (0..5_000)
        .map(|i| {
            format!(
                "host{}.site{}.example.{}",
                i % 97,
                i,
                ["com", "net", "nl"][i % 3]
            )
        })
        .collect()
}

/// 20,000 server addresses, every thousandth one of `bad_ips`.
pub fn server_pool(bad_ips: &[String]) -> Vec<String> {
    (0..20_000)
        .map(|i| {
            if i % 1000 == 0 && !bad_ips.is_empty() {
                bad_ips[i / 1000 % bad_ips.len()].clone()
            } else {
                format!(
                    "{}.{}.{}.{}",
                    20 + i % 180,
                    (i / 7) % 256,
                    (i / 13) % 256,
                    1 + i % 250
                )
            }
        })
        .collect()
}

/// The field map of that telemetry: time, both addresses (the server's with its port) and
/// the DNS name.
pub fn zeek_fields() -> cwn::telemetry::FieldMap {
    cwn::telemetry::FieldMap::from_specs(
        [
            "ts=time",
            "id.orig_h=ip",
            "id.resp_h=ip",
            "id.resp_p=port@id.resp_h",
            "query=domain",
        ]
        .iter()
        .map(|s| s.parse().expect("field")),
    )
    .expect("field map")
}
