//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// A path below the project's `data/`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// The shared folder: `../shared` beside the checkout (as for the main repository), else
/// `/work/shared` (a worktree kept elsewhere).
pub fn shared_dir() -> Option<PathBuf> {
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
        PathBuf::from("/work/shared"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
}

/// A path below the shared `data/real/`, or `None` (with a note on stderr) when the shared
/// folder or the file is not there.
pub fn shared_real(name: &str) -> Option<PathBuf> {
    let p = shared_dir()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("data/real")
        .join(name);
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
