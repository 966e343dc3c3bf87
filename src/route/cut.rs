//! The clearance cut of a snapshot: the indicators one entity may hold, as an index of their
//! own — what `cwn pull` receives from the hub and what `cwn compile --for` writes, by the same
//! code. Indicators are rebuilt from the index's metadata (attribution withheld where the
//! source asked, [`Indicator::for_sharing`](crate::indicator::Indicator::for_sharing)) and compiled again; the cut keeps the set version
//! and creation time of the whole.
//!
//! A partner that follows the hub's deltas (`cwn pull --since`) holds a *cut chain*
//! ([`CutChain`]): the cut of the hub's base snapshot, then for each delta the hub applied, a
//! delta between the partner's state and the cut of the hub's next state ([`cut_delta`]).
//! Each is computed from the two cuts only, so it never removes or adds an indicator the
//! partner was not cleared for; and each is deterministic, so a hub that restarts computes the
//! same chain again and recognises the state a partner names.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use roaring::RoaringBitmap;

use super::Router;
use super::registry::EntityOrd;
use crate::index::delta::{Delta, DeltaError, StateRef};
use crate::index::meta::Interner;
use crate::index::{BuildError, CompiledIndex, IndexBuilder};
use crate::indicator::{IndicatorId, IndicatorSet};

/// The indicators of `index` that `entity` may hold ([`Router::clearance`]), as an index.
///
/// # Errors
/// When the rebuilt set does not compile (not for a set that compiled before).
///
/// # Panics
/// If `entity` is not an ordinal of the router's registry.
pub fn cut_for(
    router: &Router,
    entity: EntityOrd,
    index: &CompiledIndex,
) -> Result<CompiledIndex, BuildError> {
    cut(index, &router.clearance(entity, index.meta()))
}

/// The indicators of `index` whose ordinals are in `keep`, as an index.
///
/// # Errors
/// When the rebuilt set does not compile (not for a set that compiled before).
pub fn cut(index: &CompiledIndex, keep: &RoaringBitmap) -> Result<CompiledIndex, BuildError> {
    builder_of(index).build(&cut_set(index, keep))
}

/// The indicators of `index` whose ordinals are in `keep`, as they are shared.
fn cut_set(index: &CompiledIndex, keep: &RoaringBitmap) -> IndicatorSet {
    let m = index.meta();
    let mut set = IndicatorSet::new();
    let mut strings = Interner::default();
    for ord in keep
        .iter()
        .filter(|&o| (o as usize) < m.len())
        .map(IndicatorId::new)
    {
        let _ = set.insert(m.indicator(ord, &mut strings).for_sharing());
    }
    set
}

/// A builder that compiles a cut as the hub's state `index` is versioned.
fn builder_of(index: &CompiledIndex) -> IndexBuilder {
    let h = index.header();
    IndexBuilder::new()
        // The clearance already decided about RED; keep what it let through.
        .arm_red(true)
        .set_version(h.set_version)
        .created_at(h.created_at)
}

/// The delta from a partner's state `held` to the cut of the hub's state `next` by `keep`
/// (that state's clearance of the partner): what the partner needs to hold that cut.
///
/// # Errors
/// As [`Delta::compute`]: `held` never written, or `next` not newer than it.
pub fn cut_delta(
    held: &CompiledIndex,
    next: &CompiledIndex,
    keep: &RoaringBitmap,
) -> Result<Delta, DeltaError> {
    Delta::compute(held, &cut_set(next, keep), &builder_of(next)).map(|(d, _)| d)
}

/// One file of a [`CutChain`].
#[derive(Clone, Debug)]
pub struct CutFile {
    /// The partner's state once it holds this file: set version and identity.
    pub state: StateRef,
    /// The file: a snapshot (the first of a chain) or a delta.
    pub bytes: Arc<Vec<u8>>,
}

/// One entity's view of the hub's chain: the cut of the hub's base snapshot, then one cut
/// delta per delta the hub applied ([`cut_delta`]). Grown link by link as the hub's chain
/// grows ([`extend`](Self::extend)); started again when the hub's base changes.
pub struct CutChain {
    /// Identity of the hub's base state the chain starts from.
    hub_base: [u8; 32],
    files: Vec<CutFile>,
    /// The partner's state after the last file.
    held: CompiledIndex,
}

/// Why a cut chain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CutError {
    /// The cut did not compile.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A cut delta could not be computed or read back.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// The cut snapshot did not read back.
    #[error(transparent)]
    Snapshot(#[from] crate::index::snapshot::SnapshotError),
}

impl CutChain {
    /// The cut chain of `entity` over the hub's `states` (its base snapshot, then the state
    /// after each delta, in order), its files signed with `key`.
    ///
    /// # Errors
    /// A cut that does not compile or a cut delta that does not apply (neither happens for
    /// states that were applied in order).
    ///
    /// # Panics
    /// If `states` is empty or `entity` is not an ordinal of the router's registry.
    pub fn build(
        router: &Router,
        entity: EntityOrd,
        states: &[Arc<CompiledIndex>],
        key: Option<&SigningKey>,
    ) -> Result<CutChain, CutError> {
        let base = &states[0];
        let bytes = cut_for(router, entity, base)?.to_snapshot(key);
        let held = CompiledIndex::from_snapshot(&bytes, None)?;
        let mut chain = CutChain {
            hub_base: base.header().digest,
            files: vec![CutFile {
                state: StateRef::of(&held),
                bytes: Arc::new(bytes),
            }],
            held,
        };
        chain.extend(router, entity, states, key)?;
        Ok(chain)
    }

    /// Whether this chain starts from the hub's base state `base`.
    pub fn starts_from(&self, base: &CompiledIndex) -> bool {
        self.hub_base == base.header().digest
    }

    /// Adds the cut deltas of the hub states this chain does not cover yet.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    ///
    /// # Panics
    /// If `states` does not start from this chain's base or `entity` is not an ordinal of
    /// the router's registry.
    pub fn extend(
        &mut self,
        router: &Router,
        entity: EntityOrd,
        states: &[Arc<CompiledIndex>],
        key: Option<&SigningKey>,
    ) -> Result<(), CutError> {
        assert!(self.starts_from(&states[0]), "another base");
        for next in states.iter().skip(self.files.len()) {
            let keep = router.clearance(entity, next.meta());
            let bytes = cut_delta(&self.held, next, &keep)?.to_bytes(key);
            let delta = Delta::from_bytes(&bytes, None)?;
            self.held = self.held.apply(&delta)?;
            self.files.push(CutFile {
                state: StateRef::of(&self.held),
                bytes: Arc::new(bytes),
            });
        }
        Ok(())
    }

    /// What a partner holding `held` (set version and identity) lacks: the files after it, or
    /// the whole chain when it holds a state not in the chain (none, an older base, a cut from
    /// a plain pull). Empty when it is up to date.
    pub fn lacking(&self, held_version: u64, held: &[u8; 32]) -> &[CutFile] {
        match self
            .files
            .iter()
            .position(|f| f.state.set_version == held_version && f.state.digest == *held)
        {
            Some(i) => &self.files[i + 1..],
            None => &self.files,
        }
    }

    /// The partner's state at the end of the chain.
    pub fn head(&self) -> StateRef {
        StateRef::of(&self.held)
    }
}
