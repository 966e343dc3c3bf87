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
        let path = self.data_dir.join(SNAPSHOT_FILE);
        let written = crate::outfile::replace(&path, bytes, true);
        let owner_id = &self.router.registry().entity(owner).id;
        let written = written.and_then(|()| {
            crate::outfile::replace(
                &self.data_dir.join(SNAPSHOT_OWNER_FILE),
                owner_id.as_bytes(),
                true,
            )
        });
        if let Err(e) = written {
            return reject(format!("the hub could not store it: {e}"));
        }
        *lock(&self.publisher) = Some(owner);
        if let Some(m) = &self.metrics {
            m.snapshot(SnapshotInfo::from_index(&index));
        }
        self.index.store(Some(Arc::new(index)));
        self.stats
            .snapshots_accepted
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!("snapshot {v} in use");
        Frame::SnapshotAccepted { set_version: v }
    }
}
