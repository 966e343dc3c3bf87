//! The hub driven with a simulated clock and no sockets: delivery, backpressure, restarts,
//! crash recovery, retention, frames, and a model-based property test.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use cwn::hub::frame::{self, Frame};
use cwn::hub::{
    AckSync, EntityId, FileStoreConfig, Hub, HubConfig, HubError, HubEvent, LogError, MemoryStore,
    Notification, NotificationId, NotificationKind, Retention, SessionId, StartFrom, Store,
};
use cwn::indicator::Tlp;

fn note(entity: u32, i: u64) -> Notification {
    let hit = format!(r#"{{"indicator":"bad{i}.example","entity":{entity},"row":{i}}}"#);
    Notification {
        id: NotificationId::for_hit(&format!("ind-{i}"), EntityId(entity), "msp", &i.to_string()),
        created_at_ms: 1_700_000_000_000 + i,
        entity: EntityId(entity),
        tlp: Tlp::Amber,
        kind: NotificationKind::Hit,
        payload: hit.into_bytes(),
    }
}

/// A hub on the file store: the core's settings and the store's.
#[derive(Clone)]
struct Config {
    hub: HubConfig,
    store: FileStoreConfig,
}

impl Config {
    fn open(&self, now_ms: u64) -> Result<Hub, HubError> {
        Hub::open(self.hub.clone(), self.store.clone(), now_ms)
    }
}

fn config(dir: &Path) -> Config {
    let mut store = FileStoreConfig::new(dir);
    // Durability is proven by the log's own tests; a process "crash" here is dropping the hub,
    // which the page cache survives.
    store.log.sync = false;
    store.log.segment_bytes = 2048;
    let hub = HubConfig {
        queue_capacity: 16,
        max_in_flight: 8,
        read_batch: 8,
        ack_timeout_ms: 1_000,
        retention: Retention::default(),
        ..HubConfig::default()
    };
    Config { hub, store }
}

/// [`config`] with `fsync` on, hence the write-ahead journal, and 1 MiB segments.
fn journaled_config(dir: &Path) -> Config {
    let mut c = config(dir);
    c.store.log.sync = true;
    c.store.log.segment_bytes = 1 << 20;
    c
}

/// Runs the store's due checkpoints to the end; returns how many journal files remain.
fn finish_checkpoint(hub: &mut Hub) -> usize {
    hub.run_background();
    hub.store().journal_files().unwrap()
}

/// Polls until nothing is sent, acking each frame at once; returns the offsets received.
fn drain<S: Store>(hub: &mut Hub<S>, s: SessionId, now: u64, entity: u32) -> Vec<u64> {
    let mut got = Vec::new();
    while let Some(f) = hub.poll_transmit(s, now).unwrap() {
        match f {
            Frame::Notification {
                offset,
                notification,
            } => {
                assert_eq!(notification, note(entity, offset));
                hub.handle_ack(s, offset, now).unwrap();
                got.push(offset);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn entity_dir(data: &Path, e: u32) -> PathBuf {
    data.join(format!("{e:010}"))
}

#[test]
fn slow_subscriber_does_not_hold_up_a_fast_one_and_catches_up_from_disk() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let cap = cfg.hub.queue_capacity;
    let mut hub = cfg.open(0).unwrap();
    let fast = hub.connect(EntityId(1), StartFrom::Acked, 0).unwrap();
    let slow = hub.connect(EntityId(2), StartFrom::Acked, 0).unwrap();
    let mut fast_got = Vec::new();
    for i in 0..500u64 {
        let now = i;
        hub.publish_batch(&[note(1, i), note(2, i)], now).unwrap();
        // The fast subscriber has each notification as soon as it is published.
        fast_got.extend(drain(&mut hub, fast, now, 1));
        assert_eq!(fast_got.len() as u64, i + 1);
        let st = hub.stats();
        assert!(st.queued <= cap, "memory bounded: {} queued", st.queued);
    }
    assert_eq!(fast_got, (0..500).collect::<Vec<_>>());
    let st = hub.stats();
    assert_eq!(st.lagging, 1, "the slow one reads from disk");
    assert_eq!(st.max_lag, 500);
    // The slow subscriber wakes up and gets everything, exactly once, in order.
    let slow_got = drain(&mut hub, slow, 1000, 2);
    assert_eq!(slow_got, (0..500).collect::<Vec<_>>());
    let st = hub.stats();
    assert_eq!((st.lagging, st.max_lag, st.retransmitted), (0, 0, 0));
    assert_eq!(st.delivered, 1000);
    // And it is live again: the next one arrives from memory.
    while hub.poll_event().is_some() {}
    hub.publish(&note(2, 500), 1001).unwrap();
    assert_eq!(hub.poll_event(), Some(HubEvent::Wake(slow)));
    assert_eq!(drain(&mut hub, slow, 1001, 2), [500]);
}

#[test]
fn queue_stays_bounded_when_a_subscriber_never_reads() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let cap = cfg.hub.queue_capacity;
    let mut hub = cfg.open(0).unwrap();
    let s = hub.connect(EntityId(4), StartFrom::Acked, 0).unwrap();
    for chunk in 0..100u64 {
        let batch: Vec<_> = (chunk * 100..chunk * 100 + 100)
            .map(|i| note(4, i))
            .collect();
        hub.publish_batch(&batch, chunk).unwrap();
        assert!(hub.stats().queued <= cap);
    }
    assert_eq!(hub.stats().published, 10_000);
    let got = drain(&mut hub, s, 500, 4);
    assert_eq!(got.len(), 10_000);
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn acks_survive_a_restart_and_only_unacked_is_sent_again() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.hub.ack_sync = AckSync::Immediate;
    let mut hub = cfg.open(0).unwrap();
    let e = EntityId(9);
    for i in 0..20 {
        hub.publish(&note(9, i), i).unwrap();
    }
    let s = hub.connect(e, StartFrom::Acked, 100).unwrap();
    let mut sent = Vec::new();
    while let Some(Frame::Notification { offset, .. }) = hub.poll_transmit(s, 100).unwrap() {
        sent.push(offset);
        if offset == 5 {
            hub.handle_ack(s, 5, 101).unwrap();
        }
    }
    assert_eq!(sent.len(), 14, "6 acked + a window of 8");
    // A crash: no flush, no disconnect.
    drop(hub);
    let mut hub = cfg.open(200).unwrap();
    assert_eq!(hub.acked_offset(e), Some(6));
    let s = hub.connect(e, StartFrom::Acked, 200).unwrap();
    assert_eq!(drain(&mut hub, s, 200, 9), (6..20).collect::<Vec<_>>());

    // With acks saved on an interval, a crash re-sends only what was acked since the save.
    cfg.hub.ack_sync = AckSync::Interval(500);
    drop(hub);
    let mut hub = cfg.open(0).unwrap();
    for i in 20..30 {
        hub.publish(&note(9, i), 300).unwrap();
    }
    let s = hub.connect(e, StartFrom::Acked, 300).unwrap();
    let Some(Frame::Notification { offset: 20, .. }) = hub.poll_transmit(s, 300).unwrap() else {
        panic!("resumes at 20");
    };
    hub.handle_ack(s, 20, 300).unwrap();
    assert_eq!(hub.poll_timeout(), Some(800));
    hub.handle_timeout(800).unwrap(); // saves 21
    let Some(Frame::Notification { offset: 21, .. }) = hub.poll_transmit(s, 800).unwrap() else {
        panic!()
    };
    hub.handle_ack(s, 21, 801).unwrap(); // not saved yet
    drop(hub);
    let mut hub = cfg.open(0).unwrap();
    assert_eq!(hub.acked_offset(e), Some(21));
    let s = hub.connect(e, StartFrom::Acked, 900).unwrap();
    assert_eq!(drain(&mut hub, s, 900, 9), (21..30).collect::<Vec<_>>());
    // A disconnect saves at once.
    hub.disconnect(s).unwrap();
    drop(hub);
    let hub = cfg.open(0).unwrap();
    assert_eq!(hub.acked_offset(e), Some(30));
}

#[test]
fn start_positions() {
    let d = tempfile::tempdir().unwrap();
    let mut hub = config(d.path()).open(0).unwrap();
    let e = EntityId(5);
    for i in 0..10 {
        hub.publish(&note(5, i), 0).unwrap();
    }
    let s = hub.connect(e, StartFrom::Offset(7), 0).unwrap();
    assert_eq!(drain(&mut hub, s, 0, 5), [7, 8, 9]);
    // Replay acked ones with --from.
    let s = hub.connect(e, StartFrom::Offset(2), 0).unwrap();
    assert_eq!(drain(&mut hub, s, 0, 5).len(), 8);
    assert_eq!(hub.acked_offset(e), Some(10));
    // Past the end starts at the end.
    let s = hub.connect(e, StartFrom::Offset(99), 0).unwrap();
    assert_eq!(drain(&mut hub, s, 0, 5), [0u64; 0]);
    let s = hub.connect(e, StartFrom::Latest, 0).unwrap();
    hub.publish(&note(5, 10), 0).unwrap();
    assert_eq!(drain(&mut hub, s, 0, 5), [10]);
    assert!(matches!(
        hub.handle_ack(s, 11, 0),
        Err(HubError::AckBeyondSent { .. })
    ));
}

/// Truncating the last segment at every byte of its last record loses only that record.
#[test]
fn crash_mid_append_loses_only_the_torn_record() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut hub = config(&data).open(0).unwrap();
    for i in 0..9 {
        hub.publish(&note(3, i), i).unwrap();
    }
    let seg = segments(&entity_dir(&data, 3)).pop().unwrap();
    let before = fs::metadata(&seg).unwrap().len();
    hub.publish(&note(3, 9), 9).unwrap();
    drop(hub);
    let full = fs::read(&seg).unwrap();
    for cut in before..full.len() as u64 {
        fs::write(&seg, &full[..cut as usize]).unwrap();
        let mut hub = config(&data).open(0).unwrap();
        let range = hub.log_range(EntityId(3)).unwrap();
        assert_eq!(range.end, 9, "cut at {cut}");
        let rec = hub.store().recovery(EntityId(3)).unwrap();
        assert_eq!(rec.truncated_bytes, cut - before);
        let s = hub.connect(EntityId(3), StartFrom::Offset(0), 0).unwrap();
        assert_eq!(drain(&mut hub, s, 0, 3), (0..9).collect::<Vec<_>>());
    }
}

#[test]
fn a_batch_acknowledged_through_the_journal_survives_the_loss_of_the_entity_logs_tails() {
    // With fsync on, a batch over many entities waits for one journal fsync, not one per
    // entity log. A power cut may then take the logs' unsynced tails: the journal restores
    // them, at the same offsets, and a later publish continues after them.
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let cfg = journaled_config(&data);
    let mut hub = cfg.open(0).unwrap();
    // Entities 1..=5 get one record each first (their segment files exist and are synced).
    for e in 1..=5 {
        hub.publish(&note(e, 0), 0).unwrap();
    }
    let lens: Vec<u64> = (1..=5)
        .map(|e| {
            let seg = segments(&entity_dir(&data, e)).pop().unwrap();
            fs::metadata(seg).unwrap().len()
        })
        .collect();
    let batch: Vec<Notification> = (1..=5)
        .flat_map(|e| (1..4).map(move |i| note(e, i)))
        .collect();
    let offsets = hub.publish_batch(&batch, 10).unwrap();
    assert_eq!(offsets[..3], [1, 2, 3]);
    drop(hub);
    // The power cut: every entity log loses what came after its first record.
    for (e, len) in (1..=5).zip(lens) {
        let seg = segments(&entity_dir(&data, e)).pop().unwrap();
        let f = fs::OpenOptions::new().write(true).open(seg).unwrap();
        f.set_len(len).unwrap();
    }
    let mut hub = cfg.open(20).unwrap();
    for e in 1..=5 {
        assert_eq!(hub.log_range(EntityId(e)).unwrap(), 0..4, "entity {e}");
        let s = hub.connect(EntityId(e), StartFrom::Offset(0), 20).unwrap();
        assert_eq!(drain(&mut hub, s, 20, e), vec![0, 1, 2, 3]);
    }
    assert_eq!(hub.publish(&note(2, 4), 30).unwrap(), 4);
    drop(hub);
    // Opened again with nothing lost: the replayed journal was deleted, nothing is doubled.
    let hub = cfg.open(40).unwrap();
    assert_eq!(hub.log_range(EntityId(2)).unwrap(), 0..5);
    assert_eq!(hub.log_range(EntityId(4)).unwrap(), 0..4);
}

#[test]
fn side_file_records_are_as_durable_as_the_batch_they_go_with() {
    // The hub's audit log is written without an fsync of its own: its lines travel in the
    // journal append of the notifications they describe, and a crash that takes the file's
    // tail gives them back.
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let audit = d.path().join("audit.jsonl");
    let mut cfg = journaled_config(&data);
    cfg.store.side_file = Some(audit.clone());
    let mut hub = cfg.open(0).unwrap();
    let mut text = Vec::new();
    for i in 0..3u64 {
        let line = format!("{{\"hit\":{i},\"allowed\":true}}\n");
        let at = text.len() as u64;
        text.extend_from_slice(line.as_bytes());
        fs::write(&audit, &text).unwrap();
        hub.publish_batch_with(&[note(1, i)], i, Some((at, line.as_bytes())))
            .unwrap();
    }
    drop(hub);
    // The power cut: the file lost its last line and a half.
    let f = fs::OpenOptions::new().write(true).open(&audit).unwrap();
    f.set_len(text.len() as u64 - 40).unwrap();
    drop(f);
    let hub = cfg.open(10).unwrap();
    assert_eq!(fs::read(&audit).unwrap(), text);
    assert_eq!(hub.log_range(EntityId(1)).unwrap(), 0..3);
    drop(hub);
    // No entity can take the journal's side-file number.
    let mut hub = cfg.open(20).unwrap();
    let mut n = note(1, 9);
    n.entity = EntityId(cwn::hub::SIDE_ENTITY);
    assert!(matches!(hub.publish(&n, 20), Err(HubError::ReservedEntity)));
}

#[cfg(unix)]
#[test]
fn a_failed_checkpoint_keeps_the_journal_of_the_logs_it_did_not_sync() {
    // A checkpoint that fails leaves its logs to the next one; the next must sync them too
    // before deleting the journal files that cover them (issue 17, finding 9).
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut cfg = journaled_config(&data);
    cfg.store.journal_checkpoint_bytes = 1; // a checkpoint after every batch
    let mut hub = cfg.open(0).unwrap();
    hub.publish(&note(1, 0), 0).unwrap();
    finish_checkpoint(&mut hub);
    // Entity 1's segment can no longer be synced by path (a symlink loop where it was; its
    // log writes on through the open file).
    let seg = segments(&entity_dir(&data, 1)).pop().unwrap();
    let aside = seg.with_extension("aside");
    fs::rename(&seg, &aside).unwrap();
    std::os::unix::fs::symlink(&seg, &seg).unwrap();
    hub.publish(&note(1, 1), 1).unwrap();
    finish_checkpoint(&mut hub); // failed: entity 1 not synced
    hub.publish(&note(2, 0), 2).unwrap();
    let files = finish_checkpoint(&mut hub);
    assert!(
        files > 1,
        "the journal of entity 1's unsynced record was deleted"
    );
    drop(hub);
    fs::remove_file(&seg).unwrap();
    fs::rename(&aside, &seg).unwrap();
    // A power cut takes the record the failed checkpoints never synced.
    let len = fs::metadata(&seg).unwrap().len();
    let one = note(1, 1).encoded_len() as u64 + 28;
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - one)
        .unwrap();
    let mut hub = cfg.open(10).unwrap();
    assert_eq!(
        hub.log_range(EntityId(1)).unwrap(),
        0..2,
        "replayed from the journal"
    );
    let s = hub.connect(EntityId(1), StartFrom::Offset(0), 10).unwrap();
    assert_eq!(drain(&mut hub, s, 10, 1), vec![0, 1]);
}

#[test]
fn checkpoints_delete_the_journal_files_whose_records_reached_the_logs() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut cfg = journaled_config(&data);
    cfg.store.journal_checkpoint_bytes = 4096;
    let mut hub = cfg.open(0).unwrap();
    for round in 0..20 {
        let batch: Vec<Notification> = (0..8).map(|e| note(e, round)).collect();
        hub.publish_batch(&batch, round).unwrap();
        // At most the current file, and one a running checkpoint has yet to delete.
        assert!(finish_checkpoint(&mut hub) <= 2);
    }
    assert_eq!(finish_checkpoint(&mut hub), 1, "older files were deleted");
    drop(hub);
    let mut hub = cfg.open(100).unwrap();
    for e in 0..8 {
        let s = hub.connect(EntityId(e), StartFrom::Offset(0), 100).unwrap();
        assert_eq!(drain(&mut hub, s, 100, e), (0..20).collect::<Vec<_>>());
    }
}

#[test]
fn a_flipped_byte_mid_log_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut hub = config(&data).open(0).unwrap();
    for i in 0..5 {
        hub.publish(&note(6, i), 0).unwrap();
    }
    drop(hub);
    let seg = segments(&entity_dir(&data, 6)).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let pos = 16 + 28 + 40; // inside the first record's payload
    bytes[pos] ^= 0x04;
    fs::write(&seg, &bytes).unwrap();
    let Err(HubError::Log(LogError::Corrupt { path, position, .. })) = config(&data).open(0) else {
        panic!("corruption not reported");
    };
    assert_eq!((path, position), (seg, 16));
}

#[test]
fn damage_mid_log_that_the_journal_holds_is_written_again_and_the_hub_starts() {
    // A group commit whose pages reached the disk out of order: a record in the middle of the
    // active segment is damaged, valid ones follow. The journal holds them all, so the hub
    // cuts the segment there, replays, and every record reads back as published.
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let cfg = journaled_config(&data);
    let mut hub = cfg.open(0).unwrap();
    let batch: Vec<Notification> = (0..6).map(|i| note(6, i)).collect();
    hub.publish_batch(&batch, 0).unwrap();
    drop(hub);
    let seg = segments(&entity_dir(&data, 6)).pop().unwrap();
    let clean = fs::read(&seg).unwrap();
    let mut bytes = clean.clone();
    let pos = 16 + 28 + 40; // inside the first record's payload
    bytes[pos] ^= 0x04;
    fs::write(&seg, &bytes).unwrap();
    let journal = data.join("journal");
    assert!(
        fs::read_dir(&journal).unwrap().count() > 0,
        "the batch is in the journal"
    );

    let mut hub = cfg.open(10).unwrap();
    let repaired = hub
        .store()
        .recovery(EntityId(6))
        .unwrap()
        .repaired
        .clone()
        .unwrap();
    assert_eq!((repaired.position, repaired.offsets), (16, 0..6));
    let s = hub.connect(EntityId(6), StartFrom::Offset(0), 10).unwrap();
    assert_eq!(drain(&mut hub, s, 10, 6), (0..6).collect::<Vec<_>>());
    drop(hub);
    assert_eq!(fs::read(&seg).unwrap(), clean, "the segment is whole again");

    // The same damage without the journal's copy is still refused, naming file and byte.
    fs::write(&seg, &bytes).unwrap();
    for e in fs::read_dir(&journal).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let Err(HubError::Log(LogError::Corrupt { path, position, .. })) = cfg.open(20) else {
        panic!("corruption the journal cannot repair was not reported");
    };
    assert_eq!((path, position), (seg.clone(), 16));
    assert_eq!(fs::read(&seg).unwrap(), bytes, "nothing was cut from it");
}

#[test]
fn retention_by_age_keeps_unacked_and_by_size_reports_loss() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.hub.retention = Retention {
        max_age_ms: Some(10_000),
        max_bytes: None,
    };
    cfg.hub.retention_interval_ms = 1_000;
    let mut hub = cfg.open(0).unwrap();
    let e = EntityId(8);
    for i in 0..200 {
        hub.publish(&note(8, i), i * 100).unwrap();
    }
    let disk = hub.stats().disk_bytes;
    // Nothing acked: however old, nothing goes.
    hub.handle_timeout(1_000_000).unwrap();
    assert_eq!(hub.log_range(e), Some(0..200));
    let s = hub.connect(e, StartFrom::Acked, 1_000_000).unwrap();
    // Ack up to 99, a window at a time.
    while hub.acked_offset(e) < Some(100) {
        let mut last = 0;
        while let Some(Frame::Notification { offset, .. }) =
            hub.poll_transmit(s, 1_000_000).unwrap()
        {
            last = offset;
            if offset == 99 {
                break;
            }
        }
        hub.handle_ack(s, last, 1_000_000).unwrap();
    }
    assert_eq!(hub.acked_offset(e), Some(100));
    hub.handle_timeout(1_002_000).unwrap();
    let range = hub.log_range(e).unwrap();
    assert!(range.start > 50 && range.start <= 100, "{range:?}");
    assert!(hub.stats().disk_bytes < disk);
    assert_eq!(hub.poll_event(), None, "nothing lost");
    hub.disconnect(s).unwrap();
    drop(hub);

    // A size cap below what is un-acked deletes it anyway, and says so.
    cfg.hub.retention = Retention {
        max_age_ms: None,
        max_bytes: Some(4096),
    };
    let mut hub = cfg.open(0).unwrap();
    let s = hub.connect(e, StartFrom::Acked, 0).unwrap();
    hub.handle_timeout(0).unwrap();
    let start = hub.log_range(e).unwrap().start;
    assert!(start > 100);
    assert_eq!(
        hub.poll_event(),
        Some(HubEvent::DataLost {
            entity: e,
            lost: 100..start
        })
    );
    assert_eq!(hub.stats().lost, start - 100);
    assert_eq!(hub.acked_offset(e), Some(start));
    assert_eq!(
        hub.poll_transmit(s, 0).unwrap(),
        Some(Frame::Gap {
            from: 100,
            to: start
        })
    );
    assert!(hub.stats().disk_bytes <= 4096);
    let got = drain(&mut hub, s, 0, 8);
    assert_eq!(got, (start..200).collect::<Vec<_>>());
}

/// Two hubs on one store, as two edges of a cluster: a subscriber on one edge receives the
/// other edge's notifications as its feed reports them (`handle_stored`) and its own edge's
/// as they are published, each once and in offset order. A feed that skips one (a gap) or
/// repeats one loses and doubles nothing: the session reads the gap from the store.
#[test]
fn two_hubs_on_one_store_deliver_each_others_notifications_once_in_order() {
    let store = std::sync::Arc::new(std::sync::Mutex::new(MemoryStore::default()));
    let cfg = HubConfig {
        retention: Retention::default(),
        ..HubConfig::default()
    };
    let mut a = Hub::with_store(store.clone(), cfg.clone(), 0).unwrap();
    let mut b = Hub::with_store(store, cfg, 0).unwrap();
    let s = b.connect(EntityId(1), StartFrom::Acked, 0).unwrap();
    assert_eq!(b.poll_transmit(s, 0).unwrap(), None);
    // Edge A appends 0 and 1; B's feed reports them.
    assert_eq!(
        a.publish_batch(&[note(1, 0), note(1, 1)], 1).unwrap(),
        [0, 1]
    );
    for o in 0..2 {
        b.handle_stored(o, 1, &note(1, o)).unwrap();
    }
    assert_eq!(b.poll_event(), Some(HubEvent::Wake(s)));
    assert_eq!(drain(&mut b, s, 2, 1), [0, 1]);
    // B's own publish continues the same log.
    assert_eq!(b.publish(&note(1, 2), 3).unwrap(), 2);
    assert_eq!(drain(&mut b, s, 3, 1), [2]);
    // A appends 3 and 4, and B's feed reports only 4: the gap is read from the store.
    assert_eq!(
        a.publish_batch(&[note(1, 3), note(1, 4)], 4).unwrap(),
        [3, 4]
    );
    b.handle_stored(4, 4, &note(1, 4)).unwrap();
    assert_eq!(drain(&mut b, s, 5, 1), [3, 4]);
    // A late report of 3 and a repeat of 1 give nothing twice.
    b.handle_stored(3, 4, &note(1, 3)).unwrap();
    b.handle_stored(1, 1, &note(1, 1)).unwrap();
    assert_eq!(drain(&mut b, s, 6, 1), Vec::<u64>::new());
    assert_eq!(b.acked_offset(EntityId(1)), Some(5));
    // And live again: A's next one, reported, arrives at once.
    assert_eq!(a.publish(&note(1, 5), 7).unwrap(), 5);
    b.handle_stored(5, 7, &note(1, 5)).unwrap();
    assert_eq!(drain(&mut b, s, 7, 1), [5]);
    assert_eq!(b.stats().lagging, 0);
}

#[derive(Clone, Debug)]
enum EdgeOp {
    /// Edge `edge` publishes `count` notifications to `entity`.
    Publish {
        edge: usize,
        entity: u32,
        count: u64,
    },
    /// Edge `edge`'s feed reports what the other edge stored since the last report, holding
    /// every `skip`-th back for a later report and repeating every `repeat`-th (a feed is
    /// at-least-once and may lag or reorder; the store is the truth).
    Report {
        edge: usize,
        skip: usize,
        repeat: usize,
    },
    /// Edge `edge`'s subscriber of `entity` reads and acks what is there.
    Pump { edge: usize, entity: u32 },
}

fn edge_op() -> impl Strategy<Value = EdgeOp> {
    prop_oneof![
        3 => (0..2usize, 0..2u32, 1..4u64)
            .prop_map(|(edge, entity, count)| EdgeOp::Publish { edge, entity, count }),
        2 => (0..2usize, 0..4usize, 0..4usize)
            .prop_map(|(edge, skip, repeat)| EdgeOp::Report { edge, skip, repeat }),
        3 => (0..2usize, 0..2u32).prop_map(|(edge, entity)| EdgeOp::Pump { edge, entity }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Two edges on one store; entity 0 subscribes on edge 0, entity 1 on edge 1. Whatever
    /// the interleaving of publishes, and however the feed lags, skips or repeats, each
    /// subscriber receives every notification of its entity exactly once, in offset order.
    #[test]
    fn edges_on_one_store_deliver_every_notification_once_in_order(
        ops in proptest::collection::vec(edge_op(), 1..50),
    ) {
        let store = std::sync::Arc::new(std::sync::Mutex::new(MemoryStore::default()));
        let cfg = HubConfig { queue_capacity: 3, max_in_flight: 2, read_batch: 2,
            retention: Retention::default(), ..HubConfig::default() };
        let mut hubs: Vec<_> = (0..2)
            .map(|_| Hub::with_store(store.clone(), cfg.clone(), 0).unwrap())
            .collect();
        let subs: Vec<SessionId> = (0..2)
            .map(|e| hubs[e].connect(EntityId(e as u32), StartFrom::Acked, 0).unwrap())
            .collect();
        // What each edge's feed has yet to report: (offset, notification) of the other edge.
        let mut feed: Vec<Vec<(u64, Notification)>> = vec![Vec::new(), Vec::new()];
        let mut next = [0u64; 2];
        let mut got: Vec<Vec<u64>> = vec![Vec::new(), Vec::new()];
        let pump = |hubs: &mut Vec<Hub<_>>, edge: usize, got: &mut Vec<Vec<u64>>| {
            let s = subs[edge];
            while let Some(f) = hubs[edge].poll_transmit(s, 1).unwrap() {
                let Frame::Notification { offset, notification } = f else { panic!("{f:?}") };
                prop_assert_eq!(&notification, &note(edge as u32, offset));
                got[edge].push(offset);
                hubs[edge].handle_ack(s, offset, 1).unwrap();
            }
            Ok(())
        };
        for op in &ops {
            match *op {
                EdgeOp::Publish { edge, entity, count } => {
                    let e = entity as usize;
                    let batch: Vec<Notification> =
                        (next[e]..next[e] + count).map(|i| note(entity, i)).collect();
                    let offs = hubs[edge].publish_batch(&batch, 1).unwrap();
                    prop_assert_eq!(offs, (next[e]..next[e] + count).collect::<Vec<_>>());
                    next[e] += count;
                    for n in batch {
                        let o = n.created_at_ms - 1_700_000_000_000;
                        feed[1 - edge].push((o, n));
                    }
                }
                EdgeOp::Report { edge, skip, repeat } => {
                    let mut held = Vec::new();
                    for (k, (o, n)) in std::mem::take(&mut feed[edge]).into_iter().enumerate() {
                        if skip > 0 && k % (skip + 1) == skip {
                            held.push((o, n));
                            continue;
                        }
                        hubs[edge].handle_stored(o, 1, &n).unwrap();
                        if repeat > 0 && k % (repeat + 1) == repeat {
                            hubs[edge].handle_stored(o, 1, &n).unwrap();
                        }
                    }
                    feed[edge] = held;
                }
                EdgeOp::Pump { edge, entity } => {
                    if entity as usize == edge {
                        pump(&mut hubs, edge, &mut got)?;
                    }
                }
            }
            while hubs.iter_mut().any(|h| h.poll_event().is_some()) {}
        }
        // The feeds catch up at last; everything arrives, once, in order.
        for edge in 0..2 {
            for (o, n) in std::mem::take(&mut feed[edge]) {
                hubs[edge].handle_stored(o, 1, &n).unwrap();
            }
            pump(&mut hubs, edge, &mut got)?;
            prop_assert_eq!(&got[edge], &(0..next[edge]).collect::<Vec<_>>());
        }
    }
}

#[test]
fn frames_round_trip_and_valid_seeds_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frame");
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = fs::read(&p).unwrap();
        if name.starts_with("valid-") {
            let f = frame::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(frame::to_bytes(&f).unwrap(), bytes, "{name}");
        } else if name.starts_with("bad-") {
            assert!(frame::decode(&bytes).is_err(), "{name}");
        }
    }
    let n = note(1, 1);
    let f = Frame::Notification {
        offset: 1,
        notification: n,
    };
    assert_eq!(frame::decode(&frame::to_bytes(&f).unwrap()).unwrap(), f);
}

// ---- model-based property test ----

const ENTITIES: u32 = 3;

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Publish {
        entity: u32,
        count: u64,
    },
    /// `back`: `None` resumes from the acked offset, `Some(k)` replays from `k` before it.
    Connect {
        entity: u32,
        back: Option<u64>,
    },
    Pump {
        entity: u32,
        frames: usize,
    },
    Ack {
        entity: u32,
    },
    Disconnect {
        entity: u32,
    },
    Tick {
        ms: u64,
    },
    Restart {
        crash: bool,
    },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let e = 0..ENTITIES;
    prop_oneof![
        3 => (e.clone(), 1..6u64).prop_map(|(entity, count)| Op::Publish { entity, count }),
        2 => (e.clone(), proptest::option::weighted(0.8, 0..4u64))
            .prop_map(|(entity, back)| Op::Connect { entity, back }),
        4 => (e.clone(), 1..6usize).prop_map(|(entity, frames)| Op::Pump { entity, frames }),
        3 => e.clone().prop_map(|entity| Op::Ack { entity }),
        1 => e.prop_map(|entity| Op::Disconnect { entity }),
        1 => (0..1500u64).prop_map(|ms| Op::Tick { ms }),
        1 => any::<bool>().prop_map(|crash| Op::Restart { crash }),
    ]
}

struct Sub {
    id: SessionId,
    /// Offsets below this were acked before the session started: never to be sent.
    floor: u64,
    acked: u64,
    expect: u64,
    last: Option<u64>,
}

/// Opens a hub again on what the old one's store holds (at the given time).
pub(crate) type Reopen<S> = Box<dyn Fn(&Hub<S>, u64) -> Hub<S>>;

struct World<S: Store> {
    cfg: HubConfig,
    hub: Hub<S>,
    /// A restart: the hub opened again on what the old one's store holds.
    reopen: Reopen<S>,
    now: u64,
    /// The naive model: every entity's notifications in publish order.
    model: Vec<Vec<Notification>>,
    acked: Vec<u64>,
    subs: HashMap<u32, Sub>,
    delivered: Vec<BTreeSet<u64>>,
}

impl<S: Store> World<S> {
    fn receive(&mut self, entity: u32, frame: Frame) {
        let sub = self.subs.get_mut(&entity).unwrap();
        let Frame::Notification {
            offset,
            notification,
        } = frame
        else {
            panic!("unexpected {frame:?}");
        };
        assert_eq!(notification, self.model[entity as usize][offset as usize]);
        assert!(
            offset == sub.expect || offset == sub.acked,
            "entity {entity}: got {offset}, expected {} (or {} after a rewind)",
            sub.expect,
            sub.acked
        );
        assert!(offset >= sub.floor, "re-delivered acked offset {offset}");
        sub.expect = offset + 1;
        sub.last = Some(offset);
        self.delivered[entity as usize].insert(offset);
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Publish { entity, count } => {
                let base = self.model[entity as usize].len() as u64;
                let batch: Vec<_> = (base..base + count).map(|i| note(entity, i)).collect();
                let offs = self.hub.publish_batch(&batch, self.now).unwrap();
                assert_eq!(offs, (base..base + count).collect::<Vec<_>>());
                self.model[entity as usize].extend(batch);
            }
            Op::Connect { entity, back } => {
                let acked = self.acked[entity as usize];
                let (from, start) = match back {
                    None => (StartFrom::Acked, acked),
                    Some(k) => {
                        let o = acked.saturating_sub(k);
                        (StartFrom::Offset(o), o)
                    }
                };
                let id = self.hub.connect(EntityId(entity), from, self.now).unwrap();
                self.subs.insert(
                    entity,
                    Sub {
                        id,
                        floor: if back.is_none() { acked } else { start },
                        acked: start,
                        expect: start,
                        last: None,
                    },
                );
            }
            Op::Pump { entity, frames } => {
                if let Some(sub) = self.subs.get(&entity) {
                    let id = sub.id;
                    for _ in 0..frames {
                        match self.hub.poll_transmit(id, self.now).unwrap() {
                            Some(f) => self.receive(entity, f),
                            None => break,
                        }
                    }
                }
            }
            Op::Ack { entity } => {
                if let Some(sub) = self.subs.get_mut(&entity)
                    && let Some(last) = sub.last
                {
                    self.hub.handle_ack(sub.id, last, self.now).unwrap();
                    sub.acked = sub.acked.max(last + 1);
                    let a = &mut self.acked[entity as usize];
                    *a = (*a).max(last + 1);
                    assert_eq!(self.hub.acked_offset(EntityId(entity)), Some(*a));
                }
            }
            Op::Disconnect { entity } => {
                if let Some(sub) = self.subs.remove(&entity) {
                    self.hub.disconnect(sub.id).unwrap();
                }
            }
            Op::Tick { ms } => {
                self.now += ms;
                self.hub.handle_timeout(self.now).unwrap();
            }
            Op::Restart { crash } => {
                if !crash {
                    self.hub.flush().unwrap();
                }
                self.subs.clear();
                self.hub = (self.reopen)(&self.hub, self.now);
                for e in 0..ENTITIES {
                    let len = self.model[e as usize].len() as u64;
                    if let Some(r) = self.hub.log_range(EntityId(e)) {
                        assert_eq!(r, 0..len, "log of entity {e} after restart");
                        assert_eq!(
                            self.hub.acked_offset(EntityId(e)),
                            Some(self.acked[e as usize])
                        );
                    } else {
                        assert_eq!(len, 0);
                    }
                }
            }
        }
        while let Some(ev) = self.hub.poll_event() {
            match ev {
                HubEvent::Wake(_) | HubEvent::Closed { .. } => {}
                other => panic!("unexpected event {other:?}"),
            }
        }
        let st = self.hub.stats();
        assert!(st.queued <= self.cfg.queue_capacity * self.subs.len());
        assert!(st.in_flight <= self.cfg.max_in_flight * self.subs.len());
    }

    /// Connects every entity and drains it, acking as it goes.
    fn finish(&mut self) {
        for e in 0..ENTITIES {
            self.apply(&Op::Connect {
                entity: e,
                back: None,
            });
            let len = self.model[e as usize].len() as u64;
            for _ in 0..=len {
                self.apply(&Op::Pump {
                    entity: e,
                    frames: usize::MAX,
                });
                self.apply(&Op::Ack { entity: e });
                if self.acked[e as usize] == len {
                    break;
                }
            }
            assert_eq!(self.acked[e as usize], len, "entity {e} drained");
            let all: BTreeSet<u64> = (0..len).collect();
            assert_eq!(
                self.delivered[e as usize], all,
                "entity {e}: every one delivered"
            );
        }
    }
}

pub(crate) fn model_config() -> HubConfig {
    HubConfig {
        queue_capacity: 2,
        max_in_flight: 3,
        read_batch: 2,
        ack_timeout_ms: 1000,
        ack_sync: AckSync::Immediate,
        retention: Retention::default(),
        ..HubConfig::default()
    }
}

pub(crate) fn run_model<S: Store>(hub: Hub<S>, reopen: Reopen<S>, ops: &[Op]) {
    let mut w = World {
        cfg: model_config(),
        hub,
        reopen,
        now: 0,
        model: vec![Vec::new(); ENTITIES as usize],
        acked: vec![0; ENTITIES as usize],
        subs: HashMap::new(),
        delivered: vec![BTreeSet::new(); ENTITIES as usize],
    };
    for op in ops {
        w.apply(op);
    }
    w.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn delivery_matches_a_naive_model(ops in proptest::collection::vec(op(), 1..60)) {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path());
        cfg.store.log.segment_bytes = 400;
        cfg.hub = model_config();
        let hub = cfg.open(0).unwrap();
        run_model(hub, Box::new(move |_, now| cfg.open(now).unwrap()), &ops);
    }

    /// The same model over the in-memory store: the core alone, no file system.
    #[test]
    fn delivery_over_the_memory_store_matches_a_naive_model(
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let hub = Hub::with_store(MemoryStore::default(), model_config(), 0).unwrap();
        let reopen = |old: &Hub<MemoryStore>, now| {
            Hub::with_store(old.store().clone(), model_config(), now).unwrap()
        };
        run_model(hub, Box::new(reopen), &ops);
    }
}

/// The hub server waits for the journal's `fdatasync` without holding the hub, so that its
/// sessions go on meanwhile: between `start_publish` and `finish_publish` nobody is handed the
/// batch — not the live session, not one replaying from an offset — another publish is refused
/// rather than slipped in, and no checkpoint moves the journal the batch is in. Then it is
/// delivered, and it survives a restart.
#[test]
fn a_batch_waiting_for_its_journal_sync_is_not_handed_out_until_it_is_durable() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = journaled_config(&d.path().join("data"));
    cfg.store.journal_checkpoint_bytes = 1;
    let mut hub = cfg.open(0).unwrap();
    hub.publish(&note(1, 0), 0).unwrap();
    finish_checkpoint(&mut hub);
    let s = hub.connect(EntityId(1), StartFrom::Acked, 0).unwrap();
    assert_eq!(drain(&mut hub, s, 1, 1), [0]);
    let batch = [note(1, 1), note(1, 2)];
    let mut pending = hub.start_publish(&batch, 10, None).unwrap();
    assert_eq!(drain(&mut hub, s, 11, 1), Vec::<u64>::new());
    let replay = hub.connect(EntityId(1), StartFrom::Offset(0), 11).unwrap();
    assert_eq!(
        drain(&mut hub, replay, 11, 1),
        [0],
        "only the durable record"
    );
    assert!(
        matches!(hub.publish(&note(2, 0), 12), Err(HubError::Log(_))),
        "a second append while the first waits for its sync"
    );
    let journals = hub.store().journal_files().unwrap();
    hub.run_background();
    assert_eq!(
        hub.store().journal_files().unwrap(),
        journals,
        "no checkpoint meanwhile"
    );
    pending.sync();
    assert_eq!(hub.finish_publish(&batch, pending, 20).unwrap(), [1, 2]);
    assert_eq!(drain(&mut hub, replay, 21, 1), [1, 2]);
    assert_eq!(hub.publish(&note(2, 0), 22).unwrap(), 0);
    drop(hub);
    let mut hub = cfg.open(30).unwrap();
    let s = hub.connect(EntityId(1), StartFrom::Offset(0), 30).unwrap();
    assert_eq!(drain(&mut hub, s, 30, 1), [0, 1, 2]);
}
