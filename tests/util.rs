//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// A path below the project's `data/`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// The shared real-data folder: `$CWN_SHARED_DATA/real` when that is set, else the first
/// `shared/data/real` beside the checkout or beside one of its ancestors (a git worktree may
/// live deeper than the main checkout).
fn shared_real_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CWN_SHARED_DATA") {
        return PathBuf::from(d).join("real");
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .skip(1)
        .map(|a| a.join("shared/data/real"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| here.join("../shared/data/real"))
}

/// A file below the shared real-data folder (`../shared/data/real/`), or `None` (with a note
/// on stderr) when it is not there.
pub fn shared_real(name: &str) -> Option<PathBuf> {
    let p = shared_real_dir().join(name);
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
