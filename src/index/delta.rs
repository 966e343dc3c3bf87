//! Delta snapshots: what changed between two versions of an indicator set, small enough to
//! push every few minutes, cheap to apply, and exact — a base snapshot with its deltas applied
//! gives the same hits on any telemetry as a full compile of the newest inputs.
//!
//! A delta names the state it applies to (set version, [identity](Header::digest) and ordinal
//! count), lists the ordinals of that state it removes (as a roaring bitmap) and holds the
//! records of the indicators it adds (a metadata table, from which the lookup structures are
//! built on apply). A changed indicator — other TLP, validity, tags, anything a compile stores
//! — is removed and added again. Applying ([`CompiledIndex::apply`]) leaves the mapped base
//! as it is: removed base ordinals are masked, and the additions of the whole chain live in a
//! small overlay layer whose ordinals follow the base's. The state after a delta has the
//! delta's own identity, so the next delta names it; [`CompiledIndex::compact`] folds a chain
//! into a new base.
//!
//! The file is the snapshot container ([`snapshot`]) under the magic `CWNDELTA`: the same
//! header (the delta's set version and creation time, the added indicators per kind), section
//! digests and Ed25519 signature. Sections:
//!
//! ```text
//! 0     base state: set version u64 · identity [32] · ordinals u32 (44 bytes)
//! 1     removed ordinals of the base state: a serialised roaring bitmap
//! 2..   the added indicators: a metadata table (MetaTable's 27 sections)
//! ```

use std::fmt;
use std::io::Cursor;
use std::path::Path;

use bytes::Bytes;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::compiled::{IndexBuilder, Overlay, counts_of};
use super::meta::{Fingerprint, Interner, Meta, MetaBuilder, MetaTable, fingerprint_of};
use super::snapshot::{self, Header, SnapshotError};
use super::{CompiledIndex, FormatError, SectionReader, SectionWriter, Sections, array};
use crate::indicator::{IndicatorId, IndicatorSet, Kind};

/// The first eight bytes of every delta.
pub const MAGIC: [u8; 8] = *b"CWNDELTA";
const STRUCTURE: &str = "delta";
const BASE_LEN: usize = 8 + 32 + 4;

/// The state a delta applies to: a snapshot, or a snapshot with deltas applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateRef {
    /// Its set version.
    pub set_version: u64,
    /// Its identity: the [digest](Header::digest) of the snapshot or of the last delta.
    pub digest: [u8; 32],
    /// One past its highest ordinal ([`Meta::len`]).
    pub ordinals: u32,
}

impl StateRef {
    /// The state `index` is in.
    pub fn of(index: &CompiledIndex) -> Self {
        StateRef {
            set_version: index.header().set_version,
            digest: index.header().digest,
            ordinals: index.meta().len() as u32,
        }
    }
}

impl fmt::Display for StateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "set version {} (identity {}, {} ordinals)",
            self.set_version,
            hex(&self.digest[..8]),
            self.ordinals
        )
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Why a delta was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The container failed a check (digests, signature, truncation, …).
    #[error(transparent)]
    Container(#[from] SnapshotError),
    /// A full snapshot where a delta was expected.
    #[error("this is a full snapshot, not a delta (give it as the index, not as a delta)")]
    IsSnapshot,
    /// The sections do not decode.
    #[error("inconsistent content: {0}")]
    Structure(#[from] FormatError),
    /// The delta applies to another state than the one it was given.
    #[error("the delta applies to {wanted}, but the index is at {found}")]
    BaseMismatch {
        /// The state the delta names.
        wanted: StateRef,
        /// The state it was applied to.
        found: StateRef,
    },
    /// The delta does not move the set version forward.
    #[error("the delta's set version {delta} is not newer than the index's {base}")]
    NotNewer {
        /// The delta's.
        delta: u64,
        /// The index's.
        base: u64,
    },
    /// The base has no identity to name (built in memory, never written).
    #[error("the base index has no identity: load it from its snapshot file")]
    NoIdentity,
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

/// A delta: what to remove from a state and what to add to it.
#[derive(Debug)]
pub struct Delta {
    header: Header,
    base: StateRef,
    removed: RoaringBitmap,
    added: MetaTable,
    file_bytes: u64,
}

/// What [`Delta::compute`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaStats {
    /// Indicators of the new inputs that were not in the base.
    pub added: u64,
    /// Indicators of the base not in the new inputs.
    pub removed: u64,
    /// Of those, indicators in both under the same id, kind and value with other metadata
    /// (each counted once in `added` and once in `removed` as well).
    pub changed: u64,
    /// Indicators in both, unchanged.
    pub kept: u64,
    /// Indicators of the inputs a compile leaves out (RED not armed, unusable value).
    pub left_out: u64,
}

impl Delta {
    /// The delta from `base` to the set a full compile of `set` with `builder` would give:
    /// records compared by [`Fingerprint`] of their stored form, additions in `set` order.
    /// The delta's set version and creation time are the builder's.
    ///
    /// # Errors
    /// [`DeltaError::NoIdentity`] when `base` was never written, [`DeltaError::NotNewer`]
    /// when the builder's set version is not above the base's.
    pub fn compute(
        base: &CompiledIndex,
        set: &IndicatorSet,
        builder: &IndexBuilder,
    ) -> Result<(Delta, DeltaStats), DeltaError> {
        let state = StateRef::of(base);
        if state.digest == [0; 32] {
            return Err(DeltaError::NoIdentity);
        }
        if builder.version() <= state.set_version {
            return Err(DeltaError::NotNewer {
                delta: builder.version(),
                base: state.set_version,
            });
        }
        let m = base.meta();
        // Fingerprints of the base's live records, sorted for lookup.
        let mut old: Vec<(Fingerprint, u32)> = (0..m.len() as u32)
            .into_par_iter()
            .filter(|&o| m.removed().is_none_or(|r| !r.contains(o)))
            .map(|o| (m.fingerprint(IndicatorId::new(o)), o))
            .collect();
        old.par_sort_unstable();
        let inds = set.as_slice();
        // Per new indicator: the base ordinal with the same record, or `u32::MAX` when new;
        // `None` when a compile leaves it out.
        let found: Vec<Option<u32>> = inds
            .par_iter()
            .map(|ind| {
                builder.admits(ind).then(|| {
                    let fp = fingerprint_of(ind, ind.port);
                    let i = old.partition_point(|(f, _)| *f < fp);
                    match old.get(i) {
                        Some((f, o)) if *f == fp => *o,
                        _ => u32::MAX,
                    }
                })
            })
            .collect();
        let mut kept = RoaringBitmap::new();
        let mut added = MetaBuilder::new();
        let mut stats = DeltaStats::default();
        let mut added_keys = Vec::new();
        for (ind, f) in inds.iter().zip(&found) {
            match f {
                None => stats.left_out += 1,
                Some(u32::MAX) => {
                    added.push(ind, ind.port);
                    added_keys.push((ind.kind, ind.id.as_str(), ind.value.as_str()));
                }
                Some(o) => {
                    kept.insert(*o);
                }
            }
        }
        stats.kept = kept.len();
        stats.added = added_keys.len() as u64;
        let live =
            RoaringBitmap::from_sorted_iter(m.ords().map(|o| o.as_u32())).unwrap_or_default();
        let removed = live - &kept;
        stats.removed = removed.len();
        let removed_keys: std::collections::HashSet<(Kind, &str, &str)> = removed
            .iter()
            .map(IndicatorId::new)
            .map(|o| (m.kind(o), m.id(o), m.value(o)))
            .collect();
        stats.changed = added_keys
            .iter()
            .filter(|k| removed_keys.contains(*k))
            .count() as u64;
        let added = added.build();
        let header = Header {
            format_version: snapshot::FORMAT_VERSION,
            set_version: builder.version(),
            created_at: builder.created(),
            indicator_count: added.len() as u64,
            counts: counts_of(Meta::of(&added)),
            signed: false,
            digest: [0; 32],
        };
        let delta = Delta {
            header,
            base: state,
            removed,
            added,
            file_bytes: 0,
        };
        Ok((delta, stats))
    }

    /// The header: the delta's set version and creation time, the added indicators per kind,
    /// its signature flag and identity (zero until written and read back).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The state it applies to.
    pub fn base(&self) -> &StateRef {
        &self.base
    }

    /// The ordinals of the base state it removes.
    pub fn removed(&self) -> &RoaringBitmap {
        &self.removed
    }

    /// The records it adds.
    pub fn added(&self) -> Meta<'_> {
        Meta::of(&self.added)
    }

    /// Length of the file it was read from (0 when computed).
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }

    /// The delta's bytes, signed when `key` is given. Deterministic.
    pub fn to_bytes(&self, key: Option<&SigningKey>) -> Vec<u8> {
        let mut w = SectionWriter::new();
        let mut base = Vec::with_capacity(BASE_LEN);
        base.extend_from_slice(&self.base.set_version.to_le_bytes());
        base.extend_from_slice(&self.base.digest);
        base.extend_from_slice(&self.base.ordinals.to_le_bytes());
        w.put(&base);
        let mut removed = Vec::with_capacity(self.removed.serialized_size());
        // Writing into a Vec cannot fail.
        let _ = self.removed.serialize_into(&mut removed);
        w.put(&removed);
        self.added.write_sections(&mut w);
        snapshot::encode_as(
            MAGIC,
            self.header.set_version,
            self.header.created_at,
            &self.header.counts,
            &w.sections,
            key,
        )
    }

    /// Reads a delta held in memory, checking the whole container as a snapshot's (digests,
    /// signature with `verify`, exact length) and its sections' shape.
    pub fn from_bytes(bytes: &[u8], verify: Option<&VerifyingKey>) -> Result<Delta, DeltaError> {
        Self::from_shared(array::aligned_copy(bytes), verify)
    }

    /// Reads the delta file at `path` ([`from_bytes`](Self::from_bytes)).
    pub fn read(path: &Path, verify: Option<&VerifyingKey>) -> Result<Delta, DeltaError> {
        Self::from_bytes(&std::fs::read(path)?, verify)
    }

    fn from_shared(backing: Bytes, verify: Option<&VerifyingKey>) -> Result<Delta, DeltaError> {
        if backing.starts_with(&snapshot::MAGIC) {
            return Err(DeltaError::IsSnapshot);
        }
        let (header, ranges) = snapshot::decode_ranges_as(MAGIC, &backing, verify)?;
        if header.counts.len() != Kind::ALL.len() {
            return Err(FormatError::new(
                STRUCTURE,
                format!(
                    "{} kinds counted, this build knows {}",
                    header.counts.len(),
                    Kind::ALL.len()
                ),
            )
            .into());
        }
        let file_bytes = backing.len() as u64;
        let mut r = SectionReader::over(backing, ranges);
        let base: super::Arr<u8> = r.take(STRUCTURE)?;
        if base.len() != BASE_LEN {
            return Err(FormatError::new(STRUCTURE, "base reference of the wrong length").into());
        }
        let base = StateRef {
            set_version: u64::from_le_bytes(base[..8].try_into().unwrap_or_default()),
            digest: base[8..40].try_into().unwrap_or_default(),
            ordinals: u32::from_le_bytes(base[40..44].try_into().unwrap_or_default()),
        };
        let removed: super::Arr<u8> = r.take(STRUCTURE)?;
        let removed = RoaringBitmap::deserialize_from(Cursor::new(&removed[..]))
            .map_err(|e| FormatError::new(STRUCTURE, format!("removed ordinals: {e}")))?;
        if removed.max().is_some_and(|m| m >= base.ordinals) {
            return Err(
                FormatError::new(STRUCTURE, "removes an ordinal its base does not have").into(),
            );
        }
        let added = MetaTable::read_sections(&mut r)?;
        if r.position() != r.len() {
            return Err(FormatError::new(
                STRUCTURE,
                format!("{} sections, {} expected", r.len(), r.position()),
            )
            .into());
        }
        if header.indicator_count != added.len() as u64
            || header.counts.iter().sum::<u64>() != added.len() as u64
        {
            return Err(
                FormatError::new(STRUCTURE, "header counts disagree with the additions").into(),
            );
        }
        Ok(Delta {
            header,
            base,
            removed,
            added,
            file_bytes,
        })
    }

    /// Checks the additions' invariants in full (O(n), as `cwn inspect --check`).
    pub fn validate(&self) -> Result<(), FormatError> {
        self.added.validate()
    }
}

impl CompiledIndex {
    /// This index with `delta` applied: the base stays as it is (mapped, shared with `self`);
    /// the removed base ordinals are masked; the overlay of added indicators is rebuilt from
    /// the previous overlay's records that the delta keeps and the delta's additions (small:
    /// what changed since the base). The result's identity is the delta's, its set version
    /// and creation time the delta's.
    ///
    /// # Errors
    /// [`DeltaError::BaseMismatch`] when the delta names another state than this one,
    /// [`DeltaError::NotNewer`] when it does not move the version forward, and
    /// [`DeltaError::Structure`] when it removes an ordinal that is already gone or adds a
    /// record that does not compile (neither of which a computed delta does).
    pub fn apply(&self, delta: &Delta) -> Result<CompiledIndex, DeltaError> {
        let found = StateRef::of(self);
        if delta.base != found {
            return Err(DeltaError::BaseMismatch {
                wanted: delta.base,
                found,
            });
        }
        if delta.header.set_version <= found.set_version {
            return Err(DeltaError::NotNewer {
                delta: delta.header.set_version,
                base: found.set_version,
            });
        }
        // Small (the additions only), and the records are rebuilt from: check them in full.
        delta.added.validate()?;
        let m = self.meta();
        let split = m.split();
        let prior = self.overlay();
        let mut removed = prior.map(|o| o.removed.clone()).unwrap_or_default();
        let gone_base: RoaringBitmap = delta.removed.iter().take_while(|&o| o < split).collect();
        if !gone_base.is_disjoint(&removed) {
            return Err(FormatError::new(STRUCTURE, "removes an indicator already removed").into());
        }
        removed |= &gone_base;
        // The overlay again: the previous additions it keeps, then its own.
        let mut strings = Interner::default();
        let mut records = Vec::new();
        if let Some(o) = prior {
            for i in 0..o.added.meta.len() as u32 {
                if !delta.removed.contains(split + i) {
                    records.push(o.added.meta.indicator(IndicatorId::new(i), &mut strings));
                }
            }
        }
        records.extend(
            delta
                .added
                .ords()
                .map(|o| delta.added.indicator(o, &mut strings)),
        );
        let expect = records.len();
        let added = IndexBuilder::new().arm_red(true).build_layer(&records);
        if added.meta.len() != expect {
            return Err(FormatError::new(
                STRUCTURE,
                format!(
                    "{} of its {expect} added record(s) do not compile",
                    expect - added.meta.len()
                ),
            )
            .into());
        }
        let header = Header {
            format_version: self.header().format_version,
            set_version: delta.header.set_version,
            created_at: delta.header.created_at,
            indicator_count: 0,
            counts: Vec::new(),
            signed: delta.header.signed,
            digest: delta.header.digest,
        };
        let overlay = Overlay {
            removed,
            added,
            base: prior.map_or((found.set_version, found.digest), |o| o.base),
            applied: prior.map_or(0, |o| o.applied) + 1,
        };
        Ok(self.with_overlay(header, overlay))
    }
}
