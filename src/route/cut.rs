//! The clearance cut of a snapshot: the indicators one entity may hold, as an index of their
//! own — what `cwn pull` receives from the hub and what `cwn compile --for` writes, by the same
//! code. Indicators are rebuilt from the index's metadata (attribution withheld where the
//! source asked, [`Indicator::for_sharing`](crate::indicator::Indicator::for_sharing)) and compiled again; the cut keeps the set version
//! and creation time of the whole.

use roaring::RoaringBitmap;

use super::Router;
use super::registry::EntityOrd;
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
    let h = index.header();
    IndexBuilder::new()
        // The clearance already decided about RED; keep what it let through.
        .arm_red(true)
        .set_version(h.set_version)
        .created_at(h.created_at)
        .build(&set)
}
