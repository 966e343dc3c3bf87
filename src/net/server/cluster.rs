//! The snapshot every edge of a cluster uses (feature `cluster`): a `cwn push` to any edge
//! is checked there, stored once in a JetStream object store, and made current in a KV key
//! that every edge watches; each edge fetches it, checks the signature itself, and swaps it in.
//!
//! - Object store `<stream>_SNAPSHOTS`: one object per version (`v<N>.cwnsnap`); the one
//!   before the current is kept for edges still fetching it, older ones are deleted.
//! - KV bucket `<stream>_SNAPSHOT`, key `current`: `{"version", "owner", "object", "size",
//!   "blake3", "deltas"}`, replaced by compare-and-set, so versions only go up whichever edges
//!   race.
//!
//! A delta pushed to any edge joins the chain of the current snapshot the same way: stored as
//! `v<N>.cwndelta`, named in `deltas` (`{"version", "owner", "object", "size", "blake3"}` each,
//! in order) by compare-and-set against the head it applies to, so two edges never extend the
//! chain from the same state. An edge that holds the base and part of the chain fetches only
//! the deltas it lacks; one on another base takes the base and every delta. A full snapshot
//! starts a new chain; the previous chain's objects stay for edges still fetching them.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use crate::hub::store::LogError;
use crate::hub::store::jetstream::{JetStreamConfig, connect, direct};

/// The KV key that names the current snapshot.
const CURRENT: &str = "current";

/// One file in the object store, as the KV key names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stored {
    /// Its object's name.
    pub(super) object: String,
    /// Its length in bytes.
    pub(super) size: u64,
    /// BLAKE3 of its bytes, hex.
    pub(super) blake3: String,
}

impl Stored {
    fn of(object: String, bytes: &[u8]) -> Stored {
        Stored {
            object,
            size: bytes.len() as u64,
            blake3: blake3::hash(bytes).to_hex().to_string(),
        }
    }
}

/// One delta of the current snapshot's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ChainLink {
    /// The set version it leads to.
    pub(super) version: u64,
    /// The registry id of the publisher that pushed it.
    pub(super) owner: String,
    /// Where it is stored.
    #[serde(flatten)]
    pub(super) file: Stored,
}

/// The cluster's current snapshot and the deltas pushed since, as its KV key holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Current {
    /// The snapshot's set version.
    pub(super) version: u64,
    /// The registry id of the publisher that pushed it.
    pub(super) owner: String,
    /// Where it is stored.
    #[serde(flatten)]
    pub(super) file: Stored,
    /// The deltas pushed since, in the order they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) deltas: Vec<ChainLink>,
}

impl Current {
    /// The set version the chain leads to.
    pub(super) fn head(&self) -> u64 {
        self.deltas.last().map_or(self.version, |d| d.version)
    }

    /// Every object it names.
    fn objects(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.file.object.as_str())
            .chain(self.deltas.iter().map(|d| d.file.object.as_str()))
    }
}

/// Why a push was not made current.
#[derive(Debug)]
pub(super) enum PublishError {
    /// The cluster already uses this version or a newer one.
    NotNewer(u64),
    /// The delta applies to another state than the cluster's (at this set version), or the
    /// cluster has no snapshot (0).
    Elsewhere(u64),
    /// The cluster did not answer or refused.
    Cluster(String),
}

/// The shared snapshot. See the [module docs](self).
pub(super) struct SharedSnapshot {
    kv: kv::Store,
    objects: object_store::ObjectStore,
    /// Largest snapshot fetched.
    max_bytes: u64,
}

fn err(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Cluster(format!("{what}: {e}"))
}

impl SharedSnapshot {
    /// Connects and creates the buckets where they do not exist.
    pub(super) async fn open(cfg: &JetStreamConfig, max_bytes: u64) -> Result<Self, LogError> {
        let js = jetstream::new(connect(cfg).await?);
        let objects_name = format!("{}_SNAPSHOTS", cfg.stream);
        let objects = match js.get_object_store(&objects_name).await {
            Ok(o) => o,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: objects_name.clone(),
                    num_replicas: cfg.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| err(&objects_name, e))?,
        };
        let kv_name = format!("{}_SNAPSHOT", cfg.stream);
        let kv = match js.get_key_value(&kv_name).await {
            Ok(k) => k,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: kv_name.clone(),
                    history: 1,
                    num_replicas: cfg.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| err(&kv_name, e))?,
        };
        Ok(SharedSnapshot {
            kv,
            objects,
            max_bytes,
        })
    }

    /// The current snapshot's description and its KV revision, if any.
    async fn entry(&self) -> Result<Option<(Current, u64)>, LogError> {
        // Asked again while nobody serves the bucket yet (a cluster just formed or electing).
        let got = direct(|| self.kv.entry(CURRENT))
            .await
            .map_err(|e| err(CURRENT, e))?;
        let Some(e) = got.map_err(|e| err(CURRENT, e))? else {
            return Ok(None);
        };
        if e.operation != kv::Operation::Put {
            return Ok(None);
        }
        let c: Current = serde_json::from_slice(&e.value).map_err(|e| err(CURRENT, e))?;
        Ok(Some((c, e.revision)))
    }

    /// The cluster's current snapshot, if one was pushed.
    pub(super) async fn current(&self) -> Result<Option<Current>, LogError> {
        Ok(self.entry().await?.map(|(c, _)| c))
    }

    /// Stores `bytes` (checked by the caller: signed, version `version`) and makes it current,
    /// unless the cluster already has this version or a newer one.
    pub(super) async fn publish(
        &self,
        version: u64,
        owner: &str,
        bytes: &[u8],
    ) -> Result<(), PublishError> {
        let cluster = |e: LogError| PublishError::Cluster(e.to_string());
        let before = self.entry().await.map_err(cluster)?;
        if let Some((c, _)) = &before
            && c.head() >= version
        {
            return Err(PublishError::NotNewer(c.head()));
        }
        let file = self.put(format!("v{version}.cwnsnap"), bytes).await?;
        let current = Current {
            version,
            owner: owner.to_owned(),
            file,
            deltas: Vec::new(),
        };
        let value = Bytes::from(serde_json::to_vec(&current).expect("plain data"));
        let mut seen = before;
        loop {
            let set = match &seen {
                Some((_, rev)) => self.kv.update(CURRENT, value.clone(), *rev).await.is_ok(),
                None => self.kv.create(CURRENT, value.clone()).await.is_ok(),
            };
            if set {
                break;
            }
            // Another edge made a snapshot current meanwhile: newer wins.
            seen = self.entry().await.map_err(cluster)?;
            if let Some((c, _)) = &seen
                && c.head() >= version
            {
                let _ = self.objects.delete(&current.file.object).await;
                return Err(PublishError::NotNewer(c.head()));
            }
        }
        // The chain before stays for edges fetching it now; older objects go.
        let keep: Vec<&str> = current
            .objects()
            .chain(seen.iter().flat_map(|(c, _)| c.objects()))
            .collect();
        let mut list = self
            .objects
            .list()
            .await
            .map_err(|e| PublishError::Cluster(e.to_string()))?;
        let mut stale = Vec::new();
        while let Some(Ok(info)) = list.next().await {
            if !info.deleted && !keep.contains(&info.name.as_str()) {
                stale.push(info.name);
            }
        }
        for name in stale {
            let _ = self.objects.delete(&name).await;
        }
        Ok(())
    }

    /// Stores `bytes` (checked by the caller: a signed delta from set version `from` to
    /// `version`) and appends it to the current chain, unless the chain does not end at
    /// `from`.
    pub(super) async fn publish_delta(
        &self,
        from: u64,
        version: u64,
        owner: &str,
        bytes: &[u8],
    ) -> Result<(), PublishError> {
        let cluster = |e: LogError| PublishError::Cluster(e.to_string());
        let mut seen = self.entry().await.map_err(cluster)?;
        let mut file: Option<Stored> = None;
        loop {
            let Some((c, rev)) = &seen else {
                return Err(PublishError::Elsewhere(0));
            };
            if c.head() != from {
                if let Some(f) = file.take() {
                    let _ = self.objects.delete(&f.object).await;
                }
                return Err(if c.head() >= version {
                    PublishError::NotNewer(c.head())
                } else {
                    PublishError::Elsewhere(c.head())
                });
            }
            let f = match &file {
                Some(f) => f,
                None => file.insert(self.put(format!("v{version}.cwndelta"), bytes).await?),
            };
            let mut next = c.clone();
            next.deltas.push(ChainLink {
                version,
                owner: owner.to_owned(),
                file: f.clone(),
            });
            let value = Bytes::from(serde_json::to_vec(&next).expect("plain data"));
            if self.kv.update(CURRENT, value, *rev).await.is_ok() {
                return Ok(());
            }
            // Another edge changed the chain meanwhile: look again.
            seen = self.entry().await.map_err(cluster)?;
        }
    }

    /// Puts `bytes` as object `object`.
    async fn put(&self, object: String, bytes: &[u8]) -> Result<Stored, PublishError> {
        let mut reader = bytes;
        self.objects
            .put(object.as_str(), &mut reader)
            .await
            .map_err(|e| PublishError::Cluster(format!("{object}: {e}")))?;
        Ok(Stored::of(object, bytes))
    }

    /// The bytes of `c`, checked against its size and digest (the caller checks the
    /// signature).
    pub(super) async fn fetch(&self, c: &Stored) -> Result<Vec<u8>, LogError> {
        if c.size > self.max_bytes {
            return Err(err(
                &c.object,
                format!("{} bytes is over the limit of {}", c.size, self.max_bytes),
            ));
        }
        let mut object = self
            .objects
            .get(&c.object)
            .await
            .map_err(|e| err(&c.object, e))?;
        let mut bytes = Vec::with_capacity(c.size as usize);
        (&mut object)
            .take(c.size + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| err(&c.object, e))?;
        if bytes.len() as u64 != c.size || blake3::hash(&bytes).to_hex().as_str() != c.blake3 {
            return Err(err(
                &c.object,
                "its bytes do not match the size and digest named",
            ));
        }
        Ok(bytes)
    }

    /// Calls `on_current` with the current snapshot's description now and after every change,
    /// until `stop` says to stop; follows the key again after a broken watch.
    pub(super) async fn watch(
        &self,
        mut on_current: impl FnMut(Current),
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            match self.kv.watch_with_history(CURRENT).await {
                Ok(mut w) => loop {
                    tokio::select! {
                        e = w.next() => match e {
                            Some(Ok(e)) if e.operation == kv::Operation::Put => {
                                match serde_json::from_slice::<Current>(&e.value) {
                                    Ok(c) => on_current(c),
                                    Err(e) => tracing::warn!("cluster snapshot key: {e}"),
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!("watching the cluster snapshot: {e}");
                                break;
                            }
                            None => break,
                        },
                        _ = stop.changed() => return,
                    }
                },
                Err(e) => tracing::warn!("watching the cluster snapshot: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
