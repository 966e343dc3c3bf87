//! The clearance cut of a snapshot: the indicators one entity may hold, as an index of their
//! own — what `cwn pull` receives from the hub and what `cwn compile --for` writes, by the same
//! code. Indicators are rebuilt from the index's metadata (attribution withheld where the
//! source asked, [`Indicator::for_sharing`]) and compiled again; the cut keeps the set version
//! and creation time of the whole.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::Router;
use super::registry::EntityOrd;
use crate::index::{BuildError, CompiledIndex, IndexBuilder};
use crate::indicator::{Indicator, IndicatorId, IndicatorSet, Kind};

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
    let mut sources: std::collections::HashMap<&str, Arc<str>> = Default::default();
    let mut strings: std::collections::HashMap<String, Arc<str>> = Default::default();
    fn intern(strings: &mut std::collections::HashMap<String, Arc<str>>, s: &str) -> Arc<str> {
        if let Some(a) = strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        strings.insert(s.to_string(), a.clone());
        a
    }
    for ord in keep
        .iter()
        .filter(|&o| (o as usize) < m.len())
        .map(IndicatorId::new)
    {
        let source = sources
            .entry(m.source(ord))
            .or_insert_with_key(|s| Arc::from(*s))
            .clone();
        let kind = m.kind(ord);
        let mut ind = Indicator::new(m.id(ord), kind, m.value(ord), source, m.tlp(ord));
        ind.origin = m.origin(ord).map(|o| intern(&mut strings, o));
        ind.tags = m.tags(ord).map(|t| intern(&mut strings, t)).collect();
        ind.no_attribution = m.no_attribution(ord);
        ind.distribution = m.distribution(ord);
        ind.sharing_group = m.sharing_group(ord).map(|g| intern(&mut strings, g));
        ind.validity = m.validity(ord);
        ind.confidence = m.confidence(ord);
        ind.direction = m.direction(ord);
        // An ip:port carries its port in the value.
        ind.port = if kind == Kind::IpPort {
            None
        } else {
            m.port(ord)
        };
        let _ = set.insert(ind.for_sharing());
    }
    let h = index.header();
    IndexBuilder::new()
        // The clearance already decided about RED; keep what it let through.
        .arm_red(true)
        .set_version(h.set_version)
        .created_at(h.created_at)
        .build(&set)
}
