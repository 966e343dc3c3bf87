//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// A path below the project's `data/`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// A path below `shared/data/real/`, or `None` (with a note on stderr) when it is absent.
/// `shared/` is looked for beside the checkout (`../shared`), then at `/work/shared` (for a
/// worktree that does not sit beside it).
pub fn shared_real(name: &str) -> Option<PathBuf> {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real");
    let candidates = [beside, PathBuf::from("/work/shared/data/real")];
    if let Some(p) = candidates
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    eprintln!(
        "skipping: {name} is not present in {}",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    );
    None
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
