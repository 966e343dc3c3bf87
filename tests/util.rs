//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// A path below the project's `data/`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// The shared folder: `../shared` beside the checkout, else `/work/shared` (where git
/// worktrees of the project find it).
pub fn shared_dir() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if beside.is_dir() {
        beside
    } else {
        PathBuf::from("/work/shared")
    }
}

/// A path below the shared `data/real/`, or `None` (with a note on stderr) when the shared
/// folder is missing.
pub fn shared_real(name: &str) -> Option<PathBuf> {
    let p = shared_dir().join("data/real").join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipping: {} is not present", p.display());
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
