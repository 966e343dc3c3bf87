//! Helpers shared by the bench binaries (each includes this file with `mod common;`).
#![allow(dead_code)] // Each bench uses only some of them.

// The data helpers are the integration tests' own, so both read the same files the same way.
#[path = "../../tests/util.rs"]
mod util;

pub use util::{extract, shared_real as shared};

pub mod zeek;

/// The whole real maltrail set, ingested without warninglists.
pub fn maltrail_set() -> Option<cwn::indicator::IndicatorSet> {
    use cwn::ingest::{self, Ingest, SourceOptions};
    let dir = extract(&shared("maltrail-trails-static.tar.gz")?);
    let opts = SourceOptions::default();
    let files = ingest::expand_sources(&[dir.path().join("trails/static")], &opts).expect("expand");
    let mut driver = Ingest::new(None);
    ingest::read_all(&files, &opts, &mut driver, |_| {}).expect("read");
    Some(driver.finish().0)
}
