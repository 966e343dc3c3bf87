//! Hub benchmarks: appending to a notification log with `fsync` per batch (group commit —
//! the batch size is in the id), publishing through the hub, and in-memory fan-out to many
//! connected subscribers (publish, send, ack).
//!
//! `cargo bench --bench hub`. The logs live in a temporary folder on the system's temp disk,
//! so the `fsync` figures are that disk's.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use cwn::hub::frame::Frame;
use cwn::hub::{
    EntityId, FileStoreConfig, Hub, HubConfig, Log, LogOptions, MemoryStore, Notification,
    NotificationId, NotificationKind, Retention, SessionId, StartFrom, Store,
};
use cwn::indicator::Tlp;

fn note(entity: u32, i: u64) -> Notification {
    // About the size of a JSON hit record.
    let payload = format!(
        r#"{{"indicator_id":"5f1c0d2e-7a4b-4c1e-9f0a-{i:012}","kind":"domain","indicator":"bad-login.example.com","field":"query","value":"a.bad-login.example.com","row":{i},"input":"dns.log","event_time":"2025-05-01T10:00:00Z","tlp":"AMBER","source":"ncsc-feed","tags":["phishing"]}}"#
    );
    Notification {
        id: NotificationId::for_hit("ind", EntityId(entity), "msp", &i.to_string()),
        created_at_ms: i,
        entity: EntityId(entity),
        tlp: Tlp::Amber,
        kind: NotificationKind::Hit,
        payload: payload.into_bytes(),
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub_append_fsync");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let cap = Retention {
        max_age_ms: None,
        max_bytes: Some(64 << 20),
    };
    for batch in [1usize, 64, 1024] {
        let records: Vec<Vec<u8>> = (0..batch as u64).map(|i| note(1, i).to_bytes()).collect();
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(
            BenchmarkId::new("log_append_batch", format!("batch_{batch}")),
            &records,
            |b, records| {
                let dir = tempfile::tempdir().unwrap();
                let opts = LogOptions {
                    segment_bytes: 16 << 20,
                    ..LogOptions::default()
                };
                let mut log = Log::open(dir.path(), opts).unwrap();
                b.iter(|| {
                    let r = log.append_batch(records, 0).unwrap();
                    if r.start % 4096 < batch as u64 {
                        log.retain(0, &cap, u64::MAX).unwrap();
                    }
                    black_box(r)
                })
            },
        );
    }
    // Through the hub: one batch spread over 16 entities is 16 fsyncs.
    let batch: Vec<Notification> = (0..1024u64).map(|i| note((i % 16) as u32, i)).collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("hub_publish_batch/1024_over_16_entities", |b| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = HubConfig {
            retention: cap.clone(),
            ..HubConfig::default()
        };
        let mut hub = Hub::open(cfg, FileStoreConfig::new(dir.path()), 0).unwrap();
        let mut now = 0;
        b.iter(|| {
            now += 1;
            black_box(hub.publish_batch(&batch, now).unwrap());
            if now % 64 == 0 {
                hub.enforce_retention(now).unwrap();
                // The journal checkpoint, which the server runs on a blocking thread.
                hub.run_background();
            }
        })
    });
    g.finish();
}

/// Publishes one notification to each of `sessions`' entities, sends and acks it.
fn fanout_round<S: Store>(hub: &mut Hub<S>, sessions: &[SessionId], i: u64) {
    let batch: Vec<Notification> = (0..sessions.len() as u32).map(|e| note(e, i)).collect();
    hub.publish_batch(&batch, i).unwrap();
    for &s in sessions {
        if let Some(Frame::Notification { offset, .. }) = hub.poll_transmit(s, i).unwrap() {
            hub.handle_ack(s, offset, i).unwrap();
        }
    }
    while hub.poll_event().is_some() {}
    if i.is_multiple_of(256) {
        hub.enforce_retention(i).unwrap();
    }
}

fn connect_all<S: Store>(hub: &mut Hub<S>, entities: u32) -> Vec<SessionId> {
    (0..entities)
        .map(|e| hub.connect(EntityId(e), StartFrom::Latest, 0).unwrap())
        .collect()
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub_fanout");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let cfg = HubConfig {
        retention: Retention {
            max_age_ms: None,
            max_bytes: Some(1 << 20),
        },
        ..HubConfig::default()
    };
    for entities in [100u32, 2000] {
        g.throughput(Throughput::Elements(u64::from(entities)));
        g.bench_function(
            BenchmarkId::new(
                "publish_send_ack_no_fsync",
                format!("{entities}_subscribers"),
            ),
            |b| {
                let dir = tempfile::tempdir().unwrap();
                let mut store = FileStoreConfig::new(dir.path());
                store.log.sync = false;
                let mut hub = Hub::open(cfg.clone(), store, 0).unwrap();
                let sessions = connect_all(&mut hub, entities);
                let mut i = 0;
                b.iter(|| {
                    i += 1;
                    fanout_round(&mut hub, &sessions, i);
                })
            },
        );
        // The core alone, over the in-memory store.
        g.bench_function(
            BenchmarkId::new(
                "publish_send_ack_memory_store",
                format!("{entities}_subscribers"),
            ),
            |b| {
                let mut hub = Hub::with_store(MemoryStore::default(), cfg.clone(), 0).unwrap();
                let sessions = connect_all(&mut hub, entities);
                let mut i = 0;
                b.iter(|| {
                    i += 1;
                    fanout_round(&mut hub, &sessions, i);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, append, fanout);
criterion_main!(benches);
