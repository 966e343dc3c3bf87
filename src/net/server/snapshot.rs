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
                Err(PublishError::NotNewer(cur) | PublishError::Elsewhere(cur)) => {
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
    /// naming both states, when it names another), stored in the chain beside the snapshot
    /// (on a cluster first in the cluster's chain, which every edge follows), swapped in;
    /// matching goes on meanwhile on the state before it.
    fn install_delta(self: &Arc<Self>, owner: EntityOrd, bytes: &[u8]) -> Result<u64, String> {
        use crate::index::delta::{Delta, DeltaError};
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
        let owner_id = self.router.registry().entity(owner).id.clone();
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.shared_snapshot {
            use super::cluster::PublishError;
            let from = cur.header().set_version;
            let published = tokio::runtime::Handle::current()
                .block_on(c.publish_delta(from, v, &owner_id, bytes));
            match published {
                Ok(()) => {}
                Err(PublishError::NotNewer(at)) => {
                    return Err(format!(
                        "set version {v} is not newer than the one the cluster uses ({at})"
                    ));
                }
                Err(PublishError::Elsewhere(at)) => {
                    return Err(format!(
                        "the delta applies to set version {from}, but the cluster is at set \
                         version {at}: push the deltas that follow it, or a full snapshot"
                    ));
                }
                Err(PublishError::Cluster(e)) => {
                    return Err(format!("the cluster could not store it: {e}"));
                }
            }
        }
        self.commit_delta(Some(owner), &owner_id, bytes, &cur, &delta, next)
            .map_err(|e| format!("the hub could not store it: {e}"))?;
        Ok(v)
    }

    /// Stores delta `bytes` (checked, `delta`) beside the snapshot with its owner's id and
    /// swaps in `next`, `cur` with it applied; hunts the telemetry kept for the indicators it
    /// adds, in the background.
    fn commit_delta(
        self: &Arc<Self>,
        owner: Option<EntityOrd>,
        owner_id: &str,
        bytes: &[u8],
        cur: &CompiledIndex,
        delta: &crate::index::delta::Delta,
        next: CompiledIndex,
    ) -> std::io::Result<()> {
        let v = next.header().set_version;
        let dir = self.data_dir.join(DELTA_DIR);
        std::fs::create_dir_all(&dir)?;
        crate::outfile::replace(&dir.join(format!("set-v{v}.cwndelta")), bytes, true)?;
        crate::outfile::replace(
            &self.data_dir.join(SNAPSHOT_OWNER_FILE),
            owner_id.as_bytes(),
            true,
        )?;
        *lock(&self.publisher) = owner;
        if let Some(m) = &self.metrics {
            m.snapshot(SnapshotInfo::from_index(&next));
        }
        let next = Arc::new(next);
        lock(&self.states).push(next.clone());
        self.index.store(Some(next.clone()));
        if self.retro.is_some() {
            let new = new_indicators(cur, delta, &next);
            self.hunt_in_background(next, move |_| new);
        }
        Ok(())
    }

    /// Hunts the telemetry kept for the indicators `new` finds in state `next`, on a thread
    /// of its own: whoever pushed hears of the swap now, the victims of old telemetry as soon
    /// as the hunt finds them.
    fn hunt_in_background(
        self: &Arc<Self>,
        next: Arc<CompiledIndex>,
        new: impl FnOnce(&CompiledIndex) -> roaring::RoaringBitmap + Send + 'static,
    ) {
        let v = next.header().set_version;
        let s = self.clone();
        let spawned = std::thread::Builder::new()
            .name("cwn-retro-hunt".into())
            .spawn(move || {
                let t = std::time::Instant::now();
                let new = new(&next);
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

    /// Stores `bytes` beside the logs (with its owner's id) and swaps `index` in; with a
    /// retro store, hunts for the indicators the state before it did not hold.
    fn activate(
        self: &Arc<Self>,
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
        let before = self.index.swap(Some(index.clone()));
        if let Some(before) = before
            && self.retro.is_some()
        {
            self.hunt_in_background(index, move |next| indicators_not_in(&before, next));
        }
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

    /// Takes the cluster's current state when it is newer than the one in use: the deltas
    /// this edge lacks when it holds the cluster's snapshot and part of its chain, else the
    /// snapshot and every delta; each fetched, its signature checked here, swapped in. Called
    /// at start and whenever the cluster's current state changes (a push to any edge).
    #[cfg(feature = "cluster")]
    pub(super) fn adopt(
        self: &Arc<Self>,
        shared: &super::cluster::SharedSnapshot,
        c: &super::cluster::Current,
    ) {
        let _one = lock(&self.install);
        let (base, head) = {
            let states = lock(&self.states);
            let v = |i: Option<&Arc<CompiledIndex>>| i.map_or(0, |i| i.header().set_version);
            (v(states.first()), v(states.last()))
        };
        if c.head() <= head {
            return;
        }
        let registry = self.router.registry();
        let owner_of = |id: &str| {
            registry
                .by_id(id)
                .filter(|&o| registry.entity(o).roles.contains(Role::Publisher))
        };
        // On another base, or a chain that does not lead through this edge's head (a delta
        // of its own lost to a race): the cluster's snapshot first.
        let on_chain =
            base == c.version && (head == c.version || c.deltas.iter().any(|d| d.version == head));
        if !on_chain {
            let fetched = tokio::runtime::Handle::current().block_on(shared.fetch(&c.file));
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
            let activated = index.and_then(|(bytes, index)| {
                self.activate(owner_of(&c.owner), &c.owner, &bytes, index)
                    .map_err(|e| format!("storing it here: {e}"))
            });
            match activated {
                Ok(()) => tracing::info!("snapshot {} in use (from the cluster)", c.version),
                Err(e) => {
                    tracing::error!(
                        "cluster snapshot {} ({}) not used: {e}",
                        c.version,
                        c.file.object
                    );
                    return;
                }
            }
        }
        for link in &c.deltas {
            let cur = self.index.load_full().expect("a snapshot is in use");
            if link.version <= cur.header().set_version {
                continue;
            }
            let fetched = tokio::runtime::Handle::current().block_on(shared.fetch(&link.file));
            let committed = fetched.map_err(|e| e.to_string()).and_then(|bytes| {
                use crate::index::delta::Delta;
                let delta =
                    Delta::from_bytes(&bytes, Some(&self.verify_key)).map_err(|e| e.to_string())?;
                let next = cur.apply(&delta).map_err(|e| e.to_string())?;
                if next.header().set_version != link.version {
                    return Err(format!(
                        "it leads to set version {}, not {}",
                        next.header().set_version,
                        link.version
                    ));
                }
                let owner = owner_of(&link.owner);
                self.commit_delta(owner, &link.owner, &bytes, &cur, &delta, next)
                    .map_err(|e| format!("storing it here: {e}"))
            });
            match committed {
                Ok(()) => tracing::info!("delta {} in use (from the cluster)", link.version),
                Err(e) => {
                    tracing::error!(
                        "cluster delta {} ({}) not used: {e}",
                        link.version,
                        link.file.object
                    );
                    return;
                }
            }
        }
    }
}

/// The ordinals of `next` whose indicator (kind and value) `before` does not hold live: what
/// a full snapshot adds to the state it replaces.
fn indicators_not_in(before: &CompiledIndex, next: &CompiledIndex) -> roaring::RoaringBitmap {
    let b = before.meta();
    let removed = b.removed();
    let held: std::collections::HashSet<(crate::indicator::Kind, &str)> = (0..b.len() as u32)
        .filter(|o| !removed.is_some_and(|r| r.contains(*o)))
        .map(IndicatorId::new)
        .map(|o| (b.kind(o), b.value(o)))
        .collect();
    let m = next.meta();
    let removed = m.removed();
    (0..m.len() as u32)
        .filter(|o| !removed.is_some_and(|r| r.contains(*o)))
        .filter(|&o| {
            let o = IndicatorId::new(o);
            !held.contains(&(m.kind(o), m.value(o)))
        })
        .collect()
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
