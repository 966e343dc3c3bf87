//! A publisher's snapshot: checked, stored beside the logs, swapped in.

use super::*;

impl Shared {
    pub(super) fn install(&self, owner: EntityOrd, bytes: &[u8], announced: u64) -> Frame {
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
        *lock(&self.publisher) = owner;
        if let Some(m) = &self.metrics {
            m.snapshot(SnapshotInfo::from_index(&index));
        }
        self.index.store(Some(Arc::new(index)));
        Ok(())
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
