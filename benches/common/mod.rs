//! Helpers shared by the bench binaries (each includes this file with `mod common;`).
#![allow(dead_code)] // Each bench uses only some of them.

use std::path::{Path, PathBuf};

/// A file below `../shared/data/real/`, or `None` with a note when the folder is absent.
pub fn shared(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/real")
        .join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipping: {} not present", p.display());
        None
    }
}

/// Extracts a `.tar.gz` into a fresh temporary directory.
pub fn extract(tarball: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = std::fs::File::open(tarball).expect("open tarball");
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(dir.path())
        .expect("unpack tarball");
    dir
}

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
