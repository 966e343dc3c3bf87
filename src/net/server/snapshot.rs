//! A publisher's snapshot: checked, stored beside the logs, swapped in.

use super::*;
use crate::indicator::IndicatorId;

impl Shared {
    pub(super) fn install(
        self: &Arc<Self>,
        owner: EntityOrd,
        bytes: &[u8],
        announced: u64,
    ) -> Frame {
        let _one = lock(&self.install);
        let reject = |reason: String| {
            self.stats
                .snapshots_rejected
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("snapshot {announced} rejected: {reason}");
            Frame::SnapshotRejected {
                set_version: announced,
                reason,
            }
        };
        if bytes.starts_with(&crate::index::delta::MAGIC) {
            return match self.install_delta(owner, bytes) {
                Ok(v) => {
                    tracing::info!("delta {v} applied and in use");
                    Frame::SnapshotAccepted { set_version: v }
                }
                Err(reason) => reject(reason),
            };
        }
        let index = match CompiledIndex::from_snapshot(bytes, Some(&self.verify_key)) {
            Ok(i) => i,
            Err(e) => return reject(e.to_string()),
        };
        let v = index.header().set_version;
        if let Some(cur) = self.index.load_full()
            && cur.header().set_version >= v
        {
            return reject(format!(
                "set version {v} is not newer than the one in use ({cur}); compile it again with \
                 `--set-version N` above {cur} (or leave the option out: the version then \
                 follows the creation time)",
                cur = cur.header().set_version
            ));
        }
        let owner_id = self.router.registry().entity(owner).id.clone();
        // On a cluster the snapshot is the cluster's first: every edge takes it from there.
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.shared_snapshot {
            use super::cluster::PublishError;
            let published =
                tokio::runtime::Handle::current().block_on(c.publish(v, &owner_id, bytes));
            match published {
                Ok(()) => {}
                Err(PublishError::NotNewer(cur)) => {
                    return reject(format!(
                        "set version {v} is not newer than the one the cluster uses ({cur})"
                    ));
                }
                Err(PublishError::Cluster(e)) => {
                    return reject(format!("the cluster could not store it: {e}"));
                }
            }
        }
        if let Err(e) = self.activate(Some(owner), &owner_id, bytes, index) {
            return reject(format!("the hub could not store it: {e}"));
        }
        tracing::info!("snapshot {v} in use");
        Frame::SnapshotAccepted { set_version: v }
    }

    /// A publisher's delta: its signature checked, applied to the state in use (refused,
    /// naming both states, when it names another), stored in the chain beside the snapshot,
    /// swapped in; matching goes on meanwhile on the state before it.
    fn install_delta(self: &Arc<Self>, owner: EntityOrd, bytes: &[u8]) -> Result<u64, String> {
        use crate::index::delta::{Delta, DeltaError};
        #[cfg(feature = "cluster")]
        if self.shared_snapshot.is_some() {
            return Err(
                "a hub on a cluster takes full snapshots only (for now): push the \
                        compacted set (`cwn compile` without --base)"
                    .into(),
            );
        }
        let delta = Delta::from_bytes(bytes, Some(&self.verify_key)).map_err(|e| e.to_string())?;
        let Some(cur) = self.index.load_full() else {
            return Err("the hub has no snapshot yet: push a full snapshot first".into());
        };
        let next = cur.apply(&delta).map_err(|e| match e {
            DeltaError::BaseMismatch { wanted, found } => format!(
                "the delta applies to {wanted}, but the hub is at {found}: push the deltas \
                 that follow set version {}, or a full snapshot",
                found.set_version
            ),
            e => e.to_string(),
        })?;
        let v = next.header().set_version;
        let dir = self.data_dir.join(DELTA_DIR);
        let stored = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                crate::outfile::replace(&dir.join(format!("set-v{v}.cwndelta")), bytes, true)
            })
            .and_then(|()| {
                let owner_id = &self.router.registry().entity(owner).id;
                crate::outfile::replace(
                    &self.data_dir.join(SNAPSHOT_OWNER_FILE),
                    owner_id.as_bytes(),
                    true,
                )
            });
        stored.map_err(|e| format!("the hub could not store it: {e}"))?;
        *lock(&self.publisher) = Some(owner);
        if let Some(m) = &self.metrics {
            m.snapshot(SnapshotInfo::from_index(&next));
        }
        let next = Arc::new(next);
        lock(&self.states).push(next.clone());
        self.index.store(Some(next.clone()));
        if self.retro.is_some() {
            let new = new_indicators(&cur, &delta, &next);
            let s = self.clone();
            // In the background: the publisher hears of its delta now, the victims of old
            // telemetry as soon as the hunt finds them.
            let spawned = std::thread::Builder::new()
                .name("cwn-retro-hunt".into())
                .spawn(move || {
                    let t = std::time::Instant::now();
                    let r = s.retro_hunt(&next, &new);
                    tracing::info!(
                        "retro-hunt for set version {v} ({} new indicator(s)): {} batch(es) kept, \
                         {} skipped on their summaries, {} hit(s), {} notification(s) in {:.2?}",
                        new.len(),
                        r.batches,
                        r.skipped,
                        r.hits,
                        r.notifications,
                        t.elapsed()
                    );
                });
            if let Err(e) = spawned {
                tracing::error!("retro-hunt for set version {v} not started: {e}");
            }
        }
        Ok(v)
    }

    /// Stores `bytes` beside the logs (with its owner's id) and swaps `index` in.
    fn activate(
        &self,
        owner: Option<EntityOrd>,
        owner_id: &str,
        bytes: &[u8],
        index: CompiledIndex,
    ) -> std::io::Result<()> {
        crate::outfile::replace(&self.data_dir.join(SNAPSHOT_FILE), bytes, true)?;
        crate::outfile::replace(
            &self.data_dir.join(SNAPSHOT_OWNER_FILE),
            owner_id.as_bytes(),
            true,
        )?;
        // The deltas of the previous snapshot apply to it no more (after a crash here they
        // are left over, and skipped at start: their base is not this snapshot).
        match std::fs::remove_dir_all(self.data_dir.join(DELTA_DIR)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        *lock(&self.publisher) = owner;
        if let Some(m) = &self.metrics {
            m.snapshot(SnapshotInfo::from_index(&index));
        }
        let index = Arc::new(index);
        *lock(&self.states) = vec![index.clone()];
        self.index.store(Some(index));
        Ok(())
    }

    /// What partner `ord` lacks after the state it holds (`version`, `identity`): the files
    /// of its cut chain after that state, or the whole chain (the cut of the hub's base, then
    /// a cut delta per delta since) when it holds none of it; with the set version they lead
    /// to. The chain is built on first use and grown as the hub's grows.
    pub(super) fn pull_since(
        &self,
        ord: EntityOrd,
        version: u64,
        identity: &[u8; 32],
    ) -> Result<(u64, Vec<route::cut::CutFile>), String> {
        use route::cut::CutChain;
        let states = lock(&self.states).clone();
        let Some(base) = states.first() else {
            return Err("the hub has no snapshot yet".into());
        };
        // One partner's pulls build its chain one at a time; other partners are not held up.
        let cell = lock(&self.chains).entry(ord).or_default().clone();
        let mut chain = lock(&cell);
        let key = self.sign_key.as_ref();
        let grown = match chain.as_mut() {
            Some(c) if c.starts_from(base) => c.extend(&self.router, ord, &states, key),
            _ => CutChain::build(&self.router, ord, &states, key).map(|c| *chain = Some(c)),
        };
        grown.map_err(|e| format!("clearance cut: {e}"))?;
        let chain = chain.as_ref().expect("built above");
        Ok((
            chain.head().set_version,
            chain.lacking(version, identity).to_vec(),
        ))
    }

    /// Takes the cluster's current snapshot when it is newer than the one in use: fetched,
    /// its signature checked here, swapped in. Called at start and whenever the cluster's
    /// current snapshot changes (a push to any edge).
    #[cfg(feature = "cluster")]
    pub(super) fn adopt(
        &self,
        shared: &super::cluster::SharedSnapshot,
        c: &super::cluster::Current,
    ) {
        let _one = lock(&self.install);
        let in_use = self
            .index
            .load()
            .as_ref()
            .map_or(0, |i| i.header().set_version);
        if c.version <= in_use {
            return;
        }
        let fetched = tokio::runtime::Handle::current().block_on(shared.fetch(c));
        let index = fetched.map_err(|e| e.to_string()).and_then(|bytes| {
            let index = CompiledIndex::from_snapshot(&bytes, Some(&self.verify_key))
                .map_err(|e| e.to_string())?;
            if index.header().set_version != c.version {
                return Err(format!(
                    "it holds set version {}, not {}",
                    index.header().set_version,
                    c.version
                ));
            }
            Ok((bytes, index))
        });
        let (bytes, index) = match index {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(
                    "cluster snapshot {} ({}) not used: {e}",
                    c.version,
                    c.object
                );
                return;
            }
        };
        let owner = self.router.registry().by_id(&c.owner).filter(|&o| {
            self.router
                .registry()
                .entity(o)
                .roles
                .contains(Role::Publisher)
        });
        match self.activate(owner, &c.owner, &bytes, index) {
            Ok(()) => tracing::info!("snapshot {} in use (from the cluster)", c.version),
            Err(e) => tracing::error!("cluster snapshot {}: storing it here: {e}", c.version),
        }
    }
}

/// The ordinals of `next` (`base` with `delta` applied) that hold indicators new with the
/// delta: its additions, less those that only change an indicator `base` held (same kind and
/// value removed by the same delta) — a changed TLP or validity is not a new sighting.
fn new_indicators(
    base: &CompiledIndex,
    delta: &crate::index::delta::Delta,
    next: &CompiledIndex,
) -> roaring::RoaringBitmap {
    let before = base.meta();
    let changed: std::collections::HashSet<(crate::indicator::Kind, &str)> = delta
        .removed()
        .iter()
        .map(IndicatorId::new)
        .map(|o| (before.kind(o), before.value(o)))
        .collect();
    let m = next.meta();
    let added = delta.added().len() as u32;
    let end = m.len() as u32;
    (end.saturating_sub(added)..end)
        .filter(|&o| {
            let o = IndicatorId::new(o);
            !changed.contains(&(m.kind(o), m.value(o)))
        })
        .collect()
}
