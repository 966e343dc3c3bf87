//! The subscriber's side of delivery: notifications from the hub in, aggregated into alerts,
//! stored in the [`Spool`] with the aggregation state, then acknowledged to the hub.
//!
//! Order matters for "nothing lost, nothing counted twice": the spool records are fsynced
//! first, then the aggregation state (with the hub offset it has seen) is replaced
//! atomically, and only then does the caller acknowledge to the hub. A crash before the state
//! is stored redelivers notifications the spool already holds: the alerts they make have the
//! ids and revisions of those in the spool, so receivers drop them; a crash after it
//! redelivers notifications the state has counted: their offsets are skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::aggregate::{AggregateState, Aggregator, Observed};
use super::spool::Spool;
use crate::hub::notification::Notification;

/// The aggregation state's file in the spool directory.
pub const STATE_FILE: &str = "aggregate.json";

/// See the [module docs](self).
pub struct Outbox {
    spool: Arc<Spool>,
    aggregator: Aggregator,
    state_path: PathBuf,
    /// Whether a target wants the hub's notifications as they are (`jsonl`).
    raw: bool,
    /// Whether a target wants alerts.
    alerts: bool,
}

fn err(path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{}: {e}", path.display()))
}

impl Outbox {
    /// Opens the spool in `dir` and the aggregation state beside it, for `entity`; `raw` and
    /// `alerts` say what the targets take, `actions` the recommended-action texts.
    ///
    /// # Errors
    /// The spool or the state cannot be read or created.
    pub fn open(
        dir: &Path,
        entity: &str,
        update_every_ms: u64,
        raw: bool,
        alerts: bool,
        actions: super::config::Actions,
    ) -> std::io::Result<Outbox> {
        let spool = Arc::new(Spool::open(dir)?);
        let state_path = dir.join(STATE_FILE);
        let state = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| err(&state_path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AggregateState::default(),
            Err(e) => return Err(err(&state_path, e)),
        };
        let aggregator =
            Aggregator::new(entity, update_every_ms, state, move |k| actions.template(k));
        Ok(Outbox {
            spool,
            aggregator,
            state_path,
            raw,
            alerts,
        })
    }

    /// The spool the targets read.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// Stores what `group` (hub offset, notification) makes, and the updates due at
    /// `now_ms`; once this returns the group may be acknowledged to the hub. Returns how many
    /// notifications were new.
    ///
    /// # Errors
    /// The spool or the state could not be written: nothing may be acknowledged.
    pub fn take(&mut self, group: &[(u64, Notification)], now_ms: u64) -> std::io::Result<u64> {
        let mut records = Vec::new();
        let mut fresh = 0;
        for (offset, n) in group {
            let observed = self.aggregator.observe(*offset, n);
            if observed == Observed::Again {
                continue;
            }
            fresh += 1;
            if self.raw {
                let v = crate::net::client::notification_json(*offset, n);
                records.push(serde_json::to_vec(&serde_json::json!({ "raw": v }))?);
            }
            if let Observed::Send(a) = observed
                && self.alerts
            {
                records.push(serde_json::to_vec(&serde_json::json!({ "alert": a }))?);
            }
        }
        self.store(records, now_ms, fresh > 0)?;
        Ok(fresh)
    }

    /// Stores the updates due at `now_ms` (all pending ones when `flush`).
    ///
    /// # Errors
    /// As [`take`](Self::take).
    pub fn tick(&mut self, now_ms: u64, flush: bool) -> std::io::Result<()> {
        let updates = if flush {
            self.aggregator.flush(now_ms)
        } else {
            self.aggregator.due(now_ms)
        };
        self.store_with(Vec::new(), updates, flush)
    }

    fn store(&mut self, records: Vec<Vec<u8>>, now_ms: u64, changed: bool) -> std::io::Result<()> {
        let updates = self.aggregator.due(now_ms);
        self.store_with(records, updates, changed)
    }

    /// Appends `records` and `updates` to the spool and stores the state, when any of them
    /// is there or the state `changed`.
    fn store_with(
        &mut self,
        mut records: Vec<Vec<u8>>,
        updates: Vec<super::Alert>,
        changed: bool,
    ) -> std::io::Result<()> {
        if self.alerts {
            for a in updates {
                records.push(serde_json::to_vec(&serde_json::json!({ "alert": a }))?);
            }
        }
        if records.is_empty() && !changed {
            return Ok(());
        }
        self.spool.append(&records)?;
        let state = serde_json::to_vec(self.aggregator.state())?;
        crate::outfile::replace(&self.state_path, &state, true)
            .map_err(|e| err(&self.state_path, e))
    }
}
