//! The retro-hunt: each partner batch is kept as Parquet for `[retro] keep` (and within
//! `max_size`, oldest first out) with a [`BatchSummary`] beside it. When a delta adds
//! indicators (or a full snapshot holds indicators the state it replaces did not), the batches
//! whose summaries may hit them are read and matched again on the new state, their hits on the
//! new indicators only are routed like live ones — marked `retro: true`, with the row's own
//! event time — and logged durably. Batches whose summaries cannot hit are not read. On a
//! cluster every edge hunts the batches it kept.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use roaring::RoaringBitmap;

use super::*;
use crate::indicator::IndicatorId;
use crate::matcher::Matcher;
use crate::matcher::summary::{BatchSummary, Probes};
use crate::net::config::RetroConfig;
use crate::telemetry::FieldMap;

/// Directory of the kept batches inside the data directory.
pub const RETRO_DIR: &str = "retro";
const META_PARTNER: &str = "cwn.partner";
const META_DIGEST: &str = "cwn.digest";

/// One kept batch.
#[derive(Clone, Debug)]
struct Kept {
    received_ms: u64,
    /// `RECEIVED-DIGEST`: the file names' stem.
    stem: String,
    bytes: u64,
}

/// A batch to keep, handed to the writer thread.
pub(super) struct ToKeep {
    pub(super) partner: String,
    pub(super) batch: RecordBatch,
    pub(super) fields: FieldMap,
    pub(super) digest: u128,
    pub(super) received_ms: u64,
}

/// What one retro-hunt did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HuntReport {
    /// Kept batches within the window.
    pub batches: u64,
    /// Of those, skipped on their summary alone.
    pub skipped: u64,
    /// Hits on the new indicators.
    pub hits: u64,
    /// Notifications logged.
    pub notifications: u64,
}

/// The kept batches: files in `DATA_DIR/retro/`, listed oldest first.
pub(super) struct RetroStore {
    dir: PathBuf,
    cfg: RetroConfig,
    kept: Mutex<VecDeque<Kept>>,
    /// Serialises hunts: one delta's hunt at a time, in order.
    pub(super) hunting: Mutex<()>,
}

fn stem(received_ms: u64, digest: u128) -> String {
    format!("{received_ms:013}-{digest:032x}")
}

impl RetroStore {
    /// Opens (creates) the store under `data_dir`, listing what a previous run kept.
    pub(super) fn open(data_dir: &Path, cfg: RetroConfig) -> std::io::Result<RetroStore> {
        let dir = data_dir.join(RETRO_DIR);
        fs::create_dir_all(&dir)?;
        let mut kept: Vec<Kept> = Vec::new();
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(s) = name.to_str().and_then(|n| n.strip_suffix(".parquet")) else {
                continue;
            };
            let Some(received_ms) = s.split('-').next().and_then(|r| r.parse().ok()) else {
                continue;
            };
            if !dir.join(format!("{s}.sum")).exists() {
                // Written without its summary (a crash between the two): of no use.
                let _ = fs::remove_file(e.path());
                continue;
            }
            let bytes = e.metadata()?.len();
            kept.push(Kept {
                received_ms,
                stem: s.to_string(),
                bytes,
            });
        }
        kept.sort_by(|a, b| a.stem.cmp(&b.stem));
        let store = RetroStore {
            dir,
            cfg,
            kept: Mutex::new(kept.into()),
            hunting: Mutex::new(()),
        };
        store.prune(now_ms());
        Ok(store)
    }

    /// Writes one batch (Parquet, zstd) and its summary, then drops what falls out of the
    /// window.
    pub(super) fn keep(&self, k: &ToKeep) -> Result<(), String> {
        let stem = stem(k.received_ms, k.digest);
        let mut meta = k.batch.schema().metadata().clone();
        meta.insert(META_PARTNER.to_string(), k.partner.clone());
        meta.insert(META_DIGEST.to_string(), format!("{:032x}", k.digest));
        let schema = Arc::new(k.batch.schema().as_ref().clone().with_metadata(meta));
        let batch = k
            .batch
            .clone()
            .with_schema(schema.clone())
            .map_err(|e| e.to_string())?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut buf = Vec::new();
        let mut w =
            ArrowWriter::try_new(&mut buf, schema, Some(props)).map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
        w.close().map_err(|e| e.to_string())?;
        let summary = BatchSummary::of(&k.batch, &k.fields).to_bytes();
        let parquet = self.dir.join(format!("{stem}.parquet"));
        // The summary first: a batch file is only ever listed with its summary.
        crate::outfile::replace(&self.dir.join(format!("{stem}.sum")), &summary, false)
            .and_then(|()| crate::outfile::replace(&parquet, &buf, false))
            .map_err(|e| format!("{}: {e}", parquet.display()))?;
        lock(&self.kept).push_back(Kept {
            received_ms: k.received_ms,
            stem,
            bytes: (buf.len() + summary.len()) as u64,
        });
        self.prune(k.received_ms);
        Ok(())
    }

    /// Drops the batches received before `now_ms - keep`, then the oldest while the total is
    /// over `max_size`.
    pub(super) fn prune(&self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(self.cfg.keep.as_millis() as u64);
        let mut kept = lock(&self.kept);
        let mut total: u64 = kept.iter().map(|k| k.bytes).sum();
        while let Some(k) = kept.front() {
            if k.received_ms >= oldest && total <= self.cfg.max_bytes {
                break;
            }
            total -= k.bytes;
            for ext in ["parquet", "sum"] {
                let _ = fs::remove_file(self.dir.join(format!("{}.{ext}", k.stem)));
            }
            kept.pop_front();
        }
    }

    /// The batches kept within the window at `now_ms`, oldest first.
    fn within(&self, now_ms: u64) -> Vec<Kept> {
        let oldest = now_ms.saturating_sub(self.cfg.keep.as_millis() as u64);
        lock(&self.kept)
            .iter()
            .filter(|k| k.received_ms >= oldest)
            .cloned()
            .collect()
    }

    fn summary(&self, k: &Kept) -> Result<BatchSummary, String> {
        let p = self.dir.join(format!("{}.sum", k.stem));
        let b = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        BatchSummary::from_bytes(&b).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Reads a kept batch back: the partner, the telemetry and its digest.
    fn read(&self, k: &Kept) -> Result<(String, batch::Telemetry, u128), String> {
        let p = self.dir.join(format!("{}.parquet", k.stem));
        let bad = |e: String| format!("{}: {e}", p.display());
        let f = fs::File::open(&p).map_err(|e| bad(e.to_string()))?;
        let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(e.to_string()))?;
        let rows = b.metadata().file_metadata().num_rows().max(1) as usize;
        let schema = b.schema().clone();
        let meta = schema.metadata();
        let partner = meta
            .get(META_PARTNER)
            .cloned()
            .ok_or_else(|| bad(format!("no {META_PARTNER}")))?;
        let digest = meta
            .get(META_DIGEST)
            .and_then(|d| u128::from_str_radix(d, 16).ok())
            .ok_or_else(|| bad(format!("no {META_DIGEST}")))?;
        let batches = b
            .with_batch_size(rows)
            .build()
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let t = batch::telemetry_of(&schema, &batches).map_err(|e| bad(e.to_string()))?;
        Ok((partner, t, digest))
    }
}

impl Shared {
    /// The retro-hunt for the indicators `new` (ordinals of `state`) that a delta or a full
    /// snapshot added: see the [module](self).
    pub(super) fn retro_hunt(
        self: &Arc<Self>,
        state: &Arc<CompiledIndex>,
        new: &RoaringBitmap,
    ) -> HuntReport {
        let mut report = HuntReport::default();
        let Some(store) = &self.retro else {
            return report;
        };
        let _one = lock(&store.hunting);
        let probes = Probes::of(state.meta(), new.iter().map(IndicatorId::new));
        if probes.is_empty() {
            return report;
        }
        let now = jiff::Timestamp::now();
        let selective = probes.selective();
        for k in store.within(now_ms()) {
            report.batches += 1;
            // Unless too many indicators are new for summaries to help: then every batch is read.
            if selective {
                match store.summary(&k) {
                    Ok(s) if !s.may_hit(&probes) => {
                        report.skipped += 1;
                        continue;
                    }
                    Ok(_) => {}
                    // Without its summary the batch is read: a miss is worse than a read.
                    Err(e) => tracing::warn!("retro-hunt: {e}"),
                }
            }
            let (partner_id, t, digest) = match store.read(&k) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("retro-hunt: {e}");
                    continue;
                }
            };
            let Some(partner) = self.router.registry().by_id(&partner_id) else {
                continue;
            };
            let matcher = Matcher::new(state, &t.fields, now.as_second());
            let mut hits = Vec::new();
            matcher.match_record_batch(&t.batch, t.first_row, &mut hits);
            hits.retain(|h| new.contains(h.ord.as_u32()));
            if hits.is_empty() {
                continue;
            }
            report.hits += hits.len() as u64;
            match self.route_and_log(partner, state, &t, &hits, digest, true, now) {
                Ok((n, _)) => report.notifications += n,
                Err(BatchFailure::Bad(e) | BatchFailure::Internal(e)) => {
                    tracing::error!("retro-hunt: {e}");
                }
            }
        }
        report
    }
}
